//! The guest of an activated LPAR: memory that changes while the migration engine copies it.
//!
//! [`start`] activates a guest from a [`GuestSpec`]; [`start_incoming`] prepares a migration
//! destination (paused, blank memory, no workload until vCPU state is restored and it resumes).
//! Either returns an [`Arc<Guest>`]; [`Guest`] implements the migration engine's
//! [`Partition`] trait plus what an HVM needs beyond it (dirty rate, shutdown, stats, stop).
//! Those two run the vCPUs in this process ([`vm::LocalVm`]: `hvmsim bench-guest` and the unit
//! tests); a blade runs every guest in a VM process of its own through `crate::vmproc`, whose
//! [`Guest`] drives the same [`vm::VmOps`] over a socket.
//!
//! Two backends run the same workload (see [`workload`]) over the same memory layout (see
//! [`layout`]):
//! - [`kvm::KvmGuest`]: a KVM VM (rust-vmm `kvm-ioctls`), vCPUs in 64-bit long mode running a
//!   small program the VMM writes into guest memory, dirty logging by KVM. Used when `/dev/kvm`
//!   opens.
//! - [`soft::SoftGuest`]: threads doing the same writes into the mapping, with a software dirty
//!   bitmap. Used when `/dev/kvm` is missing or asked for by [`GuestBackend::Soft`].
//!
//! Memory starts with deterministic content from the workload seed (see [`content`]).
//!
//! Dirty tracking never loses a bit: the backend's log (KVM's or the software bitmap) is ORed
//! with a second bitmap holding the VMM's own writes into guest memory and bits given back
//! through [`Partition::restore_dirty`].

pub mod bench;
pub mod content;
pub mod control;
pub mod kvm;
pub mod layout;
pub mod memory;
pub mod qemu;
pub mod soft;
pub mod stats;
pub mod vm;
pub mod workload;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lparmover::model::workload::{GuestSpec, InvalidWorkload, ShutdownBehaviour};
use lparmover::partition::{
    DirtyBitmap, Heartbeat, MemoryDigest, PAGE_SIZE, Partition, PartitionError, VcpuState,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use control::StopReason;
use layout::{PAGE, WorkingSet, slot};
use memory::{AtomicBitmap, GuestMemory};
pub use stats::{GuestStats, HeartbeatWatch, PauseGap, monotonic_ns};
use vm::{LocalVm, VmOps, VmStatus};

/// Errors starting or driving a guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest spec cannot be run.
    #[error("guest spec cannot be used: {0}")]
    InvalidSpec(String),
    /// The workload knobs are invalid.
    #[error(transparent)]
    Workload(#[from] InvalidWorkload),
    /// KVM was asked for but cannot be used.
    #[error("KVM is not usable ({0}); use the software backend or give access to /dev/kvm")]
    KvmUnavailable(String),
    /// A KVM ioctl failed while setting the guest up.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The operation.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// A vCPU thread could not be started.
    #[error("starting a vCPU thread failed: {0}")]
    Thread(#[source] std::io::Error),
    /// The guest is not running (stopped, shut down or failed).
    #[error("the guest is not running: {0}")]
    NotRunning(String),
    /// A memory or partition operation failed.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A VM process failed the peer check (`crate::vmproc::peer`); nothing signals it.
    #[error("the VM process on {socket} was refused: {reason}")]
    VmRefused {
        /// Its control socket.
        socket: String,
        /// What the check found.
        reason: crate::vmproc::peer::PeerError,
    },
}

/// Which backend a guest runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// KVM.
    Kvm,
    /// Software threads.
    Soft,
}

impl BackendKind {
    /// The name written into [`VcpuState::backend`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Soft => "soft",
        }
    }
}

/// What a backend provides; the rest of [`Partition`] is common.
pub(crate) trait Engine: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Starts the backend's own dirty log (cleared).
    fn start_dirty_log(&self) -> Result<(), PartitionError>;
    fn stop_dirty_log(&self) -> Result<(), PartitionError>;
    /// Takes and clears the pages the vCPUs wrote.
    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError>;
    fn save_state(&self) -> Result<VcpuState, PartitionError>;
    fn restore_state(&self, state: &VcpuState) -> Result<(), PartitionError>;
    /// Joins the vCPU threads (after the control was told to stop).
    fn join(&self);
}

