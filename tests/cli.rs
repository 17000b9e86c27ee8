//! The `jcsync` binary: exit codes, summaries, and errors that name the file and key.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn jcsync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .args(args)
        .env("JCSYNC_LOG", "warn")
        .output()
        .expect("run jcsync")
}

fn copy_fixtures(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(repo().join("fixtures/sage")).expect("fixtures") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

#[test]
fn sync_with_quarantined_rows_exits_2_and_prints_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &repo().join("fixtures/sage"), "csv", "zstd", "");
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "rows extracted",
        "51",
        "quarantined",
        "unknown_job: 1",
        "direct costs",
        "21",
        "reconciled",
        "yes",
        "rows/s",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn demo_pipeline_exits_0_and_inspect_verifies_its_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "[report]\nquarantine_exit_code = 0\n",
    );
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8"), "--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(dir.path().join("runs"))
        .expect("runs")
        .next()
        .expect("a run")
        .expect("entry")
        .path();
    let out = jcsync(&["inspect", run.to_str().expect("utf8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"));
}

#[test]
fn missing_table_file_stops_the_run_before_anything_is_staged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = dir.path().join("sage");
    copy_fixtures(&sage);
    std::fs::remove_file(sage.join("APM_MASTER__INVOICE.csv")).expect("remove");
    let pipeline = write_pipeline(dir.path(), &sage, "csv", "zstd", "");
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("APM_MASTER__INVOICE.csv") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!dir.path().join("runs").exists(), "nothing may be staged");
}

#[test]
fn missing_required_column_stops_the_run_naming_table_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = dir.path().join("sage");
    copy_fixtures(&sage);
    let path = sage.join("JCT_CURRENT__TRANSACTION.csv");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("Accounting_Date", "Acct_Date", 1)).expect("write");
    let pipeline = write_pipeline(dir.path(), &sage, "csv", "zstd", "");
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("JCT_CURRENT__TRANSACTION")
            && stderr.contains("required column Accounting_Date"),
        "{stderr}"
    );
    assert!(!dir.path().join("runs").exists(), "nothing may be staged");
}

#[test]
fn bad_pipeline_key_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "[stage]\nrow_group_rowz = 5\n",
    );
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pipeline.toml"), "{stderr}");
    assert!(
        stderr.contains("stage") || stderr.contains("row_group_rowz"),
        "{stderr}"
    );
}

#[test]
fn unknown_pipeline_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "[sync]\nsinse = \"2024-01-01\"\n",
    );
    let out = jcsync(&["sync", pipeline.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("sinse") && stderr.contains("pipeline.toml"),
        "{stderr}"
    );
}

#[test]
fn since_filters_by_accounting_date_and_still_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "[sync]\ntype = \"deep\"\nsince = \"2024-02-01\"\n",
    );
    let run = run_sync(&pipeline).expect("run");
    let c = &run.report.counts;
    assert!(c.filtered_before_window > 0);
    assert!(c.planned < 35);
    assert_eq!(c.extracted, c.filtered + c.quarantined_total + c.planned);
    let staged = read_parquet(&staged_files(&run.run_dir));
    for d in strings(&staged, "accounting_date").into_iter().flatten() {
        assert!(d.as_str() >= "2024-02-01", "{d} is before the window");
    }
}
