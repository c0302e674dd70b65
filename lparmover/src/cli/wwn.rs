//! `lparmover rollback-wwn HVM/LPAR` and `lparmover rollback-wwn [HVM] --list`: the seed's
//! Rollback WWN window (ch. 3 "Rolling back WWNs") on the command line.

use std::process::ExitCode;

use anyhow::bail;
use lparmover::fleetview::LparRef;
use lparmover::jobs::wwn::PendingRollback;
use lparmover::ops::recover::{pending_wwn_rollbacks, rollback_wwn};
use lparmover::profile::Profile;

#[derive(Debug, clap::Args)]
pub struct RollbackWwnArgs {
    /// HVM/LPAR to roll back; with --list, an HVM (or nothing: every HVM).
    pub target: Option<String>,
    /// List the LPARs with WWNs pending rollback (the WWN Status List) instead.
    #[arg(long)]
    pub list: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn line(p: &PendingRollback) -> String {
    let m = &p.mark;
    format!(
        "{}/{} (LPAR {})  job {}  {:?} of a move with {}  since {}  {}",
        p.hvm,
        m.lpar_name,
        m.lpar,
        m.job,
        m.role,
        m.peer,
        m.marked_at.format("%Y-%m-%d %H:%M:%S"),
        m.reason.label()
    )
}

pub async fn run(profile: &Profile, args: RollbackWwnArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        let hvm = match args.target.as_deref() {
            Some(t) if t.contains('/') => bail!("--list takes an HVM, not HVM/LPAR ({t:?})"),
            other => other,
        };
        let (marks, unreachable) = pending_wwn_rollbacks(profile, hvm).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&marks)?);
        } else {
            for p in &marks {
                println!("{}", line(p));
            }
            for (name, e) in &unreachable {
                println!("{name}: not answering ({e})");
            }
            println!("LPARs with WWNs pending rollback: {} LPARs", marks.len());
        }
        return Ok(if unreachable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let Some(target) = args.target else {
        bail!(
            "name the LPAR: `lparmover rollback-wwn HVM/LPAR` (or list them with `lparmover rollback-wwn [HVM] --list`)"
        );
    };
    let target: LparRef = target.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let report = rollback_wwn(profile, &target).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("LPAR {}/{}: {}", report.hvm, report.lpar, report.detail);
        println!("Rollback completed!");
    }
    Ok(ExitCode::SUCCESS)
}
