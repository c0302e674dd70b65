//! `lparmover recover [HVM/LPAR]`: settles moves a manager did not finish, then recovers LPARs
//! left "requires recovery" (the seed's Recovery Execute), then rolls back the WWNs that can be
//! rolled back safely; marks that cannot be rolled back yet stay and are reported. The workflow
//! is `lparmover::ops::recover`; this only prints.

use std::process::ExitCode;

use lparmover::fleetview::LparRef;
use lparmover::ops::recover::recover_all;
use lparmover::profile::Profile;

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Only this LPAR (HVM/LPAR); unfinished jobs are settled in any case.
    pub lpar: Option<LparRef>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(profile: &Profile, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let summary = recover_all(profile, args.lpar.as_ref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for line in summary.lines() {
            println!("{line}");
        }
    }
    Ok(if summary.settled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
