//! Damaged CSV exports (issue 14): a broken quote, a shifted record, a duplicated header, other
//! line endings, invalid UTF-8, missing key columns. Each test damages a copy of the fixture
//! company, runs the `jcsync` binary on it (dry run), and checks that every row is accounted for
//! with the right physical line, and that no excluded value reaches any file of the run, the
//! summary or the log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use jcsync::model::schema::EXCLUDED_TRANSACTION_COLUMNS;

const TX: &str = "JCT_CURRENT__TRANSACTION";
const TX_FIELDS: usize = 31;

/// The fixture's lines (no line breaks) of one table.
fn fixture_lines(table: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(repo().join(format!("fixtures/sage/{table}.csv"))).expect("fixture");
    let text = bytes.strip_suffix(b"\n").expect("ends in a line break");
    text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Replace field `i` of a fixture line that holds no quoted comma.
fn set_field(line: &[u8], i: usize, value: &[u8]) -> Vec<u8> {
    let mut fields: Vec<&[u8]> = line.split(|b| *b == b',').collect();
    fields[i] = value;
    fields.join(&b","[..])
}

/// A copy of the fixture company in `dir/sage`, with `table` written as `lines` joined by `eol`.
fn company(dir: &Path, edits: &[(&str, Vec<Vec<u8>>, &str)]) -> PathBuf {
    let sage = dir.join("sage");
    std::fs::create_dir_all(&sage).expect("mkdir");
    for e in std::fs::read_dir(repo().join("fixtures/sage")).expect("fixtures") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, sage.join(p.file_name().expect("name"))).expect("copy");
    }
    for (table, lines, eol) in edits {
        let mut bytes = lines.join(eol.as_bytes());
        bytes.extend_from_slice(eol.as_bytes());
        std::fs::write(sage.join(format!("{table}.csv")), bytes).expect("write");
    }
    sage
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The run directory, when one was created.
    run_dir: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn dir(&self) -> &Path {
        self.run_dir.as_deref().unwrap_or_else(|| {
            panic!(
                "no run directory (exit {:?}):\n{}\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir().join("report.json")).unwrap_or_else(|e| {
            panic!(
                "report.json: {e} (exit {:?}):\n{}\n{}",
                self.code, self.stdout, self.stderr
            )
        });
        serde_json::from_str(&text).expect("json")
    }

    /// (source_line, reason_code, reason) of every quarantine row, by line.
    fn quarantine(&self) -> Vec<(u64, String, String)> {
        let q = read_parquet(&[self.dir().join("quarantine.parquet")]);
        let lines = u64s(&q, "source_line");
        let codes = strings(&q, "reason_code");
        let reasons = strings(&q, "reason");
        let mut rows: Vec<(u64, String, String)> = lines
            .into_iter()
            .zip(codes)
            .zip(reasons)
            .map(|((l, c), r)| (l, c.unwrap_or_default(), r.unwrap_or_default()))
            .collect();
        rows.sort();
        rows
    }

    /// The data columns of the quarantine row of `line`.
    fn quarantine_values(&self, line: u64) -> BTreeMap<String, Option<String>> {
        let q = read_parquet(&[self.dir().join("quarantine.parquet")]);
        let row = u64s(&q, "source_line")
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("line {line} not quarantined"));
        jcsync::quarantine::QUARANTINE_DATA_COLUMNS
            .iter()
            .map(|c| (c.to_string(), strings(&q, c)[row].clone()))
            .collect()
    }

    /// source_line of every staged row, sorted.
    fn staged_lines(&self) -> Vec<u64> {
        let mut v = u64s(&read_parquet(&staged_files(self.dir())), "source_line");
        v.sort_unstable();
        v
    }

    /// (source_line, line_origin_id, direct_cost_origin_id) of every staged row, sorted.
    fn staged_origin_ids(&self) -> Vec<(u64, String, String)> {
        let b = read_parquet(&staged_files(self.dir()));
        let mut v: Vec<(u64, String, String)> = u64s(&b, "source_line")
            .into_iter()
            .zip(strings(&b, "line_origin_id"))
            .zip(strings(&b, "direct_cost_origin_id"))
            .map(|((l, a), d)| (l, a.unwrap_or_default(), d.unwrap_or_default()))
            .collect();
        v.sort();
        v
    }

    /// No excluded value of the fixture in any file of the run (bytes and decoded Parquet
    /// values), in the summary or in the log.
    fn assert_no_excluded_value(&self) {
        let needles = excluded_values();
        for (what, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            for n in &needles {
                assert!(!text.contains(n.as_str()), "{n:?} in {what}:\n{text}");
            }
        }
        let files = files_under(self.dir());
        assert!(files.len() >= 4, "{files:?}");
        for f in &files {
            let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
            for n in &needles {
                assert!(!text.contains(n.as_str()), "{n:?} in {}", f.display());
            }
            if f.extension().is_some_and(|e| e == "parquet") {
                let batch = read_parquet(std::slice::from_ref(f));
                for field in batch.schema().fields() {
                    for v in strings(&batch, field.name()).into_iter().flatten() {
                        for n in &needles {
                            assert!(!v.contains(n.as_str()), "{n:?} in {}", f.display());
                        }
                    }
                }
            }
        }
    }
}

