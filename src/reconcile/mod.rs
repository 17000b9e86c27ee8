//! `jcsync reconcile`: read Procore back and compare it with Sage, per project and budget code to
//! the cent, and say which lines differ and how (DOMAIN.md §5, "keeping Procore equal").
//!
//! The Sage side is the staged snapshot of the newest complete run of the pipeline's company
//! that read every row (a deep run, or a first incremental run, which found no watermark), or of
//! the run named, with every incremental run written since laid over it ([`sage::overlay`]): of
//! each transaction the newest staged row stands, and lines those runs removed from Procore
//! (their transactions left Sage, by the ledger) are taken out. Replays add nothing to it.
//! The Procore side is every direct cost and line of the projects the snapshot's jobs map to,
//! and of every job the ledger holds lines of (a job that left Sage keeps its lines there),
//! read with the load's own client ([`procore`]: login as sync does, rate limits, retries,
//! pagination). Only what the snapshot covers is compared ([`scope`]): lines the ledger dates
//! before the run's `since` window, and those of a vanished job kept by `[sync] vanished_jobs`,
//! are counted apart, never orphans. Each differing line has one class ([`DriftClass`]): missing, changed, orphaned,
//! duplicated, or foreign (not jcsync's, never touched). Lines the run quarantined at load
//! (`unmapped_project`, `unmapped_budget_code`, `unmapped_vendor`, `procore_rejected`) are not
//! drift jcsync can fix by sending again: they are listed as exceptions and left out of the
//! exit status.
//!
//! `--repair` ([`repair`]) makes Procore equal through the normal load path: the ledger forgets
//! what it recorded of missing and changed lines (and their direct costs), and each is sent
//! again by a replay of the run holding its current version, that line only; orphaned and duplicated lines that the ledger says jcsync created are deleted,
//! under the sync's removal guards and the ledger's lock (taken before the runs are chosen, held
//! through the replays).
//! Then Procore is read back again and compared once more.
//!
//! Memory: the snapshot's lines and one read-back are held in memory (about 200 bytes a line).

pub mod cli;
pub mod compare;
pub mod procore;
pub mod render;
pub mod repair;
pub mod sage;
pub mod scope;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Pipeline, TargetConfig};
use crate::error::{Error, Result};
use crate::pipeline::target::{prepare_target, PreparedTarget};
use crate::pipeline::SyncOptions;

pub use compare::{Comparison, DriftClass, DriftCounts, DriftLine};
pub use procore::ProcoreProject;
pub use repair::RepairReport;
pub use sage::{ChosenRun, SageSnapshot};
pub use scope::{Scope, Unchecked};

/// Exit status of a reconciliation that found drift (README, "Exit status"): Procore differs
/// from Sage (missing, changed, orphaned, duplicated or foreign lines; exceptions apart).
pub const EXIT_DRIFT: u8 = 6;

/// Options of `jcsync reconcile`.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Compare with this run instead of the newest complete deep one.
    pub run: Option<PathBuf>,
    /// Make Procore equal (all but foreign lines), then read back again.
    pub repair: bool,
    /// `--allow-removals`: confirm a repair that deletes more than `[sync] max_removal_share`
    /// of the target's lines.
    pub allow_removals: bool,
    /// Set (Ctrl-C) to stop sending.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// One comparison of Procore with a run's snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub company: String,
    pub run_id: String,
    pub run_dir: String,
    /// Why another run than the newest complete one was used, if it was.
    pub run_note: Option<String>,
    pub target: String,
    /// Incremental runs written after the snapshot run and laid over it, oldest first.
    pub overlaid: Vec<String>,
    /// Complete runs written after the snapshot that loaded into (or removed from) this target,
    /// by the ledger, and whose rows could not be laid over it (a later run that read every row
    /// when an older one was named or the newer one failed verification, or an incremental run
    /// that failed verification): lines they changed or added may show as drift, and
    /// `--repair` refuses to revert them.
    pub later_loads: Vec<String>,
    /// Jobs the ledger holds jcsync lines of whose Procore project was not found (by `[load]
    /// project_match`: renamed, renumbered, deleted or not visible to the app): those lines
    /// could not be read back, so they are not compared.
    pub ledger_jobs_without_project: Vec<LedgerJob>,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A job of the ledger and how many lines the ledger records for it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerJob {
    pub job: String,
    pub lines: u64,
}

