//! Server rows: the LPAR (name, status, number, resources, USB), the blades (location, model,
//! processors, EFI/BIOS) and the HVMs (firmware, model, time zone, NTP, load).

use std::collections::BTreeSet;

use super::tables;
use super::{CheckInput, CheckRow, Group, Rule};
use crate::emg::Emg;
use crate::model::lpar::UsbState;
use crate::model::{LparName, LparStatus};

/// The Server rules in display order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "lpar-name",
        check: lpar_name,
    },
    Rule {
        name: "lpar-name-free",
        check: lpar_name_free,
    },
    Rule {
        name: "lpar-status",
        check: lpar_status,
    },
    Rule {
        name: "wwn-rollback",
        check: wwn_rollback,
    },
    Rule {
        name: "lpar-number",
        check: lpar_number,
    },
    Rule {
        name: "blade-location",
        check: blade_location,
    },
    Rule {
        name: "blade-model",
        check: blade_model,
    },
    Rule {
        name: "physical-processors",
        check: physical_processors,
    },
    Rule {
        name: "cpu-model",
        check: cpu_model,
    },
    Rule {
        name: "efi-bios-version",
        check: efi_bios_version,
    },
    Rule {
        name: "efi-bios-settings",
        check: efi_bios_settings,
    },
    Rule {
        name: "hvm-firmware",
        check: hvm_firmware,
    },
    Rule {
        name: "hvm-model",
        check: hvm_model,
    },
    Rule {
        name: "time-zone",
        check: time_zone,
    },
    Rule {
        name: "ntp-servers",
        check: ntp_servers,
    },
    Rule {
        name: "free-processors",
        check: free_processors,
    },
    Rule {
        name: "processor-group",
        check: processor_group,
    },
    Rule {
        name: "free-memory",
        check: free_memory,
    },
    Rule {
        name: "usb",
        check: usb,
    },
    Rule {
        name: "cpu-load",
        check: cpu_load,
    },
];

const G: Group = Group::Server;

/// Table 2-8: the LPAR name is not `NO_NAME`. [`LparName`] already refuses the placeholder, so an
/// LPAR that reached the checks passes; the rule stays so the row is shown and the rule is
/// explicit should the model ever carry unnamed LPARs.
fn lpar_name(i: &CheckInput) -> Vec<CheckRow> {
    let name = i.lpar.name.as_str();
    let row = CheckRow::ok(G, "LPAR name", name, name);
    let row = if name.eq_ignore_ascii_case(LparName::PLACEHOLDER) {
        row.error(Emg::LparNameNoName, "the LPAR has no name")
    } else {
        row
    };
    vec![row]
}

/// Table 2-8: no LPAR of the same name on the destination.
fn lpar_name_free(i: &CheckInput) -> Vec<CheckRow> {
    let name = &i.lpar.name;
    let clash = i
        .destination
        .inventory
        .lpars
        .iter()
        .find(|l| l.lpar.name == *name);
    let row = CheckRow::ok(G, "LPAR name unused on destination", name.as_str(), "");
    vec![match clash {
        None => CheckRow {
            destination: "unused".into(),
            ..row
        },
        Some(other) => CheckRow {
            destination: format!("used by LPAR {}", other.lpar.number),
            ..row
        }
        .error(
            Emg::DstSameLparName,
            format!(
                "LPAR {} on {} is already named {name}",
                other.lpar.number,
                i.destination_name()
            ),
        ),
    }]
}

