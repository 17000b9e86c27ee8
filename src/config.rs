//! The pipeline file: where the Sage tables come from, what is excluded, how far back to sync,
//! where staged files go and where the load goes.
//!
//! Every section denies unknown keys, so a typo is an error that names the key, never a silently
//! ignored setting. Relative paths are resolved against the pipeline file's own directory.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::schema::{EXCLUDED_TRANSACTION_COLUMNS, TRANSACTION_SOURCE_COLUMNS};

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
}

/// `[ledger]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// SQLite file; default `<stage.dir>/ledger.sqlite`.
    pub path: Option<PathBuf>,
}

/// Source of the Sage tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// One file per table in a directory, named after the table (`JCT_CURRENT__TRANSACTION.csv`).
    Files(FilesSource),
    /// The Sage tables in a SQL Server copy (Sage SQL Replicator), read over TDS.
    Mssql(MssqlSource),
}

impl SourceConfig {
    /// A short description of the source for manifests and logs (never a password).
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Files(f) => format!("files:{}:{}", f.format.extension(), f.dir.display()),
            SourceConfig::Mssql(m) => format!(
                "mssql://{}@{}:{}/{}/{}",
                m.user, m.host, m.port, m.database, m.schema
            ),
        }
    }
}

/// `[source] kind = "mssql"`: a SQL Server database holding the Sage tables.
///
/// The password is never in the file: `password_env` names the environment variable that holds
/// it. Encryption is required and the server certificate is checked against the system roots
/// unless `trust_server_certificate = true` says otherwise (test servers, self-signed certs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MssqlSource {
    pub host: String,
    #[serde(default = "default_mssql_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    /// Name of the environment variable holding the password.
    pub password_env: String,
    /// TLS: `required` (the default: everything encrypted, or no connection) or `off` (only the
    /// login packet is encrypted, as old servers do).
    #[serde(default)]
    pub encrypt: MssqlEncrypt,
    /// Accept any server certificate (self-signed test servers). Off by default.
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// Seconds to wait for TCP connect + TLS + login before giving up.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Seconds one query may take to answer (per batch of rows read).
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    /// Connections reading the transaction table at once (one Job at a time each).
    #[serde(default = "default_partitions")]
    pub partitions: usize,
    /// Schema holding the Sage tables.
    #[serde(default = "default_schema")]
    pub schema: String,
}

/// `encrypt` of an mssql source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MssqlEncrypt {
    /// Encrypt the whole connection; refuse a server that cannot.
    #[default]
    Required,
    /// Encrypt only the login (legacy servers). Not recommended: job cost data crosses in clear.
    Off,
}

const fn default_mssql_port() -> u16 {
    1433
}

const fn default_connect_timeout_secs() -> u64 {
    15
}

const fn default_query_timeout_secs() -> u64 {
    300
}

const fn default_partitions() -> usize {
    4
}

fn default_schema() -> String {
    "dbo".into()
}

/// `[source] kind = "files"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    /// Directory holding one file per table.
    pub dir: PathBuf,
    /// `csv` or `parquet`.
    pub format: FileFormat,
}

impl MssqlSource {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("key `source.host`: expected a host name or address".into());
        }
        in_range("source.port", self.port, 1, 65_535)?;
        in_range("source.partitions", self.partitions, 1, MAX_PARTITIONS)?;
        in_range(
            "source.connect_timeout_secs",
            self.connect_timeout_secs,
            1,
            MAX_CONNECT_TIMEOUT_SECS,
        )?;
        in_range(
            "source.query_timeout_secs",
            self.query_timeout_secs,
            1,
            MAX_QUERY_TIMEOUT_SECS,
        )?;
        if self.password_env.trim().is_empty() {
            return Err("key `source.password_env`: expected the NAME of an environment variable holding the password".into());
        }
        crate::extract::mssql::sql::check_identifier("source.schema", &self.schema)?;
        Ok(())
    }
}

/// Format of exported table files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Parquet,
}

impl FileFormat {
    /// The file extension for this format.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Sage table names. Older installs use names like `CURRENT_JCT_TRANSACTION`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableNames {
    pub transaction: String,
    pub job: String,
    pub account_prefix: String,
    pub account: String,
    pub invoice: String,
}

