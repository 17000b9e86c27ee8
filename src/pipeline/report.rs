//! What a sync's stages produced, turned into its `report.json` and manifest facts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::{summarize_output, PlanOutput};
use super::removals::RemovalResult;
use crate::config::PipelineConfig;
use crate::error::Error;
use crate::load::plan::Planner;
use crate::model::values::format_decimal;
use crate::quarantine::writer::QuarantineTally;
use crate::run::finish::ManifestFacts;
use crate::run::{ChangeWindow, CountsReport, Report, StageReport, TotalRow};
use crate::staging::FileEntry;
use crate::transform::enrich::{DimensionReport, Dimensions};
use crate::transform::project::FilterCounts;
use crate::transform::StageTiming;

/// One sync run: its id and directory, and what it was asked.
pub(super) struct SyncRun<'a> {
    pub config: &'a PipelineConfig,
    pub id: &'a str,
    pub dir: &'a Path,
    pub target: String,
    pub stage_only: bool,
    pub allow_removals: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub wall: Instant,
}

/// The dimension tables, indexed, and what loading them took.
pub(super) struct DimensionsLoaded {
    pub dims: Arc<Dimensions>,
    pub reports: Vec<DimensionReport>,
    pub elapsed: Duration,
}

/// What every stage of a sync produced.
pub(super) struct StageResults {
    pub dimensions: DimensionsLoaded,
    /// Transactions read.
    pub extracted: u64,
    /// Non-cost rows the reader dropped, by type.
    pub not_cost_type: BTreeMap<String, u64>,
    pub filtered: FilterCounts,
    /// The latest change stamp seen (µs since 1970).
    pub max_stamp: Option<i64>,
    /// extract, type, project, enrich, stage, plan.
    pub timings: [StageTiming; 6],
    pub staged_files: Vec<FileEntry>,
    pub planner: Planner,
    pub output: PlanOutput,
    pub quarantine: QuarantineTally,
    pub removals: Option<RemovalResult>,
}

/// The report, manifest facts, files and load failure of a finished sync.
pub(super) struct Built {
    pub report: Report,
    pub facts: ManifestFacts,
    pub files: Vec<FileEntry>,
    pub load_failure: Option<Error>,
    pub quarantined: bool,
    /// The guard held removals back (exit 5).
    pub removals_held: bool,
}

/// Build a sync's report from its stages' results; `window` gets the run's latest stamp.
pub(super) fn build(
    run: &SyncRun<'_>,
    r: StageResults,
    mut window: Option<&mut ChangeWindow>,
) -> Built {
    let config = run.config;
    let mut filtered = r.filtered;
    // Non-cost rows the reader dropped count as the project stage's filter would have.
    for (ty, n) in r.not_cost_type {
        *filtered.not_cost_type.entry(ty).or_insert(0) += n;
    }
    let transaction_table = &config.tables.transaction;
    let mut quarantined = BTreeMap::new();
    for ((table, reason), n) in &r.quarantine.counts {
        if table == transaction_table {
            *quarantined.entry(reason.clone()).or_insert(0) += n;
        }
    }
    let [extract, typing, project, enrich, stage, plan] = r.timings;
    let mut counts = CountsReport {
        extracted: r.extracted,
        filtered: filtered.total(),
        filtered_by_type: filtered.not_cost_type.clone(),
        filtered_before_window: filtered.before_window,
        quarantined_total: quarantined.values().sum(),
        quarantined,
        staged: stage.rows_out,
        planned: r.planner.stats.lines,
        loaded: None,
        pending: 0,
        plan_skipped: run.stage_only,
    };
    let (requests_file, load_report, load_failure) = summarize_output(r.output);
    let (removals, in_procore, removals_file, exceptions) = match r.removals {
        Some(x) => (Some(x.report), x.in_procore, x.requests_file, x.exceptions),
        None => (None, None, None, None),
    };
    if let Some(l) = &load_report {
        // The snapshot's lines: those retried from open exceptions reconcile apart
        // (`exceptions.reconciled`).
        let c = &l.counts;
        counts.loaded = Some(c.loaded().saturating_sub(c.retried_loaded));
        counts.pending = c.pending.saturating_sub(c.retried_pending);
    }
    let dims = &r.dimensions;
    let stages = vec![
        StageReport::new(
            "dimensions",
            dims.elapsed,
            dims.reports.iter().map(|d| d.rows_read).sum(),
            dims.dims.job_count() as u64,
        ),
        StageReport::from_timing("extract", extract),
        StageReport::from_timing("type", typing),
        StageReport::from_timing("project", project),
        StageReport::from_timing("enrich", enrich),
        StageReport::from_timing("stage", stage),
        StageReport::from_timing("plan", plan),
    ];
    let totals = r
        .planner
        .totals()
        .into_iter()
        .map(|((job, extra, cost_code, category), cents)| TotalRow {
            job,
            extra,
            cost_code,
            category,
            amount: format_decimal(cents, 2),
        })
        .collect();
    let dimension_rows_quarantined: u64 = r
        .quarantine
        .counts
        .iter()
        .filter(|((t, _), _)| t != transaction_table)
        .map(|(_, n)| n)
        .sum();
    if let Some(w) = window.as_deref_mut() {
        super::window::close(w, r.max_stamp);
    }
    let load_quarantined = load_report
        .as_ref()
        .map(|l| l.counts.quarantined_total())
        .unwrap_or(0);
    let report = Report {
        change_window: window.map(|w| w.clone()),
        run_id: run.id.to_string(),
        company: config.company.clone(),
        target: run.target.clone(),
        sync_type: config.sync.kind,
        since: config.sync.since.to_string(),
        started_at: run.started_at.to_rfc3339(),
        elapsed_ms: run.wall.elapsed().as_millis() as u64,
        reconciled: counts.reconciles(load_quarantined)
            && exceptions.as_ref().is_none_or(|e| e.reconciled),
        counts,
        dimensions: r.dimensions.reports,
        dimension_rows_quarantined,
        stages,
        plan: r.planner.stats.clone(),
        planned_amount: format_decimal(r.planner.stats.amount_cents, 2),
        totals,
        load: load_report,
        removals,
        in_procore,
        exceptions,
    };
    let facts = ManifestFacts {
        source: config.source.describe(),
        sync_type: report.sync_type,
        sync_since: report.since.clone(),
        change_window: report.change_window.clone(),
        extracted: report.counts.extracted,
        filtered: report.counts.filtered,
        quarantined: report.counts.quarantined_total,
        staged: report.counts.staged,
        planned: report.counts.planned,
    };
    let quarantined = report.counts.quarantined_total + report.dimension_rows_quarantined > 0;
    let mut files = r.staged_files;
    files.extend(r.quarantine.files);
    files.extend(requests_file);
    files.extend(removals_file);
    let removals_held = report.removals.as_ref().is_some_and(|r| r.held());
    Built {
        removals_held,
        report,
        facts,
        files,
        load_failure,
        quarantined,
    }
}
