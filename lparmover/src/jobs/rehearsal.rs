//! Rehearsal: everything a live move does except the switch, then release everything.
//!
//! Checks, leases, the destination's reservation and paused definition, and a short real
//! transfer over the migration path (by default 256 MiB or the whole memory, whichever is
//! smaller); then the move is cancelled (the source never stops running) and the destination
//! scrubs and drops its definition. From the measured path throughput and the guest's dirty rate
//! it predicts the total time and the suspension time of the real move.
//!
//! From the leases on, the rehearsal is in the migration history as a trial
//! ([`crate::history::TrialKind::Rehearsal`]): listed with the moves, never a placement of the
//! LPAR nor a move a return migration could undo.

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{Instrument, info_span};

use super::leases::Leases;
use super::live::{JobError, new_job_id};
use crate::api::{HvmClient, MoveOptions, MovePurpose, Phase, PrepareIncoming, StartSend};
use crate::checks;
use crate::emg::{Emg, EmgError};
use crate::fleetview::FindLpar;
use crate::fleetview::LparRef;
use crate::history::{Actor, JobHistory, MoveResult, TrialKind, TrialRecord};
use crate::model::Mode;
use crate::mover::{JobTicket, Progress};
use crate::profile::Profile;

/// Bytes of memory a rehearsal moves at most.
pub const DEFAULT_SAMPLE: u64 = 256 << 20;

/// What the rehearsal found.
#[derive(Clone, Debug, Serialize)]
pub struct RehearsalReport {
    /// Job id.
    pub job: String,
    /// LPAR name.
    pub lpar: String,
    /// Memory of the LPAR, bytes.
    pub memory_size: u64,
    /// Memory moved in the rehearsal, bytes.
    pub sampled_bytes: u64,
    /// Memory throughput over the migration path, MB/s.
    pub throughput_mbps: f64,
    /// Wire bytes ÷ memory bytes in the sample.
    pub wire_ratio: f64,
    /// Dirty rate of the guest, MB/s.
    pub dirty_rate_mbps: f64,
    /// Predicted total time of the real move, s.
    pub predicted_total_s: f64,
    /// Predicted suspension, ms.
    pub predicted_suspension_ms: f64,
    /// Whether the real move is expected to converge without throttling.
    pub converges_unthrottled: bool,
    /// Check warnings.
    pub warnings: Vec<String>,
}

