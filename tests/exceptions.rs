//! Open exceptions: rows quarantined at load stay in the ledger and are retried by every later
//! run until they load (resolved) or leave Sage (gone), also by an incremental SQL Server run
//! whose change window no longer holds them, and by a replay; `jcsync exceptions` lists them.
//!
//! Procore is the embedded sandbox seeded from a copy of `fixtures/procore` without some budget
//! codes (and a vendor); creating a code later is Procore's own `bulk_create`, sent over HTTP as
//! a person's tool would.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::forwarder::Forwarder;
use common::peer::Peer;
use common::*;
use jcsync::config::Pipeline;
use jcsync::exceptions::{list, render_csv, render_json, render_text};
use jcsync::ledger::Ledger;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};

const TRANSACTIONS: &str = "JCT_CURRENT__TRANSACTION.csv";

/// A copy of the fixture seed without the budget codes `(project_number, flat_code)` and the
/// vendors (origin_id) named.
fn seed_without(dir: &Path, codes: &[(&str, &str)], vendors: &[&str]) -> PathBuf {
    let seed = dir.join("procore");
    std::fs::create_dir_all(&seed).expect("seed dir");
    for e in std::fs::read_dir(repo().join("fixtures/procore")).expect("seed") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, seed.join(p.file_name().expect("name"))).expect("copy");
    }
    let filter = |file: &str, keep: &dyn Fn(&serde_json::Value) -> bool| {
        let path = seed.join(file);
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let before = all.len();
        let kept: Vec<_> = all.into_iter().filter(|v| keep(v)).collect();
        assert!(kept.len() < before || file == "vendors.json" && vendors.is_empty());
        std::fs::write(&path, serde_json::to_string_pretty(&kept).expect("json")).expect("write");
    };
    filter("wbs_codes.json", &|v| {
        !codes
            .iter()
            .any(|(p, c)| v["project_number"] == *p && v["flat_code"] == *c)
    });
    if !vendors.is_empty() {
        filter("vendors.json", &|v| {
            !vendors.iter().any(|o| v["origin_id"] == *o)
        });
    }
    seed
}

