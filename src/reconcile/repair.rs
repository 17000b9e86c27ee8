//! `reconcile --repair`: make Procore equal to the snapshot through the normal load path, the
//! ledger kept consistent, foreign lines never touched.
//!
//! - Missing and changed lines: the ledger forgets that what it recorded of them (and of their
//!   direct costs) is in Procore (`Ledger::invalidate`), then the run holding each line's
//!   current version (the snapshot run, or an incremental run laid over it) is replayed with
//!   only those lines ([`crate::replay::replay_under`] with `only`, under the repair's lock):
//!   the usual upsert by origin_id sends exactly those again (a missing direct cost is created
//!   again, a changed line updated).
//! - Orphaned and duplicated lines: deleted, only when the ledger holds their origin_id (jcsync
//!   removes only what its ledger says it created); of duplicates the copy whose Procore id the
//!   ledger holds is kept. A direct cost all of whose lines go is deleted whole (one request).
//!   Orphans go through the removal executor ([`crate::load::removal::execute`]: rate-limited
//!   DELETEs, 404 = already gone, each removal confirmed in the ledger). The other copies of a
//!   duplicate are deleted by their Procore ids directly: the ledger never recorded them, and
//!   confirming their removal would take out the entry of the kept line, which stays.
//!
//! Deletions obey the sync's guards ([`guard`]): `[sync] removals = "off"` or `"plan"` deletes
//! nothing; more than `[sync] max_removal_share` of the target's ledger lines deletes nothing
//! unless `--allow-removals` confirms it (exit 5, as a sync); lines of a vanished job are
//! orphans only with `vanished_jobs = "remove"` ([`super::scope`]). The whole repair, replays
//! included, runs under the ledger's lock, taken before the runs are chosen.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::compare::{DriftClass, DriftCounts};
use super::sage::{ChosenRun, SageSnapshot};
use super::{close_target, open_target, ReadBack, ReconcileOptions};
use crate::config::{Pipeline, RemovalMode};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerEntry};
use crate::load::client::ProcoreClient;
use crate::load::removal::{self, Deletion};
use reqwest::Method;
use std::sync::Mutex;

/// A drifted line the repair left as it is, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NotRepaired {
    pub class: &'static str,
    pub origin_id: String,
    pub why: String,
}

/// What the repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// Drift found before the repair.
    pub before: DriftCounts,
    /// Origin ids (lines and direct costs) the ledger forgot, sent again by the replay.
    pub invalidated: u64,
    /// The first replay's run id, and the highest exit status of the replays.
    pub replay_run: Option<String>,
    pub replay_exit_code: Option<u8>,
    /// Each replay: the run whose staged rows hold the current version of the lines sent
    /// (the snapshot run, or an incremental run laid over it), oldest first.
    pub replays: Vec<RepairReplay>,
    /// Procore items (lines or whole direct costs) deleted or found gone.
    pub deleted: u64,
    /// Why the deletions were held back by `[sync] max_removal_share` (exit 5), if they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    pub not_repaired: Vec<NotRepaired>,
}

/// One replay of a repair.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReplay {
    /// The replay's own run id.
    pub run: String,
    /// The run replayed.
    pub replay_of: String,
    /// Lines it was to send (missing or changed in Procore).
    pub lines: u64,
    pub exit_code: u8,
}

/// A removal of what the ledger says jcsync created (an orphan): a whole direct cost with its
/// lines, or one line, as the removal executor sends it.
pub use crate::load::removal::Deletion as OrphanRemoval;

/// A copy of a duplicated origin_id that the ledger did not record (it holds the kept one's
/// Procore id): deleted by its Procore ids, the ledger left as it is (its entry is the kept
/// line's, which stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDeletion {
    pub project_id: i64,
    pub direct_cost_id: i64,
    pub line_id: i64,
    pub origin_id: String,
}

/// The repair to make of a read-back.
#[derive(Debug, Default)]
pub struct RepairPlan {
    /// Line and direct cost origin ids to send again.
    pub resend: Vec<String>,
    pub removals: Vec<OrphanRemoval>,
    pub copies: Vec<CopyDeletion>,
    pub not_repaired: Vec<NotRepaired>,
}

