//! The Sage tables in SQL Server (a Sage SQL Replicator copy), read over TDS with tiberius.
//!
//! Produces [`RawBatch`]es shaped like the file readers' (source columns renamed to their Arrow
//! names, `source_line` first), so [`super::type_batch`] types both sources the same way. Only
//! the columns jcsync needs are selected: the excluded columns are never read from the server,
//! so an mssql RawBatch simply has none.
//!
//! # Partitions
//! The transaction table is read one Job at a time (`SELECT DISTINCT Job` first), by
//! `source.partitions` connections that each take the next Job from a shared queue and stream its
//! rows, in batches of `pipeline.batch_rows`, into one bounded channel (capacity
//! `pipeline.channel_capacity`): at most `capacity + partitions` batches are in memory.
//!
//! `source_line` of a transaction row is its 1-based position within its Job, in the partition's
//! deterministic order (the rest of the natural key, then Date_Stamp, Time_Stamp). A quarantine
//! row names its Job beside the line, so the pair locates the row.
//!
//! # Retries
//! A partition that fails (connection lost, timeout, server error) is retried from its start on
//! a new connection, up to [`PARTITION_ATTEMPTS`] times. Nothing is buffered for this: the rows
//! of batches already sent downstream are counted, and the retry skips that many rows of the
//! same deterministic order before it sends again, so no row is sent twice and none is lost.
//! (Only rows that tie on the whole order key, i.e. repeats of one natural key written in the
//! same second, could trade places between two reads; one of them loads and the other is
//! quarantined as `duplicate_key` either way.)

pub mod connect;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod keys;
pub mod source;
pub mod sql;
pub mod values;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{Field, Schema};
use futures::StreamExt;
use tiberius::{ColumnData, Query};
use tokio::sync::mpsc;

use super::RawBatch;
use crate::config::MssqlSource;
use crate::error::{Error, Result};
use crate::model::schema::{TableRole, NATURAL_KEY, SOURCE_LINE};
pub use connect::{connect, server_name, SqlClient};
pub use source::SqlServerSource;
pub use sql::{JobKey, ReadWindow, SqlParam, Statement};
use values::ColumnCollector;

/// Attempts per partition (the first read and its retries).
pub const PARTITION_ATTEMPTS: u32 = 3;

/// Which of a role's spec columns the table has (by the server's spelling).
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub role: TableRole,
    pub table: String,
    /// For each spec column of the role, the column name as the server spells it, if present.
    pub present: Vec<Option<String>>,
}

impl TablePlan {
    fn selected(&self) -> Vec<&str> {
        self.present.iter().flatten().map(String::as_str).collect()
    }

    /// The server's name of a spec column, by its Sage name.
    fn column(&self, sage_name: &str) -> Option<&str> {
        self.role
            .columns()
            .iter()
            .zip(&self.present)
            .find(|(spec, _)| spec.source.eq_ignore_ascii_case(sage_name))
            .and_then(|(_, p)| p.as_deref())
    }
}

/// The columns a table has, per `INFORMATION_SCHEMA.COLUMNS` (empty: no such table).
pub async fn table_columns(
    client: &mut SqlClient,
    src: &MssqlSource,
    table: &str,
) -> Result<Vec<String>> {
    let rows = query_all(client, src, &sql::columns_of(&src.schema, table), table).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.into_iter().next() {
            Some(ColumnData::String(Some(s))) => Some(s.into_owned()),
            _ => None,
        })
        .collect())
}

/// Rows in a table.
pub async fn count_rows(client: &mut SqlClient, src: &MssqlSource, table: &str) -> Result<u64> {
    let rows = query_all(client, src, &sql::count_rows(&src.schema, table), table).await?;
    let n = rows.into_iter().next().and_then(|r| r.into_iter().next());
    Ok(match n {
        Some(ColumnData::I64(Some(n))) => n as u64,
        Some(ColumnData::I32(Some(n))) => n as u64,
        Some(ColumnData::F64(Some(n))) => n as u64,
        _ => 0,
    })
}

