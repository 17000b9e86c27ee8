//! The key scan (`Source::line_keys`): the line origin ids it gives are those a deep dry-run
//! sync stages, for CSV, Parquet and SQL Server (pySQLbridge), for the fixtures and a generated
//! company; `since` bounds it; a purged row's key is gone; its SQL selects only the key columns
//! and has no change-stamp condition. Plus what it costs against the full extract, printed (no
//! timed assertion): `JCSYNC_KEY_SCAN_BENCH_ROWS=200000 cargo test --release --test key_scan
//! key_scan_cost -- --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::peer::{write_mssql_pipeline, Peer};
use common::*;
use jcsync::config::{FileFormat, Pipeline, PipelineConfig};
use jcsync::extract::{KeyBatch, SageSource};
use jcsync::tools::generate::{generate, GenerateOptions, GenerateSummary};

/// What a key scan gave: line origin ids, jobs, unreadable rows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    ids: BTreeSet<String>,
    hashes: usize,
    jobs: BTreeSet<String>,
    unreadable: u64,
}

fn collect(source: &SageSource, company: &str) -> jcsync::Result<Scan> {
    let mut scan = Scan::default();
    for batch in source.line_keys(company)? {
        let batch = batch?;
        scan.hashes += batch.hashes.len();
        scan.ids.extend(
            batch
                .hashes
                .iter()
                .map(|h| KeyBatch::origin_id(company, *h)),
        );
        scan.jobs.extend(batch.jobs);
        scan.unreadable += batch.unreadable;
    }
    Ok(scan)
}

fn config_of(pipeline: &Path) -> PipelineConfig {
    Pipeline::load(pipeline).expect("pipeline").config
}

/// Run `f` on a blocking thread of a runtime (a SQL Server source reads on its tasks).
fn on_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    runtime().block_on(async { tokio::task::spawn_blocking(f).await.expect("join") })
}

/// The key scan of a pipeline's source, optionally with an incremental change window.
fn scan(pipeline: &Path, changed_since: Option<chrono::NaiveDateTime>) -> Scan {
    let config = config_of(pipeline);
    on_runtime(move || {
        let source = SageSource::open_window(&config, changed_since).expect("open source");
        collect(&source, &config.company).expect("key scan")
    })
}

/// The line origin ids a deep dry-run sync of a pipeline stages.
fn staged_ids(pipeline: &Path) -> BTreeSet<String> {
    let outcome = run_sync(pipeline).expect("deep dry run");
    let staged = read_parquet(&staged_files(&outcome.run_dir));
    strings(&staged, "line_origin_id")
        .into_iter()
        .map(|id| id.expect("every staged row has a line origin id"))
        .collect()
}

fn files_pipeline(dir: &Path, source: &Path, format: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    write_pipeline(dir, source, format, "zstd", extra)
}

fn mssql_pipeline(dir: &Path, peer: &Peer, database: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    write_mssql_pipeline(dir, &peer.source_toml(database, ""), extra)
}

/// The fixtures with every quarantined row repaired except the duplicate (its key is line 10's):
/// line 14 gets an Accounting_Date, line 22 a numeric Amount, line 31 a real day, job 9999 a
/// row in the job table. No key cell changes, so every cost row is staged.
fn repaired_fixtures(to: &Path) {
    copy_sage_fixtures(to);
    let jct = to.join("JCT_CURRENT__TRANSACTION.csv");
    let text = std::fs::read_to_string(&jct).expect("read");
    let mut fixed = text.clone();
    for (from, into) in [
        (
            ",2024-01-19,,Laborer overtime,",
            ",2024-01-19,2024-01-22,Laborer overtime,",
        ),
        ("\"12,34x\"", "12.34"),
        (",2024-02-30,", ",2024-02-28,"),
    ] {
        assert_eq!(fixed.matches(from).count(), 1, "{from}");
        fixed = fixed.replace(from, into);
    }
    std::fs::write(&jct, fixed).expect("write");
    let jcm = to.join("JCM_MASTER__JOB.csv");
    let mut jobs = std::fs::read_to_string(&jcm).expect("read");
    if !jobs.ends_with('\n') {
        jobs.push('\n');
    }
    jobs.push_str("9999,Wrong job repaired,In progress,01,01-5000\n");
    std::fs::write(&jcm, jobs).expect("write");
}

