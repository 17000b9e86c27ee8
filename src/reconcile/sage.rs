//! The Sage side of a reconciliation: the staged snapshot of a complete deep run, its lines with
//! the budget code the load computes, and the lines that run quarantined at load (exceptions).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::config::{LoadConfig, SyncKind};
use crate::error::{Error, Result};
use crate::load::plan::{LineItem, LineText};
use crate::load::procore::flat_code;
use crate::model::view::TransactionView;
use crate::run::Manifest;

/// One staged line, as the load would send it.
#[derive(Debug, Clone)]
pub struct SageLine {
    pub origin_id: String,
    pub direct_cost_origin_id: String,
    pub job: String,
    /// Flat budget code, by `[load] budget_code_format` (as the load computes it).
    pub budget_code: String,
    /// Cents.
    pub amount: i128,
    pub description: Option<String>,
    pub source_line: u64,
}

/// A staged line the run quarantined at load (or that cannot be loaded: its job has no Procore
/// project): not drift jcsync can fix by sending again.
#[derive(Debug, Clone)]
pub struct SageException {
    pub line: SageLine,
    pub reason_code: String,
    pub reason: String,
}

/// The run a reconciliation compares with, and why that one.
#[derive(Debug, Clone)]
pub struct ChosenRun {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Set when the newest complete run was not used (it was incremental).
    pub note: Option<String>,
}

/// The staged snapshot: lines jcsync loads, and the exceptions.
#[derive(Debug, Clone, Default)]
pub struct SageSnapshot {
    pub lines: Vec<SageLine>,
    pub exceptions: Vec<SageException>,
    /// Jobs with a row the run quarantined at any stage (a bad date or amount, too): a job
    /// there is still in Sage, even without a line in `lines` or `exceptions`.
    pub quarantined_jobs: BTreeSet<String>,
}

impl SageSnapshot {
    /// Every job with a row in the run: loaded, set aside at load, or quarantined.
    pub fn jobs(&self) -> BTreeSet<&str> {
        self.lines
            .iter()
            .chain(self.exceptions.iter().map(|e| &e.line))
            .map(|l| l.job.as_str())
            .chain(self.quarantined_jobs.iter().map(String::as_str))
            .collect()
    }
}

/// A replay run stages nothing (its manifest's source is `replay:<run>`).
fn stages_rows(m: &Manifest) -> bool {
    !m.source.starts_with("replay:") && m.files.iter().any(|f| f.path.starts_with("staged/"))
}

/// The run to compare with: `explicit` (verified, of this company, deep), or the newest complete
/// deep run of `company` under `stage_dir`. An incremental run stages only what changed, so it
/// is never a snapshot of Sage: when the newest complete run is one, the newest deep one is used
/// and the note says so.
pub fn choose_run(stage_dir: &Path, company: &str, explicit: Option<&Path>) -> Result<ChosenRun> {
    if let Some(dir) = explicit {
        let manifest = crate::replay::verify_staged(dir)?;
        if manifest.company != company {
            return Err(Error::RunVerification {
                path: dir.to_path_buf(),
                message: format!(
                    "the run was staged for company {:?}, this pipeline is for {company:?}",
                    manifest.company
                ),
            });
        }
        if manifest.sync_type != SyncKind::Deep {
            return Err(Error::RunVerification {
                path: dir.to_path_buf(),
                message: "an incremental run stages only the rows that changed: it is not a \
                          snapshot of Sage; name a deep run, or run a deep sync"
                    .into(),
            });
        }
        return Ok(ChosenRun {
            dir: dir.to_path_buf(),
            manifest,
            note: None,
        });
    }
    let dirs: Vec<PathBuf> = match std::fs::read_dir(stage_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(stage_dir, e)),
    };
    // Newest first, by when the manifest was written: run ids sort by second only (two runs
    // of one second get a random tag).
    let mut complete: Vec<(chrono::DateTime<chrono::FixedOffset>, PathBuf, Manifest)> = dirs
        .into_iter()
        .filter_map(|dir| {
            let manifest = crate::run::read_manifest(&dir).ok()?; // not a complete run
            let at = chrono::DateTime::parse_from_rfc3339(&manifest.created_at).ok()?;
            (manifest.company == company && stages_rows(&manifest)).then_some((at, dir, manifest))
        })
        .collect();
    complete.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let mut skipped_incremental: Option<String> = None;
    for (_, dir, manifest) in complete {
        if manifest.sync_type != SyncKind::Deep {
            skipped_incremental.get_or_insert_with(|| manifest.run_id.clone());
            continue;
        }
        match crate::replay::verify_staged(&dir) {
            Ok(manifest) => {
                let note = skipped_incremental.map(|inc| {
                    format!(
                        "the newest complete run {inc} is incremental (it stages only changed \
                         rows): compared with the newest deep run {}",
                        manifest.run_id
                    )
                });
                return Ok(ChosenRun {
                    dir,
                    manifest,
                    note,
                });
            }
            Err(e) => tracing::warn!("run {} skipped: {e}", dir.display()),
        }
    }
    Err(Error::RunVerification {
        path: stage_dir.to_path_buf(),
        message: format!(
            "no complete deep run of company {company:?} here{}: run a deep sync first \
             (`[sync] type = \"deep\"`, or `jcsync sync --stage-only` with a deep pipeline)",
            if skipped_incremental.is_some() {
                " (only incremental runs, which stage only changed rows)"
            } else {
                ""
            }
        ),
    })
}

