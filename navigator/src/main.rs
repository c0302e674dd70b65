//! `navigator`: the operator's desktop app. With no options it starts the embedded demo fleet
//! (kept across runs) and opens on it; with `--profile` it opens on a fleet started elsewhere.
//! Without a display it says so and runs the headless demo instead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use lparmover::model::fleet::DEMO_FLEET_TOML;
use lparmover::ops::fleetproc::{
    FleetDirs, FleetProcess, demo_workdir, find_hvmsim, find_lparmover,
};
use lparmover::profile::Profile;
use navigator::NavigatorApp;
use tracing_subscriber::EnvFilter;

/// The operator's desktop app for lparmover.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Open on the fleet of this profile (started elsewhere) instead of the embedded demo fleet.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Where the embedded demo fleet keeps its state between runs.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Walk through the main procedures, save a screenshot of each into DIR, and quit (the
    /// README's screenshots; run under a display, e.g. `xvfb-run`).
    #[arg(long, value_name = "DIR")]
    tour: Option<PathBuf>,
    /// Frame benchmark: frame times and refresh times on FLEET (started here) with some blades
    /// frozen, against the demo fleet; prints PASS / FAIL. Needs no display.
    #[arg(long, value_name = "FLEET")]
    bench_frames: Option<PathBuf>,
    /// Frame benchmark: how many of FLEET's blades to freeze (SIGSTOP).
    #[arg(long, default_value_t = 10)]
    freeze: usize,
    /// Frame benchmark: seconds of frames per fleet.
    #[arg(long, default_value_t = 20)]
    bench_seconds: u64,
    /// Serve /metrics (Prometheus text format: the moves this app drives, policy runs) and
    /// /healthz over plain HTTP on this loopback address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Let --metrics listen outside 127.0.0.0/8 and ::1 (no token: anyone who can reach the
    /// address reads the figures).
    #[arg(long, requires = "metrics")]
    metrics_allow_remote: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("NAVIGATOR_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn headless_demo() -> anyhow::Result<ExitCode> {
    let cli = find_lparmover()?;
    let status = std::process::Command::new(&cli)
        .arg("demo")
        .status()
        .with_context(|| format!("cannot run {}", cli.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(fleet) = &args.bench_frames {
        let pass = navigator::bench::run(&find_hvmsim()?, fleet, args.freeze, args.bench_seconds)?;
        return Ok(if pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !has_display() {
        eprintln!(
            "navigator: no display (DISPLAY and WAYLAND_DISPLAY are unset); running the headless demo (`lparmover demo`) instead"
        );
        return headless_demo();
    }
    if let Some(addr) = args.metrics {
        serve_metrics(addr, args.metrics_allow_remote)?;
    }
    let fleet: Arc<Mutex<Option<FleetProcess>>> = Arc::new(Mutex::new(None));
    let (profile, profile_path) = match &args.profile {
        Some(path) => (Profile::load(path)?, path.clone()),
        None => {
            let workdir = args.workdir.clone().unwrap_or_else(demo_workdir);
            eprintln!(
                "starting the embedded demo fleet (state kept in {}) …",
                workdir.display()
            );
            let dirs = FleetDirs::in_workdir(&workdir, "demo", DEMO_FLEET_TOML)?;
            let started = FleetProcess::start(&find_hvmsim()?, dirs)?;
            let path = started.dirs().profile.clone();
            let profile = Profile::load(&path)?;
            if let Ok(mut slot) = fleet.lock() {
                *slot = Some(started);
            }
            (profile, path)
        }
    };
    stop_fleet_on_signals(fleet.clone());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("lparmover navigator")
            .with_inner_size([1280.0, 820.0]),
        ..Default::default()
    };
    let tour = args.tour.clone();
    if let Some(dir) = &tour {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let result = eframe::run_native(
        "lparmover navigator",
        options,
        Box::new(move |cc| {
            let app = NavigatorApp::new(&cc.egui_ctx, profile, profile_path)?;
            Ok(Box::new(match tour {
                Some(dir) => app.with_tour(&cc.egui_ctx, dir),
                None => app,
            }))
        }),
    );
    // The window closed: stop the demo fleet (its blades power their guests off).
    if let Ok(mut slot) = fleet.lock() {
        slot.take();
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!(
                "navigator: the window could not open ({e}); running the headless demo instead"
            );
            headless_demo()
        }
    }
}

/// `/metrics` and `/healthz` on `addr` from a thread of their own (the window's thread never
/// waits for a scrape). Binds before it returns, so a taken port or a refused address is an
/// error before the window opens.
fn serve_metrics(addr: std::net::SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
    let listener = lparmover::metrics::http::bind(addr, allow_remote)?;
    let bound = listener.local_addr()?;
    // The policy series exist (at zero) before the first scrape.
    policy::metrics::policy();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the metrics endpoint's runtime")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let metrics = lparmover::metrics::manager().clone();
            if let Err(e) = runtime.block_on(lparmover::metrics::http::serve(
                listener,
                metrics,
                "navigator",
            )) {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        })
        .context("cannot start the metrics endpoint's thread")?;
    eprintln!("navigator: metrics on http://{bound}/metrics");
    Ok(())
}

/// Ctrl-C and SIGTERM stop the demo fleet before the process ends, so nothing is left running.
fn stop_fleet_on_signals(fleet: Arc<Mutex<Option<FleetProcess>>>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("navigator: stopping the demo fleet");
        if let Ok(mut slot) = fleet.lock() {
            slot.take();
        }
        std::process::exit(130);
    });
}
