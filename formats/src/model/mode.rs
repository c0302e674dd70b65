//! Migration modes: cold (Shutdown) or live (Concurrent Maintenance).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How an LPAR moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The guest is shut down (or already deactivated); its configuration moves and it is defined
    /// (optionally activated) on the destination.
    Shutdown,
    /// Live: memory is copied while the guest runs, then it resumes on the destination.
    ConcurrentMaintenance,
}

impl Mode {
    /// The name operators read (the seed's wording).
    pub fn label(self) -> &'static str {
        match self {
            Self::Shutdown => "Shutdown",
            Self::ConcurrentMaintenance => "Concurrent Maintenance",
        }
    }

    /// Whether the guest keeps running during the move.
    pub fn is_live(self) -> bool {
        self == Self::ConcurrentMaintenance
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A mode name that is not `shutdown` or `concurrent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown migration mode {0:?}; expected `shutdown` or `concurrent`")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "shutdown" | "cold" => Ok(Self::Shutdown),
            "concurrent" | "concurrent-maintenance" | "live" => Ok(Self::ConcurrentMaintenance),
            _ => Err(UnknownMode(s.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_what_operators_type() {
        assert_eq!("shutdown".parse::<Mode>().unwrap(), Mode::Shutdown);
        assert_eq!(
            "Concurrent Maintenance".parse::<Mode>().unwrap(),
            Mode::ConcurrentMaintenance
        );
        assert_eq!(
            "concurrent".parse::<Mode>().unwrap(),
            Mode::ConcurrentMaintenance
        );
        assert!("warm".parse::<Mode>().is_err());
        assert_eq!(
            serde_json::to_string(&Mode::ConcurrentMaintenance).unwrap(),
            "\"concurrent-maintenance\""
        );
    }
}
