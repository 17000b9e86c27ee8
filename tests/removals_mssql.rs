//! Removals on an incremental SQL Server sync: the change window reads only the rows stamped
//! since the watermark, so it cannot see a transaction that was purged; the key scan after the
//! load reads the key columns of every row and finds it, and its line leaves Procore.
//!
//! Sage is pySQLbridge serving a copy of the fixture CSVs; "purging" a row is removing it from
//! that copy and starting a new peer on it. The pipeline reads the peer through a forwarder on a
//! fixed 127.0.0.1 port, so every run has the same watermark scope (host and port are part of
//! it) and the second run really is incremental.

mod common;

use std::collections::BTreeSet;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::forwarder::Forwarder;
use common::peer::Peer;
use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};

const TRANSACTIONS: &str = "JCT_CURRENT__TRANSACTION.csv";

/// The Sage names of the columns a key scan selects, and nothing else.
const KEY_SCAN_SELECT: [&str; 9] = [
    "Job",
    "Extra",
    "Cost_Code",
    "Category",
    "Transaction_Type",
    "Accounting_Date",
    "Run",
    "Sequence",
    "Dist_Sequence",
];

/// Sage (a peer on a CSV copy, behind the forwarder), the sandbox, and a pipeline between them.
struct World {
    dir: tempfile::TempDir,
    sage: PathBuf,
    peer: Peer,
    forwarder: Forwarder,
    sandbox: SandboxHandle,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let peer = Peer::start(&sage, &[]);
        let forwarder = Forwarder::start(peer.port);
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("sandbox starts");
        set_sandbox_credentials();
        World {
            dir,
            sage,
            peer,
            forwarder,
            sandbox,
        }
    }

    fn pipeline(&self, sync_extra: &str) -> PathBuf {
        let source = self.peer.source_toml("sage_removals", "").replace(
            &format!("port = {}\n", self.peer.port),
            &format!("port = {}\n", self.forwarder.port),
        );
        assert!(source.contains(&format!("port = {}\n", self.forwarder.port)));
        let url = self.sandbox.url();
        let text = format!(
            r#"company = "DEMO"
{source}
[stage]
dir = {runs:?}
[sync]
type = "incremental"
max_removal_share = 1.0
{sync_extra}
[target]
kind = "procore"
api_url = "{url}"
login_url = "{url}"
company_id = {company}
client_id_env = "{CLIENT_ID_ENV}"
client_secret_env = "{CLIENT_SECRET_ENV}"
[load]
backoff_base_ms = 5
backoff_cap_ms = 100
max_retry_secs = 60
[report]
quarantine_exit_code = 0
"#,
            runs = self.dir.path().join("runs").display().to_string(),
            company = self.sandbox.company_id(),
        );
        let path = self.dir.path().join("pipeline.toml");
        std::fs::write(&path, text).expect("write pipeline");
        path
    }

    async fn sync(&self, sync_extra: &str) -> RunOutcome {
        let p = Pipeline::load(&self.pipeline(sync_extra)).expect("pipeline");
        sync(&p, &SyncOptions::default())
            .await
            .unwrap_or_else(|e| panic!("sync: {e}\npeer log:\n{}", self.peer.log()))
    }

    /// Purge the transaction with this Run and Sequence from Sage: remove its row from the CSV
    /// copy and serve the copy from a new peer (behind the same port).
    fn purge(&mut self, run: &str, sequence: &str) {
        let path = self.sage.join(TRANSACTIONS);
        let mut reader = csv::Reader::from_path(&path).expect("read transactions");
        let header = reader.headers().expect("header").clone();
        let col = |name: &str| header.iter().position(|h| h == name).expect("column");
        let (r, s) = (col("Run"), col("Sequence"));
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        let kept: Vec<&csv::StringRecord> = rows
            .iter()
            .filter(|row| !(row.get(r) == Some(run) && row.get(s) == Some(sequence)))
            .collect();
        assert_eq!(
            kept.len() + 1,
            rows.len(),
            "exactly one row {run}/{sequence}"
        );
        let mut w = csv::Writer::from_path(&path).expect("write transactions");
        w.write_record(&header).expect("header");
        for row in kept {
            w.write_record(row).expect("row");
        }
        w.flush().expect("flush");
        drop(w);
        let mut old = std::mem::replace(&mut self.peer, Peer::start(&self.sage, &[]));
        old.stop();
        self.forwarder
            .upstream
            .store(self.peer.port, Ordering::SeqCst);
    }

    /// origin_id of every line in the sandbox.
    fn sandbox_lines(&self) -> BTreeSet<String> {
        let db = self.sandbox.snapshot();
        let ids: BTreeSet<String> = db
            .line_items
            .values()
            .map(|l| l.origin_id.clone().expect("jcsync's line"))
            .collect();
        assert_eq!(ids.len(), db.line_items.len(), "no origin_id twice");
        ids
    }
}

