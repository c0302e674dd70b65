//! The live move (Concurrent Maintenance), manager side.
//!
//! The manager orchestrates; the blades move the bytes. Every step is journaled (intent before,
//! result after, [`super::journal`]); any failure hands the job to [`super::recovery`], which
//! rolls back or goes forward depending on the commit point and on what each HVM still holds.
//!
//! ```text
//! 0x1010 checks (refuse on any Error row)
//! 0x1020 lock: lease on the source LPAR, lease on the destination blade (renewed while running)
//! 0x1030 back up both HVM configurations
//! 0x2010 (DST) prepare: reserve CPU + memory, define the LPAR paused, vFCs log in with the
//!        migration WWPNs, expect the one-time ticket from the source's pinned certificate
//! 0x4050 (SRC) pre-copy rounds over the migration path (QUIC), suspension, final pages + vCPUs
//!        (from here until the source commits, the manager renews the source's switch-over lease;
//!        if it goes silent the blades settle the job themselves: hvmsim `migration::settlement`)
//! 0x4070 commit point, journaled: from here the destination is authoritative (the real commit is
//!        the destination's durable "resumed" record; a "fenced" one written first refuses it)
//! 0x4080 (DST) commit + resume (one call after the switch-over is ready: the guest's pause)
//! 0x4090 (SRC) commit: vFCs log out; (DST) vFCs swap to the WWPNs; (SRC) release the LPAR and
//!        adopt the exchanged names
//! ```
//!
//! Before the commit point every failure (or the operator's cancel) aborts both sides: the source
//! runs on untouched, the destination scrubs what it received and drops its definition.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::fault;
use super::journal::{Entry, JobHeader, JobJournal, JobKind, JournalError, Outcome, Step};
use super::leases::{Leases, SwitchoverLease};
use super::recovery::{self, RecoveryReport};
use crate::api::{
    ClientError, HvmClient, MigrationStatus, MoveOptions, Phase, PrepareIncoming, StartSend,
};
use crate::checks::{self, ChecksFailed, GatherError};
use crate::emg::{Emg, EmgError};
use crate::fleetview::FindLpar;
use crate::fleetview::LparRef;
use crate::history::{Actor, History, MoveRecord, MoveResult, Placement};
use crate::model::{LparNumber, Mode};
use crate::mover::{JobTicket, MoveSummary, Progress};
use crate::profile::{Profile, ProfileError};

/// Longest wait of one progress long poll: the source answers at once when the phase changes
/// (the switch-over is ready), else after this long with fresh progress.
const LONG_POLL: Duration = Duration::from_millis(250);

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct LiveMoveRequest {
    /// The LPAR to move (HVM/LPAR).
    pub source: LparRef,
    /// Destination HVM name.
    pub destination: String,
    /// LPAR number on the destination (None = youngest free, the seed's Auto).
    pub dest_number: Option<LparNumber>,
    /// Tunables.
    pub options: MoveOptions,
    /// Who asked for it (recorded in the history).
    pub actor: Actor,
}

/// A stage of the job as the operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum JobStage {
    /// Compatibility checks.
    Checking,
    /// Taking the leases.
    Locking,
    /// Backing up both HVM configurations.
    BackingUp,
    /// Preparing the destination LPAR.
    Preparing,
    /// Memory moving (the mover's own stage says more).
    Transferring,
    /// The guest is paused, the final pages travel.
    Suspending,
    /// The commit point.
    Committing,
    /// The destination resumes the LPAR.
    Resuming,
    /// The source lets go.
    Releasing,
    /// Cleaning up after a failure or cancel.
    RollingBack,
    /// Done.
    Completed,
}

impl JobStage {
    /// Stage code in the seed's style.
    pub fn code(self) -> u16 {
        match self {
            Self::Checking => 0x1010,
            Self::Locking => 0x1020,
            Self::BackingUp => 0x1030,
            Self::Preparing => 0x2010,
            Self::Transferring => 0x4050,
            Self::Suspending => 0x4060,
            Self::Committing => 0x4070,
            Self::Resuming => 0x4080,
            Self::Releasing => 0x4090,
            Self::RollingBack => 0x4F00,
            Self::Completed => 0x5000,
        }
    }

