//! `lparmover demo`: the whole product on one machine with nothing set up by hand.
//!
//! Starts the embedded demo fleet (`assets/fleets/demo.toml`) as `hvmsim` child processes in a
//! temporary directory, shows its inventory through the management API, and stops the fleet.

use std::path::PathBuf;

use anyhow::bail;
use lparmover::api::MoveOptions;
use lparmover::model::fleet::DEMO_FLEET_TOML;
use lparmover::ops::fleetproc::{FleetDirs, FleetProcess, find_hvmsim};
use lparmover::ops::moves::{self, MoveControl, MoveEvent};
use lparmover::ops::{self, Destination, MoveTarget};
use lparmover::profile::Profile;

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
    let dirs = FleetDirs::in_workdir(&workdir, "demo", DEMO_FLEET_TOML)?;
    let fleet = tokio::task::spawn_blocking(move || FleetProcess::start(&hvmsim, dirs)).await??;
    eprintln!("fleet up in {:.1} s", started.elapsed().as_secs_f64());
    let profile = Profile::load(&fleet.dirs().profile)?;
    let snapshot = ops::inventory(&profile).await;
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
        let target = MoveTarget::Given {
            source: "ch1-b1/web-01".parse().map_err(anyhow::Error::msg)?,
            destination: Destination::auto("ch1-b2"),
        };
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let result = moves::live(
            &profile,
            &super::actor(),
            &target,
            MoveOptions::default(),
            &MoveControl::new(),
            |event| {
                if let MoveEvent::Progress(p) = event {
                    bar.set_message(p.stage.display());
                }
            },
        )
        .await;
        bar.finish_and_clear();
        let report = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            super::migrate::print_report(&report);
            println!();
            print!("{}", render::fleet(&ops::inventory(&profile).await));
        }
    }
    tokio::task::spawn_blocking(move || drop(fleet)).await?;
    eprintln!("demo fleet stopped");
    Ok(())
}