/// A line to delete: its Procore line and the ledger entry that allows it (None: a copy).
struct Doomed {
    line_id: i64,
    origin_id: String,
    entry: Option<LedgerEntry>,
}

/// Plan the repair of `found` with what the ledger holds.
pub(crate) fn plan(
    found: &ReadBack,
    snapshot: &SageSnapshot,
    ledger: &Ledger,
) -> Result<RepairPlan> {
    let mut plan = RepairPlan::default();
    let mut resend = BTreeSet::new();
    let mut doomed: BTreeMap<(String, i64), Vec<Doomed>> = BTreeMap::new();
    let dc_of: HashMap<&str, &str> = snapshot
        .lines
        .iter()
        .map(|l| (l.origin_id.as_str(), l.direct_cost_origin_id.as_str()))
        .collect();
    for d in &found.reconciliation.comparison.drift {
        let origin = d.origin_id.clone().unwrap_or_default();
        let not = |why: &str| NotRepaired {
            class: d.class.as_str(),
            origin_id: origin.clone(),
            why: why.into(),
        };
        match d.class {
            DriftClass::Foreign => {}
            DriftClass::Missing | DriftClass::Changed => {
                if let Some(dc) = dc_of.get(origin.as_str()) {
                    resend.insert(dc.to_string());
                }
                resend.insert(origin);
            }
            DriftClass::Orphaned | DriftClass::Duplicated => {
                let Some(p) = &d.procore else { continue };
                let (Some(line_id), Some(dc_id)) = (p.line_id, p.direct_cost_id) else {
                    continue;
                };
                let Some(entry) = ledger.get(&origin)? else {
                    plan.not_repaired.push(not(
                        "the ledger does not hold this origin_id: jcsync deletes only what it created",
                    ));
                    continue;
                };
                let entry = if d.class == DriftClass::Orphaned {
                    if entry.procore_id != Some(line_id) {
                        plan.not_repaired.push(not(
                            "Procore's line is not the one the ledger recorded for this origin_id",
                        ));
                        continue;
                    }
                    Some(entry)
                } else if entry.procore_id.is_none() {
                    plan.not_repaired.push(not(
                        "the ledger holds no Procore id for this origin_id: which copy to keep is unknown",
                    ));
                    continue;
                } else {
                    None
                };
                doomed
                    .entry((d.job.clone(), dc_id))
                    .or_default()
                    .push(Doomed {
                        line_id,
                        origin_id: origin,
                        entry,
                    });
            }
        }
    }
    plan.resend = resend.into_iter().collect();
    for ((job, dc_id), lines) in doomed {
        let Some(project) = found.procore.get(&job) else {
            continue;
        };
        let all_lines = project
            .lines
            .iter()
            .filter(|l| l.direct_cost_id == dc_id)
            .count();
        // The header's ledger entry, when the ledger recorded this very direct cost.
        let header = match project.direct_costs.get(&dc_id).cloned().flatten() {
            Some(h) => ledger.get(&h)?.filter(|e| e.procore_id == Some(dc_id)),
            None => None,
        };
        // Whole: every line of it goes, the snapshot has none for it, the ledger created it.
        let whole = header.as_ref().filter(|h| {
            all_lines == lines.len()
                && !snapshot
                    .lines
                    .iter()
                    .any(|l| l.direct_cost_origin_id == h.origin_id)
        });
        if let Some(h) = whole {
            plan.removals.push(OrphanRemoval::DirectCost {
                job: job.clone(),
                header: h.clone(),
                lines: lines.into_iter().filter_map(|d| d.entry).collect(),
            });
            continue;
        }
        for d in lines {
            match d.entry {
                Some(line) => plan.removals.push(OrphanRemoval::Line {
                    job: job.clone(),
                    header: header.clone(),
                    line,
                }),
                None => plan.copies.push(CopyDeletion {
                    project_id: project.project_id,
                    direct_cost_id: dc_id,
                    line_id: d.line_id,
                    origin_id: d.origin_id,
                }),
            }
        }
    }
    Ok(plan)
}

