//! The error catalogue: every message an operator can see, in one table.
//!
//! Messages keep the seed's shape, `EMG op1:op2:dc:(op3):MODULE:message`, so an operator who knows
//! the product recognises them, and each carries the action to take. The CLI, the management API
//! and the navigator all render errors from this table; no module writes its own operator message.
//!
//! Codes copied from the seed's chapter 6 keep their op1 values; codes for conditions the seed
//! has no message for use op1 values with `0F` in the sub-code byte (`0x00 00000000 0Fxx 0m`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The module that detected an error (the seed's fixed module names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Module {
    /// Migration Management Client (the manager's front end: CLI, navigator).
    #[serde(rename = "MMC")]
    Mmc,
    /// Migration Management Server (an HVM's management API).
    #[serde(rename = "MMS")]
    Mms,
    /// The MMS thread that executes a migration.
    #[serde(rename = "MMS Thread")]
    MmsThread,
    /// The LPAR Mover (the memory-transfer engine on the HVMs).
    #[serde(rename = "LPAR Mover")]
    LparMover,
    /// The recovery module.
    Recovery,
    /// The source HVM.
    #[serde(rename = "SrcHVM")]
    SrcHvm,
    /// The destination HVM.
    #[serde(rename = "DstHVM")]
    DstHvm,
}

impl Module {
    /// The fixed text shown in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mmc => "MMC",
            Self::Mms => "MMS",
            Self::MmsThread => "MMS Thread",
            Self::LparMover => "LPAR Mover",
            Self::Recovery => "Recovery",
            Self::SrcHvm => "SrcHVM",
            Self::DstHvm => "DstHVM",
        }
    }
}

