//! Sage tables exported as files: one file per table, named after the table, CSV or Parquet.
//!
//! Readers yield [`RawBatch`]es: the source columns renamed to their Arrow names but not yet typed
//! (CSV gives text, Parquet whatever the export wrote), plus per-row problems found while reading.
//! [`super::type_batch`] does the typing. Only the columns jcsync uses are read (an allow-list):
//! the excluded Transaction (JC) columns are never materialized, as with the SQL Server source.
//!
//! This module holds the table set of an export directory as a [`Source`] ([`FileExportSource`]):
//! where a table's file is, how its header is matched to the Sage columns, and [`TableReader`]
//! over the two formats. `csv` reads CSV files (framed by [`csv_records`]), `parquet` Parquet
//! files.

mod csv;
pub mod csv_records;
mod parquet;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

pub use self::csv::{escaped, CsvTableReader};
pub use self::parquet::ParquetTableReader;
use super::keys::{is_key_scan_column, keys_of_raw, KeyBatches};
use super::source::{table_name, RawBatches, SendRawBatches, Source, TABLE_ROLES};
use super::{RawBatch, ReadWindow};
use crate::config::{FileFormat, FilesSource, PipelineConfig, TableNames};
use crate::error::{Error, Result};
use crate::model::schema::{ColumnSpec, TableRole, SOURCE_LINE};

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
        FileFormat::Parquet => self::parquet::estimate_rows(file),
        FileFormat::Csv => self::csv::estimate_rows(file),
    }
}

/// Where each wanted column is found in the file.
struct ColumnPlan {
    /// For each spec column, its index in the file, or None when the file lacks an optional column
    /// (or the read does not want it: see [`ColumnPlan::only`]).
    spec_index: Vec<Option<usize>>,
}

impl ColumnPlan {
    /// Read only the spec columns `wanted` accepts (by Arrow name); the others are NULL.
    fn only(mut self, role: TableRole, wanted: Option<fn(&str) -> bool>) -> ColumnPlan {
        if let Some(wanted) = wanted {
            for (idx, spec) in self.spec_index.iter_mut().zip(role.columns()) {
                if !wanted(spec.name) {
                    *idx = None;
                }
            }
        }
        self
    }
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
    open_table_columns(dir, table, format, role, batch_rows, None)
}

/// As [`open_table`], reading only the spec columns `wanted` accepts (by Arrow name; None: all
/// of them); the batches keep their shape, the other columns NULL. Parquet decodes only those
/// columns; CSV still frames every record but copies only their fields.
pub fn open_table_columns(
    dir: &Path,
    table: &str,
    format: FileFormat,
    role: TableRole,
    batch_rows: usize,
    wanted: Option<fn(&str) -> bool>,
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
            CsvTableReader::open(path, table, role, batch_rows, wanted).map(TableReader::Csv)
        }
        FileFormat::Parquet => ParquetTableReader::open(path, table, role, batch_rows, wanted)
            .map(TableReader::Parquet),
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
            TableReader::Csv(r) => r.path(),
            TableReader::Parquet(r) => r.path(),
        }
    }

    /// Drop, while reading, the rows whose Transaction_Type is not a cost type (counting them by
    /// type in [`RawBatch::not_cost_type`]), so that rows the project stage would filter out are
    /// never copied, typed or filtered. CSV only: a Parquet export's rows come column by column,
    /// and the project stage filters them. A row is kept, to be quarantined or filtered later as
    /// before, when its type is empty, not UTF-8, or its record is malformed.
    pub fn keep_only_cost_rows(&mut self) {
        if let TableReader::Csv(r) = self {
            r.keep_only_cost_rows();
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

/// An export directory as a [`Source`]: one file per table, every one found with its required
/// columns when it was opened.
pub struct FileExportSource {
    dir: PathBuf,
    format: FileFormat,
    tables: TableNames,
    batch_rows: usize,
    window: ReadWindow,
    description: String,
}

impl FileExportSource {
    /// Check that every table's file exists with its required columns; nothing is read past the
    /// headers. `window` is kept for [`Source::window`] (the project stage applies `since`).
    pub fn open(
        config: &PipelineConfig,
        files: &FilesSource,
        window: ReadWindow,
    ) -> Result<FileExportSource> {
        let source = FileExportSource {
            dir: files.dir.clone(),
            format: files.format,
            tables: config.tables.clone(),
            batch_rows: config.pipeline.batch_rows,
            window,
            description: config.source.describe(),
        };
        for role in TABLE_ROLES {
            source.reader(role)?;
        }
        Ok(source)
    }

    fn reader(&self, role: TableRole) -> Result<TableReader> {
        open_table(
            &self.dir,
            self.table_name(role),
            self.format,
            role,
            self.batch_rows,
        )
    }
}

impl Source for FileExportSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn table_name(&self, role: TableRole) -> &str {
        table_name(&self.tables, role)
    }

    fn window(&self) -> ReadWindow {
        self.window
    }

    /// See [`estimate_rows`].
    fn estimated_transactions(&self) -> Option<u64> {
        estimate_rows(
            &self.dir,
            self.table_name(TableRole::Transaction),
            self.format,
        )
    }

    fn raw_dimension(&self, role: TableRole) -> Result<RawBatches<'_>> {
        Ok(Box::new(self.reader(role)?))
    }

    /// With `cost_rows_only`, a CSV reader drops the rows that are not costs as it reads
    /// ([`TableReader::keep_only_cost_rows`]).
    fn raw_transactions(&self, cost_rows_only: bool) -> Result<SendRawBatches> {
        let mut reader = self.reader(TableRole::Transaction)?;
        if cost_rows_only {
            reader.keep_only_cost_rows();
        }
        Ok(Box::new(reader))
    }

    /// The transaction file read for [`KEY_SCAN_COLUMNS`](crate::extract::KEY_SCAN_COLUMNS)
    /// only (a Parquet projection; CSV records framed, only the key fields copied), the rows
    /// that are not costs dropped as they are read.
    fn line_keys(&self, company: &str) -> Result<KeyBatches> {
        let mut reader = open_table_columns(
            &self.dir,
            self.table_name(TableRole::Transaction),
            self.format,
            TableRole::Transaction,
            self.batch_rows,
            Some(is_key_scan_column),
        )?;
        reader.keep_only_cost_rows();
        Ok(keys_of_raw(Box::new(reader), company, self.window.since))
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
