//! The HVM's part of a live move: the primitives the manager calls (`/v1/migrations/…`), running
//! lparmover's LPAR Mover sender and receiver over this blade's migration path.
//!
//! hvmsim decides nothing here: the manager says prepare, send, commit, resume, release or abort,
//! and this module carries each out on this blade, keeping the LPAR's status persisted so a
//! restarted HVM knows an LPAR was caught mid-move.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lparmover::api::{
    CommitRequest, ExtendTimeout, GuestHold, IncomingPrepared, LockTarget, LogLevel, LparView,
    MigrationRecord, MigrationStatus, MoveOptions, MovePurpose, Phase, PrepareIncoming,
    RecordPhase, Release, Role, StartSend,
};
use lparmover::emg::{Emg, EmgError};
use lparmover::metrics::{MoveFigures, MoveInFlight, MoveKind, MoveMetrics, Outcome};
use lparmover::model::lpar::UsbState;
use lparmover::model::{GuestSpec, LparNumber, LparStatus};
use lparmover::mover::receiver::RecvStatus;
use lparmover::mover::{
    BandwidthHandle, CommitHandle, CompressionMode, IncomingMove, JobTicket, MigrationListener,
    MoveError, ReceiveOutcome, Sender, SenderConfig, SwitchoverReady, TimeoutHandle,
};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

mod settlement;

use settlement::fenced_refusal;

use crate::blade::{BladeService, lock};
use crate::guest::{Guest, HeartbeatWatch};
use crate::guests::GuestHandle;
use lparmover::model::Wwpn;
use lparmover::partition::Partition;

/// How often the heartbeat is sampled around a switch-over.
const HEARTBEAT_PERIOD: Duration = Duration::from_micros(200);

/// Moves (outgoing, incoming and rehearsals) one blade runs at once unless `hvmsim serve
/// --max-migrations` says otherwise. Each holds a QUIC connection, its streams' buffers and,
/// incoming, a partition's memory; a policy runs at most ten moves in all, and a blade is rarely
/// both ends of more than a few.
pub const DEFAULT_MAX_RUNNING_JOBS: usize = 8;

/// The most `--max-migrations` may allow.
pub const MAX_RUNNING_JOBS_LIMIT: usize = 64;

/// Migration state of one blade.
#[derive(Default)]
pub struct Migrations {
    identity: OnceLock<lparmover::tls::Identity>,
    /// The incoming-move endpoint, bound on the primary migration path at the first incoming
    /// move and rebound when the primary path changes (`crate::paths`).
    pub(crate) listener: tokio::sync::Mutex<Option<MigrationListener<Guest>>>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Requests admitted that have not registered their job yet.
    admitting: Mutex<usize>,
    /// The blade's cap on running moves, when the operator set one.
    max_running: OnceLock<usize>,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Migrations({} jobs)", lock(&self.jobs).len())
    }
}

/// What [`BladeService::settle_records_after_restart`] leaves for the boot to do.
pub(crate) struct Settled {
    /// LPARs to log in with their migration WWPNs (or, for an adopted source, its WWPNs).
    pub migration_logins: Vec<(LparNumber, Vec<Wwpn>)>,
    /// VMs that outlived the old process but hold nothing anyone may run.
    pub to_stop: Vec<Arc<Guest>>,
}

/// A place among the blade's running moves ([`Migrations::max_running_jobs`]), held by a request from its admission until
/// its job is registered (from then the job itself counts).
pub(crate) struct Admission<'a>(&'a Migrations);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let mut admitting = lock(&self.0.admitting);
        *admitting = admitting.saturating_sub(1);
    }
}

impl Migrations {
    /// Drops a job that never started (`crate::blade::MigratingMark` undoing a failed send).
    pub(crate) fn forget(&self, job: &str) {
        lock(&self.jobs).remove(job);
    }

    /// Admits one more move, or refuses with "the blade is busy" when it runs
    /// [`Self::max_running_jobs`] already (counting requests admitted a moment ago).
    pub(crate) fn admit(&self) -> Result<Admission<'_>, EmgError> {
        let cap = self.max_running_jobs();
        let mut admitting = lock(&self.admitting);
        let running = lock(&self.jobs)
            .values()
            .filter(|job| !job.phase().is_final())
            .count();
        if running + *admitting >= cap {
            return Err(EmgError::new(
                Emg::BladeBusyMigration,
                format!(
                    "this HVM is running as many migrations as it takes at once ({cap}); nothing was changed: start this one when another has finished (the cap is `hvmsim serve --max-migrations`)"
                ),
            ));
        }
        *admitting += 1;
        Ok(Admission(self))
    }

    /// Whether a move on this blade is not over yet (in memory; the state's records say the
    /// same across restarts).
    pub(crate) fn any_running(&self) -> bool {
        lock(&self.jobs).values().any(|job| !job.phase().is_final())
    }

    /// A new migration listener on `ip` with this blade's identity.
    pub(crate) fn bind_listener(&self, ip: IpAddr) -> Result<MigrationListener<Guest>, EmgError> {
        let identity = self.identity()?;
        MigrationListener::bind(SocketAddr::new(ip, 0), identity).map_err(|e| move_error(&e))
    }

    /// Takes the guests the moves on this blade hold (process shutdown: they are stopped).
    pub(crate) fn take_guests(&self) -> Vec<Arc<Guest>> {
        lock(&self.jobs)
            .values()
            .filter_map(|job| lock(&job.guest).take())
            .collect()
    }
}

/// One move on this blade.
struct Job {
    status: Mutex<MigrationStatus>,
    /// The partition while the move needs it; dropped when the move is over on this blade so
    /// its memory goes with the guest that owns it.
    guest: Mutex<Option<Arc<Guest>>>,
    /// Source: the sender's cancel token and timeout handle, and the switch-over once ready.
    cancel: CancellationToken,
    timeout: Mutex<Option<TimeoutHandle>>,
    /// Source: the sender's bandwidth cap, changeable while memory moves.
    bandwidth: Mutex<Option<BandwidthHandle>>,
    ready: tokio::sync::Mutex<Option<SwitchoverReady<Guest>>>,
    /// Destination: cancels the incoming move.
    incoming_cancel: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// Destination: commits the incoming move on this side.
    incoming_commit: Mutex<Option<CommitHandle>>,
    watch: Mutex<Option<HeartbeatWatch>>,
    /// Wakes long polls when the phase changes.
    changed: tokio::sync::Notify,
    /// Destination: the migration path closed after Ready without a decision (memory kept).
    undecided: std::sync::atomic::AtomicBool,
    /// Source: the manager's switch-over lease while the guest is paused.
    lease: Mutex<settlement::Lease>,
    /// Destination: the job is settled on this side (swapped, aborted): stop answering the
    /// source's settlement requests.
    settled_here: CancellationToken,
    /// The move in the blade's metrics until its phase is final here.
    flight: Mutex<Option<MoveInFlight>>,
    /// Destination: what the receiver wrote so far.
    received: Mutex<RecvStatus>,
}

