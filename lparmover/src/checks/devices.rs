//! HBA and NIC rows: cards in the same slots, only shared-mode ports, the LPAR's vFCs and vNICs
//! available on the destination, free vfcIDs, port link states and FC port stability, NIC load.

use std::collections::BTreeSet;

use chrono::Duration;

use super::{CheckInput, CheckRow, Group, Rule, Verdict};
use crate::api::{LinkState, PortStates};
use crate::emg::Emg;
use crate::model::{Blade, CardKind, PciCard, PortMode};

/// The HBA and NIC rules in display order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "fc-cards",
        check: fc_cards,
    },
    Rule {
        name: "vfc-ports",
        check: vfc_ports,
    },
    Rule {
        name: "fc-port-count",
        check: fc_port_count,
    },
    Rule {
        name: "vfc-ids",
        check: vfc_ids,
    },
    Rule {
        name: "fc-device-status",
        check: fc_device_status,
    },
    Rule {
        name: "fc-port-stability",
        check: fc_port_stability,
    },
    Rule {
        name: "nic-cards",
        check: nic_cards,
    },
    Rule {
        name: "vnic-segments",
        check: vnic_segments,
    },
    Rule {
        name: "nic-device-status",
        check: nic_device_status,
    },
    Rule {
        name: "nic-load",
        check: nic_load,
    },
];

/// How long FC port states must stay unchanged before a live move (chapter 5, "Confirming if the
/// states of FC HBA ports are stable").
pub const FC_STABLE_FOR: Duration = Duration::minutes(5);

fn mode_label(mode: PortMode) -> &'static str {
    match mode {
        PortMode::Shared => "shared",
        PortMode::Dedicated => "dedicated",
        PortMode::Vf => "VF",
    }
}

fn card_label(card: Option<&PciCard>) -> String {
    card.map_or_else(
        || "none".to_owned(),
        |c| format!("{}, {} ports", c.model, c.ports.len()),
    )
}

/// Table 2-9 I/O device: every card of `kind` on the source sits in the same slot of the
/// destination with the same model and number of ports. Error when the LPAR uses the card,
/// Warning otherwise (the HVM only fails on cards the LPAR uses).
fn cards(i: &CheckInput, kind: CardKind, used: &BTreeSet<u8>) -> Vec<CheckRow> {
    let (group, what, missing) = match kind {
        CardKind::FcHba => (Group::Hba, "FC HBA card", Emg::FcCardMissing),
        CardKind::Nic => (Group::Nic, "NIC card", Emg::DstNoVnicDevice),
    };
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    s.cards
        .iter()
        .filter(|c| c.kind == kind)
        .map(|sc| {
            let dc = d.card(sc.slot).filter(|c| c.kind == kind);
            let row = CheckRow::ok(
                group,
                format!("{what} slot {}", sc.slot),
                card_label(Some(sc)),
                card_label(dc),
            );
            let in_use = used.contains(&sc.slot);
            let verdict = if in_use {
                Verdict::Error
            } else {
                Verdict::Warning
            };
            let usage = if in_use {
                "the LPAR uses it"
            } else {
                "the LPAR does not use it"
            };
            match dc {
                None => row.with(
                    verdict,
                    if in_use { missing } else { Emg::CardMismatch },
                    format!("no {what} in slot {} of {}; {usage}", sc.slot, d.name),
                ),
                Some(dc) if dc.model != sc.model || dc.ports.len() != sc.ports.len() => row.with(
                    verdict,
                    Emg::CardMismatch,
                    format!("the cards in slot {} differ; {usage}", sc.slot),
                ),
                Some(_) => row,
            }
        })
        .collect()
}

fn fc_cards(i: &CheckInput) -> Vec<CheckRow> {
    let used = i.lpar.vfcs.iter().map(|v| v.port.slot).collect();
    cards(i, CardKind::FcHba, &used)
}

