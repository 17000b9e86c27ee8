//! One sync or replay at a time per ledger, with real `jcsync` processes against one sandbox on
//! 127.0.0.1: two syncs of one pipeline started together (one runs, the other refuses at once
//! with exit status 4 naming the one running; a replay is refused the same way; a stage-only
//! sync runs beside it), and a lock left by a `kill -9`ed holder taken over by the next sync.
//! Procore ends exactly right either way.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{sandbox_pipeline, slow_sandbox, Finished, Jcsync};
use common::*;
use jcsync::sandbox::SandboxHandle;

/// README, "Exit status".
const EXIT_QUARANTINED: i32 = 2;
const EXIT_LEDGER_BUSY: i32 = 4;
/// A run turned away by the lock stops at once: well within this.
const AT_ONCE: Duration = Duration::from_secs(5);

fn pipeline(dir: &Path, sandbox: &SandboxHandle) -> PathBuf {
    sandbox_pipeline(dir, sandbox, "max_projects_in_flight = 1\n")
}

/// Run directories under `runs` (complete or not), sorted.
fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(runs) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

/// This machine's name, as the lock file records it.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname failed");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A refusal names the running one: its command, pid, host and start time.
fn assert_names_holder(refused: &Finished, holder_pid: u32, command: &str) {
    let err = &refused.stderr;
    assert_eq!(
        refused.status.code(),
        Some(EXIT_LEDGER_BUSY),
        "a run that finds the ledger busy exits 4; stderr:\n{err}"
    );
    assert!(
        refused.took < AT_ONCE,
        "refused at once, not after {:?}",
        refused.took
    );
    for expected in [
        format!("pid {holder_pid} "),
        format!("on host {}", host_name()),
        command.to_string(),
        "in use".to_string(),
    ] {
        assert!(err.contains(&expected), "stderr names {expected:?}:\n{err}");
    }
    // e.g. `started 2026-12-01T09:00:00Z`
    let started = err
        .split("started ")
        .nth(1)
        .and_then(|rest| rest.get(..20))
        .unwrap_or_else(|| panic!("stderr names a start time:\n{err}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "the start time {started:?} is an RFC 3339 time:\n{err}"
    );
}

/// After the last run: every planned direct cost and line once, totals to the cent, and no
/// write was ever refused as concurrent.
fn assert_complete(sandbox: &SandboxHandle) {
    assert_fixture_company_loaded(sandbox);
    let conflicts: u64 = sandbox
        .stats()
        .requests
        .values()
        .filter_map(|by| by.get("409"))
        .sum();
    assert_eq!(conflicts, 0, "no write met a concurrent one");
}

#[test]
fn two_syncs_started_together_one_runs_and_the_other_refuses_naming_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // ~6 writes of 1.2 s: the load outlasts the refused sync, the stage-only run and the replay.
    let sandbox = slow_sandbox(&rt, Duration::from_millis(1200));
    let pipeline = pipeline(dir.path(), &sandbox);
    let p = pipeline.to_str().expect("utf8");
    let runs = dir.path().join("runs");

    let mut a = Jcsync::start(&["sync", p]);
    let mut b = Jcsync::start(&["sync", p]);
    // The first to exit is the refused one.
    let deadline = Instant::now() + AT_ONCE;
    let (refused, mut runner) = loop {
        match (a.running(), b.running()) {
            (false, _) => break (a, b),
            (_, false) => break (b, a),
            _ if Instant::now() >= deadline => {
                let _ = a.child.kill();
                let _ = b.child.kill();
                panic!("neither sync stopped within {AT_ONCE:?}: no run was refused");
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let refused = refused.wait(AT_ONCE, "the refused sync");
    assert_names_holder(&refused, runner.pid(), &format!("sync {p}"));
    assert!(refused.stdout.is_empty(), "no summary: {}", refused.stdout);
    assert!(runner.running(), "the runner is still loading");

    // A stage-only sync sends nothing and writes no ledger: it runs beside the load.
    let staged =
        Jcsync::start(&["sync", p, "--stage-only"]).wait(Duration::from_secs(30), "stage-only");
    assert_eq!(
        staged.status.code(),
        Some(EXIT_QUARANTINED),
        "stage-only beside a sync completes; stderr:\n{}",
        staged.stderr
    );
    let stage_only_run = run_dirs(&runs)
        .into_iter()
        .find(|d| d.join("manifest.json").exists())
        .expect("the stage-only run is complete");

    // A replay is refused like a sync while the load runs.
    let replay = Jcsync::start(&[
        "replay",
        stage_only_run.to_str().expect("utf8"),
        "--pipeline",
        p,
    ])
    .wait(AT_ONCE, "the refused replay");
    assert!(
        runner.running(),
        "the runner outlasted the stage-only run and the replay (else raise the write latency)"
    );
    assert_names_holder(&replay, runner.pid(), &format!("sync {p}"));

    let done = runner.wait(Duration::from_secs(90), "the running sync");
    assert_eq!(
        done.status.code(),
        Some(EXIT_QUARANTINED),
        "the sync that ran completes (the fixtures quarantine rows on purpose); stderr:\n{}",
        done.stderr
    );
    assert_eq!(
        run_dirs(&runs).len(),
        2,
        "the runner's and the stage-only run: the refused ones stopped before reading Sage"
    );
    assert_complete(&sandbox);
    let lock = runs.join("ledger.sqlite.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock file"),
        "",
        "the finished sync released the lock"
    );
    rt.block_on(sandbox.shutdown());
}

#[test]
fn a_lock_left_by_a_killed_sync_is_taken_over_by_the_next() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = slow_sandbox(&rt, Duration::from_millis(400));
    let pipeline = pipeline(dir.path(), &sandbox);
    let p = pipeline.to_str().expect("utf8");
    let lock = dir.path().join("runs/ledger.sqlite.lock");

    let mut first = Jcsync::start(&["sync", p]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox_writes(&sandbox.stats()) == 0 {
        assert!(
            first.running(),
            "the first sync ended before it loaded anything"
        );
        assert!(
            Instant::now() < deadline,
            "the first sync never wrote to Procore"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let holder: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&lock).expect("the loading sync holds a lock file"),
    )
    .expect("the lock file names its holder");
    assert_eq!(holder["pid"], first.pid(), "{holder}");
    let killed_pid = first.pid();
    first.child.kill().expect("SIGKILL"); // kill -9: no cleanup runs
    let killed = first.wait(Duration::from_secs(10), "the killed sync");
    assert_eq!(killed.status.code(), None, "ended by a signal");
    let stale = std::fs::read_to_string(&lock).expect("lock file");
    assert!(
        stale.contains(&format!("\"pid\":{killed_pid}")),
        "the killed holder is still named: {stale}"
    );

    // The killed one's last write settles in the sandbox before the next sync starts.
    std::thread::sleep(Duration::from_secs(1));
    // Taken over at once: not refused, not waited on.
    let next = Jcsync::start(&["sync", p]).wait(Duration::from_secs(90), "the next sync");
    assert_eq!(
        next.status.code(),
        Some(EXIT_QUARANTINED),
        "the next sync takes the stale lock over and finishes the job; stderr:\n{}",
        next.stderr
    );
    assert!(
        next.stderr.contains("taken over") && next.stderr.contains(&format!("pid {killed_pid} ")),
        "the takeover is logged, naming the killed holder:\n{}",
        next.stderr
    );
    assert_complete(&sandbox);
    assert_eq!(std::fs::read_to_string(&lock).expect("lock file"), "");
    rt.block_on(sandbox.shutdown());
}