/// What `jcsync reconcile` found (after the repair, with `--repair`) and did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileOutcome {
    #[serde(flatten)]
    pub reconciliation: Reconciliation,
    /// With `--repair`: what was found before, what was done, what was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairReport>,
    /// 0 when Procore equals Sage, [`EXIT_DRIFT`] otherwise.
    pub exit_code: u8,
}

/// What a read-back found, kept for the repair.
pub(crate) struct ReadBack {
    pub reconciliation: Reconciliation,
    pub procore: BTreeMap<String, ProcoreProject>,
}

/// `jcsync:{company}:line:`, the prefix of every line origin_id jcsync writes.
pub fn line_prefix(company: &str) -> String {
    format!("jcsync:{company}:line:")
}

/// Reconcile the pipeline's target with the newest run that read every row (or `options.run`),
/// the incremental runs since laid over it.
pub async fn reconcile(
    pipeline: &Pipeline,
    options: &ReconcileOptions,
) -> Result<ReconcileOutcome> {
    let config = &pipeline.config;
    if matches!(config.target, TargetConfig::DryRun(_)) {
        return Err(Error::Config {
            path: pipeline.path.clone(),
            message: "section `target`: a dry-run target holds nothing to reconcile".into(),
        });
    }
    if let TargetConfig::Sandbox(t) = &config.target {
        if t.state_file.is_none() {
            return Err(Error::Config {
                path: pipeline.path.clone(),
                message: "section `target`: a sandbox without `state_file` forgets what it was \
                          sent when the run ends; there is nothing to reconcile"
                    .into(),
            });
        }
    }
    // A repair holds the ledger's lock from before it chooses the runs to its last replay: no
    // sync writes a run, Procore or the ledger between what it saw and what it sends (a sync
    // started meanwhile is turned away, exit 4), so no run it did not lay over the snapshot
    // can slip in.
    let lock = if options.repair {
        let ledger = config.ledger_path();
        Some(
            tokio::task::spawn_blocking(move || {
                crate::ledger::LedgerLock::acquire(&ledger, "reconcile --repair")
            })
            .await
            .map_err(|e| crate::transform::driver::task_failed("reconcile", e))??,
        )
    } else {
        None
    };
    let run = sage::choose_run(&config.stage.dir, &config.company, options.run.as_deref())?;
    if let Some(note) = &run.note {
        tracing::warn!("{note}");
    }
    let later = sage::later_runs(&config.stage.dir, &run)?;
    tracing::info!(
        run = run.manifest.run_id,
        overlaid = later.overlays.len(),
        "reading the staged snapshot"
    );
    let snapshot = {
        let (run, load, overlays) = (run.clone(), config.load.clone(), later.overlays.clone());
        tokio::task::spawn_blocking(move || {
            let mut snapshot = sage::read_snapshot(&run, &load)?;
            let mut newer = Vec::with_capacity(overlays.len());
            for o in &overlays {
                newer.push((o.manifest.run_id.clone(), sage::read_snapshot(o, &load)?));
            }
            sage::overlay(&mut snapshot, newer);
            Ok::<_, Error>(snapshot)
        })
        .await
        .map_err(|e| crate::transform::driver::task_failed("reconcile", e))??
    };
    let first = read_back(pipeline, &run, &later, &snapshot, options).await?;
    if let (Some(_), Some(newer)) = (&lock, first.reconciliation.later_loads.first()) {
        return Err(Error::RunVerification {
            path: run.dir.clone(),
            message: format!(
                "run {newer} (and {} more) loaded into this target after the snapshot run {}: \
                 repairing from the older snapshot would send back what it replaced and remove \
                 what it added, and its rows cannot be laid over the snapshot; nothing was \
                 repaired. Run a deep sync (`[sync] type = \"deep\"`) and repair against it",
                first.reconciliation.later_loads.len() - 1,
                run.manifest.run_id
            ),
        });
    }
    let Some(lock) = lock else {
        let exit_code = exit_code(&first.reconciliation);
        return Ok(ReconcileOutcome {
            reconciliation: first.reconciliation,
            repair: None,
            exit_code,
        });
    };
    let report = repair::repair(pipeline, &run, &later, &snapshot, &first, options, lock).await?;
    let after = read_back(pipeline, &run, &later, &snapshot, options).await?;
    // Deletions held back by `max_removal_share`: the sync's status for it (5), drift or not.
    let exit_code = if report.held.is_some() {
        crate::pipeline::EXIT_REMOVALS_HELD
    } else {
        exit_code(&after.reconciliation)
    };
    Ok(ReconcileOutcome {
        reconciliation: after.reconciliation,
        repair: Some(report),
        exit_code,
    })
}

