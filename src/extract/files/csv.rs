//! The CSV reader of a table file: records framed by [`super::csv_records`], the wanted fields
//! copied as text into a [`RawBatch`], each malformed record or non-UTF-8 value a row problem
//! (and, for the transaction table, the rows that are not costs dropped as they are read).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Array};
use arrow::datatypes::DataType;

use super::csv_records::{self, Framed, RecordReader};
use super::{plan_columns, raw_schema, ColumnPlan};
use crate::error::{Error, Result};
use crate::extract::convert::CellProblem;
use crate::extract::{typing, RawBatch};
use crate::model::cost_type::count_type;
use crate::model::schema::{ColumnSpec, TableRole, EXCLUDED_TRANSACTION_COLUMNS};
use crate::quarantine::ReasonCode;

/// About how many rows a CSV file holds: its size times the line density of its first MiB
/// (see [`super::estimate_rows`]).
pub(super) fn estimate_rows(file: File) -> Option<u64> {
    use std::io::Read;
    let size = file.metadata().ok()?.len();
    let mut sample = Vec::with_capacity(1 << 20);
    file.take(1 << 20).read_to_end(&mut sample).ok()?;
    let lines = sample.iter().filter(|b| **b == b'\n').count() as u64;
    if lines < 2 || sample.is_empty() {
        return None;
    }
    // The header is one of the sampled lines.
    Some(((size as f64 * lines as f64 / sample.len() as f64).round() as u64).saturating_sub(1))
}

/// CSV table reader. A record with the wrong number of fields, a runaway quote or a value that
/// is not UTF-8 becomes a row problem (see [`super::csv_records`] for how records are framed).
pub struct CsvTableReader {
    path: PathBuf,
    role: TableRole,
    records: RecordReader<File>,
    plan: ColumnPlan,
    header_len: usize,
    batch_rows: usize,
    /// Text bytes of each column in the last batch (capacity hint for the next).
    value_bytes: Vec<usize>,
    /// The file column of Transaction_Type, when non-cost rows are dropped as they are read.
    cost_filter: Option<usize>,
    done: bool,
}

impl CsvTableReader {
    pub(super) fn open(
        path: PathBuf,
        table: &str,
        role: TableRole,
        batch_rows: usize,
        wanted: Option<fn(&str) -> bool>,
    ) -> Result<Self> {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut records = RecordReader::new(file);
        let cannot_read = |e: std::io::Error| Error::Source {
            path: path.clone(),
            message: format!("cannot read the header: {e}"),
        };
        let header: Vec<String> = match records.read().map_err(cannot_read)? {
            None => Vec::new(),
            Some(Framed::Record) if records.record_lines() == 1 => (0..records.len())
                .map(|i| String::from_utf8_lossy(records.field(i).unwrap_or_default()).into_owned())
                .collect(),
            Some(_) => {
                return Err(Error::Source {
                    path,
                    message: format!(
                        "line {}: the header is not one line of column names (an unclosed quote?)",
                        records.record_line()
                    ),
                })
            }
        };
        let plan = plan_columns(role, table, &path, &header)?.only(role, wanted);
        records.expect_fields(header.len());
        Ok(CsvTableReader {
            path,
            role,
            records,
            plan,
            header_len: header.len(),
            batch_rows,
            value_bytes: Vec::new(),
            cost_filter: None,
            done: false,
        })
    }

    /// The file being read.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// See [`super::TableReader::keep_only_cost_rows`]: for the transaction table, the file
    /// column of Transaction_Type becomes the filter of [`Self::next_batch`].
    pub(super) fn keep_only_cost_rows(&mut self) {
        if self.role == TableRole::Transaction {
            self.cost_filter = self
                .role
                .columns()
                .iter()
                .position(|c| c.name == "transaction_type")
                .and_then(|k| self.plan.spec_index[k]);
        }
    }

