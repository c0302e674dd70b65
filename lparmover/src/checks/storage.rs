//! Storage rows (table 2-9 "Storage device" and "SAN security"): per vFC, the FC port is cabled
//! to the same array port on both blades; its WWPN is in a host group of that port that
//! presents an LU (the boot LU is reachable); and, for a live move, the migration WWPN of the
//! same vfcID is in that host group too.
//!
//! The facts come from the arrays registered in the profile ([`StorageFacts::Arrays`]); with
//! none registered, or none reachable, one clearly labelled Warning row says "not checked".

use serde::Serialize;

use super::{CheckInput, CheckRow, Group, Rule};
use crate::api::array::HostGroup;
use crate::emg::Emg;
use crate::model::{Blade, StorageCable, Vfc};

/// The Storage rules.
pub const RULES: &[Rule] = &[Rule {
    name: "storage",
    check: storage,
}];

/// What the registered storage arrays say about LUN security.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum StorageFacts {
    /// No array is registered with the manager: storage cannot be checked.
    NoArrayRegistered,
    /// Arrays are registered but could not be asked (why).
    Unavailable {
        /// Why.
        reason: String,
    },
    /// Host groups of every registered array.
    Arrays {
        /// Arrays.
        arrays: Vec<ArrayFacts>,
    },
}

/// One storage array's host groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArrayFacts {
    /// Array name.
    pub name: String,
    /// Host groups on its ports.
    pub host_groups: Vec<HostGroup>,
}

fn storage(i: &CheckInput) -> Vec<CheckRow> {
    let what = if i.live() {
        "Boot LU reachable, migration WWPNs registered"
    } else {
        "Boot LU reachable"
    };
    match &i.storage {
        StorageFacts::NoArrayRegistered => vec![
            CheckRow::ok(Group::Storage, what, "not checked", "not checked").warning(
                Emg::StorageNotChecked,
                "not checked: no storage array registered",
            ),
        ],
        StorageFacts::Unavailable { reason } => vec![
            CheckRow::ok(Group::Storage, what, "not checked", "not checked")
                .warning(Emg::StorageNotChecked, format!("not checked: {reason}")),
        ],
        StorageFacts::Arrays { arrays } => i
            .lpar
            .vfcs
            .iter()
            .flat_map(|v| {
                let source = cable(&i.source.inventory.blade, v);
                let destination = cable(&i.destination.inventory.blade, v);
                // A destination without the FC port at all is the HBA rules' Error; the cable
                // of a port that is not there is no second finding.
                let ports = match i.destination.inventory.blade.fc_port(v.port) {
                    Some(_) => same_ports(v, source, destination),
                    None => CheckRow::ok(
                        Group::Storage,
                        format!("vFC {} storage port", v.port),
                        shown(source),
                        "no such FC port",
                    )
                    .warning(
                        Emg::StorageNotChecked,
                        format!(
                            "not checked: the destination has no FC port {} (see HBA)",
                            v.port
                        ),
                    ),
                };
                [ports, host_group(i, arrays, v, source)]
            })
            .collect(),
    }
}

fn cable<'a>(blade: &'a Blade, v: &Vfc) -> Option<&'a StorageCable> {
    blade.fc_port(v.port).and_then(|p| p.storage.as_ref())
}

fn shown(cable: Option<&StorageCable>) -> String {
    cable.map_or_else(|| "no array".to_owned(), ToString::to_string)
}

/// The FC cables of both blades reach the same port of the same array.
fn same_ports(
    v: &Vfc,
    source: Option<&StorageCable>,
    destination: Option<&StorageCable>,
) -> CheckRow {
    let row = CheckRow::ok(
        Group::Storage,
        format!("vFC {} storage port", v.port),
        shown(source),
        shown(destination),
    );
    match (source, destination) {
        (Some(s), Some(d)) if s == d => row,
        (None, None) => row.warning(
            Emg::StorageNotChecked,
            format!(
                "not checked: FC port {} reaches no storage array on either blade",
                v.port
            ),
        ),
        _ => row.error(
            Emg::StoragePortsDiffer,
            format!(
                "FC port {} goes to {} on the source and to {} on the destination",
                v.port,
                shown(source),
                shown(destination)
            ),
        ),
    }
}

