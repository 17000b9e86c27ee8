//! The JSON an alert POSTs: `text` (one human paragraph, which Slack and Teams incoming
//! webhooks show as is), and the same facts as fields for any other receiver.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use arrow::array::{Array, AsArray};
use rust_decimal::Decimal;
use serde::Serialize;

use super::Ended;
use crate::error::Error;
use crate::ledger::runs::RunOutcome as Outcome;
use crate::pipeline::{EXIT_LOAD_INCOMPLETE, EXIT_REMOVALS_HELD};

/// Quarantine reasons an alert lists (the most rows first).
pub const MAX_REASONS: usize = 5;

/// The alert of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// One paragraph for a person.
    pub text: String,
    /// None for a run that failed before it had an id (or whose id the ledger does not hold).
    pub run_id: Option<String>,
    /// As the run history says it: `succeeded`, `quarantined`, `removals_held`, `incomplete`,
    /// `failed` or `busy`.
    pub outcome: &'static str,
    pub exit_code: u8,
    pub pipeline: String,
    pub company: String,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_secs: f64,
    /// None for a run that failed (it has no report).
    pub counts: Option<AlertCounts>,
    /// The top reasons rows were quarantined, by rows (transaction table only).
    pub quarantine_reasons: Vec<QuarantineReason>,
    pub run_dir: Option<String>,
    /// Why the run failed, or why its load did not complete, or why removals were held.
    pub error: Option<String>,
}

/// A run's counts (the transaction table's rows).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AlertCounts {
    pub extracted: u64,
    pub staged: u64,
    pub planned: u64,
    /// Lines in Procore after the run (sent or unchanged); None for a dry or stage-only run.
    pub loaded: Option<u64>,
    pub sent: u64,
    pub unchanged: u64,
    pub pending: u64,
    pub quarantined: u64,
    /// Lines removed from Procore (their transaction left Sage).
    pub removed: u64,
}

/// One quarantine reason: rows and their amount.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QuarantineReason {
    pub reason: String,
    pub rows: u64,
    /// The exact sum of the amounts that read as numbers (as the source wrote them).
    pub amount: String,
    /// Rows whose amount is empty or not a number (e.g. quarantined for that very reason).
    #[serde(skip_serializing_if = "is_zero")]
    pub amount_unreadable: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What was read back from disk for an alert.
pub enum ReadBack {
    /// Per quarantine reason: the sum of the readable amounts, and the rows without one.
    Amounts(BTreeMap<String, (Decimal, u64)>),
    /// A failed run's id, as the run history recorded it.
    RunId(Option<String>),
    Nothing,
}

impl Alert {
    /// The alert of a run, without what must be read back from disk ([`Alert::add`]) and
    /// without its text ([`Alert::finish`]).
    pub fn build(ended: &Ended<'_>) -> Alert {
        let config = &ended.pipeline.config;
        let mut alert = Alert {
            text: String::new(),
            run_id: None,
            outcome: outcome(ended).as_str(),
            exit_code: ended.exit_code,
            pipeline: ended.pipeline.path.display().to_string(),
            company: config.company.clone(),
            host: host_name(),
            started_at: ended
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_secs: (ended.duration.as_secs_f64() * 10.0).round() / 10.0,
            counts: None,
            quarantine_reasons: Vec::new(),
            run_dir: None,
            error: None,
        };
        match ended.result {
            Err(e) => alert.error = Some(e.to_string()),
            Ok(o) => {
                let r = &o.report;
                let c = &r.counts;
                let load = r.load.as_ref();
                alert.run_id = Some(r.run_id.clone());
                alert.run_dir = Some(o.run_dir.display().to_string());
                alert.counts = Some(AlertCounts {
                    extracted: c.extracted,
                    staged: c.staged,
                    planned: c.planned,
                    loaded: c.loaded,
                    sent: load.map_or(0, |l| l.counts.lines_sent),
                    unchanged: load.map_or(0, |l| l.counts.lines_unchanged),
                    pending: c.pending,
                    quarantined: c.quarantined_total,
                    removed: r
                        .removals
                        .as_ref()
                        .and_then(|x| x.outcome.as_ref())
                        .map_or(0, |x| x.lines_removed),
                });
                let mut reasons: Vec<QuarantineReason> = c
                    .quarantined
                    .iter()
                    .map(|(reason, rows)| QuarantineReason {
                        reason: reason.clone(),
                        rows: *rows,
                        amount: "0".into(),
                        amount_unreadable: 0,
                    })
                    .collect();
                reasons.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.reason.cmp(&b.reason)));
                reasons.truncate(MAX_REASONS);
                alert.quarantine_reasons = reasons;
                alert.error = match o.exit_code {
                    EXIT_LOAD_INCOMPLETE => load.and_then(|l| l.failure.clone()),
                    EXIT_REMOVALS_HELD => r.removals.as_ref().and_then(|x| x.reason.clone()),
                    _ => None,
                };
            }
        }
        alert
    }

    /// Add what was read back from disk.
    pub fn add(&mut self, read_back: ReadBack) {
        match read_back {
            ReadBack::Amounts(amounts) => {
                for r in &mut self.quarantine_reasons {
                    if let Some((sum, unreadable)) = amounts.get(&r.reason) {
                        // Exact, with cents at least: `1700.00`, `2.675`.
                        let mut sum = sum.normalize();
                        if sum.scale() < 2 {
                            sum.rescale(2);
                        }
                        r.amount = sum.to_string();
                        r.amount_unreadable = *unreadable;
                    }
                }
            }
            ReadBack::RunId(id) => self.run_id = self.run_id.take().or(id),
            ReadBack::Nothing => {}
        }
    }

    /// Write `text` from the fields.
    pub fn finish(&mut self) {
        self.text = text(self);
    }
}

