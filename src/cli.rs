//! The command line: argument definitions and the commands they run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use std::time::Duration;

use crate::config::Pipeline;
use crate::pipeline::{sync, SyncOptions};
use crate::sandbox::{FaultRule, RateLimitConfig, Sandbox, SandboxConfig};

pub use crate::run::finish::EXIT_FAILED;

/// The exit status of a sync or replay that ended with `e` (README, "Exit status").
fn exit_status(e: &crate::error::Error) -> u8 {
    crate::run::finish::exit_status_of(e)
}

/// jcsync: Sage 300 CRE job cost transactions → Procore direct costs.
#[derive(Debug, Parser)]
#[command(name = "jcsync", version, about)]
pub struct Cli {
    /// Log format on stderr: text, or one JSON object per line (default: the
    /// JCSYNC_LOG_FORMAT environment variable, else text).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<crate::logging::LogFormat>,
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
        /// Extract, project, enrich and stage only: no planning, nothing sent (load the run
        /// later with `jcsync replay`).
        #[arg(long, conflicts_with = "dry_run")]
        stage_only: bool,
        /// Confirm removals over `[sync] max_removal_share` (after checking that Sage is right).
        #[arg(long)]
        allow_removals: bool,
        /// Run again every DURATION (`30s`, `5m`, `1h`, `1h30m`), slots aligned to the start,
        /// until SIGTERM or Ctrl-C (exit 0); a failed run is logged and retried at the next slot.
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
    },
    /// Load a run again from its staged Parquet, without touching Sage.
    Replay {
        /// A `runs/<run-id>` directory (verified before anything is sent).
        run_dir: PathBuf,
        /// The pipeline whose target and load settings to use (default: the run's own).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Send everything again as updates, even what the ledger says is unchanged.
        #[arg(long)]
        force: bool,
        /// Plan only: write requests.ndjson.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the pipeline file, reach the source and the target, and list what would not
    /// load: jobs without a project, missing vendors and budget codes, projects whose Direct
    /// Costs tool is off (exit 0: every cost row would load; 1: something is missing or
    /// unreachable; 2: some cost rows would not load).
    Check {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Print JSON (for scripts) instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Is the sync healthy? From the ledger: the last run and the last success, the lines in
    /// Procore, open exceptions, the next run of a `--every` process (exit 0: healthy;
    /// 10: the last run failed; 11: no success within --max-age, or none yet; 1: error).
    Status {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Print JSON (for scripts and monitoring) instead of text.
        #[arg(long)]
        json: bool,
        /// Unhealthy (exit 11) when the last success is older than this (e.g. 2h, 90m, 1d).
        #[arg(long, value_parser = crate::schedule::parse_every)]
        max_age: Option<Duration>,
    },
    /// Verify a run directory's checksums and summarize it.
    Inspect {
        /// A `runs/<run-id>` directory.
        run_dir: PathBuf,
        /// Print JSON (for scripts) instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Read Procore back and compare it with Sage (the newest run that read every row, with the
    /// incremental runs since laid over it), per project and budget code (exit 0: equal;
    /// 6: drift; 1: error).
    Reconcile(crate::reconcile::cli::ReconcileArgs),
    /// List the open exceptions (rows quarantined at load, retried by every sync until they
    /// load or leave Sage) by reason, with totals (exit 0; 1 on error).
    Exceptions {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Print JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Print CSV (RFC 4180, one row per exception, a header row).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Run the local Procore API emulator.
    Sandbox(SandboxArgs),
    /// Write a synthetic Sage company (and its matching Procore sandbox seed in OUT/procore).
    Generate(GenerateArgs),
}

/// `jcsync generate` flags.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Rows of the transaction table.
    #[arg(long, default_value_t = 100_000)]
    pub transactions: u64,
    /// Jobs (Procore projects).
    #[arg(long, default_value_t = 50)]
    pub jobs: u32,
    /// Seed: the same seed writes the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// `csv` or `parquet`.
    #[arg(long, default_value = "csv", value_parser = parse_format)]
    pub format: crate::config::FileFormat,
}

fn parse_format(s: &str) -> Result<crate::config::FileFormat, String> {
    match s {
        "csv" => Ok(crate::config::FileFormat::Csv),
        "parquet" => Ok(crate::config::FileFormat::Parquet),
        _ => Err(format!("expected csv or parquet, found {s:?}")),
    }
}

/// `jcsync sandbox` flags.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Seed directory (company.json, projects.json, vendors.json, wbs_codes.json).
    #[arg(long, default_value = "fixtures/procore")]
    pub seed: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Keep the state in this JSON file across restarts.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 5400)]
    pub token_ttl: u64,
    /// Requests per hour.
    #[arg(long, default_value_t = 3600)]
    pub hourly_limit: u32,
    /// Requests per 10-second spike window.
    #[arg(long, default_value_t = 100)]
    pub spike_limit: u32,
    /// Turn rate limiting off (benchmarks).
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Inject a fault: KIND:PROBABILITY[:writes], KIND one of 429, 429_spike, 409, 500, 502,
    /// 503, slow, reset, lost_response. Repeatable.
    #[arg(long = "fault")]
    pub faults: Vec<FaultRule>,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 42)]
    pub fault_seed: u64,
    /// How long each write holds its direct costs, in milliseconds (widens the 409 window).
    #[arg(long, default_value_t = 0)]
    pub write_latency_ms: u64,
}

