//! Shutdown mode: the LPAR is moved while deactivated (optionally shut down remotely first).
//!
//! ```text
//! 0x1010 checks (Shutdown-mode rules)        0x1020 leases        0x1030 back up both HVMs
//! 0x3010 (SRC) remote guest OS shutdown, wait up to the Waiting TimeOut Limit (default 5 min)
//! 0x3020 (DST) define the LPAR (deactivated) keeping its name, MACs and WWNs, in the processor
//!        group asked for (else its own)
//! 0x3030 (SRC) delete the source definition, adopt the destination's exchanged names
//! 0x3040 (DST) activate, if asked
//! ```
//!
//! From the leases on, the move is in the migration history (In progress, then its outcome) and
//! in the job journal (`super::journal`, kind `shutdown`): each step is announced before it
//! runs. The destination keeps, in its own state file, what it defined for the job
//! (`GET /migrations/cold/{job}`); that record decides a job whose steps stopped (an error, a
//! killed manager): without it nothing was defined there and the job is rolled back (the LPAR
//! stays on the source, shut down if that step ran); with it the source definition is released
//! and the move completes, activation included when it was asked for. Releasing the source is
//! the commit point. Once the source definition is gone the LPAR lives on the destination, so
//! the move is recorded as completed there even if the activation afterwards fails (the job
//! still reports that error, and says how to activate it).

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{Instrument, info, info_span, warn};

use super::fault;
use super::journal::{Entry, JobHeader, JobJournal, JobKind, Outcome, Step};
use super::leases::Leases;
use super::live::{JobError, new_job_id};
use super::recovery::{RecoveryError, RecoveryReport};
use crate::api::{ClientError, ColdDefine, ColdDefined, HvmClient};
use crate::checks::{self, DestinationChoice};
use crate::dirs::ManagerDirs;
use crate::emg::{Emg, EmgError};
use crate::fleetview::FindLpar;
use crate::fleetview::LparRef;
use crate::history::{JobHistory, MoveRecord, MoveResult, Placement};
use crate::model::{Lpar, LparNumber, LparStatus, Mode};
use crate::profile::Profile;

/// Default Waiting TimeOut Limit of a remote shutdown (the seed's five minutes).
pub const DEFAULT_SHUTDOWN_WAIT: Duration = Duration::from_secs(300);

/// A Shutdown-mode move as the operator asks for it.
#[derive(Clone, Debug)]
pub struct ColdMoveRequest {
    /// The LPAR (HVM/LPAR).
    pub source: LparRef,
    /// Destination HVM.
    pub destination: String,
    /// LPAR number there (None = youngest free).
    pub dest_number: Option<LparNumber>,
    /// Processor group there (None = the LPAR's own group).
    pub processor_group: Option<u8>,
    /// Shut the guest OS down remotely if the LPAR is activated.
    pub remote_shutdown: bool,
    /// How long the guest may take to shut down.
    pub shutdown_wait: Duration,
    /// Activate the LPAR on the destination afterwards ("Activate Destination LPAR").
    pub activate: bool,
    /// Who asked for it (recorded in the history).
    pub actor: crate::history::Actor,
}

/// A finished Shutdown-mode move.
#[derive(Clone, Debug, Serialize)]
pub struct ColdMoveReport {
    /// Job id.
    pub job: String,
    /// LPAR name.
    pub lpar: String,
    /// Source HVM.
    pub source: String,
    /// Destination HVM.
    pub destination: String,
    /// LPAR number on the destination.
    pub dest_number: LparNumber,
    /// Processor group on the destination.
    pub processor_group: u8,
    /// Whether the guest was shut down remotely.
    pub shut_down: bool,
    /// Whether it was activated on the destination.
    pub activated: bool,
    /// Whole job, ms.
    pub total_ms: u64,
}

