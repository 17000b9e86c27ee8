//! The ledger: state that must survive runs, in an embedded SQLite database (WAL mode).
//!
//! - `loaded`: for each origin_id sent to Procore, the hash of the payload sent, the Procore id it
//!   got, and the run that sent it. A re-run sends only what is missing or changed.
//!   For a line also its direct cost's origin_id, its Accounting_Date and its amount: what a
//!   removal needs (which direct cost to delete it from, whether a `since` window covers it, and
//!   how much it takes out of Procore).
//! - `removed`: every removal Procore confirmed (a line or a whole direct cost), moved out of
//!   `loaded` in the same transaction as the confirmation: a kill -9 between two removals loses
//!   nothing, and the next sync finishes the job.
//! - `watermarks`: per source scope, the change stamp (Date_Stamp + Time_Stamp) up to which
//!   incremental syncs have been loaded. Moved forward only after a run's load succeeded.
//!
//! - `runs` ([`runs`]): every sync and replay, from its start to its outcome, for `jcsync status`.
//! - `exceptions` ([`exceptions`]): rows quarantined at load, open until they load or leave Sage.
//!
//! The schema has a version (`PRAGMA user_version`): a ledger written by an older jcsync is
//! migrated in place when it is opened (version 1 → 2 adds the line columns and `removed`;
//! 2 → 3 adds `runs` and `exceptions`); one written by a newer jcsync is refused.
//!
//! One sync or replay at a time writes a ledger: [`LedgerLock`].

pub mod exceptions;
mod lock;
pub mod runs;

use std::path::{Path, PathBuf};

pub use exceptions::{Exception, ExceptionSeen, RunExceptions};
pub use lock::{host_name, LedgerLock, LockHolder};

use chrono::NaiveDateTime;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};

/// What the ledger knows about one origin_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub origin_id: String,
    /// `header` or `line`.
    pub kind: String,
    /// The Sage job (Procore project) it belongs to.
    pub job: String,
    /// Procore's id, once known.
    pub procore_id: Option<i64>,
    /// sha256 (hex) of the payload last sent successfully.
    pub payload_hash: String,
    pub run_id: String,
    /// A line's direct cost (its origin_id); None for a header, or a line recorded before
    /// schema version 2 and not seen since.
    pub direct_cost: Option<String>,
    /// A line's Accounting_Date (`YYYY-MM-DD`), for the scope of a `since` window.
    pub accounting_date: Option<String>,
    /// A line's amount as sent (exact decimal text).
    pub amount: Option<String>,
}

/// A removal Procore confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The ledger entries it takes out (a direct cost's own entry and those of its lines).
    pub origin_ids: Vec<String>,
    pub run_id: String,
}

/// An open ledger. What was loaded is recorded per target (a Procore company at a URL, or a
/// sandbox state), so switching targets never skips a send.
pub struct Ledger {
    path: PathBuf,
    conn: Connection,
    target: String,
}

/// The schema version this jcsync writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 1: what every ledger has.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS loaded (
    target       TEXT NOT NULL,
    origin_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    job          TEXT NOT NULL,
    procore_id   INTEGER,
    payload_hash TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (target, origin_id)
);
CREATE TABLE IF NOT EXISTS watermarks (
    scope      TEXT PRIMARY KEY,
    stamp      TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
";

/// Version 2: a line's direct cost, date and amount; confirmed removals.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS removed (
    target          TEXT NOT NULL,
    origin_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    job             TEXT NOT NULL,
    procore_id      INTEGER,
    direct_cost     TEXT,
    accounting_date TEXT,
    amount          TEXT,
    created_run     TEXT NOT NULL,
    removed_run     TEXT NOT NULL,
    removed_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS removed_by_run ON removed (target, removed_run);
CREATE INDEX IF NOT EXISTS loaded_by_direct_cost ON loaded (target, direct_cost);
";

/// Columns version 2 adds to `loaded`.
const V2_COLUMNS: [&str; 3] = ["direct_cost", "accounting_date", "amount"];

/// Bring the schema to [`SCHEMA_VERSION`], in one transaction.
fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "written by a newer jcsync (schema version {version}; this one knows up to \
             {SCHEMA_VERSION}): upgrade jcsync"
        ));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    tx.execute_batch(SCHEMA_V1).map_err(|e| e.to_string())?;
    let present: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT name FROM pragma_table_info('loaded')")
            .map_err(|e| e.to_string())?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?;
        names
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| e.to_string())?
    };
    for column in V2_COLUMNS {
        if !present.iter().any(|p| p == column) {
            tx.execute_batch(&format!("ALTER TABLE loaded ADD COLUMN {column} TEXT"))
                .map_err(|e| e.to_string())?;
        }
    }
    tx.execute_batch(SCHEMA_V2).map_err(|e| e.to_string())?;
    // Version 3: the run history and the open exceptions.
    tx.execute_batch(runs::SCHEMA).map_err(|e| e.to_string())?;
    tx.execute_batch(exceptions::SCHEMA)
        .map_err(|e| e.to_string())?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    if version > 0 || !present.is_empty() {
        tracing::info!(
            "ledger migrated in place from schema version {version} to {SCHEMA_VERSION}"
        );
    }
    Ok(())
}

