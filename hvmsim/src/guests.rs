//! Running guests of activated LPARs: the bridge between the HVM's LPAR records and
//! [`crate::guest`].

use std::path::Path;
use std::sync::Arc;

use lparmover::api::GuestRuntime;
use lparmover::model::{GuestBackend, GuestSpec, LparNumber};

use crate::guest::{BackendKind, Guest, GuestError};

/// The guest of one activated LPAR.
#[derive(Clone)]
pub struct GuestHandle {
    guest: Arc<Guest>,
}

impl std::fmt::Debug for GuestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GuestHandle({:?}, {} bytes)",
            self.guest.backend(),
            self.guest.spec().memory_bytes
        )
    }
}

impl GuestHandle {
    /// Wraps a started guest.
    pub fn new(guest: Arc<Guest>) -> Self {
        Self { guest }
    }

    /// The guest itself (a [`lparmover::partition::Partition`]).
    pub fn guest(&self) -> &Arc<Guest> {
        &self.guest
    }

    /// What it is doing.
    pub fn runtime(&self) -> GuestRuntime {
        let stats = self.guest.stats();
        GuestRuntime {
            backend: match self.guest.backend() {
                BackendKind::Kvm => GuestBackend::Kvm,
                BackendKind::Soft => GuestBackend::Soft,
            },
            heartbeat: stats.heartbeat,
            achieved_dirty_mbps: stats.achieved_dirty_mbps,
            guest_writes: stats.guest_writes,
        }
    }

    /// Changes the dirty rate at once.
    pub fn set_dirty_rate(&self, mbps: f64) {
        if let Err(e) = self.guest.set_dirty_rate(mbps) {
            tracing::warn!(error = %e, "dirty rate not applied");
        }
    }

    /// Stops the guest and joins its threads.
    pub fn stop(self) {
        self.guest.stop();
    }
}

/// Starts the guest of LPAR `number` being activated, in a VM process of its own whose socket
/// goes into `vm_dir`.
pub fn start(
    spec: &GuestSpec,
    number: LparNumber,
    vm_dir: &Path,
) -> Result<GuestHandle, GuestError> {
    crate::vmproc::spawn(spec, number, vm_dir, false).map(GuestHandle::new)
}
