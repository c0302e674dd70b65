//! The HVM's configuration and its rules, as plain data with pure operations.
//!
//! Every change goes through a method of [`HvmState`] that either applies completely or returns an
//! [`EmgError`] and changes nothing; the server persists the new state before it answers, so what a
//! client was told is what survives a kill -9.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use lparmover::api::{HvmConfigDoc, Resources};
use lparmover::emg::{Emg, EmgError};
use lparmover::model::lpar::{VfcRequest, VnicRequest, vfc_names};
use lparmover::model::{
    Blade, Lpar, LparNumber, LparRequest, LparStatus, MacAddr, PortMode, ProcessorMode, Vfc, VfcId,
    Vnic, Wwnn, Wwpn,
};
use serde::{Deserialize, Serialize};

/// The persistent state of one HVM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HvmState {
    /// Format of the state file ([`Self::FORMAT`]; missing in files of before versions: 1).
    #[serde(default = "lparmover::format::v1")]
    pub format: u32,
    /// Blade and HVM configuration.
    pub blade: Blade,
    /// Defined LPARs.
    pub lpars: BTreeMap<LparNumber, Lpar>,
    /// Names this HVM's vfcID slots carry instead of the pool's, after WWN exchanges with other
    /// HVMs during live moves (the names of a slot are never generated twice fleet-wide).
    #[serde(default)]
    pub vfc_overrides: BTreeMap<VfcId, (Wwpn, Wwnn, Wwpn)>,
    /// MACs of (LPAR number, vNIC index) slots replacing the derived ones after MAC exchanges;
    /// keys are `"LPAR/INDEX"`.
    #[serde(default)]
    pub mac_overrides: BTreeMap<String, MacAddr>,
    /// This HVM's part in moves under way, by job id, written before the step each names (see
    /// `lparmover::api::MigrationRecord`); a restarted HVM acts on them in `BladeService::boot`.
    #[serde(default)]
    pub migrations: BTreeMap<String, lparmover::api::MigrationRecord>,
    /// Shutdown-mode moves this HVM took in as destination, by job id, written with the
    /// definition itself: a manager recovering the job learns from it whether the LPAR was
    /// defined here, and asking again returns this answer instead of a second definition.
    #[serde(default)]
    pub cold_moves: BTreeMap<String, lparmover::api::ColdDefined>,
    /// LPARs with WWNs to roll back after a failed live move (`crate::wwn`); while any is left
    /// this HVM takes part in no live move.
    #[serde(default)]
    pub wwn_rollbacks: BTreeMap<LparNumber, lparmover::api::WwnRollback>,
}

/// Shutdown-mode answers kept per HVM; the oldest go first (job ids sort by start time). A
/// recovering manager needs only the jobs it has not finished.
const COLD_MOVES_KEPT: usize = 64;

fn mac_slot(number: LparNumber, index: u8) -> String {
    format!("{number}/{index}")
}

impl HvmState {
    /// Current state file format.
    pub const FORMAT: u32 = 1;

    /// A fresh HVM on `blade` with no LPARs.
    pub fn new(mut blade: Blade) -> Self {
        // Paths of fleet files and backups written before paths had names and a primary use.
        lparmover::model::blade::normalise_migration_paths(&mut blade.hvm.migration_paths);
        Self {
            format: Self::FORMAT,
            blade,
            lpars: BTreeMap::new(),
            vfc_overrides: BTreeMap::new(),
            mac_overrides: BTreeMap::new(),
            migrations: BTreeMap::new(),
            cold_moves: BTreeMap::new(),
            wwn_rollbacks: BTreeMap::new(),
        }
    }

    /// Shutdown mode, destination: defines the moved LPAR (deactivated) for `job`, or returns
    /// what an earlier call for the same job defined.
    pub fn define_cold_move(
        &mut self,
        job: &str,
        lpar: &Lpar,
        number: Option<LparNumber>,
    ) -> Result<(lparmover::api::ColdDefined, bool), EmgError> {
        if let Some(done) = self.cold_moves.get(job) {
            return Ok((done.clone(), false));
        }
        let (defined, exchange) = self.define_moved(lpar, number, LparStatus::Deactivated)?;
        let done = lparmover::api::ColdDefined {
            number: defined.number,
            exchange,
        };
        while self.cold_moves.len() >= COLD_MOVES_KEPT {
            self.cold_moves.pop_first();
        }
        self.cold_moves.insert(job.to_owned(), done.clone());
        Ok((done, true))
    }