impl Default for TableNames {
    fn default() -> Self {
        TableNames {
            transaction: "JCT_CURRENT__TRANSACTION".into(),
            job: "JCM_MASTER__JOB".into(),
            account_prefix: "GLM_MASTER__ACCOUNT_PREFIX_A".into(),
            account: "GLM_MASTER__ACCOUNT".into(),
            invoice: "APM_MASTER__INVOICE".into(),
        }
    }
}

/// `[mappings]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mappings {
    pub transaction_jc: TransactionMapping,
}

/// `[mappings.transaction_jc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionMapping {
    /// Columns of Transaction (JC) that must never reach a staged file, a log or Procore.
    pub exclude: Vec<String>,
}

impl Default for TransactionMapping {
    fn default() -> Self {
        TransactionMapping {
            exclude: EXCLUDED_TRANSACTION_COLUMNS
                .iter()
                .map(|c| c.to_string())
                .collect(),
        }
    }
}

/// `[sync]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    #[serde(rename = "type")]
    pub kind: SyncKind,
    /// Lower bound on Accounting_Date.
    pub since: Since,
    /// Incremental syncs re-read rows stamped up to this many minutes before the watermark, so a
    /// row written while the last run was reading is not missed.
    pub overlap_minutes: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            kind: SyncKind::Deep,
            since: Since::BeginningOfTime,
            overlap_minutes: default_overlap_minutes(),
        }
    }
}

const fn default_overlap_minutes() -> u32 {
    60
}

/// Deep (everything in the window) or incremental (what changed since the last watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    Deep,
    Incremental,
}

/// `since = "beginning-of-time" | "YYYY-MM-DD"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    BeginningOfTime,
    Date(NaiveDate),
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "beginning-of-time" {
            return Ok(Since::BeginningOfTime);
        }
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map(Since::Date)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected \"beginning-of-time\" or a date YYYY-MM-DD, found {s:?}"
                ))
            })
    }
}

impl std::fmt::Display for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Since::BeginningOfTime => f.write_str("beginning-of-time"),
            Since::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
        }
    }
}

/// `[stage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Directory that receives one `<run-id>/` folder per run.
    pub dir: PathBuf,
    pub compression: Compression,
    /// zstd level (1 = fastest … 22); used when `compression = "zstd"`.
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Rows per staged part file before a new `part-*.parquet` is started.
    pub part_rows: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig {
            dir: PathBuf::from("runs"),
            compression: Compression::Zstd,
            zstd_level: default_zstd_level(),
            row_group_rows: default_row_group_rows(),
            part_rows: default_part_rows(),
        }
    }
}

const fn default_zstd_level() -> i32 {
    1
}

const fn default_row_group_rows() -> usize {
    65_536
}

const fn default_part_rows() -> usize {
    1_000_000
}

/// Parquet compression codec of staged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

/// `[target]`: where the planned direct costs go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetConfig {
    /// Plan only: write the requests that would be sent to `requests.ndjson`.
    DryRun(DryRunTarget),
    /// The embedded Procore sandbox, seeded from a directory, started for the run.
    Sandbox(SandboxTarget),
    /// A Procore company (or a running `jcsync sandbox`).
    Procore(ProcoreTarget),
}

/// `[target] kind = "dry-run"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunTarget {}

/// `[target] kind = "sandbox"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxTarget {
    /// Seed directory (projects, vendors, budget codes, credentials).
    pub seed: PathBuf,
    /// Keep the sandbox's data in this file across runs (so a second run sees the first's costs).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Apply Procore's default rate limits in the sandbox; `false` turns them off (benchmarks).
    #[serde(default = "default_sandbox_rate_limit")]
    pub rate_limit: bool,
}

const fn default_sandbox_rate_limit() -> bool {
    true
}

/// `[target] kind = "procore"`. Secrets are read from the environment variables named here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcoreTarget {
    /// e.g. `https://api.procore.com` (or `https://sandbox.procore.com`).
    pub api_url: String,
    /// e.g. `https://login.procore.com`.
    pub login_url: String,
    /// The Procore company id (may exceed 32 bits).
    pub company_id: i64,
    /// Name of the environment variable holding the OAuth client id.
    pub client_id_env: String,
    /// Name of the environment variable holding the OAuth client secret.
    pub client_secret_env: String,
}

