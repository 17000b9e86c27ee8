use clap::Parser;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(jcsync::cli::run(jcsync::cli::Cli::parse()))
}
