//! Chassis, server blades, their cards, and the HVM firmware running on them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::ids::{FcPort, FirmwareVersion, NicSegment, VfcId, VnicSystemNo, Wwpn};

/// A chassis holding blades in numbered slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chassis {
    /// Chassis identifier, unique in a fleet.
    pub id: String,
    /// Chassis model, e.g. `CB 2500`.
    #[serde(default)]
    pub model: String,
}

/// EFI/BIOS firmware of a blade: version and the settings that matter for migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfiBios {
    /// Version, e.g. `10-46`.
    pub version: FirmwareVersion,
    /// Settings by name (hyper-threading, power profile, …).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// What kind of I/O card sits in a PCI slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardKind {
    /// Network interface card.
    Nic,
    /// Fibre Channel host bus adapter.
    FcHba,
}

/// How the HVM assigns a physical port to LPARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    /// Shared between LPARs through virtual NICs / HBAs (the only mode a migration can move).
    Shared,
    /// Dedicated to one LPAR.
    Dedicated,
    /// SR-IOV virtual functions (VF NICs).
    Vf,
}

/// One port of a card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardPort {
    /// Port number on the card (0-based).
    pub port: u8,
    /// Assignment mode.
    pub mode: PortMode,
    /// Link speed in Mbit/s.
    pub speed_mbps: u32,
    /// FC ports: the storage array port the cable goes to (through the FC switch module), as
    /// `ARRAY:PORT`; none when the port reaches no registered array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<super::StorageCable>,
}

/// A NIC or FC HBA card in a PCI slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciCard {
    /// PCI slot number.
    pub slot: u8,
    /// NIC or FC HBA.
    pub kind: CardKind,
    /// Card model, e.g. `Emulex 10Gb 4-port` or `Hitachi 8Gb FC 2-port`.
    pub model: String,
    /// Its ports.
    pub ports: Vec<CardPort>,
}

/// HVM edition; Concurrent Maintenance needs Advanced or Enterprise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HvmModel {
    /// Entry edition.
    Essential,
    /// Mid edition.
    Advanced,
    /// Full edition.
    Enterprise,
}

impl HvmModel {
    /// Whether this edition can take part in a live (Concurrent Maintenance) move.
    pub fn supports_live_migration(self) -> bool {
        matches!(self, Self::Advanced | Self::Enterprise)
    }
}

/// The management path: where the manager reaches the HVM's management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementPath {
    /// IPv4 address of the HVM's management interface.
    pub ip: Ipv4Addr,
    /// TCP port of the HTTPS API; 0 lets the HVM pick a free one (it then reports it).
    #[serde(default)]
    pub port: u16,
    /// Shared NIC segment the management path uses, when known; a migration path on it needs its
    /// own VLAN.
    #[serde(default)]
    pub segment: Option<NicSegment>,
}

/// A migration path: an address on a shared NIC segment dedicated to migration traffic (one row
/// of the seed's Migration Path Setting window: name, primary use, segment, IPv4 address, subnet
/// mask, VLAN). The HVM's migration endpoint listens on its primary path
/// ([`HvmConfig::primary_migration_path`]); `crate::paths` validates and changes the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationPath {
    /// Name shown to operators, unique on the HVM (fleet files may leave it out: it then becomes
    /// `mig-SEGMENT`, see [`normalise_migration_paths`]).
    #[serde(default)]
    pub name: String,
    /// The path migrations use (exactly one path of a non-empty list is primary; a fleet file
    /// that marks none makes its first path primary).
    #[serde(default)]
    pub primary: bool,
    /// NIC segment the address lives on.
    pub segment: NicSegment,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet.
    #[serde(default = "default_prefix")]
    pub prefix: u8,
    /// VLAN the path is tagged with, if any.
    #[serde(default)]
    pub vlan: Option<u16>,
}

