//! Fleet files: the chassis, blades (with their HVMs) and initial LPARs of a simulated data centre.
//!
//! ```toml
//! name = "demo"
//! # network = "netns-bench"   # opt-in, see [`FleetNetwork`]
//! [[chassis]]
//! id = "CH1"
//! [[blade]]
//! name = "ch1-b1"
//! chassis = "CH1"
//! # … hardware and [blade.hvm] …
//! [[blade.lpars]]
//! name = "web-01"
//! # … processors, memory, vNICs, vFCs, workload …
//! ```

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;

use super::blade::{Blade, Chassis};
use super::lpar::LparRequest;
use super::storage::StorageArray;

/// A fleet file that cannot be used; says where and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The file could not be read.
    #[error("cannot read fleet file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// TOML or field error.
    #[error("fleet file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    /// Parsed, but inconsistent.
    #[error("fleet file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// One blade of a fleet with the LPARs defined on it at first start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FleetBlade {
    /// Hardware and HVM.
    #[serde(flatten)]
    pub blade: Blade,
    /// LPARs defined at first start.
    pub lpars: Vec<LparRequest>,
}

/// Which addresses a fleet's blades may use.
///
/// Simulated blades listen on loopback only. The one exception is the benchmark of shaped links
/// (`lparmover bench live --link 1gbit`), which puts each blade in its own network namespace on
/// one end of a veth pair: it opts in explicitly with `network = "netns-bench"` at the top of
/// the fleet file, and then every address must be in the RFC 2544 benchmarking range
/// 198.18.0.0/15, which is never routed on a real network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetNetwork {
    /// 127.0.0.0/8 only (the default).
    #[default]
    Loopback,
    /// 198.18.0.0/15 only, inside network namespaces a benchmark creates.
    NetnsBench,
}

impl FleetNetwork {
    /// Whether `ip` is allowed on this network.
    pub fn allows(self, ip: Ipv4Addr) -> bool {
        match self {
            Self::Loopback => ip.is_loopback(),
            Self::NetnsBench => ip.octets()[0] == 198 && (ip.octets()[1] & 0xfe) == 18,
        }
    }

    /// The allowed range, for messages.
    pub fn range(self) -> &'static str {
        match self {
            Self::Loopback => "127.0.0.0/8",
            Self::NetnsBench => "198.18.0.0/15",
        }
    }
}

/// A whole fleet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fleet {
    /// Fleet name.
    pub name: String,
    /// Which addresses the blades may use.
    pub network: FleetNetwork,
    /// Chassis.
    pub chassis: Vec<Chassis>,
    /// Blades.
    #[serde(rename = "blade")]
    pub blades: Vec<FleetBlade>,
    /// Storage arrays the blades' FC ports are cabled to.
    #[serde(rename = "array", default, skip_serializing_if = "Vec::is_empty")]
    pub arrays: Vec<StorageArray>,
}

