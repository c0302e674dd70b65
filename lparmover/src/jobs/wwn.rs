//! Rolling back WWNs (the seed's ch. 3 "Rolling back WWNs", Rollback WWN window): the manager's
//! side of the marks recovery leaves on HVMs (`crate::api::WwnRollback`, written by
//! [`super::recovery`]).
//!
//! Rolling back one mark (HVM H, LPAR L, job J, the other HVM P):
//!
//! ```text
//! 1. J still unfinished in the journal → settle it first (recovery); a swap clears the mark
//! 2. ask P about J: unreachable → refuse (P may be logged in with L's migration WWPNs)
//!      P is J's destination, not resumed → abort J there (its leftover definition and its
//!        migration-WWPN logins go)
//!      P resumed L, or P (the source) still holds L → refuse: `lparmover recover` settles J
//! 3. P has none of L's WWPNs (or, when H was the source, migration WWPNs) logged in, else refuse
//! 4. H executes the mark: L's vFCs log in with L's WWPNs, the mark is cleared (durably)
//! ```
//!
//! `lparmover rollback-wwn HVM/LPAR` does this for one LPAR; `lparmover recover` for every mark it
//! can ([`rollback_all`]), leaving those whose other HVM does not answer yet.

use serde::Serialize;
use tracing::{info, warn};

use super::journal::{self, JobJournal};
use super::recovery;
use crate::api::{ClientError, GuestHold, HvmClient, Phase, RecordPhase, Role, WwnRollback};
use crate::dirs::ManagerDirs;
use crate::emg::Emg;
use crate::fleetview::LparRef;
use crate::profile::{Profile, ProfileError};

/// Why WWNs could not be rolled back.
#[derive(Debug, thiserror::Error)]
pub enum WwnError {
    /// An HVM is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A call to an HVM failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The journal of the move could not be read.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// Settling the move first failed.
    #[error(transparent)]
    Recovery(#[from] recovery::RecoveryError),
    /// The LPAR has no WWNs pending rollback.
    #[error(
        "LPAR {lpar} on {hvm} has no WWNs pending rollback (`lparmover rollback-wwn {hvm} --list`)"
    )]
    NotMarked {
        /// HVM.
        hvm: String,
        /// LPAR as asked for.
        lpar: String,
    },
    /// Rolling back now could leave a WWPN active twice.
    #[error("WWNs of {lpar} on {hvm} not rolled back: {why}")]
    NotYet {
        /// HVM.
        hvm: String,
        /// LPAR name.
        lpar: String,
        /// What has to happen first.
        why: String,
    },
}

/// One mark as listed (the Rollback WWN window's WWN Status List).
#[derive(Clone, Debug, Serialize)]
pub struct PendingRollback {
    /// HVM holding the mark.
    pub hvm: String,
    /// The mark.
    pub mark: WwnRollback,
}

/// What rolling back one mark did.
#[derive(Clone, Debug, Serialize)]
pub struct WwnRollbackReport {
    /// HVM.
    pub hvm: String,
    /// LPAR name.
    pub lpar: String,
    /// Job that left the mark.
    pub job: String,
    /// Whether the mark is gone.
    pub rolled_back: bool,
    /// What happened, in words.
    pub detail: String,
}

/// Every mark of the profile's HVMs (or of `hvm`), and the HVMs that did not answer.
pub async fn pending(
    profile: &Profile,
    hvm: Option<&str>,
) -> Result<(Vec<PendingRollback>, Vec<(String, ClientError)>), WwnError> {
    if let Some(name) = hvm {
        profile.hvm(name)?;
    }
    let tasks = profile
        .hvms
        .iter()
        .filter(|h| hvm.is_none_or(|n| n == h.name))
        .map(|h| async move {
            let result = match HvmClient::new(h) {
                Ok(client) => client.wwn_rollbacks().await,
                Err(e) => Err(e),
            };
            (h.name.clone(), result)
        });
    let mut marks = Vec::new();
    let mut unreachable = Vec::new();
    for (name, result) in futures::future::join_all(tasks).await {
        match result {
            Ok(list) => marks.extend(list.into_iter().map(|mark| PendingRollback {
                hvm: name.clone(),
                mark,
            })),
            Err(e) => unreachable.push((name, e)),
        }
    }
    Ok((marks, unreachable))
}

/// `lparmover rollback-wwn HVM/LPAR`: rolls back the WWNs of one LPAR (module docs).
pub async fn rollback_wwn(
    profile: &Profile,
    dirs: &ManagerDirs,
    target: &LparRef,
) -> Result<WwnRollbackReport, WwnError> {
    let client = HvmClient::new(profile.hvm(&target.hvm)?)?;
    let marks = client.wwn_rollbacks().await?;
    let asked = match &target.lpar {
        crate::fleetview::LparSelector::Number(n) => n.to_string(),
        crate::fleetview::LparSelector::Name(n) => n.clone(),
    };
    let mark = marks
        .into_iter()
        .find(|m| match &target.lpar {
            crate::fleetview::LparSelector::Number(n) => m.lpar == *n,
            crate::fleetview::LparSelector::Name(n) => m.lpar_name.as_str() == n,
        })
        .ok_or_else(|| WwnError::NotMarked {
            hvm: target.hvm.clone(),
            lpar: asked,
        })?;
    roll_back(profile, dirs, &client, mark).await
}

