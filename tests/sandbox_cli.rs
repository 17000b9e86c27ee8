//! The `jcsync sandbox` command: starts, prints its URL, serves the seed, stops.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::sandbox_token;

#[tokio::test]
async fn jcsync_sandbox_command_serves_the_seed_on_the_printed_url() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(["sandbox", "--seed"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/procore"))
        .args(["--port", "0", "--spike-limit", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jcsync runs");
    let stdout = child.stdout.take().expect("stdout");
    let first = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // Hand the reader back so stdout stays open while the sandbox runs.
        reader.read_line(&mut line).map(|_| (line, reader))
    });
    let (line, _stdout) = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("prints its URL in time")
        .expect("reader")
        .expect("line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .expect("URL on the first line")
        .to_owned();

    let http = reqwest::Client::new();
    let token = sandbox_token(&http, &url).await;
    let resp = http
        .get(format!("{url}/rest/v1.0/vendors?company_id=4294967396"))
        .bearer_auth(&token)
        .header("Procore-Company-Id", "4294967396")
        .send()
        .await
        .expect("vendors");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("x-rate-limit-limit")
            .and_then(|v| v.to_str().ok()),
        Some("7"),
        "flags reach the config"
    );
    let vendors: Value = resp.json().await.expect("json");
    assert_eq!(vendors.as_array().map(Vec::len), Some(3));
    child.kill().expect("stop the sandbox we started");
    let _ = child.wait();
}
