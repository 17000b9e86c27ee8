//! `jcsync reconcile PIPELINE [--run RUN_DIR] [--repair [--allow-removals]] [--json]
//! [--html FILE]`: its flags and the command (kept here so that `cli.rs` only names it).

use std::path::PathBuf;

use super::{reconcile, render, ReconcileOptions};
use crate::config::Pipeline;

/// Exit status of a command that failed (as the rest of the CLI).
const EXIT_FAILED: u8 = 1;

/// `jcsync reconcile` flags.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Compare with this run directory (with the incremental runs after it laid over it)
    /// instead of the newest run that read every row.
    #[arg(long = "run", value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// Make Procore equal (missing, changed, orphaned, duplicated; never foreign lines), then
    /// read it back again.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: confirm deletions over `[sync] max_removal_share` of the target's lines
    /// (held back otherwise, exit 5).
    #[arg(long, requires = "repair")]
    pub allow_removals: bool,
    /// Print the whole result as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Run `jcsync reconcile`; returns the exit status.
pub fn run(args: ReconcileArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::logging::report_error(format_args!("cannot start the runtime: {e}"));
            return EXIT_FAILED;
        }
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = cancel.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the requests in flight, sending no new ones");
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let options = ReconcileOptions {
        run: args.run,
        repair: args.repair,
        allow_removals: args.allow_removals,
        cancel: Some(cancel),
    };
    let outcome = match Pipeline::load(&args.pipeline)
        .and_then(|p| runtime.block_on(reconcile(&p, &options)))
    {
        Ok(o) => o,
        Err(e) => {
            crate::logging::report_error(&e);
            // Another sync or replay holds the ledger (only --repair takes its lock): 4, as
            // a sync turned away.
            return match e {
                crate::error::Error::LedgerBusy { .. } => crate::pipeline::EXIT_LEDGER_BUSY,
                _ => EXIT_FAILED,
            };
        }
    };
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, render::html(&outcome)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_FAILED;
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(text) => crate::logging::print_out(&text),
            Err(e) => {
                eprintln!("error: cannot print the result: {e}");
                return EXIT_FAILED;
            }
        }
    } else {
        crate::logging::print_out(render::text(&outcome));
    }
    outcome.exit_code
}