    /// The names vfcID `id` of this HVM generates (pool names, or those it took in an exchange).
    pub fn slot_vfc_names(&self, id: VfcId) -> Result<(Wwpn, Wwnn, Wwpn), EmgError> {
        match self.vfc_overrides.get(&id) {
            Some(names) => Ok(*names),
            None => vfc_names(self.blade.hvm.wwn_pool, id)
                .map_err(|e| EmgError::new(Emg::InvalidRequest, e.to_string())),
        }
    }

    /// The MAC this HVM derives for vNIC `index` of LPAR `number`.
    pub fn slot_mac(&self, number: LparNumber, index: u8) -> MacAddr {
        self.mac_overrides
            .get(&mac_slot(number, index))
            .copied()
            .unwrap_or_else(|| MacAddr::logical(self.blade.hvm.vnic_system_no, number, index))
    }

    /// Records that the slots of `lpar` carry its current names from now on (destination of a
    /// committed move).
    pub fn adopt_lpar_names(&mut self, lpar: &Lpar) {
        for v in &lpar.vfcs {
            self.vfc_overrides
                .insert(v.vfc_id, (v.wwpn, v.wwnn, v.migration_wwpn));
        }
        for (i, v) in lpar.vnics.iter().enumerate() {
            if let Ok(i) = u8::try_from(i) {
                self.mac_overrides.insert(mac_slot(lpar.number, i), v.mac);
            }
        }
    }

    /// Records names received in an exchange for slots of this HVM (source of a committed move).
    pub fn adopt_exchange(&mut self, exchange: &lparmover::api::NameExchange) {
        for (id, names) in &exchange.vfcs {
            self.vfc_overrides.insert(*id, *names);
        }
        for ((number, index), mac) in &exchange.macs {
            self.mac_overrides.insert(mac_slot(*number, *index), *mac);
        }
    }

    /// The LPAR with `number`.
    pub fn lpar(&self, number: LparNumber) -> Result<&Lpar, EmgError> {
        self.lpars.get(&number).ok_or_else(|| {
            EmgError::new(
                Emg::LparNotFound,
                format!("no LPAR {number} on HVM {}", self.blade.name),
            )
        })
    }

    fn lpar_mut(&mut self, number: LparNumber) -> Result<&mut Lpar, EmgError> {
        let name = self.blade.name.clone();
        self.lpars.get_mut(&number).ok_or_else(|| {
            EmgError::new(Emg::LparNotFound, format!("no LPAR {number} on HVM {name}"))
        })
    }

    /// LPARs that hold processors and memory: running, or taking part in a migration.
    fn holds_resources(status: LparStatus) -> bool {
        matches!(status, LparStatus::Activated | LparStatus::Migrating)
    }

    /// What is used and free.
    pub fn resources(&self) -> Resources {
        let (mut processors, mut memory) = (0u32, 0u64);
        for lpar in self
            .lpars
            .values()
            .filter(|l| Self::holds_resources(l.status))
        {
            processors = processors.saturating_add(lpar.processors.count);
            memory = memory.saturating_add(lpar.memory_mib);
        }
        let used_vfc: BTreeSet<VfcId> = self.used_vfc_ids();
        let range = self.blade.hvm.vfc_ids;
        Resources {
            processors_total: self.blade.processors,
            processors_free: self.blade.processors.saturating_sub(processors),
            memory_total_mib: self.blade.memory_mib,
            memory_free_mib: self.blade.memory_mib.saturating_sub(memory),
            vfc_ids_free: u32::try_from(range.iter().filter(|id| !used_vfc.contains(id)).count())
                .unwrap_or(u32::MAX),
            lpar_numbers_free: u32::from(LparNumber::MAX)
                - u32::try_from(self.lpars.len()).unwrap_or(0),
        }
    }

    fn used_vfc_ids(&self) -> BTreeSet<VfcId> {
        self.lpars
            .values()
            .flat_map(|l| l.vfcs.iter().map(|v| v.vfc_id))
            .collect()
    }