/// Every excluded-column value of the fixture transactions (they all start with `X`, so none
/// is a substring of an ordinary value).
fn excluded_values() -> BTreeSet<String> {
    let rows = read_csv(&repo().join(format!("fixtures/sage/{TX}.csv")));
    let mut needles = BTreeSet::new();
    for r in &rows {
        for c in EXCLUDED_TRANSACTION_COLUMNS {
            let v = r.get(c).map(|v| v.trim().to_string()).unwrap_or_default();
            if !v.is_empty() {
                assert!(v.starts_with('X'), "{v}");
                needles.insert(v);
            }
        }
    }
    assert!(needles.len() > 300, "{}", needles.len());
    needles
}

/// Run `jcsync sync` (dry run, uncompressed staged files) on a company directory.
fn sync_with(edits: &[(&str, Vec<Vec<u8>>, &str)], extra: &str, format: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = company(dir.path(), edits);
    run_pipeline(dir, &source, extra, format)
}

fn sync(edits: &[(&str, Vec<Vec<u8>>, &str)]) -> Run {
    sync_with(edits, "", "csv")
}

fn run_pipeline(dir: tempfile::TempDir, source: &Path, extra: &str, format: &str) -> Run {
    let pipeline = write_pipeline(dir.path(), source, format, "none", extra);
    let out = Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(["sync", pipeline.to_str().expect("utf8")])
        .env("JCSYNC_LOG", "info")
        .output()
        .expect("run jcsync");
    let runs = dir.path().join("runs");
    let run_dir = std::fs::read_dir(&runs).ok().and_then(|entries| {
        entries.map(|e| e.expect("entry").path()).find(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
    });
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        run_dir,
        _dir: dir,
    }
}

/// The fixture's planned lines and its quarantined lines (line → reason code), from
/// fixtures/expected/outcomes.csv.
fn expected_outcomes() -> (Vec<u64>, BTreeMap<u64, String>) {
    let mut planned = Vec::new();
    let mut quarantined = BTreeMap::new();
    for r in read_csv(&repo().join("fixtures/expected/outcomes.csv")) {
        let line: u64 = r["line"].parse().expect("line");
        match r["outcome"].as_str() {
            "planned" => planned.push(line),
            "quarantined" => {
                quarantined.insert(line, r["reason_code"].clone());
            }
            _ => {}
        }
    }
    (planned, quarantined)
}

/// fixtures/expected/origin_ids.csv: source_line → (line origin id, direct cost origin id).
fn pinned_origin_ids() -> BTreeMap<u64, (String, String)> {
    read_csv(&repo().join("fixtures/expected/origin_ids.csv"))
        .into_iter()
        .map(|r| {
            (
                r["source_line"].parse().expect("line"),
                (
                    r["line_origin_id"].clone(),
                    r["direct_cost_origin_id"].clone(),
                ),
            )
        })
        .collect()
}

fn counts(report: &serde_json::Value) -> (u64, u64, u64, BTreeMap<String, u64>) {
    let c = &report["counts"];
    let q = c["quarantined"]
        .as_object()
        .expect("quarantined")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("n")))
        .collect();
    (
        c["extracted"].as_u64().expect("extracted"),
        c["filtered"].as_u64().expect("filtered"),
        c["planned"].as_u64().expect("planned"),
        q,
    )
}