/// Every condition with an operator message. The catalogue entry says the code, module, message
/// and action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Emg {
    /// The manager cannot reach an HVM's management API.
    ConnectionRefusedMms,
    /// A blade (HVM) is not known or not answering.
    BladeNotFound,
    /// Manager and HVM speak different API versions.
    VersionMismatch,
    /// A blade is held by another migration.
    BladeBusyMigration,
    /// A blade is held by another operation.
    BladeBusyOperation,
    /// Source and destination migration paths share an address.
    SameMigrationIp,
    /// Migration path not set on the source HVM.
    SourcePathMissing,
    /// Migration path not set on the destination HVM.
    DestinationPathMissing,
    /// The migration path collides with the management path.
    PathCollidesWithManagement,
    /// An LPAR is held by another operation.
    LparBusy,
    /// A Shutdown-mode move of a running LPAR.
    LparActivatedForShutdownMode,
    /// Not enough memory on the HVM.
    NotEnoughMemory,
    /// Not enough processors on the HVM.
    NotEnoughProcessors,
    /// No free vfcID.
    NotEnoughVfcIds,
    /// A live move of a deactivated LPAR.
    LparDeactivated,
    /// The operator cancelled.
    TerminatedByUser,
    /// USB attached to the LPAR.
    UsbAttached,
    /// Migration path broke during transfer (or could not be opened).
    MoverConnectionRefused,
    /// The LPAR Movers broke their protocol: a malformed frame or a message the state does not
    /// allow (not a connection problem: retrying over another path will not help).
    MoverProtocolError,
    /// The memory the destination received does not match the source's digest.
    MemoryDigestMismatch,
    /// The destination's LPAR Mover refused the move (ticket, protocol version, geometry).
    MoverRefused,
    /// Pre-copy did not converge before the timeout.
    MemoryWriteIntensive,
    /// The LPAR was left inconsistent by a broken migration.
    LparCorrupted,
    /// The HVM has WWNs pending rollback after a failed live move: it takes part in no live move
    /// until they are rolled back.
    MigrationWwnsInUse,
    /// An LPAR of that number does not exist.
    LparNotFound,
    /// An LPAR with that name exists already.
    DuplicateLparName,
    /// The LPAR number is taken.
    LparNumberInUse,
    /// Every LPAR number is in use.
    NoFreeLparNumber,
    /// A request named a NIC segment or FC port the blade does not have, or not in shared mode.
    DeviceNotAvailable,
    /// A WWPN or MAC is in use already.
    IdentityInUse,
    /// The request body or a field was malformed.
    InvalidRequest,
    /// A Migration Path Setting was refused: a field of a path is not valid (see
    /// `crate::paths::PathSettingError`).
    InvalidMigrationPathSetting,
    /// The request is not allowed in the LPAR's current status.
    InvalidLparState,
    /// The lease presented is not (or no longer) held.
    LeaseNotHeld,
    /// Authentication failed.
    Unauthorized,
    /// The HVM could not persist its state.
    StateNotSaved,
    /// A configuration file could not be restored.
    RestoreRejected,
    /// The guest OS did not shut down within the waiting time-out limit.
    ShutdownWaiting,
    /// Anything else inside an HVM.
    Internal,
    /// No route of that name in this API version.
    NoSuchRoute,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// The request body is larger than the HVM accepts.
    RequestTooLarge,
    // ---- Compatibility checks (the Migration Config Viewer, `crate::checks`). ----
    /// The LPAR is named `NO_NAME`.
    LparNameNoName,
    /// An LPAR of the same name exists on the destination HVM.
    DstSameLparName,
    /// The destination has fewer free processors than the LPAR has.
    DstNoFreeProcessors,
    /// The destination has less free memory than the LPAR has.
    DstNotEnoughMemory,
    /// The destination has no shared NIC segment matching one of the LPAR's vNICs.
    DstNoVnicDevice,
    /// The destination has no shared FC port matching one of the LPAR's vFCs.
    DstNoSharedFc,
    /// The destination has fewer free vfcIDs than the LPAR has vFCs.
    DstNoFreeVfcId,
    /// Source and destination blade models differ.
    BladeTypeMismatch,
    /// The LPAR uses dedicated NIC or FC ports.
    DedicatedDevices,
    /// The destination has no FC card in a slot the LPAR's vFCs use.
    FcCardMissing,
    /// Source and destination processors report different CPUIDs.
    CpuIdMismatch,
    /// The LPAR is blocked or corrupted (requires recovery, WWN rollback pending).
    LparCorruptedNotAccepted,
    /// The source migration path is unusable (speed, mode, address).
    InvalidMigrationPathSrc,
    /// The destination migration path is unusable (speed, mode, address).
    InvalidMigrationPathDst,
    /// Source and destination are the same blade.
    SameBlade,
    /// The blades have different numbers of physical processors.
    PhysicalProcessorsDiffer,
    /// EFI/BIOS versions incompatible for the mode.
    EfiBiosVersionMismatch,
    /// EFI/BIOS settings differ.
    EfiBiosSettingsMismatch,
    /// HVM firmware versions incompatible.
    HvmFirmwareMismatch,
    /// An HVM edition that cannot take part in a live move.
    HvmModelNotLive,
    /// HVM system time zones differ.
    TimeZoneMismatch,
    /// NTP servers differ.
    NtpServersMismatch,
    /// 8 or more FC ports for a live move.
    TooManyFcPorts,
    /// VF NICs in a live move.
    VfNicNotLive,
    /// A NIC or FC port the LPAR uses is not linked.
    PortNotLinked,
    /// An FC port changed state within the last 5 minutes.
    FcPortsUnstable,
    /// CPU over 80 % or a NIC port over 50 %.
    HighLoad,
    /// A requirement the manager could not check (data missing).
    NotChecked,
    /// Storage not checked: no storage array registered.
    StorageNotChecked,
    /// A migration WWPN is not in the host group of its WWPN.
    MigrationWwpnNotRegistered,
    /// A WWPN is in no host group of the registered arrays.
    WwpnNotInHostGroup,
    /// The cards in a slot differ between the blades.
    CardMismatch,
    /// The processor group asked for does not exist on the destination HVM.
    ProcessorGroupNotDefined,
    /// The processor group has fewer processors than the LPAR.
    ProcessorGroupTooSmall,
    /// A vFC's FC port is cabled to different array ports on the two blades.
    StoragePortsDiffer,
    /// A WWPN's host group on its cabled port presents no LU.
    BootLuUnreachable,
    /// The destination could not log the LPAR's vFCs in with their migration WWPNs.
    FcLoginTimeoutMigrationWwn,
}

/// One row of the catalogue.
#[derive(Debug)]
pub struct Entry {
    /// First operand.
    pub op1: u64,
    /// Second operand (supplementary information), 0 where the seed leaves it out.
    pub op2: u64,
    /// Third operand (reason).
    pub op3: u32,
    /// Detecting module.
    pub module: Module,
    /// Message as the operator reads it.
    pub message: &'static str,
    /// What to do.
    pub action: &'static str,
    /// HTTP status the management API answers with.
    pub http_status: u16,
}

