//! A snapshot of every registered HVM, gathered concurrently so one dead blade costs at most the
//! connect timeout, never a frozen view.

use serde::Serialize;

use crate::api::{HvmClient, Inventory};
use crate::emg::EmgError;
use crate::model::LparStatus;
use crate::profile::Profile;

/// One HVM as the manager sees it now.
#[derive(Clone, Debug, Serialize)]
pub struct HvmSnapshot {
    /// HVM name.
    pub name: String,
    /// Chassis.
    pub chassis: String,
    /// Management URL.
    pub url: String,
    /// Inventory, when the HVM answered.
    pub inventory: Option<Inventory>,
    /// Why it did not.
    pub error: Option<EmgError>,
}

/// Every HVM of a profile.
#[derive(Clone, Debug, Serialize)]
pub struct FleetSnapshot {
    /// Fleet name.
    pub fleet: String,
    /// HVMs in profile order.
    pub hvms: Vec<HvmSnapshot>,
    /// LPARs whose status is "requires recovery", fleet-wide.
    pub lpars_requiring_recovery: usize,
    /// LPARs with WWNs pending rollback (marks), fleet-wide.
    pub lpars_with_wwns_pending_rollback: usize,
}

impl FleetSnapshot {
    /// Asks every HVM of the profile for its inventory, all at once.
    pub async fn gather(profile: &Profile) -> Self {
        let tasks = profile.hvms.iter().map(|hvm| async move {
            let result = match HvmClient::new(hvm) {
                Ok(client) => client.inventory().await.map_err(|e| e.emg()),
                Err(e) => Err(e.emg()),
            };
            let (inventory, error) = match result {
                Ok(inv) => (Some(inv), None),
                Err(e) => (None, Some(e)),
            };
            HvmSnapshot {
                name: hvm.name.clone(),
                chassis: hvm.chassis.clone(),
                url: hvm.url.clone(),
                inventory,
                error,
            }
        });
        let hvms = futures::future::join_all(tasks).await;
        let lpars_requiring_recovery = hvms
            .iter()
            .filter_map(|h| h.inventory.as_ref())
            .flat_map(|inv| inv.lpars.iter())
            .filter(|l| l.lpar.status == LparStatus::RequiresRecovery)
            .count();
        let lpars_with_wwns_pending_rollback = hvms
            .iter()
            .filter_map(|h| h.inventory.as_ref())
            .map(|inv| inv.wwn_rollbacks.len())
            .sum();
        Self {
            fleet: profile.fleet.clone(),
            hvms,
            lpars_requiring_recovery,
            lpars_with_wwns_pending_rollback,
        }
    }
}

pub use lpm_formats::moves::{LparRef, LparSelector};

/// Finding an [`LparSelector`]'s LPAR in an inventory.
pub trait FindLpar {
    /// The LPAR this selects in `inventory`, if it has one.
    fn find<'a>(&self, inventory: &'a Inventory) -> Option<&'a crate::api::LparView>;
}

impl FindLpar for LparSelector {
    fn find<'a>(&self, inventory: &'a Inventory) -> Option<&'a crate::api::LparView> {
        inventory.lpars.iter().find(|l| match self {
            Self::Number(n) => l.lpar.number == *n,
            Self::Name(name) => l.lpar.name.as_str() == name,
        })
    }
}
