//! Keeping Procore equal to Sage (issue 16): a generated company of 5,000 transactions is
//! synced into the sandbox, then Sage changes in every way that takes a row's identity away,
//! and the next sync must leave Procore equal to Sage: every line jcsync holds there is a line
//! of the latest snapshot, with its amount, and no direct cost is left without a line. Also a
//! ledger written before removals existed (schema version 1), migrated in place.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jcsync::config::{FileFormat, Pipeline};
use jcsync::pipeline::{sync, RunOutcome, SyncOptions, EXIT_REMOVALS_HELD};
use jcsync::sandbox::{FaultConfig, FaultKind, FaultRule, Sandbox, SandboxConfig, SandboxHandle};
use jcsync::tools::generate::{generate, GenerateOptions};

use common::runtime;

const GEN_CLIENT_ID: &str = "JCSYNC_TEST_GEN_CLIENT_ID";
const GEN_CLIENT_SECRET: &str = "JCSYNC_TEST_GEN_CLIENT_SECRET";

const TRANSACTIONS: &str = "JCT_CURRENT__TRANSACTION.csv";

/// A generated company, its sandbox and its pipeline.
struct Company {
    dir: tempfile::TempDir,
    sandbox: SandboxHandle,
    /// More `[load]` keys.
    load: String,
}

impl Company {
    async fn new(faults: Vec<FaultRule>) -> Company {
        Company::with_seed(faults, |_| {}).await
    }

    /// A company whose sandbox seed `seed` may change first (its `procore/` folder).
    async fn with_seed(faults: Vec<FaultRule>, seed: impl FnOnce(&Path)) -> Company {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(&GenerateOptions {
            transactions: 5_000,
            jobs: 8,
            seed: 42,
            out: dir.path().join("sage"),
            format: FileFormat::Csv,
        })
        .expect("generate");
        seed(&dir.path().join("sage/procore"));
        let mut config = SandboxConfig::from_dir(dir.path().join("sage/procore"));
        config.rate_limit = None;
        config.faults = FaultConfig {
            rules: faults,
            seed: 11,
            retry_after_secs: 0,
            slow_delay: std::time::Duration::from_millis(20),
        };
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let cred = sandbox
            .credentials()
            .into_iter()
            .next()
            .expect("credentials");
        // Every test generates the same company (seed 42): the same values for all.
        std::env::set_var(GEN_CLIENT_ID, &cred.client_id);
        std::env::set_var(GEN_CLIENT_SECRET, &cred.client_secret);
        Company {
            dir,
            sandbox,
            load: String::new(),
        }
    }

    fn pipeline(&self, sync_section: &str) -> PathBuf {
        let url = self.sandbox.url();
        let text = format!(
            r#"company = "GEN"
[source]
kind = "files"
dir = {source:?}
format = "csv"
[stage]
dir = {runs:?}
[sync]
{sync_section}
[target]
kind = "procore"
api_url = "{url}"
login_url = "{url}"
company_id = {company}
client_id_env = "{GEN_CLIENT_ID}"
client_secret_env = "{GEN_CLIENT_SECRET}"
[load]
backoff_base_ms = 5
backoff_cap_ms = 100
max_retry_secs = 120
{load}
[report]
quarantine_exit_code = 0
"#,
            source = self.dir.path().join("sage").display().to_string(),
            runs = self.dir.path().join("runs").display().to_string(),
            company = self.sandbox.company_id(),
            load = self.load,
        );
        let path = self.dir.path().join("pipeline.toml");
        std::fs::write(&path, text).expect("write pipeline");
        path
    }

    async fn sync_with(&self, sync_section: &str, allow: bool) -> RunOutcome {
        let p = Pipeline::load(&self.pipeline(sync_section)).expect("pipeline");
        sync(
            &p,
            &SyncOptions {
                allow_removals: allow,
                ..SyncOptions::default()
            },
        )
        .await
        .expect("sync")
    }

    async fn sync(&self) -> RunOutcome {
        self.sync_with("", false).await
    }

    fn transactions(&self) -> PathBuf {
        self.dir.path().join("sage").join(TRANSACTIONS)
    }

    /// Rewrite the transaction table: `f` edits the records (header aside).
    fn edit(&self, f: impl FnOnce(&csv::StringRecord, &mut Vec<csv::StringRecord>)) {
        let path = self.transactions();
        let mut reader = csv::Reader::from_path(&path).expect("read transactions");
        let header = reader.headers().expect("header").clone();
        let mut rows: Vec<csv::StringRecord> =
            reader.records().map(|r| r.expect("record")).collect();
        f(&header, &mut rows);
        let mut w = csv::Writer::from_path(&path).expect("write transactions");
        w.write_record(&header).expect("header");
        for r in &rows {
            w.write_record(r).expect("row");
        }
        w.flush().expect("flush");
    }
}

