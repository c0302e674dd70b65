//! hvmsim command line (minimal: the guest benchmark; the lead merges the full CLI).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hvmsim", about = "Simulated blades and HVMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure a guest: activation time, dirty rate, dirty log, pause latency.
    BenchGuest(hvmsim::guest::bench::BenchGuestArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::BenchGuest(args) => hvmsim::guest::bench::run(args),
    }
}
