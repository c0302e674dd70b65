//! An array's configuration on its first start, made from the fleet file (see
//! `lparmover::model::storage`): per LPAR and array port its vFCs reach, a host group named after
//! the LPAR holding their WWPNs (and the migration WWPNs of the LPARs the array lists), and per
//! LPAR a boot LU presented as LUN 0 by each of its groups, and beside it a replication volume
//! of the same size presented to nobody, set as a pair with it (Separated, never copied): the
//! safety copy an operator takes before maintenance with `storagecli pair replicate`.
//!
//! The WWPNs are the ones each blade will give its LPARs on its own first start: the seed runs
//! the blade's own definition rules ([`HvmState::define`]) on a scratch copy of every blade.

use std::collections::BTreeMap;

use lparmover::api::array::{ArrayInfo, HostGroup, Lu, LuNumber, LunMapping, WwnEntry};
use lparmover::model::{ArrayPort, Fleet, HostGroupNumber, StorageArray};

use super::pairs::PairRecord;
use super::security::StoredAccount;
use super::state::ArrayState;
use crate::hvm::HvmState;

/// Number of the first replication volume (the RV of boot LU 0000 is 0100).
pub const RV_BASE: u16 = 100;

/// The first-start state of `array` of `fleet`.
pub fn first_state(fleet: &Fleet, array: &StorageArray) -> anyhow::Result<ArrayState> {
    // (port, LPAR name) → WWPN entries, in fleet order.
    let mut groups: BTreeMap<ArrayPort, Vec<(String, Vec<WwnEntry>)>> = BTreeMap::new();
    let mut lpar_order: Vec<String> = Vec::new();
    for fb in &fleet.blades {
        let mut scratch = HvmState::new(fb.blade.clone());
        for request in &fb.lpars {
            let lpar = scratch.define(request).map_err(|e| {
                anyhow::anyhow!(
                    "blade {} LPAR {}: {e}",
                    fb.blade.name,
                    request.name.as_str()
                )
            })?;
            let name = lpar.name.as_str().to_owned();
            let with_migration = array.migration_wwpns_registered.contains(&name);
            for v in &lpar.vfcs {
                let Some(cable) = fb.blade.fc_port(v.port).and_then(|p| p.storage.as_ref()) else {
                    continue;
                };
                if cable.array != array.name {
                    continue;
                }
                if !lpar_order.contains(&name) {
                    lpar_order.push(name.clone());
                }
                let on_port = groups.entry(cable.port).or_default();
                let index = match on_port.iter().position(|(n, _)| *n == name) {
                    Some(i) => i,
                    None => {
                        on_port.push((name.clone(), Vec::new()));
                        on_port.len() - 1
                    }
                };
                let entries = &mut on_port[index].1;
                entries.push(WwnEntry {
                    wwpn: v.wwpn,
                    nickname: truncate(&format!("{name}-{}-{}", v.port.slot, v.port.port)),
                });
                if with_migration {
                    entries.push(WwnEntry {
                        wwpn: v.migration_wwpn,
                        nickname: lparmover::ops::storage::default_nickname(&name, v.port),
                    });
                }
            }
        }
    }
    let mut lus = Vec::new();
    let mut lu_of = BTreeMap::new();
    for (i, name) in lpar_order.iter().enumerate() {
        let number = LuNumber(u16::try_from(i)?);
        lu_of.insert(name.clone(), number);
        lus.push(Lu {
            number,
            name: truncate(&format!("{name}-boot")),
            size_mib: array.boot_lu_mib,
        });
    }
    if lpar_order.len() > usize::from(RV_BASE) {
        anyhow::bail!(
            "array {} would serve {} LPARs; it numbers at most {RV_BASE} boot LUs",
            array.name,
            lpar_order.len()
        );
    }
    let mut pairs = BTreeMap::new();
    for (i, name) in lpar_order.iter().enumerate() {
        let rv = LuNumber(u16::try_from(i)?.checked_add(RV_BASE).ok_or_else(|| {
            anyhow::anyhow!(
                "array {} has too many LPARs for replication volumes",
                array.name
            )
        })?);
        lus.push(Lu {
            number: rv,
            name: truncate(&format!("{name}-rv")),
            size_mib: array.boot_lu_mib,
        });
        pairs.insert(LuNumber(u16::try_from(i)?), PairRecord::new(rv));
    }
    let mut host_groups = Vec::new();
    for port in &array.ports {
        // Group 000 is the port's default group: it permits nobody.
        host_groups.push(HostGroup {
            port: *port,
            number: HostGroupNumber::new(0)?,
            name: "G000".into(),
            wwns: Vec::new(),
            luns: Vec::new(),
        });
        for (i, (name, wwns)) in groups
            .remove(port)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let number = u8::try_from(i + 1)
                .ok()
                .and_then(|n| HostGroupNumber::new(n).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "port {port} of array {} would need more than {} host groups",
                        array.name,
                        HostGroupNumber::MAX
                    )
                })?;
            let luns = lu_of
                .get(&name)
                .map(|lu| vec![LunMapping { lun: 0, lu: *lu }])
                .unwrap_or_default();
            host_groups.push(HostGroup {
                port: *port,
                number,
                name: truncate(&name),
                wwns,
                luns,
            });
        }
    }
    Ok(ArrayState {
        format: ArrayState::FORMAT,
        info: ArrayInfo {
            name: array.name.clone(),
            model: array.model.clone(),
            serial: array.serial.clone(),
            controllers: array.controllers.clone(),
            ports: array.ports.clone(),
            security: array.security.mode,
        },
        accounts: array
            .security
            .accounts
            .iter()
            .map(|a| StoredAccount::new(&a.user, &a.password))
            .collect(),
        host_groups,
        lus,
        logins: BTreeMap::new(),
        pairs,
    })
}

fn truncate(text: &str) -> String {
    text.chars()
        .take(lparmover::api::array::MAX_NAME_LEN)
        .collect()
}
