//! `hvmsim bench-guest`: activation time, achieved vs configured dirty rate, dirty-log rate and
//! pause latency of one guest. Prints a plain report (one run; ratios, not pass/fail).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lparmover::model::workload::{GuestBackend, GuestSpec, Workload};
use lparmover::partition::Partition;

use super::layout::PAGE;
use super::{HeartbeatWatch, PauseGap, start};

/// Backend choice on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BackendArg {
    /// KVM if /dev/kvm opens, else software.
    Auto,
    /// KVM.
    Kvm,
    /// Software guest.
    Soft,
}

impl From<BackendArg> for GuestBackend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Self::Auto,
            BackendArg::Kvm => Self::Kvm,
            BackendArg::Soft => Self::Soft,
        }
    }
}

/// Arguments of `hvmsim bench-guest`.
#[derive(clap::Args, Debug)]
pub struct BenchGuestArgs {
    /// Guest memory in MiB (a multiple of 2).
    #[arg(long, default_value_t = 4096)]
    pub memory_mib: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Dirty rates to measure, MB/s (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10.0, 200.0])]
    pub dirty_rate: Vec<f64>,
    /// Working set in MiB.
    #[arg(long, default_value_t = 1024)]
    pub working_set_mib: u64,
    /// Guest backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Seconds measured per dirty rate.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Pauses timed.
    #[arg(long, default_value_t = 20)]
    pub pauses: u32,
    /// Content and workload seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the benchmark and prints the report.
pub fn run(args: BenchGuestArgs) -> anyhow::Result<()> {
    let spec = GuestSpec {
        memory_bytes: args.memory_mib << 20,
        vcpus: args.vcpus,
        workload: Workload {
            dirty_rate_mbps: args.dirty_rate.first().copied().unwrap_or(10.0),
            working_set_mib: args.working_set_mib,
            seed: args.seed,
            ..Workload::default()
        },
        backend: args.backend.into(),
    };
    let t = Instant::now();
    let guest = start(&spec).context("starting the guest")?;
    let activation = t.elapsed();
    println!(
        "guest: {} backend, {} MiB, {} vCPU(s), working set {} MiB",
        guest.backend().name(),
        args.memory_mib,
        args.vcpus,
        (guest.working_set().pages * PAGE) >> 20
    );
    println!(
        "activation: {:.0} ms (target < 3000 ms for 4 GiB)",
        activation.as_secs_f64() * 1e3
    );

    println!(
        "dirty log | configured MB/s | achieved MB/s | ratio | dirty-log pages/s (250 ms rounds)"
    );
    for &rate in &args.dirty_rate {
        for tracking in [false, true] {
            if tracking {
                guest.start_dirty_tracking()?;
            }
            guest.set_dirty_rate(rate)?;
            std::thread::sleep(Duration::from_millis(300));
            if tracking {
                let _ = guest.take_dirty_bitmap()?;
            }
            let t0 = Instant::now();
            let w0 = guest.guest_writes();
            let mut logged = 0u64;
            while t0.elapsed().as_secs_f64() < args.seconds {
                std::thread::sleep(Duration::from_millis(250));
                if tracking {
                    logged += guest.take_dirty_bitmap()?.count();
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            let achieved = (guest.guest_writes() - w0) as f64 * PAGE as f64 / secs / 1e6;
            let log_rate = if tracking {
                format!("{:.0}", logged as f64 / secs)
            } else {
                "-".into()
            };
            println!(
                "{:>9} | {rate:>15.1} | {achieved:>13.2} | {:>5.3} | {log_rate:>17}",
                if tracking { "on" } else { "off" },
                achieved / rate.max(f64::MIN_POSITIVE),
            );
            if tracking {
                guest.stop_dirty_tracking()?;
            }
        }
    }

    let mut latencies = Vec::new();
    for _ in 0..args.pauses {
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        guest.pause()?;
        latencies.push(t.elapsed());
        guest.resume()?;
    }
    latencies.sort();
    if let (Some(min), Some(max)) = (latencies.first(), latencies.last()) {
        println!(
            "pause latency over {} pauses: min {:.3} ms, median {:.3} ms, max {:.3} ms",
            latencies.len(),
            min.as_secs_f64() * 1e3,
            latencies[latencies.len() / 2].as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }

    // Guest-visible gap of a 20 ms pause, measured from the heartbeat.
    let watch = HeartbeatWatch::start(Arc::clone(&guest), Duration::from_micros(200));
    std::thread::sleep(Duration::from_millis(50));
    guest.pause()?;
    std::thread::sleep(Duration::from_millis(2));
    let before = watch
        .last_change()
        .context("no heartbeat before the pause")?;
    std::thread::sleep(Duration::from_millis(18));
    guest.resume()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let after = loop {
        match watch.last_change() {
            Some(hb) if hb.counter > before.counter => break Some(hb),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(Duration::from_micros(200)),
        }
    };
    let gap = after.and_then(|a| PauseGap::between(&before, &a));
    match gap {
        Some(gap) => println!(
            "heartbeat gap across a 20 ms pause: {:.2} ms (heartbeats {}, tsc ticks {})",
            gap.host_gap.as_secs_f64() * 1e3,
            gap.counter_delta,
            gap.tsc_delta
        ),
        None => println!("heartbeat gap: the heartbeat did not move after resume"),
    }
    watch.stop();
    let stats = guest.stats();
    if let Some(err) = stats.error {
        println!("guest error: {err}");
    }
    guest.stop();
    Ok(())
}
