//! Removals: after a complete snapshot, the lines the ledger says jcsync created in Procore and
//! whose transaction is no longer in Sage are removed (DOMAIN.md section 5).
//!
//! - [`seen`]: the snapshot's line keys and jobs.
//! - [`plan`](plan_removals): ledger lines in the snapshot's scope that the snapshot lacks,
//!   grouped by direct cost. A direct cost that loses every line is one `DELETE` of the direct
//!   cost; so is one left without a line (emptied by rejections, or by its lines moving to
//!   another direct cost). Jobs that vanished entirely are kept unless the pipeline says
//!   otherwise; more than `max_removal_share` of the target's lines is held back unless the
//!   user confirms.
//! - [`execute`]: the `DELETE`s, rate-limited through the same client as every request; a 404
//!   is a removal already done (a retry after a lost response, or a user who deleted it in
//!   Procore). Each confirmed removal is recorded in the ledger at once, so a kill -9 loses
//!   nothing: the next sync plans what is left.
//!
//! Only what the ledger holds is ever removed: anything else in Procore is not jcsync's.

mod execute;
mod report;
pub mod seen;

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::{RemovalMode, VanishedJobs};
use crate::error::Result;
use crate::ledger::{Ledger, LedgerEntry};
use crate::model::values::format_decimal;

pub use execute::{execute, RemovalOutcome};
pub use report::{InProcore, RemovalReport};
pub use seen::SeenKeys;

/// How removals are guarded, from the pipeline and the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalSettings {
    pub mode: RemovalMode,
    pub max_share: f64,
    pub vanished_jobs: VanishedJobs,
    /// `--allow-removals`: the share limit is confirmed for this run.
    pub allow: bool,
    /// The snapshot covers only lines dated from this day (`[sync] since`).
    pub since: Option<NaiveDate>,
}

/// One removal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// `DELETE …/direct_costs/{id}`: the direct cost and every line it holds.
    DirectCost {
        job: String,
        header: LedgerEntry,
        lines: Vec<LedgerEntry>,
    },
    /// `DELETE …/direct_costs/{dc}/line_items/{id}`.
    Line {
        job: String,
        /// The direct cost's ledger entry, when the ledger knows it (a line recorded before
        /// schema version 2 has none: its direct cost is looked up in Procore).
        header: Option<LedgerEntry>,
        line: LedgerEntry,
    },
}

impl Deletion {
    pub fn job(&self) -> &str {
        match self {
            Deletion::DirectCost { job, .. } | Deletion::Line { job, .. } => job,
        }
    }

    /// The line entries it removes.
    pub fn lines(&self) -> &[LedgerEntry] {
        match self {
            Deletion::DirectCost { lines, .. } => lines,
            Deletion::Line { line, .. } => std::slice::from_ref(line),
        }
    }
}

/// Removals of one project (Sage job).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ProjectRemovals {
    pub lines: u64,
    /// Direct costs deleted whole (they lost every line, or had none left).
    pub direct_costs: u64,
    /// The lines' amounts, as sent (exact).
    pub amount: String,
    #[serde(skip)]
    pub cents: i128,
}

impl ProjectRemovals {
    fn add_line(&mut self, line: &LedgerEntry) {
        self.lines += 1;
        self.cents += cents_of(line.amount.as_deref());
        self.amount = format_decimal(self.cents, 2);
    }
}

/// A job with lines in Procore and not one transaction in the snapshot.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct VanishedJob {
    pub lines: u64,
    pub amount: String,
    /// `keep`: its lines stay (`[sync] vanished_jobs`); `remove`: they are removed.
    pub action: String,
    #[serde(skip)]
    pub cents: i128,
}

/// What a snapshot asks to remove.
#[derive(Debug, Default)]
pub struct RemovalPlan {
    pub deletions: Vec<Deletion>,
    /// Lines to remove (in the deletions).
    pub lines: u64,
    /// Direct costs to delete whole.
    pub direct_costs: u64,
    /// Lines the ledger holds for the target (the share's denominator).
    pub ledger_lines: u64,
    /// Ledger lines in the snapshot's scope.
    pub in_scope: u64,
    pub by_project: BTreeMap<String, ProjectRemovals>,
    pub vanished_jobs: BTreeMap<String, VanishedJob>,
    /// Why nothing may be removed, when the guard holds the plan back.
    pub held: Option<String>,
}

/// Cents of an exact decimal amount as the ledger holds it (`-12.5`, `100.00`); 0 if unknown.
fn cents_of(amount: Option<&str>) -> i128 {
    let Some(d) = amount.and_then(|a| a.parse::<rust_decimal::Decimal>().ok()) else {
        return 0;
    };
    let cents = (d * rust_decimal::Decimal::ONE_HUNDRED).round();
    cents.mantissa() / 10i128.pow(cents.scale())
}

