//! The short human summaries printed at the end of a sync and of a replay.

use std::fmt::Write as _;
use std::path::Path;

use super::report::{ReplayReport, Report};
use crate::config::SyncKind;

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
    if let Some(p) = &report.in_procore {
        let _ = writeln!(
            s,
            "  in procore       {:>10}  lines by jcsync in {} direct costs, per the ledger after the run \
             ({} created, {} updated, {} unchanged, {} removed, {} pending)",
            p.lines, p.direct_costs, p.created, p.updated, p.unchanged, p.removed, p.pending
        );
    }
    if let Some(r) = &report.removals {
        removals_text(&mut s, r);
    }
    for line in report.exceptions.iter().flat_map(|e| e.summary_lines()) {
        let _ = writeln!(s, "{line}");
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

/// The short human summary of a replay.
pub fn replay_summary_text(r: &ReplayReport, run_dir: &Path) -> String {
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
    if let Some(only) = r.only_lines {
        let _ = writeln!(
            s,
            "  selected         {:>10}  line origin ids asked for (reconcile --repair); {} other \
             staged rows skipped",
            only, r.rows_skipped
        );
    }
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
    for line in r.exceptions.iter().flat_map(|e| e.summary_lines()) {
        let _ = writeln!(s, "{line}");
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

/// The removals of a run: what left Sage, by project, and what became of it.
fn removals_text(s: &mut String, r: &crate::load::removal::RemovalReport) {
    let what = match r.status.as_str() {
        "applied" => "removed",
        "planned" => "to remove (plan only: nothing sent)",
        "held" => "NOT removed (held back by the guard)",
        "incomplete" => "to remove (INCOMPLETE: the next sync finishes)",
        _ => "",
    };
    if r.status == "skipped" {
        let _ = writeln!(
            s,
            "  removals         not looked for: {}",
            r.reason.as_deref().unwrap_or("")
        );
        return;
    }
    let _ = writeln!(
        s,
        "  removals         {:>10}  lines left Sage, {} direct costs to delete whole: {what} \
         ({:.1} % of the target's {} lines)",
        r.planned_lines,
        r.planned_direct_costs,
        r.share * 100.0,
        r.ledger_lines
    );
    for (job, p) in &r.planned_by_project {
        let _ = writeln!(
            s,
            "    job {job:<20} {:>8} lines  {:>4} direct costs  {:>16}",
            p.lines, p.direct_costs, p.amount
        );
    }
    if let Some(o) = &r.outcome {
        let _ = writeln!(
            s,
            "    sent: {} lines and {} direct costs removed in {} requests ({} already gone), {} refused, {} pending",
            o.lines_removed,
            o.direct_costs_removed,
            o.requests,
            o.already_gone,
            o.failed.len(),
            o.pending
        );
        for f in &o.failed {
            let _ = writeln!(s, "    refused: {f}");
        }
    }
    for (job, v) in &r.vanished_jobs {
        let _ = writeln!(
            s,
            "    job {job} has {} lines ({}) in Procore and no transaction in Sage: {}",
            v.lines,
            v.amount,
            if v.action == "keep" {
                "kept (`[sync] vanished_jobs = \"keep\"`)"
            } else {
                "removed"
            }
        );
    }
    if let Some(why) = &r.reason {
        let _ = writeln!(s, "  REMOVALS HELD: {why}");
    }
}
