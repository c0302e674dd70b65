//! One running array: its state behind a lock, persisted before every answer, its sessions, and
//! its LUs as sparse files.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use chrono::Utc;
use lparmover::api::array::{
    ArrayError, ArrayErrorCode, ArrayInfo, AssignWwn, Credentials, FabricLogin, FabricLoginRequest,
    FabricLogoutRequest, HostGroup, HostGroupBackup, Lu, LuDigest, LuNumber, Pair, RestoreMode,
    Session, SetPair, SetSecurity,
};
use lparmover::model::{ArrayPort, HostGroupNumber, SecurityMode, Wwpn};

use super::lu_io;
use super::pairs::{CopyWork, Direction};
use super::security::Sessions;
use super::state::ArrayState;
use crate::store::StateDir;

/// The array file in the state directory.
pub const STATE_FILE: &str = "array.json";

/// How long a fabric login lasts without its blade renewing it: blades log every wanted vFC in
/// again each second, so a blade that stopped doing so for this long is down (a real fabric
/// sees the link drop and logs the port out), and its WWPNs become free for another vFC.
pub const FABRIC_LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Chunks each copying pair moves per [`ArrayService::copy_step`] (the background copy
/// level): with the engine's 20 ms steps about 200 MiB/s per pair.
pub const CHUNKS_PER_STEP: usize = 4;

/// 64 KiB derived from the LU's name: the "installed system" of a boot LU.
fn boot_block(name: &str) -> Vec<u8> {
    let mut block = vec![0; 64 << 10];
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"lparmover boot LU ");
    hasher.update(name.as_bytes());
    hasher.finalize_xof().fill(&mut block);
    block
}

