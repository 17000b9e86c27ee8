//! Enrich: the four joins of DOMAIN.md section 2 as hash joins. The dimensions are the build side
//! (indexed once); each transaction batch probes them and the matched dimension columns are
//! gathered with Arrow's `take` kernel.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::extract::DimensionTable;
use crate::load::plan::{origin_ids, TransactionView};
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::schema::enriched_schema;

/// The Sage template invoice key ('.~', '.~'): not an invoice.
pub const TEMPLATE_INVOICE: &str = ".~";

/// The 128-bit hash of an invoice's (vendor, number), each part length-prefixed so that no two
/// pairs frame to the same bytes. (A collision among even 10^9 invoices has odds below 10^-20.)
fn invoice_key(buf: &mut Vec<u8>, vendor: &str, number: &str) -> u128 {
    buf.clear();
    for part in [vendor, number] {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    xxhash_rust::xxh3::xxh3_128(buf)
}

/// Dimension tables indexed for probing.
pub struct Dimensions {
    jobs: HashMap<String, u32>,
    /// One row per job row: job_description … gl_account_type (ENRICHMENT_FIELDS[0..9]).
    job_columns: Vec<ArrayRef>,
    /// Sorted hashes of (vendor, invoice) ([`invoice_key`]), and the invoice row of each.
    invoice_keys: Vec<u128>,
    invoice_rows: Vec<u32>,
    /// One row per invoice row: invoice_date … invoice_status (ENRICHMENT_FIELDS[9..14]).
    invoice_columns: Vec<ArrayRef>,
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
        invoice: &DimensionTable,
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

        let vendors = text_column(&invoice.batch, &invoice.table, "vendor")?;
        let numbers = text_column(&invoice.batch, &invoice.table, "invoice")?;
        // (vendor, invoice) → row, as a sorted array of 128-bit key hashes: 20 bytes an invoice,
        // where nested maps of owned strings took ~55.
        let mut keyed: Vec<(u128, u32)> = Vec::with_capacity(vendors.len());
        let mut buf = Vec::with_capacity(64);
        for row in 0..vendors.len() {
            if vendors.is_null(row) || numbers.is_null(row) {
                continue;
            }
            let (v, i) = (vendors.value(row), numbers.value(row));
            if v == TEMPLATE_INVOICE && i == TEMPLATE_INVOICE {
                continue;
            }
            keyed.push((invoice_key(&mut buf, v, i), row as u32));
        }
        keyed.sort_unstable();
        let mut invoice_keys = Vec::with_capacity(keyed.len());
        let mut invoice_rows = Vec::with_capacity(keyed.len());
        let mut repeats = Vec::new();
        for (key, row) in keyed {
            if invoice_keys.last() == Some(&key) {
                repeats.push(row as usize);
            } else {
                invoice_keys.push(key);
                invoice_rows.push(row);
            }
        }
        repeats.sort_unstable();
        for row in repeats {
            let (v, i) = (vendors.value(row), numbers.value(row));
            rej.push(Rejection {
                row,
                code: ReasonCode::DuplicateKey,
                reason: format!(
                    "{}: invoice ({v:?}, {i:?}) repeats; the first row is used",
                    invoice.table
                ),
            });
        }
        set_aside(invoice, rej)?;
        let invoice_columns = vec![
            column(&invoice.batch, &invoice.table, "invoice_date")?,
            column(&invoice.batch, &invoice.table, "date_received")?,
            column(&invoice.batch, &invoice.table, "payment_date")?,
            column(&invoice.batch, &invoice.table, "description")?,
            column(&invoice.batch, &invoice.table, "status")?,
        ];
        Ok((
            Dimensions {
                jobs,
                job_columns,
                invoice_keys,
                invoice_rows,
                invoice_columns,
            },
            quarantine,
        ))
    }

    /// Number of jobs indexed.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }
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
            .column_by_name(crate::schema::SOURCE_LINE)
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
        let invoice_idx: UInt32Array = (0..batch.num_rows())
            .map(|r| {
                if view.transaction_type(r) != "AP cost" {
                    return None;
                }
                let key = invoice_key(&mut buf, view.vendor(r)?, view.invoice(r)?);
                let at = self.dims.invoice_keys.binary_search(&key).ok()?;
                self.dims.invoice_rows.get(at).copied()
            })
            .collect();

        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.extend(gather(&self.dims.job_columns, &job_idx)?);
        columns.extend(gather(&self.dims.invoice_columns, &invoice_idx)?);
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
    use crate::schema::TableRole;
    use crate::test_support::fixture_config;
    use arrow::array::AsArray;

    fn dims(source: &SageSource) -> Dimensions {
        let t: Vec<DimensionTable> = [
            TableRole::Job,
            TableRole::AccountPrefix,
            TableRole::Account,
            TableRole::Invoice,
        ]
        .into_iter()
        .map(|r| source.read_dimension(r).expect("dimension"))
        .collect();
        Dimensions::build(&t[0], &t[1], &t[2], &t[3])
            .expect("build")
            .0
    }

    fn enriched() -> (RecordBatch, Option<QuarantineBatch>) {
        let config = fixture_config();
        let source = SageSource::open(&config).expect("source");
        let dims = Arc::new(dims(&source));
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
        let d = dims(&source);
        let mut buf = Vec::new();
        let template = invoice_key(&mut buf, TEMPLATE_INVOICE, TEMPLATE_INVOICE);
        assert!(d.invoice_keys.binary_search(&template).is_err());
        assert_eq!(d.invoice_keys.len(), 6);
        assert_eq!(d.invoice_rows.len(), 6);
        assert!(
            d.invoice_keys.windows(2).all(|w| w[0] < w[1]),
            "sorted, unique"
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