/// Hold back the plan's deletions as a sync would hold back its removals: `[sync] removals`
/// `"off"` or `"plan"` deletes nothing; more than `max_removal_share` of the target's ledger
/// lines (`ledger_lines`) deletes nothing without `--allow-removals` (returned: why, exit 5).
/// What is held back goes to `not_repaired`.
pub(crate) fn guard(
    plan: &mut RepairPlan,
    mode: RemovalMode,
    max_share: f64,
    allow: bool,
    ledger_lines: u64,
) -> Option<String> {
    let lines: u64 = plan.removals.iter().map(|d| d.lines().len() as u64).sum();
    let share = lines as f64 / ledger_lines.max(1) as f64;
    let (why, held) = match mode {
        _ if plan.removals.is_empty() && plan.copies.is_empty() => return None,
        RemovalMode::Off => (
            "`[sync] removals = \"off\"`: reconcile --repair deletes nothing, as a sync would not"
                .to_string(),
            None,
        ),
        RemovalMode::Plan => (
            "`[sync] removals = \"plan\"`: reconcile --repair lists deletions and sends none, as \
             a sync would"
                .to_string(),
            None,
        ),
        RemovalMode::Apply if share > max_share && !allow => {
            let why = format!(
                "{lines} of the target's {ledger_lines} lines ({:.1} %) would be deleted, more \
                 than `[sync] max_removal_share` = {max_share} allows: nothing was deleted; if \
                 Sage is right, confirm with `jcsync reconcile PIPELINE --repair \
                 --allow-removals`",
                share * 100.0
            );
            (why.clone(), Some(why))
        }
        RemovalMode::Apply => return None,
    };
    for d in std::mem::take(&mut plan.removals) {
        let class = "orphaned";
        match &d {
            Deletion::DirectCost { header, lines, .. } if lines.is_empty() => {
                plan.not_repaired.push(NotRepaired {
                    class,
                    origin_id: header.origin_id.clone(),
                    why: why.clone(),
                })
            }
            _ => {
                for l in d.lines() {
                    plan.not_repaired.push(NotRepaired {
                        class,
                        origin_id: l.origin_id.clone(),
                        why: why.clone(),
                    });
                }
            }
        }
    }
    for c in std::mem::take(&mut plan.copies) {
        plan.not_repaired.push(NotRepaired {
            class: "duplicated",
            origin_id: c.origin_id,
            why: why.clone(),
        });
    }
    held
}

/// Repair what `found` shows: resend through a replay, delete through the removal executor.
/// `lock` is the ledger's, taken before `found` was read: held through the deletions and the
/// replays, released at the end.
pub(crate) async fn repair(
    pipeline: &Pipeline,
    run: &ChosenRun,
    later: &super::sage::LaterRuns,
    snapshot: &SageSnapshot,
    found: &ReadBack,
    options: &ReconcileOptions,
    lock: crate::ledger::LedgerLock,
) -> Result<RepairReport> {
    let mut report = RepairReport {
        before: found.reconciliation.comparison.counts.clone(),
        invalidated: 0,
        replay_run: None,
        replay_exit_code: None,
        replays: Vec::new(),
        deleted: 0,
        held: None,
        not_repaired: Vec::new(),
    };
    let target = open_target(pipeline, options).await?;
    let sync = &pipeline.config.sync;
    let planned = async {
        let load = target.load.as_ref().ok_or_else(|| Error::Config {
            path: pipeline.path.clone(),
            message: "section `target`: nothing to repair".into(),
        })?;
        let mut plan = plan(found, snapshot, &load.ledger)?;
        let held = guard(
            &mut plan,
            sync.removals,
            sync.max_removal_share,
            options.allow_removals,
            load.ledger.count("line")?,
        );
        Ok::<_, Error>((plan, held))
    }
    .await;
    let mut target = target;
    let plan = match planned {
        Ok((p, held)) => {
            if let Some(why) = &held {
                tracing::warn!("repair deletions held back: {why}");
            }
            report.held = held;
            p
        }
        Err(e) => {
            close_target(target).await;
            return Err(e);
        }
    };
    report.not_repaired = plan.not_repaired.clone();
    if !plan.resend.is_empty() {
        if let Some(load) = target.load.as_mut() {
            report.invalidated = load.ledger.invalidate(&plan.resend)?;
        }
    }
    let deleted = delete(pipeline, &mut target, found, &plan, options, &mut report).await;
    close_target(target).await;
    report.deleted = deleted?;
    // Each line is sent from the run that holds its current version: the snapshot run, or the
    // incremental run laid over it that staged it last. Each replay loads only those lines, so
    // it neither sends an older version of what a later run changed nor brings back what a
    // later run removed.
    let mut by_run: BTreeMap<usize, std::collections::HashSet<String>> = BTreeMap::new();
    let wanted: std::collections::HashSet<&str> = plan.resend.iter().map(String::as_str).collect();
    for l in snapshot
        .lines
        .iter()
        .filter(|l| wanted.contains(l.origin_id.as_str()))
    {
        by_run.entry(l.run).or_default().insert(l.origin_id.clone());
    }
    for (index, lines) in by_run {
        let dir = match index {
            0 => run.dir.clone(),
            i => match later.overlays.get(i - 1) {
                Some(o) => o.dir.clone(),
                None => continue,
            },
        };
        let count = lines.len() as u64;
        // Under the repair's lock: a sync slipping in before this replay could load a newer
        // version of a line that the replay would then send back.
        let replayed = crate::replay::replay_under(
            &dir,
            pipeline,
            &crate::replay::ReplayOptions {
                cancel: options.cancel.clone(),
                only: Some(std::sync::Arc::new(lines)),
                ..Default::default()
            },
            &lock,
        )
        .await?;
        tracing::info!(
            run = replayed.report.run_id,
            replay_of = replayed.report.replay_of,
            lines = count,
            exit = replayed.exit_code,
            "repair replay done"
        );
        report
            .replay_run
            .get_or_insert(replayed.report.run_id.clone());
        report.replay_exit_code = Some(
            report
                .replay_exit_code
                .map_or(replayed.exit_code, |e| e.max(replayed.exit_code)),
        );
        report.replays.push(RepairReplay {
            run: replayed.report.run_id.clone(),
            replay_of: replayed.report.replay_of.clone(),
            lines: count,
            exit_code: replayed.exit_code,
        });
    }
    drop(lock);
    Ok(report)
}

