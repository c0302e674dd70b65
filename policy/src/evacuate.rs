//! Evacuation for maintenance (the manual's Table 3-1 procedure): the policies that move every
//! LPAR off one blade, each to a destination whose checks accept it and that has the room, spread
//! over the candidates. Activated LPARs leave live, deactivated ones in Shutdown mode, so an
//! evacuation writes up to two policies. An LPAR with no valid destination is listed with the
//! check rows that refuse each candidate. Run the policies, do the maintenance, and the return
//! policies of their runs bring everything home.

use std::collections::BTreeMap;

use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::model::{LparStatus, Mode};
use lparmover::ops::{self, CheckRequest, Destination};
use lparmover::profile::Profile;

use crate::model::{Entry, OnError, Policy, PolicyName};

/// Why one candidate refused one LPAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The candidate HVM.
    pub candidate: String,
    /// The check rows (or the reason) that refuse it.
    pub reasons: Vec<String>,
}

/// An LPAR no candidate takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    /// Its name.
    pub lpar: String,
    /// Every candidate and why not.
    pub refusals: Vec<Refusal>,
}

/// The plan.
#[derive(Clone, Debug)]
pub struct Evacuation {
    /// The blade to empty.
    pub hvm: String,
    /// The live moves (activated LPARs).
    pub live: Option<Policy>,
    /// The Shutdown-mode moves (deactivated LPARs).
    pub shutdown: Option<Policy>,
    /// LPARs that stay, with why.
    pub unplaced: Vec<Unplaced>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum EvacuateError {
    /// The HVM is not in the profile or did not answer.
    #[error("HVM {0} did not answer ({1}); an evacuation needs its inventory")]
    Source(String, String),
    /// No other HVM to move to.
    #[error("no other HVM of the profile answered; an evacuation needs at least one destination")]
    NoCandidates,
    /// The policy name would be invalid.
    #[error("{0}")]
    Name(String),
}

/// Plans the evacuation of `hvm` onto `candidates` (None: every other HVM of the profile).
pub async fn plan(
    profile: &Profile,
    hvm: &str,
    candidates: Option<&[String]>,
) -> Result<Evacuation, EvacuateError> {
    let snapshot = ops::inventory(profile).await;
    let source = snapshot
        .hvms
        .iter()
        .find(|h| h.name == hvm)
        .ok_or_else(|| EvacuateError::Source(hvm.to_owned(), "not in the profile".into()))?;
    let Some(inventory) = &source.inventory else {
        let why = source
            .error
            .as_ref()
            .map_or_else(|| "no answer".to_owned(), ToString::to_string);
        return Err(EvacuateError::Source(hvm.to_owned(), why));
    };
    // Free memory per candidate, reduced as LPARs are placed on it.
    let mut room: BTreeMap<String, u64> = snapshot
        .hvms
        .iter()
        .filter(|h| h.name != hvm)
        .filter(|h| candidates.is_none_or(|c| c.contains(&h.name)))
        .filter_map(|h| {
            Some((
                h.name.clone(),
                h.inventory.as_ref()?.resources.memory_free_mib,
            ))
        })
        .collect();
    if room.is_empty() {
        return Err(EvacuateError::NoCandidates);
    }
    let mut placed: BTreeMap<String, usize> = room.keys().map(|k| (k.clone(), 0)).collect();
    let mut live = Vec::new();
    let mut cold = Vec::new();
    let mut unplaced = Vec::new();
    for view in &inventory.lpars {
        let mode = match view.shown_status() {
            LparStatus::Activated => Mode::ConcurrentMaintenance,
            LparStatus::Deactivated => Mode::Shutdown,
            other => {
                unplaced.push(Unplaced {
                    lpar: view.lpar.name.to_string(),
                    refusals: vec![Refusal {
                        candidate: "(any)".into(),
                        reasons: vec![format!(
                            "it is {other:?}; settle it first (Recovery, Rollback WWN) and evacuate again"
                        )],
                    }],
                });
                continue;
            }
        };
        let name = view.lpar.name.to_string();
        let source = LparRef {
            hvm: hvm.to_owned(),
            lpar: LparSelector::Name(name.clone()),
        };
        let mut accepted = Vec::new();
        let mut refusals = Vec::new();
        for (candidate, free) in &room {
            if *free < view.lpar.memory_mib {
                refusals.push(Refusal {
                    candidate: candidate.clone(),
                    reasons: vec![format!(
                        "{free} MiB free after the LPARs already placed there, {} MiB needed",
                        view.lpar.memory_mib
                    )],
                });
                continue;
            }
            let request = CheckRequest {
                source: source.clone(),
                destination: Destination::auto(candidate.clone()),
                mode,
                processor_group: None,
            };
            match ops::check(profile, &request).await {
                Ok(report) => {
                    let errors = report.blocking_errors();
                    if errors.is_empty() {
                        accepted.push(candidate.clone());
                    } else {
                        refusals.push(Refusal {
                            candidate: candidate.clone(),
                            reasons: errors
                                .iter()
                                .map(|r| format!("{}: {} vs {}", r.item, r.source, r.destination))
                                .collect(),
                        });
                    }
                }
                Err(e) => refusals.push(Refusal {
                    candidate: candidate.clone(),
                    reasons: vec![format!("the checks could not run: {e}")],
                }),
            }
        }
        // Spread: the accepted candidate holding the fewest placed LPARs, then the most room.
        let best = accepted
            .iter()
            .min_by_key(|c| {
                (
                    placed.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(room.get(*c).copied().unwrap_or(0)),
                )
            })
            .cloned();
        match best {
            Some(c) => {
                *placed.entry(c.clone()).or_default() += 1;
                if let Some(free) = room.get_mut(&c) {
                    *free = free.saturating_sub(view.lpar.memory_mib);
                }
                let entry = Entry::new(source, Destination::auto(c));
                if mode.is_live() {
                    live.push(entry);
                } else {
                    cold.push(entry);
                }
            }
            None => unplaced.push(Unplaced {
                lpar: name,
                refusals,
            }),
        }
    }
    let make =
        |suffix: &str, mode: Mode, entries: Vec<Entry>| -> Result<Option<Policy>, EvacuateError> {
            if entries.is_empty() {
                return Ok(None);
            }
            let name = PolicyName::new(&format!("evacuate-{hvm}-{suffix}"))
                .map_err(EvacuateError::Name)?;
            let mut p = Policy::new(name, mode);
            p.comment = format!(
                "Empties {hvm} for maintenance ({} {} move{}); its return policy brings them home.",
                entries.len(),
                mode,
                if entries.len() == 1 { "" } else { "s" }
            );
            p.rehearse = mode.is_live();
            p.on_error = OnError::Skip;
            p.entries = entries;
            Ok(Some(p))
        };
    Ok(Evacuation {
        hvm: hvm.to_owned(),
        live: make("live", Mode::ConcurrentMaintenance, live)?,
        shutdown: make("shutdown", Mode::Shutdown, cold)?,
        unplaced,
    })
}
