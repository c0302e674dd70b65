//! The live move, manager side (work in progress).

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::MoveOptions;
use crate::emg::EmgError;
use crate::fleetview::LparRef;
use crate::model::LparNumber;
use crate::mover::{MoveSummary, Progress};
use crate::profile::Profile;

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
}

/// What the operator sees while the job runs.
#[derive(Clone, Debug, Serialize)]
pub struct JobProgress {
    /// Job id.
    pub job: String,
    /// Stage code and label in the seed's style, e.g. `0x4050 (SRC) Transferring Memory Data`.
    pub stage: String,
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
    pub total: Duration,
    /// Guest-visible pause, from its heartbeat (last change on the source → first on the
    /// destination).
    pub suspension: Option<Duration>,
    /// Figures from the mover.
    pub summary: MoveSummary,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An operator-facing catalogue error.
    #[error("{0}")]
    Emg(#[from] EmgError),
}

/// Runs a live move end to end.
pub async fn live_move(
    _profile: &Profile,
    _request: &LiveMoveRequest,
    _on_progress: impl FnMut(&JobProgress) + Send,
    _cancel: CancellationToken,
) -> Result<LiveMoveReport, JobError> {
    Err(JobError::Emg(EmgError::new(crate::emg::Emg::Internal, "live move not wired yet")))
}
