//! Extract: read the Sage tables into typed Arrow batches. Dimension tables are read whole (they
//! are small: the build side of the joins); the transaction table streams in batches.

pub mod convert;
pub mod files;
pub mod mssql;
pub mod typing;

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::config::{MssqlSource, PipelineConfig, Since, SourceConfig};
use crate::error::{Error, Result};
use crate::model::schema::{typed_schema, TableRole};
use crate::quarantine::QuarantineBatch;
use convert::CellProblem;
use files::TableReader;
pub use mssql::ReadWindow;
pub use typing::{drop_non_cost_rows, type_batch, TypedBatch};

/// Source columns renamed to their Arrow names but not yet typed, plus problems found while
/// reading (malformed records).
#[derive(Debug)]
pub struct RawBatch {
    pub batch: RecordBatch,
    pub problems: Vec<CellProblem>,
    /// Rows dropped before typing because their Transaction_Type is not a cost type, counted by
    /// that (trimmed) type: see [`files::TableReader::keep_only_cost_rows`] and
    /// [`drop_non_cost_rows`].
    pub not_cost_type: BTreeMap<String, u64>,
    /// Values of descriptive dimension columns ([`crate::model::schema::ColumnSpec::lossy`]) that were
    /// not valid UTF-8 and were decoded lossily, by Sage column name.
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

impl RawBatch {
    /// Rows read from the source for this batch: those in it and those dropped as not costs.
    pub fn rows_read(&self) -> u64 {
        self.batch.num_rows() as u64 + self.not_cost_type.values().sum::<u64>()
    }
}

/// Add per-column counts into a running total.
pub fn add_counts(total: &mut BTreeMap<&'static str, u64>, more: &BTreeMap<&'static str, u64>) {
    for (column, n) in more {
        *total.entry(column).or_default() += n;
    }
}

/// A dimension table read whole: its typed rows and the rows that could not be typed.
#[derive(Debug)]
pub struct DimensionTable {
    pub role: TableRole,
    pub table: String,
    pub batch: RecordBatch,
    pub quarantine: Vec<QuarantineBatch>,
    pub rows_read: usize,
    /// Descriptive values decoded lossily, by Sage column name (see [`RawBatch::decoded_lossily`]).
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

/// Every table role, dimensions first.
pub const TABLE_ROLES: [TableRole; 5] = [
    TableRole::Job,
    TableRole::AccountPrefix,
    TableRole::Account,
    TableRole::Invoice,
    TableRole::Transaction,
];

/// An opened Sage source: every table was found and has its required columns.
pub struct SageSource {
    config: PipelineConfig,
    window: ReadWindow,
    /// For a SQL Server source: which columns each table has.
    mssql: Option<Vec<mssql::TablePlan>>,
}

/// The runtime the pipeline runs in (SQL Server reads are tasks on it).
fn runtime(what: &str) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| Error::Stage {
        stage: "extract",
        message: format!("{what} must be used from within the tokio runtime"),
    })
}

