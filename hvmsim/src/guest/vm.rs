//! The running part of a guest — vCPUs, their run control and the backend's dirty log — behind
//! one interface, [`VmOps`], so a [`Guest`](super::Guest) can drive it in this process
//! ([`LocalVm`]) or in a VM process of its own (`crate::vmproc`), the way libvirt drives QEMU.
//!
//! Guest memory is not part of it: both sides map the same memory and the migration engine
//! reads and writes pages directly; only control goes through [`VmOps`].

use std::sync::Arc;
use std::time::Duration;

use lparmover::model::workload::{GuestBackend, GuestSpec};
use lparmover::partition::{DirtyBitmap, PartitionError, VcpuState};
use serde::{Deserialize, Serialize};

use super::control::{Control, StopReason};
use super::memory::GuestMemory;
use super::{BackendKind, Engine, GuestError, content, kvm, soft};

/// Run state of a VM, read in one go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmStatus {
    /// A pause is in force.
    pub paused: bool,
    /// Why the vCPUs stopped, if they did.
    pub stop: Option<StopReason>,
    /// Configured dirty rate, MB/s.
    pub rate_mbps: f64,
    /// Throttle, percent.
    pub throttle: u8,
    /// Time spent paused so far.
    pub paused_total: Duration,
    /// The backend's dirty log is on.
    pub dirty_log: bool,
}

/// What a guest needs from its running part.
pub trait VmOps: Send + Sync {
    /// The backend running the vCPUs.
    fn kind(&self) -> BackendKind;
    /// Starts the backend's dirty log (cleared); starting it again clears it.
    fn start_dirty_log(&self) -> Result<(), PartitionError>;
    /// Stops the dirty log (no-op when off).
    fn stop_dirty_log(&self) -> Result<(), PartitionError>;
    /// Takes and clears the pages the vCPUs wrote.
    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError>;
    /// Saves vCPU state (paused guests only; the caller checks).
    fn save_state(&self) -> Result<VcpuState, PartitionError>;
    /// Restores vCPU state.
    fn restore_state(&self, state: &VcpuState) -> Result<(), PartitionError>;
    /// Parks every vCPU; returns how long that took.
    fn pause(&self) -> Result<Duration, PartitionError>;
    /// Lets the vCPUs run again.
    fn resume(&self) -> Result<(), PartitionError>;
    /// Run state.
    fn status(&self) -> VmStatus;
    /// Dirty rate, MB/s (validated by the caller).
    fn set_rate(&self, mbps: f64) -> Result<(), PartitionError>;
    /// Throttle, percent.
    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError>;
    /// The guest OS powers off `after` from now.
    fn request_shutdown(&self, after: Duration) -> Result<(), PartitionError>;
    /// Stops the vCPUs for good and waits for them. Idempotent.
    fn stop(&self);
}

/// Picks the backend a spec asks for.
pub fn resolve_backend(backend: GuestBackend) -> Result<BackendKind, GuestError> {
    Ok(match backend {
        GuestBackend::Soft => BackendKind::Soft,
        GuestBackend::Kvm => {
            kvm::probe().map_err(GuestError::KvmUnavailable)?;
            BackendKind::Kvm
        }
        GuestBackend::Auto => match kvm::probe() {
            Ok(()) => BackendKind::Kvm,
            Err(why) => {
                tracing::info!("KVM not usable ({why}); using the software guest");
                BackendKind::Soft
            }
        },
    })
}

/// vCPUs running in this process over `memory`.
pub struct LocalVm {
    engine: Box<dyn Engine>,
    control: Arc<Control>,
    dirty_log: std::sync::atomic::AtomicBool,
}

impl LocalVm {
    /// Starts the vCPUs of `spec` over `memory`. A booting guest (`incoming == false`) first gets
    /// its initial memory content; an incoming one starts paused over blank memory.
    pub fn launch(
        spec: &GuestSpec,
        kind: BackendKind,
        memory: &Arc<GuestMemory>,
        incoming: bool,
    ) -> Result<Self, GuestError> {
        if !incoming {
            content::fill(memory, spec.workload.seed, spec.workload.mix);
        }
        let control = Arc::new(Control::new(
            spec.vcpus,
            spec.workload.dirty_rate_mbps,
            incoming,
        ));
        let engine: Box<dyn Engine> = match kind {
            BackendKind::Kvm => Box::new(kvm::KvmGuest::new(
                spec,
                Arc::clone(memory),
                Arc::clone(&control),
                incoming,
            )?),
            BackendKind::Soft => Box::new(soft::SoftGuest::new(
                spec,
                Arc::clone(memory),
                Arc::clone(&control),
                incoming,
            )?),
        };
        Ok(Self {
            engine,
            control,
            dirty_log: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl VmOps for LocalVm {
    fn kind(&self) -> BackendKind {
        self.engine.kind()
    }

    fn start_dirty_log(&self) -> Result<(), PartitionError> {
        use std::sync::atomic::Ordering;
        if self.dirty_log.load(Ordering::Acquire) {
            // Already on: start over.
            self.engine.take_dirty_log().map(drop)
        } else {
            self.engine.start_dirty_log()?;
            self.dirty_log.store(true, Ordering::Release);
            Ok(())
        }
    }

    fn stop_dirty_log(&self) -> Result<(), PartitionError> {
        use std::sync::atomic::Ordering;
        if self.dirty_log.swap(false, Ordering::AcqRel) {
            self.engine.stop_dirty_log()?;
        }
        Ok(())
    }

    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError> {
        self.engine.take_dirty_log()
    }

    fn save_state(&self) -> Result<VcpuState, PartitionError> {
        self.engine.save_state()
    }

    fn restore_state(&self, state: &VcpuState) -> Result<(), PartitionError> {
        self.engine.restore_state(state)
    }

    fn pause(&self) -> Result<Duration, PartitionError> {
        self.control.pause().map_err(PartitionError::GuestStopped)
    }

    fn resume(&self) -> Result<(), PartitionError> {
        if let Some(reason) = self.control.stop_reason() {
            return Err(PartitionError::GuestStopped(format!("{reason:?}")));
        }
        self.control.resume();
        Ok(())
    }

    fn status(&self) -> VmStatus {
        VmStatus {
            paused: self.control.is_paused(),
            stop: self.control.stop_reason(),
            rate_mbps: self.control.rate(),
            throttle: self.control.throttle(),
            paused_total: self.control.paused_total(),
            dirty_log: self.dirty_log.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    fn set_rate(&self, mbps: f64) -> Result<(), PartitionError> {
        self.control.set_rate(mbps);
        Ok(())
    }

    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.control.set_throttle(percent);
        Ok(())
    }

    fn request_shutdown(&self, after: Duration) -> Result<(), PartitionError> {
        self.control.request_shutdown(after);
        Ok(())
    }

    fn stop(&self) {
        self.control.stop(StopReason::Stopped);
        self.engine.join();
    }
}

impl Drop for LocalVm {
    fn drop(&mut self) {
        self.stop();
    }
}
