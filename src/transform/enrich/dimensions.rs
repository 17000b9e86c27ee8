//! The build side of the enrich joins: Job (JC) with its GL Account Prefix and GL Account,
//! indexed by job; AP invoices in their own bounded index. Loaded once per run, beside the
//! first stages.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use serde::{Deserialize, Serialize};

use super::invoices::InvoiceIndex;
use crate::error::{Error, Result};
use crate::extract::{DimensionTable, SageSource};
use crate::model::schema::TableRole;
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};

/// A dimension table's rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DimensionReport {
    pub table: String,
    pub rows_read: u64,
    pub quarantined: u64,
    /// Descriptive values (a job's Description, ...) that were not valid UTF-8 and were decoded
    /// lossily (U+FFFD) instead of setting their row aside, by Sage column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decoded_lossily: BTreeMap<String, u64>,
}

/// Dimension tables indexed for probing.
pub struct Dimensions {
    pub(super) jobs: HashMap<String, u32>,
    /// One row per job row: job_description … gl_account_type (ENRICHMENT_FIELDS[0..9]).
    pub(super) job_columns: Vec<ArrayRef>,
    /// invoice_date … invoice_status (ENRICHMENT_FIELDS[9..14]) by (vendor, invoice).
    pub(super) invoices: InvoiceIndex,
}

pub(super) fn text_column<'a>(
    batch: &'a RecordBatch,
    table: &str,
    name: &str,
) -> Result<&'a arrow::array::StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::BatchShape {
            message: format!("{table}: column {name} missing or not text"),
        })
}

fn column(batch: &RecordBatch, table: &str, name: &str) -> Result<ArrayRef> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::BatchShape {
            message: format!("{table}: column {name} missing"),
        })
}

/// Index a single-key dimension; a repeated key keeps its first row and the repeat is reported.
fn index_by(
    dim: &DimensionTable,
    key: &str,
    rejections: &mut Vec<Rejection>,
) -> Result<HashMap<String, u32>> {
    let keys = text_column(&dim.batch, &dim.table, key)?;
    let mut index = HashMap::with_capacity(keys.len());
    for row in 0..keys.len() {
        if keys.is_null(row) {
            continue;
        }
        let k = keys.value(row);
        if index.contains_key(k) {
            rejections.push(Rejection {
                row,
                code: ReasonCode::DuplicateKey,
                reason: format!("{}: key {k:?} repeats; the first row is used", dim.table),
            });
        } else {
            index.insert(k.to_string(), row as u32);
        }
    }
    Ok(index)
}

pub(super) fn gather(columns: &[ArrayRef], indices: &UInt32Array) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .map(|c| take(c.as_ref(), indices, None).map_err(Error::from))
        .collect()
}

pub(super) fn lookup(
    index: &HashMap<String, u32>,
    keys: &arrow::array::StringArray,
) -> UInt32Array {
    (0..keys.len())
        .map(|r| {
            if keys.is_null(r) {
                None
            } else {
                index.get(keys.value(r)).copied()
            }
        })
        .collect()
}

impl Dimensions {
    /// Build the indexes. Returns the dimension rows that were set aside (repeated keys).
    pub fn build(
        job: &DimensionTable,
        prefix: &DimensionTable,
        account: &DimensionTable,
        invoices: InvoiceIndex,
    ) -> Result<(Dimensions, Vec<QuarantineBatch>)> {
        let mut quarantine = Vec::new();
        let mut set_aside = |dim: &DimensionTable, rejections: Vec<Rejection>| -> Result<()> {
            if !rejections.is_empty() {
                quarantine.push(QuarantineBatch::from_rejections(
                    StageName::Enrich,
                    &dim.table,
                    &dim.batch,
                    &rejections,
                )?);
            }
            Ok(())
        };

        let mut rej = Vec::new();
        let jobs = index_by(job, "job", &mut rej)?;
        set_aside(job, std::mem::take(&mut rej))?;
        let prefixes = index_by(prefix, "account_prefix", &mut rej)?;
        set_aside(prefix, std::mem::take(&mut rej))?;
        let accounts = index_by(account, "account", &mut rej)?;
        set_aside(account, std::mem::take(&mut rej))?;

        // Job → prefix and account rows, resolved once per job rather than once per transaction.
        let prefix_idx = lookup(
            &prefixes,
            text_column(&job.batch, &job.table, "cost_account_prefix")?,
        );
        let account_idx = lookup(
            &accounts,
            text_column(&job.batch, &job.table, "cost_account")?,
        );
        let mut job_columns = vec![
            column(&job.batch, &job.table, "description")?,
            column(&job.batch, &job.table, "status")?,
            column(&job.batch, &job.table, "cost_account_prefix")?,
            column(&job.batch, &job.table, "cost_account")?,
        ];
        job_columns.extend(gather(
            &[
                column(&prefix.batch, &prefix.table, "account_prefix")?,
                column(&prefix.batch, &prefix.table, "description")?,
            ],
            &prefix_idx,
        )?);
        job_columns.extend(gather(
            &[
                column(&account.batch, &account.table, "account")?,
                column(&account.batch, &account.table, "title")?,
                column(&account.batch, &account.table, "account_type")?,
            ],
            &account_idx,
        )?);

        Ok((
            Dimensions {
                jobs,
                job_columns,
                invoices,
            },
            quarantine,
        ))
    }

