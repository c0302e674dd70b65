//! Command-line parsing and dispatch.

mod bench;
mod check;
mod connectivity;
mod demo;
mod history;
mod hvm;
mod migrate;
mod path;
mod recover;
mod render;
mod restore;
mod san;
mod vsqemu;
mod wwn;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lparmover::fleetview::LparRef;
use lparmover::profile::Profile;
use tracing_subscriber::EnvFilter;

/// Moves logical partitions between server blades, live or cold.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Profile of registered HVMs (default: $LPARMOVER_PROFILE or ~/.local/state/lparmover/profile.toml,
    /// which `hvmsim fleet` writes).
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show every chassis, blade and LPAR of the fleet.
    Fleet {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// LPAR commands.
    Lpar {
        #[command(subcommand)]
        command: LparCommand,
    },
    /// Check whether an LPAR can migrate to an HVM (the Migration Config Viewer).
    Check(check::CheckArgs),
    /// Move an LPAR to another blade (live: Concurrent Maintenance).
    Migrate(migrate::MigrateArgs),
    /// Rehearse a live move: checks, reservations and a short real transfer, then release all.
    Rehearse(RehearseArgs),
    /// Start the embedded demo fleet, show it, and stop it again.
    Demo(demo::DemoArgs),
    /// Benchmarks (live moves between real blades over loopback and shaped links).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Migration history: every migration, or one LPAR's Now / old1 / … oldN.
    History(history::HistoryArgs),
    /// Restore both HVM configurations backed up for a job, together (or list the backup sets).
    RestoreConfig(restore::RestoreArgs),
    /// Settle moves a manager did not finish, recover LPARs requiring recovery, roll back the
    /// WWNs that can be rolled back safely.
    Recover(recover::RecoverArgs),
    /// Roll back the WWNs a failed live move left (HVM/LPAR), or list them (`[HVM] --list`).
    RollbackWwn(wwn::RollbackWwnArgs),
    /// SAN security: the WWPN / migration-WWPN registration of every vFC, and an LPAR's
    /// migration WWPNs registered or removed in one command.
    Wwn {
        #[command(subcommand)]
        command: san::WwnCommand,
    },
    /// Migration Path Setting: list, add/replace or remove an HVM's migration paths.
    Path {
        #[command(subcommand)]
        command: path::PathCommand,
    },
    /// Register HVMs by address (certificate pinned on confirmation), list or remove them.
    Hvm {
        #[command(subcommand)]
        command: hvm::HvmCommand,
    },
    /// Connectivity Test: handshake, latency, throughput and MTU over two HVMs' migration paths.
    ConnectivityTest(connectivity::ConnectivityArgs),
}

