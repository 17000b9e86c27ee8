//! Extract: read the Sage tables into typed Arrow batches. Dimension tables are read whole (they
//! are small: the build side of the joins); the transaction table streams in batches.
//!
//! A [`Source`] ([`source`]) is what the pipeline asks of Sage; [`files`] (an export directory,
//! CSV or Parquet) and [`mssql`] (a SQL Server copy) implement it, and [`SageSource`], here,
//! opens the one a pipeline file names. Both hand out raw batches; [`typing`] drops the rows that
//! are not costs and types the cells the same way for both ([`convert`], cell by cell). [`keys`]
//! is the key scan ([`Source::line_keys`]): the line hashes of every cost transaction a deep
//! sync would see, from the key columns only, for finding transactions that were purged.

pub mod convert;
pub mod files;
pub mod keys;
pub mod mssql;
pub mod source;
pub mod typing;

use crate::config::{PipelineConfig, Since, SourceConfig};
use crate::error::Result;
use crate::model::schema::TableRole;
use files::FileExportSource;
pub use keys::{KeyBatch, KeyBatches, KEY_SCAN_COLUMNS};
pub use mssql::ReadWindow;
use mssql::SqlServerSource;
pub use source::{
    add_counts, DimensionTable, RawBatch, RawBatches, SendRawBatches, Source, TABLE_ROLES,
};
pub use typing::{drop_non_cost_rows, type_batch, TypedBatch};

/// An opened Sage source, the one the pipeline file names: every table was found and has its
/// required columns. Its methods are those of [`Source`], so that callers need not import it.
pub enum SageSource {
    /// `[source] kind = "files"`.
    Files(FileExportSource),
    /// `[source] kind = "mssql"`.
    SqlServer(SqlServerSource),
}

impl SageSource {
    /// Check that every table of the pipeline exists with its required columns, before anything
    /// is read or staged. Reads every row that `[sync] since` keeps (deep sync).
    pub fn open(config: &PipelineConfig) -> Result<SageSource> {
        SageSource::open_window(config, None)
    }

    /// As [`SageSource::open`], reading only transactions stamped (Date_Stamp + Time_Stamp) at
    /// or after `changed_since` when it is set (incremental syncs; SQL Server sources only).
    pub fn open_window(
        config: &PipelineConfig,
        changed_since: Option<chrono::NaiveDateTime>,
    ) -> Result<SageSource> {
        let window = ReadWindow {
            since: match config.sync.since {
                Since::BeginningOfTime => None,
                Since::Date(d) => Some(d),
            },
            changed_since,
        };
        Ok(match &config.source {
            SourceConfig::Files(f) => SageSource::Files(FileExportSource::open(config, f, window)?),
            SourceConfig::Mssql(m) => {
                SageSource::SqlServer(SqlServerSource::open(config, m, window)?)
            }
        })
    }

    /// The source, as the trait.
    pub fn as_source(&self) -> &dyn Source {
        match self {
            SageSource::Files(s) => s,
            SageSource::SqlServer(s) => s,
        }
    }

    /// See [`Source::describe`].
    pub fn describe(&self) -> String {
        self.as_source().describe()
    }

    /// See [`Source::table_name`].
    pub fn table_name(&self, role: TableRole) -> &str {
        self.as_source().table_name(role)
    }

    /// See [`Source::dimension_batches`].
    pub fn dimension_batches(
        &self,
        role: TableRole,
    ) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + '_>> {
        self.as_source().dimension_batches(role)
    }

    /// See [`Source::read_dimension`].
    pub fn read_dimension(&self, role: TableRole) -> Result<DimensionTable> {
        self.as_source().read_dimension(role)
    }

    /// See [`Source::raw_transactions`].
    pub fn raw_transactions(&self, cost_rows_only: bool) -> Result<SendRawBatches> {
        self.as_source().raw_transactions(cost_rows_only)
    }

    /// See [`Source::line_keys`].
    pub fn line_keys(&self, company: &str) -> Result<KeyBatches> {
        self.as_source().line_keys(company)
    }

    /// See [`Source::transactions`].
    pub fn transactions(&self) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + Send>> {
        self.as_source().transactions()
    }

    /// See [`Source::estimated_transactions`] ([`files::estimate_rows`] for files; None for a
    /// SQL Server source).
    pub fn estimated_transactions(&self) -> Option<u64> {
        self.as_source().estimated_transactions()
    }

    /// See [`Source::transaction_table`].
    pub fn transaction_table(&self) -> &str {
        self.as_source().transaction_table()
    }

    /// See [`Source::window`].
    pub fn window(&self) -> ReadWindow {
        self.as_source().window()
    }
}

impl Source for SageSource {
    fn describe(&self) -> String {
        self.as_source().describe()
    }

    fn table_name(&self, role: TableRole) -> &str {
        self.as_source().table_name(role)
    }

    fn transaction_table(&self) -> &str {
        self.as_source().transaction_table()
    }

    fn window(&self) -> ReadWindow {
        self.as_source().window()
    }

    fn estimated_transactions(&self) -> Option<u64> {
        self.as_source().estimated_transactions()
    }

    fn raw_dimension(&self, role: TableRole) -> Result<RawBatches<'_>> {
        self.as_source().raw_dimension(role)
    }

    fn raw_transactions(&self, cost_rows_only: bool) -> Result<SendRawBatches> {
        self.as_source().raw_transactions(cost_rows_only)
    }

    fn dimension_batches(
        &self,
        role: TableRole,
    ) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + '_>> {
        self.as_source().dimension_batches(role)
    }

    fn read_dimension(&self, role: TableRole) -> Result<DimensionTable> {
        self.as_source().read_dimension(role)
    }

    fn transactions(&self) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + Send>> {
        self.as_source().transactions()
    }

    fn line_keys(&self, company: &str) -> Result<KeyBatches> {
        self.as_source().line_keys(company)
    }
}