fn col(header: &csv::StringRecord, name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// Indices of the cost rows (a line each in Procore, unless quarantined).
fn cost_rows(header: &csv::StringRecord, rows: &[csv::StringRecord]) -> Vec<usize> {
    let ty = col(header, "Transaction_Type");
    rows.iter()
        .enumerate()
        .filter(|(_, r)| {
            [
                "AP cost",
                "PR cost",
                "JC cost",
                "EQ cost",
                "SM cost",
                "Other cost",
            ]
            .contains(&r.get(ty).unwrap_or("").trim())
        })
        .map(|(i, _)| i)
        .collect()
}

/// The lines of a run's staged snapshot: origin_id → amount (2 decimals).
fn staged_lines(run_dir: &Path) -> BTreeMap<String, String> {
    let staged = common::read_parquet(&common::staged_files(run_dir));
    let ids = common::strings(&staged, "line_origin_id");
    let amounts = decimal_strings(&staged, "amount");
    ids.into_iter()
        .map(|i| i.expect("origin id"))
        .zip(amounts)
        .collect()
}

fn decimal_strings(batch: &arrow::array::RecordBatch, name: &str) -> Vec<String> {
    let col = batch.column_by_name(name).expect("amount column");
    let arr = col
        .as_any()
        .downcast_ref::<arrow::array::Decimal128Array>()
        .expect("decimal amounts");
    let scale = arr.scale() as u32;
    (0..arr.len())
        .map(|i| {
            let v = arr.value(i);
            let d = rust_decimal::Decimal::from_i128_with_scale(v, scale);
            format!("{:.2}", d)
        })
        .collect()
}

/// Procore holds exactly the latest snapshot's loadable lines, once each, with their amounts,
/// and no direct cost without a line.
fn assert_procore_equals_sage(company: &Company, outcome: &RunOutcome) {
    let db = company.sandbox.snapshot();
    let staged = staged_lines(&outcome.run_dir);
    let mut in_procore: BTreeMap<String, String> = BTreeMap::new();
    for li in db.line_items.values() {
        let id = li.origin_id.clone().expect("every line is jcsync's here");
        assert!(
            in_procore
                .insert(id.clone(), format!("{:.2}", li.amount))
                .is_none(),
            "line {id} is in Procore twice"
        );
    }
    let stale: Vec<&String> = in_procore
        .keys()
        .filter(|id| !staged.contains_key(*id))
        .collect();
    assert!(
        stale.is_empty(),
        "{} line(s) in Procore have no transaction in Sage any more, e.g. {:?}; removals: {:?}",
        stale.len(),
        stale.first(),
        outcome.report.removals
    );
    for (id, amount) in &in_procore {
        assert_eq!(&staged[id], amount, "amount of {id}");
    }
    let load = outcome.report.load.as_ref().expect("a load");
    assert_eq!(
        in_procore.len() as u64 + load.counts.quarantined_total(),
        staged.len() as u64,
        "every staged line is in Procore or quarantined at load"
    );
    let in_ledger = outcome.report.in_procore.as_ref().expect("in_procore");
    assert_eq!(in_ledger.lines, in_procore.len() as u64, "ledger = Procore");
    let with_lines: BTreeSet<i64> = db.line_items.values().map(|l| l.direct_cost_id).collect();
    let empty: Vec<i64> = db
        .direct_costs
        .keys()
        .copied()
        .filter(|id| !with_lines.contains(id))
        .collect();
    assert!(empty.is_empty(), "direct costs without a line: {empty:?}");
}

fn removed_lines(outcome: &RunOutcome) -> u64 {
    outcome
        .report
        .removals
        .as_ref()
        .and_then(|r| r.outcome.as_ref())
        .map_or(0, |o| o.lines_removed)
}

#[test]
fn the_first_sync_leaves_no_direct_cost_without_a_line() {
    runtime().block_on(async {
        // Every seventh budget code is missing from Procore.
        let mut c = Company::with_seed(Vec::new(), |procore| {
            let path = procore.join("wbs_codes.json");
            let codes: Vec<serde_json::Value> =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("codes"))
                    .expect("json");
            let kept: Vec<&serde_json::Value> = codes
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 7 != 3)
                .map(|(_, c)| c)
                .collect();
            std::fs::write(&path, serde_json::to_string(&kept).expect("json")).expect("write");
        })
        .await;
        // Budget codes Procore lacks are not created: their lines are quarantined, and a
        // direct cost with only such lines must not be sent at all.
        c.load = "create_missing_budget_codes = false".into();
        let first = c.sync().await;
        let load = first.report.load.as_ref().expect("load");
        assert!(
            load.counts
                .quarantined
                .get("unmapped_budget_code")
                .is_some_and(|&n| n > 0),
            "the generated company has lines with budget codes Procore lacks: {:?}",
            load.counts.quarantined
        );
        assert_procore_equals_sage(&c, &first);
        let second = c.sync().await;
        assert_eq!(removed_lines(&second), 0);
        assert_eq!(
            second.report.load.as_ref().expect("load").counts.lines_sent,
            0
        );
        assert_procore_equals_sage(&c, &second);
    });
}