/// Match a table's columns against what `role` needs; a missing table or required column is an
/// error naming it.
pub fn plan_table(
    src: &MssqlSource,
    role: TableRole,
    table: &str,
    found: &[String],
) -> Result<TablePlan> {
    if found.is_empty() {
        return Err(Error::SqlMissingTable {
            server: server_name(src),
            table: format!("{}.{table}", src.schema),
        });
    }
    // A case-sensitive collation lets a table hold `Amount` and `AMOUNT`, which jcsync's
    // case-insensitive match cannot tell apart.
    if let Some((column, spellings)) = super::files::duplicated_column(role, found) {
        return Err(Error::DuplicateColumn {
            table: table.to_string(),
            location: format!(
                "SQL Server {} table {}.{table}",
                server_name(src),
                src.schema
            ),
            column: column.to_string(),
            found: spellings,
        });
    }
    let by_lower: HashMap<String, &String> = found
        .iter()
        .map(|c| (super::files::header_key(c), c))
        .collect();
    let missing: Vec<String> = role
        .columns()
        .iter()
        .filter(|spec| {
            spec.must_exist() && !by_lower.contains_key(&spec.source.to_ascii_lowercase())
        })
        .map(|spec| spec.source.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::SqlMissingColumn {
            server: server_name(src),
            table: format!("{}.{table}", src.schema),
            columns: missing,
            found: found.join(", "),
        });
    }
    let mut present = Vec::new();
    for spec in role.columns() {
        let hit = by_lower
            .get(&spec.source.to_ascii_lowercase())
            .map(|c| (*c).clone());
        if hit.is_none() {
            tracing::warn!(
                table,
                column = spec.source,
                "optional column missing from the SQL Server table; it is read as NULL"
            );
        }
        if let Some(name) = &hit {
            // Catalog names are identifiers of the server's own; still, only plain ones are
            // ever put into SQL text.
            sql::check_identifier(spec.source, name).map_err(|m| Error::SqlQuery {
                server: server_name(src),
                context: format!("table {table}"),
                message: m,
            })?;
        }
        present.push(hit);
    }
    Ok(TablePlan {
        role,
        table: table.to_string(),
        present,
    })
}

/// Connect once and check every table of the pipeline: the plan of each.
pub async fn open(src: &MssqlSource, tables: &[(TableRole, String)]) -> Result<Vec<TablePlan>> {
    let mut client = connect(src).await?;
    let mut plans = Vec::new();
    for (role, table) in tables {
        let found = table_columns(&mut client, src, table).await?;
        plans.push(plan_table(src, *role, table, &found)?);
    }
    let _ = client.close().await;
    Ok(plans)
}

fn query_error(src: &MssqlSource, context: &str, e: impl std::fmt::Display) -> Error {
    Error::SqlQuery {
        server: server_name(src),
        context: context.to_string(),
        message: e.to_string(),
    }
}

fn bind<'a>(statement: &'a Statement) -> Query<'a> {
    let mut q = Query::new(statement.sql.as_str());
    for p in &statement.params {
        match p {
            SqlParam::Text(s) => q.bind(s.as_str()),
            SqlParam::Int(i) => q.bind(*i),
        }
    }
    q
}

/// Run a small query and collect its rows (catalog queries, counts, the job list).
async fn query_all(
    client: &mut SqlClient,
    src: &MssqlSource,
    statement: &Statement,
    context: &str,
) -> Result<Vec<tiberius::Row>> {
    let limit = Duration::from_secs(src.query_timeout_secs);
    let work = async {
        bind(statement)
            .query(client)
            .await?
            .into_first_result()
            .await
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r.map_err(|e| query_error(src, context, e)),
        Err(_) => Err(query_error(
            src,
            context,
            format!(
                "no answer within {}s (source.query_timeout_secs)",
                src.query_timeout_secs
            ),
        )),
    }
}

/// Builds RawBatches from rows: `source_line`, then one column per spec column.
struct BatchBuilder<'p> {
    plan: &'p TablePlan,
    lines: Vec<u64>,
    columns: Vec<ColumnCollector>,
}

