//! Recovery of moves a manager did not finish (it was killed, an HVM restarted, the migration
//! path broke after the commit point): read the job journal, ask both HVMs what they hold, and
//! drive the move forward or backward without operator input.
//!
//! The rule: the guest must never run twice, and the copy that survives is the latest consistent
//! one. [`decide`] is a pure function of the journal and the two HVMs' views:
//!
//! | destination | commit point | source holds guest | → plan |
//! |---|---|---|---|
//! | fenced (the blades settled backward: the lease lapsed before it resumed) | any | any | backward: the source resumes if it has not, the destination's record is acknowledged |
//! | swapped (the blades settled forward) | any | any | forward: acknowledge the destination's swap, release the source if it still holds |
//! | resumed (running, or its record says so) | any | any | forward: source commits, destination swaps WWPNs, source releases |
//! | holds every page (Ready) | yes | any | forward: destination resumes, then as above |
//! | anything else | yes | yes (paused) | backward: source resumes, destination drops its copy |
//! | any | no | yes | backward |
//! | holds every page | no | no (source restarted) | forward (the commit point is written first): the destination's copy is the latest |
//! | nothing complete | any | no | lost: the destination drops its definition, the source LPAR stays "requires recovery" |
//! | unreachable, before the commit point | no | yes | back on the source alone: the source resumes, and is **marked** "WWNs pending rollback" (the destination may be logged in with the migration WWPNs) |
//! | resumed (record says so), source unreachable | any | ? | wait, the destination **marked** (it runs on the migration WWPNs until the source logs out) |
//! | unreachable (either), otherwise | | | wait: nothing is safe to do yet; the job stays in the journal |
//!
//! WWN rollback marks (the seed's "Rolling back WWNs", `crate::api::WwnRollback`) are written in
//! three cases: (a) the destination stopped answering before the commit point — the source is
//! aborted and resumed and the job is finished as rolled back, the source marked; (b) the source
//! stopped answering after the destination resumed and before the identity swap — the
//! destination is marked and the job waits; (c) the source's commit fails during recovery — the
//! destination is marked and the job stays in the journal. A marked HVM refuses new live moves.
//!
//! Who clears them: a destination's mark clears itself when a later recovery completes the swap
//! of the same job (`POST /migrations/{job}/swap`); any mark is cleared by
//! `lparmover rollback-wwn HVM/LPAR` and by `lparmover recover` ([`super::wwn`]), both only once
//! the other HVM answers, holds nothing of the job any more (a leftover incoming definition is
//! dropped first) and has none of the LPAR's WWPNs logged in.

use tracing::{info, warn};

use super::journal::{self, Entry, JobFacts, JobJournal, JobKind, Outcome, Step};
use crate::api::{
    ClientError, GuestHold, HvmClient, MarkWwnRollback, MigrationStatus, Phase, RecordPhase, Role,
    Settlement, WwnRollbackReason,
};
use crate::dirs::ManagerDirs;
use crate::emg::Emg;
use crate::fleetview::FindLpar;
use crate::history::{History, MoveRecord, MoveResult, Placement};
use crate::model::LparStatus;
use crate::profile::Profile;

/// What one HVM says about a job.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    /// It did not answer.
    Unreachable(String),
    /// It knows nothing of the job (never started there, or its part is over).
    Unknown,
    /// Its status.
    Known(Box<MigrationStatus>),
}

impl View {
    fn status(&self) -> Option<&MigrationStatus> {
        match self {
            Self::Known(s) => Some(s),
            _ => None,
        }
    }

    fn holds(&self) -> GuestHold {
        self.status().map_or(GuestHold::Nothing, |s| s.holds)
    }

    fn record(&self) -> Option<RecordPhase> {
        self.status()
            .and_then(|s| s.record.as_ref().map(|r| r.phase))
    }

    fn phase(&self) -> Option<Phase> {
        self.status().map(|s| s.phase)
    }
}

