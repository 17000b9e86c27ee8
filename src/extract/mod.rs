//! Extract: read the Sage tables into typed Arrow batches. Dimension tables are read whole (they
//! are small: the build side of the joins); the transaction table streams in batches.

pub mod convert;
pub mod files;
pub mod generate;

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};

use crate::config::{PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::schema::{extracted_transaction_schema, typed_schema, TableRole};
use convert::{convert_column, CellProblem};
use files::TableReader;

/// Source columns renamed to their Arrow names but not yet typed, plus problems found while
/// reading (malformed records).
#[derive(Debug)]
pub struct RawBatch {
    pub batch: RecordBatch,
    pub problems: Vec<CellProblem>,
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
pub fn type_batch(
    role: TableRole,
    table: &str,
    raw: RawBatch,
    excluded_present: &[String],
) -> Result<TypedBatch> {
    let RawBatch {
        batch: raw,
        mut problems,
    } = raw;
    let rows_read = raw.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(raw.num_columns());
    columns.push(raw.column(0).clone());
    for (i, spec) in role.columns().iter().enumerate() {
        columns.push(convert_column(spec, raw.column(i + 1), &mut problems)?);
    }
    let schema = if role == TableRole::Transaction {
        for j in 0..excluded_present.len() {
            columns.push(raw.column(1 + role.columns().len() + j).clone());
        }
        extracted_transaction_schema(excluded_present)
    } else {
        typed_schema(role)
    };
    let typed = RecordBatch::try_new(schema, columns)?;
    if problems.is_empty() {
        return Ok(TypedBatch {
            batch: typed,
            quarantine: None,
            rows_read,
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
}

/// An opened Sage source: every table was found and has its required columns.
pub struct SageSource {
    config: PipelineConfig,
}

impl SageSource {
    /// Check that every table of the pipeline exists with its required columns, before anything
    /// is read or staged.
    pub fn open(config: &PipelineConfig) -> Result<SageSource> {
        let source = SageSource {
            config: config.clone(),
        };
        for role in [
            TableRole::Job,
            TableRole::AccountPrefix,
            TableRole::Account,
            TableRole::Invoice,
            TableRole::Transaction,
        ] {
            source.reader(role)?;
        }
        Ok(source)
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
        let excluded: &[String] = if role == TableRole::Transaction {
            &self.config.mappings.transaction_jc.exclude
        } else {
            &[]
        };
        match &self.config.source {
            SourceConfig::Files(f) => files::open_table(
                &f.dir,
                self.table_name(role),
                f.format,
                role,
                excluded,
                self.config.pipeline.batch_rows,
            ),
        }
    }

    /// Read a dimension table whole.
    pub fn read_dimension(&self, role: TableRole) -> Result<DimensionTable> {
        let table = self.table_name(role).to_string();
        let reader = self.reader(role)?;
        let mut batches = Vec::new();
        let mut quarantine = Vec::new();
        let mut rows_read = 0;
        for raw in reader {
            let typed = type_batch(role, &table, raw?, &[])?;
            rows_read += typed.rows_read;
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
        })
    }

    /// Stream the transaction table as typed batches (the excluded columns still attached; the
    /// project stage drops them).
    pub fn transactions(
        &self,
    ) -> Result<impl Iterator<Item = Result<TypedBatch>> + Send + 'static> {
        let reader = self.reader(TableRole::Transaction)?;
        let excluded = reader.excluded_present();
        let table = self.table_name(TableRole::Transaction).to_string();
        Ok(reader.map(move |raw| type_batch(TableRole::Transaction, &table, raw?, &excluded)))
    }
}
