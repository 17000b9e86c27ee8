//! Replay: run only the load again, from a run's staged Parquet, without touching Sage.
//!
//! The run is verified first (manifest, sha256 and size of every file, Parquet row counts, the
//! staged schema); a modified or incomplete run is refused before anything is sent. The ledger
//! makes a replay idempotent: only what is missing or changed goes out, unless `force`. The
//! target may differ from the original run's. A replay writes its own run directory (report,
//! quarantine, manifest with `replay_of`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::Pipeline;
use crate::error::{Error, Result};
use crate::load::plan::PlanStats;
use crate::model::schema::enriched_schema;
use crate::model::values::format_decimal;
use crate::pipeline::{
    lock_ledger, plan_and_load, prepare_target, spawn_quarantine_writer, summarize_output,
    LoadSetup, SyncOptions, EXIT_LOAD_INCOMPLETE,
};
use crate::quarantine::QuarantineBatch;
use crate::run::{self, LoadReport, Manifest, StageReport};
use crate::stage::writer_properties;

/// Options of `jcsync replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Send everything again as updates, even what the ledger says is unchanged.
    pub force: bool,
    /// Plan only: write requests.ndjson.
    pub dry_run: bool,
    /// Set to stop sending (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// `report.json` of a replay.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    pub run_id: String,
    /// The run whose staged rows were replayed.
    pub replay_of: String,
    pub replay_of_dir: String,
    pub company: String,
    pub target: String,
    pub force: bool,
    pub started_at: String,
    pub elapsed_ms: u64,
    /// Staged rows read.
    pub rows_read: u64,
    pub plan: PlanStats,
    pub planned_amount: String,
    /// Rows quarantined by the load, by reason.
    pub quarantined: BTreeMap<String, u64>,
    pub stages: Vec<StageReport>,
    pub load: Option<LoadReport>,
    /// rows_read == loaded + quarantined + pending (or == planned for a dry run).
    pub reconciled: bool,
}

/// What a replay left.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub run_dir: PathBuf,
    pub report: ReplayReport,
    pub exit_code: u8,
}

/// Verify a run for replay: everything `run::verify` checks, plus the staged files' schema.
pub fn verify_staged(run_dir: &Path) -> Result<Manifest> {
    let manifest = run::verify(run_dir)?;
    let expected = enriched_schema();
    let mut rows = 0;
    let staged: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("staged/"))
        .collect();
    if staged.is_empty() {
        return Err(Error::RunVerification {
            path: run_dir.to_path_buf(),
            message: "the manifest lists no staged file: nothing to replay".into(),
        });
    }
    for f in staged {
        let path = run_dir.join(&f.path);
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::RunVerification {
                path: path.clone(),
                message: format!("not a readable Parquet file: {e}"),
            })?;
        let schema = builder.schema();
        let same = schema.fields().len() == expected.fields().len()
            && schema
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(Error::RunVerification {
                path,
                message: "its columns are not the staged schema of this jcsync version".into(),
            });
        }
        rows += f.rows.unwrap_or(0);
    }
    if rows != manifest.staged {
        return Err(Error::RunVerification {
            path: run_dir.join(run::MANIFEST),
            message: format!(
                "staged files hold {rows} rows, the manifest says {}",
                manifest.staged
            ),
        });
    }
    Ok(manifest)
}

/// Reads the staged files of a run in order, batch by batch.
struct StagedReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<ParquetRecordBatchReader>,
    batch_rows: usize,
}

