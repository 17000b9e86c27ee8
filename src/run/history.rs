//! A run's entry in the ledger's run history ([`crate::ledger::runs`]): written when a sync or
//! replay that sends to Procore starts (after it took the ledger's lock), and again when it
//! ends, however it ends. A dry run and a stage-only sync write no ledger, and no history.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::report::Report;
use crate::config::Pipeline;
use crate::error::Error;
use crate::ledger::runs::{RunEnd, RunMode, RunOutcome, RunStart};
use crate::ledger::Ledger;

use super::finish::{EXIT_LEDGER_BUSY, EXIT_LOAD_INCOMPLETE, EXIT_REMOVALS_HELD};

/// A run being recorded.
pub struct RunHistory {
    ledger: PathBuf,
    run_id: String,
}

/// How a run ended, for its history entry.
pub enum Ended<'a> {
    /// It wrote its manifest: its exit status and whether rows were quarantined.
    Completed {
        exit_code: u8,
        quarantined: bool,
        /// Why the load stopped early, if it did.
        load_failure: Option<String>,
        run_dir: &'a Path,
        summary: Option<serde_json::Value>,
    },
    /// It failed (its exit status as the command gives it).
    Failed {
        error: &'a Error,
        exit_code: u8,
        run_dir: Option<&'a Path>,
    },
}

impl RunHistory {
    /// Record that `run_id` started. A ledger that cannot be written is logged: the run goes on
    /// (and fails on its own if it needs the ledger).
    pub fn start(pipeline: &Pipeline, run_id: &str, mode: RunMode) -> Option<RunHistory> {
        let ledger = pipeline.config.ledger_path();
        let pipeline_path = pipeline.path.display().to_string();
        let started = Ledger::open(&ledger).and_then(|l| {
            l.run_started(&RunStart {
                run_id,
                company: &pipeline.config.company,
                mode,
                pipeline: &pipeline_path,
            })
        });
        match started {
            Ok(()) => Some(RunHistory {
                ledger,
                run_id: run_id.to_string(),
            }),
            Err(e) => {
                tracing::warn!("cannot record the run in the ledger's history: {e}");
                None
            }
        }
    }

    /// Record how the run ended.
    pub fn end(self, ended: Ended<'_>) {
        let (outcome, exit_code, error, run_dir, summary) = match ended {
            Ended::Completed {
                exit_code,
                quarantined,
                load_failure,
                run_dir,
                summary,
            } => {
                let outcome = match exit_code {
                    EXIT_LOAD_INCOMPLETE => RunOutcome::Incomplete,
                    EXIT_REMOVALS_HELD => RunOutcome::RemovalsHeld,
                    _ if quarantined => RunOutcome::Quarantined,
                    _ => RunOutcome::Succeeded,
                };
                (outcome, exit_code, load_failure, Some(run_dir), summary)
            }
            Ended::Failed {
                error,
                exit_code,
                run_dir,
            } => {
                let outcome = match exit_code {
                    EXIT_LOAD_INCOMPLETE => RunOutcome::Incomplete,
                    EXIT_LEDGER_BUSY => RunOutcome::Busy,
                    _ => RunOutcome::Failed,
                };
                (outcome, exit_code, Some(error.to_string()), run_dir, None)
            }
        };
        let run_dir = run_dir.map(|d| d.display().to_string());
        let recorded = Ledger::open(&self.ledger).and_then(|l| {
            l.run_ended(
                &self.run_id,
                &RunEnd {
                    outcome,
                    exit_code,
                    error: error.as_deref(),
                    run_dir: run_dir.as_deref(),
                    summary,
                },
            )
        });
        if let Err(e) = recorded {
            tracing::warn!(
                "cannot record the end of run {} in the ledger's history: {e}",
                self.run_id
            );
        }
    }
}

/// The counts of a sync kept in its history entry (and shown by `jcsync status`).
pub fn sync_summary(report: &Report) -> serde_json::Value {
    let c = &report.counts;
    let mut summary = json!({
        "extracted": c.extracted,
        "staged": c.staged,
        "planned": c.planned,
        "quarantined": c.quarantined_total,
        "quarantined_by_reason": c.quarantined,
        "loaded": c.loaded,
        "pending": c.pending,
        "planned_amount": report.planned_amount,
    });
    if let Some(l) = &report.load {
        summary["lines_sent"] = json!(l.counts.lines_sent);
        summary["lines_unchanged"] = json!(l.counts.lines_unchanged);
        // Open exceptions retried from earlier runs that failed again (not in `quarantined`).
        summary["retried_still_failing"] = json!(l.counts.retried().quarantined);
    }
    if let Some(p) = &report.in_procore {
        summary["removed"] = json!(p.removed);
        summary["lines_in_procore"] = json!(p.lines);
    }
    summary
}