fn exit_code(r: &Reconciliation) -> u8 {
    if r.comparison.equal {
        0
    } else {
        EXIT_DRIFT
    }
}

/// Log in to the pipeline's target as a sync does.
pub(crate) async fn open_target(
    pipeline: &Pipeline,
    options: &ReconcileOptions,
) -> Result<PreparedTarget> {
    let sync_options = SyncOptions {
        cancel: options.cancel.clone(),
        ..SyncOptions::default()
    };
    prepare_target(pipeline, &sync_options).await
}

/// Close a phase's target. An embedded sandbox with a state file saves it on this thread as
/// its handle is dropped (when anything changed), so the next phase, which starts one on the
/// same file, reads what this one left.
pub(crate) async fn close_target(target: PreparedTarget) {
    drop(target);
}

/// Read Procore back and compare it with the snapshot.
pub(crate) async fn read_back(
    pipeline: &Pipeline,
    run: &ChosenRun,
    later: &sage::LaterRuns,
    snapshot: &SageSnapshot,
    options: &ReconcileOptions,
) -> Result<ReadBack> {
    let config = &pipeline.config;
    let target = open_target(pipeline, options).await?;
    let label = target.label.clone();
    let result = async {
        let load = target.load.as_ref().ok_or_else(|| Error::Config {
            path: pipeline.path.clone(),
            message: "section `target`: nothing to read back from".into(),
        })?;
        let projects = procore::project_ids(&load.client, config.load.project_match).await?;
        // The snapshot's jobs, and every job the ledger holds lines of: a job that left Sage
        // entirely keeps its lines in Procore (`[sync] vanished_jobs`), and they are read too.
        let in_snapshot = snapshot.jobs();
        let in_ledger = load.ledger.jobs_with_lines()?;
        let mut jobs = in_snapshot.clone();
        jobs.extend(in_ledger.iter().map(String::as_str));
        let mapped: Vec<(&str, i64)> = jobs
            .iter()
            .filter_map(|j| projects.get(*j).map(|p| (*j, *p)))
            .collect();
        let unfound: Vec<&str> = in_ledger
            .iter()
            .map(String::as_str)
            .filter(|j| !projects.contains_key(*j))
            .collect();
        let without_project: Vec<LedgerJob> = load
            .ledger
            .line_counts_of(&unfound)?
            .into_iter()
            .map(|(job, lines)| LedgerJob { job, lines })
            .collect();
        for j in &without_project {
            tracing::warn!(
                job = j.job,
                lines = j.lines,
                "the ledger holds lines of this job in Procore, but no Procore project matches \
                 it: they cannot be read back"
            );
        }
        let mut progress = procore::ReadProgress::new(mapped.len() as u64);
        let mut read = BTreeMap::new();
        for (job, pid) in mapped {
            let p = procore::read_project(&load.client, pid).await?;
            progress.project_done(job, &p);
            read.insert(job.to_string(), p);
        }
        progress.finish();
        let keep_ids = ledger_ids_of_duplicates(&read, &load.ledger)?;
        let recorded = load.ledger.runs_recorded(&later.not_overlaid)?;
        let later_loads: Vec<String> = later
            .not_overlaid
            .iter()
            .filter(|id| recorded.contains(*id))
            .cloned()
            .collect();
        // Lines the overlaid runs removed (their transactions left Sage).
        let overlaid: Vec<String> = later
            .overlays
            .iter()
            .map(|o| o.manifest.run_id.clone())
            .collect();
        let gone: HashMap<String, usize> = load
            .ledger
            .lines_removed_by(&overlaid)?
            .into_iter()
            .filter_map(|(origin, by)| {
                let index = snapshot.runs.iter().position(|r| *r == by)?;
                Some((origin, index))
            })
            .collect();
        let without_removed;
        let snapshot = if gone.is_empty() {
            snapshot
        } else {
            without_removed = snapshot.without(&gone);
            &without_removed
        };
        let prefix = line_prefix(&config.company);
        let since = scope::window_of(run)?;
        let sage_ids: std::collections::HashSet<&str> = snapshot
            .lines
            .iter()
            .chain(snapshot.exceptions.iter().map(|e| &e.line))
            .map(|l| l.origin_id.as_str())
            .collect();
        let candidates = read
            .values()
            .flat_map(|p| &p.lines)
            .filter_map(|l| l.origin_id.as_deref())
            .filter(|o| o.starts_with(&prefix) && !sage_ids.contains(o));
        let scope = Scope {
            since,
            by_date: scope::by_date(&load.ledger, since, candidates)?,
            vanished: read
                .keys()
                .filter(|j| !in_snapshot.contains(j.as_str()))
                .cloned()
                .collect(),
            keep_vanished: config.sync.vanished_jobs == crate::config::VanishedJobs::Keep,
        };
        let snapshot = with_unmapped_projects(snapshot, &projects);
        let comparison = compare::compare(&snapshot, &projects, &read, &keep_ids, &prefix, &scope);
        Ok::<_, Error>((comparison, read, later_loads, without_project))
    }
    .await;
    close_target(target).await;
    let (comparison, procore, later_loads, ledger_jobs_without_project) = result?;
    let overlaid = later
        .overlays
        .iter()
        .map(|o| o.manifest.run_id.clone())
        .collect();
    Ok(ReadBack {
        reconciliation: Reconciliation {
            company: config.company.clone(),
            run_id: run.manifest.run_id.clone(),
            run_dir: run.dir.display().to_string(),
            run_note: run.note.clone(),
            target: label,
            overlaid,
            later_loads,
            ledger_jobs_without_project,
            comparison,
        },
        procore,
    })
}

