//! A project whose Direct Costs tool is off answers 403 on its direct cost routes: its lines are
//! quarantined (`procore_rejected`) as open exceptions, the other projects load fully, the run
//! exits with the quarantine status; once the tool is turned on, the next sync loads them.
//!
//! Procore is the embedded sandbox (127.0.0.1), seeded from `fixtures/procore`; the tool is
//! turned off and on as an admin's tool would, over HTTP (`PATCH …/projects/{id}/tools`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;

/// Project 1002 of the fixture seed.
const OFF_PROJECT: i64 = 4294968002;

/// One cost transaction (the columns of [`TRANSACTION_HEADER`]); `seq` keeps keys apart, and
/// gives each row a batch of its own.
#[allow(clippy::too_many_arguments)]
fn txn(
    job: &str,
    extra: &str,
    code: &str,
    cat: &str,
    ty: &str,
    amount: &str,
    vendor: &str,
    invoice: &str,
    seq: u32,
) -> String {
    cost_txn(
        "tool row", job, extra, code, cat, ty, amount, vendor, invoice, seq,
    )
}

/// Seven rows that all map onto the fixture seed: 1001 two lines (350.35), 1002 four lines in
/// three direct costs (1255.52), 1003 one line (333.33).
fn rows() -> Vec<String> {
    vec![
        txn("1001", "1", "01-100", "L", "PR cost", "100.10", "", "", 1),
        txn(
            "1001", "", "02-200", "M", "AP cost", "250.25", "V100", "INV-1", 2,
        ),
        txn("1002", "", "03-300", "E", "EQ cost", "75.50", "", "", 3),
        txn(
            "1002", "", "01-100", "M", "AP cost", "1200.00", "V200", "INV-9", 4,
        ),
        txn(
            "1002", "", "02-200", "S", "AP cost", "-19.99", "V200", "INV-9", 5,
        ),
        txn("1002", "", "03-300", "L", "JC cost", "0.01", "", "", 6),
        txn("1003", "", "02-200", "O", "SM cost", "333.33", "", "", 7),
    ]
}

fn sage_dir(dir: &Path) -> PathBuf {
    let sage = dir.join("sage");
    copy_dimension_fixtures(&sage);
    let mut text = format!("{TRANSACTION_HEADER}\n");
    for r in rows() {
        text.push_str(&r);
        text.push('\n');
    }
    std::fs::write(sage.join("JCT_CURRENT__TRANSACTION.csv"), text).expect("write transactions");
    sage
}

async fn run(pipeline: &Path) -> RunOutcome {
    let p = Pipeline::load(pipeline).expect("pipeline");
    sync(&p, &SyncOptions::default())
        .await
        .unwrap_or_else(|e| panic!("sync: {e}"))
}

/// Turn the Direct Costs tool of a project on or off through the sandbox's REST API, as
/// Procore's "Update project tools" does.
async fn set_direct_costs_tool(sandbox: &SandboxHandle, project: i64, active: bool) {
    let http = reqwest::Client::new();
    let token = sandbox_token(&http, sandbox.url()).await;
    let tools = format!("{}/rest/v1.0/projects/{project}/tools", sandbox.url());
    let auth = |r: reqwest::RequestBuilder| {
        r.bearer_auth(&token)
            .header("Procore-Company-Id", sandbox.company_id().to_string())
    };
    let all: Value = auth(http.get(&tools))
        .send()
        .await
        .expect("list tools")
        .json()
        .await
        .expect("tools json");
    let id = all
        .as_array()
        .and_then(|a| a.iter().find(|t| t["engine_name"] == "direct_costs"))
        .and_then(|t| t["id"].as_i64())
        .expect("the direct_costs tool");
    let resp = auth(http.patch(&tools))
        .json(&serde_json::json!({"tools": [{"id": id, "is_active": active}]}))
        .send()
        .await
        .expect("patch tools");
    assert_eq!(resp.status(), 200);
}

/// (project number, direct costs, lines, amount) the sandbox holds, for projects with lines.
fn held(sandbox: &SandboxHandle) -> Vec<(String, u64, u64, String)> {
    sandbox
        .cost_summary()
        .projects
        .iter()
        .filter(|p| p.line_items > 0)
        .map(|p| {
            (
                p.project_number.clone(),
                p.direct_costs,
                p.line_items,
                format!("{:.2}", p.total),
            )
        })
        .collect()
}