    pub(super) fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        if self.done {
            return Ok(None);
        }
        let n_spec = self.plan.spec_index.len();
        let specs = self.role.columns();
        // Sized from the previous batch, so that the buffers rarely grow (and copy) mid-batch.
        let mut builders: Vec<StringBuilder> = (0..n_spec)
            .map(|c| {
                let bytes = self.value_bytes.get(c).copied().unwrap_or(0);
                StringBuilder::with_capacity(self.batch_rows, bytes + bytes / 8)
            })
            .collect();
        let mut lines = Vec::with_capacity(self.batch_rows);
        let mut problems = Vec::new();
        let mut not_cost_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut decoded_lossily: BTreeMap<&'static str, u64> = BTreeMap::new();
        while lines.len() < self.batch_rows {
            let framed = self.records.read().map_err(|e| Error::Source {
                path: self.path.clone(),
                message: format!("cannot read past line {}: {e}", self.records.record_line()),
            })?;
            let Some(framed) = framed else {
                self.done = true;
                break;
            };
            let well_formed = framed == Framed::Record && self.records.len() == self.header_len;
            if well_formed {
                if let Some(ty) = self.cost_filter.and_then(|i| self.not_cost_type(i)) {
                    count_type(&mut not_cost_type, ty);
                    continue;
                }
            }
            let row = lines.len();
            lines.push(self.records.record_line());
            if !well_formed {
                // Nothing of a record that did not split into the header's fields is kept, not
                // even as text: its values may sit under other columns' names, and those may be
                // excluded ones.
                let message = match framed {
                    Framed::Record => format!(
                        "expected {} fields, found {}",
                        self.header_len,
                        self.records.len()
                    ),
                    Framed::UnclosedQuote => "a quoted field opens on this line and is not closed \
                        where a record could end (an unclosed quote): the line is set aside and \
                        the next one is read as a record of its own"
                        .to_string(),
                    Framed::TooLong => format!(
                        "the line is longer than {} MiB",
                        csv_records::MAX_RECORD_BYTES >> 20
                    ),
                };
                problems.push(CellProblem {
                    row,
                    code: ReasonCode::MalformedRecord,
                    message,
                });
                for b in builders.iter_mut() {
                    b.append_null();
                }
                continue;
            }
            // One UTF-8 check per record (not per field); fields are looked at one by one only
            // when it fails.
            let whole = std::str::from_utf8(self.records.all_fields()).ok();
            for ((b, idx), spec) in builders.iter_mut().zip(&self.plan.spec_index).zip(specs) {
                let Some(i) = *idx else {
                    b.append_null();
                    continue;
                };
                let text = whole
                    .and_then(|t| self.records.field_range(i).and_then(|r| t.get(r)))
                    .or_else(|| {
                        self.records
                            .field(i)
                            .and_then(|f| std::str::from_utf8(f).ok())
                    });
                match text {
                    Some(v) => b.append_value(v),
                    None => {
                        let bytes = self.records.field(i).unwrap_or_default();
                        if spec.lossy {
                            b.append_value(String::from_utf8_lossy(bytes));
                            *decoded_lossily.entry(spec.source).or_default() += 1;
                        } else {
                            b.append_null();
                            problems.push(CellProblem {
                                row,
                                code: ReasonCode::MalformedRecord,
                                message: not_utf8(spec, bytes),
                            });
                        }
                    }
                }
            }
        }
        if lines.is_empty() && not_cost_type.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(lines))];
        self.value_bytes.clear();
        for b in builders.iter_mut() {
            let column = b.finish();
            self.value_bytes.push(column.value_data().len());
            columns.push(Arc::new(column));
        }
        let types = vec![DataType::Utf8; n_spec];
        let schema = raw_schema(self.role, &types);
        Ok(Some(RawBatch {
            batch: RecordBatch::try_new(schema, columns)?,
            problems,
            not_cost_type,
            decoded_lossily,
        }))
    }

    /// The current record's Transaction_Type (file column `i`), trimmed, when it is a non-empty
    /// type that is not a cost type.
    fn not_cost_type(&self, i: usize) -> Option<&str> {
        typing::dropped_as_not_cost(std::str::from_utf8(self.records.field(i)?).ok()?)
    }
}

/// The reason of a value that is not UTF-8: its column, and the value escaped and shortened
/// (never the value of an excluded column, though none is ever read).
fn not_utf8(spec: &ColumnSpec, bytes: &[u8]) -> String {
    if EXCLUDED_TRANSACTION_COLUMNS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(spec.source))
    {
        return format!("column {}: the value is not valid UTF-8", spec.source);
    }
    format!(
        "column {}: value {} is not valid UTF-8",
        spec.source,
        escaped(bytes)
    )
}

