//! Migration control calls between the manager and the HVMs (`/v1/migrations/…`).
//!
//! The manager drives a live move with these calls; the memory itself goes HVM to HVM over the
//! migration path (see [`crate::mover`]).
//!
//! ```text
//! manager                      destination HVM                     source HVM
//!   │ POST /migrations/incoming ──▶ reserve, define LPAR (Migrating),
//!   │                               guest paused with blank memory,
//!   │ ◀── IncomingPrepared ───────  expect(ticket, source cert)
//!   │ POST /migrations/{job}/send ─────────────────────────────────▶ Sender::run (background)
//!   │ GET  /migrations/{job}?wait_ms=250&phase=transferring (long poll) ▶
//!   │                               ◀════ QUIC: rounds, suspend, vCPU state ════
//!   │ … source reports SwitchoverReady (source paused, destination Ready)
//!   │ journal "commit point" (fsync)
//!   │ POST /migrations/{job}/resume ─▶ commit locally, record "resumed",
//!   │                                  LPAR Activated, guest resumes
//!   │                                  (vFCs still on the migration WWPNs)
//!   │ POST /migrations/{job}/commit {exchange} ────────────────────▶ record "committed",
//!   │                                                                 vFCs log out, QUIC Commit
//!   │ POST /migrations/{job}/swap ───▶ vFCs log in with the WWPNs
//!   │ POST /migrations/{job}/release ──────────────────────────────▶ stop guest, delete LPAR,
//!   │                                                                 adopt exchanged names
//! ```
//!
//! From `SwitchoverReady` until its commit the manager renews a switch-over lease on the source
//! (`POST /migrations/{job}/lease`, every [`SWITCHOVER_LEASE_RENEWAL`]). If it lapses
//! ([`MoveOptions::switchover_lease_ms`]) the two HVMs settle the job between themselves over a
//! settlement connection: the destination's durable "resumed" or "fenced" record decides
//! ([`RecordPhase::Fenced`], [`RecordPhase::Swapped`], [`Settlement`]).
//!
//! Only one HTTP call lies between the switch-over being ready and the guest running again.
//! Before the commit point any failure or `cancel` leaves the source running (the sender restores
//! it) and the destination drops its definition (`POST /migrations/{job}/abort`). Each HVM keeps a
//! [`MigrationRecord`] of its part in its state file, so a blade killed mid-move knows after a
//! restart what it may do on its own and what the manager must decide
//! (`crate::jobs::recovery`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::emg::EmgError;
use crate::model::{Lpar, LparNumber, MacAddr, VfcId, Wwnn, Wwpn};
use crate::mover::{MoveSummary, Progress};

/// Tunables of one live move, as the operator sets them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoveOptions {
    /// Longest acceptable suspension, ms (default 50).
    pub downtime_limit_ms: u64,
    /// Give up after this long without converging, s (default 900).
    pub timeout_s: u64,
    /// Throttle the guest when rounds stop shrinking.
    pub auto_converge: bool,
    /// Compression policy: `auto`, `always` or `never`.
    pub compression: String,
    /// Compare memory digests before the switch.
    pub verify: bool,
    /// Parallel data streams.
    pub streams: usize,
    /// Cap on migration-path bytes per second (None = none).
    pub bandwidth_limit: Option<u64>,
    /// How long the paused source waits without a renewal of the manager's switch-over lease
    /// before it settles the job with the destination on its own, ms (default 2000).
    pub switchover_lease_ms: u64,
    /// Raise the downtime limit step by step as rounds stall, then give up (None: the limit
    /// stays `downtime_limit_ms` and only the timeout ends a move that does not converge).
    pub convergence: Option<lpm_formats::moves::ConvergenceSchedule>,
}

