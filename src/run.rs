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
    /// Lines in Procore after the run (sent now or unchanged since an earlier run); None for a
    /// dry run.
    pub loaded: Option<u64>,
    /// Planned lines not loaded because the load stopped early (resumed by the next sync).
    pub pending: u64,
    /// `sync --stage-only`: nothing was planned or sent; `staged` takes `planned`'s place in
    /// the reconciliation and a replay of the run does the load.
    #[serde(default)]
    pub plan_skipped: bool,
}

impl CountsReport {
    /// Every extracted row is accounted for exactly once. `load_quarantined` is the part of
    /// `quarantined_total` that the load rejected (those rows were planned first).
    pub fn reconciles(&self, load_quarantined: u64) -> bool {
        let upstream = self.filtered + self.quarantined_total - load_quarantined;
        if self.plan_skipped {
            return self.extracted == upstream + self.staged;
        }
        match self.loaded {
            None => self.extracted == upstream + self.planned,
            Some(loaded) => {
                self.extracted == upstream + self.planned
                    && self.planned == loaded + load_quarantined + self.pending
            }
        }
    }
}

/// What the load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub counts: crate::load::procore::LoadCounts,
    pub http: crate::load::client::ClientStats,
    pub requests_total: u64,
    /// Lines per line-item sync request (transactions per request).
    pub lines_per_line_request: f64,
    /// Why the load stopped early, if it did.
    pub failure: Option<String>,
}

/// A dimension table's rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DimensionReport {
    pub table: String,
    pub rows_read: u64,
    pub quarantined: u64,
    /// Descriptive values (a job's Description, ...) that were not valid UTF-8 and were decoded
    /// lossily (U+FFFD) instead of setting their row aside, by Sage column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decoded_lossily: BTreeMap<String, u64>,
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
    pub load: Option<LoadReport>,
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
    let lossy: Vec<String> = report
        .dimensions
        .iter()
        .flat_map(|d| {
            d.decoded_lossily
                .iter()
                .map(move |(column, n)| format!("{}.{column}: {n}", d.table))
        })
        .collect();
    if !lossy.is_empty() {
        let total: u64 = report
            .dimensions
            .iter()
            .flat_map(|d| d.decoded_lossily.values())
            .sum();
        let _ = writeln!(
            s,
            "  decoded lossily  {total:>10}  dimension values with bytes that are not UTF-8, kept with U+FFFD ({})",
            lossy.join(", ")
        );
    }
    if c.plan_skipped {
        let _ = writeln!(
            s,
            "  staged           {:>10}  (stage only: nothing planned or sent; load with `jcsync replay {}`)",
            c.staged,
            run_dir.display()
        );
    } else {
        let _ = writeln!(
            s,
            "  planned          {:>10}  lines, amount {}",
            c.planned, report.planned_amount
        );
    }
    let _ = writeln!(
        s,
        "  reconciled       {:>10}  (extracted = filtered + quarantined + {})",
        if report.reconciled { "yes" } else { "NO" },
        if c.plan_skipped { "staged" } else { "planned" }
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
    if let Some(l) = &report.load {
        let _ = writeln!(
            s,
            "  loaded           {:>10}  lines ({} sent, {} unchanged), {} pending, {} quarantined at load",
            l.counts.loaded(),
            l.counts.lines_sent,
            l.counts.lines_unchanged,
            l.counts.pending,
            l.counts.quarantined_total()
        );
        let _ = writeln!(
            s,
            "  procore          {:>10}  requests, {} retries, {} 429s, {:.1}s waiting for the rate limit, {:.1} lines per line request",
            l.requests_total, l.http.retries, l.http.rate_limited, l.http.rate_wait_secs, l.lines_per_line_request
        );
        for (endpoint, by_status) in &l.http.requests {
            let statuses: Vec<String> =
                by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "    {endpoint:<40} {}", statuses.join(", "));
        }
        if let Some(f) = &l.failure {
            let _ = writeln!(s, "  LOAD INCOMPLETE: {f}");
        }
    }
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

/// What `jcsync inspect` finds in a verified run (also its `--json` form).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub verified: bool,
    pub manifest: Manifest,
    /// Quarantined rows by (stage, reason), read from `quarantine.parquet`.
    pub quarantined: Vec<QuarantineCount>,
    /// Planned amount per Sage job.
    pub totals_per_job: BTreeMap<String, String>,
    /// Requests by endpoint and outcome (HTTP status, or `planned` for a dry run).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// The run's report.json.
    pub report: serde_json::Value,
}

/// Rows quarantined at one stage for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineCount {
    pub stage: String,
    pub reason_code: String,
    pub rows: u64,
}

