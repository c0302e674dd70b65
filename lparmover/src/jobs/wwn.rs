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
use crate::api::{
    ClientError, GuestHold, HvmClient, MigrationStatus, Phase, RecordPhase, Role, WwnRollback,
};
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

/// Rolls back every mark that can be rolled back safely now (of `only`, an HVM/LPAR, or
/// everywhere); marks whose other HVM does not answer yet stay, reported as not rolled back.
pub async fn rollback_all(
    profile: &Profile,
    dirs: &ManagerDirs,
    only: Option<&LparRef>,
) -> Vec<WwnRollbackReport> {
    let mut reports = Vec::new();
    let Ok((marks, _unreachable)) = pending(profile, only.map(|r| r.hvm.as_str())).await else {
        return reports;
    };
    let wanted = |m: &WwnRollback| match only.map(|r| &r.lpar) {
        None => true,
        Some(crate::fleetview::LparSelector::Number(n)) => m.lpar == *n,
        Some(crate::fleetview::LparSelector::Name(n)) => m.lpar_name.as_str() == n,
    };
    for PendingRollback { hvm, mark } in marks.into_iter().filter(|p| wanted(&p.mark)) {
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
    let status = match peer.migration_status(&mark.job).await {
        Ok(status) => Some(status),
        Err(ClientError::Api { error, .. }) if error.kind == Emg::InvalidRequest => None,
        Err(e) => {
            return Err(not_yet(format!(
                "{} does not answer ({e}); it may still be logged in with the migration WWPNs. Retry once it answers",
                mark.peer
            )));
        }
    };
    match judge_peer(&mark, status.as_ref()) {
        PeerPart::Nothing => {}
        PeerPart::Leftover => {
            peer.abort_migration(&mark.job).await?;
            info!(peer = %mark.peer, job = %mark.job, "leftover incoming part dropped");
        }
        PeerPart::Unsettled(why) => return Err(not_yet(why)),
    }

    // 3. None of the LPAR's WWPNs may be logged in over there.
    let conflicts = conflicts(&mark, &peer.lpars().await?);
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

/// What the other HVM of a marked move still has of it.
#[derive(Debug, PartialEq, Eq)]
enum PeerPart {
    /// Nothing (never had it, let it go, or dropped it in a restart).
    Nothing,
    /// A destination's incoming part that never resumed: to be aborted first.
    Leftover,
    /// The move is not settled there: recovery must settle it first.
    Unsettled(String),
}

/// Judges the other HVM's status of the marked job (`None`: it knows nothing of it).
fn judge_peer(mark: &WwnRollback, status: Option<&MigrationStatus>) -> PeerPart {
    let Some(status) = status else {
        return PeerPart::Nothing;
    };
    let resumed = status.phase == Phase::Resumed
        || status
            .record
            .as_ref()
            .is_some_and(|r| r.phase == RecordPhase::Resumed);
    let holds = matches!(status.holds, GuestHold::Running | GuestHold::Paused);
    match status.role {
        Role::Destination if resumed => PeerPart::Unsettled(format!(
            "{} resumed the LPAR in job {}; run `lparmover recover` to settle the move",
            mark.peer, mark.job
        )),
        Role::Destination if status.record.is_some() || !status.phase.is_final() => {
            PeerPart::Leftover
        }
        Role::Destination => PeerPart::Nothing,
        Role::Source if holds || status.record.is_some() => PeerPart::Unsettled(format!(
            "{} (the source) still holds the LPAR of job {}; run `lparmover recover` to settle the move",
            mark.peer, mark.job
        )),
        Role::Source => PeerPart::Nothing,
    }
}

/// Logins on the other HVM that rolling back would duplicate: the LPAR's WWPNs, and when the
/// marked HVM was the source, also its migration WWPNs (the destination's leftover logins).
fn conflicts(mark: &WwnRollback, peer_lpars: &[crate::api::LparView]) -> Vec<String> {
    let mut watched = mark.wwpns.clone();
    if mark.role == Role::Source {
        watched.extend(mark.migration_wwpns.iter().copied());
    }
    peer_lpars
        .iter()
        .flat_map(|view| {
            let watched = &watched;
            view.fc_logins
                .iter()
                .filter(move |w| watched.contains(w))
                .map(move |w| format!("{w} (LPAR {})", view.lpar.name))
        })
        .collect()
}

fn list(wwpns: &[crate::model::Wwpn]) -> String {
    wwpns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::{LparView, MigrationRecord, WwnRollbackReason};
    use crate::model::{LparNumber, Wwpn};

    fn wwpn(n: u64) -> Wwpn {
        format!("50:06:0e:80:00:00:00:{n:02x}").parse().unwrap()
    }

    fn mark(role: Role) -> WwnRollback {
        WwnRollback {
            job: "job-1".into(),
            lpar: LparNumber::new(1).unwrap(),
            lpar_name: "web-01".parse().unwrap(),
            role,
            peer: "ch1-b2".into(),
            reason: WwnRollbackReason::DestinationUnreachable,
            wwpns: vec![wwpn(1)],
            migration_wwpns: vec![wwpn(2)],
            marked_at: chrono::Utc::now(),
        }
    }

    fn status(
        role: Role,
        phase: Phase,
        holds: GuestHold,
        record: Option<RecordPhase>,
    ) -> MigrationStatus {
        let number = LparNumber::new(3).unwrap();
        MigrationStatus {
            record: record.map(|phase| MigrationRecord {
                role,
                lpar: number,
                phase,
                exchange: None,
            }),
            ..MigrationStatus::new("job-1", role, number, phase, holds)
        }
    }

    #[test]
    fn the_other_hvm_must_hold_nothing_of_the_move() {
        let src_mark = mark(Role::Source);
        assert_eq!(judge_peer(&src_mark, None), PeerPart::Nothing);
        // The destination that never resumed: its leftover goes first.
        let incoming = status(
            Role::Destination,
            Phase::Transferring,
            GuestHold::Partial,
            Some(RecordPhase::Started),
        );
        assert_eq!(judge_peer(&src_mark, Some(&incoming)), PeerPart::Leftover);
        let failed = status(
            Role::Destination,
            Phase::Failed,
            GuestHold::Nothing,
            Some(RecordPhase::Started),
        );
        assert_eq!(judge_peer(&src_mark, Some(&failed)), PeerPart::Leftover);
        let aborted = status(Role::Destination, Phase::Aborted, GuestHold::Nothing, None);
        assert_eq!(judge_peer(&src_mark, Some(&aborted)), PeerPart::Nothing);
        let resumed = status(
            Role::Destination,
            Phase::Resumed,
            GuestHold::Running,
            Some(RecordPhase::Resumed),
        );
        assert!(matches!(
            judge_peer(&src_mark, Some(&resumed)),
            PeerPart::Unsettled(_)
        ));
        // A destination's mark: the source must have let go.
        let dst_mark = mark(Role::Destination);
        let paused = status(
            Role::Source,
            Phase::SwitchoverReady,
            GuestHold::Paused,
            Some(RecordPhase::Started),
        );
        assert!(matches!(
            judge_peer(&dst_mark, Some(&paused)),
            PeerPart::Unsettled(_)
        ));
        let interrupted = status(
            Role::Source,
            Phase::Interrupted,
            GuestHold::Nothing,
            Some(RecordPhase::Started),
        );
        assert!(matches!(
            judge_peer(&dst_mark, Some(&interrupted)),
            PeerPart::Unsettled(_)
        ));
        let released = status(Role::Source, Phase::Released, GuestHold::Nothing, None);
        assert_eq!(judge_peer(&dst_mark, Some(&released)), PeerPart::Nothing);
    }

    #[test]
    fn logins_that_would_be_duplicated_are_conflicts() {
        let lpar = crate::checks::testutil::inventory("ch1-b2").lpars[0].clone();
        let with = |logins: Vec<Wwpn>| LparView {
            fc_logins: logins,
            ..lpar.clone()
        };
        let src_mark = mark(Role::Source);
        assert!(conflicts(&src_mark, &[with(vec![wwpn(9)])]).is_empty());
        assert_eq!(
            conflicts(&src_mark, &[with(vec![wwpn(2)])]).len(),
            1,
            "migration WWPN left"
        );
        assert_eq!(conflicts(&src_mark, &[with(vec![wwpn(1)])]).len(), 1);
        // A destination rolls back to the WWPNs: only those matter on the source.
        let dst_mark = mark(Role::Destination);
        assert!(conflicts(&dst_mark, &[with(vec![wwpn(2)])]).is_empty());
        assert_eq!(conflicts(&dst_mark, &[with(vec![wwpn(1)])]).len(), 1);
    }
}
