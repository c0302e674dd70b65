//! Replication pairs (seed 002): an MV (master volume, here an LPAR's boot LU) and an RV
//! (replication volume) of the same size, copied inside the array.
//!
//! States and transitions, as the seed's ReplicationControl shows them:
//!
//! | state | code | RV | reached by | leaves by |
//! | --- | --- | --- | --- | --- |
//! | Separated | `sep/sync` | rw | pair set; Separate done; Restore (protect) done | Replicate, Restore |
//! | Replicating | `rpl/exec` | nr | Replicate | copy done → Replicated; Separate |
//! | Replicated | `rpl/sync` | nr | copy done (MV writes reach the RV) | Separate, Restore |
//! | Separating | `sep/exec` | nr | Separate | difference copied → Separated |
//! | Restoring | `rst/exec` | nr | Restore | copy done → Restored (update) or Separated (protect) |
//! | Restored | `rst/sync` | nr | Restore (update) done (MV writes reach the RV) | Separate |
//! | Fault | `fault` | rw | a copy failed (failure separation) | Replicate (copies everything) |
//!
//! Copies are of differences: while separated the array remembers which parts of each volume
//! were written, and Replicate / Restore copy only those (everything the first time).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LuNumber;

/// Where a pair is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PairState {
    /// Separated: MV and RV are independent; the RV may be read and written.
    #[serde(rename = "sep/sync")]
    Separated,
    /// Replicate started: copying the difference MV → RV.
    #[serde(rename = "rpl/exec")]
    Replicating,
    /// Replicate state: the RV holds the MV's data and follows its writes.
    #[serde(rename = "rpl/sync")]
    Replicated,
    /// Separate started: the last difference is being copied; writes to the MV after the
    /// Separate no longer reach the RV.
    #[serde(rename = "sep/exec")]
    Separating,
    /// Restore started: copying the difference RV → MV.
    #[serde(rename = "rst/exec")]
    Restoring,
    /// Restore state (update mode): the MV holds the RV's data and the RV follows MV writes.
    #[serde(rename = "rst/sync")]
    Restored,
    /// A copy failed and the pair separated itself (the seed's "failure separation").
    #[serde(rename = "fault")]
    Fault,
}

impl PairState {
    /// The seed's short code (`rpl/sync`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Separated => "sep/sync",
            Self::Replicating => "rpl/exec",
            Self::Replicated => "rpl/sync",
            Self::Separating => "sep/exec",
            Self::Restoring => "rst/exec",
            Self::Restored => "rst/sync",
            Self::Fault => "fault",
        }
    }

    /// Words for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Separated => "Separated",
            Self::Replicating => "Replicating",
            Self::Replicated => "Replicated",
            Self::Separating => "Separating",
            Self::Restoring => "Restoring",
            Self::Restored => "Restored",
            Self::Fault => "Fault",
        }
    }

    /// Whether the array is copying in this state.
    pub fn copying(self) -> bool {
        matches!(self, Self::Replicating | Self::Separating | Self::Restoring)
    }
}

/// What hosts may do with the RV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RvAccess {
    /// Read/Write.
    Rw,
    /// Not Ready: neither read nor write.
    Nr,
}

/// Restore's RV operation mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// The RV keeps following MV writes after the restore (`rst/sync`).
    #[default]
    Update,
    /// RV protection: MV writes do not reach the RV, and the pair separates by itself when
    /// the restore is done.
    Protect,
}

impl std::str::FromStr for RestoreMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "update" => Ok(Self::Update),
            "protect" => Ok(Self::Protect),
            other => Err(format!("restore mode {other:?}: use update or protect")),
        }
    }
}

