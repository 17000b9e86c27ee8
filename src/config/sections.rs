//! The sections of a pipeline file, as serde reads them, with their defaults.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};

use super::*;

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
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
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
        super::check_identifier("source.schema", &self.schema)?;
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

impl TableNames {
    /// The configured name of the table of `role`.
    pub fn of(&self, role: crate::model::schema::TableRole) -> &str {
        use crate::model::schema::TableRole;
        match role {
            TableRole::Transaction => &self.transaction,
            TableRole::Job => &self.job,
            TableRole::AccountPrefix => &self.account_prefix,
            TableRole::Account => &self.account,
            TableRole::Invoice => &self.invoice,
        }
    }
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
    /// What happens to lines jcsync created whose transaction left Sage.
    pub removals: RemovalMode,
    /// A run that would remove more than this share of the target's lines removes nothing
    /// (exit 5) unless `--allow-removals` confirms.
    pub max_removal_share: f64,
    /// A job with lines in Procore and not one transaction in the snapshot.
    pub vanished_jobs: VanishedJobs,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            kind: SyncKind::Deep,
            since: Since::BeginningOfTime,
            overlap_minutes: default_overlap_minutes(),
            removals: RemovalMode::Apply,
            max_removal_share: 0.05,
            vanished_jobs: VanishedJobs::Keep,
        }
    }
}

/// `[sync] removals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalMode {
    /// Remove them from Procore.
    Apply,
    /// List them (summary, report.json, requests.ndjson) and send nothing.
    Plan,
    /// Neither look for them nor remove them.
    Off,
}

/// `[sync] vanished_jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VanishedJobs {
    /// Report them and keep their lines (Sage moves closed jobs out of the current table).
    Keep,
    /// Remove their lines like any other.
    Remove,
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

/// `[notify]`: a webhook told how each run ended (Slack and Teams incoming webhooks, or any
/// endpoint that takes a JSON POST). The URL is a secret (it embeds a token): the file names
/// only the environment variable that holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Name of the environment variable holding the webhook URL.
    pub webhook_url_env: String,
    /// Which runs are told: `failure` (any non-zero exit status or error) or `always`.
    #[serde(default)]
    pub on: NotifyOn,
    /// Timeout of one POST, seconds.
    #[serde(default = "default_notify_timeout_secs")]
    pub timeout_secs: u64,
    /// Further attempts after a connection error, a timeout, a 429 or a 5xx.
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
}

/// `[notify] on`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Only runs that failed: any non-zero exit status, or an error.
    #[default]
    Failure,
    /// Every run.
    Always,
}

const fn default_notify_timeout_secs() -> u64 {
    10
}

const fn default_notify_retries() -> u32 {
    2
}

impl NotifyConfig {
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        if self.webhook_url_env.trim().is_empty() {
            return Err("key `notify.webhook_url_env`: expected the NAME of an environment variable holding the webhook URL (the URL itself never goes in the file)".into());
        }
        in_range(
            "notify.timeout_secs",
            self.timeout_secs,
            1,
            MAX_NOTIFY_TIMEOUT_SECS,
        )?;
        in_range("notify.retries", self.retries, 0, MAX_NOTIFY_RETRIES)?;
        Ok(())
    }
}
