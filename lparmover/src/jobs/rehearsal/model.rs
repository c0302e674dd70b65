//! The rehearsal's forecast of the real move: what the sample measured, run through the same
//! convergence rule the sender follows (suspend once the expected pause is under half the
//! downtime limit, or under the limit and another round would not halve the dirty set).
//!
//! Measured parts are charged as measured (the set-up before the transfer, the delay before the
//! first page, the memory rate of the path, the teardown); the rounds after round 0 are
//! simulated from the guest's dirty rate and working set, since a short sample cannot run them.

use std::time::Duration;

/// Fixed part of a pause that moves no pages: stopping the vCPUs, their state, the
/// Switchover → Ready round trip and the destination's resume (5.6–9.2 ms for idle 1 GiB guests
/// on loopback in `lparmover bench predict`, December 2026).
pub const SWITCHOVER_FIXED: Duration = Duration::from_millis(7);

/// Rounds the forecast runs before calling the move non-converging (the sender throttles).
const MAX_ROUNDS: u32 = 30;

/// What a rehearsal measured, and the guest and options it rehearsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Guest memory, bytes.
    pub memory_bytes: u64,
    /// Memory bytes per second the path carried in the latest part of the sample.
    pub memory_rate: f64,
    /// The part of round 0 the sample moved, and how long that took after the first pages;
    /// the rest of round 0 goes at `memory_rate`.
    pub sampled: (u64, Duration),
    /// Guest dirty rate, bytes per second.
    pub dirty_rate: f64,
    /// Bytes the guest writes into (clamped to memory).
    pub working_set: u64,
    /// Checks, leases and the destination's preparation.
    pub setup: Duration,
    /// From asking the source to send until the first pages went over.
    pub startup: Duration,
    /// Cancelling the transfer on both blades (the teardown, as long as the real move's).
    pub teardown: Duration,
    /// The downtime limit of the move.
    pub downtime_limit: Duration,
}

/// The forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// Total time of the move, from its checks to its end.
    pub total: Duration,
    /// Guest-visible suspension.
    pub suspension: Duration,
    /// Pre-copy rounds before the pause.
    pub rounds: u32,
    /// Whether the guest's writes let the rounds converge without throttling.
    pub converges_unthrottled: bool,
}

/// Runs `m` through the sender's convergence rule.
pub fn forecast(m: &Measured) -> Forecast {
    let rate = m.memory_rate.max(1e6);
    let limit = m.downtime_limit.as_secs_f64();
    let working_set = m.working_set.min(m.memory_bytes) as f64;
    let mut dirty_rate = m.dirty_rate.max(0.0);
    let (sampled, sample_time) = m.sampled;
    let mut round_time =
        sample_time.as_secs_f64() + m.memory_bytes.saturating_sub(sampled) as f64 / rate;
    let mut precopy = round_time;
    let mut last_sent = m.memory_bytes as f64;
    let mut rounds = 1;
    let mut converges_unthrottled = true;
    let pause = loop {
        let dirty = (dirty_rate * round_time).min(working_set);
        let expected = dirty / rate;
        let halving = dirty * 2.0 < last_sent;
        if expected <= limit * 0.5 || (expected <= limit && !halving) {
            break expected;
        }
        if rounds >= MAX_ROUNDS {
            converges_unthrottled = false;
            break limit;
        }
        if !halving {
            // The sender throttles the vCPUs step by step when rounds stop shrinking.
            converges_unthrottled = false;
            dirty_rate *= 0.5;
        }
        last_sent = dirty;
        round_time = expected;
        precopy += round_time;
        rounds += 1;
    };
    let suspension = Duration::from_secs_f64(pause) + SWITCHOVER_FIXED;
    let total = m.setup + m.startup + Duration::from_secs_f64(precopy) + suspension + m.teardown;
    Forecast {
        total,
        suspension,
        rounds,
        converges_unthrottled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn measured(dirty_mbps: f64, rate_mbps: f64) -> Measured {
        Measured {
            memory_bytes: GIB,
            memory_rate: rate_mbps * 1e6,
            dirty_rate: dirty_mbps * 1e6,
            working_set: 256 << 20,
            sampled: (0, Duration::ZERO),
            setup: Duration::from_millis(150),
            startup: Duration::from_millis(30),
            teardown: Duration::from_millis(100),
            downtime_limit: Duration::from_millis(50),
        }
    }

    #[test]
    fn an_idle_guest_pauses_for_the_fixed_part_after_one_round() {
        let f = forecast(&measured(0.0, 1000.0));
        assert_eq!(f.rounds, 1);
        assert_eq!(f.suspension, SWITCHOVER_FIXED);
        let expected = 0.15 + 0.03 + GIB as f64 / 1e9 + 0.007 + 0.1;
        assert!((f.total.as_secs_f64() - expected).abs() < 1e-3, "{f:?}");
        assert!(f.converges_unthrottled);
    }

    #[test]
    fn the_pause_carries_the_pages_dirtied_during_the_last_round() {
        // 20 MB/s over a 1.07 s round 0: 21 MB left, 21 ms at 1 GB/s, under half the limit.
        let f = forecast(&measured(20.0, 1000.0));
        assert_eq!(f.rounds, 1);
        let ms = f.suspension.as_secs_f64() * 1e3;
        assert!((ms - (21.5 + 7.0)).abs() < 1.0, "{ms}");
    }

    #[test]
    fn a_busier_guest_needs_more_rounds_and_a_longer_move() {
        let calm = forecast(&measured(20.0, 500.0));
        let busy = forecast(&measured(100.0, 500.0));
        assert!(busy.rounds > calm.rounds, "{calm:?} {busy:?}");
        assert!(busy.total > calm.total);
        assert!(busy.suspension <= Duration::from_millis(50) + SWITCHOVER_FIXED);
    }

    #[test]
    fn a_guest_that_outruns_the_path_is_not_converging_unthrottled() {
        let f = forecast(&measured(600.0, 500.0));
        assert!(!f.converges_unthrottled, "{f:?}");
    }

    #[test]
    fn a_slower_path_takes_proportionally_longer() {
        let fast = forecast(&measured(0.0, 1000.0)).total.as_secs_f64();
        let slow = forecast(&measured(0.0, 100.0)).total.as_secs_f64();
        assert!(slow > 8.0 * (fast - 0.28), "{fast} {slow}");
    }

    #[test]
    fn a_slow_start_counts_as_measured_and_the_rest_goes_at_the_late_rate() {
        let m = Measured {
            // 256 MiB took 1 s (a slow start), the latest part ran at 1 GB/s.
            sampled: (256 << 20, Duration::from_secs(1)),
            ..measured(0.0, 1000.0)
        };
        let whole = forecast(&measured(0.0, 1000.0)).total.as_secs_f64();
        let f = forecast(&m).total.as_secs_f64();
        let expected = whole + 1.0 - (256u64 << 20) as f64 / 1e9;
        assert!((f - expected).abs() < 1e-3, "{f} vs {expected}");
    }
}