    /// Label in the seed's style.
    pub fn label(self) -> &'static str {
        match self {
            Self::Checking => "(MMS) Checking Configuration",
            Self::Locking => "(MMS) Locking LPAR and Blade",
            Self::BackingUp => "(MMS) Backing up HVM Configuration",
            Self::Preparing => "(DST) Preparing Destination LPAR",
            Self::Transferring => "(SRC) Transferring Memory Data",
            Self::Suspending => "(SRC) Suspending LPAR",
            Self::Committing => "(MMS) Committing Switch-over",
            Self::Resuming => "(DST) Resuming LPAR",
            Self::Releasing => "(SRC) Releasing Source LPAR",
            Self::RollingBack => "(MMS) Rolling back",
            Self::Completed => "(MMS) Migration completed!",
        }
    }

    /// Whether the job has passed its commit point here: from this stage on the destination is
    /// authoritative, a cancel is refused and the move completes.
    pub fn is_past_commit(self) -> bool {
        matches!(
            self,
            Self::Committing | Self::Resuming | Self::Releasing | Self::Completed
        )
    }

    /// Every stage of a successful move, in order (what a progress view lists).
    pub const SUCCESS_PATH: [JobStage; 10] = [
        Self::Checking,
        Self::Locking,
        Self::BackingUp,
        Self::Preparing,
        Self::Transferring,
        Self::Suspending,
        Self::Committing,
        Self::Resuming,
        Self::Releasing,
        Self::Completed,
    ];

    /// `0x4050 (SRC) Transferring Memory Data`.
    pub fn display(self) -> String {
        format!("0x{:04X} {}", self.code(), self.label())
    }
}

/// What the operator sees while the job runs.
#[derive(Clone, Debug, Serialize)]
pub struct JobProgress {
    /// Job id.
    pub job: String,
    /// Stage.
    pub stage: JobStage,
    /// Mover progress while memory moves.
    pub mover: Option<Progress>,
}

/// The result of a finished live move.
#[derive(Clone, Debug, Serialize)]
pub struct LiveMoveReport {
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
    /// Whole job, checks to release.
    #[serde(with = "duration_ms")]
    pub total: Duration,
    /// Guest-visible pause, from its heartbeat: last change seen on the source before the pause
    /// → first change seen on the destination after the resume.
    #[serde(with = "opt_duration_ms")]
    pub suspension: Option<Duration>,
    /// Figures from the mover.
    pub summary: MoveSummary,
    /// Warnings of the checks the operator should know about.
    pub warnings: Vec<String>,
}

mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

