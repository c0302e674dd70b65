//! Path rows (Concurrent Maintenance only; Shutdown mode has no migration path requirement):
//! configured on both HVMs, a shared NIC port of at least 1 Gbit/s, not colliding with the
//! management path unless it has its own VLAN, unicast IPv4, distinct addresses.

use std::net::Ipv4Addr;

use super::{CheckInput, CheckRow, Group, Rule};
use crate::emg::Emg;
use crate::model::blade::MigrationPath;
use crate::model::{Blade, PortMode};

/// The Path rules.
pub const RULES: &[Rule] = &[Rule {
    name: "migration-path",
    check: migration_path,
}];

/// Least theoretical bandwidth of a migration path, Mbit/s (table 2-9).
pub const MIN_PATH_MBPS: u32 = 1000;

fn show(path: Option<&MigrationPath>) -> String {
    path.map_or("not set".to_owned(), |p| {
        let vlan = p.vlan.map_or(String::new(), |v| format!(" VLAN {v}"));
        format!("{}/{} on {}{vlan}", p.ip, p.prefix, p.segment)
    })
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let bits = u32::from(prefix.min(32));
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(a) & mask == u32::from(b) & mask
}

/// What is wrong with one HVM's path (speed, mode, address, management collision).
fn path_problems(blade: &Blade, path: &MigrationPath) -> (Vec<String>, Option<String>) {
    let mut invalid = Vec::new();
    match blade.nic_port(path.segment) {
        None => invalid.push(format!(
            "{} has no NIC segment {}",
            blade.name, path.segment
        )),
        Some(p) => {
            if p.mode != PortMode::Shared {
                invalid.push(format!("segment {} is not in shared mode", path.segment));
            }
            if p.speed_mbps < MIN_PATH_MBPS {
                invalid.push(format!(
                    "segment {} runs at {} Mbit/s, under 1 Gbit/s",
                    path.segment, p.speed_mbps
                ));
            }
        }
    }
    let ip = path.ip;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || path.prefix > 32 {
        invalid.push(format!(
            "{ip}/{} is not a unicast IPv4 address",
            path.prefix
        ));
    }
    let mgmt = blade.hvm.management;
    let on_mgmt_segment = mgmt.segment == Some(path.segment);
    let on_mgmt_net = ip == mgmt.ip || same_subnet(ip, mgmt.ip, path.prefix);
    let collision = ((on_mgmt_segment || on_mgmt_net) && path.vlan.is_none()).then(|| {
        if on_mgmt_segment {
            format!(
                "{}: segment {} carries the management path",
                blade.name, path.segment
            )
        } else {
            format!(
                "{}: {ip}/{} shares the management network of {}",
                blade.name, path.prefix, mgmt.ip
            )
        }
    });
    (invalid, collision)
}

