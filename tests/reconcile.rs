//! `jcsync reconcile` against the embedded sandbox: the fixtures synced, then each kind of drift
//! made in Procore (or in Sage), found exactly, to the cent, and repaired (all but foreign lines).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jcsync::config::{LoadConfig, Pipeline};
use jcsync::load::client::{Connection, ProcoreClient, Secret};
use jcsync::pipeline::{sync, SyncOptions};
use jcsync::reconcile::{
    reconcile, render, DriftClass, DriftCounts, DriftLine, ReconcileOptions, ReconcileOutcome,
    EXIT_DRIFT,
};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};

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
    /// A sandbox, a copy of the Sage fixtures, and a first sync of them.
    async fn synced() -> World {
        World::synced_with(|_| {}).await
    }

    /// As [`World::synced`], the Sage copy changed by `edit` first.
    async fn synced_with(edit: impl FnOnce(&Path)) -> World {
        set_sandbox_credentials();
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        edit(&sage);
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("sandbox");
        let pipeline = write_load_pipeline(
            dir.path(),
            &sage,
            sandbox.url(),
            sandbox.company_id(),
            "backoff_base_ms = 10\nbackoff_cap_ms = 200\n",
        );
        let world = World {
            dir,
            sage,
            pipeline,
            sandbox,
        };
        let outcome = sync(&world.load(), &SyncOptions::default())
            .await
            .expect("sync");
        let load = outcome.report.load.as_ref().expect("load report");
        assert!(load.counts.lines_sent >= LINES);
        world
    }

    fn load(&self) -> Pipeline {
        Pipeline::load(&self.pipeline).expect("pipeline")
    }

    async fn reconcile(&self, repair: bool) -> ReconcileOutcome {
        let options = ReconcileOptions {
            repair,
            ..ReconcileOptions::default()
        };
        reconcile(&self.load(), &options).await.expect("reconcile")
    }

    /// The load's own client, logged in to the sandbox (to make drift as a user would).
    fn client(&self) -> ProcoreClient {
        let conn = Connection {
            api_url: self.sandbox.url().to_string(),
            login_url: self.sandbox.url().to_string(),
            company_id: self.sandbox.company_id(),
            client_id: Secret::new("demo-client"),
            client_secret: Secret::new("demo-secret"),
            credentials_source: "test".into(),
        };
        ProcoreClient::new(conn, &LoadConfig::default()).expect("client")
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let bytes = serde_json::to_vec(&body).expect("json");
        self.client()
            .call(method, path, &[], Some(&bytes), "test")
            .await
            .expect("call")
            .body
    }

    /// Update one line as a user would (by its Procore id).
    async fn edit_line(&self, line: &jcsync::sandbox::state::LineItem, changes: Value) {
        let mut update = json!({ "id": line.id });
        if let (Some(u), Some(c)) = (update.as_object_mut(), changes.as_object()) {
            u.extend(c.clone());
        }
        let path = format!(
            "/rest/v1.0/projects/{}/direct_costs/line_items/sync",
            line.project_id
        );
        let answer = self
            .send(
                reqwest::Method::PATCH,
                &path,
                json!({ "updates": [update] }),
            )
            .await;
        assert_eq!(answer["errors"], json!([]), "edit accepted: {answer}");
    }

    /// The sandbox line with this amount (the fixtures' amounts used here are unique).
    fn line_of(&self, amount: &str) -> jcsync::sandbox::state::LineItem {
        let db = self.sandbox.snapshot();
        let found: Vec<_> = db
            .line_items
            .values()
            .filter(|l| l.amount.to_string() == amount)
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "one line of {amount}");
        found[0].clone()
    }

    fn flat_code(&self, wbs_code_id: i64) -> String {
        self.sandbox.snapshot().wbs_codes[&wbs_code_id]
            .flat_code
            .clone()
    }

    /// Another budget code of the line's project.
    fn other_wbs(&self, line: &jcsync::sandbox::state::LineItem) -> i64 {
        let db = self.sandbox.snapshot();
        db.wbs_codes
            .values()
            .find(|w| w.project_id == line.project_id && w.id != line.wbs_code_id)
            .map(|w| w.id)
            .expect("another budget code")
    }

    /// A direct cost entered by hand in Procore: no origin_id.
    async fn add_foreign(&self, project_id: i64, wbs_code_id: i64, amount: &str, text: &str) {
        let path = format!("/rest/v1.1/projects/{project_id}/direct_costs");
        let body = json!({ "direct_cost": {
            "direct_cost_type": "expense",
            "status": "approved",
            "direct_cost_date": "2024-02-01",
            "description": "entered by hand",
            "line_items": [{ "amount": amount, "wbs_code_id": wbs_code_id, "description": text }],
        }});
        let answer = self.send(reqwest::Method::POST, &path, body).await;
        assert!(answer["id"].as_i64().is_some(), "created: {answer}");
    }

    /// Stage (not load) the Sage company again: the newest complete deep run.
    async fn stage_again(&self) {
        let options = SyncOptions {
            stage_only: true,
            ..SyncOptions::default()
        };
        sync(&self.load(), &options).await.expect("stage-only sync");
    }
}