/// The fixture's quarantine counts plus `more`.
fn fixture_quarantine_plus(more: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut q: BTreeMap<String, u64> = [
        ("bad_value", 2),
        ("missing_value", 1),
        ("duplicate_key", 1),
        ("unknown_job", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in more {
        *q.entry(k.to_string()).or_default() += v;
    }
    q
}

/// Checks shared by the cases where one transaction line (`line`) is set aside as malformed:
/// the counts reconcile, every other line has its fixture outcome, and the staged rows keep
/// their pinned origin ids. `split` says the record split into its fields (then the values of
/// its used columns may be kept beside the reason); otherwise nothing of it is kept.
fn assert_one_line_set_aside(run: &Run, line: u64, split: bool) {
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let (extracted, filtered, planned, q) = counts(&report);
    assert_eq!(extracted, 51);
    assert_eq!(filtered, 11);
    assert_eq!(planned, 34);
    assert_eq!(q, fixture_quarantine_plus(&[("malformed_record", 1)]));
    assert_eq!(report["reconciled"], serde_json::Value::Bool(true));
    let (expected_planned, expected_q) = expected_outcomes();
    let want: Vec<u64> = expected_planned
        .into_iter()
        .filter(|l| *l != line)
        .collect();
    assert_eq!(run.staged_lines(), want);
    let mut want_q: Vec<(u64, String)> = expected_q.into_iter().collect();
    want_q.push((line, "malformed_record".into()));
    want_q.sort();
    let got_q: Vec<(u64, String)> = run
        .quarantine()
        .into_iter()
        .map(|(l, c, _)| (l, c))
        .collect();
    assert_eq!(got_q, want_q);
    if !split {
        // Nothing of the record is kept but its line and reason.
        assert!(
            run.quarantine_values(line).values().all(Option::is_none),
            "{:?}",
            run.quarantine_values(line)
        );
    }
    let pinned = pinned_origin_ids();
    for (l, line_id, dc_id) in run.staged_origin_ids() {
        assert_eq!(pinned.get(&l), Some(&(line_id, dc_id)), "line {l}");
    }
    run.assert_no_excluded_value();
}

fn reason_of(run: &Run, line: u64) -> String {
    let rows = run.quarantine();
    let found: Vec<_> = rows.iter().filter(|r| r.0 == line).collect();
    assert_eq!(found.len(), 1, "{rows:?}");
    found[0].2.clone()
}

// 1. An unclosed quote.

#[test]
fn an_unclosed_quote_sets_aside_its_own_line_and_every_later_line_is_read() {
    let mut lines = fixture_lines(TX);
    // Line 6's Description opens a quote that never closes (the next quote in the file is on
    // line 22, `"12,34x"`): the csv crate swallowed lines 6-22 into one record.
    lines[5] = set_field(&lines[5], 7, b"\"Beton pret a l'emploi");
    let run = sync(&[(TX, lines, "\n")]);
    assert_one_line_set_aside(&run, 6, false);
    let reason = reason_of(&run, 6);
    assert!(
        reason.starts_with(&format!("{TX} line 6: a quoted field opens on this line")),
        "{reason}"
    );
    assert!(reason.contains("unclosed quote"), "{reason}");
}

#[test]
fn an_unclosed_quote_on_the_last_line_keeps_none_of_its_values() {
    let mut lines = fixture_lines(TX);
    lines[51] = set_field(&lines[51], 7, b"\"Warranty service");
    let run = sync(&[(TX, lines, "\n")]);
    assert_one_line_set_aside(&run, 52, false);
    assert!(reason_of(&run, 52).contains("unclosed quote"));
}

#[test]
fn a_quoted_line_break_in_a_description_is_one_record() {
    let mut lines = fixture_lines(TX);
    lines[6] = set_field(&lines[6], 7, b"\"Concrete pumping\r\nservice, 2nd truck\"");
    let run = sync(&[(TX, lines, "\r\n")]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let (extracted, _, planned, q) = counts(&run.report());
    assert_eq!((extracted, planned), (51, 35));
    assert_eq!(q, fixture_quarantine_plus(&[]));
    // Line 7 spans two physical lines: every later line is one further down.
    let (planned_lines, _) = expected_outcomes();
    let want: Vec<u64> = planned_lines
        .iter()
        .map(|l| if *l > 7 { l + 1 } else { *l })
        .collect();
    assert_eq!(run.staged_lines(), want);
    let b = read_parquet(&staged_files(run.dir()));
    let row = u64s(&b, "source_line")
        .iter()
        .position(|l| *l == 7)
        .expect("line 7 staged");
    assert_eq!(
        strings(&b, "description")[row].as_deref(),
        Some("Concrete pumping\r\nservice, 2nd truck")
    );
    run.assert_no_excluded_value();
}

// 2. A shifted record.

#[test]
fn a_record_missing_a_field_keeps_only_its_field_count_and_line() {
    let mut lines = fixture_lines(TX);
    // Without its Extra, every later value of line 7 sits one column to the left: the
    // Commitment_CO value (XCO-7707) under Time_Stamp.
    let mut fields: Vec<&[u8]> = lines[6].split(|b| *b == b',').collect();
    fields.remove(1);
    lines[6] = fields.join(&b","[..]);
    let run = sync(&[(TX, lines, "\n")]);
    assert_one_line_set_aside(&run, 7, false);
    assert_eq!(
        reason_of(&run, 7),
        format!("{TX} line 7: expected {TX_FIELDS} fields, found 30")
    );
}

// 3. A duplicated header name.

fn assert_duplicate_column_error(run: &Run, file: &str, column: &str) {
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(file)
            && run
                .stderr
                .contains(&format!("column {column} appears 2 times")),
        "{}",
        run.stderr
    );
    assert!(
        run.run_dir
            .as_ref()
            .is_none_or(|d| !d.join("report.json").exists()),
        "nothing is staged when an input is wrong"
    );
}

#[test]
fn a_second_amount_column_is_an_error_naming_the_file_and_column() {
    let mut lines = fixture_lines(TX);
    lines[0].extend_from_slice(b", amount ");
    for l in &mut lines[1..] {
        l.extend_from_slice(b",0");
    }
    let run = sync(&[(TX, lines, "\n")]);
    assert_duplicate_column_error(&run, &format!("{TX}.csv"), "Amount");
}

#[test]
fn a_second_job_column_in_the_job_table_is_an_error() {
    let mut lines = fixture_lines("JCM_MASTER__JOB");
    lines[0].extend_from_slice(b",JOB");
    for l in &mut lines[1..] {
        l.extend_from_slice(b",x");
    }
    let run = sync(&[("JCM_MASTER__JOB", lines, "\n")]);
    assert_duplicate_column_error(&run, "JCM_MASTER__JOB.csv", "Job");
}

#[test]
fn a_repeated_column_that_is_not_read_changes_nothing() {
    let mut lines = fixture_lines(TX);
    lines[0].extend_from_slice(b",Employee,Notes,Notes");
    for l in &mut lines[1..] {
        l.extend_from_slice(b",XEMP-EXTRA,n1,n2");
    }
    let run = sync(&[(TX, lines, "\n")]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let (extracted, filtered, planned, q) = counts(&run.report());
    assert_eq!((extracted, filtered, planned), (51, 11, 35));
    assert_eq!(q, fixture_quarantine_plus(&[]));
    assert!(!run.stderr.contains("XEMP-EXTRA"));
}

/// Write every fixture table as a Parquet file of text columns; `extra` adds a column (name,
/// value) to the transaction table.
fn parquet_company(dir: &Path, extra: Option<(&str, &str)>) -> PathBuf {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let out = dir.join("sage-parquet");
    std::fs::create_dir_all(&out).expect("mkdir");
    for table in [
        TX,
        "JCM_MASTER__JOB",
        "GLM_MASTER__ACCOUNT_PREFIX_A",
        "GLM_MASTER__ACCOUNT",
        "APM_MASTER__INVOICE",
    ] {
        let mut r =
            csv::Reader::from_path(repo().join(format!("fixtures/sage/{table}.csv"))).expect("csv");
        let mut names: Vec<String> = r.headers().expect("h").iter().map(str::to_string).collect();
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|x| x.expect("rec").iter().map(str::to_string).collect())
            .collect();
        let mut columns: Vec<ArrayRef> = (0..names.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|row| row[i].clone()),
                )) as ArrayRef
            })
            .collect();
        if let (TX, Some((name, value))) = (table, extra) {
            names.push(name.to_string());
            columns.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|_| value),
            )));
        }
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        let f = std::fs::File::create(out.join(format!("{table}.parquet"))).expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }
    out
}

