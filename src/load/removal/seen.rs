//! The keys of a complete snapshot: every line origin_id (as its hash) and every job a run saw,
//! kept in a temporary on-disk SQLite table so that a snapshot of twenty million rows is checked
//! in flat memory.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rusqlite::{params, Connection};

use crate::error::{Error, Result};

/// The lines and jobs of a snapshot.
pub struct SeenKeys {
    conn: Connection,
    jobs: BTreeSet<String>,
    /// Keys added (a key seen twice counts twice).
    pub keys: u64,
    /// Rows whose natural key could not be read: a snapshot with any is not complete enough to
    /// remove from (one of them may be the row of a line that looks gone).
    pub unreadable: u64,
}

fn err(e: rusqlite::Error) -> Error {
    Error::Ledger {
        path: PathBuf::from("(the snapshot's key set, a temporary file)"),
        message: e.to_string(),
    }
}

/// The 64 high bits of a line hash, as SQLite's integer key. Two lines sharing them (odds of
/// about 1 in 10^12 per line at twenty million lines) would only keep a line that should go,
/// never remove one that should stay.
fn key_of(hash: u128) -> i64 {
    (hash >> 64) as u64 as i64
}

/// The hash inside a line origin_id (`jcsync:{company}:line:{32 hex digits}`).
pub fn hash_of_origin(origin_id: &str) -> Option<u128> {
    let hex = origin_id.rsplit(':').next()?;
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

impl SeenKeys {
    /// An empty set, in a temporary file removed when it is dropped.
    pub fn new() -> Result<SeenKeys> {
        // An empty name: SQLite's private temporary database, on disk.
        let conn = Connection::open("").map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -16384;
             CREATE TABLE seen (h INTEGER PRIMARY KEY);",
        )
        .map_err(err)?;
        Ok(SeenKeys {
            conn,
            jobs: BTreeSet::new(),
            keys: 0,
            unreadable: 0,
        })
    }

    /// Add line hashes (`model::ids::line_hash` digests) and the jobs they belong to.
    pub fn add(&mut self, hashes: &[u128], jobs: impl IntoIterator<Item = String>) -> Result<()> {
        self.jobs.extend(jobs);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO seen (h) VALUES (?1)")
                .map_err(err)?;
            for &h in hashes {
                stmt.execute(params![key_of(h)]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.keys += hashes.len() as u64;
        Ok(())
    }

    /// Add line origin_ids (as a run staged them). One that is not a jcsync line id counts
    /// as unreadable.
    pub fn add_origin_ids<'a>(
        &mut self,
        origin_ids: impl IntoIterator<Item = &'a str>,
        jobs: impl IntoIterator<Item = String>,
    ) -> Result<()> {
        let mut hashes = Vec::new();
        for id in origin_ids {
            match hash_of_origin(id) {
                Some(h) => hashes.push(h),
                None => self.unreadable += 1,
            }
        }
        self.add(&hashes, jobs)
    }

    /// True when the snapshot holds the line `origin_id`. An origin_id that is not a jcsync
    /// line id is said to be held: what cannot be read is never removed.
    pub fn has_line(&self, origin_id: &str) -> Result<bool> {
        let Some(h) = hash_of_origin(origin_id) else {
            return Ok(true);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM seen WHERE h = ?1")
            .map_err(err)?;
        stmt.exists(params![key_of(h)]).map_err(err)
    }

    /// True when the snapshot has at least one transaction of `job`.
    pub fn has_job(&self, job: &str) -> bool {
        self.jobs.contains(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_jobs_are_found_and_unreadable_ids_are_kept() {
        let mut seen = SeenKeys::new().expect("new");
        let a = format!("jcsync:DEMO:line:{:032x}", 0x1234_u128 << 64 | 7);
        let b = format!("jcsync:DEMO:line:{:032x}", 0x9999_u128 << 64);
        seen.add_origin_ids([a.as_str(), "not-an-id"], ["1001".to_string()])
            .expect("add");
        assert_eq!(seen.unreadable, 1);
        assert!(seen.has_line(&a).expect("a"));
        assert!(!seen.has_line(&b).expect("b"));
        assert!(seen.has_line("jcsync:DEMO:line:zz").expect("unreadable"));
        assert!(seen.has_job("1001") && !seen.has_job("1002"));
        assert_eq!(hash_of_origin(&b), Some(0x9999_u128 << 64));
    }
}
