//! What the removals of a run were, for `report.json` and the summary.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ProjectRemovals, RemovalOutcome, RemovalPlan, VanishedJob};
use crate::config::RemovalMode;

/// `report.json` → `removals`.
#[derive(Debug, Clone, Serialize)]
pub struct RemovalReport {
    pub mode: RemovalMode,
    /// `applied` (sent), `planned` (listed, `removals = "plan"` or a dry run), `held` (the guard
    /// held them back: nothing was removed), `incomplete` (the run stopped before all were sent),
    /// or `skipped` (not looked for; `reason` says why).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lines the ledger held for the target before the removals.
    pub ledger_lines: u64,
    /// Of those, in the snapshot's scope (all, or those dated in the `since` window).
    pub in_scope: u64,
    /// Lines whose transaction left Sage.
    pub planned_lines: u64,
    /// Direct costs to delete whole (every line gone, or none left).
    pub planned_direct_costs: u64,
    /// planned_lines / ledger_lines.
    pub share: f64,
    pub planned_by_project: BTreeMap<String, ProjectRemovals>,
    /// Jobs with lines in Procore and not one transaction in the snapshot.
    pub vanished_jobs: BTreeMap<String, VanishedJob>,
    /// What was sent, when removals were applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RemovalOutcome>,
}

impl RemovalReport {
    /// A report of removals not looked for.
    pub fn skipped(mode: RemovalMode, reason: impl Into<String>) -> RemovalReport {
        RemovalReport {
            mode,
            status: "skipped".into(),
            reason: Some(reason.into()),
            ledger_lines: 0,
            in_scope: 0,
            planned_lines: 0,
            planned_direct_costs: 0,
            share: 0.0,
            planned_by_project: BTreeMap::new(),
            vanished_jobs: BTreeMap::new(),
            outcome: None,
        }
    }

    /// A report of `plan`, with its status.
    pub fn of(mode: RemovalMode, plan: &RemovalPlan, status: &str) -> RemovalReport {
        RemovalReport {
            mode,
            status: status.into(),
            reason: plan.held.clone(),
            ledger_lines: plan.ledger_lines,
            in_scope: plan.in_scope,
            planned_lines: plan.lines,
            planned_direct_costs: plan.direct_costs,
            share: plan.lines as f64 / plan.ledger_lines.max(1) as f64,
            planned_by_project: plan.by_project.clone(),
            vanished_jobs: plan.vanished_jobs.clone(),
            outcome: None,
        }
    }

    /// True when the guard held removals back (the run's exit status says so).
    pub fn held(&self) -> bool {
        self.status == "held"
    }
}

/// `report.json` → `in_procore`: what the ledger holds for the target after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InProcore {
    /// Lines the ledger holds (in Procore by jcsync) after the run.
    pub lines: u64,
    pub direct_costs: u64,
    /// This run: lines created, updated, unchanged, removed, and left pending.
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub pending: u64,
}