#[test]
fn a_second_amount_column_in_a_parquet_export_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same company without the repeat loads, so the error is the repeat's.
    let clean = parquet_company(dir.path(), None);
    let clean_dir = tempfile::tempdir().expect("tempdir");
    let run = run_pipeline(clean_dir, &clean, "", "parquet");
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    std::fs::remove_dir_all(&clean).expect("rm");
    let source = parquet_company(dir.path(), Some(("AMOUNT", "0")));
    let run = run_pipeline(dir, &source, "", "parquet");
    assert_duplicate_column_error(&run, &format!("{TX}.parquet"), "Amount");
}

#[test]
fn a_sql_server_table_with_two_spellings_of_a_column_is_refused() {
    let config = jcsync::config::PipelineConfig::parse(
        "company = \"DEMO\"\n[source]\nkind = \"mssql\"\nhost = \"sql01\"\ndatabase = \"Sage\"\n\
         user = \"reader\"\npassword_env = \"SAGE_PW\"\n[target]\nkind = \"dry-run\"\n",
    )
    .expect("config");
    let jcsync::config::SourceConfig::Mssql(src) = &config.source else {
        panic!("mssql source")
    };
    let found: Vec<String> = [
        "Job",
        "Description",
        "Status",
        "Cost_Account_Prefix",
        "Cost_Account",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let plan = jcsync::extract::mssql::plan_table(
        src,
        jcsync::model::schema::TableRole::Job,
        "JCM_MASTER__JOB",
        &found,
    );
    assert!(plan.is_ok());
    let mut twice = found.clone();
    twice.push("JOB".into());
    let err = jcsync::extract::mssql::plan_table(
        src,
        jcsync::model::schema::TableRole::Job,
        "JCM_MASTER__JOB",
        &twice,
    )
    .expect_err("a repeated Job is refused")
    .to_string();
    assert!(
        err.contains("JCM_MASTER__JOB") && err.contains("column Job appears 2 times"),
        "{err}"
    );
    // Natural-key columns are required there too.
    let without_run: Vec<String> = jcsync::model::schema::TRANSACTION_SOURCE_COLUMNS
        .iter()
        .filter(|c| !["Run", "Sequence"].contains(c))
        .map(|c| c.to_string())
        .collect();
    let err = jcsync::extract::mssql::plan_table(
        src,
        jcsync::model::schema::TableRole::Transaction,
        TX,
        &without_run,
    )
    .expect_err("Run and Sequence are required")
    .to_string();
    assert!(
        err.contains(TX) && err.contains("required columns Run, Sequence are missing"),
        "{err}"
    );
}

// 4. Line numbers.

/// Physical line of fixture line `l` after inserting blank lines after fixture lines 10 and
/// (two) 30.
fn shifted(l: u64) -> u64 {
    l + u64::from(l > 10) + 2 * u64::from(l > 30)
}

fn with_blank_lines(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.push(l.clone());
        if i + 1 == 10 {
            out.push(Vec::new());
        }
        if i + 1 == 30 {
            out.push(Vec::new());
            out.push(Vec::new());
        }
    }
    out
}

