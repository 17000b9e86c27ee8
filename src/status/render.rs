//! The text of `jcsync status`.

use std::fmt::Write as _;

use super::{Health, Status};
use crate::ledger::runs::RunRecord;

/// A number of seconds as `3d 4h`, `2h 5m`, `7m 3s` or `12s`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

fn run_line(r: &RunRecord) -> String {
    let mut line = format!(
        "{} {} {}, started {}",
        r.mode,
        r.run_id,
        r.outcome.as_str().replace('_', " "),
        r.started_at
    );
    if let Some(end) = &r.ended_at {
        let _ = write!(line, ", ended {end}");
    }
    if let Some(code) = r.exit_code {
        let _ = write!(line, ", exit {code}");
    }
    line
}

/// The status as text: health first, then the runs, Procore, exceptions and schedule.
pub fn render_text(s: &Status) -> String {
    let mut out = String::new();
    let health = match s.health {
        Health::Healthy => "HEALTHY",
        Health::Failed => "FAILED",
        Health::Stale => "STALE",
    };
    let _ = writeln!(out, "{health}: {} (company {})", s.pipeline, s.company);
    for p in &s.problems {
        let _ = writeln!(out, "  ! {p}");
    }
    if let Some(r) = &s.running {
        let _ = writeln!(out, "running now:  {}", run_line(r));
    }
    match &s.last_run {
        Some(r) => {
            let _ = writeln!(out, "last run:     {}", run_line(r));
            if let Some(e) = &r.error {
                let _ = writeln!(out, "              error: {e}");
            }
            if let Some(d) = &r.run_dir {
                let _ = writeln!(out, "              {d}");
            }
        }
        None => {
            let _ = writeln!(out, "last run:     none");
        }
    }
    match (&s.last_success, s.last_success_age_secs) {
        (Some(r), age_secs) => {
            let ago = age_secs
                .map(|a| format!(" ({} ago)", age(a)))
                .unwrap_or_default();
            let _ = writeln!(out, "last success: {}{ago}", run_line(r));
        }
        (None, _) => {
            let _ = writeln!(out, "last success: none");
        }
    }
    match &s.in_procore {
        Some(h) => {
            let _ = writeln!(
                out,
                "in Procore (ledger): {} lines in {} direct costs",
                h.lines, h.direct_costs
            );
        }
        None => {
            let _ = writeln!(
                out,
                "in Procore (ledger): not kept (the target keeps no ledger)"
            );
        }
    }
    if s.open_exceptions.is_empty() {
        let _ = writeln!(out, "open exceptions: none");
    } else {
        let total: u64 = s.open_exceptions.iter().map(|e| e.count).sum();
        let _ = writeln!(
            out,
            "open exceptions: {total} (jcsync exceptions {} lists them)",
            s.pipeline
        );
        for e in &s.open_exceptions {
            let _ = writeln!(out, "  {:<24} {:>8}  {:>16}", e.reason, e.count, e.amount);
        }
    }
    match &s.next_run {
        Some(n) => {
            let at = n.get("next_run_at").and_then(|v| v.as_str()).unwrap_or("?");
            let every = n.get("every").and_then(|v| v.as_str()).unwrap_or("?");
            let pid = n.get("pid").map(|v| v.to_string()).unwrap_or_default();
            let _ = writeln!(out, "next run:     {at} (sync --every {every}, pid {pid})");
        }
        None => {
            let _ = writeln!(
                out,
                "next run:     not scheduled (no `sync --every` process)"
            );
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_two_largest_units() {
        assert_eq!(age(12), "12s");
        assert_eq!(age(7 * 60 + 3), "7m 3s");
        assert_eq!(age(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(age(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(age(-5), "0s");
    }
}
