//! The manager's view of SAN security (seed ch. 3 "Registering/removing migration WWN", tables
//! 7-4 / 7-5): for every vFC of the fleet, whether its WWPN and its migration WWPN are
//! registered to a host group of the array port its FC cable reaches, and the CSV export of
//! that view.
//!
//! The state of a vFC is computed from the arrays' host groups and the blades' cabling; nothing
//! here changes an array (the operations that do are in [`crate::ops::storage`]).

use std::fmt::Write as _;
use std::future::Future;

use serde::Serialize;

use crate::api::LparView;
use crate::api::array::{ArrayClient, ArrayClientError, HostGroup};
use crate::model::{Blade, FcPort, LparNumber, StorageCable, VfcId, Wwpn};
use crate::profile::ProfileArray;

/// Runs `call` with a client of `array`, logged in with the profile's saved credentials when
/// there are any (and logged out afterwards, so the array's session table does not fill up).
pub async fn with_session<T, F, Fut>(array: &ProfileArray, call: F) -> Result<T, ArrayClientError>
where
    F: FnOnce(ArrayClient) -> Fut,
    Fut: Future<Output = Result<T, ArrayClientError>>,
{
    let client = ArrayClient::new(array)?;
    let Some(credentials) = &array.credentials else {
        return call(client).await;
    };
    let session = client.login(credentials).await?;
    let client = client.with_session(Some(session.token));
    let result = call(client.clone()).await;
    if let Err(e) = client.logout().await {
        tracing::debug!(array = %array.name, error = %e, "logout after the call failed");
    }
    result
}

/// Whether a WWPN is registered (table 7-4, plus the "WWN unknown" state of table 7-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WwpnState {
    /// In a host group of the array port its FC port is cabled to.
    Registered,
    /// In no such host group.
    Unregistered,
    /// Its array could not be asked (or its FC port reaches no registered array).
    Unknown,
}

/// Whether a migration WWPN is registered (table 7-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationWwpnState {
    /// In every host group its WWPN is in.
    Registered,
    /// Missing from a host group of its WWPN: it can be registered.
    Unregistered,
    /// Its WWPN is in no host group: it cannot be registered until that is fixed.
    Unregistrable,
    /// Its array could not be asked.
    Unknown,
}

impl WwpnState {
    /// As the CSV and tables write it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Registered => "Registered",
            Self::Unregistered => "Unregistered",
            Self::Unknown => "Unknown",
        }
    }
}

impl MigrationWwpnState {
    /// As the CSV and tables write it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Registered => "Registered",
            Self::Unregistered => "Unregistered",
            Self::Unregistrable => "Unregistrable (WWPN not registered)",
            Self::Unknown => "Unknown",
        }
    }
}

/// One vFC's registration, a row of the WWN Setting window and of the CSV export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VfcRegistration {
    /// HVM.
    pub hvm: String,
    /// LPAR number.
    pub lpar: LparNumber,
    /// LPAR name.
    pub lpar_name: String,
    /// FC port of the vFC.
    pub port: FcPort,
    /// vfcID.
    pub vfc_id: VfcId,
    /// WWPN.
    pub wwpn: Wwpn,
    /// Migration WWPN of the same vfcID.
    pub migration_wwpn: Wwpn,
    /// Where the FC port's cable goes.
    pub cable: Option<StorageCable>,
    /// The host groups of that array port permitting the WWPN (`0A-001 web-01`).
    pub host_groups: Vec<String>,
    /// Table 7-4.
    pub wwpn_state: WwpnState,
    /// Table 7-5.
    pub migration_state: MigrationWwpnState,
    /// The WWPN's nickname on the array.
    pub wwpn_nickname: String,
    /// The migration WWPN's nickname on the array.
    pub migration_nickname: String,
    /// Why the state is Unknown, when it is.
    pub unknown_because: Option<String>,
}

/// What one array answered, or why it did not.
#[derive(Clone, Debug)]
pub struct ArrayAnswer {
    /// Array name.
    pub name: String,
    /// Its host groups, or the error.
    pub host_groups: Result<Vec<HostGroup>, String>,
}

