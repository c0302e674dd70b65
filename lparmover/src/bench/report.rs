//! Medians, worst cases, ratios and the target verdicts, as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CaseResult, Link};

/// Median and worst of one figure over the repetitions.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// Worst (the largest value; for throughput, the smallest).
    pub worst: f64,
}

/// Median and worst of `values` (None when empty).
pub(crate) fn stats(mut values: Vec<f64>, higher_is_worse: bool) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    let worst = if higher_is_worse {
        values[n - 1]
    } else {
        values[0]
    };
    Some(Stats { median, worst })
}

/// The figures of one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseSummary {
    /// Label.
    pub label: String,
    /// Link.
    pub link: Link,
    /// Completed moves.
    pub moves: usize,
    /// Requested moves.
    pub reps: u32,
    /// Total job time, s.
    pub total_s: Option<Stats>,
    /// Heartbeat suspension, ms.
    pub suspension_ms: Option<Stats>,
    /// Wire bytes ÷ memory size.
    pub wire_ratio: Option<Stats>,
    /// Memory throughput, MB/s (worst = lowest).
    pub memory_mbps: Option<Stats>,
    /// Wire throughput over the transfer, Gbit/s (worst = lowest).
    pub wire_gbits: Option<Stats>,
    /// CPU of both blades per move, s.
    pub cpu_s: Option<Stats>,
    /// CPU of both blades per move, cores (CPU s ÷ total s).
    pub cpu_cores: Option<Stats>,
    /// Highest throttle seen, percent.
    pub max_throttle_percent: u8,
    /// Dirty rate configured, MB/s.
    pub dirty_configured_mbps: f64,
    /// Dirty rate the guest achieved during the moves (worst = lowest), MB/s.
    pub dirty_achieved_mbps: Option<Stats>,
    /// Whether the guest carried its configured load during every move (see
    /// [`super::carried_load`]).
    pub carried_load: bool,
    /// Probe of the link, Gbit/s.
    pub probe_gbits: Option<f64>,
    /// Idle CPU of both blades, cores.
    pub idle_cpu_cores: f64,
    /// Why the case stopped early.
    pub error: Option<String>,
}

/// A ratio between two measured figures.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub what: String,
    /// The ratio.
    pub value: f64,
}

/// A target from the issue and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The target.
    pub target: String,
    /// The measured value, as text.
    pub measured: String,
    /// Met?
    pub pass: bool,
}

/// Everything the command prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Per case.
    pub cases: Vec<CaseSummary>,
    /// Ratios against baselines of the same run.
    pub ratios: Vec<Ratio>,
    /// The targets.
    pub verdicts: Vec<Verdict>,
    /// Whether the run used the reference case (4 GiB, 10 MB/s dirty).
    pub reference_case: bool,
    /// The raw results.
    pub results: Vec<CaseResult>,
}

fn summarize_case(r: &CaseResult) -> CaseSummary {
    let reps = &r.reps;
    let pick = |f: &dyn Fn(&super::Rep) -> Option<f64>, hw: bool| {
        stats(reps.iter().filter_map(f).collect(), hw)
    };
    CaseSummary {
        label: r.spec.label.clone(),
        link: r.spec.link,
        moves: reps.len(),
        reps: r.spec.reps,
        total_s: pick(&|x| Some(x.total_s), true),
        suspension_ms: pick(&|x| x.suspension_ms, true),
        wire_ratio: pick(
            &|x| Some(x.wire_bytes as f64 / x.memory_size.max(1) as f64),
            true,
        ),
        memory_mbps: pick(&|x| Some(x.memory_mbps), false),
        wire_gbits: pick(
            &|x| (x.transfer_s > 0.0).then(|| x.wire_bytes as f64 * 8.0 / x.transfer_s / 1e9),
            false,
        ),
        cpu_s: pick(&|x| Some(x.cpu_s), true),
        cpu_cores: pick(&|x| (x.total_s > 0.0).then(|| x.cpu_s / x.total_s), true),
        max_throttle_percent: reps
            .iter()
            .map(|x| x.max_throttle_percent)
            .max()
            .unwrap_or(0),
        dirty_configured_mbps: r.spec.dirty_mbps,
        dirty_achieved_mbps: pick(&|x| x.achieved_dirty_mbps, false),
        carried_load: reps
            .iter()
            .all(|x| super::carried_load(r.spec.dirty_mbps, x.achieved_dirty_mbps)),
        probe_gbits: r.probe_gbits,
        idle_cpu_cores: r.idle_cpu_cores,
        error: r.error.clone(),
    }
}