    /// Read and index the four dimension tables of `source`: Job (JC), GL Account Prefix and GL
    /// Account whole (they are small), Invoice (AP) streamed into an [`InvoiceIndex`] that holds
    /// up to `invoice_memory` bytes and spills into `spill_dir` beyond. Every row set aside (bad
    /// values, repeated keys) goes to `quarantine`.
    pub fn load(
        source: &SageSource,
        spill_dir: std::path::PathBuf,
        invoice_memory: usize,
        mut quarantine: impl FnMut(QuarantineBatch) -> Result<()>,
    ) -> Result<(Dimensions, Vec<DimensionReport>)> {
        let mut reports = Vec::new();
        let mut tables = Vec::new();
        for role in [TableRole::Job, TableRole::AccountPrefix, TableRole::Account] {
            let mut t = source.read_dimension(role)?;
            let quarantined = t.quarantine.iter().map(|q| q.len() as u64).sum();
            reports.push(DimensionReport {
                table: t.table.clone(),
                rows_read: t.rows_read as u64,
                quarantined,
                decoded_lossily: lossy_report(&t.table, &t.decoded_lossily),
            });
            for q in std::mem::take(&mut t.quarantine) {
                quarantine(q)?;
            }
            tables.push(t);
        }
        let table = source.table_name(TableRole::Invoice).to_string();
        let mut invoice_report = DimensionReport {
            table: table.clone(),
            rows_read: 0,
            quarantined: 0,
            decoded_lossily: BTreeMap::new(),
        };
        let mut invoice_lossy = BTreeMap::new();
        let mut builder = InvoiceIndex::builder(&table, spill_dir, invoice_memory);
        for typed in source.dimension_batches(TableRole::Invoice)? {
            let typed = typed?;
            invoice_report.rows_read += typed.rows_read as u64;
            crate::extract::add_counts(&mut invoice_lossy, &typed.decoded_lossily);
            for q in typed
                .quarantine
                .into_iter()
                .chain(builder.push(&typed.batch)?)
            {
                invoice_report.quarantined += q.len() as u64;
                quarantine(q)?;
            }
        }
        invoice_report.decoded_lossily = lossy_report(&table, &invoice_lossy);
        let invoices = builder.finish()?;
        let stats = invoices.stats();
        tracing::info!(
            invoices = stats.invoices,
            on_disk = stats.on_disk,
            spilled_runs = stats.spilled_runs,
            "invoices indexed"
        );
        let (dims, set_aside) = Dimensions::build(&tables[0], &tables[1], &tables[2], invoices)?;
        for q in set_aside {
            if let Some(r) = reports.iter_mut().find(|r| r.table == q.table) {
                r.quarantined += q.len() as u64;
            }
            quarantine(q)?;
        }
        reports.push(invoice_report);
        Ok((dims, reports))
    }

    /// Number of jobs indexed.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }
}

/// The report's count of descriptive values decoded lossily, warned about once per column (the
/// value is not logged).
fn lossy_report(table: &str, counts: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    for (column, n) in counts {
        tracing::warn!(
            table,
            column,
            values = n,
            "{n} value(s) of {table}.{column} are not valid UTF-8: decoded with U+FFFD in place of \
             the bad bytes (the rows are used; fix the export to keep the text exact)"
        );
    }
    counts.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}