/// What recovery will do with a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Finish the move.
    Forward {
        /// The commit point must be journaled first (the source lost its guest).
        write_commit_point: bool,
        /// The destination must commit and resume.
        resume_destination: bool,
        /// The source must commit (log its vFCs out).
        commit_source: bool,
        /// The destination's vFCs must swap to the WWPNs.
        swap_destination: bool,
        /// The source must let go of the LPAR.
        release_source: bool,
    },
    /// Undo the move: the source runs the LPAR.
    Backward {
        /// The source still has its part to abort.
        abort_source: bool,
        /// The destination still has its part to drop.
        abort_destination: bool,
    },
    /// No consistent copy left: clean up, the source LPAR stays "requires recovery".
    Lost {
        /// The source still has its record to drop.
        abort_source: bool,
        /// The destination still has its part to drop.
        abort_destination: bool,
    },
    /// The destination is unreachable before the commit point and the source holds the guest:
    /// the source runs the LPAR again and is marked "WWNs pending rollback" (case a).
    BackOnSource {
        /// The source still has its part to abort.
        abort_source: bool,
    },
    /// Nothing safe to do now.
    Wait(String),
    /// The source is unreachable after the destination resumed on the migration WWPNs: mark the
    /// destination "WWNs pending rollback" (case b) and wait for the source.
    WaitMarked(String),
}

/// Decides a job's recovery from its journal and both HVMs' views (the table in the module docs).
pub fn decide(facts: &JobFacts, src: &View, dst: &View) -> Plan {
    let src_holds = matches!(src.holds(), GuestHold::Running | GuestHold::Paused);
    let wait = |side: &str, why: &str| {
        format!("the {side} HVM is unreachable ({why}); run `lparmover recover` once it answers")
    };
    match (src, dst) {
        (View::Unreachable(why), _) => {
            // The destination runs the LPAR on the migration WWPNs and cannot swap until the
            // source has logged out.
            let swap_pending = dst.record() == Some(RecordPhase::Resumed)
                && dst.status().is_some_and(|s| s.role == Role::Destination)
                && !facts.is_done(Step::Swap);
            let why = wait("source", why);
            return if swap_pending {
                Plan::WaitMarked(why)
            } else {
                Plan::Wait(why)
            };
        }
        (_, View::Unreachable(why)) => {
            // Before the commit point the destination never resumes (only the manager tells it
            // to, after the commit point): the source may take the guest back on its own.
            return if !facts.commit_point && !facts.intended(Step::Resume) && src_holds {
                Plan::BackOnSource {
                    abort_source: src.phase().is_some_and(|p| !p.is_final()),
                }
            } else {
                Plan::Wait(wait("destination", why))
            };
        }
        _ => {}
    }
    let src_known = src.status().is_some();
    let dst_known = dst.status().is_some();
    if dst.record() == Some(RecordPhase::Fenced) {
        // The blades settled it backward (the switch-over lease lapsed before the destination
        // resumed): the destination promised never to resume it, whatever the journal says.
        return Plan::Backward {
            abort_source: src.phase().is_some_and(|p| !p.is_final()),
            abort_destination: true,
        };
    }
    let src_open = src.phase().is_some_and(|p| {
        matches!(
            p,
            Phase::Transferring | Phase::SwitchoverReady | Phase::Committed | Phase::Interrupted
        )
    });
    let dst_resumed = dst.phase() == Some(Phase::Resumed)
        || matches!(
            dst.record(),
            Some(RecordPhase::Resumed | RecordPhase::Swapped)
        )
        || facts.is_done(Step::Resume);
    if dst_resumed {
        return Plan::Forward {
            write_commit_point: !facts.commit_point,
            resume_destination: false,
            commit_source: src.phase() == Some(Phase::SwitchoverReady),
            // A "swapped" record only waits for the manager's acknowledgement (its own swap).
            swap_destination: matches!(
                dst.record(),
                Some(RecordPhase::Resumed | RecordPhase::Swapped)
            ),
            release_source: src_open,
        };
    }
    let dst_complete = dst.holds() == GuestHold::Complete;
    let forward = Plan::Forward {
        write_commit_point: !facts.commit_point,
        resume_destination: true,
        commit_source: src.phase() == Some(Phase::SwitchoverReady),
        swap_destination: true,
        release_source: src_open,
    };
    let backward = Plan::Backward {
        abort_source: src_known && src.phase().is_some_and(|p| !p.is_final()),
        abort_destination: dst_known,
    };
    match (facts.commit_point, src_holds, dst_complete) {
        (true, _, true) => forward,
        (true, true, false) | (false, true, _) => backward,
        (false, false, true) => forward,
        (_, false, false) => Plan::Lost {
            abort_source: src_known,
            abort_destination: dst_known,
        },
    }
}

