//! Ctrl-C (SIGINT) of a real `jcsync sync` or `jcsync replay` in the middle of the load: the
//! process stops promptly with exit status 3 and says it was interrupted; the run directory is
//! complete and records the load as incomplete; what Procore holds is exactly what the run reports
//! as sent; and a replay or a re-run finishes the job with every cost once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{sandbox_pipeline, slow_sandbox, Finished, Jcsync};
use common::*;
use jcsync::sandbox::{FaultConfig, FaultKind, FaultRule, Sandbox, SandboxConfig, SandboxHandle};

/// Exit status of a run whose load did not complete (README, "Exit status").
const EXIT_LOAD_INCOMPLETE: i32 = 3;
/// Exit status of a completed run with quarantined rows (the fixtures quarantine some on purpose).
const EXIT_QUARANTINED: i32 = 2;
/// Longest a command may take to stop after SIGINT.
const PROMPT: Duration = Duration::from_secs(10);

/// Ctrl-C for a running `jcsync` (an inherent impl: `Jcsync` is this test crate's own type).
impl Jcsync {
    /// Wait (at most 30 s) until `ready` holds while the process is still running, then send it
    /// SIGINT, as Ctrl-C in a terminal does.
    fn interrupt_when(mut self, ready: impl Fn() -> bool) -> Jcsync {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stderr = self.stderr.join().unwrap_or_default();
                panic!("jcsync ended ({status}) before it could be interrupted; stderr:\n{stderr}");
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("jcsync never reached the point to interrupt it at; killed it");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a valid signal number on our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "kill(SIGINT) failed");
        self
    }
}

fn pipeline(dir: &Path, sandbox: &SandboxHandle, load: &str) -> PathBuf {
    sandbox_pipeline(dir, sandbox, load)
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The run directories under `runs`, oldest first (run ids sort by time).
fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .expect("runs dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir() && p.join("manifest.json").exists())
        .collect();
    dirs.sort();
    dirs
}

fn u64_at(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(|n| n.as_u64())
        .unwrap_or_else(|| panic!("report has no number at {pointer}: {v}"))
}

/// What an interrupted run must leave: exit status 3 and a message, a complete and verified run
/// directory whose report records the load as incomplete and still reconciles, and a Procore
/// holding exactly the lines the report says were sent. Returns those lines.
fn assert_interrupted(out: &Finished, run_dir: &Path, sandbox: &SandboxHandle) -> u64 {
    assert_eq!(
        out.status.code(),
        Some(EXIT_LOAD_INCOMPLETE),
        "an interrupted load exits 3; stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("interrupted"),
        "stderr says the run was interrupted:\n{}",
        out.stderr
    );
    let report = read_json(&run_dir.join("report.json"));
    let failure = report
        .pointer("/load/failure")
        .and_then(|f| f.as_str())
        .unwrap_or_else(|| panic!("report.json records no load failure: {report}"));
    assert!(failure.contains("interrupted"), "load.failure: {failure}");
    assert!(
        u64_at(&report, "/load/counts/pending") > 0,
        "the interruption left lines to send (else the test interrupted nothing)"
    );
    assert_eq!(report["reconciled"], true, "the counts still add up");
    let inspect = Jcsync::start(&["inspect", run_dir.to_str().expect("utf8")])
        .wait(Duration::from_secs(30), "inspect");
    assert_eq!(
        inspect.status.code(),
        Some(0),
        "every file of the interrupted run verifies against its manifest:\n{}{}",
        inspect.stdout,
        inspect.stderr
    );
    // Settled, not lost: every line Procore holds is one the run recorded as sent.
    let sent = u64_at(&report, "/load/counts/lines_sent");
    assert_eq!(
        sandbox.snapshot().line_items.len() as u64,
        sent,
        "Procore holds exactly the lines the interrupted run reports as sent"
    );
    sent
}

#[test]
fn ctrl_c_stops_a_sync_with_exit_3_and_its_replay_finishes_the_load() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = slow_sandbox(&rt, Duration::from_millis(300));
    let pipeline = pipeline(dir.path(), &sandbox, "max_projects_in_flight = 1\n");

    let sync = Jcsync::start(&["sync", pipeline.to_str().expect("utf8")]);
    let out = sync
        .interrupt_when(|| sandbox_writes(&sandbox.stats()) >= 1)
        .wait(PROMPT, "the interrupted sync");
    let runs = run_dirs(&dir.path().join("runs"));
    assert_eq!(runs.len(), 1, "one complete run directory: {runs:?}");
    let sent_before = assert_interrupted(&out, &runs[0], &sandbox);
    let writes_at_exit = sandbox_writes(&sandbox.stats());

    // Nothing is sent after the process exits, and the replay finishes what is left, sending
    // each remaining line once and nothing that was already sent.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sandbox_writes(&sandbox.stats()), writes_at_exit);
    let replay = Jcsync::start(&["replay", runs[0].to_str().expect("utf8")])
        .wait(Duration::from_secs(40), "the replay");
    // The fixtures' rows are quarantined while staging, not at load: the replay quarantines none.
    assert_eq!(
        replay.status.code(),
        Some(0),
        "the replay completes; stderr:\n{}",
        replay.stderr
    );
    let replay_dir = run_dirs(&dir.path().join("runs"))
        .into_iter()
        .find(|d| d != &runs[0])
        .expect("the replay's run directory");
    let report = read_json(&replay_dir.join("report.json"));
    assert_eq!(report["load"]["failure"], serde_json::Value::Null);
    assert_eq!(
        u64_at(&report, "/load/counts/lines_sent"),
        FIXTURE_LINES as u64 - sent_before,
        "the replay sent exactly the lines the interrupted run had not"
    );
    assert_eq!(u64_at(&report, "/load/counts/lines_unchanged"), sent_before);
    assert_fixture_company_loaded(&sandbox);
    rt.block_on(sandbox.shutdown());
}