    /// Defines an LPAR from a request: checks names, devices and identities, assigns the number
    /// (youngest free for Auto), MACs and vfcIDs / WWNs. Does not activate.
    pub fn define(&mut self, request: &LparRequest) -> Result<Lpar, EmgError> {
        let hvm = &self.blade.name;
        request
            .workload
            .validate()
            .map_err(|e| EmgError::new(Emg::InvalidRequest, e.to_string()))?;
        if request.processors.count == 0 {
            return Err(EmgError::new(
                Emg::InvalidRequest,
                "an LPAR needs at least one processor",
            ));
        }
        if request.processors.mode == ProcessorMode::Shared
            && !(1..=999).contains(&request.processors.service_ratio)
        {
            return Err(EmgError::new(
                Emg::InvalidRequest,
                format!(
                    "service ratio {} is outside 1–999",
                    request.processors.service_ratio
                ),
            ));
        }
        let group = request.processors.group;
        match self.blade.group_processors(group) {
            None => {
                return Err(EmgError::new(
                    Emg::ProcessorGroupNotDefined,
                    format!(
                        "HVM {hvm} has no processor group {group}; its groups: {}",
                        self.group_list()
                    ),
                ));
            }
            // (Without groups, group 0 is the whole blade: activation checks what is free.)
            Some(n) if n < request.processors.count && !self.blade.processor_groups.is_empty() => {
                return Err(EmgError::new(
                    Emg::ProcessorGroupTooSmall,
                    format!(
                        "LPAR {} has {} processors, processor group {group} of HVM {hvm} has {n}",
                        request.name, request.processors.count
                    ),
                ));
            }
            Some(_) => {}
        }
        // An LPAR larger than the whole blade could never be activated here.
        if request.memory_mib > self.blade.memory_mib {
            return Err(EmgError::new(
                Emg::NotEnoughMemory,
                format!(
                    "LPAR {} asks for {} MiB of memory, HVM {hvm} has {} MiB in all; give at most that",
                    request.name, request.memory_mib, self.blade.memory_mib
                ),
            ));
        }
        if request.processors.count > self.blade.processors {
            return Err(EmgError::new(
                Emg::NotEnoughProcessors,
                format!(
                    "LPAR {} asks for {} processors, HVM {hvm} has {} in all; give at most that",
                    request.name, request.processors.count, self.blade.processors
                ),
            ));
        }
        if request.memory_mib < 2 || !request.memory_mib.is_multiple_of(2) {
            return Err(EmgError::new(
                Emg::InvalidRequest,
                format!(
                    "memory {} MiB must be a positive multiple of 2 MiB",
                    request.memory_mib
                ),
            ));
        }
        if let Some(other) = self.lpars.values().find(|l| l.name == request.name) {
            return Err(EmgError::new(
                Emg::DuplicateLparName,
                format!(
                    "LPAR {} on HVM {hvm} is already named {}",
                    other.number, other.name
                ),
            ));
        }
        let number = match request.number {
            Some(n) if self.lpars.contains_key(&n) => {
                return Err(EmgError::new(
                    Emg::LparNumberInUse,
                    format!(
                        "LPAR number {n} on HVM {hvm} is taken by {}",
                        self.lpars[&n].name
                    ),
                ));
            }
            Some(n) => n,
            None => self.youngest_free_number().ok_or_else(|| {
                EmgError::new(
                    Emg::NoFreeLparNumber,
                    format!("all {} numbers used on {hvm}", LparNumber::MAX),
                )
            })?,
        };
        let vnics = request
            .vnics
            .iter()
            .enumerate()
            .map(|(i, v)| self.make_vnic(number, i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut taken_ids = self.used_vfc_ids();
        let mut vfcs = Vec::with_capacity(request.vfcs.len());
        for v in &request.vfcs {
            let vfc = self.make_vfc(v, &taken_ids)?;
            taken_ids.insert(vfc.vfc_id);
            vfcs.push(vfc);
        }
        self.check_identities_free(&vnics, &vfcs)?;
        let lpar = Lpar {
            number,
            name: request.name.clone(),
            status: LparStatus::Deactivated,
            processors: request.processors,
            memory_mib: request.memory_mib,
            vnics,
            vfcs,
            usb: request.usb,
            options: request.options.clone(),
            workload: request.workload.clone(),
        };
        self.lpars.insert(number, lpar.clone());
        Ok(lpar)
    }

    /// The youngest (lowest) free LPAR number: the seed's "Auto".
    pub fn youngest_free_number(&self) -> Option<LparNumber> {
        LparNumber::all().find(|n| !self.lpars.contains_key(n))
    }

    fn make_vnic(
        &self,
        number: LparNumber,
        index: usize,
        request: &VnicRequest,
    ) -> Result<Vnic, EmgError> {
        let port = self.blade.nic_port(request.segment).ok_or_else(|| {
            EmgError::new(
                Emg::DeviceNotAvailable,
                format!(
                    "blade {} has no NIC port for segment {}",
                    self.blade.name, request.segment
                ),
            )
        })?;
        if port.mode != PortMode::Shared && port.mode != PortMode::Vf {
            return Err(EmgError::new(
                Emg::DeviceNotAvailable,
                format!(
                    "NIC segment {} is in {:?} mode, not shared",
                    request.segment, port.mode
                ),
            ));
        }
        let index = u8::try_from(index)
            .ok()
            .filter(|i| *i < 16)
            .ok_or_else(|| EmgError::new(Emg::InvalidRequest, "an LPAR has at most 16 vNICs"))?;
        let mac = request.mac.unwrap_or_else(|| self.slot_mac(number, index));
        Ok(Vnic {
            segment: request.segment,
            vlan: request.vlan.clone(),
            mac,
        })
    }

    fn make_vfc(&self, request: &VfcRequest, taken: &BTreeSet<VfcId>) -> Result<Vfc, EmgError> {
        let port = self.blade.fc_port(request.port).ok_or_else(|| {
            EmgError::new(
                Emg::DeviceNotAvailable,
                format!(
                    "blade {} has no FC HBA port {} (no card in slot {}?)",
                    self.blade.name, request.port, request.port.slot
                ),
            )
        })?;
        if port.mode != PortMode::Shared {
            return Err(EmgError::new(
                Emg::DeviceNotAvailable,
                format!(
                    "FC port {} is in {:?} mode, not shared",
                    request.port, port.mode
                ),
            ));
        }
        let range = self.blade.hvm.vfc_ids;
        let id = match request.vfc_id {
            Some(id) if taken.contains(&id) => {
                return Err(EmgError::new(
                    Emg::NotEnoughVfcIds,
                    format!(
                        "vfcID {} is already assigned on HVM {}",
                        id.get(),
                        self.blade.name
                    ),
                ));
            }
            Some(id) if !range.contains(id) => {
                return Err(EmgError::new(
                    Emg::NotEnoughVfcIds,
                    format!(
                        "vfcID {} is outside this HVM's range {}–{}",
                        id.get(),
                        range.first.get(),
                        range.last.get()
                    ),
                ));
            }
            Some(id) => id,
            None => range.iter().find(|id| !taken.contains(id)).ok_or_else(|| {
                EmgError::new(
                    Emg::NotEnoughVfcIds,
                    format!("all vfcIDs of HVM {} are assigned", self.blade.name),
                )
            })?,
        };
        let (wwpn, wwnn, migration_wwpn) = match request.names {
            Some(names) => names,
            None => self.slot_vfc_names(id)?,
        };
        Ok(Vfc {
            port: request.port,
            vfc_id: id,
            wwpn,
            wwnn,
            migration_wwpn,
        })
    }

    fn check_identities_free(&self, vnics: &[Vnic], vfcs: &[Vfc]) -> Result<(), EmgError> {
        let macs: BTreeSet<MacAddr> = self
            .lpars
            .values()
            .flat_map(|l| l.vnics.iter().map(|v| v.mac))
            .collect();
        let wwpns: BTreeSet<Wwpn> = self
            .lpars
            .values()
            .flat_map(|l| l.vfcs.iter().flat_map(|v| [v.wwpn, v.migration_wwpn]))
            .collect();
        let mut new_macs = BTreeSet::new();
        for v in vnics {
            if macs.contains(&v.mac) || !new_macs.insert(v.mac) {
                return Err(EmgError::new(
                    Emg::IdentityInUse,
                    format!("MAC {} is already in use", v.mac),
                ));
            }
        }
        let mut new_wwpns = BTreeSet::new();
        for v in vfcs {
            for w in [v.wwpn, v.migration_wwpn] {
                if wwpns.contains(&w) || !new_wwpns.insert(w) {
                    return Err(EmgError::new(
                        Emg::IdentityInUse,
                        format!("WWPN {w} is already in use"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the HVM has processors and memory for `lpar` on top of what is in use.
    fn check_resources(&self, lpar: &Lpar) -> Result<(), EmgError> {
        let resources = self.resources();
        let hvm = &self.blade.name;
        if lpar.memory_mib > resources.memory_free_mib {
            return Err(EmgError::new(
                Emg::NotEnoughMemory,
                format!(
                    "LPAR {} needs {} MiB, HVM {hvm} has {} MiB free",
                    lpar.name, lpar.memory_mib, resources.memory_free_mib
                ),
            ));
        }
        if lpar.processors.count > resources.processors_free {
            return Err(EmgError::new(
                Emg::NotEnoughProcessors,
                format!(
                    "LPAR {} needs {} processors, HVM {hvm} has {} free",
                    lpar.name, lpar.processors.count, resources.processors_free
                ),
            ));
        }
        let group = lpar.processors.group;
        let free = self.group_free_processors(group);
        if lpar.processors.count > free {
            return Err(EmgError::new(
                Emg::NotEnoughProcessors,
                format!(
                    "LPAR {} needs {} processors, processor group {group} of HVM {hvm} has {free} free",
                    lpar.name, lpar.processors.count
                ),
            ));
        }
        Ok(())
    }

    /// Processors of group `group` not held by a running or migrating LPAR of that group.
    pub fn group_free_processors(&self, group: u8) -> u32 {
        let used: u32 = self
            .lpars
            .values()
            .filter(|l| Self::holds_resources(l.status) && l.processors.group == group)
            .map(|l| l.processors.count)
            .sum();
        self.blade
            .group_processors(group)
            .unwrap_or(0)
            .saturating_sub(used)
    }

    /// `0 (14 processors), 1 (2 processors)`.
    fn group_list(&self) -> String {
        self.blade
            .processor_groups()
            .iter()
            .map(|g| format!("{} ({} processors)", g.id, g.processors))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Defines an incoming LPAR of a live move, keeping its names and identities, reserving its
    /// processors and memory (status Migrating). Returns it with the names the destination's
    /// slots would have generated (they go to the source in the exchange).
    pub fn define_incoming(
        &mut self,
        lpar: &Lpar,
        number: Option<LparNumber>,
    ) -> Result<(Lpar, lparmover::api::NameExchange), EmgError> {
        self.define_moved(lpar, number, LparStatus::Migrating)
    }

    /// Defines a moved LPAR keeping its names: `Migrating` (live, resources reserved) or
    /// `Deactivated` (Shutdown mode, its names adopted by the slots at once).
    pub fn define_moved(
        &mut self,
        lpar: &Lpar,
        number: Option<LparNumber>,
        status: LparStatus,
    ) -> Result<(Lpar, lparmover::api::NameExchange), EmgError> {
        let request = request_keeping_names(lpar, Slot::Moved(number));
        let before = self.clone();
        let mut defined = self.define(&request)?;
        if status == LparStatus::Migrating
            && let Err(e) = self.check_resources(&defined)
        {
            *self = before;
            return Err(e);
        }
        defined.status = status;
        self.lpars.insert(defined.number, defined.clone());
        let mut exchange = lparmover::api::NameExchange::default();
        for (src, dst) in lpar.vfcs.iter().zip(&defined.vfcs) {
            exchange
                .vfcs
                .push((src.vfc_id, self.slot_vfc_names(dst.vfc_id)?));
        }
        for i in 0..defined.vnics.len() {
            let i = u8::try_from(i).unwrap_or(u8::MAX);
            exchange
                .macs
                .push(((lpar.number, i), self.slot_mac(defined.number, i)));
        }
        if status == LparStatus::Deactivated {
            self.adopt_lpar_names(&defined);
        }
        Ok((defined, exchange))
    }

    /// Checks an LPAR may be activated now and marks it Activated.
    pub fn activate(&mut self, number: LparNumber) -> Result<Lpar, EmgError> {
        let hvm = self.blade.name.clone();
        let candidate = self.lpar(number)?.clone();
        match candidate.status {
            LparStatus::Deactivated => {}
            LparStatus::RequiresRecovery => {
                return Err(EmgError::new(
                    Emg::LparCorrupted,
                    format!(
                        "LPAR {} ({}) on {hvm} requires recovery",
                        candidate.number, candidate.name
                    ),
                ));
            }
            other => {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "LPAR {} ({}) is {}; only a deactivated LPAR can be activated",
                        candidate.number,
                        candidate.name,
                        other.label()
                    ),
                ));
            }
        }
        self.check_resources(&candidate)?;
        self.set_status(number, LparStatus::Activated)
    }

    /// Sets an LPAR's status (deactivation, migration stages).
    pub fn set_status(&mut self, number: LparNumber, status: LparStatus) -> Result<Lpar, EmgError> {
        let lpar = self.lpar_mut(number)?;
        lpar.status = status;
        Ok(lpar.clone())
    }

    /// Deletes a deactivated LPAR.
    pub fn delete(&mut self, number: LparNumber) -> Result<Lpar, EmgError> {
        let lpar = self.lpar(number)?;
        if lpar.status != LparStatus::Deactivated {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "LPAR {} ({}) is {}; deactivate it before deleting",
                    lpar.number,
                    lpar.name,
                    lpar.status.label()
                ),
            ));
        }
        self.lpars
            .remove(&number)
            .ok_or_else(|| EmgError::new(Emg::LparNotFound, format!("no LPAR {number}")))
    }

    /// The configuration document for save / backup.
    pub fn config_doc(&self) -> HvmConfigDoc {
        HvmConfigDoc {
            format: HvmConfigDoc::FORMAT,
            blade_name: self.blade.name.clone(),
            taken_at: Utc::now(),
            blade: self.blade.clone(),
            lpars: self.lpars.values().cloned().collect(),
        }
    }

    /// Replaces the configuration with a backup of this same blade. Every LPAR must be deactivated
    /// first (a restore must never leave a guest running under a configuration that no longer
    /// has it), and the document must be consistent.
    pub fn restore(&mut self, doc: &HvmConfigDoc) -> Result<(), EmgError> {
        if doc.format > HvmConfigDoc::FORMAT {
            return Err(EmgError::new(
                Emg::RestoreRejected,
                format!(
                    "the backup has format version {}, newer than this HVM reads (up to version {}); upgrade the HVM (hvmsim) first",
                    doc.format,
                    HvmConfigDoc::FORMAT
                ),
            ));
        }
        if doc.blade_name != self.blade.name || doc.blade.name != self.blade.name {
            return Err(EmgError::new(
                Emg::RestoreRejected,
                format!(
                    "the backup is of blade {:?}, this is {:?}",
                    doc.blade_name, self.blade.name
                ),
            ));
        }
        if let Some(active) = self
            .lpars
            .values()
            .find(|l| l.status != LparStatus::Deactivated)
        {
            return Err(EmgError::new(
                Emg::InvalidLparState,
                format!(
                    "LPAR {} ({}) is {}; deactivate every LPAR before a restore",
                    active.number,
                    active.name,
                    active.status.label()
                ),
            ));
        }
        self.check_same_hardware(&doc.blade)?;
        let mut fresh = HvmState::new(doc.blade.clone());
        fresh.vfc_overrides = self.vfc_overrides.clone();
        fresh.mac_overrides = self.mac_overrides.clone();
        // A mark is about the fabric, not the configuration: a restore keeps it.
        fresh.wwn_rollbacks = self.wwn_rollbacks.clone();
        for lpar in &doc.lpars {
            if fresh.lpars.contains_key(&lpar.number) {
                return Err(EmgError::new(
                    Emg::RestoreRejected,
                    format!("LPAR number {} appears twice", lpar.number),
                ));
            }
            // The same rules as a define: devices on cards and ports this blade has, vfcIDs in
            // its range, names and identities not in use, a size the blade can ever run.
            fresh.define(&request_keeping_names(lpar, Slot::Same)).map_err(|e| {
                EmgError::new(
                    e.kind,
                    format!(
                        "the backup's LPAR {} ({}) cannot be defined here: {}; nothing was restored",
                        lpar.number, lpar.name, e.detail
                    ),
                )
            })?;
            fresh.lpars.insert(
                lpar.number,
                Lpar {
                    status: LparStatus::Deactivated,
                    ..lpar.clone()
                },
            );
        }
        *self = fresh;
        Ok(())
    }

    /// A backup brings configuration back, never hardware: one that describes other processors,
    /// memory or cards than this blade has is refused, naming what differs.
    fn check_same_hardware(&self, backup: &Blade) -> Result<(), EmgError> {
        let ours = &self.blade;
        let differs = |what: &str, theirs: String, mine: String| {
            EmgError::new(
                Emg::RestoreRejected,
                format!(
                    "the backup describes {what} {theirs}, this blade has {mine}; a restore cannot change hardware, nothing was restored"
                ),
            )
        };
        if backup.processors != ours.processors {
            return Err(differs(
                "processors:",
                backup.processors.to_string(),
                ours.processors.to_string(),
            ));
        }
        if backup.memory_mib != ours.memory_mib {
            return Err(differs(
                "memory:",
                format!("{} MiB", backup.memory_mib),
                format!("{} MiB", ours.memory_mib),
            ));
        }
        if backup.processor_groups != ours.processor_groups {
            return Err(differs(
                "processor groups",
                format!("{:?}", backup.processor_groups),
                format!("{:?}", ours.processor_groups),
            ));
        }
        if backup.cpu_model != ours.cpu_model || backup.model != ours.model {
            return Err(differs(
                "the model",
                format!("{} ({})", backup.model, backup.cpu_model),
                format!("{} ({})", ours.model, ours.cpu_model),
            ));
        }
        if backup.cards != ours.cards {
            return Err(differs(
                "cards",
                format!(
                    "{:?}",
                    backup.cards.iter().map(|c| c.slot).collect::<Vec<_>>()
                ),
                format!(
                    "{:?} (or other ports or modes)",
                    ours.cards.iter().map(|c| c.slot).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }
}

/// Where a definition that keeps an LPAR's names and identities puts it.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// Exactly where it was: its number and vfcIDs (a restore).
    Same,
    /// At this number (None = youngest free) with the destination's own vfcIDs (a moved LPAR).
    Moved(Option<LparNumber>),
}

/// The request that defines `lpar` again with its names, MACs and WWNs, in `slot`.
fn request_keeping_names(lpar: &Lpar, slot: Slot) -> LparRequest {
    let (number, keep_vfc_ids) = match slot {
        Slot::Same => (Some(lpar.number), true),
        Slot::Moved(number) => (number, false),
    };
    LparRequest {
        number,
        name: lpar.name.clone(),
        processors: lpar.processors,
        memory_mib: lpar.memory_mib,
        vnics: lpar
            .vnics
            .iter()
            .map(|v| VnicRequest {
                segment: v.segment,
                vlan: v.vlan.clone(),
                mac: Some(v.mac),
            })
            .collect(),
        vfcs: lpar
            .vfcs
            .iter()
            .map(|v| VfcRequest {
                port: v.port,
                vfc_id: keep_vfc_ids.then_some(v.vfc_id),
                names: Some((v.wwpn, v.wwnn, v.migration_wwpn)),
            })
            .collect(),
        usb: lpar.usb,
        options: lpar.options.clone(),
        workload: lpar.workload.clone(),
        activate: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lparmover::model::{Fleet, FleetBlade, fleet::DEMO_FLEET_TOML};

    fn demo_blade(name: &str) -> FleetBlade {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo").unwrap();
        fleet.blade(name).unwrap().clone()
    }

    fn defined(name: &str) -> HvmState {
        let fb = demo_blade(name);
        let mut hvm = HvmState::new(fb.blade.clone());
        for req in &fb.lpars {
            hvm.define(req).unwrap();
        }
        hvm
    }

    #[test]
    fn define_assigns_distinct_identities() {
        let hvm = defined("ch1-b1");
        let macs: BTreeSet<_> = hvm
            .lpars
            .values()
            .flat_map(|l| l.vnics.iter().map(|v| v.mac))
            .collect();
        let n_vnics: usize = hvm.lpars.values().map(|l| l.vnics.len()).sum();
        assert_eq!(macs.len(), n_vnics);
        let ids: BTreeSet<_> = hvm
            .lpars
            .values()
            .flat_map(|l| l.vfcs.iter().map(|v| v.vfc_id))
            .collect();
        let n_vfcs: usize = hvm.lpars.values().map(|l| l.vfcs.len()).sum();
        assert_eq!(ids.len(), n_vfcs);
    }

    #[test]
    fn a_cold_move_asked_twice_defines_the_lpar_once() {
        let source = defined("ch1-b1");
        let lpar = source.lpars.values().next().unwrap().clone();
        let mut dst = HvmState::new(demo_blade("ch1-b2").blade.clone());
        let (first, fresh) = dst.define_cold_move("job-1", &lpar, None).unwrap();
        assert!(fresh);
        let after_first = dst.clone();
        // A recovering manager asks again: same answer, nothing defined twice.
        let (again, fresh) = dst.define_cold_move("job-1", &lpar, None).unwrap();
        assert!(!fresh);
        assert_eq!(again, first);
        assert_eq!(dst, after_first);
        assert_eq!(dst.lpars.len(), 1);
        assert_eq!(dst.lpars[&first.number].status, LparStatus::Deactivated);
        // Survives a restart: the record is part of the persisted state.
        let text = serde_json::to_string(&dst).unwrap();
        let back: HvmState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.cold_moves.get("job-1"), Some(&first));
    }

    #[test]
    fn duplicate_name_changes_nothing() {
        let mut hvm = defined("ch1-b1");
        let before = hvm.clone();
        let req = demo_blade("ch1-b1").lpars[0].clone();
        let err = hvm
            .define(&LparRequest {
                number: None,
                ..req
            })
            .unwrap_err();
        assert_eq!(err.kind, Emg::DuplicateLparName);
        assert_eq!(hvm, before);
    }

    #[test]
    fn missing_fc_card_is_refused() {
        let mut hvm = defined("ch2-b2");
        let mut req = demo_blade("ch1-b1").lpars[0].clone();
        req.number = None;
        let err = hvm.define(&req).unwrap_err();
        assert_eq!(err.kind, Emg::DeviceNotAvailable);
        assert!(err.detail.contains("slot 3"), "{}", err.detail);
    }

    #[test]
    fn auto_number_is_the_youngest_free() {
        let mut hvm = defined("ch1-b2");
        let mut req = demo_blade("ch1-b2").lpars[0].clone();
        req.number = None;
        req.name = "app-02".parse().unwrap();
        assert_eq!(hvm.define(&req).unwrap().number.get(), 2);
    }

    #[test]
    fn activation_checks_memory() {
        let mut hvm = defined("ch1-b1");
        hvm.blade.memory_mib = 600;
        let err = {
            let n = LparNumber::new(2).unwrap();
            hvm.activate(n).unwrap_err()
        };
        assert_eq!(err.kind, Emg::NotEnoughMemory);
        assert!(
            hvm.lpars
                .values()
                .all(|l| l.status == LparStatus::Deactivated)
        );
    }

    #[test]
    fn processor_groups_are_checked_when_defining_and_activating() {
        // ch1-b2 of the demo: group 1 holds 2 processors, group 0 the other 14.
        let mut hvm = defined("ch1-b2");
        let before = hvm.clone();
        let mut req = demo_blade("ch1-b1").lpars[1].clone(); // db-01, 4 processors
        req.number = None;
        req.processors.group = 3;
        let err = hvm.define(&req).unwrap_err();
        assert_eq!(err.kind, Emg::ProcessorGroupNotDefined);
        assert!(
            err.detail.contains("0 (14 processors), 1 (2 processors)"),
            "{}",
            err.detail
        );
        req.processors.group = 1;
        let err = hvm.define(&req).unwrap_err();
        assert_eq!(err.kind, Emg::ProcessorGroupTooSmall);
        assert!(err.detail.contains("has 4 processors"), "{}", err.detail);
        assert_eq!(hvm, before, "refusals change nothing");

        // Two 2-processor LPARs fit group 1 one at a time, not both running.
        let mut a = demo_blade("ch1-b1").lpars[0].clone(); // web-01, 2 processors
        a.number = None;
        a.processors.group = 1;
        let a = hvm.define(&a).unwrap();
        let mut b = demo_blade("ch1-b1").lpars[2].clone(); // batch-01, 2 processors
        b.number = None;
        b.processors.group = 1;
        let b = hvm.define(&b).unwrap();
        hvm.activate(a.number).unwrap();
        assert_eq!(hvm.group_free_processors(1), 0);
        let err = hvm.activate(b.number).unwrap_err();
        assert_eq!(err.kind, Emg::NotEnoughProcessors);
        assert!(err.detail.contains("processor group 1"), "{}", err.detail);
    }

    #[test]
    fn restore_requires_deactivated_lpars_and_same_blade() {
        let mut hvm = defined("ch1-b1");
        let doc = hvm.config_doc();
        hvm.activate(LparNumber::new(1).unwrap()).unwrap();
        assert_eq!(hvm.restore(&doc).unwrap_err().kind, Emg::InvalidLparState);
        let other = defined("ch1-b2").config_doc();
        hvm.set_status(LparNumber::new(1).unwrap(), LparStatus::Deactivated)
            .unwrap();
        assert_eq!(hvm.restore(&other).unwrap_err().kind, Emg::RestoreRejected);
        hvm.restore(&doc).unwrap();
        assert_eq!(hvm.lpars.len(), 3);
    }
}