/// `bytes` quoted for a message: valid text as it is (control characters escaped), each invalid
/// byte as `\xNN`, cut after 60 characters.
pub fn escaped(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let mut out = String::from("\"");
    let mut shown = 0;
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == MAX {
                break 'chunks;
            }
            out.extend(c.escape_debug());
            shown += 1;
        }
        for b in chunk.invalid() {
            if shown == MAX {
                break 'chunks;
            }
            out.push_str(&format!("\\x{b:02x}"));
            shown += 1;
        }
    }
    out.push('"');
    let total: usize = bytes
        .utf8_chunks()
        .map(|c| c.valid().chars().count() + c.invalid().len())
        .sum();
    if total > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileFormat;
    use crate::extract::files::{open_table, spec_by_name};
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) {
        let mut f = File::create(dir.join(name)).expect("create");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn non_cost_rows_are_dropped_while_read_and_counted_by_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let header = "Job,Extra,Cost_Code,Category,Transaction_Type,Run,Sequence,Dist_Sequence,\
                      Accounting_Date,Amount";
        write(
            dir.path(),
            "JCT_CURRENT__TRANSACTION.csv",
            &format!(
                "{header}\n\
                 1001,,,,AP cost,,,,2024-01-02,1\n\
                 1001,,,,Original estimate  ,,,,2024-01-02,2\n\
                 1001,,,,Work billed,,,,2024-01-02,x\n\
                 1001,,,,,,,,2024-01-02,4\n\
                 1001,Original estimate\n\
                 1001,,,,Original estimate,,,,2024-01-02,6\n\
                 1001,,,, PR cost,,,,2024-01-02,7\n"
            ),
        );
        let open = |batch_rows| {
            open_table(
                dir.path(),
                "JCT_CURRENT__TRANSACTION",
                FileFormat::Csv,
                TableRole::Transaction,
                batch_rows,
            )
            .expect("opens")
        };
        let mut r = open(10);
        r.keep_only_cost_rows();
        let raw = r.next().expect("a batch").expect("ok");
        assert!(r.next().is_none());
        let lines = raw.batch.column(0).as_any().downcast_ref::<UInt64Array>();
        // Kept: the cost rows, the row without a type (to be quarantined as missing) and the
        // short record (to be quarantined as malformed), each with its own line.
        assert_eq!(lines.expect("u64").values().to_vec(), vec![2, 5, 6, 8]);
        assert_eq!(raw.problems.len(), 1);
        assert_eq!(raw.problems[0].row, 2);
        let dropped: Vec<(&str, u64)> = raw
            .not_cost_type
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        assert_eq!(dropped, vec![("Original estimate", 2), ("Work billed", 1)]);
        assert_eq!(raw.rows_read(), 7);

        // A batch whose rows were all dropped still reports them; without the option every
        // row is read.
        let mut r = open(1);
        r.keep_only_cost_rows();
        let counted: Vec<(usize, u64)> = r
            .map(|b| b.expect("ok"))
            .map(|b| (b.batch.num_rows(), b.rows_read()))
            .collect();
        assert_eq!(counted, vec![(1, 1), (1, 3), (1, 1), (1, 2)]);
        let all: u64 = open(10).map(|b| b.expect("ok").rows_read()).sum();
        assert_eq!(all, 7);
    }

    #[test]
    fn csv_rows_carry_their_line_and_short_records_are_flagged() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "JCM_MASTER__JOB.csv",
            "Job,Description,Status,Cost_Account_Prefix,Cost_Account\n1001 ,A,Closed,01,01-5000\n1002,B\n",
        );
        let mut r = open_table(
            dir.path(),
            "JCM_MASTER__JOB",
            FileFormat::Csv,
            TableRole::Job,
            10,
        )
        .expect("opens");
        let raw = r.next().expect("a batch").expect("ok");
        assert_eq!(raw.batch.num_rows(), 2);
        let lines = raw
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("u64");
        assert_eq!(lines.values().to_vec(), vec![2, 3]);
        assert_eq!(raw.problems.len(), 1);
        assert_eq!(raw.problems[0].row, 1);
        assert_eq!(raw.problems[0].message, "expected 5 fields, found 2");
        // Nothing of a record that did not split is kept.
        assert!((1..raw.batch.num_columns()).all(|c| raw.batch.column(c).is_null(1)));
        assert!(r.next().is_none());
    }

    #[test]
    fn a_value_that_is_not_utf8_is_shown_escaped_and_bounded_and_never_for_an_excluded_column() {
        assert_eq!(
            escaped(b"Caf\xe9 \xc3\xa9t\xc3"),
            "\"Caf\\xe9 \u{e9}t\\xc3\""
        );
        assert_eq!(escaped(b"a\"b\n"), "\"a\\\"b\\n\"");
        let long = [b'x'; 200];
        let shown = escaped(&long);
        assert_eq!(shown, format!("\"{}\"…", "x".repeat(60)));
        let used = spec_by_name(TableRole::Transaction, "description").expect("spec");
        assert_eq!(
            not_utf8(used, b"O-ring \xe9"),
            "column Description: value \"O-ring \\xe9\" is not valid UTF-8"
        );
        let excluded = ColumnSpec {
            source: "Employee",
            name: "employee",
            kind: crate::model::schema::ColumnKind::Text,
            required: false,
            key: false,
            lossy: false,
        };
        assert_eq!(
            not_utf8(&excluded, b"XEMP-1\xff"),
            "column Employee: the value is not valid UTF-8"
        );
    }

    #[test]
    fn a_bad_byte_in_a_descriptive_dimension_column_is_decoded_lossily_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = File::create(dir.path().join("JCM_MASTER__JOB.csv")).expect("create");
        f.write_all(
            b"Job,Description,Status,Cost_Account_Prefix,Cost_Account\n\
              1001,Tower \xff,Closed,01,01-5000\n\
              10\xfe2,School,Closed,01,01-5000\n",
        )
        .expect("write");
        let raw = open_table(
            dir.path(),
            "JCM_MASTER__JOB",
            FileFormat::Csv,
            TableRole::Job,
            10,
        )
        .expect("opens")
        .next()
        .expect("a batch")
        .expect("ok");
        assert_eq!(raw.decoded_lossily, BTreeMap::from([("Description", 1)]));
        let desc = raw
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        assert_eq!(desc.expect("text").value(0), "Tower \u{fffd}");
        // A key is not descriptive: its row is set aside, naming the column and the value.
        assert_eq!(raw.problems.len(), 1);
        assert_eq!(raw.problems[0].row, 1);
        assert_eq!(
            raw.problems[0].message,
            "column Job: value \"10\\xfe2\" is not valid UTF-8"
        );
    }
}
