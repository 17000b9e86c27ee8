//! The SQL Server source against a real TDS peer (pySQLbridge serving the fixture CSVs): the same
//! staged rows as the file source, partitions retried without duplicates, the incremental window
//! and its watermark, the errors a person meets, and `jcsync check`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use common::peer::{write_mssql_pipeline, Peer, PEER_USER};
use common::*;
use jcsync::extract::mssql::fault;
use jcsync::ledger::Ledger;
use jcsync::model::schema::EXCLUDED_TRANSACTION_COLUMNS;

fn fixtures() -> std::path::PathBuf {
    repo().join("fixtures/sage")
}

fn file_run(dir: &Path) -> jcsync::pipeline::RunOutcome {
    let d = dir.join("files");
    std::fs::create_dir_all(&d).expect("mkdir");
    run_sync(&write_pipeline(&d, &fixtures(), "csv", "zstd", "")).expect("file run")
}

fn mssql_pipeline(
    dir: &Path,
    peer: &Peer,
    database: &str,
    source_extra: &str,
    extra: &str,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    write_mssql_pipeline(dir, &peer.source_toml(database, source_extra), extra)
}

/// Staged rows sorted by line_origin_id, as text per column (source_line left out: see below).
fn rows_by_origin(batch: &RecordBatch) -> Vec<Vec<Option<String>>> {
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "source_line")
        .collect();
    let cols: Vec<Vec<Option<String>>> = names.iter().map(|n| strings(batch, n)).collect();
    let origin = names
        .iter()
        .position(|n| n == "line_origin_id")
        .expect("origin column");
    let mut rows: Vec<Vec<Option<String>>> = (0..batch.num_rows())
        .map(|r| cols.iter().map(|c| c[r].clone()).collect())
        .collect();
    rows.sort_by(|a, b| a[origin].cmp(&b[origin]));
    rows
}

fn assert_same_staged(files: &jcsync::pipeline::RunOutcome, sql: &jcsync::pipeline::RunOutcome) {
    let a = read_parquet(&staged_files(&files.run_dir));
    let b = read_parquet(&staged_files(&sql.run_dir));
    assert_eq!(a.schema(), b.schema());
    assert_eq!(a.num_rows(), 35);
    assert_eq!(rows_by_origin(&a), rows_by_origin(&b));
    assert_eq!(files.report.totals, sql.report.totals);
    assert_eq!(files.report.planned_amount, sql.report.planned_amount);
    assert_eq!(sql.report.planned_amount, "23591.41");
    assert_eq!(files.report.counts.extracted, sql.report.counts.extracted);
    assert_eq!(
        files.report.counts.quarantined,
        sql.report.counts.quarantined
    );
    assert_eq!(
        files.report.counts.filtered_by_type,
        sql.report.counts.filtered_by_type
    );
    assert!(sql.report.reconciled);
}

#[test]
fn mssql_source_stages_the_same_rows_as_the_file_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let from_files = file_run(dir.path());
    let from_sql = run_sync(&mssql_pipeline(
        &dir.path().join("sql"),
        &peer,
        "sage_parity",
        "",
        "",
    ))
    .unwrap_or_else(|e| panic!("mssql run: {e}\npeer log:\n{}", peer.log()));
    // source_line differs by design: the file source counts physical lines, the SQL Server
    // source counts rows within each Job's partition in its deterministic order.
    assert_same_staged(&from_files, &from_sql);

    // The excluded columns are never even asked for.
    let queries = peer.queries();
    assert!(queries.contains("JCT_CURRENT__TRANSACTION"), "{queries}");
    for c in EXCLUDED_TRANSACTION_COLUMNS {
        assert!(!queries.contains(c), "{c} was named in a query:\n{queries}");
    }
    // Every value is a parameter: no job or date literal in the SQL text.
    assert!(queries.contains("@P1"), "{queries}");
    // The run's manifest says where the rows came from, without the password.
    let manifest =
        std::fs::read_to_string(from_sql.run_dir.join("manifest.json")).expect("manifest");
    assert!(manifest.contains("mssql://jcsync@127.0.0.1"), "{manifest}");
    assert!(!manifest.contains(&peer.password));
}

