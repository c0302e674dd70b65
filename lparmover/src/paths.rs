//! Migration Path Setting (the seed's window of that name, ch. 3 "Prerequisite Setting"): per
//! HVM a list of migration paths, each with a name, primary use, NIC segment, IPv4 address,
//! subnet prefix and optional VLAN.
//!
//! - [`validate`] is the one rule set: the HVM applies it to every `PUT /v1/migration-paths`
//!   before it writes anything, and a client (the navigator) may call it on the blade of an
//!   inventory to mark a wrong field before saving.
//! - [`list`], [`set_path`] and [`remove_path`] are the read–modify–write workflow the CLI
//!   (`lparmover path …`) and the navigator share: take a blade lease, read the HVM's list, change
//!   one path, write the whole list back with the lease, release the lease.
//!
//! The HVM's migration endpoint and its Connectivity Test probe listen on the **primary** path
//! ([`crate::model::HvmConfig::primary_migration_path`]); a changed list takes effect for the
//! next move without a restart (the blade rebinds its migration listener). The profile's
//! `migration_paths` addresses, written by `hvmsim fleet` at start, are informational only: the
//! inventory is what checks and moves read.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde::Serialize;

use crate::api::{
    ClientError, HvmClient, LockRequest, LockTarget, MigrationPaths, SetMigrationPaths,
};
use crate::emg::{Emg, EmgError};
use crate::model::{Blade, FleetNetwork, MigrationPath, NicSegment, PortMode};

/// Most paths one HVM holds.
pub const MAX_PATHS: usize = 16;
/// Longest path name, in characters.
pub const MAX_NAME_LEN: usize = 32;
/// Prefix lengths a migration path may have (a /31 or /32 leaves no peer on the subnet).
pub const PREFIX_RANGE: RangeInclusive<u8> = 8..=30;
/// VLAN IDs a migration path may be tagged with.
pub const VLAN_RANGE: RangeInclusive<u16> = 1..=4094;

/// Which field of the Migration Path List a problem is in (for a window to mark it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathField {
    /// The list as a whole (too many paths).
    List,
    /// Name column.
    Name,
    /// Primary Use column.
    Primary,
    /// Segment column.
    Segment,
    /// IP address column.
    Ip,
    /// Subnet mask column.
    Prefix,
    /// VLAN ID column.
    Vlan,
}