impl MoveOptions {
    /// Shortest switch-over lease: four of the manager's renewals must fit in it.
    pub const MIN_SWITCHOVER_LEASE_MS: u64 = 4 * SWITCHOVER_LEASE_RENEWAL.as_millis() as u64;
    /// Longest switch-over lease, ms: a guest paused longer than a minute is down, not moving.
    pub const MAX_SWITCHOVER_LEASE_MS: u64 = 60_000;
    /// Longest downtime limit, ms.
    pub const MAX_DOWNTIME_LIMIT_MS: u64 = lpm_formats::moves::MAX_DOWNTIME_LIMIT_MS;
    /// Longest timeout, s (a week; extend a running move for more).
    pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
    /// Most parallel data streams.
    pub const MAX_STREAMS: usize = 16;
    /// Smallest bandwidth cap, bytes/s (1 MB/s: below it a move of any real guest never ends).
    pub const MIN_BANDWIDTH: u64 = 1_000_000;
    /// Largest bandwidth cap, bytes/s (1 TB/s: beyond any link, so it means "none").
    pub const MAX_BANDWIDTH: u64 = 1_000_000_000_000;

    /// Checks every field against its range before anything is reserved or written; the error
    /// names the field, its limits and what to do.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let range = |field: &'static str, value: u64, min: u64, max: u64, unit: &'static str| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(InvalidOption {
                    field,
                    value: value.to_string(),
                    allowed: format!("{min} to {max} {unit}"),
                })
            }
        };
        range(
            "downtime_limit_ms",
            self.downtime_limit_ms,
            1,
            Self::MAX_DOWNTIME_LIMIT_MS,
            "ms",
        )?;
        range("timeout_s", self.timeout_s, 1, Self::MAX_TIMEOUT_S, "s")?;
        range(
            "streams",
            self.streams as u64,
            1,
            Self::MAX_STREAMS as u64,
            "streams",
        )?;
        range(
            "switchover_lease_ms",
            self.switchover_lease_ms,
            Self::MIN_SWITCHOVER_LEASE_MS,
            Self::MAX_SWITCHOVER_LEASE_MS,
            "ms",
        )?;
        if let Some(b) = self.bandwidth_limit {
            range(
                "bandwidth_limit",
                b,
                Self::MIN_BANDWIDTH,
                Self::MAX_BANDWIDTH,
                "bytes/s (leave it out for none)",
            )?;
        }
        if let Some(schedule) = &self.convergence
            && let Err(why) = schedule.validate(self.downtime_limit_ms)
        {
            return Err(InvalidOption {
                field: "convergence",
                value: why,
                allowed: format!(
                    "steps with rising stalled_rounds (1 to {}) and rising downtime limits above downtime_limit_ms (at most {} ms), at most {} steps",
                    lpm_formats::moves::MAX_STALLED_ROUNDS,
                    Self::MAX_DOWNTIME_LIMIT_MS,
                    lpm_formats::moves::MAX_CONVERGENCE_STEPS
                ),
            });
        }
        if !matches!(self.compression.as_str(), "auto" | "always" | "never") {
            return Err(InvalidOption {
                field: "compression",
                value: format!(
                    "{:?}",
                    self.compression.chars().take(40).collect::<String>()
                ),
                allowed: "auto, always or never".into(),
            });
        }
        Ok(())
    }
}

impl StartSend {
    /// Checks the free-text fields' lengths and the job id before the LPAR is marked Migrating
    /// (the options have [`MoveOptions::validate`]).
    pub fn check_fields(&self) -> Result<(), super::limits::InvalidField> {
        use super::limits::{check_job_id, check_ticket_and_cert};
        check_job_id("job", &self.job)?;
        check_ticket_and_cert(&self.ticket, "dest_cert_pem", &self.dest_cert_pem)
    }
}

/// A move option outside its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("move option {field} = {value} is out of range: give {allowed}; nothing was started")]
pub struct InvalidOption {
    /// The field.
    pub field: &'static str,
    /// What was given.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

/// How often the manager renews the switch-over lease while the source is paused.
pub const SWITCHOVER_LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            downtime_limit_ms: 50,
            timeout_s: 900,
            auto_converge: true,
            compression: "auto".into(),
            verify: false,
            streams: 4,
            bandwidth_limit: None,
            switchover_lease_ms: 2000,
            convergence: None,
        }
    }
}

/// Names the destination HVM would have generated for the slots the moved LPAR takes; they go
/// to the source HVM (the seed's WWN/MAC exchange) so no name is ever generated twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameExchange {
    /// Per vFC of the moved LPAR, in order: the vfcID it had on the source, and the names the
    /// destination's vfcID would have carried.
    pub vfcs: Vec<(VfcId, (Wwpn, Wwnn, Wwpn))>,
    /// Per vNIC of the moved LPAR, in order: (source LPAR number, vNIC index) and the MAC the
    /// destination slot would have carried.
    pub macs: Vec<((LparNumber, u8), MacAddr)>,
}

