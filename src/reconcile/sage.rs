//! The Sage side of a reconciliation: the staged snapshot of a complete run that read every row
//! (deep, or a first incremental run), with the incremental runs written since laid over it; its
//! lines with the budget code the load computes, and the lines quarantined at load (exceptions).

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
    /// Index in [`SageSnapshot::runs`] of the run whose staged row this is: 0 the snapshot run,
    /// above it a later incremental run overlaid on it.
    pub run: usize,
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
    /// The runs the lines come from: the snapshot run, then the incremental runs overlaid on it
    /// (oldest first). Empty for a snapshot built by hand (tests): every line is run 0.
    pub runs: Vec<String>,
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

/// A run that read every row of its window: a deep run, or an incremental one that found no
/// watermark (the first incremental run of a SQL Server source reads everything). Its staged
/// rows are a snapshot of Sage; an incremental run with a change window stages only what
/// changed.
pub fn is_snapshot(m: &Manifest) -> bool {
    match m.sync_type {
        SyncKind::Deep => true,
        SyncKind::Incremental => m
            .change_window
            .as_ref()
            .is_some_and(|w| w.changed_since.is_none()),
    }
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
        if !is_snapshot(&manifest) {
            return Err(Error::RunVerification {
                path: dir.to_path_buf(),
                message: "an incremental run stages only the rows that changed: it is not a \
                          snapshot of Sage; name a deep run (or the first incremental run, \
                          which read every row), or run a deep sync"
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
        if !is_snapshot(&manifest) {
            skipped_incremental.get_or_insert_with(|| manifest.run_id.clone());
            continue;
        }
        match crate::replay::verify_staged(&dir) {
            Ok(manifest) => {
                let note = skipped_incremental.map(|inc| {
                    format!(
                        "the newest complete run {inc} is incremental (it stages only changed \
                         rows): compared with the newest run that read every row, {}, with the \
                         incremental runs since laid over it",
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
            "no complete run of company {company:?} here that read every row{}: run a deep \
             sync first (`[sync] type = \"deep\"`, or `jcsync sync --stage-only` with a deep \
             pipeline)",
            if skipped_incremental.is_some() {
                " (only incremental runs, which stage only changed rows)"
            } else {
                ""
            }
        ),
    })
}

/// What was written after the chosen run, by the manifests' `created_at`.
#[derive(Debug, Clone, Default)]
pub struct LaterRuns {
    /// Incremental runs with a change window, oldest first: their staged rows are what changed
    /// in Sage since, and are laid over the snapshot ([`overlay`]).
    pub overlays: Vec<ChosenRun>,
    /// Runs whose rows the comparison cannot take in, oldest first: a later run that read every
    /// row (the chosen run was named, or the newer one failed verification), an incremental run
    /// that failed verification, and every incremental run after such a run.
    pub not_overlaid: Vec<String>,
}

/// The complete runs of the chosen run's company under `stage_dir` written after it. Replays
/// are left out: they send an older run's rows, which add nothing to what Sage holds (what they
/// changed in Procore is drift from it).
pub fn later_runs(stage_dir: &Path, chosen: &ChosenRun) -> Result<LaterRuns> {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LaterRuns::default()),
        Err(e) => return Err(Error::io(stage_dir, e)),
    };
    let mut later: Vec<(chrono::DateTime<chrono::FixedOffset>, PathBuf, Manifest)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|dir| crate::run::read_manifest(&dir).ok().map(|m| (dir, m)))
        .filter(|(_, m)| {
            m.company == chosen.manifest.company
                && m.run_id != chosen.manifest.run_id
                && stages_rows(m)
        })
        .filter_map(|(dir, m)| {
            let at = chrono::DateTime::parse_from_rfc3339(&m.created_at).ok()?;
            (at > since).then_some((at, dir, m))
        })
        .collect();
    later.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = LaterRuns::default();
    for (_, dir, manifest) in later {
        if !out.not_overlaid.is_empty() || is_snapshot(&manifest) {
            out.not_overlaid.push(manifest.run_id);
            continue;
        }
        match crate::replay::verify_staged(&dir) {
            Ok(manifest) => out.overlays.push(ChosenRun {
                dir,
                manifest,
                note: None,
            }),
            Err(e) => {
                tracing::warn!(
                    "incremental run {} not laid over the snapshot: {e}",
                    dir.display()
                );
                out.not_overlaid.push(manifest.run_id);
            }
        }
    }
    Ok(out)
}

/// Lay later incremental snapshots (oldest first) over `base`: of each origin_id the newest
/// run's line (or load exception) stands, tagged with its run's index in `base.runs`.
/// Lines later runs removed from Procore because they left Sage are taken out by the caller,
/// which has the ledger ([`SageSnapshot::without`]).
pub fn overlay(base: &mut SageSnapshot, later: Vec<(String, SageSnapshot)>) {
    if later.is_empty() {
        return;
    }
    if base.runs.is_empty() {
        base.runs.push(String::new());
    }
    let first = base.runs.len();
    base.runs.extend(later.iter().map(|(id, _)| id.clone()));
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut lines = Vec::new();
    let mut exceptions = Vec::new();
    // Newest first: the first run to claim an origin_id holds its current version.
    for (i, (_, snap)) in later.into_iter().enumerate().rev() {
        for mut l in snap.lines {
            if taken.insert(l.origin_id.clone()) {
                l.run = first + i;
                lines.push(l);
            }
        }
        for mut e in snap.exceptions {
            if taken.insert(e.line.origin_id.clone()) {
                e.line.run = first + i;
                exceptions.push(e);
            }
        }
        base.quarantined_jobs.extend(snap.quarantined_jobs);
    }
    base.lines.retain(|l| !taken.contains(&l.origin_id));
    base.exceptions
        .retain(|e| !taken.contains(&e.line.origin_id));
    // Oldest overlay first, each in its staged order.
    lines.sort_by_key(|l: &SageLine| (l.run, l.source_line));
    exceptions.sort_by_key(|e: &SageException| (e.line.run, e.line.source_line));
    base.lines.extend(lines);
    base.exceptions.extend(exceptions);
}

impl SageSnapshot {
    /// The snapshot without the lines later runs removed from Procore because their
    /// transactions left Sage: `gone` maps an origin_id to the index (in `runs`) of the run
    /// that removed it, and a line goes when its staged row is older than that run (a row that
    /// came back later stays).
    pub fn without(&self, gone: &HashMap<String, usize>) -> SageSnapshot {
        let stays = |l: &SageLine| gone.get(&l.origin_id).is_none_or(|&by| l.run >= by);
        SageSnapshot {
            lines: self.lines.iter().filter(|l| stays(l)).cloned().collect(),
            exceptions: self
                .exceptions
                .iter()
                .filter(|e| stays(&e.line))
                .cloned()
                .collect(),
            quarantined_jobs: self.quarantined_jobs.clone(),
            runs: self.runs.clone(),
        }
    }

    /// The id of the run a line's staged row comes from, when it is not the snapshot run.
    pub fn overlaid_run(&self, line: &SageLine) -> Option<&str> {
        (line.run > 0).then(|| self.runs.get(line.run).map(String::as_str))?
    }
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
        runs: vec![run.manifest.run_id.clone()],
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
                    run: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(origin: &str, amount: i128, source_line: u64) -> SageLine {
        SageLine {
            origin_id: origin.into(),
            direct_cost_origin_id: "dc".into(),
            job: "1001".into(),
            budget_code: "01-100.L".into(),
            amount,
            description: None,
            source_line,
            run: 0,
        }
    }

    fn snapshot(run: &str, lines: Vec<SageLine>, exceptions: Vec<SageLine>) -> SageSnapshot {
        SageSnapshot {
            lines,
            exceptions: exceptions
                .into_iter()
                .map(|line| SageException {
                    line,
                    reason_code: "unmapped_budget_code".into(),
                    reason: "no budget code".into(),
                })
                .collect(),
            quarantined_jobs: BTreeSet::new(),
            runs: vec![run.into()],
        }
    }

    fn amounts(s: &SageSnapshot) -> Vec<(String, i128, usize)> {
        let mut v: Vec<_> = s
            .lines
            .iter()
            .map(|l| (l.origin_id.clone(), l.amount, l.run))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_newest_run_holds_each_line_and_an_exception_can_become_a_line() {
        let mut base = snapshot(
            "D",
            vec![line("a", 100, 2), line("b", 200, 3)],
            vec![line("c", 300, 4)],
        );
        let l1 = snapshot("L1", vec![line("a", 110, 2), line("c", 300, 3)], vec![]);
        let l2 = snapshot("L2", vec![line("a", 120, 2), line("d", 400, 3)], vec![]);
        overlay(&mut base, vec![("L1".into(), l1), ("L2".into(), l2)]);
        assert_eq!(base.runs, ["D", "L1", "L2"]);
        assert_eq!(
            amounts(&base),
            [
                ("a".into(), 120, 2),
                ("b".into(), 200, 0),
                ("c".into(), 300, 1),
                ("d".into(), 400, 2)
            ]
        );
        assert!(base.exceptions.is_empty(), "c was loaded by L1");
        assert_eq!(base.overlaid_run(&base.lines[0]), None);
        let a = base.lines.iter().find(|l| l.origin_id == "a").expect("a");
        assert_eq!(base.overlaid_run(a), Some("L2"));
    }

    #[test]
    fn a_line_removed_later_goes_unless_a_newer_run_staged_it_again() {
        let mut base = snapshot("D", vec![line("a", 100, 2), line("b", 200, 3)], vec![]);
        let l1 = snapshot("L1", vec![], vec![]);
        let l2 = snapshot("L2", vec![line("b", 250, 2)], vec![]);
        overlay(&mut base, vec![("L1".into(), l1), ("L2".into(), l2)]);
        // L1 removed both (their transactions left Sage); b came back in L2.
        let gone: HashMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let left = base.without(&gone);
        assert_eq!(amounts(&left), [("b".into(), 250, 2)]);
        // Removed by the newest run: gone whatever staged it before.
        let gone: HashMap<String, usize> = [("b".to_string(), 3)].into();
        assert_eq!(amounts(&base.without(&gone)), [("a".into(), 100, 0)]);
    }

    #[test]
    fn a_first_incremental_run_is_a_snapshot_and_a_later_one_is_not() {
        let manifest = |kind: SyncKind, changed_since: Option<&str>| {
            let mut m: Manifest = serde_json::from_value(serde_json::json!({
                "format": 1, "run_id": "r", "jcsync_version": "0", "created_at": "2026-01-01T00:00:00Z",
                "company": "DEMO", "pipeline_path": "p", "pipeline_sha256": "x", "source": "mssql",
                "sync_type": "deep", "sync_since": "beginning-of-time", "extracted": 0,
                "filtered": 0, "quarantined": 0, "staged": 0, "planned": 0, "files": []
            }))
            .expect("manifest");
            m.sync_type = kind;
            m.change_window = Some(crate::run::ChangeWindow {
                scope: "s".into(),
                watermark: changed_since.map(str::to_string),
                overlap_minutes: 60,
                changed_since: changed_since.map(str::to_string),
                max_stamp_seen: None,
                new_watermark: None,
            });
            m
        };
        assert!(is_snapshot(&manifest(SyncKind::Deep, None)));
        assert!(is_snapshot(&manifest(SyncKind::Incremental, None)));
        assert!(!is_snapshot(&manifest(
            SyncKind::Incremental,
            Some("2024-03-15T13:04:00.000000")
        )));
        let mut no_window = manifest(SyncKind::Incremental, None);
        no_window.change_window = None;
        assert!(
            !is_snapshot(&no_window),
            "no window said: not known to be whole"
        );
    }
}
