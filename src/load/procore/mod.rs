//! Sending planned direct costs to Procore: resolve ids, skip what the ledger says is unchanged,
//! sync headers then lines per project, record what Procore answered.
//!
//! One worker task per project takes that project's requests in order, so writes to a project are
//! serialized (no 409 by construction) while several projects are in flight at once (bounded by
//! `[load] max_projects_in_flight`). Results are matched by origin_id, never by order. A load that
//! fails (Procore down past the retry budget) or is interrupted stops sending but keeps consuming,
//! so that staging still completes and the run can be resumed or replayed.
//!
//! This file holds what the parts share: the [`LoadContext`], the [`LoadCounts`] and how a load
//! ended ([`LoadOutcome`]). [`directory`] looks up project and vendor ids, [`payload`] is what is
//! sent, [`worker`] is one project's worker and [`sink`] feeds the workers from the planner.

mod directory;
pub mod payload;
mod sink;
mod worker;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

use super::client::ProcoreClient;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerEntry};
use crate::quarantine::QuarantineBatch;

pub use directory::Directory;
pub use payload::flat_code;
pub use sink::LoadSink;
use sink::Progress;

/// Counts of a load.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadCounts {
    /// Lines Procore accepted in this run (created or updated).
    pub lines_sent: u64,
    /// Of `lines_sent`, those the ledger already had (an update of a line in Procore).
    pub lines_updated: u64,
    /// Of `lines_updated`, lines whose direct cost changed (vendor or invoice changed in Sage):
    /// removed from the old direct cost and created in the new one.
    pub lines_moved: u64,
    /// Lines the ledger showed unchanged (already in Procore).
    pub lines_unchanged: u64,
    pub headers_sent: u64,
    pub headers_unchanged: u64,
    /// Lines quarantined at load, by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Lines not loaded because the load stopped (failure or interruption): the next sync resumes them.
    pub pending: u64,
    pub header_requests: u64,
    pub line_requests: u64,
    pub budget_codes_created: u64,
    /// Lines retried from open exceptions (rows the ledger stored, not in this run's
    /// snapshot); they are in `lines_sent`/`lines_unchanged` or `pending` like any line, but
    /// not in `quarantined`: of them, loaded, quarantined again (by reason) and pending.
    pub retried: u64,
    pub retried_loaded: u64,
    pub retried_quarantined: BTreeMap<String, u64>,
    /// Amount of the `retried_quarantined` lines, in cents (said as text by the exceptions
    /// report).
    #[serde(skip)]
    pub retried_quarantined_cents: i64,
    pub retried_pending: u64,
}

impl LoadCounts {
    /// Lines in Procore after this run (sent now or already there).
    pub fn loaded(&self) -> u64 {
        self.lines_sent + self.lines_unchanged
    }

    /// Lines quarantined at load.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// The lines retried from open exceptions, and what became of them.
    pub fn retried(&self) -> crate::load::exceptions::Retried {
        crate::load::exceptions::Retried {
            retried: self.retried,
            loaded: self.retried_loaded,
            quarantined: self.retried_quarantined.values().sum(),
            quarantined_cents: self.retried_quarantined_cents,
            pending: self.retried_pending,
        }
    }
}

/// Everything the project workers share.
pub struct LoadContext {
    pub client: Arc<ProcoreClient>,
    pub config: LoadConfig,
    pub directory: Directory,
    pub ledger: Mutex<Ledger>,
    pub run_id: String,
    pub table: String,
    /// Closed when the load is done (the quarantine writer ends with its last sender).
    quarantine: Mutex<Option<mpsc::Sender<QuarantineBatch>>>,
    /// Set by Ctrl-C: no new request is sent.
    pub cancel: Arc<AtomicBool>,
    failure: Mutex<Option<Error>>,
    counts: Mutex<LoadCounts>,
    in_flight: Semaphore,
    progress: Progress,
    /// Jobs with open exceptions when the load started: their loaded lines close them.
    open_jobs: HashSet<String>,
    /// Hashes ([`crate::load::exceptions::id_hash`]) of the lines retried from open exceptions.
    retried: Mutex<HashSet<u128>>,
    any_retried: AtomicBool,
}

impl LoadContext {
    /// A context for one run's load.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Arc<ProcoreClient>,
        config: LoadConfig,
        directory: Directory,
        ledger: Ledger,
        run_id: &str,
        table: &str,
        quarantine: mpsc::Sender<QuarantineBatch>,
        cancel: Arc<AtomicBool>,
    ) -> LoadContext {
        let permits = config.max_projects_in_flight;
        LoadContext {
            client,
            config,
            directory,
            ledger: Mutex::new(ledger),
            run_id: run_id.to_string(),
            table: table.to_string(),
            quarantine: Mutex::new(Some(quarantine)),
            cancel,
            failure: Mutex::new(None),
            counts: Mutex::new(LoadCounts::default()),
            in_flight: Semaphore::new(permits),
            progress: Progress::default(),
            open_jobs: HashSet::new(),
            retried: Mutex::new(HashSet::new()),
            any_retried: AtomicBool::new(false),
        }
    }

    /// The jobs that had open exceptions when the load started (a line of theirs that loads
    /// closes its exception).
    pub fn with_open_exception_jobs(mut self, jobs: HashSet<String>) -> LoadContext {
        self.open_jobs = jobs;
        self
    }

    /// Lines about to be planned from open exceptions' stored rows (their hashes).
    pub fn note_retried(&self, hashes: &[u128]) {
        self.retried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(hashes.iter().copied());
        self.any_retried.store(true, Ordering::Relaxed);
        self.counts().retried += hashes.len() as u64;
    }

    /// True when the line `origin_id` was retried from an open exception's stored row.
    fn is_retried(&self, origin_id: &str) -> bool {
        self.any_retried.load(Ordering::Relaxed)
            && self
                .retried
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&crate::load::exceptions::id_hash(origin_id))
    }

    /// True when lines of `job` may close open exceptions.
    fn job_has_exceptions(&self, job: &str) -> bool {
        self.open_jobs.contains(job)
    }

    /// A permit of `[load] max_projects_in_flight`, held while a request is in flight. The
    /// semaphore is never closed, so this waits and does not fail.
    async fn permit(&self) -> Result<SemaphorePermit<'_>> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| Error::TaskFailed {
                stage: "load",
                message: "the load is shutting down".into(),
            })
    }

    /// The quarantine channel, while the load is running.
    fn quarantine_sender(&self) -> Option<mpsc::Sender<QuarantineBatch>> {
        self.quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The load is done: let the quarantine writer finish.
    pub(super) fn close_quarantine(&self) {
        self.quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!("load stopped: {e}");
            *f = Some(e);
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, LoadCounts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, entries: &[LedgerEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(entries)
    }

    fn known(&self, origin_id: &str) -> Result<Option<LedgerEntry>> {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin_id)
    }
}

/// How a load ended.
#[derive(Debug)]
pub struct LoadOutcome {
    pub counts: LoadCounts,
    pub client: super::client::ClientStats,
    /// Why the load stopped early, if it did.
    pub failure: Option<Error>,
}
