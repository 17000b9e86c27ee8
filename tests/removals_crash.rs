//! kill -9 of a real `jcsync sync` while it removes lines, then a plain re-run: Procore ends
//! exactly equal to Sage (no stale line, no line removed twice, the ledger equal to Procore).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jcsync::sandbox::{Sandbox, SandboxConfig};

fn jcsync_sync(pipeline: &Path) -> std::process::Child {
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

fn deletes(stats: &jcsync::sandbox::Stats) -> u64 {
    stats
        .requests
        .iter()
        .filter(|(route, _)| route.starts_with("DELETE"))
        .flat_map(|(_, by)| by.values())
        .sum()
}

/// Drop every third cost row of the transaction file.
fn purge(dir: &Path) -> usize {
    let path = dir.join("JCT_CURRENT__TRANSACTION.csv");
    let mut reader = csv::Reader::from_path(&path).expect("read");
    let header = reader.headers().expect("header").clone();
    let ty = header
        .iter()
        .position(|h| h == "Transaction_Type")
        .expect("type column");
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut cost = 0;
    for r in reader.records() {
        let r = r.expect("record");
        let is_cost = r.get(ty).is_some_and(|t| t.trim().ends_with(" cost"))
            && !r.get(ty).is_some_and(|t| t.contains("Committed"));
        if is_cost {
            cost += 1;
            if cost % 3 == 0 {
                dropped += 1;
                continue;
            }
        }
        kept.push(r);
    }
    let mut w = csv::Writer::from_path(&path).expect("write");
    w.write_record(&header).expect("header");
    for r in &kept {
        w.write_record(r).expect("row");
    }
    w.flush().expect("flush");
    dropped
}

/// The line origin ids of the newest complete run's staged snapshot, and its report.
fn newest_run(runs: &Path) -> (BTreeSet<String>, serde_json::Value) {
    let mut dirs: Vec<_> = std::fs::read_dir(runs)
        .expect("runs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    dirs.sort();
    let newest = dirs.last().expect("a complete run");
    let staged = read_parquet(&staged_files(newest));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest.join("report.json")).expect("report"))
            .expect("json");
    let ids = strings(&staged, "line_origin_id")
        .into_iter()
        .map(|s| s.expect("id"))
        .collect();
    (ids, report)
}

#[test]
fn a_sync_killed_while_it_removes_is_finished_exactly_by_the_next() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut killed_mid_removals = 0;
    for delay_ms in [300u64, 700, 1100, 1500] {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
        config.write_latency = Duration::from_millis(200);
        let sandbox = rt.block_on(Sandbox::start(config)).expect("sandbox");
        let pipeline = write_load_pipeline(
            dir.path(),
            &sage,
            sandbox.url(),
            sandbox.company_id(),
            "max_projects_in_flight = 1\n[sync]\nmax_removal_share = 1.0\n",
        );
        let first = jcsync_sync(&pipeline).wait().expect("first run");
        assert_eq!(
            first.code(),
            Some(2),
            "the fixtures load (some rows quarantined)"
        );
        let loaded = sandbox.snapshot().line_items.len();
        let purged = purge(&sage);
        assert!(purged >= 5, "purged {purged}");

        let mut child = jcsync_sync(&pipeline);
        // The second run reads, finds nothing to send, then removes one line at a time.
        let started = Instant::now();
        while deletes(&sandbox.stats()) == 0 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms - 300));
        let finished_before_kill = child.try_wait().expect("try_wait").is_some();
        child.kill().ok(); // SIGKILL
        child.wait().expect("wait");
        let at_kill = sandbox.snapshot().line_items.len();
        if !finished_before_kill && at_kill < loaded && at_kill + purged > loaded {
            killed_mid_removals += 1;
        }

        let status = jcsync_sync(&pipeline).wait().expect("third run");
        assert_eq!(status.code(), Some(2), "the re-run completes");
        let (staged, report) = newest_run(&dir.path().join("runs"));
        let db = sandbox.snapshot();
        let in_procore: BTreeSet<String> = db
            .line_items
            .values()
            .map(|l| l.origin_id.clone().expect("jcsync's"))
            .collect();
        assert_eq!(in_procore.len(), db.line_items.len(), "no duplicate line");
        assert!(
            in_procore.is_subset(&staged),
            "killed after {delay_ms} ms: stale lines {:?}",
            in_procore.difference(&staged).collect::<Vec<_>>()
        );
        assert_eq!(
            report["in_procore"]["lines"].as_u64(),
            Some(db.line_items.len() as u64),
            "killed after {delay_ms} ms: the ledger is what Procore holds"
        );
        assert!(db.line_items.len() < loaded, "lines were removed");
        let quarantined_at_load = report["load"]["counts"]["quarantined"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>());
        assert_eq!(
            db.line_items.len() as u64 + quarantined_at_load,
            staged.len() as u64,
            "every staged line is in Procore or quarantined"
        );
        let with_lines: BTreeSet<i64> = db.line_items.values().map(|l| l.direct_cost_id).collect();
        assert!(
            db.direct_costs.keys().all(|id| with_lines.contains(id)),
            "no direct cost without a line"
        );
        rt.block_on(sandbox.shutdown());
    }
    assert!(
        killed_mid_removals >= 1,
        "at least one kill landed in the middle of the removals"
    );
}