/// `[load]`: how planned direct costs are resolved and sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// How a Sage job finds its Procore project: by `project_number` or by `origin_id`.
    pub project_match: ProjectMatch,
    /// Flat budget code of a line without Extra.
    pub budget_code_format: String,
    /// Flat budget code of a line with an Extra (sub job).
    pub budget_code_format_with_extra: String,
    /// Create budget codes missing from a project (bulk_create); otherwise quarantine the rows.
    pub create_missing_budget_codes: bool,
    /// Status of created direct costs.
    pub status: String,
    /// Requests allowed per hour (the app's Procore limit).
    pub hourly_limit: u32,
    /// Requests allowed per spike window.
    pub spike_limit: u32,
    /// Length of the spike window, seconds.
    pub spike_window_secs: u64,
    /// Projects loaded at once (writes to one project are always serialized).
    pub max_projects_in_flight: usize,
    /// Timeout of one HTTP request, seconds.
    pub request_timeout_secs: u64,
    /// Give up after retrying one request for this long, seconds.
    pub max_retry_secs: u64,
    /// First backoff step, milliseconds.
    pub backoff_base_ms: u64,
    /// Longest backoff step, milliseconds.
    pub backoff_cap_ms: u64,
    /// Send everything again as updates, even what the ledger says is unchanged.
    pub force: bool,
}

/// `[load] project_match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectMatch {
    ProjectNumber,
    OriginId,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            project_match: ProjectMatch::ProjectNumber,
            budget_code_format: "{cost_code}.{category}".into(),
            budget_code_format_with_extra: "{extra}.{cost_code}.{category}".into(),
            create_missing_budget_codes: false,
            status: "approved".into(),
            hourly_limit: default_hourly_limit(),
            spike_limit: default_spike_limit(),
            spike_window_secs: 10,
            max_projects_in_flight: 4,
            request_timeout_secs: 60,
            max_retry_secs: default_max_retry_secs(),
            backoff_base_ms: 250,
            backoff_cap_ms: 30_000,
            force: false,
        }
    }
}

const fn default_hourly_limit() -> u32 {
    3600
}

const fn default_spike_limit() -> u32 {
    100
}

/// Five minutes: long enough to ride out a deploy, short enough that a person is told soon.
const fn default_max_retry_secs() -> u64 {
    300
}

/// `[pipeline]`: batch size and bounded channel capacity between stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// Rows per Arrow batch read from the transaction table.
    pub batch_rows: usize,
    /// Capacity (in batches) of every channel between two stages.
    pub channel_capacity: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            batch_rows: default_batch_rows(),
            channel_capacity: default_channel_capacity(),
        }
    }
}

const fn default_batch_rows() -> usize {
    8192
}

/// Batches buffered between two stages. 2 keeps every stage fed (the 2M-row anchor ran as fast
/// as with 4) at ~25 MiB less peak RSS (BENCHMARKS.md).
const fn default_channel_capacity() -> usize {
    2
}

/// `[report]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Exit status of a run that completed but quarantined rows.
    pub quarantine_exit_code: u8,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            quarantine_exit_code: 2,
        }
    }
}

// Upper bounds of the numeric keys: far past any useful value, well short of what would
// exhaust memory (a batch's buffers are allocated up front) or overflow a duration.

/// `pipeline.batch_rows`: a batch's column buffers are allocated for this many rows at once.
/// Exit statuses with a meaning of their own, which `[report] quarantine_exit_code` may not take.
pub const RESERVED_EXIT_CODES: [u8; 3] = [1, 3, 4];
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

/// Check one numeric key against its range; the error names the key, the range and the value.
fn in_range<T, B>(key: &str, value: T, min: B, max: B) -> std::result::Result<(), String>
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
                crate::extract::mssql::sql::check_identifier(key, name)?;
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
                "key `report.quarantine_exit_code`: {code} already means something else (1 the run failed, 3 the load did not complete, 4 another run holds the ledger): use 0, 2 or 5 to 125"
            ));
        }
        in_range("report.quarantine_exit_code", code, 0, 125)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
