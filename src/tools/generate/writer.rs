//! Writing a generated table, CSV or Parquet, one row of text fields at a time (the files
//! `jcsync generate` leaves, shaped as a Sage export would be).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::GenerateError;
use crate::config::FileFormat;

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A table being written, CSV or Parquet, one row of text fields at a time.
pub(super) enum TableWriter {
    Csv {
        path: PathBuf,
        out: BufWriter<File>,
    },
    Parquet {
        path: PathBuf,
        /// Boxed: the writer is large and the CSV variant small.
        writer: Box<ArrowWriter<File>>,
        schema: SchemaRef,
        builders: Vec<StringBuilder>,
        rows: usize,
    },
}

const PARQUET_BATCH: usize = 8192;

impl TableWriter {
    pub(super) fn create(
        dir: &Path,
        table: &str,
        format: FileFormat,
        header: &[&str],
    ) -> Result<TableWriter, GenerateError> {
        let path = dir.join(format!("{table}.{}", format.extension()));
        let file = File::create(&path).map_err(io(&path))?;
        match format {
            FileFormat::Csv => {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                out.write_all(header.join(",").as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .map_err(io(&path))?;
                Ok(TableWriter::Csv { path, out })
            }
            FileFormat::Parquet => {
                let schema: SchemaRef = Arc::new(Schema::new(
                    header
                        .iter()
                        .map(|h| Field::new(*h, DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ));
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                        GenerateError::Parquet {
                            path: path.clone(),
                            source,
                        }
                    })?;
                Ok(TableWriter::Parquet {
                    path,
                    writer: Box::new(writer),
                    schema,
                    builders: header.iter().map(|_| StringBuilder::new()).collect(),
                    rows: 0,
                })
            }
        }
    }

    /// Write one row; an empty field is written empty (CSV) or NULL (Parquet).
    pub(super) fn row(&mut self, fields: &[String]) -> Result<(), GenerateError> {
        match self {
            TableWriter::Csv { path, out } => {
                let mut write = || -> std::io::Result<()> {
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(f.as_bytes())?;
                    }
                    out.write_all(b"\n")
                };
                write().map_err(io(path))
            }
            TableWriter::Parquet { builders, rows, .. } => {
                for (b, f) in builders.iter_mut().zip(fields) {
                    if f.is_empty() {
                        b.append_null();
                    } else {
                        b.append_value(f);
                    }
                }
                *rows += 1;
                if *rows >= PARQUET_BATCH {
                    self.flush_batch()?;
                }
                Ok(())
            }
        }
    }

    fn flush_batch(&mut self) -> Result<(), GenerateError> {
        if let TableWriter::Parquet {
            path,
            writer,
            schema,
            builders,
            rows,
        } = self
        {
            if *rows == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            let parquet_err = |source| GenerateError::Parquet {
                path: path.clone(),
                source,
            };
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| parquet_err(parquet::errors::ParquetError::from(e)))?;
            writer.write(&batch).map_err(parquet_err)?;
            *rows = 0;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<(), GenerateError> {
        self.flush_batch()?;
        match self {
            TableWriter::Csv { path, mut out } => out.flush().map_err(io(&path)),
            TableWriter::Parquet { path, writer, .. } => writer
                .close()
                .map(|_| ())
                .map_err(|source| GenerateError::Parquet { path, source }),
        }
    }
}
