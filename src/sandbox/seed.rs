//! The seed directory: the company, its credentials, projects, vendors and budget codes.
//!
//! Format (documented in `docs/sandbox.md`):
//! - `company.json`: `{"id", "name", "credentials": [{"client_id", "client_secret"}]}`
//! - `projects.json`: `[{"id", "name", "project_number", "origin_id"?}]`
//! - `vendors.json`: `[{"id", "name", "origin_id"?}]`
//! - `wbs_codes.json`: `[{"id"?, "project_id" | "project_number", "flat_code", "description"?}]`

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a seed could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A seed file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A seed file is not the JSON the format expects.
    #[error("seed file {path} is not valid: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        source: serde_json::Error,
    },
    /// The files parse but do not agree with each other.
    #[error("seed file {file}: {message}")]
    Invalid {
        /// The file name within the seed directory.
        file: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// OAuth client credentials that belong to the company.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The client id of the app.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// `company.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedCompany {
    /// The Procore company id (sent as `Procore-Company-Id`).
    pub id: i64,
    /// Company name.
    pub name: String,
    /// Apps allowed to act on this company.
    pub credentials: Vec<Credential>,
}

/// One entry of `projects.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedProject {
    /// Procore project id.
    pub id: i64,
    /// Project name.
    pub name: String,
    /// Project number; jcsync maps the Sage job to it.
    pub project_number: String,
    /// Optional origin id.
    #[serde(default)]
    pub origin_id: Option<String>,
}

/// One entry of `vendors.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedVendor {
    /// Procore vendor id.
    pub id: i64,
    /// Vendor name.
    pub name: String,
    /// Origin id; jcsync maps the Sage vendor to it.
    #[serde(default)]
    pub origin_id: Option<String>,
}

/// One entry of `wbs_codes.json`: a budget code of one project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedWbsCode {
    /// Procore id; assigned at load when absent.
    #[serde(default)]
    pub id: Option<i64>,
    /// The project, by id...
    #[serde(default)]
    pub project_id: Option<i64>,
    /// ...or by project number.
    #[serde(default)]
    pub project_number: Option<String>,
    /// The flat code, segments joined by `.` (sub job, cost code, cost type), e.g. `1.01-100.L`.
    pub flat_code: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A whole seed, as read from a directory or built in memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seed {
    /// The company and its credentials.
    pub company: SeedCompany,
    /// Its projects.
    pub projects: Vec<SeedProject>,
    /// Its vendors.
    pub vendors: Vec<SeedVendor>,
    /// Budget codes of its projects.
    pub wbs_codes: Vec<SeedWbsCode>,
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, SeedError> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|source| SeedError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SeedError::Json { path, source })
}

impl Seed {
    /// Reads and validates the four files of a seed directory.
    pub fn load_dir(dir: &Path) -> Result<Self, SeedError> {
        let seed = Seed {
            company: read_json(dir, "company.json")?,
            projects: read_json(dir, "projects.json")?,
            vendors: read_json(dir, "vendors.json")?,
            wbs_codes: read_json(dir, "wbs_codes.json")?,
        };
        seed.validate()?;
        Ok(seed)
    }

