//! Bounded suspension: the blades settle a switch-over between themselves when the manager goes
//! silent while the source is paused.
//!
//! While the source holds the guest paused at switch-over the manager renews a lease on it
//! (`POST /v1/migrations/{job}/lease`, every [`lparmover::api::SWITCHOVER_LEASE_RENEWAL`]). When
//! the lease lapses (the job's `switchover_lease_ms`), the source never decides alone: it asks the
//! destination over a settlement connection ([`lparmover::mover::SwitchoverReady::settle`]). The
//! destination's durable record is the commit point: "resumed" (the manager's
//! `resume` got there first) or "fenced" (written now: it will never resume this job), whichever
//! was written first.
//!
//! * fenced → the source resumes the guest; the manager's later commit is refused.
//! * resumed → the source commits exactly as the manager would have (vFCs log out), tells the
//!   destination (which swaps to the WWPNs) and releases the LPAR.
//! * no answer → the source stays paused (two running copies are worse than a paused one), says
//!   so in its log and status, and keeps asking until the destination answers or the manager's
//!   recovery decides.
//!
//! The destination keeps a "fenced" or "swapped" record until the manager acknowledges it
//! (`abort` or `swap`), so `lparmover recover` can report what the blades did.

use std::sync::Arc;
use std::time::Duration;

use lparmover::api::{LogLevel, MigrationStatus, Phase, RecordPhase, Release, Role, Settlement};
use lparmover::emg::{Emg, EmgError};
use lparmover::model::LparStatus;
use lparmover::mover::{SettleInbox, SettleStep, SwitchoverReady, Verdict};
use tokio::time::Instant;

use super::{Job, invalid};
use crate::blade::{BladeService, lock};
use crate::guest::Guest;

/// One settlement attempt: connect, ask, answer.
const ATTEMPT: Duration = Duration::from_millis(1500);
/// Pause between attempts while the destination cannot be reached.
const RETRY: Duration = Duration::from_millis(500);
/// Attempts at telling the destination the source logged out before releasing anyway.
const LOGGED_OUT_ATTEMPTS: u32 = 5;

/// The manager's switch-over lease on a paused source.
#[derive(Debug, Default)]
pub(super) struct Lease {
    /// How long the manager may stay silent (the job's `switchover_lease_ms`).
    pub bound: Duration,
    /// When it lapses (None before the switch-over is ready).
    deadline: Option<Instant>,
    /// When it was last renewed (or started).
    renewed: Option<Instant>,
    /// It lapsed: the blades settle; renewals are refused.
    lapsed: bool,
}

impl Lease {
    /// The switch-over is ready: the manager's silence counts from now.
    pub fn start(&mut self) {
        let now = Instant::now();
        self.deadline = Some(now + self.bound);
        self.renewed = Some(now);
    }
}

/// The error a manager gets for a job the blades settled backward.
pub(super) fn fenced_refusal(job_id: &str) -> EmgError {
    EmgError::new(
        Emg::InvalidLparState,
        format!(
            "job {job_id} was fenced: the manager's switch-over lease lapsed before this HVM resumed the LPAR, so it promised the source never to resume it and the LPAR runs on the source again; the manager's recovery finishes the job as rolled back"
        ),
    )
}