impl StagedReader {
    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(r) = self.current.as_mut() {
                match r.next() {
                    Some(b) => return Some(b.map_err(Error::from)),
                    None => self.current = None,
                }
            }
            let path = self.files.next()?;
            let opened = std::fs::File::open(&path)
                .map_err(|e| Error::io(&path, e))
                .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::from))
                .and_then(|b| {
                    b.with_batch_size(self.batch_rows)
                        .build()
                        .map_err(Error::from)
                });
            match opened {
                Ok(r) => self.current = Some(r),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Replay a verified run into the pipeline's target.
pub async fn replay(
    run_dir: &Path,
    pipeline: &Pipeline,
    options: &ReplayOptions,
) -> Result<ReplayOutcome> {
    let sync_options = SyncOptions {
        dry_run: options.dry_run,
        cancel: options.cancel.clone(),
        ..SyncOptions::default()
    };
    // One sync or replay at a time per ledger (a dry run takes no lock); held to the end.
    let _ledger_lock = lock_ledger(
        pipeline,
        &sync_options,
        format!("replay {}", run_dir.display()),
    )
    .await?;
    let manifest = verify_staged(run_dir)?;
    if manifest.company != pipeline.config.company {
        return Err(Error::Config {
            path: pipeline.path.clone(),
            message: format!(
                "key `company`: the run was staged for company {:?}, this pipeline is for {:?} (origin_ids include the company)",
                manifest.company, pipeline.config.company
            ),
        });
    }
    let mut pipeline = pipeline.clone();
    if options.force {
        pipeline.config.load.force = true;
    }
    let config = &pipeline.config;
    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    let target = prepare_target(&pipeline, &sync_options).await?;
    let (run_id, out_dir) = run::create_run_dir(&config.stage.dir)?;
    tracing::info!(
        run_id,
        replay_of = manifest.run_id,
        target = target.label,
        "replay started"
    );
    let props = writer_properties(&config.stage, &crate::quarantine::quarantine_schema())?;
    let (qtx, qrx) = mpsc::channel::<QuarantineBatch>(config.pipeline.channel_capacity);
    let quarantine_task = spawn_quarantine_writer(&out_dir, &props, qrx);
    let label = target.label.clone();
    let setup = LoadSetup {
        run_dir: out_dir.clone(),
        run_id: run_id.clone(),
        load_config: config.load.clone(),
        table: config.tables.transaction.clone(),
        handle: Handle::current(),
        load: target.load,
        quarantine: qtx,
        cancel: options.cancel.clone().unwrap_or_default(),
    };
    let mut reader = StagedReader {
        files: manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with("staged/"))
            .map(|f| run_dir.join(&f.path))
            .collect::<Vec<_>>()
            .into_iter(),
        current: None,
        batch_rows: config.pipeline.batch_rows,
    };
    let planned = tokio::task::spawn_blocking(move || plan_and_load(setup, || reader.next_batch()))
        .await
        .map_err(|e| Error::Stage {
            stage: "plan",
            message: format!("task ended abnormally: {e}"),
        });
    let quarantine = quarantine_task.await.map_err(|e| Error::Stage {
        stage: "quarantine",
        message: format!("task ended abnormally: {e}"),
    });
    let (timing, planner, output) = planned??;
    let quarantine = quarantine??;
    let (requests_file, load, failure) = summarize_output(output);
    let mut quarantined = BTreeMap::new();
    for ((_, reason), n) in &quarantine.counts {
        *quarantined.entry(reason.clone()).or_insert(0) += n;
    }
    let q_total: u64 = quarantined.values().sum();
    let reconciled = match &load {
        None => timing.rows_in == planner.stats.lines,
        Some(l) => timing.rows_in == l.counts.loaded() + q_total + l.counts.pending,
    };
    let report = ReplayReport {
        run_id: run_id.clone(),
        replay_of: manifest.run_id.clone(),
        replay_of_dir: run_dir.display().to_string(),
        company: config.company.clone(),
        target: label,
        force: options.force,
        started_at: started_at.to_rfc3339(),
        elapsed_ms: wall.elapsed().as_millis() as u64,
        rows_read: timing.rows_in,
        plan: planner.stats.clone(),
        planned_amount: format_decimal(planner.stats.amount_cents, 2),
        quarantined,
        stages: vec![StageReport::from_timing("replay plan+load", timing)],
        load,
        reconciled,
    };
    let mut files = quarantine.files;
    files.extend(requests_file);
    files.push(crate::stage::write_json(&out_dir, "report.json", &report)?);
    let replay_manifest = Manifest {
        format: run::MANIFEST_FORMAT,
        run_id: run_id.clone(),
        jcsync_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: chrono::Utc::now().to_rfc3339(),
        company: config.company.clone(),
        pipeline_path: pipeline.path.display().to_string(),
        pipeline_sha256: pipeline.sha256.clone(),
        source: format!("replay:{}", manifest.run_id),
        sync_type: manifest.sync_type,
        sync_since: manifest.sync_since.clone(),
        change_window: None,
        extracted: report.rows_read,
        filtered: 0,
        quarantined: q_total,
        staged: 0,
        planned: report.plan.lines,
        files,
    };
    crate::stage::write_json(&out_dir, run::MANIFEST, &replay_manifest)?;
    let exit_code = if let Some(e) = failure {
        tracing::error!("the replay's load did not complete: {e}");
        EXIT_LOAD_INCOMPLETE
    } else if q_total > 0 {
        config.report.quarantine_exit_code
    } else {
        0
    };
    Ok(ReplayOutcome {
        run_dir: out_dir,
        report,
        exit_code,
    })
}

/// The short human summary of a replay.
pub fn summary_text(r: &ReplayReport, run_dir: &Path) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "jcsync replay {} of run {} (target {}{})",
        r.run_id,
        r.replay_of,
        r.target,
        if r.force { ", forced" } else { "" }
    );
    let _ = writeln!(s, "  staged rows read {:>10}", r.rows_read);
    let _ = writeln!(
        s,
        "  planned          {:>10}  lines in {} direct costs, amount {}",
        r.plan.lines, r.plan.direct_costs, r.planned_amount
    );
    if let Some(l) = &r.load {
        let _ = writeln!(
            s,
            "  loaded           {:>10}  lines ({} sent, {} unchanged), {} pending",
            l.counts.loaded(),
            l.counts.lines_sent,
            l.counts.lines_unchanged,
            l.counts.pending
        );
        let _ = writeln!(
            s,
            "  procore          {:>10}  requests, {} retries, {} 429s",
            l.requests_total, l.http.retries, l.http.rate_limited
        );
        if let Some(f) = &l.failure {
            let _ = writeln!(s, "  LOAD INCOMPLETE: {f}");
        }
    }
    let q: Vec<String> = r
        .quarantined
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        s,
        "  quarantined      {:>10}  {}",
        r.quarantined.values().sum::<u64>(),
        q.join(", ")
    );
    let _ = writeln!(
        s,
        "  reconciled       {:>10}",
        if r.reconciled { "yes" } else { "NO" }
    );
    for st in &r.stages {
        let _ = writeln!(
            s,
            "  {:<16} {:>10.0} rows/s ({:.1} ms busy)",
            st.stage, st.rows_per_s, st.busy_ms
        );
    }
    let _ = write!(s, "  run directory    {}", run_dir.display());
    s
}
