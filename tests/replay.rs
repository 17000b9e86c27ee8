//! Replay from staged Parquet: finishing a failed load, replaying into a fresh Procore, refusing a
//! tampered run, and forcing a resend.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, SyncOptions, EXIT_LOAD_INCOMPLETE};
use jcsync::replay::{replay, ReplayOptions};
use jcsync::sandbox::{FaultConfig, FaultKind, FaultRule, Sandbox, SandboxConfig, SandboxHandle};

fn seed() -> SandboxConfig {
    SandboxConfig::from_dir(repo().join("fixtures/procore"))
}

fn pipeline_for(dir: &Path, sandbox: &SandboxHandle, load: &str) -> Pipeline {
    set_sandbox_credentials();
    let sage = dir.join("sage");
    copy_sage_fixtures(&sage);
    let path = write_load_pipeline(dir, &sage, sandbox.url(), sandbox.company_id(), load);
    Pipeline::load(&path).expect("pipeline")
}

/// What Procore holds, independent of ids: lines by origin_id with amount, budget code, project.
fn procore_state(sandbox: &SandboxHandle) -> BTreeSet<(String, String, String, String)> {
    let db = sandbox.snapshot();
    db.line_items
        .values()
        .map(|l| {
            let dc = db
                .direct_costs
                .get(&l.direct_cost_id)
                .and_then(|d| d.origin_id.clone())
                .unwrap_or_default();
            let code = db
                .wbs_codes
                .get(&l.wbs_code_id)
                .map(|w| w.flat_code.clone())
                .unwrap_or_default();
            (
                l.origin_id.clone().unwrap_or_default(),
                dc,
                code,
                l.amount.to_string(),
            )
        })
        .collect()
}

/// Lines a replay sent.
fn lines_sent(outcome: &jcsync::replay::ReplayOutcome) -> u64 {
    outcome
        .report
        .load
        .as_ref()
        .expect("load")
        .counts
        .lines_sent
}

#[test]
fn a_load_that_failed_midway_is_replayed_to_the_undisturbed_state() {
    let rt = runtime();
    rt.block_on(async {
        // The undisturbed reference.
        let ref_dir = tempfile::tempdir().expect("tempdir");
        let reference = Sandbox::start(seed()).await.expect("sandbox");
        sync(
            &pipeline_for(ref_dir.path(), &reference, ""),
            &SyncOptions::default(),
        )
        .await
        .expect("sync");

        // Procore answers 503 to every write, lookups succeed: the load fails after staging.
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("procore.json");
        let mut config = seed();
        config.state_file = Some(state.clone());
        config.faults = FaultConfig {
            rules: vec![FaultRule {
                kind: FaultKind::ServiceUnavailable,
                probability: 1.0,
                writes_only: true,
            }],
            seed: 1,
            retry_after_secs: 1,
            slow_delay: Duration::from_millis(10),
        };
        let down = Sandbox::start(config).await.expect("sandbox");
        let addr = down.addr();
        let pipeline = pipeline_for(
            dir.path(),
            &down,
            "backoff_base_ms = 10\nbackoff_cap_ms = 100\nmax_retry_secs = 2\n",
        );
        let failed = sync(&pipeline, &SyncOptions::default())
            .await
            .expect("the run completes its staging");
        assert_eq!(failed.exit_code, EXIT_LOAD_INCOMPLETE);
        assert_eq!(down.snapshot().line_items.len(), 0);
        down.shutdown().await;

        // Later, Procore is back (same address, same data): replay the run, no Sage access.
        let mut config = seed();
        config.state_file = Some(state);
        config.bind = addr;
        let back = Sandbox::start(config).await.expect("sandbox");
        // No source access: the Sage export is gone.
        std::fs::remove_dir_all(dir.path().join("sage")).expect("remove the source");
        let outcome = replay(&failed.run_dir, &pipeline, &ReplayOptions::default())
            .await
            .expect("replay");
        let load = outcome.report.load.as_ref().expect("load");
        assert_eq!(load.failure, None);
        assert_eq!(load.counts.loaded(), 35);
        assert!(outcome.report.reconciled);
        assert_eq!(procore_state(&back), procore_state(&reference));
        assert_no_duplicates(&back.snapshot(), 21, 35);
        assert_eq!(
            sandbox_budget_totals(&back.cost_summary()),
            expected_budget_totals()
        );
        jcsync::run::verify(&outcome.run_dir).expect("the replay's own run verifies");
    });
}