fn assert_lines(run: &Run, at: impl Fn(u64) -> u64) {
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let (extracted, filtered, planned, q) = counts(&run.report());
    assert_eq!((extracted, filtered, planned), (51, 11, 35));
    assert_eq!(q, fixture_quarantine_plus(&[]));
    let (planned_lines, quarantined) = expected_outcomes();
    let want: Vec<u64> = planned_lines.into_iter().map(&at).collect();
    assert_eq!(run.staged_lines(), want);
    let got_q: Vec<(u64, String)> = run
        .quarantine()
        .into_iter()
        .map(|(l, c, _)| (l, c))
        .collect();
    let want_q: Vec<(u64, String)> = quarantined.into_iter().map(|(l, c)| (at(l), c)).collect();
    assert_eq!(got_q, want_q);
    // Reasons name the same physical lines.
    for (l, _, reason) in run.quarantine() {
        assert!(reason.contains(&format!("line {l}:")), "{l}: {reason}");
    }
    let dup = run
        .quarantine()
        .into_iter()
        .find(|r| r.1 == "duplicate_key")
        .expect("duplicate");
    assert!(
        dup.2.contains(&format!("repeats line {}", at(10))),
        "{}",
        dup.2
    );
    run.assert_no_excluded_value();
}

#[test]
fn crlf_lines_are_numbered_as_physical_lines() {
    let run = sync(&[(TX, fixture_lines(TX), "\r\n")]);
    assert_lines(&run, |l| l);
}

