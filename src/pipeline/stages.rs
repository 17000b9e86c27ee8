//! The wiring of a sync: a source and the dimensions, then typing, project, enrich and staging
//! under the transform driver, then the load. Every stage runs on a thread of its own between
//! bounded channels; every stage's rejects go to the one quarantine writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::load::{plan_and_load, LoadSetup, PlanOutput, Planned};
use super::removals::RemovalInputs;
use super::report::{DimensionsLoaded, StageResults, SyncRun};
use super::target::PreparedTarget;
use super::window;
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::extract::{drop_non_cost_rows, type_batch, RawBatch, SageSource};
use crate::load::plan::{Planner, MAX_SYNC_RECORDS};
use crate::model::schema::{enriched_schema, TableRole};
use crate::quarantine::quarantine_schema;
use crate::quarantine::writer::spawn_quarantine_writer;
use crate::staging::{staged_part_name, writer_properties, FileEntry, ParquetFileSet};
use crate::transform::driver::{Driver, Outcomes, Running};
use crate::transform::enrich::invoices::DEFAULT_INVOICE_MEMORY;
use crate::transform::enrich::{Dimensions, EnrichStage};
use crate::transform::project::Projector;
use crate::transform::{Rows, StageTiming, Transform, Transformed};

impl Rows for RawBatch {
    fn rows(&self) -> u64 {
        self.batch.num_rows() as u64
    }
}

/// Run every stage of a sync and gather what they produced. The first real error wins.
pub(super) async fn execute(
    run: &SyncRun<'_>,
    source: SageSource,
    target: PreparedTarget,
    cancel: Arc<AtomicBool>,
) -> Result<StageResults> {
    let config = run.config;
    let dry_run_ledger = target.dry_run_ledger;
    let (qtx, qrx) = mpsc::channel(config.pipeline.channel_capacity);
    let quarantine_props = writer_properties(&config.stage, &quarantine_schema())?;
    let quarantine = spawn_quarantine_writer(run.dir, &quarantine_props, qrx);
    let driver = Driver::new(config.pipeline.channel_capacity, qtx);
    let source = Arc::new(source);
    // A stage-only or dry run sends nothing: Ctrl-C stops its reading (the stages drain, and
    // the run is left without a manifest, failed.json saying why). A load instead stages
    // everything and stops sending.
    let stop_reading = target.load.is_none().then(|| cancel.clone());
    let extracted = Arc::new(AtomicU64::new(0));

    let (dims_rx, dimensions) = load_dimensions(&driver, &source, config, run.id);
    let (raw, extract) = read_transactions(&driver, &source, extracted.clone(), stop_reading);
    let typing = Typing {
        table: source.transaction_table().to_string(),
        max_stamp: None,
    };
    let (typed, typing) = driver.spawn(raw, typing);
    let (projected, project) = driver.spawn(typed, projector(config, &source, run.id));
    let enrich = EnrichStage::new(dims_rx, &config.company, &config.tables.transaction);
    let (enriched, enrich) = driver.spawn(projected, enrich);
    let staging = Staging::new(run.dir, config)?;
    let (staged, stage) = driver.spawn(enriched, staging);
    let plan = if run.stage_only {
        Running::blocking("plan", move || count_staged(staged))
    } else {
        let setup = LoadSetup {
            run_dir: run.dir.to_path_buf(),
            run_id: run.id.to_string(),
            load_config: config.load.clone(),
            table: config.tables.transaction.clone(),
            handle: Handle::current(),
            load: target.load,
            quarantine: driver.rejects(),
            cancel: cancel.clone(),
            seen: None,
            retry: retry_scope(config),
        };
        let mut staged = staged;
        Running::blocking("plan", move || {
            plan_and_load(setup, || staged.blocking_recv().map(Ok))
        })
    };
    // Every stage holds its own handle on the quarantine channel: the writer ends with them.
    drop(driver);

    let mut o = Outcomes::default();
    let dimensions = o.take(dimensions.join().await);
    let extract = o.take(extract.join().await);
    let typing = o.take(typing.join().await);
    let project = o.take(project.join().await);
    let enrich = o.take(enrich.join().await);
    let stage = o.take(stage.join().await);
    let plan = o.take(plan.join().await);
    let quarantine = o.take(
        quarantine
            .await
            .map_err(|e| crate::transform::driver::task_failed("quarantine", e))
            .and_then(|r| r),
    );
    let (
        Some(dimensions),
        Some((extract, not_cost_type)),
        Some((typing, max_stamp)),
        Some((project, filtered)),
        Some((enrich, ())),
        Some((stage, staged_files)),
        Some((plan, planner, mut output, _)),
        Some(quarantine),
    ) = (
        dimensions, extract, typing, project, enrich, stage, plan, quarantine,
    )
    else {
        return Err(o.first_real_error());
    };
    let removals = super::removals::after_load(
        RemovalInputs {
            config,
            run_id: run.id,
            run_dir: run.dir,
            allow: run.allow_removals,
            source: source.clone(),
            dry_run_ledger,
            cancel,
            staged: crate::load::exceptions::staged_paths(run.dir, &staged_files),
        },
        &mut output,
    )
    .await?;
    Ok(StageResults {
        removals,
        dimensions,
        extracted: extracted.load(Ordering::Relaxed),
        not_cost_type,
        filtered,
        max_stamp,
        timings: [extract, typing, project, enrich, stage, plan],
        staged_files,
        planner,
        output,
        quarantine,
    })
}

