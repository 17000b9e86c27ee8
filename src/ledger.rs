//! The ledger: state that must survive runs, in an embedded SQLite database (WAL mode).
//!
//! - `loaded`: for each origin_id sent to Procore, the hash of the payload sent, the Procore id it
//!   got, and the run that sent it. A re-run sends only what is missing or changed.
//! - `watermarks`: per source scope, the change stamp (Date_Stamp + Time_Stamp) up to which
//!   incremental syncs have been loaded. Moved forward only after a run's load succeeded.
//!
//! One sync or replay at a time writes a ledger: [`LedgerLock`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// Who holds a ledger's lock, as the holder wrote it into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// When it took the lock (RFC 3339, UTC).
    pub started_at: String,
    /// What it runs, e.g. `sync pipelines/demo.toml`.
    pub command: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`jcsync {}`, pid {} on host {}, started {}",
            self.command, self.pid, self.host, self.started_at
        )
    }
}

/// How long a run that finds the ledger locked waits for the holder's name to appear in the
/// lock file (the holder writes it right after locking).
const HOLDER_NAME_WAIT: Duration = Duration::from_secs(1);

/// One sync or replay at a time per ledger: an exclusive OS advisory lock on `<ledger>.lock`
/// (`flock(2)` on Unix, `LockFileEx` on Windows, through std's `File::try_lock`), held for the
/// whole run. The kernel releases it when its process ends, however it ends (exit, `kill -9`,
/// power loss), so a lock is never waited on: either its holder is alive, or the lock is free.
/// The holder writes its pid, host and start time into the file, for the message of the run
/// it turns away, and empties the file when it is done: a file still naming a holder when the
/// lock is free was left by a process that died holding it (stale), and is taken over.
pub struct LedgerLock {
    file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// The lock file of a ledger: `ledger.sqlite` → `ledger.sqlite.lock`, beside it.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = ledger
            .file_name()
            .map(std::ffi::OsString::from)
            .unwrap_or_else(|| "ledger".into());
        name.push(".lock");
        ledger.with_file_name(name)
    }

    /// Take the lock of `ledger` for `command`, or fail at once with [`Error::LedgerBusy`]
    /// naming the run that holds it. Blocking (file I/O, and up to a second's wait for the
    /// holder's name).
    pub fn acquire(ledger: &Path, command: &str) -> Result<LedgerLock> {
        let path = Self::path_for(ledger);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // Never truncated on open: the file may name a live holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let started = Instant::now();
                let holder = loop {
                    match read_holder(&mut file) {
                        Some(h) => break h.to_string(),
                        None if started.elapsed() < HOLDER_NAME_WAIT => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        None => break "a process that did not write its name".to_string(),
                    }
                };
                return Err(Error::LedgerBusy {
                    path: ledger.to_path_buf(),
                    lock: path,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::Ledger {
                    path,
                    message: format!("cannot lock the file: {e}"),
                })
            }
        }
        if let Some(stale) = read_holder(&mut file) {
            tracing::warn!(
                "ledger lock {}: taken over from {stale}, which ended without releasing it (killed, or the machine stopped)",
                path.display()
            );
        }
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        };
        let text = serde_json::to_string(&me)?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&path, e))?;
        Ok(LedgerLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LedgerLock {
    fn drop(&mut self) {
        // Emptied before the lock goes: a name found in a free lock file is a stale holder's.
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!("ledger lock {}: cannot empty it: {e}", self.path.display());
        }
        let _ = self.file.unlock();
    }
}

/// The holder named in a lock file, if it names one (the file is empty when no holder or a
/// new holder has not written yet).
fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// This machine's name, for the lock file.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_else(|_| "unknown".into())
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

    #[test]
    fn a_second_lock_of_one_ledger_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("ledger.sqlite");
        let held = LedgerLock::acquire(&ledger, "sync a.toml").expect("first lock");
        assert_eq!(held.path(), dir.path().join("ledger.sqlite.lock"));
        let Err(Error::LedgerBusy { holder, lock, .. }) = LedgerLock::acquire(&ledger, "replay r")
        else {
            panic!("a second lock of the same ledger must be refused");
        };
        assert_eq!(lock, held.path());
        let pid = std::process::id().to_string();
        assert!(
            holder.contains("sync a.toml") && holder.contains(&pid) && holder.contains("host "),
            "{holder}"
        );
        drop(held);
        let again = LedgerLock::acquire(&ledger, "replay r").expect("free after release");
        drop(again);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ledger.sqlite.lock")).expect("read"),
            "",
            "a released lock file names no holder"
        );
    }

    #[test]
    fn a_lock_file_left_naming_a_holder_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("ledger.sqlite");
        let stale = LockHolder {
            pid: 999_999,
            host: "elsewhere".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "sync old.toml".into(),
        };
        std::fs::write(
            LedgerLock::path_for(&ledger),
            serde_json::to_string(&stale).expect("json"),
        )
        .expect("write");
        let lock = LedgerLock::acquire(&ledger, "sync new.toml").expect("taken over");
        let mut file = File::open(lock.path()).expect("open");
        let now = read_holder(&mut file).expect("the new holder is named");
        assert_eq!(now.pid, std::process::id());
        assert_eq!(now.command, "sync new.toml");
    }
}
