//! The demo company end to end, checked against the hand-computed `fixtures/expected/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use jcsync::model::schema::EXCLUDED_TRANSACTION_COLUMNS;
use jcsync::pipeline::RunOutcome;

struct DemoRun {
    _dir: tempfile::TempDir,
    outcome: RunOutcome,
}

/// One demo run shared by the read-only checks (uncompressed, so leaked text would be visible
/// in the raw bytes of the Parquet files too).
fn demo() -> &'static DemoRun {
    static RUN: OnceLock<DemoRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pipeline = write_pipeline(dir.path(), &repo().join("fixtures/sage"), "csv", "none", "");
        let outcome = run_sync(&pipeline).expect("demo sync succeeds");
        DemoRun { _dir: dir, outcome }
    })
}

fn expected(name: &str) -> PathBuf {
    repo().join("fixtures/expected").join(name)
}

/// line → (outcome, reason_code)
fn expected_outcomes() -> BTreeMap<u64, (String, String)> {
    read_csv(&expected("outcomes.csv"))
        .into_iter()
        .map(|r| {
            (
                r["line"].parse().expect("line"),
                (r["outcome"].clone(), r["reason_code"].clone()),
            )
        })
        .collect()
}

fn quarantine_rows(run_dir: &Path) -> Vec<(u64, String, String)> {
    let q = read_parquet(&[run_dir.join("quarantine.parquet")]);
    let lines = u64s(&q, "source_line");
    let codes = strings(&q, "reason_code");
    let reasons = strings(&q, "reason");
    lines
        .into_iter()
        .zip(codes)
        .zip(reasons)
        .map(|((l, c), r)| (l, c.unwrap_or_default(), r.unwrap_or_default()))
        .collect()
}

fn quarantine_row(line: u64) -> (String, String) {
    let rows = quarantine_rows(&demo().outcome.run_dir);
    let found: Vec<_> = rows.iter().filter(|(l, _, _)| *l == line).collect();
    assert_eq!(
        found.len(),
        1,
        "line {line} should be quarantined exactly once: {rows:?}"
    );
    (found[0].1.clone(), found[0].2.clone())
}

#[test]
fn counts_match_the_hand_computed_summary_and_reconcile() {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(expected("summary.json")).expect("summary"))
            .expect("json");
    let r = &demo().outcome.report;
    assert_eq!(
        r.counts.extracted,
        summary["extracted"].as_u64().expect("n")
    );
    assert_eq!(r.counts.filtered, summary["filtered"].as_u64().expect("n"));
    assert_eq!(r.counts.planned, summary["planned"].as_u64().expect("n"));
    assert_eq!(
        r.plan.direct_costs,
        summary["direct_costs"].as_u64().expect("n")
    );
    assert_eq!(
        r.planned_amount,
        summary["planned_amount"].as_str().expect("s")
    );
    let expected_q: BTreeMap<String, u64> = summary["quarantined"]
        .as_object()
        .expect("obj")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("n")))
        .collect();
    assert_eq!(r.counts.quarantined, expected_q);
    assert!(r.reconciled);
    assert_eq!(
        r.counts.extracted,
        r.counts.filtered + r.counts.quarantined_total + r.counts.planned
    );
}

#[test]
fn every_source_row_is_accounted_for_exactly_once_as_expected() {
    let run_dir = &demo().outcome.run_dir;
    let expected = expected_outcomes();
    let staged = read_parquet(&staged_files(run_dir));
    let staged_lines = u64s(&staged, "source_line");
    let quarantined = quarantine_rows(run_dir);

    let mut seen: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for l in &staged_lines {
        assert!(
            seen.insert(*l, ("planned".into(), String::new())).is_none(),
            "line {l} twice"
        );
    }
    for (l, code, _) in &quarantined {
        assert!(
            seen.insert(*l, ("quarantined".into(), code.clone()))
                .is_none(),
            "line {l} twice"
        );
    }
    // What is neither staged nor quarantined was filtered.
    for (line, (outcome, code)) in &expected {
        let got = seen
            .get(line)
            .cloned()
            .unwrap_or(("filtered".into(), "not_cost_type".into()));
        assert_eq!(&got, &(outcome.clone(), code.clone()), "line {line}");
    }
    assert!(
        seen.keys().all(|l| expected.contains_key(l)),
        "a row from nowhere: {seen:?}"
    );
}

