//! Text rendering of fleet and LPAR views for people.

use std::fmt::Write;

use lparmover::api::LparView;
use lparmover::fleetview::FleetSnapshot;
use lparmover::model::lpar::Vlan;

fn vlan(v: &Vlan) -> String {
    match v {
        Vlan::Untag { id } => format!("untag {id}"),
        Vlan::Tag { ids } => format!(
            "tag {}",
            ids.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        ),
        Vlan::Undef => "undef".into(),
    }
}

/// The fleet as a tree: chassis → blade → LPARs.
pub fn fleet(snapshot: &FleetSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Fleet {}", snapshot.fleet);
    let mut chassis: Vec<&str> = snapshot.hvms.iter().map(|h| h.chassis.as_str()).collect();
    chassis.dedup();
    for ch in chassis {
        let _ = writeln!(out, "Chassis {ch}");
        for hvm in snapshot.hvms.iter().filter(|h| h.chassis == ch) {
            match (&hvm.inventory, &hvm.error) {
                (Some(inv), _) => {
                    let b = &inv.blade;
                    let r = &inv.resources;
                    let _ = writeln!(
                        out,
                        "  Blade {:<8} slot {}  {}  EFI {}  HVM {} {:?}  {}  CPU {}/{} free  mem {}/{} MiB free  vfcIDs {} free",
                        b.name,
                        b.slot,
                        b.model,
                        b.efi.version,
                        b.hvm.firmware,
                        b.hvm.model,
                        hvm.url,
                        r.processors_free,
                        r.processors_total,
                        r.memory_free_mib,
                        r.memory_total_mib,
                        r.vfc_ids_free
                    );
                    if !b.processor_groups.is_empty() {
                        let groups: Vec<String> = b
                            .processor_groups()
                            .iter()
                            .map(|g| format!("{} ({} CPU)", g.id, g.processors))
                            .collect();
                        let _ = writeln!(out, "    processor groups {}", groups.join(", "));
                    }
                    if inv.lpars.is_empty() {
                        let _ = writeln!(out, "    (no LPARs)");
                    }
                    for view in &inv.lpars {
                        let l = &view.lpar;
                        let guest = view.runtime.as_ref().map_or(String::new(), |rt| {
                            format!(
                                "  guest {:?} heartbeat {}",
                                rt.backend, rt.heartbeat.counter
                            )
                        });
                        let group = match l.processors.group {
                            0 => String::new(),
                            g => format!(" (group {g})"),
                        };
                        let _ = writeln!(
                            out,
                            "    LPAR {:>2} {:<10} {:<20} {} CPU{group}  {:>6} MiB  {} vNIC  {} vFC{}",
                            l.number,
                            l.name.as_str(),
                            view.shown_status().label(),
                            l.processors.count,
                            l.memory_mib,
                            l.vnics.len(),
                            l.vfcs.len(),
                            guest
                        );
                    }
                }
                (None, Some(err)) => {
                    let _ = writeln!(out, "  Blade {:<8} UNREACHABLE  {}", hvm.name, err);
                }
                (None, None) => {}
            }
        }
    }
    let _ = writeln!(
        out,
        "LPARs requiring recovery: {} LPARs",
        snapshot.lpars_requiring_recovery
    );
    let _ = writeln!(
        out,
        "LPARs with WWNs pending rollback: {} LPARs",
        snapshot.lpars_with_wwns_pending_rollback
    );
    out
}

/// One LPAR in detail.
pub fn lpar(hvm: &str, view: &LparView) -> String {
    let l = &view.lpar;
    let mut out = String::new();
    let _ = writeln!(out, "LPAR {} ({}) on HVM {hvm}", l.number, l.name);
    let _ = writeln!(out, "  status      {}", view.shown_status().label());
    let _ = writeln!(
        out,
        "  processors  {} {:?}, service ratio {}, group {}",
        l.processors.count, l.processors.mode, l.processors.service_ratio, l.processors.group
    );
    let _ = writeln!(out, "  memory      {} MiB", l.memory_mib);
    for (i, v) in l.vnics.iter().enumerate() {
        let _ = writeln!(
            out,
            "  vNIC {i}      segment {}  VLAN {}  MAC {}",
            v.segment,
            vlan(&v.vlan),
            v.mac
        );
    }
    for v in &l.vfcs {
        let _ = writeln!(
            out,
            "  vFC {:<3}     port {}  WWPN {}  WWNN {}  migration WWPN {}",
            v.vfc_id.get(),
            v.port,
            v.wwpn,
            v.wwnn,
            v.migration_wwpn
        );
    }
    let _ = writeln!(out, "  USB         {:?}", l.usb);
    let w = &l.workload;
    let _ = writeln!(
        out,
        "  workload    dirty {} MB/s over {} MiB, content {}/{}/{} % zero/text/pointer, seed {}",
        w.dirty_rate_mbps,
        w.working_set_mib,
        w.mix.zero(),
        w.mix.text(),
        w.mix.pointer(),
        w.seed
    );
    if let Some(rt) = &view.runtime {
        let _ = writeln!(
            out,
            "  guest       {:?}, heartbeat {} (tsc {}), dirtying {:.1} MB/s",
            rt.backend, rt.heartbeat.counter, rt.heartbeat.tsc, rt.achieved_dirty_mbps
        );
    }
    out
}
