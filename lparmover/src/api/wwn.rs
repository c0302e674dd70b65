//! WWN rollback marks (`/v1/wwn-rollbacks`), the seed's "Rolling back WWNs" (ch. 3).
//!
//! A live move that fails after the destination's vFCs may have logged in to the fabric with the
//! LPAR's *migration* WWPNs, or after the destination resumed but before its vFCs could swap to
//! the WWPNs, leaves the fabric in a state only the manager can settle. The manager then marks
//! the HVM that runs the LPAR; the mark is durable in the HVM's state file, and while an HVM has
//! marks it refuses to take part in a new live move ("LPAR Migration was canceled. Migration WWNs
//! are already used."). `lparmover rollback-wwn HVM/LPAR` settles the other HVM's part and then
//! executes the mark: the LPAR's vFCs log in with its own WWPNs and the mark is cleared.
//!
//! | method | route | body → answer |
//! | --- | --- | --- |
//! | GET | `/v1/wwn-rollbacks` | → `[WwnRollback]` |
//! | POST | `/v1/wwn-rollbacks` | [`MarkWwnRollback`] → [`WwnRollback`] (idempotent per LPAR) |
//! | POST | `/v1/wwn-rollbacks/{lpar}/execute` | → [`WwnRolledBack`] |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::model::{LparName, LparNumber, Wwpn};

/// Why the manager marks an HVM (the three cases of `crate::jobs::recovery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WwnRollbackReason {
    /// The destination stopped answering before the commit point: the source was rolled back,
    /// but the destination may still be logged in with the migration WWPNs.
    DestinationUnreachable,
    /// The source stopped answering after the destination resumed and before the identity swap:
    /// the destination runs the LPAR on the migration WWPNs.
    SourceUnreachable,
    /// The source could not commit (log out) during recovery: the destination runs the LPAR on
    /// the migration WWPNs.
    SourceCommitFailed,
}

impl WwnRollbackReason {
    /// Text for operators.
    pub fn label(self) -> &'static str {
        match self {
            Self::DestinationUnreachable => {
                "destination unreachable before the commit point (it may be logged in with the migration WWPNs)"
            }
            Self::SourceUnreachable => {
                "source unreachable after the destination resumed (running on the migration WWPNs)"
            }
            Self::SourceCommitFailed => {
                "the source did not commit during recovery (running on the migration WWPNs)"
            }
        }
    }
}

/// Asks an HVM to mark one of its LPARs: WWNs to roll back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkWwnRollback {
    /// The move that left them.
    pub job: String,
    /// LPAR number on this HVM.
    pub lpar: LparNumber,
    /// This HVM's role in that move.
    pub role: Role,
    /// The other HVM of the move.
    pub peer: String,
    /// Why.
    pub reason: WwnRollbackReason,
}

impl MarkWwnRollback {
    /// Checks the job id and the peer's length before the mark is written.
    pub fn check_fields(&self) -> Result<(), super::limits::InvalidField> {
        use super::limits::{MAX_LABEL_LEN, check_job_id, check_len};
        check_job_id("job", &self.job)?;
        check_len("peer", &self.peer, MAX_LABEL_LEN, true)
    }
}

/// A durable mark: an LPAR of this HVM has WWNs to roll back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WwnRollback {
    /// The move that left them.
    pub job: String,
    /// LPAR number on this HVM.
    pub lpar: LparNumber,
    /// LPAR name (when marked).
    pub lpar_name: LparName,
    /// This HVM's role in that move.
    pub role: Role,
    /// The other HVM of the move.
    pub peer: String,
    /// Why.
    pub reason: WwnRollbackReason,
    /// The LPAR's WWPNs (what its vFCs log in with once rolled back).
    pub wwpns: Vec<Wwpn>,
    /// Its migration WWPNs (what must not stay logged in anywhere).
    pub migration_wwpns: Vec<Wwpn>,
    /// When the mark was written.
    pub marked_at: DateTime<Utc>,
}

/// A mark executed: the LPAR's vFCs are on its own WWPNs (or logged out when it is not running).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WwnRolledBack {
    /// The mark that was cleared.
    pub mark: WwnRollback,
    /// WWPNs the LPAR's vFCs are logged in with now.
    pub fc_logins: Vec<Wwpn>,
}