#[derive(Debug, clap::Args)]
struct RehearseArgs {
    /// The LPAR: HVM/LPAR.
    #[arg(long)]
    from: LparRef,
    /// Destination HVM.
    #[arg(long)]
    to: String,
    /// Downtime limit the real move would use.
    #[arg(long, value_parser = migrate::parse_duration, default_value = "50ms")]
    downtime_limit: std::time::Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum LparCommand {
    /// Show one LPAR in detail.
    Show {
        /// HVM/LPAR, by number or name (e.g. ch1-b1/web-01).
        lpar: LparRef,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Activate a deactivated LPAR (its guest starts), e.g. after a Shutdown-mode move whose
    /// activation failed.
    Activate {
        /// HVM/LPAR, by number or name (e.g. ch1-b2/web-01).
        lpar: LparRef,
    },
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LPARMOVER_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whoever runs this command, through the CLI (recorded in the history of what it does).
fn actor() -> lparmover::history::Actor {
    lparmover::history::Actor::of_this_process(lparmover::history::Origin::Cli)
}

fn load_profile(path: Option<PathBuf>) -> anyhow::Result<Profile> {
    let path = path.unwrap_or_else(Profile::default_path);
    Ok(Profile::load(&path)?)
}

async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Migrate(args) = &mut cli.command {
        args.settle_return_mode(cli.profile.as_deref())?;
    }
    match cli.command {
        Command::Fleet { json } => {
            let profile = load_profile(cli.profile)?;
            let snapshot = lparmover::ops::inventory(&profile).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", render::fleet(&snapshot));
            }
            let unreachable = snapshot.hvms.iter().any(|h| h.error.is_some());
            Ok(if unreachable {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Lpar {
            command: LparCommand::Show { lpar, json },
        } => {
            let profile = load_profile(cli.profile)?;
            let view = lparmover::ops::lpar(&profile, &lpar).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render::lpar(&lpar.hvm, &view));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lpar {
            command: LparCommand::Activate { lpar },
        } => {
            let profile = load_profile(cli.profile)?;
            let view = lparmover::ops::activate(&profile, &lpar).await?;
            println!(
                "{}/{} (LPAR {}) is {}",
                lpar.hvm,
                view.lpar.name,
                view.lpar.number,
                view.lpar.status.label()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Hvm { command } => {
            let path = cli.profile.unwrap_or_else(Profile::default_path);
            hvm::run(&path, command).await
        }
        Command::Check(args) => {
            let profile = load_profile(cli.profile)?;
            check::run(&profile, args).await
        }
        Command::Recover(args) => {
            let profile = load_profile(cli.profile)?;
            recover::run(&profile, args).await
        }
        Command::RollbackWwn(args) => {
            let profile = load_profile(cli.profile)?;
            wwn::run(&profile, args).await
        }
        Command::Migrate(args) if args.mode() == lparmover::model::Mode::Shutdown => {
            let json = args.json;
            let report = migrate::run_cold(cli.profile, args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "LPAR {} moved {} → {} (LPAR {}, processor group {} there) in Shutdown mode in {:.1} s{}{}",
                    report.lpar,
                    report.source,
                    report.destination,
                    report.dest_number,
                    report.processor_group,
                    report.total_ms as f64 / 1000.0,
                    if report.shut_down {
                        "; guest OS shut down remotely"
                    } else {
                        ""
                    },
                    if report.activated {
                        "; activated on the destination"
                    } else {
                        ""
                    }
                );
                println!("Migration completed!");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rehearse(args) => {
            let profile = load_profile(cli.profile)?;
            let options = lparmover::api::MoveOptions {
                downtime_limit_ms: u64::try_from(args.downtime_limit.as_millis())
                    .unwrap_or(50)
                    .max(1),
                ..Default::default()
            };
            let report =
                lparmover::ops::rehearse(&profile, &actor(), &args.from, &args.to, &options)
                    .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "Rehearsal of LPAR {} ({} MB) to {}: job {}",
                    report.lpar,
                    report.memory_size / 1_000_000,
                    args.to,
                    report.job
                );
                println!(
                    "  sampled            {:.0} MB over the migration path",
                    report.sampled_bytes as f64 / 1e6
                );
                println!(
                    "  throughput         {:.0} MB/s of memory (wire/memory {:.2})",
                    report.throughput_mbps, report.wire_ratio
                );
                println!("  guest dirty rate   {:.1} MB/s", report.dirty_rate_mbps);
                println!("  predicted total    {:.1} s", report.predicted_total_s);
                println!(
                    "  predicted pause    {:.0} ms{}",
                    report.predicted_suspension_ms,
                    if report.converges_unthrottled {
                        ""
                    } else {
                        " (needs auto-converge throttling)"
                    }
                );
                for w in &report.warnings {
                    println!("  warning            {w}");
                }
                println!("Everything was released; the LPAR never stopped.");
                println!("Migration completed!");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let json = args.json;
            let report = migrate::run(cli.profile, args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                migrate::print_report(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench { command } => bench::run(command).await,
        Command::History(args) => {
            // A profile naming a data directory keeps its fleet's history there.
            let profile = load_profile(cli.profile).ok();
            history::run(args, profile.as_ref())
        }
        Command::Path { command } => path::run(&load_profile(cli.profile)?, command).await,
        Command::Wwn { command } => san::run(&load_profile(cli.profile)?, command).await,
        Command::ConnectivityTest(args) => {
            connectivity::run(&load_profile(cli.profile)?, args).await
        }
        Command::RestoreConfig(args) => {
            let profile = restore::needs_profile(&args)
                .then(|| load_profile(cli.profile))
                .transpose()?;
            restore::run(profile.as_ref(), args).await
        }
    }
}