/// The fixtures as Parquet (every column text, as the file source reads a CSV).
fn fixtures_as_parquet(csv_dir: &Path, to: &Path) {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(csv_dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("csv") {
            continue;
        }
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&p)
            .expect("csv");
        let header: Vec<String> = r
            .headers()
            .expect("header")
            .iter()
            .map(str::to_string)
            .collect();
        let mut cols: Vec<Vec<Option<String>>> = vec![Vec::new(); header.len()];
        for rec in r.records() {
            let rec = rec.expect("record");
            for (i, c) in cols.iter_mut().enumerate() {
                c.push(rec.get(i).filter(|v| !v.is_empty()).map(str::to_string));
            }
        }
        let schema = Arc::new(Schema::new(
            header
                .iter()
                .map(|h| Field::new(h, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).expect("batch");
        let out = to.join(format!(
            "{}.parquet",
            p.file_stem().expect("stem").to_string_lossy()
        ));
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(out).expect("create"),
            schema,
            None,
        )
        .expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }
}

/// Key scan and deep dry run of one source directory, for CSV and Parquet.
fn files_keys_and_staged(
    dir: &Path,
    csv_dir: &Path,
    extra: &str,
) -> (Scan, Scan, BTreeSet<String>) {
    let csv = files_pipeline(&dir.join("csv"), csv_dir, "csv", extra);
    let pq_dir = dir.join("parquet-data");
    fixtures_as_parquet(csv_dir, &pq_dir);
    let pq = files_pipeline(&dir.join("parquet"), &pq_dir, "parquet", extra);
    let staged = staged_ids(&csv);
    assert_eq!(
        staged_ids(&pq),
        staged,
        "the two formats stage the same lines"
    );
    (scan(&csv, None), scan(&pq, None), staged)
}

#[test]
fn fixture_keys_are_the_lines_a_deep_sync_stages_from_csv_parquet_and_sql_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = repo().join("fixtures/sage");
    let repaired = dir.path().join("repaired");
    repaired_fixtures(&repaired);

    // Repaired: every cost row stages (the duplicate's key is its first line's), so the key set
    // is exactly the staged set.
    let (csv, pq, staged) = files_keys_and_staged(&dir.path().join("r"), &repaired, "");
    assert_eq!(staged.len(), FIXTURE_LINES + 4);
    assert_eq!(csv.ids, staged);
    assert_eq!(pq, csv);
    assert_eq!(
        csv.hashes,
        staged.len() + 1,
        "line 23 repeats line 10's key"
    );
    assert_eq!(csv.unreadable, 0);
    let jobs: Vec<&str> = csv.jobs.iter().map(String::as_str).collect();
    assert_eq!(jobs, vec!["1001", "1002", "1003", "9999"]);

    // As shipped: the four rows quarantined for a cell that is not a key (an empty or
    // impossible date, an Amount, an unknown job) are still transactions in Sage: their keys
    // are there, the very ids the repaired run staged for them; the 35 staged lines are all in.
    let (orig_csv, orig_pq, orig_staged) =
        files_keys_and_staged(&dir.path().join("o"), &fixtures, "");
    assert_eq!(orig_staged.len(), FIXTURE_LINES);
    assert!(orig_staged.is_subset(&orig_csv.ids));
    assert_eq!(orig_csv.ids, staged);
    assert_eq!(orig_pq, orig_csv);

    // SQL Server, both data sets: the same keys, the same staged lines.
    for (name, data, keys, lines) in [
        ("repaired", &repaired, &csv, &staged),
        ("fixtures", &fixtures, &orig_csv, &orig_staged),
    ] {
        let peer = Peer::start(data, &[]);
        let p = mssql_pipeline(&dir.path().join(format!("sql-{name}")), &peer, name, "");
        let sql = scan(&p, None);
        assert_eq!(&sql, keys, "{name}: SQL Server key scan");
        let sql_staged = staged_ids(&p);
        assert_eq!(&sql_staged, lines, "{name}: SQL Server deep sync");
    }
}