/// What recovery did with one job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecoveryReport {
    /// Job id.
    pub job: String,
    /// LPAR name.
    pub lpar: String,
    /// Source and destination HVMs.
    pub source: String,
    /// Destination HVM.
    pub destination: String,
    /// The outcome, or None when the job had to wait.
    pub outcome: Option<Outcome>,
    /// What was done, in words.
    pub detail: String,
}

/// Recovery errors (a job that could not be settled stays in the journal for the next run).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The journal.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// An HVM call.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A name in the journal is not in the profile.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
}

async fn view(client: &HvmClient, job: &str) -> View {
    match client.migration_status(job).await {
        Ok(s) => View::Known(Box::new(s)),
        Err(ClientError::Api { error, .. }) if error.kind == Emg::InvalidRequest => View::Unknown,
        Err(e) => View::Unreachable(e.to_string()),
    }
}

/// Settles every orphaned job in the journal. Jobs another manager is running are left alone.
pub async fn recover_unfinished(
    profile: &Profile,
    dirs: &ManagerDirs,
) -> Result<Vec<RecoveryReport>, RecoveryError> {
    let mut reports = Vec::new();
    for path in journal::unfinished(dirs)? {
        let Some(journal) = JobJournal::adopt(&path)? else {
            continue;
        };
        let header = journal.facts().header.clone();
        info!(job = %header.job, "recovering an unfinished job");
        match settle(profile, journal).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                warn!(job = %header.job, error = %e, "recovery did not finish; the job stays in the journal");
                reports.push(RecoveryReport {
                    job: header.job.clone(),
                    lpar: header.lpar.clone(),
                    source: header.source_hvm.clone(),
                    destination: header.dest_hvm.clone(),
                    outcome: None,
                    detail: format!("not settled yet: {e}"),
                });
            }
        }
    }
    Ok(reports)
}

