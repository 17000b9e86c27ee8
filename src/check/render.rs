//! `check`'s output: a text report for an IT admin (one section per part, amounts exact to the
//! cent, every job, vendor and code named) and a JSON document for scripts, whose keys and
//! order are stable (amounts are strings with two decimals, never floats).

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::costs::Tally;
use super::mappings::Mappings;
use super::{CheckOutcome, TargetPart};
use crate::model::values::format_decimal;

fn money(cents: i128) -> String {
    format_decimal(cents, 2)
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

fn tally_text(t: Tally) -> String {
    format!("{:>10}  {:>14}", rows(t.rows), money(t.cents))
}

fn tally_json(t: Tally) -> Value {
    json!({"rows": t.rows, "amount": money(t.cents)})
}

/// The text report.
pub fn text(o: &CheckOutcome) -> String {
    let mut s = o.source.render();
    s.push_str("\n\n");
    match &o.target {
        TargetPart::DryRun => s.push_str(
            "target dry-run: no Procore to check (the mappings need a procore or sandbox target)\n",
        ),
        TargetPart::Reached {
            label,
            projects,
            vendors,
        } => {
            let _ = writeln!(
                s,
                "target {label}: logged in; the company has {projects} projects and {vendors} vendors"
            );
        }
        TargetPart::Unreachable(u) => {
            let status = u
                .status
                .map(|st| format!(" (HTTP {st})"))
                .unwrap_or_default();
            let _ = writeln!(s, "target: CANNOT USE PROCORE{status}: {}", u.message);
        }
    }
    if let Some(e) = &o.costs_error {
        let _ = writeln!(s, "\ntransactions: CANNOT READ: {e}");
    }
    if let Some(c) = &o.costs {
        let planned = c.planned();
        let _ = writeln!(
            s,
            "\ntransactions: {} read, {} not direct costs (filtered), {} cost rows for the load, {}",
            c.extracted,
            c.filtered,
            planned.rows,
            money(planned.cents)
        );
        if !c.set_aside.is_empty() {
            s.push_str("  quarantined before the load:\n");
            for (reason, a) in &c.set_aside {
                let _ = write!(s, "    {:<26}{}", reason.as_str(), tally_text(a.tally));
                if a.without_amount > 0 {
                    let _ = write!(
                        s,
                        "  ({} without a readable amount)",
                        rows(a.without_amount)
                    );
                }
                s.push('\n');
            }
        }
        if c.dimension_rows_set_aside > 0 {
            let _ = writeln!(
                s,
                "  dimension rows set aside (repeated key or bad value; not cost rows): {}",
                c.dimension_rows_set_aside
            );
        }
    }
    if let Some(m) = &o.mappings {
        mappings_text(&mut s, m);
    }
    let nl = o.not_loaded();
    let _ = write!(s, "\nresult: ");
    match o.exit_code() {
        0 => {
            let _ = write!(s, "every cost row would load (exit 0)");
        }
        1 => {
            let _ = write!(s, "cannot check everything: see above (exit 1)");
        }
        code => {
            let _ = write!(
                s,
                "{} for {} would NOT load (exit {code})",
                rows(nl.rows),
                money(nl.cents)
            );
        }
    }
    s
}

fn mappings_text(s: &mut String, m: &Mappings) {
    s.push_str("\njobs → Procore projects\n");
    for j in &m.jobs {
        let project = match j.project_id {
            Some(p) => format!("project {p}"),
            None => "NO PROJECT".into(),
        };
        let _ = write!(s, "  {:<12}{:<24}{}", j.job, project, tally_text(j.lines));
        if j.project_id.is_none() {
            s.push_str("  quarantined: unmapped_project");
        } else if j.not_loaded.rows > 0 {
            let _ = write!(
                s,
                "  of which {} for {} would not load",
                rows(j.not_loaded.rows),
                money(j.not_loaded.cents)
            );
        }
        s.push('\n');
    }
    s.push_str("\nvendors of AP costs with no Procore vendor (by origin_id)\n");
    if m.missing_vendors.is_empty() {
        s.push_str("  none\n");
    }
    for (v, t) in &m.missing_vendors {
        let shown = if v.is_empty() { "(empty)" } else { v.as_str() };
        let _ = writeln!(s, "  {:<36}{}", shown, tally_text(*t));
    }
    let action = if m.create_missing_budget_codes {
        "created by the sync: [load] create_missing_budget_codes = true"
    } else {
        "quarantined: [load] create_missing_budget_codes = false"
    };
    let _ = writeln!(s, "\nbudget codes missing in Procore ({action})");
    if m.missing_codes.is_empty() {
        s.push_str("  none\n");
    }
    for c in &m.missing_codes {
        let _ = writeln!(
            s,
            "  job {} (project {}): {:<20}{}",
            c.job,
            c.project_id,
            c.budget_code,
            tally_text(c.lines)
        );
    }
    s.push_str("\nDirect Costs tool of the projects\n");
    if m.tool_problems.is_empty() {
        s.push_str("  enabled on every project that would receive lines\n");
    }
    for p in &m.tool_problems {
        let state = if p.disabled { "NOT ENABLED" } else { "UNKNOWN" };
        let _ = write!(
            s,
            "  job {} (project {}): {state} ({}): {}",
            p.job,
            p.project_id,
            p.detail,
            tally_text(p.lines).trim_start()
        );
        if p.disabled {
            s.push_str(
                " would not load; Procore refuses them (HTTP 403) and the sync's load stops",
            );
        }
        s.push('\n');
    }
    if !m.not_loaded.is_empty() {
        s.push_str("\nwould not load, by reason (each row once, in the load's order)\n");
        for (r, t) in &m.not_loaded {
            let _ = writeln!(s, "  {:<28}{}", r.code(), tally_text(*t));
        }
    }
}

/// The JSON document.
pub fn json(o: &CheckOutcome) -> Value {
    let tables: Vec<Value> = o
        .source
        .tables
        .iter()
        .map(|t| {
            json!({
                "entity": t.entity,
                "table": t.table,
                "exists": t.exists,
                "rows": t.rows,
                "missing_columns": t.missing().iter().map(|c| json!({
                    "column": c.column, "required": c.required,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let target = match &o.target {
        TargetPart::DryRun => json!({"state": "dry_run"}),
        TargetPart::Reached {
            label,
            projects,
            vendors,
        } => json!({"state": "reached", "label": label, "projects": projects, "vendors": vendors}),
        TargetPart::Unreachable(u) => {
            json!({"state": "unreachable", "status": u.status, "message": u.message})
        }
    };
    let transactions = o.costs.as_ref().map(|c| {
        json!({
            "extracted": c.extracted,
            "filtered": c.filtered,
            "cost_rows": tally_json(c.planned()),
            "quarantined_before_load": c.set_aside.iter().map(|(r, a)| json!({
                "reason": r.as_str(),
                "rows": a.tally.rows,
                "amount": money(a.tally.cents),
                "rows_without_amount": a.without_amount,
            })).collect::<Vec<_>>(),
            "dimension_rows_set_aside": c.dimension_rows_set_aside,
        })
    });
    let mappings = o.mappings.as_ref().map(mappings_json);
    json!({
        "pipeline": o.pipeline,
        "exit_code": o.exit_code(),
        "source": {
            "description": o.source.source,
            "all_present": o.source.all_present(),
            "tables": tables,
        },
        "target": target,
        "transactions": transactions,
        "transactions_error": o.costs_error,
        "mappings": mappings,
        "not_loaded": tally_json(o.not_loaded()),
    })
}

fn mappings_json(m: &Mappings) -> Value {
    json!({
        "create_missing_budget_codes": m.create_missing_budget_codes,
        "jobs": m.jobs.iter().map(|j| json!({
            "job": j.job,
            "project_id": j.project_id,
            "rows": j.lines.rows,
            "amount": money(j.lines.cents),
            "not_loaded": tally_json(j.not_loaded),
        })).collect::<Vec<_>>(),
        "missing_vendors": m.missing_vendors.iter().map(|(v, t)| json!({
            "vendor": v, "rows": t.rows, "amount": money(t.cents),
        })).collect::<Vec<_>>(),
        "missing_budget_codes": m.missing_codes.iter().map(|c| json!({
            "job": c.job,
            "project_id": c.project_id,
            "budget_code": c.budget_code,
            "rows": c.lines.rows,
            "amount": money(c.lines.cents),
            "action": if c.created { "create" } else { "quarantine" },
        })).collect::<Vec<_>>(),
        "direct_costs_tool": m.tool_problems.iter().map(|p| json!({
            "job": p.job,
            "project_id": p.project_id,
            "state": if p.disabled { "disabled" } else { "unknown" },
            "detail": p.detail,
            "rows": p.lines.rows,
            "amount": money(p.lines.cents),
        })).collect::<Vec<_>>(),
        "not_loaded_by_reason": m.not_loaded.iter().map(|(r, t)| json!({
            "reason": r.code(), "rows": t.rows, "amount": money(t.cents),
        })).collect::<Vec<_>>(),
    })
}
