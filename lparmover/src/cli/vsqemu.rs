//! `lparmover bench vs-qemu`: our live move against QEMU's, same guest, memory and link.
//! The measuring lives in `lparmover::bench::{qemu, vsqemu}`; this file parses, orders the
//! cases, and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use lparmover::bench::netns::NetnsPair;
use lparmover::bench::qemu::{self, QemuEnv, QemuGuest, QemuMode, QemuSettings};
use lparmover::bench::vsqemu::{
    Calibration, SideFigures, VsCase, VsReport, VsRow, render_markdown, verdicts,
};
use lparmover::bench::{CaseSpec, Link};

/// Options of `bench vs-qemu`.
#[derive(Debug, clap::Args)]
pub struct VsQemuArgs {
    /// Links: veth (unshaped), 10gbit, 1gbit (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "veth,10gbit,1gbit", value_parser = parse_link)]
    pub links: Vec<Link>,
    /// Guest sizes (comma-separated, e.g. 1GiB,4GiB).
    #[arg(long, value_delimiter = ',', default_value = "1GiB,4GiB", value_parser = super::bench::parse_size_mib)]
    pub sizes: Vec<u64>,
    /// Dirty rates, MB/s (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,50,200")]
    pub dirty: Vec<f64>,
    /// Moves per case and side (alternating directions).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Our downtime limit, also given to QEMU, ms.
    #[arg(long, default_value_t = 50)]
    pub downtime_limit_ms: u64,
    /// Also run QEMU with its own default downtime limit (300 ms) and show it beside.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub qemu_default: bool,
    /// Use this QEMU mode instead of calibrating (1, multifd2, multifd4, multifd2-zstd, multifd4-zstd).
    #[arg(long, value_parser = parse_mode)]
    pub qemu_mode: Option<QemuMode>,
    /// A QEMU move that has not completed after this many seconds counts as not converging.
    #[arg(long, default_value_t = 240)]
    pub qemu_timeout: u64,
    /// Where the JSON goes.
    #[arg(long, default_value = "vs-qemu.json")]
    pub json: PathBuf,
    /// Keep logs and state here (default: a temporary directory).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Directory for QEMU's RAM files (a tmpfs).
    #[arg(long, default_value = "/dev/shm")]
    pub ram_dir: PathBuf,
}

fn parse_link(s: &str) -> Result<Link, String> {
    match s.trim() {
        "veth" | "unshaped" => Ok(Link::Veth),
        "10gbit" => Ok(Link::Gbit10),
        "1gbit" => Ok(Link::Gbit1),
        other => Err(format!("unknown link {other:?}: use veth, 10gbit or 1gbit")),
    }
}

fn parse_mode(s: &str) -> Result<QemuMode, String> {
    match s.trim() {
        "1" | "one" => Ok(QemuMode::OneChannel),
        "multifd2" => Ok(QemuMode::Multifd(2)),
        "multifd4" => Ok(QemuMode::Multifd(4)),
        "multifd2-zstd" => Ok(QemuMode::MultifdZstd(2)),
        "multifd4-zstd" => Ok(QemuMode::MultifdZstd(4)),
        other => Err(format!(
            "unknown QEMU mode {other:?}: use 1, multifd2, multifd4, multifd2-zstd or multifd4-zstd"
        )),
    }
}

/// The bench LPAR's seed (assets/fleets/bench.toml), so both guests hold the same content.
const BENCH_SEED: u64 = 31;

/// The bench LPAR's working set for a guest of `memory_mib`: the template's 256 MiB, at most
/// half the guest (as `lparmover::bench::fleet::generate` sizes ours).
fn working_set_mib(memory_mib: u64) -> u64 {
    256.min(memory_mib / 2).max(1)
}

