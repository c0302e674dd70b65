//! Shutdown mode: the LPAR is moved while deactivated (optionally shut down remotely first).
//!
//! ```text
//! 0x1010 checks (Shutdown-mode rules)        0x1020 leases        0x1030 back up both HVMs
//! 0x3010 (SRC) remote guest OS shutdown, wait up to the Waiting TimeOut Limit (default 5 min)
//! 0x3020 (DST) define the LPAR (deactivated) keeping its name, MACs and WWNs
//! 0x3030 (SRC) delete the source definition, adopt the destination's exchanged names
//! 0x3040 (DST) activate, if asked
//! ```

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{Instrument, info_span};

use super::leases::Leases;
use super::live::{JobError, new_job_id};
use crate::api::{ColdDefine, HvmClient};
use crate::checks;
use crate::emg::{Emg, EmgError};
use crate::fleetview::LparRef;
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
        let report = checks::gather(
            profile,
            &request.source,
            &request.destination,
            Mode::Shutdown,
            request.dest_number,
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
        on_stage("0x1020 (MMS) Locking LPAR and Blade");
        let leases = Leases::take(&job, &src, lpar.number, &dst).await?;
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
            let moved = src.lpar(lpar.number).await?.lpar;
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
            if request.activate {
                on_stage("0x3040 (DST) Activating LPAR");
                dst.activate(defined.number, leases.destination()).await?;
            }
            Ok(defined.number)
        }
        .await;
        leases.release().await;
        let dest_number = result?;
        on_stage("0x5000 (MMS) Migration completed!");
        Ok(ColdMoveReport {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            source: src.name().to_owned(),
            destination: dst.name().to_owned(),
            dest_number,
            shut_down: active,
            activated: request.activate,
            total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
    .instrument(span)
    .await
}
