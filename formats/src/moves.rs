//! How an operator names a move, as the CLI, the navigator and policy files write it: an LPAR
//! ([`LparRef`]: `HVM/NUMBER` or `HVM/NAME`), a destination ([`Destination`]: `HVM` or
//! `HVM/N`), a duration (`50ms`, `900s`, `15m`) and the bound on a downtime limit. Here, beside
//! the model, so the policy file parser that reads them stays in this small crate.

use std::str::FromStr;
use std::time::Duration;

use crate::model::LparNumber;

/// The longest downtime limit a move may be given (`MoveOptions::downtime_limit_ms`).
pub const MAX_DOWNTIME_LIMIT_MS: u64 = 60_000;

/// Which LPAR an operator means: `HVM/NUMBER` or `HVM/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LparRef {
    /// HVM name.
    pub hvm: String,
    /// LPAR number or name.
    pub lpar: LparSelector,
}

/// An LPAR by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LparSelector {
    /// By number.
    Number(LparNumber),
    /// By name.
    Name(String),
}

impl std::str::FromStr for LparRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hvm, lpar) = s
            .split_once('/')
            .filter(|(h, l)| !h.is_empty() && !l.is_empty())
            .ok_or_else(|| format!("{s:?} is not HVM/LPAR (e.g. ch1-b1/web-01 or ch1-b1/1)"))?;
        let lpar = if lpar.chars().all(|c| c.is_ascii_digit()) {
            LparSelector::Number(
                lpar.parse()
                    .map_err(|e: crate::model::InvalidId| e.to_string())?,
            )
        } else {
            LparSelector::Name(lpar.to_owned())
        };
        Ok(Self {
            hvm: hvm.to_owned(),
            lpar,
        })
    }
}

impl std::fmt::Display for LparSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl std::fmt::Display for LparRef {
    /// `HVM/LPAR`, as the operator wrote it (parses back to the same reference).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hvm, self.lpar)
    }
}

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
    fn lpar_refs_parse() {
        let r: LparRef = "ch1-b1/web-01".parse().unwrap();
        assert_eq!(r.lpar, LparSelector::Name("web-01".into()));
        let r: LparRef = "ch1-b1/3".parse().unwrap();
        assert_eq!(r.lpar, LparSelector::Number(LparNumber::new(3).unwrap()));
        assert!("ch1-b1".parse::<LparRef>().is_err());
        assert!("ch1-b1/99".parse::<LparRef>().is_err());
        for text in ["ch1-b1/web-01", "ch1-b1/3"] {
            assert_eq!(text.parse::<LparRef>().unwrap().to_string(), text);
        }
    }

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

/// A live move's default downtime limit, ms (`MoveOptions::downtime_limit_ms`).
pub const DEFAULT_DOWNTIME_LIMIT_MS: u64 = 50;
/// Most steps a convergence schedule may have.
pub const MAX_CONVERGENCE_STEPS: usize = 16;
/// Most stalled rounds a convergence schedule may count to.
pub const MAX_STALLED_ROUNDS: u32 = 10_000;

/// One step of a [`ConvergenceSchedule`]: from `stalled_rounds` stalled rounds on, the move
/// accepts a suspension up to `downtime_limit_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvergenceStep {
    /// Rounds that did not shrink the dirty set (counted over the whole move) before this
    /// step applies.
    pub stalled_rounds: u32,
    /// The downtime limit from then on, ms.
    pub downtime_limit_ms: u64,
}

/// oVirt's convergence schedule: as pre-copy rounds stall, the downtime limit is raised step
/// by step, and after `abort_after_stalled_rounds` the move gives up (the source keeps
/// running) rather than pausing the guest for longer than the operator allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvergenceSchedule {
    /// The steps, by rising `stalled_rounds` and rising limits.
    pub steps: Vec<ConvergenceStep>,
    /// Give up after this many stalled rounds (None: only the move's timeout ends it).
    #[serde(default)]
    pub abort_after_stalled_rounds: Option<u32>,
}

