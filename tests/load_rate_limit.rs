//! Under a tight rate limit (20 requests per 10 s) the load receives zero 429s and still uses
//! nearly all of the budget.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::*;
use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, SyncOptions};
use jcsync::sandbox::{RateLimitConfig, Sandbox, SandboxConfig};

const LIMIT: u32 = 20;
const WINDOW_SECS: u64 = 10;
/// Lines per project: 24 line-item syncs of 1000 each.
const LINES_PER_PROJECT: usize = 24_000;

#[test]
fn tight_rate_limit_gets_zero_429s_and_uses_the_budget() {
    set_sandbox_credentials();
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = dir.path().join("sage");
    copy_dimension_fixtures(&sage);
    let mut csv = String::from(TRANSACTION_HEADER);
    csv.push('\n');
    for job in ["1001", "1002", "1003"] {
        for i in 0..LINES_PER_PROJECT {
            writeln!(csv, "{job},,01-100,M,AP cost,2024-01-05,2024-01-05,line {i},1,1.00,1.00,V100,INV-4471,1,AP,B1,1,{i},,,,2024-01-05,10:00:00").expect("w");
        }
    }
    std::fs::write(sage.join("JCT_CURRENT__TRANSACTION.csv"), csv).expect("write");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
        config.rate_limit = Some(RateLimitConfig {
            hourly_limit: 100_000,
            spike_limit: LIMIT,
            hourly_window: Duration::from_secs(3600),
            spike_window: Duration::from_secs(WINDOW_SECS),
        });
        let sandbox = Sandbox::start(config).await.expect("sandbox");
        let load = format!("spike_limit = {LIMIT}\nspike_window_secs = {WINDOW_SECS}\nhourly_limit = 100000\n");
        let path = write_load_pipeline(dir.path(), &sage, sandbox.url(), sandbox.company_id(), &load);
        let pipeline = Pipeline::load(&path).expect("pipeline");
        let started = std::time::Instant::now();
        let run = sync(&pipeline, &SyncOptions::default()).await.expect("sync");
        let elapsed = started.elapsed();
        let stats = sandbox.stats();
        let report = run.report.load.as_ref().expect("load");
        assert_eq!(report.failure, None);
        assert_eq!(report.counts.loaded(), 3 * LINES_PER_PROJECT as u64);
        // The count of 429s does not depend on machine speed: it must be zero.
        assert_eq!(stats.rate_limited, 0, "sandbox sent 429s: {stats:?}");
        assert_eq!(report.http.rate_limited, 0);
        let requests: u64 = stats
            .requests
            .iter()
            .filter(|(route, _)| route.contains("/rest/"))
            .flat_map(|(_, by)| by.values())
            .sum();
        // Windows opened from the first request to the last; each allows LIMIT requests.
        let windows = 1 + elapsed.as_secs() / WINDOW_SECS;
        let utilization = requests as f64 / (LIMIT as f64 * windows as f64);
        eprintln!(
            "rate-limit utilization: {requests} requests in {:.1} s = {windows} windows of {LIMIT}: {:.1}% of the budget, {} lines per line request",
            elapsed.as_secs_f64(),
            utilization * 100.0,
            report.lines_per_line_request
        );
        assert!(utilization >= 0.9, "used {:.1}% of the budget", utilization * 100.0);
        assert_eq!(report.lines_per_line_request, 1000.0);
    });
}
