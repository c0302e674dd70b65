//! `lparmover migrate`: a live move with a progress display, Ctrl-C to cancel.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use lparmover::api::MoveOptions;
use lparmover::fleetview::LparRef;
use lparmover::jobs::{ColdMoveReport, JobProgress, LiveMoveReport};
use lparmover::model::Mode;
use lparmover::ops::moves::{self, CancelOutcome, MoveControl, MoveEvent, ShutdownOptions};
use lparmover::ops::recover::describe_job;
use lparmover::ops::{Destination, MoveTarget};
use lparmover::profile::Profile;

/// Options of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Migration mode (default: concurrent; for --return, the mode of the move it undoes).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// The LPAR to move: HVM/LPAR (by number or name).
    #[arg(long, required_unless_present = "return_lpar")]
    pub from: Option<LparRef>,
    /// Destination: HVM, or HVM/NUMBER for a given LPAR number (default: the youngest free).
    #[arg(long, required_unless_present = "return_lpar")]
    pub to: Option<Destination>,
    /// Return migration: move LPAR back to the HVM and LPAR number its last completed move came
    /// from (from the migration history).
    #[arg(long = "return", value_name = "LPAR", conflicts_with_all = ["from", "to"])]
    pub return_lpar: Option<String>,
    /// Longest acceptable suspension (e.g. 50ms).
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    pub downtime_limit: Duration,
    /// Give up without convergence after this long (e.g. 900s, 15m); extendable.
    #[arg(long, value_parser = parse_duration, default_value = "900s")]
    pub timeout: Duration,
    /// Do not throttle the guest when rounds stop shrinking.
    #[arg(long)]
    pub no_auto_converge: bool,
    /// Compare memory digests at the destination before the switch.
    #[arg(long)]
    pub verify: bool,
    /// Compression: auto, always or never.
    #[arg(long, default_value = "auto")]
    pub compression: String,
    /// Cap on the migration path, MB/s (leave bandwidth to other traffic; 0 = none).
    #[arg(long, default_value_t = 0)]
    pub bandwidth_limit: u64,
    /// How long the paused source waits for the manager at switch-over before the blades settle
    /// the move between themselves (e.g. 2s; at least 2s).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub switchover_lease: Duration,
    /// Shutdown mode: shut the guest OS down remotely if the LPAR is activated.
    #[arg(long)]
    pub shutdown: bool,
    /// Shutdown mode: Waiting TimeOut Limit for the remote shutdown.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub shutdown_wait: Duration,
    /// Shutdown mode: activate the LPAR on the destination afterwards.
    #[arg(long)]
    pub activate: bool,
    /// Shutdown mode: processor group on the destination (default: the LPAR's own group).
    #[arg(long, value_name = "N")]
    pub processor_group: Option<u8>,
    /// Print the final report as JSON (no progress display).
    #[arg(long)]
    pub json: bool,
}

/// Parses `shutdown` / `concurrent`.
pub fn parse_mode(text: &str) -> Result<Mode, String> {
    text.parse::<Mode>().map_err(|e| e.to_string())
}

/// Parses `50ms`, `2s`, `15m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    lparmover::ops::parse_duration(text)
}

impl MigrateArgs {
    /// The mode asked for, Concurrent Maintenance when none was.
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(Mode::ConcurrentMaintenance)
    }

    /// A return migration without `--mode` takes the mode of the move it undoes (a live move
    /// returns live, a Shutdown-mode move in Shutdown mode); says so on stderr.
    pub fn settle_return_mode(&mut self, profile: Option<&std::path::Path>) -> anyhow::Result<()> {
        let (None, Some(lpar)) = (self.mode, &self.return_lpar) else {
            return Ok(());
        };
        let profile = Profile::load(profile.unwrap_or(&Profile::default_path()))?;
        let dirs = lparmover::dirs::ManagerDirs::for_profile(&profile);
        if let Some(mode) = lparmover::ops::target::return_mode(&dirs, lpar)? {
            eprintln!("return migration of {lpar} in {mode} mode, the mode of the move it undoes");
            self.mode = Some(mode);
        }
        Ok(())
    }

    /// What the move is asked to do: as given, or a return migration.
    fn target(&self) -> anyhow::Result<MoveTarget> {
        if let Some(lpar) = &self.return_lpar {
            return Ok(MoveTarget::Return { lpar: lpar.clone() });
        }
        let (Some(source), Some(destination)) = (&self.from, &self.to) else {
            bail!("give --from and --to, or --return LPAR");
        };
        Ok(MoveTarget::Given {
            source: source.clone(),
            destination: destination.clone(),
        })
    }
}

