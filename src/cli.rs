//! The command line: argument definitions and the commands they run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Pipeline;
use crate::pipeline::{sync, SyncOptions};

/// Exit status of a run that failed (bad pipeline file, missing table, I/O error, failed stage).
pub const EXIT_FAILED: u8 = 1;

/// jcsync: Sage 300 CRE job cost transactions → Procore direct costs.
#[derive(Debug, Parser)]
#[command(name = "jcsync", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a deep or incremental sync as the pipeline file says.
    Sync {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Plan only: write the requests that would be sent to requests.ndjson.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the pipeline file, reach the source, and list every table and column it needs
    /// with whether it exists (exit 0: all present; 1: something is missing or unreachable).
    Check {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Verify a run directory's checksums and summarize it.
    Inspect {
        /// A `runs/<run-id>` directory.
        run_dir: PathBuf,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            EXIT_FAILED
        })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JCSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Run the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> u8 {
    init_logging();
    match cli.command {
        Command::Check { pipeline } => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match Pipeline::load(&pipeline).and_then(|p| runtime.block_on(crate::check::check(&p)))
            {
                Ok(report) => {
                    println!("{}", report.render());
                    if report.all_present() {
                        0
                    } else {
                        EXIT_FAILED
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
            }
        }
        Command::Sync { pipeline, dry_run } => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let result = Pipeline::load(&pipeline)
                .and_then(|p| runtime.block_on(sync(&p, &SyncOptions { dry_run })));
            match result {
                Ok(outcome) => {
                    println!(
                        "{}",
                        crate::run::summary_text(&outcome.report, &outcome.run_dir)
                    );
                    outcome.exit_code
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
            }
        }
        Command::Inspect { run_dir } => match crate::run::inspect(&run_dir) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILED
            }
        },
    }
}