impl Job {
    fn new(status: MigrationStatus, guest: Arc<Guest>, cancel: CancellationToken) -> Self {
        Self {
            status: Mutex::new(status),
            guest: Mutex::new(Some(guest)),
            cancel,
            timeout: Mutex::new(None),
            bandwidth: Mutex::new(None),
            ready: tokio::sync::Mutex::new(None),
            incoming_cancel: Mutex::new(None),
            incoming_commit: Mutex::new(None),
            watch: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            undecided: std::sync::atomic::AtomicBool::new(false),
            lease: Mutex::new(settlement::Lease::default()),
            settled_here: CancellationToken::new(),
            flight: Mutex::new(None),
            received: Mutex::new(RecvStatus::default()),
        }
    }

    /// Counts the move as begun on this blade (ended by the phase [`Self::update`] makes final).
    fn begin(&self, metrics: &MoveMetrics, purpose: MovePurpose) {
        let role = lock(&self.status).role;
        let kind = match purpose {
            MovePurpose::Move => MoveKind::Live,
            MovePurpose::Rehearsal => MoveKind::Rehearsal,
        };
        *lock(&self.flight) = Some(metrics.begin(role.into(), kind));
    }

    fn update(&self, f: impl FnOnce(&mut MigrationStatus)) {
        let (changed, ended) = {
            let mut status = lock(&self.status);
            let before = status.phase;
            f(&mut status);
            let ended = (!before.is_final() && status.phase.is_final()).then(|| status.clone());
            (status.phase != before, ended)
        };
        if let Some(status) = ended
            && let Some(flight) = lock(&self.flight).take()
        {
            let (outcome, figures) = self.ending(&status);
            flight.end(outcome, &figures);
        }
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// How a move whose phase just became final counts in the metrics.
    fn ending(&self, status: &MigrationStatus) -> (Outcome, MoveFigures) {
        let cancelled = status
            .error
            .as_ref()
            .is_some_and(|e| e.kind == Emg::TerminatedByUser);
        let outcome = match status.phase {
            Phase::Released | Phase::Resumed => Outcome::Completed,
            Phase::Cancelled => Outcome::Cancelled,
            Phase::Failed if cancelled => Outcome::Cancelled,
            Phase::Aborted => Outcome::RolledBack,
            _ => Outcome::Failed,
        };
        let figures = match status.role {
            Role::Source => match (&status.summary, &status.progress) {
                (Some(summary), _) => MoveFigures {
                    wire_bytes: summary.wire_bytes,
                    memory_bytes: summary.memory_bytes_sent,
                    suspension: Some(summary.downtime),
                    rounds: Some(summary.rounds),
                    max_throttle_percent: Some(summary.max_throttle_percent),
                },
                // Ended before the switch-over: what it had put on the wire.
                (None, Some(progress)) => MoveFigures {
                    wire_bytes: progress.wire_bytes_sent,
                    memory_bytes: progress.memory_bytes_sent,
                    ..MoveFigures::default()
                },
                (None, None) => MoveFigures::default(),
            },
            Role::Destination => {
                let received = lock(&self.received);
                MoveFigures {
                    wire_bytes: received.payload_bytes,
                    memory_bytes: received.memory_bytes,
                    // `round` counts the rounds acknowledged; the final one is not.
                    rounds: (received.batches > 0).then_some(received.round + 1),
                    ..MoveFigures::default()
                }
            }
        };
        (outcome, figures)
    }

    /// Source: the throttle of a move under way, for the metrics.
    fn throttle(&self, lpar: LparNumber, percent: u8) {
        if let Some(flight) = lock(&self.flight).as_mut() {
            flight.throttle(lpar, percent);
        }
    }
    fn phase(&self) -> Phase {
        lock(&self.status).phase
    }
    fn guest(&self) -> Result<Arc<Guest>, EmgError> {
        lock(&self.guest)
            .clone()
            .ok_or_else(|| EmgError::new(Emg::InvalidLparState, "the move is over on this HVM"))
    }
    /// Lets go of everything the move held: the partition and the heartbeat watch.
    fn finish(&self) {
        lock(&self.guest).take();
        if let Some(watch) = lock(&self.watch).take() {
            watch.stop();
        }
    }
}

fn invalid(detail: impl Into<String>) -> EmgError {
    EmgError::new(Emg::InvalidRequest, detail)
}

/// The catalogue error of a failed move (its own kind: [`MoveError::emg`]).
pub fn move_error(e: &MoveError) -> EmgError {
    e.emg()
}

fn parse_ticket(hex_ticket: &str) -> Result<JobTicket, EmgError> {
    JobTicket::from_hex(hex_ticket).map_err(|e| invalid(e.to_string()))
}

fn parse_cert(pem: &str) -> Result<CertificateDer<'static>, EmgError> {
    lparmover::tls::parse_certs(pem)
        .map_err(|e| invalid(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no certificate in PEM"))
}

fn compression(text: &str) -> Result<CompressionMode, EmgError> {
    match text {
        "auto" => Ok(CompressionMode::Auto),
        "always" | "zstd" => Ok(CompressionMode::Always),
        "never" | "raw" => Ok(CompressionMode::Never),
        other => Err(invalid(format!(
            "compression {other:?} is not auto, always or never"
        ))),
    }
}

impl Migrations {
    /// Sets the blade's cap on running moves (`hvmsim serve --max-migrations`; the caller keeps
    /// it within 1..=[`MAX_RUNNING_JOBS_LIMIT`]). Only the first call counts.
    pub fn set_max_running_jobs(&self, cap: usize) {
        let _ = self.max_running.set(cap.clamp(1, MAX_RUNNING_JOBS_LIMIT));
    }

    /// Moves this blade runs at once at most.
    pub fn max_running_jobs(&self) -> usize {
        self.max_running
            .get()
            .copied()
            .unwrap_or(DEFAULT_MAX_RUNNING_JOBS)
    }

    /// Gives the blade's certificate (also its migration-path identity).
    pub fn set_identity(&self, identity: &lparmover::tls::Identity) {
        let _ = self.identity.set(identity.clone());
    }

    fn identity(&self) -> Result<&lparmover::tls::Identity, EmgError> {
        self.identity
            .get()
            .ok_or_else(|| EmgError::new(Emg::Internal, "migration identity not set"))
    }

    fn job(&self, id: &str) -> Result<Arc<Job>, EmgError> {
        lock(&self.jobs)
            .get(id)
            .cloned()
            .ok_or_else(|| invalid(format!("no migration job {id:?} on this HVM")))
    }
}

impl BladeService {
    fn migration_ip(&self) -> Result<IpAddr, EmgError> {
        lock(&self.state)
            .blade
            .hvm
            .primary_migration_path()
            .map(|p| IpAddr::V4(p.ip))
            .ok_or_else(|| {
                EmgError::new(
                    Emg::DestinationPathMissing,
                    format!("HVM {} has no migration path", self.name),
                )
            })
    }

    /// Status of a move on this blade: a move under way, or the durable record a restart left.
    pub fn migration_status(&self, job_id: &str) -> Result<MigrationStatus, EmgError> {
        let record = lock(&self.state).migrations.get(job_id).cloned();
        let Some(job) = lock(&self.migrations.jobs).get(job_id).cloned() else {
            return match record {
                Some(record) => Ok(self.interrupted_status(job_id, record)),
                None => Err(invalid(format!("no migration job {job_id:?} on this HVM"))),
            };
        };
        let mut status = lock(&job.status).clone();
        if let Some(watch) = lock(&job.watch).as_ref() {
            match status.role {
                Role::Source => {
                    if let Some(hb) = watch.last_change() {
                        status.last_heartbeat_before_pause_ns = Some(hb.observed_at_ns);
                    }
                }
                Role::Destination => {
                    if let Some(hb) = watch.first_change() {
                        status.first_heartbeat_after_resume_ns = Some(hb.observed_at_ns);
                        status.heartbeat_counter = Some(hb.counter);
                    }
                }
            }
        }
        let has_guest = lock(&self.guests).contains_key(&status.lpar);
        status.holds = match (status.role, status.phase) {
            (Role::Source, Phase::SwitchoverReady | Phase::Committed) if has_guest => {
                GuestHold::Paused
            }
            (Role::Source, _) if has_guest => GuestHold::Running,
            (Role::Destination, Phase::Prepared | Phase::Transferring) => GuestHold::Partial,
            (Role::Destination, Phase::SwitchoverReady | Phase::Committed) => GuestHold::Complete,
            (Role::Destination, Phase::Resumed) if has_guest => GuestHold::Running,
            _ => GuestHold::Nothing,
        };
        status.record = record;
        Ok(status)
    }

    /// The status of a move this HVM only knows from its record (it restarted mid-move).
    fn interrupted_status(&self, job_id: &str, record: MigrationRecord) -> MigrationStatus {
        let guest = lock(&self.guests).get(&record.lpar).cloned();
        // The guest outlived the blade process in its VM process (see `crate::vmproc`).
        let holds = match (record.role, record.phase, guest) {
            (Role::Destination, RecordPhase::Resumed | RecordPhase::Swapped, Some(_)) => {
                GuestHold::Running
            }
            (Role::Source, RecordPhase::Started, Some(g)) if g.guest().is_paused() => {
                GuestHold::Paused
            }
            (Role::Source, RecordPhase::Started, Some(_)) => GuestHold::Running,
            _ => GuestHold::Nothing,
        };
        MigrationStatus {
            record: Some(record.clone()),
            ..MigrationStatus::new(job_id, record.role, record.lpar, Phase::Interrupted, holds)
        }
    }

    /// Long poll: the status once the phase is no longer `phase`, or after `wait`.
    pub async fn migration_status_wait(
        &self,
        job_id: &str,
        phase: Option<&str>,
        wait: Duration,
    ) -> Result<MigrationStatus, EmgError> {
        let (Some(phase), Some(job)) = (phase, lock(&self.migrations.jobs).get(job_id).cloned())
        else {
            return self.migration_status(job_id);
        };
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(5));
        loop {
            let notified = job.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if job.phase().as_str() != phase {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.migration_status(job_id)
    }

    /// Every move this HVM knows of.
    pub fn migrations_list(&self) -> Vec<MigrationStatus> {
        let mut ids: Vec<String> = lock(&self.migrations.jobs).keys().cloned().collect();
        ids.extend(lock(&self.state).migrations.keys().cloned());
        ids.sort();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.migration_status(id).ok())
            .collect()
    }

    /// Destination: defines the incoming LPAR paused with blank memory, reserves its resources
    /// and expects the source on the migration path.
    pub async fn prepare_incoming(
        self: &Arc<Self>,
        request: &PrepareIncoming,
        lease: Option<&str>,
    ) -> Result<IncomingPrepared, EmgError> {
        self.check_lock(LockTarget::Blade, lease)?;
        self.refuse_live_move_while_marked()?;
        let _admission = self.migrations.admit()?;
        if lock(&self.migrations.jobs).contains_key(&request.job) {
            return Err(invalid(format!(
                "job {} is already known here",
                request.job
            )));
        }
        let ticket = parse_ticket(&request.ticket)?;
        let source_cert = parse_cert(&request.source_cert_pem)?;
        let ip = self.migration_ip()?;
        let (lpar, exchange) = self.mutate(|s| {
            let (lpar, exchange) = s.define_incoming(&request.lpar, request.number)?;
            s.migrations.insert(
                request.job.clone(),
                MigrationRecord {
                    role: Role::Destination,
                    lpar: lpar.number,
                    phase: RecordPhase::Started,
                    exchange: Some(exchange.clone()),
                },
            );
            Ok((lpar, exchange))
        })?;
        let number = lpar.number;
        // The array decides whether the migration WWPNs may log in (LUN security): refused or
        // not confirmed in time, the move is canceled before any memory is reserved.
        if let Err(reason) = self.confirm_migration_logins(&lpar).await {
            self.set_fc_logins(number, Vec::new());
            let _ = self.mutate(|s| {
                s.migrations.remove(&request.job);
                s.set_status(number, LparStatus::Deactivated)?;
                s.delete(number)
            });
            self.log.record(
                LogLevel::Error,
                "migration",
                format!(
                    "job {}: FC login of LPAR {} ({}) with its migration WWPNs failed: {reason}",
                    request.job, number, lpar.name
                ),
            );
            return Err(EmgError::new(Emg::FcLoginTimeoutMigrationWwn, reason));
        }
        let spec = GuestSpec {
            memory_bytes: lpar.memory_mib * 1024 * 1024,
            vcpus: lpar.processors.count,
            workload: lpar.workload.clone(),
            backend: self.backend,
        };
        let vm_dir = self.vm_dir();
        let started = tokio::task::spawn_blocking(move || {
            let guest = crate::vmproc::spawn(&spec, number, &vm_dir, true)?;
            // Fault destination memory in now, not during the copy (MEASURED: 1.5 GB/s vs 12).
            guest.prefault()?;
            Ok::<_, crate::guest::GuestError>(guest)
        })
        .await
        .map_err(|e| EmgError::new(Emg::Internal, e.to_string()))
        .and_then(|r| {
            r.map_err(|e| {
                EmgError::new(Emg::Internal, format!("incoming guest did not start: {e}"))
            })
        });
        let guest = match started {
            Ok(g) => g,
            Err(e) => {
                let _ = self.mutate(|s| {
                    s.migrations.remove(&request.job);
                    s.set_status(number, LparStatus::Deactivated)?;
                    s.delete(number)
                });
                return Err(e);
            }
        };
        let addr = {
            let mut listener = self.migrations.listener.lock().await;
            // A restore may have changed the primary path since the listener was bound (a
            // `PUT /v1/migration-paths` rebinds it at once).
            let stale = listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .filter(|a| a.ip() != ip);
            if listener.is_none() || stale.is_some() {
                *listener = Some(self.migrations.bind_listener(ip)?);
                if let Some(old) = stale {
                    tracing::info!(%old, %ip, "migration listener moved to the primary path");
                }
            }
            let Some(l) = listener.as_ref() else {
                return Err(EmgError::new(Emg::Internal, "migration listener missing"));
            };
            let incoming = l.expect(ticket, lpar.name.as_str(), source_cert, guest.clone());
            let addr = l.local_addr().map_err(|e| move_error(&e))?;
            self.watch_incoming(
                &request.job,
                number,
                guest.clone(),
                incoming,
                request.purpose,
            );
            self.expire_unused_ticket(&request.job, request.ticket_ttl());
            addr
        };
        self.set_fc_logins(number, lpar.vfcs.iter().map(|v| v.migration_wwpn).collect());
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "job {}: LPAR {} ({}) prepared as incoming; vFCs logged in with migration WWPNs",
                request.job, number, lpar.name
            ),
        );
        let cert_pem = self.migrations.identity()?.cert_pem().to_owned();
        Ok(IncomingPrepared {
            number,
            migration_addr: addr,
            cert_pem,
            exchange,
        })
    }

