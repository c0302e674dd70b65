//! Storage arrays as a fleet file declares them (DESIGN §3, seed ch. 2 "Storage device" and "SAN
//! security"): controllers with addresses, ports the blades' FC cables end on, the security
//! setting, and what the array holds on its first start.
//!
//! On its first start an array makes, for every LPAR of the fleet whose vFCs are cabled to it, a
//! host group on each array port those vFCs reach (named after the LPAR, holding their WWPNs)
//! and a boot LU mapped to those groups as LUN 0; the migration WWPNs of the LPARs listed in
//! `migration_wwpns_registered` go into the same groups. From then on the array's own state is
//! the truth and the fleet file is not read again for it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{ArrayName, ArrayPort};

/// One controller of an array and the address its management API answers on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayController {
    /// Controller number (the digit of its ports' names).
    pub number: u8,
    /// Its management address (loopback in a simulated fleet).
    pub ip: Ipv4Addr,
}

/// How an array protects its configuration (seed table 3-5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    /// Anyone with the array's API token may change it.
    #[default]
    None,
    /// One user ID and password guard every change (`aulogin` before, `aulogout` after).
    PasswordProtection,
    /// Accounts: each user logs in with its own ID and password.
    AccountAuthentication,
}

impl SecurityMode {
    /// The seed's wording (Storage Password Setting window, "Security Type").
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "Not used",
            Self::PasswordProtection => "Password Protection",
            Self::AccountAuthentication => "Account Authentication",
        }
    }
}

/// A user an array knows at first start.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayAccount {
    /// User ID.
    pub user: String,
    /// Password (the array keeps only a salted hash of it).
    pub password: String,
}

// By hand, so that secrets (password) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for ArrayAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayAccount")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An array's security at first start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySecurity {
    /// Which protection is on.
    #[serde(default)]
    pub mode: SecurityMode,
    /// Its users (one for password protection).
    #[serde(default)]
    pub accounts: Vec<ArrayAccount>,
}

/// A storage array of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageArray {
    /// Array unit name (`auunitadd -unit NAME`), used in cables as `NAME:PORT`.
    pub name: ArrayName,
    /// Model, e.g. `AMS2500`.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Controllers; the API listens on the first one's address.
    pub controllers: Vec<ArrayController>,
    /// Its FC ports.
    pub ports: Vec<ArrayPort>,
    /// Password protection or account authentication.
    #[serde(default)]
    pub security: ArraySecurity,
    /// Size of each LPAR's boot LU (sparse: only written blocks take space).
    #[serde(default = "default_boot_lu_mib")]
    pub boot_lu_mib: u32,
    /// LPARs (by name) whose migration WWPNs are registered beside their WWPNs at first start.
    #[serde(default)]
    pub migration_wwpns_registered: Vec<String>,
}

fn default_boot_lu_mib() -> u32 {
    64
}

impl StorageArray {
    /// The largest boot LU a fleet file may ask for (1 TiB; sparse, but still a bound).
    pub const MAX_BOOT_LU_MIB: u32 = 1 << 20;

    /// The address its management API answers on: the first controller's.
    pub fn api_ip(&self) -> Option<Ipv4Addr> {
        self.controllers.first().map(|c| c.ip)
    }

    /// Cross-checks the array on its own: controllers, ports, accounts.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if self.controllers.is_empty() {
            return Err(format!(
                "array {name}: no controllers; give at least one as controllers = [{{ number = 0, ip = \"127.0.4.1\" }}]"
            ));
        }
        let mut numbers = std::collections::HashSet::new();
        for c in &self.controllers {
            if c.number > 9 {
                return Err(format!(
                    "array {name}: controller {} must be numbered 0–9 (its digit names its ports)",
                    c.number
                ));
            }
            if !numbers.insert(c.number) {
                return Err(format!(
                    "array {name}: controller {} is defined twice",
                    c.number
                ));
            }
        }
        if self.ports.is_empty() {
            return Err(format!(
                "array {name}: no ports; list them as ports = [\"0A\", \"1A\"]"
            ));
        }
        let mut ports = std::collections::HashSet::new();
        for p in &self.ports {
            if !numbers.contains(&p.controller()) {
                return Err(format!(
                    "array {name}: port {p} sits on controller {}, which the array does not define",
                    p.controller()
                ));
            }
            if !ports.insert(*p) {
                return Err(format!("array {name}: port {p} is listed twice"));
            }
        }
        match (self.security.mode, self.security.accounts.len()) {
            (SecurityMode::None, 0) => {}
            (SecurityMode::None, _) => {
                return Err(format!(
                    "array {name}: accounts are given but security.mode is \"none\"; set mode = \"password-protection\" or \"account-authentication\", or drop the accounts"
                ));
            }
            (_, 0) => {
                return Err(format!(
                    "array {name}: security.mode = {:?} needs at least one account",
                    self.security.mode.label()
                ));
            }
            (SecurityMode::PasswordProtection, n) if n > 1 => {
                return Err(format!(
                    "array {name}: password protection has one user ID and password, {n} accounts are given"
                ));
            }
            _ => {}
        }
        for a in &self.security.accounts {
            validate_credentials(&a.user, &a.password)
                .map_err(|e| format!("array {name}: account {:?}: {e}", a.user))?;
        }
        if self.boot_lu_mib == 0 || self.boot_lu_mib > Self::MAX_BOOT_LU_MIB {
            return Err(format!(
                "array {name}: boot_lu_mib = {} is outside 1–{}",
                self.boot_lu_mib,
                Self::MAX_BOOT_LU_MIB
            ));
        }
        Ok(())
    }
}

/// Longest user ID.
pub const MAX_USER_LEN: usize = 64;
/// Shortest password.
pub const MIN_PASSWORD_LEN: usize = 6;
/// Longest password.
pub const MAX_PASSWORD_LEN: usize = 256;

/// A user ID is 1–64 letters, digits, `-`, `_`, `.` or `@`; a password 6–256 printable
/// characters.
pub fn validate_credentials(user: &str, password: &str) -> Result<(), String> {
    let user_ok = !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !user_ok {
        return Err(format!(
            "user ID {:?} must be 1 to {MAX_USER_LEN} letters, digits, '-', '_', '.' or '@'",
            user.chars().take(80).collect::<String>()
        ));
    }
    let length = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length)
        || password.chars().any(char::is_control)
    {
        return Err(format!(
            "the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} printable characters"
        ));
    }
    Ok(())
}