struct RateWindow {
    since: Instant,
    writes: u64,
    paused: Duration,
}

/// A running (or paused) guest.
pub struct Guest {
    vm: Box<dyn VmOps>,
    spec: GuestSpec,
    memory: Arc<GuestMemory>,
    /// The VMM's own writes and bits given back; ORed into every bitmap taken.
    vmm_dirty: AtomicBitmap,
    tracking: AtomicBool,
    /// An incoming guest that has not received vCPU state yet must not run.
    awaiting_state: AtomicBool,
    rate_window: Mutex<RateWindow>,
    last_take: Mutex<Option<Instant>>,
    dirty_log_pages_per_s: Mutex<f64>,
    last_pause_latency: Mutex<Option<Duration>>,
    activation: Duration,
}

/// Activates a guest: maps memory, fills it, starts the vCPUs running the workload.
pub fn start(spec: &GuestSpec) -> Result<Arc<Guest>, GuestError> {
    Guest::launch(spec, false).map(Arc::new)
}

/// Prepares a migration destination: blank memory, vCPUs created and paused. Write the pages,
/// [`Partition::restore_vcpu_state`], then [`Partition::resume`].
pub fn start_incoming(spec: &GuestSpec) -> Result<Arc<Guest>, GuestError> {
    Guest::launch(spec, true).map(Arc::new)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guest {
    fn launch(spec: &GuestSpec, incoming: bool) -> Result<Self, GuestError> {
        let started = Instant::now();
        spec.workload.validate()?;
        layout::validate(spec.memory_bytes, spec.vcpus)?;
        let kind = vm::resolve_backend(spec.backend)?;
        let memory = Arc::new(GuestMemory::new(spec.memory_bytes)?);
        let vm = LocalVm::launch(spec, kind, &memory, incoming)?;
        Ok(Self::assemble(
            spec,
            memory,
            Box::new(vm),
            incoming,
            started.elapsed(),
        ))
    }

    /// A guest over `memory` whose vCPUs `vm` runs (in this process or a VM process).
    /// `awaiting_state`: an incoming guest that has no vCPU state yet.
    pub(crate) fn assemble(
        spec: &GuestSpec,
        memory: Arc<GuestMemory>,
        vm: Box<dyn VmOps>,
        awaiting_state: bool,
        activation: Duration,
    ) -> Self {
        let kind = vm.kind();
        tracing::info!(
            backend = kind.name(),
            memory_mib = spec.memory_bytes >> 20,
            vcpus = spec.vcpus,
            incoming = awaiting_state,
            activation_ms = activation.as_millis() as u64,
            "guest started on the {} backend",
            kind.name()
        );
        let pages = memory.pages();
        let status = vm.status();
        Self {
            vm,
            spec: spec.clone(),
            memory,
            vmm_dirty: AtomicBitmap::new(pages),
            tracking: AtomicBool::new(status.dirty_log),
            awaiting_state: AtomicBool::new(awaiting_state),
            rate_window: Mutex::new(RateWindow {
                since: Instant::now(),
                writes: 0,
                paused: status.paused_total,
            }),
            last_take: Mutex::new(None),
            dirty_log_pages_per_s: Mutex::new(0.0),
            last_pause_latency: Mutex::new(None),
            activation,
        }
    }

    /// Run state of the vCPUs.
    fn run_status(&self) -> VmStatus {
        self.vm.status()
    }

    /// The spec the guest was started with (the dirty rate may have changed since).
    pub fn spec(&self) -> &GuestSpec {
        &self.spec
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.vm.kind()
    }

    /// Where the workload writes.
    pub fn working_set(&self) -> WorkingSet {
        WorkingSet::new(self.spec.memory_bytes, self.spec.workload.working_set_mib)
    }

    /// The pages the workload never writes after activation: everything above the working set
    /// (below it lie the page tables, whose accessed bits the CPU sets, the program and the
    /// heartbeat page). Their content is the deterministic fill of activation, so a digest of
    /// them taken at activation must hold on whichever blade the guest runs next.
    pub fn pages_outside_working_set(&self) -> std::ops::Range<u64> {
        let ws = self.working_set();
        ws.first_page
            .saturating_add(ws.pages)
            .min(self.memory.pages())..self.memory.pages()
    }

    /// BLAKE3 of [`Self::pages_outside_working_set`].
    pub fn digest_outside_working_set(&self) -> lparmover::partition::MemoryDigest {
        self.memory.digest_of(&[self.pages_outside_working_set()])
    }

    /// Changes the dirty rate (MB/s) live.
    pub fn set_dirty_rate(&self, mbps: f64) -> Result<(), GuestError> {
        if !mbps.is_finite() || !(0.0..=100_000.0).contains(&mbps) {
            return Err(GuestError::InvalidSpec(format!(
                "dirty rate {mbps} MB/s must be between 0 and 100000"
            )));
        }
        self.vm.set_rate(mbps)?;
        *lock(&self.rate_window) = RateWindow {
            since: Instant::now(),
            writes: self.guest_writes(),
            paused: self.run_status().paused_total,
        };
        Ok(())
    }

    /// Asks the guest OS to shut down; it complies after its configured delay or refuses.
    /// Returns whether it will comply.
    pub fn request_shutdown(&self) -> Result<bool, GuestError> {
        if let Some(reason) = self.run_status().stop {
            return Err(GuestError::NotRunning(format!("{reason:?}")));
        }
        match self.spec.workload.shutdown {
            ShutdownBehaviour::Comply { after_ms } => {
                tracing::info!(
                    after_ms,
                    "guest OS shutdown requested; the guest will comply"
                );
                self.vm.request_shutdown(Duration::from_millis(after_ms))?;
                Ok(true)
            }
            ShutdownBehaviour::Refuse => {
                tracing::info!("guest OS shutdown requested; the guest refuses");
                Ok(false)
            }
        }
    }

    /// Whether the vCPUs run the workload (not paused, not stopped).
    pub fn is_running(&self) -> bool {
        let status = self.run_status();
        status.stop.is_none() && !status.paused
    }

    /// An incoming guest that has not received vCPU state (it cannot run yet).
    pub fn awaiting_state(&self) -> bool {
        self.awaiting_state.load(Ordering::Acquire)
    }

    /// Whether the guest OS shut down.
    pub fn has_shut_down(&self) -> bool {
        self.run_status().stop == Some(StopReason::ShutDown)
    }

    /// Why the guest failed, if it did.
    pub fn failure(&self) -> Option<String> {
        match self.run_status().stop {
            Some(StopReason::Failed(why)) => Some(why),
            _ => None,
        }
    }

    /// Pages written by the guest since it first started (sum of its per-vCPU counters).
    pub fn guest_writes(&self) -> u64 {
        (0..self.spec.vcpus)
            .map(|v| {
                self.memory
                    .read_u64(workload::heartbeat_offset(v, slot::WRITES))
            })
            .sum()
    }

    /// A snapshot of the guest's figures.
    pub fn stats(&self) -> GuestStats {
        let writes = self.guest_writes();
        let status = self.run_status();
        let achieved = {
            let w = lock(&self.rate_window);
            let paused = status.paused_total.saturating_sub(w.paused);
            let running = w.since.elapsed().saturating_sub(paused).as_secs_f64();
            if running > 0.0 {
                writes.saturating_sub(w.writes) as f64 * PAGE as f64 / running / 1e6
            } else {
                0.0
            }
        };
        GuestStats {
            backend: self.backend().name().into(),
            vcpus: self.spec.vcpus,
            memory_bytes: self.spec.memory_bytes,
            paused: status.paused,
            shut_down: self.has_shut_down(),
            error: self.failure(),
            configured_dirty_mbps: status.rate_mbps,
            throttle_percent: status.throttle,
            guest_writes: writes,
            achieved_dirty_mbps: achieved,
            dirty_log_pages_per_s: *lock(&self.dirty_log_pages_per_s),
            heartbeat: self.read_heartbeat(0),
            last_pause_latency: *lock(&self.last_pause_latency),
            activation: self.activation,
        }
    }

    /// Heartbeat slot of vCPU `vcpu`.
    pub fn read_heartbeat(&self, vcpu: u32) -> Heartbeat {
        Heartbeat {
            counter: self
                .memory
                .read_u64(workload::heartbeat_offset(vcpu, slot::COUNTER)),
            tsc: self
                .memory
                .read_u64(workload::heartbeat_offset(vcpu, slot::TSC)),
            observed_at_ns: monotonic_ns(),
        }
    }

    /// Faults all guest memory in (destination: so the copy does not pay for page faults),
    /// in the background: returns at once, a thread populates the mapping front to back in
    /// 64 MiB steps while the copy starts.
    ///
    /// Populating 4 GiB takes about 1.5 s of one core (the kernel zeroes every page); done
    /// before the copy it was 1.5 s of the move's total time with the other core idle. Racing
    /// the copy is safe: `MADV_POPULATE_WRITE` only allocates missing pages and never changes a
    /// present one, so a page the receiver wrote first keeps its bytes, and a page the receiver
    /// reaches first is simply faulted by its write. The thread stops when the guest's memory
    /// is gone (the move failed and the guest was dropped). The first step runs before this
    /// returns, so an unusable `madvise` still fails the prepare.
    pub fn prefault(&self) -> Result<(), GuestError> {
        const STEP: u64 = 64 << 20;
        let len = self.memory.len();
        let first = STEP.min(len);
        self.memory.prefault_range(0, first)?;
        if first == len {
            return Ok(());
        }
        let memory = Arc::downgrade(&self.memory);
        std::thread::Builder::new()
            .name("prefault".into())
            .spawn(move || {
                let started = Instant::now();
                let mut at = first;
                while at < len {
                    let Some(m) = memory.upgrade() else { return };
                    let n = STEP.min(len - at);
                    if let Err(e) = m.prefault_range(at, n) {
                        tracing::warn!(error = %e, "background prefault of guest memory stopped");
                        return;
                    }
                    at += n;
                }
                tracing::debug!(elapsed = ?started.elapsed(), "guest memory prefaulted");
            })
            .map_err(GuestError::Thread)?;
        Ok(())
    }

    /// Stops the vCPUs and joins their threads. Idempotent; also done on drop.
    pub fn stop(&self) {
        self.vm.stop();
    }

    fn ensure_paused(&self) -> Result<(), PartitionError> {
        let status = self.run_status();
        if status.paused || status.stop.is_some() {
            Ok(())
        } else {
            Err(PartitionError::NotPaused)
        }
    }

    fn mark_vmm_write(&self, first_page: u64, count: u64) {
        self.vmm_dirty.set_range(first_page, count);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Partition for Guest {
    fn memory_size(&self) -> u64 {
        self.memory.len()
    }

    fn read_pages(&self, first_page: u64, out: &mut [u8]) -> Result<(), PartitionError> {
        self.memory.read(first_page, out)
    }

    fn append_nonzero_pages(
        &self,
        first_page: u64,
        count: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<u64, PartitionError> {
        self.memory.append_nonzero(first_page, count, out)
    }

    fn write_pages(&self, first_page: u64, data: &[u8]) -> Result<(), PartitionError> {
        self.memory.write(first_page, data)?;
        self.mark_vmm_write(first_page, (data.len() / PAGE_SIZE) as u64);
        Ok(())
    }

    fn zero_pages(&self, first_page: u64, count: u64) -> Result<(), PartitionError> {
        let end = first_page.saturating_add(count);
        if end > self.memory.pages() {
            return Err(PartitionError::OutOfRange {
                first: first_page,
                end,
                pages: self.memory.pages(),
            });
        }
        for page in first_page..end {
            if self.memory.zero_page(page)? {
                self.mark_vmm_write(page, 1);
            }
        }
        Ok(())
    }

    fn start_dirty_tracking(&self) -> Result<(), PartitionError> {
        // Starting it again starts over, as the trait promises.
        self.vm.start_dirty_log()?;
        self.vmm_dirty.clear();
        self.tracking.store(true, Ordering::Release);
        *lock(&self.last_take) = Some(Instant::now());
        Ok(())
    }

    fn stop_dirty_tracking(&self) -> Result<(), PartitionError> {
        self.tracking.store(false, Ordering::Release);
        *lock(&self.dirty_log_pages_per_s) = 0.0;
        self.vm.stop_dirty_log()
    }

    fn take_dirty_bitmap(&self) -> Result<DirtyBitmap, PartitionError> {
        if !self.tracking.load(Ordering::Acquire) {
            return Err(PartitionError::TrackingOff);
        }
        let mut bitmap = self.vm.take_dirty_log()?;
        let now = Instant::now();
        if let Some(prev) = lock(&self.last_take).replace(now) {
            let secs = now.duration_since(prev).as_secs_f64();
            if secs > 0.0 {
                *lock(&self.dirty_log_pages_per_s) = bitmap.count() as f64 / secs;
            }
        }
        bitmap.merge(&self.vmm_dirty.take());
        Ok(bitmap)
    }

    fn restore_dirty(&self, bitmap: &DirtyBitmap) -> Result<(), PartitionError> {
        if bitmap.pages() != self.memory.pages() {
            return Err(PartitionError::OutOfRange {
                first: 0,
                end: bitmap.pages(),
                pages: self.memory.pages(),
            });
        }
        self.vmm_dirty.merge(bitmap);
        Ok(())
    }

    fn pause(&self) -> Result<(), PartitionError> {
        let latency = self.vm.pause()?;
        *lock(&self.last_pause_latency) = Some(latency);
        tracing::debug!(latency_us = latency.as_micros() as u64, "guest paused");
        Ok(())
    }

    fn resume(&self) -> Result<(), PartitionError> {
        if self.awaiting_state.load(Ordering::Acquire) {
            return Err(PartitionError::IncompatibleState(
                "this incoming guest has no vCPU state yet; restore it before resuming".into(),
            ));
        }
        self.vm.resume()
    }

    fn is_paused(&self) -> bool {
        self.run_status().paused
    }

    fn save_vcpu_state(&self) -> Result<VcpuState, PartitionError> {
        self.ensure_paused()?;
        self.vm.save_state()
    }

    fn restore_vcpu_state(&self, state: &VcpuState) -> Result<(), PartitionError> {
        self.ensure_paused()?;
        if state.backend != self.backend().name() {
            return Err(PartitionError::IncompatibleState(format!(
                "state was saved by the {} backend, this guest runs on {}",
                state.backend,
                self.backend().name()
            )));
        }
        self.vm.restore_state(state)?;
        self.awaiting_state.store(false, Ordering::Release);
        Ok(())
    }

    fn heartbeat(&self) -> Result<Heartbeat, PartitionError> {
        if let Some(why) = self.failure() {
            return Err(PartitionError::GuestStopped(why));
        }
        Ok(self.read_heartbeat(0))
    }

    fn digest(&self) -> Result<MemoryDigest, PartitionError> {
        Ok(self.memory.digest())
    }

    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.vm.set_throttle(percent)
    }
}

/// Magic at the start of every encoded vCPU state.
const STATE_MAGIC: &[u8; 4] = b"LPMV";
/// Largest encoded vCPU state accepted (bounds what a peer can make us parse).
const STATE_MAX_BYTES: usize = 16 << 20;

/// Encodes backend vCPU state: magic, version (u32 LE), JSON body.
pub(crate) fn encode_state<T: Serialize>(
    kind: BackendKind,
    version: u32,
    body: &T,
) -> Result<VcpuState, PartitionError> {
    let mut bytes = STATE_MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    serde_json::to_writer(&mut bytes, body).map_err(|e| PartitionError::Backend {
        what: "encoding vCPU state",
        source: std::io::Error::other(e),
    })?;
    Ok(VcpuState {
        backend: kind.name().into(),
        bytes,
    })
}

/// Decodes what [`encode_state`] wrote, refusing another version.
pub(crate) fn decode_state<T: DeserializeOwned>(
    state: &VcpuState,
    version: u32,
) -> Result<T, PartitionError> {
    let bad = |why: String| PartitionError::IncompatibleState(why);
    if state.bytes.len() > STATE_MAX_BYTES {
        return Err(bad(format!(
            "{} bytes is above the {STATE_MAX_BYTES}-byte bound",
            state.bytes.len()
        )));
    }
    let (magic, rest) = state
        .bytes
        .split_at_checked(4)
        .ok_or_else(|| bad("truncated header".into()))?;
    let (ver, body) = rest
        .split_at_checked(4)
        .ok_or_else(|| bad("truncated header".into()))?;
    if magic != STATE_MAGIC {
        return Err(bad("not an lparmover vCPU state (bad magic)".into()));
    }
    let ver = u32::from_le_bytes([ver[0], ver[1], ver[2], ver[3]]);
    if ver != version {
        return Err(bad(format!(
            "state version {ver}, this build reads version {version}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("undecodable body: {e}")))
}
