//! A run: its directory and id, [`report`] (`report.json`, with stage timings), [`manifest`]
//! (`manifest.json`, verify, inspect), [`finish`] (the one ending for sync and replay) and
//! [`summary`] (the text printed at the end).

pub mod finish;
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

/// Create `runs/<run-id>/`; the id sorts by start time.
pub fn create_run_dir(stage_dir: &Path) -> Result<(String, PathBuf)> {
    std::fs::create_dir_all(stage_dir).map_err(|e| Error::io(stage_dir, e))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for attempt in 0u32..100 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = (nanos ^ std::process::id().rotate_left(16) ^ attempt.wrapping_mul(0x9E37_79B9))
            & 0xffff;
        let id = format!("{stamp}-{tag:04x}");
        let dir = stage_dir.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    Err(Error::io(
        stage_dir,
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "no free run id"),
    ))
}