fn nic_cards(i: &CheckInput) -> Vec<CheckRow> {
    let used = i.lpar.vnics.iter().map(|v| v.segment.slot()).collect();
    cards(i, CardKind::Nic, &used)
}

/// Tables 2-8 / 2-10 / 2-71: only shared-mode FC ports; table 2-9: the same FC ports exist, in
/// shared mode, on the destination.
fn vfc_ports(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    i.lpar
        .vfcs
        .iter()
        .map(|v| {
            let sp = s.fc_port(v.port);
            let dp = d.fc_port(v.port);
            let show = |p: Option<&crate::model::CardPort>| {
                p.map_or("none".to_owned(), |p| {
                    format!("{} {} Gbit/s", mode_label(p.mode), p.speed_mbps / 1000)
                })
            };
            let row = CheckRow::ok(
                Group::Hba,
                format!("vFC {} (vfcID {})", v.port, v.vfc_id.get()),
                show(sp),
                show(dp),
            );
            if sp.is_some_and(|p| p.mode != PortMode::Shared) {
                return row.error(
                    Emg::DedicatedDevices,
                    format!("FC port {} is not in shared mode on {}", v.port, s.name),
                );
            }
            match dp {
                None if d
                    .card(v.port.slot)
                    .is_none_or(|c| c.kind != CardKind::FcHba) =>
                {
                    row.error(
                        Emg::FcCardMissing,
                        format!("{} has no FC HBA card in slot {}", d.name, v.port.slot),
                    )
                }
                None => row.error(
                    Emg::DstNoSharedFc,
                    format!("{} has no FC port {}", d.name, v.port),
                ),
                Some(p) if p.mode != PortMode::Shared => row.error(
                    Emg::DstNoSharedFc,
                    format!("FC port {} on {} is {}", v.port, d.name, mode_label(p.mode)),
                ),
                Some(_) => row,
            }
        })
        .collect()
}

/// Table 2-71: under 8 FC ports for Concurrent Maintenance.
fn fc_port_count(i: &CheckInput) -> Vec<CheckRow> {
    if !i.live() {
        return Vec::new();
    }
    let n = i.lpar.vfcs.len();
    let row = CheckRow::ok(Group::Hba, "FC ports assigned", n.to_string(), "under 8");
    vec![if n < 8 {
        row
    } else {
        row.error(Emg::TooManyFcPorts, format!("{n} FC ports assigned"))
    }]
}

/// Table 2-9 FC HBA: as many free vfcIDs on the destination as the LPAR has vFCs.
fn vfc_ids(i: &CheckInput) -> Vec<CheckRow> {
    let need = u32::try_from(i.lpar.vfcs.len()).unwrap_or(u32::MAX);
    let free = i.destination.inventory.resources.vfc_ids_free;
    let row = CheckRow::ok(
        Group::Hba,
        "vfcIDs",
        format!("{need} used"),
        format!("{free} free"),
    );
    vec![if free >= need {
        row
    } else {
        row.error(
            Emg::DstNoFreeVfcId,
            format!(
                "the LPAR needs {need} vfcIDs, {} has {free} free",
                i.destination_name()
            ),
        )
    }]
}

/// Link states of the given ports on one blade, e.g. `3/0 Linked`; the ports not linked.
fn link_states(
    ports: &PortStates,
    kind: CardKind,
    wanted: &BTreeSet<(u8, u8)>,
    name: impl Fn(u8, u8) -> String,
) -> (String, Vec<String>) {
    let mut shown = Vec::new();
    let mut bad = Vec::new();
    for &(slot, port) in wanted {
        let state = ports.port(kind, slot, port).map(|p| p.state);
        let label = state.map_or("absent", LinkState::label);
        shown.push(format!("{} {label}", name(slot, port)));
        if state.is_some_and(|s| s != LinkState::Linked) {
            bad.push(format!("{} {label}", name(slot, port)));
        }
    }
    (shown.join(", "), bad)
}

