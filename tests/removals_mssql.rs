//! Removals on an incremental SQL Server sync: the change window reads only the rows stamped
//! since the watermark, so it cannot see a transaction that was purged; the key scan after the
//! load reads the key columns of every row and finds it, and its line leaves Procore. And
//! `reconcile` on a target kept by incremental runs: the first one (no watermark) is the
//! snapshot, each later one is laid over it.
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
use jcsync::reconcile::{reconcile, render, DriftClass, ReconcileOptions, ReconcileOutcome};
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

    /// Edit Sage's transaction table (the CSV copy) and serve it from a new peer (behind the
    /// same port).
    fn rewrite(&mut self, edit: impl FnOnce(&csv::StringRecord, &mut Vec<csv::StringRecord>)) {
        let path = self.sage.join(TRANSACTIONS);
        let mut reader = csv::Reader::from_path(&path).expect("read transactions");
        let header = reader.headers().expect("header").clone();
        let mut rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        edit(&header, &mut rows);
        let mut w = csv::Writer::from_path(&path).expect("write transactions");
        w.write_record(&header).expect("header");
        for row in &rows {
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

    /// Purge the transaction with this Run and Sequence from Sage.
    fn purge(&mut self, run: &str, sequence: &str) {
        self.rewrite(|header, rows| {
            let col = |name: &str| header.iter().position(|h| h == name).expect("column");
            let (r, s) = (col("Run"), col("Sequence"));
            let before = rows.len();
            rows.retain(|row| !(row.get(r) == Some(run) && row.get(s) == Some(sequence)));
            assert_eq!(rows.len() + 1, before, "exactly one row {run}/{sequence}");
        });
    }

    async fn reconcile(&self, repair: bool) -> ReconcileOutcome {
        let p = Pipeline::load(&self.pipeline("")).expect("pipeline");
        let options = ReconcileOptions {
            repair,
            ..ReconcileOptions::default()
        };
        reconcile(&p, &options)
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}\npeer log:\n{}", self.peer.log()))
    }

    /// The sandbox's line of this origin_id.
    fn line_of(&self, origin: &str) -> jcsync::sandbox::state::LineItem {
        let db = self.sandbox.snapshot();
        let mut found = db
            .line_items
            .values()
            .filter(|l| l.origin_id.as_deref() == Some(origin));
        let line = found.next().unwrap_or_else(|| panic!("no line {origin}"));
        assert!(found.next().is_none(), "{origin} twice");
        line.clone()
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

/// Edits Sage as a day of bookkeeping would: transaction 105/36's amount corrected (and its
/// change stamp moved), a new transaction 105/37 on the same invoice, 105/35 purged.
fn a_day_of_changes(w: &mut World) {
    w.purge("105", "35");
    w.rewrite(|header, rows| {
        let col = |name: &str| header.iter().position(|h| h == name).expect("column");
        let (run, seq) = (col("Run"), col("Sequence"));
        let at = rows
            .iter()
            .position(|r| r.get(run) == Some("105") && r.get(seq) == Some("36"))
            .expect("row 105/36");
        let set = |row: &csv::StringRecord, changes: &[(&str, &str)]| {
            let mut cells: Vec<String> = row.iter().map(str::to_string).collect();
            for (name, value) in changes {
                cells[col(name)] = value.to_string();
            }
            csv::StringRecord::from(cells)
        };
        let added = set(
            &rows[at],
            &[
                ("Sequence", "37"),
                ("Amount", "77.77"),
                ("Description", "Drywall patch second visit"),
                ("Date_Stamp", "2024-03-16"),
                ("Time_Stamp", "08:00:01"),
            ],
        );
        rows[at] = set(
            &rows[at],
            &[
                ("Amount", "515.50"),
                ("Date_Stamp", "2024-03-16"),
                ("Time_Stamp", "08:00:00"),
            ],
        );
        rows.push(added);
    });
}

#[test]
fn reconcile_lays_incremental_runs_over_the_snapshot_and_repairs_each_line_from_its_newest_run() {
    runtime().block_on(async {
        let mut w = World::start().await;
        let (first, _) = first_load(&w).await;
        let first_id = first.report.run_id.clone();

        // The first incremental run found no watermark and read every row: it is a snapshot.
        let r = w.reconcile(false).await;
        let text = render::text(&r);
        assert_eq!(r.reconciliation.run_id, first_id, "{text}");
        assert!(r.reconciliation.overlaid.is_empty(), "{text}");
        assert_eq!(r.exit_code, 0, "{text}");
        assert_eq!(r.reconciliation.comparison.sage_lines, FIXTURE_LINES as u64);

        a_day_of_changes(&mut w);
        let second = w.sync("").await;
        assert_eq!(second.exit_code, 0, "{:?}", second.report.removals);
        // The 14:04 row in the overlap, and the two rows stamped the next day.
        assert_eq!(second.report.counts.extracted, 3, "an incremental read");
        assert_eq!(removed_lines(&second), 1);
        let second_id = second.report.run_id.clone();
        let gone = staged_origin_id(&first.run_dir, "105", "35");
        let corrected = staged_origin_id(&second.run_dir, "105", "36");
        let added = staged_origin_id(&second.run_dir, "105", "37");
        assert_eq!(w.line_of(&corrected).amount.to_string(), "515.50");

        // Compared with the first run alone, the correction would be "changed", the new line
        // "orphaned" and the purged one "missing": laid over it, Procore equals Sage.
        let r = w.reconcile(false).await;
        let text = render::text(&r);
        let rec = &r.reconciliation;
        assert_eq!(rec.run_id, first_id, "{text}");
        assert_eq!(rec.overlaid, vec![second_id.clone()], "{text}");
        assert!(rec.later_loads.is_empty(), "{text}");
        assert!(
            rec.run_note
                .as_deref()
                .is_some_and(|n| n.contains(&second_id)),
            "{text}"
        );
        assert_eq!(r.exit_code, 0, "{text}");
        assert!(rec.comparison.equal, "{text}");
        assert_eq!(rec.comparison.sage_lines, FIXTURE_LINES as u64, "{text}");
        assert_eq!(rec.comparison.sage, rec.comparison.procore, "{text}");

        // Drift in Procore: the corrected line edited by hand, a line of the first run deleted.
        let edited = w.line_of(&corrected);
        let edit = jcsync::sandbox::LineEdit {
            amount: Some("1.00".parse().expect("decimal")),
            ..Default::default()
        };
        w.sandbox.edit_line_item(edited.id, &edit).expect("edit");
        let old = staged_origin_id(&first.run_dir, "103", "30");
        w.sandbox
            .delete_line_item(w.line_of(&old).id)
            .expect("delete");
        let r = w.reconcile(false).await;
        let text = render::text(&r);
        let c = &r.reconciliation.comparison;
        assert_eq!((c.counts.changed, c.counts.missing), (1, 1), "{text}");
        assert_eq!(c.counts.orphaned + c.counts.duplicated, 0, "{text}");
        let changed = c
            .drift
            .iter()
            .find(|d| d.class == DriftClass::Changed)
            .expect("a changed line");
        assert_eq!(changed.origin_id.as_deref(), Some(corrected.as_str()));
        let sage = changed.sage.as_ref().expect("sage side");
        assert_eq!(sage.amount, "515.50", "the newest version: {text}");
        assert_eq!(sage.run_id.as_deref(), Some(second_id.as_str()));
        let missing = c
            .drift
            .iter()
            .find(|d| d.class == DriftClass::Missing)
            .expect("a missing line");
        assert_eq!(missing.sage.as_ref().expect("sage").run_id, None);

        // The repair sends each line from the run holding its current version, and only it:
        // nothing older comes back, the purged line stays gone.
        let repaired = w.reconcile(true).await;
        let text = render::text(&repaired);
        assert_eq!(repaired.exit_code, 0, "{text}");
        let report = repaired.repair.as_ref().expect("a repair");
        let replays: Vec<(&str, u64)> = report
            .replays
            .iter()
            .map(|r| (r.replay_of.as_str(), r.lines))
            .collect();
        assert_eq!(
            replays,
            vec![(first_id.as_str(), 1), (second_id.as_str(), 1)],
            "{text}"
        );
        assert!(
            report.replays.iter().all(|r| r.exit_code == 0),
            "{report:?}"
        );
        // The first run's replay read all its staged rows and loaded one.
        let path = w
            .dir
            .path()
            .join("runs")
            .join(&report.replays[0].run)
            .join("report.json");
        let replayed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("report")).expect("json");
        assert_eq!(replayed["only_lines"], 1, "{replayed}");
        assert_eq!(replayed["rows_read"], 1, "{replayed}");
        assert_eq!(
            replayed["rows_skipped"].as_u64(),
            Some(first.report.counts.staged - 1),
            "{replayed}"
        );
        assert_eq!(w.line_of(&corrected).amount.to_string(), "515.50");
        assert_eq!(w.line_of(&added).amount.to_string(), "77.77");
        w.line_of(&old);
        let lines = w.sandbox_lines();
        assert!(!lines.contains(&gone), "the purged line came back");
        assert_eq!(lines.len(), FIXTURE_LINES);
        assert!(repaired.reconciliation.comparison.equal, "{text}");
    });
}
