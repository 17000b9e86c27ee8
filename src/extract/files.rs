//! Sage tables exported as files: one file per table, named after the table, CSV or Parquet.
//!
//! Readers yield [`RawBatch`]es: the source columns renamed to their Arrow names but not yet typed
//! (CSV gives text, Parquet whatever the export wrote), plus per-row problems found while reading.
//! [`super::type_batch`] does the typing. Only the columns jcsync uses are read (an allow-list):
//! the excluded Transaction (JC) columns are never materialized, as with the SQL Server source.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, StringBuilder, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::convert::{trim_cell, CellProblem};
use super::csv_records::{self, Framed, RecordReader};
use super::RawBatch;
use crate::config::FileFormat;
use crate::error::{Error, Result};
use crate::model::schema::{ColumnSpec, TableRole, EXCLUDED_TRANSACTION_COLUMNS, SOURCE_LINE};
use crate::quarantine::ReasonCode;

/// Path of a table's file in an export directory.
pub fn table_path(dir: &Path, table: &str, format: FileFormat) -> PathBuf {
    dir.join(format!("{table}.{}", format.extension()))
}

/// About how many rows a table's file holds, to size state that grows with rows (the natural-key
/// filter) once instead of in doublings: a Parquet file's row count, or a CSV file's size times
/// the line density of its first MiB. None when it cannot be told (an empty or unreadable file).
pub fn estimate_rows(dir: &Path, table: &str, format: FileFormat) -> Option<u64> {
    let path = table_path(dir, table, format);
    let file = File::open(&path).ok()?;
    match format {
        FileFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
            u64::try_from(builder.metadata().file_metadata().num_rows()).ok()
        }
        FileFormat::Csv => {
            use std::io::Read;
            let size = file.metadata().ok()?.len();
            let mut sample = Vec::with_capacity(1 << 20);
            file.take(1 << 20).read_to_end(&mut sample).ok()?;
            let lines = sample.iter().filter(|b| **b == b'\n').count() as u64;
            if lines < 2 || sample.is_empty() {
                return None;
            }
            // The header is one of the sampled lines.
            Some(
                ((size as f64 * lines as f64 / sample.len() as f64).round() as u64)
                    .saturating_sub(1),
            )
        }
    }
}

/// Where each wanted column is found in the file.
struct ColumnPlan {
    /// For each spec column, its index in the file, or None when the file lacks an optional column.
    spec_index: Vec<Option<usize>>,
}

/// How a header name is matched to a Sage column: without a byte order mark, trimmed, ASCII
/// case-insensitive.
pub fn header_key(name: &str) -> String {
    name.trim_start_matches('\u{feff}')
        .trim()
        .to_ascii_lowercase()
}

/// The first column of `role` that `header` names more than once (as [`header_key`] matches
/// names), with each spelling found and its 1-based position. A repeat of a column jcsync does
/// not read (an excluded one, an unknown one) is no concern of the run.
pub fn duplicated_column(
    role: TableRole,
    header: &[String],
) -> Option<(&'static str, Vec<String>)> {
    role.columns().iter().find_map(|spec| {
        let wanted = spec.source.to_ascii_lowercase();
        let found: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| header_key(h) == wanted)
            .map(|(i, h)| format!("{h:?} at position {}", i + 1))
            .collect();
        (found.len() > 1).then_some((spec.source, found))
    })
}

fn plan_columns(
    role: TableRole,
    table: &str,
    path: &Path,
    header: &[String],
) -> Result<ColumnPlan> {
    if let Some((column, found)) = duplicated_column(role, header) {
        return Err(Error::DuplicateColumn {
            table: table.to_string(),
            location: path.display().to_string(),
            column: column.to_string(),
            found,
        });
    }
    let by_name: HashMap<String, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (header_key(h), i))
        .collect();
    let find = |name: &str| by_name.get(&name.to_ascii_lowercase()).copied();
    let spec_index: Vec<Option<usize>> = role.columns().iter().map(|s| find(s.source)).collect();
    let missing: Vec<String> = role
        .columns()
        .iter()
        .zip(&spec_index)
        .filter(|(spec, found)| found.is_none() && spec.must_exist())
        .map(|(spec, _)| spec.source.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::MissingColumn {
            table: table.to_string(),
            path: path.to_path_buf(),
            columns: missing,
            found: header.join(", "),
        });
    }
    for (spec, _) in role
        .columns()
        .iter()
        .zip(&spec_index)
        .filter(|(_, f)| f.is_none())
    {
        tracing::warn!(
            table,
            column = spec.source,
            "optional column missing from {}; it is read as NULL",
            path.display()
        );
    }
    Ok(ColumnPlan { spec_index })
}