/// For each origin_id Procore holds more than once, the Procore id the ledger recorded.
fn ledger_ids_of_duplicates(
    read: &BTreeMap<String, ProcoreProject>,
    ledger: &crate::ledger::Ledger,
) -> Result<HashMap<String, i64>> {
    let mut copies: HashMap<&str, u32> = HashMap::new();
    for l in read.values().flat_map(|p| &p.lines) {
        if let Some(o) = &l.origin_id {
            *copies.entry(o.as_str()).or_default() += 1;
        }
    }
    let mut out = HashMap::new();
    for (origin, n) in copies {
        if n > 1 {
            if let Some(id) = ledger.get(origin)?.and_then(|e| e.procore_id) {
                out.insert(origin.to_string(), id);
            }
        }
    }
    Ok(out)
}

/// The snapshot with the lines of jobs that have no Procore project moved to the exceptions
/// (the load quarantines them `unmapped_project`; a stage-only run has not said so yet).
fn with_unmapped_projects<'a>(
    snapshot: &'a SageSnapshot,
    projects: &HashMap<String, i64>,
) -> std::borrow::Cow<'a, SageSnapshot> {
    if snapshot.lines.iter().all(|l| projects.contains_key(&l.job)) {
        return std::borrow::Cow::Borrowed(snapshot);
    }
    let mut out = SageSnapshot {
        lines: Vec::with_capacity(snapshot.lines.len()),
        exceptions: snapshot.exceptions.clone(),
        quarantined_jobs: snapshot.quarantined_jobs.clone(),
        runs: snapshot.runs.clone(),
    };
    for l in &snapshot.lines {
        if projects.contains_key(&l.job) {
            out.lines.push(l.clone());
        } else {
            out.exceptions.push(sage::SageException {
                line: l.clone(),
                reason_code: "unmapped_project".into(),
                reason: format!("Sage job {:?} has no Procore project", l.job),
            });
        }
    }
    std::borrow::Cow::Owned(out)
}
