//! Moves as operators run them: settle what an earlier manager left unfinished, resolve the
//! endpoints, run the job, and let the operator cancel or extend it while memory moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use super::recover::settle_unfinished;
use super::target::{MoveTarget, TargetError};
use crate::api::{ClientError, HvmClient, MigrationStatus, MoveOptions};
use crate::dirs::ManagerDirs;
use crate::emg::Emg;
use crate::history::Actor;
use crate::jobs::{
    self, ColdMoveReport, ColdMoveRequest, JobError, JobProgress, JobStage, LiveMoveReport,
    LiveMoveRequest, RecoveryReport,
};
use crate::metrics::{self, MoveFigures, Outcome, Part};
use crate::model::Mode;
use crate::profile::{Profile, ProfileError};

/// What a move tells its caller while it runs.
#[derive(Clone, Debug)]
pub enum MoveEvent {
    /// A job an earlier manager left unfinished was settled before this one started.
    Settled(RecoveryReport),
    /// Unfinished jobs could not be read; the move goes on.
    SettleFailed(String),
    /// Live-move progress.
    Progress(JobProgress),
    /// Shutdown-mode stage (already worded for the operator).
    Stage(String),
}

/// Why a move did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The endpoints could not be resolved.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The job failed (and was settled as its error says).
    #[error(transparent)]
    Job(#[from] JobError),
}

impl MoveError {
    /// The catalogue error behind it, when there is one.
    pub fn emg(&self) -> Option<crate::emg::EmgError> {
        match self {
            Self::Job(e) => e.emg(),
            Self::Target(_) | Self::Invalid(_) => None,
        }
    }
}

/// Handles on a running live move, shared with whoever shows it: cancel before the commit
/// point, extend the timeout while memory moves, and whether the commit point has passed.
#[derive(Clone, Debug, Default)]
pub struct MoveControl {
    cancel: CancellationToken,
    past_commit: Arc<AtomicBool>,
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The move is being cancelled; the source keeps running.
    Cancelling,
    /// Refused: the move passed its commit point, the destination is authoritative.
    PastCommit,
}

impl MoveControl {
    /// A fresh control for one move.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the move to stop. Before the commit point the source keeps running and the
    /// destination scrubs what it received; after it the move completes and this says so.
    pub fn cancel(&self) -> CancelOutcome {
        if self.past_commit() {
            CancelOutcome::PastCommit
        } else {
            self.cancel.cancel();
            CancelOutcome::Cancelling
        }
    }

    /// Whether the move passed its commit point (cancel refused from here on).
    pub fn past_commit(&self) -> bool {
        self.past_commit.load(Ordering::Acquire)
    }

    fn observe(&self, stage: JobStage) {
        if stage.is_past_commit() {
            self.past_commit.store(true, Ordering::Release);
        }
    }

    fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Longest extension one request may add, seconds (a day).
pub const MAX_EXTEND_S: u64 = crate::api::ExtendTimeout::MAX_S;

/// Extends a running move's timeout on its source HVM (allowed while memory moves).
pub async fn extend(
    profile: &Profile,
    source_hvm: &str,
    job: &str,
    seconds: u64,
) -> Result<MigrationStatus, ExtendError> {
    if seconds == 0 || seconds > MAX_EXTEND_S {
        return Err(ExtendError::Range(seconds));
    }
    let client = HvmClient::new(profile.hvm(source_hvm)?)?;
    Ok(client.extend_migration(job, seconds).await?)
}

/// Changes a running move's bandwidth cap on its source HVM (bytes/s, `None` = none; allowed
/// while memory moves). A policy re-splits its shared cap with it as entries start and finish.
pub async fn set_bandwidth(
    profile: &Profile,
    source_hvm: &str,
    job: &str,
    bandwidth_limit: Option<u64>,
) -> Result<MigrationStatus, BandwidthError> {
    crate::api::SetBandwidth { bandwidth_limit }
        .validate()
        .map_err(BandwidthError::Range)?;
    let client = HvmClient::new(profile.hvm(source_hvm)?)?;
    Ok(client.set_migration_bandwidth(job, bandwidth_limit).await?)
}

/// Why a bandwidth cap could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum BandwidthError {
    /// Outside 1 MB/s ..= 1 TB/s (the blade's own check, asked before any request goes out).
    #[error(transparent)]
    Range(crate::api::InvalidOption),
    /// Not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The HVM refused (the move no longer sends memory) or did not answer.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Why a timeout could not be extended.
#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    /// Outside 1 s ..= a day.
    #[error("cannot extend by {0} s: give 1 to {MAX_EXTEND_S} seconds (extend again for more)")]
    Range(u64),
    /// Not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The HVM refused or did not answer.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A live move (Concurrent Maintenance) as an operator asks for it.
pub async fn live(
    profile: &Profile,
    actor: &Actor,
    target: &MoveTarget,
    options: MoveOptions,
    control: &MoveControl,
    mut on_event: impl FnMut(MoveEvent) + Send,
) -> Result<LiveMoveReport, MoveError> {
    let dirs = ManagerDirs::for_profile(profile);
    let endpoints = target.resolve(&dirs)?;
    settle_first(profile, &mut on_event).await;
    let request = LiveMoveRequest {
        source: endpoints.source,
        destination: endpoints.destination.hvm,
        dest_number: endpoints.destination.number,
        options,
        actor: actor.clone(),
    };
    let flight = metrics::manager()
        .moves
        .begin(Part::Manager, Mode::ConcurrentMaintenance);
    let result = jobs::live_move(
        profile,
        &request,
        |p| {
            control.observe(p.stage);
            on_event(MoveEvent::Progress(p.clone()));
        },
        control.token(),
    )
    .await;
    match &result {
        Ok(report) => flight.end(
            Outcome::Completed,
            &MoveFigures {
                wire_bytes: report.summary.wire_bytes,
                memory_bytes: report.summary.memory_bytes_sent,
                suspension: report.suspension,
                rounds: Some(report.summary.rounds),
                max_throttle_percent: Some(report.summary.max_throttle_percent),
            },
        ),
        Err(e) => flight.end(outcome_of(e), &MoveFigures::default()),
    }
    Ok(result?)
}

/// How a failed job counts in the metrics: by what recovery made of it, else by its error.
fn outcome_of(e: &JobError) -> Outcome {
    match e {
        JobError::Settled { recovery, error } => match recovery.outcome {
            Some(jobs::journal::Outcome::Completed) => Outcome::Completed,
            Some(jobs::journal::Outcome::RolledBack) => match error.emg() {
                Some(emg) if emg.kind == Emg::TerminatedByUser => Outcome::Cancelled,
                _ => Outcome::RolledBack,
            },
            Some(jobs::journal::Outcome::NeedsRecovery) | None => Outcome::Failed,
        },
        other => match other.emg() {
            Some(emg) if emg.kind == Emg::TerminatedByUser => Outcome::Cancelled,
            _ => Outcome::Failed,
        },
    }
}

/// What a Shutdown-mode move is asked to do besides its endpoints.
#[derive(Clone, Debug)]
pub struct ShutdownOptions {
    /// Processor group on the destination (None: the LPAR's own group).
    pub processor_group: Option<u8>,
    /// Shut the guest OS down remotely if the LPAR is activated.
    pub remote_shutdown: bool,
    /// Waiting TimeOut Limit for the remote shutdown.
    pub shutdown_wait: std::time::Duration,
    /// Activate the LPAR on the destination afterwards.
    pub activate: bool,
}

impl Default for ShutdownOptions {
    fn default() -> Self {
        Self {
            processor_group: None,
            remote_shutdown: false,
            shutdown_wait: std::time::Duration::from_secs(300),
            activate: false,
        }
    }
}

/// A Shutdown-mode move as an operator asks for it.
pub async fn shutdown(
    profile: &Profile,
    actor: &Actor,
    target: &MoveTarget,
    options: ShutdownOptions,
    mut on_event: impl FnMut(MoveEvent) + Send,
) -> Result<ColdMoveReport, MoveError> {
    let dirs = ManagerDirs::for_profile(profile);
    let endpoints = target.resolve(&dirs)?;
    settle_first(profile, &mut on_event).await;
    let request = ColdMoveRequest {
        source: endpoints.source,
        destination: endpoints.destination.hvm,
        dest_number: endpoints.destination.number,
        processor_group: options.processor_group,
        remote_shutdown: options.remote_shutdown,
        shutdown_wait: options.shutdown_wait,
        activate: options.activate,
        actor: actor.clone(),
    };
    let flight = metrics::manager()
        .moves
        .begin(Part::Manager, Mode::Shutdown);
    let result = jobs::shutdown_move(profile, &request, |stage| {
        on_event(MoveEvent::Stage(stage.to_string()))
    })
    .await;
    match &result {
        Ok(_) => flight.end(Outcome::Completed, &MoveFigures::default()),
        Err(e) => flight.end(outcome_of(e), &MoveFigures::default()),
    }
    Ok(result?)
}

async fn settle_first(profile: &Profile, on_event: &mut (impl FnMut(MoveEvent) + Send)) {
    match settle_unfinished(profile).await {
        Ok(reports) => reports
            .into_iter()
            .for_each(|r| on_event(MoveEvent::Settled(r))),
        Err(e) => on_event(MoveEvent::SettleFailed(e.to_string())),
    }
}
