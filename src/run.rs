//! The run directory: its id, `report.json`, `manifest.json`, verification and the human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Pipeline, SyncKind};
use crate::error::{Error, Result};
use crate::load::plan::PlanStats;
use crate::pipeline::StageTiming;
use crate::stage::{sha256_file, FileEntry};

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

/// Row counts of the transaction table. `extracted = filtered + quarantined_total + planned`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountsReport {
    pub extracted: u64,
    pub filtered: u64,
    pub filtered_by_type: BTreeMap<String, u64>,
    pub filtered_before_window: u64,
    pub quarantined_total: u64,
    /// By reason code.
    pub quarantined: BTreeMap<String, u64>,
    pub staged: u64,
    pub planned: u64,
}

/// A dimension table's rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DimensionReport {
    pub table: String,
    pub rows_read: u64,
    pub quarantined: u64,
}

/// One stage's work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: String,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Time spent working, not waiting on channels.
    pub busy_ms: f64,
    /// rows_in per busy second.
    pub rows_per_s: f64,
}

impl StageReport {
    /// A stage report from explicit numbers.
    pub fn new(stage: &str, busy: Duration, rows_in: u64, rows_out: u64) -> StageReport {
        let secs = busy.as_secs_f64();
        StageReport {
            stage: stage.to_string(),
            rows_in,
            rows_out,
            busy_ms: secs * 1000.0,
            rows_per_s: if secs > 0.0 {
                rows_in as f64 / secs
            } else {
                0.0
            },
        }
    }

    /// A stage report from a stage's timing.
    pub fn from_timing(stage: &str, t: StageTiming) -> StageReport {
        StageReport::new(stage, t.busy, t.rows_in, t.rows_out)
    }
}

/// Planned amount per budget code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TotalRow {
    pub job: String,
    pub extra: Option<String>,
    pub cost_code: Option<String>,
    pub category: Option<String>,
    pub amount: String,
}

/// The change window of a SQL Server run: which rows it read by their Date_Stamp + Time_Stamp,
/// and where the watermark goes once the run succeeded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangeWindow {
    /// Ledger scope of the watermark (company, server, database, table).
    pub scope: String,
    /// The watermark found in the ledger when the run started.
    pub watermark: Option<String>,
    pub overlap_minutes: u32,
    /// Rows stamped at or after this were read (watermark - overlap); None: every row.
    pub changed_since: Option<String>,
    /// Latest stamp among the rows this run read.
    pub max_stamp_seen: Option<String>,
    /// The watermark after this run (recorded in the ledger once the manifest is written).
    pub new_watermark: Option<String>,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// SQL Server sources: the change window (incremental) and the watermark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_window: Option<ChangeWindow>,
    pub run_id: String,
    pub company: String,
    pub target: String,
    pub sync_type: SyncKind,
    pub since: String,
    pub started_at: String,
    pub elapsed_ms: u64,
    /// extracted == filtered + quarantined + planned.
    pub reconciled: bool,
    pub counts: CountsReport,
    pub dimensions: Vec<DimensionReport>,
    pub dimension_rows_quarantined: u64,
    pub stages: Vec<StageReport>,
    pub plan: PlanStats,
    pub planned_amount: String,
    pub totals: Vec<TotalRow>,
}

/// `manifest.json`: what the run consists of, and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub run_id: String,
    pub jcsync_version: String,
    pub created_at: String,
    pub company: String,
    pub pipeline_path: String,
    pub pipeline_sha256: String,
    pub source: String,
    pub sync_type: SyncKind,
    /// Accounting_Date window: `beginning-of-time` or the first date.
    pub sync_since: String,
    /// SQL Server sources: the change window read and the watermark after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_window: Option<ChangeWindow>,
    pub extracted: u64,
    pub filtered: u64,
    pub quarantined: u64,
    pub staged: u64,
    pub planned: u64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The manifest of a finished run.
    pub fn new(
        run_id: &str,
        pipeline: &Pipeline,
        source: String,
        report: &Report,
        files: Vec<FileEntry>,
    ) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            run_id: run_id.to_string(),
            jcsync_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: chrono::Utc::now().to_rfc3339(),
            company: report.company.clone(),
            pipeline_path: pipeline.path.display().to_string(),
            pipeline_sha256: pipeline.sha256.clone(),
            source,
            sync_type: report.sync_type,
            sync_since: report.since.clone(),
            change_window: report.change_window.clone(),
            extracted: report.counts.extracted,
            filtered: report.counts.filtered,
            quarantined: report.counts.quarantined_total,
            staged: report.counts.staged,
            planned: report.counts.planned,
            files,
        }
    }
}

