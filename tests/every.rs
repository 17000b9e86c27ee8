//! `jcsync sync PIPELINE --every DURATION` as a real process: runs on a grid of slots, survives
//! a Procore that goes down between two slots (the failed slot is told to the webhook, the
//! next ones retry and recover once Procore is back), one catch-up after a run longer than the
//! interval, one schedule per ledger (a second exits 4 naming the first), `jcsync status`'s
//! view of it while it runs, and SIGTERM: exit 0, Procore exact; a second SIGTERM mid-run exits
//! 143 at once, the cut run shows as crashed, the next sync ends exact. Everything on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{sandbox_pipeline, slow_sandbox};
use common::webhook::{Answer, Webhook};
use common::*;
use jcsync::sandbox::{Sandbox, SandboxConfig};

const EXIT_LEDGER_BUSY: i32 = 4;
const URL_ENV: &str = "JCSYNC_TEST_WEBHOOK";

/// A `jcsync` whose stderr goes to a file, read while it runs.
struct Live {
    child: Child,
    log: PathBuf,
}

impl Live {
    fn start(args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Live {
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jcsync"));
        cmd.args(args)
            .env(CLIENT_ID_ENV, "demo-client")
            .env(CLIENT_SECRET_ENV, "demo-secret")
            .env("JCSYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Live {
            child: cmd.spawn().expect("spawn jcsync"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `slot N: ...` lines so far.
    fn slots(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" slot ") && l.contains(": run "))
            .map(str::to_string)
            .collect()
    }

    /// Wait (at most `limit`) until `cond` holds on the slot lines; they are returned.
    fn wait_slots(
        &mut self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.slots();
            if cond(&s) {
                return s;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "jcsync exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{what}: not within {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Wait at most `limit` for the exit; its status code.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return (s.code(), self.log());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `jcsync sandbox` on `port`, keeping its data in `state`; returns once it listens.
fn sandbox_process(port: u16, state: &Path, log: PathBuf) -> Live {
    let live = Live::start(
        &[
            "sandbox",
            "--seed",
            repo().join("fixtures/procore").to_str().expect("utf8"),
            "--port",
            &port.to_string(),
            "--state",
            state.to_str().expect("utf8"),
        ],
        log,
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the sandbox did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    live
}

fn slot_exit(line: &str) -> Option<u32> {
    let rest = line.split("(exit ").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

#[test]
fn every_survives_procore_going_down_tells_the_failure_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let state = dir.path().join("procore-state.json");
    let url = format!("http://127.0.0.1:{port}");
    let hook = Webhook::start(vec![], Answer::Status(200));
    let hook_url = format!("{}/hooks/T0SECRET", hook.base);
    // Completed runs exit 0 here, so on = "failure" tells only the slot Procore was down for.
    let p = write_load_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        &url,
        4_294_967_396,
        &format!(
            "max_retry_secs = 1\nbackoff_base_ms = 50\nbackoff_cap_ms = 200\n\
             [report]\nquarantine_exit_code = 0\n\
             [notify]\nwebhook_url_env = \"{URL_ENV}\"\ntimeout_secs = 2\n"
        ),
    );
    let ledger = dir.path().join("runs/ledger.sqlite");
    let test_started = Instant::now();

    let sandbox = sandbox_process(port, &state, dir.path().join("sandbox1.log"));
    let mut every = Live::start(
        &["sync", p.to_str().expect("utf8"), "--every", "1s"],
        dir.path().join("every.log"),
        &[(URL_ENV, hook_url.as_str())],
    );
    // 1. Procore up: a slot loads everything.
    every.wait_slots(Duration::from_secs(20), "a first clean slot", |s| {
        s.iter().any(|l| slot_exit(l) == Some(0))
    });
    let info = jcsync::schedule::scheduled(&ledger).expect("status sees the schedule");
    assert_eq!(info.pid, every.child.id());
    assert_eq!(info.every, "1s");
    assert!(info.last_run_id.is_some(), "{info:?}");

    // 2. Procore goes down: a slot fails with exit 3 and the webhook is told.
    sandbox.signal(libc::SIGINT);
    let (code, _) = sandbox.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "the sandbox saved its state and stopped");
    let alerts = hook.wait_for(1, Duration::from_secs(25));
    assert!(!alerts.is_empty(), "a failure alert; log:\n{}", every.log());
    let a = &alerts[0].body;
    assert_eq!(a["outcome"], "incomplete", "{a}");
    assert_eq!(a["exit_code"], 3);
    let run_id = a["run_id"].as_str().expect("run_id");
    let run_dir = dir.path().join("runs").join(run_id);
    assert!(
        run_dir.join("manifest.json").exists(),
        "the alert names a real run"
    );
    let text = a["text"].as_str().expect("text");
    assert!(
        text.contains(&format!("run {run_id} did NOT complete its load (exit 3)")),
        "{text}"
    );
    assert!(
        a["error"]
            .as_str()
            .is_some_and(|e| e.contains("still failing")),
        "{a}"
    );
    let failed_slots = every.wait_slots(Duration::from_secs(20), "a slot with exit 3", |s| {
        s.iter().any(|l| slot_exit(l) == Some(3))
    });
    assert!(
        every.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );

    // 3. Procore is back (same port, same data): the next slots recover.
    let clean_before = failed_slots
        .iter()
        .filter(|l| slot_exit(l) == Some(0))
        .count();
    let sandbox = sandbox_process(port, &state, dir.path().join("sandbox2.log"));
    let after = every.wait_slots(
        Duration::from_secs(20),
        "a clean slot after the outage",
        |s| {
            s.iter().filter(|l| slot_exit(l) == Some(0)).count() > clean_before
                && s.iter().rposition(|l| slot_exit(l) == Some(0))
                    > s.iter().rposition(|l| slot_exit(l) == Some(3))
        },
    );
    assert!(after.len() >= 3, "{after:?}");
    for l in &after {
        assert!(l.contains("; next run "), "{l}");
    }

    // 4. SIGTERM: the process stops waiting and exits 0.
    every.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let (code, log) = every.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    assert!(
        log.contains("stopped: no further run is scheduled"),
        "{log}"
    );
    assert!(!log.contains("T0SECRET"), "the webhook URL is never logged");
    assert!(
        jcsync::schedule::scheduled(&ledger).is_none(),
        "gone with its process"
    );

    // Procore holds every cost exactly once; the ledger agrees.
    sandbox.signal(libc::SIGINT);
    let _ = sandbox.wait(Duration::from_secs(10));
    let rt = runtime();
    let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
    config.state_file = Some(state.clone());
    let check = rt.block_on(Sandbox::start(config)).expect("sandbox");
    assert_fixture_company_loaded(&check);
    rt.block_on(check.shutdown());
    let l = jcsync::ledger::Ledger::open(&ledger)
        .expect("ledger")
        .with_target(&format!("{url}#4294967396"));
    assert_eq!(l.count("line").expect("count"), FIXTURE_LINES as u64);
    // Only the outage's slots were told (on = "failure").
    for a in hook.received() {
        assert_eq!(a.body["exit_code"], 3, "{}", a.body);
    }
    assert!(test_started.elapsed() < Duration::from_secs(90));
}

#[test]
fn a_run_longer_than_the_interval_is_followed_by_one_catch_up_then_the_grid() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // Each write takes 400 ms and one project loads at a time: the first run lasts seconds.
    let sandbox = slow_sandbox(&rt, Duration::from_millis(400));
    let p = sandbox_pipeline(
        dir.path(),
        &sandbox,
        "max_projects_in_flight = 1\n[report]\nquarantine_exit_code = 0\n",
    );
    let mut every = Live::start(
        &["sync", p.to_str().expect("utf8"), "--every", "1s"],
        dir.path().join("every.log"),
        &[],
    );
    let slots = every.wait_slots(Duration::from_secs(40), "two slots", |s| s.len() >= 2);
    every.signal(libc::SIGTERM);
    let (code, log) = every.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    // The first run overran several slots: one catch-up at once, the others skipped.
    let first = &slots[0];
    assert!(first.contains("slot 0: run "), "{first}");
    assert!(first.contains("next run now (catch-up)"), "{first}");
    let skipped: u64 = first
        .split(", ")
        .find_map(|p| p.strip_suffix(" slot(s) skipped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the skipped slots are counted: {first}"));
    assert!(skipped >= 1, "{first}");
    // The catch-up (everything unchanged, fast) goes back to the grid: no second catch-up.
    assert!(slots[1].contains("; next run at "), "{}", slots[1]);
    assert!(log.contains("catching up now"), "{log}");
    assert_fixture_company_loaded(&sandbox);
    rt.block_on(sandbox.shutdown());
}

#[test]
fn a_second_schedule_of_one_ledger_exits_4_naming_the_first_and_sigterm_stops_a_wait_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "[report]\nquarantine_exit_code = 0\n",
    );
    let ps = p.to_str().expect("utf8");
    let mut first = Live::start(
        &["sync", ps, "--every", "1h"],
        dir.path().join("first.log"),
        &[],
    );
    first.wait_slots(Duration::from_secs(20), "the first slot", |s| !s.is_empty());
    let ledger = dir.path().join("runs/ledger.sqlite");
    let info = jcsync::schedule::scheduled(&ledger).expect("scheduled");
    assert_eq!((info.pid, info.every.as_str()), (first.child.id(), "1h"));
    assert_eq!(info.running_since, None, "waiting, not running");

    let started = Instant::now();
    let second = Live::start(
        &["sync", ps, "--every", "5m"],
        dir.path().join("second.log"),
        &[],
    );
    let (code, log) = second.wait(Duration::from_secs(10));
    assert_eq!(code, Some(EXIT_LEDGER_BUSY), "{log}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        log.contains(&format!("pid {} on host", first.child.id()))
            && log.contains("another `sync --every` already runs this ledger"),
        "{log}"
    );
    // The first one, waiting an hour for its next slot, stops at once.
    first.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let (code, log) = first.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert!(jcsync::schedule::scheduled(&ledger).is_none());
}

#[test]
fn a_bad_every_or_an_unreadable_pipeline_exits_1_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write_pipeline(dir.path(), &repo().join("fixtures/sage"), "csv", "zstd", "");
    for (args, expected) in [
        (
            vec!["sync", p.to_str().expect("utf8"), "--every", "5x"],
            "30s, 5m",
        ),
        (
            vec!["sync", p.to_str().expect("utf8"), "--every", "0s"],
            "at least 1s",
        ),
        (
            vec!["sync", "/nonexistent/p.toml", "--every", "5m"],
            "/nonexistent/p.toml",
        ),
    ] {
        let started = Instant::now();
        let live = Live::start(&args, dir.path().join("bad.log"), &[]);
        let (code, log) = live.wait(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{args:?}: {log}");
        assert!(log.contains(expected), "{args:?}: {log}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_second_sigterm_during_a_run_exits_143_at_once_and_the_next_sync_ends_exact() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // Each write takes 1.5 s and one project loads at a time: the run lasts about ten seconds.
    let sandbox = slow_sandbox(&rt, Duration::from_millis(1500));
    let p = sandbox_pipeline(
        dir.path(),
        &sandbox,
        "max_projects_in_flight = 1\n[report]\nquarantine_exit_code = 0\n",
    );
    let pipeline = p.to_str().expect("utf8");
    let every = Live::start(
        &["sync", pipeline, "--every", "1h"],
        dir.path().join("every.log"),
        &[],
    );
    // Mid-load: the first direct cost is in Procore, the run is far from done.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox.snapshot().direct_costs.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no write within 30 s; log:\n{}",
            every.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    every.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    let second = Instant::now();
    every.signal(libc::SIGTERM);
    let (code, log) = every.wait(Duration::from_secs(10));
    assert_eq!(code, Some(143), "{log}");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "the second signal exits at once, not after the run settles: {:?}",
        second.elapsed()
    );
    assert!(
        log.contains("interrupted again (SIGTERM): exiting now"),
        "{log}"
    );
    assert!(
        sandbox.snapshot().line_items.len() < FIXTURE_LINES,
        "the run was cut short"
    );
    // The cut run is in the history as crashed: status says the last run failed (10).
    let status = Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(["status", pipeline])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(10), "{text}");
    assert!(text.contains("crashed"), "{text}");
    // The next sync finishes the load: Procore exact, nothing twice.
    let again = Live::start(&["sync", pipeline], dir.path().join("again.log"), &[]);
    let (code, log) = again.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{log}");
    assert_fixture_company_loaded(&sandbox);
    rt.block_on(sandbox.shutdown());
}