/// Send the deletions: copies of duplicates by their ids, then the orphans through the removal
/// executor (rate-limited DELETEs, 404 = already gone, each removal confirmed in the ledger).
/// Returns the lines deleted (or found gone).
async fn delete(
    pipeline: &Pipeline,
    target: &mut crate::pipeline::target::PreparedTarget,
    found: &ReadBack,
    plan: &RepairPlan,
    options: &ReconcileOptions,
    report: &mut RepairReport,
) -> Result<u64> {
    let Some(load) = target.load.take() else {
        return Ok(0);
    };
    let mut deleted = 0;
    for c in &plan.copies {
        deleted += delete_copy(&load.client, c).await?;
    }
    if plan.removals.is_empty() {
        return Ok(deleted);
    }
    let deletions: Vec<Deletion> = plan.removals.clone();
    let projects: HashMap<String, i64> = found
        .procore
        .iter()
        .map(|(job, p)| (job.clone(), p.project_id))
        .collect();
    let ledger = Mutex::new(load.ledger);
    let run_id = format!("reconcile-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let (outcome, stop) = removal::execute(
        load.client.clone(),
        &ledger,
        &projects,
        deletions,
        &run_id,
        pipeline.config.load.max_projects_in_flight,
        options.cancel.clone().unwrap_or_default(),
    )
    .await;
    deleted += outcome.lines_removed;
    for failed in outcome.failed {
        report.not_repaired.push(NotRepaired {
            class: "orphaned",
            origin_id: String::new(),
            why: failed,
        });
    }
    match stop {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

/// Delete one copy of a duplicated line (the ledger never recorded it: nothing to record);
/// 404 is a copy already gone.
async fn delete_copy(client: &ProcoreClient, c: &CopyDeletion) -> Result<u64> {
    let path = format!(
        "/rest/v1.0/projects/{}/direct_costs/{}/line_items/{}",
        c.project_id, c.direct_cost_id, c.line_id
    );
    match client
        .call(
            Method::DELETE,
            &path,
            &[],
            None,
            "DELETE direct_costs/line_items",
        )
        .await
    {
        Ok(_) | Err(Error::Procore { status: 404, .. }) => {
            tracing::info!(
                origin_id = c.origin_id,
                line = c.line_id,
                "duplicate copy deleted"
            );
            Ok(1)
        }
        Err(e) => Err(e),
    }
}