/// The complete runs of the chosen run's company under `stage_dir` written after it (by the
/// manifest's `created_at`), replays of the chosen run apart (they send its own rows): deep,
/// incremental, and replays of other runs. Their run ids, oldest first.
pub fn later_runs(stage_dir: &Path, chosen: &ChosenRun) -> Result<Vec<String>> {
    let Ok(since) = chrono::DateTime::parse_from_rfc3339(&chosen.manifest.created_at) else {
        return Err(Error::RunVerification {
            path: chosen.dir.join("manifest.json"),
            message: format!(
                "key `created_at`: not an RFC 3339 time: {:?}",
                chosen.manifest.created_at
            ),
        });
    };
    let entries = match std::fs::read_dir(stage_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(stage_dir, e)),
    };
    let replay_of_chosen = format!("replay:{}", chosen.manifest.run_id);
    let mut later: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|dir| crate::run::read_manifest(&dir).ok())
        .filter(|m| {
            m.company == chosen.manifest.company
                && m.run_id != chosen.manifest.run_id
                && m.source != replay_of_chosen
        })
        .filter_map(|m| {
            let at = chrono::DateTime::parse_from_rfc3339(&m.created_at).ok()?;
            (at > since).then_some((at, m.run_id))
        })
        .collect();
    later.sort();
    Ok(later.into_iter().map(|(_, id)| id).collect())
}

fn read_batches(path: &Path, mut each: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(8192)
        .build()?;
    for batch in reader {
        each(&batch?)?;
    }
    Ok(())
}

/// The natural key as text, the way the quarantine writes it.
type KeyText = [Option<String>; 8];

/// Read the staged lines of a chosen run; lines its load quarantined become exceptions.
pub fn read_snapshot(run: &ChosenRun, load: &LoadConfig) -> Result<SageSnapshot> {
    let (quarantined, quarantined_jobs) = read_load_quarantine(&run.dir, &run.manifest)?;
    let mut snapshot = SageSnapshot {
        quarantined_jobs,
        ..SageSnapshot::default()
    };
    for f in run
        .manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("staged/"))
    {
        read_batches(&run.dir.join(&f.path), |batch| {
            let view = TransactionView::new(batch)?;
            let enriched = view.enriched().ok_or_else(|| Error::BatchShape {
                message: "staged files without origin ids".into(),
            })?;
            for r in 0..view.len() {
                let origin_id = enriched.line_origin_id(r);
                let description = view.description(r);
                let item = LineItem {
                    text: LineText::new(origin_id, description),
                    direct_cost_origin_id: enriched.direct_cost_origin_id(r).into(),
                    job: view.job(r).into(),
                    extra: view.extra(r).map(Into::into),
                    cost_code: view.cost_code(r).map(Into::into),
                    category: view.category(r).map(Into::into),
                    amount: view.amount(r).unwrap_or(0),
                    quantity: None,
                    unit_cost: None,
                    run: view.run(r),
                    sequence: view.sequence(r),
                    dist_sequence: view.dist_sequence(r),
                    accounting_date: view.accounting_date(r),
                    source_line: view.source_line(r),
                    transaction_type: view.transaction_type(r).into(),
                };
                let line = SageLine {
                    origin_id: origin_id.to_string(),
                    direct_cost_origin_id: enriched.direct_cost_origin_id(r).to_string(),
                    job: view.job(r).to_string(),
                    budget_code: flat_code(load, &item),
                    amount: item.amount,
                    description: description.map(str::to_string),
                    source_line: item.source_line,
                };
                let key: KeyText = [
                    Some(view.job(r).to_string()),
                    view.extra(r).map(str::to_string),
                    view.cost_code(r).map(str::to_string),
                    view.category(r).map(str::to_string),
                    Some(view.transaction_type(r).to_string()),
                    view.run(r).map(|v| v.to_string()),
                    view.sequence(r).map(|v| v.to_string()),
                    view.dist_sequence(r).map(|v| v.to_string()),
                ];
                match quarantined.get(&key) {
                    Some((code, reason)) => snapshot.exceptions.push(SageException {
                        line,
                        reason_code: code.clone(),
                        reason: reason.clone(),
                    }),
                    None => snapshot.lines.push(line),
                }
            }
            Ok(())
        })?;
    }
    Ok(snapshot)
}

/// Rows set aside at load, by natural key: (reason code, reason).
type LoadQuarantine = HashMap<KeyText, (String, String)>;

/// The rows a run's load set aside, by natural key: (reason code, reason); and the jobs of
/// every row the run quarantined (any stage).
fn read_load_quarantine(
    run_dir: &Path,
    manifest: &Manifest,
) -> Result<(LoadQuarantine, BTreeSet<String>)> {
    let mut out = HashMap::new();
    let mut jobs = BTreeSet::new();
    let Some(entry) = manifest
        .files
        .iter()
        .find(|f| f.path == "quarantine.parquet")
    else {
        return Ok((out, jobs));
    };
    read_batches(&run_dir.join(&entry.path), |batch| {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| Error::BatchShape {
                    message: format!("quarantine.parquet has no text column {name:?}"),
                })
        };
        let stage = col("stage")?;
        let code = col("reason_code")?;
        let reason = col("reason")?;
        let names = [
            "job",
            "extra",
            "cost_code",
            "category",
            "transaction_type",
            "run",
            "sequence",
            "dist_sequence",
        ];
        let keys = names.iter().map(|n| col(n)).collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            if !keys[0].is_null(r) {
                let job = keys[0].value(r).trim();
                if !job.is_empty() {
                    jobs.insert(job.to_string());
                }
            }
            if stage.value(r) != "load" {
                continue;
            }
            let key: KeyText = std::array::from_fn(|i| {
                (!keys[i].is_null(r)).then(|| keys[i].value(r).to_string())
            });
            out.insert(
                key,
                (code.value(r).to_string(), reason.value(r).to_string()),
            );
        }
        Ok(())
    })?;
    Ok((out, jobs))
}