/// A pair as the array shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// The master volume.
    pub mv: LuNumber,
    /// Its name.
    pub mv_name: String,
    /// The replication volume.
    pub rv: LuNumber,
    /// Its name.
    pub rv_name: String,
    /// Where the pair is.
    pub state: PairState,
    /// What hosts may do with the RV.
    pub rv_access: RvAccess,
    /// The mode of the last Restore, while it matters.
    #[serde(default)]
    pub restore_mode: Option<RestoreMode>,
    /// Whether the RV has ever received a whole copy (Restore needs one).
    pub synchronized: bool,
    /// MiB of the current copy, and how many of them are still to go.
    pub copy_total_mib: u64,
    /// MiB still to copy.
    pub copy_remaining_mib: u64,
    /// MiB written to either volume since they were last the same (what the next Replicate or
    /// Restore copies).
    pub difference_mib: u64,
    /// When the last operation started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (none while it runs).
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why the pair is in Fault.
    #[serde(default)]
    pub fault: Option<String>,
}

impl Pair {
    /// How far the current copy is, 0–100.
    pub fn progress_percent(&self) -> u8 {
        if self.copy_total_mib == 0 {
            return 100;
        }
        let done = self.copy_total_mib.saturating_sub(self.copy_remaining_mib);
        u8::try_from(done.saturating_mul(100) / self.copy_total_mib).unwrap_or(100)
    }
}

/// Set two LUs as a pair (`iSMrc_pair -pair`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPair {
    /// The master volume.
    pub mv: LuNumber,
    /// The replication volume.
    pub rv: LuNumber,
}

/// Start a Restore (`iSMrc_restore -mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The RV operation mode.
    #[serde(default)]
    pub mode: RestoreMode,
}

/// The state `iSMrc_wait -cond` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitCondition {
    /// `rpl/sync`.
    Sync,
    /// `sep/sync`.
    Sep,
    /// `rst/sync`.
    Rst,
}

impl WaitCondition {
    /// The state it waits for.
    pub fn target(self) -> PairState {
        match self {
            Self::Sync => PairState::Replicated,
            Self::Sep => PairState::Separated,
            Self::Rst => PairState::Restored,
        }
    }

    /// Whether a pair in `state` (restoring in `mode`) gets there without another command.
    pub fn reachable_from(self, state: PairState, mode: Option<RestoreMode>) -> bool {
        if state == self.target() {
            return true;
        }
        match self {
            Self::Sync => state == PairState::Replicating,
            Self::Sep => {
                state == PairState::Separating
                    || (state == PairState::Restoring && mode == Some(RestoreMode::Protect))
            }
            Self::Rst => state == PairState::Restoring && mode != Some(RestoreMode::Protect),
        }
    }
}

impl std::str::FromStr for WaitCondition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "sync" | "rpl/sync" => Ok(Self::Sync),
            "sep" | "sep/sync" => Ok(Self::Sep),
            "rst" | "rst/sync" => Ok(Self::Rst),
            other => Err(format!("condition {other:?}: use sync, sep or rst")),
        }
    }
}

/// An LU's content digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuDigest {
    /// The LU.
    pub lu: LuNumber,
    /// Its size.
    pub size_mib: u32,
    /// BLAKE3 of every byte, hex.
    pub blake3: String,
}

/// Where LU data goes or comes from (`?offset=…&length=…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuRange {
    /// Byte offset in the LU.
    pub offset: u64,
    /// Bytes (reads only; a write's length is its body's).
    #[serde(default)]
    pub length: Option<u64>,
}

/// Longest read or write of LU data in one request.
pub const MAX_LU_IO: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_know_which_states_lead_where_without_another_command() {
        use PairState::*;
        assert!(WaitCondition::Sync.reachable_from(Replicating, None));
        assert!(!WaitCondition::Sync.reachable_from(Separated, None));
        assert!(WaitCondition::Sep.reachable_from(Restoring, Some(RestoreMode::Protect)));
        assert!(!WaitCondition::Sep.reachable_from(Restoring, Some(RestoreMode::Update)));
        assert!(WaitCondition::Rst.reachable_from(Restoring, Some(RestoreMode::Update)));
        assert!(!WaitCondition::Rst.reachable_from(Fault, None));
        assert_eq!(
            serde_json::to_string(&Replicated).ok().as_deref(),
            Some("\"rpl/sync\"")
        );
    }
}
