//! Open exceptions: rows quarantined at load (unmapped project, vendor or budget code, or
//! rejected by Procore), kept per target until they load or leave Sage.
//!
//! Each holds what a person needs to fix it (reason, job, budget code, amount, when it was first
//! and last seen, how often it was tried) and the enriched staged row itself (`row`, exact bytes
//! written by [`crate::load::exceptions`]), so that a later run can load it again even when its
//! own extract no longer contains the row (an incremental change window). An exception is never
//! deleted: it is closed with a resolution, `loaded` or `gone`. No excluded column's value is
//! ever stored: the staged row has none, and the reason is the load's own message.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};

use super::Ledger;
use crate::error::Result;

/// The `exceptions` table (schema version 3).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exceptions (
    target          TEXT NOT NULL,
    origin_id       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open',
    reason_code     TEXT NOT NULL,
    reason          TEXT NOT NULL,
    job             TEXT NOT NULL,
    budget_code     TEXT,
    amount          TEXT NOT NULL,
    cents           INTEGER NOT NULL,
    accounting_date TEXT,
    first_seen      TEXT NOT NULL,
    first_run       TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    last_run        TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 1,
    row_data        BLOB,
    row_run         TEXT,
    seen_run        TEXT,
    retried_run     TEXT,
    resolution      TEXT,
    closed_at       TEXT,
    closed_run      TEXT,
    PRIMARY KEY (target, origin_id)
);
CREATE INDEX IF NOT EXISTS exceptions_by_status ON exceptions (target, status, origin_id);
";

/// A line the load could not send, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionSeen {
    /// The line's origin_id.
    pub origin_id: String,
    /// `unmapped_project`, `unmapped_vendor`, `unmapped_budget_code` or `procore_rejected`.
    pub reason_code: String,
    pub reason: String,
    pub job: String,
    /// The flat budget code the line would have gone to.
    pub budget_code: Option<String>,
    /// Cents.
    pub cents: i64,
    /// `YYYY-MM-DD`.
    pub accounting_date: Option<String>,
}

/// An exception as `jcsync exceptions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exception {
    pub origin_id: String,
    pub status: String,
    pub reason_code: String,
    pub reason: String,
    pub job: String,
    pub budget_code: Option<String>,
    /// Exact decimal text (`-12.34`).
    pub amount: String,
    pub accounting_date: Option<String>,
    pub first_seen: String,
    pub first_run: String,
    pub last_seen: String,
    pub last_run: String,
    pub attempts: u64,
    /// `loaded` or `gone` once closed.
    pub resolution: Option<String>,
}

/// An open exception as a retry reads it: its stored row, if any.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub origin_id: String,
    pub accounting_date: Option<String>,
    /// Seen in this run's snapshot (it was planned from there).
    pub seen: bool,
    /// The enriched staged row, as `load::exceptions` encoded it.
    pub row: Option<Vec<u8>>,
}

/// What became of the exceptions in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunExceptions {
    /// Opened by this run (first seen now, or reopened).
    pub new: u64,
    /// Closed by this run because their line loaded.
    pub resolved: u64,
    /// Closed by this run because their row left Sage.
    pub gone: u64,
    /// Open once the run ended (all of the target's).
    pub still_open: u64,
}

const EXCEPTION_COLUMNS: &str = "origin_id, status, reason_code, reason, job, budget_code, amount,
    accounting_date, first_seen, first_run, last_seen, last_run, attempts, resolution";

fn exception_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Exception> {
    Ok(Exception {
        origin_id: r.get(0)?,
        status: r.get(1)?,
        reason_code: r.get(2)?,
        reason: r.get(3)?,
        job: r.get(4)?,
        budget_code: r.get(5)?,
        amount: r.get(6)?,
        accounting_date: r.get(7)?,
        first_seen: r.get(8)?,
        first_run: r.get(9)?,
        last_seen: r.get(10)?,
        last_run: r.get(11)?,
        attempts: r.get::<_, i64>(12)? as u64,
        resolution: r.get(13)?,
    })
}

/// Exact decimal text of cents.
pub fn cents_text(cents: i64) -> String {
    crate::model::values::format_decimal(cents as i128, 2)
}