/// Runs a rehearsal of a live move.
pub async fn rehearse(
    profile: &Profile,
    actor: &Actor,
    source: &LparRef,
    destination: &str,
    options: &MoveOptions,
    sample: u64,
) -> Result<RehearsalReport, JobError> {
    let job = new_job_id();
    let span = info_span!("job", id = %job, mode = "rehearsal");
    async move {
        let started = Instant::now();
        let report = checks::gather(
            profile,
            source,
            destination,
            Mode::ConcurrentMaintenance,
            None,
        )
        .await?;
        report.ensure_no_errors()?;
        let warnings = report
            .warnings()
            .iter()
            .map(|r| format!("{}: {}", r.item, r.detail))
            .collect();
        let src_entry = profile.hvm(&source.hvm)?;
        let src = HvmClient::new(src_entry)?;
        let dst = HvmClient::new(profile.hvm(destination)?)?;
        let inventory = src.inventory().await?;
        let lpar = source
            .lpar
            .find(&inventory)
            .ok_or_else(|| {
                EmgError::new(
                    Emg::LparNotFound,
                    format!("{:?} on {}", source.lpar, src.name()),
                )
            })?
            .lpar
            .clone();
        let leases = Leases::take(&job, &src, lpar.number, &dst).await?;
        let history = JobHistory::from_env();
        let mut record = TrialRecord {
            job: job.clone(),
            kind: TrialKind::Rehearsal,
            lpar: Some(lpar.name.to_string()),
            source_hvm: src.name().to_owned(),
            source_number: Some(lpar.number),
            dest_hvm: dst.name().to_owned(),
            result: MoveResult::InProgress,
            started_at: chrono::Utc::now(),
            finished_at: None,
            detail: None,
            actor: Some(actor.clone()),
        };
        history.save_trial(&record);
        let result = async {
            let ticket = JobTicket::generate();
            let prepared = dst
                .prepare_incoming(
                    &PrepareIncoming {
                        job: job.clone(),
                        lpar: lpar.clone(),
                        number: None,
                        ticket: ticket.to_hex(),
                        source_cert_pem: src_entry.cert_pem.clone(),
                        ticket_ttl_s: None,
                        purpose: MovePurpose::Rehearsal,
                    },
                    leases.destination(),
                )
                .await?;
            let prepare_time = started.elapsed();
            let send = StartSend {
                job: job.clone(),
                lpar: lpar.number,
                ticket: ticket.to_hex(),
                dest_addr: prepared.migration_addr,
                dest_cert_pem: prepared.cert_pem,
                options: options.clone(),
                exchange: prepared.exchange,
                purpose: MovePurpose::Rehearsal,
            };
            let sampled = sample_transfer(&job, &src, &send, leases.source(), sample).await;
            let (a, b) = tokio::join!(src.abort_migration(&job), dst.abort_migration(&job));
            let progress = sampled?;
            a?;
            b?;
            Ok::<_, JobError>((progress, prepare_time))
        }
        .await;
        leases.release().await;
        record.finished_at = Some(chrono::Utc::now());
        if let Err(e) = &result {
            record.result = MoveResult::after_error(e.emg().map(|emg| emg.kind));
            record.detail = Some(e.to_string());
            history.save_trial(&record);
        }
        let ((p, transfer_time), prepare_time) = result?;
        let memory = lpar.memory_mib * 1024 * 1024;
        // Measured over the sample itself: rounds may not have completed yet.
        let measured = p.memory_bytes_sent as f64 / 1e6 / transfer_time.as_secs_f64().max(1e-3);
        let throughput = measured.max(1.0);
        let dirty = p.dirty_rate_mbps.max(lpar.workload.dirty_rate_mbps);
        let ratio = dirty / throughput;
        // Pre-copy time: memory ÷ throughput, stretched by the geometric series of re-sent dirty
        // pages; beyond a ratio of 1 the move needs throttling.
        let precopy = memory as f64 / 1e6 / throughput / (1.0 - ratio.min(0.9));
        let limit_ms = options.downtime_limit_ms as f64;
        let final_ms = p.expected_suspension_ms.unwrap_or(limit_ms).min(limit_ms);
        let predicted_total_s = prepare_time.as_secs_f64() * 2.0 + precopy;
        record.result = MoveResult::Completed;
        record.detail = Some(format!(
            "sampled {:.0} MB at {measured:.0} MB/s; predicted total {predicted_total_s:.1} s, pause {final_ms:.0} ms",
            p.memory_bytes_sent as f64 / 1e6
        ));
        history.save_trial(&record);
        Ok(RehearsalReport {
            job: job.clone(),
            lpar: lpar.name.to_string(),
            memory_size: memory,
            sampled_bytes: p.memory_bytes_sent,
            throughput_mbps: measured,
            wire_ratio: if p.memory_bytes_sent > 0 {
                p.wire_bytes_sent as f64 / p.memory_bytes_sent as f64
            } else {
                0.0
            },
            dirty_rate_mbps: dirty,
            predicted_total_s,
            predicted_suspension_ms: final_ms,
            converges_unthrottled: ratio < 0.5,
            warnings,
        })
    }
    .instrument(span)
    .await
}

/// Sends until `sample` bytes of memory went over (or round 0 ended), then cancels.
async fn sample_transfer(
    job: &str,
    src: &HvmClient,
    send: &StartSend,
    lease: Option<&str>,
    sample: u64,
) -> Result<(Progress, Duration), JobError> {
    let started = Instant::now();
    src.start_send(send, lease).await?;
    let mut last = Progress::default();
    loop {
        let status = src.migration_status(job).await?;
        if let Some(p) = status.progress.clone() {
            last = p;
        }
        match status.phase {
            Phase::Transferring
                if last.memory_bytes_sent >= sample.min(last.memory_size.max(1))
                    || last.round > 0 =>
            {
                break;
            }
            Phase::Transferring => {}
            Phase::SwitchoverReady => break,
            _ => {
                let error = status.error.unwrap_or_else(|| {
                    EmgError::new(
                        Emg::Internal,
                        format!(
                            "the source reported the rehearsal transfer {:?} without saying why",
                            status.phase
                        ),
                    )
                });
                return Err(error.into());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((last, started.elapsed()))
}