#[test]
fn since_scans_only_rows_dated_on_or_after_it_from_files_and_sql_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repaired = dir.path().join("repaired");
    repaired_fixtures(&repaired);
    let since = "[sync]\nsince = \"2024-02-10\"\n";
    let all = scan(
        &files_pipeline(&dir.path().join("all"), &repaired, "csv", ""),
        None,
    );
    let (csv, pq, staged) = files_keys_and_staged(&dir.path().join("since"), &repaired, since);
    assert_eq!(csv.ids, staged);
    assert_eq!(pq, csv);
    assert!(!staged.is_empty() && staged.len() < all.ids.len());

    // The staged rows of the window are exactly those dated on or after it.
    let outcome = run_sync(&files_pipeline(
        &dir.path().join("dates"),
        &repaired,
        "csv",
        "",
    ))
    .expect("run");
    let rows = read_parquet(&staged_files(&outcome.run_dir));
    let dated: BTreeSet<String> = strings(&rows, "line_origin_id")
        .into_iter()
        .zip(strings(&rows, "accounting_date"))
        .filter(|(_, d)| d.as_deref().expect("date") >= "2024-02-10")
        .map(|(id, _)| id.expect("id"))
        .collect();
    assert_eq!(csv.ids, dated);

    let peer = Peer::start(&repaired, &[]);
    let sql = scan(
        &mssql_pipeline(&dir.path().join("sql"), &peer, "since", since),
        None,
    );
    assert_eq!(sql, csv);
    let queries = peer.queries();
    assert!(queries.contains("[Accounting_Date] >= @P8"), "{queries}");
}

/// The peer's log lines that are the key scan (the one SELECT that names `NOT LIKE`).
fn key_scan_queries(peer: &Peer) -> Vec<String> {
    peer.queries()
        .lines()
        .filter(|l| l.contains("NOT LIKE"))
        .map(str::to_string)
        .collect()
}

#[test]
fn sql_server_key_scan_misses_a_purged_row_only_and_reads_only_key_columns_whatever_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sage");
    copy_sage_fixtures(&data);
    let changed_since = chrono::NaiveDate::from_ymd_opt(2024, 3, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("moment");

    let peer = Peer::start(&data, &[]);
    let p = mssql_pipeline(&dir.path().join("before"), &peer, "purge", "");
    let before = scan(&p, Some(changed_since));
    // The change window does not narrow a key scan: it is what a deep sync sees.
    assert_eq!(before, scan(&p, None));
    let csv = scan(
        &files_pipeline(&dir.path().join("csv"), &data, "csv", ""),
        None,
    );
    assert_eq!(before, csv);
    let scans = key_scan_queries(&peer);
    assert_eq!(scans.len(), 2, "{}", peer.queries());
    for q in &scans {
        assert!(
            q.contains(
                "SELECT [Job], [Extra], [Cost_Code], [Category], [Transaction_Type], \
                 [Accounting_Date], [Dist_Sequence], [Run], [Sequence] FROM [dbo].[JCT_CURRENT__TRANSACTION] WHERE"
            ),
            "{q}"
        );
        for absent in [
            "Date_Stamp",
            "Time_Stamp",
            "Amount",
            "Description",
            "ORDER BY",
        ] {
            assert!(!q.contains(absent), "{absent} in {q}");
        }
    }
    assert!(!peer.queries().contains("Date_Stamp"), "{}", peer.queries());
    drop(peer);

    // Purge line 5 (AP cost, Run 101, Sequence 4) from Sage, restart the peer on the copy.
    let jct = data.join("JCT_CURRENT__TRANSACTION.csv");
    let text = std::fs::read_to_string(&jct).expect("read");
    let purged: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("Ready-mix concrete 4000 psi"))
        .collect();
    assert_eq!(purged.len() + 1, text.lines().count());
    std::fs::write(&jct, purged.join("\n") + "\n").expect("write");
    let staged_before = staged_ids(&files_pipeline(
        &dir.path().join("staged"),
        &repo().join("fixtures/sage"),
        "csv",
        "",
    ));
    let staged_after = staged_ids(&files_pipeline(
        &dir.path().join("staged-after"),
        &data,
        "csv",
        "",
    ));
    let gone: Vec<&String> = staged_before.difference(&staged_after).collect();
    assert_eq!(gone.len(), 1);

    let peer = Peer::start(&data, &[]);
    let after = scan(
        &mssql_pipeline(&dir.path().join("after"), &peer, "purge", ""),
        Some(changed_since),
    );
    let missing: Vec<&String> = before.ids.difference(&after.ids).collect();
    assert_eq!(missing, gone, "exactly the purged row's id is absent");
    assert!(
        after.ids.is_subset(&before.ids),
        "every other id is present"
    );
    assert_eq!(after.ids.len() + 1, before.ids.len());
    assert_eq!(after.unreadable, 0);
}

