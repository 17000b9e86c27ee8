//! One sync or replay at a time per ledger: [`LedgerLock`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

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

/// This machine's name, for the lock file and the run history.
pub fn host_name() -> String {
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
