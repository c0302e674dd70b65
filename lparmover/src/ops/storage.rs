//! SAN security workflows (seed ch. 3 "Registering/removing migration WWN"): the registration
//! status of every vFC (the WWN Setting window, `lparmover wwn status`, the CSV export) and
//! registering or removing an LPAR's migration WWPNs in one operation.
//!
//! The array's own CLI registers any WWPN it is given; these operations know the vfcIDs and
//! refuse a migration WWPN whose WWPN of the same vfcID is not registered (table 7-5's third
//! state), checking every vFC before changing anything.

use serde::Serialize;

use crate::api::array::{
    ArrayClientError, AssignWwn, HostGroup, MAX_NICKNAME_LEN, RenameWwn, validate_nickname,
};
use crate::api::{ClientError, HvmClient, Inventory};
use crate::fleetview::FindLpar;
use crate::fleetview::LparRef;
use crate::model::{ArrayPort, FcPort, HostGroupNumber, Lpar, Wwpn};
use crate::profile::{Profile, ProfileError};
use crate::storage::{ArrayAnswer, VfcRegistration, registrations, with_session};

/// Why a storage operation could not be done; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpError {
    /// Profile problem.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An HVM could not be asked.
    #[error(transparent)]
    Hvm(#[from] ClientError),
    /// An array refused or could not be reached.
    #[error(transparent)]
    Array(#[from] ArrayClientError),
    /// No such LPAR.
    #[error("no LPAR {lpar} on HVM {hvm}")]
    LparNotFound {
        /// HVM.
        hvm: String,
        /// What was asked for.
        lpar: String,
    },
    /// A vFC's WWPN is not registered, so its migration WWPN cannot be.
    #[error(
        "the migration WWPN {migration_wwpn} of vFC {port} cannot be registered: its WWPN {wwpn} (same vfcID) is in no host group of {cable}; register the WWPN first (`storagecli wwn register`); nothing was changed"
    )]
    Unregistrable {
        /// FC port of the vFC.
        port: FcPort,
        /// Its WWPN.
        wwpn: Wwpn,
        /// Its migration WWPN.
        migration_wwpn: Wwpn,
        /// Where the port is cabled.
        cable: String,
    },
    /// A nickname the array would refuse.
    #[error("{0}; nothing was changed")]
    InvalidNickname(String),
    /// The migration WWPN to rename is in no host group.
    #[error(
        "the migration WWPN of vFC {port} is not registered, so it has no nickname to change; register it first (Add)"
    )]
    NotRegistered {
        /// FC port of the vFC.
        port: FcPort,
    },
    /// A vFC's registration could not be determined.
    #[error("the registration of vFC {port} is unknown: {reason}; nothing was changed")]
    Unknown {
        /// FC port.
        port: FcPort,
        /// Why.
        reason: String,
    },
}

/// The registration of every vFC the profile's HVMs hold.
#[derive(Clone, Debug, Serialize)]
pub struct WwnStatus {
    /// One row per vFC.
    pub rows: Vec<VfcRegistration>,
    /// HVMs that did not answer, with why.
    pub unreachable: Vec<(String, String)>,
}

async fn array_answers(profile: &Profile) -> Vec<ArrayAnswer> {
    futures::future::join_all(profile.arrays.iter().map(|a| async move {
        ArrayAnswer {
            name: a.name.clone(),
            host_groups: with_session(a, |c| async move { c.host_groups().await })
                .await
                .map_err(|e| e.to_string()),
        }
    }))
    .await
}

async fn inventory(profile: &Profile, hvm: &str) -> Result<Inventory, StorageOpError> {
    Ok(HvmClient::new(profile.hvm(hvm)?)?.inventory().await?)
}