company = "DEMO"
[source]
kind = "files"
dir = "fixtures/sage"
format = "csv"
[target]
kind = "dry-run"
"#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = PipelineConfig::parse(MINIMAL).expect("parses");
        assert_eq!(c.tables.transaction, "JCT_CURRENT__TRANSACTION");
        assert_eq!(c.mappings.transaction_jc.exclude.len(), 8);
        assert_eq!(c.sync.kind, SyncKind::Deep);
        assert_eq!(c.sync.since, Since::BeginningOfTime);
        assert_eq!(c.stage.compression, Compression::Zstd);
        assert_eq!(c.pipeline.channel_capacity, 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("format = \"csv\"", "format = \"csv\"\nfromat = 1");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("fromat"), "{err}");
    }

    #[test]
    fn unknown_source_kind_is_named() {
        let text = MINIMAL.replace("kind = \"files\"", "kind = \"ftp\"");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("ftp") && err.contains("files"), "{err}");
    }

    #[test]
    fn bad_since_says_what_was_expected() {
        let text = format!("{MINIMAL}\n[sync]\nsince = \"last tuesday\"\n");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(
            err.contains("beginning-of-time") && err.contains("since"),
            "{err}"
        );
    }

    #[test]
    fn since_date_parses() {
        let text = format!("{MINIMAL}\n[sync]\ntype = \"deep\"\nsince = \"2024-01-01\"\n");
        let c = PipelineConfig::parse(&text).expect("parses");
        assert_eq!(c.sync.since.to_string(), "2024-01-01");
    }

    #[test]
    fn zstd_level_defaults_to_1_and_is_range_checked() {
        assert_eq!(
            PipelineConfig::parse(MINIMAL)
                .expect("parses")
                .stage
                .zstd_level,
            1
        );
        let ok = format!("{MINIMAL}\n[stage]\nzstd_level = 9\n");
        assert_eq!(
            PipelineConfig::parse(&ok).expect("parses").stage.zstd_level,
            9
        );
        for bad in [0, 23] {
            let text = format!("{MINIMAL}\n[stage]\nzstd_level = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains("stage.zstd_level") && err.contains(&bad.to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn quarantine_exit_code_may_not_take_a_status_that_means_something_else() {
        for bad in [1u16, 3, 4, 126, 255] {
            let text = format!("{MINIMAL}\n[report]\nquarantine_exit_code = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains("key `report.quarantine_exit_code`") && err.contains(&bad.to_string()),
                "{bad}: {err}"
            );
        }
        for good in [0u16, 2, 5, 125] {
            let text = format!("{MINIMAL}\n[report]\nquarantine_exit_code = {good}\n");
            let config = PipelineConfig::parse(&text).expect("a free exit status is accepted");
            assert_eq!(u16::from(config.report.quarantine_exit_code), good);
        }
    }

    #[test]
    fn every_numeric_key_has_an_upper_bound_named_in_its_error() {
        // (section, key, first value past the bound)
        let cases: &[(&str, &str, u64)] = &[
            ("pipeline", "batch_rows", MAX_BATCH_ROWS + 1),
            ("pipeline", "batch_rows", 10_000_000_000),
            ("pipeline", "channel_capacity", MAX_CHANNEL_CAPACITY + 1),
            ("stage", "row_group_rows", MAX_ROW_GROUP_ROWS + 1),
            ("stage", "part_rows", MAX_PART_ROWS + 1),
            ("stage", "zstd_level", 23),
            ("sync", "overlap_minutes", MAX_OVERLAP_MINUTES + 1),
            ("load", "hourly_limit", MAX_HOURLY_LIMIT + 1),
            ("load", "spike_limit", MAX_SPIKE_LIMIT + 1),
            ("load", "spike_window_secs", 3_601),
            ("load", "max_projects_in_flight", MAX_PROJECTS_IN_FLIGHT + 1),
            ("load", "request_timeout_secs", 3_601),
            ("load", "max_retry_secs", MAX_RETRY_SECS + 1),
            ("load", "backoff_base_ms", MAX_BACKOFF_MS + 1),
            ("load", "backoff_cap_ms", MAX_BACKOFF_MS + 1),
        ];
        for (section, key, bad) in cases {
            let text = format!("{MINIMAL}\n[{section}]\n{key} = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("key `{section}.{key}`")) && err.contains(&bad.to_string()),
                "{section}.{key} = {bad}: {err}"
            );
        }
        // The bounds themselves are accepted.
        let text = format!(
            "{MINIMAL}\n[pipeline]\nbatch_rows = {MAX_BATCH_ROWS}\n[load]\nhourly_limit = {MAX_HOURLY_LIMIT}\n"
        );
        assert!(PipelineConfig::parse(&text).is_ok());
        let source_cases: &[(&str, u64)] = &[
            ("partitions", MAX_PARTITIONS + 1),
            ("connect_timeout_secs", MAX_CONNECT_TIMEOUT_SECS + 1),
            ("query_timeout_secs", MAX_QUERY_TIMEOUT_SECS + 1),
            ("port", 0),
        ];
        for (key, bad) in source_cases {
            let text = MSSQL.replace("user = ", &format!("{key} = {bad}\nuser = "));
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("key `source.{key}`")) && err.contains(&bad.to_string()),
                "source.{key} = {bad}: {err}"
            );
        }
        let procore = MINIMAL.replace(
            "kind = \"dry-run\"",
            "kind = \"procore\"\napi_url = \"https://x\"\nlogin_url = \"https://y\"\ncompany_id = 0\n\
             client_id_env = \"A\"\nclient_secret_env = \"B\"",
        );
        let err = PipelineConfig::parse(&procore).unwrap_err();
        assert!(err.contains("key `target.company_id`"), "{err}");
    }

    #[test]
    fn dropping_a_personal_data_column_from_exclude_is_refused() {
        let text = format!(
            "{MINIMAL}\n[mappings.transaction_jc]\nexclude = [\"Commitment_CO\", \"Credit_Account\"]\n"
        );
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("Debit_Account"), "{err}");
    }

    #[test]
    fn excluding_a_needed_column_is_refused() {
        let mut ex: Vec<String> = EXCLUDED_TRANSACTION_COLUMNS
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        ex.push("\"Amount\"".into());
        let text = format!(
            "{MINIMAL}\n[mappings.transaction_jc]\nexclude = [{}]\n",
            ex.join(", ")
        );
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("Amount"), "{err}");
    }

    const MSSQL: &str = r#"
