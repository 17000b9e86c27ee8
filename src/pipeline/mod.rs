//! A sync: sources → transforms → staging → load, through the transform driver.
//!
//! [`sync`] takes the ledger's lock, opens the change [`window`], prepares the [`target`]
//! (logs in before Sage is read), opens the source, runs the [`stages`] and ends the run the
//! one way every run ends ([`crate::run::finish`]). The [`load`] stage is shared with replay.

pub(crate) mod load;
mod removals;
mod report;
mod stages;
pub(crate) mod target;
pub mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Pipeline;
use crate::error::Result;
use crate::extract::SageSource;
use crate::ledger::runs::RunMode;
use crate::run::finish::{record_failure, Ending};
use crate::run::history::{Ended, RunHistory};
use crate::run::{self, Report};
use crate::transform::driver::task_failed;

pub use crate::run::finish::{EXIT_LEDGER_BUSY, EXIT_LOAD_INCOMPLETE, EXIT_REMOVALS_HELD};
pub use crate::transform::driver::run_stage;
pub use crate::transform::StageTiming;
pub use window::watermark_scope;

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Plan only, whatever the target says.
    pub dry_run: bool,
    /// Extract, project, enrich and stage only: no planning, no requests. The run directory
    /// can be loaded later with `jcsync replay`.
    pub stage_only: bool,
    /// Set (e.g. by Ctrl-C) to stop sending: in-flight requests settle, the ledger stays
    /// consistent, staging completes.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// `--allow-removals`: confirm removals over `[sync] max_removal_share`.
    pub allow_removals: bool,
    /// Prepare the target without opening the ledger (`check` reads Procore and writes
    /// nothing): an empty in-memory ledger stands in, so no ledger file is created or migrated.
    pub ledger_untouched: bool,
}

/// What a finished sync left.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub report: Report,
    /// Process exit status: 0 clean, `report.quarantine_exit_code` when rows were quarantined.
    pub exit_code: u8,
}

/// Run a sync as the pipeline file says. Every table is checked before anything is written.
///
/// The run id comes first, so that every log event of the run carries it; a sync that sends
/// to Procore is recorded in the ledger's run history from its start to its outcome.
pub async fn sync(pipeline: &Pipeline, options: &SyncOptions) -> Result<RunOutcome> {
    let run_id = run::new_run_id();
    let _logged = crate::logging::RunScope::enter(&run_id);
    // Before the ledger or Sage is read; held until the watermark has moved.
    let ledger_lock = target::lock_ledger(
        pipeline,
        options,
        format!("sync {}", pipeline.path.display()),
    )
    .await?;
    let history = ledger_lock
        .as_ref()
        .and_then(|_| RunHistory::start(pipeline, &run_id, RunMode::Sync));
    let mut run_dir = None;
    let result = run_sync(pipeline, options, &run_id, &mut run_dir).await;
    if let Some(history) = history {
        history.end(match &result {
            Ok(outcome) => Ended::Completed {
                exit_code: outcome.exit_code,
                quarantined: outcome.report.counts.quarantined_total > 0
                    || run::report::RunEnding::retried_still_failing(&outcome.report) > 0,
                load_failure: outcome.report.load.as_ref().and_then(|l| l.failure.clone()),
                run_dir: &outcome.run_dir,
                summary: Some(run::history::sync_summary(&outcome.report)),
            },
            Err(error) => Ended::Failed {
                error,
                exit_code: run::finish::exit_status_of(error),
                run_dir: run_dir.as_deref(),
            },
        });
    }
    drop(ledger_lock);
    result
}

/// The sync itself, under the ledger's lock; `made` gets the run directory once it exists.
async fn run_sync(
    pipeline: &Pipeline,
    options: &SyncOptions,
    run_id: &str,
    made: &mut Option<PathBuf>,
) -> Result<RunOutcome> {
    let config = &pipeline.config;
    let mut change_window = window::open(pipeline).await?;
    let changed_since = window::changed_since(change_window.as_ref());

    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    // The login comes before Sage is read: refused credentials stop the run at once.
    let target = target::prepare_target(pipeline, options).await?;
    let source = {
        let config = Arc::new(config.clone());
        tokio::task::spawn_blocking(move || SageSource::open_window(&config, changed_since))
            .await
            .map_err(|e| task_failed("extract", e))??
    };
    let run_dir = run::create_run_dir(&config.stage.dir, run_id)?;
    *made = Some(run_dir.clone());
    tracing::info!(run_id, dir = %run_dir.display(), target = target.label, "run started");
    let run = report::SyncRun {
        config,
        id: run_id,
        dir: &run_dir,
        target: target.label.clone(),
        stage_only: options.stage_only,
        allow_removals: options.allow_removals,
        started_at,
        wall,
    };
    let cancel = options.cancel.clone().unwrap_or_default();
    let result = match stages::execute(&run, source, target, cancel).await {
        Ok(results) => {
            let built = report::build(&run, results, change_window.as_mut());
            Ending {
                run_dir: &run_dir,
                run_id,
                pipeline,
                report: &built.report,
                facts: built.facts,
                files: built.files,
                load_failure: built.load_failure,
                quarantined: built.quarantined,
                removals_held: built.removals_held,
            }
            .write()
            .map(|exit_code| RunOutcome {
                run_dir: run_dir.clone(),
                report: built.report,
                exit_code,
            })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        record_failure(&run_dir, run_id, e);
    }
    let outcome = result?;
    // The run succeeded (its manifest is written): only now may the watermark move. A ledger
    // error here fails the command, but the run itself is complete (no failed.json). A load
    // that did not complete must be resumed from the same window; a stage-only run loaded
    // nothing: its window is still to be loaded.
    if let Some(w) = &change_window {
        if outcome.exit_code != EXIT_LOAD_INCOMPLETE && !options.stage_only {
            window::advance(config, w, run_id).await?;
        }
    }
    Ok(outcome)
}
