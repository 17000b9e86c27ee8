//! The `sync --every` loop: run the pipeline, wait for the next slot, repeat, until a signal.
//!
//! Each slot reloads the pipeline file (an edit applies from the next run; a file that no
//! longer reads is a failed slot), runs one sync, prints its summary, tells the webhook, logs
//! one line (run id, outcome, exit status, duration, next slot) and waits. A failed run of any
//! kind is logged, told, and retried at the next slot: the process never exits on one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::interval::format_every;
use super::slots::{Grid, Next};
use super::state::{EveryHolder, EveryLock, LockRefused, ScheduleInfo};
use crate::config::Pipeline;
use crate::error::Error;
use crate::notify::{Ended, Notifier};
use crate::pipeline::{sync, SyncOptions, EXIT_LEDGER_BUSY};

/// Exit status of a schedule that could not start (bad pipeline file, lock file error).
const EXIT_FAILED: u8 = 1;
/// How often a wait looks at the wall clock and the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What `sync --every` runs.
pub struct EveryOptions<'a> {
    pub pipeline: &'a Path,
    pub every: Duration,
    /// The options of each run; `cancel` is the flag the signal handler sets.
    pub sync: SyncOptions,
    /// The exit status a run that ended with an error gives (the command line's mapping).
    pub exit_status: fn(&Error) -> u8,
}

/// Run `options.pipeline` every `options.every` until the stop flag is set (SIGTERM,
/// Ctrl-C); the process exit status: 0 once stopped, 1 if the schedule could not start (the
/// pipeline file does not read), 4 if another `sync --every` already runs its ledger.
pub fn run_every(runtime: &tokio::runtime::Runtime, options: &EveryOptions<'_>) -> u8 {
    let stop = options.sync.cancel.clone().unwrap_or_default();
    let mut last_good = match Pipeline::load(options.pipeline) {
        Ok(p) => p,
        Err(e) => {
            crate::logging::report_error(&e);
            return EXIT_FAILED;
        }
    };
    let ledger = last_good.config.ledger_path();
    let every = format_every(options.every);
    let started_at = now_text(SystemTime::now());
    let holder = EveryHolder {
        pid: std::process::id(),
        host: crate::notify::payload::host_name(),
        started_at: started_at.clone(),
        command: format!("sync --every {every} {}", options.pipeline.display()),
    };
    let lock = match EveryLock::acquire(&ledger, &holder) {
        Ok(l) => l,
        Err(e @ LockRefused::Busy { .. }) => {
            crate::logging::report_error(&e);
            return EXIT_LEDGER_BUSY;
        }
        Err(e) => {
            crate::logging::report_error(&e);
            return EXIT_FAILED;
        }
    };
    let mut state = ScheduleInfo {
        pid: holder.pid,
        host: holder.host.clone(),
        every: every.clone(),
        pipeline: options.pipeline.display().to_string(),
        started_at,
        next_run_at: now_text(SystemTime::now()),
        running_since: None,
        last_run_id: None,
    };
    save(&lock, &state);
    let mut warned: Option<String> = None;
    warn_once(&mut warned, Notifier::for_pipeline(&last_good).as_ref());
    tracing::info!(
        "scheduled: {} every {every}, aligned to the start; SIGTERM or Ctrl-C stops",
        options.pipeline.display()
    );
    let grid = Grid {
        start: SystemTime::now(),
        every: options.every,
    };
    let mut next = grid.first();
    loop {
        if wait_until(runtime, next.at, options.every, &stop) == Waited::Stopped {
            break;
        }
        next = grid.on_wake(next, SystemTime::now());
        if next.catch_up {
            tracing::warn!(
                "slot {}: catching up now, late; {} slot(s) skipped (their time passed while the previous run went on or the machine slept)",
                next.slot,
                next.skipped
            );
        }
        let begun = SystemTime::now();
        state.running_since = Some(now_text(begun));
        state.next_run_at = now_text(grid.slot_at(next.slot + 1).max(begun));
        save(&lock, &state);
        let slot = run_slot(runtime, options, &ledger, &mut last_good, &mut warned);
        release_freed_memory();
        state.running_since = None;
        state.last_run_id = slot.run_id.clone().or(state.last_run_id.take());
        if stop.load(Ordering::Relaxed) {
            log_slot(next.slot, &slot, None);
            break;
        }
        let after = grid.after_run(next, SystemTime::now());
        log_slot(next.slot, &slot, Some(&after));
        state.next_run_at = now_text(after.at);
        save(&lock, &state);
        next = after;
    }
    drop(lock);
    crate::logging::say("stopped: no further run is scheduled");
    0
}

/// How one slot's run ended.
struct SlotEnd {
    run_id: Option<String>,
    outcome: String,
    exit_code: u8,
    took: Duration,
}

