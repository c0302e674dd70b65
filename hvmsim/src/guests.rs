//! Running guests of activated LPARs (bridge between the HVM and `crate::guest`).
//!
//! TEMPORARY: until the guest backends land, a started guest only records its spec.

use lparmover::api::GuestRuntime;
use lparmover::model::{GuestBackend, GuestSpec};
use lparmover::partition::Heartbeat;

/// A running guest.
#[derive(Debug)]
pub struct GuestHandle {
    spec: GuestSpec,
}

impl GuestHandle {
    /// What it is doing.
    pub fn runtime(&self) -> GuestRuntime {
        GuestRuntime {
            backend: GuestBackend::Soft,
            heartbeat: Heartbeat::default(),
            achieved_dirty_mbps: self.spec.workload.dirty_rate_mbps,
        }
    }
    /// Changes the dirty rate at once.
    pub fn set_dirty_rate(&self, _mbps: f64) {}
    /// Stops the guest.
    pub fn stop(self) {}
}

/// Starts a guest.
pub fn start(spec: &GuestSpec) -> Result<GuestHandle, String> {
    Ok(GuestHandle { spec: spec.clone() })
}
