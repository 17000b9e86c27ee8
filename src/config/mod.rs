//! The pipeline file: where the Sage tables come from, what is excluded, how far back to sync,
//! where staged files go and where the load goes.
//!
//! Every section denies unknown keys, so a typo is an error that names the key, never a silently
//! ignored setting. Relative paths are resolved against the pipeline file's own directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::schema::{EXCLUDED_TRANSACTION_COLUMNS, TRANSACTION_SOURCE_COLUMNS};

mod sections;

pub use sections::*;

/// A parsed, validated pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The Sage company id; part of every origin_id, so two companies never collide in Procore.
    pub company: String,
    /// Where the Sage tables are read from.
    pub source: SourceConfig,
    /// Sage table names (StandardMode=1 names by default).
    #[serde(default)]
    pub tables: TableNames,
    /// Column mappings (the hh2 "Advanced Mappings" step).
    #[serde(default)]
    pub mappings: Mappings,
    /// Deep or incremental, and how far back.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Where and how the staged Parquet snapshot is written.
    #[serde(default)]
    pub stage: StageConfig,
    /// Where the direct costs go.
    pub target: TargetConfig,
    /// Batch size and channel capacities.
    #[serde(default)]
    pub pipeline: ChannelConfig,
    /// How the run reports its outcome.
    #[serde(default)]
    pub report: ReportConfig,
    /// Where state that survives runs is kept.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// How the load resolves ids and sends requests.
    #[serde(default)]
    pub load: LoadConfig,
    /// Who is told how each run ended (none when the section is absent).
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
}

/// `pipeline.batch_rows`: a batch's column buffers are allocated for this many rows at once.
/// Exit statuses with a meaning of their own, which `[report] quarantine_exit_code` may not take.
pub const RESERVED_EXIT_CODES: [u8; 5] = [1, 3, 4, 5, 6];
pub const MAX_BATCH_ROWS: u64 = 1 << 20;
/// `pipeline.channel_capacity`: batches buffered per channel.
pub const MAX_CHANNEL_CAPACITY: u64 = 1_024;
/// `stage.row_group_rows`: a row group is buffered whole before it is written.
pub const MAX_ROW_GROUP_ROWS: u64 = 1 << 24;
/// `stage.part_rows`.
pub const MAX_PART_ROWS: u64 = 1 << 32;
/// `sync.overlap_minutes`: 30 days.
pub const MAX_OVERLAP_MINUTES: u64 = 30 * 24 * 60;
/// `source.partitions`: connections held open at once.
pub const MAX_PARTITIONS: u64 = 64;
/// `source.connect_timeout_secs`: one hour.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 3_600;
/// `source.query_timeout_secs`: one day.
pub const MAX_QUERY_TIMEOUT_SECS: u64 = 86_400;
/// `load.hourly_limit` (benchmarks set limits this high to switch them off).
pub const MAX_HOURLY_LIMIT: u64 = 1_000_000_000;
/// `load.spike_limit`.
pub const MAX_SPIKE_LIMIT: u64 = 100_000_000;
/// `load.max_projects_in_flight`.
pub const MAX_PROJECTS_IN_FLIGHT: u64 = 256;
/// `load.max_retry_secs`: one day.
pub const MAX_RETRY_SECS: u64 = 86_400;
/// `load.backoff_base_ms` and `load.backoff_cap_ms`: one hour.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
/// `notify.timeout_secs`: a run's ending never waits long on a webhook.
pub const MAX_NOTIFY_TIMEOUT_SECS: u64 = 120;
/// `notify.retries`.
pub const MAX_NOTIFY_RETRIES: u64 = 10;

/// Check one numeric key against its range; the error names the key, the range and the value.
pub(crate) fn in_range<T, B>(key: &str, value: T, min: B, max: B) -> std::result::Result<(), String>
where
    T: TryInto<i128> + Copy + std::fmt::Display,
    B: Into<i128> + Copy + std::fmt::Display,
{
    let v: Option<i128> = value.try_into().ok();
    match v {
        Some(v) if v >= min.into() && v <= max.into() => Ok(()),
        _ => Err(format!(
            "key `{key}`: expected {min} to {max}, found {value}"
        )),
    }
}

/// A pipeline file as loaded from disk: the config, where it came from and its hash.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    pub config: PipelineConfig,
    /// sha256 of the file's bytes, recorded in every manifest.
    pub sha256: String,
}

impl Pipeline {
    /// Read, parse and validate a pipeline file; relative paths in it are resolved against its
    /// directory.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let bytes = std::fs::read(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| Error::Config {
            path: path.to_path_buf(),
            message: "not UTF-8 text".into(),
        })?;
        let mut config = PipelineConfig::parse(&text).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        config.resolve_paths(&base);
        Ok(Pipeline {
            path: path.to_path_buf(),
            config,
            sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }
}

