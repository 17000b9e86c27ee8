//! The `jcsync` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jcsync::sandbox::{FaultRule, RateLimitConfig, Sandbox, SandboxConfig};

#[derive(Parser)]
#[command(
    name = "jcsync",
    version,
    about = "Sage 300 CRE job cost transactions → Procore direct costs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local Procore API emulator.
    Sandbox(SandboxArgs),
}

#[derive(clap::Args)]
struct SandboxArgs {
    /// Seed directory (company.json, projects.json, vendors.json, wbs_codes.json).
    #[arg(long, default_value = "fixtures/procore")]
    seed: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Keep the state in this JSON file across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 5400)]
    token_ttl: u64,
    /// Requests per hour.
    #[arg(long, default_value_t = 3600)]
    hourly_limit: u32,
    /// Requests per 10-second spike window.
    #[arg(long, default_value_t = 100)]
    spike_limit: u32,
    /// Turn rate limiting off (benchmarks).
    #[arg(long)]
    no_rate_limit: bool,
    /// Inject a fault: KIND:PROBABILITY[:writes], KIND one of 429, 500, 502, 503, slow, reset,
    /// lost_response. Repeatable.
    #[arg(long = "fault")]
    faults: Vec<FaultRule>,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 42)]
    fault_seed: u64,
    /// How long each write holds its direct costs, in milliseconds (widens the 409 window).
    #[arg(long, default_value_t = 0)]
    write_latency_ms: u64,
}

fn sandbox_config(args: SandboxArgs) -> SandboxConfig {
    let mut config = SandboxConfig::from_dir(args.seed);
    config.bind.set_port(args.port);
    config.state_file = args.state;
    config.token_ttl = Duration::from_secs(args.token_ttl);
    config.rate_limit = (!args.no_rate_limit).then(|| RateLimitConfig {
        hourly_limit: args.hourly_limit,
        spike_limit: args.spike_limit,
        ..RateLimitConfig::default()
    });
    config.faults.rules = args.faults;
    config.faults.seed = args.fault_seed;
    config.write_latency = Duration::from_millis(args.write_latency_ms);
    config
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox(args) => Sandbox::run(sandbox_config(args)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jcsync: {e}");
            ExitCode::FAILURE
        }
    }
}
