//! End-to-end throughput: a deep sync of a generated company through every stage, into the
//! embedded Procore sandbox with its rate limits off (or a dry run).
//!
//! ```sh
//! cargo run --release --example e2e -- [--transactions 2000000] [--jobs 50] [--format csv]
//!     [--dir target/bench-e2e] [--dry-run]
//! ```
//!
//! The company is generated once into `DIR/data-<N>-<format>` (kept for the next run). Prints
//! rows/s per stage and overall, wall time, peak RSS (VmHWM: this process, so with the embedded
//! sandbox's own memory included), requests and transactions per request; the run's report.json
//! has the rest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jcsync::config::{FileFormat, Pipeline};
use jcsync::pipeline::{sync, SyncOptions};
use jcsync::tools::generate::{generate, GenerateOptions};

struct Args {
    transactions: u64,
    jobs: u32,
    format: FileFormat,
    dir: PathBuf,
    dry_run: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        transactions: 2_000_000,
        jobs: 50,
        format: FileFormat::Csv,
        dir: PathBuf::from("target/bench-e2e"),
        dry_run: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--transactions" => {
                args.transactions = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--jobs" => args.jobs = value()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--format" => {
                args.format = match value()?.as_str() {
                    "csv" => FileFormat::Csv,
                    "parquet" => FileFormat::Parquet,
                    other => return Err(format!("--format: expected csv or parquet, not {other}")),
                }
            }
            "--dir" => args.dir = PathBuf::from(value()?),
            "--dry-run" => args.dry_run = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn write_pipeline(dir: &Path, data: &Path, format: FileFormat, dry_run: bool) -> PathBuf {
    let target = if dry_run {
        "kind = \"dry-run\"".to_string()
    } else {
        format!(
            "kind = \"sandbox\"\nseed = {:?}\nrate_limit = false",
            data.join("procore").display().to_string()
        )
    };
    let text = format!(
        r#"company = "GEN"
[source]
kind = "files"
dir = {data:?}
format = "{format}"
[stage]
dir = {runs:?}
[target]
{target}
[load]
# The sandbox's limits are off; so are the client's, in effect.
hourly_limit = 1000000000
spike_limit = 100000000
[ledger]
path = {ledger:?}
[report]
quarantine_exit_code = 0
"#,
        data = data.display().to_string(),
        format = format.extension(),
        runs = dir.join("runs").display().to_string(),
        ledger = dir.join("ledger.sqlite").display().to_string(),
    );
    let path = dir.join("e2e.toml");
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    path
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // Pipeline paths resolve against the pipeline file's directory: make ours absolute.
    let dir = std::fs::create_dir_all(&args.dir).and_then(|_| args.dir.canonicalize());
    let args = match dir {
        Ok(dir) => Args { dir, ..args },
        Err(e) => {
            eprintln!("error: {}: {e}", args.dir.display());
            std::process::exit(1);
        }
    };
    let data = args.dir.join(format!(
        "data-{}-{}-{}",
        args.transactions,
        args.jobs,
        args.format.extension()
    ));
    if !data.join("procore/company.json").is_file() {
        let started = Instant::now();
        if let Err(e) = generate(&GenerateOptions {
            transactions: args.transactions,
            jobs: args.jobs,
            seed: 1,
            out: data.clone(),
            format: args.format,
        }) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        eprintln!(
            "generated {} transactions in {:.1} s",
            args.transactions,
            started.elapsed().as_secs_f64()
        );
    }
    // The ledger would make a second run send nothing: start from an empty one.
    let _ = std::fs::remove_file(args.dir.join("ledger.sqlite"));
    let pipeline_path = write_pipeline(&args.dir, &data, args.format, args.dry_run);
    let pipeline = match Pipeline::load(&pipeline_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let outcome = match runtime.block_on(sync(&pipeline, &SyncOptions::default())) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let r = &outcome.report;
    println!(
        "e2e: {} transactions ({}), target {}",
        r.counts.extracted,
        args.format.extension(),
        r.target
    );
    println!(
        "{:<12} {:>12} {:>10} {:>14}",
        "stage", "rows in", "busy s", "rows/s (busy)"
    );
    for s in &r.stages {
        println!(
            "{:<12} {:>12} {:>10.2} {:>14.0}",
            s.stage,
            s.rows_in,
            s.busy_ms / 1000.0,
            s.rows_per_s
        );
    }
    println!(
        "wall {wall:.2} s, overall {:.0} rows/s (extracted / wall)",
        r.counts.extracted as f64 / wall
    );
    println!(
        "planned {} lines, {} direct costs, reconciled {}",
        r.counts.planned, r.plan.direct_costs, r.reconciled
    );
    if let Some(load) = &r.load {
        let requests = load.requests_total.max(1);
        println!(
            "requests {} (header syncs {}, line syncs {}), {:.0} transactions per request, {:.0} lines per line request, loaded {:?}, failure {:?}",
            load.requests_total,
            load.counts.header_requests,
            load.counts.line_requests,
            r.counts.planned as f64 / requests as f64,
            load.lines_per_line_request,
            r.counts.loaded,
            load.failure
        );
    } else {
        let requests = (r.plan.header_requests + r.plan.line_requests).max(1);
        println!(
            "planned requests {} (header syncs {}, line syncs {}), {:.0} transactions per request",
            requests,
            r.plan.header_requests,
            r.plan.line_requests,
            r.counts.planned as f64 / requests as f64
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS {rss:.0} MiB");
    }
    println!("run dir {}", outcome.run_dir.display());
}
