//! `lparmover wwn …`: the WWN Setting window on the command line (seed ch. 3
//! "Registering/removing migration WWN"): the registration of every vFC, and an LPAR's
//! migration WWPNs registered or removed in one command.

use std::process::ExitCode;

use lparmover::fleetview::LparRef;
use lparmover::ops::storage::{RegistrationStep, register_migration, remove_migration, wwn_status};
use lparmover::profile::Profile;
use lparmover::storage::export_csv;

#[derive(Debug, clap::Subcommand)]
pub enum WwnCommand {
    /// Register the migration WWPNs of HVM/LPAR to the host groups of their WWPNs (refused,
    /// changing nothing, when a WWPN of the same vfcID is not registered).
    RegisterMigration {
        /// HVM/LPAR, e.g. ch1-b1/db-01.
        target: LparRef,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the migration WWPNs of HVM/LPAR from the host groups of their WWPNs.
    RemoveMigration {
        /// HVM/LPAR.
        target: LparRef,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The WWPN and migration-WWPN registration of every vFC (tables 7-4 / 7-5).
    Status {
        /// Only this HVM.
        #[arg(long)]
        hvm: Option<String>,
        /// Print CSV (the WWN Setting window's Export CSV) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_steps(verb: &str, steps: &[RegistrationStep]) {
    for s in steps {
        let what = if s.changed { verb } else { "already as asked" };
        println!(
            "vFC {}  migration WWPN {}  {} {}: {what}",
            s.port, s.migration_wwpn, s.array, s.host_group
        );
    }
    let changed = steps.iter().filter(|s| s.changed).count();
    println!("{changed} of {} host group entries changed.", steps.len());
}

pub async fn run(profile: &Profile, command: WwnCommand) -> anyhow::Result<ExitCode> {
    match command {
        WwnCommand::RegisterMigration { target, json } => {
            let steps = register_migration(profile, &target).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                print_steps("registered", &steps);
            }
        }
        WwnCommand::RemoveMigration { target, json } => {
            let steps = remove_migration(profile, &target).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                print_steps("removed", &steps);
            }
        }
        WwnCommand::Status { hvm, csv, json } => {
            let status = wwn_status(profile, hvm.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else if csv {
                print!("{}", export_csv(&status.rows));
            } else {
                for r in &status.rows {
                    println!(
                        "{}/{}  vFC {}  vfcID {}  WWPN {} {}  migration WWPN {} {}{}",
                        r.hvm,
                        r.lpar_name,
                        r.port,
                        r.vfc_id.get(),
                        r.wwpn,
                        r.wwpn_state.label(),
                        r.migration_wwpn,
                        r.migration_state.label(),
                        r.unknown_because
                            .as_ref()
                            .map(|u| format!("  ({u})"))
                            .unwrap_or_default()
                    );
                }
            }
            for (h, e) in &status.unreachable {
                eprintln!("{h}: not answering ({e})");
            }
            if !status.unreachable.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
