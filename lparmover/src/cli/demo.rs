//! `lparmover demo`: the whole product on one machine with nothing set up by hand.
//!
//! Starts the embedded demo fleet (`assets/fleets/demo.toml`) as `hvmsim` child processes in a
//! temporary directory, shows its inventory through the management API, and stops the fleet.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use lparmover::api::MoveOptions;
use lparmover::fleetview::FleetSnapshot;
use lparmover::jobs::{LiveMoveRequest, live_move};
use lparmover::model::fleet::DEMO_FLEET_TOML;
use lparmover::profile::Profile;
use tokio_util::sync::CancellationToken;

use super::render;

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the fleet's state directory here instead of a temporary one.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Print the inventory as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only show the fleet; skip the live move.
    #[arg(long)]
    pub no_move: bool,
}

/// Stops the fleet when dropped, whatever happened.
struct FleetChild(Child);

impl Drop for FleetChild {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill() on the pid of our own child with a valid signal has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..500 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds the hvmsim executable: `$LPARMOVER_HVMSIM`, next to this executable, or (when run through
/// `cargo run`) built on the spot with the same profile.
fn find_hvmsim() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LPARMOVER_HVMSIM") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("cannot locate the lparmover executable")?;
    let dir = me
        .parent()
        .context("lparmover executable has no directory")?;
    let sibling = dir.join("hvmsim");
    if let Some(cargo) = std::env::var_os("CARGO") {
        // Under `cargo run` the sibling may be missing or stale: let cargo bring it up to date.
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        eprintln!("building hvmsim ({profile} profile)…");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "hvmsim", "--profile", profile])
            .status()
            .context("cannot run cargo to build hvmsim")?;
        if !status.success() {
            bail!("building hvmsim failed ({status})");
        }
    }
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "hvmsim not found next to {}; build it with `cargo build --release -p hvmsim` or set LPARMOVER_HVMSIM",
        me.display()
    )
}

fn start_fleet(hvmsim: &Path, workdir: &Path) -> anyhow::Result<(FleetChild, PathBuf)> {
    let fleet_file = workdir.join("demo.toml");
    std::fs::write(&fleet_file, DEMO_FLEET_TOML)?;
    let profile = workdir.join("profile.toml");
    let mut command = Command::new(hvmsim);
    command
        .arg("fleet")
        .arg(&fleet_file)
        .arg("--state-dir")
        .arg(workdir.join("state"))
        .arg("--profile")
        .arg(&profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(
            workdir.join("hvmsim.log"),
        )?));
    // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and touches no
    // shared memory. The fleet then dies with us even if we are killed.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = FleetChild(
        command
            .spawn()
            .with_context(|| format!("cannot start {}", hvmsim.display()))?,
    );
    let stdout = child.0.stdout.take().context("no stdout from hvmsim")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("READY ") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let log = std::fs::read_to_string(workdir.join("hvmsim.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        bail!(
            "the demo fleet did not come up; last lines of {}:\n{}",
            workdir.join("hvmsim.log").display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok((child, profile))
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let hvmsim = find_hvmsim()?;
    let temp;
    let workdir = match &args.workdir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    eprintln!(
        "starting the demo fleet (4 blades, 7 LPARs) from the embedded assets/fleets/demo.toml …"
    );
    let started = std::time::Instant::now();
    let hvmsim_clone = hvmsim.clone();
    let workdir_clone = workdir.clone();
    let (fleet, profile_path) =
        tokio::task::spawn_blocking(move || start_fleet(&hvmsim_clone, &workdir_clone)).await??;
    eprintln!("fleet up in {:.1} s", started.elapsed().as_secs_f64());
    let profile = Profile::load(&profile_path)?;
    let snapshot = FleetSnapshot::gather(&profile).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else {
        print!("{}", render::fleet(&snapshot));
    }
    if let Some(down) = snapshot.hvms.iter().find(|h| h.error.is_some()) {
        bail!("blade {} did not answer", down.name);
    }
    if !args.no_move {
        println!();
        println!(
            "Live move (Concurrent Maintenance): ch1-b1/web-01 → ch1-b2, downtime limit 50 ms"
        );
        let request = LiveMoveRequest {
            source: "ch1-b1/web-01".parse().map_err(anyhow::Error::msg)?,
            destination: "ch1-b2".into(),
            dest_number: None,
            options: MoveOptions::default(),
        };
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let result = live_move(
            &profile,
            &request,
            |p| bar.set_message(p.stage.display()),
            CancellationToken::new(),
        )
        .await;
        bar.finish_and_clear();
        let report = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            super::migrate::print_report(&report);
            println!();
            print!("{}", render::fleet(&FleetSnapshot::gather(&profile).await));
        }
    }
    tokio::task::spawn_blocking(move || drop(fleet)).await?;
    eprintln!("demo fleet stopped");
    Ok(())
}
