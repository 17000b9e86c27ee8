//! After a complete snapshot: look for the lines that left Sage and remove them from Procore
//! ([`crate::load::removal`]), as `[sync] removals`, `max_removal_share` and `vanished_jobs` say.
//!
//! Runs only once every stage has succeeded and the load has completed: a partial snapshot
//! (an extract that failed, a load that stopped) never removes anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::json;

use super::load::PlanOutput;
use crate::config::{PipelineConfig, RemovalMode, Since, SyncKind};
use crate::error::{Error, Result};
use crate::extract::SageSource;
use crate::ledger::Ledger;
use crate::load::exceptions::{capture_rows, ExceptionsReport};
use crate::load::procore::LoadContext;
use crate::load::removal::{
    self, plan_removals, Deletion, InProcore, RemovalPlan, RemovalReport, RemovalSettings, SeenKeys,
};
use crate::staging::{sha256_file, FileEntry, HashedFile};
use crate::transform::driver::task_failed;

/// What the removal step needs besides the load's output.
pub(crate) struct RemovalInputs<'a> {
    pub config: &'a PipelineConfig,
    pub run_id: &'a str,
    pub run_dir: &'a Path,
    /// `--allow-removals`.
    pub allow: bool,
    /// The source, scanned again for the natural keys of every cost transaction in the window
    /// (the snapshot an incremental run cannot see, and the rows a deep run quarantined).
    pub source: Arc<SageSource>,
    /// The ledger a dry run reads (None when the pipeline's target keeps none).
    pub dry_run_ledger: Option<Ledger>,
    pub cancel: Arc<AtomicBool>,
    /// The run's staged files (whole paths): the rows of the exceptions it opened.
    pub staged: Vec<PathBuf>,
}

/// What the removal step left for the report.
pub(crate) struct RemovalResult {
    pub report: RemovalReport,
    pub in_procore: Option<InProcore>,
    /// `requests.ndjson` of `removals = "plan"` (a dry run's own file is updated in place).
    pub requests_file: Option<FileEntry>,
    /// What became of the target's open exceptions.
    pub exceptions: Option<ExceptionsReport>,
}

fn settings(config: &PipelineConfig, allow: bool) -> RemovalSettings {
    RemovalSettings {
        mode: config.sync.removals,
        max_share: config.sync.max_removal_share,
        vanished_jobs: config.sync.vanished_jobs,
        allow,
        since: match config.sync.since {
            Since::BeginningOfTime => None,
            Since::Date(d) => Some(d),
        },
    }
}