/// Create a budget code in a sandbox project the way a person's tool would: OAuth, then
/// `PATCH …/wbs_codes/bulk_create`.
async fn create_budget_code(sandbox: &SandboxHandle, project_number: &str, flat_code: &str) {
    let project = sandbox
        .snapshot()
        .projects
        .values()
        .find(|p| p.project_number == project_number)
        .map(|p| p.id)
        .expect("project");
    let http = reqwest::Client::new();
    let token = sandbox_token(&http, sandbox.url()).await;
    let resp = http
        .patch(format!(
            "{}/rest/v1.0/projects/{project}/work_breakdown_structure/wbs_codes/bulk_create",
            sandbox.url()
        ))
        .bearer_auth(&token)
        .header("Procore-Company-Id", sandbox.company_id().to_string())
        .json(&serde_json::json!({ "bulk": [{ "flat_code": flat_code, "description": "added" }] }))
        .send()
        .await
        .expect("bulk_create");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// Lines in the sandbox with this origin_id: (amount, flat code).
fn sandbox_lines_of(sandbox: &SandboxHandle, origin_id: &str) -> Vec<(String, String)> {
    let db = sandbox.snapshot();
    db.line_items
        .values()
        .filter(|l| l.origin_id.as_deref() == Some(origin_id))
        .map(|l| {
            (
                l.amount.to_string(),
                db.wbs_codes[&l.wbs_code_id].flat_code.clone(),
            )
        })
        .collect()
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

/// Remove the transaction with this Run and Sequence from a CSV copy of Sage.
fn purge_csv(sage: &Path, run: &str, sequence: &str) {
    let path = sage.join(TRANSACTIONS);
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
}

/// The ledger of a pipeline's target, as `jcsync exceptions` opens it.
fn ledger_of(pipeline: &Path) -> Ledger {
    let p = Pipeline::load(pipeline).expect("pipeline");
    jcsync::exceptions::scoped_ledger(&p)
        .expect("ledger")
        .expect("the target keeps a ledger")
}

/// Sage on SQL Server (a peer behind a forwarder) and a sandbox missing three budget codes.
struct MssqlWorld {
    dir: tempfile::TempDir,
    sage: PathBuf,
    peer: Peer,
    forwarder: Forwarder,
    sandbox: SandboxHandle,
}

impl MssqlWorld {
    async fn start() -> MssqlWorld {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        let seed = seed_without(
            dir.path(),
            &[
                ("1002", "03-300.L"),
                ("1002", "03-300.O"),
                ("1003", "01-100.M"),
            ],
            &[],
        );
        let peer = Peer::start(&sage, &[]);
        let forwarder = Forwarder::start(peer.port);
        let sandbox = Sandbox::start(SandboxConfig::from_dir(seed))
            .await
            .expect("sandbox starts");
        set_sandbox_credentials();
        MssqlWorld {
            dir,
            sage,
            peer,
            forwarder,
            sandbox,
        }
    }

    fn pipeline(&self) -> PathBuf {
        let source = self.peer.source_toml("sage_exceptions", "").replace(
            &format!("port = {}\n", self.peer.port),
            &format!("port = {}\n", self.forwarder.port),
        );
        let url = self.sandbox.url();
        let text = format!(
            r#"company = "DEMO"
{source}
[stage]
dir = {runs:?}
[sync]
type = "incremental"
max_removal_share = 1.0
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

    async fn sync(&self) -> RunOutcome {
        let p = Pipeline::load(&self.pipeline()).expect("pipeline");
        sync(&p, &SyncOptions::default())
            .await
            .unwrap_or_else(|e| panic!("sync: {e}\npeer log:\n{}", self.peer.log()))
    }

    /// Purge a transaction from Sage and serve the copy from a new peer behind the same port.
    fn purge(&mut self, run: &str, sequence: &str) {
        purge_csv(&self.sage, run, sequence);
        let mut old = std::mem::replace(&mut self.peer, Peer::start(&self.sage, &[]));
        old.stop();
        self.forwarder
            .upstream
            .store(self.peer.port, Ordering::SeqCst);
    }
}

#[test]
fn an_incremental_run_retries_an_exception_its_window_no_longer_holds() {
    runtime().block_on(async {
        let mut w = MssqlWorld::start().await;
        // First run: everything is read; five lines have no budget code in Procore.
        let first = w.sync().await;
        assert_eq!(first.report.counts.extracted, 51);
        assert!(first.report.reconciled, "{:?}", first.report.counts);
        let q = &first.report.counts.quarantined;
        assert_eq!(q.get("unmapped_budget_code"), Some(&5), "{q:?}");
        let ex = first.report.exceptions.as_ref().expect("exceptions");
        assert_eq!((ex.new, ex.still_open, ex.retried), (5, 5, 0), "{ex:?}");
        assert_eq!(ex.open_by_reason.len(), 1);
        assert_eq!(
            ex.open_by_reason[0].amount, "886.03",
            "240 + 0.10 + 0.20 + 612.40 + 33.33"
        );
        let sm_240 = staged_origin_id(&first.run_dir, "601", "41");
        let jc_33 = staged_origin_id(&first.run_dir, "503", "46");
        let ap_612 = staged_origin_id(&first.run_dir, "106", "37");
        assert!(sandbox_lines_of(&w.sandbox, &sm_240).is_empty());

        // The budget code of the 240.00 line is created in Procore; the 33.33 line is purged
        // from Sage. Neither row is in the next run's change window.
        create_budget_code(&w.sandbox, "1002", "03-300.L").await;
        w.purge("503", "46");
        let second = w.sync().await;
        let window = second.report.change_window.as_ref().expect("window");
        assert!(window.watermark.is_some(), "the second run is incremental");
        assert_eq!(second.report.counts.extracted, 1, "only the change window");
        assert_eq!(second.exit_code, 0);
        assert!(second.report.reconciled, "{:?}", second.report);
        let ex = second.report.exceptions.as_ref().expect("exceptions");
        // Retried: all five (none is in the window); the 240.00 one loads, the purged one is
        // quarantined again and then closed as gone by the key scan.
        assert_eq!(ex.retried, 5, "{ex:?}");
        assert_eq!(
            (
                ex.retried_loaded,
                ex.retried_quarantined,
                ex.retried_pending
            ),
            (1, 4, 0),
            "{ex:?}"
        );
        assert_eq!(
            (ex.resolved, ex.gone, ex.new, ex.still_open),
            (1, 1, 0, 3),
            "{ex:?}"
        );
        assert!(ex.reconciled);
        assert_eq!(
            ex.open_by_reason[0].amount, "612.70",
            "0.10 + 0.20 + 612.40"
        );
        // The retried lines are not rows of this run's snapshot: its counts are its own.
        assert!(second.report.counts.quarantined.is_empty());
        assert_eq!(
            sandbox_lines_of(&w.sandbox, &sm_240),
            vec![("240.00".to_string(), "03-300.L".to_string())],
            "exactly once, the exact amount, the new budget code"
        );

        let ledger = ledger_of(&w.pipeline());
        let resolved = ledger.exception(&sm_240).expect("get").expect("kept");
        assert_eq!(
            (resolved.status.as_str(), resolved.resolution.as_deref()),
            ("closed", Some("loaded"))
        );
        let gone = ledger.exception(&jc_33).expect("get").expect("kept");
        assert_eq!(gone.resolution.as_deref(), Some("gone"));
        let open = ledger.exception(&ap_612).expect("get").expect("kept");
        assert_eq!(open.status, "open");
        assert_eq!(open.attempts, 2, "{open:?}");
        assert_eq!(open.first_run, first.report.run_id);
        assert_eq!(open.last_run, second.report.run_id);
        assert!(open.last_seen > open.first_seen, "{open:?}");
        assert_eq!(open.amount, "612.40");
        assert_eq!(open.budget_code.as_deref(), Some("01-100.M"));
        drop(ledger);

        // A third run: nothing new resolves, the line is not sent twice.
        let third = w.sync().await;
        let ex = third.report.exceptions.as_ref().expect("exceptions");
        assert_eq!(
            (ex.retried, ex.resolved, ex.still_open),
            (3, 0, 3),
            "{ex:?}"
        );
        assert_eq!(sandbox_lines_of(&w.sandbox, &sm_240).len(), 1);
    });
}

/// Sage as CSV files, a sandbox with a state file (its ledger persists) missing a vendor and
/// two budget codes.
struct FilesWorld {
    dir: tempfile::TempDir,
    sage: PathBuf,
    seed: PathBuf,
}

impl FilesWorld {
    fn new() -> FilesWorld {
        let dir = tempfile::tempdir().expect("tempdir");
        let sage = dir.path().join("sage");
        copy_sage_fixtures(&sage);
        // V100: AP lines 1250.00, 2.68, 480.50, -2.68 of job 1001; 03-300.O of 1002: SM 0.10
        // and 0.20; 01-100.M of 1003: 612.40 and 33.33.
        let seed = seed_without(
            dir.path(),
            &[("1002", "03-300.O"), ("1003", "01-100.M")],
            &["V100"],
        );
        FilesWorld { dir, sage, seed }
    }

    fn pipeline(&self) -> PathBuf {
        let text = format!(
            r#"company = "DEMO"
[source]
kind = "files"
dir = {sage:?}
format = "csv"
[stage]
dir = {runs:?}
[sync]
max_removal_share = 1.0
[target]
kind = "sandbox"
seed = {seed:?}
state_file = {state:?}
[report]
quarantine_exit_code = 0
"#,
            sage = self.sage.display().to_string(),
            runs = self.dir.path().join("runs").display().to_string(),
            seed = self.seed.display().to_string(),
            state = self.dir.path().join("sandbox.json").display().to_string(),
        );
        let path = self.dir.path().join("pipeline.toml");
        std::fs::write(&path, text).expect("write pipeline");
        path
    }

    fn sync(&self, options: SyncOptions) -> RunOutcome {
        let p = Pipeline::load(&self.pipeline()).expect("pipeline");
        runtime()
            .block_on(sync(&p, &options))
            .unwrap_or_else(|e| panic!("sync: {e}"))
    }

    fn listed(&self) -> jcsync::exceptions::ExceptionList {
        list(&Pipeline::load(&self.pipeline()).expect("pipeline")).expect("list")
    }
}

#[test]
fn exceptions_list_by_reason_with_exact_totals_in_text_json_and_csv() {
    let w = FilesWorld::new();
    let first = w.sync(SyncOptions::default());
    assert!(first.report.reconciled, "{:?}", first.report.counts);
    let ex = first.report.exceptions.as_ref().expect("exceptions");
    assert_eq!((ex.new, ex.still_open), (8, 8), "{ex:?}");
    let run = &first.report.run_id;

    let l = w.listed();
    assert_eq!((l.open, l.amount.as_str()), (8, "2376.53"), "{l:?}");
    let reasons: Vec<(&str, u64, &str)> = l
        .reasons
        .iter()
        .map(|g| (g.reason_code.as_str(), g.count, g.amount.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("unmapped_budget_code", 4, "646.03"),
            ("unmapped_vendor", 4, "1730.50"),
        ]
    );
    // Exactly the lines, by job and budget code, each with its exact amount.
    let rows: Vec<(String, String, String, u64)> = l
        .reasons
        .iter()
        .flat_map(|g| &g.exceptions)
        .map(|e| {
            (
                e.job.clone(),
                e.budget_code.clone().unwrap_or_default(),
                e.amount.clone(),
                e.attempts,
            )
        })
        .collect();
    let mut by_code: Vec<_> = rows
        .iter()
        .map(|(j, c, a, _)| format!("{j} {c} {a}"))
        .collect();
    by_code.sort();
    assert_eq!(
        by_code,
        vec![
            "1001 1.01-100.M 1250.00",
            "1001 1.02-200.M -2.68",
            "1001 1.02-200.M 2.68",
            "1001 2.03-300.S 480.50",
            "1002 03-300.O 0.10",
            "1002 03-300.O 0.20",
            "1003 01-100.M 33.33",
            "1003 01-100.M 612.40",
        ]
    );
    assert!(rows.iter().all(|r| r.3 == 1));

    let text = render_text(&l);
    assert!(
        text.starts_with("open exceptions of DEMO (target sandbox:"),
        "{text}"
    );
    assert!(text.contains("): 8, total 2376.53\n"), "{text}");
    assert!(
        text.contains("\nunmapped_budget_code: 4 open, total 646.03\n"),
        "{text}"
    );
    assert!(
        text.contains("\nunmapped_vendor: 4 open, total 1730.50\n"),
        "{text}"
    );
    assert!(
        text.lines().any(|t| t.starts_with("  1003 ")
            && t.contains(" 01-100.M ")
            && t.contains(" 612.40 ")),
        "{text}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&render_json(&l).expect("json")).expect("parse");
    assert_eq!(json["open"], 8);
    assert_eq!(json["amount"], "2376.53");
    assert_eq!(json["reasons"][1]["reason_code"], "unmapped_vendor");
    assert_eq!(json["reasons"][1]["amount"], "1730.50");
    assert_eq!(
        json["reasons"][1]["exceptions"]
            .as_array()
            .expect("list")
            .len(),
        4
    );
    assert_eq!(
        json["reasons"][0]["exceptions"][0]["first_run"],
        run.as_str()
    );

    let mut csv_out = Vec::new();
    render_csv(&l, &mut csv_out).expect("csv");
    let mut reader = csv::Reader::from_reader(csv_out.as_slice());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        jcsync::exceptions::CSV_COLUMNS.to_vec()
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 8);
    let cents: i64 = records
        .iter()
        .map(|r| {
            let a = r.get(3).expect("amount");
            let (whole, frac) = a.split_once('.').expect("two places");
            let sign = if whole.starts_with('-') { -1 } else { 1 };
            whole.parse::<i64>().expect("whole") * 100 + sign * frac.parse::<i64>().expect("frac")
        })
        .sum();
    assert_eq!(cents, 237_653);
    assert!(records.iter().all(|r| r.get(6) == Some(run.as_str())));
    // The reasons hold no cell of the excluded columns (the fixtures fill Employee etc.).
    for r in &records {
        let reason = r.get(12).expect("reason");
        assert!(!reason.is_empty());
        assert!(
            !reason.contains("EMP") && !reason.contains("Pay"),
            "{reason}"
        );
    }

    // A dry run and a stage-only run change nothing in the exceptions table.
    let before = render_json(&w.listed()).expect("json");
    let dry = w.sync(SyncOptions {
        dry_run: true,
        ..Default::default()
    });
    assert!(dry.report.exceptions.is_none());
    let staged = w.sync(SyncOptions {
        stage_only: true,
        ..Default::default()
    });
    assert!(staged.report.exceptions.is_none());
    assert_eq!(render_json(&w.listed()).expect("json"), before);
}

#[test]
fn a_deep_run_closes_a_purged_exception_as_gone_and_a_replay_resolves_one() {
    let w = FilesWorld::new();
    let first = w.sync(SyncOptions::default());
    assert_eq!(first.report.exceptions.as_ref().expect("ex").still_open, 8);
    let jc_33 = staged_origin_id(&first.run_dir, "503", "46");
    let ap_612 = staged_origin_id(&first.run_dir, "106", "37");

    // Purged from Sage: the next deep run closes it as gone; the other stays open, tried again.
    purge_csv(&w.sage, "503", "46");
    let second = w.sync(SyncOptions::default());
    assert!(second.report.reconciled, "{:?}", second.report);
    let ex = second.report.exceptions.as_ref().expect("ex");
    assert_eq!(
        (ex.gone, ex.retried, ex.new, ex.still_open),
        (1, 0, 0, 7),
        "{ex:?}"
    );
    let ledger = ledger_of(&w.pipeline());
    assert_eq!(
        ledger
            .exception(&jc_33)
            .expect("get")
            .expect("kept")
            .resolution
            .as_deref(),
        Some("gone")
    );
    let open = ledger.exception(&ap_612).expect("get").expect("kept");
    assert_eq!((open.status.as_str(), open.attempts), ("open", 2));
    assert_eq!(open.last_run, second.report.run_id);
    drop(ledger);

    // The budget code is created in the sandbox's state; a replay of the first run retries
    // what it lacks and loads the 612.40 line from the run's own staged row.
    let state = w.dir.path().join("sandbox.json");
    let mut db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    let project = db["projects"]
        .as_object()
        .expect("projects")
        .values()
        .find(|p| p["project_number"] == "1003")
        .and_then(|p| p["id"].as_i64())
        .expect("project 1003");
    let next = db["next_id"].as_i64().expect("next id");
    db["wbs_codes"][next.to_string()] = serde_json::json!({
        "id": next, "project_id": project, "flat_code": "01-100.M", "description": "added"
    });
    db["next_id"] = serde_json::json!(next + 1);
    std::fs::write(&state, serde_json::to_string(&db).expect("json")).expect("write state");

    let p = Pipeline::load(&w.pipeline()).expect("pipeline");
    let replayed = runtime()
        .block_on(jcsync::replay::replay(
            &first.run_dir,
            &p,
            &jcsync::replay::ReplayOptions::default(),
        ))
        .expect("replay");
    let ex = replayed.report.exceptions.as_ref().expect("ex");
    assert!(replayed.report.reconciled, "{:?}", replayed.report);
    assert_eq!((ex.resolved, ex.still_open), (1, 6), "{ex:?}");
    let ledger = ledger_of(&w.pipeline());
    let resolved = ledger.exception(&ap_612).expect("get").expect("kept");
    assert_eq!(resolved.resolution.as_deref(), Some("loaded"));
}

/// The cost of retrying N open exceptions from the ledger: their stored rows are paged, decoded
/// and handed to the planner in batches of `RETRY_BATCH_ROWS`, in flat memory. N is 20,000 by
/// default (`JCSYNC_EXCEPTIONS_BENCH_ROWS=100000 cargo test --release --test exceptions
/// retry_cost -- --nocapture` for more).
#[test]
fn retry_cost() {
    use arrow::array::{AsArray, StringArray};
    use jcsync::ledger::ExceptionSeen;
    use jcsync::load::exceptions::{ExceptionRetry, RetryScope, RowCodec, RETRY_BATCH_ROWS};

    let n: usize = std::env::var("JCSYNC_EXCEPTIONS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let w = FilesWorld::new();
    let staged = w.sync(SyncOptions {
        stage_only: true,
        ..Default::default()
    });
    let batch = read_parquet(&staged_files(&staged.run_dir));
    let row = batch.slice(0, 1);
    let amount = row
        .column_by_name("amount")
        .expect("amount")
        .as_primitive::<arrow::datatypes::Decimal128Type>()
        .value(0);
    let id_col = row.schema().index_of("line_origin_id").expect("id column");
    let codec = RowCodec::new().expect("codec");
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite"))
        .expect("ledger")
        .with_target("bench");
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut seen = Vec::new();
        let mut rows = Vec::new();
        for &i in chunk {
            let id = format!("jcsync:DEMO:line:{i:032x}");
            let mut columns = row.columns().to_vec();
            columns[id_col] = Arc::new(StringArray::from(vec![id.as_str()]));
            let one = arrow::array::RecordBatch::try_new(row.schema(), columns).expect("row");
            let encoded = codec.encode(&one, 0).expect("encode");
            bytes += encoded.len();
            rows.push((id.clone(), encoded));
            seen.push(ExceptionSeen {
                origin_id: id,
                reason_code: "unmapped_budget_code".into(),
                reason: "bench".into(),
                job: "1001".into(),
                budget_code: Some("1.01-100.M".into()),
                cents: amount as i64,
                accounting_date: Some("2024-01-15".into()),
            });
        }
        ledger.record_exceptions(&seen, "r1").expect("record");
        ledger.store_exception_rows(&rows, "r1").expect("store");
    }
    let recorded = started.elapsed();
    let retry = ExceptionRetry::new(&ledger, RetryScope::Partial, "r2").expect("retry");
    let ledger = std::sync::Mutex::new(ledger);
    let started = std::time::Instant::now();
    let (mut rows, mut cents, mut largest) = (0usize, 0i128, 0usize);
    let fed = retry
        .feed(
            &ledger,
            "r2",
            |_| {},
            |b| {
                rows += b.num_rows();
                largest = largest.max(b.num_rows());
                let a = b
                    .column_by_name("amount")
                    .expect("amount")
                    .as_primitive::<arrow::datatypes::Decimal128Type>();
                cents += (0..a.len()).map(|i| a.value(i)).sum::<i128>();
                Ok(())
            },
        )
        .expect("feed");
    let fed_in = started.elapsed();
    assert_eq!((fed as usize, rows), (n, n));
    assert_eq!(cents, amount * n as i128, "money exact");
    assert!(largest <= RETRY_BATCH_ROWS, "bounded batches: {largest}");
    println!(
        "RETRY_COST n={n} row_bytes={} record+store={:.2}s feed={:.2}s ({:.0} rows/s)",
        bytes / n,
        recorded.as_secs_f64(),
        fed_in.as_secs_f64(),
        n as f64 / fed_in.as_secs_f64()
    );
}