/// A deep sync's snapshot is all of Sage in its window: an open exception it lacks is not
/// retried (it left Sage); an incremental one sees only what changed: every other open
/// exception is retried from its stored row.
fn retry_scope(config: &PipelineConfig) -> crate::load::exceptions::RetryScope {
    use crate::load::exceptions::RetryScope;
    match config.sync.kind {
        crate::config::SyncKind::Deep => RetryScope::Complete {
            since: match config.sync.since {
                crate::config::Since::BeginningOfTime => None,
                crate::config::Since::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
            },
        },
        crate::config::SyncKind::Incremental => RetryScope::Partial,
    }
}

/// Dimensions are the build side of the joins. They load on a thread of their own while the
/// transactions are read, typed and projected (bounded by the channels): only the enrich
/// stage waits for them.
fn load_dimensions(
    driver: &Driver,
    source: &Arc<SageSource>,
    config: &PipelineConfig,
    run_id: &str,
) -> (
    oneshot::Receiver<Arc<Dimensions>>,
    Running<DimensionsLoaded>,
) {
    let (dims_tx, dims_rx) = oneshot::channel::<Arc<Dimensions>>();
    let (source, rejects) = (source.clone(), driver.rejects());
    // Invoices beyond what memory holds spill beside the runs, and are removed at the end.
    let spill = config.stage.dir.join(format!(".invoices-{run_id}"));
    let task = Running::blocking("extract", move || {
        let started = Instant::now();
        let (dims, reports) = Dimensions::load(&source, spill, DEFAULT_INVOICE_MEMORY, |q| {
            rejects
                .blocking_send(q)
                .map_err(|_| Error::NextStageStopped { stage: "extract" })
        })?;
        tracing::info!(jobs = dims.job_count(), "dimensions indexed");
        let dims = Arc::new(dims);
        // No receiver means the enrich stage already stopped; its error tells why.
        let _ = dims_tx.send(dims.clone());
        Ok(DimensionsLoaded {
            dims,
            reports,
            elapsed: started.elapsed(),
        })
    });
    (dims_rx, task)
}

/// The source's timing, and the non-cost rows it dropped by Transaction_Type.
type Extracted = (StageTiming, BTreeMap<String, u64>);

