//! Collects what the rules need from both HVMs, concurrently, and runs them.

use chrono::Utc;

use super::storage::ArrayFacts;
use super::{CheckInput, CheckReport, HvmFacts, StorageFacts, run};
use crate::api::{ClientError, HvmClient};
use crate::fleetview::FindLpar;
use crate::fleetview::LparRef;
use crate::model::{LparNumber, Mode};
use crate::profile::{Profile, ProfileError};

/// Why the checks could not run at all (as opposed to a report with Error rows).
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// An HVM is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An HVM's inventory could not be read.
    #[error("cannot read the inventory of {hvm}: {source}")]
    Inventory {
        /// HVM.
        hvm: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A client could not be built for an HVM.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The source LPAR does not exist.
    #[error("no LPAR {lpar} on HVM {hvm}; its LPARs: {known}")]
    LparNotFound {
        /// HVM.
        hvm: String,
        /// What was asked for.
        lpar: String,
        /// What exists.
        known: String,
    },
}

/// Reads inventory, load and port states of one HVM; only the inventory is required.
async fn facts(client: &HvmClient) -> Result<HvmFacts, GatherError> {
    let (inventory, load, ports) = tokio::join!(client.inventory(), client.load(), client.ports());
    let inventory = inventory.map_err(|source| GatherError::Inventory {
        hvm: client.name().to_owned(),
        source,
    })?;
    Ok(HvmFacts {
        inventory,
        load: load.map_err(|e| e.emg().to_string()),
        ports: ports.map_err(|e| e.emg().to_string()),
    })
}

/// What the profile's arrays say: every registered array's host groups, asked at once (a
/// protected array with saved credentials is logged in to and out of); any array that cannot
/// be asked makes storage "not checked" with the reason.
pub async fn storage_facts(profile: &Profile) -> StorageFacts {
    if profile.arrays.is_empty() {
        return StorageFacts::NoArrayRegistered;
    }
    let asked = futures::future::join_all(profile.arrays.iter().map(|a| async move {
        let host_groups = crate::storage::with_session(a, |c| async move { c.host_groups().await })
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(ArrayFacts {
            name: a.name.clone(),
            host_groups,
        })
    }))
    .await;
    match asked.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(arrays) => StorageFacts::Arrays { arrays },
        Err(reason) => StorageFacts::Unavailable { reason },
    }
}

/// Where on the destination HVM the LPAR is to go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestinationChoice {
    /// LPAR number (`None` = Auto, the youngest free).
    pub number: Option<LparNumber>,
    /// Processor group (`None` = the LPAR's own).
    pub processor_group: Option<u8>,
}

/// Checks moving `lpar` to `destination` (LPAR number `dest_number`, `None` = Auto) in `mode`:
/// asks both HVMs at once, then runs every rule. A migration calls this first and refuses to
/// start while [`CheckReport::ensure_no_errors`] fails.
pub async fn gather(
    profile: &Profile,
    lpar: &LparRef,
    destination: &str,
    mode: Mode,
    dest_number: Option<LparNumber>,
) -> Result<CheckReport, GatherError> {
    let choice = DestinationChoice {
        number: dest_number,
        processor_group: None,
    };
    gather_for(profile, lpar, destination, mode, choice).await
}

/// [`gather`] for a destination LPAR number and processor group.
pub async fn gather_for(
    profile: &Profile,
    lpar: &LparRef,
    destination: &str,
    mode: Mode,
    choice: DestinationChoice,
) -> Result<CheckReport, GatherError> {
    let source_client = HvmClient::new(profile.hvm(&lpar.hvm)?)?;
    let dest_client = HvmClient::new(profile.hvm(destination)?)?;
    let (source, destination, storage) = tokio::join!(
        facts(&source_client),
        facts(&dest_client),
        storage_facts(profile)
    );
    let (source, destination) = (source?, destination?);
    let found = lpar
        .lpar
        .find(&source.inventory)
        .ok_or_else(|| GatherError::LparNotFound {
            hvm: lpar.hvm.clone(),
            lpar: match &lpar.lpar {
                crate::fleetview::LparSelector::Number(n) => n.to_string(),
                crate::fleetview::LparSelector::Name(n) => n.clone(),
            },
            known: source
                .inventory
                .lpars
                .iter()
                .map(|l| format!("{} {}", l.lpar.number, l.lpar.name))
                .collect::<Vec<_>>()
                .join(", "),
        })?
        .lpar
        .clone();
    let input = CheckInput {
        source,
        lpar: found,
        destination,
        mode,
        dest_number: choice.number,
        processor_group: choice.processor_group,
        storage,
        now: Utc::now(),
    };
    Ok(run(&input))
}
