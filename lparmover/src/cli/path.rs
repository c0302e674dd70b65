//! `lparmover path list|set|remove`: the seed's Migration Path Setting window on the command
//! line. Parsing and printing only; the workflow is `lparmover::paths`.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::Subcommand;
use lparmover::api::{HvmClient, MigrationPaths};
use lparmover::model::{MigrationPath, NicSegment};
use lparmover::profile::Profile;

#[derive(Debug, Subcommand)]
pub enum PathCommand {
    /// List an HVM's migration paths.
    List {
        /// HVM name.
        hvm: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a migration path, or replace the one of the same name.
    Set {
        /// HVM name.
        hvm: String,
        /// Path name (letters, digits, '-', '_', '.'; at most 32).
        #[arg(long)]
        name: String,
        /// Shared NIC segment, e.g. 1b.
        #[arg(long)]
        segment: NicSegment,
        /// IPv4 address.
        #[arg(long)]
        ip: Ipv4Addr,
        /// Subnet prefix length (8..30), e.g. 24 for 255.255.255.0.
        #[arg(long)]
        prefix: u8,
        /// VLAN ID (1..4094); leave out for none.
        #[arg(long)]
        vlan: Option<u16>,
        /// Make this the primary path (the one migrations use).
        #[arg(long)]
        primary: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a migration path (the primary one only when it is the last).
    Remove {
        /// HVM name.
        hvm: String,
        /// Path name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print(paths: &MigrationPaths, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(paths)?);
        return Ok(());
    }
    println!("HVM {}  management {}", paths.hvm, paths.management.ip);
    if paths.paths.is_empty() {
        println!("  no migration path (the HVM takes part in no live move)");
    } else {
        println!(
            "  {:<7} {:<20} {:<7} {:<16} {:<16} VLAN",
            "primary", "name", "segment", "IP address", "subnet mask"
        );
    }
    for p in &paths.paths {
        println!(
            "  {:<7} {:<20} {:<7} {:<16} {:<16} {}",
            if p.primary { "*" } else { "" },
            p.name,
            p.segment.to_string(),
            p.ip.to_string(),
            format!("{} (/{})", p.subnet_mask(), p.prefix),
            p.vlan.map_or("none".to_owned(), |v| v.to_string())
        );
    }
    if let Some(addr) = paths.listening {
        println!("  migration endpoint listening on {addr}");
    }
    Ok(())
}

pub async fn run(profile: &Profile, command: PathCommand) -> anyhow::Result<ExitCode> {
    let owner = lparmover::jobs::leases::owner();
    match command {
        PathCommand::List { hvm, json } => {
            let client = HvmClient::new(profile.hvm(&hvm)?)?;
            print(&lparmover::paths::list(&client).await?, json)?;
        }
        PathCommand::Set {
            hvm,
            name,
            segment,
            ip,
            prefix,
            vlan,
            primary,
            json,
        } => {
            let client = HvmClient::new(profile.hvm(&hvm)?)?;
            let path = MigrationPath {
                name,
                primary,
                segment,
                ip,
                prefix,
                vlan,
            };
            print(
                &lparmover::paths::set_path(&client, &owner, path).await?,
                json,
            )?;
        }
        PathCommand::Remove { hvm, name, json } => {
            let client = HvmClient::new(profile.hvm(&hvm)?)?;
            print(
                &lparmover::paths::remove_path(&client, &owner, &name).await?,
                json,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
