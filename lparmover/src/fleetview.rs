//! A snapshot of every registered HVM, gathered concurrently so one dead blade costs at most the
//! connect timeout, never a frozen view.

use serde::Serialize;

use crate::api::{HvmClient, Inventory};
use crate::emg::EmgError;
use crate::model::{LparNumber, LparStatus};
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

/// Which LPAR an operator means: `HVM/NUMBER` or `HVM/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LparRef {
    /// HVM name.
    pub hvm: String,
    /// LPAR number or name.
    pub lpar: LparSelector,
}

/// An LPAR by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LparSelector {
    /// By number.
    Number(LparNumber),
    /// By name.
    Name(String),
}

impl std::str::FromStr for LparRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hvm, lpar) = s
            .split_once('/')
            .filter(|(h, l)| !h.is_empty() && !l.is_empty())
            .ok_or_else(|| format!("{s:?} is not HVM/LPAR (e.g. ch1-b1/web-01 or ch1-b1/1)"))?;
        let lpar = if lpar.chars().all(|c| c.is_ascii_digit()) {
            LparSelector::Number(
                lpar.parse()
                    .map_err(|e: crate::model::InvalidId| e.to_string())?,
            )
        } else {
            LparSelector::Name(lpar.to_owned())
        };
        Ok(Self {
            hvm: hvm.to_owned(),
            lpar,
        })
    }
}

impl std::fmt::Display for LparSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl std::fmt::Display for LparRef {
    /// `HVM/LPAR`, as the operator wrote it (parses back to the same reference).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hvm, self.lpar)
    }
}

impl LparSelector {
    /// Finds the LPAR in an inventory.
    pub fn find<'a>(&self, inventory: &'a Inventory) -> Option<&'a crate::api::LparView> {
        inventory.lpars.iter().find(|l| match self {
            Self::Number(n) => l.lpar.number == *n,
            Self::Name(name) => l.lpar.name.as_str() == name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpar_refs_parse() {
        let r: LparRef = "ch1-b1/web-01".parse().unwrap();
        assert_eq!(r.lpar, LparSelector::Name("web-01".into()));
        let r: LparRef = "ch1-b1/3".parse().unwrap();
        assert_eq!(r.lpar, LparSelector::Number(LparNumber::new(3).unwrap()));
        assert!("ch1-b1".parse::<LparRef>().is_err());
        assert!("ch1-b1/99".parse::<LparRef>().is_err());
        for text in ["ch1-b1/web-01", "ch1-b1/3"] {
            assert_eq!(text.parse::<LparRef>().unwrap().to_string(), text);
        }
    }
}
