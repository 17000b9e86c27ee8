//! A run: its directory and id, [`report`] (`report.json`, with stage timings), [`manifest`]
//! (`manifest.json`, verify, inspect), [`finish`] (the one ending for sync and replay) and
//! [`summary`] (the text printed at the end).

pub mod finish;
pub mod history;
pub mod manifest;
pub mod report;
pub mod summary;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use manifest::{inspect, inspection, read_manifest, verify, Inspection, Manifest};
pub use report::{
    ChangeWindow, CountsReport, DimensionReport, LoadReport, ReplayReport, Report, StageReport,
    TotalRow,
};
pub use summary::{replay_summary_text, summary_text};

/// File name of the manifest, written last: a run without it is incomplete.
pub const MANIFEST: &str = "manifest.json";
/// Written instead of the manifest when a run fails: the error, for the person who finds the folder.
pub const FAILED: &str = "failed.json";
/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// A new run id: the start time (UTC, to the second, so ids sort by start) and a random tag.
/// Made before anything else of a run, so that every log event of the run carries it.
pub fn new_run_id() -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let tag: u16 = rand::random();
    format!("{stamp}-{tag:04x}")
}

/// Create `runs/<run-id>/` for the run `run_id` ([`new_run_id`]); an existing directory of that
/// name is an error, never reused.
pub fn create_run_dir(stage_dir: &Path, run_id: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(stage_dir).map_err(|e| Error::io(stage_dir, e))?;
    let dir = stage_dir.join(run_id);
    std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}
