//! The ledger: state that must survive runs, in an embedded SQLite database (WAL mode).
//!
//! - `loaded`: for each origin_id sent to Procore, the hash of the payload sent, the Procore id it
//!   got, and the run that sent it. A re-run sends only what is missing or changed.
//! - `watermarks`: per source scope, the change stamp (Date_Stamp + Time_Stamp) up to which
//!   incremental syncs have been loaded. Moved forward only after a run's load succeeded.

use std::path::{Path, PathBuf};

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
}

/// An open ledger. What was loaded is recorded per target (a Procore company at a URL, or a
/// sandbox state), so switching targets never skips a send.
pub struct Ledger {
    path: PathBuf,
    conn: Connection,
    target: String,
}

const SCHEMA: &str = "
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
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
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
        let conn = Connection::open_in_memory().map_err(|e| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
        })?;
        conn.execute_batch(SCHEMA).map_err(|e| Error::Ledger {
            path: path.clone(),
            message: e.to_string(),
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
                "SELECT origin_id, kind, job, procore_id, payload_hash, run_id FROM loaded WHERE target = ?1 AND origin_id = ?2",
                params![self.target, origin_id],
                |r| {
                    Ok(LedgerEntry {
                        origin_id: r.get(0)?,
                        kind: r.get(1)?,
                        job: r.get(2)?,
                        procore_id: r.get(3)?,
                        payload_hash: r.get(4)?,
                        run_id: r.get(5)?,
                    })
                },
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
                    "INSERT INTO loaded (origin_id, kind, job, procore_id, payload_hash, run_id, updated_at, target)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(target, origin_id) DO UPDATE SET kind = excluded.kind, job = excluded.job,
                       procore_id = COALESCE(excluded.procore_id, loaded.procore_id),
                       payload_hash = excluded.payload_hash, run_id = excluded.run_id,
                       updated_at = excluded.updated_at",
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
                    self.target
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
