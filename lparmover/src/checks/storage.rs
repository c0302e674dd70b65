//! Storage rows: the same boot LU reachable from both blades and, for a live move, each migration
//! WWPN in the host group of its WWPN (table 2-9 "SAN security").
//!
//! There is no storage array client yet, so [`StorageFacts::NoArrayRegistered`] (or
//! [`StorageFacts::Unavailable`]) yields one clearly labelled Warning row: "not checked". When an
//! array client exists, it fills [`StorageFacts::Arrays`] and the host-group rules below apply
//! unchanged.

use serde::Serialize;

use super::{CheckInput, CheckRow, Group, Rule};
use crate::emg::Emg;
use crate::model::Wwpn;

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
    pub host_groups: Vec<HostGroupFacts>,
}

/// A host group: the WWPNs allowed to reach its LUs through one array port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostGroupFacts {
    /// Array port, e.g. `0A`.
    pub port: String,
    /// Host group name.
    pub name: String,
    /// Registered WWPNs.
    pub wwpns: Vec<Wwpn>,
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
        StorageFacts::Arrays { arrays } => host_groups(i, arrays),
    }
}

/// Per vFC: its WWPN is in a host group (its LUs are reachable); for a live move its migration
/// WWPN is in every host group its WWPN is in.
fn host_groups(i: &CheckInput, arrays: &[ArrayFacts]) -> Vec<CheckRow> {
    i.lpar
        .vfcs
        .iter()
        .map(|v| {
            let groups: Vec<(&ArrayFacts, &HostGroupFacts)> = arrays
                .iter()
                .flat_map(|a| a.host_groups.iter().map(move |g| (a, g)))
                .filter(|(_, g)| g.wwpns.contains(&v.wwpn))
                .collect();
            let names = groups
                .iter()
                .map(|(a, g)| format!("{} {} {}", a.name, g.port, g.name))
                .collect::<Vec<_>>()
                .join(", ");
            let item = format!("vFC {} host group", v.port);
            if groups.is_empty() {
                return CheckRow::ok(Group::Storage, item, v.wwpn.to_string(), "none").error(
                    Emg::WwpnNotInHostGroup,
                    format!("WWPN {} is in no host group", v.wwpn),
                );
            }
            let row = CheckRow::ok(Group::Storage, item, format!("{} in {names}", v.wwpn), "");
            if !i.live() {
                return CheckRow {
                    destination: "WWPN moves with the LPAR".into(),
                    ..row
                };
            }
            let missing: Vec<String> = groups
                .iter()
                .filter(|(_, g)| !g.wwpns.contains(&v.migration_wwpn))
                .map(|(a, g)| format!("{} {} {}", a.name, g.port, g.name))
                .collect();
            let row = CheckRow {
                destination: format!("migration WWPN {}", v.migration_wwpn),
                ..row
            };
            if missing.is_empty() {
                row
            } else {
                row.error(
                    Emg::MigrationWwpnNotRegistered,
                    format!(
                        "migration WWPN {} (vfcID {}) is missing from {}",
                        v.migration_wwpn,
                        v.vfc_id.get(),
                        missing.join(", ")
                    ),
                )
            }
        })
        .collect()
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
    fn migration_wwpn_must_share_the_host_group() {
        let mut i = live();
        let v = i.lpar.vfcs[0].clone();
        let group = |wwpns| ArrayFacts {
            name: "ams1".into(),
            host_groups: vec![HostGroupFacts {
                port: "0A".into(),
                name: "web".into(),
                wwpns,
            }],
        };
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![v.wwpn, v.migration_wwpn])],
        };
        assert_eq!(storage(&i)[0].verdict, Verdict::Ok);
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![v.wwpn])],
        };
        assert_eq!(storage(&i)[0].code, Some(Emg::MigrationWwpnNotRegistered));
        i.mode = crate::model::Mode::Shutdown;
        assert_eq!(storage(&i)[0].verdict, Verdict::Ok);
        i.storage = StorageFacts::Arrays {
            arrays: vec![group(vec![])],
        };
        assert_eq!(storage(&i)[0].code, Some(Emg::WwpnNotInHostGroup));
    }
}
