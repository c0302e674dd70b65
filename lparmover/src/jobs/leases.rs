//! Leases a job holds on its source LPAR and destination blade, renewed while it runs.

use std::time::Duration;

use tracing::warn;

use crate::api::{ClientError, HvmClient, LockRequest, LockTarget};
use crate::model::LparNumber;

/// How long a lease lasts unless renewed; renewed every third of it.
pub const LEASE_TTL_SECS: u64 = 60;

pub fn owner() -> String {
    format!("lparmover-{}@{}", std::process::id(), hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Leases held for the job; renewed in the background, released on drop (best effort).
pub struct Leases {
    held: Vec<(HvmClient, String)>,
    renew: tokio::task::JoinHandle<()>,
}

impl Leases {
    fn start(held: Vec<(HvmClient, String)>) -> Self {
        let renewing = held.clone();
        let renew = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(LEASE_TTL_SECS / 3));
            tick.tick().await;
            loop {
                tick.tick().await;
                for (client, id) in &renewing {
                    if let Err(e) = client.renew(id).await {
                        warn!(hvm = client.name(), error = %e, "lease renewal failed");
                    }
                }
            }
        });
        Self { held, renew }
    }

    pub fn id(&self, i: usize) -> Option<&str> {
        self.held.get(i).map(|(_, id)| id.as_str())
    }

    pub async fn release(self) {
        self.renew.abort();
        for (client, id) in &self.held {
            if let Err(e) = client.unlock(id).await {
                warn!(hvm = client.name(), error = %e, "lease release failed; it will expire");
            }
        }
    }
}

impl Leases {
    /// Takes a lease on the source LPAR, then one on the destination blade (giving the first
    /// back if the second is refused).
    pub async fn take(
        job: &str,
        src: &HvmClient,
        lpar: LparNumber,
        dst: &HvmClient,
    ) -> Result<Self, ClientError> {
        Self::take_targets(job, src, LockTarget::Lpar(lpar), dst).await
    }

    /// Recovery of a job whose source LPAR is already gone (released): the source blade
    /// instead of the LPAR, and the destination blade.
    pub async fn take_blades(
        job: &str,
        src: &HvmClient,
        dst: &HvmClient,
    ) -> Result<Self, ClientError> {
        Self::take_targets(job, src, LockTarget::Blade, dst).await
    }

    async fn take_targets(
        job: &str,
        src: &HvmClient,
        src_target: LockTarget,
        dst: &HvmClient,
    ) -> Result<Self, ClientError> {
        let request = |target| LockRequest {
            target,
            owner: owner(),
            purpose: job.to_owned(),
            ttl_secs: LEASE_TTL_SECS,
        };
        let src_lease = src.lock(&request(src_target)).await?;
        let dst_lease = match dst.lock(&request(LockTarget::Blade)).await {
            Ok(l) => l,
            Err(e) => {
                let _ = src.unlock(&src_lease.id).await;
                return Err(e);
            }
        };
        Ok(Self::start(vec![
            (src.clone(), src_lease.id),
            (dst.clone(), dst_lease.id),
        ]))
    }

    /// Lease id on the source LPAR.
    pub fn source(&self) -> Option<&str> {
        self.id(0)
    }

    /// Lease id on the destination blade.
    pub fn destination(&self) -> Option<&str> {
        self.id(1)
    }
}

/// The manager's switch-over lease on a paused source, renewed every
/// [`crate::api::SWITCHOVER_LEASE_RENEWAL`] while it lives. If the manager dies or freezes the
/// renewals stop and, after the job's `switchover_lease_ms`, the blades settle the switch-over
/// between themselves (hvmsim `migration::settlement`).
#[derive(Debug)]
pub struct SwitchoverLease {
    renewer: tokio::task::JoinHandle<()>,
}

impl SwitchoverLease {
    /// Starts renewing the lease of `job` on the source.
    pub fn hold(src: &HvmClient, job: &str) -> Self {
        let src = src.clone();
        let job = job.to_owned();
        let renewer = tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::api::SWITCHOVER_LEASE_RENEWAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = src.renew_switchover_lease(&job).await {
                    tracing::warn!(job, error = %e, "switch-over lease not renewed");
                }
            }
        });
        Self { renewer }
    }
}

impl Drop for SwitchoverLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
