//! `report.json` of a sync: counts, reconciliation, dimensions, stage timings, plan, totals
//! and what the load did.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::SyncKind;
use crate::load::plan::PlanStats;
pub use crate::transform::enrich::DimensionReport;
use crate::transform::StageTiming;

/// Row counts of the transaction table. `extracted = filtered + quarantined_total + planned`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountsReport {
    pub extracted: u64,
    pub filtered: u64,
    pub filtered_by_type: BTreeMap<String, u64>,
    pub filtered_before_window: u64,
    pub quarantined_total: u64,
    /// By reason code.
    pub quarantined: BTreeMap<String, u64>,
    pub staged: u64,
    pub planned: u64,
    /// Lines in Procore after the run (sent now or unchanged since an earlier run); None for a
    /// dry run.
    pub loaded: Option<u64>,
    /// Planned lines not loaded because the load stopped early (resumed by the next sync).
    pub pending: u64,
    /// `sync --stage-only`: nothing was planned or sent; `staged` takes `planned`'s place in
    /// the reconciliation and a replay of the run does the load.
    #[serde(default)]
    pub plan_skipped: bool,
}

impl CountsReport {
    /// Every extracted row is accounted for exactly once. `load_quarantined` is the part of
    /// `quarantined_total` that the load rejected (those rows were planned first).
    pub fn reconciles(&self, load_quarantined: u64) -> bool {
        let upstream = self.filtered + self.quarantined_total - load_quarantined;
        if self.plan_skipped {
            return self.extracted == upstream + self.staged;
        }
        match self.loaded {
            None => self.extracted == upstream + self.planned,
            Some(loaded) => {
                self.extracted == upstream + self.planned
                    && self.planned == loaded + load_quarantined + self.pending
            }
        }
    }
}

/// What the load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub counts: crate::load::procore::LoadCounts,
    pub http: crate::load::client::ClientStats,
    pub requests_total: u64,
    /// Lines per line-item sync request (transactions per request).
    pub lines_per_line_request: f64,
    /// Why the load stopped early, if it did.
    pub failure: Option<String>,
}

/// One stage's work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: String,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Time spent working, not waiting on channels.
    pub busy_ms: f64,
    /// rows_in per busy second.
    pub rows_per_s: f64,
}

impl StageReport {
    /// A stage report from explicit numbers.
    pub fn new(stage: &str, busy: Duration, rows_in: u64, rows_out: u64) -> StageReport {
        let secs = busy.as_secs_f64();
        StageReport {
            stage: stage.to_string(),
            rows_in,
            rows_out,
            busy_ms: secs * 1000.0,
            rows_per_s: if secs > 0.0 {
                rows_in as f64 / secs
            } else {
                0.0
            },
        }
    }

    /// A stage report from a stage's timing.
    pub fn from_timing(stage: &str, t: StageTiming) -> StageReport {
        StageReport::new(stage, t.busy, t.rows_in, t.rows_out)
    }
}

/// Planned amount per budget code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TotalRow {
    pub job: String,
    pub extra: Option<String>,
    pub cost_code: Option<String>,
    pub category: Option<String>,
    pub amount: String,
}

/// The change window of a SQL Server run: which rows it read by their Date_Stamp + Time_Stamp,
/// and where the watermark goes once the run succeeded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangeWindow {
    /// Ledger scope of the watermark (company, server, database, table).
    pub scope: String,
    /// The watermark found in the ledger when the run started.
    pub watermark: Option<String>,
    pub overlap_minutes: u32,
    /// Rows stamped at or after this were read (watermark - overlap); None: every row.
    pub changed_since: Option<String>,
    /// Latest stamp among the rows this run read.
    pub max_stamp_seen: Option<String>,
    /// The watermark after this run (recorded in the ledger once the manifest is written).
    pub new_watermark: Option<String>,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// SQL Server sources: the change window (incremental) and the watermark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_window: Option<ChangeWindow>,
    pub run_id: String,
    pub company: String,
    pub target: String,
    pub sync_type: SyncKind,
    pub since: String,
    pub started_at: String,
    pub elapsed_ms: u64,
    /// extracted == filtered + quarantined + planned.
    pub reconciled: bool,
    pub counts: CountsReport,
    pub dimensions: Vec<DimensionReport>,
    pub dimension_rows_quarantined: u64,
    pub stages: Vec<StageReport>,
    pub plan: PlanStats,
    pub planned_amount: String,
    pub totals: Vec<TotalRow>,
    pub load: Option<LoadReport>,
    /// The lines that left Sage, and what became of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals: Option<crate::load::removal::RemovalReport>,
    /// What the ledger holds for the target after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_procore: Option<crate::load::removal::InProcore>,
    /// The target's open exceptions: retried, resolved, gone, new, still open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceptions: Option<crate::load::exceptions::ExceptionsReport>,
}

/// `report.json` of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub run_id: String,
    /// The run whose staged rows were replayed.
    pub replay_of: String,
    pub replay_of_dir: String,
    pub company: String,
    pub target: String,
    pub force: bool,
    pub started_at: String,
    pub elapsed_ms: u64,
    /// Staged rows read.
    pub rows_read: u64,
    pub plan: PlanStats,
    pub planned_amount: String,
    /// Rows quarantined by the load, by reason.
    pub quarantined: BTreeMap<String, u64>,
    pub stages: Vec<StageReport>,
    pub load: Option<LoadReport>,
    /// rows_read == loaded + quarantined + pending (or == planned for a dry run).
    pub reconciled: bool,
    /// The target's open exceptions: retried, resolved, new, still open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceptions: Option<crate::load::exceptions::ExceptionsReport>,
    /// `reconcile --repair`: the replay loaded only the rows of this many line origin ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_lines: Option<u64>,
    /// Staged rows read and skipped because they were not among `only_lines`.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a run's ending needs of its report besides the facts it is given.
pub trait RunEnding {
    /// Lines retried from open exceptions (quarantined by earlier runs) that failed again:
    /// rows not loaded, whatever this run's snapshot did, so the run exits with `[report]
    /// quarantine_exit_code`.
    fn retried_still_failing(&self) -> u64;
}

fn still_failing(load: Option<&LoadReport>) -> u64 {
    load.map_or(0, |l| l.counts.retried().quarantined)
}

impl RunEnding for Report {
    fn retried_still_failing(&self) -> u64 {
        still_failing(self.load.as_ref())
    }
}

impl RunEnding for ReplayReport {
    fn retried_still_failing(&self) -> u64 {
        still_failing(self.load.as_ref())
    }
}
