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
