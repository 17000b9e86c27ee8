//! Staging: Parquet snapshots of exactly what the load consumes, and the run's other files.
//!
//! [`hashed`] holds the hashed, atomically renamed file every run file is written through;
//! this file the Parquet file sets (parts rolled by rows, columns encoded in parallel) and the
//! writer properties. Depends only on the model and the config.
//!
//! Every file is written under `<name>.tmp`, hashed while it is written, and renamed into place
//! only when complete, so a crash never leaves a file that looks finished. The manifest, written
//! last, lists every file with its rows, size and sha256.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::config::{Compression, StageConfig};
use crate::error::{Error, Result};

mod hashed;

pub use hashed::{sha256_file, write_json, FileEntry, HashedFile};

/// The encoding of a staged column when it is not the writer's default (dictionary, falling
/// back to plain). Only for the type it suits: a Parquet writer fails on a mismatch.
fn column_encoding(name: &str, data_type: &DataType) -> Option<Encoding> {
    use crate::model::schema::{DIRECT_COST_ORIGIN_ID, LINE_ORIGIN_ID, SOURCE_LINE};
    match data_type {
        DataType::Utf8 if [LINE_ORIGIN_ID, DIRECT_COST_ORIGIN_ID].contains(&name) => {
            Some(Encoding::DELTA_BYTE_ARRAY)
        }
        DataType::UInt64 | DataType::Int64 if [SOURCE_LINE, "run"].contains(&name) => {
            Some(Encoding::DELTA_BINARY_PACKED)
        }
        _ => None,
    }
}

/// Parquet writer properties from the `[stage]` section, for files of `schema`.
pub fn writer_properties(config: &StageConfig, schema: &Schema) -> Result<WriterProperties> {
    let compression = match config.compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(config.zstd_level)?),
        Compression::Snappy => ParquetCompression::SNAPPY,
        Compression::None => ParquetCompression::UNCOMPRESSED,
    };
    // Columns unique per row, or nearly (an invoice number, a batch, a direct cost's origin id:
    // 100k–340k distinct values in 2M rows), gain nothing from a dictionary but its cost: every
    // value is interned, then the dictionary is dropped once it outgrows its page. Without one
    // the 2M company's staged files are smaller (zstd finds the repeats) and the run is 1.4 %
    // fewer instructions. The same holds for the numbers that are mostly distinct within a row
    // group of 65,536 (amount 66k distinct, unit cost 40k, time stamp 35k, units 28k, run 15k):
    // without their dictionaries a 200k stage-only run is 2.3 % fewer instructions and its
    // staged files 9 % smaller.
    let mut builder = WriterProperties::builder();
    for unique in [
        crate::model::schema::SOURCE_LINE,
        crate::model::schema::LINE_ORIGIN_ID,
        crate::model::schema::DIRECT_COST_ORIGIN_ID,
        "invoice",
        "batch",
        "invoice_description",
        "amount",
        "unit_cost",
        "units",
        "time_stamp",
        "run",
    ] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    // The origin ids share a long prefix with the row before (a direct cost's, often all of
    // it), and the source line and run only grow, mostly by small steps: delta-encoded, zstd
    // reads a fraction of their bytes (a 200k stage-only run: 4.83 G -> 4.63 G instructions,
    // staged files 2.5 % smaller). Delta-encoding invoice, batch and invoice description too
    // cost more than it saved (4.67 G).
    for field in schema.fields() {
        if let Some(encoding) = column_encoding(field.name(), field.data_type()) {
            builder =
                builder.set_column_encoding(ColumnPath::from(field.name().as_str()), encoding);
        }
    }
    // Min/max statistics of text columns cost a comparison per value (5.6 % of a stage-only
    // run's instructions) and nothing reads them: staged rows are not sorted, so no reader can
    // skip a page or row group by a text range. Dates and numbers keep theirs.
    for field in crate::model::schema::enriched_schema().fields() {
        if field.data_type() == &arrow::datatypes::DataType::Utf8 {
            builder = builder.set_column_statistics_enabled(
                ColumnPath::from(field.name().as_str()),
                EnabledStatistics::None,
            );
        }
    }
    Ok(builder
        .set_compression(compression)
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_created_by(format!("jcsync {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// A set of Parquet files named by a pattern, rolling to a new file every `part_rows` rows.
pub struct ParquetFileSet {
    run_dir: PathBuf,
    name: fn(usize) -> String,
    schema: SchemaRef,
    props: WriterProperties,
    part_rows: usize,
    current: Option<PartWriter>,
    entries: Vec<FileEntry>,
}

/// Threads that encode the columns of a staged file (the stage thread plus helpers): a row's
/// columns are independent, so a wide schema splits well across cores.
fn encode_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// One Parquet file being written, its columns encoded in parallel (the `ArrowColumnWriter`
/// pattern of the parquet crate), row group by row group.
struct PartWriter {
    file: SerializedFileWriter<HashedFile>,
    factory: ArrowRowGroupWriterFactory,
    /// The current row group's column writers, one per leaf column (taken when it closes).
    columns: Vec<Mutex<Option<ArrowColumnWriter>>>,
    row_groups: usize,
    rows_in_group: usize,
    group_rows: usize,
    rows: u64,
    threads: usize,
}

/// Run `f(i)` for every `i < n` on up to `threads` threads (this one included), each thread
/// taking the next index when it is done with one; the first error wins.
fn parallel_for(threads: usize, n: usize, f: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return Ok(());
            }
            f(i)?;
        }
    };
    if threads <= 1 || n <= 1 {
        return work();
    }
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(n)).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for h in helpers {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::TaskFailed {
                    stage: "stage",
                    message: "a column encoder panicked".into(),
                })
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::TaskFailed {
        stage: "stage",
        message: "a column encoder failed mid-write".into(),
    })
}