/// The line origin_id of the staged row with this Run and Sequence.
fn staged_origin_id(run_dir: &Path, run: &str, sequence: &str) -> String {
    let staged = read_parquet(&staged_files(run_dir));
    let runs = strings(&staged, "run");
    let seqs = strings(&staged, "sequence");
    let ids = strings(&staged, "line_origin_id");
    let found: Vec<String> = (0..staged.num_rows())
        .filter(|&i| runs[i].as_deref() == Some(run) && seqs[i].as_deref() == Some(sequence))
        .map(|i| ids[i].clone().expect("origin id"))
        .collect();
    assert_eq!(found.len(), 1, "staged rows {run}/{sequence}: {found:?}");
    found.into_iter().next().expect("one")
}

/// The select lists of the peer's queries of the transaction table.
fn transaction_selects(queries: &str) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    for q in queries.lines() {
        let (Some(start), Some(end)) = (q.find("SELECT "), q.find(" FROM ")) else {
            continue;
        };
        if start > end || !q[end..].contains("JCT_CURRENT__TRANSACTION") {
            continue;
        }
        out.push(
            q[start + "SELECT ".len()..end]
                .split(',')
                .map(|c| {
                    c.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string()
                })
                .collect(),
        );
    }
    out
}

fn key_scans(queries: &str) -> usize {
    let keys: BTreeSet<String> = KEY_SCAN_SELECT.iter().map(|c| c.to_string()).collect();
    transaction_selects(queries)
        .iter()
        .filter(|s| **s == keys)
        .count()
}

fn removed_lines(outcome: &RunOutcome) -> u64 {
    outcome
        .report
        .removals
        .as_ref()
        .and_then(|r| r.outcome.as_ref())
        .map_or(0, |o| o.lines_removed)
}

/// The first run: no watermark, every row read, every loadable line in the sandbox.
async fn first_load(w: &World) -> (RunOutcome, BTreeSet<String>) {
    let first = w.sync("").await;
    assert_eq!(first.exit_code, 0, "{:?}", first.report.removals);
    let window = first.report.change_window.clone().expect("a change window");
    assert_eq!(window.watermark, None, "first incremental run");
    assert_eq!(first.report.counts.extracted, 51, "reads everything");
    assert_fixture_company_loaded(&w.sandbox);
    let lines = w.sandbox_lines();
    assert_eq!(lines.len(), FIXTURE_LINES);
    let in_procore = first.report.in_procore.as_ref().expect("in_procore");
    assert_eq!(in_procore.lines, FIXTURE_LINES as u64);
    // Nothing gone yet, but the key scan ran.
    let removals = first.report.removals.as_ref().expect("removals");
    assert_eq!(
        (removals.status.as_str(), removals.planned_lines),
        ("applied", 0)
    );
    assert_eq!(key_scans(&w.peer.queries()), 1, "{}", w.peer.queries());
    (first, lines)
}

/// The second run after a purge reads only the change window: the last row (2024-03-15 14:04,
/// the watermark, within the default 60 minutes of overlap).
fn assert_incremental(run: &RunOutcome) {
    let window = run.report.change_window.clone().expect("a change window");
    assert_eq!(
        window.watermark.as_deref(),
        Some("2024-03-15T14:04:00.000000")
    );
    assert_eq!(
        window.changed_since.as_deref(),
        Some("2024-03-15T13:04:00.000000")
    );
    assert_eq!(run.report.counts.extracted, 1, "only the change window");
}