/// Asks the destination to get ready for an incoming LPAR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareIncoming {
    /// Job id.
    pub job: String,
    /// The LPAR as the source holds it (names, identities, workload).
    pub lpar: Lpar,
    /// LPAR number on the destination (None = youngest free).
    pub number: Option<LparNumber>,
    /// One-time ticket (hex) the source will present.
    pub ticket: String,
    /// The source HVM's certificate (PEM) to pin on the migration path.
    pub source_cert_pem: String,
    /// Seconds the ticket stays valid if the source never connects (None =
    /// [`PrepareIncoming::DEFAULT_TICKET_TTL_S`]): then the destination drops the incoming LPAR
    /// and frees what it reserved, so a manager that dies between prepare and send cannot hold a
    /// blade's processors and memory for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_ttl_s: Option<u64>,
    /// A real move or a rehearsal (counted apart in the blade's metrics).
    #[serde(default, skip_serializing_if = "MovePurpose::is_move")]
    pub purpose: MovePurpose,
}

impl PrepareIncoming {
    /// How long an unused ticket lives by default.
    pub const DEFAULT_TICKET_TTL_S: u64 = 120;
    /// The longest lifetime a ticket may be given.
    pub const MAX_TICKET_TTL_S: u64 = 3600;

    /// Checks the free-text fields' lengths, the job id and the ticket's lifetime before
    /// anything is defined.
    pub fn check_fields(&self) -> Result<(), super::limits::InvalidField> {
        use super::limits::{InvalidField, check_job_id, check_ticket_and_cert};
        check_job_id("job", &self.job)?;
        check_ticket_and_cert(&self.ticket, "source_cert_pem", &self.source_cert_pem)?;
        match self.ticket_ttl_s {
            Some(t) if !(1..=Self::MAX_TICKET_TTL_S).contains(&t) => Err(InvalidField {
                field: "ticket_ttl_s",
                problem: format!("= {t} is out of range"),
                remedy: format!(
                    "give 1 to {} s (or leave it out for {})",
                    Self::MAX_TICKET_TTL_S,
                    Self::DEFAULT_TICKET_TTL_S
                ),
            }),
            _ => Ok(()),
        }
    }

    /// How long the ticket stays valid if the source never connects.
    pub fn ticket_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.ticket_ttl_s
                .unwrap_or(Self::DEFAULT_TICKET_TTL_S)
                .min(Self::MAX_TICKET_TTL_S),
        )
    }
}

/// The destination is ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncomingPrepared {
    /// LPAR number on the destination.
    pub number: LparNumber,
    /// Migration path endpoint to send to.
    pub migration_addr: SocketAddr,
    /// The destination HVM's certificate (PEM) to pin.
    pub cert_pem: String,
    /// Names the destination gives up to the source.
    pub exchange: NameExchange,
}

/// Asks the source to start sending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSend {
    /// Job id.
    pub job: String,
    /// LPAR on the source.
    pub lpar: LparNumber,
    /// One-time ticket (hex).
    pub ticket: String,
    /// Destination migration endpoint.
    pub dest_addr: SocketAddr,
    /// Destination certificate (PEM) to pin.
    pub dest_cert_pem: String,
    /// Tunables.
    pub options: MoveOptions,
    /// Names the source adopts when it lets go of the LPAR (kept with its record from the start,
    /// so the blades can finish a move between themselves when the manager is gone).
    #[serde(default)]
    pub exchange: NameExchange,
    /// A real move or a rehearsal's short transfer (counted apart in the blade's metrics).
    #[serde(default, skip_serializing_if = "MovePurpose::is_move")]
    pub purpose: MovePurpose,
}

/// Why the blades move memory: a real move, or a rehearsal that proves one and is then aborted
/// on purpose. The blades count rehearsals apart (`mode="rehearsal"` in their metrics), so a
/// night of rehearsals never reads as a night of rolled-back moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MovePurpose {
    /// A move meant to finish.
    #[default]
    Move,
    /// A rehearsal: checks, reservation and a short real transfer, then an abort.
    Rehearsal,
}

