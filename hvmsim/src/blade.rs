//! One simulated blade: its HVM state, guests, locks and log, and the operations the management
//! API offers. The HTTP layer (`crate::api`) only parses requests and calls these.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use lparmover::api::{
    API_VERSION, HvmConfigDoc, Inventory, Lease, LinkState, LoadFigures, LockRequest, LockTarget,
    LogEntry, LogLevel, LparView, PortStates, PortStatus,
};
use lparmover::emg::{Emg, EmgError};
use lparmover::metrics::Part;
use lparmover::model::{
    FleetBlade, FleetNetwork, GuestBackend, GuestSpec, Lpar, LparNumber, LparRequest, LparStatus,
    Mode, WorkloadPatch, Wwpn,
};

use crate::deterrence::Operation;
use crate::fcports::PortTracker;
use crate::guest::Guest;
use crate::guests::{self, GuestHandle};
use crate::hvm::HvmState;
use crate::load::LoadMeter;
use crate::locks::LockTable;
use crate::store::{StateDir, StoreError};
use crate::syslog::SystemLog;

/// A blade and its HVM, shared by every request handler.
#[derive(Debug)]
pub struct BladeService {
    pub(crate) name: String,
    pub(crate) state: Mutex<HvmState>,
    /// Held by a change of `state` from its copy to its save: changes come one at a time while
    /// readers of `state` go on reading the saved state during the write.
    state_writer: Mutex<()>,
    pub(crate) store: StateDir,
    pub(crate) locks: Mutex<LockTable>,
    pub(crate) log: SystemLog,
    pub(crate) guests: Mutex<HashMap<LparNumber, GuestHandle>>,
    /// WWPNs each LPAR's vFCs are logged in to the fabric with.
    pub(crate) fc_logins: Mutex<HashMap<LparNumber, Vec<Wwpn>>>,
    /// LPARs with an activation or deactivation under way (guests take time to start).
    pub(crate) in_transition: Mutex<HashSet<LparNumber>>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) backend: GuestBackend,
    /// Which addresses this blade's fleet allows (migration paths are checked against it).
    pub(crate) network: FleetNetwork,
    pub(crate) load: LoadMeter,
    pub(crate) migrations: crate::migration::Migrations,
    pub(crate) ports: PortTracker,
    /// Logs the vFCs in at the storage arrays' fabric, when the blade is cabled to any.
    pub(crate) fabric: std::sync::OnceLock<Arc<crate::fabric::FabricAgent>>,
    /// This blade's moves, served on `GET /metrics`.
    pub(crate) metrics: lparmover::metrics::Metrics,
}

/// How long a destination waits for the array to confirm the migration WWPNs' FC login (the
/// seed's default: twice the login delay plus 5 s).
pub const FC_LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug already reported by the panic itself;
    // the data stays consistent because every change is applied to a copy first.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What became of a VM found running after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adoption {
    Running,
    Resumed,
    ShutDown,
}

/// Releases the transition mark of an LPAR when dropped.
struct TransitionGuard<'a> {
    set: &'a Mutex<HashSet<LparNumber>>,
    number: LparNumber,
}

impl Drop for TransitionGuard<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.number);
    }
}

/// Undoes a source's "Migrating" mark when dropped armed: a `start_send` that fails or panics
/// between marking the LPAR and handing it to the sender leaves it Activated, with no migration
/// record or job, as if the request never came (a panic unwinds through this drop). Disarmed
/// once the sender owns the move.
pub(crate) struct MigratingMark<'a> {
    service: &'a BladeService,
    number: LparNumber,
    job: &'a str,
    armed: bool,
}

impl<'a> MigratingMark<'a> {
    pub(crate) fn new(service: &'a BladeService, number: LparNumber, job: &'a str) -> Self {
        Self {
            service,
            number,
            job,
            armed: true,
        }
    }

    /// The sender owns the move now: its own ending clears the mark.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for MigratingMark<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.service.migrations.forget(self.job);
        let undone = self.service.mutate(|s| {
            s.migrations.remove(self.job);
            s.set_status(self.number, LparStatus::Activated).map(drop)
        });
        let message = match undone {
            Ok(()) => format!(
                "job {}: the send request failed before the move started; LPAR {} is Activated again",
                self.job, self.number
            ),
            Err(e) => format!(
                "job {}: the send request failed before the move started and LPAR {} could not be set Activated again ({e}); run `lparmover recover`",
                self.job, self.number
            ),
        };
        self.service
            .log
            .record(LogLevel::Warning, "migration", message);
    }
}