impl Ledger {
    /// Open (or create) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let err = |e: rusqlite::Error| Error::Ledger {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        migrate(&mut conn).map_err(|message| Error::Ledger {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(Ledger {
            path: path.to_path_buf(),
            conn,
            target: String::new(),
        })
    }

    /// A ledger that lives as long as the process (for a target that forgets, like a sandbox
    /// without a state file).
    pub fn in_memory() -> Result<Ledger> {
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|e| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
        })?;
        migrate(&mut conn).map_err(|message| Error::Ledger {
            path: path.clone(),
            message,
        })?;
        Ok(Ledger {
            path,
            conn,
            target: String::new(),
        })
    }

    /// Scope `get` and `record` to a target.
    pub fn with_target(mut self, target: &str) -> Ledger {
        self.target = target.to_string();
        self
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::Ledger {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The watermark of a scope (e.g. the company and source), if any run set one.
    pub fn watermark(&self, scope: &str) -> Result<Option<NaiveDateTime>> {
        let stamp: Option<String> = self
            .conn
            .query_row(
                "SELECT stamp FROM watermarks WHERE scope = ?1",
                params![scope],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        stamp
            .map(|s| {
                NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| {
                    Error::Ledger {
                        path: self.path.clone(),
                        message: format!("watermark of {scope:?} is not a timestamp: {s:?}"),
                    }
                })
            })
            .transpose()
    }

    /// Move a scope's watermark forward (never back).
    pub fn advance_watermark(&self, scope: &str, stamp: NaiveDateTime, run_id: &str) -> Result<()> {
        if let Some(current) = self.watermark(scope)? {
            if current >= stamp {
                return Ok(());
            }
        }
        self.conn
            .execute(
                "INSERT INTO watermarks (scope, stamp, run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(scope) DO UPDATE SET stamp = excluded.stamp, run_id = excluded.run_id,
                 updated_at = excluded.updated_at",
                params![
                    scope,
                    stamp.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                    run_id,
                    chrono::Utc::now().to_rfc3339()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What the ledger knows of an origin_id.
    pub fn get(&self, origin_id: &str) -> Result<Option<LedgerEntry>> {
        self.conn
            .query_row(
                &format!("SELECT {ENTRY_COLUMNS} FROM loaded WHERE target = ?1 AND origin_id = ?2"),
                params![self.target, origin_id],
                entry_of,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record entries in one transaction (all or none).
    pub fn record(&mut self, entries: &[LedgerEntry]) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        let path = self.path.clone();
        let err = |e: rusqlite::Error| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO loaded (origin_id, kind, job, procore_id, payload_hash, run_id, updated_at, target,
                       direct_cost, accounting_date, amount)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(target, origin_id) DO UPDATE SET kind = excluded.kind, job = excluded.job,
                       procore_id = COALESCE(excluded.procore_id, loaded.procore_id),
                       payload_hash = excluded.payload_hash, run_id = excluded.run_id,
                       updated_at = excluded.updated_at,
                       direct_cost = COALESCE(excluded.direct_cost, loaded.direct_cost),
                       accounting_date = COALESCE(excluded.accounting_date, loaded.accounting_date),
                       amount = COALESCE(excluded.amount, loaded.amount)",
                )
                .map_err(err)?;
            for e in entries {
                stmt.execute(params![
                    e.origin_id,
                    e.kind,
                    e.job,
                    e.procore_id,
                    e.payload_hash,
                    e.run_id,
                    now,
                    self.target,
                    e.direct_cost,
                    e.accounting_date,
                    e.amount
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Number of origin_ids recorded.
    pub fn len(&self) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM loaded WHERE target = ?1",
                params![self.target],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// True when nothing was recorded yet.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Number of entries of `kind` (`header` or `line`) recorded for the target.
    pub fn count(&self, kind: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM loaded WHERE target = ?1 AND kind = ?2",
                params![self.target, kind],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Call `f` with every entry of `kind` recorded for the target, in origin_id order, without
    /// holding them all (a deep ledger has millions of lines).
    pub fn for_each(&self, kind: &str, mut f: impl FnMut(LedgerEntry) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM loaded WHERE target = ?1 AND kind = ?2 ORDER BY origin_id"
            ))
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![self.target, kind])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            f(entry_of(row).map_err(|e| self.err(e))?)?;
        }
        Ok(())
    }

    /// The jobs (Sage jobs, so Procore projects) with a line recorded for the target: where
    /// jcsync's lines are, also those of a job that left Sage (`reconcile` reads them all).
    pub fn jobs_with_lines(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT job FROM loaded WHERE target = ?1 AND kind = 'line'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// The lines recorded for the target per job: (job, lines), for the jobs in `jobs`.
    pub fn line_counts_of(&self, jobs: &[&str]) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT COUNT(*) FROM loaded WHERE target = ?1 AND kind = 'line' AND job = ?2")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let n: i64 = stmt
                .query_row(params![self.target, job], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            out.push(((*job).to_string(), n.max(0) as u64));
        }
        Ok(out)
    }

    /// Which of `run_ids` wrote what the ledger holds for the target: an entry it sent last
    /// (`loaded`), or a removal it made (`removed`). `reconcile --repair` refuses to repair
    /// from a snapshot older than a run that loaded after it.
    pub fn runs_recorded(&self, run_ids: &[String]) -> Result<std::collections::BTreeSet<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT EXISTS(SELECT 1 FROM loaded WHERE target = ?1 AND run_id = ?2)
                     OR EXISTS(SELECT 1 FROM removed WHERE target = ?1 AND removed_run = ?2)",
            )
            .map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeSet::new();
        for id in run_ids {
            let found: bool = stmt
                .query_row(params![self.target, id], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if found {
                out.insert(id.clone());
            }
        }
        Ok(out)
    }

    /// The lines recorded under the direct cost `direct_cost` (its origin_id).
    pub fn lines_of(&self, direct_cost: &str) -> Result<Vec<LedgerEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM loaded WHERE target = ?1 AND direct_cost = ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target, direct_cost], entry_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Direct costs recorded for the target with no line recorded under them: emptied by
    /// rejections, by removals, or by their lines moving to another direct cost. A job that
    /// still has lines recorded before schema version 2 (their direct cost unknown) is left out:
    /// one of those lines may belong to it.
    pub fn empty_direct_costs(&self) -> Result<Vec<LedgerEntry>> {
        let unknown: std::collections::HashSet<String> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT DISTINCT job FROM loaded WHERE target = ?1 AND kind = 'line' AND direct_cost IS NULL",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![self.target], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| self.err(e))?
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM loaded h WHERE h.target = ?1 AND h.kind = 'header'
                 AND NOT EXISTS (SELECT 1 FROM loaded l WHERE l.target = ?1 AND l.direct_cost = h.origin_id)
                 ORDER BY h.job, h.origin_id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target], entry_of)
            .map_err(|e| self.err(e))?;
        let all: Vec<LedgerEntry> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(all
            .into_iter()
            .filter(|h| !unknown.contains(&h.job))
            .collect())
    }

    /// Record a removal Procore confirmed: its entries move from `loaded` to `removed`, in one
    /// transaction. Entries already gone are skipped (a removal recorded twice is one).
    pub fn confirm_removal(&mut self, removal: &Removal) -> Result<u64> {
        let now = chrono::Utc::now().to_rfc3339();
        let path = self.path.clone();
        let err = |e: rusqlite::Error| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut moved = 0;
        {
            let mut copy = tx
                .prepare_cached(
                    "INSERT INTO removed (target, origin_id, kind, job, procore_id, direct_cost,
                       accounting_date, amount, created_run, removed_run, removed_at)
                     SELECT target, origin_id, kind, job, procore_id, direct_cost, accounting_date,
                       amount, run_id, ?3, ?4 FROM loaded WHERE target = ?1 AND origin_id = ?2",
                )
                .map_err(err)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM loaded WHERE target = ?1 AND origin_id = ?2")
                .map_err(err)?;
            for id in &removal.origin_ids {
                copy.execute(params![self.target, id, removal.run_id, now])
                    .map_err(err)?;
                moved += delete.execute(params![self.target, id]).map_err(err)? as u64;
            }
        }
        tx.commit().map_err(err)?;
        Ok(moved)
    }

    /// Removals recorded for the target, of `kind`, by a run.
    pub fn removed_in_run(&self, run_id: &str, kind: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM removed WHERE target = ?1 AND removed_run = ?2 AND kind = ?3",
                params![self.target, run_id, kind],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The lines removed from the target by these runs: (origin_id, removing run).
    pub fn lines_removed_by(&self, run_ids: &[String]) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT origin_id, removed_run FROM removed \
                 WHERE target = ?1 AND removed_run = ?2 AND kind = 'line'",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for run in run_ids {
            let rows = stmt
                .query_map(params![self.target, run], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                out.push(row.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }

    /// Forget that what was recorded for `origin_ids` is still in Procore as sent (its payload
    /// hash is cleared), so that the next load sends it again: `reconcile --repair` uses it for
    /// lines missing or changed in Procore. The number of entries found.
    pub fn invalidate(&mut self, origin_ids: &[String]) -> Result<u64> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut found = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE loaded SET payload_hash = '' WHERE target = ?1 AND origin_id = ?2",
                )
                .map_err(err)?;
            for id in origin_ids {
                found += stmt.execute(params![self.target, id]).map_err(err)? as u64;
            }
        }
        tx.commit().map_err(err)?;
        Ok(found)
    }

    /// The target entries are scoped to.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// The columns [`entry_of`] reads, in its order.
