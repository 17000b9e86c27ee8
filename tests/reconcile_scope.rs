//! `jcsync reconcile` checks only what the chosen snapshot covers (issue 16, §4; DOMAIN.md §5):
//! lines dated before a `[sync] since` window, and the lines of a job that vanished from Sage,
//! are reported apart and never taken for orphans; and `--repair` deletes only what a sync
//! would (`[sync] removals`, `max_removal_share`, `vanished_jobs`, the ledger's lock).

mod common;

use std::path::PathBuf;

use common::*;
use jcsync::config::Pipeline;
use jcsync::ledger::LedgerLock;
use jcsync::pipeline::{sync, SyncOptions, EXIT_REMOVALS_HELD};
use jcsync::reconcile::{
    reconcile, render, DriftCounts, ReconcileOptions, ReconcileOutcome, Unchecked, EXIT_DRIFT,
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
        World::synced_with(std::time::Duration::ZERO).await
    }

    /// As [`World::synced`], each write to the sandbox taking `write_latency`.
    async fn synced_with(write_latency: std::time::Duration) -> World {
        set_sandbox_credentials();
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
        config.write_latency = write_latency;
        let sandbox = Sandbox::start(config)
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
        self.sync_run().await.exit_code
    }

    async fn sync_run(&self) -> jcsync::pipeline::RunOutcome {
        sync(&self.load(), &SyncOptions::default())
            .await
            .expect("sync")
    }

    async fn reconcile(&self, repair: bool) -> ReconcileOutcome {
        self.reconcile_with(repair, false).await
    }

    async fn reconcile_with(&self, repair: bool, allow_removals: bool) -> ReconcileOutcome {
        let options = ReconcileOptions {
            repair,
            allow_removals,
            ..ReconcileOptions::default()
        };
        reconcile(&self.load(), &options).await.expect("reconcile")
    }

    /// Stage (not load) the Sage copy again: the newest complete deep run.
    async fn stage_again(&self) {
        let options = SyncOptions {
            stage_only: true,
            ..SyncOptions::default()
        };
        sync(&self.load(), &options).await.expect("stage-only sync");
    }

    /// Drop every transaction row of `job` from the Sage copy.
    fn drop_job(&self, job: &str) {
        let path = self.sage.join("JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(&path).expect("read");
        let before = text.lines().count();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.split(',').next().map(|j| j.trim_matches('"').trim()) != Some(job))
            .collect();
        assert!(kept.len() < before, "job {job} has rows");
        std::fs::write(&path, kept.join("\n") + "\n").expect("write");
    }

    /// Remove physical line `n` (1 = header) of the transaction file, checking its amount.
    fn drop_line(&self, n: usize, amount: &str) {
        let path = self.sage.join("JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[n - 1].split(',').any(|f| f == amount),
            "{}",
            lines[n - 1]
        );
        lines.remove(n - 1);
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    }

    /// The CLI on this pipeline: (exit status, stdout).
    /// `jcsync reconcile PIPELINE --repair` in a child process, its output discarded.
    fn spawn_repair(&self) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"))
            .arg("reconcile")
            .arg(&self.pipeline)
            .arg("--repair")
            .env(CLIENT_ID_ENV, "demo-client")
            .env(CLIENT_SECRET_ENV, "demo-secret")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start jcsync reconcile --repair")
    }

    fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"))
            .arg("reconcile")
            .arg(&self.pipeline)
            .args(args)
            .env(CLIENT_ID_ENV, "demo-client")
            .env(CLIENT_SECRET_ENV, "demo-secret")
            .output()
            .expect("run jcsync");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
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

/// Job 1003's loadable lines in the fixtures: 640.00 + 96.00 + 612.40 + 33.33 + 310.75
/// (its 250.00 "General Ledger only" row is not a cost).
const JOB_1003: (u64, &str) = (5, "1692.48");

