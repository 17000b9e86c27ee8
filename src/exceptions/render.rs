//! The three renderings of [`ExceptionList`]: text for a person, JSON for scripts, CSV for a
//! spreadsheet (RFC 4180, one row per exception, a header row).

use super::ExceptionList;
use crate::error::{Error, Result};

/// The text a person reads: per reason code its count and total, then one line per exception.
pub fn render_text(list: &ExceptionList) -> String {
    let mut out = String::new();
    let target = list
        .target
        .as_deref()
        .unwrap_or("none (the target keeps no ledger)");
    out.push_str(&format!(
        "open exceptions of {} (target {target}): {}, total {}\n",
        list.company, list.open, list.amount
    ));
    if list.open == 0 {
        out.push_str("nothing waits for a mapping\n");
        return out;
    }
    for g in &list.reasons {
        out.push_str(&format!(
            "\n{}: {} open, total {}\n",
            g.reason_code, g.count, g.amount
        ));
        out.push_str(&format!(
            "  {:<10} {:<18} {:>14}  {:<25} {:<25} {:>8}\n",
            "job", "budget code", "amount", "first seen", "last seen", "attempts"
        ));
        for e in &g.exceptions {
            out.push_str(&format!(
                "  {:<10} {:<18} {:>14}  {:<25} {:<25} {:>8}\n",
                e.job,
                e.budget_code.as_deref().unwrap_or("-"),
                e.amount,
                short_time(&e.first_seen),
                short_time(&e.last_seen),
                e.attempts
            ));
            out.push_str(&format!("    {}  {}\n", e.origin_id, e.reason));
        }
    }
    out
}

/// An RFC 3339 time to the second (`2026-12-01T18:02:13Z`).
fn short_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// The whole list as JSON.
pub fn render_json(list: &ExceptionList) -> Result<String> {
    Ok(serde_json::to_string_pretty(list)?)
}

/// The columns of the CSV rendering, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "reason_code",
    "job",
    "budget_code",
    "amount",
    "accounting_date",
    "first_seen",
    "first_run",
    "last_seen",
    "last_run",
    "attempts",
    "origin_id",
    "status",
    "reason",
];

/// One row per exception, after a header row.
pub fn render_csv(list: &ExceptionList, out: impl std::io::Write) -> Result<()> {
    let err = |e: csv::Error| Error::TaskFailed {
        stage: "exceptions",
        message: format!("writing CSV: {e}"),
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS).map_err(err)?;
    for g in &list.reasons {
        for e in &g.exceptions {
            let attempts = e.attempts.to_string();
            w.write_record([
                e.reason_code.as_str(),
                e.job.as_str(),
                e.budget_code.as_deref().unwrap_or(""),
                e.amount.as_str(),
                e.accounting_date.as_deref().unwrap_or(""),
                e.first_seen.as_str(),
                e.first_run.as_str(),
                e.last_seen.as_str(),
                e.last_run.as_str(),
                attempts.as_str(),
                e.origin_id.as_str(),
                e.status.as_str(),
                e.reason.as_str(),
            ])
            .map_err(err)?;
        }
    }
    w.flush().map_err(|e| Error::TaskFailed {
        stage: "exceptions",
        message: format!("writing CSV: {e}"),
    })
}
