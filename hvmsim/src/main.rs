//! The `hvmsim` command: run one blade, or a whole fleet.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Simulated blades and HVMs for lparmover.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one blade (its HVM, LPAR guests and management API).
    Serve(hvmsim::serve::ServeArgs),
    /// Run one storage array of a fleet file (host groups, LUs, fabric logins, its API).
    Array(hvmsim::array::serve::ArrayArgs),
    /// Start every blade and array of a fleet file and write the manager's profile.
    Fleet(hvmsim::launcher::FleetArgs),
    /// Write a generated fleet file (N blades in chassis of 10, M LPARs each, K activated) to
    /// stdout, e.g. `hvmsim gen-fleet --blades 200 --lpars-per-blade 10 --activated 20 >
    /// assets/fleets/large.toml`.
    GenFleet(hvmsim::genfleet::GenFleetArgs),
    /// Print the SHA-256 fingerprint of the certificate a blade presents (compare it with the
    /// navigator's Profile window before pinning).
    Fingerprint(hvmsim::fingerprint::FingerprintArgs),
    /// Measure a guest: activation time, dirty rate, dirty log, pause latency.
    BenchGuest(hvmsim::guest::bench::BenchGuestArgs),
    /// Write a RAM file and a multiboot kernel that run our guest's workload, on our guests'
    /// memory content, in QEMU (`lparmover bench vs-qemu` uses it).
    QemuImage(hvmsim::guest::qemu::QemuImageArgs),
    /// The VM process of one LPAR (started by its blade, not by hand).
    #[command(hide = true)]
    Vm(hvmsim::vmproc::child::VmArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HVMSIM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::GenFleet(args) = &cli.command {
        use std::io::Write as _;
        let text = hvmsim::genfleet::generate(args)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        return Ok(());
    }
    if let Command::Fingerprint(args) = &cli.command {
        println!("{}", hvmsim::fingerprint::describe(args)?);
        return Ok(());
    }
    if let Command::QemuImage(args) = &cli.command {
        println!("{}", hvmsim::guest::qemu::run(args)?);
        return Ok(());
    }
    if let Command::Vm(args) = cli.command {
        // No async runtime: the VM process is threads and blocking sockets.
        return hvmsim::vmproc::child::run(args);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(hvmsim::serve::run(args)),
        Command::Array(args) => runtime.block_on(hvmsim::array::serve::run(args)),
        Command::Fleet(args) => runtime.block_on(hvmsim::launcher::run(args)),
        Command::BenchGuest(args) => hvmsim::guest::bench::run(args),
        Command::Vm(_) | Command::GenFleet(_) | Command::Fingerprint(_) | Command::QemuImage(_) => {
            Ok(())
        }
    }
}
