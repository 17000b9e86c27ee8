//! `jcsync exceptions PIPELINE [--json | --csv]`: the rows waiting for a mapping.
//!
//! Lists the target's open exceptions (rows quarantined at load and retried by every later run,
//! [`crate::ledger::exceptions`]) grouped by reason code, with job, budget code, amount, when
//! they were first and last seen and how often they were tried, and per reason a count and a
//! total. Reads the ledger only: no login, nothing sent. [`scoped_ledger`] is the one way to
//! the ledger of a pipeline's target without logging in (`jcsync status` uses it too).

mod render;

use crate::config::Pipeline;
use crate::error::Result;
use crate::ledger::{Exception, Ledger};

pub use render::{render_csv, render_json, render_text, CSV_COLUMNS};

/// The ledger of the pipeline's target, scoped as a sync scopes it, without logging in. None
/// when the target keeps no ledger (a dry-run target, a sandbox without a state file) or no
/// run has written it yet.
pub fn scoped_ledger(pipeline: &Pipeline) -> Result<Option<Ledger>> {
    let Some(scope) = crate::pipeline::target::ledger_scope(&pipeline.config.target) else {
        return Ok(None);
    };
    let path = pipeline.config.ledger_path();
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Ledger::open(&path)?.with_target(&scope)))
}

/// The open exceptions of one reason code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReasonGroup {
    pub reason_code: String,
    pub count: u64,
    /// Total amount, exact decimal text.
    pub amount: String,
    pub exceptions: Vec<Exception>,
}

/// What `jcsync exceptions` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExceptionList {
    pub company: String,
    /// The ledger scope (None: the target keeps no ledger).
    pub target: Option<String>,
    pub open: u64,
    /// Total amount of every open exception, exact decimal text.
    pub amount: String,
    pub reasons: Vec<ReasonGroup>,
}

/// The open exceptions of the pipeline's target, by reason code.
pub fn list(pipeline: &Pipeline) -> Result<ExceptionList> {
    let target = crate::pipeline::target::ledger_scope(&pipeline.config.target);
    let mut reasons: Vec<ReasonGroup> = Vec::new();
    if let Some(ledger) = scoped_ledger(pipeline)? {
        for (reason_code, count, amount) in ledger.open_exceptions_by_reason()? {
            reasons.push(ReasonGroup {
                reason_code,
                count,
                amount,
                exceptions: Vec::new(),
            });
        }
        ledger.for_each_open_exception(|e| {
            if let Some(g) = reasons.iter_mut().find(|g| g.reason_code == e.reason_code) {
                g.exceptions.push(e);
            }
            Ok(())
        })?;
    }
    let cents: i128 = reasons.iter().map(|g| cents_of(&g.amount)).sum();
    Ok(ExceptionList {
        company: pipeline.config.company.clone(),
        target,
        open: reasons.iter().map(|g| g.count).sum(),
        amount: crate::model::values::format_decimal(cents, 2),
        reasons,
    })
}

/// `jcsync exceptions PIPELINE [--json | --csv]`: print the list; the exit status (0, or 1 on
/// error).
pub fn run(pipeline: &std::path::Path, json: bool, csv: bool) -> u8 {
    let printed = Pipeline::load(pipeline)
        .and_then(|p| list(&p))
        .and_then(|l| {
            if csv {
                render_csv(&l, std::io::stdout().lock())
            } else {
                let text = if json {
                    render_json(&l)?
                } else {
                    render_text(&l)
                };
                crate::logging::print_out(text.trim_end_matches('\n'));
                Ok(())
            }
        });
    match printed {
        Ok(()) => 0,
        Err(e) => {
            crate::logging::report_error(&e);
            1
        }
    }
}

/// Cents of an exact decimal text with at most two places (as the ledger writes amounts).
fn cents_of(text: &str) -> i128 {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let whole: i128 = whole.parse().unwrap_or(0);
    let frac: i128 = format!("{frac:0<2}")[..2].parse().unwrap_or(0);
    let cents = whole * 100 + frac;
    if neg {
        -cents
    } else {
        cents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_sum_to_the_cent() {
        assert_eq!(cents_of("1250.00"), 125_000);
        assert_eq!(cents_of("-2.68"), -268);
        assert_eq!(cents_of("0.10"), 10);
        assert_eq!(cents_of("7"), 700);
    }
}
