//! The last stage: plan every staged batch into requests and send them to the target (or write
//! `requests.ndjson` for a dry run). Shared by a sync and a replay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::target::TargetLoad;
use crate::error::{Error, Result};
use crate::load::dry_run::DryRunSink;
use crate::load::exceptions::{ExceptionRetry, RetryScope};
use crate::load::plan::{PlannedRequest, Planner, RequestSink, MAX_SYNC_RECORDS};
use crate::load::procore::{LoadContext, LoadCounts, LoadOutcome, LoadSink};
use crate::load::removal::SeenKeys;
use crate::model::view::TransactionView;
use crate::quarantine::QuarantineBatch;
use crate::run::LoadReport;
use crate::staging::{FileEntry, HashedFile};
use crate::transform::{Rows, StageTiming};

/// The sink of a load that could not start (Procore's directory could not be fetched): every
/// planned line is left pending, for the next sync or a replay of the staged run.
struct PendingSink {
    lines: u64,
}

impl RequestSink for PendingSink {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        if let PlannedRequest::LineSync { lines, .. } = request {
            self.lines += lines.len() as u64;
        }
        Ok(())
    }
}

/// What the last stage produced.
#[allow(clippy::large_enum_variant)] // one value per run, moved a few times
pub(crate) enum PlanOutput {
    /// `sync --stage-only`: the staged rows were counted and dropped.
    Skipped,
    DryRun(FileEntry),
    /// The load's outcome, and its context when it started (for the removals after it).
    Load(LoadOutcome, Option<Arc<LoadContext>>),
}

/// What the last stage needs: where to write, and the target.
pub(crate) struct LoadSetup {
    pub run_dir: PathBuf,
    pub run_id: String,
    pub load_config: crate::config::LoadConfig,
    pub table: String,
    pub handle: Handle,
    pub load: Option<TargetLoad>,
    pub quarantine: mpsc::Sender<QuarantineBatch>,
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
    /// Gathers the line keys of every planned line, when the run looks for removals.
    pub seen: Option<SeenKeys>,
    /// Which open exceptions the load retries from their stored rows.
    pub retry: RetryScope,
}

/// What the last stage returns: its timing, the planner, the output, the keys it gathered.
pub(crate) type Planned = (StageTiming, Planner, PlanOutput, Option<SeenKeys>);

/// Add a planned batch's line keys and jobs to `seen`.
fn gather_keys(seen: &mut SeenKeys, batch: &RecordBatch) -> Result<()> {
    let view = TransactionView::new(batch)?;
    let Some(enriched) = view.enriched() else {
        return Ok(());
    };
    let mut jobs = std::collections::BTreeSet::new();
    let mut last: Option<&str> = None;
    for r in 0..view.len() {
        let job = view.job(r);
        if last != Some(job) {
            jobs.insert(job.to_string());
            last = Some(job);
        }
    }
    seen.add_origin_ids((0..view.len()).map(|r| enriched.line_origin_id(r)), jobs)
}

