//! The one ending of a run, for a sync and a replay alike: `report.json`, then the manifest
//! (written last: a run without it is incomplete), the exit status; or, for a run that failed,
//! `failed.json` beside its partial files.

use std::path::Path;

use serde::Serialize;

use super::manifest::Manifest;
use super::report::{ChangeWindow, RunEnding};
use super::{FAILED, MANIFEST, MANIFEST_FORMAT};
use crate::config::{Pipeline, SyncKind};
use crate::error::{Error, Result};
use crate::staging::{write_json, FileEntry};

/// Exit status of a run that failed (bad pipeline file, missing table, I/O error, failed stage).
pub const EXIT_FAILED: u8 = 1;

/// Exit status of a run whose load did not complete (Procore unavailable, interrupted).
pub const EXIT_LOAD_INCOMPLETE: u8 = 3;

/// Exit status of a sync or replay that did not start because another one holds the ledger.
pub const EXIT_LEDGER_BUSY: u8 = 4;

/// Exit status of a sync whose removals the guard held back (`[sync] max_removal_share`, or
/// unreadable keys): nothing was removed; `--allow-removals` confirms.
pub const EXIT_REMOVALS_HELD: u8 = 5;

/// What the manifest says of a run besides its files.
#[derive(Debug, Clone)]
pub struct ManifestFacts {
    pub source: String,
    pub sync_type: SyncKind,
    pub sync_since: String,
    pub change_window: Option<ChangeWindow>,
    pub extracted: u64,
    pub filtered: u64,
    pub quarantined: u64,
    pub staged: u64,
    pub planned: u64,
}

/// How a run that produced its files ends.
pub struct Ending<'a, R: Serialize + RunEnding> {
    pub run_dir: &'a Path,
    pub run_id: &'a str,
    pub pipeline: &'a Pipeline,
    /// `report.json`.
    pub report: &'a R,
    pub facts: ManifestFacts,
    /// The run's files so far (staged parts, quarantine, requests).
    pub files: Vec<FileEntry>,
    /// Why the load stopped early, if it did.
    pub load_failure: Option<Error>,
    /// Rows of this run's snapshot were quarantined (at any stage, dimensions included). Lines
    /// retried from open exceptions that failed again count too: the report says how many.
    pub quarantined: bool,
    /// The guard held removals back.
    pub removals_held: bool,
}

impl<R: Serialize + RunEnding> Ending<'_, R> {
    /// Write `report.json` and the manifest; the run's exit status.
    pub fn write(self) -> Result<u8> {
        let mut files = self.files;
        files.push(write_json(self.run_dir, "report.json", self.report)?);
        let f = self.facts;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            run_id: self.run_id.to_string(),
            jcsync_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: chrono::Utc::now().to_rfc3339(),
            company: self.pipeline.config.company.clone(),
            pipeline_path: self.pipeline.path.display().to_string(),
            pipeline_sha256: self.pipeline.sha256.clone(),
            source: f.source,
            sync_type: f.sync_type,
            sync_since: f.sync_since,
            change_window: f.change_window,
            extracted: f.extracted,
            filtered: f.filtered,
            quarantined: f.quarantined,
            staged: f.staged,
            planned: f.planned,
            files,
        };
        write_json(self.run_dir, MANIFEST, &manifest)?;
        if self.removals_held && self.load_failure.is_none() {
            return Ok(EXIT_REMOVALS_HELD);
        }
        let still_failing = self.report.retried_still_failing();
        if still_failing > 0 {
            tracing::warn!(
                still_failing,
                file = crate::quarantine::writer::RETRIED_FILE,
                "open exceptions retried from earlier runs failed again (listed in the file)"
            );
        }
        Ok(exit_status(
            self.load_failure.as_ref(),
            self.quarantined || still_failing > 0,
            self.pipeline.config.report.quarantine_exit_code,
        ))
    }
}

/// The exit status of a completed run: load incomplete, else rows quarantined, of this run's
/// snapshot or retried from open exceptions and failing again (the pipeline's `[report]
/// quarantine_exit_code`), else 0.
pub fn exit_status(
    load_failure: Option<&Error>,
    quarantined: bool,
    quarantine_exit_code: u8,
) -> u8 {
    if let Some(e) = load_failure {
        tracing::error!("the load did not complete: {e}");
        EXIT_LOAD_INCOMPLETE
    } else if quarantined {
        quarantine_exit_code
    } else {
        0
    }
}

/// The exit status of a sync or replay that ended with `e` (README, "Exit status").
pub fn exit_status_of(e: &Error) -> u8 {
    match e {
        Error::InterruptedUnsent { .. } => EXIT_LOAD_INCOMPLETE,
        Error::LedgerBusy { .. } => EXIT_LEDGER_BUSY,
        _ => EXIT_FAILED,
    }
}

/// A failed run writes no manifest: say why beside the partial files.
pub fn record_failure(run_dir: &Path, run_id: &str, error: &Error) {
    let note = serde_json::json!({ "run_id": run_id, "error": error.to_string() });
    if let Err(w) = write_json(run_dir, FAILED, &note) {
        tracing::warn!("cannot record the failure in {}: {w}", run_dir.display());
    }
}

/// Every staged (or read) row is accounted for by the load: loaded, quarantined at load or
/// pending; for a dry run, planned.
pub fn load_reconciles(
    rows: u64,
    planned: u64,
    load: Option<&super::report::LoadReport>,
    quarantined_at_load: u64,
) -> bool {
    match load {
        None => rows == planned,
        Some(l) => rows == l.counts.loaded() + quarantined_at_load + l.counts.pending,
    }
}