impl<'p> BatchBuilder<'p> {
    fn new(plan: &'p TablePlan) -> Self {
        BatchBuilder {
            plan,
            lines: Vec::new(),
            columns: plan
                .present
                .iter()
                .map(|_| ColumnCollector::default())
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn push(&mut self, line: u64, row: tiberius::Row) -> std::result::Result<(), String> {
        self.lines.push(line);
        let mut cells = row.into_iter();
        for (collector, present) in self.columns.iter_mut().zip(&self.plan.present) {
            let cell = if present.is_some() {
                cells.next().unwrap_or(ColumnData::String(None))
            } else {
                ColumnData::String(None)
            };
            collector.push(cell)?;
        }
        Ok(())
    }

    fn take(&mut self) -> Result<RawBatch> {
        let lines = std::mem::take(&mut self.lines);
        let collectors = std::mem::replace(
            &mut self.columns,
            self.plan
                .present
                .iter()
                .map(|_| ColumnCollector::default())
                .collect(),
        );
        let mut fields = vec![Field::new(
            SOURCE_LINE,
            arrow::datatypes::DataType::UInt64,
            false,
        )];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(lines))];
        for (spec, c) in self.plan.role.columns().iter().zip(collectors) {
            let a = c.finish();
            fields.push(Field::new(spec.name, a.data_type().clone(), true));
            arrays.push(a);
        }
        Ok(RawBatch {
            batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?,
            problems: Vec::new(),
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        })
    }
}

/// Stream a dimension table, in the order of its key columns, as RawBatches of `batch_rows`
/// rows into `tx` (an error ends the stream). Rows are built into batches as they arrive, so a
/// large table (Invoice (AP) grows with the company) is never held whole.
pub async fn read_dimension(
    src: MssqlSource,
    plan: TablePlan,
    batch_rows: usize,
    tx: mpsc::Sender<Result<RawBatch>>,
) {
    if let Err(e) = stream_dimension(&src, &plan, batch_rows, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn stream_dimension(
    src: &MssqlSource,
    plan: &TablePlan,
    batch_rows: usize,
    tx: &mpsc::Sender<Result<RawBatch>>,
) -> Result<()> {
    let mut client = connect(src).await?;
    let key: Vec<&str> = plan
        .role
        .columns()
        .iter()
        .zip(&plan.present)
        .filter(|(spec, _)| spec.required)
        .filter_map(|(_, p)| p.as_deref())
        .collect();
    let statement = sql::read_dimension(&src.schema, &plan.table, &plan.selected(), &key);
    let limit = Duration::from_secs(src.query_timeout_secs);
    let timeout = || {
        query_error(
            src,
            &plan.table,
            format!(
                "no answer within {}s (source.query_timeout_secs)",
                src.query_timeout_secs
            ),
        )
    };
    let stream = tokio::time::timeout(limit, bind(&statement).query(&mut client))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| query_error(src, &plan.table, e))?;
    let mut rows = stream.into_row_stream();
    let mut builder = BatchBuilder::new(plan);
    let mut line = 0u64;
    loop {
        let next = tokio::time::timeout(limit, rows.next())
            .await
            .map_err(|_| timeout())?;
        let Some(row) = next else { break };
        let row = row.map_err(|e| query_error(src, &plan.table, e))?;
        line += 1;
        builder
            .push(line, row)
            .map_err(|m| query_error(src, &plan.table, m))?;
        if builder.len() >= batch_rows.max(1) {
            let batch = builder.take()?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(()); // the reader was dropped
            }
        }
    }
    drop(rows);
    let _ = client.close().await;
    // The last batch, or an empty one for an empty table (so its schema is known downstream).
    if builder.len() > 0 || line == 0 {
        let _ = tx.send(builder.take()).await;
    }
    Ok(())
}

/// What one worker knows while it reads a partition.
struct PartitionRead<'a> {
    src: &'a MssqlSource,
    plan: &'a TablePlan,
    columns: Vec<&'a str>,
    order: Vec<&'a str>,
    window: ReadWindow,
    batch_rows: usize,
    worker: usize,
}

enum ReadFailure {
    /// Downstream stopped: end quietly.
    Closed,
    /// Worth another attempt.
    Failed(Error),
}