/// Run a future from a blocking thread of the runtime (where the pipeline calls the source).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(runtime("the SQL Server source")?.block_on(f))
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
        let mut source = SageSource {
            config: config.clone(),
            window,
            mssql: None,
        };
        match &config.source {
            SourceConfig::Files(_) => {
                for role in TABLE_ROLES {
                    source.reader(role)?;
                }
            }
            SourceConfig::Mssql(m) => {
                let tables: Vec<(TableRole, String)> = TABLE_ROLES
                    .iter()
                    .map(|r| (*r, source.table_name(*r).to_string()))
                    .collect();
                source.mssql = Some(block_on(mssql::open(m, &tables))??);
            }
        }
        Ok(source)
    }

    fn mssql_plan(&self, role: TableRole) -> Option<(&MssqlSource, &mssql::TablePlan)> {
        let SourceConfig::Mssql(m) = &self.config.source else {
            return None;
        };
        let plan = self.mssql.as_ref()?.iter().find(|p| p.role == role)?;
        Some((m, plan))
    }

    /// The configured table name of a role.
    pub fn table_name(&self, role: TableRole) -> &str {
        let t = &self.config.tables;
        match role {
            TableRole::Transaction => &t.transaction,
            TableRole::Job => &t.job,
            TableRole::AccountPrefix => &t.account_prefix,
            TableRole::Account => &t.account,
            TableRole::Invoice => &t.invoice,
        }
    }

    fn reader(&self, role: TableRole) -> Result<TableReader> {
        match &self.config.source {
            SourceConfig::Files(f) => files::open_table(
                &f.dir,
                self.table_name(role),
                f.format,
                role,
                self.config.pipeline.batch_rows,
            ),
            SourceConfig::Mssql(_) => Err(Error::Stage {
                stage: "extract",
                message: "no file reader for a SQL Server source".into(),
            }),
        }
    }

    /// Stream a dimension table as typed batches (a SQL Server table comes as one batch).
    pub fn dimension_batches(
        &self,
        role: TableRole,
    ) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + '_>> {
        let table = self.table_name(role).to_string();
        let raws: Box<dyn Iterator<Item = Result<RawBatch>>> = match self.mssql_plan(role) {
            Some((m, plan)) => {
                let handle = runtime("the SQL Server source")?;
                let (tx, rx) = tokio::sync::mpsc::channel(self.config.pipeline.channel_capacity);
                let driver = handle.spawn(mssql::read_dimension(
                    m.clone(),
                    plan.clone(),
                    self.config.pipeline.batch_rows,
                    tx,
                ));
                Box::new(MssqlBatches { rx, driver })
            }
            None => Box::new(self.reader(role)?),
        };
        Ok(Box::new(
            raws.map(move |raw| type_batch(role, &table, raw?)),
        ))
    }

    /// Read a dimension table whole.
    pub fn read_dimension(&self, role: TableRole) -> Result<DimensionTable> {
        let table = self.table_name(role).to_string();
        let mut batches = Vec::new();
        let mut quarantine = Vec::new();
        let mut rows_read = 0;
        let mut decoded_lossily = BTreeMap::new();
        for typed in self.dimension_batches(role)? {
            let typed = typed?;
            rows_read += typed.rows_read;
            add_counts(&mut decoded_lossily, &typed.decoded_lossily);
            batches.push(typed.batch);
            quarantine.extend(typed.quarantine);
        }
        let batch = concat_batches(&typed_schema(role), &batches)?;
        Ok(DimensionTable {
            role,
            table,
            batch,
            quarantine,
            rows_read,
            decoded_lossily,
        })
    }

    /// Stream the transaction table as raw batches, not yet typed (type them with
    /// [`type_batch`]). The excluded columns are not read (the project stage's allow-list would
    /// drop them anyway). With `cost_rows_only`, a file reader that can drops the rows that are
    /// not cost transactions as it reads them, and counts them in [`RawBatch::not_cost_type`].
    pub fn raw_transactions(
        &self,
        cost_rows_only: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<RawBatch>> + Send>> {
        if let Some((m, plan)) = self.mssql_plan(TableRole::Transaction) {
            let handle = runtime("the SQL Server source")?;
            let (tx, rx) = tokio::sync::mpsc::channel(self.config.pipeline.channel_capacity);
            let driver = handle.spawn(mssql::read_transactions(
                m.clone(),
                plan.clone(),
                self.window,
                self.config.pipeline.batch_rows,
                tx,
            ));
            return Ok(Box::new(MssqlBatches { rx, driver }));
        }
        let mut reader = self.reader(TableRole::Transaction)?;
        if cost_rows_only {
            reader.keep_only_cost_rows();
        }
        Ok(Box::new(reader))
    }

    /// Stream the transaction table as typed batches: [`Self::raw_transactions`] typed on the
    /// caller's thread. (The sync types on a thread of its own, so that reading and typing
    /// overlap.)
    pub fn transactions(&self) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + Send>> {
        let raw = self.raw_transactions(false)?;
        let table = self.transaction_table().to_string();
        Ok(Box::new(raw.map(move |raw| {
            type_batch(TableRole::Transaction, &table, raw?)
        })))
    }

    /// About how many transactions the source holds (see [`files::estimate_rows`]); None for a
    /// SQL Server source.
    pub fn estimated_transactions(&self) -> Option<u64> {
        match &self.config.source {
            SourceConfig::Files(f) => {
                files::estimate_rows(&f.dir, self.table_name(TableRole::Transaction), f.format)
            }
            SourceConfig::Mssql(_) => None,
        }
    }

    /// The transaction table's name in the source (as read, and as quarantine rows name it).
    pub fn transaction_table(&self) -> &str {
        match self.mssql_plan(TableRole::Transaction) {
            Some((_, plan)) => &plan.table,
            None => self.table_name(TableRole::Transaction),
        }
    }

    /// The window the transactions are read in.
    pub fn window(&self) -> ReadWindow {
        self.window
    }
}

/// Raw batches streamed from SQL Server by a task on the runtime. Dropping it stops the task.
struct MssqlBatches {
    rx: tokio::sync::mpsc::Receiver<Result<RawBatch>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Iterator for MssqlBatches {
    type Item = Result<RawBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv()
    }
}

impl Drop for MssqlBatches {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
