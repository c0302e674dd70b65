//! The array's error catalogue: every refusal has a stable message id, a message an operator
//! reads, the detail of this case and the action to take. `storagecli` maps each to an exit code
//! scripts can rely on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, as the array classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrayErrorCode {
    /// A request that does not parse or names a value out of range.
    InvalidRequest,
    /// The API token is missing or wrong.
    Unauthorized,
    /// The array is protected and the caller has no valid session.
    LoginRequired,
    /// User ID or password is wrong.
    WrongCredentials,
    /// The array has no such port.
    PortNotFound,
    /// No host group with that number on that port.
    HostGroupNotFound,
    /// The WWPN is not in that host group.
    WwnNotInHostGroup,
    /// The WWPN is already in that host group.
    WwnAlreadyInHostGroup,
    /// The array has no such LU.
    LuNotFound,
    /// The fabric already has this WWPN logged in.
    WwpnAlreadyLoggedIn,
    /// The fabric refuses the login: the WWPN is in no host group of the port.
    LoginNotPermitted,
    /// The WWPN is not logged in (by that blade).
    NotLoggedIn,
    /// The LU is the MV of no pair.
    PairNotFound,
    /// The two LUs cannot be paired (sizes differ, one is in a pair already, the RV is presented
    /// to hosts).
    PairNotPossible,
    /// The pair is in a state that does not allow the operation.
    PairStateWrong,
    /// The RV is Not Ready while its pair replicates or restores.
    RvNotReady,
    /// An LU read or write outside the LU, or the LU file failed.
    LuIoFailed,
    /// The array could not write its state; nothing changed.
    StateWriteFailed,
    /// No route or method of that name.
    NotFound,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// The array failed while answering.
    Internal,
}

/// A row of the catalogue.
#[derive(Debug)]
pub struct ArrayErrorEntry {
    /// Stable message id (`STG-NNNN`).
    pub id: &'static str,
    /// HTTP status.
    pub http_status: u16,
    /// Message.
    pub message: &'static str,
    /// What to do.
    pub action: &'static str,
    /// `storagecli`'s exit code.
    pub exit_code: u8,
}