#[test]
fn a_project_with_the_direct_costs_tool_off_is_quarantined_and_loads_once_turned_on() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = sage_dir(dir.path());
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("the sandbox must start on 127.0.0.1");
        set_sandbox_credentials();
        let pipeline = write_load_pipeline(
            dir.path(),
            &sage,
            sandbox.url(),
            sandbox.company_id(),
            "backoff_base_ms = 10\nbackoff_cap_ms = 200\nmax_retry_secs = 30\n",
        );
        set_direct_costs_tool(&sandbox, OFF_PROJECT, false).await;

        let first = run(&pipeline).await;
        assert_eq!(first.exit_code, 2, "the quarantine exit status, not 3");
        let r = &first.report;
        assert!(r.reconciled, "{:?}", r.counts);
        let c = &r.counts;
        assert_eq!(
            (c.extracted, c.filtered, c.quarantined_total, c.planned),
            (7, 0, 4, 7)
        );
        assert_eq!(c.quarantined.get("procore_rejected"), Some(&4));
        assert_eq!((c.loaded, c.pending), (Some(3), 0));
        assert_eq!(r.planned_amount, "1939.20");
        let load = r.load.as_ref().expect("load report");
        assert_eq!(load.failure, None);
        assert_eq!((load.counts.lines_sent, load.counts.pending), (3, 0));
        assert_eq!(load.counts.quarantined_total(), 4);
        // One refused request, never retried, nothing more sent to that project.
        let stats = sandbox.stats();
        let refused: u64 = stats
            .requests
            .values()
            .filter_map(|by| by.get("403"))
            .sum();
        assert_eq!(refused, 1, "{:?}", stats.requests);
        assert_eq!(
            held(&sandbox),
            vec![
                ("1001".to_string(), 2, 2, "350.35".to_string()),
                ("1003".to_string(), 1, 1, "333.33".to_string()),
            ]
        );
        let ex = r.exceptions.as_ref().expect("exceptions");
        assert_eq!((ex.new, ex.still_open), (4, 4), "{ex:?}");

        // quarantine.parquet: the four lines of 1002, their amount, the reason.
        let q = read_parquet(&[first.run_dir.join("quarantine.parquet")]);
        assert_eq!(q.num_rows(), 4);
        let codes = strings(&q, "reason_code");
        assert!(codes.iter().all(|c| c.as_deref() == Some("procore_rejected")));
        let jobs = strings(&q, "job");
        assert!(jobs.iter().all(|j| j.as_deref() == Some("1002")), "{jobs:?}");
        let amount: rust_decimal::Decimal = strings(&q, "amount")
            .iter()
            .map(|a| a.as_deref().expect("amount").parse::<rust_decimal::Decimal>())
            .map(|a| a.expect("decimal"))
            .sum();
        assert_eq!(format!("{amount:.2}"), "1255.52");
        let reasons = strings(&q, "reason");
        for reason in &reasons {
            let reason = reason.as_deref().expect("reason");
            assert!(
                reason.starts_with(&format!("Procore refused project {OFF_PROJECT} (job 1002): HTTP 403 on PATCH direct_costs/sync"))
                    && reason.contains("Direct Costs tool may be off"),
                "{reason}"
            );
        }
        for f in files_under(&first.run_dir) {
            let bytes = std::fs::read(&f).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("demo-secret"), "{}", f.display());
        }

        // The tool is turned on: the exceptions load, nothing is duplicated.
        set_direct_costs_tool(&sandbox, OFF_PROJECT, true).await;
        let second = run(&pipeline).await;
        assert_eq!(second.exit_code, 0);
        let r = &second.report;
        assert!(r.reconciled, "{:?}", r.counts);
        assert_eq!((r.counts.quarantined_total, r.counts.loaded), (0, Some(7)));
        let load = r.load.as_ref().expect("load report");
        assert_eq!((load.counts.lines_sent, load.counts.lines_unchanged), (4, 3));
        let ex = r.exceptions.as_ref().expect("exceptions");
        assert_eq!((ex.resolved, ex.still_open), (4, 0), "{ex:?}");
        assert_no_duplicates(&sandbox.snapshot(), 6, 7);
        assert_eq!(
            held(&sandbox),
            vec![
                ("1001".to_string(), 2, 2, "350.35".to_string()),
                ("1002".to_string(), 3, 4, "1255.52".to_string()),
                ("1003".to_string(), 1, 1, "333.33".to_string()),
            ]
        );
        sandbox.shutdown().await;
    });
}