/// Rolls back every mark that can be rolled back safely now (on `only_hvm`, or everywhere);
/// marks whose other HVM does not answer yet stay, reported as not rolled back.
pub async fn rollback_all(
    profile: &Profile,
    dirs: &ManagerDirs,
    only_hvm: Option<&str>,
) -> Vec<WwnRollbackReport> {
    let mut reports = Vec::new();
    let Ok((marks, _unreachable)) = pending(profile, only_hvm).await else {
        return reports;
    };
    for PendingRollback { hvm, mark } in marks {
        let (lpar, job) = (mark.lpar_name.to_string(), mark.job.clone());
        let result = match profile
            .hvm(&hvm)
            .map_err(WwnError::from)
            .and_then(|h| HvmClient::new(h).map_err(WwnError::from))
        {
            Ok(client) => roll_back(profile, dirs, &client, mark).await,
            Err(e) => Err(e),
        };
        reports.push(result.unwrap_or_else(|e| {
            warn!(%hvm, %lpar, error = %e, "WWNs not rolled back yet");
            WwnRollbackReport {
                hvm,
                lpar,
                job,
                rolled_back: false,
                detail: e.to_string(),
            }
        }));
    }
    reports
}

async fn roll_back(
    profile: &Profile,
    dirs: &ManagerDirs,
    client: &HvmClient,
    mark: WwnRollback,
) -> Result<WwnRollbackReport, WwnError> {
    let hvm = client.name().to_owned();
    let not_yet = |why: String| WwnError::NotYet {
        hvm: hvm.clone(),
        lpar: mark.lpar_name.to_string(),
        why,
    };
    let done = |detail: String| WwnRollbackReport {
        hvm: hvm.clone(),
        lpar: mark.lpar_name.to_string(),
        job: mark.job.clone(),
        rolled_back: true,
        detail,
    };

    // 1. The move itself first, when a manager left it unfinished.
    if let Some(path) = journal::unfinished(dirs)?
        .into_iter()
        .find(|p| p.file_stem().is_some_and(|s| s == mark.job.as_str()))
    {
        let Some(journal) = JobJournal::adopt(&path)? else {
            return Err(not_yet(format!(
                "job {} is being run by another manager; wait until it ends",
                mark.job
            )));
        };
        let report = recovery::settle(profile, journal).await?;
        if report.outcome.is_none() {
            return Err(not_yet(format!(
                "job {} is not settled yet: {}",
                mark.job, report.detail
            )));
        }
        let still = client
            .wwn_rollbacks()
            .await?
            .into_iter()
            .any(|m| m.lpar == mark.lpar && m.job == mark.job);
        if !still {
            return Ok(done(format!(
                "job {} settled ({}); its identity swap cleared the mark",
                mark.job, report.detail
            )));
        }
    }

    // 2. The other HVM must answer and hold nothing of the move.
    let peer = HvmClient::new(profile.hvm(&mark.peer)?)?;
    match peer.migration_status(&mark.job).await {
        Ok(status) => {
            let resumed = status.phase == Phase::Resumed
                || status
                    .record
                    .as_ref()
                    .is_some_and(|r| r.phase == RecordPhase::Resumed);
            let holds = matches!(status.holds, GuestHold::Running | GuestHold::Paused);
            match status.role {
                Role::Destination if resumed => {
                    return Err(not_yet(format!(
                        "{} resumed the LPAR in job {}; run `lparmover recover` to settle the move",
                        mark.peer, mark.job
                    )));
                }
                Role::Destination => {
                    if status.record.is_some() || !status.phase.is_final() {
                        peer.abort_migration(&mark.job).await?;
                        info!(peer = %mark.peer, job = %mark.job, "leftover incoming part dropped");
                    }
                }
                Role::Source if holds || status.record.is_some() => {
                    return Err(not_yet(format!(
                        "{} (the source) still holds the LPAR of job {}; run `lparmover recover` to settle the move",
                        mark.peer, mark.job
                    )));
                }
                Role::Source => {}
            }
        }
        Err(ClientError::Api { error, .. }) if error.kind == Emg::InvalidRequest => {}
        Err(e) => {
            return Err(not_yet(format!(
                "{} does not answer ({e}); it may still be logged in with the migration WWPNs. Retry once it answers",
                mark.peer
            )));
        }
    }

    // 3. None of the LPAR's WWPNs may be logged in over there.
    let mut watched = mark.wwpns.clone();
    if mark.role == Role::Source {
        watched.extend(mark.migration_wwpns.iter().copied());
    }
    let conflicts: Vec<String> = peer
        .lpars()
        .await?
        .into_iter()
        .flat_map(|view| {
            let name = view.lpar.name.to_string();
            view.fc_logins
                .into_iter()
                .filter(|w| watched.contains(w))
                .map(move |w| format!("{w} (LPAR {name})"))
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(not_yet(format!(
            "{} is logged in with {}; settle that LPAR first",
            mark.peer,
            conflicts.join(", ")
        )));
    }

    // 4. Execute.
    let executed = client.execute_wwn_rollback(mark.lpar).await?;
    info!(%hvm, lpar = %mark.lpar_name, job = %mark.job, "WWNs rolled back");
    Ok(done(format!(
        "WWNs rolled back (job {}, {}): vFCs logged in with {}",
        mark.job,
        mark.reason.label(),
        if executed.fc_logins.is_empty() {
            "nothing (the LPAR is not running)".to_owned()
        } else {
            format!("its WWPNs {}", list(&executed.fc_logins))
        }
    )))
}

fn list(wwpns: &[crate::model::Wwpn]) -> String {
    wwpns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