impl MovePurpose {
    /// Whether this is a real move (the default, left out of requests).
    pub fn is_move(&self) -> bool {
        *self == Self::Move
    }
}

/// Which side of a move an HVM plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sends the LPAR.
    Source,
    /// Receives it.
    Destination,
}

/// Where a move is, as one HVM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Destination prepared, nothing received yet.
    Prepared,
    /// Memory moving.
    Transferring,
    /// Source paused, destination holds everything paused: the manager decides.
    SwitchoverReady,
    /// Commit sent (source) / received (destination).
    Committed,
    /// Destination runs the LPAR.
    Resumed,
    /// Source let go of the LPAR.
    Released,
    /// Cancelled by the operator before the commit; the source runs on.
    Cancelled,
    /// Failed before the commit; the source runs on.
    Failed,
    /// Not committed after the switch-over; the source resumed, the destination scrubbed.
    Aborted,
    /// The HVM restarted during the move: only its durable record is left, the guest is gone.
    Interrupted,
}

impl Phase {
    /// Whether the move is over on this HVM.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Released | Self::Resumed | Self::Cancelled | Self::Failed | Self::Aborted
        )
    }

    /// Name used in the long-poll query (`?phase=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepared => "prepared",
            Self::Transferring => "transferring",
            Self::SwitchoverReady => "switchover-ready",
            Self::Committed => "committed",
            Self::Resumed => "resumed",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What an HVM holds of the moved guest right now: the manager's recovery picks the side that
/// holds the latest consistent copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestHold {
    /// Nothing (never had it, let it go, or lost it in a restart).
    #[default]
    Nothing,
    /// A partial copy (destination, memory still arriving).
    Partial,
    /// Every page and the vCPU state, paused (destination after Ready).
    Complete,
    /// The guest, paused (source during suspension and until released).
    Paused,
    /// The guest, running.
    Running,
}

/// An HVM's durable part in a move, kept in its state file (written before the step it names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// This HVM's role.
    pub role: Role,
    /// LPAR number on this HVM.
    pub lpar: LparNumber,
    /// How far this HVM got.
    pub phase: RecordPhase,
    /// Names the source adopts on release (known to the source from its commit on).
    #[serde(default)]
    pub exchange: Option<NameExchange>,
}

/// The durable steps of a move on one HVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordPhase {
    /// Source sending / destination prepared: nothing decided.
    Started,
    /// Destination: committed and resumed here (vFCs may still carry the migration WWPNs).
    Resumed,
    /// Source: the destination runs the LPAR; this HVM only has to let go.
    Committed,
    /// Destination: the source's switch-over lease lapsed before this HVM resumed the LPAR, and
    /// this HVM promised the source never to resume it (the commit point went the other way).
    /// The definition is gone; the record stays until the manager acknowledges it (abort).
    Fenced,
    /// Destination: resumed, and the blades finished the identity swap between themselves (the
    /// manager was gone); the record stays until the manager acknowledges it (swap).
    Swapped,
}

impl RecordPhase {
    /// Whether the blades settled the job between themselves: only the manager's
    /// acknowledgement is left, the LPAR is no longer migrating.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Fenced | Self::Swapped)
    }
}

/// How the blades settled a switch-over whose lease lapsed (the manager went silent while the
/// source was paused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Settlement {
    /// The lease lapsed; the source is asking the destination.
    Settling {
        /// How long the manager had been silent when the lease lapsed, ms.
        silent_ms: u64,
    },
    /// The destination cannot be reached: the source stays paused (two running copies are
    /// worse than a paused one) until it answers or the manager's recovery decides.
    DestinationUnreachable {
        /// Why the last attempt failed.
        why: String,
        /// Attempts so far.
        attempts: u32,
    },
    /// The destination had resumed the LPAR: the source let go, the blades swapped identities.
    Forward,
    /// The destination had not resumed it and fenced the job: the source resumed the guest.
    Backward,
}

/// Source: the commit, after the destination resumed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// Names the source adopts when it lets go (kept with its record).
    pub exchange: NameExchange,
}