#[test]
fn replay_into_a_fresh_procore_gives_the_same_direct_costs_and_force_resends_as_updates() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let original = Sandbox::start(seed()).await.expect("sandbox");
        let run = sync(
            &pipeline_for(dir.path(), &original, ""),
            &SyncOptions::default(),
        )
        .await
        .expect("sync");

        let fresh = Sandbox::start(seed()).await.expect("sandbox");
        let other = tempfile::tempdir().expect("tempdir");
        let into_fresh = pipeline_for(other.path(), &fresh, "");
        let outcome = replay(&run.run_dir, &into_fresh, &ReplayOptions::default())
            .await
            .expect("replay");
        assert_eq!(lines_sent(&outcome), 35);
        assert_eq!(procore_state(&fresh), procore_state(&original));

        // Again: the ledger says everything is there, nothing is sent.
        let before = sandbox_writes(&fresh.stats());
        let again = replay(&run.run_dir, &into_fresh, &ReplayOptions::default())
            .await
            .expect("replay");
        assert_eq!(
            again
                .report
                .load
                .as_ref()
                .expect("load")
                .counts
                .lines_unchanged,
            35
        );
        assert_eq!(sandbox_writes(&fresh.stats()), before);

        // --force: everything goes out again, as updates (no duplicate).
        let forced = replay(
            &run.run_dir,
            &into_fresh,
            &ReplayOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .expect("replay");
        assert_eq!(lines_sent(&forced), 35);
        assert!(sandbox_writes(&fresh.stats()) > before);
        assert_no_duplicates(&fresh.snapshot(), 21, 35);
        assert_eq!(procore_state(&fresh), procore_state(&original));
    });
}

#[test]
fn an_altered_truncated_or_removed_staged_file_is_refused_and_nothing_is_sent() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox::start(seed()).await.expect("sandbox");
        let pipeline = pipeline_for(dir.path(), &sandbox, "");
        let dry = SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        };
        type Damage = fn(&Path);
        let damages: [(&str, Damage); 4] = [
            ("altered", |p| {
                let mut b = std::fs::read(p).expect("read");
                let i = b.len() / 3;
                b[i] ^= 0x5a;
                std::fs::write(p, b).expect("write");
            }),
            ("truncated", |p| {
                let b = std::fs::read(p).expect("read");
                std::fs::write(p, &b[..b.len() / 2]).expect("write");
            }),
            ("removed", |p| std::fs::remove_file(p).expect("remove")),
            ("manifest removed", |p| {
                let run = p.parent().and_then(Path::parent).expect("run dir");
                std::fs::remove_file(run.join("manifest.json")).expect("remove");
            }),
        ];
        for (what, damage) in damages {
            let run = sync(&pipeline, &dry).await.expect("staged run");
            let part = run.run_dir.join("staged/part-00000.parquet");
            damage(&part);
            let before = sandbox.stats();
            let err = replay(&run.run_dir, &pipeline, &ReplayOptions::default())
                .await
                .expect_err(what)
                .to_string();
            let named = if what == "manifest removed" {
                "manifest.json"
            } else {
                "part-00000.parquet"
            };
            assert!(err.contains(named), "{what}: {err}");
            let after = sandbox.stats();
            assert_eq!(
                before.requests, after.requests,
                "{what}: a request was sent"
            );
        }
    });
}

#[test]
fn a_stage_only_sync_sends_nothing_and_its_replay_loads_what_a_full_sync_would() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let staged_only = Sandbox::start(seed()).await.expect("sandbox");
        let pipeline = pipeline_for(dir.path(), &staged_only, "");
        let run = sync(
            &pipeline,
            &SyncOptions {
                stage_only: true,
                ..SyncOptions::default()
            },
        )
        .await
        .expect("stage-only sync");
        let c = &run.report.counts;
        assert!(c.plan_skipped);
        assert!(
            run.report.reconciled,
            "extracted = filtered + quarantined + staged"
        );
        assert_eq!((c.staged, c.planned), (35, 0));
        assert!(run.report.load.is_none());
        assert!(!run.run_dir.join("requests.ndjson").exists());
        assert_eq!(sandbox_writes(&staged_only.stats()), 0, "nothing was sent");
        assert!(staged_only.snapshot().line_items.is_empty());
        assert!(
            jcsync::run::summary_text(&run.report, &run.run_dir).contains("jcsync replay"),
            "the summary says how to load the run"
        );

        // Replaying the staged run loads exactly what a full sync loads.
        let outcome = replay(&run.run_dir, &pipeline, &ReplayOptions::default())
            .await
            .expect("replay");
        assert_eq!(lines_sent(&outcome), 35);
        let full = Sandbox::start(seed()).await.expect("sandbox");
        let other = tempfile::tempdir().expect("tempdir");
        sync(
            &pipeline_for(other.path(), &full, ""),
            &SyncOptions::default(),
        )
        .await
        .expect("full sync");
        assert_eq!(procore_state(&staged_only), procore_state(&full));
    });
}
