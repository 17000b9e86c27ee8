//! Extract: read the Sage tables into typed Arrow batches. Dimension tables are read whole (they
//! are small: the build side of the joins); the transaction table streams in batches.

pub mod convert;
pub mod files;
pub mod mssql;

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};

use crate::config::{MssqlSource, PipelineConfig, Since, SourceConfig};
use crate::error::{Error, Result};
use crate::model::cost_type::is_cost_type;
use crate::model::schema::{typed_schema, TableRole};
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use convert::{convert_column, CellProblem};
use files::TableReader;
pub use mssql::ReadWindow;

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

/// A typed batch and the rows of its raw batch that could not be typed.
#[derive(Debug)]
pub struct TypedBatch {
    /// Rows that typed cleanly.
    pub batch: RecordBatch,
    /// Rows that did not, with the column, value and line named.
    pub quarantine: Option<QuarantineBatch>,
    /// Rows read from the source for this batch (typed + quarantined).
    pub rows_read: usize,
    /// See [`RawBatch::decoded_lossily`].
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

/// Drop the rows of a raw transaction batch whose Transaction_Type is not a cost type, before any
/// other cell is looked at, counting them by (trimmed) type in [`RawBatch::not_cost_type`]; so
/// that a row that will not be loaded is filtered, never quarantined, whatever the source. Kept:
/// rows without a type and rows with a reading problem (to be quarantined with their reason). A
/// CSV reader already does this as it reads ([`files::TableReader::keep_only_cost_rows`]); for it
/// this is one pass over the type column that drops nothing.
pub fn drop_non_cost_rows(raw: RawBatch) -> Result<RawBatch> {
    use arrow::array::{Array, AsArray};
    let Some(types) = raw
        .batch
        .column_by_name("transaction_type")
        .and_then(|c| c.as_string_opt::<i32>())
    else {
        // Not text (a typed export could only hold text here): the project stage filters.
        return Ok(raw);
    };
    let mut has_problem = vec![false; raw.batch.num_rows()];
    for p in &raw.problems {
        if let Some(flag) = has_problem.get_mut(p.row) {
            *flag = true;
        }
    }
    let mut not_cost_type = raw.not_cost_type;
    let mut keep = Vec::with_capacity(types.len());
    for (row, problem) in has_problem.iter().enumerate() {
        let ty = if types.is_null(row) {
            ""
        } else {
            convert::trim_cell(types.value(row))
        };
        let drop = !problem && !ty.is_empty() && !is_cost_type(ty);
        if drop {
            crate::model::cost_type::count_type(&mut not_cost_type, ty);
        }
        keep.push(!drop);
    }
    if keep.iter().all(|&k| k) {
        return Ok(RawBatch {
            not_cost_type,
            ..raw
        });
    }
    // Row numbers of the problems, among the rows kept.
    let mut new_row = Vec::with_capacity(keep.len());
    let mut next = 0;
    for &k in &keep {
        new_row.push(next);
        next += usize::from(k);
    }
    let problems = raw
        .problems
        .into_iter()
        .map(|mut p| {
            p.row = new_row[p.row];
            p
        })
        .collect();
    Ok(RawBatch {
        batch: filter_record_batch(&raw.batch, &BooleanArray::from(keep))?,
        problems,
        not_cost_type,
        decoded_lossily: raw.decoded_lossily,
    })
}

/// Add per-column counts into a running total.
pub fn add_counts(total: &mut BTreeMap<&'static str, u64>, more: &BTreeMap<&'static str, u64>) {
    for (column, n) in more {
        *total.entry(column).or_default() += n;
    }
}

fn precedence(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::MalformedRecord => 0,
        ReasonCode::BadValue => 1,
        ReasonCode::MissingValue => 2,
        _ => 3,
    }
}

