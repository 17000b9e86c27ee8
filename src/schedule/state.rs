//! What `jcsync status` knows of a running `sync --every`: the process holds an exclusive
//! advisory lock on `<ledger>.every.lock` for its whole life (so a second one of the same
//! ledger is refused, naming it) and keeps `<ledger>.schedule.json` up to date. The lock, not
//! the file, says whether such a process is alive: the kernel releases it however the process
//! ends, so a file left by a killed one is never believed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a lock found held waits for its holder's name (written right after locking; a
/// `scheduled` probe holds the lock for a moment and writes none).
const HOLDER_NAME_WAIT: Duration = Duration::from_secs(1);

/// The schedule of a running `sync --every`, as `<ledger>.schedule.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub pid: u32,
    pub host: String,
    /// The interval, as `--every` writes it (`30m`).
    pub every: String,
    /// The pipeline file it runs.
    pub pipeline: String,
    /// When the process started (RFC 3339, UTC).
    pub started_at: String,
    /// When the next run is due (RFC 3339, UTC; now, for a catch-up).
    pub next_run_at: String,
    /// The run in progress started then, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<String>,
    /// The latest run that has an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
}

/// Who holds an every-lock, as it wrote it into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EveryHolder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub command: String,
}

impl std::fmt::Display for EveryHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`jcsync {}`, pid {} on host {}, started {}",
            self.command, self.pid, self.host, self.started_at
        )
    }
}

/// Why an every-lock was not taken.
#[derive(Debug)]
pub enum LockRefused {
    /// Another `sync --every` runs this ledger.
    Busy { holder: String, lock: PathBuf },
    /// The lock file cannot be opened or locked.
    Failed(Error),
}

impl std::fmt::Display for LockRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockRefused::Busy { holder, lock } => write!(
                f,
                "another `sync --every` already runs this ledger: {holder}; one schedule per ledger, so this one stops (lock file {})",
                lock.display()
            ),
            LockRefused::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// `ledger.sqlite` → `ledger.sqlite<suffix>`, beside it.
fn beside(ledger: &Path, suffix: &str) -> PathBuf {
    let mut name = ledger
        .file_name()
        .map(std::ffi::OsString::from)
        .unwrap_or_else(|| "ledger".into());
    name.push(suffix);
    ledger.with_file_name(name)
}

/// The lock file of a ledger's schedule.
pub fn lock_path(ledger: &Path) -> PathBuf {
    beside(ledger, ".every.lock")
}

/// The schedule file of a ledger.
pub fn schedule_path(ledger: &Path) -> PathBuf {
    beside(ledger, ".schedule.json")
}

/// The lock of a running `sync --every`, and its schedule file.
pub struct EveryLock {
    file: File,
    lock: PathBuf,
    schedule: PathBuf,
}

impl EveryLock {
    /// Take the every-lock of `ledger` for `holder`, or be refused at once naming the process
    /// that holds it.
    pub fn acquire(ledger: &Path, holder: &EveryHolder) -> std::result::Result<Self, LockRefused> {
        let lock = lock_path(ledger);
        let failed = |e: std::io::Error, p: &Path| LockRefused::Failed(Error::io(p, e));
        if let Some(parent) = lock.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| failed(e, parent))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(|e| failed(e, &lock))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if let Some(h) = read_holder(&mut file) {
                        return Err(LockRefused::Busy {
                            holder: h.to_string(),
                            lock,
                        });
                    }
                    if started.elapsed() >= HOLDER_NAME_WAIT {
                        return Err(LockRefused::Busy {
                            holder: "a process that did not write its name".into(),
                            lock,
                        });
                    }
                    // A holder that has not written its name yet, or a `scheduled` probe.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::Error(e)) => return Err(failed(e, &lock)),
            }
        }
        let text = serde_json::to_string(holder).map_err(|e| LockRefused::Failed(e.into()))?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| failed(e, &lock))?;
        Ok(EveryLock {
            file,
            lock,
            schedule: schedule_path(ledger),
        })
    }

    /// Write the schedule file (whole, through a rename: a reader never sees half of it).
    pub fn write(&self, info: &ScheduleInfo) -> Result<()> {
        let tmp = beside(&self.schedule, ".tmp");
        let text = serde_json::to_string_pretty(info)?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.schedule).map_err(|e| Error::io(&self.schedule, e))
    }
}

impl Drop for EveryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.schedule);
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!("{}: cannot empty it: {e}", self.lock.display());
        }
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<EveryHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The schedule of the `sync --every` process running on `ledger`, or None when none is
/// (its lock is free: no such process is alive, whatever files were left behind).
pub fn scheduled(ledger: &Path) -> Option<ScheduleInfo> {
    let file = File::open(lock_path(ledger)).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => {
            // The holder writes its schedule right after locking.
            let path = schedule_path(ledger);
            let started = Instant::now();
            loop {
                let info = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                if info.is_some() || started.elapsed() >= HOLDER_NAME_WAIT {
                    return info;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(command: &str) -> EveryHolder {
        EveryHolder {
            pid: std::process::id(),
            host: "here".into(),
            started_at: "2026-12-01T18:00:00Z".into(),
            command: command.into(),
        }
    }

    fn info(next: &str) -> ScheduleInfo {
        ScheduleInfo {
            pid: std::process::id(),
            host: "here".into(),
            every: "30m".into(),
            pipeline: "p.toml".into(),
            started_at: "2026-12-01T18:00:00Z".into(),
            next_run_at: next.into(),
            running_since: None,
            last_run_id: Some("r1".into()),
        }
    }

    #[test]
    fn the_schedule_is_seen_only_while_its_lock_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("ledger.sqlite");
        assert_eq!(scheduled(&ledger), None, "no process ever ran");
        let lock = EveryLock::acquire(&ledger, &holder("sync --every 30m p.toml")).expect("lock");
        lock.write(&info("2026-12-01T18:30:00Z")).expect("write");
        assert_eq!(scheduled(&ledger), Some(info("2026-12-01T18:30:00Z")));
        lock.write(&info("2026-12-01T19:00:00Z")).expect("write");
        assert_eq!(
            scheduled(&ledger).map(|i| i.next_run_at).as_deref(),
            Some("2026-12-01T19:00:00Z")
        );
        // The probe took nothing: the lock is still held.
        let Err(LockRefused::Busy { holder: named, .. }) =
            EveryLock::acquire(&ledger, &holder("sync --every 5m q.toml"))
        else {
            panic!("a second schedule of one ledger must be refused");
        };
        assert!(named.contains("sync --every 30m p.toml") && named.contains("host here"));
        drop(lock);
        assert_eq!(scheduled(&ledger), None, "released with its process");
        assert!(
            !schedule_path(&ledger).exists(),
            "the schedule file goes too"
        );
    }

    #[test]
    fn a_schedule_file_left_by_a_killed_process_is_not_believed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("ledger.sqlite");
        std::fs::write(
            lock_path(&ledger),
            serde_json::to_string(&holder("x")).expect("json"),
        )
        .expect("write");
        std::fs::write(
            schedule_path(&ledger),
            serde_json::to_string(&info("2026-12-01T18:30:00Z")).expect("json"),
        )
        .expect("write");
        assert_eq!(scheduled(&ledger), None);
        let lock = EveryLock::acquire(&ledger, &holder("sync --every 1h p.toml"));
        assert!(lock.is_ok(), "a stale lock file is taken over");
    }
}