fn counts(missing: u64, changed: u64, orphaned: u64, duplicated: u64, foreign: u64) -> DriftCounts {
    DriftCounts {
        missing,
        changed,
        orphaned,
        duplicated,
        foreign,
        ..DriftCounts::default()
    }
}

/// The only drift line of an outcome.
fn only_drift(outcome: &ReconcileOutcome) -> &DriftLine {
    let drift = &outcome.reconciliation.comparison.drift;
    assert_eq!(drift.len(), 1, "exactly one drift line: {drift:#?}");
    &drift[0]
}

/// The totals row of a budget code: (sage, procore, difference).
fn totals(outcome: &ReconcileOutcome, job: &str, code: &str) -> (String, String, String) {
    let p = outcome
        .reconciliation
        .comparison
        .projects
        .iter()
        .find(|p| p.job == job)
        .expect("project");
    let b = p
        .budget_codes
        .iter()
        .find(|b| b.budget_code == code)
        .unwrap_or_else(|| panic!("budget code {code} of job {job}"));
    (b.sage.clone(), b.procore.clone(), b.difference.clone())
}

fn assert_equal(outcome: &ReconcileOutcome) {
    let c = &outcome.reconciliation.comparison;
    assert_eq!(c.counts, counts(0, 0, 0, 0, 0), "{:#?}", c.drift);
    assert!(c.equal);
    assert_eq!(outcome.exit_code, 0);
    assert_eq!((c.sage.as_str(), c.procore.as_str()), (TOTAL, TOTAL));
    assert_eq!((c.sage_lines, c.procore_lines), (LINES, LINES));
}

#[test]
fn a_synced_company_reconciles_equal_to_the_cent() {
    runtime().block_on(async {
        let world = World::synced().await;
        let outcome = world.reconcile(false).await;
        assert_equal(&outcome);
        // Every budget code of fixtures/expected/totals.csv, Sage and Procore alike.
        let expected = expected_budget_totals();
        let mut found = 0;
        for p in &outcome.reconciliation.comparison.projects {
            for b in &p.budget_codes {
                assert_eq!(b.sage, b.procore, "{} {}", p.job, b.budget_code);
                assert_eq!(b.difference, "0.00");
                assert_eq!(b.sage_lines, b.procore_lines);
                found += 1;
            }
        }
        assert_eq!(found, expected.len());
        assert!(outcome.reconciliation.comparison.exceptions.is_empty());
    });
}

#[test]
fn an_amount_edited_in_procore_is_changed_with_its_field() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("1250.00");
        world.edit_line(&line, json!({ "amount": "1250.01" })).await;
        let outcome = world.reconcile(false).await;
        assert_eq!(outcome.exit_code, EXIT_DRIFT);
        assert_eq!(
            outcome.reconciliation.comparison.counts,
            counts(0, 1, 0, 0, 0)
        );
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Changed);
        assert_eq!(d.fields, vec!["amount"]);
        assert_eq!(d.origin_id, line.origin_id);
        assert_eq!(d.sage.as_ref().map(|s| s.amount.as_str()), Some("1250.00"));
        assert_eq!(
            d.procore.as_ref().map(|s| s.amount.as_str()),
            Some("1250.01")
        );
        let code = world.flat_code(line.wbs_code_id);
        // fixtures/expected/totals.csv: 1001/1/01-100/M is 1400.00.
        assert_eq!(
            totals(&outcome, "1001", &code),
            ("1400.00".into(), "1400.01".into(), "0.01".into())
        );
        assert_eq!(outcome.reconciliation.comparison.procore, "23591.42");
    });
}

