//! Enrich: the four joins of DOMAIN.md section 2 as hash joins. The dimensions are the build side
//! (indexed once); each transaction batch probes them and the matched dimension columns are
//! gathered with Arrow's `take` kernel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::extract::{DimensionTable, SageSource};
use crate::invoices::{invoice_key, InvoiceIndex};
use crate::model::cost_type::is_ap_cost;
use crate::model::ids::origin_ids;
use crate::model::schema::enriched_schema;
use crate::model::schema::TableRole;
use crate::model::view::TransactionView;
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::run::DimensionReport;

pub use crate::invoices::TEMPLATE_INVOICE;

/// Dimension tables indexed for probing.
pub struct Dimensions {
    jobs: HashMap<String, u32>,
    /// One row per job row: job_description … gl_account_type (ENRICHMENT_FIELDS[0..9]).
    job_columns: Vec<ArrayRef>,
    /// invoice_date … invoice_status (ENRICHMENT_FIELDS[9..14]) by (vendor, invoice).
    invoices: InvoiceIndex,
}

fn text_column<'a>(
    batch: &'a RecordBatch,
    table: &str,
    name: &str,
) -> Result<&'a arrow::array::StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Stage {
            stage: "enrich",
            message: format!("{table}: column {name} missing or not text"),
        })
}

fn column(batch: &RecordBatch, table: &str, name: &str) -> Result<ArrayRef> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::Stage {
            stage: "enrich",
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

fn gather(columns: &[ArrayRef], indices: &UInt32Array) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .map(|c| take(c.as_ref(), indices, None).map_err(Error::from))
        .collect()
}

