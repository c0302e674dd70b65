//! Logical partitions: configuration, identity (MACs, WWNs) and status.

use serde::{Deserialize, Serialize};

use super::ids::{FcPort, LparName, LparNumber, MacAddr, NicSegment, VfcId, Wwnn, Wwpn};
use super::workload::Workload;

/// Where an LPAR is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LparStatus {
    /// Defined, not running.
    Deactivated,
    /// Running its guest.
    Activated,
    /// Taking part in a migration (source or destination).
    Migrating,
    /// A migration broke off and the LPAR's state could not be settled automatically; it cannot
    /// be activated until recovered.
    RequiresRecovery,
    /// Blocked by an operation on the HVM (operation deterrence).
    Blocked,
    /// A failed live move left WWNs to roll back.
    WwnRollbackPending,
}

impl LparStatus {
    /// Text shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            Self::Deactivated => "Deactivated",
            Self::Activated => "Activated",
            Self::Migrating => "Migrating",
            Self::RequiresRecovery => "Requires recovery",
            Self::Blocked => "Blocked",
            Self::WwnRollbackPending => "WWN rollback pending",
        }
    }
}

/// Shared or dedicated processors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessorMode {
    /// Time-shared physical processors, weighted by the service ratio.
    Shared,
    /// Physical processors owned by this LPAR.
    Dedicated,
}

/// Processors of an LPAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processors {
    /// Shared or dedicated.
    pub mode: ProcessorMode,
    /// Number of logical processors (vCPUs).
    pub count: u32,
    /// Service ratio for shared mode (1–999).
    #[serde(default = "default_service_ratio")]
    pub service_ratio: u16,
    /// Processor group the LPAR runs in (0 = default group).
    #[serde(default)]
    pub group: u8,
}

fn default_service_ratio() -> u16 {
    100
}

/// VLAN handling of a vNIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Vlan {
    /// Untagged frames on one VLAN.
    Untag { id: u16 },
    /// Tagged frames for the listed VLANs.
    Tag { ids: Vec<u16> },
    /// No VLAN set.
    Undef,
}

/// A virtual NIC on a shared NIC segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vnic {
    /// Segment of the shared NIC port it sits on.
    pub segment: NicSegment,
    /// VLAN mode.
    pub vlan: Vlan,
    /// Logical MAC.
    pub mac: MacAddr,
}

/// A virtual FC HBA port on a shared FC port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vfc {
    /// Shared FC port.
    pub port: FcPort,
    /// vfcID the names were generated from.
    pub vfc_id: VfcId,
    /// Port name the storage sees.
    pub wwpn: Wwpn,
    /// Node name.
    pub wwnn: Wwnn,
    /// The second port name, generated from the same vfcID, that the destination logs in with
    /// during a live move.
    pub migration_wwpn: Wwpn,
}

/// Generated names of the vFC with `id` from an HVM's WWN pool: four names per vfcID,
/// `pool + 4·id` (WWPN), `+1` (WWNN), `+2` (migration WWPN).
pub fn vfc_names(pool: Wwpn, id: VfcId) -> Result<(Wwpn, Wwnn, Wwpn), super::ids::InvalidId> {
    let base = u64::from(id.get()) * 4;
    let wwpn = pool.offset(base)?;
    let wwnn = Wwnn::new(pool.offset(base + 1)?.get())?;
    let migration = pool.offset(base + 2)?;
    Ok((wwpn, wwnn, migration))
}

/// USB device state of the LPAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsbState {
    /// No USB device attached (required for a live move).
    #[default]
    Detached,
    /// The blade's USB device is attached to this LPAR.
    Attached,
}

/// LPAR options that move with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LparOptions {
    /// Order in which the HVM activates LPARs at start (None = not automatically).
    pub auto_activation_order: Option<u8>,
    /// Idle detection.
    pub idle_detection: bool,
    /// Auto clear on guest failure.
    pub auto_clear: bool,
    /// Processor capping.
    pub processor_capping: bool,
    /// Pre-boot firmware selection.
    pub pre_boot_firmware: Option<String>,
}

/// A defined LPAR as the HVM holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lpar {
    /// LPAR number on its HVM.
    pub number: LparNumber,
    /// Name, unique on its HVM.
    pub name: LparName,
    /// Status.
    pub status: LparStatus,
    /// Processors.
    pub processors: Processors,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual NICs.
    pub vnics: Vec<Vnic>,
    /// Virtual FC HBA ports.
    pub vfcs: Vec<Vfc>,
    /// USB state.
    #[serde(default)]
    pub usb: UsbState,
    /// Options.
    #[serde(default)]
    pub options: LparOptions,
    /// What the guest does when activated.
    #[serde(default)]
    pub workload: Workload,
}

/// A vNIC as an operator asks for it; the HVM derives the MAC unless one is given (a migrating LPAR
/// brings its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VnicRequest {
    /// Segment.
    pub segment: NicSegment,
    /// VLAN mode (default: undefined).
    #[serde(default = "default_vlan")]
    pub vlan: Vlan,
    /// MAC to keep, if any.
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

fn default_vlan() -> Vlan {
    Vlan::Undef
}

/// A vFC as an operator asks for it; the HVM picks a free vfcID and generates the names unless
/// given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfcRequest {
    /// Shared FC port.
    pub port: FcPort,
    /// vfcID to use (None = the youngest free one).
    #[serde(default)]
    pub vfc_id: Option<VfcId>,
    /// Names to keep (a migrating LPAR brings its own): WWPN, WWNN, migration WWPN.
    #[serde(default)]
    pub names: Option<(Wwpn, Wwnn, Wwpn)>,
}

/// A request to define an LPAR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LparRequest {
    /// Number to use (None = the youngest free number, the seed's "Auto").
    #[serde(default)]
    pub number: Option<LparNumber>,
    /// Name.
    pub name: LparName,
    /// Processors.
    pub processors: Processors,
    /// Memory in MiB (a multiple of 2).
    pub memory_mib: u64,
    /// vNICs.
    #[serde(default)]
    pub vnics: Vec<VnicRequest>,
    /// vFCs.
    #[serde(default)]
    pub vfcs: Vec<VfcRequest>,
    /// USB state.
    #[serde(default)]
    pub usb: UsbState,
    /// Options.
    #[serde(default)]
    pub options: LparOptions,
    /// Workload knobs.
    #[serde(default)]
    pub workload: Workload,
    /// Activate right after defining.
    #[serde(default)]
    pub activate: bool,
}