fn print_event(event: &MoveEvent) {
    match event {
        MoveEvent::Settled(r) => eprintln!("recovered an unfinished job: {}", describe_job(r)),
        MoveEvent::SettleFailed(e) => eprintln!("warning: unfinished jobs could not be read: {e}"),
        MoveEvent::Stage(stage) => eprintln!("{stage}"),
        MoveEvent::Progress(_) => {}
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The final summary for people.
pub fn print_report(report: &LiveMoveReport) {
    let s = &report.summary;
    println!(
        "LPAR {} moved {} → {} (LPAR {} there), job {}",
        report.lpar, report.source, report.destination, report.dest_number, report.job
    );
    println!(
        "  total time         {:.2} s (memory transfer {:.2} s)",
        report.total.as_secs_f64(),
        s.total_time.as_secs_f64()
    );
    match report.suspension {
        Some(d) => println!(
            "  suspension         {:.1} ms (guest heartbeat gap; mover downtime {:.1} ms)",
            d.as_secs_f64() * 1e3,
            s.downtime.as_secs_f64() * 1e3
        ),
        None => println!(
            "  suspension         not measured (mover downtime {:.1} ms)",
            s.downtime.as_secs_f64() * 1e3
        ),
    }
    println!("  rounds             {}", s.rounds);
    println!(
        "  memory             {:.0} MB; sent {:.0} MB of memory as {:.0} MB on the wire ({:.2} × memory size)",
        mb(s.memory_size),
        mb(s.memory_bytes_sent),
        mb(s.wire_bytes),
        if s.memory_size > 0 {
            s.wire_bytes as f64 / s.memory_size as f64
        } else {
            0.0
        }
    );
    println!(
        "  pages              {} zero, {} raw, {} compressed",
        s.pages_zero, s.pages_raw, s.pages_compressed
    );
    println!(
        "  throughput         {:.0} MB/s of memory; max throttle {} %",
        s.memory_throughput_mbps, s.max_throttle_percent
    );
    println!(
        "  compression        {:?}: {}",
        s.compression.encoding, s.compression.reason
    );
    for w in &report.warnings {
        println!("  warning            {w}");
    }
}

fn progress_line(p: &JobProgress) -> String {
    match &p.mover {
        Some(m) => format!(
            "{} round {} | sent {:.0}/{:.0} MB, {:.0} MB left | {:.0} MB/s | dirty {:.1} MB/s | ratio {:.2} | expect {} | throttle {} %",
            p.stage.display(),
            m.round,
            mb(m.memory_bytes_sent),
            mb(m.memory_size),
            mb(m.bytes_remaining),
            m.memory_throughput_mbps,
            m.dirty_rate_mbps,
            m.compression_ratio,
            m.expected_suspension_ms
                .map_or("—".to_owned(), |ms| format!("{ms:.0} ms")),
            m.throttle_percent
        ),
        None => p.stage.display(),
    }
}

/// Runs a live move from the command line.
pub async fn run(
    profile_path: Option<std::path::PathBuf>,
    args: MigrateArgs,
) -> anyhow::Result<LiveMoveReport> {
    if args.mode() != Mode::ConcurrentMaintenance {
        bail!(
            "internal: run() is for Concurrent Maintenance; Shutdown mode goes through run_cold()"
        );
    }
    if args.processor_group.is_some() {
        bail!(
            "--processor-group is for Shutdown mode (--mode shutdown); a live move keeps the LPAR's processor group"
        );
    }
    let profile = Profile::load(&profile_path.unwrap_or_else(Profile::default_path))?;
    let target = args.target()?;
    let options = MoveOptions {
        downtime_limit_ms: u64::try_from(args.downtime_limit.as_millis()).unwrap_or(u64::MAX),
        timeout_s: args.timeout.as_secs(),
        auto_converge: !args.no_auto_converge,
        compression: args.compression.clone(),
        verify: args.verify,
        bandwidth_limit: match args.bandwidth_limit {
            0 => None,
            mb => Some(mb.checked_mul(1_000_000).ok_or_else(|| {
                anyhow::anyhow!(
                    "--bandwidth-limit {mb} MB/s is beyond any link; give at most {} MB/s, or 0 for none",
                    MoveOptions::MAX_BANDWIDTH / 1_000_000
                )
            })?),
        },
        switchover_lease_ms: u64::try_from(args.switchover_lease.as_millis()).unwrap_or(u64::MAX),
        ..MoveOptions::default()
    };
    if options.switchover_lease_ms < MoveOptions::MIN_SWITCHOVER_LEASE_MS {
        bail!(
            "--switchover-lease {} ms is too short: the manager renews it every {} ms, so give it at least {} ms",
            options.switchover_lease_ms,
            lparmover::api::SWITCHOVER_LEASE_RENEWAL.as_millis(),
            MoveOptions::MIN_SWITCHOVER_LEASE_MS
        );
    }
    options.validate().map_err(|e| {
        let flag = match e.field {
            "downtime_limit_ms" => "--downtime-limit",
            "timeout_s" => "--timeout",
            "switchover_lease_ms" => "--switchover-lease",
            "bandwidth_limit" => "--bandwidth-limit",
            "compression" => "--compression",
            other => other,
        };
        anyhow::anyhow!("{flag}: {e}")
    })?;
    let control = MoveControl::new();
    let on_ctrl_c = control.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            match on_ctrl_c.cancel() {
                CancelOutcome::PastCommit => eprintln!(
                    "cancel refused: the move passed its commit point, the destination is authoritative; it completes"
                ),
                CancelOutcome::Cancelling => eprintln!("cancelling: the source keeps running…"),
            }
        }
    });
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    let result = moves::live(
        &profile,
        &super::actor(),
        &target,
        options,
        &control,
        |event| match &event {
            MoveEvent::Progress(p) => bar.set_message(progress_line(p)),
            other => bar.suspend(|| print_event(other)),
        },
    )
    .await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Runs a Shutdown-mode move from the command line.
pub async fn run_cold(
    profile_path: Option<std::path::PathBuf>,
    args: MigrateArgs,
) -> anyhow::Result<ColdMoveReport> {
    let profile = Profile::load(&profile_path.unwrap_or_else(Profile::default_path))?;
    let target = args.target()?;
    let options = ShutdownOptions {
        processor_group: args.processor_group,
        remote_shutdown: args.shutdown,
        shutdown_wait: args.shutdown_wait,
        activate: args.activate,
    };
    let json = args.json;
    let report = moves::shutdown(&profile, &super::actor(), &target, options, |event| {
        if !json || !matches!(event, MoveEvent::Stage(_)) {
            print_event(&event);
        }
    })
    .await?;
    Ok(report)
}