/// Runs a Shutdown-mode move.
pub async fn shutdown_move(
    profile: &Profile,
    request: &ColdMoveRequest,
    mut on_stage: impl FnMut(&str) + Send,
) -> Result<ColdMoveReport, JobError> {
    let job = new_job_id();
    let span = info_span!("job", id = %job, mode = "shutdown");
    async move {
        let started = Instant::now();
        on_stage("0x1010 (MMS) Checking Configuration");
        let choice = DestinationChoice {
            number: request.dest_number,
            processor_group: request.processor_group,
        };
        let report = checks::gather_for(
            profile,
            &request.source,
            &request.destination,
            Mode::Shutdown,
            choice,
        )
        .await?;
        report.ensure_no_errors()?;
        let src = HvmClient::new(profile.hvm(&request.source.hvm)?)?;
        let dst = HvmClient::new(profile.hvm(&request.destination)?)?;
        let inventory = src.inventory().await?;
        let view = request.source.lpar.find(&inventory).ok_or_else(|| {
            EmgError::new(
                Emg::LparNotFound,
                format!("{:?} on {}", request.source.lpar, src.name()),
            )
        })?;
        let lpar = view.lpar.clone();
        let active = lpar.status == LparStatus::Activated;
        if active && !request.remote_shutdown {
            return Err(EmgError::new(
                Emg::LparActivatedForShutdownMode,
                format!(
                    "LPAR {} is activated; pass --shutdown to shut its guest OS down remotely",
                    lpar.name
                ),
            )
            .into());
        }
        let group = request.processor_group.unwrap_or(lpar.processors.group);
        on_stage("0x1020 (MMS) Locking LPAR and Blade");
        let leases = Leases::take(&job, &src, lpar.number, &dst).await?;
        let dirs = ManagerDirs::for_profile(profile);
        let mut journal = match JobJournal::begin(
            &dirs,
            JobHeader {
                job: job.clone(),
                kind: JobKind::Shutdown,
                lpar: lpar.name.to_string(),
                source_hvm: src.name().to_owned(),
                source_number: lpar.number,
                dest_hvm: dst.name().to_owned(),
                activate_after: request.activate,
                actor: Some(request.actor.clone()),
            },
        ) {
            Ok(j) => j,
            Err(e) => {
                leases.release().await;
                return Err(e.into());
            }
        };
        let history = JobHistory::from_env();
        let mut record = MoveRecord {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            source: Placement {
                hvm: src.name().to_owned(),
                number: lpar.number,
            },
            dest_hvm: dst.name().to_owned(),
            dest_number: None,
            mode: Mode::Shutdown,
            result: MoveResult::InProgress,
            started_at: chrono::Utc::now(),
            finished_at: None,
            suspension: None,
            detail: None,
            actor: Some(request.actor.clone()),
        };
        history.save_move(&record);
        let steps = ColdSteps {
            profile,
            dirs: &dirs,
            src: &src,
            dst: &dst,
            leases: &leases,
            lpar: &lpar,
            active,
            request,
            group,
        };
        let result = match steps.run(&mut journal, &mut on_stage).await {
            Ok(number) => activate_and_finish(journal, &dst, &leases, number)
                .await
                .map_err(job_error),
            // A step failed: the destination's own record of the job decides whether the LPAR
            // already lives there (then the move is finished) or never got there (rolled back).
            Err(error) => match finish_after_define(journal, &src, &dst, &leases).await {
                Ok(settled) if settled.outcome == Outcome::Completed => {
                    warn!(%error, "a step failed after the destination defined the LPAR; the move was finished");
                    Ok(settled)
                }
                Ok(settled) => Err(JobError::Settled {
                    error: Box::new(error),
                    recovery: Box::new(settled.report()),
                }),
                Err(e) => Err(JobError::Settled {
                    error: Box::new(error),
                    recovery: Box::new(RecoveryReport {
                        job: job.clone(),
                        lpar: lpar.name.to_string(),
                        source: src.name().to_owned(),
                        destination: dst.name().to_owned(),
                        outcome: None,
                        detail: format!(
                            "not settled yet ({e}); the job stays in the journal for `lparmover recover`"
                        ),
                    }),
                }),
            },
        };
        leases.release().await;
        record.finished_at = Some(chrono::Utc::now());
        match &result {
            Ok(settled) => {
                record.result = MoveResult::Completed;
                record.dest_number = settled.dest_number;
                record.detail = settled
                    .activation_error
                    .is_some()
                    .then(|| settled.detail.clone());
            }
            Err(e) => {
                record.result = MoveResult::after_error(e.emg().map(|emg| emg.kind));
                record.detail = Some(e.to_string());
            }
        }
        history.save_move(&record);
        let settled = result?;
        if let Some(error) = settled.activation_error {
            return Err(error.into());
        }
        let dest_number = settled.dest_number.ok_or_else(|| {
            EmgError::new(
                Emg::InvalidRequest,
                "the move finished without a destination LPAR number",
            )
        })?;
        on_stage("0x5000 (MMS) Migration completed!");
        Ok(ColdMoveReport {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            source: src.name().to_owned(),
            destination: dst.name().to_owned(),
            dest_number,
            processor_group: group,
            shut_down: active,
            activated: request.activate,
            total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
    .instrument(span)
    .await
}

/// The steps of one Shutdown-mode move, each announced in the journal before it runs.
struct ColdSteps<'a> {
    profile: &'a Profile,
    dirs: &'a ManagerDirs,
    src: &'a HvmClient,
    dst: &'a HvmClient,
    leases: &'a Leases,
    lpar: &'a Lpar,
    active: bool,
    request: &'a ColdMoveRequest,
    group: u8,
}

impl ColdSteps<'_> {
    async fn run(
        &self,
        journal: &mut JobJournal,
        on_stage: &mut (impl FnMut(&str) + Send),
    ) -> Result<LparNumber, JobError> {
        let (src, dst, lpar) = (self.src, self.dst, self.lpar);
        let job = journal.facts().header.job.clone();
        journal.done(Step::Lock)?;
        on_stage("0x1030 (MMS) Backing up HVM Configuration");
        journal.intent(Step::Backup)?;
        crate::backup::backup_both(self.profile, src.name(), dst.name(), &job, self.dirs).await?;
        journal.done(Step::Backup)?;
        fault::barrier("cold-prepare").await;
        if self.active {
            on_stage("0x3010 (SRC) Guest OS Shutdown");
            journal.intent(Step::GuestShutdown)?;
            src.request_shutdown(lpar.number, self.leases.source())
                .await?;
            let deadline = Instant::now() + self.request.shutdown_wait;
            loop {
                let now = src.lpar(lpar.number).await?;
                if now.lpar.status == LparStatus::Deactivated {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(JobError::from(EmgError::new(
                        Emg::ShutdownWaiting,
                        format!(
                            "LPAR {} still {} after {:?}",
                            lpar.name,
                            now.lpar.status.label(),
                            self.request.shutdown_wait
                        ),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            journal.done(Step::GuestShutdown)?;
        }
        fault::barrier("cold-shutdown").await;
        on_stage("0x3020 (DST) Defining LPAR");
        let mut moved = src.lpar(lpar.number).await?.lpar;
        moved.processors.group = self.group;
        journal.intent(Step::Prepare)?;
        let defined = dst
            .cold_define(
                &ColdDefine {
                    job: job.clone(),
                    lpar: moved,
                    number: self.request.dest_number,
                },
                self.leases.destination(),
            )
            .await?;
        journal.append(Entry::Done {
            step: Step::Prepare,
            prepared: Some((defined.number, defined.exchange.clone())),
        })?;
        fault::barrier("cold-define").await;
        on_stage("0x3030 (SRC) Releasing Source LPAR");
        journal.intent(Step::Release)?;
        src.release_lpar(lpar.number, &defined.exchange, self.leases.source())
            .await?;
        journal.done(Step::Release)?;
        // From here the LPAR lives on the destination only: the move goes forward.
        journal.append(Entry::CommitPoint)?;
        fault::barrier("cold-release").await;
        if self.request.activate {
            on_stage("0x3040 (DST) Activating LPAR");
        }
        Ok(defined.number)
    }
}

fn job_error(e: RecoveryError) -> JobError {
    match e {
        RecoveryError::Journal(e) => JobError::Journal(e),
        RecoveryError::Client(e) => JobError::Client(e),
        RecoveryError::Profile(e) => JobError::Profile(e),
    }
}

/// A settled Shutdown-mode job.
#[derive(Debug)]
struct ColdSettled {
    header: JobHeader,
    outcome: Outcome,
    detail: String,
    /// The LPAR's number on the destination, once it lives there.
    dest_number: Option<LparNumber>,
    /// Moved, but the activation asked for failed.
    activation_error: Option<ClientError>,
}

impl ColdSettled {
    fn report(&self) -> RecoveryReport {
        let h = &self.header;
        RecoveryReport {
            job: h.job.clone(),
            lpar: h.lpar.clone(),
            source: h.source_hvm.clone(),
            destination: h.dest_hvm.clone(),
            outcome: Some(self.outcome),
            detail: self.detail.clone(),
        }
    }
}

/// The LPAR lives on the destination: activates it if the job asked for that (and it is not
/// yet), then finishes the journal as completed. A failed activation does not undo the move.
async fn activate_and_finish(
    mut journal: JobJournal,
    dst: &HvmClient,
    leases: &Leases,
    number: LparNumber,
) -> Result<ColdSettled, RecoveryError> {
    let facts = journal.facts().clone();
    let h = &facts.header;
    let mut activation_error = None;
    let mut detail = format!("moved: {} is LPAR {number} on {}", h.lpar, h.dest_hvm);
    if h.activate_after && !facts.is_done(Step::Activate) {
        journal.intent(Step::Activate)?;
        let status = dst.lpar(number).await?.lpar.status;
        let activated = if status == LparStatus::Activated {
            Ok(())
        } else {
            dst.activate(number, leases.destination()).await.map(|_| ())
        };
        match activated {
            Ok(()) => journal.done(Step::Activate)?,
            Err(e) => {
                journal.append(Entry::Failed {
                    step: Step::Activate,
                    error: e.to_string(),
                })?;
                detail = format!(
                    "moved, but activating it on {} failed: {e}; activate it there with `lparmover lpar activate {}/{}`",
                    h.dest_hvm, h.dest_hvm, h.lpar
                );
                activation_error = Some(e);
            }
        }
    }
    journal.finish(Outcome::Completed, detail.clone())?;
    Ok(ColdSettled {
        header: h.clone(),
        outcome: Outcome::Completed,
        detail,
        dest_number: Some(number),
        activation_error,
    })
}

/// Drives a Shutdown-mode job whose steps stopped (an error, a dead manager) to its end. The
/// destination's durable record of the job decides: without one, nothing was defined there and
/// the LPAR stays on the source (rolled back); with one, the source definition is released
/// (unless already gone) and the move completes. An unreachable HVM leaves the job waiting.
async fn finish_after_define(
    mut journal: JobJournal,
    src: &HvmClient,
    dst: &HvmClient,
    leases: &Leases,
) -> Result<ColdSettled, RecoveryError> {
    let facts = journal.facts().clone();
    let h = &facts.header;
    let defined = if !facts.intended(Step::Prepare) {
        None
    } else if let Some((number, exchange)) = facts.prepared.clone() {
        Some(ColdDefined { number, exchange })
    } else {
        match dst.cold_move(&h.job).await {
            Ok(d) => Some(d),
            Err(ClientError::Api { error, .. }) if error.kind == Emg::InvalidRequest => None,
            Err(e) => return Err(e.into()),
        }
    };
    let Some(defined) = defined else {
        journal.intent(Step::Rollback)?;
        journal.done(Step::Rollback)?;
        let detail = format!(
            "rolled back: {} stays on {} ({}), nothing was defined on {}",
            h.lpar,
            h.source_hvm,
            if facts.intended(Step::GuestShutdown) {
                "shut down"
            } else {
                "as it was"
            },
            h.dest_hvm
        );
        journal.finish(Outcome::RolledBack, detail.clone())?;
        return Ok(ColdSettled {
            header: h.clone(),
            outcome: Outcome::RolledBack,
            detail,
            dest_number: None,
            activation_error: None,
        });
    };
    if !facts.is_done(Step::Release) {
        let still_there = source_still_defined(src, h).await?;
        journal.intent(Step::Release)?;
        if still_there {
            src.release_lpar(h.source_number, &defined.exchange, leases.source())
                .await?;
        }
        journal.done(Step::Release)?;
        journal.append(Entry::CommitPoint)?;
    }
    activate_and_finish(journal, dst, leases, defined.number).await
}

/// Whether the source still defines the job's LPAR (same number and name): not yet released.
async fn source_still_defined(src: &HvmClient, h: &JobHeader) -> Result<bool, ClientError> {
    Ok(src
        .lpars()
        .await?
        .iter()
        .any(|v| v.lpar.number == h.source_number && v.lpar.name.as_str() == h.lpar))
}

/// Recovery of an orphaned Shutdown-mode job (its manager died): takes the job's leases again
/// and finishes it (see [`finish_after_define`]).
pub(crate) async fn settle_shutdown_job(
    profile: &Profile,
    journal: JobJournal,
) -> Result<RecoveryReport, RecoveryError> {
    let h = journal.facts().header.clone();
    let src = HvmClient::new(profile.hvm(&h.source_hvm)?)?;
    let dst = HvmClient::new(profile.hvm(&h.dest_hvm)?)?;
    super::recovery::release_leases(&[&src, &dst], &h.job).await;
    let leases = if source_still_defined(&src, &h).await? {
        Leases::take(&h.job, &src, h.source_number, &dst).await?
    } else {
        Leases::take_blades(&h.job, &src, &dst).await?
    };
    let settled = finish_after_define(journal, &src, &dst, &leases).await;
    leases.release().await;
    let settled = settled?;
    info!(job = %h.job, outcome = ?settled.outcome, "Shutdown-mode job settled");
    Ok(settled.report())
}