impl SandboxArgs {
    /// The sandbox configuration these flags describe.
    pub fn config(self) -> SandboxConfig {
        let mut config = SandboxConfig::from_dir(self.seed);
        config.bind.set_port(self.port);
        config.state_file = self.state;
        config.token_ttl = Duration::from_secs(self.token_ttl);
        config.rate_limit = (!self.no_rate_limit).then(|| RateLimitConfig {
            hourly_limit: self.hourly_limit,
            spike_limit: self.spike_limit,
            ..RateLimitConfig::default()
        });
        config.faults.rules = self.faults;
        config.faults.seed = self.fault_seed;
        config.write_latency = Duration::from_millis(self.write_latency_ms);
        config
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            report_error(format_args!("cannot start the runtime: {e}"));
            EXIT_FAILED
        })
}

use crate::logging::{print_out, report_error, say};

/// What Ctrl-C does to a run that loads.
const SENDING_STOPS: &str = "finishing the requests in flight, sending no new ones";

/// Ctrl-C or SIGTERM: for a load, stop sending, settle what is in flight, keep the ledger
/// consistent; for a stage-only or dry run, stop reading. `message` says which. A second
/// signal while the run settles exits at once (status 128 + the signal: 130, 143), as a
/// `kill -9` would: the ledger stays consistent, the run directory is left unfinished.
fn ctrl_c_flag(
    runtime: &tokio::runtime::Runtime,
    message: &'static str,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    runtime.spawn(async move {
        let Some(first) = stop_signal().await else {
            return;
        };
        say(format_args!("interrupted ({first}): {message}"));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(second) = stop_signal().await {
            say(format_args!("interrupted again ({second}): exiting now"));
            std::process::exit(if second == "SIGTERM" { 143 } else { 130 });
        }
    });
    cancel
}

/// The next Ctrl-C (SIGINT) or, on Unix, SIGTERM; None if neither can be listened for.
async fn stop_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                r = tokio::signal::ctrl_c() => r.ok().map(|()| "Ctrl-C"),
                _ = term.recv() => Some("SIGTERM"),
            },
            Err(_) => tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}