    /// A prepared destination holds processors, memory and names for a source that may never
    /// come (its manager died between prepare and send). When the source has not connected
    /// within the ticket's lifetime the ticket expires: the destination cleans up exactly as for
    /// the manager's abort, and a source that comes late is refused at the ticket check.
    fn expire_unused_ticket(self: &Arc<Self>, job_id: &str, ttl: Duration) {
        let service = Arc::downgrade(self);
        let job_id = job_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let Some(service) = service.upgrade() else {
                return;
            };
            let Some(job) = lock(&service.migrations.jobs)
                .get(&job_id)
                .filter(|job| job.phase() == Phase::Prepared)
                .cloned()
            else {
                return;
            };
            let why = format!(
                "the source did not connect within {} s; the ticket expired and the incoming LPAR was dropped",
                ttl.as_secs()
            );
            job.update(|s| {
                s.phase = Phase::Aborted;
                s.error = Some(EmgError::new(Emg::MoverConnectionRefused, why.clone()));
            });
            service.log.record(
                LogLevel::Warning,
                "migration",
                format!("job {job_id}: {why}"),
            );
            if let Err(e) = service.abort_migration(&job_id).await {
                service.log.record(
                    LogLevel::Error,
                    "migration",
                    format!(
                        "job {job_id}: dropping the incoming LPAR of an expired ticket failed: {e}"
                    ),
                );
            }
        });
    }

    fn watch_incoming(
        self: &Arc<Self>,
        job_id: &str,
        number: LparNumber,
        guest: Arc<Guest>,
        mut incoming: IncomingMove<Guest>,
        purpose: MovePurpose,
    ) {
        let cancel = {
            let token = CancellationToken::new();
            let t = token.clone();
            (
                token,
                Box::new(move || t.cancel()) as Box<dyn Fn() + Send + Sync>,
            )
        };
        let job = Job::new(
            MigrationStatus::new(
                job_id,
                Role::Destination,
                number,
                Phase::Prepared,
                GuestHold::Partial,
            ),
            guest,
            cancel.0.clone(),
        );
        *lock(&job.incoming_cancel) = Some(cancel.1);
        *lock(&job.incoming_commit) = Some(incoming.commit_handle());
        let job = Arc::new(job);
        job.begin(&self.metrics.moves, purpose);
        lock(&self.migrations.jobs).insert(job_id.to_owned(), job.clone());
        if let Some(inbox) = incoming.take_settlements() {
            self.serve_settlements(job_id, &job, inbox);
        }
        let token = cancel.0;
        let mut status_rx = incoming.status.clone();
        let last_rx = incoming.status.clone();
        tokio::spawn(async move {
            let watcher_job = job.clone();
            let status_task = tokio::spawn(async move {
                while status_rx.changed().await.is_ok() {
                    let received = status_rx.borrow().clone();
                    let stage = received.stage;
                    *lock(&watcher_job.received) = received;
                    use lparmover::mover::receiver::RecvStage;
                    let phase = match stage {
                        RecvStage::Expecting => Phase::Prepared,
                        RecvStage::Receiving => Phase::Transferring,
                        RecvStage::Ready => Phase::SwitchoverReady,
                        RecvStage::Committed => Phase::Committed,
                        RecvStage::Scrubbed => Phase::Aborted,
                    };
                    watcher_job.update(|s| {
                        if !s.phase.is_final() && s.phase != Phase::Committed {
                            s.phase = phase;
                        }
                    });
                }
            });
            let outcome = {
                let finished = incoming.finished();
                tokio::pin!(finished);
                tokio::select! {
                    r = &mut finished => r,
                    _ = token.cancelled() => Err(MoveError::Cancelled),
                }
            };
            status_task.abort();
            *lock(&job.received) = last_rx.borrow().clone();
            if matches!(outcome, Ok(ReceiveOutcome::Undecided)) {
                job.undecided
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            job.update(|s| match outcome {
                Ok(ReceiveOutcome::Committed { .. }) => {
                    if !s.phase.is_final() {
                        s.phase = Phase::Committed;
                    }
                }
                Ok(ReceiveOutcome::Aborted { reason }) => {
                    s.phase = Phase::Aborted;
                    s.error = Some(EmgError::new(Emg::TerminatedByUser, reason));
                }
                Ok(ReceiveOutcome::Undecided) => {
                    if !s.phase.is_final() && s.phase != Phase::Committed {
                        s.phase = Phase::SwitchoverReady;
                    }
                }
                Err(e) => {
                    if !s.phase.is_final() {
                        s.phase = Phase::Failed;
                        s.error = Some(move_error(&e));
                    }
                }
            });
        });
    }

    /// Source: starts sending an activated LPAR to a prepared destination.
    pub async fn start_send(
        self: &Arc<Self>,
        request: &StartSend,
        lease: Option<&str>,
    ) -> Result<MigrationStatus, EmgError> {
        self.check_lock(LockTarget::Lpar(request.lpar), lease)?;
        self.refuse_live_move_while_marked()?;
        let _admission = self.migrations.admit()?;
        if lock(&self.migrations.jobs).contains_key(&request.job) {
            return Err(invalid(format!(
                "job {} is already known here",
                request.job
            )));
        }
        let ticket = parse_ticket(&request.ticket)?;
        let dest_cert = parse_cert(&request.dest_cert_pem)?;
        let options: &MoveOptions = &request.options;
        // Every option in range before the LPAR is marked Migrating.
        options.validate().map_err(|e| invalid(e.to_string()))?;
        let ip = self.migration_ip().map_err(|_| {
            EmgError::new(
                Emg::SourcePathMissing,
                format!("HVM {} has no migration path", self.name),
            )
        })?;
        let lpar = lock(&self.state).lpar(request.lpar)?.clone();
        if lpar.status != LparStatus::Activated {
            return Err(EmgError::new(
                Emg::LparDeactivated,
                format!(
                    "LPAR {} ({}) is {}",
                    lpar.number,
                    lpar.name,
                    lpar.status.label()
                ),
            ));
        }
        if lpar.usb == UsbState::Attached {
            return Err(EmgError::new(
                Emg::UsbAttached,
                format!("LPAR {} has the USB device", lpar.name),
            ));
        }
        let guest = lock(&self.guests)
            .get(&request.lpar)
            .map(|g| g.guest().clone())
            .ok_or_else(|| {
                EmgError::new(
                    Emg::InvalidLparState,
                    format!("LPAR {} has no running guest", lpar.name),
                )
            })?;
        let identity = self.migrations.identity()?;
        let mut cfg = SenderConfig::new(
            SocketAddr::new(ip, 0),
            request.dest_addr,
            identity.clone(),
            dest_cert,
            ticket,
        );
        cfg.lpar = lpar.name.to_string();
        cfg.downtime_limit = Duration::from_millis(options.downtime_limit_ms);
        cfg.timeout = Duration::from_secs(options.timeout_s);
        cfg.auto_converge = options.auto_converge;
        cfg.compression = compression(&options.compression)?;
        cfg.verify = options.verify;
        cfg.streams = options.streams;
        cfg.bandwidth_limit = options.bandwidth_limit;
        cfg.convergence = options.convergence.clone();
        cfg.hold_at_convergence = request.purpose == MovePurpose::Rehearsal;
        self.mutate(|s| {
            s.set_status(request.lpar, LparStatus::Migrating)?;
            s.migrations.insert(
                request.job.clone(),
                MigrationRecord {
                    role: Role::Source,
                    lpar: request.lpar,
                    phase: RecordPhase::Started,
                    exchange: Some(request.exchange.clone()),
                },
            );
            Ok(())
        })?;
        // From here until the sender owns the move, a failure (or a panic) undoes the mark.
        let mark = crate::blade::MigratingMark::new(self, request.lpar, &request.job);
        crate::faultpoint::panic_at(crate::faultpoint::START_SEND_MARKED);
        let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(Default::default());
        let cancel = CancellationToken::new();
        let sender = Sender::new(guest.clone(), cfg, progress_tx, cancel.clone());
        let job = Job::new(
            MigrationStatus::new(
                &request.job,
                Role::Source,
                request.lpar,
                Phase::Transferring,
                GuestHold::Running,
            ),
            guest.clone(),
            cancel,
        );
        *lock(&job.timeout) = Some(sender.timeout_handle());
        *lock(&job.bandwidth) = Some(sender.bandwidth_handle());
        *lock(&job.watch) = Some(HeartbeatWatch::start(guest, HEARTBEAT_PERIOD));
        lock(&job.lease).bound = Duration::from_millis(options.switchover_lease_ms);
        let job = Arc::new(job);
        job.begin(&self.metrics.moves, request.purpose);
        lock(&self.migrations.jobs).insert(request.job.clone(), job.clone());
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "job {}: sending LPAR {} ({}) to {}",
                request.job, lpar.number, lpar.name, request.dest_addr
            ),
        );
        let progress_job = job.clone();
        let lpar_number = request.lpar;
        tokio::spawn(async move {
            while progress_rx.changed().await.is_ok() {
                let p = progress_rx.borrow().clone();
                progress_job.throttle(lpar_number, p.throttle_percent);
                progress_job.update(|s| s.progress = Some(p));
            }
        });
        let service = Arc::clone(self);
        let number = request.lpar;
        let job_id = request.job.clone();
        tokio::spawn(async move {
            match sender.run().await {
                Ok(ready) => {
                    let summary = ready.summary().clone();
                    *job.ready.lock().await = Some(ready);
                    // The guest is paused from here until someone decides: the manager, or the
                    // two blades once its lease lapses.
                    lock(&job.lease).start();
                    job.update(|s| {
                        s.phase = Phase::SwitchoverReady;
                        s.summary = Some(summary);
                    });
                    service.guard_switchover(&job_id, &job);
                }
                Err(e) => {
                    let error = move_error(&e);
                    let phase = if matches!(e, MoveError::Cancelled) {
                        Phase::Cancelled
                    } else {
                        Phase::Failed
                    };
                    // The sender left the source running; the LPAR is simply Activated again.
                    let _ = service.mutate(|s| {
                        s.migrations.remove(&job_id);
                        s.set_status(number, LparStatus::Activated).map(drop)
                    });
                    service.log.record(
                        LogLevel::Warning,
                        "migration",
                        format!("job {job_id}: {error}"),
                    );
                    job.update(|s| {
                        s.phase = phase;
                        s.error = Some(error);
                    });
                    job.finish();
                }
            }
        });
        mark.disarm();
        self.migration_status(&request.job)
    }

    /// Source: cancels a move still transferring memory.
    pub fn cancel_migration(&self, job_id: &str) -> Result<MigrationStatus, EmgError> {
        let job = self.migrations.job(job_id)?;
        match job.phase() {
            Phase::Transferring | Phase::Prepared => {
                job.cancel.cancel();
                if let Some(cancel) = lock(&job.incoming_cancel).as_ref() {
                    cancel();
                }
                self.migration_status(job_id)
            }
            other => Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "job {job_id} is {other:?}; cancel is possible only while memory is being transferred"
                ),
            )),
        }
    }

    /// Source: extends the timeout of a move still transferring memory.
    pub fn extend_migration(
        &self,
        job_id: &str,
        body: &ExtendTimeout,
    ) -> Result<MigrationStatus, EmgError> {
        body.validate().map_err(|e| invalid(e.to_string()))?;
        let job = self.migrations.job(job_id)?;
        let extended = lock(&job.timeout)
            .as_ref()
            .is_some_and(|t| t.extend(Duration::from_secs(body.seconds)));
        if !extended {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "job {job_id} is not transferring memory; the timeout can only be extended then"
                ),
            ));
        }
        self.migration_status(job_id)
    }

    /// Source: changes the bandwidth cap of a move still transferring memory.
    pub fn set_migration_bandwidth(
        &self,
        job_id: &str,
        body: &lparmover::api::SetBandwidth,
    ) -> Result<MigrationStatus, EmgError> {
        body.validate().map_err(|e| invalid(e.to_string()))?;
        let job = self.migrations.job(job_id)?;
        let transferring = lock(&job.status).phase == Phase::Transferring;
        let handle = lock(&job.bandwidth).clone();
        match handle {
            Some(handle) if transferring => {
                handle.set(body.bandwidth_limit);
                tracing::info!(job = job_id, bandwidth_limit = ?body.bandwidth_limit, "bandwidth cap changed");
            }
            _ => {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "job {job_id} is not sending memory from this HVM; its bandwidth cap can only be changed on the source while memory moves"
                    ),
                ));
            }
        }
        self.migration_status(job_id)
    }

    /// Destination, the manager passed the commit point: records "resumed" durably, commits the
    /// incoming move on this side and resumes the guest. Its vFCs stay logged in with the
    /// migration WWPNs until [`Self::swap_migration`] (the source still has the WWPNs).
    pub async fn resume_migration(&self, job_id: &str) -> Result<LparView, EmgError> {
        self.refuse_if_fenced(job_id)?;
        let job = self.live_job(job_id, Role::Destination)?;
        let number = lock(&job.status).lpar;
        // The receiver tells the source it holds every page before its status reaches this job
        // (a watch channel another task reads), so the manager's resume can arrive first: give
        // the status a moment to catch up instead of refusing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = job.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match job.phase() {
                Phase::Resumed => return self.lpar(number),
                Phase::SwitchoverReady | Phase::Committed => break,
                Phase::Prepared | Phase::Transferring if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
                other => {
                    return Err(EmgError::new(
                        Emg::InvalidLparState,
                        format!(
                            "job {job_id} is {other:?} here; only a destination holding every page can resume"
                        ),
                    ));
                }
            }
        }
        // Durable before the guest may run: a restart must know it ran here. This write and
        // the settlement's "fenced" are the two ways the commit point can go; whichever is
        // written first wins (both go through `mutate`, one at a time).
        let lpar = self.mutate(|s| {
            if let Some(record) = s.migrations.get(job_id)
                && record.phase == RecordPhase::Fenced
            {
                return Err(fenced_refusal(job_id));
            }
            let lpar = s.set_status(number, LparStatus::Activated)?;
            s.adopt_lpar_names(&lpar);
            if let Some(record) = s.migrations.get_mut(job_id) {
                record.phase = RecordPhase::Resumed;
            }
            Ok(lpar)
        })?;
        if !job.undecided.load(std::sync::atomic::Ordering::Acquire)
            && job.phase() == Phase::SwitchoverReady
        {
            if let Some(commit) = lock(&job.incoming_commit).as_ref() {
                commit.commit();
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let notified = job.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let phase = job.phase();
                if phase == Phase::Committed
                    || job.undecided.load(std::sync::atomic::Ordering::Acquire)
                {
                    break;
                }
                if phase != Phase::SwitchoverReady
                    || tokio::time::timeout_at(deadline, notified).await.is_err()
                {
                    // The receiver ended otherwise (scrubbed): nothing of it may run here.
                    let _ = self.mutate(|s| {
                        s.migrations.remove(job_id);
                        s.set_status(number, LparStatus::Deactivated)?;
                        s.delete(number).map(drop)
                    });
                    self.set_fc_logins(number, Vec::new());
                    return Err(EmgError::new(
                        Emg::InvalidLparState,
                        format!(
                            "job {job_id}: the incoming move ended as {phase:?}, not committed"
                        ),
                    ));
                }
            }
        }
        job.update(|s| s.phase = Phase::Committed);
        let guest = job.guest()?;
        let watch = HeartbeatWatch::start(guest.clone(), HEARTBEAT_PERIOD);
        let resumed = guest.clone();
        tokio::task::spawn_blocking(move || guest.resume())
            .await
            .map_err(|e| EmgError::new(Emg::Internal, e.to_string()))?
            .map_err(|e| EmgError::new(Emg::Internal, format!("resuming the guest failed: {e}")))?;
        *lock(&job.watch) = Some(watch);
        lock(&self.guests).insert(number, GuestHandle::new(resumed));
        // Keep sampling only until the first heartbeat after the resume has been seen.
        let settle = job.clone();
        tokio::spawn(async move {
            for _ in 0..1000 {
                let seen = lock(&settle.watch).as_ref().and_then(|w| w.first_change());
                if let Some(hb) = seen {
                    settle.update(|s| {
                        s.first_heartbeat_after_resume_ns = Some(hb.observed_at_ns);
                        s.heartbeat_counter = Some(hb.counter);
                    });
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            settle.finish();
        });
        job.update(|s| s.phase = Phase::Resumed);
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "job {job_id}: LPAR {number} ({}) committed and resumed here; vFCs still on the migration WWPNs",
                lpar.name
            ),
        );
        Ok(self.view(lpar))
    }

    /// Source, after the destination resumed: records "committed" (with the names to adopt),
    /// logs the vFCs out so the destination may log in with the WWPNs, and tells the
    /// destination over the migration path. The guest stays paused here until released.
    pub async fn commit_migration(
        &self,
        job_id: &str,
        body: &CommitRequest,
    ) -> Result<MigrationStatus, EmgError> {
        let job = self.live_job(job_id, Role::Source)?;
        // The decision is taken under the switch-over's lock: the blades' own settlement (the
        // lease lapsed) and this call never both act.
        let mut ready_slot = job.ready.lock().await;
        self.refuse_if_settled_backward(job_id, &job)?;
        match job.phase() {
            Phase::Committed | Phase::Released => return self.migration_status(job_id),
            Phase::SwitchoverReady => {}
            other => {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!("job {job_id} is {other:?}; only a switch-over can be committed"),
                ));
            }
        }
        let number = lock(&job.status).lpar;
        self.mutate(|s| {
            if let Some(record) = s.migrations.get_mut(job_id) {
                record.phase = RecordPhase::Committed;
                record.exchange = Some(body.exchange.clone());
            }
            Ok(())
        })?;
        if let Some(watch) = lock(&job.watch).as_ref()
            && let Some(hb) = watch.last_change()
        {
            job.update(|s| s.last_heartbeat_before_pause_ns = Some(hb.observed_at_ns));
        }
        if let Some(watch) = lock(&job.watch).take() {
            watch.stop();
        }
        self.set_fc_logins(number, Vec::new());
        job.update(|s| s.phase = Phase::Committed);
        let ready = ready_slot.take();
        drop(ready_slot);
        let result = match ready {
            Some(ready) => ready.commit().await,
            None => Err(lparmover::mover::MoveError::Internal(
                "the switch-over was already decided".into(),
            )),
        };
        match result {
            Ok(summary) => {
                job.update(|s| s.summary = Some(summary));
                self.log.record(
                    LogLevel::Info,
                    "migration",
                    format!(
                        "job {job_id}: committed; LPAR {number} belongs to the destination, vFCs logged out"
                    ),
                );
            }
            Err(e) => {
                // The destination resumed before this call: it is authoritative either way.
                self.log.record(
                    LogLevel::Warning,
                    "migration",
                    format!("job {job_id}: committed; the migration path did not acknowledge: {e}"),
                );
            }
        }
        self.migration_status(job_id)
    }

    /// Destination, once the source logged out: the vFCs log in with the WWPNs and this HVM's
    /// part of the move is done.
    pub fn swap_migration(&self, job_id: &str) -> Result<MigrationStatus, EmgError> {
        self.swap_identities(job_id, false)
    }

    /// The swap itself. `by_blades`: the source asked for it while the manager is gone, so the
    /// record stays ("swapped") until the manager acknowledges it with its own swap.
    fn swap_identities(&self, job_id: &str, by_blades: bool) -> Result<MigrationStatus, EmgError> {
        let mut status = self.migration_status(job_id)?;
        let resumed = status.phase == Phase::Resumed
            || status
                .record
                .as_ref()
                .is_some_and(|r| matches!(r.phase, RecordPhase::Resumed | RecordPhase::Swapped));
        if status.role != Role::Destination || !resumed {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "job {job_id} is {:?} here; only a resumed destination swaps to the WWPNs",
                    status.phase
                ),
            ));
        }
        let lpar = lock(&self.state).lpar(status.lpar)?.clone();
        let cleared = self.mutate(|s| {
            if by_blades {
                if let Some(record) = s.migrations.get_mut(job_id) {
                    record.phase = RecordPhase::Swapped;
                }
            } else {
                s.migrations.remove(job_id);
            }
            // The identity swap completed the normal way: no WWNs left to roll back for the job.
            Ok(s.clear_wwn_rollbacks_of(job_id))
        })?;
        if !by_blades && let Some(job) = lock(&self.migrations.jobs).get(job_id) {
            job.settled_here.cancel();
        }
        self.set_fc_logins(status.lpar, lpar.vfcs.iter().map(|v| v.wwpn).collect());
        for mark in cleared {
            self.log.record(
                LogLevel::Info,
                "migration",
                format!(
                    "job {job_id}: WWN rollback mark of LPAR {} ({}) cleared by the swap",
                    mark.lpar, mark.lpar_name
                ),
            );
        }
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "job {job_id}: LPAR {} ({}) vFCs logged in with their WWPNs",
                lpar.number, lpar.name
            ),
        );
        if !by_blades {
            status.record = None;
        }
        Ok(status)
    }

    /// Source: lets go of the LPAR after a committed move and adopts the exchanged names (also
    /// after a restart, when only the record is left and the manager knows the destination has it).
    pub async fn release_migration(
        &self,
        job_id: &str,
        body: &Release,
    ) -> Result<MigrationStatus, EmgError> {
        let status = self.migration_status(job_id)?;
        if status.role == Role::Source && status.phase == Phase::Released {
            // The blades finished the move between themselves (or a retry): nothing left.
            return Ok(status);
        }
        let allowed = status.role == Role::Source
            && (status.phase == Phase::Committed || status.phase == Phase::Interrupted);
        if !allowed {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "job {job_id} is {:?}; only a committed move can be released",
                    status.phase
                ),
            ));
        }
        let number = status.lpar;
        let guest = lock(&self.guests).remove(&number);
        if let Some(guest) = guest {
            tokio::task::spawn_blocking(move || guest.stop()).await.ok();
        }
        self.set_fc_logins(number, Vec::new());
        self.mutate(|s| {
            s.migrations.remove(job_id);
            if s.lpars.contains_key(&number) {
                s.set_status(number, LparStatus::Deactivated)?;
                s.delete(number)?;
            }
            s.adopt_exchange(&body.exchange);
            Ok(())
        })?;
        let job = lock(&self.migrations.jobs).get(job_id).cloned();
        let mut status = status;
        if let Some(job) = job {
            job.update(|s| s.phase = Phase::Released);
            job.finish();
            status = self.migration_status(job_id)?;
        } else {
            status.phase = Phase::Released;
            status.holds = GuestHold::Nothing;
            status.record = None;
        }
        self.log.record(
            LogLevel::Info,
            "migration",
            format!("job {job_id}: LPAR {number} released after its move"),
        );
        Ok(status)
    }

    /// Either side: the manager decided not to commit (or the move failed). The source resumes
    /// with nothing lost; the destination scrubs and drops its definition. After a restart the
    /// record is dropped (a source LPAR stays "requires recovery" for the manager to settle).
    pub async fn abort_migration(&self, job_id: &str) -> Result<MigrationStatus, EmgError> {
        let status = self.migration_status(job_id)?;
        let (role, number, phase) = (status.role, status.lpar, status.phase);
        if status
            .record
            .as_ref()
            .is_some_and(|r| r.phase == RecordPhase::Fenced)
        {
            return self.acknowledge_fence(job_id, status);
        }
        let resumed_here = status.record.as_ref().is_some_and(|r| {
            matches!(
                r.phase,
                RecordPhase::Resumed | RecordPhase::Committed | RecordPhase::Swapped
            )
        });
        if resumed_here
            || matches!(phase, Phase::Resumed | Phase::Released)
            || (role == Role::Source && phase == Phase::Committed)
        {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!("job {job_id} is {phase:?}; a committed move cannot be aborted"),
            ));
        }
        let live = lock(&self.migrations.jobs).get(job_id).cloned();
        match (role, live) {
            (Role::Source, Some(job)) => {
                job.cancel.cancel();
                let mut ready_slot = job.ready.lock().await;
                if job.phase().is_final() {
                    // The blades settled it while this call waited for the switch-over's lock.
                    drop(ready_slot);
                    return self.migration_status(job_id);
                }
                if let Some(ready) = ready_slot.take() {
                    match ready.abort("the manager did not commit").await {
                        Ok(()) => {}
                        Err(lparmover::mover::MoveError::AlreadyCommitted) => {
                            return Err(EmgError::new(
                                Emg::InvalidLparState,
                                format!(
                                    "job {job_id}: the destination was already committed; the LPAR stays paused here (run `lparmover recover`)"
                                ),
                            ));
                        }
                        // The source resumed; the destination scrubs on its own or when told.
                        Err(e) => self.log.record(
                            LogLevel::Warning,
                            "migration",
                            format!("job {job_id}: the destination did not confirm the abort: {e}"),
                        ),
                    }
                }
                if let Some(watch) = lock(&job.watch).take() {
                    watch.stop();
                }
                self.mutate(|s| {
                    s.migrations.remove(job_id);
                    if s.lpar(number)?.status == LparStatus::Migrating {
                        s.set_status(number, LparStatus::Activated)?;
                    }
                    Ok(())
                })?;
                job.update(|s| {
                    if !s.phase.is_final() {
                        s.phase = Phase::Aborted;
                    }
                });
                job.finish();
            }
            (Role::Source, None) => {
                // Restarted mid-move. If the guest outlived the old process it runs on here,
                // exactly as after an abort of a live move.
                let guest = lock(&self.guests).get(&number).cloned();
                let holds_guest = guest.is_some();
                if let Some(guest) = guest {
                    tokio::task::spawn_blocking(move || {
                        // Adoption already switched dirty logging and throttling off.
                        let g = guest.guest();
                        if g.is_paused() { g.resume() } else { Ok(()) }
                    })
                    .await
                    .map_err(|e| EmgError::new(Emg::Internal, e.to_string()))?
                    .map_err(|e| {
                        EmgError::new(
                            Emg::Internal,
                            format!("job {job_id}: LPAR {number} could not be resumed: {e}"),
                        )
                    })?;
                }
                self.mutate(|s| {
                    s.migrations.remove(job_id);
                    if holds_guest && s.lpar(number)?.status == LparStatus::Migrating {
                        s.set_status(number, LparStatus::Activated)?;
                    }
                    Ok(())
                })?;
            }
            (Role::Destination, live) => {
                if let Some(job) = &live {
                    if let Some(cancel) = lock(&job.incoming_cancel).take() {
                        cancel();
                    }
                    if let Ok(guest) = job.guest() {
                        tokio::task::spawn_blocking(move || guest.stop()).await.ok();
                    }
                }
                self.set_fc_logins(number, Vec::new());
                self.mutate(|s| {
                    s.migrations.remove(job_id);
                    if s.lpars.contains_key(&number) {
                        s.set_status(number, LparStatus::Deactivated)?;
                        s.delete(number)?;
                    }
                    Ok(())
                })?;
                if let Some(job) = live {
                    job.update(|s| {
                        if !s.phase.is_final() {
                            s.phase = Phase::Aborted;
                        }
                    });
                    job.finish();
                }
            }
        }
        self.log.record(
            LogLevel::Info,
            "migration",
            format!("job {job_id}: aborted; {role:?} side cleaned up"),
        );
        match self.migration_status(job_id) {
            Ok(s) => Ok(s),
            Err(_) => Ok(MigrationStatus {
                phase: Phase::Aborted,
                holds: GuestHold::Nothing,
                record: None,
                ..status
            }),
        }
    }

    /// A move under way on this HVM in `role` (not one only known from a record).
    fn live_job(&self, job_id: &str, role: Role) -> Result<Arc<Job>, EmgError> {
        let job = lock(&self.migrations.jobs).get(job_id).cloned();
        let Some(job) = job else {
            if lock(&self.state).migrations.contains_key(job_id) {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "job {job_id}: this HVM restarted during the move and holds no guest for it; run `lparmover recover`"
                    ),
                ));
            }
            return Err(invalid(format!("no migration job {job_id:?} on this HVM")));
        };
        let actual = lock(&job.status).role;
        if actual != role {
            return Err(invalid(format!(
                "job {job_id}: this HVM is the {actual:?} of the move, not the {role:?}"
            )));
        }
        Ok(job)
    }

    /// After a restart: settles what this HVM can settle alone from its migration records and
    /// leaves the rest to the manager. Runs before guests are adopted or re-activated; `adopted`
    /// holds the VMs that outlived the previous process. A source whose VM still runs keeps
    /// its guest (running, or paused if the move was switching over) for the manager to settle;
    /// one whose VM is gone "requires recovery". Returns the LPARs to log in with their
    /// migration WWPNs and the VMs to stop.
    pub(crate) fn settle_records_after_restart(
        &self,
        adopted: &mut HashMap<LparNumber, Arc<Guest>>,
    ) -> Result<Settled, EmgError> {
        let mut to_stop = Vec::new();
        let records: Vec<(String, MigrationRecord)> = lock(&self.state)
            .migrations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut migration_logins = Vec::new();
        for (job, record) in records {
            let number = record.lpar;
            let note = match (record.role, record.phase) {
                (Role::Source, RecordPhase::Committed) => {
                    // The destination resumed it before this HVM committed: let go.
                    to_stop.extend(adopted.remove(&number));
                    let exchange = record.exchange.clone().unwrap_or_default();
                    self.mutate(|s| {
                        s.migrations.remove(&job);
                        if s.lpars.contains_key(&number) {
                            s.set_status(number, LparStatus::Deactivated)?;
                            s.delete(number)?;
                        }
                        s.adopt_exchange(&exchange);
                        Ok(())
                    })?;
                    format!(
                        "job {job}: LPAR {number} had been committed to the destination; released"
                    )
                }
                (Role::Destination, RecordPhase::Started) => {
                    // A partial or unresumed copy: nothing of it ran here, and the move it
                    // belonged to died with the process. Scrub it.
                    to_stop.extend(adopted.remove(&number));
                    self.mutate(|s| {
                        s.migrations.remove(&job);
                        if s.lpars.contains_key(&number) {
                            s.set_status(number, LparStatus::Deactivated)?;
                            s.delete(number)?;
                        }
                        Ok(())
                    })?;
                    format!(
                        "job {job}: incoming LPAR {number} was not resumed here; its copy and definition dropped"
                    )
                }
                (Role::Destination, RecordPhase::Fenced) => {
                    // Fenced before the restart: its copy was dropped then; the record waits
                    // for the manager's acknowledgement.
                    to_stop.extend(adopted.remove(&number));
                    format!("job {job}: fenced before the restart; nothing of it runs here")
                }
                (Role::Destination, RecordPhase::Swapped) => {
                    // Resumed and swapped between the blades: it runs on its own WWPNs.
                    if let Ok(lpar) = lock(&self.state).lpar(number) {
                        migration_logins.push((number, lpar.vfcs.iter().map(|v| v.wwpn).collect()));
                    }
                    format!(
                        "job {job}: LPAR {number} had resumed and swapped here (settled by the blades)"
                    )
                }
                (Role::Destination, _) => {
                    // It ran here: it is re-activated like any running LPAR, on the migration
                    // WWPNs until the manager has the source log out.
                    if let Ok(lpar) = lock(&self.state).lpar(number) {
                        migration_logins
                            .push((number, lpar.vfcs.iter().map(|v| v.migration_wwpn).collect()));
                    }
                    format!("job {job}: LPAR {number} had resumed here; WWPN swap pending")
                }
                (Role::Source, _) if adopted.contains_key(&number) => {
                    // The guest outlived the blade process: it stays here, running (or paused,
                    // if the move was switching over) until the manager settles the move.
                    // Adoption switched its dirty logging and throttling off.
                    let guest = adopted
                        .remove(&number)
                        .ok_or_else(|| EmgError::new(Emg::Internal, "adopted guest vanished"))?;
                    let paused = guest.is_paused();
                    lock(&self.guests).insert(number, GuestHandle::new(guest));
                    if let Ok(lpar) = lock(&self.state).lpar(number) {
                        migration_logins.push((number, lpar.vfcs.iter().map(|v| v.wwpn).collect()));
                    }
                    format!(
                        "job {job}: LPAR {number} was being sent when the HVM stopped; its guest kept {} in its VM process; the manager settles the move",
                        if paused {
                            "its memory, paused"
                        } else {
                            "running"
                        }
                    )
                }
                (Role::Source, _) => {
                    self.mutate(|s| {
                        if s.lpars.contains_key(&number) {
                            s.set_status(number, LparStatus::RequiresRecovery)?;
                        }
                        Ok(())
                    })?;
                    format!(
                        "job {job}: LPAR {number} was being sent when the HVM stopped; it requires recovery"
                    )
                }
            };
            self.log.record(LogLevel::Warning, "migration", note);
        }
        Ok(Settled {
            migration_logins,
            to_stop,
        })
    }

    /// Clears "requires recovery" on an LPAR no move still claims: it becomes Deactivated.
    pub fn recover_lpar(&self, number: LparNumber) -> Result<LparView, EmgError> {
        if let Some((job, _)) = lock(&self.state)
            .migrations
            .iter()
            .find(|(_, r)| r.lpar == number && !r.phase.is_settled())
        {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "LPAR {number} still belongs to move {job}; run `lparmover recover` so the manager settles the move first"
                ),
            ));
        }
        let lpar = self.mutate(|s| {
            let lpar = s.lpar(number)?;
            if lpar.status != LparStatus::RequiresRecovery {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "LPAR {} ({}) is {}; only an LPAR requiring recovery can be recovered",
                        lpar.number,
                        lpar.name,
                        lpar.status.label()
                    ),
                ));
            }
            s.set_status(number, LparStatus::Deactivated)
        })?;
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "LPAR {number} ({}) recovered: deactivated, may be activated again",
                lpar.name
            ),
        );
        Ok(self.view(lpar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blade_admits_at_most_max_running_jobs_and_a_finished_admission_frees_its_place() {
        let migrations = Migrations::default();
        let mut held: Vec<Admission<'_>> = (0..DEFAULT_MAX_RUNNING_JOBS)
            .map(|_| migrations.admit().expect("under the cap"))
            .collect();
        let Err(refused) = migrations.admit() else {
            panic!("move {} is refused", DEFAULT_MAX_RUNNING_JOBS + 1);
        };
        assert_eq!(refused.kind, Emg::BladeBusyMigration);
        assert!(
            refused
                .to_string()
                .contains("as many migrations as it takes at once (8)"),
            "{refused}"
        );
        held.pop();
        let _again = migrations.admit().expect("a place came back");
        drop(held);
        assert_eq!(*lock(&migrations.admitting), 1);
    }
}