impl Emg {
    /// The catalogue row of this condition.
    pub fn entry(self) -> &'static Entry {
        use Module::*;
        macro_rules! e {
            ($op1:expr, $op3:expr, $module:expr, $status:expr, $msg:expr, $action:expr) => {{
                const ENTRY: Entry = Entry {
                    op1: $op1,
                    op2: 0,
                    op3: $op3,
                    module: $module,
                    message: $msg,
                    action: $action,
                    http_status: $status,
                };
                &ENTRY
            }};
        }
        macro_rules! e2 {
            ($op1:expr, $op2:expr, $op3:expr, $module:expr, $status:expr, $msg:expr, $action:expr) => {{
                const ENTRY: Entry = Entry {
                    op1: $op1,
                    op2: $op2,
                    op3: $op3,
                    module: $module,
                    message: $msg,
                    action: $action,
                    http_status: $status,
                };
                &ENTRY
            }};
        }
        match self {
            Self::ConnectionRefusedMms => e!(
                0x0000_0000_0001_0001,
                0,
                Mmc,
                502,
                "Connection refused (MMC-MMS)",
                "Check that the HVM is up, that its management address and port in the profile are right, and that the manager can reach it; then retry."
            ),
            Self::BladeNotFound => e!(
                0x0000_0000_0005_0001,
                0,
                Mmc,
                404,
                "The specified blade is not found.",
                "Check that the blade exists in the profile, is up and running, and that its management address answers; then retry."
            ),
            Self::VersionMismatch => e!(
                0x0000_0000_0006_0001,
                0,
                Mmc,
                400,
                "The version isn't matched between MMC and MMS.",
                "Install the same lparmover version on the manager and the HVMs."
            ),
            Self::BladeBusyMigration => e!(
                0x0000_0002_0020_0002,
                1,
                Mms,
                409,
                "The specified blade is busy. Please wait until another migration is completed.",
                "Wait for completion of the preceding migration and then retry."
            ),
            Self::BladeBusyOperation => e!(
                0x0000_0004_0020_0002,
                1,
                Mms,
                409,
                "The specified blade is busy. Please wait until another operation is completed.",
                "Wait for completion of the ongoing operation and then retry."
            ),
            Self::SourcePathMissing => e!(
                0x0000_0003_00A0_0002,
                1,
                Mms,
                400,
                "Specified NIC was not found. (Src-Blade)",
                "Set a migration path on the source server blade properly and retry."
            ),
            Self::DestinationPathMissing => e!(
                0x0000_0003_00A5_0002,
                1,
                Mms,
                400,
                "Specified NIC was not found. (Dst-Blade)",
                "Check the setting of a migration path on the destination server blade and retry."
            ),
            Self::SameMigrationIp => e!(
                0x0000_0005_00B0_0002,
                1,
                Mms,
                400,
                "Can not assign the same IP for the source and the Destination.",
                "Set different IP addresses for the migration paths of the source and destination server blades."
            ),
            Self::PathCollidesWithManagement => e!(
                0x0000_0004_F00D_0003,
                1,
                MmsThread,
                400,
                "The specified Migration Path collides with the Management Path Settings.",
                "Use a shared NIC segment that is not the management path for migration, or give the migration path its own VLAN."
            ),
            Self::LparBusy => e!(
                0x0000_0000_F003_0003,
                0x101,
                MmsThread,
                409,
                "The specified LPAR is busy, please wait until another migration is completed.",
                "Wait until the other operation on this LPAR completes, then retry."
            ),
            Self::LparActivatedForShutdownMode => e!(
                0x0000_0000_F009_0003,
                1,
                MmsThread,
                409,
                "The MMS could not accept a migration with activated LPAR. Please shutdown the specified LPAR, and try again.",
                "Deactivate the specified LPAR (or ask for a remote shutdown) and retry the migration."
            ),
            Self::MoverConnectionRefused => e!(
                0x0000_0000_0030_0004,
                2,
                LparMover,
                502,
                "Connection refused (LPAR Mover-LPAR Mover)",
                "Check the connection between the source HVM and the destination HVM over the migration path, then retry."
            ),
            Self::MoverProtocolError => e!(
                0x0000_0000_0F60_0004,
                1,
                LparMover,
                502,
                "LPAR Migration was canceled. Protocol error between the LPAR Movers.",
                "The LPAR keeps running on the source. Check that both HVMs run the same firmware, then retry; if it fails the same way, collect the system logs of both HVMs."
            ),
            Self::MemoryDigestMismatch => e!(
                0x0000_0000_0F61_0004,
                1,
                LparMover,
                500,
                "LPAR Migration was canceled. The memory received by the destination does not match the source.",
                "The LPAR keeps running on the source and the destination was scrubbed. Retry the move; if it fails the same way, check the destination blade's memory and collect the system logs of both HVMs."
            ),
            Self::MoverRefused => e!(
                0x0000_0000_0F62_0004,
                1,
                LparMover,
                409,
                "The destination LPAR Mover refused the migration.",
                "Open the migration job again from the manager (a ticket is valid once) and check that the destination was prepared for this LPAR; the detail says why it refused."
            ),
            Self::NotEnoughMemory => e!(
                0x0000_0000_F00B_0003,
                1,
                MmsThread,
                409,
                "There is not enough memory to activate the specified LPAR.",
                "Free enough memory on the HVM (deactivate or shrink LPARs) and retry."
            ),
            Self::NotEnoughProcessors => e!(
                0x0000_0000_0F01_0003,
                1,
                MmsThread,
                409,
                "There are not enough processors to activate the specified LPAR.",
                "Free processors on the HVM or assign fewer processors to the LPAR, then retry."
            ),
            Self::NotEnoughVfcIds => e!(
                0x0000_0000_0F02_0003,
                1,
                MmsThread,
                409,
                "There is no free vfcID for the specified LPAR.",
                "Delete unused vFCs on the destination HVM or extend its vfcID range, then retry."
            ),
            Self::LparDeactivated => e!(
                0x0000_0000_F0A0_0003,
                1,
                MmsThread,
                409,
                "The specified LPAR is deactivated. Can not execute LPAR migration.",
                "Activate the LPAR and retry, or migrate it in Shutdown mode."
            ),
            Self::TerminatedByUser => e!(
                0x0000_0000_0030_0004,
                0x20,
                LparMover,
                409,
                "Terminated by user.",
                "None."
            ),
            Self::UsbAttached => e!(
                0x0000_0000_0030_0004,
                0x33,
                LparMover,
                409,
                "LPAR Migration was canceled. USB is attached to the specified LPAR.",
                "Detach the USB device and retry."
            ),
            Self::MemoryWriteIntensive => e!(
                0x0000_0000_0070_0004,
                0x40,
                LparMover,
                409,
                "LPAR Migration process was canceled. Memory write is intensive.",
                "Retry at a quieter time, allow throttling (auto-converge), raise the downtime limit, or extend the timeout."
            ),
            Self::LparCorrupted => e!(
                0x0000_0000_0F03_0006,
                1,
                Recovery,
                409,
                "The specified LPAR has corrupted in an LPAR migration, please try to recover the LPAR.",
                "Run `lparmover recover HVM/LPAR`, then retry."
            ),
            Self::MigrationWwnsInUse => e!(
                0x0000_0007_0020_0002,
                1,
                Mms,
                409,
                "LPAR Migration was canceled. Migration WWNs are already used.",
                "Roll back the other LPAR with the same Migration WWNs as the migrated LPAR: `lparmover rollback-wwn HVM/LPAR` (`lparmover rollback-wwn HVM --list` lists them), then retry."
            ),
            Self::LparNotFound => e!(
                0x0000_0000_0F04_0002,
                1,
                Mms,
                404,
                "The specified LPAR is not found.",
                "Check the LPAR number or name with `lparmover fleet` and retry."
            ),
            Self::DuplicateLparName => e!(
                0x0000_0000_0F05_0002,
                1,
                Mms,
                409,
                "An LPAR with the same name already exists on the HVM.",
                "Rename one of the LPARs (names are unique per HVM) and retry."
            ),
            Self::LparNumberInUse => e!(
                0x0000_0000_0F06_0002,
                1,
                Mms,
                409,
                "The specified LPAR number is already in use.",
                "Choose a free LPAR number or use Auto (the youngest free number)."
            ),
            Self::NoFreeLparNumber => e!(
                0x0000_0000_0F07_0002,
                1,
                Mms,
                409,
                "There is no free LPAR number on the HVM.",
                "Delete an unused LPAR on the HVM and retry."
            ),
            Self::DeviceNotAvailable => e!(
                0x0000_0000_0F08_0002,
                1,
                Mms,
                400,
                "The specified NIC segment or FC port is not available in shared mode on this blade.",
                "Assign only NIC segments and FC ports of cards installed on this blade in shared mode."
            ),
            Self::IdentityInUse => e!(
                0x0000_0000_0F09_0002,
                1,
                Mms,
                409,
                "The specified WWPN or MAC address is already in use on this HVM.",
                "Use another address; a WWPN or MAC must never be active twice."
            ),
            Self::InvalidRequest => e!(
                0x0000_0000_0F0A_0002,
                1,
                Mms,
                400,
                "The request is not valid.",
                "Correct the field named in the detail and retry; nothing was changed."
            ),
            Self::InvalidMigrationPathSetting => e!(
                0x0000_0000_0F0F_0002,
                1,
                Mms,
                400,
                "The migration path setting is not valid.",
                "Correct the path and field named in the detail (name, primary use, segment, IPv4 address, prefix, VLAN) and save again; the HVM kept its previous migration paths."
            ),
            Self::InvalidLparState => e!(
                0x0000_0000_0F0B_0002,
                1,
                Mms,
                409,
                "The operation is not possible in the LPAR's current status.",
                "Check the LPAR status with `lparmover lpar show` and retry when it allows the operation."
            ),
            Self::LeaseNotHeld => e!(
                0x0000_0000_0F0C_0002,
                1,
                Mms,
                409,
                "The lock lease presented is not held (it expired or was never granted).",
                "Take the lock again and retry; another operation may have started meanwhile."
            ),
            Self::Unauthorized => e!(
                0x0000_0000_0F0D_0002,
                1,
                Mms,
                401,
                "The request was not authenticated.",
                "Register the HVM again (its token in the profile is wrong or missing)."
            ),
            Self::StateNotSaved => e!(
                0x0000_0000_0008_0003,
                0xffff_fffd,
                MmsThread,
                507,
                "Internal error: the HVM could not save its configuration information.",
                "Free space on the HVM's state disk and retry; the running configuration is unchanged."
            ),
            Self::RestoreRejected => e!(
                0x0000_0000_0F0E_0002,
                1,
                Mms,
                400,
                "The configuration file cannot be restored.",
                "Use a backup taken from this HVM by `lparmover` and check it is complete."
            ),
            Self::ShutdownWaiting => e!(
                0x0000_0000_0F52_0003,
                1,
                MmsThread,
                409,
                "Remote shutdown of server has failed. (Process: Guest OS Shutdown, Shutdown waiting)",
                "The guest OS did not shut down within the Waiting TimeOut Limit; check why the guest takes so long, shut it down by hand or raise the limit (--shutdown-wait), then retry."
            ),
            Self::Internal => e!(
                0x0000_0000_0FFF_0002,
                0xffff_ffff,
                Mms,
                500,
                "Internal error in the HVM.",
                "See the HVM's system logs; retry, and report the detail if it persists."
            ),
            Self::NoSuchRoute => e!(
                0x0000_0000_0F12_0002,
                1,
                Mms,
                404,
                "The HVM has no such operation.",
                "Check the route against the lparmover::api docs of this version; nothing was changed."
            ),
            Self::MethodNotAllowed => e!(
                0x0000_0000_0F10_0002,
                1,
                Mms,
                405,
                "The request method is not allowed for this resource.",
                "Use the method the lparmover::api docs give for the route; nothing was changed."
            ),
            Self::RequestTooLarge => e!(
                0x0000_0000_0F11_0002,
                1,
                Mms,
                413,
                "The request is too large.",
                "Send a body of at most 1 MiB; nothing was changed."
            ),
            Self::LparNameNoName => e2!(
                0x1000_0000_0030_0002,
                0x0000_0000_000a_ffff,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because the name of the specified LPAR is 'NO_NAME'",
                "Rename the specified LPAR to a unique name in the system and then retry migration."
            ),
            Self::DstSameLparName => e2!(
                0x1000_0000_0030_0002,
                0x0000_0000_0001_ffff,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because the specified LPAR is the same LPAR name in the destination blade.",
                "Rename the source LPAR to a unique name in the system and then retry migration."
            ),
            Self::DstNoFreeProcessors => e2!(
                0x1000_0000_0030_0002,
                0x0000_0000_0002_ffff,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because there are not free processors in the destination blade.",
                "Reserve enough amount of free processors in the destination HVM and then retry migration."
            ),
            Self::DstNotEnoughMemory => e2!(
                0x1000_0000_0030_0002,
                0x0000_0000_0004_ffff,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because there is not enough memory in the destination blade.",
                "Reserve enough amount of free memory in the destination HVM and then retry migration."
            ),
            Self::DstNoVnicDevice => e2!(
                0x3000_0000_0030_0002,
                0x0000_0000_0001_0000,
                1,
                Mms,
                409,
                "There is not enough VNIC device to define an LPAR.",
                "Inspect the physical configuration of NIC (LAN adapter) at the destination, reconfigure it to meet that of the source, and then retry migration."
            ),
            Self::DstNoSharedFc => e!(
                0x4000_0000_0030_0002,
                1,
                Mms,
                409,
                "The destination blade does not have an installed shared FC device to define an LPAR.",
                "Check if the destination HVM has a physically installed FC that corresponds to the FC port allocated to the source LPAR."
            ),
            Self::DstNoFreeVfcId => e!(
                0x4000_0000_0030_0002,
                1,
                Mms,
                409,
                "There is not enough vfcID on the shared FC device to define an LPAR.",
                "Check if the FC port at the destination has a free vfcID."
            ),
            Self::BladeTypeMismatch => e!(
                0x0000_1003_0080_0002,
                1,
                Mms,
                409,
                "The type of blade mismatch between the source and the destination.",
                "Make the blade type consistent between the source and the destination."
            ),
            Self::DedicatedDevices => e!(
                0x0000_1004_0080_0002,
                1,
                Mms,
                409,
                "The source LPAR has some dedicated devices.",
                "Change the device scheduling mode to shared mode and retry migration. If necessary, restore the device scheduling mode to dedicated mode after migration."
            ),
            Self::FcCardMissing => e!(
                0x0000_1007_0080_0002,
                1,
                Mms,
                409,
                "The MMS could not attach the shared FC in the destination blade because there is not FC Card on the slot, which is on the same location in the source blade, in the destination blade.",
                "Make the device configuration consistent between the source and the destination."
            ),
            Self::CpuIdMismatch => e!(
                0x0000_100E_0080_0002,
                1,
                Mms,
                409,
                "CPUIDs are different.",
                "Check the server blade model and retry."
            ),
            Self::LparCorruptedNotAccepted => e!(
                0x0000_2002_0080_0002,
                1,
                Mms,
                409,
                "The MMS could not accept a migration with a corrupted LPAR.",
                "Inspect the status of the LPAR and, if blocked, take recovery actions on the server blade (HVM)."
            ),
            Self::InvalidMigrationPathSrc => e!(
                0x0000_0001_00A0_0002,
                1,
                Mms,
                400,
                "Invalid Migration Path was Specified (Src-Blade)",
                "Check the setting of a migration path for the source HVM: a shared NIC segment of at least 1 Gbit/s with a unicast IPv4 address."
            ),
            Self::InvalidMigrationPathDst => e!(
                0x0000_0001_00A5_0002,
                1,
                Mms,
                400,
                "Invalid Migration Path was Specified (Dst-Blade)",
                "Check the setting of a migration path for the destination HVM: a shared NIC segment of at least 1 Gbit/s with a unicast IPv4 address."
            ),
            Self::SameBlade => e!(
                0x0000_0000_0F40_0001,
                1,
                Mmc,
                409,
                "The source and destination server blades are the same.",
                "Choose a destination HVM on another server blade; an LPAR cannot migrate within one blade."
            ),
            Self::PhysicalProcessorsDiffer => e!(
                0x0000_0000_0F41_0001,
                1,
                Mmc,
                409,
                "The number of physical processors differs between the source and destination server blades.",
                "Choose a destination server blade with the same number of physical processors."
            ),
            Self::EfiBiosVersionMismatch => e!(
                0x0000_0000_0F42_0001,
                1,
                Mmc,
                409,
                "The EFI/BIOS versions of the source and destination server blades are not compatible for this migration mode.",
                "Update the EFI/BIOS so both blades run the same version (Concurrent Maintenance) or a compatible major version (Shutdown), or migrate in Shutdown mode, then retry."
            ),
            Self::EfiBiosSettingsMismatch => e!(
                0x0000_0000_0F43_0001,
                1,
                Mmc,
                409,
                "The EFI/BIOS settings differ between the source and destination server blades.",
                "Make the EFI/BIOS settings of both server blades the same, then retry."
            ),
            Self::HvmFirmwareMismatch => e!(
                0x0000_0000_0F44_0001,
                1,
                Mmc,
                409,
                "The HVM firmware versions of the source and destination HVMs are not compatible.",
                "Update the HVM firmware so both HVMs run the same version, then retry."
            ),
            Self::HvmModelNotLive => e!(
                0x0000_0000_0F45_0001,
                1,
                Mmc,
                409,
                "The HVM model does not support LPAR migration in Concurrent Maintenance mode.",
                "Use HVMs of model Advanced or Enterprise on both blades, or migrate in Shutdown mode."
            ),
            Self::TimeZoneMismatch => e!(
                0x0000_0000_0F46_0001,
                1,
                Mmc,
                409,
                "The HVM system time zones of the source and destination HVMs differ.",
                "Set the same HVM system time zone on both HVMs, then retry."
            ),
            Self::NtpServersMismatch => e!(
                0x0000_0000_0F47_0001,
                1,
                Mmc,
                409,
                "The source and destination HVMs do not synchronize with the same NTP servers.",
                "Set the same NTP servers on both HVMs (the management module is recommended), then retry."
            ),
            Self::TooManyFcPorts => e!(
                0x0000_0000_0F48_0001,
                1,
                Mmc,
                409,
                "8 or more FC HBA ports are assigned to the LPAR; Concurrent Maintenance mode needs fewer than 8.",
                "Assign fewer than 8 FC ports to the LPAR, or migrate in Shutdown mode."
            ),
            Self::VfNicNotLive => e!(
                0x0000_0000_0F49_0001,
                1,
                Mmc,
                409,
                "VF NICs are assigned to the LPAR; Concurrent Maintenance mode moves only NIC ports in shared mode.",
                "Remove the VF NICs from the LPAR, or migrate in Shutdown mode."
            ),
            Self::PortNotLinked => e!(
                0x0000_0000_0F4A_0001,
                1,
                Mmc,
                409,
                "A NIC or FC HBA port used by the LPAR is not linked.",
                "Check the network and FC cabling of the blade, link the NIC and FC HBA ports, then retry."
            ),
            Self::FcPortsUnstable => e!(
                0x0000_0000_0F4B_0001,
                1,
                Mmc,
                409,
                "The state of an FC HBA port changed within the last 5 minutes.",
                "Wait until no FC HBA port has changed state for 5 minutes (see the HVM system log), then retry."
            ),
            Self::HighLoad => e!(
                0x0000_0000_0F4C_0001,
                1,
                Mmc,
                409,
                "The CPU or NIC load on an HVM is high; a migration in Concurrent Maintenance mode may time out.",
                "Migrate at a quieter time or reduce the load (CPU over 80 %, NIC ports over 50 % of their bandwidth)."
            ),
            Self::NotChecked => e!(
                0x0000_0000_0F4D_0001,
                1,
                Mmc,
                409,
                "This requirement could not be checked.",
                "Confirm the requirement by hand, or make the missing information available, then run the check again."
            ),
            Self::StorageNotChecked => e!(
                0x0000_0000_0F4E_0001,
                1,
                Mmc,
                409,
                "Not checked: no storage array registered.",
                "Register the storage array with the manager, or confirm by hand that both blades reach the boot LU through the same ports of the same array and that each migration WWPN is in the host group of its WWPN."
            ),
            Self::MigrationWwpnNotRegistered => e!(
                0x0000_0000_0F4F_0001,
                1,
                Mmc,
                409,
                "A migration WWPN is not registered to the same host group as its WWPN.",
                "Register the migration WWPN (created with the same vfcID) to the host group of the WWPN, then retry."
            ),
            Self::WwpnNotInHostGroup => e!(
                0x0000_0000_0F50_0001,
                1,
                Mmc,
                409,
                "A WWPN of the LPAR is not registered to any host group of the storage array.",
                "Register the WWPN to the host group of the LPAR's boot LU, then retry."
            ),
            Self::CardMismatch => e!(
                0x0000_0000_0F51_0001,
                1,
                Mmc,
                409,
                "The NIC or FC HBA cards in a slot differ between the source and destination server blades.",
                "Install the same card (model and number of ports) in the same slot of both server blades."
            ),
            Self::ProcessorGroupNotDefined => e2!(
                0x7000_0001_0030_0002,
                0x0000_0000_0000_0001,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because the specified processor group has not been defined.",
                "Check the setting of processor groups on the destination HVM (or choose a group it defines) and retry."
            ),
            Self::ProcessorGroupTooSmall => e!(
                0x0000_0000_0F52_0002,
                1,
                Mms,
                409,
                "The MMS could not define an LPAR because the specified processor group has fewer processors than the LPAR.",
                "Choose a processor group with at least as many processors as the LPAR has, add processors to the group on the destination HVM, or give the LPAR fewer processors; then retry."
            ),
            Self::StoragePortsDiffer => e!(
                0x0000_0000_0F53_0001,
                1,
                Mmc,
                409,
                "The FC cables from the source and destination server blades are not connected to the same ports on the same storage device.",
                "Connect the FC port on both blades to the same array port through the FC switch modules, or choose a destination blade cabled like the source."
            ),
            Self::BootLuUnreachable => e!(
                0x0000_0000_0F54_0001,
                1,
                Mmc,
                409,
                "The boot LU cannot be accessed: the host group of the WWPN presents no LU.",
                "Map the LPAR's boot LU to its host group on the array (or register the WWPN to the host group that presents it), then retry."
            ),
            Self::FcLoginTimeoutMigrationWwn => e!(
                0x0000_0007_0021_0002,
                1,
                DstHvm,
                409,
                "LPAR Migration was canceled. FC Login timeout (Migration WWN).",
                "Register the LPAR's migration WWPNs to the host groups of its WWPNs (`lparmover wwn register-migration HVM/LPAR`), check that the destination's FC ports reach the same array ports and that the array answers, then execute the LPAR migration again."
            ),
        }
    }
}