/// Tables 2-11 and 2-72: Activated for Concurrent Maintenance; Deactivated (or Activated and shut
/// down remotely) for Shutdown; never blocked, corrupted or already migrating.
fn lpar_status(i: &CheckInput) -> Vec<CheckRow> {
    let status = i.lpar.status;
    let want = if i.live() {
        "Activated"
    } else {
        "Deactivated (or shut down remotely)"
    };
    let row = CheckRow::ok(G, "LPAR status", status.label(), want);
    let row = match (status, i.live()) {
        (LparStatus::Activated, true) | (LparStatus::Deactivated, false) => row,
        (LparStatus::Deactivated, true) => row.error(
            Emg::LparDeactivated,
            "a live move needs a running guest",
        ),
        (LparStatus::Activated, false) => row.warning(
            Emg::LparActivatedForShutdownMode,
            "the LPAR is running: the migration shuts its guest down remotely first (or deactivate it yourself)",
        ),
        (LparStatus::Migrating, _) => row.error(Emg::LparBusy, "the LPAR is already migrating"),
        (LparStatus::RequiresRecovery | LparStatus::Blocked | LparStatus::WwnRollbackPending, _) => {
            row.error(
                Emg::LparCorruptedNotAccepted,
                format!("the LPAR is {}", status.label()),
            )
        }
    };
    vec![row]
}