/// A move as one HVM sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// Job id.
    pub job: String,
    /// This HVM's role.
    pub role: Role,
    /// LPAR number on this HVM.
    pub lpar: LparNumber,
    /// Phase.
    pub phase: Phase,
    /// Latest progress (source).
    pub progress: Option<Progress>,
    /// Final figures (source, once switch-over is ready).
    pub summary: Option<MoveSummary>,
    /// Why it failed.
    pub error: Option<EmgError>,
    /// Host monotonic time (ns) of the last heartbeat change the source saw before the pause.
    pub last_heartbeat_before_pause_ns: Option<u64>,
    /// Host monotonic time (ns) of the first heartbeat change the destination saw after resume.
    pub first_heartbeat_after_resume_ns: Option<u64>,
    /// Heartbeat counter at that moment.
    pub heartbeat_counter: Option<u64>,
    /// What this HVM holds of the guest now.
    #[serde(default)]
    pub holds: GuestHold,
    /// This HVM's durable record of the move (None once its part is done).
    #[serde(default)]
    pub record: Option<MigrationRecord>,
    /// Source: where the blades' own settlement of the switch-over stands (None while the
    /// manager's lease holds).
    #[serde(default)]
    pub settlement: Option<Settlement>,
}

impl MigrationStatus {
    /// A move at `phase` on this HVM, with no progress, figures or heartbeats yet.
    pub fn new(job: &str, role: Role, lpar: LparNumber, phase: Phase, holds: GuestHold) -> Self {
        Self {
            job: job.to_owned(),
            role,
            lpar,
            phase,
            progress: None,
            summary: None,
            error: None,
            last_heartbeat_before_pause_ns: None,
            first_heartbeat_after_resume_ns: None,
            heartbeat_counter: None,
            holds,
            record: None,
            settlement: None,
        }
    }
}

/// Extends a running move's timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendTimeout {
    /// Seconds to add.
    pub seconds: u64,
}

impl ExtendTimeout {
    /// Longest extension one request may add, seconds (a day; extend again for more).
    pub const MAX_S: u64 = 24 * 3600;

    /// Checks the extension's range.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if (1..=Self::MAX_S).contains(&self.seconds) {
            return Ok(());
        }
        Err(InvalidOption {
            field: "seconds",
            value: self.seconds.to_string(),
            allowed: format!("1 to {} s (extend again for more)", Self::MAX_S),
        })
    }
}

/// Changes a running move's bandwidth cap on its source (`POST /v1/migrations/{job}/bandwidth`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBandwidth {
    /// The new cap on migration-path bytes per second; `null` lifts it. Required: a body that
    /// forgot it must not lift a cap by accident.
    #[serde(deserialize_with = "Option::deserialize")]
    pub bandwidth_limit: Option<u64>,
}

impl SetBandwidth {
    /// Checks the cap's range (that of [`MoveOptions::bandwidth_limit`]).
    pub fn validate(&self) -> Result<(), InvalidOption> {
        match self.bandwidth_limit {
            Some(b) if !(MoveOptions::MIN_BANDWIDTH..=MoveOptions::MAX_BANDWIDTH).contains(&b) => {
                Err(InvalidOption {
                    field: "bandwidth_limit",
                    value: b.to_string(),
                    allowed: format!(
                        "{} to {} bytes/s, or null for none",
                        MoveOptions::MIN_BANDWIDTH,
                        MoveOptions::MAX_BANDWIDTH
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Tells the source what names it adopts when it releases the LPAR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Names from the destination.
    pub exchange: NameExchange,
}

/// Shutdown mode: defines the moved LPAR (deactivated) on the destination, keeping its names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdDefine {
    /// Job id.
    pub job: String,
    /// The LPAR as the source holds it.
    pub lpar: Lpar,
    /// LPAR number on the destination (None = youngest free).
    pub number: Option<LparNumber>,
}

impl ColdDefine {
    /// Checks the job id before anything is defined.
    pub fn check_fields(&self) -> Result<(), super::limits::InvalidField> {
        super::limits::check_job_id("job", &self.job)
    }
}

/// The destination defined the LPAR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColdDefined {
    /// LPAR number on the destination.
    pub number: LparNumber,
    /// Names the destination gives up to the source.
    pub exchange: NameExchange,
}
