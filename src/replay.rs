//! Replay: run only the load again, from a run's staged Parquet, without touching Sage.
//!
//! The run is verified first (manifest, sha256 and size of every file, Parquet row counts, the
//! staged schema); a modified or incomplete run is refused before anything is sent. The ledger
//! makes a replay idempotent: only what is missing or changed goes out, unless `force`. The
//! target may differ from the original run's. A replay writes its own run directory (report,
//! quarantine, manifest with `replay_of`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::Pipeline;
use crate::error::{Error, Result};
use crate::ledger::runs::RunMode;
use crate::load::exceptions::{capture_rows, staged_paths, ExceptionsReport};
use crate::model::schema::enriched_schema;
use crate::model::values::format_decimal;
use crate::pipeline::load::{plan_and_load, summarize_output, LoadSetup, PlanOutput};
use crate::pipeline::target::{lock_ledger, prepare_target, PreparedTarget};
use crate::pipeline::SyncOptions;
use crate::quarantine::writer::spawn_quarantine_writer;
use crate::quarantine::QuarantineBatch;
use crate::run::finish::{exit_status_of, load_reconciles, record_failure, Ending, ManifestFacts};
use crate::run::history::{Ended, RunHistory};
use crate::run::{self, Manifest, ReplayReport, StageReport};
use crate::staging::writer_properties;
use crate::transform::driver::{task_failed, Running};

/// Options of `jcsync replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Send everything again as updates, even what the ledger says is unchanged.
    pub force: bool,
    /// Plan only: write requests.ndjson.
    pub dry_run: bool,
    /// Set to stop sending (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Load only the staged rows with these line origin ids (`reconcile --repair` sends the
    /// lines it found missing or changed from the run that holds their current version); the
    /// other rows are read and skipped. None: every row.
    pub only: Option<Arc<std::collections::HashSet<String>>>,
}

/// What a replay left.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub run_dir: PathBuf,
    pub report: ReplayReport,
    pub exit_code: u8,
}

/// Verify a run for replay: everything `run::verify` checks, plus the staged files' schema.
pub fn verify_staged(run_dir: &Path) -> Result<Manifest> {
    let manifest = run::verify(run_dir)?;
    let expected = enriched_schema();
    let mut rows = 0;
    let staged: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("staged/"))
        .collect();
    if staged.is_empty() {
        return Err(Error::RunVerification {
            path: run_dir.to_path_buf(),
            message: "the manifest lists no staged file: nothing to replay".into(),
        });
    }
    for f in staged {
        let path = run_dir.join(&f.path);
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::RunVerification {
                path: path.clone(),
                message: format!("not a readable Parquet file: {e}"),
            })?;
        let schema = builder.schema();
        let same = schema.fields().len() == expected.fields().len()
            && schema
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(Error::RunVerification {
                path,
                message: "its columns are not the staged schema of this jcsync version".into(),
            });
        }
        rows += f.rows.unwrap_or(0);
    }
    if rows != manifest.staged {
        return Err(Error::RunVerification {
            path: run_dir.join(run::MANIFEST),
            message: format!(
                "staged files hold {rows} rows, the manifest says {}",
                manifest.staged
            ),
        });
    }
    Ok(manifest)
}

/// Reads the staged files of a run in order, batch by batch; with `only`, just the rows of
/// those line origin ids (the others are counted in `skipped`).
struct StagedReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<ParquetRecordBatchReader>,
    batch_rows: usize,
    only: Option<Arc<std::collections::HashSet<String>>>,
    skipped: Arc<std::sync::atomic::AtomicU64>,
}