#[test]
fn a_vanished_job_kept_by_the_pipeline_is_read_back_and_reported_not_drift() {
    runtime().block_on(async {
        let world = World::synced().await;
        world.drop_job("1003");
        assert_eq!(world.sync().await, 0, "vanished_jobs = \"keep\" (the default)");
        assert_eq!(world.lines_in_procore(), LINES);

        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(outcome.exit_code, 0, "{}", render::text(&outcome));
        assert!(c.drift.is_empty(), "{:#?}", c.drift);
        assert_eq!(
            c.counts,
            DriftCounts {
                vanished_kept: JOB_1003.0,
                ..DriftCounts::default()
            }
        );
        assert_eq!(
            unchecked(&outcome, "1003", Unchecked::VanishedKept),
            (JOB_1003.0, JOB_1003.1.to_string())
        );
        assert_eq!(c.vanished_jobs.len(), 1);
        let v = &c.vanished_jobs[0];
        assert_eq!(
            (v.job.as_str(), v.action, v.lines, v.amount.as_str()),
            ("1003", "keep", JOB_1003.0, JOB_1003.1)
        );
        assert!(v.project_id.is_some(), "its project was read back");
        assert_eq!(c.sage, "21898.93", "{TOTAL} less job 1003");
        assert_eq!(c.procore, c.sage);
        let text = render::text(&outcome);
        assert!(
            text.contains(
                "job 1003: 5 lines, 1692.48 kept in Procore because `[sync] vanished_jobs = \"keep\"`"
            ),
            "{text}"
        );
        // The JSON says the same.
        let (code, json) = world.cli(&["--json"]);
        assert_eq!(code, Some(0));
        let json: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(json["counts"]["vanished_kept"], 5);
        assert_eq!(json["vanished_jobs"][0]["amount"], "1692.48");
        assert_eq!(json["unchecked"][0]["reason"], "vanished_kept");

        let repaired = world.reconcile(true).await;
        assert_eq!(repaired.repair.as_ref().map(|r| r.deleted), Some(0));
        assert_eq!(repaired.exit_code, 0);
        assert_eq!(world.lines_in_procore(), LINES, "kept lines are never deleted");
    });
}

#[test]
fn a_vanished_job_with_remove_is_orphaned_and_its_repair_obeys_the_share_guard() {
    runtime().block_on(async {
        let world = World::synced().await;
        world.drop_job("1003");
        world.set_sync("vanished_jobs = \"remove\"");
        // 5 of 35 lines (14 %) is more than max_removal_share = 0.05: the sync holds them.
        assert_eq!(world.sync().await, EXIT_REMOVALS_HELD);
        assert_eq!(world.lines_in_procore(), LINES);

        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(outcome.exit_code, EXIT_DRIFT, "{}", render::text(&outcome));
        assert_eq!(
            c.counts,
            DriftCounts {
                orphaned: JOB_1003.0,
                ..DriftCounts::default()
            }
        );
        assert!(c.drift.iter().all(|d| d.job == "1003"));
        let v = &c.vanished_jobs[0];
        assert_eq!(
            (v.job.as_str(), v.action, v.lines, v.amount.as_str()),
            ("1003", "remove", JOB_1003.0, JOB_1003.1)
        );
        assert!(render::text(&outcome).contains("vanished: job 1003: 5 lines, 1692.48 orphaned"));

        // The repair would delete 5 of the ledger's 35 lines: held back, as the sync did.
        let held = world.reconcile(true).await;
        let r = held.repair.as_ref().expect("repair");
        assert_eq!(held.exit_code, EXIT_REMOVALS_HELD);
        assert_eq!(r.deleted, 0);
        let why = r.held.as_deref().expect("held");
        assert!(why.contains("5 of the target's 35 lines"), "{why}");
        assert!(why.contains("--allow-removals"), "{why}");
        assert_eq!(r.not_repaired.len(), 5, "{:#?}", r.not_repaired);
        assert_eq!(
            world.lines_in_procore(),
            LINES,
            "nothing deleted while held"
        );
        let (code, _) = world.cli(&["--repair"]);
        assert_eq!(code, Some(i32::from(EXIT_REMOVALS_HELD)));
        assert_eq!(world.lines_in_procore(), LINES);

        // Confirmed: the job's lines go, and Procore equals Sage.
        let done = world.reconcile_with(true, true).await;
        let r = done.repair.as_ref().expect("repair");
        assert_eq!((r.deleted, r.held.as_deref()), (JOB_1003.0, None));
        assert_eq!(done.exit_code, 0, "{}", render::text(&done));
        assert_eq!(world.lines_in_procore(), LINES - JOB_1003.0);
        let c = &done.reconciliation.comparison;
        assert_eq!(
            (c.sage.as_str(), c.procore.as_str()),
            ("21898.93", "21898.93")
        );
    });
}