/// The source: extract reads (CSV parsing, Parquet decoding, TDS rows) and drops the rows that
/// are not costs; typing the cells is a stage of its own, so that the two overlap on separate
/// cores. Yields the non-cost rows dropped, by type.
fn read_transactions(
    driver: &Driver,
    source: &Arc<SageSource>,
    extracted: Arc<AtomicU64>,
    stop_reading: Option<Arc<AtomicBool>>,
) -> (mpsc::Receiver<RawBatch>, Running<Extracted>) {
    let (raw_tx, raw_rx) = driver.channel::<RawBatch>();
    let source = source.clone();
    let task = Running::blocking("extract", move || {
        let mut timing = StageTiming::default();
        let mut not_cost_type = BTreeMap::new();
        let mut last_log = Instant::now();
        let mut batches = source.raw_transactions(true)?;
        let handle = Handle::current();
        loop {
            // Room downstream first: at most one batch is ever held outside the channels.
            let permit = handle
                .block_on(raw_tx.reserve())
                .map_err(|_| Error::NextStageStopped { stage: "extract" })?;
            if stop_reading
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::InterruptedUnsent {
                    rows: extracted.load(Ordering::Relaxed),
                });
            }
            let started = Instant::now();
            let Some(raw) = batches.next() else { break };
            let mut raw = drop_non_cost_rows(raw?)?;
            timing.busy += started.elapsed();
            let rows = raw.rows_read();
            let total = extracted.fetch_add(rows, Ordering::Relaxed) + rows;
            timing.rows_in += rows;
            timing.rows_out += raw.batch.num_rows() as u64;
            for (ty, n) in std::mem::take(&mut raw.not_cost_type) {
                *not_cost_type.entry(ty).or_insert(0) += n;
            }
            permit.send(raw);
            if last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(rows = total, "extracting");
                last_log = Instant::now();
            }
        }
        Ok((timing, not_cost_type))
    });
    (raw_rx, task)
}

/// The project stage, its natural keys spilling beside the runs beyond what memory holds
/// (removed at the end).
fn projector(config: &PipelineConfig, source: &SageSource, run_id: &str) -> Projector {
    let mut projector = Projector::with_spill_dir(
        config,
        config.stage.dir.join(format!(".keys-{run_id}")),
        crate::transform::dedup::DEFAULT_RECENT_KEYS,
    );
    if let Some(rows) = source.estimated_transactions() {
        projector.expect_rows(rows);
    }
    projector
}

/// `sync --stage-only`: the staged rows are counted and dropped.
fn count_staged(mut staged: mpsc::Receiver<RecordBatch>) -> Result<Planned> {
    let mut timing = StageTiming::default();
    while let Some(batch) = staged.blocking_recv() {
        timing.rows_in += batch.rows();
    }
    Ok((
        timing,
        Planner::new(MAX_SYNC_RECORDS),
        PlanOutput::Skipped,
        None,
    ))
}

/// Typing: the raw cells into the typed columns, bad cells quarantined; remembers the latest
/// change stamp for the watermark.
struct Typing {
    table: String,
    max_stamp: Option<i64>,
}

impl Transform<RawBatch> for Typing {
    /// The latest Date_Stamp + Time_Stamp seen, µs since 1970.
    type Summary = Option<i64>;

    fn name(&self) -> &'static str {
        "type"
    }

    fn process(&mut self, raw: RawBatch) -> Result<Transformed> {
        let typed = type_batch(TableRole::Transaction, &self.table, raw)?;
        if let Some(m) = window::max_change_stamp(&typed.batch) {
            self.max_stamp = self.max_stamp.max(Some(m));
        }
        Ok(Transformed {
            batch: typed.batch,
            rejects: typed.quarantine,
        })
    }

    fn finish(self) -> Result<Option<i64>> {
        Ok(self.max_stamp)
    }
}

/// Staging: every enriched batch into the staged Parquet parts, then on to the load.
struct Staging {
    set: ParquetFileSet,
}

impl Staging {
    fn new(run_dir: &Path, config: &PipelineConfig) -> Result<Staging> {
        let props: WriterProperties = writer_properties(&config.stage, &enriched_schema())?;
        Ok(Staging {
            set: ParquetFileSet::new(
                &PathBuf::from(run_dir),
                staged_part_name,
                enriched_schema(),
                props,
                config.stage.part_rows,
            ),
        })
    }
}

impl Transform for Staging {
    /// The staged parts.
    type Summary = Vec<FileEntry>;

    fn name(&self) -> &'static str {
        "stage"
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Transformed> {
        self.set.write(&batch)?;
        Ok(Transformed::kept(batch))
    }

    fn finish(self) -> Result<Vec<FileEntry>> {
        self.set.finish()
    }
}
