//! The run history: every sync and replay, recorded when it starts and again when it ends, so
//! that `jcsync status` answers from the ledger, not from log files. A run that was killed
//! (`kill -9`, power loss) stays `running` until a later run finds it so with its process
//! gone, and marks it `crashed`.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::lock::host_name;
use super::Ledger;
use crate::error::Result;

/// The `runs` table (schema version 3).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    company    TEXT NOT NULL,
    mode       TEXT NOT NULL,
    pipeline   TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    outcome    TEXT NOT NULL,
    exit_code  INTEGER,
    error      TEXT,
    run_dir    TEXT,
    summary    TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_company ON runs (company, seq);
";

/// What a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// A sync that loads.
    Sync,
    /// `sync --dry-run`: plans, sends nothing.
    DryRun,
    /// `sync --stage-only`.
    StageOnly,
    /// `replay`.
    Replay,
}

impl RunMode {
    /// The stable text stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Sync => "sync",
            RunMode::DryRun => "dry_run",
            RunMode::StageOnly => "stage_only",
            RunMode::Replay => "replay",
        }
    }

    /// Whether it sends to Procore (what `status` judges health by).
    pub fn sends(self) -> bool {
        matches!(self, RunMode::Sync | RunMode::Replay)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Still running (or killed: see [`RunOutcome::Crashed`]).
    Running,
    /// Complete, nothing quarantined.
    Succeeded,
    /// Complete, with rows quarantined (the pipeline's `quarantine_exit_code`).
    Quarantined,
    /// The guard held removals back (exit 5).
    RemovalsHeld,
    /// The load did not complete: Procore unavailable, interrupted (exit 3).
    Incomplete,
    /// The run failed (exit 1).
    Failed,
    /// Another run held the ledger (exit 4): this one did nothing.
    Busy,
    /// Found `running` with its process gone: killed.
    Crashed,
}

impl RunOutcome {
    /// The stable text stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Quarantined => "quarantined",
            RunOutcome::RemovalsHeld => "removals_held",
            RunOutcome::Incomplete => "incomplete",
            RunOutcome::Failed => "failed",
            RunOutcome::Busy => "busy",
            RunOutcome::Crashed => "crashed",
        }
    }

    fn parse(s: &str) -> RunOutcome {
        match s {
            "running" => RunOutcome::Running,
            "succeeded" => RunOutcome::Succeeded,
            "quarantined" => RunOutcome::Quarantined,
            "removals_held" => RunOutcome::RemovalsHeld,
            "incomplete" => RunOutcome::Incomplete,
            "busy" => RunOutcome::Busy,
            "crashed" => RunOutcome::Crashed,
            _ => RunOutcome::Failed,
        }
    }

    /// A run that completed its load: the data in Procore is as of this run.
    pub fn is_success(self) -> bool {
        matches!(self, RunOutcome::Succeeded | RunOutcome::Quarantined)
    }
}

/// One row of the run history.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub mode: String,
    pub pipeline: String,
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: RunOutcome,
    pub exit_code: Option<u8>,
    pub error: Option<String>,
    pub run_dir: Option<String>,
    /// The run's counts (JSON), as its summary gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

/// The start of a run.
#[derive(Debug, Clone)]
pub struct RunStart<'a> {
    pub run_id: &'a str,
    pub company: &'a str,
    pub mode: RunMode,
    pub pipeline: &'a str,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    pub outcome: RunOutcome,
    pub exit_code: u8,
    /// The error, for a run that failed (already free of secrets: errors never carry them).
    pub error: Option<&'a str>,
    pub run_dir: Option<&'a str>,
    pub summary: Option<serde_json::Value>,
}

fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let outcome: String = r.get("outcome")?;
    let summary: Option<String> = r.get("summary")?;
    Ok(RunRecord {
        run_id: r.get("run_id")?,
        mode: r.get("mode")?,
        pipeline: r.get("pipeline")?,
        pid: r.get("pid")?,
        host: r.get("host")?,
        started_at: r.get("started_at")?,
        ended_at: r.get("ended_at")?,
        outcome: RunOutcome::parse(&outcome),
        exit_code: r.get("exit_code")?,
        error: r.get("error")?,
        run_dir: r.get("run_dir")?,
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// Whether process `pid` is alive on this machine.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

const COLUMNS: &str = "run_id, mode, pipeline, pid, host, started_at, ended_at, outcome, \
                       exit_code, error, run_dir, summary";

impl Ledger {
    /// Record that a run started. Runs of this company left `running` by a process that is
    /// gone (killed) are marked `crashed` first.
    pub fn run_started(&self, start: &RunStart<'_>) -> Result<()> {
        self.mark_crashed(start.company)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.conn
            .execute(
                "INSERT INTO runs (run_id, company, mode, pipeline, pid, host, started_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')",
                params![
                    start.run_id,
                    start.company,
                    start.mode.as_str(),
                    start.pipeline,
                    std::process::id(),
                    host_name(),
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Record how a run ended.
    pub fn run_ended(&self, run_id: &str, end: &RunEnd<'_>) -> Result<()> {
        let summary = end
            .summary
            .as_ref()
            .and_then(|s| serde_json::to_string(s).ok());
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, outcome = ?3, exit_code = ?4, error = ?5,
                 run_dir = ?6, summary = ?7 WHERE run_id = ?1",
                params![
                    run_id,
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    end.outcome.as_str(),
                    end.exit_code,
                    end.error,
                    end.run_dir,
                    summary
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Runs of `company` still `running` whose process (on this host) is gone: `crashed`.
    fn mark_crashed(&self, company: &str) -> Result<()> {
        let host = host_name();
        let mut stale = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT run_id, pid FROM runs
                     WHERE company = ?1 AND outcome = 'running' AND host = ?2",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![company, host], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (run_id, pid) = row.map_err(|e| self.err(e))?;
                if pid != std::process::id() && !process_alive(pid) {
                    stale.push(run_id);
                }
            }
        }
        for run_id in stale {
            self.conn
                .execute(
                    "UPDATE runs SET outcome = 'crashed',
                     error = 'the process ended without recording how the run ended (killed?)'
                     WHERE run_id = ?1 AND outcome = 'running'",
                    params![run_id],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The newest run of `company` that sends to Procore (sync or replay); with
    /// `success_only`, the newest that completed its load.
    pub fn last_run(&self, company: &str, success_only: bool) -> Result<Option<RunRecord>> {
        let filter = if success_only {
            " AND outcome IN ('succeeded', 'quarantined')"
        } else {
            " AND outcome <> 'busy'"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE company = ?1 AND mode IN ('sync', 'replay'){filter}
             ORDER BY seq DESC LIMIT 1"
        );
        let mut record = self
            .conn
            .query_row(&sql, params![company], record_of)
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(r) = record.as_mut() {
            if r.outcome == RunOutcome::Running
                && r.host == host_name()
                && r.pid != std::process::id()
                && !process_alive(r.pid)
            {
                r.outcome = RunOutcome::Crashed;
            }
        }
        Ok(record)
    }

    /// The newest `limit` runs of `company`, newest first (every mode).
    pub fn recent_runs(&self, company: &str, limit: u32) -> Result<Vec<RunRecord>> {
        let sql =
            format!("SELECT {COLUMNS} FROM runs WHERE company = ?1 ORDER BY seq DESC LIMIT ?2");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![company, limit], record_of)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start<'a>(id: &'a str, mode: RunMode) -> RunStart<'a> {
        RunStart {
            run_id: id,
            company: "ACME",
            mode,
            pipeline: "p.toml",
        }
    }

    #[test]
    fn runs_are_recorded_from_start_to_end_and_the_last_success_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(&dir.path().join("l.sqlite")).expect("open");
        assert!(l.last_run("ACME", false).expect("last").is_none());
        l.run_started(&start("r1", RunMode::Sync)).expect("start");
        let running = l.last_run("ACME", false).expect("last").expect("r1");
        assert_eq!(running.outcome, RunOutcome::Running);
        l.run_ended(
            "r1",
            &RunEnd {
                outcome: RunOutcome::Succeeded,
                exit_code: 0,
                error: None,
                run_dir: Some("runs/r1"),
                summary: Some(serde_json::json!({"loaded": 3})),
            },
        )
        .expect("end");
        l.run_started(&start("r2", RunMode::DryRun)).expect("start");
        l.run_started(&start("r3", RunMode::Sync)).expect("start");
        l.run_ended(
            "r3",
            &RunEnd {
                outcome: RunOutcome::Failed,
                exit_code: 1,
                error: Some("Procore answered 503"),
                run_dir: None,
                summary: None,
            },
        )
        .expect("end");
        let last = l.last_run("ACME", false).expect("last").expect("r3");
        assert_eq!(
            (last.run_id.as_str(), last.outcome),
            ("r3", RunOutcome::Failed)
        );
        assert_eq!(last.error.as_deref(), Some("Procore answered 503"));
        assert_eq!(last.exit_code, Some(1));
        let ok = l.last_run("ACME", true).expect("last").expect("r1");
        assert_eq!(ok.run_id, "r1");
        assert_eq!(ok.summary, Some(serde_json::json!({"loaded": 3})));
        assert!(l.last_run("OTHER", false).expect("last").is_none());
        let recent = l.recent_runs("ACME", 10).expect("recent");
        let ids: Vec<&str> = recent.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r3", "r2", "r1"]);
    }

    #[test]
    fn a_run_left_running_by_a_dead_process_is_marked_crashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(&dir.path().join("l.sqlite")).expect("open");
        // A child that has exited: its pid names no live process (until reused).
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        l.conn
            .execute(
                "INSERT INTO runs (run_id, company, mode, pipeline, pid, host, started_at, outcome)
                 VALUES ('old', 'ACME', 'sync', 'p.toml', ?1, ?2, '2026-01-01T00:00:00Z', 'running')",
                params![pid, host_name()],
            )
            .expect("insert");
        let last = l.last_run("ACME", false).expect("last").expect("old");
        assert_eq!(last.outcome, RunOutcome::Crashed);
        l.run_started(&start("new", RunMode::Sync)).expect("start");
        let old = l.recent_runs("ACME", 10).expect("recent");
        assert_eq!(old[1].run_id, "old");
        assert_eq!(old[1].outcome, RunOutcome::Crashed);
        assert!(old[1].error.as_deref().unwrap_or("").contains("killed"));
    }
}