impl PartWriter {
    fn create(file: HashedFile, schema: SchemaRef, props: WriterProperties) -> Result<PartWriter> {
        let group_rows = props.max_row_group_row_count().unwrap_or(1 << 20).max(1);
        // ArrowWriter sets up the file (schema, Arrow schema metadata); its lower-level parts
        // then let the columns be encoded on several threads.
        let (file, factory) =
            ArrowWriter::try_new(file, schema, Some(props))?.into_serialized_writer()?;
        let columns = Self::fresh_columns(&factory, 0)?;
        Ok(PartWriter {
            file,
            factory,
            columns,
            row_groups: 0,
            rows_in_group: 0,
            group_rows,
            rows: 0,
            threads: encode_threads(),
        })
    }

    fn fresh_columns(
        factory: &ArrowRowGroupWriterFactory,
        row_group: usize,
    ) -> Result<Vec<Mutex<Option<ArrowColumnWriter>>>> {
        Ok(factory
            .create_column_writers(row_group)?
            .into_iter()
            .map(|w| Mutex::new(Some(w)))
            .collect())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (batch.num_rows() - offset).min(self.group_rows - self.rows_in_group);
            self.encode(&batch.slice(offset, take))?;
            offset += take;
            self.rows_in_group += take;
            self.rows += take as u64;
            if self.rows_in_group >= self.group_rows {
                self.flush_group()?;
            }
        }
        Ok(())
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut leaves = Vec::with_capacity(self.columns.len());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        if leaves.len() != self.columns.len() {
            return Err(Error::BatchShape {
                message: format!(
                    "batch has {} leaf columns, the file {}",
                    leaves.len(),
                    self.columns.len()
                ),
            });
        }
        let columns = &self.columns;
        parallel_for(self.threads, leaves.len(), |i| {
            if let Some(w) = lock(&columns[i])?.as_mut() {
                w.write(&leaves[i])?;
            }
            Ok(())
        })
    }

    /// Close the current row group: its column chunks, in schema order, into the file.
    fn flush_group(&mut self) -> Result<()> {
        if self.rows_in_group == 0 {
            return Ok(());
        }
        self.row_groups += 1;
        let next = Self::fresh_columns(&self.factory, self.row_groups)?;
        let writers = std::mem::replace(&mut self.columns, next);
        let chunks: Vec<Mutex<Option<ArrowColumnChunk>>> =
            (0..writers.len()).map(|_| Mutex::new(None)).collect();
        parallel_for(self.threads, writers.len(), |i| {
            if let Some(w) = lock(&writers[i])?.take() {
                *lock(&chunks[i])? = Some(w.close()?);
            }
            Ok(())
        })?;
        let mut group = self.file.next_row_group()?;
        for chunk in chunks {
            let chunk = chunk
                .into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| Error::TaskFailed {
                    stage: "stage",
                    message: "a column chunk is missing".into(),
                })?;
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.rows_in_group = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<(HashedFile, u64)> {
        self.flush_group()?;
        Ok((self.file.into_inner()?, self.rows))
    }
}