#[test]
fn a_line_moved_to_another_budget_code_is_changed_and_both_totals_show_it() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("1250.00");
        let other = world.other_wbs(&line);
        world
            .edit_line(&line, json!({ "wbs_code_id": other }))
            .await;
        let outcome = world.reconcile(false).await;
        assert_eq!(
            outcome.reconciliation.comparison.counts,
            counts(0, 1, 0, 0, 0)
        );
        let d = only_drift(&outcome);
        assert_eq!(d.fields, vec!["budget_code"]);
        let (from, to) = (world.flat_code(line.wbs_code_id), world.flat_code(other));
        assert_eq!(d.budget_code, from);
        assert_eq!(
            d.procore.as_ref().and_then(|p| p.budget_code.clone()),
            Some(to.clone())
        );
        assert_eq!(totals(&outcome, "1001", &from).2, "-1250.00");
        assert_eq!(totals(&outcome, "1001", &to).2, "1250.00");
        // Moving money between codes leaves the project's total equal.
        assert_eq!(outcome.reconciliation.comparison.procore, TOTAL);
    });
}

#[test]
fn an_edited_description_is_changed_and_the_html_escapes_it() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("480.50");
        let evil = "<script>alert('x')</script>";
        world.edit_line(&line, json!({ "description": evil })).await;
        let outcome = world.reconcile(false).await;
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Changed);
        assert_eq!(d.fields, vec!["description"]);
        assert_eq!(
            d.procore.as_ref().and_then(|p| p.description.as_deref()),
            Some(evil)
        );
        let html = render::html(&outcome);
        assert_self_contained(&html);
        assert!(!html.contains(evil), "the description is escaped");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("480.50"));
        // The CLI writes the same file.
        let file = world.dir.path().join("report.html");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"))
            .args(["reconcile", "--html"])
            .arg(&file)
            .arg(&world.pipeline)
            .arg("--json")
            .env(CLIENT_ID_ENV, "demo-client")
            .env(CLIENT_SECRET_ENV, "demo-secret")
            .output()
            .expect("run jcsync");
        assert_eq!(status.status.code(), Some(i32::from(EXIT_DRIFT)));
        let json: Value = serde_json::from_slice(&status.stdout).expect("json on stdout");
        assert_eq!(json["counts"]["changed"], 1);
        assert_eq!(json["drift"][0]["fields"], json!(["description"]));
        assert_eq!(json["exit_code"], 6);
        assert_self_contained(&std::fs::read_to_string(&file).expect("html written"));
    });
}

fn assert_self_contained(html: &str) {
    for bad in ["http://", "https://", "<script src", "<link", "<script"] {
        assert!(!html.contains(bad), "the HTML holds {bad:?}");
    }
    assert!(html.contains("<style>"));
}

#[test]
fn a_direct_cost_entered_by_hand_is_foreign_with_its_totals() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("1250.00");
        world
            .add_foreign(line.project_id, line.wbs_code_id, "75.25", "by hand")
            .await;
        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(c.counts, counts(0, 0, 0, 0, 1));
        assert_eq!(outcome.exit_code, EXIT_DRIFT, "a foreign line is drift");
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Foreign);
        assert_eq!(d.origin_id, None);
        let code = world.flat_code(line.wbs_code_id);
        assert_eq!(c.foreign.len(), 1);
        assert_eq!(
            (c.foreign[0].job.as_str(), c.foreign[0].budget_code.as_str()),
            ("1001", code.as_str())
        );
        assert_eq!(
            (c.foreign[0].amount.as_str(), c.foreign[0].lines),
            ("75.25", 1)
        );
        assert_eq!(totals(&outcome, "1001", &code).2, "75.25");
        assert_eq!(c.procore, "23666.66");
    });
}