#[test]
fn removals_off_or_plan_keep_the_repair_from_deleting() {
    runtime().block_on(async {
        let world = World::synced().await;
        // Line 7 (480.50) leaves Sage; a deep snapshot is staged (not loaded).
        world.drop_line(7, "480.5");
        world.stage_again().await;
        for (mode, says) in [
            ("off", "`[sync] removals = \"off\"`"),
            ("plan", "`[sync] removals = \"plan\"`"),
        ] {
            world.set_sync(&format!("removals = \"{mode}\""));
            let outcome = world.reconcile(true).await;
            let r = outcome.repair.as_ref().expect("repair");
            assert_eq!(r.before.orphaned, 1, "{mode}");
            assert_eq!((r.deleted, r.held.as_deref()), (0, None), "{mode}");
            assert_eq!(r.not_repaired.len(), 1, "{mode}: {:#?}", r.not_repaired);
            assert_eq!(r.not_repaired[0].class, "orphaned");
            assert!(
                r.not_repaired[0].why.contains(says),
                "{:?}",
                r.not_repaired[0]
            );
            assert_eq!(outcome.exit_code, EXIT_DRIFT, "{mode}: the orphan stays");
            assert_eq!(outcome.reconciliation.comparison.counts.orphaned, 1);
            assert_eq!(world.lines_in_procore(), LINES, "{mode}: nothing deleted");
        }
        // `apply` (the default): 1 of 35 lines is within the share; deleted.
        world.set_sync("");
        let outcome = world.reconcile(true).await;
        assert_eq!(outcome.repair.as_ref().map(|r| r.deleted), Some(1));
        assert_eq!(outcome.exit_code, 0, "{}", render::text(&outcome));
        assert_eq!(world.lines_in_procore(), LINES - 1);
    });
}

#[test]
fn a_repair_holds_the_ledger_lock_and_is_turned_away_while_another_holds_it() {
    runtime().block_on(async {
        let world = World::synced_with(std::time::Duration::from_millis(1000)).await;
        world.drop_line(7, "480.5");
        world.stage_again().await;
        let ledger = world.load().config.ledger_path();

        // Another run holds the ledger: the repair is turned away (4), nothing deleted; a
        // plain reconcile takes no lock and still reads.
        {
            let _held = LedgerLock::acquire(&ledger, "sync other.toml").expect("lock");
            let err = reconcile(
                &world.load(),
                &ReconcileOptions {
                    repair: true,
                    ..ReconcileOptions::default()
                },
            )
            .await
            .expect_err("the ledger is busy");
            assert!(matches!(err, jcsync::Error::LedgerBusy { .. }), "{err}");
            assert_eq!(world.cli(&["--repair"]).0, Some(4));
            assert_eq!(world.cli(&[]).0, Some(i32::from(EXIT_DRIFT)));
            assert_eq!(world.lines_in_procore(), LINES);
        }

        // While the repair deletes (each write takes 1 s), a sync is turned away with 4.
        let mut child = world.spawn_repair();
        let lock_file = LedgerLock::path_for(&ledger);
        let started = std::time::Instant::now();
        loop {
            let holder = std::fs::read_to_string(&lock_file).unwrap_or_default();
            if holder.contains("reconcile --repair") {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the repair never took the ledger's lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let busy = match sync(&world.load(), &SyncOptions::default()).await {
            Ok(o) => o.exit_code,
            Err(e) => jcsync::run::finish::exit_status_of(&e),
        };
        assert_eq!(busy, 4, "a sync during the repair is turned away");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "the repair finished");
        assert_eq!(world.lines_in_procore(), LINES - 1);

        // A line deleted in Procore is resent by a replay, still under the repair's lock: no
        // sync can load a newer version between the read-back and the resend.
        let line = *world
            .sandbox
            .snapshot()
            .line_items
            .keys()
            .next()
            .expect("a line");
        world.sandbox.delete_line_item(line).expect("delete");
        let runs_dir = world.dir.path().join("runs");
        let runs_before: Vec<_> = std::fs::read_dir(&runs_dir)
            .expect("runs")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        let mut child = world.spawn_repair();
        let started = std::time::Instant::now();
        let replaying = loop {
            let new_run = std::fs::read_dir(&runs_dir)
                .expect("runs")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.is_dir() && !runs_before.contains(p));
            if let Some(dir) = new_run {
                break dir;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the repair never started its replay"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        let holder = std::fs::read_to_string(&lock_file).unwrap_or_default();
        assert!(
            !replaying.join("manifest.json").exists(),
            "the replay ended before it was looked at (each write takes 1 s)"
        );
        assert!(
            holder.contains("reconcile --repair"),
            "the replay runs under the repair's lock: {holder}"
        );
        let busy = match sync(&world.load(), &SyncOptions::default()).await {
            Ok(o) => o.exit_code,
            Err(e) => jcsync::run::finish::exit_status_of(&e),
        };
        assert_eq!(busy, 4, "a sync during the repair's replay is turned away");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "the repair finished");
        assert_eq!(
            world.lines_in_procore(),
            LINES - 1,
            "the deleted line is back"
        );
    });
}