/// Settles one job whose journal this process holds: asks both HVMs, decides, acts, finishes
/// the journal (unless it has to wait).
pub async fn settle(
    profile: &Profile,
    mut journal: JobJournal,
) -> Result<RecoveryReport, RecoveryError> {
    let facts = journal.facts().clone();
    let header = &facts.header;
    if header.kind == JobKind::Shutdown {
        return super::cold::settle_shutdown_job(profile, journal).await;
    }
    let src = HvmClient::new(profile.hvm(&header.source_hvm)?)?;
    let dst = HvmClient::new(profile.hvm(&header.dest_hvm)?)?;
    let job = header.job.as_str();
    let (src_view, dst_view) = tokio::join!(view(&src, job), view(&dst, job));
    let plan = decide(&facts, &src_view, &dst_view);
    info!(job, ?plan, ?src_view, ?dst_view, "recovery plan");
    let exchange = facts
        .prepared
        .as_ref()
        .map(|(_, e)| e.clone())
        .unwrap_or_default();
    let mut report = RecoveryReport {
        job: job.to_owned(),
        lpar: header.lpar.clone(),
        source: header.source_hvm.clone(),
        destination: header.dest_hvm.clone(),
        outcome: None,
        detail: String::new(),
    };
    let dest_number = facts
        .prepared
        .as_ref()
        .map(|(n, _)| *n)
        .or_else(|| dst_view.status().map(|s| s.lpar));
    let mark_destination = |reason: WwnRollbackReason| {
        let dst = &dst;
        async move {
            let Some(number) = dest_number else {
                return Err(format!("{job}: the destination LPAR number is unknown"));
            };
            mark(
                dst,
                &MarkWwnRollback {
                    job: job.to_owned(),
                    lpar: number,
                    role: Role::Destination,
                    peer: header.source_hvm.clone(),
                    reason,
                },
            )
            .await
            .map_err(|e| e.to_string())
        }
    };
    let (outcome, detail) = match plan {
        Plan::Wait(why) => {
            report.detail = why;
            return Ok(report);
        }
        Plan::WaitMarked(why) => {
            report.detail = match mark_destination(WwnRollbackReason::SourceUnreachable).await {
                Ok(marked) => format!("{why}; {marked}"),
                Err(e) => format!("{why}; the destination could not be marked: {e}"),
            };
            return Ok(report);
        }
        Plan::BackOnSource { abort_source } => {
            journal.intent(Step::Rollback)?;
            if abort_source {
                src.abort_migration(job).await?;
            }
            let marked = mark(
                &src,
                &MarkWwnRollback {
                    job: job.to_owned(),
                    lpar: header.source_number,
                    role: Role::Source,
                    peer: header.dest_hvm.clone(),
                    reason: WwnRollbackReason::DestinationUnreachable,
                },
            )
            .await?;
            journal.done(Step::Rollback)?;
            (
                Outcome::RolledBack,
                format!(
                    "rolled back without the destination (unreachable before the commit point): {} runs on {}; {marked}",
                    header.lpar, header.source_hvm
                ),
            )
        }
        Plan::Forward {
            write_commit_point,
            resume_destination,
            commit_source,
            swap_destination,
            release_source,
        } => {
            if write_commit_point {
                journal.append(Entry::CommitPoint)?;
            }
            if resume_destination {
                journal.intent(Step::Resume)?;
                if let Err(e) = dst.resume_migration(job).await {
                    // The destination cannot take it (its disk is full, its copy went bad) and
                    // never ran it: while the source still holds the guest, undo instead.
                    let src_holds =
                        matches!(src_view.holds(), GuestHold::Paused | GuestHold::Running);
                    if !src_holds {
                        return Err(e.into());
                    }
                    warn!(job, error = %e, "the destination cannot resume; rolling back to the source");
                    journal.append(Entry::Failed {
                        step: Step::Resume,
                        error: e.to_string(),
                    })?;
                    journal.intent(Step::Rollback)?;
                    src.abort_migration(job).await?;
                    dst.abort_migration(job).await?;
                    journal.done(Step::Rollback)?;
                    let detail = format!(
                        "rolled back after the commit point (the destination could not resume: {e}): {} runs on {}",
                        header.lpar, header.source_hvm
                    );
                    release_leases(&[&src, &dst], job).await;
                    journal.finish(Outcome::RolledBack, detail.clone())?;
                    record_outcome(profile, &facts, Outcome::RolledBack, &detail, None, None);
                    report.outcome = Some(Outcome::RolledBack);
                    report.detail = detail;
                    return Ok(report);
                }
                journal.done(Step::Resume)?;
            }
            if commit_source {
                journal.intent(Step::SourceCommit)?;
                if let Err(e) = src.commit_migration(job, &exchange).await {
                    // The destination runs the LPAR on the migration WWPNs and cannot swap while
                    // the source may still be logged in with the WWPNs (case c).
                    match mark_destination(WwnRollbackReason::SourceCommitFailed).await {
                        Ok(marked) => warn!(job, error = %e, "the source did not commit; {marked}"),
                        Err(m) => {
                            warn!(job, error = %e, mark = %m, "the source did not commit and the destination could not be marked");
                        }
                    }
                    return Err(e.into());
                }
                journal.done(Step::SourceCommit)?;
            }
            if swap_destination {
                journal.intent(Step::Swap)?;
                dst.swap_migration(job).await?;
                journal.done(Step::Swap)?;
            }
            if release_source {
                journal.intent(Step::Release)?;
                src.release_migration(job, &exchange).await?;
                journal.done(Step::Release)?;
            }
            (
                Outcome::Completed,
                format!("moved forward: {} runs on {}", header.lpar, header.dest_hvm),
            )
        }
        Plan::Backward {
            abort_source,
            abort_destination,
        } => {
            journal.intent(Step::Rollback)?;
            if abort_source {
                src.abort_migration(job).await?;
            }
            if abort_destination {
                dst.abort_migration(job).await?;
            }
            journal.done(Step::Rollback)?;
            (
                Outcome::RolledBack,
                format!(
                    "rolled back: {} runs on {}, nothing left on {}",
                    header.lpar, header.source_hvm, header.dest_hvm
                ),
            )
        }
        Plan::Lost {
            abort_source,
            abort_destination,
        } => {
            journal.intent(Step::Rollback)?;
            if abort_destination {
                dst.abort_migration(job).await?;
            }
            if abort_source {
                src.abort_migration(job).await?;
            }
            journal.done(Step::Rollback)?;
            (
                Outcome::NeedsRecovery,
                format!(
                    "no HVM held a running or complete copy of {} any more; it requires recovery on {} (`lparmover recover {}/{}`)",
                    header.lpar, header.source_hvm, header.source_hvm, header.lpar
                ),
            )
        }
    };
    let detail = match settled_by_blades(&src_view, &dst_view) {
        Some(how) => format!("{how}; {detail}"),
        None => detail,
    };
    release_leases(&[&src, &dst], job).await;
    journal.finish(outcome, detail.clone())?;
    record_outcome(
        profile,
        &facts,
        outcome,
        &detail,
        dest_number,
        suspension_seen(&src_view, &dst_view),
    );
    report.outcome = Some(outcome);
    report.detail = detail;
    Ok(report)
}