fn run_slot(
    runtime: &tokio::runtime::Runtime,
    options: &EveryOptions<'_>,
    ledger: &Path,
    last_good: &mut Pipeline,
    warned: &mut Option<String>,
) -> SlotEnd {
    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    let pipeline = Pipeline::load(options.pipeline).and_then(|p| same_ledger(p, ledger));
    let loaded = pipeline.is_ok();
    let result = match pipeline {
        Ok(p) => {
            *last_good = p;
            let run =
                std::panic::AssertUnwindSafe(|| runtime.block_on(sync(last_good, &options.sync)));
            std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                Err(Error::TaskFailed {
                    stage: "sync",
                    message: panic_text(&panic),
                })
            })
        }
        Err(e) => Err(e),
    };
    let exit_code = match &result {
        Ok(o) => {
            crate::logging::print_out(crate::run::summary_text(&o.report, &o.run_dir));
            o.exit_code
        }
        Err(e @ Error::LedgerBusy { .. }) => {
            tracing::warn!("slot skipped: {e}");
            (options.exit_status)(e)
        }
        Err(e) => {
            crate::logging::report_error(e);
            (options.exit_status)(e)
        }
    };
    let took = wall.elapsed();
    // The notifier of the file as it now reads (or as it last read, if it no longer does).
    let notifier = Notifier::for_pipeline(last_good);
    warn_once(warned, notifier.as_ref());
    let ended = Ended {
        pipeline: last_good,
        result: result.as_ref(),
        exit_code,
        started_at,
        duration: took,
    };
    runtime.block_on(crate::notify::after_run(notifier.as_ref(), &ended));
    let run_id = match &result {
        Ok(o) => Some(o.report.run_id.clone()),
        Err(_) if loaded => crate::notify::payload::failed_run_id(
            &last_good.config.ledger_path(),
            &last_good.config.company,
            started_at,
        ),
        Err(_) => None,
    };
    SlotEnd {
        run_id,
        outcome: crate::notify::payload::outcome(&ended).as_str().to_string(),
        exit_code,
        took,
    }
}

/// A pipeline whose ledger is still the one this schedule locked (an edit that moves the
/// ledger needs a restart: the lock and `jcsync status` are on the old one).
fn same_ledger(p: Pipeline, ledger: &Path) -> crate::Result<Pipeline> {
    if p.config.ledger_path() == ledger {
        return Ok(p);
    }
    Err(Error::Config {
        path: p.path.clone(),
        message: format!(
            "the ledger is now {} but this `sync --every` holds {}: restart it to use the new one",
            p.config.ledger_path().display(),
            ledger.display()
        ),
    })
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the run panicked".into())
}

/// The one line per slot.
fn log_slot(slot: u64, end: &SlotEnd, next: Option<&Next>) {
    let run_id = end.run_id.as_deref().unwrap_or("-");
    let secs = end.took.as_secs_f64();
    match next {
        Some(n) => tracing::info!(
            "slot {slot}: run {run_id} {} (exit {}) in {secs:.1} s; next run {}{}",
            end.outcome,
            end.exit_code,
            if n.catch_up {
                "now (catch-up)".to_string()
            } else {
                format!("at {} (slot {})", now_text(n.at), n.slot)
            },
            if n.skipped > 0 {
                format!(", {} slot(s) skipped", n.skipped)
            } else {
                String::new()
            }
        ),
        None => tracing::info!(
            "slot {slot}: run {run_id} {} (exit {}) in {secs:.1} s; stopping",
            end.outcome,
            end.exit_code
        ),
    }
}

/// Warn once (per distinct problem) about a webhook that will not be told.
fn warn_once(warned: &mut Option<String>, notifier: Option<&Notifier>) {
    let problem = notifier.and_then(|n| n.problem().map(str::to_string));
    if let Some(p) = &problem {
        if warned.as_ref() != Some(p) {
            tracing::warn!("{p}");
        }
    }
    *warned = problem;
}

/// Hand the memory a run freed back to the system before the process waits for the next
/// slot. glibc keeps freed blocks in its arenas, and each run's peak lands in different places
/// of them, so without this the resident size of a long-lived `--every` process creeps up over
/// its first dozens of runs (BENCHMARKS.md, "sync --every").
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe { libc::malloc_trim(0) };
    }
}

fn save(lock: &EveryLock, state: &ScheduleInfo) {
    if let Err(e) = lock.write(state) {
        tracing::warn!("schedule state: {e}");
    }
}

fn now_text(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Due,
    Stopped,
}

/// Wait until the wall clock reaches `at` (so a machine that slept wakes up to it at once),
/// never longer than `every` by the monotonic clock (a clock set back does not stall the
/// schedule), and not at all once `stop` is set.
fn wait_until(
    runtime: &tokio::runtime::Runtime,
    at: SystemTime,
    every: Duration,
    stop: &Arc<AtomicBool>,
) -> Waited {
    let left = |now: SystemTime| at.duration_since(now).unwrap_or(Duration::ZERO);
    let deadline = Instant::now() + left(SystemTime::now()).min(every);
    runtime.block_on(async {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Waited::Stopped;
            }
            let now = SystemTime::now();
            let mono = deadline.saturating_duration_since(Instant::now());
            if now >= at || mono.is_zero() {
                return Waited::Due;
            }
            tokio::time::sleep(left(now).min(mono).min(POLL)).await;
        }
    })
}