fn io_failed(what: &str, e: std::io::Error) -> ArrayError {
    ArrayError::new(ArrayErrorCode::LuIoFailed, format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running array.
#[derive(Debug)]
pub struct ArrayService {
    store: StateDir,
    state: Mutex<ArrayState>,
    /// Held by a change of `state` from its copy to its save (see `BladeService::mutate`).
    state_writer: Mutex<()>,
    sessions: Mutex<Sessions>,
    /// When each logged-in WWPN was last logged in (renewed); kept in memory only: after a
    /// restart every login starts a fresh [`FABRIC_LOGIN_TIMEOUT`].
    renewed: Mutex<std::collections::HashMap<Wwpn, std::time::Instant>>,
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
            state_writer: Mutex::new(()),
            sessions: Mutex::new(Sessions::default()),
            renewed: Mutex::new(std::collections::HashMap::new()),
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

    /// Creates missing LU files at their size (sparse: nothing written takes no space). An LU
    /// presented to a host group (a boot LU) gets a boot block of its own, so its content is
    /// not the same as an empty volume's and a copy of it can be told from none.
    fn create_lu_files(&self) -> anyhow::Result<()> {
        let (lus, presented) = {
            let state = lock(&self.state);
            let presented: std::collections::BTreeSet<LuNumber> = state
                .host_groups
                .iter()
                .flat_map(|g| g.luns.iter().map(|m| m.lu))
                .collect();
            (state.lus.clone(), presented)
        };
        std::fs::create_dir_all(self.store.root().join("lus"))?;
        for lu in lus {
            let path = self.lu_path(lu.number);
            if path.exists() {
                continue;
            }
            // Made under a temporary name and renamed, so a kill -9 leaves no half-made LU.
            let partial = path.with_extension("img.partial");
            let file = std::fs::File::create(&partial)?;
            file.set_len(u64::from(lu.size_mib) << 20)?;
            if presented.contains(&lu.number) {
                use std::os::unix::fs::FileExt as _;
                file.write_all_at(&boot_block(&lu.name), 0)?;
            }
            file.sync_all()?;
            std::fs::rename(&partial, &path)?;
        }
        Ok(())
    }

    /// Applies `change` to a copy of the state, persists the copy, then makes it current; a
    /// refused change or a failed write changes nothing.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut ArrayState) -> Result<T, ArrayError>,
    ) -> Result<T, ArrayError> {
        let _one_change_at_a_time = lock(&self.state_writer);
        let current = lock(&self.state).clone();
        let mut next = current.clone();
        let out = change(&mut next)?;
        if next != current {
            self.store
                .write_json(STATE_FILE, &next)
                .map_err(|e| ArrayError::new(ArrayErrorCode::StateWriteFailed, e.to_string()))?;
            *lock(&self.state) = next;
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
        lock(&self.renewed).insert(login.wwpn, std::time::Instant::now());
        if fresh {
            tracing::info!(wwpn = %login.wwpn, blade = %login.blade, port = %login.array_port, "FC login");
        }
        Ok(login)
    }

    /// A vFC logs out.
    pub fn fabric_logout(&self, request: &FabricLogoutRequest) -> Result<(), ArrayError> {
        let login = self.mutate(|s| s.logout(request))?;
        lock(&self.renewed).remove(&login.wwpn);
        tracing::info!(wwpn = %login.wwpn, blade = %login.blade, "FC logout");
        Ok(())
    }

    fn persist(&self, state: &super::state::ArrayState) -> Result<(), ArrayError> {
        self.store
            .write_json(STATE_FILE, state)
            .map_err(|e| ArrayError::new(ArrayErrorCode::StateWriteFailed, e.to_string()))
    }

    /// Carries out `work` on the LU files (synced).
    fn do_copy(&self, work: &CopyWork) -> Result<(), ArrayError> {
        let (from, to) = match work.direction {
            Direction::MvToRv => (work.mv, work.rv),
            Direction::RvToMv => (work.rv, work.mv),
        };
        lu_io::copy_chunks(&self.lu_path(from), &self.lu_path(to), &work.chunks).map_err(|e| {
            io_failed(
                &format!(
                    "copying {} chunk(s) of LU {from} to LU {to}",
                    work.chunks.len()
                ),
                e,
            )
        })
    }

    /// Every pair.
    pub fn pairs(&self) -> Vec<Pair> {
        lock(&self.state).pair_views()
    }

    /// The pair of MV `mv`.
    pub fn pair(&self, mv: LuNumber) -> Result<Pair, ArrayError> {
        lock(&self.state).pair_view(mv)
    }

    /// `iSMrc_pair -pair`.
    pub fn set_pair(&self, request: &SetPair) -> Result<Pair, ArrayError> {
        let pair = self.mutate(|s| s.set_pair(request))?;
        tracing::info!(mv = %request.mv, rv = %request.rv, "pair set");
        Ok(pair)
    }

    /// `iSMrc_pair -unpair`.
    pub fn unset_pair(&self, mv: LuNumber) -> Result<(), ArrayError> {
        self.mutate(|s| s.unset_pair(mv))?;
        tracing::info!(%mv, "pair cancelled");
        Ok(())
    }

    /// `iSMrc_replicate`.
    pub fn replicate(&self, mv: LuNumber) -> Result<Pair, ArrayError> {
        let pair = self.mutate(|s| s.replicate(mv, Utc::now()))?;
        tracing::info!(%mv, rv = %pair.rv, mib = pair.copy_total_mib, "Replicate started");
        Ok(pair)
    }

    /// `iSMrc_separate`.
    pub fn separate(&self, mv: LuNumber) -> Result<Pair, ArrayError> {
        let pair = self.mutate(|s| s.separate(mv, Utc::now()))?;
        tracing::info!(%mv, rv = %pair.rv, "Separate started");
        Ok(pair)
    }

    /// `iSMrc_restore`: MV writes still on their way to the RV are copied first, so the RV the
    /// restore copies back is the one the operator saw.
    pub fn restore(&self, mv: LuNumber, mode: RestoreMode) -> Result<Pair, ArrayError> {
        let mut current = lock(&self.state);
        let mut next = current.clone();
        if let Some(work) = next.reflection_pending(mv) {
            self.do_copy(&work)?;
            next.copied(&work);
        }
        let pair = next.restore(mv, mode, Utc::now())?;
        self.persist(&next)?;
        *current = next;
        tracing::info!(%mv, rv = %pair.rv, ?mode, mib = pair.copy_total_mib, "Restore started");
        Ok(pair)
    }

    /// A host write: remembered in the pair's state (and any chunk a Separate or Restore still
    /// owes copied) before the data reaches the LU.
    pub fn lu_write(&self, lu: LuNumber, offset: u64, data: &[u8]) -> Result<(), ArrayError> {
        let mut current = lock(&self.state);
        let mut next = current.clone();
        let before = next.plan_write(lu, offset, data.len() as u64)?;
        if let Some(work) = &before {
            self.do_copy(work)?;
        }
        if next != *current {
            self.persist(&next)?;
            *current = next;
        }
        lu_io::write_at(&self.lu_path(lu), offset, data)
            .map_err(|e| io_failed(&format!("writing LU {lu}"), e))
    }

    /// A host read.
    pub fn lu_read(&self, lu: LuNumber, offset: u64, length: u64) -> Result<Vec<u8>, ArrayError> {
        let current = lock(&self.state);
        current.check_read(lu, offset, length)?;
        lu_io::read_at(&self.lu_path(lu), offset, length)
            .map_err(|e| io_failed(&format!("reading LU {lu}"), e))
    }

    /// The digest of an LU, taken under the lock so no copy or write is half done.
    pub fn lu_digest(&self, lu: LuNumber) -> Result<LuDigest, ArrayError> {
        let current = lock(&self.state);
        let size_mib = current
            .lus
            .iter()
            .find(|l| l.number == lu)
            .map(|l| l.size_mib)
            .ok_or_else(|| ArrayError::new(ArrayErrorCode::LuNotFound, format!("no LU {lu}")))?;
        let blake3 = lu_io::digest(&self.lu_path(lu))
            .map_err(|e| io_failed(&format!("reading LU {lu}"), e))?;
        Ok(LuDigest {
            lu,
            size_mib,
            blake3,
        })
    }

    /// Logs out every WWPN whose blade has not renewed its login for `timeout` (its link is
    /// down). Returns how many.
    pub fn expire_fabric_logins(&self, timeout: std::time::Duration) -> usize {
        let now = std::time::Instant::now();
        let logged_in: Vec<FabricLogin> = lock(&self.state).logins.values().cloned().collect();
        let stale: Vec<FabricLogin> = {
            let mut renewed = lock(&self.renewed);
            logged_in
                .into_iter()
                .filter(|l| now.duration_since(*renewed.entry(l.wwpn).or_insert(now)) > timeout)
                .collect()
        };
        if stale.is_empty() {
            return 0;
        }
        let expired = self.mutate(|s| {
            for l in &stale {
                s.logins.remove(&l.wwpn);
            }
            Ok(stale.len())
        });
        match expired {
            Ok(n) => {
                let mut renewed = lock(&self.renewed);
                for l in &stale {
                    renewed.remove(&l.wwpn);
                    tracing::warn!(wwpn = %l.wwpn, blade = %l.blade, "FC login expired: the blade stopped renewing it (link down)");
                }
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record expired FC logins; will retry");
                0
            }
        }
    }

    /// One step of the copy engine: a few chunks per copying pair, then the state transitions
    /// of the copies that are done. Returns whether any pair still has work.
    pub fn copy_step(&self) -> bool {
        let mut current = lock(&self.state);
        if !current.has_copy_step() {
            return false;
        }
        let mut next = current.clone();
        let now = Utc::now();
        for work in next.copy_work(CHUNKS_PER_STEP) {
            match self.do_copy(&work) {
                Ok(()) => next.copied(&work),
                Err(e) => {
                    tracing::error!(mv = %work.mv, rv = %work.rv, error = %e, "copy failed: pair in Fault");
                    next.copy_failed(work.mv, e.detail, now);
                }
            }
        }
        next.settle(now);
        let busy = !next.copy_work(1).is_empty();
        if next != *current {
            for (mv, pair) in &next.pairs {
                let was = current.pairs.get(mv).map(|p| p.state);
                if was != Some(pair.state) {
                    tracing::info!(%mv, state = pair.state.code(), "pair state");
                }
            }
            match self.persist(&next) {
                Ok(()) => *current = next,
                Err(e) => tracing::error!(error = %e, "cannot record copy progress; will redo it"),
            }
        }
        busy
    }
}

/// Runs the copy engine of `service` on a thread of its own until the process ends (it also
/// expires the fabric logins of blades that went away, every half second).
pub fn start_copy_engine(service: std::sync::Arc<ArrayService>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("array-copy".into())
        .spawn(move || {
            let mut steps = 0u32;
            loop {
                service.copy_step();
                steps = steps.wrapping_add(1);
                if steps.is_multiple_of(25) {
                    service.expire_fabric_logins(FABRIC_LOGIN_TIMEOUT);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
        .map(|_| ())
}