/// The WWPN is in a host group of its array port that presents an LU; for a live move the
/// migration WWPN is in every such group too.
fn host_group(
    i: &CheckInput,
    arrays: &[ArrayFacts],
    v: &Vfc,
    cable: Option<&StorageCable>,
) -> CheckRow {
    let item = format!("vFC {} host group", v.port);
    let Some(cable) = cable else {
        return CheckRow::ok(Group::Storage, item, "no array", "").warning(
            Emg::StorageNotChecked,
            format!("not checked: FC port {} reaches no storage array", v.port),
        );
    };
    let Some(array) = arrays.iter().find(|a| a.name == cable.array.as_str()) else {
        return CheckRow::ok(Group::Storage, item, cable.to_string(), "").warning(
            Emg::StorageNotChecked,
            format!(
                "not checked: array {} is not registered with the manager (storagecli array add)",
                cable.array
            ),
        );
    };
    let groups: Vec<&HostGroup> = array
        .host_groups
        .iter()
        .filter(|g| g.port == cable.port && g.permits(v.wwpn))
        .collect();
    let names = |groups: &[&HostGroup]| {
        groups
            .iter()
            .map(|g| format!("{} {}", array.name, g.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if groups.is_empty() {
        return CheckRow::ok(Group::Storage, item, v.wwpn.to_string(), "none").error(
            Emg::WwpnNotInHostGroup,
            format!(
                "WWPN {} is in no host group of {} port {}",
                v.wwpn, array.name, cable.port
            ),
        );
    }
    let row = CheckRow::ok(
        Group::Storage,
        item,
        format!("{} in {}", v.wwpn, names(&groups)),
        "",
    );
    if groups.iter().all(|g| g.luns.is_empty()) {
        return row.error(
            Emg::BootLuUnreachable,
            format!("{} presents no LU", names(&groups)),
        );
    }
    if !i.live() {
        return CheckRow {
            destination: "WWPN moves with the LPAR".into(),
            ..row
        };
    }
    let missing: Vec<&HostGroup> = groups
        .iter()
        .copied()
        .filter(|g| !g.permits(v.migration_wwpn))
        .collect();
    if missing.is_empty() {
        return CheckRow {
            destination: format!("migration WWPN {} registered", v.migration_wwpn),
            ..row
        };
    }
    CheckRow {
        destination: format!("migration WWPN {} not registered", v.migration_wwpn),
        ..row
    }
    .error(
        Emg::MigrationWwpnNotRegistered,
        format!(
            "migration WWPN {} (vfcID {}) is missing from {}; register it with `lparmover wwn register-migration {}/{}`",
            v.migration_wwpn,
            v.vfc_id.get(),
            names(&missing),
            i.source_name(),
            i.lpar.name.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::Verdict;
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn without_an_array_storage_is_a_labelled_warning_not_a_pass() {
        let rows = storage(&live());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].verdict, Verdict::Warning);
        assert_eq!(rows[0].code, Some(Emg::StorageNotChecked));
        assert!(
            rows[0]
                .detail
                .contains("not checked: no storage array registered")
        );
    }

    #[test]
    fn migration_wwpn_must_share_the_host_group_of_the_cabled_port() {
        let mut i = live();
        let v = i.lpar.vfcs[0].clone();
        let port = "0A".parse().unwrap();
        let cable: crate::model::StorageCable = format!("ams1:{port}").parse().unwrap();
        for facts in [&mut i.source, &mut i.destination] {
            for card in &mut facts.inventory.blade.cards {
                for p in &mut card.ports {
                    if card.slot == v.port.slot && p.port == v.port.port {
                        p.storage = Some(cable.clone());
                    }
                }
            }
        }
        let group = |wwns: Vec<crate::model::Wwpn>, luns| ArrayFacts {
            name: "ams1".into(),
            host_groups: vec![HostGroup {
                port,
                number: crate::model::HostGroupNumber::new(1).unwrap(),
                name: "web".into(),
                wwns: wwns
                    .into_iter()
                    .map(|wwpn| crate::api::array::WwnEntry {
                        wwpn,
                        nickname: String::new(),
                    })
                    .collect(),
                luns,
            }],
        };
        let lun0 = vec![crate::api::array::LunMapping {
            lun: 0,
            lu: crate::api::array::LuNumber(0),
        }];
        let verdicts = |i: &CheckInput| {
            storage(i)
                .into_iter()
                .map(|r| (r.verdict, r.code))
                .collect::<Vec<_>>()
        };
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![v.wwpn, v.migration_wwpn], lun0.clone())],
        };
        assert_eq!(
            verdicts(&i)[..2],
            [(Verdict::Ok, None), (Verdict::Ok, None)]
        );
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![v.wwpn], lun0.clone())],
        };
        assert_eq!(verdicts(&i)[1].1, Some(Emg::MigrationWwpnNotRegistered));
        assert!(
            storage(&i)[1]
                .detail
                .contains("lparmover wwn register-migration")
        );
        i.mode = crate::model::Mode::Shutdown;
        assert_eq!(verdicts(&i)[1].0, Verdict::Ok);
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![v.wwpn], Vec::new())],
        };
        assert_eq!(verdicts(&i)[1].1, Some(Emg::BootLuUnreachable));
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![], lun0)],
        };
        assert_eq!(verdicts(&i)[1].1, Some(Emg::WwpnNotInHostGroup));
        for card in &mut i.destination.inventory.blade.cards {
            for p in &mut card.ports {
                if card.slot == v.port.slot && p.port == v.port.port {
                    p.storage = Some("ams1:1A".parse().unwrap());
                }
            }
        }
        assert_eq!(verdicts(&i)[0].1, Some(Emg::StoragePortsDiffer));
    }
}