impl Fleet {
    /// Reads and validates a fleet file.
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates fleet TOML; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FleetError> {
        let parse_err = |message: String| FleetError::Parse {
            path: origin.to_owned(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let name = match doc.remove("name") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(parse_err("`name` must be a string".into())),
            None => return Err(parse_err("missing `name = \"…\"` at the top".into())),
        };
        let network = match doc.remove("network") {
            None => FleetNetwork::Loopback,
            Some(toml::Value::String(s)) if s == "loopback" => FleetNetwork::Loopback,
            Some(toml::Value::String(s)) if s == "netns-bench" => FleetNetwork::NetnsBench,
            Some(other) => {
                return Err(parse_err(format!(
                    "`network = {other}` is unknown; use \"loopback\" (the default) or \"netns-bench\" (198.18.0.0/15, benchmark namespaces only)"
                )));
            }
        };
        let chassis: Vec<Chassis> = match doc.remove("chassis") {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(format!("[[chassis]]: {e}")))?,
            None => Vec::new(),
        };
        let blade_values = match doc.remove("blade") {
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                return Err(parse_err(
                    "`blade` must be an array of tables ([[blade]])".into(),
                ));
            }
            None => Vec::new(),
        };
        let arrays: Vec<StorageArray> = match doc.remove("array") {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(format!("[[array]]: {e}")))?,
            None => Vec::new(),
        };
        if let Some(key) = doc.keys().next() {
            return Err(parse_err(format!(
                "unknown top-level key `{key}`; expected name, network, [[chassis]], [[blade]] and [[array]]"
            )));
        }
        let mut blades = Vec::with_capacity(blade_values.len());
        for (i, value) in blade_values.into_iter().enumerate() {
            let toml::Value::Table(mut table) = value else {
                return Err(parse_err(format!("blade #{} is not a table", i + 1)));
            };
            let label = table
                .get("name")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("blade #{}", i + 1), |n| format!("blade {n:?}"));
            let lpars: Vec<LparRequest> = match table.remove("lpars") {
                Some(v) => v.try_into().map_err(|e: toml::de::Error| {
                    parse_err(format!("{label}, [[blade.lpars]]: {e}"))
                })?,
                None => Vec::new(),
            };
            let mut blade: Blade = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(format!("{label}: {e}")))?;
            super::blade::normalise_migration_paths(&mut blade.hvm.migration_paths);
            blades.push(FleetBlade { blade, lpars });
        }
        let fleet = Self {
            name,
            network,
            chassis,
            blades,
            arrays,
        };
        fleet.validate().map_err(|message| FleetError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(fleet)
    }

    /// Cross-checks names and addresses.
    fn validate(&self) -> Result<(), String> {
        if self.blades.is_empty() {
            return Err("no [[blade]] defined; a fleet needs at least one blade".into());
        }
        let chassis_ids: HashSet<&str> = self.chassis.iter().map(|c| c.id.as_str()).collect();
        let mut names = HashSet::new();
        let mut slots = HashSet::new();
        let mut addresses = HashSet::new();
        let mut system_nos = HashSet::new();
        for FleetBlade { blade, lpars } in &self.blades {
            if blade.name.is_empty()
                || !blade
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "blade name {:?} must be letters, digits, '-' or '_'",
                    blade.name
                ));
            }
            if !names.insert(blade.name.as_str()) {
                return Err(format!(
                    "two blades are named {:?}; names must be unique",
                    blade.name
                ));
            }
            if !chassis_ids.contains(blade.chassis.as_str()) {
                return Err(format!(
                    "blade {:?} sits in chassis {:?}, which no [[chassis]] defines",
                    blade.name, blade.chassis
                ));
            }
            if !slots.insert((blade.chassis.as_str(), blade.slot)) {
                return Err(format!(
                    "blade {:?}: slot {} of chassis {:?} is already taken",
                    blade.name, blade.slot, blade.chassis
                ));
            }
            if !system_nos.insert(blade.hvm.vnic_system_no) {
                return Err(format!(
                    "blade {:?}: VNIC System No. {} is used by another HVM; MACs would collide",
                    blade.name,
                    blade.hvm.vnic_system_no.get()
                ));
            }
            let mgmt = blade.hvm.management.ip;
            if !self.network.allows(mgmt) {
                return Err(match self.network {
                    FleetNetwork::Loopback => format!(
                        "blade {:?}: management address {mgmt} is not in 127.0.0.0/8; simulated blades only listen on loopback",
                        blade.name
                    ),
                    FleetNetwork::NetnsBench => format!(
                        "blade {:?}: management address {mgmt} is not in 198.18.0.0/15; a `network = \"netns-bench\"` fleet only uses the benchmarking range",
                        blade.name
                    ),
                });
            }
            if !addresses.insert(mgmt) {
                return Err(format!(
                    "blade {:?}: address {mgmt} is used twice",
                    blade.name
                ));
            }
            let primaries = blade
                .hvm
                .migration_paths
                .iter()
                .filter(|p| p.primary)
                .count();
            if primaries > 1 {
                return Err(format!(
                    "blade {:?}: {primaries} migration paths are marked primary; mark exactly one",
                    blade.name
                ));
            }
            let mut path_names = HashSet::new();
            for path in &blade.hvm.migration_paths {
                if !path_names.insert(path.name.to_ascii_lowercase()) {
                    return Err(format!(
                        "blade {:?}: two migration paths are named {:?}; names must be unique",
                        blade.name, path.name
                    ));
                }
                if !self.network.allows(path.ip) {
                    return Err(format!(
                        "blade {:?}: migration path {} is not in {}",
                        blade.name,
                        path.ip,
                        self.network.range()
                    ));
                }
                if !addresses.insert(path.ip) {
                    return Err(format!(
                        "blade {:?}: migration path address {} is used twice (or equals a management address)",
                        blade.name, path.ip
                    ));
                }
            }
            let mut group_ids = HashSet::new();
            for g in &blade.processor_groups {
                if !group_ids.insert(g.id) {
                    return Err(format!(
                        "blade {:?}: processor group {} is defined twice",
                        blade.name, g.id
                    ));
                }
            }
            let grouped: u64 = blade
                .processor_groups
                .iter()
                .map(|g| u64::from(g.processors))
                .sum();
            if grouped > u64::from(blade.processors) {
                return Err(format!(
                    "blade {:?}: its processor groups hold {grouped} processors, the blade has {}",
                    blade.name, blade.processors
                ));
            }
            let mut lpar_names = HashSet::new();
            for lpar in lpars {
                if !lpar_names.insert(lpar.name.as_str()) {
                    return Err(format!(
                        "blade {:?}: two LPARs are named {:?}",
                        blade.name,
                        lpar.name.as_str()
                    ));
                }
                let group = lpar.processors.group;
                match blade.group_processors(group) {
                    None => {
                        return Err(format!(
                            "blade {:?}: LPAR {:?} is in processor group {group}, which the blade does not define",
                            blade.name,
                            lpar.name.as_str()
                        ));
                    }
                    Some(n) if n < lpar.processors.count && !blade.processor_groups.is_empty() => {
                        return Err(format!(
                            "blade {:?}: LPAR {:?} has {} processors, its processor group {group} only {n}",
                            blade.name,
                            lpar.name.as_str(),
                            lpar.processors.count
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        self.validate_storage(&addresses)
    }

    /// Arrays: each valid on its own, names and addresses unique, every cable on an FC port
    /// ending on a port an array of the fleet has.
    fn validate_storage(&self, blade_addresses: &HashSet<Ipv4Addr>) -> Result<(), String> {
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for array in &self.arrays {
            array.validate()?;
            if !names.insert(array.name.as_str()) {
                return Err(format!(
                    "two arrays are named {:?}; names must be unique",
                    array.name.as_str()
                ));
            }
            for c in &array.controllers {
                if !self.network.allows(c.ip) {
                    return Err(format!(
                        "array {}: controller {} address {} is not in {}",
                        array.name,
                        c.number,
                        c.ip,
                        self.network.range()
                    ));
                }
                if blade_addresses.contains(&c.ip) || !addresses.insert(c.ip) {
                    return Err(format!(
                        "array {}: controller address {} is used twice",
                        array.name, c.ip
                    ));
                }
            }
        }
        for FleetBlade { blade, .. } in &self.blades {
            for card in &blade.cards {
                for port in &card.ports {
                    let Some(cable) = &port.storage else { continue };
                    if card.kind != super::CardKind::FcHba {
                        return Err(format!(
                            "blade {:?}: port {} of the NIC in slot {} has a storage cable ({cable}); only FC HBA ports reach arrays",
                            blade.name, port.port, card.slot
                        ));
                    }
                    let Some(array) = self.array(cable.array.as_str()) else {
                        return Err(format!(
                            "blade {:?}: FC port {}/{} is cabled to array {}, which no [[array]] defines",
                            blade.name, card.slot, port.port, cable.array
                        ));
                    };
                    if !array.ports.contains(&cable.port) {
                        return Err(format!(
                            "blade {:?}: FC port {}/{} is cabled to port {} of array {}, which has ports {}",
                            blade.name,
                            card.slot,
                            port.port,
                            cable.port,
                            array.name,
                            array
                                .ports
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        }
        for array in &self.arrays {
            for lpar in &array.migration_wwpns_registered {
                let known = self
                    .blades
                    .iter()
                    .any(|b| b.lpars.iter().any(|l| l.name.as_str() == lpar));
                if !known {
                    return Err(format!(
                        "array {}: migration_wwpns_registered names LPAR {lpar:?}, which no blade of the fleet defines",
                        array.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The storage array named `name`.
    pub fn array(&self, name: &str) -> Option<&StorageArray> {
        self.arrays.iter().find(|a| a.name.as_str() == name)
    }

    /// The blade named `name`.
    pub fn blade(&self, name: &str) -> Option<&FleetBlade> {
        self.blades.iter().find(|b| b.blade.name == name)
    }
}

/// The demo fleet shipped with the project (`assets/fleets/demo.toml`), embedded so `lparmover demo`
/// needs no file on disk.
pub const DEMO_FLEET_TOML: &str = include_str!("../../../assets/fleets/demo.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fleet_parses_with_its_oddities() {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo.toml").unwrap();
        assert_eq!(fleet.chassis.len(), 2);
        assert_eq!(fleet.blades.len(), 4);
        let lpars: usize = fleet.blades.iter().map(|b| b.lpars.len()).sum();
        assert!((6..=8).contains(&lpars), "{lpars} LPARs");
        let efi: HashSet<_> = fleet.blades.iter().map(|b| b.blade.efi.version).collect();
        assert_eq!(efi.len(), 2, "one blade differs in EFI/BIOS");
        let no_fc = fleet
            .blades
            .iter()
            .filter(|b| b.blade.card(3).is_none())
            .count();
        assert_eq!(no_fc, 1, "one blade misses its FC card");
    }

    fn with_change(from: &str, to: &str) -> Result<Fleet, FleetError> {
        assert!(DEMO_FLEET_TOML.contains(from), "{from}");
        Fleet::parse(&DEMO_FLEET_TOML.replacen(from, to, 1), "t.toml")
    }

    #[test]
    fn rejects_non_loopback_addresses() {
        let err = with_change("127.0.1.2", "10.0.0.2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in 127.0.0.0/8"), "{err}");
        // The benchmarking range needs the explicit opt-in …
        let err = with_change("127.0.1.2", "198.18.0.2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in 127.0.0.0/8"), "{err}");
    }

    #[test]
    fn netns_bench_opt_in_allows_only_the_benchmarking_range() {
        let bench = DEMO_FLEET_TOML
            .replacen(
                "name = \"demo\"",
                "name = \"demo\"\nnetwork = \"netns-bench\"",
                1,
            )
            .replace("127.0.1.", "198.18.1.")
            .replace("127.0.2.", "198.19.2.")
            .replace("127.0.3.1", "198.18.3.1")
            .replace("127.0.4.", "198.18.4.");
        let fleet = Fleet::parse(&bench, "bench.toml").unwrap();
        assert_eq!(fleet.network, FleetNetwork::NetnsBench);
        // … and then loopback and every other range are refused.
        for other in ["127.0.1.9", "10.0.0.2", "198.20.0.1", "198.17.255.1"] {
            let err = Fleet::parse(&bench.replacen("198.18.1.1", other, 1), "b.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("not in 198.18.0.0/15"), "{other}: {err}");
        }
        let err = Fleet::parse(&bench.replacen("netns-bench", "anywhere", 1), "b.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("netns-bench"), "{err}");
    }

    #[test]
    fn processor_groups_must_add_up_and_hold_their_lpars() {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo.toml").unwrap();
        let b2 = &fleet.blade("ch1-b2").unwrap().blade;
        assert_eq!(b2.group_processors(1), Some(2), "the demo splits ch1-b2");
        assert_eq!(b2.group_processors(0), Some(14));

        let err = with_change(
            "{ id = 1, processors = 2 }",
            "{ id = 1, processors = 2 }, { id = 1, processors = 1 }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("processor group 1 is defined twice"), "{err}");
        let err = with_change("{ id = 1, processors = 2 }", "{ id = 1, processors = 17 }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hold 17 processors, the blade has 16"),
            "{err}"
        );
        let err = with_change(
            "processors = { mode = \"shared\", count = 2, service_ratio = 100 }",
            "processors = { mode = \"shared\", count = 2, service_ratio = 100, group = 5 }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"web-01\" is in processor group 5, which the blade does not define"),
            "{err}"
        );
    }

    #[test]
    fn rejects_duplicate_blade_names_and_unknown_keys() {
        let err = with_change("name = \"ch1-b2\"", "name = \"ch1-b1\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("two blades are named"), "{err}");
        let err = with_change("cpu_model", "cpu_modle")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu_modle"), "{err}");
        let err = with_change("name = \"web-01\"", "name = \"NO_NAME\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("NO_NAME"), "{err}");
    }
}
