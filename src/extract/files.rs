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
use super::RawBatch;
use crate::config::FileFormat;
use crate::error::{Error, Result};
use crate::quarantine::ReasonCode;
use crate::schema::{ColumnSpec, TableRole, COST_TRANSACTION_TYPES, SOURCE_LINE};

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

fn plan_columns(
    role: TableRole,
    table: &str,
    path: &Path,
    header: &[String],
) -> Result<ColumnPlan> {
    let by_name: HashMap<String, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim().to_ascii_lowercase(), i))
        .collect();
    let find = |name: &str| by_name.get(&name.to_ascii_lowercase()).copied();
    let mut spec_index = Vec::with_capacity(role.columns().len());
    for spec in role.columns() {
        let found = find(spec.source);
        if found.is_none() {
            if spec.required {
                return Err(Error::MissingColumn {
                    table: table.to_string(),
                    path: path.to_path_buf(),
                    column: spec.source.to_string(),
                    found: header.join(", "),
                });
            }
            tracing::warn!(
                table,
                column = spec.source,
                "optional column missing from {}; it is read as NULL",
                path.display()
            );
        }
        spec_index.push(found);
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

/// CSV table reader. Records with the wrong number of fields or invalid UTF-8 become row problems.
pub struct CsvTableReader {
    path: PathBuf,
    role: TableRole,
    reader: csv::Reader<File>,
    plan: ColumnPlan,
    header_len: usize,
    batch_rows: usize,
    record: csv::ByteRecord,
    /// Text bytes of each column in the last batch (capacity hint for the next).
    value_bytes: Vec<usize>,
    /// The file column of Transaction_Type, when non-cost rows are dropped as they are read.
    cost_filter: Option<usize>,
    done: bool,
}

impl CsvTableReader {
    fn open(path: PathBuf, table: &str, role: TableRole, batch_rows: usize) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_path(&path)
            .map_err(|e| Error::Source {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let header: Vec<String> = reader
            .byte_headers()
            .map_err(|e| Error::Source {
                path: path.clone(),
                message: format!("cannot read the header: {e}"),
            })?
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .to_string()
            })
            .collect();
        let plan = plan_columns(role, table, &path, &header)?;
        Ok(CsvTableReader {
            path,
            role,
            reader,
            plan,
            header_len: header.len(),
            batch_rows,
            record: csv::ByteRecord::new(),
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
        let n_cols = n_spec;
        // Sized from the previous batch, so that the buffers rarely grow (and copy) mid-batch.
        let mut builders: Vec<StringBuilder> = (0..n_cols)
            .map(|c| {
                let bytes = self.value_bytes.get(c).copied().unwrap_or(0);
                StringBuilder::with_capacity(self.batch_rows, bytes + bytes / 8)
            })
            .collect();
        let mut lines = Vec::with_capacity(self.batch_rows);
        let mut problems = Vec::new();
        let mut not_cost_type: BTreeMap<String, u64> = BTreeMap::new();
        while lines.len() < self.batch_rows {
            let more = match self.reader.read_byte_record(&mut self.record) {
                Ok(more) => more,
                Err(e) => {
                    // An I/O error or a broken quote: the rest of the file cannot be trusted.
                    return Err(Error::Source {
                        path: self.path.clone(),
                        message: format!("cannot read a record: {e}"),
                    });
                }
            };
            if !more {
                self.done = true;
                break;
            }
            if let Some(ty) = self.cost_filter.and_then(|i| self.not_cost_type(i)) {
                crate::schema::count_type(&mut not_cost_type, ty);
                continue;
            }
            let row = lines.len();
            let line = self.record.position().map(|p| p.line()).unwrap_or(0);
            lines.push(line);
            if self.record.len() != self.header_len {
                problems.push(CellProblem {
                    row,
                    code: ReasonCode::MalformedRecord,
                    message: format!(
                        "line {line}: expected {} fields, found {}",
                        self.header_len,
                        self.record.len()
                    ),
                });
            }
            // One UTF-8 check per record (not per field); the record's buffer is reused.
            match csv::StringRecord::from_byte_record(std::mem::take(&mut self.record)) {
                Ok(text) => {
                    for (b, idx) in builders.iter_mut().zip(&self.plan.spec_index) {
                        match idx.and_then(|i| text.get(i)) {
                            Some(v) => b.append_value(v),
                            None => b.append_null(),
                        }
                    }
                    self.record = text.into_byte_record();
                }
                Err(e) => {
                    self.record = e.into_byte_record();
                    for (b, idx) in builders.iter_mut().zip(&self.plan.spec_index) {
                        match idx.and_then(|i| self.record.get(i)) {
                            Some(bytes) => match std::str::from_utf8(bytes) {
                                Ok(v) => b.append_value(v),
                                Err(_) => {
                                    b.append_null();
                                    problems.push(CellProblem {
                                        row,
                                        code: ReasonCode::MalformedRecord,
                                        message: format!("line {line}: a field is not valid UTF-8"),
                                    });
                                }
                            },
                            None => b.append_null(),
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
        }))
    }

    /// The current record's Transaction_Type (file column `i`), trimmed, when it is a non-empty
    /// type that is not a cost type in a well-formed record.
    fn not_cost_type(&self, i: usize) -> Option<&str> {
        if self.record.len() != self.header_len {
            return None;
        }
        let ty = trim_cell(std::str::from_utf8(self.record.get(i)?).ok()?);
        (!ty.is_empty() && !COST_TRANSACTION_TYPES.contains(&ty)).then_some(ty)
    }
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
        let header = "Job,Transaction_Type,Accounting_Date,Amount";
        write(
            dir.path(),
            "JCT_CURRENT__TRANSACTION.csv",
            &format!(
                "{header}\n\
                 1001,AP cost,2024-01-02,1\n\
                 1001,Original estimate  ,2024-01-02,2\n\
                 1001,Work billed,2024-01-02,x\n\
                 1001,,2024-01-02,4\n\
                 1001,Original estimate\n\
                 1001,Original estimate,2024-01-02,6\n\
                 1001, PR cost,2024-01-02,7\n"
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
        assert!(raw.problems[0].message.contains("line 3"));
        assert!(r.next().is_none());
    }
}