/// What the blades did on their own before this recovery, in words (None: nothing).
fn settled_by_blades(src: &View, dst: &View) -> Option<&'static str> {
    let src_settled = src.status().and_then(|s| s.settlement.clone());
    match (dst.record(), src_settled) {
        (Some(RecordPhase::Fenced), _) | (_, Some(Settlement::Backward)) => Some(
            "settled by the blades: the manager's switch-over lease lapsed before the destination resumed the LPAR, the destination fenced the job and the source resumed it",
        ),
        (Some(RecordPhase::Swapped), _) | (_, Some(Settlement::Forward)) => Some(
            "settled by the blades: the manager's switch-over lease lapsed after the destination resumed the LPAR, the source let go and the blades swapped identities",
        ),
        _ => None,
    }
}

/// The guest's pause as the two HVMs' heartbeat samplers saw it, when both still know.
fn suspension_seen(src: &View, dst: &View) -> Option<std::time::Duration> {
    let before = src.status()?.last_heartbeat_before_pause_ns?;
    let after = dst.status()?.first_heartbeat_after_resume_ns?;
    after
        .checked_sub(before)
        .map(std::time::Duration::from_nanos)
}

/// Writes the job's outcome into the Migration History (best effort: a history that cannot be
/// written is a warning). The row the live move opened is finished; a missing one is made.
fn record_outcome(
    profile: &Profile,
    facts: &JobFacts,
    outcome: Outcome,
    detail: &str,
    dest_number: Option<crate::model::LparNumber>,
    suspension: Option<std::time::Duration>,
) {
    let header = &facts.header;
    if header.kind != JobKind::Live {
        return;
    }
    let history = match History::open(&ManagerDirs::for_profile(profile).history_db()) {
        Ok(h) => h,
        Err(e) => {
            warn!(job = %header.job, error = %e, "history unavailable; the recovered job is not recorded");
            return;
        }
    };
    let mut record = match history.job(&header.job) {
        Ok(Some(r)) => r,
        Ok(None) => MoveRecord {
            job: header.job.clone(),
            lpar: header.lpar.clone(),
            source: Placement {
                hvm: header.source_hvm.clone(),
                number: header.source_number,
            },
            dest_hvm: header.dest_hvm.clone(),
            dest_number: None,
            mode: crate::model::Mode::ConcurrentMaintenance,
            result: MoveResult::InProgress,
            started_at: chrono::Utc::now(),
            finished_at: None,
            suspension: None,
            detail: None,
            actor: header.actor.clone(),
        },
        Err(e) => {
            warn!(job = %header.job, error = %e, "history unreadable; the recovered job is not recorded");
            return;
        }
    };
    record.result = match outcome {
        Outcome::Completed => MoveResult::Completed,
        Outcome::RolledBack | Outcome::NeedsRecovery => MoveResult::Failed,
    };
    if outcome == Outcome::Completed {
        record.dest_number = dest_number;
        record.suspension = record.suspension.or(suspension);
    }
    record.finished_at = Some(chrono::Utc::now());
    record.detail = Some(format!("recovered: {detail}"));
    if let Err(e) = history.record(&record) {
        warn!(job = %header.job, error = %e, "history not recorded");
    }
}