impl PartitionRead<'_> {
    /// Stream one Job's rows downstream in batches. `sent` counts the rows of batches already
    /// handed downstream (by this or an earlier attempt); that many rows are skipped first.
    async fn attempt(
        &self,
        client: &mut SqlClient,
        job: &JobKey,
        sent: &mut u64,
        tx: &mpsc::Sender<Result<RawBatch>>,
    ) -> std::result::Result<(), ReadFailure> {
        let statement = sql::read_partition(
            &self.src.schema,
            &self.plan.table,
            &self.columns,
            &self.order,
            job,
            &self.window,
        );
        let context = format!("{} partition Job {job}", self.plan.table);
        let limit = Duration::from_secs(self.src.query_timeout_secs);
        let timeout_error = || {
            ReadFailure::Failed(query_error(
                self.src,
                &context,
                format!(
                    "no answer within {}s (source.query_timeout_secs)",
                    self.src.query_timeout_secs
                ),
            ))
        };
        let fail =
            |e: tiberius::error::Error| ReadFailure::Failed(query_error(self.src, &context, e));
        let stream = tokio::time::timeout(limit, bind(&statement).query(client))
            .await
            .map_err(|_| timeout_error())?
            .map_err(fail)?;
        let mut rows = stream.into_row_stream();
        let mut builder = BatchBuilder::new(self.plan);
        let mut read: u64 = 0;
        #[cfg(feature = "fault-injection")]
        let job_text = match job {
            JobKey::Null => String::new(),
            JobKey::Text(s) => s.trim().to_string(),
            JobKey::Int(i) => i.to_string(),
        };
        loop {
            let next = tokio::time::timeout(limit, rows.next())
                .await
                .map_err(|_| timeout_error())?;
            let Some(row) = next else { break };
            let row = row.map_err(fail)?;
            read += 1;
            #[cfg(feature = "fault-injection")]
            if fault::should_fail(&self.src.database, &job_text, read) {
                return Err(ReadFailure::Failed(query_error(
                    self.src,
                    &context,
                    "injected fault (test hook)",
                )));
            }
            if read <= *sent {
                continue; // sent downstream by an earlier attempt
            }
            builder
                .push(read, row)
                .map_err(|m| ReadFailure::Failed(query_error(self.src, &context, m)))?;
            if builder.len() >= self.batch_rows {
                let n = builder.len() as u64;
                let batch = builder.take().map_err(ReadFailure::Failed)?;
                tx.send(Ok(batch)).await.map_err(|_| ReadFailure::Closed)?;
                *sent += n;
            }
        }
        if builder.len() > 0 {
            let n = builder.len() as u64;
            let batch = builder.take().map_err(ReadFailure::Failed)?;
            tx.send(Ok(batch)).await.map_err(|_| ReadFailure::Closed)?;
            *sent += n;
        }
        Ok(())
    }
}

/// Shared progress of a transaction read.
struct Progress {
    jobs: usize,
    jobs_done: AtomicU64,
    rows: AtomicU64,
}

