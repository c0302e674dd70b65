//! The storage array API contract (DESIGN §3, seed ch. 3 "Registering/removing migration WWN"):
//! request and response types, the error catalogue and the client `storagecli`, the manager
//! and the blades share.
//!
//! HTTPS + JSON under `/v1/`, the array's certificate pinned like a blade's. Two planes:
//!
//! | method | route | body → answer | who |
//! | --- | --- | --- | --- |
//! | GET | `/v1/array` | → [`ArrayInfo`] | token |
//! | POST, DELETE | `/v1/session` | [`Credentials`] → [`Session`] (aulogin / aulogout) | token |
//! | PUT, DELETE | `/v1/security` | [`SetSecurity`] → [`ArrayInfo`] (auaccountenv) | token + session |
//! | GET | `/v1/host-groups` | → `[HostGroup]` (auhgwwn -refer) | token + session |
//! | GET | `/v1/host-groups/backup` | → [`HostGroupBackup`] (auhgout) | token + session |
//! | POST | `/v1/host-groups/{port}/{gno}/wwns` | [`AssignWwn`] → [`HostGroup`] (-assign / -set) | token + session |
//! | DELETE | `/v1/host-groups/{port}/{gno}/wwns/{wwpn}` | → [`HostGroup`] (-rm) | token + session |
//! | PATCH | `/v1/host-groups/{port}/{gno}/wwns/{wwpn}` | [`RenameWwn`] → [`HostGroup`] (-chg -rename) | token + session |
//! | GET | `/v1/lus` | → `[Lu]` | token + session |
//! | GET | `/v1/lus/{lu}/digest` | → [`LuDigest`] | token + session |
//! | GET, PUT | `/v1/lus/{lu}/data?offset=N[&length=M]` | bytes ↔ bytes (at most [`MAX_LU_IO`]) | token + session |
//! | GET, POST | `/v1/pairs` | [`SetPair`] → [`Pair`] (`iSMrc_pair -pair`), → `[Pair]` | token + session |
//! | GET, DELETE | `/v1/pairs/{mv}` | → [`Pair`] (`iSMrc_query`), → 204 (`-unpair`) | token + session |
//! | POST | `/v1/pairs/{mv}/replicate`, `/separate`, `/restore` | → [`Pair`]; restore takes [`RestoreRequest`] | token + session |
//! | GET | `/v1/fabric/logins` | → `[FabricLogin]` | anyone |
//! | POST | `/v1/fabric/login`, `/v1/fabric/logout` | [`FabricLoginRequest`] / [`FabricLogoutRequest`] → [`FabricLogin`] / 204 | anyone (FC has no password) |
//!
//! "token" is `Authorization: Bearer TOKEN`; "session" is the [`SESSION_HEADER`] a login
//! returned, needed only while the array's [`SecurityMode`] is not `none`. Errors are
//! [`ArrayError`] bodies.

mod client;
mod error;
mod pair;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use client::{ArrayClient, ArrayClientError};
pub use error::{ArrayError, ArrayErrorCode, ArrayErrorEntry};
pub use pair::{
    LuDigest, LuRange, MAX_LU_IO, Pair, PairState, RestoreMode, RestoreRequest, RvAccess, SetPair,
    WaitCondition,
};

use crate::model::{
    ArrayController, ArrayName, ArrayPort, FcPort, HostGroupNumber, SecurityMode, Wwpn,
};

/// Header carrying a login session.
pub const SESSION_HEADER: &str = "x-array-session";

// The array account rules belong to the fleet file's `[[array]]` check as much as to the API, and
// the fleet parser lives in `lpm-formats`.
pub use crate::model::storage::{
    MAX_PASSWORD_LEN, MAX_USER_LEN, MIN_PASSWORD_LEN, validate_credentials,
};
/// Longest WWN nickname (the array's limit).
pub const MAX_NICKNAME_LEN: usize = 32;
/// Longest host group or LU name.
pub const MAX_NAME_LEN: usize = 32;

/// A nickname is at most 32 printable ASCII characters without commas (the CSV export and the
/// array's own tables use commas).
pub fn validate_nickname(nickname: &str) -> Result<(), String> {
    if nickname.len() > MAX_NICKNAME_LEN
        || !nickname.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        || nickname.contains(',')
    {
        return Err(format!(
            "nickname {:?} must be at most {MAX_NICKNAME_LEN} printable ASCII characters without commas",
            nickname.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// What an array is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayInfo {
    /// Array unit name.
    pub name: ArrayName,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Controllers and their addresses.
    pub controllers: Vec<ArrayController>,
    /// FC ports.
    pub ports: Vec<ArrayPort>,
    /// Protection in force.
    pub security: SecurityMode,
}

/// A WWPN permitted in a host group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WwnEntry {
    /// The WWPN.
    pub wwpn: Wwpn,
    /// Its nickname (may be empty).
    #[serde(default)]
    pub nickname: String,
}

/// Number of an LU on the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LuNumber(pub u16);

impl std::fmt::Display for LuNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl std::str::FromStr for LuNumber {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "LU number {:?} must be 1 to 5 digits, e.g. 0001",
                text.chars().take(40).collect::<String>()
            ));
        }
        text.parse::<u16>()
            .map(Self)
            .map_err(|_| format!("LU number {text} is above {}", u16::MAX))
    }
}