/// Marks an HVM's LPAR "WWNs pending rollback"; says so in words, or why it could not.
async fn mark(client: &HvmClient, request: &MarkWwnRollback) -> Result<String, ClientError> {
    let m = client.mark_wwn_rollback(request).await?;
    warn!(hvm = client.name(), lpar = %m.lpar_name, job = %m.job, "WWNs pending rollback");
    Ok(format!(
        "WWNs pending rollback on {}: run `lparmover rollback-wwn {}/{}`",
        client.name(),
        client.name(),
        m.lpar_name
    ))
}

/// Gives back the leases a dead manager held for `job` (they would expire anyway).
pub async fn release_leases(clients: &[&HvmClient], job: &str) {
    for client in clients {
        if let Ok(leases) = client.locks().await {
            for lease in leases.iter().filter(|l| l.purpose == job) {
                if let Err(e) = client.unlock(&lease.id).await {
                    warn!(hvm = client.name(), error = %e, "lease release failed; it will expire");
                }
            }
        }
    }
}

/// What `lparmover recover` did to one LPAR requiring recovery.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LparRecovery {
    /// HVM.
    pub hvm: String,
    /// LPAR name.
    pub lpar: String,
    /// What happened.
    pub detail: String,
    /// Whether it is settled.
    pub recovered: bool,
}