/// Plan every enriched batch `next` yields and send the requests to the target (or to
/// `requests.ndjson` for a dry run). Runs on a blocking thread.
pub(crate) fn plan_and_load(
    setup: LoadSetup,
    mut next: impl FnMut() -> Option<Result<RecordBatch>>,
) -> Result<Planned> {
    let mut planner = Planner::new(MAX_SYNC_RECORDS);
    let mut timing = StageTiming::default();
    let mut seen = setup.seen;
    let mut plan_all = |sink: &mut dyn RequestSink,
                        timing: &mut StageTiming,
                        planner: &mut Planner,
                        retry: Option<&mut ExceptionRetry>|
     -> Result<()> {
        let mut last_log = Instant::now();
        let mut retry = retry;
        while let Some(batch) = next() {
            let batch = batch?;
            let started = Instant::now();
            timing.rows_in += batch.rows();
            planner.process(&batch, sink)?;
            if let Some(retry) = retry.as_deref_mut() {
                retry.observe(&batch)?;
            }
            if let Some(seen) = seen.as_mut() {
                gather_keys(seen, &batch)?;
            }
            timing.busy += started.elapsed();
            if last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    lines = planner.stats.lines,
                    direct_costs = planner.stats.direct_costs,
                    "planning"
                );
                last_log = Instant::now();
            }
        }
        let started = Instant::now();
        planner.finish(sink)?;
        timing.busy += started.elapsed();
        timing.rows_out = planner.stats.lines;
        Ok(())
    };
    let output = match setup.load {
        None => {
            drop(setup.quarantine);
            let file = HashedFile::create(&setup.run_dir, "requests.ndjson")?;
            let mut sink = DryRunSink::new(file, &setup.load_config);
            plan_all(&mut sink, &mut timing, &mut planner, None)?;
            PlanOutput::DryRun(sink.finish()?)
        }
        Some(target) => {
            let client = target.client;
            // Waits for the directory: while Procore does not answer, the stages upstream run
            // until their channels are full, then wait too (at most `max_retry_secs`).
            let directory = match target.directory.wait(&setup.handle) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(
                        "the load cannot start: {e}; the run is staged, nothing is sent"
                    );
                    drop(setup.quarantine);
                    let mut sink = PendingSink { lines: 0 };
                    plan_all(&mut sink, &mut timing, &mut planner, None)?;
                    let outcome = LoadOutcome {
                        counts: LoadCounts {
                            pending: sink.lines,
                            ..Default::default()
                        },
                        client: client.stats(),
                        failure: Some(e),
                    };
                    return Ok((timing, planner, PlanOutput::Load(outcome, None), seen));
                }
            };
            let ledger = target.ledger;
            let mut retry = ExceptionRetry::new(&ledger, setup.retry, &setup.run_id)?;
            let open_jobs = ledger.open_exception_jobs()?;
            let ctx = Arc::new(
                LoadContext::new(
                    client,
                    setup.load_config,
                    directory,
                    ledger,
                    &setup.run_id,
                    &setup.table,
                    setup.quarantine,
                    setup.cancel,
                )
                .with_open_exception_jobs(open_jobs),
            );
            let mut sink = LoadSink::new(ctx.clone(), setup.handle);
            let planned = plan_all(&mut sink, &mut timing, &mut planner, Some(&mut retry))
                .and_then(|()| retry_exceptions(retry, &ctx, &setup.run_id, &mut sink));
            let outcome = sink.finish();
            planned?;
            PlanOutput::Load(outcome, Some(ctx))
        }
    };
    Ok((timing, planner, output, seen))
}

/// Plan the open exceptions the snapshot lacked (and the scope retries) from their stored
/// rows, with a planner of their own: the run's plan counts only its snapshot.
fn retry_exceptions(
    retry: ExceptionRetry,
    ctx: &Arc<LoadContext>,
    run_id: &str,
    sink: &mut LoadSink,
) -> Result<()> {
    if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut planner = Planner::new(MAX_SYNC_RECORDS);
    retry.feed(
        &ctx.ledger,
        run_id,
        |hashes| ctx.note_retried(hashes),
        |batch| planner.process(batch, sink),
    )?;
    planner.finish(sink)
}

/// The files, load report and load failure of the last stage's output.
pub(crate) fn summarize_output(
    output: PlanOutput,
) -> (Option<FileEntry>, Option<LoadReport>, Option<Error>) {
    match output {
        PlanOutput::Skipped => (None, None, None),
        PlanOutput::DryRun(f) => (Some(f), None, None),
        PlanOutput::Load(outcome, _) => {
            let requests: u64 = outcome
                .client
                .requests
                .values()
                .flat_map(|m| m.values())
                .sum();
            let sync_requests = outcome.counts.line_requests;
            let report = LoadReport {
                lines_per_line_request: if sync_requests > 0 {
                    outcome.counts.lines_sent as f64 / sync_requests as f64
                } else {
                    0.0
                },
                requests_total: requests,
                failure: outcome.failure.as_ref().map(|e| e.to_string()),
                counts: outcome.counts,
                http: outcome.client,
            };
            (None, Some(report), outcome.failure)
        }
    }
}
