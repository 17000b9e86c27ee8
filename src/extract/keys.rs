//! The key scan: the natural key of every cost transaction a deep sync would see, read from the
//! key columns only, hashed exactly as the pipeline hashes a line's origin_id.
//!
//! An incremental sync reads only the rows changed since its watermark, so it cannot see a
//! transaction that was purged; [`super::Source::line_keys`] lets it find them without reading
//! whole rows. Each source reads only [`KEY_SCAN_COLUMNS`] (Parquet by projection, SQL Server by
//! its select list, CSV by typing nothing else) into a raw batch of the usual shape, the other
//! columns NULL; [`KeyTyper`] types those columns with the very conversion the typed batch uses
//! ([`convert_column`]), puts them in a batch of the typed schema and hashes each row with
//! [`line_hash`] over a [`TransactionView`]: the same cells, the same bytes, the same digest.

use std::collections::BTreeSet;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use chrono::NaiveDate;

use super::convert::convert_column;
use super::typing::drop_non_cost_rows;
use super::RawBatch;
use crate::error::{Error, Result};
use crate::model::cost_type::is_cost_type;
use crate::model::ids::{line_hash, line_head};
use crate::model::schema::{typed_schema, TableRole, NATURAL_KEY};
use crate::model::values::date_to_days;
use crate::model::view::TransactionView;

/// The Arrow names of the columns a key scan reads: the natural key (which holds
/// Transaction_Type, for the cost filter) and Accounting_Date (for the `since` filter).
pub const KEY_SCAN_COLUMNS: [&str; 9] = [
    NATURAL_KEY[0],
    NATURAL_KEY[1],
    NATURAL_KEY[2],
    NATURAL_KEY[3],
    NATURAL_KEY[4],
    NATURAL_KEY[5],
    NATURAL_KEY[6],
    NATURAL_KEY[7],
    "accounting_date",
];

/// True for a column a key scan reads (by Arrow name).
pub fn is_key_scan_column(name: &str) -> bool {
    KEY_SCAN_COLUMNS.contains(&name)
}

/// The keys of one batch of a key scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyBatch {
    /// [`line_hash`] digests (`line_head(company)` + the 8 natural key fields), exactly the
    /// digest inside the line's origin_id `jcsync:{company}:line:{032x}`.
    pub hashes: Vec<u128>,
    /// The distinct Job values of the rows of this batch (trimmed exactly as the typed batch's
    /// job column is).
    pub jobs: BTreeSet<String>,
    /// Rows whose key cells could not be read or typed (a malformed record, a value that is not
    /// UTF-8, a Run that is not a number, an empty Job or Transaction_Type): their key is
    /// unknown, so a caller must not conclude that any transaction is gone.
    pub unreadable: u64,
}

impl KeyBatch {
    /// The line origin_id of a hash, as Procore holds it.
    pub fn origin_id(company: &str, hash: u128) -> String {
        format!("jcsync:{company}:line:{hash:032x}")
    }
}

/// The key batches of a key scan, as a source hands them out.
pub type KeyBatches = Box<dyn Iterator<Item = Result<KeyBatch>> + Send>;

/// Turns the raw batches of a key scan (or of a full read: the other columns are ignored) into
/// [`KeyBatch`]es: cost rows only, Accounting_Date on or after `since`.
pub struct KeyTyper {
    head: Vec<u8>,
    since_days: Option<i32>,
    buf: Vec<u8>,
}

impl KeyTyper {
    /// Keys of `company`'s lines, of the rows dated on or after `since` when it is set.
    pub fn new(company: &str, since: Option<NaiveDate>) -> KeyTyper {
        KeyTyper {
            head: line_head(company),
            since_days: since.map(date_to_days),
            buf: Vec::with_capacity(256),
        }
    }

    /// The keys of one raw transaction batch (shaped as every source shapes it: `source_line`,
    /// then one column per Transaction (JC) spec column, in order; columns the scan does not
    /// read may be NULL).
    ///
    /// The rules are the sync's: a row whose non-empty Transaction_Type is not a cost type is
    /// left out ([`drop_non_cost_rows`], then [`is_cost_type`] on the typed cell); a row dated
    /// before `since` is left out. A row whose Accounting_Date is empty or not a date is kept
    /// (a deep sync reads it, and quarantines it: the transaction is still there). A row with a
    /// problem in a key cell, or a record that did not split, is counted in
    /// [`KeyBatch::unreadable`] and has no hash.
    pub fn keys(&mut self, raw: RawBatch) -> Result<KeyBatch> {
        let raw = drop_non_cost_rows(raw)?;
        let n = raw.batch.num_rows();
        let mut unreadable_row = vec![false; n];
        for p in &raw.problems {
            if let Some(flag) = unreadable_row.get_mut(p.row) {
                *flag = true;
            }
        }
        let specs = TableRole::Transaction.columns();
        if raw.batch.num_columns() != specs.len() + 1 {
            return Err(shape(format!(
                "a raw transaction batch has {} columns, expected {}",
                raw.batch.num_columns(),
                specs.len() + 1
            )));
        }
        let schema = typed_schema(TableRole::Transaction);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(specs.len() + 1);
        columns.push(raw.batch.column(0).clone());
        for (i, spec) in specs.iter().enumerate() {
            let field = raw.batch.schema_ref().field(i + 1).clone();
            if field.name() != spec.name {
                return Err(shape(format!(
                    "raw column {} is {}, expected {}",
                    i + 1,
                    field.name(),
                    spec.name
                )));
            }
            if !is_key_scan_column(spec.name) {
                columns.push(new_null_array(&spec.kind.data_type(), n));
                continue;
            }
            let mut problems = Vec::new();
            columns.push(convert_column(spec, raw.batch.column(i + 1), &mut problems)?);
            if spec.key {
                for p in problems {
                    if let Some(flag) = unreadable_row.get_mut(p.row) {
                        *flag = true;
                    }
                }
            }
            // An Accounting_Date that did not type is NULL here: the row is kept (see above).
        }
        let typed = RecordBatch::try_new(schema, columns)?;
        let view = TransactionView::new(&typed)?;
        let mut out = KeyBatch {
            hashes: Vec::with_capacity(n),
            ..KeyBatch::default()
        };
        for (r, unreadable) in unreadable_row.into_iter().enumerate() {
            if let Some(ty) = view.transaction_type_cell(r) {
                if !is_cost_type(ty) {
                    continue;
                }
            }
            if unreadable {
                out.unreadable += 1;
                continue;
            }
            if let (Some(since), Some(day)) = (self.since_days, view.accounting_date(r)) {
                if day < since {
                    continue;
                }
            }
            out.hashes
                .push(line_hash(&view, &self.head, r, &mut self.buf));
            let job = view.job(r);
            if !out.jobs.contains(job) {
                out.jobs.insert(job.to_string());
            }
        }
        Ok(out)
    }
}

fn shape(message: String) -> Error {
    Error::BatchShape { message }
}

/// Every key of a stream of raw transaction batches (the default [`super::Source::line_keys`]:
/// a source that cannot read fewer columns reads them all and types only the keys).
pub fn keys_of_raw(
    raws: super::SendRawBatches,
    company: &str,
    since: Option<NaiveDate>,
) -> KeyBatches {
    let mut typer = KeyTyper::new(company, since);
    Box::new(raws.map(move |raw| typer.keys(raw?)))
}