impl ParquetFileSet {
    /// A file set in `run_dir`, file `i` named `name(i)`.
    pub fn new(
        run_dir: &Path,
        name: fn(usize) -> String,
        schema: SchemaRef,
        props: WriterProperties,
        part_rows: usize,
    ) -> ParquetFileSet {
        ParquetFileSet {
            run_dir: run_dir.to_path_buf(),
            name,
            schema,
            props,
            part_rows: part_rows.max(1),
            current: None,
            entries: Vec::new(),
        }
    }

    fn open(&mut self) -> Result<()> {
        let file = HashedFile::create(&self.run_dir, &(self.name)(self.entries.len()))?;
        self.current = Some(PartWriter::create(
            file,
            self.schema.clone(),
            self.props.clone(),
        )?);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(writer) = self.current.take() {
            let (file, rows) = writer.finish()?;
            self.entries.push(file.finish(Some(rows))?);
        }
        Ok(())
    }

    /// Append a batch (its schema must be the set's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            self.open()?;
        }
        if let Some(writer) = self.current.as_mut() {
            writer.write(batch)?;
            if writer.rows >= self.part_rows as u64 {
                self.close()?;
            }
        }
        Ok(())
    }

    /// Close the last file and return every file written. A set that received no rows still
    /// writes one empty file, so readers always find the schema.
    pub fn finish(mut self) -> Result<Vec<FileEntry>> {
        if self.current.is_none() && self.entries.is_empty() {
            self.open()?;
        }
        self.close()?;
        Ok(self.entries)
    }
}

/// Name of staged part `i`.
pub fn staged_part_name(i: usize) -> String {
    format!("staged/part-{i:05}.parquet")
}

/// Name of the quarantine file (one file whatever its size).
pub fn quarantine_name(_: usize) -> String {
    "quarantine.parquet".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))])
            .expect("batch")
    }

    #[test]
    fn parts_roll_and_hash_matches_the_file_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = batch(10);
        let props = writer_properties(&StageConfig::default(), &b.schema()).expect("props");
        let mut set = ParquetFileSet::new(dir.path(), staged_part_name, b.schema(), props, 25);
        for _ in 0..6 {
            set.write(&b).expect("write");
        }
        let entries = set.finish().expect("finish");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].rows, Some(30));
        assert_eq!(entries[1].rows, Some(30));
        for e in &entries {
            let (sha, bytes) = sha256_file(&dir.path().join(&e.path)).expect("hash");
            assert_eq!(sha, e.sha256);
            assert_eq!(bytes, e.bytes);
        }
        // No temporary file is left behind.
        let staged: Vec<_> = std::fs::read_dir(dir.path().join("staged"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(staged.iter().all(|n| n.ends_with(".parquet")), "{staged:?}");
    }

    #[test]
    fn an_unfinished_file_only_exists_under_its_tmp_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = HashedFile::create(dir.path(), "requests.ndjson").expect("create");
        f.write_line(b"{}").expect("write");
        assert!(!dir.path().join("requests.ndjson").exists());
        assert!(dir.path().join("requests.ndjson.tmp").exists());
        let entry = f.finish(Some(1)).expect("finish");
        assert!(dir.path().join("requests.ndjson").exists());
        assert_eq!(entry.bytes, 3);
    }

    #[test]
    fn an_empty_set_still_writes_a_file_with_the_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let props = writer_properties(&StageConfig::default(), &batch(0).schema()).expect("props");
        let set = ParquetFileSet::new(dir.path(), quarantine_name, batch(0).schema(), props, 10);
        let entries = set.finish().expect("finish");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].rows, Some(0));
    }
}