impl ConvergenceSchedule {
    /// Checks the schedule for a move whose own downtime limit is `base_ms`: at most
    /// [`MAX_CONVERGENCE_STEPS`] steps, stalled rounds 1..=[`MAX_STALLED_ROUNDS`] and rising,
    /// limits above `base_ms`, rising, and at most [`MAX_DOWNTIME_LIMIT_MS`]; the abort after
    /// the last step. The error says which step is wrong and what to give.
    pub fn validate(&self, base_ms: u64) -> Result<(), String> {
        if self.steps.len() > MAX_CONVERGENCE_STEPS {
            return Err(format!(
                "{} steps: give at most {MAX_CONVERGENCE_STEPS}",
                self.steps.len()
            ));
        }
        let (mut rounds, mut limit) = (0u32, base_ms);
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            if step.stalled_rounds <= rounds || step.stalled_rounds > MAX_STALLED_ROUNDS {
                return Err(format!(
                    "step {n}: stalled_rounds = {} must be more than {rounds} (the step before) and at most {MAX_STALLED_ROUNDS}",
                    step.stalled_rounds
                ));
            }
            if step.downtime_limit_ms <= limit || step.downtime_limit_ms > MAX_DOWNTIME_LIMIT_MS {
                return Err(format!(
                    "step {n}: downtime_limit = {} ms must be more than {limit} ms (the limit before it) and at most {MAX_DOWNTIME_LIMIT_MS} ms",
                    step.downtime_limit_ms
                ));
            }
            rounds = step.stalled_rounds;
            limit = step.downtime_limit_ms;
        }
        if let Some(abort) = self.abort_after_stalled_rounds
            && (abort <= rounds || abort > MAX_STALLED_ROUNDS)
        {
            return Err(format!(
                "abort_after_stalled_rounds = {abort} must be more than {rounds} (the last step's) and at most {MAX_STALLED_ROUNDS}"
            ));
        }
        Ok(())
    }

    /// The downtime limit after `stalled` stalled rounds, for a move whose own is `base_ms`.
    pub fn downtime_limit_after(&self, stalled: u32, base_ms: u64) -> u64 {
        self.steps
            .iter()
            .rev()
            .find(|s| stalled >= s.stalled_rounds)
            .map_or(base_ms, |s| s.downtime_limit_ms.max(base_ms))
    }

    /// Whether the move gives up after `stalled` stalled rounds.
    pub fn gives_up_after(&self, stalled: u32) -> bool {
        self.abort_after_stalled_rounds
            .is_some_and(|abort| stalled >= abort)
    }
}

#[cfg(test)]
mod convergence_tests {
    use super::*;

    fn schedule(steps: &[(u32, u64)], abort: Option<u32>) -> ConvergenceSchedule {
        ConvergenceSchedule {
            steps: steps
                .iter()
                .map(|&(stalled_rounds, downtime_limit_ms)| ConvergenceStep {
                    stalled_rounds,
                    downtime_limit_ms,
                })
                .collect(),
            abort_after_stalled_rounds: abort,
        }
    }

    #[test]
    fn the_limit_rises_step_by_step_and_the_move_gives_up_at_the_end() {
        let s = schedule(&[(3, 100), (6, 300)], Some(9));
        assert_eq!(s.validate(50), Ok(()));
        let limits: Vec<u64> = (0..8).map(|n| s.downtime_limit_after(n, 50)).collect();
        assert_eq!(limits, [50, 50, 50, 100, 100, 100, 300, 300]);
        assert!(!s.gives_up_after(8));
        assert!(s.gives_up_after(9));
        assert!(!schedule(&[(3, 100)], None).gives_up_after(u32::MAX));
    }

    #[test]
    fn a_schedule_that_does_not_rise_or_is_out_of_range_is_refused_naming_the_step() {
        for (s, base, says) in [
            (
                schedule(&[(3, 100), (3, 200)], None),
                50,
                "step 2: stalled_rounds",
            ),
            (
                schedule(&[(3, 100), (5, 100)], None),
                50,
                "step 2: downtime_limit",
            ),
            (
                schedule(&[(3, 40)], None),
                50,
                "step 1: downtime_limit = 40 ms",
            ),
            (
                schedule(&[(0, 100)], None),
                50,
                "step 1: stalled_rounds = 0",
            ),
            (schedule(&[(3, u64::MAX)], None), 50, "at most 60000 ms"),
            (schedule(&[(u32::MAX, 100)], None), 50, "at most 10000"),
            (
                schedule(&[(3, 100)], Some(3)),
                50,
                "abort_after_stalled_rounds = 3",
            ),
            (schedule(&[(1, 100); 17], None), 50, "17 steps"),
        ] {
            let e = s.validate(base).unwrap_err();
            assert!(e.contains(says), "{s:?}: {e}");
        }
    }
}
