//! Where a move goes: a destination as the operator names it, and a return migration's
//! endpoints found in the history.

use crate::dirs::ManagerDirs;
use crate::fleetview::{LparRef, LparSelector};
use crate::history::{History, HistoryError};

pub use lpm_formats::moves::{Destination, MAX_DURATION, parse_duration};

/// What a move is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveTarget {
    /// This LPAR to that destination.
    Given {
        /// The LPAR.
        source: LparRef,
        /// Where to.
        destination: Destination,
    },
    /// Return migration: the LPAR goes back to the HVM and LPAR number its last completed move
    /// came from.
    Return {
        /// The LPAR's name.
        lpar: String,
    },
}

/// The resolved endpoints of a move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The LPAR where it is now.
    pub source: LparRef,
    /// Where it goes.
    pub destination: Destination,
}

/// Why a move's endpoints could not be found.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The history could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Nothing to return from.
    #[error(
        "no migration history for LPAR {0:?}; a return migration needs a completed move to undo"
    )]
    NoHistory(String),
    /// The history has no completed move.
    #[error("LPAR {0:?} has no completed move in the history to return from")]
    NothingToReturn(String),
}

impl MoveTarget {
    /// The endpoints: as given, or for a return migration from the history (where the LPAR is
    /// now → where its last completed move came from).
    pub fn resolve(&self, dirs: &ManagerDirs) -> Result<Endpoints, TargetError> {
        match self {
            Self::Given {
                source,
                destination,
            } => Ok(Endpoints {
                source: source.clone(),
                destination: destination.clone(),
            }),
            Self::Return { lpar } => {
                let history = History::open(&dirs.history_db())?;
                let Some(now) = history.lpar_history(lpar)?.into_iter().next() else {
                    return Err(TargetError::NoHistory(lpar.clone()));
                };
                let Some(origin) = history.where_from(lpar)? else {
                    return Err(TargetError::NothingToReturn(lpar.clone()));
                };
                Ok(Endpoints {
                    source: LparRef {
                        hvm: now.hvm,
                        lpar: LparSelector::Number(now.number),
                    },
                    destination: Destination {
                        hvm: origin.hvm,
                        number: Some(origin.number),
                    },
                })
            }
        }
    }
}

/// The mode a return migration of `lpar` takes: that of the completed move it undoes (None:
/// no completed move on record).
pub fn return_mode(
    dirs: &ManagerDirs,
    lpar: &str,
) -> Result<Option<crate::model::Mode>, TargetError> {
    Ok(History::open(&dirs.history_db())?.last_move_mode(lpar)?)
}
