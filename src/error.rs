//! One error type for the library. Variants carry the context a person needs to act:
//! the file, the key, the column, the line.

use std::path::PathBuf;

/// Result with jcsync's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a run. Row-level problems never become an `Error`: they become
/// quarantine rows (see [`crate::quarantine`]) and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file could not be read or did not parse.
    #[error("pipeline file {path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A source table file is missing.
    #[error("source table {table}: file {path} not found")]
    MissingTable { table: String, path: PathBuf },

    /// A source table lacks columns the pipeline needs (a required value or a natural-key column).
    #[error(
        "source table {table} ({path}): {} (found: {found})",
        missing_columns(columns)
    )]
    MissingColumn {
        table: String,
        path: PathBuf,
        /// Every needed column the table lacks.
        columns: Vec<String>,
        found: String,
    },

    /// A source table names a column jcsync reads more than once (names compared trimmed and
    /// case-insensitively, as they are matched): which copy holds the data cannot be told.
    #[error("source table {table} ({location}): column {column} appears {} times (as {}); which one holds the data cannot be told: remove or rename the others", found.len(), found.join(", "))]
    DuplicateColumn {
        table: String,
        /// The file, or the SQL Server table.
        location: String,
        column: String,
        /// Each spelling found, with its position (1-based).
        found: Vec<String>,
    },

    /// The environment variable that should hold the SQL Server password is not set.
    #[error("source: environment variable {var} (named by `source.password_env`) is not set; it must hold the SQL Server password of user {user}")]
    PasswordEnv { var: String, user: String },

    /// SQL Server could not be reached or did not finish the handshake in time.
    #[error("SQL Server {host}:{port}: cannot connect: {message}")]
    SqlConnect {
        host: String,
        port: u16,
        message: String,
    },

    /// SQL Server refused the login. Never carries the password.
    #[error("SQL Server {host}:{port}: login failed for user {user:?}: {message}")]
    SqlLogin {
        host: String,
        port: u16,
        user: String,
        message: String,
    },

    /// A table the pipeline needs is not in the database.
    #[error(
        "SQL Server {server}: table {table} not found (no columns in INFORMATION_SCHEMA.COLUMNS)"
    )]
    SqlMissingTable { server: String, table: String },

    /// A table lacks a column the pipeline needs.
    #[error(
        "SQL Server {server}: table {table}: {} (found: {found})",
        missing_columns(columns)
    )]
    SqlMissingColumn {
        server: String,
        table: String,
        /// Every needed column the table lacks.
        columns: Vec<String>,
        found: String,
    },

    /// A query failed (after its retries, for transaction partitions).
    #[error("SQL Server {server}: {context}: {message}")]
    SqlQuery {
        server: String,
        context: String,
        message: String,
    },

    /// A source file could not be read at all (not a single bad row: the file itself).
    #[error("source file {path}: {message}")]
    Source { path: PathBuf, message: String },

    /// A dimension table row that makes the table unusable (e.g. an empty key).
    #[error("{table} ({path}) line {line}: {message}")]
    Dimension {
        table: String,
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// A run directory failed verification (missing file, checksum mismatch, bad manifest).
    #[error("run {path}: {message}")]
    RunVerification { path: PathBuf, message: String },

    /// Procore credentials are missing or were refused (never shows a secret).
    #[error("procore credentials: {message}")]
    Credentials { message: String },

    /// Procore answered a call with a final error.
    #[error("procore {endpoint}: HTTP {status}: {message}{}", request_id.as_ref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Procore {
        endpoint: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },

    /// Procore stayed unavailable for longer than the pipeline allows retrying.
    #[error("procore {endpoint}: still failing after retrying for {elapsed_secs} s (last: {last}); the load stopped, the staged files and ledger are intact: run the sync again, or replay the run, to resume")]
    ProcoreUnavailable {
        endpoint: String,
        elapsed_secs: u64,
        last: String,
    },

    /// The run was interrupted (Ctrl-C).
    #[error("interrupted: no new requests were sent, in-flight ones were settled; run the sync again to resume")]
    Interrupted,

    /// The ledger database could not be read or written.
    #[error("ledger {path}: {message}")]
    Ledger { path: PathBuf, message: String },

    /// Another sync or replay holds the ledger (see [`crate::ledger::LedgerLock`]): this run
    /// stopped before reading anything.
    #[error("ledger {path} is in use by {holder}: one sync or replay at a time per ledger, so this one stopped before reading Sage or sending anything; run it again once that one has finished (lock file {lock})")]
    LedgerBusy {
        path: PathBuf,
        lock: PathBuf,
        /// The running one: command, pid, host, start time.
        holder: String,
    },

    /// Filesystem error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Arrow compute or schema error (a bug or an unexpected schema, never bad data).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Parquet encoding or decoding error.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// JSON encoding error.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// Ctrl-C stopped a run that sends nothing (a stage-only or dry run).
    #[error("interrupted (Ctrl-C) after {rows} transactions were read: nothing was sent, and the run is left unfinished")]
    InterruptedUnsent { rows: u64 },

    /// A stage could not hand its output on because the next stage stopped. Never the cause
    /// of a failure: the stage that stopped has its own error (see [`Error::is_consequence`]).
    #[error("pipeline stage {stage}: the next stage stopped")]
    NextStageStopped { stage: &'static str },

    /// The enrich stage could not start because the dimension tables were not loaded (the
    /// loader's own error says why).
    #[error("pipeline stage enrich: the dimension tables were not loaded")]
    DimensionsMissing,

    /// A batch between stages lacks a column or has a column of an unexpected type (a bug or an
    /// unexpected staged file, never bad data).
    #[error("batch: {message}")]
    BatchShape { message: String },

    /// An in-memory index outgrew the bound of its positions (far beyond any real company).
    #[error("capacity: {what}")]
    Capacity { what: String },

    /// A file jcsync spilled to disk during the run (invoice index, key runs) reads back wrong.
    #[error("spill file: {message}")]
    Spill { message: String },

    /// A stage's thread ended abnormally (it panicked or was cancelled).
    #[error("pipeline stage {stage}: the task ended abnormally: {message}")]
    TaskFailed {
        stage: &'static str,
        message: String,
    },
}

/// `required column X is missing`, or `required columns X, Y are missing`.
fn missing_columns(columns: &[String]) -> String {
    match columns {
        [one] => format!("required column {one} is missing"),
        many => format!("required columns {} are missing", many.join(", ")),
    }
}

impl Error {
    /// True for an error that only follows from another stage's failure (the next stage
    /// stopped, the dimensions were not loaded): when a run fails, the other error explains it.
    pub fn is_consequence(&self) -> bool {
        matches!(
            self,
            Error::NextStageStopped { .. } | Error::DimensionsMissing
        )
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
