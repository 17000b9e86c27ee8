//! A Procore that is down when a real `jcsync sync` starts (answering 503 to every API call, or
//! not listening at all) does not keep the snapshot from being staged: the run is complete and
//! verifiable, the load gives up with exit status 3 within the retry budget, and a later replay
//! or sync loads it exactly. Credentials Procore refuses (401, 403 at login) still stop the run
//! at once, before Sage is read, naming the status and never the secret. Everything on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jcsync::sandbox::{FaultConfig, FaultKind, Sandbox, SandboxConfig};

/// The fixtures plan this many lines (`fixtures/expected/`).
const LINES: u64 = FIXTURE_LINES as u64;
/// README, "Exit status".
const EXIT_FAILED: i32 = 1;
const EXIT_QUARANTINED: i32 = 2;
const EXIT_LOAD_INCOMPLETE: i32 = 3;
/// The company of `fixtures/procore`.
const DEMO_COMPANY: i64 = 4_294_967_396;
/// A short retry budget, so that giving up takes seconds.
const LOAD: &str = "max_retry_secs = 2\nbackoff_base_ms = 50\nbackoff_cap_ms = 400\n";
/// A sync against a Procore that is down ends within this (the 2 s budget plus staging).
const BOUNDED: Duration = Duration::from_secs(30);

/// Run `jcsync` to the end (at most `limit`, else the test fails) with the given client secret.
fn jcsync(args: &[&str], secret: &str, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(args)
        .env(CLIENT_ID_ENV, "demo-client")
        .env(CLIENT_SECRET_ENV, secret)
        .env("JCSYNC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jcsync");
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "jcsync {args:?} still running after {limit:?}, killed it; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (child.wait_with_output().expect("output"), took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn seed() -> SandboxConfig {
    SandboxConfig::from_dir(repo().join("fixtures/procore"))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every directory under `runs` (complete or not), sorted; the ledger and spill files are not.
fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(runs) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

fn u64_at(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(|n| n.as_u64())
        .unwrap_or_else(|| panic!("report has no number at {pointer}: {v}"))
}

/// The sync against a Procore that is down: exit 3 within the bound, and one complete run
/// that `jcsync inspect` verifies, whose report records every line as pending and the load's
/// failure. Returns the run directory.
fn assert_staged_not_loaded(out: &Output, took: Duration, runs: &Path, why: &str) -> PathBuf {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(EXIT_LOAD_INCOMPLETE),
        "the load gives up with exit 3; stderr:\n{err}"
    );
    assert!(took < BOUNDED, "gave up after {took:?}");
    let dirs = run_dirs(runs);
    assert_eq!(dirs.len(), 1, "one run directory: {dirs:?}");
    let run = dirs[0].clone();
    assert!(
        !run.join("failed.json").exists(),
        "the run is complete, not failed"
    );
    let (inspect, _) = jcsync(
        &["inspect", run.to_str().expect("utf8")],
        "",
        Duration::from_secs(30),
    );
    assert_eq!(
        inspect.status.code(),
        Some(0),
        "every staged file verifies against the manifest:\n{}{}",
        String::from_utf8_lossy(&inspect.stdout),
        stderr(&inspect)
    );
    let manifest = read_json(&run.join("manifest.json"));
    assert_eq!(
        u64_at(&manifest, "/planned"),
        LINES,
        "the whole snapshot is staged and planned: {manifest}"
    );
    let report = read_json(&run.join("report.json"));
    let failure = report
        .pointer("/load/failure")
        .and_then(|f| f.as_str())
        .unwrap_or_else(|| panic!("report.json records no load failure: {report}"));
    assert!(
        failure.contains(why),
        "load.failure names {why:?}: {failure}"
    );
    assert_eq!(u64_at(&report, "/load/counts/pending"), LINES);
    assert_eq!(u64_at(&report, "/load/counts/lines_sent"), 0);
    assert_eq!(report["reconciled"], true, "the counts add up: {report}");
    run
}