impl MigrationPath {
    /// The subnet mask of [`Self::prefix`], e.g. `255.255.255.0` for 24.
    pub fn subnet_mask(&self) -> Ipv4Addr {
        let bits = u32::from(self.prefix.min(32));
        Ipv4Addr::from(if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        })
    }
}

/// Gives every unnamed path a name (`mig-SEGMENT`, `mig-SEGMENT-2`, …) and, when no path is
/// primary, makes the first one primary: what fleet files and state files written before paths
/// had names and a primary use mean.
pub fn normalise_migration_paths(paths: &mut [MigrationPath]) {
    for i in 0..paths.len() {
        if paths[i].name.is_empty() {
            let base = format!("mig-{}", paths[i].segment);
            let mut name = base.clone();
            let mut n = 1;
            while paths.iter().any(|p| p.name.eq_ignore_ascii_case(&name)) {
                n += 1;
                name = format!("{base}-{n}");
            }
            paths[i].name = name;
        }
    }
    if !paths.iter().any(|p| p.primary)
        && let Some(first) = paths.first_mut()
    {
        first.primary = true;
    }
}

fn default_prefix() -> u8 {
    24
}

/// An inclusive range of vfcIDs the HVM may hand out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfcIdRange {
    /// First vfcID.
    pub first: VfcId,
    /// Last vfcID (inclusive).
    pub last: VfcId,
}

impl VfcIdRange {
    /// Whether `id` is in the range.
    pub fn contains(&self, id: VfcId) -> bool {
        self.first <= id && id <= self.last
    }
    /// Every vfcID of the range, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = VfcId> {
        (self.first.get()..=self.last.get()).filter_map(|n| VfcId::new(n).ok())
    }
}

/// The HVM firmware of a blade and its system settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HvmConfig {
    /// HVM firmware version, e.g. `02-15`.
    pub firmware: FirmwareVersion,
    /// Edition.
    pub model: HvmModel,
    /// HVM system time zone.
    pub time_zone: String,
    /// NTP servers the HVM system time is synchronized with (empty = none).
    #[serde(default)]
    pub ntp_servers: Vec<String>,
    /// Seed of the logical MACs.
    pub vnic_system_no: VnicSystemNo,
    /// Management path.
    pub management: ManagementPath,
    /// Migration paths (zero or more; one of a non-empty list is primary).
    #[serde(default)]
    pub migration_paths: Vec<MigrationPath>,
    /// Base of the WWN pool this HVM generates vFC names from.
    pub wwn_pool: Wwpn,
    /// vfcIDs this HVM may assign.
    pub vfc_ids: VfcIdRange,
}

impl HvmConfig {
    /// The path migrations and Connectivity Tests use: the primary one (the first when a list
    /// read from an old state marks none), or `None` when the HVM has no migration path.
    pub fn primary_migration_path(&self) -> Option<&MigrationPath> {
        self.migration_paths
            .iter()
            .find(|p| p.primary)
            .or_else(|| self.migration_paths.first())
    }
}

/// A processor group of an HVM: the LPARs of a group run only on the group's processors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorGroup {
    /// Group number (0 is the default group).
    pub id: u8,
    /// Physical processors (cores) in the group.
    pub processors: u32,
}

/// A server blade with its HVM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blade {
    /// Blade (and HVM) name, unique in a fleet, e.g. `ch1-blade1`.
    pub name: String,
    /// Chassis id.
    pub chassis: String,
    /// Slot number in the chassis.
    pub slot: u8,
    /// Blade model, e.g. `CB520H-B3`.
    pub model: String,
    /// Processor model string (CPUID family), compared by live moves.
    #[serde(default = "default_cpu")]
    pub cpu_model: String,
    /// Physical processors (cores) the HVM can give to LPARs.
    pub processors: u32,
    /// Memory the HVM can give to LPARs, in MiB.
    pub memory_mib: u64,
    /// Processor groups besides the default. Group 0 always exists: unless listed, it holds
    /// every processor no listed group holds (so with none listed, all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processor_groups: Vec<ProcessorGroup>,
    /// EFI/BIOS.
    pub efi: EfiBios,
    /// NIC and FC HBA cards.
    #[serde(default)]
    pub cards: Vec<PciCard>,
    /// HVM firmware and settings.
    pub hvm: HvmConfig,
}

