//! The reports of a reconciliation: a text summary (stdout) and one self-contained HTML file for
//! a controller (inline CSS, no script, font or link from the network). Both show what the JSON
//! holds.

use std::fmt::Write as _;

use super::compare::{BudgetTotals, Comparison, DriftLine, LineFacts, UncheckedTotal};
use super::scope::Unchecked;
use super::ReconcileOutcome;

/// The warning about runs that loaded after the snapshot.
fn later_text(runs: &[String]) -> String {
    format!(
        "run(s) {} loaded into this target after the snapshot and could not be laid over it: \
         lines they changed or added may show as changed or orphaned; --repair refuses \
         (reconcile without --run, or run a deep sync first)",
        runs.join(", ")
    )
}

fn overlaid_text(runs: &[String]) -> String {
    format!(
        "incremental run(s) {} laid over the snapshot: their rows are the current version",
        runs.join(", ")
    )
}

/// One sentence on a ledger job whose project Procore does not show.
fn without_project_text(j: &super::LedgerJob) -> String {
    format!(
        "job {}: the ledger holds {} jcsync line(s) in Procore, but no Procore project matches \
         the job ([load] project_match): renamed, renumbered, deleted or not visible to the \
         app; not read back, not compared",
        j.job, j.lines
    )
}

/// One sentence on lines not compared.
fn unchecked_text(u: &UncheckedTotal, since: &str) -> String {
    let why = match u.reason {
        Unchecked::OutOfWindow => {
            format!("dated before the run's `since` window ({since}): not compared, never deleted")
        }
        Unchecked::DateUnknown => format!(
            "the ledger holds no Accounting_Date for them (recorded before schema version 2), so \
             whether the `since` window ({since}) covers them is unknown: not compared, never \
             deleted"
        ),
        Unchecked::VanishedKept => "kept in Procore because `[sync] vanished_jobs = \"keep\"` \
                                    (the job has not one row in the snapshot)"
            .to_string(),
    };
    format!("job {}: {} lines, {} {why}", u.job, u.lines, u.amount)
}

/// The sentences on vanished jobs whose lines are orphaned (`vanished_jobs = "remove"`).
fn vanished_removed(c: &Comparison) -> impl Iterator<Item = String> + '_ {
    c.vanished_jobs
        .iter()
        .filter(|v| v.action == "remove")
        .map(|v| {
            format!(
                "job {}: {} lines, {} orphaned: the job has not one row in the snapshot and \
             `[sync] vanished_jobs = \"remove\"`",
                v.job, v.lines, v.amount
            )
        })
}

/// The text summary.
pub fn text(outcome: &ReconcileOutcome) -> String {
    let r = &outcome.reconciliation;
    let c = &r.comparison;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "reconcile {} against run {} ({})",
        r.target, r.run_id, r.company
    );
    if let Some(note) = &r.run_note {
        let _ = writeln!(s, "note: {note}");
    }
    if !r.overlaid.is_empty() {
        let _ = writeln!(s, "note: {}", overlaid_text(&r.overlaid));
    }
    if !r.later_loads.is_empty() {
        let _ = writeln!(s, "note: {}", later_text(&r.later_loads));
    }
    for j in &r.ledger_jobs_without_project {
        let _ = writeln!(s, "note: {}", without_project_text(j));
    }
    if let Some(rep) = &outcome.repair {
        let b = &rep.before;
        let _ = writeln!(
            s,
            "before repair: {} missing, {} changed, {} orphaned, {} duplicated, {} foreign",
            b.missing, b.changed, b.orphaned, b.duplicated, b.foreign
        );
        let _ = writeln!(
            s,
            "repair: {} origin ids sent again through replay{}, {} Procore items deleted",
            rep.invalidated,
            rep.replay_run
                .as_ref()
                .map(|r| format!(" (run {r})"))
                .unwrap_or_default(),
            rep.deleted
        );
        if let Some(why) = &rep.held {
            let _ = writeln!(s, "deletions held back: {why}");
        }
        for n in &rep.not_repaired {
            let _ = writeln!(s, "  not repaired: {} {}: {}", n.class, n.origin_id, n.why);
        }
    }
    let _ = writeln!(
        s,
        "sage {} in {} lines, procore {} in {} lines",
        c.sage, c.sage_lines, c.procore, c.procore_lines
    );
    for p in &c.projects {
        let _ = writeln!(
            s,
            "job {} (project {}): sage {} procore {} difference {}",
            p.job,
            p.project_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "none".into()),
            p.sage,
            p.procore,
            p.difference
        );
        for b in p.budget_codes.iter().filter(|b| drifted(b)) {
            let _ = writeln!(
                s,
                "  {:<20} sage {:>12} ({} lines)  procore {:>12} ({} lines)  difference {}",
                b.budget_code, b.sage, b.sage_lines, b.procore, b.procore_lines, b.difference
            );
        }
    }
    for d in &c.drift {
        let _ = writeln!(s, "{}", drift_text(d));
    }
    for f in &c.foreign {
        let _ = writeln!(
            s,
            "foreign total: job {} budget code {}: {} in {} lines (not jcsync's: never touched)",
            f.job, f.budget_code, f.amount, f.lines
        );
    }
    for e in &c.exceptions {
        let _ = writeln!(
            s,
            "exception: job {} budget code {} {} ({}): {} [{}]",
            e.job, e.budget_code, e.amount, e.reason_code, e.reason, e.origin_id
        );
    }
    for u in &c.unchecked {
        let _ = writeln!(s, "not checked: {}", unchecked_text(u, &c.since));
    }
    for v in vanished_removed(c) {
        let _ = writeln!(s, "vanished: {v}");
    }
    let k = &c.counts;
    let _ = write!(
        s,
        "{}: {} missing, {} changed, {} orphaned, {} duplicated, {} foreign; {} exceptions; \
         not checked: {} out of window, {} of unknown date, {} of vanished jobs kept (exit {})",
        if c.equal {
            "Procore equals Sage"
        } else {
            "Procore differs from Sage"
        },
        k.missing,
        k.changed,
        k.orphaned,
        k.duplicated,
        k.foreign,
        k.exceptions,
        k.out_of_window,
        k.date_unknown,
        k.vanished_kept,
        outcome.exit_code
    );
    s
}

