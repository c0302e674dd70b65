//! The array's persistent configuration and its rules, as plain data with pure operations.
//!
//! Like the HVM's state: every change is a method that applies completely or returns an
//! [`ArrayError`] and changes nothing; the service applies it to a copy, writes the copy
//! atomically and only then makes it current, so what a client was told survives kill -9.

use std::collections::BTreeMap;

use lparmover::api::array::{
    ArrayError, ArrayErrorCode, ArrayInfo, AssignWwn, FabricLogin, FabricLoginRequest,
    FabricLogoutRequest, HostGroup, Lu, LuNumber, SetSecurity, WwnEntry, validate_credentials,
    validate_nickname,
};
use lparmover::model::{ArrayPort, HostGroupNumber, SecurityMode, Wwpn};
use serde::{Deserialize, Serialize};

use super::pairs::PairRecord;
use super::security::StoredAccount;

/// Everything an array keeps across restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayState {
    /// Format of the state file ([`Self::FORMAT`]).
    pub format: u32,
    /// Name, model, ports, protection.
    pub info: ArrayInfo,
    /// Users of a protected array (salted hashes only).
    #[serde(default)]
    pub accounts: Vec<StoredAccount>,
    /// Host groups, ordered by port and number.
    pub host_groups: Vec<HostGroup>,
    /// LUs.
    pub lus: Vec<Lu>,
    /// Who is logged in to the fabric, by WWPN. Kept with the configuration: a restarted array
    /// still knows which WWPN is active where, so it never lets a second vFC take one over.
    #[serde(default)]
    pub logins: BTreeMap<Wwpn, FabricLogin>,
    /// Replication pairs, by MV.
    #[serde(default)]
    pub pairs: BTreeMap<LuNumber, PairRecord>,
}

fn invalid(detail: impl Into<String>) -> ArrayError {
    ArrayError::new(ArrayErrorCode::InvalidRequest, detail)
}

impl ArrayState {
    /// Current state file format.
    pub const FORMAT: u32 = 1;