/// Read a run's manifest.
pub fn read_manifest(run_dir: &Path) -> Result<Manifest> {
    let path = run_dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::RunVerification {
        path: path.clone(),
        message: format!(
            "cannot read the manifest ({e}); the run is incomplete or not a run directory"
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::RunVerification {
        path,
        message: format!("manifest does not parse: {e}"),
    })
}

/// Check every file of a run against its manifest: present, same size, same sha256, and for
/// Parquet the same row count. Returns the manifest when all is well.
pub fn verify(run_dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(run_dir)?;
    for entry in &manifest.files {
        let path = run_dir.join(&entry.path);
        let fail = |message: String| Error::RunVerification {
            path: path.clone(),
            message,
        };
        if !path.is_file() {
            return Err(fail("listed in the manifest but missing".into()));
        }
        let (sha, bytes) = sha256_file(&path)?;
        if bytes != entry.bytes {
            return Err(fail(format!(
                "size {bytes} bytes, manifest says {}",
                entry.bytes
            )));
        }
        if sha != entry.sha256 {
            return Err(fail(format!(
                "sha256 {sha}, manifest says {}",
                entry.sha256
            )));
        }
        if entry.path.ends_with(".parquet") {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
                .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
            use parquet::file::reader::FileReader;
            let rows = reader.metadata().file_metadata().num_rows() as u64;
            if Some(rows) != entry.rows {
                return Err(fail(format!("{rows} rows, manifest says {:?}", entry.rows)));
            }
        }
    }
    Ok(manifest)
}

/// The short human summary printed at the end of a sync.
pub fn summary_text(report: &Report, run_dir: &Path) -> String {
    let c = &report.counts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "jcsync run {} ({} sync, since {}, target {})",
        report.run_id,
        format_kind(report.sync_type),
        report.since,
        report.target
    );
    let _ = writeln!(s, "  rows extracted   {:>10}", c.extracted);
    let _ = writeln!(
        s,
        "  filtered         {:>10}  (not a cost type: {}, before window: {})",
        c.filtered,
        c.filtered.saturating_sub(c.filtered_before_window),
        c.filtered_before_window
    );
    let reasons: Vec<String> = c
        .quarantined
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect();
    let _ = writeln!(
        s,
        "  quarantined      {:>10}  {}",
        c.quarantined_total,
        if reasons.is_empty() {
            String::new()
        } else {
            format!("({})", reasons.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "  planned          {:>10}  lines, amount {}",
        c.planned, report.planned_amount
    );
    let _ = writeln!(
        s,
        "  reconciled       {:>10}  (extracted = filtered + quarantined + planned)",
        if report.reconciled { "yes" } else { "NO" }
    );
    if report.dimension_rows_quarantined > 0 {
        let _ = writeln!(
            s,
            "  dimension rows quarantined: {}",
            report.dimension_rows_quarantined
        );
    }
    let _ = writeln!(s, "  direct costs     {:>10}", report.plan.direct_costs);
    let _ = writeln!(
        s,
        "  requests         {:>10}  ({} header syncs, {} line item syncs)",
        report.plan.header_requests + report.plan.line_requests,
        report.plan.header_requests,
        report.plan.line_requests
    );
    let _ = writeln!(s, "  stage            rows in      busy ms        rows/s");
    for st in &report.stages {
        let _ = writeln!(
            s,
            "    {:<12} {:>10} {:>12.1} {:>13.0}",
            st.stage, st.rows_in, st.busy_ms, st.rows_per_s
        );
    }
    let secs = report.elapsed_ms as f64 / 1000.0;
    let _ = writeln!(
        s,
        "  wall time        {:>9.2}s  ({:.0} rows/s overall)",
        secs,
        if secs > 0.0 {
            c.extracted as f64 / secs
        } else {
            0.0
        }
    );
    let _ = write!(s, "  run directory    {}", run_dir.display());
    s
}

fn format_kind(k: SyncKind) -> &'static str {
    match k {
        SyncKind::Deep => "deep",
        SyncKind::Incremental => "incremental",
    }
}

/// `jcsync inspect`: verify the run, then summarize it from its report.
pub fn inspect(run_dir: &Path) -> Result<String> {
    let manifest = verify(run_dir)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of company {} — verified: {} files match their sha256",
        manifest.run_id,
        manifest.company,
        manifest.files.len()
    );
    let _ = writeln!(
        s,
        "  pipeline {} (sha256 {})",
        manifest.pipeline_path,
        &manifest.pipeline_sha256[..12.min(manifest.pipeline_sha256.len())]
    );
    let _ = writeln!(s, "  source   {}", manifest.source);
    let _ = writeln!(
        s,
        "  window   {:?} since {}",
        manifest.sync_type, manifest.sync_since
    );
    if let Some(w) = &manifest.change_window {
        let _ = writeln!(
            s,
            "  changes  read from {} (watermark {} - {} min overlap); watermark now {}",
            w.changed_since.as_deref().unwrap_or("the beginning"),
            w.watermark.as_deref().unwrap_or("none"),
            w.overlap_minutes,
            w.new_watermark.as_deref().unwrap_or("none")
        );
    }
    let _ = writeln!(
        s,
        "  rows     extracted {}, filtered {}, quarantined {}, staged {}, planned {}",
        manifest.extracted,
        manifest.filtered,
        manifest.quarantined,
        manifest.staged,
        manifest.planned
    );
    let report_path = run_dir.join("report.json");
    if let Ok(text) = std::fs::read_to_string(&report_path) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(q) = v["counts"]["quarantined"].as_object() {
                for (reason, n) in q {
                    let _ = writeln!(s, "    quarantined {reason}: {n}");
                }
            }
            let _ = writeln!(
                s,
                "  direct costs {}, requests {} + {}, planned amount {}",
                v["plan"]["direct_costs"],
                v["plan"]["header_requests"],
                v["plan"]["line_requests"],
                v["planned_amount"].as_str().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(s, "  files:");
    for f in &manifest.files {
        let _ = writeln!(
            s,
            "    {:<32} {:>10} bytes {:>10} rows  {}",
            f.path,
            f.bytes,
            f.rows.map(|r| r.to_string()).unwrap_or_default(),
            &f.sha256[..16.min(f.sha256.len())]
        );
    }
    Ok(s)
}