/// TSC ticks per second against CLOCK_MONOTONIC.
fn tsc_hz() -> f64 {
    let read = || {
        // SAFETY: RDTSC has no memory effects.
        let t = unsafe { core::arch::x86_64::_rdtsc() };
        (t, std::time::Instant::now())
    };
    let (t0, i0) = read();
    std::thread::sleep(Duration::from_millis(300));
    let (t1, i1) = read();
    t1.wrapping_sub(t0) as f64 / i1.duration_since(i0).as_secs_f64()
}

fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `bench vs-qemu`.
pub async fn run(args: VsQemuArgs) -> anyhow::Result<ExitCode> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.sizes.is_empty() || args.dirty.is_empty() || args.links.is_empty() {
        bail!("give at least one link, size and dirty rate");
    }
    if let Some(bad) = args
        .dirty
        .iter()
        .find(|d| !(d.is_finite() && **d >= 0.0 && **d <= 10_000.0))
    {
        bail!("dirty rate {bad} MB/s: give 0 to 10000");
    }
    lparmover::bench::netns::preflight()
        .context("the comparison runs both sides in network namespaces")?;
    let qemu_bin = qemu::ensure_installed()?;
    let qemu_version = std::process::Command::new(&qemu_bin)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let hvmsim = lparmover::ops::fleetproc::find_hvmsim()?;
    let (workdir, _temp) =
        super::bench::workdir_or_temp(args.workdir.as_ref(), "lparmover-vs-qemu-")?;
    std::fs::create_dir_all(&workdir).with_context(|| format!("create {}", workdir.display()))?;
    let max_mib = args.sizes.iter().copied().max().unwrap_or(1024);
    // Our source and destination guests; QEMU's RAM files in --ram-dir are written once and
    // stay resident on their own.
    let pool = super::bench::reserve_pool((2 * max_mib + 256) << 20);
    if pool.is_none() {
        tokio::task::block_in_place(|| {
            lparmover::bench::touch_host_memory((2 * max_mib + 1024) << 20)
        });
    }
    let tsc = tokio::task::block_in_place(tsc_hz);
    eprintln!("{qemu_version}; guest TSC paced at {:.3} GHz", tsc / 1e9);

    super::bench::interruptible(async {
        let mut settings_seen: Vec<String> = Vec::new();
        let mut note = |s: &QemuSettings| {
            let d = format!("{}: {}", s.mode.name(), s.describe());
            if !settings_seen.contains(&d) {
                settings_seen.push(d);
            }
        };
        let mut calibrations = Vec::new();
        let mut rows = Vec::new();
        for &link in &args.links {
            let pair = NetnsPair::create(link.rate_bits())
                .context("cannot create the namespaces and veth pair")?;
            let probe = if link.rate_bits().is_some() {
                let bits = tokio::task::block_in_place(|| pair.probe_tcp(Duration::from_secs(2)))?;
                eprintln!(
                    "[{}] TCP probe A → B: {:.2} Gbit/s",
                    link.name(),
                    bits / 1e9
                );
                Some(bits / 1e9)
            } else {
                None
            };
            let link_dir = workdir.join(link.name());
            std::fs::create_dir_all(&link_dir)?;
            let env = QemuEnv {
                pair: &pair,
                hvmsim: &hvmsim,
                workdir: &link_dir,
                ram_dir: &args.ram_dir,
                tsc_hz: tsc,
                timeout: Duration::from_secs(args.qemu_timeout),
            };
            let mode = match args.qemu_mode {
                Some(mode) => mode,
                None => {
                    let guest = QemuGuest {
                        memory_mib: args.sizes[0],
                        dirty_mbps: 0.0,
                        working_set_mib: working_set_mib(args.sizes[0]),
                        seed: BENCH_SEED,
                    };
                    let mut tried = Vec::new();
                    for mode in QemuMode::CANDIDATES {
                        let settings = QemuSettings {
                            mode,
                            downtime_limit_ms: args.downtime_limit_ms,
                        };
                        note(&settings);
                        let label = format!("{} calibration", link.name());
                        let result = tokio::task::block_in_place(|| {
                            qemu::run_moves(&env, &guest, &settings, 1, &label)
                        });
                        match result {
                            Ok(mut moves) => tried.push((mode, moves.pop())),
                            Err(e) => {
                                eprintln!("[{label}] {}: {e}", mode.name());
                                tried.push((mode, None));
                            }
                        }
                    }
                    let c = Calibration::new(link, tried, probe);
                    eprintln!(
                        "[{}] QEMU's best mode: {} ({:.2} Gbit/s){}",
                        link.name(),
                        c.best.name(),
                        c.best_wire_gbits,
                        c.unfair
                            .as_ref()
                            .map(|u| format!("; NOT FAIR: {u}"))
                            .unwrap_or_default()
                    );
                    let best = c.best;
                    calibrations.push(c);
                    best
                }
            };
            for &memory_mib in &args.sizes {
                for &dirty_mbps in &args.dirty {
                    let case = VsCase {
                        link,
                        memory_mib,
                        dirty_mbps,
                    };
                    let label = case.label();
                    let guest = QemuGuest {
                        memory_mib,
                        dirty_mbps,
                        working_set_mib: working_set_mib(memory_mib),
                        seed: BENCH_SEED,
                    };
                    let qemu_side = |downtime_limit_ms| {
                        let settings = QemuSettings {
                            mode,
                            downtime_limit_ms,
                        };
                        let r = tokio::task::block_in_place(|| {
                            qemu::run_moves(&env, &guest, &settings, args.reps, &label)
                        });
                        (settings, r)
                    };
                    let (s, result) = qemu_side(args.downtime_limit_ms);
                    note(&s);
                    let qemu = match result {
                        Ok(moves) => SideFigures::of_qemu(&moves, dirty_mbps, None),
                        Err(e) => SideFigures {
                            error: Some(e.to_string()),
                            ..SideFigures::default()
                        },
                    };
                    let qemu_default = if args.qemu_default && args.downtime_limit_ms != 300 {
                        let (s, result) = qemu_side(300);
                        note(&s);
                        Some(match result {
                            Ok(moves) => SideFigures::of_qemu(&moves, dirty_mbps, None),
                            Err(e) => SideFigures {
                                error: Some(e.to_string()),
                                ..SideFigures::default()
                            },
                        })
                    } else {
                        None
                    };
                    let spec = CaseSpec {
                        label: label.clone(),
                        link,
                        memory_mib,
                        dirty_mbps,
                        reps: args.reps,
                        convergence: dirty_mbps >= 200.0,
                        vcpus: Some(1),
                        pretouch: pool.is_none(),
                        rehearse: false,
                    };
                    let case_dir = link_dir.join(format!("ours-{memory_mib}-{dirty_mbps}"));
                    let ours = match super::bench::netns_case(
                        &spec, &pair, &hvmsim, case_dir, false,
                    )
                    .await
                    {
                        Ok(result) => SideFigures::of_ours(&result),
                        Err(e) => SideFigures {
                            error: Some(format!("{e:#}")),
                            ..SideFigures::default()
                        },
                    };
                    rows.push(VsRow {
                        case,
                        qemu_mode: mode,
                        qemu,
                        qemu_default,
                        ours,
                    });
                }
            }
            drop(pair);
        }
        let verdicts = verdicts(&rows, &calibrations);
        let report = VsReport {
            commit: commit(),
            reps: args.reps,
            qemu_settings: settings_seen,
            qemu_version,
            calibrations,
            rows,
            verdicts,
        };
        let json = serde_json::to_string_pretty(&report)?;
        lparmover::fsutil::write_atomic(&args.json, json.as_bytes())
            .with_context(|| format!("write {}", args.json.display()))?;
        print!("{}", render_markdown(&report));
        println!("\n(JSON: {})", args.json.display());
        Ok(ExitCode::SUCCESS)
    })
    .await
}