#[test]
fn a_repair_refuses_a_snapshot_older_than_a_run_that_loaded_after_it() {
    runtime().block_on(async {
        let world = World::synced().await;
        let deep = std::fs::read_dir(world.dir.path().join("runs"))
            .expect("runs")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("manifest.json").is_file())
            .expect("the first run");
        let deep_id = deep
            .file_name()
            .and_then(|n| n.to_str())
            .expect("id")
            .to_string();
        // Sage changes line 7's amount (480.5 → 480.75); the next deep run loads it.
        let path = world.sage.join("JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Its Amount is the field before the vendor (Unit_Cost is 480.5 too).
        assert!(lines[6].contains(",480.5,V100"), "{}", lines[6]);
        lines[6] = lines[6].replacen(",480.5,V100", ",480.75,V100", 1);
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let later = world.sync_run().await;
        assert_eq!(later.exit_code, 0);
        let later_id = later.report.run_id.clone();
        assert_ne!(later_id, deep_id);

        // Without --run: the newest run, equal.
        let outcome = world.reconcile(false).await;
        assert_eq!(outcome.reconciliation.run_id, later_id);
        assert!(outcome.reconciliation.later_loads.is_empty());
        assert_eq!(outcome.exit_code, 0, "{}", render::text(&outcome));

        // Against the older run named: a later run that read every row loaded since, and
        // cannot be laid over it. The comparison says so.
        let older = ReconcileOptions {
            run: Some(deep.clone()),
            ..ReconcileOptions::default()
        };
        let outcome = reconcile(&world.load(), &older).await.expect("reconcile");
        let r = &outcome.reconciliation;
        assert_eq!(r.run_id, deep_id);
        assert_eq!(r.later_loads, vec![later_id.clone()]);
        assert!(r.overlaid.is_empty());
        assert_eq!(r.comparison.counts.changed, 1, "{}", render::text(&outcome));
        assert!(render::text(&outcome).contains(&format!("run(s) {later_id} loaded")));

        // --repair would send 480.50 back: it refuses, and nothing changes.
        let err = reconcile(
            &world.load(),
            &ReconcileOptions {
                repair: true,
                ..older
            },
        )
        .await
        .expect_err("refused");
        let message = err.to_string();
        assert!(message.contains(&later_id), "{message}");
        assert!(message.contains("nothing was repaired"), "{message}");
        let deep_arg = deep.display().to_string();
        assert_eq!(world.cli(&["--run", &deep_arg, "--repair"]).0, Some(1));
        let db = world.sandbox.snapshot();
        assert_eq!(
            db.line_items
                .values()
                .filter(|l| l.amount.to_string() == "480.75")
                .count(),
            1,
            "the later run's amount stays"
        );
        assert_eq!(db.line_items.len() as u64, LINES);
    });
}

#[test]
fn a_ledger_job_whose_project_procore_does_not_show_is_named_not_silently_skipped() {
    runtime().block_on(async {
        let world = World::synced().await;
        // A job jcsync loaded once into a project Procore no longer shows (deleted, renumbered):
        // its ledger entries stay, no project matches it.
        let ledger = world.dir.path().join("runs/ledger.sqlite");
        let conn = rusqlite::Connection::open(&ledger).expect("open ledger");
        let added = conn
            .execute(
                "INSERT INTO loaded (target, origin_id, kind, job, procore_id, payload_hash, \
                 run_id, updated_at) SELECT target, 'jcsync:DEMO:line:gone-project-' || n, \
                 'line', '7777', 1, 'x', run_id, updated_at FROM loaded, \
                 (SELECT 1 AS n UNION SELECT 2) WHERE kind = 'line' LIMIT 2",
                [],
            )
            .expect("insert");
        assert_eq!(added, 2);
        drop(conn);

        let outcome = world.reconcile(false).await;
        let r = &outcome.reconciliation;
        assert_eq!(
            r.ledger_jobs_without_project,
            vec![jcsync::reconcile::LedgerJob {
                job: "7777".into(),
                lines: 2
            }]
        );
        let text = render::text(&outcome);
        assert!(
            text.contains(
                "note: job 7777: the ledger holds 2 jcsync line(s) in Procore, but no Procore \
                 project matches the job"
            ),
            "{text}"
        );
        assert!(render::html(&outcome).contains("job 7777: the ledger holds 2 jcsync line(s)"));
        // What could be read back still equals Sage.
        assert_eq!(outcome.exit_code, 0, "{text}");
        assert_eq!(r.comparison.procore, TOTAL);
    });
}