/// Chapter 5 "State of NIC or FC HBA ports on destination HVM": any port the LPAR uses that is
/// down forbids a live move (the seed's "Device Status" row); for Shutdown mode a Warning.
fn device_status(
    i: &CheckInput,
    group: Group,
    kind: CardKind,
    wanted: &BTreeSet<(u8, u8)>,
    name: impl Fn(u8, u8) -> String + Copy,
) -> Vec<CheckRow> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let side = |facts: &super::HvmFacts| match &facts.ports {
        Ok(p) => Ok(link_states(p, kind, wanted, name)),
        Err(e) => Err(e.clone()),
    };
    let (s, d) = (side(&i.source), side(&i.destination));
    let shown = |r: &Result<(String, Vec<String>), String>| match r {
        Ok((text, _)) => text.clone(),
        Err(_) => "unknown".to_owned(),
    };
    let row = CheckRow::ok(group, "Device status", shown(&s), shown(&d));
    let mut bad = Vec::new();
    let mut unknown = Vec::new();
    for (hvm, r) in [(i.source_name(), &s), (i.destination_name(), &d)] {
        match r {
            Ok((_, down)) if !down.is_empty() => bad.push(format!("{hvm}: {}", down.join(", "))),
            Ok(_) => {}
            Err(e) => unknown.push(format!("{hvm}: {e}")),
        }
    }
    if !bad.is_empty() {
        let verdict = if i.live() {
            Verdict::Error
        } else {
            Verdict::Warning
        };
        return vec![row.with(
            verdict,
            Emg::PortNotLinked,
            format!("not linked: {}", bad.join("; ")),
        )];
    }
    if !unknown.is_empty() {
        return vec![row.warning(
            Emg::NotChecked,
            format!(
                "not checked: port states not available ({})",
                unknown.join("; ")
            ),
        )];
    }
    vec![row]
}

fn fc_device_status(i: &CheckInput) -> Vec<CheckRow> {
    let wanted = i
        .lpar
        .vfcs
        .iter()
        .map(|v| (v.port.slot, v.port.port))
        .collect();
    device_status(i, Group::Hba, CardKind::FcHba, &wanted, |s, p| {
        format!("{s}/{p}")
    })
}

fn segment_name(slot: u8, port: u8) -> String {
    format!("{slot}{}", char::from(b'a'.saturating_add(port)))
}

fn nic_device_status(i: &CheckInput) -> Vec<CheckRow> {
    let wanted = i
        .lpar
        .vnics
        .iter()
        .map(|v| (v.segment.slot(), v.segment.port()))
        .collect();
    device_status(i, Group::Nic, CardKind::Nic, &wanted, segment_name)
}

/// The last FC port change of one blade: when, which port and state, which HVM.
type LastChange = (chrono::DateTime<chrono::Utc>, String, String);

/// When the last FC port change on a blade happened (`None`: no FC ports).
fn last_fc_change(ports: &PortStates) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    ports
        .ports
        .iter()
        .filter(|p| p.kind == CardKind::FcHba)
        .max_by_key(|p| p.since)
        .map(|p| {
            (
                p.since,
                format!("{}/{} {}", p.slot, p.port, p.state.label()),
            )
        })
}