/// The WWN Setting window's list: every vFC of `hvm` (or of every HVM), with its WWPN and
/// migration WWPN states.
pub async fn wwn_status(profile: &Profile, hvm: Option<&str>) -> Result<WwnStatus, StorageOpError> {
    let names: Vec<String> = match hvm {
        Some(h) => vec![profile.hvm(h)?.name.clone()],
        None => profile.hvms.iter().map(|h| h.name.clone()).collect(),
    };
    let (inventories, arrays) = tokio::join!(
        futures::future::join_all(names.iter().map(|n| inventory(profile, n))),
        array_answers(profile)
    );
    let mut status = WwnStatus {
        rows: Vec::new(),
        unreachable: Vec::new(),
    };
    for (name, inv) in names.into_iter().zip(inventories) {
        match inv {
            Ok(inv) => status
                .rows
                .extend(registrations(&inv.blade, &inv.lpars, &arrays)),
            Err(e) if hvm.is_some() => return Err(e),
            Err(e) => status.unreachable.push((name, e.to_string())),
        }
    }
    Ok(status)
}

/// What registering or removing did for one host group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistrationStep {
    /// FC port of the vFC.
    pub port: FcPort,
    /// The migration WWPN.
    pub migration_wwpn: Wwpn,
    /// Array.
    pub array: String,
    /// Host group (`0A-001 web-01`).
    pub host_group: String,
    /// Whether the array changed (false: it already was as asked).
    pub changed: bool,
}

/// Where one migration WWPN must be (or must not be) registered.
struct Placement {
    port: FcPort,
    migration_wwpn: Wwpn,
    array: String,
    group_port: ArrayPort,
    group: HostGroupNumber,
    label: String,
    present: bool,
    nickname: String,
}

/// The default nickname of a migration WWPN (the WWN Setting window's "Default"): the LPAR,
/// `MIG` and the FC port, within the array's 32 characters.
pub fn default_nickname(lpar: &str, port: FcPort) -> String {
    let suffix = format!("-MIG-{}-{}", port.slot, port.port);
    let room = MAX_NICKNAME_LEN.saturating_sub(suffix.len());
    format!("{}{suffix}", lpar.chars().take(room).collect::<String>())
}

/// Every host group each vFC's migration WWPN belongs in; refuses (changing nothing) when any
/// vFC's WWPN is unregistered or its array cannot be asked.
async fn placements(profile: &Profile, target: &LparRef) -> Result<Vec<Placement>, StorageOpError> {
    let (inv, arrays) = tokio::join!(inventory(profile, &target.hvm), array_answers(profile));
    let inv = inv?;
    let lpar: Lpar = target
        .lpar
        .find(&inv)
        .ok_or_else(|| StorageOpError::LparNotFound {
            hvm: target.hvm.clone(),
            lpar: target.lpar.to_string(),
        })?
        .lpar
        .clone();
    let mut out = Vec::new();
    for v in &lpar.vfcs {
        let unknown = |reason: String| StorageOpError::Unknown {
            port: v.port,
            reason,
        };
        let cable = inv
            .blade
            .fc_port(v.port)
            .and_then(|p| p.storage.clone())
            .ok_or_else(|| unknown(format!("FC port {} reaches no storage array", v.port)))?;
        let answer = arrays
            .iter()
            .find(|a| a.name == cable.array.as_str())
            .ok_or_else(|| {
                unknown(format!(
                    "array {} is not registered with the manager",
                    cable.array
                ))
            })?;
        let groups: &Vec<HostGroup> = answer
            .host_groups
            .as_ref()
            .map_err(|e| unknown(e.clone()))?;
        let mine: Vec<&HostGroup> = groups
            .iter()
            .filter(|g| g.port == cable.port && g.permits(v.wwpn))
            .collect();
        if mine.is_empty() {
            return Err(StorageOpError::Unregistrable {
                port: v.port,
                wwpn: v.wwpn,
                migration_wwpn: v.migration_wwpn,
                cable: cable.to_string(),
            });
        }
        for g in mine {
            out.push(Placement {
                port: v.port,
                migration_wwpn: v.migration_wwpn,
                array: answer.name.clone(),
                group_port: g.port,
                group: g.number,
                label: g.label(),
                present: g.permits(v.migration_wwpn),
                nickname: default_nickname(lpar.name.as_str(), v.port),
            });
        }
    }
    Ok(out)
}