/// Medians, ratios and verdicts of a run.
pub fn summarize(results: Vec<CaseResult>) -> Summary {
    let cases: Vec<CaseSummary> = results.iter().map(summarize_case).collect();
    let reference_case = results
        .iter()
        .filter(|r| !r.spec.convergence)
        .all(|r| r.spec.memory_mib == 4096 && (r.spec.dirty_mbps - 10.0).abs() < 1e-9);
    let main = |link: Link| {
        cases
            .iter()
            .zip(&results)
            .find(|(_, r)| r.spec.link == link && !r.spec.convergence)
            .map(|(c, _)| c)
    };
    let converge = cases.iter().zip(&results).find(|(_, r)| r.spec.convergence);
    let mut ratios = Vec::new();
    let mut verdicts = Vec::new();
    let fmt_s = |s: Option<Stats>| s.map_or_else(|| "n/a".into(), |s| format!("{:.2} s", s.median));
    let loopback = main(Link::Loopback);
    for case in cases
        .iter()
        .zip(&results)
        .filter(|(_, r)| !r.spec.convergence)
        .map(|(c, _)| c)
    {
        if let Some(w) = case.wire_ratio {
            ratios.push(Ratio {
                what: format!("{}: wire bytes ÷ memory size (median)", case.label),
                value: w.median,
            });
        }
        if let (Some(lb), Some(t)) = (loopback.and_then(|l| l.total_s), case.total_s)
            && case.link != Link::Loopback
            && lb.median > 0.0
        {
            ratios.push(Ratio {
                what: format!("{} ÷ loopback: total time (medians)", case.label),
                value: t.median / lb.median,
            });
        }
        if let (Some(probe), Some(w)) = (case.probe_gbits, case.memory_mbps)
            && probe > 0.0
        {
            ratios.push(Ratio {
                what: format!(
                    "{}: memory throughput ÷ probed link rate (medians)",
                    case.label
                ),
                value: w.median * 8.0 / 1e3 / probe,
            });
        }
        let total_target = match case.link {
            Link::Loopback => Some(5.0),
            Link::Gbit1 => Some(15.0),
            Link::Gbit10 | Link::Veth => None,
        };
        if let Some(limit) = total_target {
            verdicts.push(Verdict {
                target: format!("{}: total median < {limit} s", case.label),
                measured: fmt_s(case.total_s),
                pass: case.error.is_none() && case.total_s.is_some_and(|t| t.median < limit),
            });
        }
        let susp = case.suspension_ms;
        verdicts.push(Verdict {
            target: format!("{}: suspension median ≤ 50 ms", case.label),
            measured: susp.map_or_else(|| "n/a".into(), |s| format!("{:.1} ms", s.median)),
            pass: case.error.is_none() && susp.is_some_and(|s| s.median <= 50.0),
        });
        verdicts.push(Verdict {
            target: format!("{}: suspension worst of {} ≤ 100 ms", case.label, case.reps),
            measured: susp.map_or_else(|| "n/a".into(), |s| format!("{:.1} ms", s.worst)),
            pass: case.error.is_none()
                && case.moves == case.reps as usize
                && susp.is_some_and(|s| s.worst <= 100.0),
        });
        if case.link == Link::Gbit1 {
            verdicts.push(Verdict {
                target: format!("{}: wire bytes ≤ 0.5 × memory (median)", case.label),
                measured: case
                    .wire_ratio
                    .map_or_else(|| "n/a".into(), |w| format!("{:.3} ×", w.median)),
                pass: case.error.is_none() && case.wire_ratio.is_some_and(|w| w.median <= 0.5),
            });
        }
    }
    if let Some((c, r)) = converge {
        let base = main(r.spec.link).and_then(|b| b.total_s);
        verdicts.push(Verdict {
            target: format!("{}: every move completes, by throttling", c.label),
            measured: format!(
                "{}/{} moves, throttle ≤ {} %",
                c.moves, c.reps, c.max_throttle_percent
            ),
            pass: c.error.is_none() && c.moves == c.reps as usize,
        });
        if let (Some(b), Some(t)) = (base, c.total_s)
            && b.median > 0.0
        {
            let base_label = main(r.spec.link)
                .map(|m| m.label.clone())
                .unwrap_or_default();
            ratios.push(Ratio {
                what: format!("{} ÷ {base_label}: total time (medians)", c.label),
                value: t.median / b.median,
            });
            verdicts.push(Verdict {
                target: format!("{}: total within 2 × {base_label}", c.label),
                measured: format!("{:.2} ×", t.median / b.median),
                pass: c.error.is_none() && t.median <= 2.0 * b.median,
            });
        }
    }
    Summary {
        cases,
        ratios,
        verdicts,
        reference_case,
        results,
    }
}