#[test]
fn totals_per_budget_code_match_to_the_cent() {
    let expected: Vec<(String, String, String, String, String)> = read_csv(&expected("totals.csv"))
        .into_iter()
        .map(|r| {
            (
                r["job"].clone(),
                r["extra"].clone(),
                r["cost_code"].clone(),
                r["category"].clone(),
                r["amount"].clone(),
            )
        })
        .collect();
    let got: Vec<(String, String, String, String, String)> = demo()
        .outcome
        .report
        .totals
        .iter()
        .map(|t| {
            (
                t.job.clone(),
                t.extra.clone().unwrap_or_default(),
                t.cost_code.clone().unwrap_or_default(),
                t.category.clone().unwrap_or_default(),
                t.amount.clone(),
            )
        })
        .collect();
    let expected: BTreeSet<_> = expected.into_iter().collect();
    let got: BTreeSet<_> = got.into_iter().collect();
    assert_eq!(got, expected);
}

/// Parse requests.ndjson: header origin_id → (job, type, group key) and the lines of each header.
fn planned_direct_costs(run_dir: &Path) -> BTreeSet<(String, String, String, usize, String)> {
    let text = std::fs::read_to_string(run_dir.join("requests.ndjson")).expect("requests");
    let mut headers: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut lines: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for line in text.lines() {
        let req: serde_json::Value = serde_json::from_str(line).expect("json line");
        let updates = req["body"]["updates"].as_array().expect("updates");
        assert!(!updates.is_empty() && updates.len() <= 1000);
        assert_eq!(req["records"].as_u64(), Some(updates.len() as u64));
        let path = req["path"].as_str().expect("path");
        for u in updates {
            if path.ends_with("/direct_costs/sync") {
                let data = u["origin_data"].as_str().expect("origin_data");
                let mut parts = data.trim_start_matches("sage:").splitn(3, '|');
                let job = parts.next().expect("job").to_string();
                let ty = parts.next().expect("type").to_string();
                let key = parts.next().expect("key").to_string();
                assert_eq!(u["direct_cost_type"].as_str(), Some(ty.as_str()));
                headers.insert(
                    u["origin_id"].as_str().expect("id").to_string(),
                    (job, ty, key),
                );
            } else {
                let dc = u["unresolved"]["direct_cost_id"]["origin_id"]
                    .as_str()
                    .expect("dc")
                    .to_string();
                assert!(
                    headers.contains_key(&dc),
                    "line sent before its header {dc}"
                );
                let amount = u["amount"].as_str().expect("amount").replace('.', "");
                let e = lines.entry(dc).or_default();
                e.0 += 1;
                e.1 += amount.parse::<i64>().expect("cents");
            }
        }
    }
    headers
        .into_iter()
        .map(|(id, (job, ty, key))| {
            let (n, cents) = lines.get(&id).copied().unwrap_or_default();
            (
                job,
                ty,
                key,
                n,
                jcsync::model::values::format_decimal(cents as i128, 2),
            )
        })
        .collect()
}

#[test]
fn direct_costs_group_as_domain_rules_say_with_headers_before_lines() {
    let expected: BTreeSet<_> = read_csv(&expected("direct_costs.csv"))
        .into_iter()
        .map(|r| {
            (
                r["job"].clone(),
                r["direct_cost_type"].clone(),
                r["group_key"].clone(),
                r["lines"].parse::<usize>().expect("lines"),
                r["amount"].clone(),
            )
        })
        .collect();
    assert_eq!(planned_direct_costs(&demo().outcome.run_dir), expected);
}

