//! The Parquet reader of a table file: only the wanted columns are decoded (a projection), in
//! batches, as the export typed them ([`crate::extract::type_batch`] types them as it does text).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::{plan_columns, raw_schema, ColumnPlan};
use crate::error::{Error, Result};
use crate::extract::RawBatch;
use crate::model::schema::TableRole;

/// A Parquet file's row count, from its footer (see [`super::estimate_rows`]).
pub(super) fn estimate_rows(file: File) -> Option<u64> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    u64::try_from(builder.metadata().file_metadata().num_rows()).ok()
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
    pub(super) fn open(
        path: PathBuf,
        table: &str,
        role: TableRole,
        batch_rows: usize,
        wanted: Option<fn(&str) -> bool>,
    ) -> Result<Self> {
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
        let plan = plan_columns(role, table, &path, &header)?.only(role, wanted);
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

    /// The file being read.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn next_batch(&mut self) -> Result<Option<RawBatch>> {
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