#[test]
fn an_incremental_sql_server_run_detects_a_purged_row() {
    runtime().block_on(async {
        let mut w = World::start().await;
        let (first, before) = first_load(&w).await;
        // AP cost 8200 of job 1002 (Run 105, Sequence 35): its direct cost has a second line
        // (Sequence 36), so one line leaves and the direct cost stays.
        let gone = staged_origin_id(&first.run_dir, "105", "35");
        let sibling = staged_origin_id(&first.run_dir, "105", "36");
        assert!(before.contains(&gone) && before.contains(&sibling));
        let direct_costs = w.sandbox.snapshot().direct_costs.len();

        w.purge("105", "35");
        let second = w.sync("").await;
        assert_eq!(second.exit_code, 0, "{:?}", second.report.removals);
        assert_incremental(&second);
        let removals = second.report.removals.as_ref().expect("removals");
        assert_eq!(removals.status, "applied", "{removals:?}");
        assert_eq!(removals.planned_lines, 1, "{removals:?}");
        assert_eq!(removals.planned_direct_costs, 0, "{removals:?}");
        let outcome = removals.outcome.as_ref().expect("removals were sent");
        assert_eq!(outcome.lines_removed, 1, "{outcome:?}");
        assert_eq!(outcome.direct_costs_removed, 0, "{outcome:?}");
        assert_eq!(outcome.already_gone, 0, "{outcome:?}");
        assert!(outcome.failed.is_empty(), "{outcome:?}");
        assert_eq!(outcome.by_project.len(), 1, "{outcome:?}");

        let after = w.sandbox_lines();
        assert!(!after.contains(&gone), "{gone} is still in Procore");
        let mut expected = before.clone();
        expected.remove(&gone);
        assert_eq!(after, expected, "every other line is still there");
        assert!(after.contains(&sibling));
        assert_eq!(w.sandbox.snapshot().direct_costs.len(), direct_costs);
        let in_procore = second.report.in_procore.as_ref().expect("in_procore");
        assert_eq!(in_procore.lines, after.len() as u64, "ledger = Procore");
        assert_eq!(in_procore.removed, 1);

        // This run's peer saw the key scan: one SELECT of the key columns only, besides the
        // change window's read of whole rows.
        let queries = w.peer.queries();
        assert_eq!(key_scans(&queries), 1, "{queries}");
        let selects = transaction_selects(&queries);
        assert!(
            selects.iter().any(|s| s.contains("Amount") && s.len() > 9),
            "the change window reads whole rows: {queries}"
        );
        let scan = queries
            .lines()
            .find(|q| q.contains("SELECT [Job]") && !q.contains("[Amount]"))
            .expect("the key scan's statement");
        assert!(!scan.contains("Date_Stamp"), "{scan}");

        // Idempotent: the next run finds nothing more to remove.
        let third = w.sync("").await;
        assert_eq!(removed_lines(&third), 0);
        assert_eq!(
            third.report.removals.as_ref().expect("removals").status,
            "applied"
        );
        assert_eq!(w.sandbox_lines(), expected);
    });
}

#[test]
fn with_removals_off_an_incremental_run_neither_scans_nor_removes() {
    runtime().block_on(async {
        let mut w = World::start().await;
        let (first, before) = first_load(&w).await;
        // AP cost 345.60 of job 1002 (Run 103, Sequence 30).
        let gone = staged_origin_id(&first.run_dir, "103", "30");
        assert!(before.contains(&gone));

        w.purge("103", "30");
        let off = w.sync("removals = \"off\"").await;
        assert_eq!(off.exit_code, 0, "{:?}", off.report.removals);
        assert_incremental(&off);
        let removals = off.report.removals.as_ref().expect("removals");
        assert_eq!(removals.status, "skipped", "{removals:?}");
        assert_eq!(removals.planned_lines, 0);
        assert!(removals.outcome.is_none(), "{removals:?}");
        assert_eq!(removed_lines(&off), 0);
        assert_eq!(w.sandbox_lines(), before, "nothing removed");
        let in_procore = off.report.in_procore.as_ref().expect("in_procore");
        assert_eq!(in_procore.lines, before.len() as u64);
        let queries = w.peer.queries();
        assert_eq!(key_scans(&queries), 0, "no key scan: {queries}");
        assert!(
            !transaction_selects(&queries).is_empty(),
            "the change window was read: {queries}"
        );

        // Turned back on, the next incremental run finds the line the off run left.
        let on = w.sync("").await;
        assert_incremental(&on);
        assert_eq!(removed_lines(&on), 1, "{:?}", on.report.removals);
        let mut expected = before;
        expected.remove(&gone);
        assert_eq!(w.sandbox_lines(), expected);
        assert_eq!(
            on.report.in_procore.as_ref().expect("in_procore").lines,
            expected.len() as u64
        );
    });
}