/// Run the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> u8 {
    match crate::logging::LogFormat::choose(cli.log_format) {
        Ok(format) => crate::logging::init(format),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    }
    match cli.command {
        Command::Check { pipeline, json } => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match Pipeline::load(&pipeline).and_then(|p| runtime.block_on(crate::check::check(&p)))
            {
                Ok(outcome) => {
                    if json {
                        print_out(format_args!("{:#}", crate::check::render::json(&outcome)));
                    } else {
                        print_out(crate::check::render::text(&outcome));
                    }
                    outcome.exit_code()
                }
                Err(e) => {
                    report_error(&e);
                    EXIT_FAILED
                }
            }
        }
        Command::Sync {
            pipeline,
            dry_run,
            stage_only,
            allow_removals,
            every,
        } => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let cancel = ctrl_c_flag(
                &runtime,
                if every.is_some() {
                    "stopping the schedule (a run in progress settles its requests in flight)"
                } else if stage_only || dry_run {
                    "stopping (a run that sends nothing is left unfinished)"
                } else {
                    SENDING_STOPS
                },
            );
            let options = SyncOptions {
                dry_run,
                stage_only,
                cancel: Some(cancel),
                allow_removals,
                ledger_untouched: false,
            };
            if let Some(every) = every {
                let every = match crate::schedule::parse_every(&every) {
                    Ok(d) => d,
                    Err(e) => {
                        report_error(format_args!("--every: {e}"));
                        return EXIT_FAILED;
                    }
                };
                return crate::schedule::run_every(
                    &runtime,
                    &crate::schedule::EveryOptions {
                        pipeline: &pipeline,
                        every,
                        sync: options,
                        exit_status,
                    },
                );
            }
            let pipeline = match Pipeline::load(&pipeline) {
                Ok(p) => p,
                Err(e) => {
                    report_error(&e);
                    return exit_status(&e);
                }
            };
            let notifier = crate::notify::Notifier::for_pipeline(&pipeline);
            if let Some(problem) = notifier.as_ref().and_then(|n| n.problem()) {
                tracing::warn!("{problem}");
            }
            let (started_at, wall) = (chrono::Utc::now(), std::time::Instant::now());
            let result = runtime.block_on(sync(&pipeline, &options));
            let code = match &result {
                Ok(outcome) => {
                    print_out(crate::run::summary_text(&outcome.report, &outcome.run_dir));
                    outcome.exit_code
                }
                Err(e) => {
                    report_error(e);
                    exit_status(e)
                }
            };
            let ended = crate::notify::Ended {
                pipeline: &pipeline,
                result: result.as_ref(),
                exit_code: code,
                started_at,
                duration: wall.elapsed(),
            };
            runtime.block_on(crate::notify::after_run(notifier.as_ref(), &ended));
            code
        }
        Command::Replay {
            run_dir,
            pipeline,
            force,
            dry_run,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    report_error(format_args!("cannot start the runtime: {e}"));
                    return EXIT_FAILED;
                }
            };
            let cancel = ctrl_c_flag(&runtime, SENDING_STOPS);
            let result = pipeline
                .map(Ok)
                .unwrap_or_else(|| {
                    crate::run::read_manifest(&run_dir).map(|m| PathBuf::from(m.pipeline_path))
                })
                .and_then(|p| Pipeline::load(&p))
                .and_then(|p| {
                    let options = crate::replay::ReplayOptions {
                        force,
                        dry_run,
                        cancel: Some(cancel),
                        only: None,
                    };
                    runtime.block_on(crate::replay::replay(&run_dir, &p, &options))
                });
            match result {
                Ok(outcome) => {
                    print_out(crate::run::replay_summary_text(
                        &outcome.report,
                        &outcome.run_dir,
                    ));
                    outcome.exit_code
                }
                Err(e) => {
                    report_error(&e);
                    exit_status(&e)
                }
            }
        }
        Command::Reconcile(args) => crate::reconcile::cli::run(args),
        Command::Status {
            pipeline,
            json,
            max_age,
        } => {
            let found = Pipeline::load(&pipeline).and_then(|p| crate::status::status(&p, max_age));
            match found {
                Ok(status) => {
                    if json {
                        match serde_json::to_string_pretty(&status) {
                            Ok(text) => print_out(&text),
                            Err(e) => {
                                report_error(&e);
                                return EXIT_FAILED;
                            }
                        }
                    } else {
                        print_out(crate::status::render_text(&status));
                    }
                    status.health.exit_code()
                }
                Err(e) => {
                    report_error(&e);
                    EXIT_FAILED
                }
            }
        }
        Command::Sandbox(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    report_error(format_args!("cannot start the runtime: {e}"));
                    return EXIT_FAILED;
                }
            };
            match runtime.block_on(Sandbox::run(args.config())) {
                Ok(()) => 0,
                Err(e) => {
                    report_error(&e);
                    EXIT_FAILED
                }
            }
        }
        Command::Generate(args) => {
            let options = crate::tools::generate::GenerateOptions {
                transactions: args.transactions,
                jobs: args.jobs,
                seed: args.seed,
                out: args.out,
                format: args.format,
            };
            match crate::tools::generate::generate(&options) {
                Ok(summary) => {
                    match serde_json::to_string_pretty(&summary) {
                        Ok(text) => print_out(&text),
                        Err(e) => eprintln!("warning: cannot print the summary: {e}"),
                    }
                    0
                }
                Err(e) => {
                    report_error(&e);
                    EXIT_FAILED
                }
            }
        }
        Command::Exceptions {
            pipeline,
            json,
            csv,
        } => crate::exceptions::run(&pipeline, json, csv),
        Command::Inspect { run_dir, json } => match if json {
            crate::run::inspection(&run_dir).and_then(|i| Ok(serde_json::to_string_pretty(&i)?))
        } else {
            crate::run::inspect(&run_dir)
        } {
            Ok(text) => {
                print_out(&text);
                0
            }
            Err(e) => {
                report_error(&e);
                EXIT_FAILED
            }
        },
    }
}
