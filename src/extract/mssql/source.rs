//! The SQL Server database as a [`Source`]: the plan of every table (checked once when opened),
//! and the reads, run as tasks on the pipeline's runtime that stream raw batches into a bounded
//! channel the pipeline's blocking threads read from.

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{connect::server_name, read_dimension, read_transactions, TablePlan};
use crate::config::{MssqlSource, PipelineConfig, TableNames};
use crate::error::{Error, Result};
use crate::extract::keys::{keys_of_raw, KeyBatches};
use crate::extract::source::{table_name, RawBatches, SendRawBatches, Source, TABLE_ROLES};
use crate::extract::{RawBatch, ReadWindow};
use crate::model::schema::TableRole;

/// A SQL Server copy of the Sage tables, every table found with its required columns when it
/// was opened.
pub struct SqlServerSource {
    src: MssqlSource,
    tables: TableNames,
    /// Which columns each table has.
    plans: Vec<TablePlan>,
    window: ReadWindow,
    batch_rows: usize,
    channel_capacity: usize,
    description: String,
}

/// The runtime the pipeline runs in (SQL Server reads are tasks on it).
fn runtime(src: &MssqlSource) -> Result<Handle> {
    Handle::try_current().map_err(|_| Error::SqlConnect {
        host: src.host.clone(),
        port: src.port,
        message: "the SQL Server source must be used from within the tokio runtime".into(),
    })
}

impl SqlServerSource {
    /// Connect once and check that every table of the pipeline exists with its required
    /// columns, before anything is read or staged. Called from a blocking thread of the runtime.
    pub fn open(
        config: &PipelineConfig,
        src: &MssqlSource,
        window: ReadWindow,
    ) -> Result<SqlServerSource> {
        let tables: Vec<(TableRole, String)> = TABLE_ROLES
            .iter()
            .map(|r| (*r, table_name(&config.tables, *r).to_string()))
            .collect();
        let plans = runtime(src)?.block_on(super::open(src, &tables))?;
        Ok(SqlServerSource {
            src: src.clone(),
            tables: config.tables.clone(),
            plans,
            window,
            batch_rows: config.pipeline.batch_rows,
            channel_capacity: config.pipeline.channel_capacity,
            description: config.source.describe(),
        })
    }

    fn plan(&self, role: TableRole) -> Result<&TablePlan> {
        self.plans
            .iter()
            .find(|p| p.role == role)
            .ok_or_else(|| Error::SqlMissingTable {
                server: server_name(&self.src),
                table: format!("{}.{}", self.src.schema, self.table_name(role)),
            })
    }
}

impl Source for SqlServerSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn table_name(&self, role: TableRole) -> &str {
        table_name(&self.tables, role)
    }

    fn window(&self) -> ReadWindow {
        self.window
    }

    /// None: only a count query could tell, and the read does not wait for one.
    fn estimated_transactions(&self) -> Option<u64> {
        None
    }

    /// In the order of the table's key columns, in batches of `pipeline.batch_rows`.
    fn raw_dimension(&self, role: TableRole) -> Result<RawBatches<'_>> {
        let plan = self.plan(role)?;
        let handle = runtime(&self.src)?;
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let driver = handle.spawn(read_dimension(
            self.src.clone(),
            plan.clone(),
            self.batch_rows,
            tx,
        ));
        Ok(Box::new(MssqlBatches { rx, driver }))
    }

    /// Partitioned by Job over `source.partitions` connections (see [`super`]); the rows that
    /// are not costs are dropped by the typing step, so `cost_rows_only` changes nothing here.
    fn raw_transactions(&self, _cost_rows_only: bool) -> Result<SendRawBatches> {
        let plan = self.plan(TableRole::Transaction)?;
        let handle = runtime(&self.src)?;
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let driver = handle.spawn(read_transactions(
            self.src.clone(),
            plan.clone(),
            self.window,
            self.batch_rows,
            tx,
        ));
        Ok(Box::new(MssqlBatches { rx, driver }))
    }

    /// One `SELECT` of the key columns, the cost types and `since` in its WHERE and no
    /// change-stamp condition, streamed on one connection (see [`super::keys`]).
    fn line_keys(&self, company: &str) -> Result<KeyBatches> {
        let plan = self.plan(TableRole::Transaction)?;
        let handle = runtime(&self.src)?;
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let driver = handle.spawn(super::keys::read_keys(
            self.src.clone(),
            plan.clone(),
            self.window,
            self.batch_rows,
            tx,
        ));
        Ok(keys_of_raw(
            Box::new(MssqlBatches { rx, driver }),
            company,
            self.window.since,
        ))
    }
}

/// Raw batches streamed from SQL Server by a task on the runtime. Dropping it stops the task.
struct MssqlBatches {
    rx: mpsc::Receiver<Result<RawBatch>>,
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