fn default_cpu() -> String {
    "Intel Xeon E5-2600 v4".to_owned()
}

impl Blade {
    /// The card in `slot`, if any.
    pub fn card(&self, slot: u8) -> Option<&PciCard> {
        self.cards.iter().find(|c| c.slot == slot)
    }

    /// The port behind a NIC segment, if the blade has that card and port.
    pub fn nic_port(&self, segment: NicSegment) -> Option<&CardPort> {
        self.card(segment.slot())
            .filter(|c| c.kind == CardKind::Nic)
            .and_then(|c| c.ports.iter().find(|p| p.port == segment.port()))
    }

    /// Every processor group with its processors, by number: the listed ones and the default
    /// group 0.
    pub fn processor_groups(&self) -> Vec<ProcessorGroup> {
        let mut groups = self.processor_groups.clone();
        if !groups.iter().any(|g| g.id == 0) {
            // Summed wide: a blade's API answer is not validated like a fleet file, and groups
            // listing more than u32::MAX processors in all must not overflow.
            let listed: u64 = groups.iter().map(|g| u64::from(g.processors)).sum();
            let rest = u64::from(self.processors).saturating_sub(listed);
            groups.push(ProcessorGroup {
                id: 0,
                // rest ≤ self.processors, a u32.
                processors: u32::try_from(rest).unwrap_or(0),
            });
        }
        groups.sort_by_key(|g| g.id);
        groups
    }

    /// Processors of group `id`, or `None` when the HVM has no such group.
    pub fn group_processors(&self, id: u8) -> Option<u32> {
        self.processor_groups()
            .into_iter()
            .find(|g| g.id == id)
            .map(|g| g.processors)
    }

    /// Whether any FC port of the blade is cabled to array `name`.
    pub fn reaches_array(&self, name: &super::ArrayName) -> bool {
        self.cards.iter().any(|c| {
            c.ports
                .iter()
                .any(|p| p.storage.as_ref().is_some_and(|s| &s.array == name))
        })
    }

    /// The FC port, if the blade has that card and port.
    pub fn fc_port(&self, port: FcPort) -> Option<&CardPort> {
        self.card(port.slot)
            .filter(|c| c.kind == CardKind::FcHba)
            .and_then(|c| c.ports.iter().find(|p| p.port == port.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blade(groups: &[(u8, u32)]) -> Blade {
        let mut b = crate::model::Fleet::parse(crate::model::fleet::DEMO_FLEET_TOML, "demo.toml")
            .map(|f| f.blades[0].blade.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        b.processor_groups = groups
            .iter()
            .map(|&(id, processors)| ProcessorGroup { id, processors })
            .collect();
        b
    }

    #[test]
    fn group_zero_holds_what_the_listed_groups_do_not() {
        let all = blade(&[]);
        assert_eq!(all.group_processors(0), Some(16));
        assert_eq!(all.group_processors(1), None);
        let split = blade(&[(1, 4), (2, 2)]);
        assert_eq!(split.group_processors(0), Some(10));
        assert_eq!(split.group_processors(1), Some(4));
        assert_eq!(split.group_processors(3), None);
        let explicit = blade(&[(0, 8), (1, 8)]);
        assert_eq!(
            explicit
                .processor_groups()
                .iter()
                .map(|g| (g.id, g.processors))
                .collect::<Vec<_>>(),
            [(0, 8), (1, 8)]
        );
    }

    #[test]
    fn listed_groups_past_u32_leave_group_zero_empty_without_overflow() {
        let huge = blade(&[(1, u32::MAX), (2, u32::MAX)]);
        assert_eq!(huge.group_processors(0), Some(0));
    }
}