fn quarantine_counts(path: &Path) -> Result<Vec<QuarantineCount>> {
    use arrow::array::AsArray;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for batch in reader {
        let batch = batch?;
        let (Some(stage), Some(reason)) = (
            batch.column_by_name("stage"),
            batch.column_by_name("reason_code"),
        ) else {
            continue;
        };
        let (stage, reason) = (stage.as_string::<i32>(), reason.as_string::<i32>());
        for r in 0..batch.num_rows() {
            *counts
                .entry((stage.value(r).to_string(), reason.value(r).to_string()))
                .or_insert(0) += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((stage, reason_code), rows)| QuarantineCount {
            stage,
            reason_code,
            rows,
        })
        .collect())
}

/// Verify a run and gather what `inspect` shows.
pub fn inspection(run_dir: &Path) -> Result<Inspection> {
    let manifest = verify(run_dir)?;
    let report_path = run_dir.join("report.json");
    let report: serde_json::Value = std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let quarantine = run_dir.join("quarantine.parquet");
    let quarantined = if quarantine.is_file() {
        quarantine_counts(&quarantine)?
    } else {
        Vec::new()
    };
    let mut per_job: BTreeMap<String, i128> = BTreeMap::new();
    for t in report["totals"].as_array().into_iter().flatten() {
        let (Some(job), Some(amount)) = (t["job"].as_str(), t["amount"].as_str()) else {
            continue;
        };
        if let Ok(cents) = crate::extract::convert::parse_decimal(amount, 2) {
            *per_job.entry(job.to_string()).or_insert(0) += cents;
        }
    }
    let totals_per_job = per_job
        .into_iter()
        .map(|(j, c)| (j, crate::model::values::format_decimal(c, 2)))
        .collect();
    let mut requests: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if let Some(http) = report["load"]["http"]["requests"].as_object() {
        for (endpoint, by) in http {
            for (outcome, n) in by.as_object().into_iter().flatten() {
                requests
                    .entry(endpoint.clone())
                    .or_default()
                    .insert(outcome.clone(), n.as_u64().unwrap_or(0));
            }
        }
    }
    let planned = run_dir.join("requests.ndjson");
    if planned.is_file() {
        let text = std::fs::read_to_string(&planned).map_err(|e| Error::io(&planned, e))?;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let endpoint = format!(
                "{} {}",
                v["method"].as_str().unwrap_or("?"),
                v["path"].as_str().unwrap_or("?")
            );
            *requests
                .entry(endpoint)
                .or_default()
                .entry("planned".into())
                .or_insert(0) += 1;
        }
    }
    Ok(Inspection {
        verified: true,
        manifest,
        quarantined,
        totals_per_job,
        requests,
        report,
    })
}

/// `jcsync inspect`: verify the run, then summarize it for a person.
pub fn inspect(run_dir: &Path) -> Result<String> {
    let i = inspection(run_dir)?;
    let m = &i.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of company {}: verified, {} files match the manifest (size, sha256, Parquet rows)",
        m.run_id,
        m.company,
        m.files.len()
    );
    let _ = writeln!(
        s,
        "  pipeline {} (sha256 {})",
        m.pipeline_path,
        &m.pipeline_sha256[..12.min(m.pipeline_sha256.len())]
    );
    let _ = writeln!(s, "  source   {}", m.source);
    let _ = writeln!(s, "  window   {:?} since {}", m.sync_type, m.sync_since);
    let _ = writeln!(
        s,
        "  target   {}",
        i.report["target"].as_str().unwrap_or("?")
    );
    if let Some(w) = &m.change_window {
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
        m.extracted, m.filtered, m.quarantined, m.staged, m.planned
    );
    if let Some(stages) = i.report["stages"].as_array() {
        let _ = writeln!(s, "  by stage         rows in     rows out        rows/s");
        for st in stages {
            let _ = writeln!(
                s,
                "    {:<14} {:>10} {:>12} {:>13.0}",
                st["stage"].as_str().unwrap_or("?"),
                st["rows_in"].as_u64().unwrap_or(0),
                st["rows_out"].as_u64().unwrap_or(0),
                st["rows_per_s"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if !i.quarantined.is_empty() {
        let _ = writeln!(s, "  quarantined by stage and reason:");
        for q in &i.quarantined {
            let _ = writeln!(s, "    {:<8} {:<22} {:>8}", q.stage, q.reason_code, q.rows);
        }
    }
    if !i.totals_per_job.is_empty() {
        let _ = writeln!(s, "  planned amount per job:");
        for (job, amount) in &i.totals_per_job {
            let _ = writeln!(s, "    {job:<12} {amount:>16}");
        }
    }
    if !i.requests.is_empty() {
        let _ = writeln!(s, "  requests and outcomes:");
        for (endpoint, by) in &i.requests {
            let outcomes: Vec<String> = by.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "    {endpoint:<60} {}", outcomes.join(", "));
        }
    }
    if let Some(f) = i.report["load"]["failure"].as_str() {
        let _ = writeln!(s, "  LOAD INCOMPLETE: {f}");
    }
    let _ = writeln!(s, "  files:");
    for f in &m.files {
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