/// Why a migration path list is refused; each message names the path, the value and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathSettingError {
    /// More paths than [`MAX_PATHS`].
    #[error("{count} migration paths given; an HVM holds at most {MAX_PATHS}, remove some")]
    TooMany { count: usize },
    /// A path without a name.
    #[error("migration path #{index} has no name; give every path a name")]
    EmptyName { index: usize },
    /// A name over [`MAX_NAME_LEN`] characters.
    #[error("migration path name {name:?} is longer than {MAX_NAME_LEN} characters; shorten it")]
    NameTooLong { name: String },
    /// A name with characters other than letters, digits, '-', '_' and '.'.
    #[error(
        "migration path name {name:?} may only contain letters, digits, '-', '_' and '.'; rename it"
    )]
    NameCharacters { name: String },
    /// Two paths with the same name (ignoring case).
    #[error("two migration paths are named {name:?}; names must be unique on an HVM")]
    DuplicateName { name: String },
    /// A non-empty list without a primary path.
    #[error("no migration path is marked for primary use; mark exactly one")]
    NoPrimary,
    /// More than one primary path.
    #[error("migration paths {names} are all marked for primary use; mark exactly one")]
    SeveralPrimaries { names: String },
    /// A segment the blade has no NIC port for.
    #[error(
        "migration path {name:?}: blade {blade} has no NIC segment {segment}; choose one of its shared NIC segments ({available})"
    )]
    UnknownSegment {
        name: String,
        blade: String,
        segment: NicSegment,
        available: String,
    },
    /// A segment on a NIC port that is not in shared mode.
    #[error(
        "migration path {name:?}: NIC segment {segment} is in {mode} mode; a migration path needs a shared-mode port ({available})"
    )]
    SegmentNotShared {
        name: String,
        segment: NicSegment,
        mode: String,
        available: String,
    },
    /// An address outside what the HVM's network allows (loopback for simulated blades).
    #[error(
        "migration path {name:?}: {ip} is not in {range}; simulated blades only use addresses there"
    )]
    AddressNotAllowed {
        name: String,
        ip: Ipv4Addr,
        range: &'static str,
    },
    /// The address of the management path.
    #[error(
        "migration path {name:?}: {ip} is the management address of the HVM; use another address"
    )]
    ManagementAddress { name: String, ip: Ipv4Addr },
    /// The network or broadcast address of the path's subnet.
    #[error(
        "migration path {name:?}: {ip} is the network or broadcast address of its /{prefix} subnet; use a host address"
    )]
    NotAHostAddress {
        name: String,
        ip: Ipv4Addr,
        prefix: u8,
    },
    /// Two paths with one address.
    #[error(
        "migration paths {first:?} and {second:?} both use {ip}; every path needs its own address"
    )]
    DuplicateAddress {
        first: String,
        second: String,
        ip: Ipv4Addr,
    },
    /// A prefix outside [`PREFIX_RANGE`].
    #[error("migration path {name:?}: prefix /{prefix} is not between /8 and /30")]
    Prefix { name: String, prefix: u8 },
    /// A VLAN ID outside [`VLAN_RANGE`].
    #[error(
        "migration path {name:?}: VLAN {vlan} is not between 1 and 4094; leave it out for no VLAN"
    )]
    Vlan { name: String, vlan: u16 },
    /// Untagged on the management segment or network (the seed's F00D collision).
    #[error("migration path {name:?}: {why}")]
    CollidesWithManagement { name: String, why: String },
}

impl PathSettingError {
    /// The field the problem is in.
    pub fn field(&self) -> PathField {
        match self {
            Self::TooMany { .. } => PathField::List,
            Self::EmptyName { .. }
            | Self::NameTooLong { .. }
            | Self::NameCharacters { .. }
            | Self::DuplicateName { .. } => PathField::Name,
            Self::NoPrimary | Self::SeveralPrimaries { .. } => PathField::Primary,
            Self::UnknownSegment { .. } | Self::SegmentNotShared { .. } => PathField::Segment,
            Self::AddressNotAllowed { .. }
            | Self::ManagementAddress { .. }
            | Self::NotAHostAddress { .. }
            | Self::DuplicateAddress { .. } => PathField::Ip,
            Self::Prefix { .. } => PathField::Prefix,
            Self::Vlan { .. } | Self::CollidesWithManagement { .. } => PathField::Vlan,
        }
    }

    /// The catalogue row: the seed's collision message for a management collision, the
    /// Migration Path Setting row for everything else.
    pub fn kind(&self) -> Emg {
        match self {
            Self::CollidesWithManagement { .. } => Emg::PathCollidesWithManagement,
            _ => Emg::InvalidMigrationPathSetting,
        }
    }

    /// As a catalogue error.
    pub fn emg(&self) -> EmgError {
        EmgError::new(self.kind(), self.to_string())
    }
}

fn mask(prefix: u8) -> u32 {
    let bits = u32::from(prefix.min(32));
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    }
}

fn shared_segments(blade: &Blade) -> String {
    let list: Vec<String> = blade
        .cards
        .iter()
        .filter(|c| c.kind == crate::model::CardKind::Nic)
        .flat_map(|c| {
            c.ports
                .iter()
                .filter(|p| p.mode == PortMode::Shared)
                .filter_map(move |p| NicSegment::new(c.slot, p.port).ok())
        })
        .map(|s| s.to_string())
        .collect();
    if list.is_empty() {
        "it has none".to_owned()
    } else {
        list.join(", ")
    }
}

