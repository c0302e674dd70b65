//! `lparmover restore-config`: restore both HVM configurations of a job's backup set together.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Local;
use lparmover::backup::{self, BackupSet};
use lparmover::dirs::ManagerDirs;
use lparmover::profile::Profile;

/// Arguments of `lparmover restore-config`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Both HVMs of the set are restored together or neither is (the seed warns that restoring one alone can duplicate MAC addresses and WWNs). Every LPAR on both HVMs must be deactivated."
)]
pub struct RestoreArgs {
    /// Job whose backup set to restore.
    #[arg(long, required_unless_present = "list", conflicts_with = "list")]
    pub job: Option<String>,
    /// List the backup sets available.
    #[arg(long)]
    pub list: bool,
    /// Manager data directory (default: $LPARMOVER_DATA or ~/.local/share/lparmover).
    #[arg(long, env = "LPARMOVER_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Whether the command needs the profile (listing does not).
pub fn needs_profile(args: &RestoreArgs) -> bool {
    !args.list
}

/// Lists the sets or restores one.
pub async fn run(profile: Option<&Profile>, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let dirs = match (args.data_dir.as_deref(), profile) {
        (None, Some(profile)) => ManagerDirs::for_profile(profile),
        (flag, _) => ManagerDirs::from_flag(flag),
    };
    let (Some(job), Some(profile)) = (args.job.as_deref(), profile) else {
        let sets = BackupSet::list(&dirs)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&sets)?);
        } else {
            print!("{}", render_list(&dirs, &sets));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let set = BackupSet::load(&dirs, job)?;
    let report = backup::restore_both(profile, &set).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (hvm, lpars) in &report.hvms {
            println!("HVM {hvm}: configuration restored ({lpars} LPARs, all deactivated)");
        }
        println!(
            "Backup set of job {} restored on both HVMs{}.",
            report.job,
            if report.verified {
                "; both match the backup"
            } else {
                "; WARNING: an HVM does not report exactly the backed-up configuration"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_list(dirs: &ManagerDirs, sets: &[BackupSet]) -> String {
    let mut out = String::new();
    if sets.is_empty() {
        let _ = writeln!(out, "No backup set under {}.", dirs.backups().display());
        return out;
    }
    let _ = writeln!(
        out,
        "{:<24}  {:<19}  {:<12}  {:<12}  LPARs",
        "Job", "Taken", "Source", "Destination"
    );
    for set in sets {
        let m = &set.manifest;
        let lpars = m
            .hvms
            .iter()
            .map(|e| e.lpars.to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let _ = writeln!(
            out,
            "{:<24}  {:<19}  {:<12}  {:<12}  {}",
            m.job,
            m.taken_at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            m.source,
            m.destination,
            lpars
        );
    }
    out
}
