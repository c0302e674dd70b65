//! `lparmover connectivity-test`: handshake, latency, throughput and MTU over the migration paths
//! of two HVMs.

use std::fmt::Write;
use std::process::ExitCode;
use std::time::Duration;

use lparmover::connectivity::{ConnectivityReport, ProbeLimits};
use lparmover::profile::Profile;

/// Arguments of `lparmover connectivity-test`.
#[derive(Debug, clap::Args)]
pub struct ConnectivityArgs {
    /// Source HVM (it connects from its migration path).
    #[arg(long)]
    pub from: String,
    /// Destination HVM (it listens on its migration path).
    #[arg(long)]
    pub to: String,
    /// Throughput probe: MiB to send at most.
    #[arg(long, default_value_t = 64)]
    pub mib: u64,
    /// Throughput probe: milliseconds to send at most.
    #[arg(long, default_value_t = 1000)]
    pub max_ms: u64,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs the test and prints the report.
pub async fn run(profile: &Profile, args: ConnectivityArgs) -> anyhow::Result<ExitCode> {
    let limits = ProbeLimits {
        max_bytes: args.mib.saturating_mul(1 << 20),
        max_duration: Duration::from_millis(args.max_ms),
        ..ProbeLimits::default()
    };
    if !args.json {
        println!("Connectivity Test {} -> {} started.", args.from, args.to);
    }
    match lparmover::ops::connectivity_test(profile, &super::actor(), &args.from, &args.to, limits)
        .await
    {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let emg = e.emg();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&emg)?);
            } else {
                println!("Connectivity Test failed.");
            }
            anyhow::bail!("{emg}")
        }
    }
}

/// The report for people.
pub fn render(r: &ConnectivityReport) -> String {
    let p = &r.probe;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  Migration path   {} ({}) -> {} ({})",
        p.source_addr.ip(),
        r.source,
        p.dest_addr,
        r.destination
    );
    let _ = writeln!(
        out,
        "  Handshake        OK in {:.1} ms (QUIC, mutual TLS with pinned certificates, ticket accepted)",
        p.handshake_ms
    );
    let _ = writeln!(
        out,
        "  Round trip       min {:.3} / median {:.3} / max {:.3} ms over {} pings",
        p.rtt.min_ms, p.rtt.median_ms, p.rtt.max_ms, p.rtt.samples
    );
    let _ = writeln!(
        out,
        "  Throughput       {:.0} Mbit/s ({:.1} MiB in {:.0} ms, {} packets resent)",
        p.throughput_mbps,
        p.bytes as f64 / f64::from(1u32 << 20),
        p.transfer_ms,
        p.lost_packets
    );
    let _ = writeln!(
        out,
        "  Path MTU         {} (max UDP payload {} bytes)",
        p.path_mtu, p.max_udp_payload
    );
    let _ = writeln!(out, "  Job              {} (in `lparmover history`)", r.job);
    let _ = writeln!(out, "{}", r.result);
    out
}
