//! One running array: its state behind a lock, persisted before every answer, its sessions, and
//! its LUs as sparse files.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use chrono::Utc;
use lparmover::api::array::{
    ArrayError, ArrayErrorCode, ArrayInfo, AssignWwn, Credentials, FabricLogin, FabricLoginRequest,
    FabricLogoutRequest, HostGroup, HostGroupBackup, Lu, Session, SetSecurity,
};
use lparmover::model::{ArrayPort, HostGroupNumber, SecurityMode, Wwpn};

use super::security::Sessions;
use super::state::ArrayState;
use crate::store::StateDir;

/// The array file in the state directory.
pub const STATE_FILE: &str = "array.json";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running array.
#[derive(Debug)]
pub struct ArrayService {
    store: StateDir,
    state: Mutex<ArrayState>,
    sessions: Mutex<Sessions>,
}

impl ArrayService {
    /// The array of `store`, made from `first` when the directory holds none yet (then its LU
    /// files are created too). Returns whether it was fresh.
    pub fn open(
        store: StateDir,
        first: impl FnOnce() -> anyhow::Result<ArrayState>,
    ) -> anyhow::Result<(Self, bool)> {
        let existing: Option<ArrayState> = store.read_json(STATE_FILE)?;
        let (state, fresh) = match existing {
            Some(mut s) => {
                lparmover::format::check(
                    &store.root().join(STATE_FILE),
                    "array state file",
                    "hvmsim",
                    s.format,
                    ArrayState::FORMAT,
                )?;
                s.format = ArrayState::FORMAT;
                (s, false)
            }
            None => (first()?, true),
        };
        let service = Self {
            store,
            state: Mutex::new(state),
            sessions: Mutex::new(Sessions::default()),
        };
        service.create_lu_files()?;
        if fresh {
            let state = lock(&service.state).clone();
            service.store.write_json(STATE_FILE, &state)?;
        }
        Ok((service, fresh))
    }

    /// The file holding LU `number`'s blocks.
    pub fn lu_path(&self, number: lparmover::api::array::LuNumber) -> PathBuf {
        self.store.root().join("lus").join(format!("{number}.img"))
    }