fn generated(dir: &Path, rows: u64, format: FileFormat) -> GenerateSummary {
    generate(&GenerateOptions {
        transactions: rows,
        jobs: 8,
        seed: 42,
        out: dir.to_path_buf(),
        format,
    })
    .expect("generate")
}

#[test]
fn generated_company_keys_are_its_staged_lines_plus_its_quarantined_cost_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv_data = dir.path().join("csv-data");
    let pq_data = dir.path().join("pq-data");
    let summary = generated(&csv_data, 5_000, FileFormat::Csv);
    assert_eq!(generated(&pq_data, 5_000, FileFormat::Parquet), summary);
    let csv_p = files_pipeline(&dir.path().join("csv"), &csv_data, "csv", "");
    let pq_p = files_pipeline(&dir.path().join("pq"), &pq_data, "parquet", "");
    let staged = staged_ids(&csv_p);
    assert_eq!(staged.len() as u64, summary.cost_rows);
    assert_eq!(staged_ids(&pq_p), staged);
    let csv = scan(&csv_p, None);
    assert!(staged.is_subset(&csv.ids));
    // The rows quarantined for a cell that is not a key are transactions all the same; a
    // duplicate is its first row's key.
    assert_eq!(
        csv.ids.len() as u64,
        summary.cost_rows + summary.bad_date + summary.bad_amount + summary.unknown_job,
        "{summary:?}"
    );
    assert_eq!(
        csv.hashes as u64,
        csv.ids.len() as u64 + summary.duplicate_key
    );
    assert_eq!(csv.unreadable, 0);
    assert_eq!(scan(&pq_p, None), csv);

    let peer = Peer::start(&csv_data, &[]);
    let sql_p = mssql_pipeline(&dir.path().join("sql"), &peer, "generated", "");
    assert_eq!(scan(&sql_p, None), csv);
    assert_eq!(staged_ids(&sql_p), staged);
}