    fn check_port(&self, port: ArrayPort) -> Result<(), ArrayError> {
        if self.info.ports.contains(&port) {
            return Ok(());
        }
        Err(ArrayError::new(
            ArrayErrorCode::PortNotFound,
            format!(
                "array {} has no port {port}; its ports: {}",
                self.info.name,
                self.info
                    .ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// Host group `number` on `port`.
    pub fn host_group(
        &self,
        port: ArrayPort,
        number: HostGroupNumber,
    ) -> Result<&HostGroup, ArrayError> {
        self.check_port(port)?;
        self.host_groups
            .iter()
            .find(|g| g.port == port && g.number == number)
            .ok_or_else(|| {
                ArrayError::new(
                    ArrayErrorCode::HostGroupNotFound,
                    format!(
                        "no host group {number} on port {port} of array {}",
                        self.info.name
                    ),
                )
            })
    }

    fn host_group_mut(
        &mut self,
        port: ArrayPort,
        number: HostGroupNumber,
    ) -> Result<&mut HostGroup, ArrayError> {
        self.host_group(port, number)?;
        self.host_groups
            .iter_mut()
            .find(|g| g.port == port && g.number == number)
            .ok_or_else(|| {
                ArrayError::new(ArrayErrorCode::HostGroupNotFound, "host group vanished")
            })
    }

    /// Registers a WWPN to a host group. A WWPN belongs to at most one host group per port (the
    /// array could not tell which group's LUs it means otherwise).
    pub fn assign(
        &mut self,
        port: ArrayPort,
        number: HostGroupNumber,
        request: &AssignWwn,
    ) -> Result<HostGroup, ArrayError> {
        validate_nickname(&request.nickname).map_err(invalid)?;
        let group = self.host_group(port, number)?;
        if group.permits(request.wwpn) {
            return Err(ArrayError::new(
                ArrayErrorCode::WwnAlreadyInHostGroup,
                format!(
                    "{} is already in host group {}",
                    request.wwpn,
                    group.label()
                ),
            ));
        }
        if let Some(other) = self
            .host_groups
            .iter()
            .find(|g| g.port == port && g.permits(request.wwpn))
        {
            return Err(ArrayError::new(
                ArrayErrorCode::WwnAlreadyInHostGroup,
                format!(
                    "{} is already in host group {} of the same port; remove it there first",
                    request.wwpn,
                    other.label()
                ),
            ));
        }
        let group = self.host_group_mut(port, number)?;
        group.wwns.push(WwnEntry {
            wwpn: request.wwpn,
            nickname: request.nickname.clone(),
        });
        Ok(group.clone())
    }

    /// Removes a WWPN from a host group.
    pub fn remove(
        &mut self,
        port: ArrayPort,
        number: HostGroupNumber,
        wwpn: Wwpn,
    ) -> Result<HostGroup, ArrayError> {
        let group = self.host_group_mut(port, number)?;
        let before = group.wwns.len();
        group.wwns.retain(|w| w.wwpn != wwpn);
        if group.wwns.len() == before {
            return Err(ArrayError::new(
                ArrayErrorCode::WwnNotInHostGroup,
                format!("{wwpn} is not in host group {}", group.label()),
            ));
        }
        Ok(group.clone())
    }

    /// Gives a WWPN of a host group a new nickname.
    pub fn rename(
        &mut self,
        port: ArrayPort,
        number: HostGroupNumber,
        wwpn: Wwpn,
        nickname: &str,
    ) -> Result<HostGroup, ArrayError> {
        validate_nickname(nickname).map_err(invalid)?;
        let group = self.host_group_mut(port, number)?;
        let label = group.label();
        let entry = group
            .wwns
            .iter_mut()
            .find(|w| w.wwpn == wwpn)
            .ok_or_else(|| {
                ArrayError::new(
                    ArrayErrorCode::WwnNotInHostGroup,
                    format!("{wwpn} is not in host group {label}"),
                )
            })?;
        entry.nickname = nickname.to_owned();
        Ok(group.clone())
    }

    /// Sets the protection and its users (`auaccountenv -set`), all checked before any is kept.
    pub fn set_security(&mut self, request: &SetSecurity) -> Result<ArrayInfo, ArrayError> {
        match (request.mode, request.accounts.len()) {
            (SecurityMode::None, 0) => {}
            (SecurityMode::None, _) => {
                return Err(invalid(
                    "mode \"none\" takes no accounts; to remove the protection use `storagecli account remove`",
                ));
            }
            (_, 0) => {
                return Err(invalid(format!(
                    "{} needs a user ID and a password",
                    request.mode.label()
                )));
            }
            (SecurityMode::PasswordProtection, n) if n > 1 => {
                return Err(invalid(format!(
                    "password protection has one user ID and password, {n} were given"
                )));
            }
            _ => {}
        }
        let mut users = std::collections::HashSet::new();
        for a in &request.accounts {
            validate_credentials(&a.user, &a.password).map_err(invalid)?;
            if !users.insert(a.user.as_str()) {
                return Err(invalid(format!("user ID {:?} is given twice", a.user)));
            }
        }
        self.accounts = request
            .accounts
            .iter()
            .map(|a| StoredAccount::new(&a.user, &a.password))
            .collect();
        self.info.security = request.mode;
        Ok(self.info.clone())
    }

    /// The user `user` with `password`, if both are right.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.accounts
            .iter()
            .any(|a| a.user == user && a.verify(password))
    }

    /// Whether `wwpn` is in a host group of `port`.
    pub fn permitted_on(&self, port: ArrayPort, wwpn: Wwpn) -> bool {
        self.host_groups
            .iter()
            .any(|g| g.port == port && g.permits(wwpn))
    }

    /// Logs a vFC in: refused when the WWPN is active elsewhere (the fabric is the witness that
    /// no WWPN is active twice) or in no host group of the port (the HVM's "FC Login timeout").
    /// Logging in again from the same blade port is a no-op.
    pub fn login(
        &mut self,
        request: &FabricLoginRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(FabricLogin, bool), ArrayError> {
        self.check_port(request.array_port)?;
        if request.blade.is_empty() || request.blade.len() > 64 {
            return Err(invalid("blade must be 1 to 64 characters"));
        }
        if let Some(existing) = self.logins.get(&request.wwpn) {
            let same = existing.blade == request.blade
                && existing.blade_port == request.blade_port
                && existing.array_port == request.array_port;
            if same {
                return Ok((existing.clone(), false));
            }
            return Err(ArrayError::new(
                ArrayErrorCode::WwpnAlreadyLoggedIn,
                format!(
                    "{} is logged in by blade {} through FC port {} and array port {} since {}",
                    request.wwpn,
                    existing.blade,
                    existing.blade_port,
                    existing.array_port,
                    existing.since.format("%Y-%m-%d %H:%M:%S")
                ),
            ));
        }
        if !self.permitted_on(request.array_port, request.wwpn) {
            return Err(ArrayError::new(
                ArrayErrorCode::LoginNotPermitted,
                format!(
                    "{} is in no host group of port {} of array {}",
                    request.wwpn, request.array_port, self.info.name
                ),
            ));
        }
        let login = FabricLogin {
            wwpn: request.wwpn,
            blade: request.blade.clone(),
            blade_port: request.blade_port,
            array_port: request.array_port,
            since: now,
        };
        self.logins.insert(request.wwpn, login.clone());
        Ok((login, true))
    }

    /// Logs a vFC out; only the blade that logged it in can.
    pub fn logout(&mut self, request: &FabricLogoutRequest) -> Result<FabricLogin, ArrayError> {
        match self.logins.get(&request.wwpn) {
            Some(l) if l.blade == request.blade => {}
            Some(l) => {
                return Err(ArrayError::new(
                    ArrayErrorCode::NotLoggedIn,
                    format!(
                        "{} is logged in by blade {}, not by {}",
                        request.wwpn, l.blade, request.blade
                    ),
                ));
            }
            None => {
                return Err(ArrayError::new(
                    ArrayErrorCode::NotLoggedIn,
                    format!("{} is not logged in", request.wwpn),
                ));
            }
        }
        self.logins
            .remove(&request.wwpn)
            .ok_or_else(|| ArrayError::new(ArrayErrorCode::NotLoggedIn, "login vanished"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use lparmover::api::array::{Credentials, LuNumber, LunMapping};
    use lparmover::model::FcPort;

    fn wwpn(n: u64) -> Wwpn {
        Wwpn::new(0x5000_0870_0001_0000 + n).unwrap()
    }

    fn state() -> ArrayState {
        let port: ArrayPort = "0A".parse().unwrap();
        ArrayState {
            format: ArrayState::FORMAT,
            info: ArrayInfo {
                name: "ams1".parse().unwrap(),
                model: "AMS2500".into(),
                serial: "85000001".into(),
                controllers: vec![lparmover::model::ArrayController {
                    number: 0,
                    ip: "127.0.4.1".parse().unwrap(),
                }],
                ports: vec![port, "0B".parse().unwrap()],
                security: SecurityMode::None,
            },
            accounts: Vec::new(),
            host_groups: vec![
                HostGroup {
                    port,
                    number: HostGroupNumber::new(1).unwrap(),
                    name: "web-01".into(),
                    wwns: vec![WwnEntry {
                        wwpn: wwpn(1),
                        nickname: "web".into(),
                    }],
                    luns: vec![LunMapping {
                        lun: 0,
                        lu: LuNumber(0),
                    }],
                },
                HostGroup {
                    port,
                    number: HostGroupNumber::new(2).unwrap(),
                    name: "db-01".into(),
                    wwns: Vec::new(),
                    luns: Vec::new(),
                },
            ],
            lus: Vec::new(),
            logins: BTreeMap::new(),
            pairs: BTreeMap::new(),
        }
    }

    fn a() -> ArrayPort {
        "0A".parse().unwrap()
    }
    fn g(n: u8) -> HostGroupNumber {
        HostGroupNumber::new(n).unwrap()
    }

    #[test]
    fn refused_changes_leave_the_state_as_it_was() {
        let mut s = state();
        let before = s.clone();
        let cases: Vec<(ArrayErrorCode, Result<HostGroup, ArrayError>)> = vec![
            (
                ArrayErrorCode::PortNotFound,
                s.clone().assign(
                    "1A".parse().unwrap(),
                    g(1),
                    &AssignWwn {
                        wwpn: wwpn(9),
                        nickname: String::new(),
                    },
                ),
            ),
            (
                ArrayErrorCode::HostGroupNotFound,
                s.clone().assign(
                    a(),
                    g(7),
                    &AssignWwn {
                        wwpn: wwpn(9),
                        nickname: String::new(),
                    },
                ),
            ),
            (
                ArrayErrorCode::WwnAlreadyInHostGroup,
                s.assign(
                    a(),
                    g(1),
                    &AssignWwn {
                        wwpn: wwpn(1),
                        nickname: String::new(),
                    },
                ),
            ),
            (
                ArrayErrorCode::WwnAlreadyInHostGroup,
                s.assign(
                    a(),
                    g(2),
                    &AssignWwn {
                        wwpn: wwpn(1),
                        nickname: String::new(),
                    },
                ),
            ),
            (
                ArrayErrorCode::InvalidRequest,
                s.assign(
                    a(),
                    g(2),
                    &AssignWwn {
                        wwpn: wwpn(9),
                        nickname: "a,b".into(),
                    },
                ),
            ),
            (
                ArrayErrorCode::WwnNotInHostGroup,
                s.remove(a(), g(2), wwpn(1)),
            ),
            (
                ArrayErrorCode::WwnNotInHostGroup,
                s.rename(a(), g(1), wwpn(5), "x"),
            ),
        ];
        for (code, result) in cases {
            assert_eq!(result.unwrap_err().code, code);
        }
        let err = s
            .set_security(&SetSecurity {
                mode: SecurityMode::AccountAuthentication,
                accounts: vec![
                    Credentials {
                        user: "ok".into(),
                        password: "long-enough".into(),
                    },
                    Credentials {
                        user: "bad".into(),
                        password: "short".into(),
                    },
                ],
            })
            .unwrap_err();
        assert_eq!(err.code, ArrayErrorCode::InvalidRequest);
        assert_eq!(s, before, "a refused request changes nothing");
    }

    #[test]
    fn the_fabric_lets_a_wwpn_in_once_and_only_through_a_port_that_permits_it() {
        let mut s = state();
        let now = chrono::Utc::now();
        let request = |wwpn, blade: &str| FabricLoginRequest {
            wwpn,
            blade: blade.into(),
            blade_port: "3/0".parse::<FcPort>().unwrap(),
            array_port: a(),
        };
        let (_, fresh) = s.login(&request(wwpn(1), "ch1-b1"), now).unwrap();
        assert!(fresh);
        let (_, again) = s.login(&request(wwpn(1), "ch1-b1"), now).unwrap();
        assert!(!again, "the same vFC logging in again is a no-op");
        let twice = s.login(&request(wwpn(1), "ch1-b2"), now).unwrap_err();
        assert_eq!(twice.code, ArrayErrorCode::WwpnAlreadyLoggedIn);
        assert!(twice.detail.contains("ch1-b1"), "{twice}");
        let unregistered = s.login(&request(wwpn(2), "ch1-b2"), now).unwrap_err();
        assert_eq!(unregistered.code, ArrayErrorCode::LoginNotPermitted);
        let foreign = s
            .logout(&FabricLogoutRequest {
                wwpn: wwpn(1),
                blade: "ch1-b2".into(),
            })
            .unwrap_err();
        assert_eq!(foreign.code, ArrayErrorCode::NotLoggedIn);
        s.logout(&FabricLogoutRequest {
            wwpn: wwpn(1),
            blade: "ch1-b1".into(),
        })
        .unwrap();
        s.login(&request(wwpn(1), "ch1-b2"), now).unwrap();
    }

    #[test]
    fn accounts_keep_no_password_and_check_it() {
        let mut s = state();
        s.set_security(&SetSecurity {
            mode: SecurityMode::PasswordProtection,
            accounts: vec![Credentials {
                user: "admin".into(),
                password: "s3cret-pw".into(),
            }],
        })
        .unwrap();
        assert!(s.verify("admin", "s3cret-pw"));
        assert!(!s.verify("admin", "s3cret-px"));
        assert!(!s.verify("root", "s3cret-pw"));
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("s3cret-pw"),
            "the state file holds no password"
        );
    }
}