    /// Creates missing LU files at their size (sparse: nothing written takes no space).
    fn create_lu_files(&self) -> anyhow::Result<()> {
        let lus = lock(&self.state).lus.clone();
        std::fs::create_dir_all(self.store.root().join("lus"))?;
        for lu in lus {
            let path = self.lu_path(lu.number);
            if path.exists() {
                continue;
            }
            let file = std::fs::File::create(&path)?;
            file.set_len(u64::from(lu.size_mib) << 20)?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// Applies `change` to a copy of the state, persists the copy, then makes it current; a
    /// refused change or a failed write changes nothing.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut ArrayState) -> Result<T, ArrayError>,
    ) -> Result<T, ArrayError> {
        let mut current = lock(&self.state);
        let mut next = current.clone();
        let out = change(&mut next)?;
        if next != *current {
            self.store
                .write_json(STATE_FILE, &next)
                .map_err(|e| ArrayError::new(ArrayErrorCode::StateWriteFailed, e.to_string()))?;
            *current = next;
        }
        Ok(out)
    }

    /// The array's name.
    pub fn name(&self) -> String {
        lock(&self.state).info.name.to_string()
    }

    /// What the array is.
    pub fn info(&self) -> ArrayInfo {
        lock(&self.state).info.clone()
    }

    /// Refuses unless the array is unprotected or `session` is an open session.
    pub fn authorize(&self, session: Option<&str>) -> Result<(), ArrayError> {
        if lock(&self.state).info.security == SecurityMode::None {
            return Ok(());
        }
        let open = session.is_some_and(|s| lock(&self.sessions).user(s).is_some());
        if open {
            Ok(())
        } else {
            Err(ArrayError::new(
                ArrayErrorCode::LoginRequired,
                match session {
                    Some(_) => "the session has ended (logged out or idle for 30 minutes)",
                    None => "no session given",
                },
            ))
        }
    }

    /// `aulogin`.
    pub fn login(&self, credentials: &Credentials) -> Result<Session, ArrayError> {
        let known = lock(&self.state).verify(&credentials.user, &credentials.password);
        let protected = lock(&self.state).info.security != SecurityMode::None;
        if protected && !known {
            tracing::warn!(user = %credentials.user.chars().take(64).collect::<String>(), "array login refused");
            return Err(ArrayError::new(
                ArrayErrorCode::WrongCredentials,
                format!(
                    "login of user {:?} refused",
                    credentials.user.chars().take(64).collect::<String>()
                ),
            ));
        }
        let (token, idle) = lock(&self.sessions).open(&credentials.user);
        let expires_at = Utc::now()
            + chrono::Duration::from_std(idle).unwrap_or_else(|_| chrono::Duration::minutes(30));
        Ok(Session {
            token,
            user: credentials.user.clone(),
            expires_at,
        })
    }

    /// `aulogout`.
    pub fn logout(&self, session: Option<&str>) {
        if let Some(s) = session {
            lock(&self.sessions).close(s);
        }
    }

    /// `auaccountenv -set`: every open session ends with the old protection.
    pub fn set_security(&self, request: &SetSecurity) -> Result<ArrayInfo, ArrayError> {
        let info = self.mutate(|s| s.set_security(request))?;
        lock(&self.sessions).close_all();
        Ok(info)
    }

    /// `auaccountenv -rm`.
    pub fn remove_security(&self) -> Result<ArrayInfo, ArrayError> {
        let info = self.mutate(|s| {
            s.accounts.clear();
            s.info.security = SecurityMode::None;
            Ok(s.info.clone())
        })?;
        lock(&self.sessions).close_all();
        Ok(info)
    }

    /// Every host group.
    pub fn host_groups(&self) -> Vec<HostGroup> {
        lock(&self.state).host_groups.clone()
    }

    /// One host group.
    pub fn host_group(
        &self,
        port: ArrayPort,
        number: HostGroupNumber,
    ) -> Result<HostGroup, ArrayError> {
        lock(&self.state).host_group(port, number).cloned()
    }

    /// `auhgout`.
    pub fn backup(&self) -> HostGroupBackup {
        let s = lock(&self.state);
        HostGroupBackup {
            format: HostGroupBackup::FORMAT,
            array: s.info.name.clone(),
            serial: s.info.serial.clone(),
            taken_at: Utc::now(),
            host_groups: s.host_groups.clone(),
            lus: s.lus.clone(),
        }
    }

    /// Registers a WWPN.
    pub fn assign(
        &self,
        port: ArrayPort,
        number: HostGroupNumber,
        request: &AssignWwn,
    ) -> Result<HostGroup, ArrayError> {
        let group = self.mutate(|s| s.assign(port, number, request))?;
        tracing::info!(%port, group = %number, wwpn = %request.wwpn, "WWPN registered");
        Ok(group)
    }

    /// Removes a WWPN.
    pub fn remove(
        &self,
        port: ArrayPort,
        number: HostGroupNumber,
        wwpn: Wwpn,
    ) -> Result<HostGroup, ArrayError> {
        let group = self.mutate(|s| s.remove(port, number, wwpn))?;
        tracing::info!(%port, group = %number, %wwpn, "WWPN removed");
        Ok(group)
    }

    /// Renames a WWPN.
    pub fn rename(
        &self,
        port: ArrayPort,
        number: HostGroupNumber,
        wwpn: Wwpn,
        nickname: &str,
    ) -> Result<HostGroup, ArrayError> {
        self.mutate(|s| s.rename(port, number, wwpn, nickname))
    }

    /// The LUs.
    pub fn lus(&self) -> Vec<Lu> {
        lock(&self.state).lus.clone()
    }

    /// Who is logged in.
    pub fn logins(&self) -> Vec<FabricLogin> {
        lock(&self.state).logins.values().cloned().collect()
    }

    /// A vFC logs in.
    pub fn fabric_login(&self, request: &FabricLoginRequest) -> Result<FabricLogin, ArrayError> {
        let (login, fresh) = self.mutate(|s| s.login(request, Utc::now()))?;
        if fresh {
            tracing::info!(wwpn = %login.wwpn, blade = %login.blade, port = %login.array_port, "FC login");
        }
        Ok(login)
    }

    /// A vFC logs out.
    pub fn fabric_logout(&self, request: &FabricLogoutRequest) -> Result<(), ArrayError> {
        let login = self.mutate(|s| s.logout(request))?;
        tracing::info!(wwpn = %login.wwpn, blade = %login.blade, "FC logout");
        Ok(())
    }
}