/// A TCP relay in front of the peer that counts the bytes the peer sends to the client (TLS
/// and TDS framing included: the bytes on the wire).
struct Relay {
    port: u16,
    from_peer: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    fn start(peer_port: u16) -> Relay {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = listener.local_addr().expect("addr").port();
        let from_peer = Arc::new(AtomicU64::new(0));
        let counter = from_peer.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", peer_port)) else {
                    return;
                };
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use std::io::{Read, Write};
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay { port, from_peer }
    }

    fn received(&self) -> u64 {
        self.from_peer.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn key_scan_cost_against_the_full_extract_through_the_peer() {
    let rows: u64 = std::env::var("JCSYNC_KEY_SCAN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sage");
    let summary = generated(&data, rows, FileFormat::Csv);
    let peer = Peer::start(&data, &[]);
    let relay = Relay::start(peer.port);
    let toml = peer.source_toml("bench", "").replace(
        &format!("port = {}\n", peer.port),
        &format!("port = {}\n", relay.port),
    );
    let sql_dir = dir.path().join("sql");
    std::fs::create_dir_all(&sql_dir).expect("mkdir");
    let config = config_of(&write_mssql_pipeline(&sql_dir, &toml, ""));
    let (keys, extract) = on_runtime(move || {
        let source = SageSource::open(&config).expect("open");
        let t = Instant::now();
        let w0 = relay.received();
        let scan = collect(&source, &config.company).expect("key scan");
        let keys = (
            t.elapsed(),
            scan.hashes as u64 + scan.unreadable,
            relay.received() - w0,
        );
        let t = Instant::now();
        let w0 = relay.received();
        let mut read = 0u64;
        for raw in source.raw_transactions(true).expect("extract") {
            read += raw.expect("batch").batch.num_rows() as u64;
        }
        let extract = (t.elapsed(), read, relay.received() - w0);
        drop(peer);
        (keys, extract)
    });
    // Every cost row once (the key scan's cost filter is pushed down; the extract's is not).
    assert_eq!(keys.1, summary.cost_rows + summary.bad_rows());
    assert_eq!(extract.1, summary.transactions);
    let show = |what: &str, (took, n, bytes): (std::time::Duration, u64, u64)| {
        let secs = took.as_secs_f64();
        println!(
            "{what:<36} {n:>9} rows returned  {secs:>8.2} s  {:>10.0} table rows/s  {:>8.1} MiB from the peer",
            summary.transactions as f64 / secs,
            bytes as f64 / 1048576.0
        );
    };
    println!(
        "generated company: {} transaction rows, {} cost rows",
        summary.transactions,
        summary.cost_rows + summary.bad_rows()
    );
    show("line_keys (key columns, one SELECT)", keys);
    show("raw_transactions (full extract)", extract);
}

/// What the key scan costs on a deep sync from file exports: a second read of the transaction
/// file typing only the key columns, against the deep dry-run sync it follows. Printed, no timed
/// assertion: `JCSYNC_KEY_SCAN_BENCH_ROWS=2000000 cargo test --release --test key_scan
/// key_scan_cost_on_file -- --nocapture`.
#[test]
fn key_scan_cost_on_file_exports_against_the_deep_sync() {
    let rows: u64 = std::env::var("JCSYNC_KEY_SCAN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().expect("tempdir");
    for (format, name) in [(FileFormat::Csv, "csv"), (FileFormat::Parquet, "parquet")] {
        let data = dir.path().join(format!("{name}-data"));
        let summary = generated(&data, rows, format);
        let pipeline = files_pipeline(&dir.path().join(name), &data, name, "");
        // The test pipelines stage row groups of 16 rows; a real one stages the default.
        let text = std::fs::read_to_string(&pipeline).expect("read pipeline");
        std::fs::write(&pipeline, text.replace("row_group_rows = 16\n", "")).expect("write");
        let t = Instant::now();
        let outcome = run_sync(&pipeline).expect("deep dry run");
        let sync = t.elapsed();
        let staged: BTreeSet<String> = strings(
            &read_parquet(&staged_files(&outcome.run_dir)),
            "line_origin_id",
        )
        .into_iter()
        .map(|id| id.expect("every staged row has a line origin id"))
        .collect();
        let t = Instant::now();
        let keys = scan(&pipeline, None);
        let took = t.elapsed();
        assert_eq!(staged.len() as u64, summary.cost_rows);
        assert!(
            staged.is_subset(&keys.ids),
            "{name}: a staged line the scan missed"
        );
        assert_eq!(
            keys.hashes as u64 + keys.unreadable,
            summary.cost_rows + summary.bad_rows(),
            "{name}: the scan gives every cost row once"
        );
        println!(
            "{name:<8} {} transaction rows: deep dry-run sync {:>7.2} s, key scan {:>7.2} s ({:.0} rows/s, {:.0} % of the sync)",
            summary.transactions,
            sync.as_secs_f64(),
            took.as_secs_f64(),
            summary.transactions as f64 / took.as_secs_f64(),
            100.0 * took.as_secs_f64() / sync.as_secs_f64()
        );
    }
}
