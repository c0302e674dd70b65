//! Request and response bodies of the HVM management API (`/v1/…`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    Blade, CardKind, GuestBackend, Lpar, LparNumber, ManagementPath, MigrationPath,
};
use crate::partition::Heartbeat;

/// Version of the management API this library speaks; every route starts with `/{API_VERSION}/`.
pub const API_VERSION: &str = "v1";

/// Header carrying a lock lease id on mutating requests.
pub const LEASE_HEADER: &str = "x-lparmover-lease";

/// Totals and free amounts of what an HVM gives to LPARs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Physical processors.
    pub processors_total: u32,
    /// Processors not used by activated (or reserved) LPARs' dedicated/shared demand.
    pub processors_free: u32,
    /// Memory in MiB.
    pub memory_total_mib: u64,
    /// Memory not used by activated (or reserved) LPARs.
    pub memory_free_mib: u64,
    /// vfcIDs not assigned to any LPAR.
    pub vfc_ids_free: u32,
    /// LPAR numbers not in use.
    pub lpar_numbers_free: u32,
}

/// A digest of the guest memory the workload never writes after activation (the pages above
/// its working set): equal before and after a move, and after any fault, when memory arrived
/// intact (`GET /v1/lpars/{n}/memory-digest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryDigestView {
    /// The LPAR.
    pub lpar: LparNumber,
    /// First page digested.
    pub first_page: u64,
    /// Pages digested (through the end of guest memory).
    pub pages: u64,
    /// BLAKE3 of those pages, in hex.
    pub blake3: String,
}

/// What an activated LPAR's guest is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestRuntime {
    /// Which implementation runs it.
    pub backend: GuestBackend,
    /// Latest heartbeat.
    pub heartbeat: Heartbeat,
    /// Dirty rate the guest achieved recently, MB/s.
    pub achieved_dirty_mbps: f64,
    /// Pages the guest wrote since it first started, by its own counters (they travel with its
    /// memory, so a destination's count continues the source's).
    #[serde(default)]
    pub guest_writes: u64,
}

/// Where a WWPN's fabric login stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum FabricLoginState {
    /// The array has it logged in through this blade.
    LoggedIn,
    /// Another vFC still holds it (a switch-over in progress); tried again shortly.
    Waiting {
        /// Who holds it.
        reason: String,
    },
    /// The array refused it (e.g. not in a host group of the port).
    Refused {
        /// The array's message.
        reason: String,
    },
    /// The array cannot be asked: the "WWN unknown" state of table 7-2.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl FabricLoginState {
    /// One line for tables and logs.
    pub fn label(&self) -> String {
        match self {
            Self::LoggedIn => "logged in".to_owned(),
            Self::Waiting { reason } => format!("waiting: {reason}"),
            Self::Refused { reason } => format!("refused: {reason}"),
            Self::Unknown { reason } => format!("WWN unknown: {reason}"),
        }
    }
}

/// One WWPN's fabric login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricState {
    /// The WWPN.
    pub wwpn: crate::model::Wwpn,
    /// Where it stands.
    pub state: FabricLoginState,
}

/// An LPAR with what its guest is doing right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LparView {
    /// Configuration and status.
    #[serde(flatten)]
    pub lpar: Lpar,
    /// Present while the guest runs.
    pub runtime: Option<GuestRuntime>,
    /// WWPNs its vFCs have logged in to the fabric with right now (the migration WWPNs while it
    /// is an incoming destination of a live move).
    #[serde(default)]
    pub fc_logins: Vec<crate::model::Wwpn>,
    /// What the storage arrays' fabric says about each WWPN of `fc_logins` whose FC port is
    /// cabled to an array the blade reaches (empty where no port reaches one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fabric: Vec<FabricState>,
    /// A failed live move left WWNs of this LPAR to roll back (status shown as
    /// [`crate::model::LparStatus::WwnRollbackPending`] by [`Self::shown_status`]).
    #[serde(default)]
    pub wwn_rollback_pending: bool,
}

impl LparView {
    /// The status operators see: the LPAR's own, or "WWN rollback pending" while a mark is on it.
    pub fn shown_status(&self) -> crate::model::LparStatus {
        if self.wwn_rollback_pending {
            crate::model::LparStatus::WwnRollbackPending
        } else {
            self.lpar.status
        }
    }
}

/// Everything about one blade and its HVM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// API version the HVM speaks.
    pub api_version: String,
    /// Hardware and HVM configuration.
    pub blade: Blade,
    /// Resources.
    pub resources: Resources,
    /// LPARs by number.
    pub lpars: Vec<LparView>,
    /// When the HVM process started.
    pub started_at: DateTime<Utc>,
    /// Guest backend this HVM uses for `auto` LPARs.
    pub guest_backend: GuestBackend,
    /// WWN rollback marks on this HVM (it refuses live moves while any is left).
    #[serde(default)]
    pub wwn_rollbacks: Vec<super::WwnRollback>,
}

pub use lpm_formats::backup::HvmConfigDoc;

