//! Builds check inputs from the demo fleet, as the HVMs would report it, for the rule tests.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};

use super::{CheckInput, HvmFacts, StorageFacts};
use crate::api::{Inventory, LinkState, LoadFigures, PortStates, PortStatus, Resources};
use crate::model::fleet::DEMO_FLEET_TOML;
use crate::model::lpar::vfc_names;
use crate::model::{Blade, Fleet, GuestBackend, Lpar, LparStatus, MacAddr, Mode, Vfc, VfcId, Vnic};

/// A fixed "now" so time-based rules are deterministic.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-15T02:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The demo fleet.
pub fn fleet() -> Fleet {
    Fleet::parse(DEMO_FLEET_TOML, "demo.toml").unwrap()
}

/// The inventory blade `name` of the demo fleet reports, with its LPARs defined (and activated
/// where the fleet file says so).
pub fn inventory(name: &str) -> Inventory {
    let fleet = fleet();
    let fb = fleet.blade(name).unwrap();
    let blade = fb.blade.clone();
    let mut next_vfc = blade.hvm.vfc_ids.first.get();
    let lpars: Vec<Lpar> = fb
        .lpars
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let number = r.number.unwrap_or_else(|| {
                crate::model::LparNumber::new(u8::try_from(i + 1).unwrap()).unwrap()
            });
            Lpar {
                number,
                name: r.name.clone(),
                status: if r.activate {
                    LparStatus::Activated
                } else {
                    LparStatus::Deactivated
                },
                processors: r.processors,
                memory_mib: r.memory_mib,
                vnics: r
                    .vnics
                    .iter()
                    .enumerate()
                    .map(|(n, v)| Vnic {
                        segment: v.segment,
                        vlan: v.vlan.clone(),
                        mac: MacAddr::logical(
                            blade.hvm.vnic_system_no,
                            number,
                            u8::try_from(n).unwrap(),
                        ),
                    })
                    .collect(),
                vfcs: r
                    .vfcs
                    .iter()
                    .map(|v| {
                        let id = VfcId::new(next_vfc).unwrap();
                        next_vfc += 1;
                        let (wwpn, wwnn, migration_wwpn) =
                            vfc_names(blade.hvm.wwn_pool, id).unwrap();
                        Vfc {
                            port: v.port,
                            vfc_id: id,
                            wwpn,
                            wwnn,
                            migration_wwpn,
                        }
                    })
                    .collect(),
                usb: r.usb,
                options: r.options.clone(),
                workload: r.workload.clone(),
            }
        })
        .collect();
    let used_cpu: u32 = lpars
        .iter()
        .filter(|l| l.status == LparStatus::Activated)
        .map(|l| l.processors.count)
        .sum();
    let used_mem: u64 = lpars
        .iter()
        .filter(|l| l.status == LparStatus::Activated)
        .map(|l| l.memory_mib)
        .sum();
    let used_vfc: u32 = lpars
        .iter()
        .map(|l| u32::try_from(l.vfcs.len()).unwrap())
        .sum();
    let range = u32::from(blade.hvm.vfc_ids.last.get() - blade.hvm.vfc_ids.first.get()) + 1;
    Inventory {
        api_version: "v1".into(),
        resources: Resources {
            processors_total: blade.processors,
            processors_free: blade.processors - used_cpu,
            memory_total_mib: blade.memory_mib,
            memory_free_mib: blade.memory_mib - used_mem,
            vfc_ids_free: range - used_vfc,
            lpar_numbers_free: 60 - u32::try_from(lpars.len()).unwrap(),
        },
        lpars: lpars
            .into_iter()
            .map(|lpar| crate::api::LparView {
                lpar,
                runtime: None,
                fc_logins: Vec::new(),
                fabric: Vec::new(),
                wwn_rollback_pending: false,
            })
            .collect(),
        blade,
        started_at: now() - Duration::hours(2),
        guest_backend: GuestBackend::Soft,
        wwn_rollbacks: Vec::new(),
    }
}

/// Every port linked for an hour.
pub fn ports(blade: &Blade) -> PortStates {
    PortStates {
        taken_at: now(),
        ports: blade
            .cards
            .iter()
            .flat_map(|c| {
                c.ports.iter().map(move |p| PortStatus {
                    kind: c.kind,
                    slot: c.slot,
                    port: p.port,
                    state: LinkState::Linked,
                    since: now() - Duration::hours(1),
                    previous: None,
                })
            })
            .collect(),
    }
}

/// A quiet blade: 10 % CPU, 5 % on every NIC segment.
pub fn load(blade: &Blade) -> LoadFigures {
    LoadFigures {
        cpu_percent: 10.0,
        nic_percent: blade
            .cards
            .iter()
            .filter(|c| c.kind == crate::model::CardKind::Nic)
            .flat_map(|c| {
                c.ports
                    .iter()
                    .map(move |p| (format!("{}{}", c.slot, char::from(b'a' + p.port)), 5.0))
            })
            .collect(),
    }
}

/// What the checks see for demo blade `name`.
pub fn facts(name: &str) -> HvmFacts {
    let inventory = inventory(name);
    HvmFacts {
        load: Ok(load(&inventory.blade)),
        ports: Ok(ports(&inventory.blade)),
        inventory,
    }
}

/// Input for moving `lpar` of demo blade `from` to demo blade `to`.
pub fn input(from: &str, lpar: &str, to: &str, mode: Mode) -> CheckInput {
    let source = facts(from);
    let lpar = source
        .inventory
        .lpars
        .iter()
        .find(|l| l.lpar.name.as_str() == lpar)
        .unwrap()
        .lpar
        .clone();
    CheckInput {
        source,
        lpar,
        destination: facts(to),
        mode,
        dest_number: None,
        processor_group: None,
        storage: StorageFacts::NoArrayRegistered,
        now: now(),
    }
}

/// The standard live move of the tests: web-01 from ch1-b1 to ch1-b2.
pub fn live() -> CheckInput {
    input("ch1-b1", "web-01", "ch1-b2", Mode::ConcurrentMaintenance)
}

/// The same move in Shutdown mode.
pub fn cold() -> CheckInput {
    input("ch1-b1", "web-01", "ch1-b2", Mode::Shutdown)
}
