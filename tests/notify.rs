//! `[notify]`: after a real `jcsync sync`, a JSON summary is POSTed to the webhook whose URL
//! the environment holds. `on = "failure"` tells only runs that exit non-zero (or fail);
//! `"always"` every run. A 500 is retried and the 200 after it delivers; a webhook that never
//! answers is given up within the bounded time and the sync keeps its own exit status. The URL
//! (a token in its path) is never in stdout, stderr or a file of the run. Everything on
//! 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::webhook::{Answer, Webhook};
use common::*;

/// The environment variable the test pipelines name.
const URL_ENV: &str = "JCSYNC_TEST_WEBHOOK";
/// The secret part of the webhook URL: never to be seen outside the request.
const TOKEN: &str = "T0SECRET/B0TOKEN/xoxb-4242-hunter2";
/// The fixtures quarantine rows on purpose: a completed run exits 2 by default.
const EXIT_QUARANTINED: i32 = 2;
const EXIT_FAILED: i32 = 1;

struct Run {
    code: Option<i32>,
    took: Duration,
    stdout: String,
    stderr: String,
}

/// `jcsync sync PIPELINE` with `url` in the webhook variable (none: unset), at most 60 s.
fn sync(pipeline: &Path, url: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jcsync"));
    cmd.args(["sync", pipeline.to_str().expect("utf8")])
        .env("JCSYNC_LOG", "debug")
        .env_remove(URL_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = url {
        cmd.env(URL_ENV, u);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn jcsync");
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("jcsync sync still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code(),
        took,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A dry-run pipeline of the fixtures with `extra` sections.
fn pipeline(dir: &Path, extra: &str) -> PathBuf {
    write_pipeline(
        dir,
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        &format!("{extra}\n"),
    )
}

fn notify(on: &str, more: &str) -> String {
    format!("[notify]\nwebhook_url_env = \"{URL_ENV}\"\non = \"{on}\"\n{more}")
}

fn url(hook: &Webhook) -> String {
    format!("{}/hooks/{TOKEN}", hook.base)
}

fn only_run_dir(dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// The token is nowhere but in the request: not in the output, not in a file of the run.
fn assert_secret_kept(run: &Run, dir: &Path) {
    let secret = "hunter2";
    assert!(!run.stdout.contains(secret), "stdout:\n{}", run.stdout);
    assert!(!run.stderr.contains(secret), "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("/hooks/"), "stderr:\n{}", run.stderr);
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the webhook token",
            f.display()
        );
    }
}

#[test]
fn a_quarantined_run_is_told_on_failure_with_its_counts_reasons_and_amounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![], Answer::Status(200));
    let p = pipeline(dir.path(), &notify("failure", ""));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(EXIT_QUARANTINED), "{}", run.stderr);
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "one alert");
    assert_eq!(got[0].path, format!("/hooks/{TOKEN}"));
    let a = &got[0].body;
    let run_dir = only_run_dir(dir.path());
    let run_id = run_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert_eq!(a["run_id"], run_id.as_str());
    assert_eq!(a["outcome"], "quarantined");
    assert_eq!(a["exit_code"], 2);
    assert_eq!(a["company"], "DEMO");
    assert_eq!(a["pipeline"], p.display().to_string());
    assert_eq!(a["run_dir"], run_dir.display().to_string());
    assert_eq!(a["error"], serde_json::Value::Null);
    assert_eq!(
        a["counts"],
        serde_json::json!({
            "extracted": 51, "staged": 35, "planned": 35, "loaded": null, "sent": 0,
            "unchanged": 0, "pending": 0, "quarantined": 5, "removed": 0
        })
    );
    // Most rows first; amounts are the exact sums of the rows' Amount in the fixture CSV
    // (lines 22 and 31, 23, 14, 46; line 22's "12,34x" is not a number: counted apart).
    assert_eq!(
        a["quarantine_reasons"],
        serde_json::json!([
            {"reason": "bad_value", "rows": 2, "amount": "88.00", "amount_unreadable": 1},
            {"reason": "duplicate_key", "rows": 1, "amount": "1700.00"},
            {"reason": "missing_value", "rows": 1, "amount": "168.75"},
            {"reason": "unknown_job", "rows": 1, "amount": "75.00"}
        ])
    );
    let text = a["text"].as_str().expect("text");
    assert!(
        text.starts_with(&format!(
            "jcsync DEMO ({}): run {run_id} completed, with rows quarantined (exit 2)",
            p.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("51 rows extracted, 35 staged, 35 planned"),
        "{text}"
    );
    assert!(run.stderr.contains("alert delivered"), "{}", run.stderr);
    assert_secret_kept(&run, dir.path());
}

#[test]
fn a_clean_run_is_told_only_with_on_always() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![], Answer::Status(204));
    let clean = "[report]\nquarantine_exit_code = 0\n";
    let p = pipeline(dir.path(), &format!("{clean}{}", notify("failure", "")));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hook.received().len(),
        0,
        "on = failure: a run exiting 0 is not told"
    );

    let p = pipeline(dir.path(), &format!("{clean}{}", notify("always", "")));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["exit_code"], 0);
    assert_eq!(got[0].body["outcome"], "quarantined");
    assert_secret_kept(&run, dir.path());
}

