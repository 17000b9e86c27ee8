//! What a snapshot covers, and so what a reconciliation compares (DOMAIN.md §5).
//!
//! A Procore line with a jcsync origin_id and no row in the snapshot is an orphan only when the
//! snapshot would hold its row if it were still in Sage. It is not compared ([`Unchecked`]),
//! counted apart and never deleted by `--repair`, when:
//!
//! - the run has a `[sync] since` window and the ledger dates the line before it
//!   (`out_of_window`): an earlier sync with an earlier `since` (or from the beginning of time)
//!   loaded it, and this snapshot does not look that far back;
//! - the run has a window and the ledger holds no date for the line (`date_unknown`: recorded
//!   before schema version 2 and not sent since): its scope is unknown, and jcsync never
//!   decides a removal on a guess (the sync's removals skip it the same way);
//! - its job has not one row in the snapshot and `[sync] vanished_jobs = "keep"`
//!   (`vanished_kept`): Sage moves a closed job's transactions out of the current table, and
//!   the user asked to keep its lines. With `"remove"` they are orphans like any other.
//!
//! The checks run in that order, as the sync's removal plan (`load::removal::plan_removals`)
//! runs them: first the window, then the vanished jobs.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ledger::Ledger;

use super::sage::ChosenRun;

/// Why a jcsync line in Procore was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unchecked {
    /// The ledger dates it before the run's `since` window.
    OutOfWindow,
    /// The run has a `since` window and the ledger holds no date for it.
    DateUnknown,
    /// Its job has no row in the snapshot, and `[sync] vanished_jobs = "keep"`.
    VanishedKept,
}

impl Unchecked {
    /// The name used in the JSON and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Unchecked::OutOfWindow => "out_of_window",
            Unchecked::DateUnknown => "date_unknown",
            Unchecked::VanishedKept => "vanished_kept",
        }
    }
}

/// The scope of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The run's `since` window (None: from the beginning of time).
    pub since: Option<NaiveDate>,
    /// Lines out of the window, or of unknown date, by origin_id (from the ledger).
    pub by_date: HashMap<String, Unchecked>,
    /// Jobs read back (the ledger holds lines of them) with not one row in the snapshot.
    pub vanished: BTreeSet<String>,
    /// `[sync] vanished_jobs = "keep"`.
    pub keep_vanished: bool,
}

impl Scope {
    /// Why the Procore line `origin_id` of `job`, which has no row in the snapshot, is not
    /// compared; None: it is an orphan.
    pub fn unchecked(&self, origin_id: &str, job: &str) -> Option<Unchecked> {
        self.by_date.get(origin_id).copied().or_else(|| {
            (self.keep_vanished && self.vanished.contains(job)).then_some(Unchecked::VanishedKept)
        })
    }
}

/// The `since` window of a run, from its manifest (`beginning-of-time` or `YYYY-MM-DD`).
pub fn window_of(run: &ChosenRun) -> Result<Option<NaiveDate>> {
    let since = run.manifest.sync_since.trim();
    if since == "beginning-of-time" {
        return Ok(None);
    }
    NaiveDate::parse_from_str(since, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Error::RunVerification {
            path: run.dir.join("manifest.json"),
            message: format!(
                "key `sync_since`: expected \"beginning-of-time\" or a date YYYY-MM-DD, found \
                 {since:?}: the snapshot's scope is unknown, so nothing can be compared safely"
            ),
        })
}

/// The lines of `candidates` (origin ids in Procore without a row in the snapshot) that a
/// window `since` does not cover, by the ledger's Accounting_Date.
pub fn by_date<'a>(
    ledger: &Ledger,
    since: Option<NaiveDate>,
    candidates: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Unchecked>> {
    let mut out = HashMap::new();
    let Some(since) = since else {
        return Ok(out);
    };
    for origin in candidates {
        if out.contains_key(origin) {
            continue;
        }
        // A line the ledger does not hold is jcsync's by its origin_id only: compared (an
        // orphan), and never deleted (the repair deletes only what the ledger holds).
        let Some(entry) = ledger.get(origin)? else {
            continue;
        };
        let date = entry
            .accounting_date
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        match date {
            Some(d) if d >= since => {}
            Some(_) => {
                out.insert(origin.to_string(), Unchecked::OutOfWindow);
            }
            None => {
                out.insert(origin.to_string(), Unchecked::DateUnknown);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerEntry;

    fn line(id: &str, date: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            origin_id: id.into(),
            kind: "line".into(),
            job: "1001".into(),
            procore_id: Some(1),
            payload_hash: "h".into(),
            run_id: "r".into(),
            direct_cost: Some("dc".into()),
            accounting_date: date.map(str::to_string),
            amount: Some("1.00".into()),
        }
    }

    #[test]
    fn the_window_is_decided_by_the_ledgers_date_and_an_unknown_date_is_never_an_orphan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = Ledger::open(&dir.path().join("l.sqlite"))
            .expect("open")
            .with_target("t");
        l.record(&[
            line("before", Some("2024-01-31")),
            line("first-day", Some("2024-02-01")),
            line("undated", None),
        ])
        .expect("record");
        let since = NaiveDate::from_ymd_opt(2024, 2, 1);
        let ids = ["before", "first-day", "undated", "unknown-to-the-ledger"];
        let got = by_date(&l, since, ids.into_iter()).expect("by date");
        assert_eq!(
            got,
            HashMap::from([
                ("before".to_string(), Unchecked::OutOfWindow),
                ("undated".to_string(), Unchecked::DateUnknown),
            ])
        );
        assert!(by_date(&l, None, ids.into_iter()).expect("all").is_empty());
        let scope = Scope {
            since,
            by_date: got,
            vanished: BTreeSet::from(["1003".to_string()]),
            keep_vanished: true,
        };
        assert_eq!(scope.unchecked("x", "1003"), Some(Unchecked::VanishedKept));
        assert_eq!(
            scope.unchecked("before", "1003"),
            Some(Unchecked::OutOfWindow)
        );
        assert_eq!(scope.unchecked("x", "1001"), None);
        let remove = Scope {
            keep_vanished: false,
            ..scope
        };
        assert_eq!(remove.unchecked("x", "1003"), None);
    }
}