fn drifted(b: &BudgetTotals) -> bool {
    b.drift_lines > 0 || b.sage != b.procore || b.sage_lines != b.procore_lines
}

fn drift_text(d: &DriftLine) -> String {
    let amount = |f: &Option<LineFacts>| {
        f.as_ref()
            .map(|f| f.amount.clone())
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{:<10} job {} budget code {} sage {} procore {}{} {}",
        d.class.as_str(),
        d.job,
        d.budget_code,
        amount(&d.sage),
        amount(&d.procore),
        if d.fields.is_empty() {
            String::new()
        } else {
            format!(" fields {}", d.fields.join(","))
        },
        d.origin_id.as_deref().unwrap_or("(no origin_id)")
    )
}

/// The target without `http://` or `https://`: the report holds no address a browser would
/// follow.
fn without_scheme(s: &str) -> String {
    s.replace("https://", "").replace("http://", "")
}

/// Escape text for HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.drift td{background:#fde2e1}tr.foreign td{background:#fff4d6}\
.ok{color:#17692c}.bad{color:#a11}h2{margin-top:1.5em}";

/// The HTML report: per project a totals table by budget code (Sage, Procore, difference),
/// drifted rows highlighted, then the drifted lines; then foreign totals and exceptions.
pub fn html(outcome: &ReconcileOutcome) -> String {
    let r = &outcome.reconciliation;
    let c = &r.comparison;
    let e = |s: &str| escape(s);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>jcsync reconciliation {}</title><style>{CSS}</style></head><body>\n",
        e(&r.run_id)
    );
    let _ = writeln!(
        h,
        "<h1>Procore against Sage: company {}</h1>\n<p>Sage snapshot: run {} ({}). Procore: {}.</p>",
        e(&r.company),
        e(&r.run_id),
        e(&r.run_dir),
        e(&without_scheme(&r.target))
    );
    if let Some(note) = &r.run_note {
        let _ = writeln!(h, "<p>{}</p>", e(note));
    }
    if !r.overlaid.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", e(&overlaid_text(&r.overlaid)));
    }
    if !r.later_loads.is_empty() {
        let _ = writeln!(h, "<p class=\"bad\">{}</p>", e(&later_text(&r.later_loads)));
    }
    for j in &r.ledger_jobs_without_project {
        let _ = writeln!(h, "<p class=\"bad\">{}</p>", e(&without_project_text(j)));
    }
    let k = &c.counts;
    let _ = writeln!(
        h,
        "<p class=\"{}\"><strong>{}</strong>: Sage {} in {} lines, Procore {} in {} lines. \
         {} missing, {} changed, {} orphaned, {} duplicated, {} foreign; {} exceptions.</p>",
        if c.equal { "ok" } else { "bad" },
        if c.equal {
            "Procore equals Sage"
        } else {
            "Procore differs from Sage"
        },
        e(&c.sage),
        c.sage_lines,
        e(&c.procore),
        c.procore_lines,
        k.missing,
        k.changed,
        k.orphaned,
        k.duplicated,
        k.foreign,
        k.exceptions
    );
    if !c.unchecked.is_empty() || c.vanished_jobs.iter().any(|v| v.action == "remove") {
        h.push_str("<h2>Not checked, and vanished jobs</h2>\n<ul>\n");
        for u in &c.unchecked {
            let _ = writeln!(h, "<li>{}</li>", e(&unchecked_text(u, &c.since)));
        }
        for v in vanished_removed(c) {
            let _ = writeln!(h, "<li>{}</li>", e(&v));
        }
        h.push_str("</ul>\n");
    }
    if let Some(rep) = &outcome.repair {
        let _ = writeln!(
            h,
            "<p>Repair: {} origin ids sent again, {} Procore items deleted; before it: {} missing, \
             {} changed, {} orphaned, {} duplicated, {} foreign.</p>",
            rep.invalidated,
            rep.deleted,
            rep.before.missing,
            rep.before.changed,
            rep.before.orphaned,
            rep.before.duplicated,
            rep.before.foreign
        );
        if let Some(why) = &rep.held {
            let _ = writeln!(h, "<p class=\"bad\">Deletions held back: {}</p>", e(why));
        }
        if !rep.not_repaired.is_empty() {
            h.push_str("<ul>\n");
            for n in &rep.not_repaired {
                let _ = writeln!(
                    h,
                    "<li>not repaired: {} {}: {}</li>",
                    e(n.class),
                    e(&n.origin_id),
                    e(&n.why)
                );
            }
            h.push_str("</ul>\n");
        }
    }
    for p in &c.projects {
        let _ = writeln!(
            h,
            "<h2>Job {} (Procore project {})</h2>",
            e(&p.job),
            p.project_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "none".into())
        );
        h.push_str(
            "<table><tr><th>Budget code</th><th>Sage</th><th>Sage lines</th><th>Procore</th>\
             <th>Procore lines</th><th>Difference</th><th>of which foreign</th>\
             <th>Exceptions</th><th>Not checked</th></tr>\n",
        );
        for b in &p.budget_codes {
            let class = if b.foreign_lines > 0 && b.drift_lines == b.foreign_lines {
                " class=\"foreign\""
            } else if drifted(b) {
                " class=\"drift\""
            } else {
                ""
            };
            let _ = writeln!(
                h,
                "<tr{class}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                e(&b.budget_code),
                e(&b.sage),
                b.sage_lines,
                e(&b.procore),
                b.procore_lines,
                e(&b.difference),
                e(&b.foreign),
                e(&b.exceptions),
                e(&b.unchecked)
            );
        }
        let _ = writeln!(
            h,
            "<tr><th>Total</th><td class=\"n\">{}</td><td></td><td class=\"n\">{}</td><td></td>\
             <td class=\"n\">{}</td><td></td><td></td><td class=\"n\">{}</td></tr></table>",
            e(&p.sage),
            e(&p.procore),
            e(&p.difference),
            e(&p.unchecked)
        );
        let lines: Vec<&DriftLine> = c.drift.iter().filter(|d| d.job == p.job).collect();
        if !lines.is_empty() {
            h.push_str(
                "<table><tr><th>Class</th><th>Budget code</th><th>Sage amount</th>\
                 <th>Procore amount</th><th>Fields</th><th>Description (Sage / Procore)</th>\
                 <th>origin_id</th></tr>\n",
            );
            for d in lines {
                let get = |f: &Option<LineFacts>, g: fn(&LineFacts) -> Option<&str>| {
                    f.as_ref().and_then(g).map(e).unwrap_or_default()
                };
                let _ = writeln!(
                    h,
                    "<tr class=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
                    if d.class == super::DriftClass::Foreign {
                        "foreign"
                    } else {
                        "drift"
                    },
                    d.class.as_str(),
                    e(&d.budget_code),
                    get(&d.sage, |f| Some(&f.amount)),
                    get(&d.procore, |f| Some(&f.amount)),
                    e(&d.fields.join(", ")),
                    get(&d.sage, |f| f.description.as_deref()),
                    get(&d.procore, |f| f.description.as_deref()),
                    e(d.origin_id.as_deref().unwrap_or("(none)"))
                );
            }
            h.push_str("</table>\n");
        }
    }
    if !c.foreign.is_empty() {
        h.push_str(
            "<h2>Foreign lines (not jcsync's: never touched)</h2>\n<table><tr><th>Job</th>\
             <th>Budget code</th><th>Amount</th><th>Lines</th></tr>\n",
        );
        for f in &c.foreign {
            let _ = writeln!(
                h,
                "<tr class=\"foreign\"><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                e(&f.job),
                e(&f.budget_code),
                e(&f.amount),
                f.lines
            );
        }
        h.push_str("</table>\n");
    }
    if !c.exceptions.is_empty() {
        h.push_str(
            "<h2>Exceptions (set aside at load: not drift jcsync can fix)</h2>\n<table><tr>\
             <th>Job</th><th>Budget code</th><th>Amount</th><th>Reason</th><th>Description</th>\
             <th>Source line</th></tr>\n",
        );
        for x in &c.exceptions {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}: {}</td><td>{}</td>\
                 <td class=\"n\">{}</td></tr>",
                e(&x.job),
                e(&x.budget_code),
                e(&x.amount),
                e(&x.reason_code),
                e(&x.reason),
                e(x.description.as_deref().unwrap_or("")),
                x.source_line
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