/// An LU as a host group presents it: the LUN hosts see, the array's LU behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunMapping {
    /// LUN seen by the hosts of the group.
    pub lun: u16,
    /// The array's LU.
    pub lu: LuNumber,
}

/// A host group: on one array port, the WWPNs allowed to reach its LUs (LUN security).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    /// Array port.
    pub port: ArrayPort,
    /// Number on that port.
    pub number: HostGroupNumber,
    /// Name.
    pub name: String,
    /// Permitted WWPNs.
    pub wwns: Vec<WwnEntry>,
    /// LUs it presents.
    pub luns: Vec<LunMapping>,
}

impl HostGroup {
    /// Whether `wwpn` may reach this group's LUs.
    pub fn permits(&self, wwpn: Wwpn) -> bool {
        self.wwns.iter().any(|w| w.wwpn == wwpn)
    }

    /// `0A-001 web-01`, as tables show it.
    pub fn label(&self) -> String {
        format!("{}-{} {}", self.port, self.number, self.name)
    }
}

/// An LU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lu {
    /// Number.
    pub number: LuNumber,
    /// Name (the boot LU of LPAR web-01 is `web-01-boot`).
    pub name: String,
    /// Size.
    pub size_mib: u32,
}

/// A WWPN logged in to the fabric through a blade's FC port and an array port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricLogin {
    /// The WWPN.
    pub wwpn: Wwpn,
    /// The blade whose vFC logged in.
    pub blade: String,
    /// Its FC port.
    pub blade_port: FcPort,
    /// The array port the cable reaches.
    pub array_port: ArrayPort,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// A vFC logging in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricLoginRequest {
    /// The WWPN.
    pub wwpn: Wwpn,
    /// The blade.
    pub blade: String,
    /// Its FC port.
    pub blade_port: FcPort,
    /// The array port it is cabled to.
    pub array_port: ArrayPort,
}

/// A vFC logging out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricLogoutRequest {
    /// The WWPN.
    pub wwpn: Wwpn,
    /// The blade that logged it in.
    pub blade: String,
}

/// Register a WWPN to a host group (`auhgwwn -assign` / `-set -permhg`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignWwn {
    /// The WWPN.
    pub wwpn: Wwpn,
    /// Its nickname.
    #[serde(default)]
    pub nickname: String,
}

/// Give a WWPN of a host group a new nickname (`auhgwwn -chg -rename`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameWwn {
    /// The new nickname.
    pub nickname: String,
}

/// A user ID and password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User ID.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A login session (`aulogin`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Goes in the [`SESSION_HEADER`] of later requests.
    pub token: String,
    /// Who logged in.
    pub user: String,
    /// When it lapses unless used again.
    pub expires_at: DateTime<Utc>,
}

// By hand, so that secrets (token) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Set the array's protection (`auaccountenv -set`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecurity {
    /// The mode.
    pub mode: SecurityMode,
    /// Its users (one for password protection, none for `none`).
    #[serde(default)]
    pub accounts: Vec<Credentials>,
}

/// The host groups of an array at one moment (`auhgout`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroupBackup {
    /// Format of this document.
    pub format: u32,
    /// Array.
    pub array: ArrayName,
    /// Its serial number.
    pub serial: String,
    /// When.
    pub taken_at: DateTime<Utc>,
    /// Host groups.
    pub host_groups: Vec<HostGroup>,
    /// LUs.
    pub lus: Vec<Lu>,
}

impl HostGroupBackup {
    /// Current format.
    pub const FORMAT: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_nicknames_are_bounded_and_passwords_never_printed() {
        assert!(validate_credentials("admin", "secret1").is_ok());
        assert!(validate_credentials("", "secret1").is_err());
        assert!(validate_credentials("a b", "secret1").is_err());
        assert!(validate_credentials(&"u".repeat(65), "secret1").is_err());
        assert!(validate_credentials("admin", "short").is_err());
        assert!(validate_credentials("admin", "tab\tinside").is_err());
        assert!(validate_nickname("web-01 mig 3/0").is_ok());
        assert!(validate_nickname("a,b").is_err());
        assert!(validate_nickname(&"n".repeat(33)).is_err());
        let shown = format!(
            "{:?}",
            Credentials {
                user: "admin".into(),
                password: "hunter22".into()
            }
        );
        assert!(!shown.contains("hunter22"), "{shown}");
    }
}