impl StagedReader {
    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(r) = self.current.as_mut() {
                match r.next() {
                    Some(Ok(b)) => match self.select(b) {
                        Ok(Some(b)) => return Some(Ok(b)),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    },
                    Some(Err(e)) => return Some(Err(Error::from(e))),
                    None => self.current = None,
                }
            }
            let path = self.files.next()?;
            let opened = std::fs::File::open(&path)
                .map_err(|e| Error::io(&path, e))
                .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::from))
                .and_then(|b| {
                    b.with_batch_size(self.batch_rows)
                        .build()
                        .map_err(Error::from)
                });
            match opened {
                Ok(r) => self.current = Some(r),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The rows of `batch` to load (None: not one).
    fn select(&self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let Some(only) = &self.only else {
            return Ok(Some(batch));
        };
        let view = crate::model::view::TransactionView::new(&batch)?;
        let enriched = view.enriched().ok_or_else(|| Error::BatchShape {
            message: "staged files without origin ids".into(),
        })?;
        let keep: arrow::array::BooleanArray = (0..view.len())
            .map(|r| Some(only.contains(enriched.line_origin_id(r))))
            .collect();
        let kept = keep.true_count();
        self.skipped.fetch_add(
            (batch.num_rows() - kept) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if kept == 0 {
            return Ok(None);
        }
        Ok(Some(arrow::compute::filter_record_batch(&batch, &keep)?))
    }
}

/// Replay a verified run into the pipeline's target.
pub async fn replay(
    run_dir: &Path,
    pipeline: &Pipeline,
    options: &ReplayOptions,
) -> Result<ReplayOutcome> {
    replay_with(run_dir, pipeline, options, None).await
}

/// A replay under the ledger's lock that the caller holds (`reconcile --repair`, which keeps it
/// from its first read-back to its last replay, so that no sync slips in between).
pub(crate) async fn replay_under(
    run_dir: &Path,
    pipeline: &Pipeline,
    options: &ReplayOptions,
    lock: &crate::ledger::LedgerLock,
) -> Result<ReplayOutcome> {
    replay_with(run_dir, pipeline, options, Some(lock)).await
}

async fn replay_with(
    run_dir: &Path,
    pipeline: &Pipeline,
    options: &ReplayOptions,
    held: Option<&crate::ledger::LedgerLock>,
) -> Result<ReplayOutcome> {
    let sync_options = SyncOptions {
        dry_run: options.dry_run,
        cancel: options.cancel.clone(),
        ..SyncOptions::default()
    };
    let run_id = run::new_run_id();
    let _logged = crate::logging::RunScope::enter(&run_id);
    // One sync or replay at a time per ledger (a dry run takes no lock); held to the end.
    let ledger_lock = match held {
        Some(_) => None,
        None => {
            lock_ledger(
                pipeline,
                &sync_options,
                format!("replay {}", run_dir.display()),
            )
            .await?
        }
    };
    let history = (held.is_some() || ledger_lock.is_some())
        .then(|| RunHistory::start(pipeline, &run_id, RunMode::Replay))
        .flatten();
    let mut out_dir = None;
    let result = replay_locked(run_dir, pipeline, options, &run_id, &mut out_dir).await;
    if let Some(history) = history {
        history.end(match &result {
            Ok(outcome) => Ended::Completed {
                exit_code: outcome.exit_code,
                quarantined: outcome.report.quarantined.values().any(|n| *n > 0)
                    || crate::run::report::RunEnding::retried_still_failing(&outcome.report) > 0,
                load_failure: outcome.report.load.as_ref().and_then(|l| l.failure.clone()),
                run_dir: &outcome.run_dir,
                summary: Some(serde_json::json!({
                    "rows_read": outcome.report.rows_read,
                    "quarantined_by_reason": outcome.report.quarantined,
                    "planned_amount": outcome.report.planned_amount,
                    "replay_of": outcome.report.replay_of,
                })),
            },
            Err(error) => Ended::Failed {
                error,
                exit_code: exit_status_of(error),
                run_dir: out_dir.as_deref(),
            },
        });
    }
    drop(ledger_lock);
    result
}

/// The replay itself, under the ledger's lock; `made` gets its run directory once it exists.
async fn replay_locked(
    run_dir: &Path,
    pipeline: &Pipeline,
    options: &ReplayOptions,
    run_id: &str,
    made: &mut Option<PathBuf>,
) -> Result<ReplayOutcome> {
    let sync_options = SyncOptions {
        dry_run: options.dry_run,
        cancel: options.cancel.clone(),
        ..SyncOptions::default()
    };
    let manifest = verify_staged(run_dir)?;
    if manifest.company != pipeline.config.company {
        return Err(Error::Config {
            path: pipeline.path.clone(),
            message: format!(
                "key `company`: the run was staged for company {:?}, this pipeline is for {:?} (origin_ids include the company)",
                manifest.company, pipeline.config.company
            ),
        });
    }
    let mut pipeline = pipeline.clone();
    if options.force {
        pipeline.config.load.force = true;
    }
    let config = &pipeline.config;
    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    let target = prepare_target(&pipeline, &sync_options).await?;
    let out_dir = run::create_run_dir(&config.stage.dir, run_id)?;
    *made = Some(out_dir.clone());
    tracing::info!(
        run_id,
        replay_of = manifest.run_id,
        target = target.label,
        "replay started"
    );
    let clock = (started_at, wall);
    let result = load_staged(
        &pipeline, &manifest, run_dir, options, target, run_id, &out_dir, clock,
    )
    .await
    .map(|(report, exit_code)| ReplayOutcome {
        run_dir: out_dir.clone(),
        report,
        exit_code,
    });
    if let Err(e) = &result {
        record_failure(&out_dir, run_id, e);
    }
    result
}

/// Plan and load the staged rows of `manifest`'s run into `out_dir`, then end the run as every
/// run ends.
#[allow(clippy::too_many_arguments)]
async fn load_staged(
    pipeline: &Pipeline,
    manifest: &Manifest,
    run_dir: &Path,
    options: &ReplayOptions,
    target: PreparedTarget,
    run_id: &str,
    out_dir: &Path,
    (started_at, wall): (chrono::DateTime<chrono::Utc>, Instant),
) -> Result<(ReplayReport, u8)> {
    let config = &pipeline.config;
    let props = writer_properties(&config.stage, &crate::quarantine::quarantine_schema())?;
    let (qtx, qrx) = mpsc::channel::<QuarantineBatch>(config.pipeline.channel_capacity);
    let quarantine_task = spawn_quarantine_writer(out_dir, &props, qrx);
    let label = target.label.clone();
    let setup = LoadSetup {
        run_dir: out_dir.to_path_buf(),
        run_id: run_id.to_string(),
        load_config: config.load.clone(),
        table: config.tables.transaction.clone(),
        handle: Handle::current(),
        load: target.load,
        quarantine: qtx,
        cancel: options.cancel.clone().unwrap_or_default(),
        seen: None,
        // A replay's snapshot is an older run's: every open exception it lacks is retried.
        retry: crate::load::exceptions::RetryScope::Partial,
    };
    let mut reader = StagedReader {
        files: manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with("staged/"))
            .map(|f| run_dir.join(&f.path))
            .collect::<Vec<_>>()
            .into_iter(),
        current: None,
        batch_rows: config.pipeline.batch_rows,
        only: options.only.clone(),
        skipped: Arc::default(),
    };
    let skipped = reader.skipped.clone();
    let planned = Running::blocking("plan", move || plan_and_load(setup, || reader.next_batch()))
        .join()
        .await;
    let quarantine = quarantine_task
        .await
        .map_err(|e| task_failed("quarantine", e))
        .and_then(|r| r);
    // A replay removes nothing: its snapshot may be older than what later syncs loaded (the
    // next sync removes what left Sage).
    let (timing, planner, output, _) = planned?;
    let quarantine = quarantine?;
    // The exceptions this replay opened take their rows from the replayed run's staged files.
    let exceptions = match &output {
        PlanOutput::Load(outcome, Some(ctx)) => {
            let (ctx, counts) = (ctx.clone(), outcome.counts.clone());
            let staged = staged_paths(run_dir, &manifest.files);
            let run_id = run_id.to_string();
            let report = tokio::task::spawn_blocking(move || {
                let mut ledger = ctx.ledger.lock().unwrap_or_else(|p| p.into_inner());
                capture_rows(&mut ledger, &staged, &run_id)?;
                ExceptionsReport::of(&ledger, &run_id, counts.retried())
            })
            .await
            .map_err(|e| task_failed("exceptions", e))??;
            Some(report)
        }
        _ => None,
    };
    let (requests_file, load, failure) = summarize_output(output);
    let mut quarantined = BTreeMap::new();
    for ((_, reason), n) in &quarantine.counts {
        *quarantined.entry(reason.clone()).or_insert(0) += n;
    }
    let q_total: u64 = quarantined.values().sum();
    // Lines retried from open exceptions are read from the ledger, not the staged files: they
    // are loaded, pending or quarantined again (not in quarantine.parquet) like the others.
    let (retried, retried_quarantined) = load.as_ref().map_or((0, 0), |l| {
        let c = &l.counts;
        (c.retried, c.retried_quarantined.values().sum::<u64>())
    });
    let reconciled = load_reconciles(
        timing.rows_in + retried,
        planner.stats.lines,
        load.as_ref(),
        q_total + retried_quarantined,
    ) && exceptions.as_ref().is_none_or(|e| e.reconciled);
    let report = ReplayReport {
        run_id: run_id.to_string(),
        replay_of: manifest.run_id.clone(),
        replay_of_dir: run_dir.display().to_string(),
        company: config.company.clone(),
        target: label,
        force: options.force,
        started_at: started_at.to_rfc3339(),
        elapsed_ms: wall.elapsed().as_millis() as u64,
        rows_read: timing.rows_in,
        plan: planner.stats.clone(),
        planned_amount: format_decimal(planner.stats.amount_cents, 2),
        quarantined,
        stages: vec![StageReport::from_timing("replay plan+load", timing)],
        load,
        reconciled,
        exceptions,
        only_lines: options.only.as_ref().map(|o| o.len() as u64),
        rows_skipped: skipped.load(std::sync::atomic::Ordering::Relaxed),
    };
    let mut files = quarantine.files;
    files.extend(requests_file);
    let exit_code = Ending {
        run_dir: out_dir,
        run_id,
        pipeline,
        report: &report,
        facts: ManifestFacts {
            source: format!("replay:{}", manifest.run_id),
            sync_type: manifest.sync_type,
            sync_since: manifest.sync_since.clone(),
            change_window: None,
            extracted: report.rows_read,
            filtered: 0,
            quarantined: q_total,
            staged: 0,
            planned: report.plan.lines,
        },
        files,
        load_failure: failure,
        quarantined: q_total > 0,
        removals_held: false,
    }
    .write()?;
    Ok((report, exit_code))
}