/// An error as the operator sees it: catalogue row plus the detail of this occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmgError {
    /// Which catalogue row.
    pub kind: Emg,
    /// What exactly happened (names, values).
    pub detail: String,
}

impl EmgError {
    /// An error of `kind` with `detail`.
    pub fn new(kind: Emg, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The suggested action.
    pub fn action(&self) -> &'static str {
        self.kind.entry().action
    }

    /// The seed-shaped code line, e.g.
    /// `EMG0000000200200002:0000000000000000:0000000000000000:(1):MMS:The specified blade is busy…`.
    pub fn code_line(&self) -> String {
        let e = self.kind.entry();
        format!(
            "EMG{:016x}:{:016x}:{:016x}:({:x}):{}:{}",
            e.op1,
            e.op2,
            0,
            e.op3,
            e.module.label(),
            e.message
        )
    }
}

impl fmt::Display for EmgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code_line())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, " Action: {}", self.action())
    }
}

impl std::error::Error for EmgError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_line_has_the_seed_shape() {
        let err = EmgError::new(Emg::BladeBusyMigration, "held by job 7");
        let line = err.code_line();
        assert!(line.starts_with("EMG0000000200200002:"), "{line}");
        assert!(
            line.contains(":(1):MMS:The specified blade is busy"),
            "{line}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("held by job 7") && shown.contains("Action: Wait"),
            "{shown}"
        );
    }

    #[test]
    fn memory_write_intensive_keeps_the_seed_message() {
        let e = Emg::MemoryWriteIntensive.entry();
        assert_eq!(
            e.message,
            "LPAR Migration process was canceled. Memory write is intensive."
        );
        assert_eq!(e.module, Module::LparMover);
    }

    #[test]
    fn migration_wwns_in_use_keeps_the_seed_message_and_names_the_rollback() {
        let e = Emg::MigrationWwnsInUse.entry();
        assert_eq!(
            e.message,
            "LPAR Migration was canceled. Migration WWNs are already used."
        );
        assert_eq!(e.op1, 0x0000_0007_0020_0002);
        assert!(e.action.contains("lparmover rollback-wwn HVM/LPAR"));
    }

    #[test]
    fn kinds_round_trip_as_json() {
        let err = EmgError::new(Emg::LparBusy, "x");
        let json = serde_json::to_string(&err).unwrap();
        assert!(json.contains("\"lpar-busy\""));
        assert_eq!(serde_json::from_str::<EmgError>(&json).unwrap(), err);
    }
}
