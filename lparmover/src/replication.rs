//! Replication pairs from the manager's side (seed 002): naming volumes the way operators do
//! (number or name), and waiting for a pair to reach a state (`iSMrc_wait`), for storagecli,
//! the navigator and policies alike.

use std::time::{Duration, Instant};

use crate::api::array::{ArrayClient, ArrayClientError, Lu, LuNumber, Pair, WaitCondition};

/// Why a wait ended without the state.
#[derive(Debug, thiserror::Error)]
pub enum PairWaitError {
    /// The array could not be asked.
    #[error(transparent)]
    Array(#[from] ArrayClientError),
    /// The pair failed.
    #[error(
        "the pair of MV {} is in Fault ({}); replicate again to make the RV whole",
        .0.mv,
        .0.fault.as_deref().unwrap_or("no detail")
    )]
    Fault(Box<Pair>),
    /// Nothing will take the pair there without another command.
    #[error(
        "the pair of MV {} is {} ({}) and will not become {} without another command; {}",
        .pair.mv,
        .pair.state.code(),
        .pair.state.label(),
        .condition.target().code(),
        match .condition {
            WaitCondition::Sync => "start `storagecli pair replicate`",
            WaitCondition::Sep => "start `storagecli pair separate`",
            WaitCondition::Rst => "start `storagecli pair restore --mode update`",
        }
    )]
    Unreachable {
        pair: Box<Pair>,
        condition: WaitCondition,
    },
    /// The time ran out.
    #[error(
        "the pair of MV {} is still {} after {:.0} s ({}% copied); wait longer with --timeout",
        .pair.mv,
        .pair.state.code(),
        .waited.as_secs_f64(),
        .pair.progress_percent()
    )]
    TimedOut { pair: Box<Pair>, waited: Duration },
}

/// Polls the pair of `mv` until it reaches `condition`'s state; `progress` sees every answer.
pub async fn wait_for_pair(
    client: &ArrayClient,
    mv: LuNumber,
    condition: WaitCondition,
    timeout: Duration,
    mut progress: impl FnMut(&Pair),
) -> Result<Pair, PairWaitError> {
    let start = Instant::now();
    loop {
        let pair = client.pair(mv).await?;
        progress(&pair);
        if pair.state == condition.target() {
            return Ok(pair);
        }
        if pair.state == crate::api::array::PairState::Fault {
            return Err(PairWaitError::Fault(Box::new(pair)));
        }
        if !condition.reachable_from(pair.state, pair.restore_mode) {
            return Err(PairWaitError::Unreachable {
                pair: Box::new(pair),
                condition,
            });
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(PairWaitError::TimedOut {
                pair: Box::new(pair),
                waited,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The LU an operator means by `text`: its number (`0001`, `1`) or its name (`web-01-boot`).
pub fn resolve_lu(lus: &[Lu], text: &str) -> Result<LuNumber, String> {
    if let Some(lu) = lus.iter().find(|l| l.name == text) {
        return Ok(lu.number);
    }
    if let Ok(number) = text.parse::<LuNumber>()
        && lus.iter().any(|l| l.number == number)
    {
        return Ok(number);
    }
    Err(format!(
        "the array has no LU {:?}; give a number or name from `storagecli lu list ARRAY`",
        text.chars().take(40).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_found_by_name_or_number_and_unknown_ones_named_in_the_error() {
        let lus = vec![Lu {
            number: LuNumber(100),
            name: "web-01-rv".into(),
            size_mib: 64,
        }];
        assert_eq!(resolve_lu(&lus, "web-01-rv"), Ok(LuNumber(100)));
        assert_eq!(resolve_lu(&lus, "0100"), Ok(LuNumber(100)));
        assert_eq!(resolve_lu(&lus, "100"), Ok(LuNumber(100)));
        let e = resolve_lu(&lus, "0101").expect_err("no such LU");
        assert!(e.contains("\"0101\""), "{e}");
    }
}
