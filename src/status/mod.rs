//! `jcsync status PIPELINE [--json] [--max-age DURATION]`: is the sync healthy? Answered from
//! the ledger (its run history, what it holds in Procore, the open exceptions) and the schedule
//! of a running `--every` process, never from log files, so that a monitoring check can call it.
//!
//! Exit status: 0 healthy; [`EXIT_STATUS_FAILED`] when the last run failed (or was killed, or
//! left its load incomplete, or had its removals held); [`EXIT_STATUS_STALE`] when no run has
//! succeeded within `--max-age` (or none ever has); 1 when the ledger cannot be read.

mod render;

use std::time::Duration;

use serde::Serialize;

use crate::config::Pipeline;
use crate::error::Result;
use crate::ledger::runs::{RunOutcome, RunRecord};
use crate::ledger::Ledger;

pub use render::render_text;

/// `status` exit status: the last run failed.
pub const EXIT_STATUS_FAILED: u8 = 10;
/// `status` exit status: no successful run within `--max-age`, or none yet.
pub const EXIT_STATUS_STALE: u8 = 11;

/// How healthy the sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// The last run failed.
    Failed,
    /// The last success is older than `--max-age`, or there is none.
    Stale,
}

impl Health {
    /// The exit status of `jcsync status`.
    pub fn exit_code(self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Failed => EXIT_STATUS_FAILED,
            Health::Stale => EXIT_STATUS_STALE,
        }
    }
}

/// Open exceptions of one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExceptionCount {
    pub reason: String,
    pub count: u64,
    /// Exact decimal.
    pub amount: String,
}

/// What the ledger holds in Procore for the pipeline's target.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerHoldings {
    pub lines: u64,
    pub direct_costs: u64,
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub pipeline: String,
    pub company: String,
    pub ledger: String,
    /// When status looked (RFC 3339, UTC).
    pub checked_at: String,
    pub health: Health,
    /// Why it is not healthy, in words.
    pub problems: Vec<String>,
    /// A sync or replay running now.
    pub running: Option<RunRecord>,
    /// The newest finished sync or replay.
    pub last_run: Option<RunRecord>,
    /// The newest that completed its load.
    pub last_success: Option<RunRecord>,
    /// Age of the last success, in seconds.
    pub last_success_age_secs: Option<i64>,
    /// `--max-age`, in seconds.
    pub max_age_secs: Option<u64>,
    /// None for a target that keeps no ledger (dry-run, a sandbox without a state file).
    pub in_procore: Option<LedgerHoldings>,
    pub open_exceptions: Vec<ExceptionCount>,
    /// The next run of a `jcsync sync --every` process, while one runs.
    pub next_run: Option<serde_json::Value>,
}

/// Read the status of `pipeline`'s sync.
pub fn status(pipeline: &Pipeline, max_age: Option<Duration>) -> Result<Status> {
    let config = &pipeline.config;
    let ledger_path = config.ledger_path();
    let now = chrono::Utc::now();
    if !ledger_path.exists() {
        return Ok(judge(Status {
            pipeline: pipeline.path.display().to_string(),
            company: config.company.clone(),
            ledger: ledger_path.display().to_string(),
            checked_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            health: Health::Stale,
            problems: vec![format!(
                "no ledger at {}: no sync has run yet",
                ledger_path.display()
            )],
            running: None,
            last_run: None,
            last_success: None,
            last_success_age_secs: None,
            max_age_secs: max_age.map(|d| d.as_secs()),
            in_procore: None,
            open_exceptions: Vec::new(),
            next_run: crate::schedule::scheduled(&ledger_path)
                .and_then(|info| serde_json::to_value(info).ok()),
        }));
    }
    let ledger = Ledger::open(&ledger_path)?;
    let newest = ledger.last_run(&config.company, false)?;
    let (running, last_run) = match newest {
        Some(r) if r.outcome == RunOutcome::Running => {
            let finished = ledger
                .recent_runs(&config.company, 50)?
                .into_iter()
                .filter(|x| x.run_id != r.run_id)
                .find(|x| {
                    x.outcome != RunOutcome::Busy && matches!(x.mode.as_str(), "sync" | "replay")
                });
            (Some(r), finished)
        }
        other => (None, other),
    };
    let last_success = ledger.last_run(&config.company, true)?;
    let last_success_age_secs = last_success
        .as_ref()
        .and_then(|r| r.ended_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds());
    let (in_procore, open_exceptions) = match crate::pipeline::target::ledger_scope(&config.target)
    {
        Some(scope) => {
            let scoped = ledger.with_target(&scope);
            let holdings = LedgerHoldings {
                lines: scoped.count("line")?,
                direct_costs: scoped.count("header")?,
            };
            (Some(holdings), open_exceptions(&scoped)?)
        }
        None => (None, Vec::new()),
    };
    Ok(judge(Status {
        pipeline: pipeline.path.display().to_string(),
        company: config.company.clone(),
        ledger: ledger_path.display().to_string(),
        checked_at: now.to_rfc3339(),
        health: Health::Healthy,
        problems: Vec::new(),
        running,
        last_run,
        last_success,
        last_success_age_secs,
        max_age_secs: max_age.map(|d| d.as_secs()),
        in_procore,
        open_exceptions,
        next_run: crate::schedule::scheduled(&ledger_path)
            .and_then(|info| serde_json::to_value(info).ok()),
    }))
}

/// The open exceptions of a target-scoped ledger, by reason.
fn open_exceptions(ledger: &Ledger) -> Result<Vec<ExceptionCount>> {
    Ok(ledger
        .open_exceptions_by_reason()?
        .into_iter()
        .map(|(reason, count, amount)| ExceptionCount {
            reason,
            count,
            amount,
        })
        .collect())
}

/// Decide the health from what was found.
fn judge(mut s: Status) -> Status {
    let mut health = Health::Healthy;
    if let Some(last) = &s.last_run {
        if !last.outcome.is_success() {
            health = Health::Failed;
            let why = last
                .error
                .clone()
                .unwrap_or_else(|| last.outcome.as_str().replace('_', " "));
            s.problems.push(format!(
                "the last run {} {} (exit {}): {why}",
                last.run_id,
                last.outcome.as_str().replace('_', " "),
                last.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ));
        }
    }
    match (&s.last_success, s.last_success_age_secs, s.max_age_secs) {
        (None, _, _) => {
            if health == Health::Healthy {
                health = Health::Stale;
            }
            if s.last_run.is_some() || s.running.is_some() {
                s.problems.push("no run has completed its load yet".into());
            } else if s.problems.is_empty() {
                s.problems.push("no sync has run yet".into());
            }
        }
        (Some(ok), Some(age), Some(max)) if age > i64::try_from(max).unwrap_or(i64::MAX) => {
            if health == Health::Healthy {
                health = Health::Stale;
            }
            s.problems.push(format!(
                "the last success ({}) is {} old, over --max-age {}",
                ok.run_id,
                render::age(age),
                render::age(i64::try_from(max).unwrap_or(i64::MAX))
            ));
        }
        _ => {}
    }
    s.health = health;
    s
}