company = "DEMO"
[source]
kind = "mssql"
host = "sql01"
database = "Sage"
user = "reader"
password_env = "SAGE_PW"
[target]
kind = "dry-run"
"#;

    #[test]
    fn mssql_source_gets_safe_defaults() {
        let c = PipelineConfig::parse(MSSQL).expect("parses");
        let SourceConfig::Mssql(m) = &c.source else {
            panic!("mssql source")
        };
        assert_eq!(m.port, 1433);
        assert_eq!(m.encrypt, MssqlEncrypt::Required);
        assert!(!m.trust_server_certificate);
        assert_eq!(m.partitions, 4);
        assert_eq!(m.schema, "dbo");
        assert_eq!(c.sync.overlap_minutes, 60);
        assert_eq!(c.source.describe(), "mssql://reader@sql01:1433/Sage/dbo");
    }

    #[test]
    fn mssql_password_in_the_file_is_refused_and_identifiers_are_checked() {
        let text = MSSQL.replace("password_env", "password = \"x\"\npassword_env");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("password"), "{err}");
        let text = format!("{MSSQL}\n[tables]\njob = \"JOB]; DROP TABLE x --\"\n");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("tables.job"), "{err}");
        let text = MSSQL.replace("user = ", "schema = \"db o\"\nuser = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("source.schema"), "{err}");
        let text = MSSQL.replace("user = ", "partitions = 0\nuser = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("source.partitions"), "{err}");
    }

    #[test]
    fn unknown_key_inside_source_variant_is_refused() {
        let text = MINIMAL.replace("dir = ", "directory = \"x\"\ndir = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("directory"), "{err}");
    }
}

#[cfg(test)]
mod pipeline_file_tests {
    use super::*;

    fn load(name: &str) -> Pipeline {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join(name);
        Pipeline::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn bundled_pipeline_files_parse() {
        let demo = load("demo.toml");
        assert_eq!(demo.config.company, "DEMO");
        assert!(
            demo.config.stage.dir.is_absolute(),
            "resolved against the file's directory"
        );
        assert_eq!(demo.sha256.len(), 64);
        assert_eq!(load("deep-sync.toml").config.sync.kind, SyncKind::Deep);
        assert_eq!(
            load("incremental.toml").config.sync.kind,
            SyncKind::Incremental
        );
    }

    #[test]
    fn relative_paths_are_normalized() {
        assert_eq!(
            normalize(Path::new("/a/b/../runs")),
            PathBuf::from("/a/runs")
        );
        assert_eq!(normalize(Path::new("/a/./b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn unreadable_pipeline_names_the_file() {
        let err = Pipeline::load(Path::new("/nonexistent/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/p.toml"), "{err}");
    }
}
