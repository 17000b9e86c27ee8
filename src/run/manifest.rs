//! `manifest.json`, written last: what a run consists of; and the checks of a run directory
//! against it (`verify`, `jcsync inspect`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::report::ChangeWindow;
use super::MANIFEST;
use crate::config::SyncKind;
use crate::error::{Error, Result};
use crate::staging::{sha256_file, FileEntry};

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