#[test]
fn no_excluded_column_name_or_value_reaches_any_file_of_the_run() {
    // The values: every excluded-column value in the fixture transaction file.
    let rows = read_csv(&repo().join("fixtures/sage/JCT_CURRENT__TRANSACTION.csv"));
    let mut needles: BTreeSet<String> = EXCLUDED_TRANSACTION_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .collect();
    for r in &rows {
        for c in EXCLUDED_TRANSACTION_COLUMNS {
            let v = r.get(c).map(|v| v.trim().to_string()).unwrap_or_default();
            if !v.is_empty() {
                needles.insert(v);
            }
        }
    }
    assert!(
        needles.len() > 100,
        "the fixtures should carry excluded values to look for"
    );
    let files = files_under(&demo().outcome.run_dir);
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{n:?} found in {}", f.display());
        }
        if f.extension().is_some_and(|e| e == "parquet") {
            let batch = read_parquet(std::slice::from_ref(f));
            for field in batch.schema().fields() {
                for c in EXCLUDED_TRANSACTION_COLUMNS {
                    assert!(
                        !field.name().eq_ignore_ascii_case(c),
                        "column {c} in {}",
                        f.display()
                    );
                }
                // Decoded values too (in case an encoding hid them from the byte scan).
                for v in strings(&batch, field.name()).into_iter().flatten() {
                    assert!(!needles.contains(&v), "{v:?} in {}", f.display());
                }
            }
        }
    }
}

#[test]
fn non_numeric_amount_is_quarantined_naming_column_value_and_line() {
    let (code, reason) = quarantine_row(22);
    assert_eq!(code, "bad_value");
    assert!(
        reason.contains("Amount") && reason.contains("12,34x") && reason.contains("line 22"),
        "{reason}"
    );
}

#[test]
fn impossible_date_is_quarantined_naming_column_value_and_line() {
    let (code, reason) = quarantine_row(31);
    assert_eq!(code, "bad_value");
    assert!(
        reason.contains("Accounting_Date")
            && reason.contains("2024-02-30")
            && reason.contains("line 31"),
        "{reason}"
    );
}

#[test]
fn empty_accounting_date_is_quarantined_as_missing_value() {
    let (code, reason) = quarantine_row(14);
    assert_eq!(code, "missing_value");
    assert!(reason.contains("Accounting_Date"), "{reason}");
}

#[test]
fn repeated_natural_key_is_quarantined_naming_the_first_line() {
    let (code, reason) = quarantine_row(23);
    assert_eq!(code, "duplicate_key");
    assert!(reason.contains("repeats line 10"), "{reason}");
}

#[test]
fn transaction_on_unknown_job_is_quarantined_with_reason() {
    let (code, reason) = quarantine_row(46);
    assert_eq!(code, "unknown_job");
    assert!(
        reason.contains("9999") && reason.contains("Job (JC)"),
        "{reason}"
    );
}

fn staged_row(line: u64) -> BTreeMap<String, Option<String>> {
    let staged = read_parquet(&staged_files(&demo().outcome.run_dir));
    let lines = u64s(&staged, "source_line");
    let row = lines
        .iter()
        .position(|l| *l == line)
        .unwrap_or_else(|| panic!("line {line} not staged"));
    staged
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), strings(&staged, f.name())[row].clone()))
        .collect()
}

#[test]
fn ap_cost_without_invoice_loads_with_its_own_date() {
    let row = staged_row(39);
    assert_eq!(row["transaction_type"].as_deref(), Some("AP cost"));
    assert_eq!(row["invoice_date"], None);
    let text =
        std::fs::read_to_string(demo().outcome.run_dir.join("requests.ndjson")).expect("requests");
    let header = text
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["body"]["updates"].as_array().cloned().unwrap_or_default()
        })
        .find(|u| u["origin_id"].as_str() == row["direct_cost_origin_id"].as_deref())
        .expect("header of line 39");
    assert_eq!(
        header["direct_cost_date"].as_str(),
        row["accounting_date"].as_deref()
    );
}

#[test]
fn padded_keys_join_and_invoice_dates_come_from_the_invoice() {
    // Line 5: padded job, vendor and invoice in the transaction and in APM_MASTER__INVOICE.
    let row = staged_row(5);
    assert_eq!(row["job"].as_deref(), Some("1001"));
    assert_eq!(row["vendor"].as_deref(), Some("V100"));
    assert_eq!(row["invoice"].as_deref(), Some("INV-4471"));
    assert_eq!(row["invoice_date"].as_deref(), Some("2024-01-10"));
    assert_eq!(row["invoice_received_date"].as_deref(), Some("2024-01-12"));
    assert_eq!(row["gl_prefix"].as_deref(), Some("01"));
    assert!(row["job_description"].is_some());
}