#[test]
fn procore_answering_503_at_start_stages_the_run_and_a_replay_loads_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut down = seed();
    down.faults = FaultConfig::always(FaultKind::ServiceUnavailable);
    let down = rt.block_on(Sandbox::start(down)).expect("sandbox");
    let sage = repo().join("fixtures/sage");
    let pipeline = write_load_pipeline(dir.path(), &sage, down.url(), down.company_id(), LOAD);
    let p = pipeline.to_str().expect("utf8");

    let (out, took) = jcsync(&["sync", p], "demo-secret", BOUNDED);
    let run = assert_staged_not_loaded(&out, took, &dir.path().join("runs"), "HTTP 503");
    assert_eq!(sandbox_writes(&down.stats()), 0, "nothing was written");
    rt.block_on(down.shutdown());

    // Procore is back (a fresh one, same company): the replay loads the staged run exactly.
    let up = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    write_load_pipeline(dir.path(), &sage, up.url(), up.company_id(), LOAD);
    let (replay, _) = jcsync(
        &["replay", run.to_str().expect("utf8"), "--pipeline", p],
        "demo-secret",
        Duration::from_secs(60),
    );
    assert_eq!(
        replay.status.code(),
        Some(0),
        "the replay loads everything; stderr:\n{}",
        stderr(&replay)
    );
    assert_fixture_company_loaded(&up);
    rt.block_on(up.shutdown());
}

#[test]
fn unreachable_procore_at_start_stages_the_run_and_a_later_sync_loads_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: every connection is refused, the login's included.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = format!("http://{closed}");
    let sage = repo().join("fixtures/sage");
    let pipeline = write_load_pipeline(dir.path(), &sage, &url, DEMO_COMPANY, LOAD);
    let p = pipeline.to_str().expect("utf8");

    let (out, took) = jcsync(&["sync", p], "demo-secret", BOUNDED);
    assert!(
        stderr(&out).contains("connection"),
        "the log says Procore could not be reached:\n{}",
        stderr(&out)
    );
    assert_staged_not_loaded(&out, took, &dir.path().join("runs"), "still failing");

    let up = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    write_load_pipeline(dir.path(), &sage, up.url(), up.company_id(), LOAD);
    let (sync, _) = jcsync(&["sync", p], "demo-secret", Duration::from_secs(60));
    assert_eq!(
        sync.status.code(),
        Some(EXIT_QUARANTINED),
        "the next sync completes (the fixtures quarantine rows on purpose); stderr:\n{}",
        stderr(&sync)
    );
    assert_fixture_company_loaded(&up);
    rt.block_on(up.shutdown());
}

/// A sync whose login is refused: exit 1 at once, the status named, the secret not, and no run
/// directory. The Sage source holds no table at all: had the sync read it before logging in, it
/// would have stopped on the missing table instead.
fn assert_refused_before_sage(dir: &Path, url: &str, company: i64, status: &str) {
    let empty_sage = dir.join("no-sage-tables");
    std::fs::create_dir_all(&empty_sage).expect("mkdir");
    let pipeline = write_load_pipeline(dir, &empty_sage, url, company, LOAD);
    let secret = "not-the-demo-secret-8f3a";
    let (out, took) = jcsync(&["sync", pipeline.to_str().expect("utf8")], secret, BOUNDED);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_FAILED), "stderr:\n{err}");
    assert!(
        took < Duration::from_secs(10),
        "failed fast, not after {took:?}"
    );
    assert!(
        err.contains(&format!("HTTP {status}")) && err.contains("credentials"),
        "the message names the refusal and its status:\n{err}"
    );
    assert!(
        !err.contains("source table"),
        "stopped before reading Sage:\n{err}"
    );
    assert!(!err.contains(secret), "the secret never shows:\n{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "the secret never shows"
    );
    assert!(
        run_dirs(&dir.join("runs")).is_empty(),
        "no run directory: nothing was staged"
    );
}

#[test]
fn credentials_refused_with_401_fail_fast_before_sage_is_read() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    assert_refused_before_sage(dir.path(), sandbox.url(), sandbox.company_id(), "401");
    let logins: u64 = sandbox
        .stats()
        .requests
        .get("POST /oauth/token")
        .map(|by| by.values().sum())
        .unwrap_or(0);
    assert_eq!(logins, 1, "a refusal is final: one login attempt, no retry");
    assert_eq!(
        sandbox
            .stats()
            .requests
            .keys()
            .filter(|r| r.contains("/rest/"))
            .count(),
        0,
        "no API call after a refused login"
    );
    rt.block_on(sandbox.shutdown());
}

#[test]
fn credentials_refused_with_403_fail_fast_before_sage_is_read() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // A login that answers 403 to everything, as Procore does for an app the company disabled.
    let requests = Arc::new(AtomicU64::new(0));
    let url = {
        let requests = requests.clone();
        let app = axum::Router::new().fallback(move || {
            let requests = requests.clone();
            async move {
                requests.fetch_add(1, Ordering::Relaxed);
                (
                    axum::http::StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!({"error": "access_denied"})),
                )
            }
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("the 403 server must start");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    };
    assert_refused_before_sage(dir.path(), &url, DEMO_COMPANY, "403");
    assert_eq!(
        requests.load(Ordering::Relaxed),
        1,
        "one login attempt, nothing after it"
    );
}
