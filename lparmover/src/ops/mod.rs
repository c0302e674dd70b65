//! One library operation per operator workflow.
//!
//! The `lparmover` CLI, the navigator and the policy runner all call these; none of them holds
//! a second copy of a workflow. Each operation is the whole workflow an operator asks for (a
//! live move settles what an earlier manager left unfinished first; a return migration finds
//! its endpoints in the history), while the steps underneath live in [`crate::jobs`],
//! [`crate::checks`], [`crate::connectivity`] and [`crate::history`].
//!
//! Every operation that moves or proves something takes the [`Actor`] who asked for it, which
//! the history records (OS user, host, and the CLI, the navigator or a policy).
//!
//! | workflow | operation |
//! | --- | --- |
//! | inventory | [`inventory`] |
//! | check (Migration Config Viewer) | [`check`] |
//! | move, live or Shutdown | [`moves::live`], [`moves::shutdown`] |
//! | cancel / extend a running move | [`moves::MoveControl`] |
//! | return migration | [`target::MoveTarget::Return`] |
//! | rehearse | [`rehearse`] |
//! | Connectivity Test | [`connectivity_test`] |
//! | recover | [`recover::settle_unfinished`], [`recover::recover_all`] |
//! | roll back WWNs | [`recover::rollback_wwn`], [`recover::pending_wwn_rollbacks`] |
//! | history | [`history`] |
//! | system logs | [`logs::fleet_logs`] |
//! | start the embedded demo fleet | [`fleetproc::FleetProcess`] |
//! | WWN Setting: migration WWPNs, nicknames, status, CSV | [`storage`] |
//! | storage arrays: list, Add Storage, Password Setting | [`arrays`] |

pub mod arrays;
pub mod fleetproc;
pub mod logs;
pub mod moves;
pub mod recover;
pub mod register;
pub mod stall;
pub mod storage;
pub mod target;

use crate::api::{HvmClient, LparView, MoveOptions};
use crate::checks::{self, CheckReport, DestinationChoice, GatherError};
use crate::connectivity::{self, ConnectivityError, ConnectivityReport, ProbeLimits};
use crate::dirs::ManagerDirs;
use crate::fleetview::FindLpar;
use crate::fleetview::{FleetSnapshot, LparRef};
use crate::history::{Actor, History, HistoryEntry, HistoryError, HistoryRow, TrialRecord};
use crate::jobs::{self, JobError, RehearsalReport};
use crate::model::Mode;
use crate::profile::Profile;

pub use target::{Destination, Endpoints, MoveTarget, parse_duration};

/// Every HVM of the profile, asked at once (a dead blade costs its connect timeout, never the
/// others' answers).
pub async fn inventory(profile: &Profile) -> FleetSnapshot {
    FleetSnapshot::gather(profile).await
}

/// What an operator picks before Show Config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRequest {
    /// The LPAR (HVM/LPAR).
    pub source: LparRef,
    /// Destination HVM and LPAR number (or Auto).
    pub destination: Destination,
    /// Migration mode.
    pub mode: Mode,
    /// Processor group on the destination (None: the LPAR's own group).
    pub processor_group: Option<u8>,
}

/// The Migration Config Viewer: every check row for one source LPAR and destination.
pub async fn check(profile: &Profile, request: &CheckRequest) -> Result<CheckReport, GatherError> {
    let choice = DestinationChoice {
        number: request.destination.number,
        processor_group: request.processor_group,
    };
    checks::gather_for(
        profile,
        &request.source,
        &request.destination.hvm,
        request.mode,
        choice,
    )
    .await
}

/// Sample a rehearsal sends unless told otherwise.
pub const REHEARSAL_SAMPLE: u64 = jobs::rehearsal::DEFAULT_SAMPLE;

/// A rehearsal of a live move: checks, reservations, a short real transfer, then release.
pub async fn rehearse(
    profile: &Profile,
    actor: &Actor,
    source: &LparRef,
    destination: &str,
    options: &MoveOptions,
) -> Result<RehearsalReport, JobError> {
    jobs::rehearse(
        profile,
        actor,
        source,
        destination,
        options,
        REHEARSAL_SAMPLE,
    )
    .await
}

/// A Connectivity Test between two HVMs' migration paths (recorded in the history).
pub async fn connectivity_test(
    profile: &Profile,
    actor: &Actor,
    source: &str,
    destination: &str,
    limits: ProbeLimits,
) -> Result<ConnectivityReport, ConnectivityError> {
    connectivity::connectivity_test(profile, actor, source, destination, limits).await
}

/// Activates a deactivated LPAR (its guest starts).
pub async fn activate(profile: &Profile, lpar: &LparRef) -> Result<LparView, OpError> {
    let client = HvmClient::new(profile.hvm(&lpar.hvm)?)?;
    let inventory = client.inventory().await?;
    let number = lpar
        .lpar
        .find(&inventory)
        .ok_or_else(|| OpError::NoSuchLpar {
            lpar: lpar.to_string(),
        })?
        .lpar
        .number;
    Ok(client.activate(number, None).await?)
}

/// One LPAR as its HVM reports it.
pub async fn lpar(profile: &Profile, lpar: &LparRef) -> Result<LparView, OpError> {
    let client = HvmClient::new(profile.hvm(&lpar.hvm)?)?;
    let inventory = client.inventory().await?;
    lpar.lpar
        .find(&inventory)
        .cloned()
        .ok_or_else(|| OpError::NoSuchLpar {
            lpar: format!(
                "{lpar}; its HVM has {}",
                inventory
                    .lpars
                    .iter()
                    .map(|l| format!("{} {}", l.lpar.number, l.lpar.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// The Migration History: every migration instance (newest first), or one LPAR's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LparHistory {
    /// The LPAR.
    pub lpar: String,
    /// Now, old1, … oldN: where it ran after each migration instance.
    pub placements: Vec<HistoryRow>,
    /// Its rehearsals, newest first (they moved nothing).
    pub rehearsals: Vec<TrialRecord>,
}

/// Every migration, rehearsal and Connectivity Test, newest first.
pub fn history(dirs: &ManagerDirs, limit: usize) -> Result<Vec<HistoryEntry>, HistoryError> {
    History::open(&dirs.history_db())?.entries(limit)
}

/// One LPAR's Migration History window: Now, old1 … then its rehearsals.
pub fn lpar_history(dirs: &ManagerDirs, lpar: &str) -> Result<LparHistory, HistoryError> {
    let history = History::open(&dirs.history_db())?;
    Ok(LparHistory {
        lpar: lpar.to_owned(),
        placements: history.lpar_history(lpar)?,
        rehearsals: history.trials_of(lpar)?,
    })
}

/// Why an operation that is not a job failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A name is not in the profile.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    /// A call to an HVM failed.
    #[error(transparent)]
    Client(#[from] crate::api::ClientError),
    /// No such LPAR on the HVM.
    #[error("no LPAR {lpar}; see the fleet inventory (`lparmover fleet`)")]
    NoSuchLpar {
        /// The LPAR as the operator named it.
        lpar: String,
    },
    /// The history could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
}