/// The run history's word for how a run ended.
pub fn outcome(ended: &Ended<'_>) -> Outcome {
    match ended.result {
        Err(Error::LedgerBusy { .. }) => Outcome::Busy,
        Err(_) if ended.exit_code == EXIT_LOAD_INCOMPLETE => Outcome::Incomplete,
        Err(_) => Outcome::Failed,
        Ok(o) => match o.exit_code {
            EXIT_LOAD_INCOMPLETE => Outcome::Incomplete,
            EXIT_REMOVALS_HELD => Outcome::RemovalsHeld,
            _ if o.report.counts.quarantined_total + o.report.dimension_rows_quarantined > 0 => {
                Outcome::Quarantined
            }
            0 => Outcome::Succeeded,
            _ => Outcome::Failed,
        },
    }
}

fn text(a: &Alert) -> String {
    let run = a
        .run_id
        .as_deref()
        .map_or_else(|| "a run".to_string(), |id| format!("run {id}"));
    let what = match a.outcome {
        "succeeded" => "succeeded".to_string(),
        "quarantined" => "completed, with rows quarantined".to_string(),
        "incomplete" => "did NOT complete its load".to_string(),
        "removals_held" => "completed, but its removals were HELD back".to_string(),
        "busy" => "did not start: another run holds the ledger".to_string(),
        _ => "FAILED".to_string(),
    };
    let mut s = format!(
        "jcsync {} ({}): {run} {what} (exit {}) after {:.1} s on {}.",
        a.company, a.pipeline, a.exit_code, a.duration_secs, a.host
    );
    if let Some(c) = &a.counts {
        s.push_str(&format!(
            " {} rows extracted, {} staged, {} planned",
            c.extracted, c.staged, c.planned
        ));
        if let Some(loaded) = c.loaded {
            s.push_str(&format!(
                ", {loaded} in Procore ({} sent, {} unchanged), {} pending",
                c.sent, c.unchanged, c.pending
            ));
        }
        s.push_str(&format!(
            ", {} removed, {} quarantined",
            c.removed, c.quarantined
        ));
        if !a.quarantine_reasons.is_empty() {
            let reasons: Vec<String> = a
                .quarantine_reasons
                .iter()
                .map(|r| format!("{}: {} rows, {}", r.reason, r.rows, r.amount))
                .collect();
            s.push_str(&format!(" ({})", reasons.join("; ")));
        }
        s.push('.');
    }
    if let Some(e) = &a.error {
        s.push_str(&format!(" Error: {e}"));
        if !e.ends_with('.') {
            s.push('.');
        }
    }
    if let Some(d) = &a.run_dir {
        s.push_str(&format!(" Run directory: {d}"));
    }
    s
}

/// Per quarantine reason of the transaction table's rows in a run's `quarantine.parquet`:
/// the exact sum of the amounts that read as numbers, and the rows without one. Empty when
/// the file cannot be read (the alert then shows counts only).
pub fn quarantine_amounts(run_dir: &Path, table: &str) -> BTreeMap<String, (Decimal, u64)> {
    let path = run_dir.join(crate::staging::quarantine_name(0));
    match read_amounts(&path, table) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("notify: {}: {e}", path.display());
            BTreeMap::new()
        }
    }
}

fn read_amounts(
    path: &Path,
    table: &str,
) -> std::result::Result<BTreeMap<String, (Decimal, u64)>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let wanted = ["reason_code", "source_table", "amount"];
    let schema = builder.parquet_schema();
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| wanted.contains(&schema.column(i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, (Decimal, u64)> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| format!("no text column {name}"))
        };
        let (reasons, tables, amounts) =
            (col("reason_code")?, col("source_table")?, col("amount")?);
        for i in 0..batch.num_rows() {
            if tables.is_null(i) || tables.value(i) != table {
                continue;
            }
            let entry = out
                .entry(reasons.value(i).to_string())
                .or_insert((Decimal::ZERO, 0));
            let amount = (!amounts.is_null(i))
                .then(|| Decimal::from_str(amounts.value(i).trim()).ok())
                .flatten();
            match amount.and_then(|a| entry.0.checked_add(a)) {
                Some(sum) => entry.0 = sum,
                None => entry.1 += 1,
            }
        }
    }
    Ok(out)
}

/// The id of the run this process started at or after `since`, as the run history recorded
/// it (a run that failed returns no report to read it from).
pub fn failed_run_id(
    ledger: &Path,
    company: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    if !ledger.exists() {
        return None;
    }
    let runs = crate::ledger::Ledger::open(ledger)
        .and_then(|l| l.recent_runs(company, 5))
        .ok()?;
    let me = std::process::id();
    let since = since - chrono::Duration::seconds(1);
    runs.into_iter()
        .find(|r| {
            r.pid == me
                && chrono::DateTime::parse_from_rfc3339(&r.started_at).is_ok_and(|t| t >= since)
        })
        .map(|r| r.run_id)
}

pub use crate::ledger::host_name;