    /// Writes the seed as a seed directory (what `jcsync generate` does).
    pub fn write_dir(&self, dir: &Path) -> Result<(), SeedError> {
        std::fs::create_dir_all(dir).map_err(|source| SeedError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |file: &str, value: serde_json::Result<Vec<u8>>| {
            let path = dir.join(file);
            let bytes = value.map_err(|source| SeedError::Json {
                path: path.clone(),
                source,
            })?;
            std::fs::write(&path, bytes).map_err(|source| SeedError::Io { path, source })
        };
        write("company.json", serde_json::to_vec_pretty(&self.company))?;
        write("projects.json", serde_json::to_vec_pretty(&self.projects))?;
        write("vendors.json", serde_json::to_vec_pretty(&self.vendors))?;
        write("wbs_codes.json", serde_json::to_vec_pretty(&self.wbs_codes))?;
        Ok(())
    }

    /// Checks ids are unique and every budget code names exactly one known project.
    pub fn validate(&self) -> Result<(), SeedError> {
        if self.company.credentials.is_empty() {
            return Err(SeedError::Invalid {
                file: "company.json",
                message: "credentials must list at least one client".into(),
            });
        }
        let mut ids = HashSet::new();
        let mut numbers = HashSet::new();
        for p in &self.projects {
            if !ids.insert(p.id) {
                return Err(invalid("projects.json", format!("duplicate id {}", p.id)));
            }
            if !numbers.insert(p.project_number.as_str()) {
                return Err(invalid(
                    "projects.json",
                    format!("duplicate project_number {:?}", p.project_number),
                ));
            }
        }
        let mut vendor_ids = HashSet::new();
        for v in &self.vendors {
            if !vendor_ids.insert(v.id) {
                return Err(invalid("vendors.json", format!("duplicate id {}", v.id)));
            }
        }
        let mut codes = HashSet::new();
        let mut code_ids = HashSet::new();
        for (i, w) in self.wbs_codes.iter().enumerate() {
            let project = self.project_of(w).ok_or_else(|| {
                invalid(
                    "wbs_codes.json",
                    format!("entry {i} ({}) names no known project", w.flat_code),
                )
            })?;
            if !codes.insert((project, w.flat_code.as_str())) {
                return Err(invalid(
                    "wbs_codes.json",
                    format!("duplicate flat_code {} in project {project}", w.flat_code),
                ));
            }
            if let Some(id) = w.id {
                if !code_ids.insert(id) {
                    return Err(invalid("wbs_codes.json", format!("duplicate id {id}")));
                }
            }
        }
        Ok(())
    }

    /// The project id a budget code belongs to, if it names exactly one known project.
    pub fn project_of(&self, code: &SeedWbsCode) -> Option<i64> {
        match (code.project_id, &code.project_number) {
            (Some(id), None) => self.projects.iter().find(|p| p.id == id).map(|p| p.id),
            (None, Some(number)) => self
                .projects
                .iter()
                .find(|p| &p.project_number == number)
                .map(|p| p.id),
            _ => None,
        }
    }
}

fn invalid(file: &'static str, message: String) -> SeedError {
    SeedError::Invalid { file, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/procore")
    }

    #[test]
    fn demo_seed_loads_with_codes_for_every_project() {
        let seed = Seed::load_dir(&demo_dir()).unwrap();
        assert_eq!(seed.projects.len(), 3);
        assert_eq!(seed.wbs_codes.len(), 75);
        assert!(seed.company.id > i64::from(u32::MAX));
    }

    #[test]
    fn seed_round_trips_through_a_directory() {
        let seed = Seed::load_dir(&demo_dir()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        seed.write_dir(dir.path()).unwrap();
        assert_eq!(Seed::load_dir(dir.path()).unwrap(), seed);
    }

    #[test]
    fn inconsistent_seeds_are_refused_with_the_file_named() {
        let mut seed = Seed::load_dir(&demo_dir()).unwrap();
        seed.projects[1].project_number = "1001".into();
        let err = seed.validate().unwrap_err().to_string();
        assert!(
            err.contains("projects.json") && err.contains("1001"),
            "{err}"
        );

        let mut seed = Seed::load_dir(&demo_dir()).unwrap();
        seed.wbs_codes[0].project_number = Some("9999".into());
        assert!(seed
            .validate()
            .unwrap_err()
            .to_string()
            .contains("wbs_codes.json"));

        let dir = tempfile::tempdir().unwrap();
        Seed::load_dir(&demo_dir())
            .unwrap()
            .write_dir(dir.path())
            .unwrap();
        std::fs::write(
            dir.path().join("vendors.json"),
            r#"[{"id": 1, "nme": "typo"}]"#,
        )
        .unwrap();
        let err = Seed::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("vendors.json"), "{err}");
    }
}
