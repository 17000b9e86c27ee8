//! kill -9 of a real `jcsync sync` at several points of the load, then a plain re-run: Procore
//! ends exactly right (every cost once, totals to the cent).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jcsync::sandbox::{Sandbox, SandboxConfig};

fn writes(stats: &jcsync::sandbox::Stats) -> u64 {
    stats
        .requests
        .iter()
        .filter(|(route, _)| route.starts_with("PATCH"))
        .flat_map(|(_, by)| by.values())
        .sum()
}

fn jcsync_sync(pipeline: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(["sync", pipeline.to_str().expect("utf8")])
        .env(CLIENT_ID_ENV, "demo-client")
        .env(CLIENT_SECRET_ENV, "demo-secret")
        .env("JCSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn jcsync")
}

#[test]
fn killed_sync_resumes_to_the_exact_final_state() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut killed_mid_load = 0;
    for delay_ms in [0u64, 120, 300, 500, 800, 1200] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
        // Each write takes a while, so the load is long enough to be killed in the middle.
        config.write_latency = Duration::from_millis(250);
        let sandbox = rt.block_on(Sandbox::start(config)).expect("sandbox");
        let pipeline = write_load_pipeline(
            dir.path(),
            &repo().join("fixtures/sage"),
            sandbox.url(),
            sandbox.company_id(),
            "max_projects_in_flight = 1\n",
        );

        let mut child = jcsync_sync(&pipeline);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished_before_kill = child.try_wait().expect("try_wait").is_some();
        child.kill().ok(); // SIGKILL
        child.wait().expect("wait");
        let writes_at_kill = writes(&sandbox.stats());
        if !finished_before_kill && writes_at_kill > 0 && writes_at_kill < 6 {
            killed_mid_load += 1;
        }

        let started = Instant::now();
        let status = jcsync_sync(&pipeline).wait().expect("second run");
        assert_eq!(
            status.code(),
            Some(2),
            "the re-run completes (with the fixtures' quarantined rows)"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(
            sandbox_budget_totals(&sandbox.cost_summary()),
            expected_budget_totals(),
            "killed after {delay_ms} ms"
        );
        assert_no_duplicates(&sandbox.snapshot(), 21, 35);
        rt.block_on(sandbox.shutdown());
    }
    assert!(
        killed_mid_load >= 2,
        "only {killed_mid_load} kills landed in the middle of the load"
    );
}