#[test]
fn purged_rows_a_changed_cost_code_and_a_type_change_end_with_procore_equal_to_sage() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        let first = c.sync().await;
        assert_procore_equals_sage(&c, &first);
        let lines_before = first.report.in_procore.as_ref().expect("ledger").lines;
        c.edit(|h, rows| {
            let cost = cost_rows(h, rows);
            // One cost code changed, one AP cost becomes a committed cost, ten rows purged.
            let (code, ty, amount) = (
                col(h, "Cost_Code"),
                col(h, "Transaction_Type"),
                col(h, "Amount"),
            );
            let moved = cost[3];
            let other_code = rows[cost[4]].get(code).expect("code").to_string();
            let mut r: Vec<String> = rows[moved].iter().map(str::to_string).collect();
            r[code] = other_code;
            rows[moved] = csv::StringRecord::from(r);
            let ap = *cost
                .iter()
                .find(|&&i| rows[i].get(ty).map(str::trim) == Some("AP cost"))
                .expect("an AP cost");
            let mut r: Vec<String> = rows[ap].iter().map(str::to_string).collect();
            r[ty] = "Committed cost".into();
            rows[ap] = csv::StringRecord::from(r);
            // A vendor change moves an AP line to another direct cost.
            let vendor = col(h, "Vendor");
            let aps: Vec<usize> = cost
                .iter()
                .copied()
                .filter(|&i| i != ap && rows[i].get(ty).map(str::trim) == Some("AP cost"))
                .collect();
            let first_vendor = rows[aps[0]].get(vendor).unwrap_or("").trim().to_string();
            let other = aps
                .iter()
                .map(|&i| rows[i].get(vendor).unwrap_or("").trim().to_string())
                .find(|v| *v != first_vendor && !v.is_empty())
                .expect("two vendors");
            let mut r: Vec<String> = rows[aps[0]].iter().map(str::to_string).collect();
            r[vendor] = other;
            rows[aps[0]] = csv::StringRecord::from(r);
            // An amount change still propagates.
            let changed = cost[5];
            let mut r: Vec<String> = rows[changed].iter().map(str::to_string).collect();
            r[amount] = "123.45".into();
            rows[changed] = csv::StringRecord::from(r);
            let purge: BTreeSet<usize> = cost[10..].iter().step_by(97).take(10).copied().collect();
            let mut i = 0;
            rows.retain(|_| {
                i += 1;
                !purge.contains(&(i - 1))
            });
        });
        let second = c.sync().await;
        assert_eq!(second.exit_code, 0, "{:?}", second.report.removals);
        let load = second.report.load.as_ref().expect("load");
        assert_eq!(
            load.counts.lines_moved, 1,
            "the line of the vendor change moved"
        );
        assert!(load.counts.lines_updated >= 2, "{:?}", load.counts);
        let removals = second.report.removals.as_ref().expect("removals");
        assert_eq!(removals.status, "applied");
        assert!(
            removed_lines(&second) >= 10,
            "removed {}",
            removed_lines(&second)
        );
        assert_procore_equals_sage(&c, &second);
        let after = second.report.in_procore.as_ref().expect("ledger");
        assert!(
            after.lines < lines_before,
            "{} → {}",
            lines_before,
            after.lines
        );
        // Idempotent: nothing more to do.
        let third = c.sync().await;
        assert_eq!(removed_lines(&third), 0);
        assert_procore_equals_sage(&c, &third);
    });
}

/// Remove the rows of the job with the most cost rows; its name.
fn drop_biggest_job(c: &Company) -> String {
    let mut gone = String::new();
    c.edit(|h, rows| {
        let job = col(h, "Job");
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for i in cost_rows(h, rows) {
            *counts
                .entry(rows[i].get(job).unwrap_or("").trim().to_string())
                .or_default() += 1;
        }
        gone = counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(j, _)| j)
            .expect("a job");
        rows.retain(|r| r.get(job).map(str::trim) != Some(gone.as_str()));
    });
    gone
}