#[test]
fn retried_exceptions_that_fail_again_set_the_exit_status_and_are_listed_apart() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = sage_dir(dir.path());
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("the sandbox must start on 127.0.0.1");
        set_sandbox_credentials();
        let load = "backoff_base_ms = 10\nbackoff_cap_ms = 200\nmax_retry_secs = 30\n";
        let pipeline = |since: &str| {
            write_load_pipeline(
                dir.path(),
                &sage,
                sandbox.url(),
                sandbox.company_id(),
                &format!("{load}[sync]\nsince = \"{since}\"\n"),
            )
        };
        set_direct_costs_tool(&sandbox, OFF_PROJECT, false).await;
        let first = run(&pipeline("2024-01-01")).await;
        assert_eq!(first.exit_code, 2);
        assert_eq!(first.report.counts.quarantined_total, 4);

        // Every row (accounting date 2024-03-04) is now before the window: the snapshot is
        // empty, the four open exceptions are retried from the ledger, and fail again.
        let second = run(&pipeline("2024-03-05")).await;
        assert_eq!(second.exit_code, 2, "open exceptions still failing");
        let r = &second.report;
        assert!(r.reconciled, "{:?}", r.counts);
        let c = &r.counts;
        assert_eq!(
            (c.extracted, c.filtered, c.quarantined_total, c.planned),
            (7, 7, 0, 0),
            "the snapshot's reconciliation does not count the retried lines"
        );
        let counts = &r.load.as_ref().expect("load").counts;
        assert_eq!(counts.retried, 4);
        assert_eq!(counts.retried_quarantined.get("procore_rejected"), Some(&4));
        let ex = r.exceptions.as_ref().expect("exceptions");
        assert_eq!(
            (ex.retried, ex.retried_loaded, ex.retried_quarantined, ex.retried_pending),
            (4, 0, 4, 0)
        );
        assert_eq!(ex.retried_quarantined_amount, "1255.52");
        assert_eq!(
            ex.retried_file.as_deref(),
            Some("quarantine_retried.parquet")
        );
        assert_eq!((ex.new, ex.still_open), (0, 4));
        assert!(ex.reconciled);

        // The snapshot quarantined nothing; the retried lines are listed apart, marked.
        let snapshot_rejects = read_parquet(&[second.run_dir.join("quarantine.parquet")]);
        assert_eq!(snapshot_rejects.num_rows(), 0);
        let q = read_parquet(&[second.run_dir.join("quarantine_retried.parquet")]);
        assert_eq!(q.num_rows(), 4);
        assert!(strings(&q, "stage")
            .iter()
            .all(|s| s.as_deref() == Some("load_retry")));
        let amount: rust_decimal::Decimal = strings(&q, "amount")
            .iter()
            .map(|a| a.as_deref().expect("amount").parse::<rust_decimal::Decimal>())
            .map(|a| a.expect("decimal"))
            .sum();
        assert_eq!(format!("{amount:.2}"), "1255.52");
        let prefix = format!(
            "retried open exception (first quarantined by run {}, attempt 2): Procore refused \
             project {OFF_PROJECT} (job 1002): HTTP 403",
            first.report.run_id
        );
        for reason in strings(&q, "reason") {
            let reason = reason.expect("reason");
            assert!(reason.starts_with(&prefix), "{reason}");
        }
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(second.run_dir.join("manifest.json")).expect("manifest"),
        )
        .expect("manifest json");
        assert_eq!(manifest["quarantined"], 0);
        assert!(manifest["files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f["path"] == "quarantine_retried.parquet" && f["rows"] == 4));
        let report: Value = serde_json::from_slice(
            &std::fs::read(second.run_dir.join("report.json")).expect("report"),
        )
        .expect("report json");
        assert_eq!(report["exceptions"]["retried_quarantined"], 4);
        assert_eq!(report["exceptions"]["retried_quarantined_amount"], "1255.52");
        // The ledger's run history says so too (`jcsync status`).
        let ledger = jcsync::exceptions::scoped_ledger(
            &Pipeline::load(&pipeline("2024-03-05")).expect("pipeline"),
        )
        .expect("ledger")
        .expect("the target keeps a ledger");
        let last = ledger.last_run("DEMO", false).expect("history").expect("a run");
        assert_eq!(last.run_id, r.run_id);
        assert_eq!((last.outcome.as_str(), last.exit_code), ("quarantined", Some(2)));
        let summary = last.summary.expect("summary");
        assert_eq!(summary["retried_still_failing"], 4);
        drop(ledger);
        let text = jcsync::run::summary_text(r, &second.run_dir);
        assert!(
            text.contains(
                "    STILL FAILING           4  1255.52 (quarantined by earlier runs, failed again: listed with their reason in quarantine_retried.parquet)"
            ),
            "{text}"
        );

        // A replay of the second run (an empty snapshot) while the tool is still off: the
        // retried lines fail again, and the replay's history says quarantined too.
        let p = Pipeline::load(&pipeline("2024-03-05")).expect("pipeline");
        let replayed = jcsync::replay::replay(&second.run_dir, &p, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("replay: {e}"));
        assert_eq!(replayed.exit_code, 2, "the replay's lines still fail");
        let ledger = jcsync::exceptions::scoped_ledger(&p)
            .expect("ledger")
            .expect("the target keeps a ledger");
        let last = ledger.last_run("DEMO", false).expect("history").expect("a run");
        assert_eq!(last.mode, "replay");
        assert_eq!((last.outcome.as_str(), last.exit_code), ("quarantined", Some(2)));
        drop(ledger);

        // Turned on: the retried lines load, the run is clean.
        set_direct_costs_tool(&sandbox, OFF_PROJECT, true).await;
        let third = run(&pipeline("2024-03-05")).await;
        assert_eq!(third.exit_code, 0);
        let ex = third.report.exceptions.as_ref().expect("exceptions");
        assert_eq!(
            (ex.retried, ex.retried_loaded, ex.retried_quarantined, ex.resolved, ex.still_open),
            (4, 4, 0, 4, 0)
        );
        assert_eq!(ex.retried_file, None);
        assert!(!third.run_dir.join("quarantine_retried.parquet").exists());
        assert_no_duplicates(&sandbox.snapshot(), 6, 7);
        sandbox.shutdown().await;
    });
}