/// Recovers LPARs left "requires recovery" (after unfinished jobs were settled): clears the
/// state and activates the LPAR again on the HVM that holds its definition. `only` limits it
/// to one HVM/LPAR.
pub async fn recover_lpars(
    profile: &Profile,
    only: Option<&crate::fleetview::LparRef>,
) -> Vec<LparRecovery> {
    let mut out = Vec::new();
    for hvm in &profile.hvms {
        if only.is_some_and(|r| r.hvm != hvm.name) {
            continue;
        }
        let Ok(client) = HvmClient::new(hvm) else {
            continue;
        };
        let Ok(inventory) = client.inventory().await else {
            continue;
        };
        for view in &inventory.lpars {
            let lpar = &view.lpar;
            if lpar.status != LparStatus::RequiresRecovery {
                continue;
            }
            if let Some(r) = only
                && r.lpar.find(&inventory).map(|v| v.lpar.number) != Some(lpar.number)
            {
                continue;
            }
            let result = async {
                client.recover_lpar(lpar.number).await?;
                client.activate(lpar.number, None).await
            }
            .await;
            out.push(LparRecovery {
                hvm: hvm.name.clone(),
                lpar: lpar.name.to_string(),
                recovered: result.is_ok(),
                detail: match result {
                    Ok(_) => "Recovery completed! (activated again)".into(),
                    Err(e) => format!("not recovered: {e}"),
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MigrationRecord, Role};
    use crate::jobs::journal::JobHeader;
    use crate::model::LparNumber;

    fn facts(commit_point: bool) -> JobFacts {
        let header = JobHeader {
            job: "j".into(),
            kind: JobKind::Live,
            lpar: "web-01".into(),
            source_hvm: "a".into(),
            source_number: LparNumber::new(1).unwrap(),
            dest_hvm: "b".into(),
            activate_after: false,
            actor: None,
        };
        let mut f = JobFacts {
            header,
            intents: vec![],
            done: vec![],
            prepared: None,
            commit_point,
            finished: None,
        };
        f.done.push(Step::Prepare);
        f
    }

    fn known(role: Role, phase: Phase, holds: GuestHold, record: Option<RecordPhase>) -> View {
        View::Known(Box::new(MigrationStatus {
            record: record.map(|phase| MigrationRecord {
                role,
                lpar: LparNumber::new(1).unwrap(),
                phase,
                exchange: None,
            }),
            ..MigrationStatus::new("j", role, LparNumber::new(1).unwrap(), phase, holds)
        }))
    }

    fn src(phase: Phase, holds: GuestHold) -> View {
        known(Role::Source, phase, holds, Some(RecordPhase::Started))
    }

    fn dst(phase: Phase, holds: GuestHold, record: Option<RecordPhase>) -> View {
        known(Role::Destination, phase, holds, record)
    }

    #[test]
    fn manager_killed_during_pre_copy_rolls_back() {
        let plan = decide(
            &facts(false),
            &src(Phase::Transferring, GuestHold::Running),
            &dst(
                Phase::Transferring,
                GuestHold::Partial,
                Some(RecordPhase::Started),
            ),
        );
        assert_eq!(
            plan,
            Plan::Backward {
                abort_source: true,
                abort_destination: true
            }
        );
    }

    #[test]
    fn manager_killed_during_suspension_before_the_commit_point_rolls_back() {
        let plan = decide(
            &facts(false),
            &src(Phase::SwitchoverReady, GuestHold::Paused),
            &dst(
                Phase::SwitchoverReady,
                GuestHold::Complete,
                Some(RecordPhase::Started),
            ),
        );
        assert!(matches!(plan, Plan::Backward { .. }), "{plan:?}");
    }

    #[test]
    fn manager_killed_after_the_commit_point_goes_forward() {
        let plan = decide(
            &facts(true),
            &src(Phase::SwitchoverReady, GuestHold::Paused),
            &dst(
                Phase::SwitchoverReady,
                GuestHold::Complete,
                Some(RecordPhase::Started),
            ),
        );
        assert_eq!(
            plan,
            Plan::Forward {
                write_commit_point: false,
                resume_destination: true,
                commit_source: true,
                swap_destination: true,
                release_source: true
            }
        );
    }

    #[test]
    fn a_resumed_destination_always_wins() {
        for commit_point in [false, true] {
            let plan = decide(
                &facts(commit_point),
                &src(Phase::SwitchoverReady, GuestHold::Paused),
                &dst(
                    Phase::Resumed,
                    GuestHold::Running,
                    Some(RecordPhase::Resumed),
                ),
            );
            assert!(
                matches!(
                    plan,
                    Plan::Forward {
                        resume_destination: false,
                        commit_source: true,
                        swap_destination: true,
                        ..
                    }
                ),
                "{plan:?}"
            );
        }
    }

    #[test]
    fn source_restarted_after_ready_goes_forward_from_the_destination_copy() {
        let plan = decide(
            &facts(false),
            &src(Phase::Interrupted, GuestHold::Nothing),
            &dst(
                Phase::SwitchoverReady,
                GuestHold::Complete,
                Some(RecordPhase::Started),
            ),
        );
        assert_eq!(
            plan,
            Plan::Forward {
                write_commit_point: true,
                resume_destination: true,
                commit_source: false,
                swap_destination: true,
                release_source: true
            }
        );
    }

    #[test]
    fn destination_lost_after_the_commit_point_rolls_back_to_the_paused_source() {
        let plan = decide(
            &facts(true),
            &src(Phase::SwitchoverReady, GuestHold::Paused),
            &View::Unknown,
        );
        assert_eq!(
            plan,
            Plan::Backward {
                abort_source: true,
                abort_destination: false
            }
        );
    }

    #[test]
    fn nobody_holding_a_copy_is_lost_and_an_unreachable_hvm_waits() {
        let plan = decide(
            &facts(false),
            &src(Phase::Interrupted, GuestHold::Nothing),
            &dst(
                Phase::Transferring,
                GuestHold::Partial,
                Some(RecordPhase::Started),
            ),
        );
        assert!(matches!(plan, Plan::Lost { .. }), "{plan:?}");
        let plan = decide(
            &facts(true),
            &View::Unreachable("down".into()),
            &dst(Phase::SwitchoverReady, GuestHold::Complete, None),
        );
        assert!(matches!(plan, Plan::Wait(_)), "{plan:?}");
    }

    #[test]
    fn destination_unreachable_before_the_commit_point_goes_back_on_the_source_alone() {
        let down = View::Unreachable("connection refused".into());
        // The sender already failed and resumed the guest: nothing left to abort.
        let plan = decide(
            &facts(false),
            &src(Phase::Failed, GuestHold::Running),
            &down,
        );
        assert_eq!(
            plan,
            Plan::BackOnSource {
                abort_source: false
            }
        );
        // Paused for the switch-over: the source is aborted (it resumes).
        let plan = decide(
            &facts(false),
            &src(Phase::SwitchoverReady, GuestHold::Paused),
            &down,
        );
        assert_eq!(plan, Plan::BackOnSource { abort_source: true });
        // After the commit point the destination may resume: wait for it.
        let plan = decide(
            &facts(true),
            &src(Phase::SwitchoverReady, GuestHold::Paused),
            &down,
        );
        assert!(matches!(plan, Plan::Wait(_)), "{plan:?}");
        // A source that lost its guest cannot take it back.
        let plan = decide(
            &facts(false),
            &src(Phase::Interrupted, GuestHold::Nothing),
            &down,
        );
        assert!(matches!(plan, Plan::Wait(_)), "{plan:?}");
    }

    #[test]
    fn source_unreachable_after_the_destination_resumed_marks_the_destination() {
        let down = View::Unreachable("connection refused".into());
        let resumed = dst(
            Phase::Resumed,
            GuestHold::Running,
            Some(RecordPhase::Resumed),
        );
        let plan = decide(&facts(true), &down, &resumed);
        assert!(matches!(plan, Plan::WaitMarked(_)), "{plan:?}");
        // Swapped already (its record is gone): nothing to roll back, just wait.
        let swapped = dst(Phase::Resumed, GuestHold::Running, None);
        let plan = decide(&facts(true), &down, &swapped);
        assert!(matches!(plan, Plan::Wait(_)), "{plan:?}");
        // Not resumed: wait, no mark.
        let ready = dst(
            Phase::SwitchoverReady,
            GuestHold::Complete,
            Some(RecordPhase::Started),
        );
        let plan = decide(&facts(true), &down, &ready);
        assert!(matches!(plan, Plan::Wait(_)), "{plan:?}");
    }
}