/// Ch. 3 "Rolling back WWNs": no LPAR of an HVM with WWNs pending rollback migrates until they
/// are rolled back (the HVMs refuse a live move with the same message). Shown with the HBA rows.
fn wwn_rollback(i: &CheckInput) -> Vec<CheckRow> {
    let describe = |inv: &crate::api::Inventory| match inv.wwn_rollbacks.len() {
        0 => "none pending".to_owned(),
        n => format!(
            "{n} pending ({})",
            inv.wwn_rollbacks
                .iter()
                .map(|m| m.lpar_name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let (src, dst) = (&i.source.inventory, &i.destination.inventory);
    let row = CheckRow::ok(
        Group::Hba,
        "WWNs pending rollback",
        describe(src),
        describe(dst),
    );
    let commands: Vec<String> = [src, dst]
        .iter()
        .flat_map(|inv| {
            inv.wwn_rollbacks
                .iter()
                .map(|m| format!("lparmover rollback-wwn {}/{}", inv.blade.name, m.lpar_name))
        })
        .collect();
    if commands.is_empty() {
        return vec![row];
    }
    vec![row.error(
        Emg::MigrationWwnsInUse,
        format!(
            "a failed live move left WWNs to roll back; run {}",
            commands.join(", then ")
        ),
    )]
}

/// A free LPAR number on the destination: the one asked for, or any (Auto).
fn lpar_number(i: &CheckInput) -> Vec<CheckRow> {
    let dest = &i.destination.inventory;
    let taken = |n| dest.lpars.iter().find(|l| l.lpar.number == n);
    let source = i.lpar.number.to_string();
    vec![match i.dest_number {
        Some(n) => match taken(n) {
            None => CheckRow::ok(G, "Destination LPAR number", source, format!("{n} (free)")),
            Some(other) => {
                CheckRow::ok(G, "Destination LPAR number", source, format!("{n} (taken)")).error(
                    Emg::LparNumberInUse,
                    format!("LPAR {n} on {} is {}", dest.blade.name, other.lpar.name),
                )
            }
        },
        None => match crate::model::LparNumber::all().find(|n| taken(*n).is_none()) {
            Some(n) => CheckRow::ok(G, "Destination LPAR number", source, format!("Auto ({n})")),
            None => CheckRow::ok(G, "Destination LPAR number", source, "Auto (none free)").error(
                Emg::NoFreeLparNumber,
                format!("all LPAR numbers on {} are in use", dest.blade.name),
            ),
        },
    }]
}

fn location(b: &crate::model::Blade) -> String {
    format!("{} slot {} ({})", b.chassis, b.slot, b.name)
}

/// Table 2-9 / 2-12: the source and destination blades differ.
fn blade_location(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let row = CheckRow::ok(G, "Server blade location", location(s), location(d));
    let same = s.name == d.name || (s.chassis == d.chassis && s.slot == d.slot);
    vec![if same {
        row.error(Emg::SameBlade, "source and destination are the same blade")
    } else {
        row
    }]
}

/// Table 2-9: same server blade model.
fn blade_model(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let row = CheckRow::ok(G, "Server blade model", &s.model, &d.model);
    vec![if s.model == d.model {
        row
    } else {
        row.error(
            Emg::BladeTypeMismatch,
            format!("{} vs {}", s.model, d.model),
        )
    }]
}

/// "Number of physical processors must be matched between the source and destination server
/// blades" (both modes' server blade requirements).
fn physical_processors(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let row = CheckRow::ok(
        G,
        "Physical processors",
        s.processors.to_string(),
        d.processors.to_string(),
    );
    vec![if s.processors == d.processors {
        row
    } else {
        row.error(
            Emg::PhysicalProcessorsDiffer,
            format!("{} vs {} processors", s.processors, d.processors),
        )
    }]
}

/// Processor model (CPUID family): must be equal for a live move (the guest keeps its CPUID);
/// a cold move boots afresh, so a difference is a Warning.
fn cpu_model(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let row = CheckRow::ok(G, "Processor model (CPUID)", &s.cpu_model, &d.cpu_model);
    vec![if s.cpu_model == d.cpu_model {
        row
    } else if i.live() {
        row.error(
            Emg::CpuIdMismatch,
            "the running guest would see a different CPUID",
        )
    } else {
        row.warning(
            Emg::CpuIdMismatch,
            "the guest boots on a different processor model on the destination",
        )
    }]
}

/// Table 2-9 EFI/BIOS: full version for Concurrent Maintenance; major version (or a compatible
/// major per tables 2-29 ff.) for Shutdown.
fn efi_bios_version(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let (sv, dv) = (s.efi.version, d.efi.version);
    let row = CheckRow::ok(G, "EFI/BIOS version", sv.to_string(), dv.to_string());
    vec![if sv == dv {
        row
    } else if i.live() {
        row.error(
            Emg::EfiBiosVersionMismatch,
            format!("Concurrent Maintenance needs the same EFI/BIOS version; {sv} vs {dv}"),
        )
    } else if sv.major() == dv.major() {
        row.note(format!(
            "major versions match ({:02}); Shutdown mode needs no more",
            sv.major()
        ))
    } else if tables::efi_majors_compatible(&s.model, sv.major(), dv.major()) {
        row.note(format!(
            "majors {:02} and {:02} are compatible on {} (table 2-29)",
            sv.major(),
            dv.major(),
            s.model
        ))
    } else {
        row.error(
            Emg::EfiBiosVersionMismatch,
            format!(
                "Shutdown mode needs the same (or a compatible) EFI/BIOS major version; {sv} vs {dv}"
            ),
        )
    }]
}

/// Table 2-9 EFI/BIOS: the settings are equal (both modes).
fn efi_bios_settings(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (
        &i.source.inventory.blade.efi.settings,
        &i.destination.inventory.blade.efi.settings,
    );
    let show = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let row = CheckRow::ok(G, "EFI/BIOS settings", show(s), show(d));
    if s == d {
        return vec![row];
    }
    let keys: BTreeSet<&String> = s.keys().chain(d.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| s.get(*k) != d.get(*k))
        .map(|k| {
            format!(
                "{k}: {} vs {}",
                s.get(k).map_or("unset", String::as_str),
                d.get(k).map_or("unset", String::as_str)
            )
        })
        .collect();
    vec![row.error(Emg::EfiBiosSettingsMismatch, differ.join("; "))]
}

/// Table 2-9 HVM: equal firmware versions; different versions only where the model's
/// combination table (tables 2-62 ff. / 2-112 ff.) says they migrate (then a Warning).
fn hvm_firmware(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let (sv, dv) = (s.hvm.firmware, d.hvm.firmware);
    let row = CheckRow::ok(G, "HVM firmware version", sv.to_string(), dv.to_string());
    vec![if sv == dv {
        row
    } else if s.model == d.model
        && let Some(min) = tables::hvm_firmware_floor(&s.model)
        && sv >= min
        && dv >= min
    {
        row.warning(
            Emg::HvmFirmwareMismatch,
            format!(
                "versions differ; {} lists every {min} or higher as compatible, but equal versions are the requirement",
                s.model
            ),
        )
    } else {
        row.error(Emg::HvmFirmwareMismatch, format!("{sv} vs {dv}"))
    }]
}

/// Table 2-9 HVM model: any for Shutdown; Advanced or Enterprise for Concurrent Maintenance.
fn hvm_model(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (
        i.source.inventory.blade.hvm.model,
        i.destination.inventory.blade.hvm.model,
    );
    let row = CheckRow::ok(G, "HVM model", format!("{s:?}"), format!("{d:?}"));
    if !i.live() {
        return vec![row];
    }
    let bad: Vec<String> = [(i.source_name(), s), (i.destination_name(), d)]
        .into_iter()
        .filter(|(_, m)| !m.supports_live_migration())
        .map(|(n, m)| format!("{n} is {m:?}"))
        .collect();
    vec![if bad.is_empty() {
        row
    } else {
        row.error(Emg::HvmModelNotLive, bad.join(", "))
    }]
}

/// Table 2-9: equal HVM system time zones.
fn time_zone(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (
        &i.source.inventory.blade.hvm.time_zone,
        &i.destination.inventory.blade.hvm.time_zone,
    );
    let row = CheckRow::ok(G, "HVM system time zone", s, d);
    vec![if s == d {
        row
    } else {
        row.error(Emg::TimeZoneMismatch, format!("{s} vs {d}"))
    }]
}

/// Table 2-9: when NTP is used, the same NTP servers on both HVMs.
fn ntp_servers(i: &CheckInput) -> Vec<CheckRow> {
    let set = |v: &Vec<String>| -> BTreeSet<String> {
        v.iter().map(|s| s.trim().to_ascii_lowercase()).collect()
    };
    let (sv, dv) = (
        &i.source.inventory.blade.hvm.ntp_servers,
        &i.destination.inventory.blade.hvm.ntp_servers,
    );
    let show = |v: &Vec<String>| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let row = CheckRow::ok(G, "NTP servers", show(sv), show(dv));
    vec![if sv.is_empty() && dv.is_empty() {
        row.note("neither HVM synchronizes with NTP")
    } else if set(sv) == set(dv) {
        row
    } else {
        row.error(
            Emg::NtpServersMismatch,
            format!("{} vs {}", show(sv), show(dv)),
        )
    }]
}

/// Table 2-9 CPU: the LPAR's processors are free on the destination.
fn free_processors(i: &CheckInput) -> Vec<CheckRow> {
    let need = i.lpar.processors.count;
    let free = i.destination.inventory.resources.processors_free;
    let row = CheckRow::ok(
        G,
        "Processors",
        format!("{need} ({:?})", i.lpar.processors.mode),
        format!("{free} free"),
    );
    vec![if free >= need {
        row
    } else {
        row.error(
            Emg::DstNoFreeProcessors,
            format!(
                "the LPAR needs {need}, {} has {free} free",
                i.destination_name()
            ),
        )
    }]
}

/// Chapter 3, "When you select a processor group for the destination LPAR": the destination HVM
/// defines the group (the one asked for, else the LPAR's own), the group has at least as many
/// processors as the LPAR, and enough of them are free.
fn processor_group(i: &CheckInput) -> Vec<CheckRow> {
    let group = i.target_group();
    let need = i.lpar.processors.count;
    let dest = &i.destination.inventory;
    let used: u32 = dest
        .lpars
        .iter()
        .filter(|l| {
            l.lpar.processors.group == group
                && matches!(l.lpar.status, LparStatus::Activated | LparStatus::Migrating)
        })
        .map(|l| l.lpar.processors.count)
        .sum();
    let source = format!("group {} ({need} processors)", i.lpar.processors.group);
    let row = |dest_text: String| CheckRow::ok(G, "Processor group", source.clone(), dest_text);
    let defined = || {
        dest.blade
            .processor_groups()
            .iter()
            .map(|g| format!("{} ({})", g.id, g.processors))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![match dest.blade.group_processors(group) {
        None => row(format!("group {group}: not defined")).error(
            Emg::ProcessorGroupNotDefined,
            format!(
                "{} has no processor group {group}; its groups (processors): {}",
                dest.blade.name,
                defined()
            ),
        ),
        // No groups on the blade: group 0 is the whole blade, the Processors row covers it.
        Some(n) if dest.blade.processor_groups.is_empty() => {
            row(format!("group {group}: all {n} processors"))
                .note("the HVM has no processor groups")
        }
        Some(n) if n < need => row(format!("group {group}: {n} processors")).error(
            Emg::ProcessorGroupTooSmall,
            format!(
                "the LPAR has {need} processors, group {group} on {} has {n}",
                dest.blade.name
            ),
        ),
        Some(n) => {
            let free = n.saturating_sub(used);
            let r = row(format!("group {group}: {n} processors, {free} free"));
            if free >= need {
                r
            } else {
                r.error(
                    Emg::DstNoFreeProcessors,
                    format!(
                        "the LPAR needs {need}, processor group {group} on {} has {free} free",
                        dest.blade.name
                    ),
                )
            }
        }
    }]
}

/// Table 2-9 Memory: the LPAR's memory is free on the destination.
fn free_memory(i: &CheckInput) -> Vec<CheckRow> {
    let need = i.lpar.memory_mib;
    let free = i.destination.inventory.resources.memory_free_mib;
    let row = CheckRow::ok(
        G,
        "Memory",
        format!("{need} MiB"),
        format!("{free} MiB free"),
    );
    vec![if free >= need {
        row
    } else {
        row.error(
            Emg::DstNotEnoughMemory,
            format!(
                "the LPAR needs {need} MiB, {} has {free} MiB free",
                i.destination_name()
            ),
        )
    }]
}

/// A live move needs the USB device detached.
fn usb(i: &CheckInput) -> Vec<CheckRow> {
    let state = i.lpar.usb;
    let row = CheckRow::ok(G, "USB", format!("{state:?}"), "Detached");
    vec![if state == UsbState::Attached && i.live() {
        row.error(Emg::UsbAttached, "detach the USB device before a live move")
    } else {
        row
    }]
}

/// Concurrent Maintenance: CPU over 80 % on either HVM may make the move time out (Warning).
fn cpu_load(i: &CheckInput) -> Vec<CheckRow> {
    if !i.live() {
        return Vec::new();
    }
    let show = |l: &Result<crate::api::LoadFigures, String>| match l {
        Ok(f) => format!("{:.0} %", f.cpu_percent),
        Err(_) => "unknown".into(),
    };
    let row = CheckRow::ok(
        G,
        "CPU load",
        show(&i.source.load),
        show(&i.destination.load),
    );
    let mut high = Vec::new();
    let mut unknown = Vec::new();
    for (name, load) in [
        (i.source_name(), &i.source.load),
        (i.destination_name(), &i.destination.load),
    ] {
        match load {
            Ok(f) if f.cpu_percent > 80.0 => high.push(format!("{name} at {:.0} %", f.cpu_percent)),
            Ok(_) => {}
            Err(e) => unknown.push(format!("{name}: {e}")),
        }
    }
    vec![if !high.is_empty() {
        row.warning(Emg::HighLoad, format!("CPU over 80 %: {}", high.join(", ")))
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

    use super::super::Verdict;
    use super::super::testutil::*;
    use super::*;
    use crate::model::{HvmModel, LparNumber};

    fn one(rule: fn(&CheckInput) -> Vec<CheckRow>, input: &CheckInput) -> CheckRow {
        let rows = rule(input);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        rows.into_iter().next().unwrap()
    }

    #[test]
    fn wwns_pending_rollback_on_either_hvm_are_an_error_in_both_modes() {
        use crate::api::{Role, WwnRollback, WwnRollbackReason};
        for mode in [
            crate::model::Mode::ConcurrentMaintenance,
            crate::model::Mode::Shutdown,
        ] {
            let mut i = input("ch1-b1", "web-01", "ch1-b2", mode);
            let row = one(wwn_rollback, &i);
            assert_eq!(row.verdict, Verdict::Ok);
            assert_eq!(row.source, "none pending");
            let lpar = i.destination.inventory.lpars[0].lpar.clone();
            i.destination.inventory.wwn_rollbacks.push(WwnRollback {
                job: "job-x".into(),
                lpar: lpar.number,
                lpar_name: lpar.name.clone(),
                role: Role::Destination,
                peer: "ch2-b1".into(),
                reason: WwnRollbackReason::SourceUnreachable,
                wwpns: vec![],
                migration_wwpns: vec![],
                marked_at: chrono::Utc::now(),
            });
            let row = one(wwn_rollback, &i);
            assert_eq!(row.verdict, Verdict::Error, "{mode}");
            assert_eq!(row.code, Some(Emg::MigrationWwnsInUse));
            assert!(
                row.detail
                    .contains(&format!("lparmover rollback-wwn ch1-b2/{}", lpar.name)),
                "{}",
                row.detail
            );
            assert!(
                row.destination.starts_with("1 pending"),
                "{}",
                row.destination
            );
        }
    }

    #[test]
    fn name_clash_on_destination_is_an_error() {
        assert_eq!(one(lpar_name_free, &live()).verdict, Verdict::Ok);
        assert_eq!(one(lpar_name, &live()).verdict, Verdict::Ok);
        let i = input("ch1-b1", "web-01", "ch1-b2", crate::model::Mode::Shutdown);
        let mut i = i;
        i.destination.inventory.lpars[0].lpar.name = "web-01".parse().unwrap();
        let row = one(lpar_name_free, &i);
        assert_eq!(row.verdict, Verdict::Error);
        assert_eq!(row.code, Some(Emg::DstSameLparName));
        assert!(row.emg.unwrap().contains("0001ffff"));
    }

    #[test]
    fn status_rules_per_mode() {
        assert_eq!(one(lpar_status, &live()).verdict, Verdict::Ok);
        let row = one(lpar_status, &cold());
        assert_eq!(
            (row.verdict, row.code),
            (Verdict::Warning, Some(Emg::LparActivatedForShutdownMode))
        );
        let mut i = live();
        i.lpar.status = LparStatus::Deactivated;
        assert_eq!(one(lpar_status, &i).code, Some(Emg::LparDeactivated));
        let mut i = cold();
        i.lpar.status = LparStatus::Deactivated;
        assert_eq!(one(lpar_status, &i).verdict, Verdict::Ok);
        i.lpar.status = LparStatus::RequiresRecovery;
        assert_eq!(
            one(lpar_status, &i).code,
            Some(Emg::LparCorruptedNotAccepted)
        );
    }

    #[test]
    fn chosen_number_must_be_free() {
        let mut i = live();
        assert!(one(lpar_number, &i).destination.starts_with("Auto (2)"));
        i.dest_number = Some(LparNumber::new(1).unwrap());
        assert_eq!(one(lpar_number, &i).code, Some(Emg::LparNumberInUse));
        i.dest_number = Some(LparNumber::new(5).unwrap());
        assert_eq!(one(lpar_number, &i).verdict, Verdict::Ok);
    }

    #[test]
    fn same_blade_and_model_rules() {
        assert_eq!(one(blade_location, &live()).verdict, Verdict::Ok);
        let i = input("ch1-b1", "web-01", "ch1-b1", crate::model::Mode::Shutdown);
        assert_eq!(one(blade_location, &i).code, Some(Emg::SameBlade));
        let mut i = live();
        i.destination.inventory.blade.model = "CB520X-B1".into();
        assert_eq!(one(blade_model, &i).code, Some(Emg::BladeTypeMismatch));
        i.destination.inventory.blade.processors = 32;
        assert_eq!(
            one(physical_processors, &i).code,
            Some(Emg::PhysicalProcessorsDiffer)
        );
    }

    #[test]
    fn cpu_model_blocks_only_live_moves() {
        assert_eq!(one(cpu_model, &live()).verdict, Verdict::Ok);
        let mut i = live();
        i.destination.inventory.blade.cpu_model = "Intel Xeon Gold 6130".into();
        assert_eq!(one(cpu_model, &i).verdict, Verdict::Error);
        i.mode = crate::model::Mode::Shutdown;
        assert_eq!(one(cpu_model, &i).verdict, Verdict::Warning);
    }

    #[test]
    fn efi_version_full_for_live_major_for_cold() {
        let live_b1 = input(
            "ch1-b1",
            "web-01",
            "ch2-b1",
            crate::model::Mode::ConcurrentMaintenance,
        );
        let row = one(efi_bios_version, &live_b1);
        assert_eq!(
            (row.verdict, row.source.as_str(), row.destination.as_str()),
            (Verdict::Error, "10-46", "10-40")
        );
        let cold_b1 = input("ch1-b1", "web-01", "ch2-b1", crate::model::Mode::Shutdown);
        let row = one(efi_bios_version, &cold_b1);
        assert_eq!(row.verdict, Verdict::Ok);
        assert!(row.detail.contains("major"));
        let mut i = cold_b1;
        i.destination.inventory.blade.efi.version = "11-00".parse().unwrap();
        assert_eq!(one(efi_bios_version, &i).verdict, Verdict::Error);
        // CB2000 standard blades: EFI 09-xx and 10-xx are compatible (table 2-29).
        i.source.inventory.blade.model = "E55A2".into();
        i.source.inventory.blade.efi.version = "09-20".parse().unwrap();
        i.destination.inventory.blade.efi.version = "10-05".parse().unwrap();
        assert_eq!(one(efi_bios_version, &i).verdict, Verdict::Ok);
    }

    #[test]
    fn efi_settings_must_match() {
        assert_eq!(one(efi_bios_settings, &cold()).verdict, Verdict::Ok);
        let mut i = cold();
        i.destination
            .inventory
            .blade
            .efi
            .settings
            .insert("numa".into(), "disabled".into());
        let row = one(efi_bios_settings, &i);
        assert_eq!(row.code, Some(Emg::EfiBiosSettingsMismatch));
        assert!(
            row.detail.contains("numa: enabled vs disabled"),
            "{}",
            row.detail
        );
    }

    #[test]
    fn hvm_firmware_equal_or_in_the_model_table() {
        assert_eq!(one(hvm_firmware, &live()).verdict, Verdict::Ok);
        let mut i = live();
        i.destination.inventory.blade.hvm.firmware = "02-20".parse().unwrap();
        assert_eq!(
            one(hvm_firmware, &i).verdict,
            Verdict::Warning,
            "CB520H-B3: 02-05+ is compatible"
        );
        i.destination.inventory.blade.hvm.firmware = "02-01".parse().unwrap();
        assert_eq!(one(hvm_firmware, &i).verdict, Verdict::Error);
        i.destination.inventory.blade.hvm.firmware = "03-00".parse().unwrap();
        i.destination.inventory.blade.model = "CB999".into();
        assert_eq!(one(hvm_firmware, &i).verdict, Verdict::Error);
    }

    #[test]
    fn essential_hvm_only_for_cold_moves() {
        let mut i = live();
        i.destination.inventory.blade.hvm.model = HvmModel::Essential;
        assert_eq!(one(hvm_model, &i).code, Some(Emg::HvmModelNotLive));
        i.mode = crate::model::Mode::Shutdown;
        assert_eq!(one(hvm_model, &i).verdict, Verdict::Ok);
    }

    #[test]
    fn time_zone_and_ntp() {
        assert_eq!(one(time_zone, &live()).verdict, Verdict::Ok);
        assert_eq!(one(ntp_servers, &live()).verdict, Verdict::Ok);
        let mut i = live();
        i.destination.inventory.blade.hvm.time_zone = "UTC".into();
        assert_eq!(one(time_zone, &i).code, Some(Emg::TimeZoneMismatch));
        i.destination.inventory.blade.hvm.ntp_servers = vec!["127.0.3.9".into()];
        assert_eq!(one(ntp_servers, &i).code, Some(Emg::NtpServersMismatch));
        i.destination.inventory.blade.hvm.ntp_servers.clear();
        i.source.inventory.blade.hvm.ntp_servers.clear();
        assert_eq!(one(ntp_servers, &i).verdict, Verdict::Ok);
    }

    #[test]
    fn resources_on_destination() {
        assert_eq!(one(free_processors, &live()).verdict, Verdict::Ok);
        assert_eq!(one(free_memory, &live()).verdict, Verdict::Ok);
        let mut i = live();
        i.destination.inventory.resources.processors_free = 1;
        i.destination.inventory.resources.memory_free_mib = 100;
        assert_eq!(
            one(free_processors, &i).code,
            Some(Emg::DstNoFreeProcessors)
        );
        assert_eq!(one(free_memory, &i).code, Some(Emg::DstNotEnoughMemory));
    }

    #[test]
    fn processor_group_must_exist_and_hold_the_lpar() {
        // ch1-b2 of the demo keeps 2 processors in group 1.
        let mut i = cold();
        let row = one(processor_group, &i);
        assert_eq!(row.verdict, Verdict::Ok, "{row:?}");
        assert_eq!(row.destination, "group 0: 14 processors, 12 free");
        i.processor_group = Some(1);
        let row = one(processor_group, &i);
        assert_eq!(
            (row.verdict, row.destination.as_str()),
            (Verdict::Ok, "group 1: 2 processors, 2 free")
        );
        i.processor_group = Some(4);
        let row = one(processor_group, &i);
        assert_eq!(row.code, Some(Emg::ProcessorGroupNotDefined));
        assert!(row.detail.contains("0 (14), 1 (2)"), "{}", row.detail);
        assert!(
            row.emg
                .unwrap()
                .contains("the specified processor group has not been defined")
        );
        i.processor_group = Some(1);
        i.lpar.processors.count = 3;
        assert_eq!(
            one(processor_group, &i).code,
            Some(Emg::ProcessorGroupTooSmall)
        );
        // Without groups on the blade the row only says so (the Processors row checks them).
        let mut i = input("ch1-b2", "app-01", "ch1-b1", crate::model::Mode::Shutdown);
        i.lpar.processors.count = 20;
        let row = one(processor_group, &i);
        assert_eq!(row.verdict, Verdict::Ok, "{row:?}");
        assert_eq!(row.destination, "group 0: all 16 processors");
        i.processor_group = Some(1);
        assert_eq!(
            one(processor_group, &i).code,
            Some(Emg::ProcessorGroupNotDefined)
        );
        // Running LPARs of the group hold its processors.
        let mut i = cold();
        i.processor_group = Some(1);
        i.destination.inventory.lpars[0].lpar.processors.group = 1;
        let row = one(processor_group, &i);
        assert_eq!(row.code, Some(Emg::DstNoFreeProcessors), "{row:?}");
    }

    #[test]
    fn usb_attached_blocks_live_moves() {
        let mut i = live();
        assert_eq!(one(usb, &i).verdict, Verdict::Ok);
        i.lpar.usb = UsbState::Attached;
        assert_eq!(one(usb, &i).code, Some(Emg::UsbAttached));
        i.mode = crate::model::Mode::Shutdown;
        assert_eq!(one(usb, &i).verdict, Verdict::Ok);
    }

    #[test]
    fn busy_cpu_warns_on_live_moves() {
        assert_eq!(one(cpu_load, &live()).verdict, Verdict::Ok);
        assert!(cpu_load(&cold()).is_empty());
        let mut i = live();
        if let Ok(l) = i.destination.load.as_mut() {
            l.cpu_percent = 93.0;
        }
        let row = one(cpu_load, &i);
        assert_eq!(
            (row.verdict, row.code),
            (Verdict::Warning, Some(Emg::HighLoad))
        );
        i.destination.load = Err("timeout".into());
        i.source.load = Err("timeout".into());
        assert_eq!(one(cpu_load, &i).code, Some(Emg::NotChecked));
    }
}