#[test]
fn ctrl_c_stops_a_replay_with_exit_3_and_a_rerun_of_the_sync_finishes_the_load() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = slow_sandbox(&rt, Duration::from_millis(300));
    let pipeline = pipeline(dir.path(), &sandbox, "max_projects_in_flight = 1\n");

    let staged = Jcsync::start(&["sync", pipeline.to_str().expect("utf8"), "--stage-only"])
        .wait(Duration::from_secs(40), "the stage-only sync");
    assert_eq!(
        staged.status.code(),
        Some(EXIT_QUARANTINED),
        "{}",
        staged.stderr
    );
    let staged_run = run_dirs(&dir.path().join("runs"))
        .pop()
        .expect("the staged run");
    assert_eq!(
        sandbox_writes(&sandbox.stats()),
        0,
        "stage only sends nothing"
    );

    let out = Jcsync::start(&["replay", staged_run.to_str().expect("utf8")])
        .interrupt_when(|| sandbox_writes(&sandbox.stats()) >= 1)
        .wait(PROMPT, "the interrupted replay");
    let replay_dir = run_dirs(&dir.path().join("runs"))
        .into_iter()
        .find(|d| d != &staged_run)
        .expect("the interrupted replay's run directory");
    assert_interrupted(&out, &replay_dir, &sandbox);

    let rerun = Jcsync::start(&["sync", pipeline.to_str().expect("utf8")])
        .wait(Duration::from_secs(40), "the re-run");
    assert_eq!(
        rerun.status.code(),
        Some(EXIT_QUARANTINED),
        "the re-run completes; stderr:\n{}",
        rerun.stderr
    );
    assert_fixture_company_loaded(&sandbox);
    rt.block_on(sandbox.shutdown());
}