/// Look for removals and apply them as the pipeline says. `output` is updated: a dry run's
/// `requests.ndjson` gains the removals it would send; a removal step that stopped (Procore
/// down, Ctrl-C) becomes the load's failure (exit 3, the next sync finishes it).
pub(crate) async fn after_load(
    inputs: RemovalInputs<'_>,
    output: &mut PlanOutput,
) -> Result<Option<RemovalResult>> {
    let config = inputs.config;
    let mode = config.sync.removals;
    let settings = settings(config, inputs.allow);
    let skipped = |reason: &str| RemovalReport::skipped(mode, reason);
    match output {
        PlanOutput::Skipped => Ok(None),
        PlanOutput::DryRun(file) => {
            let report = match (mode, inputs.dry_run_ledger) {
                (RemovalMode::Off, _) => skipped("`[sync] removals = \"off\"`"),
                (_, None) => skipped(
                    "the pipeline's target keeps no ledger (a dry-run target, or a sandbox \
                     without a state file): nothing was loaded, so nothing can be removed",
                ),
                (_, Some(ledger)) if ledger.count("line")? == 0 => {
                    skipped("the ledger holds no line for this target")
                }
                (_, Some(ledger)) => {
                    let seen = scan_keys(inputs.source.clone(), config.company.clone()).await?;
                    let plan = blocking(move || plan_removals(&ledger, &seen, &settings)).await?;
                    let status = if plan.held.is_some() {
                        "held"
                    } else {
                        "planned"
                    };
                    let report = RemovalReport::of(mode, &plan, status);
                    *file = append_requests(inputs.run_dir, file, &plan, None)?;
                    report
                }
            };
            Ok(Some(RemovalResult {
                report,
                in_procore: None,
                requests_file: None,
                exceptions: None,
            }))
        }
        PlanOutput::Load(outcome, ctx) => {
            let Some(ctx) = ctx.clone() else {
                return Ok(Some(RemovalResult {
                    report: skipped("the load did not start"),
                    in_procore: None,
                    requests_file: None,
                    exceptions: None,
                }));
            };
            let mut result = RemovalResult {
                report: skipped(""),
                in_procore: None,
                requests_file: None,
                exceptions: None,
            };
            let complete = outcome.failure.is_none();
            let open = {
                let ctx2 = ctx.clone();
                blocking(move || lock(&ctx2).open_exception_count()).await?
            };
            // The key scan tells removals what left Sage, and open exceptions too.
            let seen = if complete && (mode != RemovalMode::Off || open > 0) {
                Some(scan_keys(inputs.source.clone(), config.company.clone()).await?)
            } else {
                None
            };
            let seen = if complete {
                let ctx2 = ctx.clone();
                let (run_id, deep) = (
                    inputs.run_id.to_string(),
                    config.sync.kind == SyncKind::Deep,
                );
                let since = settings.since.map(|d| d.format("%Y-%m-%d").to_string());
                blocking(move || {
                    let gone = close_gone(&mut lock(&ctx2), seen.as_ref(), deep, since, &run_id)?;
                    if gone > 0 {
                        tracing::info!(gone, "open exceptions whose row left Sage: closed");
                    }
                    Ok(seen)
                })
                .await?
            } else {
                None
            };
            result.report = if mode == RemovalMode::Off {
                skipped("`[sync] removals = \"off\"`")
            } else if let Some(seen) = seen {
                let ctx2 = ctx.clone();
                let plan = blocking(move || {
                    let ledger = ctx2.ledger.lock().unwrap_or_else(|p| p.into_inner());
                    plan_removals(&ledger, &seen, &settings)
                })
                .await?;
                log_plan(&plan);
                if plan.held.is_some() {
                    RemovalReport::of(mode, &plan, "held")
                } else if mode == RemovalMode::Plan {
                    let f = HashedFile::create(inputs.run_dir, "requests.ndjson")?;
                    let (entry, _) = write_deletions(f, &plan, Some(&ctx), 0)?;
                    result.requests_file = Some(entry);
                    RemovalReport::of(mode, &plan, "planned")
                } else if plan.deletions.is_empty() {
                    RemovalReport::of(mode, &plan, "applied")
                } else {
                    let mut report = RemovalReport::of(mode, &plan, "applied");
                    let (done, stop) = removal::execute(
                        ctx.client.clone(),
                        &ctx.ledger,
                        ctx.directory.projects(),
                        plan.deletions,
                        inputs.run_id,
                        config.load.max_projects_in_flight,
                        inputs.cancel.clone(),
                    )
                    .await;
                    tracing::info!(
                        lines = done.lines_removed,
                        direct_costs = done.direct_costs_removed,
                        already_gone = done.already_gone,
                        failed = done.failed.len(),
                        "removals sent"
                    );
                    for f in &done.failed {
                        tracing::warn!("removal refused: {f}");
                    }
                    if let Some(e) = stop {
                        report.status = "incomplete".into();
                        outcome.counts.pending += done.pending;
                        outcome.failure = Some(e);
                    } else if !done.failed.is_empty() {
                        report.status = "incomplete".into();
                    }
                    report.outcome = Some(done);
                    report
                }
            } else {
                skipped("the load did not complete: removals wait for a complete run")
            };
            let removed = result
                .report
                .outcome
                .as_ref()
                .map_or(0, |o| o.lines_removed);
            let counts = outcome.counts.clone();
            let ctx2 = ctx.clone();
            let (lines, direct_costs) = blocking(move || {
                let ledger = ctx2.ledger.lock().unwrap_or_else(|p| p.into_inner());
                Ok((ledger.count("line")?, ledger.count("header")?))
            })
            .await?;
            result.exceptions = {
                let (ctx2, run_id, staged) =
                    (ctx.clone(), inputs.run_id.to_string(), inputs.staged);
                let counts = outcome.counts.clone();
                Some(
                    blocking(move || {
                        let mut ledger = lock(&ctx2);
                        capture_rows(&mut ledger, &staged, &run_id)?;
                        ExceptionsReport::of(&ledger, &run_id, counts.retried())
                    })
                    .await?,
                )
            };
            result.in_procore = Some(InProcore {
                lines,
                direct_costs,
                created: counts.lines_sent - counts.lines_updated.min(counts.lines_sent),
                updated: counts.lines_updated,
                unchanged: counts.lines_unchanged,
                removed,
                pending: counts.pending,
            });
            Ok(Some(result))
        }
    }
}

fn lock(ctx: &LoadContext) -> std::sync::MutexGuard<'_, Ledger> {
    ctx.ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// Close the open exceptions whose row left Sage: those the key scan (`seen`) lacks, dated
/// in its window (a scan with unreadable keys decides nothing); without a scan, on a deep run,
/// those its complete snapshot lacked. The number closed.
fn close_gone(
    ledger: &mut Ledger,
    seen: Option<&SeenKeys>,
    deep: bool,
    since: Option<String>,
    run_id: &str,
) -> Result<u64> {
    let Some(seen) = seen else {
        return if deep {
            ledger.close_unseen_exceptions(run_id, since.as_deref())
        } else {
            Ok(0)
        };
    };
    if seen.unreadable > 0 {
        return Ok(0);
    }
    let mut gone = Vec::new();
    let mut after = String::new();
    loop {
        let page = ledger.open_exception_page(&after, 10_000, run_id, false)?;
        let Some(last) = page.last() else { break };
        after = last.origin_id.clone();
        for s in page {
            let in_window = match (&since, &s.accounting_date) {
                (None, _) => true,
                (Some(since), Some(d)) => d >= since,
                (Some(_), None) => false,
            };
            if in_window && !seen.has_line(&s.origin_id)? {
                gone.push(s.origin_id);
            }
        }
    }
    let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
    ledger.close_exceptions(&ids, "gone", run_id)
}