fn lookup(index: &HashMap<String, u32>, keys: &arrow::array::StringArray) -> UInt32Array {
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

/// The enrich stage: probe, gather, assign origin ids.
pub struct Enricher {
    dims: Arc<Dimensions>,
    company: String,
    table: String,
    output: SchemaRef,
}

/// What enriching one batch produced.
#[derive(Debug)]
pub struct Enriched {
    pub batch: RecordBatch,
    /// Transactions on unknown jobs.
    pub quarantine: Option<QuarantineBatch>,
}

impl Enricher {
    /// An enricher for one company's transactions.
    pub fn new(dims: Arc<Dimensions>, company: &str, table: &str) -> Enricher {
        Enricher {
            dims,
            company: company.trim().to_string(),
            table: table.to_string(),
            output: enriched_schema(),
        }
    }

    /// Enrich one projected batch.
    pub fn process(&self, batch: &RecordBatch) -> Result<Enriched> {
        let jobs = text_column(batch, &self.table, "job")?;
        let lines = batch
            .column_by_name(crate::model::schema::SOURCE_LINE)
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .ok_or_else(|| Error::Stage {
                stage: "enrich",
                message: "batch lacks source_line".into(),
            })?;
        let job_idx = lookup(&self.dims.jobs, jobs);
        let mut rejections = Vec::new();
        for row in 0..batch.num_rows() {
            if job_idx.is_null(row) {
                rejections.push(Rejection {
                    row,
                    code: ReasonCode::UnknownJob,
                    reason: format!(
                        "{} line {}: Job {:?} is not in Job (JC)",
                        self.table,
                        lines.value(row),
                        if jobs.is_null(row) {
                            ""
                        } else {
                            jobs.value(row)
                        }
                    ),
                });
            }
        }
        let (batch, job_idx, quarantine) = if rejections.is_empty() {
            (batch.clone(), job_idx, None)
        } else {
            let q = QuarantineBatch::from_rejections(
                StageName::Enrich,
                &self.table,
                batch,
                &rejections,
            )?;
            let keep = BooleanArray::from(
                (0..batch.num_rows())
                    .map(|r| job_idx.is_valid(r))
                    .collect::<Vec<_>>(),
            );
            let kept = filter_record_batch(batch, &keep)?;
            let idx = arrow::compute::filter(&job_idx, &keep)?;
            let idx = idx
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| Error::Stage {
                    stage: "enrich",
                    message: "job index is not u32".into(),
                })?;
            (kept, idx, Some(q))
        };

        let view = TransactionView::new(&batch)?;
        let mut buf = Vec::with_capacity(64);
        let invoice_keys: Vec<Option<u128>> = (0..batch.num_rows())
            .map(|r| {
                if !is_ap_cost(view.transaction_type(r)) {
                    return None;
                }
                Some(invoice_key(&mut buf, view.vendor(r)?, view.invoice(r)?))
            })
            .collect();

        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.extend(gather(&self.dims.job_columns, &job_idx)?);
        columns.extend(self.dims.invoices.gather(&invoice_keys)?);
        let (line_ids, dc_ids) = origin_ids(&self.company, &view)?;
        columns.push(Arc::new(line_ids));
        columns.push(Arc::new(dc_ids));
        Ok(Enriched {
            batch: RecordBatch::try_new(self.output.clone(), columns)?,
            quarantine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::SageSource;
    use crate::project::Projector;
    use crate::test_support::fixture_config;
    use arrow::array::AsArray;

    /// The fixture's dimensions, with the quarantine rows their loading set aside.
    fn dims(source: &SageSource) -> (Dimensions, Vec<QuarantineBatch>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut q = Vec::new();
        let (d, _) = Dimensions::load(
            source,
            tmp.path().join("inv"),
            crate::invoices::DEFAULT_INVOICE_MEMORY,
            |b| {
                q.push(b);
                Ok(())
            },
        )
        .expect("dimensions");
        (d, q, tmp)
    }

    fn enriched() -> (RecordBatch, Option<QuarantineBatch>) {
        let config = fixture_config();
        let source = SageSource::open(&config).expect("source");
        let dims = Arc::new(dims(&source).0);
        let batch = source
            .transactions()
            .expect("tx")
            .next()
            .expect("batch")
            .expect("typed")
            .batch;
        let projected = Projector::new(&config)
            .process(&batch)
            .expect("project")
            .batch;
        let out = Enricher::new(dims, "DEMO", "JCT_CURRENT__TRANSACTION")
            .process(&projected)
            .expect("enrich");
        (out.batch, out.quarantine)
    }

    #[test]
    fn template_invoice_is_not_indexed() {
        let config = fixture_config();
        let source = SageSource::open(&config).expect("source");
        let (d, _, _tmp) = dims(&source);
        let mut buf = Vec::new();
        let template = invoice_key(&mut buf, TEMPLATE_INVOICE, TEMPLATE_INVOICE);
        assert_eq!(d.invoices.stats().invoices, 6);
        let cols = d.invoices.gather(&[Some(template)]).expect("gather");
        assert!(
            cols.iter().all(|c| c.is_null(0)),
            "the template is no invoice"
        );
    }

    #[test]
    fn unknown_job_is_quarantined_and_the_rest_keep_their_rows() {
        let (batch, q) = enriched();
        let q = q.expect("quarantine");
        assert_eq!(q.codes, vec![ReasonCode::UnknownJob]);
        assert_eq!(batch.num_rows(), 35);
        assert_eq!(batch.schema(), enriched_schema());
    }

    #[test]
    fn invoice_columns_only_join_on_ap_cost_rows() {
        let (batch, _) = enriched();
        let types = batch.column_by_name("transaction_type").expect("t");
        let types = types.as_string::<i32>();
        let inv = batch.column_by_name("invoice_date").expect("d");
        for r in 0..batch.num_rows() {
            if types.value(r) != "AP cost" {
                assert!(inv.is_null(r), "row {r} is not AP but got an invoice date");
            }
        }
        assert!((0..batch.num_rows()).any(|r| inv.is_valid(r)));
    }

    #[test]
    fn missing_gl_account_is_a_left_join_not_a_rejection() {
        let (batch, _) = enriched();
        let acct = batch.column_by_name("job_cost_account").expect("a");
        let gl = batch.column_by_name("gl_account").expect("g");
        // Some job's Cost_Account is not in GLM_MASTER__ACCOUNT: its rows load with a NULL gl_account.
        assert!((0..batch.num_rows()).any(|r| acct.is_valid(r) && gl.is_null(r)));
        assert!((0..batch.num_rows()).any(|r| gl.is_valid(r)));
    }
}
