//! The source part of `jcsync check` (the hh2 "Connect" step for Sage): reaches the source and
//! lists every table and column the pipeline needs, with whether it exists and how many rows
//! each table holds.

use std::fmt::Write as _;

use crate::config::{FileFormat, Pipeline, SourceConfig};
use crate::error::{Error, Result};
use crate::extract::files::table_path;
use crate::extract::{mssql, TABLE_ROLES};
use crate::model::schema::TableRole;

/// One column the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCheck {
    pub column: String,
    pub required: bool,
    pub present: bool,
}

/// One table the pipeline needs.
#[derive(Debug, Clone)]
pub struct TableCheck {
    pub entity: &'static str,
    pub table: String,
    pub exists: bool,
    pub rows: Option<u64>,
    pub columns: Vec<ColumnCheck>,
}

impl TableCheck {
    /// Columns the pipeline needs that the table lacks.
    pub fn missing(&self) -> Vec<&ColumnCheck> {
        self.columns.iter().filter(|c| !c.present).collect()
    }
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub source: String,
    pub tables: Vec<TableCheck>,
}

impl CheckReport {
    /// Every table and every needed column exists.
    pub fn all_present(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.exists && t.missing().is_empty())
    }

    /// The listing printed by the command.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "source {}", self.source);
        for t in &self.tables {
            if !t.exists {
                let _ = writeln!(s, "  {} {}: MISSING TABLE", t.entity, t.table);
                continue;
            }
            let _ = writeln!(
                s,
                "  {} {}: {} rows",
                t.entity,
                t.table,
                t.rows.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
            );
            for c in &t.columns {
                let state = match (c.present, c.required) {
                    (true, _) => "ok",
                    (false, true) => "MISSING (required: the run cannot start)",
                    (false, false) => "MISSING (optional: it would be read as NULL)",
                };
                let _ = writeln!(s, "    {:<28} {state}", c.column);
            }
        }
        let missing: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| {
                let table = t.table.clone();
                let mut v: Vec<String> = t
                    .missing()
                    .iter()
                    .map(|c| format!("{table}.{}", c.column))
                    .collect();
                if !t.exists {
                    v = vec![format!("table {table}")];
                }
                v
            })
            .collect();
        if missing.is_empty() {
            let _ = write!(
                s,
                "all {} tables and their columns are present",
                self.tables.len()
            );
        } else {
            let _ = write!(s, "missing: {}", missing.join(", "));
        }
        s
    }
}

fn columns_against(role: TableRole, found: &[String]) -> Vec<ColumnCheck> {
    role.columns()
        .iter()
        .map(|spec| ColumnCheck {
            column: spec.source.to_string(),
            required: spec.must_exist(),
            present: found
                .iter()
                .any(|f| f.trim().eq_ignore_ascii_case(spec.source)),
        })
        .collect()
}

/// Check a pipeline's source. A source that cannot be reached at all (wrong password,
/// unreachable host, unreadable file) is an error; missing tables and columns are in the report.
pub async fn check(pipeline: &Pipeline) -> Result<CheckReport> {
    let config = &pipeline.config;
    let mut tables = Vec::new();
    match &config.source {
        SourceConfig::Mssql(m) => {
            let mut client = mssql::connect(m).await?;
            for role in TABLE_ROLES {
                let table = config.tables.of(role).to_string();
                let found = mssql::table_columns(&mut client, m, &table).await?;
                let exists = !found.is_empty();
                let rows = if exists {
                    Some(mssql::count_rows(&mut client, m, &table).await?)
                } else {
                    None
                };
                tables.push(TableCheck {
                    entity: role.entity(),
                    columns: columns_against(role, &found),
                    table,
                    exists,
                    rows,
                });
            }
            let _ = client.close().await;
        }
        SourceConfig::Files(f) => {
            for role in TABLE_ROLES {
                let table = config.tables.of(role).to_string();
                let path = table_path(&f.dir, &table, f.format);
                if !path.is_file() {
                    tables.push(TableCheck {
                        entity: role.entity(),
                        columns: columns_against(role, &[]),
                        table,
                        exists: false,
                        rows: None,
                    });
                    continue;
                }
                let (header, rows) = file_header_and_rows(&path, f.format)?;
                tables.push(TableCheck {
                    entity: role.entity(),
                    columns: columns_against(role, &header),
                    table,
                    exists: true,
                    rows: Some(rows),
                });
            }
        }
    }
    Ok(CheckReport {
        source: config.source.describe(),
        tables,
    })
}

fn file_header_and_rows(path: &std::path::Path, format: FileFormat) -> Result<(Vec<String>, u64)> {
    let source_err = |message: String| Error::Source {
        path: path.to_path_buf(),
        message,
    };
    match format {
        FileFormat::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(path)
                .map_err(|e| source_err(e.to_string()))?;
            let header = r
                .byte_headers()
                .map_err(|e| source_err(e.to_string()))?
                .iter()
                .map(|h| {
                    String::from_utf8_lossy(h)
                        .trim_start_matches('\u{feff}')
                        .to_string()
                })
                .collect();
            let mut rows = 0;
            let mut rec = csv::ByteRecord::new();
            while r
                .read_byte_record(&mut rec)
                .map_err(|e| source_err(e.to_string()))?
            {
                rows += 1;
            }
            Ok((header, rows))
        }
        FileFormat::Parquet => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| source_err(e.to_string()))?;
            let header = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let rows = b.metadata().file_metadata().num_rows() as u64;
            Ok((header, rows))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixture_files_have_every_table_and_column() {
        let config = crate::test_support::fixture_config();
        let p = Pipeline {
            path: "fixture.toml".into(),
            config,
            sha256: String::new(),
        };
        let r = check(&p).await.expect("checks");
        assert!(r.all_present(), "{}", r.render());
        let t = r
            .tables
            .iter()
            .find(|t| t.table == "JCT_CURRENT__TRANSACTION")
            .expect("transactions");
        assert_eq!(t.rows, Some(51));
        assert!(r.render().contains("all 5 tables"));
    }

    #[tokio::test]
    async fn a_missing_file_and_column_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sage");
        for e in std::fs::read_dir(&src).expect("fixtures") {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_owned();
            if name == "GLM_MASTER__ACCOUNT.csv" {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            let text = if name == "JCM_MASTER__JOB.csv" {
                text.replacen("Status,", "Stat,", 1)
            } else {
                text
            };
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let mut config = crate::test_support::fixture_config();
        if let SourceConfig::Files(f) = &mut config.source {
            f.dir = dir.path().to_path_buf();
        }
        let p = Pipeline {
            path: "x.toml".into(),
            config,
            sha256: String::new(),
        };
        let r = check(&p).await.expect("checks");
        assert!(!r.all_present());
        let text = r.render();
        assert!(
            text.contains("GLM_MASTER__ACCOUNT: MISSING TABLE"),
            "{text}"
        );
        assert!(text.contains("JCM_MASTER__JOB.Status"), "{text}");
    }
}
