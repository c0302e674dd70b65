//! The domain model: chassis, blades, HVMs, LPARs and their identities.

pub mod blade;
pub mod fleet;
pub mod ids;
pub mod lpar;
pub mod mode;
pub mod storage;
pub mod workload;

pub use blade::{
    Blade, CardKind, CardPort, Chassis, EfiBios, HvmConfig, HvmModel, ManagementPath,
    MigrationPath, PciCard, PortMode, ProcessorGroup,
};
pub use fleet::{Fleet, FleetBlade, FleetError, FleetNetwork};
pub use ids::{
    ArrayName, ArrayPort, FcPort, FirmwareVersion, HostGroupNumber, InvalidId, LparName,
    LparNumber, MacAddr, NicSegment, StorageCable, VfcId, VnicSystemNo, Wwnn, Wwpn,
};
pub use lpar::{Lpar, LparRequest, LparStatus, ProcessorMode, Processors, Vfc, Vnic};
pub use mode::Mode;
pub use storage::{ArrayController, ArraySecurity, SecurityMode, StorageArray};
pub use workload::{GuestBackend, GuestSpec, Workload, WorkloadPatch};