/// The natural keys of every cost transaction of the window, read again from the source
/// (only the key columns): what a deep sync would see, also on an incremental run. A row whose
/// key cannot be read is counted, and holds every removal back.
async fn scan_keys(source: Arc<SageSource>, company: String) -> Result<SeenKeys> {
    blocking(move || {
        let started = std::time::Instant::now();
        let mut seen = SeenKeys::new()?;
        for batch in source.line_keys(&company)? {
            let batch = batch?;
            seen.unreadable += batch.unreadable;
            seen.add(&batch.hashes, batch.jobs)?;
        }
        tracing::info!(
            keys = seen.keys,
            unreadable = seen.unreadable,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "key scan of the source for removals"
        );
        Ok(seen)
    })
    .await
}

fn log_plan(plan: &RemovalPlan) {
    for (job, v) in &plan.vanished_jobs {
        tracing::warn!(
            job,
            lines = v.lines,
            amount = v.amount,
            action = v.action,
            "a job with lines in Procore has not one transaction in the snapshot (`[sync] vanished_jobs`)"
        );
    }
    if let Some(why) = &plan.held {
        tracing::warn!("removals held back: {why}");
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| task_failed("removals", e))?
}

/// Write one NDJSON record per deletion after `seq` earlier records; the file entry and the
/// last sequence number.
fn write_deletions(
    mut f: HashedFile,
    plan: &RemovalPlan,
    ctx: Option<&LoadContext>,
    mut seq: u64,
) -> Result<(FileEntry, u64)> {
    let first = seq;
    for d in &plan.deletions {
        seq += 1;
        let project = ctx.and_then(|c| c.directory.projects().get(d.job()).copied());
        let pid = project.map_or_else(|| "{project_id}".to_string(), |p| p.to_string());
        let (path, origin_ids) = match d {
            Deletion::DirectCost { header, lines, .. } => {
                let mut ids: Vec<&str> = vec![&header.origin_id];
                ids.extend(lines.iter().map(|l| l.origin_id.as_str()));
                (
                    format!(
                        "/rest/v1.0/projects/{pid}/direct_costs/{}",
                        header.procore_id.unwrap_or_default()
                    ),
                    ids,
                )
            }
            Deletion::Line { header, line, .. } => (
                format!(
                    "/rest/v1.0/projects/{pid}/direct_costs/{}/line_items/{}",
                    header
                        .as_ref()
                        .and_then(|h| h.procore_id)
                        .map_or_else(|| "{direct_cost_id}".to_string(), |i| i.to_string()),
                    line.procore_id.unwrap_or_default()
                ),
                vec![line.origin_id.as_str()],
            ),
        };
        let record = json!({
            "seq": seq,
            "method": "DELETE",
            "path": path,
            "unresolved": if project.is_none() { json!({ "project_id": { "sage_job": d.job() } }) } else { json!({}) },
            "removes": { "lines": d.lines().len(), "origin_ids": origin_ids },
        });
        serde_json::to_writer(&mut f, &record)?;
        f.write_all(b"\n")
            .map_err(|e| Error::io(Path::new("requests.ndjson"), e))?;
    }
    let entry = f.finish(Some(seq - first))?;
    Ok((entry, seq))
}

/// A dry run's `requests.ndjson` with the removals it would send appended: its entry again.
fn append_requests(
    run_dir: &Path,
    file: &FileEntry,
    plan: &RemovalPlan,
    ctx: Option<&LoadContext>,
) -> Result<FileEntry> {
    if plan.deletions.is_empty() {
        return Ok(file.clone());
    }
    let earlier = file.rows.unwrap_or(0);
    let part = HashedFile::create(run_dir, "removals.ndjson.part")?;
    let (written, _) = write_deletions(part, plan, ctx, earlier)?;
    let requests = run_dir.join(&file.path);
    let part_path = run_dir.join(&written.path);
    {
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&requests)
            .map_err(|e| Error::io(&requests, e))?;
        let mut from = std::fs::File::open(&part_path).map_err(|e| Error::io(&part_path, e))?;
        std::io::copy(&mut from, &mut out).map_err(|e| Error::io(&requests, e))?;
        out.sync_all().map_err(|e| Error::io(&requests, e))?;
    }
    std::fs::remove_file(&part_path).map_err(|e| Error::io(&part_path, e))?;
    let (sha256, bytes) = sha256_file(&requests)?;
    Ok(FileEntry {
        path: file.path.clone(),
        rows: Some(earlier + written.rows.unwrap_or(0)),
        bytes,
        sha256,
    })
}