mod opt_duration_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An operator-facing catalogue error.
    #[error(transparent)]
    Emg(#[from] EmgError),
    /// A move option is out of range; nothing was started.
    #[error(transparent)]
    Options(#[from] crate::api::InvalidOption),
    /// The checks found Error rows.
    #[error(transparent)]
    Checks(#[from] ChecksFailed),
    /// The checks could not run.
    #[error(transparent)]
    Gather(#[from] GatherError),
    /// A name is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A call to an HVM failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The HVM configurations could not be backed up.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// The job journal could not be written: the move does not start (or goes no further).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The move failed and recovery settled it (or left it for `lparmover recover`).
    #[error("{error}; recovery: {}", recovery.detail)]
    Settled {
        /// What failed.
        error: Box<JobError>,
        /// What recovery did.
        recovery: Box<RecoveryReport>,
    },
}

impl JobError {
    /// The catalogue error behind it (for scripts and the navigator).
    pub fn emg(&self) -> Option<EmgError> {
        match self {
            Self::Emg(e) => Some(e.clone()),
            Self::Client(e) => Some(e.emg()),
            Self::Checks(c) => c.errors.first().cloned(),
            Self::Settled { error, .. } => error.emg(),
            Self::Gather(_)
            | Self::Profile(_)
            | Self::Backup(_)
            | Self::Journal(_)
            | Self::Options(_) => None,
        }
    }
}

/// A new job id: time plus randomness, sortable.
pub fn new_job_id() -> String {
    let suffix: u16 = rand::random();
    format!(
        "job-{}-{suffix:04x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    )
}

/// Runs a live move end to end. `on_progress` is called at every stage and poll; `cancel`
/// cancels while memory is being transferred (afterwards the move completes).
pub async fn live_move(
    profile: &Profile,
    request: &LiveMoveRequest,
    mut on_progress: impl FnMut(&JobProgress) + Send,
    cancel: CancellationToken,
) -> Result<LiveMoveReport, JobError> {
    let job = new_job_id();
    let span = info_span!("job", id = %job, lpar = ?request.source.lpar, to = %request.destination);
    async move {
        let started = Instant::now();
        let mut emit = |stage: JobStage, mover: Option<Progress>| {
            on_progress(&JobProgress { job: job.clone(), stage, mover });
        };

        // Out-of-range options stop here, before any blade is asked for anything.
        request.options.validate()?;
        emit(JobStage::Checking, None);
        let report = checks::gather(
            profile,
            &request.source,
            &request.destination,
            Mode::ConcurrentMaintenance,
            request.dest_number,
        )
        .await?;
        report.ensure_no_errors()?;
        let warnings: Vec<String> = report.warnings().iter().map(|r| format!("{}: {}", r.item, r.detail)).collect();

        let src_entry = profile.hvm(&request.source.hvm)?;
        let dst_entry = profile.hvm(&request.destination)?;
        let src = HvmClient::new(src_entry)?;
        let dst = HvmClient::new(dst_entry)?;
        let inventory = src.inventory().await?;
        let lpar = request
            .source
            .lpar
            .find(&inventory)
            .ok_or_else(|| EmgError::new(Emg::LparNotFound, format!("{:?} on {}", request.source.lpar, src.name())))?
            .lpar
            .clone();

        emit(JobStage::Locking, None);
        let dirs = crate::dirs::ManagerDirs::for_profile(profile);
        let leases = Leases::take(&job, &src, lpar.number, &dst).await?;
        let journal = match JobJournal::begin(
            &dirs,
            JobHeader {
                job: job.clone(),
                kind: JobKind::Live,
                lpar: lpar.name.to_string(),
                source_hvm: src.name().to_owned(),
                source_number: lpar.number,
                dest_hvm: dst.name().to_owned(),
                activate_after: false,
                actor: Some(request.actor.clone()),
            },
        ) {
            Ok(j) => j,
            Err(e) => {
                leases.release().await;
                return Err(e.into());
            }
        };
        let history = History::open(&dirs.history_db())
            .map_err(|e| warn!(error = %e, "migration history unavailable; the move goes on without it"))
            .ok();
        let mut record = MoveRecord {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            source: Placement { hvm: src.name().to_owned(), number: lpar.number },
            dest_hvm: dst.name().to_owned(),
            dest_number: None,
            mode: Mode::ConcurrentMaintenance,
            result: MoveResult::InProgress,
            started_at: chrono::Utc::now(),
            finished_at: None,
            suspension: None,
            detail: None,
            actor: Some(request.actor.clone()),
        };
        let save = |record: &MoveRecord| {
            if let Some(h) = &history
                && let Err(e) = h.record(record)
            {
                warn!(error = %e, "history not recorded");
            }
        };
        save(&record);
        let ctx = Ctx { job: &job, src: &src, dst: &dst, profile, dirs: &dirs };
        let result = run_locked(&ctx, src_entry, &lpar, request, &leases, journal, &mut emit, &cancel).await;
        leases.release().await;
        record.finished_at = Some(chrono::Utc::now());
        match &result {
            Ok((_, number, suspension)) => {
                record.result = MoveResult::Completed;
                record.dest_number = Some(*number);
                record.suspension = *suspension;
            }
            Err(e) => {
                record.result = match e {
                    JobError::Settled { recovery, .. } if recovery.outcome == Some(Outcome::Completed) => MoveResult::Completed,
                    _ => match e.emg() {
                        Some(emg) if emg.kind == Emg::TerminatedByUser => MoveResult::Cancelled,
                        _ => MoveResult::Failed,
                    },
                };
                record.detail = Some(e.to_string());
            }
        }
        save(&record);
        let (summary, dest_number, suspension) = result?;
        emit(JobStage::Completed, None);
        let report = LiveMoveReport {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            source: src.name().to_owned(),
            destination: dst.name().to_owned(),
            dest_number,
            total: started.elapsed(),
            suspension,
            summary,
            warnings,
        };
        info!(total_ms = report.total.as_millis() as u64, suspension_ms = ?report.suspension.map(|d| d.as_secs_f64() * 1e3), "live move completed");
        Ok(report)
    }
    .instrument(span)
    .await
}

/// The two HVMs of a job and where the manager keeps its data.
struct Ctx<'a> {
    job: &'a str,
    src: &'a HvmClient,
    dst: &'a HvmClient,
    profile: &'a Profile,
    dirs: &'a crate::dirs::ManagerDirs,
}

type Moved = (MoveSummary, LparNumber, Option<Duration>);

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    ctx: &Ctx<'_>,
    src_entry: &crate::profile::ProfileHvm,
    lpar: &crate::model::Lpar,
    request: &LiveMoveRequest,
    leases: &Leases,
    mut journal: JobJournal,
    emit: &mut (impl FnMut(JobStage, Option<Progress>) + Send),
    cancel: &CancellationToken,
) -> Result<Moved, JobError> {
    let Ctx {
        job,
        src,
        dst,
        profile,
        dirs,
    } = *ctx;
    journal.done(Step::Lock)?;
    emit(JobStage::BackingUp, None);
    journal.intent(Step::Backup)?;
    if let Err(e) = crate::backup::backup_both(profile, src.name(), dst.name(), job, dirs).await {
        journal.finish(Outcome::RolledBack, format!("backup failed: {e}"))?;
        return Err(e.into());
    }
    journal.done(Step::Backup)?;
    fault::barrier("backed-up").await;

    emit(JobStage::Preparing, None);
    let ticket = JobTicket::generate();
    journal.intent(Step::Prepare)?;
    let prepared = dst
        .prepare_incoming(
            &PrepareIncoming {
                job: job.to_owned(),
                lpar: lpar.clone(),
                number: request.dest_number,
                ticket: ticket.to_hex(),
                source_cert_pem: src_entry.cert_pem.clone(),
                ticket_ttl_s: None,
                purpose: Default::default(),
            },
            leases.destination(),
        )
        .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return Err(fail(profile, journal, e.into(), emit).await),
    };
    journal.append(Entry::Done {
        step: Step::Prepare,
        prepared: Some((prepared.number, prepared.exchange.clone())),
    })?;
    fault::barrier("prepare").await;

    emit(JobStage::Transferring, None);
    let send = StartSend {
        job: job.to_owned(),
        lpar: lpar.number,
        ticket: ticket.to_hex(),
        dest_addr: prepared.migration_addr,
        dest_cert_pem: prepared.cert_pem.clone(),
        options: request.options.clone(),
        exchange: prepared.exchange.clone(),
        purpose: Default::default(),
    };
    journal.intent(Step::Send)?;
    if let Err(e) = src.start_send(&send, leases.source()).await {
        return Err(fail(profile, journal, e.into(), emit).await);
    }
    journal.done(Step::Send)?;
    let ready = match watch_transfer(job, src, emit, cancel).await {
        Ok(status) => status,
        Err(e) => return Err(fail(profile, journal, e, emit).await),
    };
    // The source holds the guest paused from here: renew its switch-over lease until it has
    // committed, so that if this process dies the blades settle within the job's bound.
    let switchover_lease = SwitchoverLease::hold(src, job);
    let summary_before_commit = ready.summary.clone().unwrap_or_default();
    fault::barrier("suspension").await;

    // The commit point, durable before the destination is told: from here the move goes forward.
    emit(JobStage::Committing, None);
    if let Err(e) = journal.append(Entry::CommitPoint) {
        return Err(fail(profile, journal, e.into(), emit).await);
    }
    fault::barrier("commit").await;
    emit(JobStage::Resuming, None);
    journal.intent(Step::Resume)?;
    if let Err(e) = dst.resume_migration(job).await {
        return Err(fail(profile, journal, e.into(), emit).await);
    }
    journal.done(Step::Resume)?;
    fault::barrier("swap").await;
    emit(JobStage::Releasing, None);
    journal.intent(Step::SourceCommit)?;
    let committed = match src.commit_migration(job, &prepared.exchange).await {
        Ok(c) => c,
        Err(e) => return Err(fail(profile, journal, e.into(), emit).await),
    };
    drop(switchover_lease);
    journal.done(Step::SourceCommit)?;
    journal.intent(Step::Swap)?;
    if let Err(e) = dst.swap_migration(job).await {
        return Err(fail(profile, journal, e.into(), emit).await);
    }
    journal.done(Step::Swap)?;
    fault::barrier("release").await;
    journal.intent(Step::Release)?;
    if let Err(e) = src.release_migration(job, &prepared.exchange).await {
        return Err(fail(profile, journal, e.into(), emit).await);
    }
    journal.done(Step::Release)?;
    journal.finish(
        Outcome::Completed,
        format!("{} runs on {}", lpar.name, dst.name()),
    )?;

    let suspension = measure_suspension(job, dst, committed.last_heartbeat_before_pause_ns).await;
    Ok((
        committed.summary.unwrap_or(summary_before_commit),
        prepared.number,
        suspension,
    ))
}

/// A step failed: recovery decides from the journal and both HVMs what is safe (roll back before
/// the commit point while the source holds the guest, forward after it) and does it.
async fn fail(
    profile: &Profile,
    journal: JobJournal,
    error: JobError,
    emit: &mut (impl FnMut(JobStage, Option<Progress>) + Send),
) -> JobError {
    emit(JobStage::RollingBack, None);
    warn!(%error, "the move failed; recovering");
    match recovery::settle(profile, journal).await {
        Ok(report) => JobError::Settled {
            error: Box::new(error),
            recovery: Box::new(report),
        },
        Err(e) => {
            warn!(error = %e, "recovery could not finish; the job stays in the journal for `lparmover recover`");
            error
        }
    }
}

/// Polls the source until the switch-over is ready, reporting progress; cancels on request.
async fn watch_transfer(
    job: &str,
    src: &HvmClient,
    emit: &mut (impl FnMut(JobStage, Option<Progress>) + Send),
    cancel: &CancellationToken,
) -> Result<MigrationStatus, JobError> {
    let mut cancel_sent = false;
    loop {
        if cancel.is_cancelled() && !cancel_sent {
            cancel_sent = true;
            if let Err(e) = src.cancel_migration(job).await {
                warn!(error = %e, "cancel refused");
            }
        }
        let status = if fault::armed("round0") || fault::armed("rounds") {
            // A fault test waits for a round, which may last less than one long poll.
            tokio::time::sleep(Duration::from_millis(10)).await;
            src.migration_status(job).await?
        } else {
            src.migration_status_wait(job, Phase::Transferring, LONG_POLL)
                .await?
        };
        if let Some(p) = &status.progress
            && status.phase == Phase::Transferring
        {
            if p.round == 0 && p.memory_bytes_sent > 0 {
                fault::barrier("round0").await;
            } else if p.round >= 1 {
                fault::barrier("rounds").await;
            }
        }
        let stage = match status.progress.as_ref().map(|p| p.stage) {
            Some(crate::mover::Stage::Suspended) => JobStage::Suspending,
            _ => JobStage::Transferring,
        };
        match status.phase {
            Phase::SwitchoverReady => return Ok(status),
            Phase::Failed | Phase::Cancelled | Phase::Aborted => {
                let error = status.error.unwrap_or_else(|| {
                    EmgError::new(
                        Emg::Internal,
                        format!(
                            "the source reported the move {:?} without saying why",
                            status.phase
                        ),
                    )
                });
                return Err(error.into());
            }
            _ => emit(stage, status.progress),
        }
    }
}

/// The guest-visible pause: the destination reports its first heartbeat change shortly after the
/// resume.
async fn measure_suspension(
    job: &str,
    dst: &HvmClient,
    last_before_ns: Option<u64>,
) -> Option<Duration> {
    let before = last_before_ns?;
    for _ in 0..50 {
        if let Ok(status) = dst.migration_status(job).await
            && let Some(after) = status.first_heartbeat_after_resume_ns
        {
            return after.checked_sub(before).map(Duration::from_nanos);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