#[test]
fn a_failed_partition_is_retried_without_duplicating_or_losing_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let database = "sage_retry";
    // Job 1001 has 27 rows: with 2-row batches, the fault after row 7 comes when 3 batches
    // (6 rows) were already sent downstream; the retry must skip exactly those.
    fault::fail_once(database, "1001", 7);
    // And job 1002 fails before its first batch is complete.
    fault::fail_once(database, "1002", 1);
    let p = mssql_pipeline(
        &dir.path().join("sql"),
        &peer,
        database,
        "partitions = 2",
        "[pipeline]\nbatch_rows = 2\nchannel_capacity = 2\n",
    );
    let from_sql = run_sync(&p).unwrap_or_else(|e| panic!("mssql run: {e}\n{}", peer.log()));
    let from_files = file_run(dir.path());
    assert_same_staged(&from_files, &from_sql);
    // Both partitions were read twice (the faults fired).
    let reads = peer
        .queries()
        .lines()
        .filter(|l| l.contains("WHERE [Job] = @P1"))
        .count();
    // Four jobs (1001, 1002, 1003, 9999), two of them read twice.
    assert_eq!(reads, 4 + 2, "{}", peer.queries());
}

#[test]
fn a_partition_failing_every_attempt_fails_the_run_with_the_job_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let database = "sage_fail";
    for _ in 0..jcsync::extract::mssql::PARTITION_ATTEMPTS {
        fault::fail_once(database, "1003", 1);
    }
    let p = mssql_pipeline(&dir.path().join("sql"), &peer, database, "", "");
    let err = run_sync(&p).expect_err("the run fails").to_string();
    assert!(
        err.contains("Job 1003") && err.contains("injected fault"),
        "{err}"
    );
}

fn stamp(s: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("stamp")
}

#[test]
fn incremental_reads_from_watermark_minus_overlap_and_advances_only_after_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let database = "sage_incremental";
    let sync = "[sync]\ntype = \"incremental\"\noverlap_minutes = 14400\n"; // 10 days
    let p = mssql_pipeline(&dir.path().join("sql"), &peer, database, "", sync);
    let config = jcsync::config::Pipeline::load(&p).expect("pipeline").config;
    let scope = jcsync::pipeline::watermark_scope(&config);
    let ledger_path = config.ledger_path();

    // A first incremental run that fails: nothing moves.
    for _ in 0..jcsync::extract::mssql::PARTITION_ATTEMPTS {
        fault::fail_once(database, "1002", 1);
    }
    run_sync(&p).expect_err("the run fails");
    assert_eq!(
        Ledger::open(&ledger_path)
            .expect("ledger")
            .watermark(&scope)
            .expect("w"),
        None,
        "a failed run leaves the watermark alone"
    );

    // No watermark yet: every row is read; the watermark becomes the latest stamp read.
    let first = run_sync(&p).expect("first incremental run");
    assert_eq!(first.report.counts.extracted, 51);
    let w = first.report.change_window.clone().expect("window");
    assert_eq!(w.watermark, None);
    assert_eq!(w.changed_since, None);
    assert_eq!(
        Ledger::open(&ledger_path)
            .expect("ledger")
            .watermark(&scope)
            .expect("w"),
        Some(stamp("2024-03-15 14:04:00"))
    );

    // Next run: rows stamped at or after 2024-03-15 14:04 - 10 days = 2024-03-05 14:04:00.
    // Lines 47 (03-08), 48 (03-10), 49 (03-12), 51 (03-14) and 52 (03-15); line 46 is
    // stamped 2024-03-05 12:30, just before the window.
    let second = run_sync(&p).expect("second incremental run");
    let w = second.report.change_window.clone().expect("window");
    assert_eq!(w.watermark.as_deref(), Some("2024-03-15T14:04:00.000000"));
    assert_eq!(w.overlap_minutes, 14400);
    assert_eq!(
        w.changed_since.as_deref(),
        Some("2024-03-05T14:04:00.000000")
    );
    assert_eq!(second.report.counts.extracted, 5);
    assert_eq!(second.report.counts.planned, 2, "lines 48 and 52");
    let manifest = std::fs::read_to_string(second.run_dir.join("manifest.json")).expect("manifest");
    assert!(
        manifest.contains("\"changed_since\": \"2024-03-05T14:04:00.000000\""),
        "{manifest}"
    );
}

#[test]
fn incremental_sync_of_a_file_source_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write_pipeline(
        dir.path(),
        &fixtures(),
        "csv",
        "zstd",
        "[sync]\ntype = \"incremental\"\n",
    );
    let err = run_sync(&p).expect_err("refused").to_string();
    assert!(err.contains("sync.type") && err.contains("mssql"), "{err}");
}