#[test]
fn ctrl_c_while_a_request_is_being_retried_stops_promptly() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // Every write gets 503 (Retry-After: 1): the first write is retried for as long as the
    // pipeline allows, far longer than a user waits after Ctrl-C.
    let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
    config.faults = FaultConfig {
        rules: vec![FaultRule {
            kind: FaultKind::ServiceUnavailable,
            probability: 1.0,
            writes_only: true,
        }],
        ..FaultConfig::default()
    };
    let sandbox = rt
        .block_on(Sandbox::start(config))
        .expect("the sandbox must start");
    let pipeline = pipeline(
        dir.path(),
        &sandbox,
        "max_projects_in_flight = 1\nmax_retry_secs = 120\n",
    );

    let started = Instant::now();
    let out = Jcsync::start(&["sync", pipeline.to_str().expect("utf8")])
        .interrupt_when(|| sandbox.stats().faults.get("503").copied().unwrap_or(0) >= 2)
        .wait(PROMPT, "the sync interrupted while retrying");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(EXIT_LOAD_INCOMPLETE),
        "stderr:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    let runs = run_dirs(&dir.path().join("runs"));
    assert_eq!(runs.len(), 1, "one complete run directory: {runs:?}");
    let report = read_json(&runs[0].join("report.json"));
    assert!(
        report["load"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains("interrupted")),
        "load.failure names the interruption, not Procore: {}",
        report["load"]["failure"]
    );
    assert_eq!(u64_at(&report, "/load/counts/lines_sent"), 0);
    assert_eq!(
        u64_at(&report, "/load/counts/pending"),
        u64_at(&report, "/counts/planned"),
        "every planned line is left for the next run"
    );
    assert_eq!(report["reconciled"], true);
    rt.block_on(sandbox.shutdown());
}

/// Ctrl-C of a run that sends nothing (`--stage-only`, `--dry-run`) stops its reading: exit 3
/// within seconds, a message that says so, and a run directory left unfinished (failed.json, no
/// manifest), so that it can never be replayed as if it were complete.
#[test]
fn ctrl_c_stops_a_stage_only_or_dry_run_where_it_is() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("company");
    let generated = Jcsync::start(&[
        "generate",
        "--transactions",
        "20000",
        "--jobs",
        "5",
        "--seed",
        "1",
        "--out",
        data.to_str().expect("utf8"),
        "--format",
        "csv",
    ])
    .wait(Duration::from_secs(60), "generate");
    assert_eq!(generated.status.code(), Some(0), "{}", generated.stderr);
    for mode in ["--stage-only", "--dry-run"] {
        let runs = tmp.path().join(format!("runs{mode}"));
        let toml = tmp.path().join(format!("p{mode}.toml"));
        // One row per batch: the 20,000 rows take seconds to go through, long enough to be
        // interrupted on the way.
        std::fs::write(
            &toml,
            format!(
                "company = \"GEN\"\n[source]\nkind = \"files\"\ndir = {:?}\nformat = \"csv\"\n\
                 [stage]\ndir = {:?}\n[target]\nkind = \"dry-run\"\n[pipeline]\nbatch_rows = 1\n",
                data.display().to_string(),
                runs.display().to_string(),
            ),
        )
        .expect("pipeline file");
        let started = Instant::now();
        let out = Jcsync::start(&["sync", toml.to_str().expect("utf8"), mode])
            .interrupt_when(|| std::fs::read_dir(&runs).is_ok_and(|mut d| d.next().is_some()))
            .wait(PROMPT, mode);
        assert_eq!(
            out.status.code(),
            Some(EXIT_LOAD_INCOMPLETE),
            "{mode}: an interrupted run exits 3; stderr:\n{}",
            out.stderr
        );
        assert!(started.elapsed() < PROMPT, "{mode}: stopped promptly");
        assert!(
            out.stderr.contains("interrupted (Ctrl-C) after")
                && out.stderr.contains("nothing was sent"),
            "{mode}: stderr says the run was interrupted:\n{}",
            out.stderr
        );
        let dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
            .expect("runs dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(dirs.len(), 1, "{mode}: one run directory");
        assert!(
            !dirs[0].join("manifest.json").exists(),
            "{mode}: an interrupted run has no manifest"
        );
        let failed = read_json(&dirs[0].join("failed.json"));
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("interrupted") && !error.contains("after 20000 "),
            "{mode}: failed.json says it was interrupted before the end: {failed}"
        );
    }
}