#[test]
fn a_vanished_job_is_kept_by_default_and_removed_when_the_pipeline_says() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        let first = c.sync().await;
        let before = c.sandbox.snapshot().line_items.len();
        let job = drop_biggest_job(&c);
        let kept = c.sync().await;
        let removals = kept.report.removals.as_ref().expect("removals");
        assert_eq!(removals.vanished_jobs[&job].action, "keep");
        assert_eq!(removed_lines(&kept), 0);
        assert_eq!(
            c.sandbox.snapshot().line_items.len(),
            before,
            "nothing removed"
        );
        let lines = removals.vanished_jobs[&job].lines;
        assert!(lines > 0);
        drop(first);
        let removed = c.sync_with("vanished_jobs = \"remove\"", true).await;
        assert_eq!(removed_lines(&removed), lines);
        assert_procore_equals_sage(&c, &removed);
    });
}

#[test]
fn the_guard_holds_back_a_removal_of_ten_percent_until_it_is_confirmed() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        c.sync().await;
        let before = c.sandbox.snapshot();
        c.edit(|h, rows| {
            let cost: BTreeSet<usize> = cost_rows(h, rows).into_iter().step_by(10).collect();
            let mut i = 0;
            rows.retain(|_| {
                i += 1;
                !cost.contains(&(i - 1))
            });
        });
        let held = c.sync().await;
        assert_eq!(held.exit_code, EXIT_REMOVALS_HELD);
        let r = held.report.removals.as_ref().expect("removals");
        assert_eq!(r.status, "held");
        assert!(r.share > 0.05 && r.share < 0.2, "share {}", r.share);
        assert!(r
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("--allow-removals"));
        assert_eq!(
            c.sandbox.snapshot().line_items.len(),
            before.line_items.len(),
            "nothing removed while held"
        );
        let applied = c.sync_with("", true).await;
        assert_eq!(applied.exit_code, 0);
        assert_eq!(removed_lines(&applied), r.planned_lines);
        assert_procore_equals_sage(&c, &applied);
    });
}

#[test]
fn removals_plan_mode_lists_them_and_sends_nothing() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        c.sync().await;
        let before = c.sandbox.snapshot().line_items.len();
        c.edit(|h, rows| {
            let first = cost_rows(h, rows)[0];
            rows.remove(first);
        });
        let planned = c.sync_with("removals = \"plan\"", false).await;
        let r = planned.report.removals.as_ref().expect("removals");
        assert_eq!((r.status.as_str(), r.planned_lines), ("planned", 1));
        assert_eq!(c.sandbox.snapshot().line_items.len(), before);
        let requests =
            std::fs::read_to_string(planned.run_dir.join("requests.ndjson")).expect("requests");
        assert_eq!(requests.lines().count(), 1);
        assert!(requests.contains("\"DELETE\""), "{requests}");
    });
}

#[test]
fn a_dry_run_shows_the_removals_it_would_make() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        c.sync().await;
        let before = c.sandbox.snapshot().line_items.len();
        c.edit(|h, rows| {
            let cost = cost_rows(h, rows);
            let gone: BTreeSet<usize> = cost.iter().copied().take(3).collect();
            let mut i = 0;
            rows.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        });
        let p = Pipeline::load(&c.pipeline("")).expect("pipeline");
        let dry = sync(
            &p,
            &SyncOptions {
                dry_run: true,
                ..SyncOptions::default()
            },
        )
        .await
        .expect("dry run");
        let r = dry.report.removals.as_ref().expect("removals");
        assert_eq!((r.status.as_str(), r.planned_lines), ("planned", 3));
        let requests =
            std::fs::read_to_string(dry.run_dir.join("requests.ndjson")).expect("requests");
        let deletes = requests
            .lines()
            .filter(|l| l.contains("\"method\":\"DELETE\""))
            .count();
        assert!((1..=3).contains(&deletes), "{requests}");
        assert_eq!(
            c.sandbox.snapshot().line_items.len(),
            before,
            "a dry run sends nothing"
        );
        // The manifest still verifies with the appended requests.
        jcsync::run::verify(&dry.run_dir).expect("the dry run's files match its manifest");
    });
}