fn check_name(index: usize, name: &str) -> Result<(), PathSettingError> {
    if name.trim().is_empty() {
        return Err(PathSettingError::EmptyName { index: index + 1 });
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(PathSettingError::NameTooLong {
            name: name.chars().take(MAX_NAME_LEN).collect::<String>() + "…",
        });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(PathSettingError::NameCharacters {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Checks a whole migration path list for `blade` (its cards and management path) on `network`;
/// the first problem found is returned. An empty list is valid: the HVM then has no migration
/// path and takes part in no live move (the checks say so).
pub fn validate(
    blade: &Blade,
    paths: &[MigrationPath],
    network: FleetNetwork,
) -> Result<(), PathSettingError> {
    if paths.len() > MAX_PATHS {
        return Err(PathSettingError::TooMany { count: paths.len() });
    }
    let mgmt = blade.hvm.management;
    for (i, p) in paths.iter().enumerate() {
        check_name(i, &p.name)?;
        let name = p.name.clone();
        if let Some(first) = paths[..i]
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(&p.name))
        {
            return Err(PathSettingError::DuplicateName {
                name: first.name.clone(),
            });
        }
        match blade.nic_port(p.segment) {
            None => {
                return Err(PathSettingError::UnknownSegment {
                    name,
                    blade: blade.name.clone(),
                    segment: p.segment,
                    available: shared_segments(blade),
                });
            }
            Some(port) if port.mode != PortMode::Shared => {
                return Err(PathSettingError::SegmentNotShared {
                    name,
                    segment: p.segment,
                    mode: format!("{:?}", port.mode).to_lowercase(),
                    available: format!("shared: {}", shared_segments(blade)),
                });
            }
            Some(_) => {}
        }
        if !PREFIX_RANGE.contains(&p.prefix) {
            return Err(PathSettingError::Prefix {
                name,
                prefix: p.prefix,
            });
        }
        if let Some(vlan) = p.vlan
            && !VLAN_RANGE.contains(&vlan)
        {
            return Err(PathSettingError::Vlan { name, vlan });
        }
        if !network.allows(p.ip) {
            return Err(PathSettingError::AddressNotAllowed {
                name,
                ip: p.ip,
                range: network.range(),
            });
        }
        if p.ip == mgmt.ip {
            return Err(PathSettingError::ManagementAddress { name, ip: p.ip });
        }
        let m = mask(p.prefix);
        let host = u32::from(p.ip) & !m;
        if host == 0 || host == !m {
            return Err(PathSettingError::NotAHostAddress {
                name,
                ip: p.ip,
                prefix: p.prefix,
            });
        }
        if let Some(first) = paths[..i].iter().find(|q| q.ip == p.ip) {
            return Err(PathSettingError::DuplicateAddress {
                first: first.name.clone(),
                second: name,
                ip: p.ip,
            });
        }
        if p.vlan.is_none() {
            let why = if mgmt.segment == Some(p.segment) {
                Some(format!(
                    "segment {} carries the management path; give the migration path its own VLAN or use another shared segment",
                    p.segment
                ))
            } else if u32::from(p.ip) & m == u32::from(mgmt.ip) & m {
                Some(format!(
                    "{}/{} shares the management network of {}; give the migration path its own VLAN or an address outside that subnet",
                    p.ip, p.prefix, mgmt.ip
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(PathSettingError::CollidesWithManagement { name, why });
            }
        }
    }
    let primaries: Vec<&str> = paths
        .iter()
        .filter(|p| p.primary)
        .map(|p| p.name.as_str())
        .collect();
    match primaries.len() {
        0 if !paths.is_empty() => Err(PathSettingError::NoPrimary),
        0 | 1 => Ok(()),
        _ => Err(PathSettingError::SeveralPrimaries {
            names: primaries.join(", "),
        }),
    }
}

/// `current` with `path` added, or replacing the path of the same name (ignoring case). The
/// primary use moves only by marking a path primary: `path.primary` clears it on every other
/// path; a replaced primary path stays primary; the first path of an empty list is primary.
pub fn with_path(current: &[MigrationPath], mut path: MigrationPath) -> Vec<MigrationPath> {
    let mut paths = current.to_vec();
    let existing = paths
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case(&path.name));
    if let Some(i) = existing
        && paths[i].primary
    {
        path.primary = true;
    }
    if path.primary {
        paths.iter_mut().for_each(|p| p.primary = false);
    }
    match existing {
        Some(i) => paths[i] = path,
        None => paths.push(path),
    }
    if !paths.iter().any(|p| p.primary)
        && let Some(first) = paths.first_mut()
    {
        first.primary = true;
    }
    paths
}

/// `current` without the path named `name` (ignoring case). The primary path goes only when it
/// is the last one: mark another path primary first.
pub fn without_path(
    current: &[MigrationPath],
    name: &str,
) -> Result<Vec<MigrationPath>, RemoveError> {
    let Some(i) = current
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case(name))
    else {
        return Err(RemoveError::NotFound {
            name: name.to_owned(),
            known: names(current),
        });
    };
    if current[i].primary && current.len() > 1 {
        return Err(RemoveError::Primary {
            name: current[i].name.clone(),
        });
    }
    let mut paths = current.to_vec();
    paths.remove(i);
    Ok(paths)
}

fn names(paths: &[MigrationPath]) -> String {
    if paths.is_empty() {
        "it has none".to_owned()
    } else {
        paths
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a path cannot be removed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// No path of that name.
    #[error("no migration path named {name:?} (paths: {known})")]
    NotFound { name: String, known: String },
    /// The primary path while others remain.
    #[error(
        "{name:?} is the primary migration path; mark another path primary first (`lparmover path set … --primary`)"
    )]
    Primary { name: String },
}

/// A failed Migration Path Setting workflow.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// The HVM could not be reached or refused (validation errors come back as
    /// [`Emg::InvalidMigrationPathSetting`] or [`Emg::PathCollidesWithManagement`]).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The path to remove is not there, or is the primary one.
    #[error("HVM {hvm}: {source}")]
    Remove {
        hvm: String,
        #[source]
        source: RemoveError,
    },
}

impl PathsError {
    /// The catalogue error behind this failure.
    pub fn emg(&self) -> EmgError {
        match self {
            Self::Client(e) => e.emg(),
            Self::Remove { source, .. } => {
                EmgError::new(Emg::InvalidMigrationPathSetting, source.to_string())
            }
        }
    }
}

/// How long the workflow holds the blade lease (it needs two calls).
const LEASE_SECS: u64 = 30;

/// The HVM's migration paths.
pub async fn list(client: &HvmClient) -> Result<MigrationPaths, PathsError> {
    Ok(client.migration_paths().await?)
}

/// Runs `change` on the HVM's list under a blade lease and writes the result back; the lease is
/// released whatever happens (it also runs out by itself after [`LEASE_SECS`]).
async fn edit(
    client: &HvmClient,
    owner: &str,
    change: impl FnOnce(&[MigrationPath]) -> Result<Vec<MigrationPath>, PathsError>,
) -> Result<MigrationPaths, PathsError> {
    let lease = client
        .lock(&LockRequest {
            target: LockTarget::Blade,
            owner: owner.to_owned(),
            purpose: "Migration Path Setting".to_owned(),
            ttl_secs: LEASE_SECS,
        })
        .await?;
    let result = async {
        let current = client.migration_paths().await?;
        let paths = change(&current.paths)?;
        Ok(client
            .set_migration_paths(&SetMigrationPaths { paths }, Some(&lease.id))
            .await?)
    }
    .await;
    if let Err(e) = client.unlock(&lease.id).await {
        tracing::warn!(hvm = client.name(), error = %e, "lease not released; it runs out by itself");
    }
    result
}

/// Adds `path` to the HVM's list, or replaces the path of the same name ([`with_path`]), under a
/// blade lease held by `owner` (e.g. "navigator@host"). Returns the list the HVM stored.
pub async fn set_path(
    client: &HvmClient,
    owner: &str,
    path: MigrationPath,
) -> Result<MigrationPaths, PathsError> {
    tracing::info!(hvm = client.name(), path = %path.name, ip = %path.ip, "setting migration path");
    edit(client, owner, |current| Ok(with_path(current, path))).await
}

/// Removes the path named `name` ([`without_path`]) under a blade lease held by `owner`.
pub async fn remove_path(
    client: &HvmClient,
    owner: &str,
    name: &str,
) -> Result<MigrationPaths, PathsError> {
    tracing::info!(hvm = client.name(), path = name, "removing migration path");
    edit(client, owner, |current| {
        without_path(current, name).map_err(|source| PathsError::Remove {
            hvm: client.name().to_owned(),
            source,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Fleet;
    use crate::model::fleet::DEMO_FLEET_TOML;

    fn blade() -> Blade {
        let mut b = Fleet::parse(DEMO_FLEET_TOML, "demo.toml").unwrap().blades[0]
            .blade
            .clone();
        b.hvm.management.segment = Some("1a".parse().unwrap());
        b
    }

    fn path(name: &str, segment: &str, ip: &str, prefix: u8) -> MigrationPath {
        MigrationPath {
            name: name.to_owned(),
            primary: false,
            segment: segment.parse().unwrap(),
            ip: ip.parse().unwrap(),
            prefix,
            vlan: None,
        }
    }

    fn good() -> Vec<MigrationPath> {
        let mut a = path("mig-a", "1b", "127.0.2.1", 24);
        a.primary = true;
        vec![a, path("mig-b", "1c", "127.0.4.1", 24)]
    }

    fn refused(change: impl FnOnce(&mut Vec<MigrationPath>)) -> PathSettingError {
        let mut paths = good();
        change(&mut paths);
        validate(&blade(), &paths, FleetNetwork::Loopback).unwrap_err()
    }

    #[test]
    fn the_demo_paths_and_an_empty_list_are_valid() {
        let b = blade();
        validate(&b, &good(), FleetNetwork::Loopback).unwrap();
        validate(&b, &b.hvm.migration_paths, FleetNetwork::Loopback).unwrap();
        validate(&b, &[], FleetNetwork::Loopback).unwrap();
        assert_eq!(
            b.hvm.migration_paths[0].name, "mig-1b",
            "named by the fleet loader"
        );
        assert!(b.hvm.migration_paths[0].primary);
    }

    #[test]
    fn every_invalid_field_is_refused_with_its_field() {
        use PathField::*;
        let cases: Vec<(PathSettingError, PathField, &str)> =
            vec![
                (refused(|p| p[1].name = String::new()), Name, "has no name"),
                (
                    refused(|p| p[1].name = "x".repeat(33)),
                    Name,
                    "longer than 32",
                ),
                (
                    refused(|p| p[1].name = "a b".into()),
                    Name,
                    "may only contain",
                ),
                (
                    refused(|p| p[1].name = "MIG-A".into()),
                    Name,
                    "named \"mig-a\"",
                ),
                (
                    refused(|p| p[0].primary = false),
                    Primary,
                    "no migration path is marked",
                ),
                (refused(|p| p[1].primary = true), Primary, "mig-a, mig-b"),
                (
                    refused(|p| p[1].segment = "4a".parse().unwrap()),
                    Segment,
                    "no NIC segment 4a",
                ),
                (
                    refused(|p| p[1].segment = "1d".parse().unwrap()),
                    Segment,
                    "dedicated mode",
                ),
                (
                    refused(|p| p[1].segment = "2b".parse().unwrap()),
                    Segment,
                    "vf mode",
                ),
                (
                    refused(|p| p[1].ip = "10.0.0.1".parse().unwrap()),
                    Ip,
                    "not in 127.0.0.0/8",
                ),
                (
                    refused(|p| p[1].ip = "127.0.1.1".parse().unwrap()),
                    Ip,
                    "management address",
                ),
                (
                    refused(|p| p[1].ip = "127.0.4.0".parse().unwrap()),
                    Ip,
                    "network or broadcast",
                ),
                (
                    refused(|p| p[1].ip = "127.0.4.255".parse().unwrap()),
                    Ip,
                    "network or broadcast",
                ),
                (
                    refused(|p| p[1].ip = "127.0.2.1".parse().unwrap()),
                    Ip,
                    "both use 127.0.2.1",
                ),
                (refused(|p| p[1].prefix = 7), Prefix, "/7 is not between"),
                (refused(|p| p[1].prefix = 31), Prefix, "/31 is not between"),
                (refused(|p| p[1].vlan = Some(0)), Vlan, "VLAN 0"),
                (refused(|p| p[1].vlan = Some(4095)), Vlan, "VLAN 4095"),
                (
                    refused(|p| p[1].segment = "1a".parse().unwrap()),
                    Vlan,
                    "carries the management path",
                ),
                (
                    refused(|p| p[1].prefix = 8),
                    Vlan,
                    "shares the management network",
                ),
                (
                    refused(|p| {
                        p.extend((0..15).map(|i| {
                            path(&format!("m{i}"), "1c", &format!("127.0.5.{}", i + 1), 24)
                        }))
                    }),
                    List,
                    "at most 16",
                ),
            ];
        for (err, field, text) in cases {
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(text), "{text:?} not in {err}");
            let emg = err.emg();
            let expected = if field == Vlan && text.contains("management") {
                Emg::PathCollidesWithManagement
            } else {
                Emg::InvalidMigrationPathSetting
            };
            assert_eq!(emg.kind, expected, "{err}");
        }
        // With its own VLAN a path may share the management segment and network.
        let mut paths = good();
        paths[1].segment = "1a".parse().unwrap();
        paths[1].prefix = 8;
        paths[1].vlan = Some(4094);
        validate(&blade(), &paths, FleetNetwork::Loopback).unwrap();
    }

    #[test]
    fn the_benchmark_network_allows_only_its_range() {
        let mut b = blade();
        b.hvm.management.ip = "198.18.1.1".parse().unwrap();
        let mut paths = good();
        paths[0].ip = "198.19.2.1".parse().unwrap();
        paths[1].ip = "198.19.4.1".parse().unwrap();
        validate(&b, &paths, FleetNetwork::NetnsBench).unwrap();
        let err = validate(&b, &good(), FleetNetwork::NetnsBench).unwrap_err();
        assert!(err.to_string().contains("198.18.0.0/15"), "{err}");
    }

    #[test]
    fn set_adds_or_replaces_by_name_and_moves_the_primary_only_when_asked() {
        let start = good();
        // A new path is added, not primary.
        let added = with_path(&start, path("mig-c", "1c", "127.0.6.1", 24));
        assert_eq!(added.len(), 3);
        assert_eq!(added.iter().filter(|p| p.primary).count(), 1);
        assert!(added[0].primary);
        // Replacing the primary keeps it primary.
        let replaced = with_path(&start, path("MIG-A", "1c", "127.0.7.1", 24));
        assert_eq!(replaced.len(), 2);
        assert!(replaced[0].primary && replaced[0].ip.to_string() == "127.0.7.1");
        // --primary moves it.
        let mut b = path("mig-b", "1c", "127.0.4.2", 24);
        b.primary = true;
        let moved = with_path(&start, b);
        assert!(!moved[0].primary && moved[1].primary);
        // The first path of an empty list is primary.
        let first = with_path(&[], path("only", "1b", "127.0.2.9", 24));
        assert!(first[0].primary);
    }

    #[test]
    fn remove_refuses_unknown_names_and_the_primary_while_others_remain() {
        let start = good();
        assert_eq!(without_path(&start, "mig-b").unwrap().len(), 1);
        assert!(matches!(
            without_path(&start, "nope"),
            Err(RemoveError::NotFound { .. })
        ));
        let err = without_path(&start, "mig-a").unwrap_err();
        assert!(
            err.to_string().contains("mark another path primary"),
            "{err}"
        );
        let last = without_path(&start[..1], "mig-a").unwrap();
        assert!(last.is_empty());
    }

    #[test]
    fn subnet_mask_follows_the_prefix() {
        assert_eq!(
            path("a", "1b", "127.0.2.1", 24).subnet_mask().to_string(),
            "255.255.255.0"
        );
        assert_eq!(
            path("a", "1b", "127.0.2.1", 30).subnet_mask().to_string(),
            "255.255.255.252"
        );
    }
}