/// Chapter 5: before a live move every FC port of both blades has kept its state for 5 minutes.
/// The seed makes this a confirmation ("wait a while"), not an Error icon, so a recent change is a
/// Warning that says until when to wait; a port that is down is the Device status row's Error.
fn fc_port_stability(i: &CheckInput) -> Vec<CheckRow> {
    if !i.live() {
        return Vec::new();
    }
    let side = |f: &super::HvmFacts, blade: &Blade| match &f.ports {
        Ok(p) => Ok(last_fc_change(p).map(|(t, what)| (t, what, blade.name.clone()))),
        Err(e) => Err(format!("{}: {e}", blade.name)),
    };
    let s = side(&i.source, &i.source.inventory.blade);
    let d = side(&i.destination, &i.destination.inventory.blade);
    let show = |r: &Result<Option<LastChange>, String>| match r {
        Ok(Some((t, _, _))) => format!("last change {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
        Ok(None) => "no FC ports".to_owned(),
        Err(_) => "unknown".to_owned(),
    };
    let row = CheckRow::ok(
        Group::Hba,
        "FC port states stable 5 min",
        show(&s),
        show(&d),
    );
    let mut recent = Vec::new();
    let mut unknown = Vec::new();
    for r in [&s, &d] {
        match r {
            Ok(Some((t, what, hvm))) if i.now - *t < FC_STABLE_FOR => recent.push(format!(
                "{hvm} port {what} since {}; stable from {}",
                t.format("%H:%M:%S"),
                (*t + FC_STABLE_FOR).format("%H:%M:%S UTC")
            )),
            Ok(_) => {}
            Err(e) => unknown.push(e.clone()),
        }
    }
    vec![if !recent.is_empty() {
        row.warning(Emg::FcPortsUnstable, recent.join("; "))
    } else if !unknown.is_empty() {
        row.warning(
            Emg::NotChecked,
            format!(
                "not checked: port states not available ({})",
                unknown.join("; ")
            ),
        )
    } else {
        row
    }]
}

/// Tables 2-8 / 2-10 / 2-71: only shared NIC ports (VF NICs too in Shutdown mode); table 2-9:
/// the same NIC segments available on the destination.
fn vnic_segments(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    i.lpar
        .vnics
        .iter()
        .enumerate()
        .map(|(n, v)| {
            let sp = s.nic_port(v.segment);
            let dp = d.nic_port(v.segment);
            let show = |p: Option<&crate::model::CardPort>| {
                p.map_or("none".to_owned(), |p| {
                    format!("{} {} Mbit/s", mode_label(p.mode), p.speed_mbps)
                })
            };
            let row = CheckRow::ok(
                Group::Nic,
                format!("vNIC {n} segment {}", v.segment),
                show(sp),
                show(dp),
            );
            let source_mode = sp.map(|p| p.mode);
            match source_mode {
                Some(PortMode::Dedicated) => {
                    return row.error(
                        Emg::DedicatedDevices,
                        format!("NIC port {} is dedicated on {}", v.segment, s.name),
                    );
                }
                Some(PortMode::Vf) if i.live() => {
                    return row.error(Emg::VfNicNotLive, format!("{} is a VF NIC", v.segment));
                }
                _ => {}
            }
            match dp {
                None => row.error(
                    Emg::DstNoVnicDevice,
                    format!("{} has no NIC segment {}", d.name, v.segment),
                ),
                Some(p) if Some(p.mode) != source_mode => row.error(
                    Emg::DstNoVnicDevice,
                    format!(
                        "segment {} on {} is {}",
                        v.segment,
                        d.name,
                        mode_label(p.mode)
                    ),
                ),
                Some(_) => row,
            }
        })
        .collect()
}

/// Concurrent Maintenance: a NIC port over 50 % of its bandwidth on either HVM may make the move
/// time out (Warning).
fn nic_load(i: &CheckInput) -> Vec<CheckRow> {
    if !i.live() {
        return Vec::new();
    }
    let busiest = |l: &Result<crate::api::LoadFigures, String>| match l {
        Ok(f) => f
            .nic_percent
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or_else(
                || "no NICs".to_owned(),
                |(s, p)| format!("max {p:.0} % ({s})"),
            ),
        Err(_) => "unknown".to_owned(),
    };
    let row = CheckRow::ok(
        Group::Nic,
        "NIC load",
        busiest(&i.source.load),
        busiest(&i.destination.load),
    );
    let mut high = Vec::new();
    let mut unknown = Vec::new();
    for (hvm, load) in [
        (i.source_name(), &i.source.load),
        (i.destination_name(), &i.destination.load),
    ] {
        match load {
            Ok(f) => high.extend(
                f.nic_percent
                    .iter()
                    .filter(|(_, p)| **p > 50.0)
                    .map(|(s, p)| format!("{hvm} {s} at {p:.0} %")),
            ),
            Err(e) => unknown.push(format!("{hvm}: {e}")),
        }
    }
    vec![if !high.is_empty() {
        row.warning(
            Emg::HighLoad,
            format!("NIC ports over 50 %: {}", high.join(", ")),
        )
    } else if !unknown.is_empty() {
        row.warning(
            Emg::NotChecked,
            format!("not checked: load not available ({})", unknown.join("; ")),
        )
    } else {
        row
    }]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::testutil::*;
    use super::*;
    use crate::model::Mode;

    #[test]
    fn fc_card_missing_in_used_slot_is_an_error() {
        assert!(fc_cards(&live()).iter().all(|r| r.verdict == Verdict::Ok));
        let i = input("ch1-b1", "web-01", "ch2-b2", Mode::Shutdown);
        let rows = fc_cards(&i);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].verdict, rows[0].code),
            (Verdict::Error, Some(Emg::FcCardMissing))
        );
        assert_eq!(rows[0].destination, "none");
        let vfc = vfc_ports(&i);
        assert_eq!(vfc[0].code, Some(Emg::FcCardMissing));
    }

    #[test]
    fn missing_card_the_lpar_does_not_use_is_a_warning() {
        let mut i = input("ch1-b1", "web-01", "ch2-b2", Mode::Shutdown);
        i.lpar.vfcs.clear();
        let rows = fc_cards(&i);
        assert_eq!(
            (rows[0].verdict, rows[0].code),
            (Verdict::Warning, Some(Emg::CardMismatch))
        );
        assert!(vfc_ports(&i).is_empty());
    }

    #[test]
    fn nic_card_differences() {
        assert!(nic_cards(&live()).iter().all(|r| r.verdict == Verdict::Ok));
        let mut i = live();
        i.destination.inventory.blade.cards.retain(|c| c.slot != 1);
        let rows = nic_cards(&i);
        let slot1 = rows.iter().find(|r| r.item == "NIC card slot 1").unwrap();
        assert_eq!(slot1.code, Some(Emg::DstNoVnicDevice));
        assert_eq!(vnic_segments(&i)[0].code, Some(Emg::DstNoVnicDevice));
        let mut i = live();
        i.destination.inventory.blade.cards[1].model = "Broadcom 1Gb 2-port".into();
        let slot2 = nic_cards(&i)
            .into_iter()
            .find(|r| r.item == "NIC card slot 2")
            .unwrap();
        assert_eq!(
            (slot2.verdict, slot2.code),
            (Verdict::Warning, Some(Emg::CardMismatch))
        );
    }

    #[test]
    fn only_shared_ports_and_vf_only_when_cold() {
        assert!(
            vnic_segments(&live())
                .iter()
                .all(|r| r.verdict == Verdict::Ok)
        );
        let mut i = live();
        i.lpar.vnics[0].segment = "1d".parse().unwrap();
        assert_eq!(vnic_segments(&i)[0].code, Some(Emg::DedicatedDevices));
        i.lpar.vnics[0].segment = "2b".parse().unwrap();
        assert_eq!(vnic_segments(&i)[0].code, Some(Emg::VfNicNotLive));
        i.mode = Mode::Shutdown;
        assert_eq!(vnic_segments(&i)[0].verdict, Verdict::Ok);
        let mut i = live();
        for c in &mut i.source.inventory.blade.cards {
            if c.slot == 3 {
                c.ports[0].mode = PortMode::Dedicated;
            }
        }
        assert_eq!(vfc_ports(&i)[0].code, Some(Emg::DedicatedDevices));
    }

    #[test]
    fn eight_fc_ports_block_live_moves() {
        let mut i = live();
        assert_eq!(fc_port_count(&i)[0].verdict, Verdict::Ok);
        let v = i.lpar.vfcs[0].clone();
        i.lpar.vfcs = vec![v; 8];
        assert_eq!(fc_port_count(&i)[0].code, Some(Emg::TooManyFcPorts));
        i.mode = Mode::Shutdown;
        assert!(fc_port_count(&i).is_empty());
    }

    #[test]
    fn free_vfc_ids_on_destination() {
        let mut i = live();
        assert_eq!(vfc_ids(&i)[0].verdict, Verdict::Ok);
        i.destination.inventory.resources.vfc_ids_free = 0;
        assert_eq!(vfc_ids(&i)[0].code, Some(Emg::DstNoFreeVfcId));
    }

    fn set_state(
        ports: &mut Result<PortStates, String>,
        kind: CardKind,
        slot: u8,
        port: u8,
        state: LinkState,
        since: chrono::DateTime<chrono::Utc>,
    ) {
        let ports = ports.as_mut().unwrap();
        let p = ports
            .ports
            .iter_mut()
            .find(|p| p.kind == kind && p.slot == slot && p.port == port)
            .unwrap();
        p.previous = Some(p.state);
        p.state = state;
        p.since = since;
    }

    #[test]
    fn a_down_port_blocks_live_moves_and_warns_cold_ones() {
        assert_eq!(fc_device_status(&live())[0].verdict, Verdict::Ok);
        assert_eq!(nic_device_status(&live())[0].verdict, Verdict::Ok);
        let mut i = live();
        set_state(
            &mut i.destination.ports,
            CardKind::FcHba,
            3,
            0,
            LinkState::Down,
            now(),
        );
        set_state(
            &mut i.destination.ports,
            CardKind::Nic,
            1,
            0,
            LinkState::Down,
            now(),
        );
        let row = &fc_device_status(&i)[0];
        assert_eq!(
            (row.verdict, row.code),
            (Verdict::Error, Some(Emg::PortNotLinked))
        );
        assert!(row.detail.contains("3/0 Down"), "{}", row.detail);
        assert!(nic_device_status(&i)[0].detail.contains("1a Down"));
        i.mode = Mode::Shutdown;
        assert_eq!(fc_device_status(&i)[0].verdict, Verdict::Warning);
        i.destination.ports = Err("route not found".into());
        assert_eq!(fc_device_status(&i)[0].code, Some(Emg::NotChecked));
    }

    #[test]
    fn fc_ports_must_be_stable_for_five_minutes() {
        assert_eq!(fc_port_stability(&live())[0].verdict, Verdict::Ok);
        assert!(fc_port_stability(&cold()).is_empty());
        let mut i = live();
        // An unused FC port of the destination flapped two minutes ago: still unstable.
        set_state(
            &mut i.destination.ports,
            CardKind::FcHba,
            3,
            1,
            LinkState::Linked,
            now() - Duration::minutes(2),
        );
        let row = &fc_port_stability(&i)[0];
        assert_eq!(
            (row.verdict, row.code),
            (Verdict::Warning, Some(Emg::FcPortsUnstable))
        );
        assert!(
            row.detail.contains("stable from 02:03:00 UTC"),
            "{}",
            row.detail
        );
        set_state(
            &mut i.destination.ports,
            CardKind::FcHba,
            3,
            1,
            LinkState::Linked,
            now() - Duration::minutes(6),
        );
        assert_eq!(fc_port_stability(&i)[0].verdict, Verdict::Ok);
    }

    #[test]
    fn busy_nic_warns_on_live_moves() {
        assert_eq!(nic_load(&live())[0].verdict, Verdict::Ok);
        let mut i = live();
        i.source
            .load
            .as_mut()
            .unwrap()
            .nic_percent
            .insert("1b".into(), 72.0);
        let row = &nic_load(&i)[0];
        assert_eq!(
            (row.verdict, row.code),
            (Verdict::Warning, Some(Emg::HighLoad))
        );
        assert!(row.detail.contains("ch1-b1 1b at 72 %"));
        assert!(nic_load(&cold()).is_empty());
    }
}