#[test]
fn a_500_is_retried_and_the_200_after_it_delivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![Answer::Status(500)], Answer::Status(200));
    let p = pipeline(dir.path(), &notify("failure", "retries = 2\n"));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(EXIT_QUARANTINED), "{}", run.stderr);
    let got = hook.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "the 500 is retried once, the 200 ends it");
    assert_eq!(got[0].body, got[1].body, "the same alert, sent again");
    assert!(
        run.stderr
            .contains("webhook answered HTTP 500 (attempt 1 of 3)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("alert delivered"), "{}", run.stderr);
    assert_secret_kept(&run, dir.path());
}

#[test]
fn a_webhook_that_never_answers_is_given_up_in_bounded_time_and_the_exit_status_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![], Answer::Never);
    let p = pipeline(
        dir.path(),
        &notify("failure", "timeout_secs = 1\nretries = 1\n"),
    );
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(EXIT_QUARANTINED), "{}", run.stderr);
    // 2 attempts of 1 s, and a backoff of at most 5 s between them.
    assert!(run.took < Duration::from_secs(20), "took {:?}", run.took);
    assert_eq!(hook.received().len(), 2, "first attempt and one retry");
    assert!(
        run.stderr.contains("could not be delivered (timed out"),
        "{}",
        run.stderr
    );
    assert_secret_kept(&run, dir.path());
}

#[test]
fn a_webhook_that_refuses_with_a_4xx_is_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![], Answer::Status(404));
    let p = pipeline(dir.path(), &notify("failure", ""));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(EXIT_QUARANTINED), "{}", run.stderr);
    assert_eq!(hook.received().len(), 1);
    assert!(
        run.stderr.contains("could not be delivered (HTTP 404)"),
        "{}",
        run.stderr
    );
    assert_secret_kept(&run, dir.path());
}

#[test]
fn a_failed_run_is_told_with_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Webhook::start(vec![], Answer::Status(200));
    let sage = dir.path().join("sage");
    copy_sage_fixtures(&sage);
    std::fs::remove_file(sage.join("JCM_MASTER__JOB.csv")).expect("remove");
    let p = write_pipeline(dir.path(), &sage, "csv", "zstd", &notify("failure", ""));
    let run = sync(&p, Some(&url(&hook)));
    assert_eq!(run.code, Some(EXIT_FAILED), "{}", run.stderr);
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let a = &got[0].body;
    assert_eq!(a["outcome"], "failed");
    assert_eq!(a["exit_code"], 1);
    assert_eq!(a["counts"], serde_json::Value::Null);
    let error = a["error"].as_str().expect("error");
    assert!(
        error.contains("JCM_MASTER__JOB") && error.contains("not found"),
        "{error}"
    );
    let text = a["text"].as_str().expect("text");
    assert!(
        text.contains("FAILED (exit 1)") && text.contains(error),
        "{text}"
    );
}

#[test]
fn a_missing_webhook_variable_is_a_warning_and_the_run_proceeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pipeline(dir.path(), &notify("always", ""));
    let run = sync(&p, None);
    assert_eq!(run.code, Some(EXIT_QUARANTINED), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "environment variable {URL_ENV} (named by `notify.webhook_url_env`) is not set"
        )),
        "{}",
        run.stderr
    );
    only_run_dir(dir.path());
}