#[test]
fn wrong_password_names_host_and_user_never_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let wrong = format!("not-the-{}-password", peer.port);
    let var = format!("JCSYNC_TEST_WRONG_PW_{}", peer.port);
    std::env::set_var(&var, &wrong);
    let source = peer
        .source_toml("sage", "")
        .replace(&peer.password_env, &var);
    let p = write_mssql_pipeline(dir.path(), &source, "");
    let err = run_sync(&p).expect_err("login refused").to_string();
    assert!(
        err.contains("127.0.0.1") && err.contains(PEER_USER),
        "{err}"
    );
    assert!(err.contains("login failed"), "{err}");
    assert!(
        !err.contains(&wrong) && !err.contains(&peer.password),
        "{err}"
    );
    // The failure note left in the run directory does not carry it either.
    for e in walk(&dir.path().join("runs")) {
        let text = std::fs::read_to_string(&e).unwrap_or_default();
        assert!(!text.contains(&wrong), "{}", e.display());
    }
    // Neither does the CLI's output.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"))
        .arg("check")
        .arg(&p)
        .env(&var, &wrong)
        .output()
        .expect("run jcsync");
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("login failed") && !all.contains(&wrong),
        "{all}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn unset_password_variable_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = "[source]\nkind = \"mssql\"\nhost = \"127.0.0.1\"\nport = 9\ndatabase = \"d\"\n\
                  user = \"u\"\npassword_env = \"JCSYNC_TEST_SURELY_UNSET_VAR\"\n";
    let p = write_mssql_pipeline(dir.path(), source, "");
    let err = run_sync(&p).expect_err("refused").to_string();
    assert!(err.contains("JCSYNC_TEST_SURELY_UNSET_VAR"), "{err}");
}

#[test]
fn unreachable_and_silent_hosts_fail_within_the_connect_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::env::set_var("JCSYNC_TEST_UNREACHABLE_PW", "secret-never-shown");
    // A port nobody listens on: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    // A port that accepts and then never answers: only the timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let _held = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    for (port, expect) in [
        (closed_port, "cannot reach"),
        (silent_port, "no answer within 2s"),
    ] {
        let source = format!(
            "[source]\nkind = \"mssql\"\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"d\"\n\
             user = \"u\"\npassword_env = \"JCSYNC_TEST_UNREACHABLE_PW\"\nconnect_timeout_secs = 2\n"
        );
        let d = dir.path().join(port.to_string());
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = write_mssql_pipeline(&d, &source, "");
        let started = Instant::now();
        let err = run_sync(&p).expect_err("cannot connect").to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains(expect),
            "{err}"
        );
        assert!(!err.contains("secret-never-shown"));
    }
}

fn jobs_with_renamed_key() -> String {
    std::fs::read_to_string(fixtures().join("JCM_MASTER__JOB.csv"))
        .expect("jobs")
        .replacen("Job,", "Job_No,", 1)
}

#[test]
fn missing_table_and_missing_required_column_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[("JOBS_RENAMED", jobs_with_renamed_key())]);
    let p = mssql_pipeline(
        &dir.path().join("a"),
        &peer,
        "sage",
        "",
        "[tables]\njob = \"JOBS_RENAMED\"\n",
    );
    let err = run_sync(&p).expect_err("missing column").to_string();
    assert!(
        err.contains("JOBS_RENAMED")
            && err.contains("required column Job")
            && err.contains("Job_No"),
        "{err}"
    );
    let p = mssql_pipeline(
        &dir.path().join("b"),
        &peer,
        "sage",
        "",
        "[tables]\ninvoice = \"NO_SUCH_TABLE\"\n",
    );
    let err = run_sync(&p).expect_err("missing table").to_string();
    assert!(
        err.contains("NO_SUCH_TABLE") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn check_lists_tables_columns_and_rows_and_exits_by_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[("JOBS_RENAMED", jobs_with_renamed_key())]);
    let run = |p: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"))
            .arg("check")
            .arg(p)
            .env(&peer.password_env, &peer.password)
            .output()
            .expect("run jcsync");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let good = mssql_pipeline(&dir.path().join("good"), &peer, "sage", "", "");
    let (code, out, err) = run(&good);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("JCT_CURRENT__TRANSACTION: 51 rows"), "{out}");
    assert!(out.contains("JCM_MASTER__JOB: 4 rows"), "{out}");
    assert!(
        out.contains("Time_Stamp") && out.contains("all 5 tables"),
        "{out}"
    );

    let bad = mssql_pipeline(
        &dir.path().join("bad"),
        &peer,
        "sage",
        "",
        "[tables]\njob = \"JOBS_RENAMED\"\naccount = \"NO_SUCH_TABLE\"\n",
    );
    let (code, out, err) = run(&bad);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("JOBS_RENAMED.Job"), "{out}");
    assert!(out.contains("NO_SUCH_TABLE: MISSING TABLE"), "{out}");
    assert!(out.contains("MISSING (required"), "{out}");
}