impl BladeService {
    /// Source: the manager is still there; the lease runs for another bound from now.
    pub fn renew_switchover_lease(&self, job_id: &str) -> Result<MigrationStatus, EmgError> {
        let job = self.live_job(job_id, Role::Source)?;
        {
            let mut lease = lock(&job.lease);
            if lease.lapsed {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "job {job_id}: the switch-over lease already lapsed (the manager was silent for {} ms); the blades settle the move between themselves",
                        lease.bound.as_millis()
                    ),
                ));
            }
            match job.phase() {
                Phase::SwitchoverReady => {
                    let now = Instant::now();
                    lease.deadline = Some(now + lease.bound);
                    lease.renewed = Some(now);
                }
                // Renewals may still arrive while the manager commits or aborts.
                Phase::Committed | Phase::Released | Phase::Aborted => {}
                other => {
                    return Err(EmgError::new(
                        Emg::InvalidLparState,
                        format!(
                            "job {job_id} is {other:?}; the switch-over lease exists only while the source is paused at switch-over"
                        ),
                    ));
                }
            }
        }
        self.migration_status(job_id)
    }

    /// Refuses a manager's commit of a job the blades already settled backward.
    pub(super) fn refuse_if_settled_backward(
        &self,
        job_id: &str,
        job: &Job,
    ) -> Result<(), EmgError> {
        if lock(&job.status).settlement == Some(Settlement::Backward) {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "job {job_id} was settled backward by the blades: the manager's switch-over lease lapsed, the destination fenced the job and the LPAR resumed on this HVM; the manager's recovery finishes the job as rolled back"
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a resume of a job this destination fenced (also after a restart).
    pub(super) fn refuse_if_fenced(&self, job_id: &str) -> Result<(), EmgError> {
        let fenced = lock(&self.state)
            .migrations
            .get(job_id)
            .is_some_and(|r| r.phase == RecordPhase::Fenced);
        if fenced {
            return Err(fenced_refusal(job_id));
        }
        Ok(())
    }

    /// Source: watches the lease of a paused switch-over and settles with the destination when
    /// it lapses.
    pub(super) fn guard_switchover(self: &Arc<Self>, job_id: &str, job: &Arc<Job>) {
        let service = Arc::clone(self);
        let job = Arc::clone(job);
        let job_id = job_id.to_owned();
        tokio::spawn(async move {
            let Some(silent) = lease_lapse(&job).await else {
                return;
            };
            service.log.record(
                LogLevel::Warning,
                "migration",
                format!(
                    "job {job_id}: the manager's switch-over lease lapsed (silent for {} ms) while LPAR {} is paused; settling with the destination",
                    silent.as_millis(),
                    lock(&job.status).lpar
                ),
            );
            job.update(|s| {
                s.settlement = Some(Settlement::Settling {
                    silent_ms: silent.as_millis() as u64,
                })
            });
            service.settle_as_source(&job_id, &job).await;
        });
    }

    async fn settle_as_source(self: &Arc<Self>, job_id: &str, job: &Arc<Job>) {
        let mut attempts = 0u32;
        loop {
            let mut slot = job.ready.lock().await;
            if job.phase() != Phase::SwitchoverReady {
                return;
            }
            let Some(ready) = slot.as_ref() else {
                return;
            };
            match ready.settle(SettleStep::Decide, ATTEMPT).await {
                Ok(Verdict::Fenced) => {
                    if let Some(ready) = slot.take() {
                        self.settled_backward(job_id, job, ready);
                    }
                    return;
                }
                Ok(Verdict::Resumed) => {
                    if let Some(ready) = slot.take() {
                        drop(slot);
                        self.settled_forward(job_id, job, ready).await;
                    }
                    return;
                }
                Err(e) => {
                    drop(slot);
                    attempts += 1;
                    let why = e.to_string();
                    if attempts == 1 || attempts.is_multiple_of(20) {
                        self.log.record(
                            LogLevel::Warning,
                            "migration",
                            format!(
                                "job {job_id}: the destination cannot be reached to settle the switch-over ({why}); the LPAR stays paused here (two running copies are worse than a paused one) until it answers or the manager's recovery decides (attempt {attempts})"
                            ),
                        );
                    }
                    job.update(|s| {
                        s.settlement = Some(Settlement::DestinationUnreachable { why, attempts })
                    });
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The destination fenced the job: the guest runs here again.
    fn settled_backward(&self, job_id: &str, job: &Job, ready: SwitchoverReady<Guest>) {
        let number = lock(&job.status).lpar;
        let resumed = ready.resume_after_fence();
        if let Some(watch) = lock(&job.watch).take() {
            watch.stop();
        }
        let saved = self.mutate(|s| {
            s.migrations.remove(job_id);
            if s.lpar(number)?.status == LparStatus::Migrating {
                s.set_status(number, LparStatus::Activated)?;
            }
            Ok(())
        });
        let note = match (&resumed, &saved) {
            (Ok(()), Ok(())) => format!(
                "job {job_id}: the destination fenced the job (it had not resumed the LPAR); LPAR {number} resumed here"
            ),
            (Err(e), _) => format!(
                "job {job_id}: the destination fenced the job but LPAR {number} could not be resumed here: {e}"
            ),
            (_, Err(e)) => format!(
                "job {job_id}: the destination fenced the job and LPAR {number} resumed here; its state could not be saved: {e}"
            ),
        };
        self.log.record(LogLevel::Warning, "migration", note);
        job.update(|s| {
            s.phase = Phase::Aborted;
            s.settlement = Some(Settlement::Backward);
            s.error = Some(EmgError::new(
                Emg::InvalidLparState,
                "the manager's switch-over lease lapsed; the blades settled the move backward",
            ));
        });
        job.finish();
    }

    /// The destination had resumed the LPAR: commit here as the manager would have, tell the
    /// destination to swap identities, release.
    async fn settled_forward(
        self: &Arc<Self>,
        job_id: &str,
        job: &Arc<Job>,
        ready: SwitchoverReady<Guest>,
    ) {
        let number = lock(&job.status).lpar;
        let exchange = lock(&self.state)
            .migrations
            .get(job_id)
            .and_then(|r| r.exchange.clone())
            .unwrap_or_default();
        let committed = self.mutate(|s| {
            if let Some(record) = s.migrations.get_mut(job_id) {
                record.phase = RecordPhase::Committed;
                record.exchange = Some(exchange.clone());
            }
            Ok(())
        });
        if let Err(e) = committed {
            // Without a durable "committed" a restart could not know to let go: stay paused
            // for the manager's recovery (the destination runs the LPAR either way).
            self.log.record(
                LogLevel::Error,
                "migration",
                format!(
                    "job {job_id}: the destination resumed LPAR {number}, but this HVM could not record its commit ({e}); it stays paused here for the manager's recovery"
                ),
            );
            *job.ready.lock().await = Some(ready);
            return;
        }
        if let Some(watch) = lock(&job.watch).take() {
            if let Some(hb) = watch.last_change() {
                job.update(|s| s.last_heartbeat_before_pause_ns = Some(hb.observed_at_ns));
            }
            watch.stop();
        }
        self.set_fc_logins(number, Vec::new());
        job.update(|s| {
            s.phase = Phase::Committed;
            s.settlement = Some(Settlement::Forward);
        });
        let mut told = Err("not asked".to_string());
        for _ in 0..LOGGED_OUT_ATTEMPTS {
            told = ready
                .settle(SettleStep::SourceLoggedOut, ATTEMPT)
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            if told.is_ok() {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
        ready.let_go();
        let swapped = match told {
            Ok(()) => "the destination swapped to the WWPNs".to_string(),
            Err(e) => format!(
                "the destination was not told to swap ({e}); it stays on the migration WWPNs until the manager's recovery"
            ),
        };
        let released = self.release_migration(job_id, &Release { exchange }).await;
        self.log.record(
            LogLevel::Warning,
            "migration",
            match released {
                Ok(_) => format!(
                    "job {job_id}: the destination had resumed LPAR {number}; committed here without the manager, {swapped}, released"
                ),
                Err(e) => format!(
                    "job {job_id}: the destination had resumed LPAR {number}; committed here without the manager, {swapped}; the release failed: {e}"
                ),
            },
        );
    }

    /// Destination: answers the source's settlement requests until the job is settled here.
    pub(super) fn serve_settlements(
        self: &Arc<Self>,
        job_id: &str,
        job: &Arc<Job>,
        mut inbox: SettleInbox,
    ) {
        let service = Arc::clone(self);
        let job = Arc::clone(job);
        let job_id = job_id.to_owned();
        tokio::spawn(async move {
            loop {
                let call = tokio::select! {
                    call = inbox.next() => call,
                    _ = job.settled_here.cancelled() => None,
                };
                let Some(call) = call else {
                    return;
                };
                let answer = service
                    .answer_settlement(&job_id, &job, call.step)
                    .await
                    .map_err(|e| e.to_string());
                let _ = call.reply.send(answer);
            }
        });
    }

    async fn answer_settlement(
        &self,
        job_id: &str,
        job: &Job,
        step: SettleStep,
    ) -> Result<Verdict, EmgError> {
        match step {
            SettleStep::Decide => {
                let (verdict, fenced_now) = self.mutate(|s| {
                    let record = s
                        .migrations
                        .get_mut(job_id)
                        .ok_or_else(|| invalid(format!("no record of job {job_id} on this HVM")))?;
                    let number = record.lpar;
                    match record.phase {
                        RecordPhase::Resumed | RecordPhase::Swapped => {
                            Ok((Verdict::Resumed, false))
                        }
                        RecordPhase::Fenced => Ok((Verdict::Fenced, false)),
                        RecordPhase::Started => {
                            record.phase = RecordPhase::Fenced;
                            if s.lpars.contains_key(&number) {
                                s.set_status(number, LparStatus::Deactivated)?;
                                s.delete(number)?;
                            }
                            Ok((Verdict::Fenced, true))
                        }
                        RecordPhase::Committed => Err(invalid(format!(
                            "job {job_id}: this HVM is not the destination of the move"
                        ))),
                    }
                })?;
                if fenced_now {
                    self.drop_fenced_copy(job_id, job).await;
                }
                Ok(verdict)
            }
            SettleStep::SourceLoggedOut => {
                self.swap_identities(job_id, true)?;
                Ok(Verdict::Resumed)
            }
        }
    }

    /// After "fenced" is durable: the copy that will never run goes, with its logins.
    async fn drop_fenced_copy(&self, job_id: &str, job: &Job) {
        let number = lock(&job.status).lpar;
        if let Some(cancel) = lock(&job.incoming_cancel).take() {
            cancel();
        }
        if let Ok(guest) = job.guest() {
            tokio::task::spawn_blocking(move || guest.stop()).await.ok();
        }
        self.set_fc_logins(number, Vec::new());
        job.update(|s| {
            s.phase = Phase::Aborted;
            s.error = Some(fenced_refusal(job_id));
        });
        job.finish();
        self.log.record(
            LogLevel::Warning,
            "migration",
            format!(
                "job {job_id}: fenced at the source's request (the manager's switch-over lease lapsed before this HVM resumed LPAR {number}): its copy and definition dropped, it will never resume here"
            ),
        );
    }

    /// Destination, manager's recovery: the blades fenced this job; the record goes.
    pub(super) fn acknowledge_fence(
        &self,
        job_id: &str,
        status: MigrationStatus,
    ) -> Result<MigrationStatus, EmgError> {
        self.mutate(|s| {
            s.migrations.remove(job_id);
            Ok(())
        })?;
        if let Some(job) = lock(&self.migrations.jobs).get(job_id) {
            job.settled_here.cancel();
        }
        self.log.record(
            LogLevel::Info,
            "migration",
            format!("job {job_id}: the manager acknowledged the fence; record dropped"),
        );
        Ok(MigrationStatus {
            phase: Phase::Aborted,
            holds: lparmover::api::GuestHold::Nothing,
            record: None,
            ..status
        })
    }
}

/// Waits until the lease of a paused switch-over lapses; returns how long the manager had been
/// silent, or None once the switch-over is decided.
async fn lease_lapse(job: &Job) -> Option<Duration> {
    loop {
        if job.phase() != Phase::SwitchoverReady {
            return None;
        }
        let deadline = {
            let mut lease = lock(&job.lease);
            let deadline = lease.deadline?;
            if Instant::now() >= deadline {
                lease.lapsed = true;
                return Some(lease.renewed.map_or(lease.bound, |r| r.elapsed()));
            }
            deadline
        };
        let changed = job.changed.notified();
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = changed => {}
        }
    }
}
