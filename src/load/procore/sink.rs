//! The sink the planner feeds when the target is Procore: it hands each planned request to its
//! project's worker, and shows the load's progress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::worker::{run_worker, Request};
use super::{LoadContext, LoadOutcome};
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::load::plan::{PlannedRequest, RequestSink};

/// What the progress bar can know while planning and loading overlap: the lines and requests
/// planned so far, and the requests the project workers are done with (sent, skipped as
/// unchanged, quarantined, or left pending).
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) planned_lines: AtomicU64,
    pub(super) planned_requests: AtomicU64,
    pub(super) handled_requests: AtomicU64,
}

impl Progress {
    /// Planned requests no worker has handled yet: headers are batched (one header request
    /// serves several line requests), so this counts requests, not lines.
    fn requests_left(&self) -> u64 {
        let planned = self.planned_requests.load(Ordering::Relaxed);
        planned.saturating_sub(self.handled_requests.load(Ordering::Relaxed))
    }
}

/// Time the rate budget (`rate` requests/s) needs for `requests`.
fn time_at_rate(requests: u64, rate: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(requests as f64 / rate.max(f64::MIN_POSITIVE))
}

/// The sink the planner feeds when the target is Procore (or the sandbox).
pub struct LoadSink {
    ctx: Arc<LoadContext>,
    handle: Handle,
    workers: HashMap<String, (mpsc::Sender<Request>, JoinHandle<()>)>,
    progress: indicatif::ProgressBar,
    ticker: JoinHandle<()>,
}

/// Requests per second the rate budget allows (the tighter of the two quotas).
fn budget_rate(config: &LoadConfig) -> f64 {
    let spike = config.spike_limit as f64 / config.spike_window_secs.max(1) as f64;
    let hourly = config.hourly_limit as f64 / 3600.0;
    spike.min(hourly).max(f64::MIN_POSITIVE)
}

/// The progress bar of the load: lines handled out of lines planned so far, and the time the
/// rate budget needs for the requests planned and not yet handled.
fn progress_bar() -> indicatif::ProgressBar {
    // JSON logs own stderr: the bar stays hidden and progress goes to the log every 10 s.
    let target = if crate::logging::json_enabled() {
        indicatif::ProgressDrawTarget::hidden()
    } else {
        indicatif::ProgressDrawTarget::stderr_with_hz(4)
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), target);
    let style = indicatif::ProgressStyle::with_template("load {bar:30} {pos}/{len} lines  {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

impl LoadSink {
    /// A sink running its workers on `handle`.
    pub fn new(ctx: Arc<LoadContext>, handle: Handle) -> LoadSink {
        let progress = progress_bar();
        let ticker = {
            let (ctx, bar) = (ctx.clone(), progress.clone());
            let rate = budget_rate(&ctx.config);
            handle.spawn(async move {
                let mut last_log = std::time::Instant::now();
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let c = ctx.counts().clone();
                    let planned = ctx.progress.planned_lines.load(Ordering::Relaxed);
                    let done = c.loaded() + c.quarantined_total() + c.pending;
                    let eta = time_at_rate(ctx.progress.requests_left(), rate);
                    let mut msg = format!(
                        "{} requests, {} retries, ETA at the rate budget {}",
                        c.header_requests + c.line_requests,
                        ctx.client.stats().retries,
                        indicatif::HumanDuration(eta)
                    );
                    if let Some(wait) = ctx.client.rate_wait() {
                        // Said first: it is why the line does not move.
                        msg = format!("{wait}; {msg}");
                    }
                    bar.set_length(planned);
                    bar.set_position(done);
                    bar.set_message(msg.clone());
                    if bar.is_hidden() && last_log.elapsed() > std::time::Duration::from_secs(10) {
                        tracing::info!(done, planned, "load: {msg}");
                        last_log = std::time::Instant::now();
                    }
                }
            })
        };
        LoadSink {
            ctx,
            handle,
            workers: HashMap::new(),
            progress,
            ticker,
        }
    }

    /// The context the workers share (its ledger, client and directory outlive the load).
    pub fn context(&self) -> Arc<LoadContext> {
        self.ctx.clone()
    }

    /// Wait for every project worker; return the counts and the failure, if any.
    pub fn finish(mut self) -> LoadOutcome {
        let workers: Vec<JoinHandle<()>> = self.workers.drain().map(|(_, (_, h))| h).collect();
        for w in workers {
            if let Err(e) = self.handle.block_on(w) {
                self.ctx.fail(Error::TaskFailed {
                    stage: "load",
                    message: format!("a project worker: {e}"),
                });
            }
        }
        self.ticker.abort();
        self.progress.finish_and_clear();
        self.ctx.close_quarantine();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            self.ctx.fail(Error::Interrupted);
        }
        LoadOutcome {
            counts: self.ctx.counts().clone(),
            client: self.ctx.client.stats(),
            failure: self
                .ctx
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        }
    }
}

impl RequestSink for LoadSink {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        let (job, request) = match request {
            PlannedRequest::HeaderSync { job, headers } => {
                (job, Request::HeaderSync(headers.to_headers_with_codes()))
            }
            PlannedRequest::LineSync { job, lines } => {
                let planned = &self.ctx.progress.planned_lines;
                planned.fetch_add(lines.len() as u64, Ordering::Relaxed);
                (job, Request::LineSync(lines.to_items()))
            }
        };
        // Counted before the worker can handle it, so `requests_left` never undercounts.
        self.ctx
            .progress
            .planned_requests
            .fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx.clone();
        let handle = self.handle.clone();
        let (tx, _) = self.workers.entry(job.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(2);
            let task = handle.spawn(run_worker(ctx, job.to_string(), rx));
            (tx, task)
        });
        // The project worker stopped (it panicked or was cancelled: `finish` reports which).
        tx.blocking_send(request)
            .map_err(|_| Error::NextStageStopped { stage: "load" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_planned_requests_not_two_per_line_request() {
        // 8 line requests of 1000 lines served by 2 header requests (headers are batched);
        // the workers are done with 4 of the 10.
        let progress = Progress::default();
        progress.planned_lines.store(8000, Ordering::Relaxed);
        progress.planned_requests.store(10, Ordering::Relaxed);
        progress.handled_requests.store(4, Ordering::Relaxed);
        assert_eq!(progress.requests_left(), 6);
        assert_eq!(
            time_at_rate(progress.requests_left(), 2.0),
            std::time::Duration::from_secs(3)
        );
        progress.handled_requests.store(10, Ordering::Relaxed);
        assert_eq!(progress.requests_left(), 0);
        assert_eq!(time_at_rate(0, 0.0), std::time::Duration::ZERO);
    }
}