fn raw_schema(role: TableRole, types: &[DataType]) -> Arc<Schema> {
    let mut fields = vec![Field::new(SOURCE_LINE, DataType::UInt64, false)];
    fields.extend(
        role.columns()
            .iter()
            .zip(types)
            .map(|(c, t)| Field::new(c.name, t.clone(), true)),
    );
    Arc::new(Schema::new(fields))
}

/// Open a table file and check it has every required column. Nothing is read past the header.
pub fn open_table(
    dir: &Path,
    table: &str,
    format: FileFormat,
    role: TableRole,
    batch_rows: usize,
) -> Result<TableReader> {
    let path = table_path(dir, table, format);
    if !path.is_file() {
        return Err(Error::MissingTable {
            table: table.to_string(),
            path,
        });
    }
    match format {
        FileFormat::Csv => {
            CsvTableReader::open(path, table, role, batch_rows).map(TableReader::Csv)
        }
        FileFormat::Parquet => {
            ParquetTableReader::open(path, table, role, batch_rows).map(TableReader::Parquet)
        }
    }
}

/// A table file being read in batches.
pub enum TableReader {
    Csv(CsvTableReader),
    Parquet(ParquetTableReader),
}

impl TableReader {
    /// The file being read.
    pub fn path(&self) -> &Path {
        match self {
            TableReader::Csv(r) => &r.path,
            TableReader::Parquet(r) => &r.path,
        }
    }

    /// Drop, while reading, the rows whose Transaction_Type is not a cost type (counting them by
    /// type in [`RawBatch::not_cost_type`]), so that rows the project stage would filter out are
    /// never copied, typed or filtered. CSV only: a Parquet export's rows come column by column,
    /// and the project stage filters them. A row is kept, to be quarantined or filtered later as
    /// before, when its type is empty, not UTF-8, or its record is malformed.
    pub fn keep_only_cost_rows(&mut self) {
        if let TableReader::Csv(r) = self {
            if r.role == TableRole::Transaction {
                r.cost_filter = r
                    .role
                    .columns()
                    .iter()
                    .position(|c| c.name == "transaction_type")
                    .and_then(|k| r.plan.spec_index[k]);
            }
        }
    }
}

impl Iterator for TableReader {
    type Item = Result<RawBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            TableReader::Csv(r) => r.next_batch().transpose(),
            TableReader::Parquet(r) => r.next_batch().transpose(),
        }
    }
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
    fn open(path: PathBuf, table: &str, role: TableRole, batch_rows: usize) -> Result<Self> {
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
        let plan = plan_columns(role, table, &path, &header)?;
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

    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
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
                    crate::model::cost_type::count_type(&mut not_cost_type, ty);
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
        let ty = trim_cell(std::str::from_utf8(self.records.field(i)?).ok()?);
        (!ty.is_empty() && !crate::model::cost_type::is_cost_type(ty)).then_some(ty)
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

/// Parquet table reader: reads only the wanted columns, in batches.
pub struct ParquetTableReader {
    path: PathBuf,
    role: TableRole,
    reader: ParquetRecordBatchReader,
    plan: ColumnPlan,
    /// Position of each planned file column within the projected batches.
    projected_pos: HashMap<usize, usize>,
    next_line: u64,
}

impl ParquetTableReader {
    fn open(path: PathBuf, table: &str, role: TableRole, batch_rows: usize) -> Result<Self> {
        let source_err = |e: parquet::errors::ParquetError| Error::Source {
            path: path.clone(),
            message: e.to_string(),
        };
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(source_err)?;
        let header: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let plan = plan_columns(role, table, &path, &header)?;
        let mut wanted: Vec<usize> = plan.spec_index.iter().flatten().copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let projected_pos = wanted.iter().enumerate().map(|(p, i)| (*i, p)).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_rows)
            .build()
            .map_err(source_err)?;
        Ok(ParquetTableReader {
            path,
            role,
            reader,
            plan,
            projected_pos,
            next_line: 1,
        })
    }

    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        let Some(batch) = self.reader.next() else {
            return Ok(None);
        };
        let batch = batch.map_err(|e| Error::Source {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let n = batch.num_rows();
        let first = self.next_line;
        self.next_line += n as u64;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(
            first..first + n as u64,
        ))];
        let mut types = Vec::with_capacity(self.plan.spec_index.len());
        for idx in &self.plan.spec_index {
            let col = match idx.and_then(|i| self.projected_pos.get(&i)) {
                Some(p) => batch.column(*p).clone(),
                None => new_null_array(&DataType::Utf8, n),
            };
            types.push(col.data_type().clone());
            columns.push(col);
        }
        let schema = raw_schema(self.role, &types);
        Ok(Some(RawBatch {
            batch: RecordBatch::try_new(schema, columns)?,
            problems: Vec::new(),
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        }))
    }
}

