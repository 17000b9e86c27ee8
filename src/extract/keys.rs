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
            columns.push(convert_column(
                spec,
                raw.batch.column(i + 1),
                &mut problems,
            )?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::type_batch;
    use crate::model::ids::line_hashes;
    use crate::model::schema::SOURCE_LINE;
    use arrow::array::{Array, Date32Array, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// A raw batch of text cells: each row a list of (Sage column, value); unnamed cells NULL.
    fn raw(rows: &[&[(&str, &str)]]) -> RawBatch {
        let specs = TableRole::Transaction.columns();
        let mut fields = vec![Field::new(SOURCE_LINE, DataType::UInt64, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(
            (0..rows.len() as u64).map(|i| i + 2),
        ))];
        for spec in specs {
            fields.push(Field::new(spec.name, DataType::Utf8, true));
            let cells: Vec<Option<&str>> = rows
                .iter()
                .map(|r| r.iter().find(|(c, _)| *c == spec.source).map(|(_, v)| *v))
                .collect();
            columns.push(Arc::new(StringArray::from(cells)));
        }
        RawBatch {
            batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch"),
            problems: Vec::new(),
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        }
    }

    /// The same batch with only the key scan's columns kept (the others NULL), as the readers
    /// of a key scan shape it.
    fn only_keys(raw: &RawBatch) -> RawBatch {
        let n = raw.batch.num_rows();
        let columns = raw
            .batch
            .schema()
            .fields()
            .iter()
            .zip(raw.batch.columns())
            .map(|(f, c)| {
                if f.name() == SOURCE_LINE || is_key_scan_column(f.name()) {
                    c.clone()
                } else {
                    new_null_array(&DataType::Utf8, n)
                }
            })
            .collect();
        RawBatch {
            batch: RecordBatch::try_new(raw.batch.schema(), columns).expect("batch"),
            problems: raw.problems.clone(),
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        }
    }

    fn full(
        job: &'static str,
        extra: &'static str,
        ty: &'static str,
        run: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        vec![
            ("Job", job),
            ("Extra", extra),
            ("Cost_Code", "01-100      "),
            ("Category", " L "),
            ("Transaction_Type", ty),
            ("Accounting_Date", "2024-01-15"),
            ("Amount", "12.5"),
            ("Description", "Béton – 3ème"),
            ("Run", run),
            ("Sequence", "0042"),
            ("Dist_Sequence", " 1"),
            ("Date_Stamp", "2024-01-15"),
            ("Time_Stamp", "10:00:00"),
        ]
    }

    /// What the sync computes for the rows that type cleanly and are costs: type_batch, then the
    /// project stage's line hashes.
    fn pipeline_hashes(raw: RawBatch) -> Vec<u128> {
        let typed = type_batch(
            TableRole::Transaction,
            "T",
            drop_non_cost_rows(raw).expect("drop"),
        )
        .expect("typed");
        let view = TransactionView::new(&typed.batch).expect("view");
        let hashes = line_hashes("ACME", &view);
        (0..view.len())
            .filter(|&r| is_cost_type(view.transaction_type(r)))
            .map(|r| hashes[r])
            .collect()
    }

    #[test]
    fn key_hashes_are_the_pipelines_line_hashes_bit_for_bit() {
        let rows = [
            full("1001      ", "1", "AP cost", "101"),
            full("1001", "", "PR cost  ", "7"),
            // NULL Extra (no cell at all) is another key than an empty one.
            full("1002", "   ", " EQ cost", "-3"),
            full("1003", "2", "JC cost", "9"),
            full("1003", "2", "IV cost", ""),
            full("1003", "2", "SM cost", "9"),
        ];
        let refs: Vec<&[(&str, &str)]> = rows.iter().map(|r| r.as_slice()).collect();
        let input = raw(&refs);
        let expected = pipeline_hashes(raw(&refs));
        assert_eq!(expected.len(), 6);
        let mut typer = KeyTyper::new("ACME", None);
        let keys = typer.keys(only_keys(&input)).expect("keys");
        assert_eq!(keys.hashes, expected);
        assert_eq!(keys.unreadable, 0);
        // Whole rows give the same keys as the key columns alone.
        assert_eq!(typer.keys(raw(&refs)).expect("keys").hashes, expected);
        let jobs: Vec<&str> = keys.jobs.iter().map(String::as_str).collect();
        assert_eq!(jobs, vec!["1001", "1002", "1003"]);
        // And the digest is the one inside the origin id the enrich stage writes.
        let typed = type_batch(TableRole::Transaction, "T", raw(&refs)).expect("typed");
        let (ids, _) = crate::model::ids::origin_ids(
            "ACME",
            &TransactionView::new(&typed.batch).expect("view"),
        )
        .expect("ids");
        let from_keys: Vec<String> = keys
            .hashes
            .iter()
            .map(|h| KeyBatch::origin_id("ACME", *h))
            .collect();
        let staged: Vec<String> = (0..ids.len()).map(|i| ids.value(i).to_string()).collect();
        assert_eq!(from_keys, staged);
    }

    #[test]
    fn typed_export_cells_hash_as_the_typed_batch_does() {
        // A Parquet export writes numbers and dates typed: the same conversion, the same keys.
        let input = raw(&[&full("1001", "1", "AP cost", "101")]);
        let expected = pipeline_hashes(raw(&[&full("1001", "1", "AP cost", "101")]));
        let mut columns = input.batch.columns().to_vec();
        let mut fields: Vec<Field> = input
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        for (i, f) in fields.iter_mut().enumerate() {
            match f.name().as_str() {
                "run" | "sequence" | "dist_sequence" => {
                    let v = match f.name().as_str() {
                        "run" => 101,
                        "sequence" => 42,
                        _ => 1,
                    };
                    columns[i] = Arc::new(Int64Array::from(vec![v]));
                    *f = Field::new(f.name(), DataType::Int64, true);
                }
                "accounting_date" => {
                    columns[i] = Arc::new(Date32Array::from(vec![date_to_days(
                        NaiveDate::from_ymd_opt(2024, 1, 15).expect("date"),
                    )]));
                    *f = Field::new(f.name(), DataType::Date32, true);
                }
                _ => {}
            }
        }
        let typed_raw = RawBatch {
            batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch"),
            ..input
        };
        let keys = KeyTyper::new("ACME", None).keys(typed_raw).expect("keys");
        assert_eq!(keys.hashes, expected);
    }

    #[test]
    fn rows_whose_key_cannot_be_typed_are_counted_not_hashed_and_other_problems_keep_the_key() {
        let mut bad_amount = full("1001", "1", "AP cost", "1");
        bad_amount.retain(|(c, _)| *c != "Amount");
        bad_amount.push(("Amount", "12,34x"));
        let mut no_date = full("1001", "1", "AP cost", "2");
        no_date.retain(|(c, _)| *c != "Accounting_Date");
        let mut bad_date = full("1001", "1", "AP cost", "3");
        bad_date.retain(|(c, _)| *c != "Accounting_Date");
        bad_date.push(("Accounting_Date", "2024-02-30"));
        let mut no_job = full("", "1", "AP cost", "4");
        no_job.retain(|(c, _)| *c != "Job");
        let rows = [
            bad_amount,
            no_date,
            bad_date,
            no_job,
            full("1001", "1", "AP cost", "x5"), // Run is not a number
            full("1001", "1", "   ", "6"),      // no type
            full("1001", "1", "Work billed", "x"), // not a cost: filtered, never unreadable
            full("1001", "1", "AP cost", "8"),  // malformed record (below)
            full("1001", "1", "PR cost", "9"),
        ];
        let refs: Vec<&[(&str, &str)]> = rows.iter().map(|r| r.as_slice()).collect();
        let mut input = raw(&refs);
        input.problems.push(crate::extract::convert::CellProblem {
            row: 7,
            code: crate::quarantine::ReasonCode::MalformedRecord,
            message: "expected 23 fields, found 2".into(),
        });
        let keys = KeyTyper::new(
            "ACME",
            Some(NaiveDate::from_ymd_opt(2024, 1, 1).expect("d")),
        )
        .keys(input)
        .expect("never an error for bad cells");
        // Amount, an empty or impossible date: the transaction is there, its key is known.
        assert_eq!(keys.hashes.len(), 4, "{keys:?}");
        assert_eq!(
            keys.unreadable, 4,
            "no job, Run x5, no type, malformed record"
        );
    }

    #[test]
    fn since_keeps_the_rows_dated_on_or_after_it() {
        let mut rows = Vec::new();
        for (i, day) in ["2024-01-09", "2024-01-10", "2024-01-11"]
            .iter()
            .enumerate()
        {
            let mut r = full("1001", "1", "AP cost", ["1", "2", "3"][i]);
            r.retain(|(c, _)| *c != "Accounting_Date");
            r.push(("Accounting_Date", day));
            rows.push(r);
        }
        let refs: Vec<&[(&str, &str)]> = rows.iter().map(|r| r.as_slice()).collect();
        let all = KeyTyper::new("ACME", None).keys(raw(&refs)).expect("keys");
        let since = NaiveDate::from_ymd_opt(2024, 1, 10).expect("d");
        let kept = KeyTyper::new("ACME", Some(since))
            .keys(raw(&refs))
            .expect("keys");
        assert_eq!(all.hashes.len(), 3);
        assert_eq!(kept.hashes, all.hashes[1..].to_vec());
    }

    #[test]
    fn a_batch_of_another_shape_is_an_error_not_a_panic() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            SOURCE_LINE,
            DataType::UInt64,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![1u64]))])
            .expect("batch");
        let input = RawBatch {
            batch,
            problems: Vec::new(),
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        };
        assert!(KeyTyper::new("ACME", None).keys(input).is_err());
    }
}