#[test]
fn a_line_whose_sage_row_is_gone_is_orphaned() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("480.50");
        // Line 7 of the transaction file (480.50) disappears from Sage (a purge); a deep
        // snapshot is staged again.
        remove_transaction_line(&world.sage, 7, "480.5");
        world.stage_again().await;
        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(c.counts, counts(0, 0, 1, 0, 0));
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Orphaned);
        assert_eq!(d.origin_id, line.origin_id);
        assert_eq!(
            d.procore.as_ref().map(|p| p.amount.as_str()),
            Some("480.50")
        );
        assert_eq!(c.sage, "23110.91");
        assert_eq!(c.procore, TOTAL);
        let code = world.flat_code(line.wbs_code_id);
        assert_eq!(totals(&outcome, "1001", &code).2, "480.50");
    });
}

/// Remove physical line `n` (1 = header) of the transaction file, checking its amount.
fn remove_transaction_line(sage: &Path, n: usize, amount: &str) {
    let path = sage.join("JCT_CURRENT__TRANSACTION.csv");
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[n - 1].split(',').any(|f| f == amount),
        "line {n}: {}",
        lines[n - 1]
    );
    lines.remove(n - 1);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
}

#[test]
fn a_run_named_must_be_deep_and_a_pipeline_without_one_is_told_to_run_a_deep_sync() {
    runtime().block_on(async {
        set_sandbox_credentials();
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("sandbox");
        let pipeline = write_load_pipeline(
            dir.path(),
            &repo().join("fixtures/sage"),
            sandbox.url(),
            sandbox.company_id(),
            "",
        );
        let p = Pipeline::load(&pipeline).expect("pipeline");
        let err = reconcile(&p, &ReconcileOptions::default())
            .await
            .expect_err("no run yet");
        assert!(err.to_string().contains("run a deep sync"), "{err}");
    });
}

fn dec(s: &str) -> rust_decimal::Decimal {
    s.parse().expect("decimal")
}

#[test]
fn a_line_deleted_in_procore_is_missing() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("1250.00");
        world.sandbox.delete_line_item(line.id).expect("delete");
        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(c.counts, counts(1, 0, 0, 0, 0));
        assert_eq!(outcome.exit_code, EXIT_DRIFT);
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Missing);
        assert_eq!(d.origin_id, line.origin_id);
        assert_eq!(d.sage.as_ref().map(|s| s.amount.as_str()), Some("1250.00"));
        assert!(d.procore.is_none());
        assert_eq!(c.procore, "22341.41");
        assert_eq!((c.sage_lines, c.procore_lines), (LINES, LINES - 1));
        assert_eq!(
            totals(&outcome, "1001", &world.flat_code(line.wbs_code_id)),
            ("1400.00".into(), "150.00".into(), "-1250.00".into())
        );
    });
}

#[test]
fn a_second_line_with_the_same_origin_id_is_duplicated() {
    runtime().block_on(async {
        let world = World::synced().await;
        let line = world.line_of("382.50");
        let copy = jcsync::sandbox::DriftLine {
            wbs_code_id: Some(line.wbs_code_id),
            origin_id: line.origin_id.clone(),
            description: line.description.clone(),
            ..jcsync::sandbox::DriftLine::new("", dec("382.50"))
        };
        let copy_id = world
            .sandbox
            .add_raw_line_item(line.direct_cost_id, &copy)
            .expect("add copy");
        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(c.counts, counts(0, 0, 0, 1, 0));
        let d = only_drift(&outcome);
        assert_eq!(d.class, DriftClass::Duplicated);
        assert_eq!(d.origin_id, line.origin_id);
        // The copy the ledger did not record is the duplicate, not the original.
        assert_eq!(d.procore.as_ref().and_then(|p| p.line_id), Some(copy_id));
        assert_eq!(c.procore, "23973.91");
        let code = world.flat_code(line.wbs_code_id);
        assert_eq!(totals(&outcome, "1001", &code).2, "382.50");
    });
}