#[test]
fn amounts_round_half_away_from_zero_once_at_ingest() {
    assert_eq!(staged_row(6)["amount"].as_deref(), Some("2.68"));
    assert_eq!(staged_row(8)["amount"].as_deref(), Some("1.01"));
    assert_eq!(staged_row(27)["amount"].as_deref(), Some("-2.68"));
    assert_eq!(staged_row(18)["amount"].as_deref(), Some("0.30"));
}

#[test]
fn non_ascii_description_survives_intact() {
    let d = staged_row(6)["description"].clone().expect("description");
    assert!(d.contains('é') && d.contains('’'), "{d}");
}

#[test]
fn run_is_deterministic_and_ids_are_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &repo().join("fixtures/sage"), "csv", "zstd", "");
    let again = run_sync(&pipeline).expect("second run");
    let a = std::fs::read(demo().outcome.run_dir.join("requests.ndjson")).expect("a");
    let b = std::fs::read(again.run_dir.join("requests.ndjson")).expect("b");
    assert_eq!(
        a, b,
        "same input must plan the same requests, byte for byte"
    );
    let sa = read_parquet(&staged_files(&demo().outcome.run_dir));
    let sb = read_parquet(&staged_files(&again.run_dir));
    assert_eq!(
        strings(&sa, "line_origin_id"),
        strings(&sb, "line_origin_id")
    );
    // Ids are unique per line.
    let ids: BTreeSet<_> = strings(&sa, "line_origin_id").into_iter().collect();
    assert_eq!(ids.len(), sa.num_rows());
}

#[test]
fn inspect_verifies_the_run_and_refuses_a_tampered_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &repo().join("fixtures/sage"), "csv", "zstd", "");
    let run = run_sync(&pipeline).expect("run");
    let text = jcsync::run::inspect(&run.run_dir).expect("verifies");
    assert!(
        text.contains("verified") && text.contains("unknown_job"),
        "{text}"
    );
    let json = jcsync::run::inspection(&run.run_dir).expect("inspection");
    assert!(json.verified);
    assert_eq!(
        json.totals_per_job.get("1001").map(String::as_str),
        Some("11725.02")
    );
    let unknown = json
        .quarantined
        .iter()
        .find(|q| q.reason_code == "unknown_job")
        .expect("unknown_job");
    assert_eq!((unknown.stage.as_str(), unknown.rows), ("enrich", 1));
    assert_eq!(
        json.requests.values().flat_map(|b| b.values()).sum::<u64>(),
        6
    );

    let part = run.run_dir.join("staged/part-00000.parquet");
    let mut bytes = std::fs::read(&part).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&part, &bytes).expect("write");
    let err = jcsync::run::inspect(&run.run_dir)
        .expect_err("tampered run refused")
        .to_string();
    assert!(
        err.contains("part-00000.parquet") && err.contains("sha256"),
        "{err}"
    );

    std::fs::remove_file(run.run_dir.join("requests.ndjson")).expect("remove");
    std::fs::remove_file(run.run_dir.join("staged/part-00000.parquet")).expect("remove");
    let err = jcsync::run::inspect(&run.run_dir)
        .expect_err("incomplete run refused")
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn origin_ids_are_pinned_to_the_values_procore_already_holds() {
    // fixtures/expected/origin_ids.csv was written by the first released id scheme. Every id is
    // a record Procore already holds: a different id for the same row would load it twice.
    let expected: BTreeMap<u64, (String, String)> = read_csv(&expected("origin_ids.csv"))
        .into_iter()
        .map(|r| {
            (
                r["source_line"].parse().expect("source_line"),
                (
                    r["line_origin_id"].clone(),
                    r["direct_cost_origin_id"].clone(),
                ),
            )
        })
        .collect();
    let staged = read_parquet(&staged_files(&demo().outcome.run_dir));
    let got: BTreeMap<u64, (String, String)> = u64s(&staged, "source_line")
        .into_iter()
        .zip(strings(&staged, "line_origin_id"))
        .zip(strings(&staged, "direct_cost_origin_id"))
        .map(|((l, a), b)| (l, (a.unwrap_or_default(), b.unwrap_or_default())))
        .collect();
    assert_eq!(got.len(), 35);
    assert_eq!(got, expected);
}
