//! The load against the embedded sandbox: exact totals, idempotent re-runs, updates, faults,
//! a Procore that stays down, and resuming.

mod common;

use std::time::Duration;

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions, EXIT_LOAD_INCOMPLETE};
use jcsync::sandbox::{FaultConfig, FaultKind, FaultRule, Sandbox, SandboxConfig, SandboxHandle};

const FAST_RETRIES: &str = "backoff_base_ms = 10\nbackoff_cap_ms = 200\nmax_retry_secs = 60\n";

fn sandbox_config() -> SandboxConfig {
    SandboxConfig::from_dir(repo().join("fixtures/procore"))
}

async fn start(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(config).await.expect("sandbox starts")
}

async fn sync_into(
    dir: &std::path::Path,
    source: &std::path::Path,
    sandbox: &SandboxHandle,
    load: &str,
) -> RunOutcome {
    set_sandbox_credentials();
    let path = write_load_pipeline(dir, source, sandbox.url(), sandbox.company_id(), load);
    let pipeline = Pipeline::load(&path).expect("pipeline");
    sync(&pipeline, &SyncOptions::default())
        .await
        .expect("sync")
}

#[test]
fn fixtures_load_to_the_cent_and_a_second_run_sends_no_write() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = start(sandbox_config()).await;
        let first = sync_into(dir.path(), &repo().join("fixtures/sage"), &sandbox, "").await;
        assert_eq!(first.exit_code, 2, "quarantined rows give 2");
        assert!(first.report.reconciled);
        let load = first.report.load.as_ref().expect("load report");
        assert_eq!(load.counts.lines_sent, 35);
        assert_eq!(load.counts.pending, 0);
        assert_eq!(load.http.rate_limited, 0);
        assert_eq!(
            sandbox_budget_totals(&sandbox.cost_summary()),
            expected_budget_totals()
        );
        assert_no_duplicates(&sandbox.snapshot(), 21, 35);
        let writes_after_first = sandbox_writes(&sandbox.stats());
        assert_eq!(
            writes_after_first, 6,
            "3 projects × (header sync + line sync)"
        );

        let second = sync_into(dir.path(), &repo().join("fixtures/sage"), &sandbox, "").await;
        let load = second.report.load.as_ref().expect("load report");
        assert_eq!(load.counts.lines_sent, 0);
        assert_eq!(load.counts.lines_unchanged, 35);
        assert_eq!(
            sandbox_writes(&sandbox.stats()),
            writes_after_first,
            "a second run sends no write"
        );
        assert_eq!(
            sandbox_budget_totals(&sandbox.cost_summary()),
            expected_budget_totals()
        );
    });
}

#[test]
fn changing_one_transaction_updates_exactly_that_line() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let sandbox = start(sandbox_config()).await;
        sync_into(dir.path(), &sage, &sandbox, "").await;
        let before = sandbox.snapshot();

        // Line 7 of the transaction file: change its amount only.
        let path = sage.join("JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut fields: Vec<String> = lines[6].split(',').map(str::to_string).collect();
        let old_amount = fields[10].clone();
        fields[10] = "999.99".into();
        lines[6] = fields.join(",");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");

        let again = sync_into(dir.path(), &sage, &sandbox, "").await;
        let load = again.report.load.as_ref().expect("load");
        assert_eq!(load.counts.lines_sent, 1, "only the changed line goes out");
        assert_eq!(load.counts.lines_unchanged, 34);
        let after = sandbox.snapshot();
        assert_no_duplicates(&after, 21, 35);
        let changed: Vec<_> = after
            .line_items
            .values()
            .filter(|l| {
                before
                    .line_items
                    .get(&l.id)
                    .is_some_and(|b| b.amount != l.amount)
            })
            .collect();
        assert_eq!(changed.len(), 1, "exactly one line changed");
        assert_eq!(changed[0].amount.to_string(), "999.99");
        assert_ne!(old_amount, "999.99");
    });
}

fn fault_config(rules: Vec<FaultRule>) -> SandboxConfig {
    let mut config = sandbox_config();
    config.faults = FaultConfig {
        rules,
        seed: 7,
        retry_after_secs: 1,
        slow_delay: Duration::from_millis(300),
    };
    config
}

fn rule(kind: FaultKind, probability: f64) -> FaultRule {
    FaultRule {
        kind,
        probability,
        writes_only: false,
    }
}

/// Load the fixtures with faults injected; the end state must be the fault-free one.
fn load_with_faults(rules: Vec<FaultRule>) -> jcsync::sandbox::Stats {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = start(fault_config(rules)).await;
        let run = sync_into(
            dir.path(),
            &repo().join("fixtures/sage"),
            &sandbox,
            FAST_RETRIES,
        )
        .await;
        let load = run.report.load.as_ref().expect("load");
        assert_eq!(load.failure, None);
        assert_eq!(load.counts.loaded(), 35, "{load:?}");
        assert!(run.report.reconciled);
        assert_eq!(
            sandbox_budget_totals(&sandbox.cost_summary()),
            expected_budget_totals()
        );
        assert_no_duplicates(&sandbox.snapshot(), 21, 35);
        sandbox.stats()
    })
}

#[test]
fn every_fault_kind_ends_in_the_fault_free_state() {
    for kind in [
        FaultKind::TooManyRequests,
        FaultKind::InternalServerError,
        FaultKind::BadGateway,
        FaultKind::ServiceUnavailable,
        FaultKind::Slow,
        FaultKind::ConnectionReset,
        FaultKind::LostResponse,
    ] {
        let stats = load_with_faults(vec![rule(kind, 0.35)]);
        let injected: u64 = stats.faults.values().sum();
        assert!(injected > 0, "{kind:?} was never injected: {stats:?}");
    }
}