#[test]
fn repair_makes_procore_equal_but_for_foreign_lines() {
    runtime().block_on(async {
        let world = World::synced().await;
        let sandbox = &world.sandbox;
        // missing: one line, and a whole direct cost with its lines.
        let gone = world.line_of("1250.00");
        sandbox.delete_line_item(gone.id).expect("delete line");
        let whole = world.line_of("900.00");
        let lost = sandbox
            .delete_direct_cost(whole.direct_cost_id)
            .expect("delete direct cost") as u64;
        // changed: an amount, and a line moved to another direct cost.
        let edited = world.line_of("480.50");
        let edit = jcsync::sandbox::LineEdit {
            amount: Some(dec("480.51")),
            ..Default::default()
        };
        sandbox.edit_line_item(edited.id, &edit).expect("edit");
        // duplicated.
        let dup = world.line_of("382.50");
        let copy = jcsync::sandbox::DriftLine {
            wbs_code_id: Some(dup.wbs_code_id),
            origin_id: dup.origin_id.clone(),
            ..jcsync::sandbox::DriftLine::new("", dec("382.50"))
        };
        sandbox
            .add_raw_line_item(dup.direct_cost_id, &copy)
            .expect("copy");
        // foreign.
        world
            .add_foreign(gone.project_id, gone.wbs_code_id, "75.25", "by hand")
            .await;
        // orphaned: line 9 (10.125 → 10.13) purged from Sage, a deep snapshot staged.
        let orphan = world.line_of("10.13");
        remove_transaction_line(&world.sage, 9, "10.125");
        world.stage_again().await;

        let before = world.reconcile(false).await;
        assert_eq!(
            before.reconciliation.comparison.counts,
            counts(1 + lost, 1, 1, 1, 1),
            "{}",
            render::text(&before)
        );

        let outcome = world.reconcile(true).await;
        let repair = outcome.repair.as_ref().expect("repair report");
        assert_eq!(repair.before, before.reconciliation.comparison.counts);
        assert_eq!(repair.replay_exit_code, Some(0));
        assert!(repair.not_repaired.is_empty(), "{:#?}", repair.not_repaired);
        let c = &outcome.reconciliation.comparison;
        assert_eq!(c.counts, counts(0, 0, 0, 0, 1), "{:#?}", c.drift);
        assert_eq!(
            outcome.exit_code, EXIT_DRIFT,
            "the foreign line stays, so 6"
        );
        assert_eq!(c.sage, "23581.28");
        assert_eq!(c.procore, "23656.53", "Sage plus the foreign 75.25");
        assert_eq!(only_drift(&outcome).class, DriftClass::Foreign);
        // Procore holds each jcsync line once, none of the orphan, and the foreign line.
        let db = sandbox.snapshot();
        assert!(db
            .line_items
            .values()
            .all(|l| l.origin_id != orphan.origin_id));
        let copies = db
            .line_items
            .values()
            .filter(|l| l.origin_id == dup.origin_id)
            .count();
        assert_eq!(copies, 1);
        assert_eq!(
            db.line_items
                .values()
                .filter(|l| l.origin_id.is_none())
                .count(),
            1
        );

        // A second repair finds nothing to do but the foreign line.
        let again = world.reconcile(true).await;
        let r = again.repair.as_ref().expect("repair");
        assert_eq!((r.invalidated, r.deleted), (0, 0));
        assert_eq!(
            again.reconciliation.comparison.counts,
            counts(0, 0, 0, 0, 1)
        );
    });
}

#[test]
fn lines_quarantined_at_load_are_exceptions_not_drift() {
    runtime().block_on(async {
        // Job 1004 is in Sage (Unstarted) but has no Procore project: its line is quarantined
        // `unmapped_project` at load.
        let world = World::synced_with(|sage| {
            let path = sage.join("JCT_CURRENT__TRANSACTION.csv");
            let text = std::fs::read_to_string(&path).expect("read");
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let row = lines[4].replacen("\"1001      \"", "1004", 1);
            assert!(row.starts_with("1004,"), "{row}");
            lines.push(row);
            std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        })
        .await;
        let outcome = world.reconcile(false).await;
        let c = &outcome.reconciliation.comparison;
        assert_eq!(
            outcome.exit_code, 0,
            "exceptions are not drift: {:#?}",
            c.drift
        );
        assert_eq!(
            c.counts,
            DriftCounts {
                exceptions: 1,
                ..counts(0, 0, 0, 0, 0)
            }
        );
        let e = &c.exceptions[0];
        assert_eq!(
            (e.job.as_str(), e.reason_code.as_str(), e.amount.as_str()),
            ("1004", "unmapped_project", "1250.00")
        );
        assert_eq!((c.sage.as_str(), c.procore.as_str()), (TOTAL, TOTAL));
        let text = render::text(&outcome);
        assert!(text.contains("exception: job 1004"), "{text}");
    });
}
