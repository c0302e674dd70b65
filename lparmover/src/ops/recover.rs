//! Recovery as operators run it: settle the moves a manager did not finish, recover LPARs left
//! "requires recovery" (the seed's Recovery Execute), roll back the WWNs that can be rolled
//! back safely (the seed's Rollback WWN).

use serde::Serialize;

use crate::dirs::ManagerDirs;
use crate::fleetview::LparRef;
use crate::jobs::journal::Outcome;
use crate::jobs::recovery::RecoveryError;
use crate::jobs::wwn::{PendingRollback, pending};
use crate::jobs::{
    self, LparRecovery, RecoveryReport, WwnError, WwnRollbackReport, recover_lpars,
    recover_unfinished, rollback_all,
};
use crate::profile::Profile;

/// Settles every job an earlier manager left unfinished (every operation that starts a job
/// runs this first).
pub async fn settle_unfinished(profile: &Profile) -> Result<Vec<RecoveryReport>, RecoveryError> {
    recover_unfinished(profile, &ManagerDirs::for_profile(profile)).await
}

/// Everything one Recovery Execute did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoverySummary {
    /// Unfinished jobs and how each was settled.
    pub jobs: Vec<RecoveryReport>,
    /// LPARs that required recovery.
    pub lpars: Vec<LparRecovery>,
    /// WWN rollbacks done (or still waiting).
    pub wwn_rollbacks: Vec<WwnRollbackReport>,
}

impl RecoverySummary {
    /// Whether everything is settled (nothing waits for an HVM that did not answer).
    pub fn settled(&self) -> bool {
        self.jobs.iter().all(|j| j.outcome.is_some())
            && self.lpars.iter().all(|l| l.recovered)
            && self.wwn_rollbacks.iter().all(|w| w.rolled_back)
    }

    /// Whether there was nothing to do.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.lpars.is_empty() && self.wwn_rollbacks.is_empty()
    }

    /// One line per thing done, for people.
    pub fn lines(&self) -> Vec<String> {
        if self.is_empty() {
            return vec![
                "Nothing to recover: no unfinished jobs, no LPARs requiring recovery, no WWNs pending rollback."
                    .to_owned(),
            ];
        }
        let jobs = self.jobs.iter().map(describe_job);
        let lpars = self
            .lpars
            .iter()
            .map(|l| format!("LPAR {}/{}: {}", l.hvm, l.lpar, l.detail));
        let wwns = self
            .wwn_rollbacks
            .iter()
            .map(|w| format!("LPAR {}/{}: {}", w.hvm, w.lpar, w.detail));
        jobs.chain(lpars).chain(wwns).collect()
    }
}

/// `job J (LPAR src → dst): completed: …` for people.
pub fn describe_job(r: &RecoveryReport) -> String {
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

/// Recovery Execute: settles unfinished jobs, recovers LPARs requiring recovery (of `only`, or
/// all), rolls back the WWNs that can be rolled back safely.
pub async fn recover_all(
    profile: &Profile,
    only: Option<&LparRef>,
) -> Result<RecoverySummary, RecoveryError> {
    let dirs = ManagerDirs::for_profile(profile);
    let jobs = recover_unfinished(profile, &dirs).await?;
    let lpars = recover_lpars(profile, only).await;
    let wwn_rollbacks = rollback_all(profile, &dirs, only).await;
    Ok(RecoverySummary {
        jobs,
        lpars,
        wwn_rollbacks,
    })
}

/// Rollback WWN of one LPAR.
pub async fn rollback_wwn(
    profile: &Profile,
    target: &LparRef,
) -> Result<WwnRollbackReport, WwnError> {
    jobs::rollback_wwn(profile, &ManagerDirs::for_profile(profile), target).await
}

/// The WWN Status List: LPARs with WWNs pending rollback (of one HVM or all), and the HVMs that
/// did not answer.
pub async fn pending_wwn_rollbacks(
    profile: &Profile,
    hvm: Option<&str>,
) -> Result<(Vec<PendingRollback>, Vec<(String, String)>), WwnError> {
    let (marks, unreachable) = pending(profile, hvm).await?;
    Ok((
        marks,
        unreachable
            .into_iter()
            .map(|(name, e)| (name, e.to_string()))
            .collect(),
    ))
}