/// True when `line` is in the snapshot's scope: every line for a snapshot from the beginning of
/// time, else the lines dated from `since` (a line whose date the ledger does not know yet is
/// out of scope: it is never removed on a guess).
fn in_scope(line: &LedgerEntry, since: Option<NaiveDate>) -> bool {
    match since {
        None => true,
        Some(since) => line
            .accounting_date
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .is_some_and(|d| d >= since),
    }
}

/// Plan the removals a complete snapshot asks for. Reads the ledger only.
pub fn plan_removals(
    ledger: &Ledger,
    seen: &SeenKeys,
    settings: &RemovalSettings,
) -> Result<RemovalPlan> {
    let mut plan = RemovalPlan {
        ledger_lines: ledger.count("line")?,
        ..RemovalPlan::default()
    };
    // Gone lines by direct cost (None: recorded before the ledger knew it).
    let mut gone: HashMap<Option<String>, Vec<LedgerEntry>> = HashMap::new();
    let mut jobs_in_scope: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    ledger.for_each("line", |line| {
        if !in_scope(&line, settings.since) {
            return Ok(());
        }
        plan.in_scope += 1;
        let job = jobs_in_scope.entry(line.job.clone()).or_default();
        job.0 += 1;
        job.1 += cents_of(line.amount.as_deref());
        if !seen.has_line(&line.origin_id)? {
            gone.entry(line.direct_cost.clone()).or_default().push(line);
        }
        Ok(())
    })?;
    for (job, (lines, cents)) in &jobs_in_scope {
        if !seen.has_job(job) {
            plan.vanished_jobs.insert(
                job.clone(),
                VanishedJob {
                    lines: *lines,
                    amount: format_decimal(*cents, 2),
                    action: match settings.vanished_jobs {
                        VanishedJobs::Keep => "keep",
                        VanishedJobs::Remove => "remove",
                    }
                    .into(),
                    cents: *cents,
                },
            );
        }
    }
    if settings.vanished_jobs == VanishedJobs::Keep {
        for lines in gone.values_mut() {
            lines.retain(|l| !plan.vanished_jobs.contains_key(&l.job));
        }
    }
    let mut groups: Vec<(Option<String>, Vec<LedgerEntry>)> =
        gone.into_iter().filter(|(_, l)| !l.is_empty()).collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (direct_cost, lines) in groups {
        let header = match &direct_cost {
            Some(dc) => ledger.get(dc)?,
            None => None,
        };
        let whole = match (&direct_cost, &header) {
            (Some(dc), Some(_)) => ledger.lines_of(dc)?.len() == lines.len(),
            _ => false,
        };
        for line in &lines {
            plan.by_project
                .entry(line.job.clone())
                .or_default()
                .add_line(line);
        }
        plan.lines += lines.len() as u64;
        match header {
            Some(header) if whole => {
                let job = header.job.clone();
                plan.by_project.entry(job.clone()).or_default().direct_costs += 1;
                plan.direct_costs += 1;
                plan.deletions
                    .push(Deletion::DirectCost { job, header, lines });
            }
            header => {
                for line in lines {
                    plan.deletions.push(Deletion::Line {
                        job: line.job.clone(),
                        header: header.clone(),
                        line,
                    });
                }
            }
        }
    }
    // Direct costs already without a line (their lines were rejected or moved elsewhere).
    for header in ledger.empty_direct_costs()? {
        let job = header.job.clone();
        plan.by_project.entry(job.clone()).or_default().direct_costs += 1;
        plan.direct_costs += 1;
        plan.deletions.push(Deletion::DirectCost {
            job,
            header,
            lines: Vec::new(),
        });
    }
    for p in plan.by_project.values_mut() {
        p.amount = format_decimal(p.cents, 2);
    }
    let share = plan.lines as f64 / plan.ledger_lines.max(1) as f64;
    if seen.unreadable > 0 && plan.lines > 0 {
        plan.held = Some(format!(
            "{} transaction row(s) of the snapshot have a natural key that cannot be read: one of \
             them may be the row of a line that looks gone; fix the export (see the quarantine), \
             then sync again",
            seen.unreadable
        ));
    } else if share > settings.max_share && !settings.allow {
        plan.held = Some(format!(
            "{} of the target's {} lines ({:.1} %) would be removed, more than `[sync] \
             max_removal_share` = {} allows: nothing was removed; if Sage is right, confirm with \
             `jcsync sync PIPELINE --allow-removals`",
            plan.lines,
            plan.ledger_lines,
            share * 100.0,
            settings.max_share
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line hash with distinct high bits (the key set is keyed by them).
    fn hash(id: u128) -> u128 {
        id << 64 | id
    }

    fn line(id: u128, dc: &str, job: &str, date: &str, amount: &str) -> LedgerEntry {
        LedgerEntry {
            origin_id: format!("jcsync:DEMO:line:{:032x}", hash(id)),
            kind: "line".into(),
            job: job.into(),
            procore_id: Some(id as i64),
            payload_hash: "h".into(),
            run_id: "r1".into(),
            direct_cost: Some(dc.into()),
            accounting_date: Some(date.into()),
            amount: Some(amount.into()),
        }
    }

    fn header(dc: &str, job: &str) -> LedgerEntry {
        LedgerEntry {
            origin_id: dc.into(),
            kind: "header".into(),
            job: job.into(),
            procore_id: Some(9),
            payload_hash: "h".into(),
            run_id: "r1".into(),
            direct_cost: None,
            accounting_date: None,
            amount: None,
        }
    }

    fn settings() -> RemovalSettings {
        RemovalSettings {
            mode: RemovalMode::Apply,
            max_share: 1.0,
            vanished_jobs: VanishedJobs::Keep,
            allow: false,
            since: None,
        }
    }

    /// Ledger: dc1 (job A) lines 1, 2; dc2 (job A) line 3; dc3 (job B) line 4; dc4 (job A) none.
    fn ledger() -> Ledger {
        let mut l = Ledger::in_memory().expect("ledger").with_target("t");
        l.record(&[
            header("dc1", "A"),
            header("dc2", "A"),
            header("dc3", "B"),
            header("dc4", "A"),
            line(1, "dc1", "A", "2024-01-10", "10.00"),
            line(2, "dc1", "A", "2024-03-10", "-2.50"),
            line(3, "dc2", "A", "2024-03-11", "7.25"),
            line(4, "dc3", "B", "2024-03-12", "1.00"),
        ])
        .expect("record");
        l
    }

    fn seen(lines: &[u128], jobs: &[&str]) -> SeenKeys {
        let mut s = SeenKeys::new().expect("seen");
        let hashes: Vec<u128> = lines.iter().map(|&l| hash(l)).collect();
        s.add(&hashes, jobs.iter().map(|j| j.to_string()))
            .expect("add");
        s
    }

    #[test]
    fn a_direct_cost_losing_every_line_is_one_deletion_and_empty_ones_go_too() {
        let l = ledger();
        // Lines 2 and 3 gone: dc2 loses its only line (whole), dc1 keeps line 1 (line delete).
        let plan = plan_removals(&l, &seen(&[1, 4], &["A", "B"]), &settings()).expect("plan");
        assert_eq!(plan.lines, 2);
        assert_eq!(plan.ledger_lines, 4);
        let kinds: Vec<String> = plan
            .deletions
            .iter()
            .map(|d| match d {
                Deletion::DirectCost { header, lines, .. } => {
                    format!("dc {} ({} lines)", header.origin_id, lines.len())
                }
                Deletion::Line { line, .. } => format!("line {}", line.procore_id.unwrap_or(0)),
            })
            .collect();
        assert_eq!(kinds, ["line 2", "dc dc2 (1 lines)", "dc dc4 (0 lines)"]);
        let a = &plan.by_project["A"];
        assert_eq!((a.lines, a.direct_costs, a.amount.as_str()), (2, 2, "4.75"));
        assert!(plan.held.is_none());
    }

    #[test]
    fn a_vanished_job_is_kept_unless_the_pipeline_says_remove() {
        let l = ledger();
        let kept = plan_removals(&l, &seen(&[1, 2, 3], &["A"]), &settings()).expect("plan");
        assert_eq!(kept.lines, 0);
        assert_eq!(kept.vanished_jobs["B"].action, "keep");
        assert_eq!(kept.vanished_jobs["B"].amount, "1.00");
        let removed = plan_removals(
            &l,
            &seen(&[1, 2, 3], &["A"]),
            &RemovalSettings {
                vanished_jobs: VanishedJobs::Remove,
                ..settings()
            },
        )
        .expect("plan");
        assert_eq!(removed.lines, 1);
        assert_eq!(removed.by_project["B"].direct_costs, 1);
    }

    #[test]
    fn the_share_guard_holds_and_a_since_window_scopes() {
        let l = ledger();
        let guarded = RemovalSettings {
            max_share: 0.05,
            ..settings()
        };
        let held = plan_removals(&l, &seen(&[1, 2, 3], &["A", "B"]), &guarded).expect("plan");
        assert_eq!(held.lines, 1);
        let why = held.held.expect("held back");
        assert!(why.contains("1 of the target's 4 lines (25.0 %)"), "{why}");
        let allowed = plan_removals(
            &l,
            &seen(&[1, 2, 3], &["A", "B"]),
            &RemovalSettings {
                allow: true,
                ..guarded
            },
        )
        .expect("plan");
        assert!(allowed.held.is_none());
        // From March: line 1 (January) is out of scope, so its absence removes nothing.
        let since = RemovalSettings {
            since: NaiveDate::from_ymd_opt(2024, 3, 1),
            ..settings()
        };
        let plan = plan_removals(&l, &seen(&[2, 3, 4], &["A", "B"]), &since).expect("plan");
        assert_eq!((plan.lines, plan.in_scope), (0, 3));
    }

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(cents_of(Some("-12.5")), -1250);
        assert_eq!(cents_of(Some("100.00")), 10000);
        assert_eq!(cents_of(Some("0.01")), 1);
        assert_eq!(cents_of(None), 0);
    }
}
