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
//! From the leases on, the move is in the migration history (In progress, then its outcome). Once
//! the source definition is gone the LPAR lives on the destination, so the move is recorded as
//! completed there even if the activation afterwards fails (the job still reports that error).

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{Instrument, info_span};

use super::leases::Leases;
use super::live::{JobError, new_job_id};
use crate::api::{ColdDefine, HvmClient};
use crate::checks::{self, DestinationChoice};
use crate::emg::{Emg, EmgError};
use crate::fleetview::LparRef;
use crate::history::{JobHistory, MoveRecord, MoveResult, Placement};
use crate::model::{LparNumber, LparStatus, Mode};
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
        };
        history.save_move(&record);
        // Set once the source has let go: from then on the LPAR lives on the destination.
        let mut moved_to: Option<LparNumber> = None;
        let result = async {
            on_stage("0x1030 (MMS) Backing up HVM Configuration");
            crate::backup::backup_both(
                profile,
                src.name(),
                dst.name(),
                &job,
                &crate::dirs::ManagerDirs::for_profile(profile),
            )
            .await?;
            if active {
                on_stage("0x3010 (SRC) Guest OS Shutdown");
                src.request_shutdown(lpar.number, leases.source()).await?;
                let deadline = Instant::now() + request.shutdown_wait;
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
                                request.shutdown_wait
                            ),
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            on_stage("0x3020 (DST) Defining LPAR");
            let mut moved = src.lpar(lpar.number).await?.lpar;
            moved.processors.group = group;
            let defined = dst
                .cold_define(
                    &ColdDefine {
                        job: job.clone(),
                        lpar: moved,
                        number: request.dest_number,
                    },
                    leases.destination(),
                )
                .await?;
            on_stage("0x3030 (SRC) Releasing Source LPAR");
            src.release_lpar(lpar.number, &defined.exchange, leases.source())
                .await?;
            moved_to = Some(defined.number);
            if request.activate {
                on_stage("0x3040 (DST) Activating LPAR");
                dst.activate(defined.number, leases.destination()).await?;
            }
            Ok(defined.number)
        }
        .await;
        leases.release().await;
        record.finished_at = Some(chrono::Utc::now());
        record.dest_number = moved_to;
        match (&result, moved_to) {
            (Ok(_), _) => record.result = MoveResult::Completed,
            (Err(e), Some(_)) => {
                record.result = MoveResult::Completed;
                record.detail = Some(format!("moved, but activating it failed: {e}"));
            }
            (Err(e), None) => {
                record.result = MoveResult::after_error(e.emg().map(|emg| emg.kind));
                record.detail = Some(e.to_string());
            }
        }
        history.save_move(&record);
        let dest_number = result?;
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
