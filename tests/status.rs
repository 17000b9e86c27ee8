//! `jcsync status`: healthy after a sync, failed after a run Procore refused or was down for,
//! stale past `--max-age` or before any run; all from the ledger, with the documented exit
//! statuses. And `--log-format json`: every stderr line of a sync is one JSON object carrying
//! the run id. Everything on 127.0.0.1.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use jcsync::sandbox::{Sandbox, SandboxConfig};

/// README, "Exit status" of `jcsync status`.
const HEALTHY: i32 = 0;
const FAILED: i32 = 10;
const STALE: i32 = 11;
/// The fixtures quarantine rows on purpose: a sync of them exits with the default
/// `quarantine_exit_code`.
const SYNC_QUARANTINED: i32 = 2;
const LOAD: &str = "max_retry_secs = 2\nbackoff_base_ms = 50\nbackoff_cap_ms = 400\n";

fn jcsync(args: &[&str], secret: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jcsync"));
    cmd.args(args)
        .env(CLIENT_ID_ENV, "demo-client")
        .env(CLIENT_SECRET_ENV, secret)
        .env_remove("JCSYNC_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run jcsync")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn status_json(pipeline: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let p = pipeline.to_str().expect("utf8");
    let mut args = vec!["status", p, "--json"];
    args.extend_from_slice(extra);
    let out = jcsync(&args, "", &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().expect("exit status"), v)
}

fn seed() -> SandboxConfig {
    SandboxConfig::from_dir(repo().join("fixtures/procore"))
}

#[test]
fn status_is_stale_before_any_run_healthy_after_one_failed_after_a_refused_one_and_stale_past_max_age(
) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    let pipeline = write_load_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        sandbox.url(),
        sandbox.company_id(),
        LOAD,
    );
    let p = pipeline.to_str().expect("utf8");

    // Nothing has run: stale, and said so.
    let (code, before) = status_json(&pipeline, &[]);
    assert_eq!(code, STALE, "{before}");
    assert_eq!(before["health"], "stale");
    assert!(before["last_run"].is_null());
    let plain = jcsync(&["status", p], "", &[]);
    assert_eq!(plain.status.code(), Some(STALE));
    assert!(
        text(&plain.stdout).starts_with("STALE:") && text(&plain.stdout).contains("no sync"),
        "{}",
        text(&plain.stdout)
    );

    // One sync: healthy, the run and what the ledger holds.
    let first = jcsync(&["sync", p], "demo-secret", &[]);
    assert_eq!(
        first.status.code(),
        Some(SYNC_QUARANTINED),
        "{}",
        text(&first.stderr)
    );
    let (code, healthy) = status_json(&pipeline, &["--max-age", "1h"]);
    assert_eq!(code, HEALTHY, "{healthy}");
    assert_eq!(healthy["health"], "healthy");
    let first_id = healthy["last_run"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(healthy["last_run"]["outcome"], "quarantined");
    assert_eq!(healthy["last_run"]["exit_code"], SYNC_QUARANTINED);
    assert_eq!(healthy["last_success"]["run_id"], first_id.as_str());
    assert_eq!(healthy["in_procore"]["lines"], FIXTURE_LINES as u64);
    assert_eq!(
        healthy["in_procore"]["direct_costs"],
        FIXTURE_DIRECT_COSTS as u64
    );
    assert_eq!(
        healthy["last_run"]["summary"]["staged"],
        FIXTURE_LINES as u64
    );
    let run_dir = healthy["last_run"]["run_dir"].as_str().expect("run dir");
    assert!(
        Path::new(run_dir).join("manifest.json").is_file(),
        "the run directory named is the run's: {run_dir}"
    );
    assert!(run_dir.ends_with(&first_id));
    assert!(healthy["next_run"].is_null(), "no --every process runs");

    // Refused credentials: the run fails at login; status says so, naming the status code and
    // never the secret, and keeps the earlier success.
    let wrong = "wrong-secret-7f3a";
    let refused = jcsync(&["sync", p], wrong, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let (code, failed) = status_json(&pipeline, &["--max-age", "1h"]);
    assert_eq!(code, FAILED, "{failed}");
    assert_eq!(failed["health"], "failed");
    assert_eq!(failed["last_run"]["outcome"], "failed");
    assert_eq!(failed["last_run"]["exit_code"], 1);
    let error = failed["last_run"]["error"].as_str().expect("error");
    assert!(
        error.contains("401"),
        "the error names the HTTP status: {error}"
    );
    assert_ne!(failed["last_run"]["run_id"], first_id.as_str());
    assert_eq!(failed["last_success"]["run_id"], first_id.as_str());
    let plain = jcsync(&["status", p], "", &[]);
    assert_eq!(plain.status.code(), Some(FAILED));
    let shown = text(&plain.stdout);
    assert!(
        shown.starts_with("FAILED:") && shown.contains("401"),
        "{shown}"
    );
    assert!(!shown.contains(wrong) && !failed.to_string().contains(wrong));

    // Procore down: the load does not complete (exit 3); that is a failed last run too.
    rt.block_on(sandbox.shutdown());
    let down = jcsync(&["sync", p], "demo-secret", &[]);
    assert_eq!(down.status.code(), Some(3), "{}", text(&down.stderr));
    let (code, incomplete) = status_json(&pipeline, &[]);
    assert_eq!(code, FAILED, "{incomplete}");
    assert_eq!(incomplete["last_run"]["outcome"], "incomplete");
    assert!(
        incomplete["last_run"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("failing"),
        "the load's failure is recorded: {incomplete}"
    );

    // A sync that succeeds again is healthy, until its success is older than --max-age.
    let up = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    write_load_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        up.url(),
        up.company_id(),
        LOAD,
    );
    let again = jcsync(&["sync", p], "demo-secret", &[]);
    assert_eq!(again.status.code(), Some(SYNC_QUARANTINED));
    assert_eq!(status_json(&pipeline, &["--max-age", "1h"]).0, HEALTHY);
    std::thread::sleep(Duration::from_millis(2100));
    let (code, stale) = status_json(&pipeline, &["--max-age", "1s"]);
    assert_eq!(code, STALE, "{stale}");
    assert_eq!(stale["health"], "stale");
    assert!(
        stale["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("--max-age"),
        "{stale}"
    );
    let bad = jcsync(&["status", p, "--max-age", "soon"], "", &[]);
    assert_eq!(bad.status.code(), Some(2), "clap's usage error");
    assert!(text(&bad.stderr).contains("soon"));
    rt.block_on(up.shutdown());
}

#[test]
fn json_logs_are_one_object_per_line_each_with_the_run_id() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = rt.block_on(Sandbox::start(seed())).expect("sandbox");
    let pipeline = write_load_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        sandbox.url(),
        sandbox.company_id(),
        LOAD,
    );
    let p = pipeline.to_str().expect("utf8");
    for (args, env) in [
        (vec!["--log-format", "json", "sync", p], vec![]),
        (vec!["sync", p], vec![("JCSYNC_LOG_FORMAT", "json")]),
    ] {
        let out = jcsync(&args, "demo-secret", &env);
        assert_eq!(
            out.status.code(),
            Some(SYNC_QUARANTINED),
            "{}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() >= 3, "a sync logs its steps:\n{stderr}");
        let mut run_ids = std::collections::BTreeSet::new();
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
            assert!(v.is_object(), "{line}");
            for key in ["timestamp", "level", "message", "run_id"] {
                assert!(v.get(key).is_some(), "no {key}: {line}");
            }
            run_ids.insert(v["run_id"].as_str().expect("run id").to_string());
        }
        assert_eq!(run_ids.len(), 1, "one run, one id: {run_ids:?}");
        let id = run_ids.into_iter().next().expect("id");
        assert!(
            dir.path()
                .join("runs")
                .join(&id)
                .join("report.json")
                .is_file(),
            "the logged run id is the run directory's"
        );
        assert!(!stderr.contains("demo-secret"));
    }
    // The text format stays the default, and an unknown format is refused by name.
    let out = jcsync(&["sync", p], "demo-secret", &[]);
    assert!(!text(&out.stderr).trim_start().starts_with('{'));
    let bad = jcsync(&["sync", p], "demo-secret", &[("JCSYNC_LOG_FORMAT", "xml")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("JCSYNC_LOG_FORMAT"),
        "{}",
        text(&bad.stderr)
    );
    rt.block_on(sandbox.shutdown());
}
