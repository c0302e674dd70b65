//! The return policy: what brings back every LPAR a run moved, last moved first, each in the
//! mode of the move it undoes and to the LPAR number it left.

use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::ops::Destination;

use crate::model::{Entry, Policy, PolicyName};
use crate::report::{EntryResult, RunReport};

/// Why no return policy could be written.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    /// The run moved nothing.
    #[error("run {0} completed no entry, so there is nothing to bring back")]
    NothingMoved(String),
    /// The report does not say where an LPAR went.
    #[error(
        "entry {0} of run {1} completed but its report does not say where the LPAR landed; move it back by hand (`lparmover migrate --return LPAR`)"
    )]
    Incomplete(usize, String),
    /// The name of the return policy is not a policy name.
    #[error("{0}")]
    Name(String),
}

/// The policy that undoes the completed entries of `run` (a run of `policy`).
pub fn reverse(policy: &Policy, run: &RunReport) -> Result<Policy, ReverseError> {
    let name = PolicyName::new(&format!("{}-return", policy.name)).map_err(ReverseError::Name)?;
    let mut back = Policy::new(name, run.mode);
    back.comment = format!(
        "Brings back what run {} of policy {} moved ({} entr{}).",
        run.run,
        policy.name,
        run.count(EntryResult::Completed),
        if run.count(EntryResult::Completed) == 1 {
            "y"
        } else {
            "ies"
        }
    );
    back.on_error = policy.on_error;
    back.limits = policy.limits.clone();
    back.rehearse = policy.rehearse;
    for done in run
        .entries
        .iter()
        .rev()
        .filter(|e| e.result == EntryResult::Completed)
    {
        let incomplete = || ReverseError::Incomplete(done.index, run.run.clone());
        let original = policy
            .entries
            .get(done.index.wrapping_sub(1))
            .ok_or_else(incomplete)?;
        let landed: Destination = done
            .landed
            .as_deref()
            .and_then(|l| l.parse().ok())
            .ok_or_else(incomplete)?;
        let number = landed.number.ok_or_else(incomplete)?;
        // By name when the report knows it: it reads better and holds wherever it landed.
        let lpar = match &done.lpar {
            Some(name) => LparSelector::Name(name.clone()),
            None => LparSelector::Number(number),
        };
        let mut entry = Entry::new(
            LparRef {
                hvm: landed.hvm,
                lpar,
            },
            Destination {
                hvm: original.source.hvm.clone(),
                number: done.from_number,
            },
        );
        entry.activate = original.activate;
        entry.guest_shutdown = original.guest_shutdown;
        entry.timeout = original.timeout;
        entry.downtime_limit = original.downtime_limit;
        back.entries.push(entry);
    }
    if back.entries.is_empty() {
        return Err(ReverseError::NothingMoved(run.run.clone()));
    }
    Ok(back)
}
