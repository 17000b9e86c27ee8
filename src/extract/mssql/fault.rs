//! Test hook: make a partition fail once after it has read a number of rows, as a dropped
//! connection would. Keyed by database name so parallel tests do not see each other's faults.
//!
//! Compiled only with the `fault-injection` feature (off by default, so never in a release
//! build); the tests get it through the crate's dev-dependency on itself (see Cargo.toml).

use std::sync::Mutex;

static FAULTS: Mutex<Vec<(String, String, u64)>> = Mutex::new(Vec::new());

/// The next read of Job `job` (trimmed text) in `database` fails after `after_rows` rows.
#[doc(hidden)]
pub fn fail_once(database: &str, job: &str, after_rows: u64) {
    if let Ok(mut f) = FAULTS.lock() {
        f.push((database.to_string(), job.to_string(), after_rows));
    }
}

/// Whether the read of `job` must fail now (the fault is used up).
pub(super) fn should_fail(database: &str, job: &str, rows: u64) -> bool {
    let Ok(mut f) = FAULTS.lock() else {
        return false;
    };
    if f.is_empty() {
        return false;
    }
    match f
        .iter()
        .position(|(d, j, n)| d == database && j == job && *n == rows)
    {
        Some(i) => {
            f.remove(i);
            true
        }
        None => false,
    }
}