fn migration_path(i: &CheckInput) -> Vec<CheckRow> {
    let (s, d) = (&i.source.inventory.blade, &i.destination.inventory.blade);
    let (sp, dp) = (
        s.hvm.primary_migration_path(),
        d.hvm.primary_migration_path(),
    );
    let g = Group::Path;
    if !i.live() {
        return vec![
            CheckRow::ok(g, "Migration path", show(sp), show(dp))
                .note("no requirement in Shutdown mode"),
        ];
    }
    let mut rows = Vec::new();
    let configured = CheckRow::ok(g, "Migration path configured", show(sp), show(dp));
    let (Some(sp), Some(dp)) = (sp, dp) else {
        rows.push(match sp {
            None => configured.error(
                Emg::SourcePathMissing,
                format!("no migration path on {}", s.name),
            ),
            Some(_) => configured.error(
                Emg::DestinationPathMissing,
                format!("no migration path on {}", d.name),
            ),
        });
        return rows;
    };
    rows.push(configured);

    let speed = |b: &Blade, p: &MigrationPath| {
        b.nic_port(p.segment).map_or("none".to_owned(), |port| {
            format!("{:?} {} Mbit/s", port.mode, port.speed_mbps)
                .to_lowercase()
                .replace("mbit", "Mbit")
        })
    };
    let (s_invalid, s_collision) = path_problems(s, sp);
    let (d_invalid, d_collision) = path_problems(d, dp);
    let link = CheckRow::ok(
        g,
        "Migration path link (shared, >= 1 Gbit/s, IPv4)",
        speed(s, sp),
        speed(d, dp),
    );
    rows.push(if !s_invalid.is_empty() {
        link.error(Emg::InvalidMigrationPathSrc, s_invalid.join("; "))
    } else if !d_invalid.is_empty() {
        link.error(Emg::InvalidMigrationPathDst, d_invalid.join("; "))
    } else {
        link
    });

    let mgmt = |b: &Blade| format!("management {}", b.hvm.management.ip);
    let collision = CheckRow::ok(
        g,
        "Migration path apart from management path",
        mgmt(s),
        mgmt(d),
    );
    let collisions: Vec<String> = s_collision.into_iter().chain(d_collision).collect();
    rows.push(if collisions.is_empty() {
        collision
    } else {
        collision.error(Emg::PathCollidesWithManagement, collisions.join("; "))
    });

    let distinct = CheckRow::ok(
        g,
        "Migration path addresses distinct",
        sp.ip.to_string(),
        dp.ip.to_string(),
    );
    rows.push(if sp.ip == dp.ip {
        distinct.error(Emg::SameMigrationIp, format!("both HVMs use {}", sp.ip))
    } else {
        distinct
    });
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::Verdict;
    use super::super::testutil::*;
    use super::*;

    fn codes(i: &CheckInput) -> Vec<Option<Emg>> {
        migration_path(i).iter().map(|r| r.code).collect()
    }

    #[test]
    fn demo_paths_pass_and_shutdown_needs_none() {
        assert!(
            migration_path(&live())
                .iter()
                .all(|r| r.verdict == Verdict::Ok)
        );
        let mut i = cold();
        i.source.inventory.blade.hvm.migration_paths.clear();
        let rows = migration_path(&i);
        assert_eq!((rows.len(), rows[0].verdict), (1, Verdict::Ok));
    }

    #[test]
    fn missing_paths() {
        let mut i = live();
        i.destination.inventory.blade.hvm.migration_paths.clear();
        assert_eq!(codes(&i), [Some(Emg::DestinationPathMissing)]);
        i.source.inventory.blade.hvm.migration_paths.clear();
        assert_eq!(codes(&i), [Some(Emg::SourcePathMissing)]);
    }

    #[test]
    fn slow_or_vf_segments_are_invalid() {
        let mut i = live();
        i.source.inventory.blade.hvm.migration_paths[0].segment = "2b".parse().unwrap();
        assert!(codes(&i).contains(&Some(Emg::InvalidMigrationPathSrc)));
        let mut i = live();
        for c in &mut i.destination.inventory.blade.cards {
            if c.slot == 1 {
                c.ports[1].speed_mbps = 100;
            }
        }
        let rows = migration_path(&i);
        let link = rows
            .iter()
            .find(|r| r.code == Some(Emg::InvalidMigrationPathDst))
            .unwrap();
        assert!(link.detail.contains("under 1 Gbit/s"), "{}", link.detail);
    }

    #[test]
    fn management_collision_unless_own_vlan() {
        let mut i = live();
        i.source.inventory.blade.hvm.management.segment = Some("1b".parse().unwrap());
        assert!(codes(&i).contains(&Some(Emg::PathCollidesWithManagement)));
        i.source.inventory.blade.hvm.migration_paths[0].vlan = Some(40);
        assert!(!codes(&i).contains(&Some(Emg::PathCollidesWithManagement)));
        let mut i = live();
        i.destination.inventory.blade.hvm.migration_paths[0].ip = "127.0.1.77".parse().unwrap();
        assert!(
            codes(&i).contains(&Some(Emg::PathCollidesWithManagement)),
            "same /24 as management"
        );
    }

    #[test]
    fn same_address_on_both_sides() {
        let mut i = live();
        i.destination.inventory.blade.hvm.migration_paths[0].ip = "127.0.2.1".parse().unwrap();
        assert!(codes(&i).contains(&Some(Emg::SameMigrationIp)));
        i.destination.inventory.blade.hvm.migration_paths[0].ip = "0.0.0.0".parse().unwrap();
        assert!(codes(&i).contains(&Some(Emg::InvalidMigrationPathDst)));
    }
}
