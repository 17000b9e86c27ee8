//! `jcsync reconcile` checks only what the chosen snapshot covers (issue 16, §4; DOMAIN.md §5):
//! lines dated before a `[sync] since` window, and the lines of a job that vanished from Sage,
//! are reported apart and never taken for orphans; and `--repair` deletes only what a sync
//! would (`[sync] removals`, `max_removal_share`, `vanished_jobs`, the ledger's lock).

mod common;

use std::path::PathBuf;

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, SyncOptions};
use jcsync::reconcile::{
    reconcile, render, DriftCounts, ReconcileOptions, ReconcileOutcome, Unchecked,
};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};

/// The fixtures' loadable lines and their total (fixtures/expected/summary.json).
const LINES: u64 = 35;
const TOTAL: &str = "23591.41";

struct World {
    dir: tempfile::TempDir,
    sage: PathBuf,
    pipeline: PathBuf,
    sandbox: SandboxHandle,
}

impl World {
    /// A sandbox, a copy of the Sage fixtures, and a first sync of them from the beginning of
    /// time.
    async fn synced() -> World {
        set_sandbox_credentials();
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("the sandbox must start on 127.0.0.1");
        let pipeline = dir.path().join("pipeline.toml");
        let world = World {
            dir,
            sage,
            pipeline,
            sandbox,
        };
        world.set_sync("");
        let outcome = sync(&world.load(), &SyncOptions::default())
            .await
            .expect("sync");
        assert_eq!(outcome.exit_code, 0, "first sync");
        assert_eq!(world.sandbox.snapshot().line_items.len() as u64, LINES);
        world
    }

    /// Write the pipeline with this `[sync]` section.
    fn set_sync(&self, sync_section: &str) {
        let path = write_load_pipeline(
            self.dir.path(),
            &self.sage,
            self.sandbox.url(),
            self.sandbox.company_id(),
            "backoff_base_ms = 10\nbackoff_cap_ms = 200\n",
        );
        assert_eq!(path, self.pipeline);
        let mut text = std::fs::read_to_string(&path).expect("read pipeline");
        text.push_str(&format!(
            "[report]\nquarantine_exit_code = 0\n[sync]\n{sync_section}\n"
        ));
        std::fs::write(&path, text).expect("write pipeline");
    }

    fn load(&self) -> Pipeline {
        Pipeline::load(&self.pipeline).expect("pipeline")
    }

    async fn sync(&self) -> u8 {
        sync(&self.load(), &SyncOptions::default())
            .await
            .expect("sync")
            .exit_code
    }

    async fn reconcile(&self, repair: bool) -> ReconcileOutcome {
        let options = ReconcileOptions {
            repair,
            ..ReconcileOptions::default()
        };
        reconcile(&self.load(), &options).await.expect("reconcile")
    }

    fn lines_in_procore(&self) -> u64 {
        self.sandbox.snapshot().line_items.len() as u64
    }
}

/// The row of `unchecked` of a job and reason: (lines, amount).
fn unchecked(outcome: &ReconcileOutcome, job: &str, reason: Unchecked) -> (u64, String) {
    let c = &outcome.reconciliation.comparison;
    let u = c
        .unchecked
        .iter()
        .find(|u| u.job == job && u.reason == reason)
        .unwrap_or_else(|| panic!("unchecked {reason:?} of job {job}: {:#?}", c.unchecked));
    (u.lines, u.amount.clone())
}

#[test]
fn lines_before_a_since_window_are_out_of_window_not_orphaned() {
    runtime().block_on(async {
        let world = World::synced().await;
        // The pipeline now syncs only from 2024-02-01: the January lines stay in Procore
        // (a sync never removes outside its window) and the newest deep run stages none of them.
        world.set_sync("since = \"2024-02-01\"");
        assert_eq!(world.sync().await, 0, "the windowed sync");
        assert_eq!(world.lines_in_procore(), LINES, "the sync removed nothing");

        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(outcome.exit_code, 0, "{}", render::text(&outcome));
        assert!(c.drift.is_empty(), "{:#?}", c.drift);
        assert_eq!(c.since, "2024-02-01");
        // Dated before the window (fixture rows of 2024-01-15 to 2024-01-31): job 1001 has 12
        // of them (1250.00 + 2.68 + 480.50 + 1.01 + 10.13 + 1700.00 + 382.50 + 1125.00 +
        // 1700.00 + 7.00 + 1275.00 + 360.50), job 1002 three (900.00 + 0.30 + 522.50).
        assert_eq!(
            c.counts,
            DriftCounts {
                out_of_window: 15,
                ..DriftCounts::default()
            }
        );
        assert_eq!(
            unchecked(&outcome, "1001", Unchecked::OutOfWindow),
            (12, "8294.32".into())
        );
        assert_eq!(
            unchecked(&outcome, "1002", Unchecked::OutOfWindow),
            (3, "1422.80".into())
        );
        assert_eq!(c.unchecked.len(), 2);
        // Compared: the window's lines only, equal to the cent.
        assert_eq!((c.sage_lines, c.procore_lines), (LINES - 15, LINES - 15));
        assert_eq!(
            (c.sage.as_str(), c.procore.as_str()),
            ("13874.29", "13874.29")
        );
        let text = render::text(&outcome);
        assert!(
            text.contains("job 1001: 12 lines, 8294.32 dated before the run's `since` window"),
            "{text}"
        );
        let html = render::html(&outcome);
        assert!(
            html.contains("job 1002: 3 lines, 1422.80 dated before"),
            "{html}"
        );

        let repaired = world.reconcile(true).await;
        let r = repaired.repair.as_ref().expect("repair report");
        assert_eq!((r.deleted, r.invalidated), (0, 0));
        assert!(r.not_repaired.is_empty(), "{:#?}", r.not_repaired);
        assert_eq!(world.lines_in_procore(), LINES, "--repair deleted nothing");
        assert_eq!(repaired.exit_code, 0);
        assert_eq!(repaired.reconciliation.comparison.counts.out_of_window, 15);
    });
}