/// Registers the migration WWPNs of `target` to the host groups of their WWPNs (`lparmover wwn
/// register-migration HVM/LPAR`, the WWN Setting window's Add). Already registered ones are left
/// as they are.
pub async fn register_migration(
    profile: &Profile,
    target: &LparRef,
) -> Result<Vec<RegistrationStep>, StorageOpError> {
    change(profile, target, true).await
}

/// Removes the migration WWPNs of `target` from the host groups of their WWPNs (the WWN Setting
/// window's Delete).
pub async fn remove_migration(
    profile: &Profile,
    target: &LparRef,
) -> Result<Vec<RegistrationStep>, StorageOpError> {
    change(profile, target, false).await
}

async fn change(
    profile: &Profile,
    target: &LparRef,
    register: bool,
) -> Result<Vec<RegistrationStep>, StorageOpError> {
    let placements = placements(profile, target).await?;
    let mut steps = Vec::with_capacity(placements.len());
    for p in placements {
        let changed = p.present != register;
        if changed {
            let array = profile.array(&p.array)?;
            with_session(array, |c| async move {
                if register {
                    c.assign(
                        p.group_port,
                        p.group,
                        &AssignWwn {
                            wwpn: p.migration_wwpn,
                            nickname: p.nickname.clone(),
                        },
                    )
                    .await
                } else {
                    c.remove(p.group_port, p.group, p.migration_wwpn).await
                }
            })
            .await?;
            tracing::info!(
                array = %p.array,
                host_group = %p.label,
                wwpn = %p.migration_wwpn,
                register,
                "migration WWPN changed"
            );
        }
        steps.push(RegistrationStep {
            port: p.port,
            migration_wwpn: p.migration_wwpn,
            array: p.array,
            host_group: p.label,
            changed,
        });
    }
    Ok(steps)
}

/// Gives the migration WWPN of `target`'s vFC on `port` (every vFC with `None`) a nickname in
/// every host group it is registered to (the WWN Setting window's Nickname; `None` nickname is
/// its Default button).
pub async fn rename_migration(
    profile: &Profile,
    target: &LparRef,
    port: Option<FcPort>,
    nickname: Option<&str>,
) -> Result<Vec<RegistrationStep>, StorageOpError> {
    if let Some(n) = nickname {
        validate_nickname(n).map_err(StorageOpError::InvalidNickname)?;
    }
    let placements: Vec<Placement> = placements(profile, target)
        .await?
        .into_iter()
        .filter(|p| port.is_none_or(|want| p.port == want))
        .collect();
    if let Some(missing) = placements.iter().find(|p| !p.present) {
        return Err(StorageOpError::NotRegistered { port: missing.port });
    }
    let mut steps = Vec::with_capacity(placements.len());
    for p in placements {
        let request = RenameWwn {
            nickname: nickname.map_or_else(|| p.nickname.clone(), str::to_owned),
        };
        let array = profile.array(&p.array)?;
        with_session(array, |c| async move {
            c.rename(p.group_port, p.group, p.migration_wwpn, &request)
                .await
        })
        .await?;
        steps.push(RegistrationStep {
            port: p.port,
            migration_wwpn: p.migration_wwpn,
            array: p.array,
            host_group: p.label,
            changed: true,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn default_nicknames_fit_the_array() {
        let port: FcPort = "3/1".parse().unwrap();
        assert_eq!(default_nickname("db-01", port), "db-01-MIG-3-1");
        let long = default_nickname(&"x".repeat(40), port);
        assert_eq!(long.len(), MAX_NICKNAME_LEN);
        assert!(long.ends_with("-MIG-3-1"));
    }
}