#[test]
fn since_is_applied_by_the_server_and_stages_what_the_file_source_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let sync = "[sync]\nsince = \"2024-02-01\"\n";
    let files_dir = dir.path().join("files");
    std::fs::create_dir_all(&files_dir).expect("mkdir");
    let from_files = run_sync(&write_pipeline(
        &files_dir,
        &fixtures(),
        "csv",
        "zstd",
        sync,
    ))
    .expect("file run");
    let from_sql = run_sync(&mssql_pipeline(
        &dir.path().join("sql"),
        &peer,
        "sage_since",
        "",
        sync,
    ))
    .expect("mssql run");
    let a = read_parquet(&staged_files(&from_files.run_dir));
    let b = read_parquet(&staged_files(&from_sql.run_dir));
    assert!(a.num_rows() > 0 && a.num_rows() < 35);
    assert_eq!(rows_by_origin(&a), rows_by_origin(&b));
    assert_eq!(from_files.report.totals, from_sql.report.totals);
    // The server never sent the rows before the window (the file source reads and counts them),
    // but it did send the row without an Accounting_Date, which is quarantined in both.
    assert_eq!(from_sql.report.counts.filtered_before_window, 0);
    assert!(from_sql.report.counts.extracted < from_files.report.counts.extracted);
    assert_eq!(
        from_sql.report.counts.quarantined.get("missing_value"),
        Some(&1)
    );
    assert_eq!(
        from_files.report.counts.quarantined.get("missing_value"),
        Some(&1)
    );
    assert!(peer.queries().contains("[Accounting_Date] >= @P"));
}

/// A TCP proxy in front of the peer that counts the bytes each connection receives from the
/// server and can cut, once, the first connection to receive more than some bytes: a real dropped
/// connection, mid-stream. (By size, not by order of arrival: the dimension tables load while the
/// transactions are read, so connections open in no fixed order.)
struct Proxy {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Proxy {
    fn start(upstream: u16, cut_after: Option<u64>) -> Proxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let cut_done = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        std::thread::spawn(move || {
            for (i, client) in listener.incoming().enumerate().take(64) {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                rec.lock().expect("lock").push(0);
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("c"),
                    server.try_clone().expect("s"),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let rec = rec.clone();
                let cut_done = cut_done.clone();
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    let mut total = 0u64;
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(after) = cut_after {
                            if total + n as u64 > after && !cut_done.swap(true, Ordering::SeqCst) {
                                let _ = c_write.shutdown(Shutdown::Both);
                                let _ = s_read.shutdown(Shutdown::Both);
                                break;
                            }
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        total += n as u64;
                        rec.lock().expect("lock")[i] = total;
                    }
                    let _ = c_write.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { port, received }
    }
}

#[test]
fn a_connection_dropped_mid_partition_is_retried_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = Peer::start(&fixtures(), &[]);
    let pipeline_through = |name: &str, proxy: &Proxy| {
        let source = peer.source_toml("sage_drop", "partitions = 1").replace(
            &format!("port = {}", peer.port),
            &format!("port = {}", proxy.port),
        );
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        write_mssql_pipeline(
            &d,
            &source,
            "[pipeline]\nbatch_rows = 2\nchannel_capacity = 1\n",
        )
    };
    // First measure: connections for the open, the 4 dimensions, the job list and the one
    // reader of the transactions, which receives the most.
    let measure = Proxy::start(peer.port, None);
    run_sync(&pipeline_through("measure", &measure)).expect("run through the proxy");
    let mut sizes = measure.received.lock().expect("lock").clone();
    assert_eq!(sizes.len(), 7, "connections: {sizes:?}");
    sizes.sort_unstable();
    let (reader, others) = (sizes[6], sizes[5]);
    assert!(
        others < reader / 2,
        "the reader's connection must be the only one past half its size: {sizes:?}"
    );
    // Then cut the reader's connection halfway through what it received.
    let cut = Proxy::start(peer.port, Some(reader / 2));
    let from_sql = run_sync(&pipeline_through("cut", &cut))
        .unwrap_or_else(|e| panic!("the partition was not retried: {e}"));
    let conns = cut.received.lock().expect("lock").len();
    assert_eq!(conns, 8, "one reconnection after the cut");
    let from_files = file_run(dir.path());
    assert_same_staged(&from_files, &from_sql);
}