impl BladeService {
    /// Opens the blade from its state directory, or creates it from its fleet definition on first
    /// start. Guests are started by [`Self::boot`].
    pub fn open(
        store: StateDir,
        definition: &FleetBlade,
        backend: GuestBackend,
        network: FleetNetwork,
    ) -> Result<(Arc<Self>, bool), StoreError> {
        let (state, fresh) = match store.load_state()? {
            Some(mut state) => {
                lparmover::model::blade::normalise_migration_paths(
                    &mut state.blade.hvm.migration_paths,
                );
                (state, false)
            }
            None => (HvmState::new(definition.blade.clone()), true),
        };
        let log = SystemLog::open(&store.log_path());
        let started_at = Utc::now();
        let ports = PortTracker::new(&state.blade, started_at);
        let service = Arc::new(Self {
            name: state.blade.name.clone(),
            state: Mutex::new(state),
            state_writer: Mutex::new(()),
            store,
            locks: Mutex::new(LockTable::default()),
            log,
            guests: Mutex::new(HashMap::new()),
            fc_logins: Mutex::new(HashMap::new()),
            migrations: crate::migration::Migrations::default(),
            in_transition: Mutex::new(HashSet::new()),
            started_at,
            backend,
            network,
            load: LoadMeter::new(),
            ports,
            fabric: std::sync::OnceLock::new(),
            metrics: lparmover::metrics::Metrics::new(&[Part::Source, Part::Destination]),
        });
        Ok((service, fresh))
    }