impl Ledger {
    /// Record lines the load could not send in run `run_id`: a new exception is opened, an
    /// open one is seen again (its reason, amount and budget code updated, `last_seen`
    /// advanced, one more attempt), a closed one is opened again as new.
    pub fn record_exceptions(&mut self, seen: &[ExceptionSeen], run_id: &str) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().to_rfc3339();
        let target = self.target.clone();
        let err = tx_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO exceptions (target, origin_id, status, reason_code, reason, job,
                       budget_code, amount, cents, accounting_date, first_seen, first_run,
                       last_seen, last_run, attempts)
                     VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?11, 1)
                     ON CONFLICT(target, origin_id) DO UPDATE SET
                       reason_code = excluded.reason_code, reason = excluded.reason,
                       job = excluded.job, budget_code = excluded.budget_code,
                       amount = excluded.amount, cents = excluded.cents,
                       accounting_date = excluded.accounting_date,
                       last_seen = excluded.last_seen, last_run = excluded.last_run,
                       first_seen = CASE WHEN status = 'open' THEN first_seen ELSE excluded.first_seen END,
                       first_run = CASE WHEN status = 'open' THEN first_run ELSE excluded.first_run END,
                       attempts = CASE WHEN status = 'open' THEN attempts + 1 ELSE 1 END,
                       status = 'open', resolution = NULL, closed_at = NULL, closed_run = NULL",
                )
                .map_err(&err)?;
            for s in seen {
                stmt.execute(params![
                    target,
                    s.origin_id,
                    s.reason_code,
                    s.reason,
                    s.job,
                    s.budget_code,
                    cents_text(s.cents),
                    s.cents,
                    s.accounting_date,
                    now,
                    run_id
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Close the open exceptions of `origin_ids` with `resolution` (`loaded` or `gone`); the
    /// number closed.
    pub fn close_exceptions(
        &mut self,
        origin_ids: &[&str],
        resolution: &str,
        run_id: &str,
    ) -> Result<u64> {
        if origin_ids.is_empty() {
            return Ok(0);
        }
        let now = chrono::Utc::now().to_rfc3339();
        let target = self.target.clone();
        let err = tx_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        let mut closed = 0;
        {
            // The stored row goes: a closed exception is history, never retried.
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE exceptions SET status = 'closed', resolution = ?3, closed_at = ?4,
                       closed_run = ?5, row_data = NULL
                     WHERE target = ?1 AND origin_id = ?2 AND status = 'open'",
                )
                .map_err(&err)?;
            for id in origin_ids {
                closed += stmt
                    .execute(params![target, id, resolution, now, run_id])
                    .map_err(&err)? as u64;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(closed)
    }

    /// The jobs with at least one open exception.
    pub fn open_exception_jobs(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT job FROM exceptions WHERE target = ?1 AND status = 'open'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Number of open exceptions of the target.
    pub fn open_exception_count(&self) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM exceptions WHERE target = ?1 AND status = 'open'",
                params![self.target],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` open exceptions after `after` (origin_id order), with their stored rows
    /// when `with_rows`: a retry or a check reads them page by page, in flat memory.
    pub fn open_exception_page(
        &self,
        after: &str,
        limit: usize,
        run_id: &str,
        with_rows: bool,
    ) -> Result<Vec<StoredRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT origin_id, accounting_date, seen_run IS ?3, {} FROM exceptions
                 WHERE target = ?1 AND status = 'open' AND origin_id > ?2
                 ORDER BY origin_id LIMIT ?4",
                if with_rows { "row_data" } else { "NULL" }
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target, after, run_id, limit as i64], |r| {
                Ok(StoredRow {
                    origin_id: r.get(0)?,
                    accounting_date: r.get(1)?,
                    seen: r.get(2)?,
                    row: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Mark open exceptions as seen in run `run_id`'s snapshot (`seen_run`) or retried from
    /// their stored row in it (`retried_run`, and their stored row is then current: `row_run`).
    pub fn mark_exceptions(
        &mut self,
        origin_ids: &[&str],
        run_id: &str,
        retried: bool,
    ) -> Result<()> {
        if origin_ids.is_empty() {
            return Ok(());
        }
        let target = self.target.clone();
        let sql = if retried {
            "UPDATE exceptions SET retried_run = ?3, row_run = ?3 WHERE target = ?1 AND origin_id = ?2"
        } else {
            "UPDATE exceptions SET seen_run = ?3 WHERE target = ?1 AND origin_id = ?2"
        };
        let err = tx_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx.prepare_cached(sql).map_err(&err)?;
            for id in origin_ids {
                stmt.execute(params![target, id, run_id]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Open exceptions that run `run_id` quarantined from its own snapshot and whose stored
    /// row is older (or missing): the rows to take from the run's staged files.
    pub fn exceptions_needing_rows(&self, run_id: &str) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT origin_id FROM exceptions WHERE target = ?1 AND status = 'open'
                 AND last_run = ?2 AND (row_run IS NOT ?2 OR row_data IS NULL)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target, run_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Store the rows of open exceptions (origin_id, encoded row), as of run `run_id`.
    pub fn store_exception_rows(&mut self, rows: &[(String, Vec<u8>)], run_id: &str) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let target = self.target.clone();
        let err = tx_err(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE exceptions SET row_data = ?3, row_run = ?4
                     WHERE target = ?1 AND origin_id = ?2 AND status = 'open'",
                )
                .map_err(&err)?;
            for (id, row) in rows {
                stmt.execute(params![target, id, row, run_id])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Close as `gone` the open exceptions a deep run's complete snapshot did not hold: neither
    /// seen, nor quarantined again, nor retried in `run_id`, and dated on or after `since`
    /// (`YYYY-MM-DD`; None: any date) when a window applies. The number closed.
    pub fn close_unseen_exceptions(&mut self, run_id: &str, since: Option<&str>) -> Result<u64> {
        let now = chrono::Utc::now().to_rfc3339();
        self.conn
            .execute(
                "UPDATE exceptions SET status = 'closed', resolution = 'gone', closed_at = ?3,
                   closed_run = ?2, row_data = NULL
                 WHERE target = ?1 AND status = 'open' AND seen_run IS NOT ?2
                   AND last_run IS NOT ?2 AND retried_run IS NOT ?2
                   AND (?4 IS NULL OR (accounting_date IS NOT NULL AND accounting_date >= ?4))",
                params![self.target, run_id, now, since],
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// What became of the target's exceptions in run `run_id`.
    pub fn run_exceptions(&self, run_id: &str) -> Result<RunExceptions> {
        self.conn
            .query_row(
                "SELECT
                   COALESCE(SUM(status = 'open' AND first_run = ?2), 0),
                   COALESCE(SUM(status = 'closed' AND closed_run = ?2 AND resolution = 'loaded'), 0),
                   COALESCE(SUM(status = 'closed' AND closed_run = ?2 AND resolution = 'gone'), 0),
                   COALESCE(SUM(status = 'open'), 0)
                 FROM exceptions WHERE target = ?1",
                params![self.target, run_id],
                |r| {
                    Ok(RunExceptions {
                        new: r.get::<_, i64>(0)? as u64,
                        resolved: r.get::<_, i64>(1)? as u64,
                        gone: r.get::<_, i64>(2)? as u64,
                        still_open: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Open exceptions per reason code: (reason_code, count, total amount as exact decimal
    /// text), in reason code order. For `jcsync status`.
    pub fn open_exceptions_by_reason(&self) -> Result<Vec<(String, u64, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT reason_code, COUNT(*), SUM(cents) FROM exceptions
                 WHERE target = ?1 AND status = 'open' GROUP BY reason_code ORDER BY reason_code",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    cents_text(r.get::<_, i64>(2)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Call `f` with every open exception of the target, by reason code, job, budget code and
    /// origin_id, without holding them all.
    pub fn for_each_open_exception(
        &self,
        mut f: impl FnMut(Exception) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE target = ?1 AND status = 'open'
                 ORDER BY reason_code, job, budget_code, origin_id"
            ))
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![self.target]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            f(exception_of(row).map_err(|e| self.err(e))?)?;
        }
        Ok(())
    }

    /// One exception of the target, open or closed.
    pub fn exception(&self, origin_id: &str) -> Result<Option<Exception>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE target = ?1 AND origin_id = ?2"
                ),
                params![self.target, origin_id],
                exception_of,
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// The ledger error of `path`, for use while a transaction borrows the connection.
fn tx_err(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> crate::error::Error + '_ {
    move |e| crate::error::Error::Ledger {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, code: &str, cents: i64) -> ExceptionSeen {
        ExceptionSeen {
            origin_id: id.into(),
            reason_code: code.into(),
            reason: format!("{code} of {id}"),
            job: "1001".into(),
            budget_code: Some("1.01-100.M".into()),
            cents,
            accounting_date: Some("2024-03-01".into()),
        }
    }

    #[test]
    fn an_exception_opens_is_seen_again_and_closes_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = Ledger::open(&dir.path().join("l.sqlite"))
            .expect("open")
            .with_target("t");
        l.record_exceptions(
            &[
                seen("a", "unmapped_budget_code", 125_000),
                seen("b", "unmapped_vendor", -268),
            ],
            "r1",
        )
        .expect("record");
        assert_eq!(l.run_exceptions("r1").expect("run").new, 2);
        l.record_exceptions(&[seen("a", "unmapped_budget_code", 125_001)], "r2")
            .expect("again");
        let a = l.exception("a").expect("get").expect("a");
        assert_eq!(
            (
                a.attempts,
                a.first_run.as_str(),
                a.last_run.as_str(),
                a.amount.as_str()
            ),
            (2, "r1", "r2", "1250.01")
        );
        assert_eq!(
            l.open_exceptions_by_reason().expect("by reason"),
            vec![
                ("unmapped_budget_code".into(), 1, "1250.01".into()),
                ("unmapped_vendor".into(), 1, "-2.68".into())
            ]
        );
        assert_eq!(
            l.close_exceptions(&["a"], "loaded", "r3").expect("close"),
            1
        );
        assert_eq!(
            l.close_exceptions(&["a"], "loaded", "r3").expect("twice"),
            0
        );
        assert_eq!(l.close_exceptions(&["b"], "gone", "r3").expect("gone"), 1);
        let r3 = l.run_exceptions("r3").expect("run");
        assert_eq!((r3.resolved, r3.gone, r3.still_open, r3.new), (1, 1, 0, 0));
        let a = l.exception("a").expect("get").expect("a");
        assert_eq!(
            (a.status.as_str(), a.resolution.as_deref()),
            ("closed", Some("loaded"))
        );
        // Quarantined again later: a new exception.
        l.record_exceptions(&[seen("a", "procore_rejected", 1)], "r4")
            .expect("reopen");
        let a = l.exception("a").expect("get").expect("a");
        assert_eq!(
            (a.attempts, a.first_run.as_str(), a.status.as_str()),
            (1, "r4", "open")
        );
        assert_eq!(l.run_exceptions("r4").expect("run").new, 1);
    }

    #[test]
    fn exceptions_are_per_target_and_rows_page_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        let mut a = Ledger::open(&path).expect("open").with_target("sandbox");
        let b = Ledger::open(&path).expect("open").with_target("procore#1");
        a.record_exceptions(
            &[
                seen("x", "unmapped_project", 10),
                seen("y", "unmapped_project", 20),
            ],
            "r1",
        )
        .expect("record");
        assert_eq!(b.open_exception_count().expect("count"), 0);
        assert!(b.open_exceptions_by_reason().expect("none").is_empty());
        assert_eq!(a.open_exception_count().expect("count"), 2);
        assert_eq!(
            a.exceptions_needing_rows("r1").expect("need"),
            ["x".to_string(), "y".to_string()].into_iter().collect()
        );
        a.store_exception_rows(&[("x".into(), vec![1, 2, 3])], "r1")
            .expect("store");
        assert_eq!(
            a.exceptions_needing_rows("r1").expect("need"),
            ["y".to_string()].into_iter().collect()
        );
        a.mark_exceptions(&["y"], "r2", false).expect("seen");
        let page = a.open_exception_page("", 1, "r2", true).expect("page");
        assert_eq!(page.len(), 1);
        assert_eq!((page[0].origin_id.as_str(), page[0].seen), ("x", false));
        assert_eq!(page[0].row.as_deref(), Some(&[1u8, 2, 3][..]));
        let page = a.open_exception_page("x", 10, "r2", true).expect("page");
        assert_eq!((page[0].origin_id.as_str(), page[0].seen), ("y", true));
        // A deep run r2 saw y, not x: x is gone.
        assert_eq!(a.close_unseen_exceptions("r2", None).expect("gone"), 1);
        assert_eq!(
            a.exception("x")
                .expect("x")
                .expect("x")
                .resolution
                .as_deref(),
            Some("gone")
        );
        assert_eq!(a.open_exception_jobs().expect("jobs").len(), 1);
        // A window after its date leaves an unseen exception open.
        assert_eq!(
            a.close_unseen_exceptions("r3", Some("2025-01-01"))
                .expect("gone"),
            0
        );
    }
}
