//! What the pipeline asks of a Sage source: the [`Source`] trait, and what a source hands out:
//! [`RawBatch`]es (the transaction table streamed, dimension tables in batches) and
//! [`DimensionTable`]s (a dimension table read whole). [`super::files::FileExportSource`] and
//! [`super::mssql::SqlServerSource`] implement it; [`super::SageSource`] opens the one a pipeline
//! names.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use super::convert::CellProblem;
use super::keys::{keys_of_raw, KeyBatches};
use super::typing::{type_batch, TypedBatch};
use super::ReadWindow;
use crate::config::TableNames;
use crate::error::Result;
use crate::model::schema::{typed_schema, TableRole};
use crate::quarantine::QuarantineBatch;

/// Source columns renamed to their Arrow names but not yet typed, plus problems found while
/// reading (malformed records).
#[derive(Debug)]
pub struct RawBatch {
    pub batch: RecordBatch,
    pub problems: Vec<CellProblem>,
    /// Rows dropped before typing because their Transaction_Type is not a cost type, counted by
    /// that (trimmed) type: see [`super::files::TableReader::keep_only_cost_rows`] and
    /// [`super::drop_non_cost_rows`].
    pub not_cost_type: BTreeMap<String, u64>,
    /// Values of descriptive dimension columns ([`crate::model::schema::ColumnSpec::lossy`]) that were
    /// not valid UTF-8 and were decoded lossily, by Sage column name.
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

impl RawBatch {
    /// Rows read from the source for this batch: those in it and those dropped as not costs.
    pub fn rows_read(&self) -> u64 {
        self.batch.num_rows() as u64 + self.not_cost_type.values().sum::<u64>()
    }
}

/// Add per-column counts into a running total.
pub fn add_counts(total: &mut BTreeMap<&'static str, u64>, more: &BTreeMap<&'static str, u64>) {
    for (column, n) in more {
        *total.entry(column).or_default() += n;
    }
}

/// A dimension table read whole: its typed rows and the rows that could not be typed.
#[derive(Debug)]
pub struct DimensionTable {
    pub role: TableRole,
    pub table: String,
    pub batch: RecordBatch,
    pub quarantine: Vec<QuarantineBatch>,
    pub rows_read: usize,
    /// Descriptive values decoded lossily, by Sage column name (see [`RawBatch::decoded_lossily`]).
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

/// Every table role, dimensions first.
pub const TABLE_ROLES: [TableRole; 5] = [
    TableRole::Job,
    TableRole::AccountPrefix,
    TableRole::Account,
    TableRole::Invoice,
    TableRole::Transaction,
];

/// The configured table name of a role.
pub fn table_name(tables: &TableNames, role: TableRole) -> &str {
    tables.of(role)
}

/// Raw batches of one table, in source order; an error ends the stream.
pub type RawBatches<'a> = Box<dyn Iterator<Item = Result<RawBatch>> + 'a>;

/// Raw batches that can be read on another thread than the one that asked for them.
pub type SendRawBatches = Box<dyn Iterator<Item = Result<RawBatch>> + Send>;

/// An opened Sage source: every table was found with its required columns when it was opened,
/// so reading is all that is left. Called from blocking threads of the pipeline's runtime.
pub trait Source: Send + Sync {
    /// A short description for manifests and logs, never a password (as
    /// [`crate::config::SourceConfig::describe`] gives it).
    fn describe(&self) -> String;

    /// The configured table name of a role.
    fn table_name(&self, role: TableRole) -> &str;

    /// The transaction table's name in the source (as read, and as quarantine rows name it).
    fn transaction_table(&self) -> &str {
        self.table_name(TableRole::Transaction)
    }

    /// The window the transactions are read in.
    fn window(&self) -> ReadWindow;

    /// About how many transactions the source holds, to size state that grows with rows once;
    /// None when that cannot be told without reading them.
    fn estimated_transactions(&self) -> Option<u64>;

    /// Stream a dimension table as raw batches, not yet typed.
    fn raw_dimension(&self, role: TableRole) -> Result<RawBatches<'_>>;

    /// Stream the transaction table as raw batches, not yet typed (type them with
    /// [`type_batch`]). The excluded columns are not read (the project stage's allow-list would
    /// drop them anyway). With `cost_rows_only`, a source that can drops the rows that are not
    /// cost transactions as it reads them, and counts them in [`RawBatch::not_cost_type`].
    fn raw_transactions(&self, cost_rows_only: bool) -> Result<SendRawBatches>;

    /// The natural key of every cost transaction (Transaction_Type one of the six cost types,
    /// see [`crate::model::cost_type::is_cost_type`]) whose Accounting_Date is inside the `since`
    /// lower bound of the read window, IGNORING the incremental change window: what a deep sync
    /// would see. Each [`super::KeyBatch`] holds the [`crate::model::ids::line_hash`] digests
    /// of `company`'s line origin_ids (see [`super::keys`] for the rules). Sources read only the
    /// key columns; this default reads whole rows and types only the keys.
    fn line_keys(&self, company: &str) -> Result<KeyBatches> {
        Ok(keys_of_raw(
            self.raw_transactions(true)?,
            company,
            self.window().since,
        ))
    }

    /// Stream a dimension table as typed batches.
    fn dimension_batches(
        &self,
        role: TableRole,
    ) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + '_>> {
        let table = self.table_name(role).to_string();
        let raws = self.raw_dimension(role)?;
        Ok(Box::new(
            raws.map(move |raw| type_batch(role, &table, raw?)),
        ))
    }

    /// Read a dimension table whole.
    fn read_dimension(&self, role: TableRole) -> Result<DimensionTable> {
        let table = self.table_name(role).to_string();
        let mut batches = Vec::new();
        let mut quarantine = Vec::new();
        let mut rows_read = 0;
        let mut decoded_lossily = BTreeMap::new();
        for typed in self.dimension_batches(role)? {
            let typed = typed?;
            rows_read += typed.rows_read;
            add_counts(&mut decoded_lossily, &typed.decoded_lossily);
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
            decoded_lossily,
        })
    }

    /// Stream the transaction table as typed batches: [`Self::raw_transactions`] typed on the
    /// caller's thread. (The sync types on a thread of its own, so that reading and typing
    /// overlap.)
    fn transactions(&self) -> Result<Box<dyn Iterator<Item = Result<TypedBatch>> + Send>> {
        let raw = self.raw_transactions(false)?;
        let table = self.transaction_table().to_string();
        Ok(Box::new(raw.map(move |raw| {
            type_batch(TableRole::Transaction, &table, raw?)
        })))
    }
}
