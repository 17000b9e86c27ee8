//! A dry run's `requests.ndjson` carries the pipeline's `[load] status` on every header, as the
//! load sends it; the default (`approved`) writes the bytes it always did.

mod common;

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, SyncOptions};
use jcsync::sandbox::{Sandbox, SandboxConfig};

/// `requests.ndjson` of a dry run of the fixture company with `load` as its `[load]` section.
fn dry_run(load: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        &format!("[load]\n{load}\n"),
    );
    let run = run_sync(&pipeline).expect("dry run");
    std::fs::read_to_string(run.run_dir.join("requests.ndjson")).expect("requests.ndjson")
}

/// The `status` of every header record, in order.
fn header_statuses(ndjson: &str) -> Vec<String> {
    ndjson
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/direct_costs/sync"))
        })
        .flat_map(|r| r["body"]["updates"].as_array().cloned().unwrap_or_default())
        .map(|u| u["status"].as_str().expect("status").to_string())
        .collect()
}

#[test]
fn the_dry_run_writes_the_configured_status_on_every_header() {
    let default = dry_run("");
    let pending = dry_run("status = \"pending\"");
    let draft = dry_run("status = \"draft\"");
    assert_eq!(
        header_statuses(&default),
        vec!["approved"; FIXTURE_DIRECT_COSTS]
    );
    assert_eq!(
        header_statuses(&pending),
        vec!["pending"; FIXTURE_DIRECT_COSTS]
    );
    assert_eq!(header_statuses(&draft), vec!["draft"; FIXTURE_DIRECT_COSTS]);
    // Nothing else moves: the same bytes but for the status.
    assert_eq!(
        pending,
        default.replace("\"status\":\"approved\"", "\"status\":\"pending\"")
    );
    assert_eq!(
        default.matches("\"status\":\"approved\"").count(),
        FIXTURE_DIRECT_COSTS
    );
}

#[test]
fn the_load_sends_the_status_the_dry_run_showed() {
    let shown = header_statuses(&dry_run("status = \"pending\""));
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("the sandbox must start on 127.0.0.1");
        set_sandbox_credentials();
        let path = write_load_pipeline(
            dir.path(),
            &repo().join("fixtures/sage"),
            sandbox.url(),
            sandbox.company_id(),
            "status = \"pending\"\n",
        );
        let pipeline = Pipeline::load(&path).expect("pipeline");
        let run = sync(&pipeline, &SyncOptions::default())
            .await
            .expect("sync");
        assert_eq!(
            run.report.load.as_ref().expect("load").counts.lines_sent,
            35
        );
        let statuses: Vec<String> = sandbox
            .snapshot()
            .direct_costs
            .values()
            .map(|d| d.status.clone())
            .collect();
        assert_eq!(statuses, vec!["pending"; FIXTURE_DIRECT_COSTS]);
        assert_eq!(shown, statuses, "the dry run shows what the load sends");
        sandbox.shutdown().await;
    });
}