/// What a lock holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "lpar")]
pub enum LockTarget {
    /// The whole blade (every LPAR on it).
    Blade,
    /// One LPAR.
    Lpar(LparNumber),
}

/// A request for a lock lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    /// What to lock.
    pub target: LockTarget,
    /// Who asks (manager instance, navigator, policy run).
    pub owner: String,
    /// Why (job id, operation), shown to whoever finds it busy.
    pub purpose: String,
    /// Lease time in seconds; the holder renews before it runs out.
    pub ttl_secs: u64,
}

impl LockRequest {
    /// Checks the owner's and the purpose's lengths (the lease time is checked by the HVM's
    /// lock table, which knows its limit).
    pub fn check_fields(&self) -> Result<(), super::limits::InvalidField> {
        use super::limits::{MAX_LABEL_LEN, check_len};
        check_len("owner", &self.owner, MAX_LABEL_LEN, true)?;
        check_len("purpose", &self.purpose, MAX_LABEL_LEN, false)
    }
}

/// A granted lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease id, presented in [`LEASE_HEADER`] and used to renew or release.
    pub id: String,
    /// What it holds.
    pub target: LockTarget,
    /// Holder.
    pub owner: String,
    /// Why.
    pub purpose: String,
    /// When it runs out unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Severity of a system log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Informational.
    Info,
    /// Something to look at.
    Warning,
    /// Something failed.
    Error,
}

/// One HVM system log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Increasing sequence number (survives restarts).
    pub seq: u64,
    /// When.
    pub time: DateTime<Utc>,
    /// Severity.
    pub level: LogLevel,
    /// Area: `lpar`, `config`, `lock`, `fc-port`, `migration`, `hvm`.
    pub area: String,
    /// Text.
    pub message: String,
}

/// CPU and NIC load of a blade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadFigures {
    /// Processor utilisation over the last seconds, percent.
    pub cpu_percent: f64,
    /// Utilisation per NIC segment, percent of link speed.
    pub nic_percent: BTreeMap<String, f64>,
}

/// Live change of an LPAR's workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadUpdate {
    /// The knobs to change (the dirty rate applies to a running guest at once, the rest at the
    /// next activation); knobs left out keep their value.
    pub workload: crate::model::WorkloadPatch,
}

/// Link state of a physical NIC or FC HBA port, as the HVM's system log names them (table 5-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Link up and usable.
    Linked,
    /// Link down.
    Down,
    /// Isolated after a PCI Express error.
    Isolated,
    /// Machine-check interrupt on the port.
    Error,
    /// Hardware error on the card.
    FatalError,
}

impl LinkState {
    /// Text shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            Self::Linked => "Linked",
            Self::Down => "Down",
            Self::Isolated => "Isolated",
            Self::Error => "Error",
            Self::FatalError => "Fatal error",
        }
    }
}

/// The state of one physical port and when it last changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// NIC or FC HBA.
    pub kind: CardKind,
    /// PCI slot of the card.
    pub slot: u8,
    /// Port number on the card.
    pub port: u8,
    /// Current state.
    pub state: LinkState,
    /// When the port entered this state (the HVM's start for a link that came up at boot).
    pub since: DateTime<Utc>,
    /// State before the last change; `None` when the last change was the link-up at HVM start.
    #[serde(default)]
    pub previous: Option<LinkState>,
}

/// Link states of every physical port of a blade (`GET /v1/ports`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStates {
    /// When the HVM answered (its clock).
    pub taken_at: DateTime<Utc>,
    /// Every NIC and FC HBA port.
    pub ports: Vec<PortStatus>,
}

impl PortStates {
    /// The state of port `port` of the card in `slot`, if the blade has it.
    pub fn port(&self, kind: CardKind, slot: u8, port: u8) -> Option<&PortStatus> {
        self.ports
            .iter()
            .find(|p| p.kind == kind && p.slot == slot && p.port == port)
    }
}

/// An HVM's migration paths (`GET /v1/migration-paths`, and the answer of a `PUT`): what the
/// Migration Path Setting window shows for the HVM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationPaths {
    /// HVM name.
    pub hvm: String,
    /// The management path a migration path must not collide with.
    pub management: ManagementPath,
    /// The paths in the HVM's order; one of a non-empty list is primary.
    pub paths: Vec<MigrationPath>,
    /// Where the HVM's migration endpoint listens right now, when it has bound one (it binds on
    /// the primary path at the first incoming move and rebinds when the primary path changes).
    #[serde(default)]
    pub listening: Option<std::net::SocketAddr>,
}

impl MigrationPaths {
    /// The primary path, if any.
    pub fn primary(&self) -> Option<&MigrationPath> {
        self.paths.iter().find(|p| p.primary)
    }
}

/// `PUT /v1/migration-paths`: the HVM's new list, replacing the old one as a whole. The HVM
/// validates every path ([`crate::paths::validate`]) before it writes anything, and refuses
/// while a migration runs on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMigrationPaths {
    /// The new list.
    pub paths: Vec<MigrationPath>,
}