#[test]
fn a_mix_of_faults_at_over_ten_percent_ends_in_the_fault_free_state() {
    let stats = load_with_faults(vec![
        rule(FaultKind::ServiceUnavailable, 0.05),
        rule(FaultKind::LostResponse, 0.05),
        rule(FaultKind::ConnectionReset, 0.04),
        rule(FaultKind::BadGateway, 0.03),
        rule(FaultKind::TooManyRequests, 0.03),
    ]);
    let injected: u64 = stats.faults.values().sum();
    assert!(injected > 0, "{stats:?}");
}

#[test]
fn procore_that_stays_down_stops_the_load_and_the_next_sync_resumes() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("procore-state.json");
        // Procore answers 503 to every write: lookups work, nothing can be written.
        let mut config = fault_config(vec![FaultRule {
            kind: FaultKind::ServiceUnavailable,
            probability: 1.0,
            writes_only: true,
        }]);
        config.state_file = Some(state.clone());
        let sandbox = start(config).await;
        let addr = sandbox.addr();
        let load = "backoff_base_ms = 10\nbackoff_cap_ms = 200\nmax_retry_secs = 2\n";
        let down = sync_into(dir.path(), &repo().join("fixtures/sage"), &sandbox, load).await;
        assert_eq!(down.exit_code, EXIT_LOAD_INCOMPLETE);
        let report = down.report.load.as_ref().expect("load");
        let failure = report.failure.clone().expect("a failure");
        assert!(
            failure.contains("503") && failure.contains("resume"),
            "{failure}"
        );
        assert_eq!(report.counts.pending + report.counts.loaded(), 35);
        assert!(report.counts.pending > 0);
        assert!(down.report.reconciled);
        // The run is complete on disk (staging finished) and verifies.
        jcsync::run::verify(&down.run_dir).expect("the failed load's run still verifies");
        sandbox.shutdown().await;

        // Procore is back, on the same address, with the same data; old tokens are gone (401).
        let mut config = sandbox_config();
        config.state_file = Some(state);
        config.bind = addr;
        let sandbox = start(config).await;
        let resumed = sync_into(
            dir.path(),
            &repo().join("fixtures/sage"),
            &sandbox,
            FAST_RETRIES,
        )
        .await;
        let load = resumed.report.load.as_ref().expect("load");
        assert_eq!(load.failure, None);
        assert_eq!(load.counts.loaded(), 35);
        assert_eq!(
            sandbox_budget_totals(&sandbox.cost_summary()),
            expected_budget_totals()
        );
        assert_no_duplicates(&sandbox.snapshot(), 21, 35);
    });
}

#[test]
fn bad_credentials_stop_the_run_before_anything_is_staged_and_never_show_the_secret() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = start(sandbox_config()).await;
        std::env::set_var("JCSYNC_TEST_BAD_ID", "demo-client");
        std::env::set_var("JCSYNC_TEST_BAD_SECRET", "s3cr3t-that-must-not-leak");
        let path = write_load_pipeline(
            dir.path(),
            &repo().join("fixtures/sage"),
            sandbox.url(),
            sandbox.company_id(),
            "",
        );
        let text = std::fs::read_to_string(&path)
            .expect("read")
            .replace(CLIENT_ID_ENV, "JCSYNC_TEST_BAD_ID")
            .replace(CLIENT_SECRET_ENV, "JCSYNC_TEST_BAD_SECRET");
        std::fs::write(&path, text).expect("write");
        let pipeline = Pipeline::load(&path).expect("pipeline");
        let err = sync(&pipeline, &SyncOptions::default())
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("401") && err.contains("JCSYNC_TEST_BAD_SECRET"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-that-must-not-leak"), "{err}");
        // Nothing staged: no run directory (the ledger's lock file, taken first, may be there).
        let runs = dir.path().join("runs");
        assert!(
            !runs.exists()
                || std::fs::read_dir(&runs)
                    .expect("dir")
                    .all(|e| !e.expect("entry").path().is_dir()),
            "a run directory was created"
        );
    });
}

#[test]
fn unmapped_project_vendor_and_budget_code_are_quarantined_with_reasons() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let path = sage.join("JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Line 43 (SM cost): a category no budget code has.
        let mut f: Vec<String> = lines[42].split(',').map(str::to_string).collect();
        f[3] = "Z".into();
        lines[42] = f.join(",");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        // Job 1004 exists in Sage but not in Procore: give line 48 to it.
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut f: Vec<String> = lines[47].split(',').map(str::to_string).collect();
        f[0] = "1004".into();
        lines[47] = f.join(",");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");

        let sandbox = start(sandbox_config()).await;
        let run = sync_into(dir.path(), &sage, &sandbox, "").await;
        let q = &run.report.counts.quarantined;
        assert_eq!(q.get("unmapped_budget_code"), Some(&1), "{q:?}");
        assert_eq!(q.get("unmapped_project"), Some(&1), "{q:?}");
        assert!(run.report.reconciled);
        let rows = read_parquet(&[run.run_dir.join("quarantine.parquet")]);
        let reasons: Vec<String> = strings(&rows, "reason").into_iter().flatten().collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("budget code") && r.contains(".Z")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("1004") && r.contains("no Procore project")),
            "{reasons:?}"
        );
        assert_eq!(run.report.load.as_ref().expect("load").counts.loaded(), 33);
    });
}