#[test]
fn cr_only_lines_are_numbered_as_physical_lines() {
    let run = sync(&[(TX, fixture_lines(TX), "\r")]);
    assert_lines(&run, |l| l);
}

#[test]
fn blank_lines_count_as_lines_for_lf_and_crlf() {
    for eol in ["\n", "\r\n", "\r"] {
        let run = sync(&[(TX, with_blank_lines(&fixture_lines(TX)), eol)]);
        assert_lines(&run, shifted);
    }
}

// 5. Numeric pipeline keys.

#[test]
fn an_impossible_batch_size_is_a_config_error_naming_the_key() {
    let run = sync_with(&[], "[pipeline]\nbatch_rows = 10000000000\n", "csv");
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("pipeline.batch_rows") && run.stderr.contains("10000000000"),
        "{}",
        run.stderr
    );
    assert!(
        run.run_dir.is_none(),
        "no run directory for a bad pipeline file"
    );
}

// 6. Invalid UTF-8.

#[test]
fn invalid_utf8_in_a_used_column_names_the_column_and_the_escaped_value_once() {
    let mut lines = fixture_lines(TX);
    lines[44] = set_field(&lines[44], 7, b"O-ring \xe9 seal");
    // An invalid byte in an excluded column is never read: its row loads.
    lines[42] = set_field(&lines[42], 26, b"XEMP-Doe-A-0043\xff");
    let run = sync(&[(TX, lines, "\n")]);
    assert_one_line_set_aside(&run, 45, true);
    let reason = reason_of(&run, 45);
    assert_eq!(
        reason,
        format!("{TX} line 45: column Description: value \"O-ring \\xe9 seal\" is not valid UTF-8")
    );
    assert!(run.staged_lines().contains(&43));
}

// 7. Natural-key columns.

#[test]
fn a_transaction_file_without_run_and_sequence_is_an_error_naming_them() {
    let lines: Vec<Vec<u8>> = fixture_lines(TX)
        .iter()
        .map(|l| {
            let mut fields: Vec<&[u8]> = l.split(|b| *b == b',').collect();
            fields.remove(17); // Sequence
            fields.remove(16); // Run
            fields.join(&b","[..])
        })
        .collect();
    let run = sync(&[(TX, lines, "\n")]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!("{TX}.csv"))
            && run
                .stderr
                .contains("required columns Run, Sequence are missing"),
        "{}",
        run.stderr
    );
}

// 8. A bad byte in a dimension's description.

#[test]
fn a_bad_byte_in_a_job_description_is_decoded_lossily_and_reported() {
    let mut jobs = fixture_lines("JCM_MASTER__JOB");
    jobs[1] = set_field(&jobs[1], 1, b"Riverside Office \xff Tower");
    let run = sync(&[("JCM_MASTER__JOB", jobs, "\n")]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let (extracted, filtered, planned, q) = counts(&report);
    assert_eq!((extracted, filtered, planned), (51, 11, 35));
    assert_eq!(q, fixture_quarantine_plus(&[]));
    let job = report["dimensions"]
        .as_array()
        .expect("dimensions")
        .iter()
        .find(|d| d["table"] == "JCM_MASTER__JOB")
        .expect("job table");
    assert_eq!(job["quarantined"], 0);
    assert_eq!(
        job["decoded_lossily"],
        serde_json::json!({"Description": 1})
    );
    let b = read_parquet(&staged_files(run.dir()));
    let jobs_of_rows = strings(&b, "job");
    let descriptions = strings(&b, "job_description");
    let on_1001: Vec<&Option<String>> = jobs_of_rows
        .iter()
        .zip(&descriptions)
        .filter(|(j, _)| j.as_deref() == Some("1001"))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(on_1001.len(), 18);
    assert!(on_1001
        .iter()
        .all(|d| d.as_deref() == Some("Riverside Office \u{fffd} Tower")));
    assert!(
        run.stderr.contains("JCM_MASTER__JOB.Description"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("decoded lossily") && l.contains("JCM_MASTER__JOB.Description: 1")),
        "the summary names the column decoded lossily:\n{}",
        run.stdout
    );
    run.assert_no_excluded_value();
}