/// The registration of every vFC of `lpars` on `blade`, from the arrays' answers.
pub fn registrations(
    blade: &Blade,
    lpars: &[LparView],
    arrays: &[ArrayAnswer],
) -> Vec<VfcRegistration> {
    let mut rows = Vec::new();
    for view in lpars {
        let lpar = &view.lpar;
        for v in &lpar.vfcs {
            let cable = blade.fc_port(v.port).and_then(|p| p.storage.clone());
            let mut row = VfcRegistration {
                hvm: blade.name.clone(),
                lpar: lpar.number,
                lpar_name: lpar.name.as_str().to_owned(),
                port: v.port,
                vfc_id: v.vfc_id,
                wwpn: v.wwpn,
                migration_wwpn: v.migration_wwpn,
                cable: cable.clone(),
                host_groups: Vec::new(),
                wwpn_state: WwpnState::Unknown,
                migration_state: MigrationWwpnState::Unknown,
                wwpn_nickname: String::new(),
                migration_nickname: String::new(),
                unknown_because: None,
            };
            let Some(cable) = cable else {
                row.unknown_because = Some(format!("FC port {} reaches no storage array", v.port));
                rows.push(row);
                continue;
            };
            let groups = match arrays.iter().find(|a| a.name == cable.array.as_str()) {
                None => {
                    row.unknown_because = Some(format!(
                        "array {} is not registered with the manager",
                        cable.array
                    ));
                    rows.push(row);
                    continue;
                }
                Some(ArrayAnswer {
                    host_groups: Err(e),
                    ..
                }) => {
                    row.unknown_because = Some(e.clone());
                    rows.push(row);
                    continue;
                }
                Some(ArrayAnswer {
                    host_groups: Ok(groups),
                    ..
                }) => groups,
            };
            let mine: Vec<&HostGroup> = groups
                .iter()
                .filter(|g| g.port == cable.port && g.permits(v.wwpn))
                .collect();
            row.host_groups = mine.iter().map(|g| g.label()).collect();
            let nickname = |wwpn: Wwpn| {
                mine.iter()
                    .flat_map(|g| g.wwns.iter())
                    .find(|w| w.wwpn == wwpn)
                    .map(|w| w.nickname.clone())
                    .unwrap_or_default()
            };
            row.wwpn_nickname = nickname(v.wwpn);
            row.migration_nickname = nickname(v.migration_wwpn);
            if mine.is_empty() {
                row.wwpn_state = WwpnState::Unregistered;
                row.migration_state = MigrationWwpnState::Unregistrable;
            } else {
                row.wwpn_state = WwpnState::Registered;
                row.migration_state = if mine.iter().all(|g| g.permits(v.migration_wwpn)) {
                    MigrationWwpnState::Registered
                } else {
                    MigrationWwpnState::Unregistered
                };
            }
            rows.push(row);
        }
    }
    rows
}

/// The header of the CSV export.
pub const CSV_HEADER: &str = "HVM,LPAR,LPAR Name,Port,vfcID,WWPN,WWPN State,WWPN Nickname,Migration WWPN,Migration WWPN State,Migration WWPN Nickname,Storage,Host Groups";

/// The CSV export (seed "Exporting CSV file"): a header row and one line per vFC.
pub fn export_csv(rows: &[VfcRegistration]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [
            r.hvm.clone(),
            r.lpar.to_string(),
            r.lpar_name.clone(),
            r.port.to_string(),
            r.vfc_id.get().to_string(),
            r.wwpn.to_string(),
            r.wwpn_state.label().to_owned(),
            r.wwpn_nickname.clone(),
            r.migration_wwpn.to_string(),
            r.migration_state.label().to_owned(),
            r.migration_nickname.clone(),
            r.cable
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            r.host_groups.join(" "),
        ];
        let line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Quotes a field that holds a comma, a quote or a line break (RFC 4180).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
