//! The benchmark's fleet files, generated from `assets/fleets/bench.toml`.

use std::net::Ipv4Addr;

use crate::model::{Fleet, FleetError};

/// The shipped benchmark fleet (two blades, one LPAR), a plain loopback fleet.
pub const BENCH_FLEET_TOML: &str = include_str!("../../../assets/fleets/bench.toml");

/// Name of the blade the LPAR starts on.
pub const BLADE_A: &str = "bench-a";
/// Name of the other blade.
pub const BLADE_B: &str = "bench-b";
/// Name of the moved LPAR.
pub const LPAR: &str = "bench-01";

/// What to change in the template.
#[derive(Clone, Debug)]
pub struct FleetParams {
    /// LPAR memory, MiB.
    pub memory_mib: u64,
    /// Dirty rate, MB/s.
    pub dirty_mbps: f64,
    /// Management and migration addresses of blade A and B; None keeps the template's
    /// loopback addresses.
    pub addresses: Option<[(Ipv4Addr, Ipv4Addr); 2]>,
    /// Keep only this blade (one fleet file per namespace).
    pub only: Option<String>,
    /// vCPUs (shared processors) of the LPAR; None keeps the template's.
    pub vcpus: Option<u32>,
}

fn invalid(message: impl Into<String>) -> FleetError {
    FleetError::Invalid {
        path: "assets/fleets/bench.toml".into(),
        message: message.into(),
    }
}

/// Generates a fleet file's text and checks it parses.
pub fn generate(params: &FleetParams) -> Result<(String, Fleet), FleetError> {
    let mut doc: toml::Table = toml::from_str(BENCH_FLEET_TOML).map_err(|e| FleetError::Parse {
        path: "assets/fleets/bench.toml".into(),
        message: e.to_string(),
    })?;
    if params.addresses.is_some() {
        doc.insert("network".into(), toml::Value::String("netns-bench".into()));
    }
    let blades = doc
        .get_mut("blade")
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| invalid("no [[blade]] array"))?;
    for (i, blade) in blades.iter_mut().enumerate() {
        let table = blade
            .as_table_mut()
            .ok_or_else(|| invalid("[[blade]] is not a table"))?;
        if let Some((mgmt, migration)) = params.addresses.and_then(|a| a.get(i).copied()) {
            let hvm = table
                .get_mut("hvm")
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| invalid("blade without [blade.hvm]"))?;
            let mut management = toml::Table::new();
            management.insert("ip".into(), toml::Value::String(mgmt.to_string()));
            hvm.insert("management".into(), toml::Value::Table(management));
            let path = hvm
                .get_mut("migration_paths")
                .and_then(toml::Value::as_array_mut)
                .and_then(|a| a.first_mut())
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| invalid("blade without a migration path"))?;
            path.insert("ip".into(), toml::Value::String(migration.to_string()));
            path.insert(
                "prefix".into(),
                toml::Value::Integer(i64::from(super::netns::PREFIX)),
            );
            // An NTP server on the same (namespace-only) subnet, like the template's loopback one.
            hvm.insert(
                "ntp_servers".into(),
                toml::Value::Array(vec![toml::Value::String("198.18.0.250".into())]),
            );
        }
        if let Some(lpars) = table.get_mut("lpars").and_then(toml::Value::as_array_mut) {
            for lpar in lpars.iter_mut().filter_map(toml::Value::as_table_mut) {
                let mib = i64::try_from(params.memory_mib)
                    .map_err(|_| invalid("memory size out of range"))?;
                lpar.insert("memory_mib".into(), toml::Value::Integer(mib));
                if let Some(vcpus) = params.vcpus
                    && let Some(processors) = lpar
                        .get_mut("processors")
                        .and_then(toml::Value::as_table_mut)
                {
                    processors.insert("count".into(), toml::Value::Integer(i64::from(vcpus)));
                }
                if let Some(workload) = lpar.get_mut("workload").and_then(toml::Value::as_table_mut)
                {
                    workload.insert(
                        "dirty_rate_mbps".into(),
                        toml::Value::Float(params.dirty_mbps),
                    );
                    // The guest writes into a working set; it must fit in the LPAR.
                    let ws = workload
                        .get("working_set_mib")
                        .and_then(toml::Value::as_integer)
                        .unwrap_or(256)
                        .min(mib / 2)
                        .max(1);
                    workload.insert("working_set_mib".into(), toml::Value::Integer(ws));
                }
            }
        }
    }
    if let Some(only) = &params.only {
        blades.retain(|b| b.get("name").and_then(toml::Value::as_str) == Some(only.as_str()));
        if blades.is_empty() {
            return Err(invalid(format!("no blade {only:?}")));
        }
    }
    let text = toml::to_string(&doc).map_err(|e| invalid(e.to_string()))?;
    let fleet = Fleet::parse(&text, "generated bench fleet")?;
    Ok((text, fleet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_generates_both_networks() {
        Fleet::parse(BENCH_FLEET_TOML, "bench.toml").unwrap();
        let (_, fleet) = generate(&FleetParams {
            memory_mib: 256,
            dirty_mbps: 200.0,
            addresses: None,
            only: None,
            vcpus: Some(1),
        })
        .unwrap();
        assert_eq!(fleet.blades.len(), 2);
        assert_eq!(fleet.blades[0].lpars[0].memory_mib, 256);
        assert_eq!(fleet.blades[0].lpars[0].processors.count, 1);
        let a = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 1, 1));
        let b = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 1, 2));
        let (_, fleet) = generate(&FleetParams {
            memory_mib: 4096,
            dirty_mbps: 10.0,
            addresses: Some([a, b]),
            only: Some(BLADE_B.into()),
            vcpus: None,
        })
        .unwrap();
        assert_eq!(fleet.network, crate::model::FleetNetwork::NetnsBench);
        assert_eq!(fleet.blades.len(), 1);
        assert_eq!(fleet.blades[0].blade.hvm.management.ip, b.0);
        assert_eq!(fleet.blades[0].blade.hvm.migration_paths[0].ip, b.1);
    }
}
