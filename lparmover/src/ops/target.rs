//! Where a move goes: a destination as the operator names it, and a return migration's
//! endpoints found in the history.

use std::str::FromStr;
use std::time::Duration;

use crate::dirs::ManagerDirs;
use crate::fleetview::{LparRef, LparSelector};
use crate::history::{History, HistoryError};
use crate::model::LparNumber;

/// Where to: `HVM` (Auto: the youngest free LPAR number) or `HVM/N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// HVM name.
    pub hvm: String,
    /// LPAR number to use there (`None` = Auto, the youngest free one).
    pub number: Option<LparNumber>,
}

impl Destination {
    /// The HVM with the Auto LPAR number.
    pub fn auto(hvm: impl Into<String>) -> Self {
        Self {
            hvm: hvm.into(),
            number: None,
        }
    }
}

impl FromStr for Destination {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hvm, number) = match s.split_once('/') {
            Some((h, n)) => (
                h,
                Some(n.parse::<LparNumber>().map_err(|e| format!("{s:?}: {e}"))?),
            ),
            None => (s, None),
        };
        if hvm.is_empty() {
            return Err(format!(
                "{s:?} is not HVM or HVM/N (e.g. ch1-b2 or ch1-b2/5)"
            ));
        }
        Ok(Self {
            hvm: hvm.to_owned(),
            number,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.number {
            Some(n) => write!(f, "{}/{n}", self.hvm),
            None => f.write_str(&self.hvm),
        }
    }
}

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

/// Longest duration an operator may give (a year): beyond it every deadline arithmetic stays
/// far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `50ms`, `2s`, `15m`, `1h` (positive, at most a year).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 50ms, 900s or 15m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{text:?} must be a positive duration"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "{text:?} is longer than the longest allowed ({} days); give a shorter duration",
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        let d: Destination = "ch1-b2".parse().unwrap();
        assert_eq!(d, Destination::auto("ch1-b2"));
        let d: Destination = "ch1-b2/5".parse().unwrap();
        assert_eq!(d.number.map(|n| n.get()), Some(5));
        assert_eq!(d.to_string(), "ch1-b2/5");
        for bad in ["/5", "ch1-b2/x", "ch1-b2/0", "ch1-b2/99999"] {
            assert!(bad.parse::<Destination>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units_and_limits() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("900").unwrap(), Duration::from_secs(900));
        for bad in [
            "0s",
            "-1s",
            "1x",
            "",
            "NaN",
            "99999999999999999999h",
            "400d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let err = parse_duration("18446744073709551615s").unwrap_err();
        assert!(err.contains("longest"), "{err}");
    }
}