const ENTRY_COLUMNS: &str =
    "origin_id, kind, job, procore_id, payload_hash, run_id, direct_cost, accounting_date, amount";

fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        origin_id: r.get(0)?,
        kind: r.get(1)?,
        job: r.get(2)?,
        procore_id: r.get(3)?,
        payload_hash: r.get(4)?,
        run_id: r.get(5)?,
        direct_cost: r.get(6)?,
        accounting_date: r.get(7)?,
        amount: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, hash: &str, procore_id: Option<i64>) -> LedgerEntry {
        LedgerEntry {
            origin_id: id.into(),
            kind: "line".into(),
            job: "1001".into(),
            procore_id,
            payload_hash: hash.into(),
            run_id: "r1".into(),
            direct_cost: None,
            accounting_date: None,
            amount: None,
        }
    }

    #[test]
    fn entries_survive_reopening_and_updates_keep_known_procore_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite");
        {
            let mut l = Ledger::open(&path).expect("open");
            l.record(&[entry("a", "h1", Some(5_000_000_000))])
                .expect("record");
        }
        let mut l = Ledger::open(&path).expect("reopen");
        assert_eq!(
            l.get("a").expect("get"),
            Some(entry("a", "h1", Some(5_000_000_000)))
        );
        l.record(&[entry("a", "h2", None)]).expect("update");
        let got = l.get("a").expect("get").expect("present");
        assert_eq!(got.payload_hash, "h2");
        assert_eq!(
            got.procore_id,
            Some(5_000_000_000),
            "an update without id keeps the known id"
        );
        assert_eq!(l.len().expect("len"), 1);
        assert_eq!(l.get("b").expect("get"), None);
    }

    #[test]
    fn what_was_loaded_into_one_target_is_unknown_to_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite");
        let mut a = Ledger::open(&path).expect("open").with_target("sandbox");
        a.record(&[entry("x", "h", Some(1))]).expect("record");
        let b = Ledger::open(&path)
            .expect("open")
            .with_target("https://api.procore.com#42");
        assert_eq!(b.get("x").expect("get"), None);
        assert!(a.get("x").expect("get").is_some());
    }

    #[test]
    fn a_version_1_ledger_is_migrated_in_place_and_keeps_its_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA_V1).expect("v1");
            conn.execute(
                "INSERT INTO loaded VALUES ('t', 'a', 'line', '1001', 7, 'h1', 'r0', 'now')",
                [],
            )
            .expect("insert");
        }
        let mut l = Ledger::open(&path).expect("migrate").with_target("t");
        let got = l.get("a").expect("get").expect("kept");
        assert_eq!((got.procore_id, got.payload_hash.as_str()), (Some(7), "h1"));
        assert_eq!(got.direct_cost, None, "not known before version 2");
        let mut e = entry("a", "h1", None);
        e.direct_cost = Some("dc1".into());
        e.accounting_date = Some("2024-03-01".into());
        l.record(&[e]).expect("backfill");
        let got = l.get("a").expect("get").expect("kept");
        assert_eq!(got.direct_cost.as_deref(), Some("dc1"));
        assert_eq!(got.procore_id, Some(7));
        drop(l);
        let conn = Connection::open(&path).expect("open");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("newer");
        drop(conn);
        let Err(Error::Ledger { message, .. }) = Ledger::open(&path) else {
            panic!("a ledger of a newer jcsync must be refused");
        };
        assert!(message.contains("newer jcsync"), "{message}");
    }

    #[test]
    fn a_confirmed_removal_moves_entries_out_and_empties_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = Ledger::open(&dir.path().join("l.sqlite"))
            .expect("open")
            .with_target("t");
        let mut header = entry("dc1", "hh", Some(1));
        header.kind = "header".into();
        let line = |id: &str| {
            let mut e = entry(id, "h", Some(2));
            e.direct_cost = Some("dc1".into());
            e
        };
        l.record(&[header, line("a"), line("b")]).expect("record");
        assert!(l.empty_direct_costs().expect("empty").is_empty());
        assert_eq!(l.lines_of("dc1").expect("lines").len(), 2);
        let removal = Removal {
            origin_ids: vec!["a".into(), "b".into()],
            run_id: "r2".into(),
        };
        assert_eq!(l.confirm_removal(&removal).expect("confirm"), 2);
        assert_eq!(l.confirm_removal(&removal).expect("twice is once"), 0);
        assert_eq!(l.removed_in_run("r2", "line").expect("removed"), 2);
        assert_eq!(l.get("a").expect("get"), None);
        let empty = l.empty_direct_costs().expect("empty");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].origin_id, "dc1");
        assert_eq!(l.count("line").expect("count"), 0);
        assert_eq!(l.invalidate(&["dc1".into(), "x".into()]).expect("inv"), 1);
        assert_eq!(l.get("dc1").expect("get").expect("h").payload_hash, "");
    }

    #[test]
    fn watermark_only_moves_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(&dir.path().join("l.sqlite")).expect("open");
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("ts");
        assert_eq!(l.watermark("DEMO").expect("w"), None);
        l.advance_watermark("DEMO", t("2024-03-01 10:00:00"), "r1")
            .expect("set");
        l.advance_watermark("DEMO", t("2024-02-01 10:00:00"), "r2")
            .expect("older ignored");
        assert_eq!(
            l.watermark("DEMO").expect("w"),
            Some(t("2024-03-01 10:00:00"))
        );
        l.advance_watermark("DEMO", t("2024-03-02 08:30:00"), "r3")
            .expect("newer");
        assert_eq!(
            l.watermark("DEMO").expect("w"),
            Some(t("2024-03-02 08:30:00"))
        );
    }
}