/// Type every column of a raw batch. A row with any bad cell is quarantined with all of its
/// problems in the reason; the other rows go on.
pub fn type_batch(role: TableRole, table: &str, raw: RawBatch) -> Result<TypedBatch> {
    let RawBatch {
        batch: raw,
        mut problems,
        decoded_lossily,
        ..
    } = raw;
    let rows_read = raw.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(raw.num_columns());
    columns.push(raw.column(0).clone());
    for (i, spec) in role.columns().iter().enumerate() {
        columns.push(convert_column(spec, raw.column(i + 1), &mut problems)?);
    }
    let typed = RecordBatch::try_new(typed_schema(role), columns)?;
    if problems.is_empty() {
        return Ok(TypedBatch {
            batch: typed,
            quarantine: None,
            rows_read,
            decoded_lossily,
        });
    }
    // Group problems by row: one quarantine row per source row, naming every bad cell.
    let mut by_row: BTreeMap<usize, Vec<CellProblem>> = BTreeMap::new();
    for p in problems {
        by_row.entry(p.row).or_default().push(p);
    }
    let lines = raw
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default();
    let rejections: Vec<Rejection> = by_row
        .into_iter()
        .map(|(row, mut ps)| {
            // A record that did not split into its fields has no values: only why it did not.
            if ps.iter().any(|p| p.code == ReasonCode::MalformedRecord) {
                ps.retain(|p| p.code == ReasonCode::MalformedRecord);
            }
            ps.sort_by_key(|p| precedence(p.code));
            let line = lines.get(row).copied().unwrap_or(0);
            let detail: Vec<String> = ps.iter().map(|p| p.message.clone()).collect();
            Rejection {
                row,
                code: ps[0].code,
                reason: format!("{table} line {line}: {}", detail.join("; ")),
            }
        })
        .collect();
    let mut keep = vec![true; rows_read];
    for r in &rejections {
        keep[r.row] = false;
    }
    let quarantine =
        QuarantineBatch::from_rejections(StageName::Extract, table, &raw, &rejections)?;
    let batch = filter_record_batch(&typed, &BooleanArray::from(keep))?;
    Ok(TypedBatch {
        batch,
        quarantine: Some(quarantine),
        rows_read,
        decoded_lossily,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn raw(types: &[Option<&str>], problem_rows: &[usize]) -> RawBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(crate::model::schema::SOURCE_LINE, DataType::UInt64, false),
            Field::new("transaction_type", DataType::Utf8, true),
        ]));
        let lines = UInt64Array::from_iter_values((0..types.len() as u64).map(|i| i + 2));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(lines), Arc::new(StringArray::from(types.to_vec()))],
        )
        .expect("batch");
        let problems = problem_rows
            .iter()
            .map(|&row| CellProblem {
                row,
                code: ReasonCode::MalformedRecord,
                message: format!("row {row}"),
            })
            .collect();
        RawBatch {
            batch,
            problems,
            not_cost_type: BTreeMap::from([("Work billed".to_string(), 3)]),
            decoded_lossily: BTreeMap::new(),
        }
    }

    #[test]
    fn non_cost_rows_are_dropped_before_typing_and_counted_by_type() {
        let out = drop_non_cost_rows(raw(
            &[
                Some("AP cost"),
                Some(" Work billed "),
                None,
                Some("Original estimate"),
                Some("PR cost  "),
                Some("Original estimate"),
                Some(""),
            ],
            // A reading problem keeps its row (it is quarantined with its reason), and moves
            // with it to its new row number.
            &[3, 4],
        ))
        .expect("filtered");
        let lines = out
            .batch
            .column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(lines.values().to_vec(), vec![2, 4, 5, 6, 8]);
        let problem_rows: Vec<usize> = out.problems.iter().map(|p| p.row).collect();
        assert_eq!(problem_rows, vec![2, 3]);
        assert_eq!(out.problems[0].message, "row 3");
        let counts: Vec<(&str, u64)> = out
            .not_cost_type
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        // Added to what the reader had already counted.
        assert_eq!(counts, vec![("Original estimate", 1), ("Work billed", 4)]);
        assert_eq!(out.rows_read(), 5 + 5);
    }

    #[test]
    fn a_batch_of_cost_rows_is_passed_through_untouched() {
        let input = raw(&[Some("AP cost"), None, Some("JC cost")], &[1]);
        let before = input.batch.clone();
        let out = drop_non_cost_rows(input).expect("filtered");
        assert_eq!(out.batch, before);
        assert_eq!(out.problems.len(), 1);
        assert_eq!(out.problems[0].row, 1);
        assert!(out.batch.column(1).is_null(1));
    }
}