fn cell(s: Option<Stats>, digits: usize) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| format!("{:.d$} / {:.d$}", s.median, s.worst, d = digits),
    )
}

/// The summary as the table the command prints.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>15} {:>17} {:>15} {:>17} {:>13} {:>13} {:>9} {:>15}",
        "case",
        "moves",
        "total s",
        "suspension ms",
        "wire ÷ memory",
        "memory MB/s",
        "wire Gbit/s",
        "CPU s/move",
        "throttle",
        "guest dirtied"
    );
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>15} {:>17} {:>15} {:>17} {:>13} {:>13} {:>9} {:>15}",
        "",
        "",
        "median / worst",
        "median / worst",
        "median / worst",
        "median / lowest",
        "median/lowest",
        "median/worst",
        "max %",
        "MB/s med/lowest"
    );
    for c in &summary.cases {
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>15} {:>17} {:>15} {:>17} {:>13} {:>13} {:>9} {:>15}",
            c.label,
            format!("{}/{}", c.moves, c.reps),
            cell(c.total_s, 2),
            cell(c.suspension_ms, 1),
            cell(c.wire_ratio, 3),
            cell(c.memory_mbps, 0),
            cell(c.wire_gbits, 2),
            cell(c.cpu_s, 1),
            c.max_throttle_percent,
            format!(
                "{}{}",
                cell(c.dirty_achieved_mbps, 0),
                if c.carried_load { "" } else { " !" }
            ),
        );
    }
    let _ = writeln!(out);
    for c in &summary.cases {
        let _ = write!(
            out,
            "{}: blades idle at {:.2} cores",
            c.label, c.idle_cpu_cores
        );
        if let Some(cores) = c.cpu_cores {
            let _ = write!(out, ", {:.2} cores during a move (median)", cores.median);
        }
        if let Some(p) = c.probe_gbits {
            let _ = write!(out, "; TCP probe of the shaped link {p:.2} Gbit/s");
        }
        let _ = writeln!(out);
        if !c.carried_load {
            let _ = writeln!(
                out,
                "  ! the guest did not carry its load: {} MB/s configured, {} MB/s achieved during a move (lowest); a starved or throttled guest makes the move easier than it looks",
                c.dirty_configured_mbps,
                c.dirty_achieved_mbps
                    .map_or_else(|| "n/a".into(), |s| format!("{:.0}", s.worst))
            );
        }
        if let Some(e) = &c.error {
            let _ = writeln!(out, "  stopped early: {e}");
        }
    }
    if !summary.ratios.is_empty() {
        let _ = writeln!(out, "\nratios (same run):");
        for r in &summary.ratios {
            let _ = writeln!(out, "  {:<62} {:>8.3}", r.what, r.value);
        }
    }
    let _ = writeln!(out, "\ntargets (issue 4; DESIGN.md §9):");
    if !summary.reference_case {
        let _ = writeln!(
            out,
            "  note: the targets are set for a 4 GiB LPAR at 10 MB/s dirty; this run used other figures"
        );
    }
    for v in &summary.verdicts {
        let _ = writeln!(
            out,
            "  {} {:<58} {}",
            if v.pass { "PASS" } else { "FAIL" },
            v.target,
            v.measured
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{CaseSpec, Rep};
    use super::*;

    fn rep(total: f64, susp: f64, wire: u64) -> Rep {
        Rep {
            direction: "a → b".into(),
            total_s: total,
            suspension_ms: Some(susp),
            mover_downtime_ms: susp,
            transfer_s: total / 2.0,
            memory_size: 1000,
            memory_sent: 1000,
            wire_bytes: wire,
            rounds: 3,
            max_throttle_percent: 0,
            memory_mbps: 100.0,
            cpu_s: 1.0,
            achieved_dirty_mbps: Some(10.0),
            link_bytes: None,
            predicted_total_s: None,
            predicted_suspension_ms: None,
        }
    }

    fn case(link: Link, reps: Vec<Rep>) -> CaseResult {
        CaseResult {
            spec: CaseSpec {
                vcpus: None,
                pretouch: false,
                rehearse: false,
                label: link.name().into(),
                link,
                memory_mib: 4096,
                dirty_mbps: 10.0,
                reps: reps.len() as u32,
                convergence: false,
            },
            probe_gbits: None,
            idle_cpu_cores: 0.1,
            reps,
            error: None,
        }
    }

    #[test]
    fn medians_worsts_and_verdicts() {
        let s = summarize(vec![
            case(
                Link::Loopback,
                vec![
                    rep(3.0, 20.0, 300),
                    rep(4.0, 30.0, 300),
                    rep(6.0, 120.0, 300),
                ],
            ),
            case(
                Link::Gbit1,
                vec![rep(10.0, 40.0, 400), rep(12.0, 45.0, 600)],
            ),
        ]);
        let lb = &s.cases[0];
        assert_eq!(lb.total_s.unwrap().median, 4.0);
        assert_eq!(lb.suspension_ms.unwrap().worst, 120.0);
        let g = &s.cases[1];
        assert_eq!(g.total_s.unwrap().median, 11.0);
        assert!((g.wire_ratio.unwrap().median - 0.5).abs() < 1e-9);
        let verdict = |t: &str| s.verdicts.iter().find(|v| v.target == t).unwrap().pass;
        assert!(verdict("loopback: total median < 5 s"));
        assert!(!verdict("loopback: suspension worst of 3 ≤ 100 ms"));
        assert!(verdict("1gbit: wire bytes ≤ 0.5 × memory (median)"));
        assert!(
            s.ratios
                .iter()
                .any(|r| r.what.starts_with("1gbit ÷ loopback")
                    && (r.value - 11.0 / 4.0).abs() < 1e-9)
        );
        assert!(render(&s).contains("PASS"));
    }

    #[test]
    fn a_guest_that_did_not_carry_its_load_is_flagged() {
        let mut starved = rep(10.0, 20.0, 300);
        starved.achieved_dirty_mbps = Some(3.0);
        let s = summarize(vec![case(Link::Gbit1, vec![rep(10.0, 20.0, 300), starved])]);
        assert!(!s.cases[0].carried_load);
        assert_eq!(s.cases[0].dirty_achieved_mbps.unwrap().worst, 3.0);
        let text = render(&s);
        assert!(
            text.contains("did not carry its load: 10 MB/s configured, 3 MB/s"),
            "{text}"
        );
        let s = summarize(vec![case(Link::Gbit1, vec![rep(10.0, 20.0, 300)])]);
        assert!(s.cases[0].carried_load);
        assert!(
            super::super::carried_load(0.0, None),
            "an idle guest carries nothing"
        );
        assert!(
            !super::super::carried_load(50.0, None),
            "an unknown rate is not carried"
        );
    }
}
