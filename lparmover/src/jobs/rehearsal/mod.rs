//! Rehearsal: everything a live move does except the switch, then release everything.
//!
//! Checks, leases, the destination's reservation and paused definition, and a short real
//! transfer over the migration path (round 0, up to 2 GiB or 3 s of it); then the move is
//! cancelled and the destination scrubs and drops its definition. The source never stops
//! running: a rehearsal's sender holds once its rounds converge instead of switching over. From the measured path throughput and the guest's dirty rate
//! it predicts the total time and the suspension time of the real move ([`model`]).
//!
//! From the leases on, the rehearsal is in the migration history as a trial
//! ([`crate::history::TrialKind::Rehearsal`]): listed with the moves, never a placement of the
//! LPAR nor a move a return migration could undo.

pub mod model;

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

/// Bytes of memory a rehearsal moves at most: round 0 of an LPAR up to this size usually ends
/// within [`SAMPLE_WINDOW`] on a fast path, and a whole round is the best measure of the move.
pub const DEFAULT_SAMPLE: u64 = 2 << 30;

/// Transfer a sample lasts at most after the first pages, whatever it has moved by then. The
/// first second of a transfer is slower than the rest (the destination's memory is still being
/// faulted in, compression probes), so a shorter sample under-reads the path.
const SAMPLE_WINDOW: Duration = Duration::from_secs(3);

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
            let aborting = Instant::now();
            let (a, b) = tokio::join!(src.abort_migration(&job), dst.abort_migration(&job));
            let teardown = aborting.elapsed();
            let sampled = sampled?;
            a?;
            b?;
            Ok::<_, JobError>((sampled, prepare_time, teardown))
        }
        .await;
        leases.release().await;
        record.finished_at = Some(chrono::Utc::now());
        if let Err(e) = &result {
            record.result = MoveResult::after_error(e.emg().map(|emg| emg.kind));
            record.detail = Some(e.to_string());
            history.save_trial(&record);
        }
        let (sampled, prepare_time, teardown) = result?;
        let p = &sampled.progress;
        let memory = lpar.memory_mib * 1024 * 1024;
        let measured = sampled.memory_rate / 1e6;
        let dirty = p.dirty_rate_mbps.max(lpar.workload.dirty_rate_mbps);
        let forecast = model::forecast(&model::Measured {
            memory_bytes: memory,
            memory_rate: sampled.memory_rate,
            sampled: sampled.first_part,
            dirty_rate: dirty * 1e6,
            working_set: lpar.workload.working_set_mib << 20,
            setup: prepare_time,
            startup: sampled.startup,
            teardown,
            downtime_limit: Duration::from_millis(options.downtime_limit_ms),
        });
        let predicted_total_s = forecast.total.as_secs_f64();
        let final_ms = forecast.suspension.as_secs_f64() * 1e3;
        record.result = MoveResult::Completed;
        record.detail = Some(format!(
            "sampled {:.0} MB at {measured:.0} MB/s; predicted total {predicted_total_s:.1} s in {} rounds, pause {final_ms:.0} ms",
            p.memory_bytes_sent as f64 / 1e6,
            forecast.rounds
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
            converges_unthrottled: forecast.converges_unthrottled,
            warnings,
        })
    }
    .instrument(span)
    .await
}

/// What the sample transfer measured.
struct Sampled {
    /// The source's last progress report.
    progress: Progress,
    /// From asking the source to send until its first pages were reported sent.
    startup: Duration,
    /// Memory bytes per second over the latest half of the sample.
    memory_rate: f64,
    /// Memory bytes of round 0 sent, and how long they took after the first pages.
    first_part: (u64, Duration),
}

/// Sends until round 0 ended, `sample` bytes of memory went over or [`SAMPLE_WINDOW`] passed
/// since the first pages, then stops.
///
/// The connection, the handshake and the wait for the first pages count as start-up, as they do
/// in the real move; the rate is taken over the latest half of the sample, which the rest of
/// round 0 is expected to keep.
async fn sample_transfer(
    job: &str,
    src: &HvmClient,
    send: &StartSend,
    lease: Option<&str>,
    sample: u64,
) -> Result<Sampled, JobError> {
    let started = Instant::now();
    src.start_send(send, lease).await?;
    let mut last = Progress::default();
    // (when, bytes sent) at each poll that saw more pages sent.
    let mut reports: Vec<(Instant, u64)> = Vec::new();
    loop {
        let status = src.migration_status(job).await?;
        let polled = Instant::now();
        if let Some(p) = status.progress.clone() {
            if p.memory_bytes_sent > reports.last().map_or(0, |r| r.1) {
                reports.push((polled, p.memory_bytes_sent));
            }
            last = p;
        }
        let window = reports
            .first()
            .map_or(Duration::ZERO, |(at, _)| polled - *at);
        // Round 0 has ended once the sender published a round's figures.
        let round_done = last.expected_suspension_ms.is_some() || last.round > 0;
        match status.phase {
            Phase::Transferring
                if round_done || window >= SAMPLE_WINDOW || last.memory_bytes_sent >= sample =>
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
        // The sender publishes progress every 100 ms; polling faster only takes CPU from it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let startup = reports
        .first()
        .map_or(Duration::ZERO, |(at, _)| *at - started);
    // A finished round 0 carries the sender's own figures, measured over the whole round.
    if last.expected_suspension_ms.is_some() && last.memory_throughput_mbps > 0.0 {
        let rate = last.memory_throughput_mbps * 1e6;
        let round = Duration::from_secs_f64(last.memory_size as f64 / rate);
        return Ok(Sampled {
            progress: last.clone(),
            startup: startup.min(started.elapsed().saturating_sub(round)),
            memory_rate: rate,
            first_part: (last.memory_size, round),
        });
    }
    Ok(Sampled {
        memory_rate: late_rate(&reports).unwrap_or_else(|| {
            last.memory_bytes_sent as f64 / started.elapsed().as_secs_f64().max(1e-3)
        }),
        first_part: match (reports.first(), reports.last()) {
            (Some(first), Some(latest)) => (latest.1, latest.0 - first.0),
            _ => (0, Duration::ZERO),
        },
        progress: last,
        startup,
    })
}

/// Bytes per second between the report nearest the middle of `reports` and the last one.
fn late_rate(reports: &[(Instant, u64)]) -> Option<f64> {
    let (first, last) = (reports.first()?, reports.last()?);
    let middle = first.0 + (last.0 - first.0) / 2;
    let from = reports.iter().rev().find(|r| r.0 <= middle)?;
    let seconds = (last.0 - from.0).as_secs_f64();
    (seconds > 0.0).then(|| (last.1 - from.1) as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_late_rate_ignores_a_slow_start() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 10 MB in the first second, then 100 MB per 100 ms.
        let reports = [
            (at(0), 1_000_000),
            (at(1000), 11_000_000),
            (at(1100), 111_000_000),
            (at(1200), 211_000_000),
            (at(2000), 1_011_000_000),
        ];
        let rate = late_rate(&reports).expect("a rate");
        assert!((rate - 1e9).abs() < 1e6, "{rate}");
        assert_eq!(late_rate(&reports[..1]), None);
    }
}