    /// Brings the HVM up: on first start defines the fleet file's LPARs (activating those marked
    /// so). After a restart it adopts the VM processes still running (`crate::vmproc`: a killed
    /// blade process leaves its guests running), boots again the guests of activated LPARs whose
    /// VM is gone, stops VMs nothing claims, and marks LPARs caught mid-migration without a
    /// guest as requiring recovery.
    pub async fn boot(
        self: &Arc<Self>,
        definition: &FleetBlade,
        fresh: bool,
    ) -> Result<(), EmgError> {
        if fresh {
            self.mutate(|s| {
                s.blade = definition.blade.clone();
                Ok(())
            })?;
            self.log.record(
                LogLevel::Info,
                "hvm",
                format!("HVM {} initialised from the fleet file", self.name),
            );
            for request in &definition.lpars {
                self.define(request, None).await?;
            }
            return Ok(());
        }
        self.log.record(
            LogLevel::Info,
            "hvm",
            format!(
                "HVM {} restarted; configuration loaded from its state",
                self.name
            ),
        );
        // Guests run in VM processes of their own: those still running outlived the previous
        // blade process and are adopted, not booted again.
        let dir = self.vm_dir();
        let mut adopted: HashMap<LparNumber, Arc<Guest>> = HashMap::new();
        let mut to_stop: Vec<Arc<Guest>> = Vec::new();
        let found = tokio::task::spawn_blocking(move || crate::vmproc::scan(&dir))
            .await
            .unwrap_or_default();
        for vm in found {
            match adopted.entry(vm.lpar) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(vm.guest);
                }
                // Two VMs for one LPAR cannot both be right; a VM start that raced the crash
                // is the likelier second. Keep the first found.
                std::collections::hash_map::Entry::Occupied(_) => to_stop.push(vm.guest),
            }
        }
        let settled = self.settle_records_after_restart(&mut adopted)?;
        to_stop.extend(settled.to_stop);
        let lpars: Vec<Lpar> = lock(&self.state).lpars.values().cloned().collect();
        for lpar in lpars {
            match lpar.status {
                LparStatus::Activated => {
                    if let Some(guest) = adopted.remove(&lpar.number)
                        && self.adopt_running(&lpar, guest).await?
                    {
                        continue;
                    }
                    // The guest died (the host restarted, or its VM process was killed): boot
                    // it again (auto activation).
                    self.mutate(|s| s.set_status(lpar.number, LparStatus::Deactivated).map(drop))?;
                    match self.power_on(lpar.number).await {
                        Ok(_) => self.log.record(
                            LogLevel::Info,
                            "lpar",
                            format!(
                                "LPAR {} ({}) re-activated after HVM restart",
                                lpar.number, lpar.name
                            ),
                        ),
                        Err(e) => self.log.record(
                            LogLevel::Error,
                            "lpar",
                            format!(
                                "LPAR {} ({}) could not be re-activated: {e}",
                                lpar.number, lpar.name
                            ),
                        ),
                    }
                }
                LparStatus::Migrating if !lock(&self.guests).contains_key(&lpar.number) => {
                    self.mutate(|s| {
                        s.set_status(lpar.number, LparStatus::RequiresRecovery)
                            .map(drop)
                    })?;
                    self.log.record(
                        LogLevel::Warning,
                        "migration",
                        format!(
                            "LPAR {} ({}) was migrating when the HVM stopped; it requires recovery",
                            lpar.number, lpar.name
                        ),
                    );
                }
                _ => {}
            }
        }
        for (number, guest) in adopted {
            self.log.record(
                LogLevel::Warning,
                "lpar",
                format!(
                    "LPAR {number}: a VM process ran for it but nothing here claims it; stopped"
                ),
            );
            to_stop.push(guest);
        }
        if !to_stop.is_empty() {
            tokio::task::spawn_blocking(move || {
                for guest in to_stop {
                    guest.stop();
                }
            })
            .await
            .ok();
        }
        for (number, wwpns) in settled.migration_logins {
            self.set_fc_logins(number, wwpns);
        }
        Ok(())
    }

    /// After a restart: takes over the still-running VM of activated LPAR `lpar`. Returns
    /// `false` (the VM stopped) when it cannot be used and the LPAR must boot again.
    async fn adopt_running(&self, lpar: &Lpar, guest: Arc<Guest>) -> Result<bool, EmgError> {
        let probe = Arc::clone(&guest);
        let verdict = tokio::task::spawn_blocking(move || -> Result<Adoption, String> {
            use lparmover::partition::Partition;
            if probe.awaiting_state() {
                return Err("it never received its vCPU state".into());
            }
            if let Some(why) = probe.failure() {
                return Err(format!("its guest failed: {why}"));
            }
            if probe.has_shut_down() {
                return Ok(Adoption::ShutDown);
            }
            if probe.is_paused() {
                // Activated here means it runs here (a destination that recorded the resume
                // before it could resume the vCPUs).
                probe.resume().map_err(|e| e.to_string())?;
                return Ok(Adoption::Resumed);
            }
            Ok(Adoption::Running)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let number = lpar.number;
        match verdict {
            Ok(Adoption::ShutDown) => {
                self.mutate(|s| s.set_status(number, LparStatus::Deactivated).map(drop))?;
                tokio::task::spawn_blocking(move || guest.stop()).await.ok();
                self.log.record(
                    LogLevel::Info,
                    "lpar",
                    format!(
                        "LPAR {number} ({}): its guest OS shut down while the HVM was down; deactivated",
                        lpar.name
                    ),
                );
                Ok(true)
            }
            Ok(how) => {
                lock(&self.guests).insert(number, GuestHandle::new(guest));
                self.set_fc_logins(number, lpar.vfcs.iter().map(|v| v.wwpn).collect());
                self.log.record(
                    LogLevel::Info,
                    "lpar",
                    format!(
                        "LPAR {number} ({}): its guest kept running while the HVM was down; adopted{}",
                        lpar.name,
                        if how == Adoption::Resumed { " and resumed" } else { "" }
                    ),
                );
                Ok(true)
            }
            Err(why) => {
                self.log.record(
                    LogLevel::Warning,
                    "lpar",
                    format!(
                        "LPAR {number} ({}): its VM process cannot be adopted ({why}); booting it again",
                        lpar.name
                    ),
                );
                tokio::task::spawn_blocking(move || guest.stop()).await.ok();
                Ok(false)
            }
        }
    }

    /// The blade's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the sockets of this blade's VM processes live.
    pub(crate) fn vm_dir(&self) -> std::path::PathBuf {
        crate::vmproc::vm_dir(self.store.root())
    }

    /// Applies `change` to a copy of the state, persists the copy, then makes it current. On any
    /// error nothing changes.
    pub(crate) fn mutate<T>(
        &self,
        change: impl FnOnce(&mut HvmState) -> Result<T, EmgError>,
    ) -> Result<T, EmgError> {
        let _one_change_at_a_time = lock(&self.state_writer);
        let current = lock(&self.state).clone();
        let mut next = current.clone();
        let out = change(&mut next)?;
        if next != current {
            self.store.save_state(&next).map_err(|e| {
                self.log
                    .record(LogLevel::Error, "hvm", format!("state not saved: {e}"));
                EmgError::new(Emg::StateNotSaved, e.to_string())
            })?;
            *lock(&self.state) = next;
        }
        Ok(out)
    }

    pub(crate) fn check_lock(
        &self,
        target: LockTarget,
        lease: Option<&str>,
    ) -> Result<(), EmgError> {
        lock(&self.locks).check(target, lease, Utc::now())
    }

    pub(crate) fn view(&self, lpar: Lpar) -> LparView {
        let wwn_rollback_pending = lock(&self.state).wwn_rollbacks.contains_key(&lpar.number);
        // Out of the lock before asking the VM process: a guest busy pausing answers late, and
        // every other handler needs `guests`.
        let guest = lock(&self.guests).get(&lpar.number).cloned();
        let runtime = guest.as_ref().map(GuestHandle::runtime);
        let fc_logins = lock(&self.fc_logins)
            .get(&lpar.number)
            .cloned()
            .unwrap_or_default();
        let fabric = self
            .fabric
            .get()
            .map(|f| f.states_of(&fc_logins))
            .unwrap_or_default();
        LparView {
            lpar,
            runtime,
            fc_logins,
            fabric,
            wwn_rollback_pending,
        }
    }

    /// Starts logging this blade's vFCs in at the arrays whose state directories are `arrays`.
    pub fn attach_fabric(self: &Arc<Self>, arrays: &[std::path::PathBuf]) -> anyhow::Result<()> {
        if arrays.is_empty() {
            return Ok(());
        }
        let agent = crate::fabric::FabricAgent::new(&self.name, arrays)?;
        if self.fabric.set(agent.clone()).is_ok() {
            agent.spawn(Arc::downgrade(self));
        }
        Ok(())
    }

    /// Destination of a live move: logs `lpar`'s vFCs in with their migration WWPNs and waits
    /// until the arrays confirm them ([`FC_LOGIN_TIMEOUT`]); without a fabric, nothing to wait
    /// for.
    pub(crate) async fn confirm_migration_logins(&self, lpar: &Lpar) -> Result<(), String> {
        let Some(agent) = self.fabric.get().cloned() else {
            return Ok(());
        };
        let wwpns: Vec<Wwpn> = lpar.vfcs.iter().map(|v| v.migration_wwpn).collect();
        self.set_fc_logins(lpar.number, wwpns.clone());
        let wanted = self.wanted_fabric();
        let handled: Vec<Wwpn> = wwpns
            .into_iter()
            .filter(|w| wanted.contains_key(w))
            .collect();
        if handled.is_empty() {
            return Ok(());
        }
        agent.confirm(&handled, FC_LOGIN_TIMEOUT).await
    }

    /// Every WWPN the LPARs' vFCs use now, with the FC port and the array port its cable
    /// reaches (ports cabled to no array this blade reaches are left out).
    pub(crate) fn wanted_fabric(&self) -> std::collections::BTreeMap<Wwpn, crate::fabric::Wanted> {
        let Some(agent) = self.fabric.get() else {
            return std::collections::BTreeMap::new();
        };
        let logins = lock(&self.fc_logins).clone();
        let state = lock(&self.state);
        let mut wanted = std::collections::BTreeMap::new();
        for (number, wwpns) in logins {
            let Some(lpar) = state.lpars.get(&number) else {
                continue;
            };
            for wwpn in wwpns {
                let Some(vfc) = lpar
                    .vfcs
                    .iter()
                    .find(|v| v.wwpn == wwpn || v.migration_wwpn == wwpn)
                else {
                    continue;
                };
                let Some(cable) = state
                    .blade
                    .fc_port(vfc.port)
                    .and_then(|p| p.storage.clone())
                else {
                    continue;
                };
                if agent.serves(&cable.array) {
                    wanted.insert(
                        wwpn,
                        crate::fabric::Wanted {
                            port: vfc.port,
                            cable,
                        },
                    );
                }
            }
        }
        wanted
    }

    /// Logs the LPAR's vFCs in to the fabric with `wwpns` (empty: logs them out).
    pub(crate) fn set_fc_logins(&self, number: LparNumber, wwpns: Vec<Wwpn>) {
        {
            let mut logins = lock(&self.fc_logins);
            if wwpns.is_empty() {
                logins.remove(&number);
            } else {
                logins.insert(number, wwpns);
            }
        }
        if let Some(agent) = self.fabric.get() {
            agent.wake();
        }
    }

    fn begin_transition(&self, number: LparNumber) -> Result<TransitionGuard<'_>, EmgError> {
        if !lock(&self.in_transition).insert(number) {
            return Err(EmgError::new(
                Emg::LparBusy,
                format!("LPAR {number} is being activated or deactivated"),
            ));
        }
        Ok(TransitionGuard {
            set: &self.in_transition,
            number,
        })
    }

    /// Everything about the blade.
    pub fn inventory(&self) -> Inventory {
        let state = lock(&self.state).clone();
        Inventory {
            api_version: API_VERSION.to_owned(),
            resources: state.resources(),
            lpars: state
                .lpars
                .values()
                .cloned()
                .map(|l| self.view(l))
                .collect(),
            wwn_rollbacks: state.wwn_rollbacks.values().cloned().collect(),
            blade: state.blade,
            started_at: self.started_at,
            guest_backend: self.backend,
        }
    }

    /// Every LPAR.
    pub fn lpars(&self) -> Vec<LparView> {
        let lpars: Vec<Lpar> = lock(&self.state).lpars.values().cloned().collect();
        lpars.into_iter().map(|l| self.view(l)).collect()
    }

    /// One LPAR.
    pub fn lpar(&self, number: LparNumber) -> Result<LparView, EmgError> {
        let lpar = lock(&self.state).lpar(number)?.clone();
        Ok(self.view(lpar))
    }

    /// Defines an LPAR, activating it if the request asks.
    pub async fn define(
        &self,
        request: &LparRequest,
        lease: Option<&str>,
    ) -> Result<LparView, EmgError> {
        self.check_lock(LockTarget::Blade, lease)?;
        self.deter(Operation::Define, None)?;
        let lpar = self.mutate(|s| s.define(request))?;
        self.log.record(
            LogLevel::Info,
            "lpar",
            format!("LPAR {} ({}) defined", lpar.number, lpar.name),
        );
        if request.activate {
            return self.activate(lpar.number, lease).await;
        }
        Ok(self.view(lpar))
    }

    /// Activates an LPAR and starts its guest.
    pub async fn activate(
        &self,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, EmgError> {
        self.check_lock(LockTarget::Lpar(number), lease)?;
        self.deter(Operation::Activate, Some(number))?;
        self.power_on(number).await
    }

    /// Starts an LPAR's guest and marks it Activated (the HVM's own activation: after a restart it
    /// boots what was running, whatever an operator could do).
    async fn power_on(&self, number: LparNumber) -> Result<LparView, EmgError> {
        let _transition = self.begin_transition(number)?;
        // Dry run first: every rule is checked before any guest starts.
        let lpar = lock(&self.state).clone().activate(number)?;
        let spec = GuestSpec {
            memory_bytes: lpar.memory_mib * 1024 * 1024,
            vcpus: lpar.processors.count,
            workload: lpar.workload.clone(),
            backend: self.backend,
        };
        let vm_dir = self.vm_dir();
        let guest = tokio::task::spawn_blocking(move || guests::start(&spec, number, &vm_dir))
            .await
            .map_err(|e| EmgError::new(Emg::Internal, format!("guest start task failed: {e}")))?
            .map_err(|e| {
                EmgError::new(
                    Emg::Internal,
                    format!("guest of LPAR {number} did not start: {e}"),
                )
            })?;
        match self.mutate(|s| s.activate(number)) {
            Ok(lpar) => {
                lock(&self.guests).insert(number, guest);
                self.set_fc_logins(number, lpar.vfcs.iter().map(|v| v.wwpn).collect());
                self.log.record(
                    LogLevel::Info,
                    "lpar",
                    format!("LPAR {} ({}) activated", lpar.number, lpar.name),
                );
                Ok(self.view(lpar))
            }
            Err(e) => {
                guest.stop();
                Err(e)
            }
        }
    }

    /// Deactivates an LPAR: its guest stops at once.
    pub async fn deactivate(
        &self,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, EmgError> {
        self.check_lock(LockTarget::Lpar(number), lease)?;
        self.deter(Operation::Deactivate, Some(number))?;
        // Table 5-2 note 2: an LPAR requiring recovery can be deactivated; it holds no guest, so
        // that is recovering it (refused while a move still claims it).
        if lock(&self.state).lpar(number)?.status == LparStatus::RequiresRecovery {
            return self.recover_lpar(number);
        }
        self.power_off(number).await
    }

    /// Operation deterrence (Table 5-2, `crate::deterrence`) for `op` on LPAR `number` (`None`:
    /// on the HVM).
    fn deter(&self, op: Operation, number: Option<LparNumber>) -> Result<(), EmgError> {
        lock(&self.state).deter(op, number)
    }

    /// Marks an LPAR deactivated and stops its guest, whoever holds its lease: used when the
    /// guest OS shut itself down.
    async fn power_off(&self, number: LparNumber) -> Result<LparView, EmgError> {
        let _transition = self.begin_transition(number)?;
        let lpar = self.mutate(|s| {
            let lpar = s.lpar(number)?;
            if lpar.status != LparStatus::Activated {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "LPAR {} ({}) is {}, not activated",
                        lpar.number,
                        lpar.name,
                        lpar.status.label()
                    ),
                ));
            }
            s.set_status(number, LparStatus::Deactivated)
        })?;
        self.set_fc_logins(number, Vec::new());
        let guest = lock(&self.guests).remove(&number);
        if let Some(guest) = guest {
            tokio::task::spawn_blocking(move || guest.stop()).await.ok();
        }
        self.log.record(
            LogLevel::Info,
            "lpar",
            format!("LPAR {} ({}) deactivated", lpar.number, lpar.name),
        );
        Ok(self.view(lpar))
    }

    /// Asks the LPAR's guest OS to shut down; the LPAR deactivates when it does.
    pub fn request_shutdown(
        self: &Arc<Self>,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, EmgError> {
        self.check_lock(LockTarget::Lpar(number), lease)?;
        self.deter(Operation::Shutdown, Some(number))?;
        let lpar = lock(&self.state).lpar(number)?.clone();
        let guest = lock(&self.guests).get(&number).cloned().ok_or_else(|| {
            EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "LPAR {} ({}) is {}, not running",
                    lpar.number,
                    lpar.name,
                    lpar.status.label()
                ),
            )
        })?;
        let complies = guest
            .guest()
            .request_shutdown()
            .map_err(|e| EmgError::new(Emg::Internal, format!("shutdown request failed: {e}")))?;
        self.log.record(
            LogLevel::Info,
            "lpar",
            format!(
                "LPAR {} ({}): guest OS shutdown requested",
                lpar.number, lpar.name
            ),
        );
        if complies {
            let service = Arc::clone(self);
            tokio::spawn(async move {
                while !guest.guest().has_shut_down() {
                    if let Some(why) = guest.guest().failure() {
                        service.log.record(
                            LogLevel::Error,
                            "lpar",
                            format!("LPAR {number}: the guest failed while shutting down: {why}"),
                        );
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                match service.power_off(number).await {
                    Ok(_) => service.log.record(
                        LogLevel::Info,
                        "lpar",
                        format!("LPAR {number}: guest OS shut down; deactivated"),
                    ),
                    Err(e) => service.log.record(
                        LogLevel::Warning,
                        "lpar",
                        format!("LPAR {number}: guest shut down but deactivation failed: {e}"),
                    ),
                }
            });
        }
        Ok(self.view(lpar))
    }

    /// Shutdown mode, destination: defines a moved LPAR (deactivated) keeping its names.
    pub fn cold_define(
        &self,
        request: &lparmover::api::ColdDefine,
        lease: Option<&str>,
    ) -> Result<lparmover::api::ColdDefined, EmgError> {
        self.check_lock(LockTarget::Blade, lease)?;
        let (done, fresh) =
            self.mutate(|s| s.define_cold_move(&request.job, &request.lpar, request.number))?;
        if fresh {
            // One step on this side: the define is the whole move here.
            self.metrics
                .moves
                .one_step(Part::Destination, Mode::Shutdown);
            self.log.record(
                LogLevel::Info,
                "migration",
                format!(
                    "job {}: LPAR {} ({}) defined from another HVM (Shutdown mode)",
                    request.job, done.number, request.lpar.name
                ),
            );
        }
        Ok(done)
    }

    /// Shutdown mode, destination: what this HVM defined for `job`, if anything.
    pub fn cold_move(&self, job: &str) -> Result<lparmover::api::ColdDefined, EmgError> {
        let known = lock(&self.state).cold_moves.get(job).cloned();
        known.ok_or_else(|| {
            EmgError::new(
                Emg::InvalidRequest,
                format!("HVM {} defined no LPAR for job {job}", self.name),
            )
        })
    }

    /// Shutdown mode, source: deletes the moved (deactivated) LPAR and adopts the exchanged names.
    pub fn release_lpar(
        &self,
        number: LparNumber,
        body: &lparmover::api::Release,
        lease: Option<&str>,
    ) -> Result<(), EmgError> {
        self.check_lock(LockTarget::Lpar(number), lease)?;
        let lpar = self.mutate(|s| {
            let lpar = s.delete(number)?;
            s.adopt_exchange(&body.exchange);
            Ok(lpar)
        })?;
        self.metrics.moves.one_step(Part::Source, Mode::Shutdown);
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "LPAR {} ({}) released after its move",
                lpar.number, lpar.name
            ),
        );
        Ok(())
    }

    /// Deletes a deactivated LPAR.
    pub fn delete(&self, number: LparNumber, lease: Option<&str>) -> Result<(), EmgError> {
        self.check_lock(LockTarget::Lpar(number), lease)?;
        self.deter(Operation::Delete, Some(number))?;
        let _transition = self.begin_transition(number)?;
        let lpar = self.mutate(|s| s.delete(number))?;
        self.log.record(
            LogLevel::Info,
            "lpar",
            format!("LPAR {} ({}) deleted", lpar.number, lpar.name),
        );
        Ok(())
    }

    /// Changes an LPAR's workload; a running guest takes the new dirty rate at once.
    pub fn set_workload(
        &self,
        number: LparNumber,
        change: &WorkloadPatch,
    ) -> Result<LparView, EmgError> {
        let lpar = self.mutate(|s| {
            s.lpar(number)?;
            let lpar = s
                .lpars
                .get_mut(&number)
                .ok_or_else(|| EmgError::new(Emg::LparNotFound, format!("no LPAR {number}")))?;
            // The whole result is checked, inside the change: a refused one writes nothing.
            let workload = change.apply(&lpar.workload);
            workload
                .validate()
                .map_err(|e| EmgError::new(Emg::InvalidRequest, e.to_string()))?;
            lpar.workload = workload;
            Ok(lpar.clone())
        })?;
        if let Some(guest) = lock(&self.guests).get(&number) {
            guest.set_dirty_rate(lpar.workload.dirty_rate_mbps);
        }
        Ok(self.view(lpar))
    }

    /// The digest of an activated LPAR's memory outside its working set (a witness that memory
    /// arrived intact after a move or a fault).
    pub fn memory_digest(
        &self,
        number: LparNumber,
    ) -> Result<lparmover::api::MemoryDigestView, EmgError> {
        let lpar = lock(&self.state).lpar(number)?.clone();
        let guest = lock(&self.guests)
            .get(&number)
            .map(|g| Arc::clone(g.guest()))
            .ok_or_else(|| {
                EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "LPAR {} ({}) is {} and has no guest memory here: activate it first",
                        lpar.number,
                        lpar.name,
                        lpar.status.label()
                    ),
                )
            })?;
        let pages = guest.pages_outside_working_set();
        let digest = guest.digest_outside_working_set();
        Ok(lparmover::api::MemoryDigestView {
            lpar: number,
            first_page: pages.start,
            pages: pages.end - pages.start,
            blake3: digest.0.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// "Save HVM configuration".
    pub fn save_config(&self) -> Result<HvmConfigDoc, EmgError> {
        self.deter(Operation::SaveConfig, None)?;
        let doc = lock(&self.state).config_doc();
        self.store
            .save_config(&doc)
            .map_err(|e| EmgError::new(Emg::StateNotSaved, e.to_string()))?;
        self.log
            .record(LogLevel::Info, "config", "HVM configuration saved");
        Ok(doc)
    }

    /// The running configuration, for a backup file.
    pub fn backup_config(&self) -> HvmConfigDoc {
        self.log
            .record(LogLevel::Info, "config", "HVM configuration backed up");
        lock(&self.state).config_doc()
    }

    /// Loads a backup of this blade.
    pub fn restore_config(
        &self,
        doc: &HvmConfigDoc,
        lease: Option<&str>,
    ) -> Result<HvmConfigDoc, EmgError> {
        self.check_lock(LockTarget::Blade, lease)?;
        self.deter(Operation::RestoreConfig, None)?;
        if !lock(&self.in_transition).is_empty() {
            return Err(EmgError::new(
                Emg::BladeBusyOperation,
                "an LPAR is being activated or deactivated",
            ));
        }
        self.mutate(|s| s.restore(doc))?;
        self.log.record(
            LogLevel::Info,
            "config",
            format!(
                "HVM configuration restored from a backup taken {}",
                doc.taken_at
            ),
        );
        Ok(lock(&self.state).config_doc())
    }

    /// System log entries after `after`.
    pub fn logs(&self, after: u64) -> Vec<LogEntry> {
        self.log.since(after)
    }

    /// CPU and NIC load.
    pub fn load(&self) -> LoadFigures {
        let state = lock(&self.state);
        self.load.figures(&state.blade)
    }

    /// Link states of every NIC and FC HBA port.
    pub fn port_states(&self) -> PortStates {
        self.ports.snapshot(Utc::now())
    }

    /// Changes a port's link state (fault injection and tests); logged like table 5-5.
    pub fn set_port_state(
        &self,
        slot: u8,
        port: u8,
        state: LinkState,
    ) -> Result<PortStatus, EmgError> {
        self.ports.set(slot, port, state, Utc::now(), &self.log)
    }

    /// Takes a lease.
    pub fn lock(&self, request: &LockRequest) -> Result<Lease, EmgError> {
        if let LockTarget::Lpar(n) = request.target {
            lock(&self.state).lpar(n)?;
        }
        let lease = lock(&self.locks).acquire(request, Utc::now())?;
        self.log.record(
            LogLevel::Info,
            "lock",
            format!(
                "{:?} locked by {} for {}",
                lease.target, lease.owner, lease.purpose
            ),
        );
        Ok(lease)
    }

    /// Renews a lease.
    pub fn renew(&self, id: &str) -> Result<Lease, EmgError> {
        lock(&self.locks).renew(id, Utc::now())
    }

    /// Releases a lease.
    pub fn unlock(&self, id: &str) -> Result<(), EmgError> {
        lock(&self.locks).release(id)?;
        self.log
            .record(LogLevel::Info, "lock", format!("lease {id} released"));
        Ok(())
    }

    /// Live leases.
    pub fn locks(&self) -> Vec<Lease> {
        lock(&self.locks).list(Utc::now())
    }

    /// Stops every guest, incoming ones included (the blade is switched off: its VM processes
    /// stop with it; only a killed blade process leaves them running, to be adopted).
    pub fn shutdown(&self) {
        let mut guests: Vec<Arc<Guest>> = lock(&self.guests)
            .drain()
            .map(|(_, g)| Arc::clone(g.guest()))
            .collect();
        guests.extend(self.migrations.take_guests());
        for guest in guests {
            guest.stop();
        }
    }
}