/// The spec column of a raw batch column name, for tests and messages.
pub fn spec_by_name(role: TableRole, name: &str) -> Option<&'static ColumnSpec> {
    role.columns().iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) {
        let mut f = File::create(dir.join(name)).expect("create");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn row_estimates_are_near_the_truth_and_none_for_what_cannot_be_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::from("A,B\n");
        for i in 0..50_000 {
            text.push_str(&format!("{i},row {}\n", i % 1000));
        }
        write(dir.path(), "T.csv", &text);
        let est = estimate_rows(dir.path(), "T", FileFormat::Csv).expect("estimate");
        assert!((45_000..=55_000).contains(&est), "{est}");
        write(dir.path(), "E.csv", "A,B");
        assert_eq!(estimate_rows(dir.path(), "E", FileFormat::Csv), None);
        assert_eq!(estimate_rows(dir.path(), "missing", FileFormat::Csv), None);
        let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sage"));
        let lines = std::fs::read_to_string(fixtures.join("JCT_CURRENT__TRANSACTION.csv"))
            .expect("fixture")
            .lines()
            .count() as u64;
        let est = estimate_rows(fixtures, "JCT_CURRENT__TRANSACTION", FileFormat::Csv);
        assert_eq!(
            est,
            Some(lines - 1),
            "a file under 1 MiB is counted exactly"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_table(
            dir.path(),
            "JCM_MASTER__JOB",
            FileFormat::Csv,
            TableRole::Job,
            10,
        )
        .err()
        .expect("error");
        let msg = err.to_string();
        assert!(msg.contains("JCM_MASTER__JOB.csv"), "{msg}");
    }

    #[test]
    fn missing_required_column_is_named_with_what_was_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "JCM_MASTER__JOB.csv",
            "Jobb,Description\n1001,x\n",
        );
        let err = open_table(
            dir.path(),
            "JCM_MASTER__JOB",
            FileFormat::Csv,
            TableRole::Job,
            10,
        )
        .err()
        .expect("error");
        let msg = err.to_string();
        assert!(
            msg.contains("required column Job") && msg.contains("Jobb"),
            "{msg}"
        );
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
    fn a_column_named_twice_as_headers_are_matched_is_found_and_others_are_ignored() {
        let header: Vec<String> = ["\u{feff}Job", "Description", " JOB ", "Notes", "Notes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (column, found) = duplicated_column(TableRole::Job, &header).expect("Job twice");
        assert_eq!(column, "Job");
        assert_eq!(
            found,
            vec![
                "\"\\u{feff}Job\" at position 1".to_string(),
                "\" JOB \" at position 3".to_string()
            ]
        );
        // A repeat of a column that is not read is no concern.
        assert_eq!(duplicated_column(TableRole::Job, &header[1..]), None);
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

    #[test]
    fn every_missing_key_column_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let header = crate::model::schema::TRANSACTION_SOURCE_COLUMNS
            .iter()
            .filter(|c| !["Run", "Sequence"].contains(c))
            .copied()
            .collect::<Vec<_>>()
            .join(",");
        write(
            dir.path(),
            "JCT_CURRENT__TRANSACTION.csv",
            &format!("{header}\n"),
        );
        let err = open_table(
            dir.path(),
            "JCT_CURRENT__TRANSACTION",
            FileFormat::Csv,
            TableRole::Transaction,
            10,
        )
        .err()
        .expect("error")
        .to_string();
        assert!(
            err.contains("JCT_CURRENT__TRANSACTION.csv")
                && err.contains("required columns Run, Sequence are missing"),
            "{err}"
        );
    }
}