impl PipelineConfig {
    /// Parse and validate pipeline TOML text; the error names the key and what was expected.
    pub fn parse(text: &str) -> std::result::Result<PipelineConfig, String> {
        let config: PipelineConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.company.trim().is_empty() {
            return Err("key `company`: expected a non-empty Sage company id".into());
        }
        let exclude = &self.mappings.transaction_jc.exclude;
        for required in EXCLUDED_TRANSACTION_COLUMNS {
            if !exclude.iter().any(|c| c == required) {
                return Err(format!(
                    "key `mappings.transaction_jc.exclude`: must contain {required:?} \
                     (the eight hh2-excluded columns always stay excluded; Employee and Pay_ID are personal data)"
                ));
            }
        }
        for column in exclude {
            if TRANSACTION_SOURCE_COLUMNS.contains(&column.as_str()) {
                return Err(format!(
                    "key `mappings.transaction_jc.exclude`: {column:?} is needed to build direct costs and cannot be excluded"
                ));
            }
        }
        self.validate_numbers()?;
        let l = &self.load;
        for (key, fmt) in [
            ("load.budget_code_format", &l.budget_code_format),
            (
                "load.budget_code_format_with_extra",
                &l.budget_code_format_with_extra,
            ),
        ] {
            if !fmt.contains("{cost_code}") {
                return Err(format!("key `{key}`: expected a format with {{cost_code}} (and {{category}}, {{extra}}), found {fmt:?}"));
            }
        }
        if !["draft", "pending", "revise_and_resubmit", "approved"].contains(&l.status.as_str()) {
            return Err(format!(
                "key `load.status`: expected draft, pending, revise_and_resubmit or approved, found {:?}",
                l.status
            ));
        }
        if let SourceConfig::Mssql(m) = &self.source {
            m.validate()?;
            let t = &self.tables;
            for (key, name) in [
                ("tables.transaction", &t.transaction),
                ("tables.job", &t.job),
                ("tables.account_prefix", &t.account_prefix),
                ("tables.account", &t.account),
                ("tables.invoice", &t.invoice),
            ] {
                check_identifier(key, name)?;
            }
        }
        Ok(())
    }

    /// Every numeric key of the sections all sources share, against its range (the source's
    /// own keys are checked by the source).
    fn validate_numbers(&self) -> std::result::Result<(), String> {
        in_range(
            "sync.overlap_minutes",
            self.sync.overlap_minutes,
            0,
            MAX_OVERLAP_MINUTES,
        )?;
        let share = self.sync.max_removal_share;
        if !(0.0..=1.0).contains(&share) {
            return Err(format!(
                "key `sync.max_removal_share`: expected a share from 0 to 1 (0.05 is 5 %), found {share}"
            ));
        }
        in_range("stage.zstd_level", self.stage.zstd_level, 1, 22)?;
        in_range(
            "stage.row_group_rows",
            self.stage.row_group_rows,
            1,
            MAX_ROW_GROUP_ROWS,
        )?;
        in_range("stage.part_rows", self.stage.part_rows, 1, MAX_PART_ROWS)?;
        in_range(
            "pipeline.batch_rows",
            self.pipeline.batch_rows,
            1,
            MAX_BATCH_ROWS,
        )?;
        in_range(
            "pipeline.channel_capacity",
            self.pipeline.channel_capacity,
            1,
            MAX_CHANNEL_CAPACITY,
        )?;
        let l = &self.load;
        in_range("load.hourly_limit", l.hourly_limit, 1, MAX_HOURLY_LIMIT)?;
        in_range("load.spike_limit", l.spike_limit, 1, MAX_SPIKE_LIMIT)?;
        in_range("load.spike_window_secs", l.spike_window_secs, 1, 3_600)?;
        in_range(
            "load.max_projects_in_flight",
            l.max_projects_in_flight,
            1,
            MAX_PROJECTS_IN_FLIGHT,
        )?;
        in_range(
            "load.request_timeout_secs",
            l.request_timeout_secs,
            1,
            3_600,
        )?;
        in_range("load.max_retry_secs", l.max_retry_secs, 0, MAX_RETRY_SECS)?;
        in_range("load.backoff_base_ms", l.backoff_base_ms, 0, MAX_BACKOFF_MS)?;
        in_range("load.backoff_cap_ms", l.backoff_cap_ms, 0, MAX_BACKOFF_MS)?;
        if let TargetConfig::Procore(p) = &self.target {
            in_range("target.company_id", p.company_id, 1, i64::MAX)?;
        }
        let code = self.report.quarantine_exit_code;
        if RESERVED_EXIT_CODES.contains(&code) {
            return Err(format!(
                "key `report.quarantine_exit_code`: {code} already means something else (1 the run failed, 3 the load did not complete, 4 another run holds the ledger, 5 removals held back by their guard, 6 reconcile found drift): use 0, 2 or 7 to 125"
            ));
        }
        in_range("report.quarantine_exit_code", code, 0, 125)?;
        if let Some(n) = &self.notify {
            n.validate()?;
        }
        Ok(())
    }

    /// The ledger file of this pipeline.
    pub fn ledger_path(&self) -> PathBuf {
        self.ledger
            .path
            .clone()
            .unwrap_or_else(|| self.stage.dir.join("ledger.sqlite"))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = normalize(&base.join(&*p));
            }
        };
        match &mut self.source {
            SourceConfig::Files(f) => resolve(&mut f.dir),
            SourceConfig::Mssql(_) => {}
        }
        resolve(&mut self.stage.dir);
        if let TargetConfig::Sandbox(t) = &mut self.target {
            resolve(&mut t.seed);
            if let Some(p) = t.state_file.as_mut() {
                resolve(p);
            }
        }
        if let Some(p) = self.ledger.path.as_mut() {
            resolve(p);
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the filesystem (the path may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Check that a configured SQL Server identifier (schema, table) is a plain SQL name; `key`
/// names the setting for the error.
pub fn check_identifier(key: &str, name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key `{key}`: {name:?} is not a plain SQL identifier (letters, digits and _, not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests;