impl ArrayErrorCode {
    /// The catalogue row.
    pub fn entry(self) -> &'static ArrayErrorEntry {
        macro_rules! e {
            ($id:expr, $status:expr, $exit:expr, $msg:expr, $action:expr) => {{
                const ENTRY: ArrayErrorEntry = ArrayErrorEntry {
                    id: $id,
                    http_status: $status,
                    exit_code: $exit,
                    message: $msg,
                    action: $action,
                };
                &ENTRY
            }};
        }
        match self {
            Self::InvalidRequest => e!(
                "STG-0001",
                400,
                2,
                "The request is not valid.",
                "Correct the value named in the detail and run the command again."
            ),
            Self::Unauthorized => e!(
                "STG-0002",
                401,
                4,
                "The array refused the API token.",
                "Register the array again (`storagecli array add`) so the profile holds its current token."
            ),
            Self::LoginRequired => e!(
                "STG-0101",
                401,
                4,
                "The array is protected by password protection or account authentication; log in first.",
                "Run `storagecli login ARRAY --user USER` (aulogin), then run the command again."
            ),
            Self::WrongCredentials => e!(
                "STG-0102",
                401,
                4,
                "The user ID or the password is wrong.",
                "Enter the user ID and password set on the array (Storage Password Setting); nothing was changed."
            ),
            Self::PortNotFound => e!(
                "STG-0201",
                404,
                1,
                "The array has no port of that name.",
                "List the array's ports with `storagecli array list` and give one of them, e.g. 0A."
            ),
            Self::HostGroupNotFound => e!(
                "STG-0202",
                404,
                1,
                "The specified host group does not exist.",
                "List the host groups with `storagecli hostgroup list ARRAY` and give a port and group number shown there."
            ),
            Self::WwnNotInHostGroup => e!(
                "STG-0203",
                404,
                1,
                "The WWPN is not registered to the host group.",
                "Check the WWPN with `storagecli wwn list ARRAY`; nothing was changed."
            ),
            Self::WwnAlreadyInHostGroup => e!(
                "STG-0204",
                409,
                1,
                "The WWPN is already registered to the host group.",
                "Nothing to do: the WWPN is already permitted. Use `storagecli wwn nickname` to rename it."
            ),
            Self::LuNotFound => e!(
                "STG-0301",
                404,
                1,
                "The specified LU does not exist.",
                "List the LUs with `storagecli hostgroup show ARRAY PORT GROUP` and give one shown there."
            ),
            Self::WwpnAlreadyLoggedIn => e!(
                "STG-0401",
                409,
                1,
                "The WWPN is already logged in to the fabric.",
                "A WWPN may be active on one vFC only: log the other vFC out (or roll its WWNs back) first."
            ),
            Self::LoginNotPermitted => e!(
                "STG-0402",
                403,
                1,
                "FC login refused: the WWPN is not registered to any host group of the port.",
                "Register the WWPN to the host group of the LPAR's LUs on that port (for a migration WWPN: `lparmover wwn register-migration HVM/LPAR`), then retry."
            ),
            Self::NotLoggedIn => e!(
                "STG-0403",
                404,
                1,
                "The WWPN is not logged in by that blade.",
                "Nothing to do: the WWPN is already logged out."
            ),
            Self::PairNotFound => e!(
                "STG-0501",
                404,
                1,
                "The specified volume is not the MV of a pair.",
                "List the pairs with `storagecli pair list ARRAY`, or set one with `storagecli pair set ARRAY --mv LU --rv LU`."
            ),
            Self::PairNotPossible => e!(
                "STG-0502",
                409,
                1,
                "The volumes cannot be set as a pair.",
                "Pair an MV with an RV of the same size that is in no other pair and is not presented to any host group; nothing was changed."
            ),
            Self::PairStateWrong => e!(
                "STG-0503",
                409,
                1,
                "The pair's state does not allow this operation.",
                "See the pair's state with `storagecli pair status ARRAY MV`; wait for it with `storagecli pair wait`, then retry. Nothing was changed."
            ),
            Self::RvNotReady => e!(
                "STG-0504",
                409,
                1,
                "The RV is Not Ready: its pair is replicating or restoring.",
                "Separate the pair (`storagecli pair separate ARRAY MV --wait`) before writing to the RV; nothing was written."
            ),
            Self::LuIoFailed => e!(
                "STG-0902",
                500,
                1,
                "The array could not read or write the LU.",
                "Check the array's state directory (disk space, permissions) and its log; the pair, if any, shows Fault."
            ),
            Self::StateWriteFailed => e!(
                "STG-0901",
                500,
                1,
                "The array could not write its configuration; nothing was changed.",
                "Check the array's state directory (disk space, permissions) and run the command again."
            ),
            Self::NotFound => e!(
                "STG-0003",
                404,
                2,
                "The array has no such operation.",
                "Use a storagecli of the same version as the array."
            ),
            Self::MethodNotAllowed => e!(
                "STG-0004",
                405,
                2,
                "The array does not allow this method on this resource.",
                "Use a storagecli of the same version as the array; nothing was changed."
            ),
            Self::Internal => e!(
                "STG-0999",
                500,
                1,
                "Internal error in the array.",
                "See the array's log for the id in the detail; retry, and report it if it persists."
            ),
        }
    }
}

/// A refusal from an array: its catalogue row and this case's detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ArrayError {
    /// What went wrong.
    pub code: ArrayErrorCode,
    /// Stable message id.
    pub id: String,
    /// The catalogue's message.
    pub message: String,
    /// This case.
    pub detail: String,
    /// What to do.
    pub action: String,
}

impl ArrayError {
    /// An error of `code` with `detail`.
    pub fn new(code: ArrayErrorCode, detail: impl Into<String>) -> Self {
        let entry = code.entry();
        Self {
            code,
            id: entry.id.to_owned(),
            message: entry.message.to_owned(),
            detail: detail.into(),
            action: entry.action.to_owned(),
        }
    }
}

impl fmt::Display for ArrayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.message)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, " Action: {}", self.action)
    }
}
