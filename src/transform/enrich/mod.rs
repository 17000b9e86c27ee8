//! Enrich: the four joins of DOMAIN.md section 2 as hash joins. The [`dimensions`] are the
//! build side (indexed once, invoices in [`invoices`]' bounded index); each transaction batch
//! probes them here and the matched dimension columns are gathered with Arrow's `take` kernel.
//! The origin ids are assigned here, from [`crate::model::ids`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::model::cost_type::is_ap_cost;
use crate::model::ids::origin_ids;
use crate::model::schema::enriched_schema;
use crate::model::view::TransactionView;
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::transform::{Transform, Transformed};
use invoices::invoice_key;

pub mod dimensions;
pub mod invoices;

pub use dimensions::{DimensionReport, Dimensions};
pub use invoices::TEMPLATE_INVOICE;

use dimensions::{gather, lookup, text_column};

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
            .ok_or_else(|| Error::BatchShape {
                message: "the enrich stage's batch lacks source_line".into(),
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
                .ok_or_else(|| Error::BatchShape {
                    message: "the enrich stage's job index is not u32".into(),
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

/// The enrich stage under the driver: it waits for the dimensions (loaded beside the first
/// stages) when it starts.
pub struct EnrichStage {
    dims: Option<tokio::sync::oneshot::Receiver<Arc<Dimensions>>>,
    company: String,
    table: String,
    enricher: Option<Enricher>,
}

impl EnrichStage {
    /// A stage that enriches once `dims` delivers.
    pub fn new(
        dims: tokio::sync::oneshot::Receiver<Arc<Dimensions>>,
        company: &str,
        table: &str,
    ) -> EnrichStage {
        EnrichStage {
            dims: Some(dims),
            company: company.to_string(),
            table: table.to_string(),
            enricher: None,
        }
    }
}

impl Transform for EnrichStage {
    type Summary = ();

    fn name(&self) -> &'static str {
        "enrich"
    }

    fn start(&mut self) -> Result<()> {
        let dims = self.dims.take().ok_or(Error::DimensionsMissing)?;
        let dims = tokio::runtime::Handle::current()
            .block_on(dims)
            .map_err(|_| Error::DimensionsMissing)?;
        self.enricher = Some(Enricher::new(dims, &self.company, &self.table));
        Ok(())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Transformed> {
        let enricher = self.enricher.as_ref().ok_or(Error::DimensionsMissing)?;
        let out = enricher.process(&batch)?;
        Ok(Transformed {
            batch: out.batch,
            rejects: out.quarantine,
        })
    }

    fn finish(self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::SageSource;
    use crate::test_support::fixture_config;
    use crate::transform::project::Projector;
    use arrow::array::AsArray;

    /// The fixture's dimensions, with the quarantine rows their loading set aside.
    fn dims(source: &SageSource) -> (Dimensions, Vec<QuarantineBatch>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut q = Vec::new();
        let (d, _) = Dimensions::load(
            source,
            tmp.path().join("inv"),
            crate::transform::enrich::invoices::DEFAULT_INVOICE_MEMORY,
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