async fn worker(
    read: PartitionRead<'_>,
    queue: Arc<Mutex<VecDeque<JobKey>>>,
    progress: Arc<Progress>,
    tx: mpsc::Sender<Result<RawBatch>>,
) {
    let mut client: Option<SqlClient> = None;
    loop {
        let job = match queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(job) = job else { break };
        let started = Instant::now();
        let mut sent = 0u64;
        let mut attempt = 1;
        loop {
            let result = match client.as_mut() {
                Some(c) => read.attempt(c, &job, &mut sent, &tx).await,
                None => match connect(read.src).await {
                    Ok(c) => read.attempt(client.insert(c), &job, &mut sent, &tx).await,
                    Err(e) => Err(ReadFailure::Failed(e)),
                },
            };
            match result {
                Ok(()) => break,
                Err(ReadFailure::Closed) => return,
                Err(ReadFailure::Failed(e)) => {
                    // The connection's state is unknown after a failure: never reuse it.
                    client = None;
                    if attempt >= PARTITION_ATTEMPTS
                        || matches!(e, Error::SqlLogin { .. } | Error::PasswordEnv { .. })
                    {
                        tracing::error!(worker = read.worker, job = %job, attempt, "partition failed: {e}");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    tracing::warn!(
                        worker = read.worker,
                        job = %job,
                        attempt,
                        rows_already_sent = sent,
                        "partition failed, retrying from its start (skipping the rows already sent): {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
            }
        }
        let total = progress.rows.fetch_add(sent, Ordering::Relaxed) + sent;
        let done = progress.jobs_done.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            worker = read.worker,
            job = %job,
            rows = sent,
            attempts = attempt,
            ms = started.elapsed().as_millis() as u64,
            "partition read ({done}/{} jobs, {total} rows so far)",
            progress.jobs
        );
    }
    if let Some(c) = client {
        let _ = c.close().await;
    }
}

/// The distinct Jobs of the window, trimmed and deduplicated (SQL Server compares without
/// trailing spaces, so `1001` and `1001   ` are one partition).
async fn list_jobs(
    src: &MssqlSource,
    plan: &TablePlan,
    window: &ReadWindow,
) -> Result<Vec<JobKey>> {
    let mut last = None;
    for attempt in 1..=PARTITION_ATTEMPTS {
        let r = async {
            let mut client = connect(src).await?;
            let rows = query_all(
                &mut client,
                src,
                &sql::list_jobs(&src.schema, &plan.table, window),
                &format!("{} job list", plan.table),
            )
            .await?;
            let _ = client.close().await;
            Ok::<_, Error>(rows)
        }
        .await;
        match r {
            Ok(rows) => {
                let mut jobs: Vec<JobKey> = rows
                    .into_iter()
                    .map(|r| match r.into_iter().next() {
                        Some(ColumnData::String(Some(s))) => JobKey::Text(s.trim_end().to_string()),
                        Some(ColumnData::I64(Some(i))) => JobKey::Int(i),
                        Some(ColumnData::I32(Some(i))) => JobKey::Int(i64::from(i)),
                        Some(ColumnData::I16(Some(i))) => JobKey::Int(i64::from(i)),
                        Some(ColumnData::U8(Some(i))) => JobKey::Int(i64::from(i)),
                        Some(ColumnData::Numeric(Some(n))) if n.scale() == 0 => {
                            JobKey::Int(n.value() as i64)
                        }
                        _ => JobKey::Null,
                    })
                    .collect();
                jobs.sort();
                jobs.dedup();
                return Ok(jobs);
            }
            Err(e @ (Error::SqlLogin { .. } | Error::PasswordEnv { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(attempt, "listing the jobs failed: {e}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| query_error(src, &plan.table, "job list failed")))
}

/// Read the transaction table, partitioned by Job over `source.partitions` connections, into
/// `tx`. Returns when every partition is read, one failed for good, or `tx` closed.
pub async fn read_transactions(
    src: MssqlSource,
    plan: TablePlan,
    window: ReadWindow,
    batch_rows: usize,
    tx: mpsc::Sender<Result<RawBatch>>,
) {
    let jobs = match list_jobs(&src, &plan, &window).await {
        Ok(j) => j,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let workers = src.partitions.min(jobs.len()).max(1);
    tracing::info!(
        table = plan.table,
        jobs = jobs.len(),
        connections = workers,
        "reading transactions by Job"
    );
    let progress = Arc::new(Progress {
        jobs: jobs.len(),
        jobs_done: AtomicU64::new(0),
        rows: AtomicU64::new(0),
    });
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let src = Arc::new(src);
    let plan = Arc::new(plan);
    let mut set = tokio::task::JoinSet::new();
    for worker_id in 0..workers {
        let (src, plan, queue, progress, tx) = (
            src.clone(),
            plan.clone(),
            queue.clone(),
            progress.clone(),
            tx.clone(),
        );
        set.spawn(async move {
            let order: Vec<&str> = NATURAL_KEY
                .iter()
                .filter(|k| **k != "job")
                .chain(["date_stamp", "time_stamp"].iter())
                .filter_map(|arrow_name| {
                    let spec = plan.role.columns().iter().find(|s| s.name == *arrow_name)?;
                    plan.column(spec.source)
                })
                .collect();
            let read = PartitionRead {
                src: &src,
                plan: &plan,
                columns: plan.selected(),
                order,
                window,
                batch_rows,
                worker: worker_id,
            };
            worker(read, queue, progress, tx).await;
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            let _ = tx
                .send(Err(Error::TaskFailed {
                    stage: "extract",
                    message: format!("a partition reader: {e}"),
                }))
                .await;
            return;
        }
    }
    tracing::info!(
        rows = progress.rows.load(Ordering::Relaxed),
        jobs = progress.jobs,
        "transactions read"
    );
}