#[test]
fn removals_end_exact_under_fifteen_percent_mixed_faults() {
    let faults = vec![
        FaultRule {
            kind: FaultKind::ServiceUnavailable,
            probability: 0.05,
            writes_only: false,
        },
        FaultRule {
            kind: FaultKind::LostResponse,
            probability: 0.05,
            writes_only: true,
        },
        FaultRule {
            kind: FaultKind::ConnectionReset,
            probability: 0.05,
            writes_only: false,
        },
    ];
    runtime().block_on(async {
        let c = Company::new(faults).await;
        c.sync().await;
        c.edit(|h, rows| {
            let cost: BTreeSet<usize> = cost_rows(h, rows)
                .into_iter()
                .step_by(40)
                .take(60)
                .collect();
            let mut i = 0;
            rows.retain(|_| {
                i += 1;
                !cost.contains(&(i - 1))
            });
        });
        let second = c.sync_with("", true).await;
        assert_eq!(second.exit_code, 0, "{:?}", second.report.load);
        assert!(removed_lines(&second) >= 50);
        assert_procore_equals_sage(&c, &second);
        let stats = c.sandbox.stats();
        let faults: u64 = stats.faults.values().sum();
        assert!(faults > 0, "faults were injected: {stats:?}");
    });
}

/// Turn a ledger back into schema version 1, as a jcsync from before removals wrote it: no
/// line's direct cost, date or amount, no `removed` table, user_version 0.
fn downgrade_to_v1(ledger: &Path) {
    let old = ledger.with_extension("v3");
    std::fs::rename(ledger, &old).expect("move the ledger");
    let conn = rusqlite::Connection::open(ledger).expect("open v1 ledger");
    conn.execute_batch(&format!(
        "CREATE TABLE loaded (
            target TEXT NOT NULL, origin_id TEXT NOT NULL, kind TEXT NOT NULL,
            job TEXT NOT NULL, procore_id INTEGER, payload_hash TEXT NOT NULL,
            run_id TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (target, origin_id));
         CREATE TABLE watermarks (
            scope TEXT PRIMARY KEY, stamp TEXT NOT NULL, run_id TEXT NOT NULL,
            updated_at TEXT NOT NULL);
         ATTACH DATABASE {:?} AS v3;
         INSERT INTO loaded SELECT target, origin_id, kind, job, procore_id, payload_hash,
            run_id, updated_at FROM v3.loaded;
         INSERT INTO watermarks SELECT * FROM v3.watermarks;
         DETACH DATABASE v3;",
        old.display().to_string()
    ))
    .expect("copy into a v1 ledger");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 0);
}

fn ledger_dates(ledger: &Path) -> (u64, u64) {
    let conn = rusqlite::Connection::open(ledger).expect("open ledger");
    conn.query_row(
        "SELECT COUNT(*), COUNT(direct_cost) FROM loaded WHERE kind = 'line'",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .expect("count")
}

#[test]
fn a_ledger_from_before_removals_is_migrated_and_its_gone_lines_are_removed() {
    runtime().block_on(async {
        let c = Company::new(Vec::new()).await;
        let first = c.sync().await;
        assert_procore_equals_sage(&c, &first);
        let ledger = c.dir.path().join("runs/ledger.sqlite");
        let lines = first.report.in_procore.as_ref().expect("ledger").lines;
        downgrade_to_v1(&ledger);
        let v1_lines: i64 = rusqlite::Connection::open(&ledger)
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM loaded WHERE kind = 'line'", [], |r| {
                    r.get(0)
                })
            })
            .expect("count v1 lines");
        assert_eq!(v1_lines as u64, lines, "the v1 ledger holds every line");
        // Three rows purged: their ledger entries do not know their direct cost, so the
        // removal reads the project's line items to find it.
        c.edit(|h, rows| {
            let cost = cost_rows(h, rows);
            let purged: BTreeSet<usize> = [cost[10], cost[200], cost[1500]].into();
            let mut i = 0;
            rows.retain(|_| {
                i += 1;
                !purged.contains(&(i - 1))
            });
        });
        let second = c.sync().await;
        assert_eq!(second.exit_code, 0, "{:?}", second.report.removals);
        assert_eq!(removed_lines(&second), 3, "{:?}", second.report.removals);
        assert_procore_equals_sage(&c, &second);
        // Every line still in Sage now knows its direct cost again (backfilled as seen).
        assert_eq!(ledger_dates(&ledger), (lines - 3, lines - 3));
        let third = c.sync().await;
        assert_eq!(removed_lines(&third), 0);
        assert_eq!(
            third.report.load.as_ref().expect("load").counts.lines_sent,
            0,
            "nothing to send after the migration"
        );
        assert_procore_equals_sage(&c, &third);
    });
}
