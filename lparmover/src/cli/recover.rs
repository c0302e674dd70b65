//! `lparmover recover [HVM/LPAR]`: settles moves a manager did not finish, then recovers LPARs
//! left "requires recovery" (the seed's Recovery Execute), then rolls back the WWNs that can be
//! rolled back safely (`lparmover::jobs::wwn`: the other HVM of the move answers and holds
//! nothing of it any more); marks that cannot be rolled back yet stay and are reported.

use std::process::ExitCode;

use lparmover::dirs::ManagerDirs;
use lparmover::fleetview::LparRef;
use lparmover::jobs::journal::Outcome;
use lparmover::jobs::{
    LparRecovery, RecoveryReport, WwnRollbackReport, recover_lpars, recover_unfinished,
    rollback_all,
};
use lparmover::profile::Profile;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Only this LPAR (HVM/LPAR); unfinished jobs are settled in any case.
    pub lpar: Option<LparRef>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Recovered {
    jobs: Vec<RecoveryReport>,
    lpars: Vec<LparRecovery>,
    wwn_rollbacks: Vec<WwnRollbackReport>,
}

fn job_line(r: &RecoveryReport) -> String {
    let what = match r.outcome {
        Some(Outcome::Completed) => "completed",
        Some(Outcome::RolledBack) => "rolled back",
        Some(Outcome::NeedsRecovery) => "needs recovery",
        None => "waiting",
    };
    format!(
        "job {} ({} {} → {}): {what}: {}",
        r.job, r.lpar, r.source, r.destination, r.detail
    )
}

/// Run by every command that starts a job: a manager killed earlier left these behind.
pub async fn settle_unfinished_first(profile: &Profile) {
    match recover_unfinished(profile, &ManagerDirs::for_profile(profile)).await {
        Ok(reports) => {
            for r in &reports {
                eprintln!("recovered an unfinished job: {}", job_line(r));
            }
        }
        Err(e) => eprintln!("warning: unfinished jobs could not be read: {e}"),
    }
}

pub async fn run(profile: &Profile, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let dirs = ManagerDirs::for_profile(profile);
    let jobs = recover_unfinished(profile, &dirs).await?;
    let lpars = recover_lpars(profile, args.lpar.as_ref()).await;
    let wwns = rollback_all(profile, &dirs, args.lpar.as_ref()).await;
    let settled = jobs.iter().all(|j| j.outcome.is_some())
        && lpars.iter().all(|l| l.recovered)
        && wwns.iter().all(|w| w.rolled_back);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Recovered {
                jobs: jobs.clone(),
                lpars: lpars.clone(),
                wwn_rollbacks: wwns.clone(),
            })?
        );
    } else {
        for j in &jobs {
            println!("{}", job_line(j));
        }
        for l in &lpars {
            println!("LPAR {}/{}: {}", l.hvm, l.lpar, l.detail);
        }
        for w in &wwns {
            println!("LPAR {}/{}: {}", w.hvm, w.lpar, w.detail);
        }
        if jobs.is_empty() && lpars.is_empty() && wwns.is_empty() {
            println!(
                "Nothing to recover: no unfinished jobs, no LPARs requiring recovery, no WWNs pending rollback."
            );
        }
    }
    Ok(if settled {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
