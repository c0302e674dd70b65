//! How well a rehearsal predicts the move it rehearses (`lparmover bench predict`): each move
//! of a case is rehearsed just before it runs (checks and a short real transfer on the same
//! blades, link and guest), and the rehearsal's predicted total time and suspension are set
//! beside the move's own. A prediction within ±25 % is the target a policy's window planning
//! relies on (an entry starts only if now + 1.25 × its prediction ends inside the window).

use serde::Serialize;

use super::CaseResult;
use super::report::stats;

/// The share a prediction may be off and still count (±25 %).
pub const TOLERANCE: f64 = 0.25;

/// One case: medians of the predictions and of the moves, and how far apart they are.
#[derive(Clone, Debug, Serialize)]
pub struct PredictionRow {
    /// The case's label.
    pub label: String,
    /// LPAR memory, MiB.
    pub memory_mib: u64,
    /// Guest dirty rate, MB/s.
    pub dirty_mbps: f64,
    /// Moves that ran with a rehearsal before them.
    pub moves: usize,
    /// Median predicted total time, s.
    pub predicted_total_s: Option<f64>,
    /// Median total time of the moves, s.
    pub actual_total_s: Option<f64>,
    /// Median of (predicted ÷ actual) over the moves.
    pub total_ratio: Option<f64>,
    /// Largest |predicted ÷ actual − 1| over the moves.
    pub worst_total_error: Option<f64>,
    /// Median predicted suspension, ms.
    pub predicted_suspension_ms: Option<f64>,
    /// Median guest-visible suspension of the moves, ms.
    pub actual_suspension_ms: Option<f64>,
    /// Every move's total-time prediction within ±25 %.
    pub within_tolerance: bool,
    /// Why the case has no figures, when it has none.
    pub error: Option<String>,
}

/// The rows of `results`, one per case.
pub fn rows(results: &[CaseResult]) -> Vec<PredictionRow> {
    results
        .iter()
        .map(|r| {
            let paired: Vec<(f64, f64)> = r
                .reps
                .iter()
                .filter_map(|rep| rep.predicted_total_s.map(|p| (p, rep.total_s)))
                .filter(|(_, actual)| *actual > 0.0)
                .collect();
            let median = |v: Vec<f64>| stats(v, true).map(|s| s.median);
            let errors: Vec<f64> = paired.iter().map(|(p, a)| (p / a - 1.0).abs()).collect();
            let worst = errors
                .iter()
                .copied()
                .fold(None, |w: Option<f64>, e| Some(w.map_or(e, |w| w.max(e))));
            PredictionRow {
                label: r.spec.label.clone(),
                memory_mib: r.spec.memory_mib,
                dirty_mbps: r.spec.dirty_mbps,
                moves: paired.len(),
                predicted_total_s: median(paired.iter().map(|(p, _)| *p).collect()),
                actual_total_s: median(paired.iter().map(|(_, a)| *a).collect()),
                total_ratio: median(paired.iter().map(|(p, a)| p / a).collect()),
                worst_total_error: worst,
                predicted_suspension_ms: median(
                    r.reps
                        .iter()
                        .filter_map(|rep| rep.predicted_suspension_ms)
                        .collect(),
                ),
                actual_suspension_ms: median(
                    r.reps.iter().filter_map(|rep| rep.suspension_ms).collect(),
                ),
                within_tolerance: !paired.is_empty() && worst.is_some_and(|w| w <= TOLERANCE),
                error: r.error.clone(),
            }
        })
        .collect()
}

/// The rows as a markdown table, with a line per case that has no figures.
pub fn render(rows: &[PredictionRow]) -> String {
    let f = |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
    let mut out = String::from(
        "| case | memory | dirty MB/s | moves | predicted total s | actual total s | predicted ÷ actual | worst error | predicted pause ms | actual pause ms | within ±25 % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} MiB | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            r.memory_mib,
            r.dirty_mbps,
            r.moves,
            f(r.predicted_total_s, 2),
            f(r.actual_total_s, 2),
            f(r.total_ratio, 2),
            r.worst_total_error
                .map_or("–".to_owned(), |e| format!("{:.0} %", e * 100.0)),
            f(r.predicted_suspension_ms, 1),
            f(r.actual_suspension_ms, 1),
            if r.within_tolerance { "yes" } else { "NO" },
        ));
    }
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("\n{}: {e}\n", r.label));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{CaseSpec, Link, Rep};

    fn rep(predicted: Option<f64>, actual: f64) -> Rep {
        Rep {
            direction: "a → b".into(),
            total_s: actual,
            suspension_ms: Some(20.0),
            mover_downtime_ms: 15.0,
            transfer_s: actual * 0.8,
            memory_size: 1 << 30,
            memory_sent: 1 << 30,
            wire_bytes: 1 << 29,
            rounds: 3,
            max_throttle_percent: 0,
            memory_mbps: 500.0,
            cpu_s: 1.0,
            achieved_dirty_mbps: None,
            link_bytes: None,
            predicted_total_s: predicted,
            predicted_suspension_ms: predicted.map(|_| 30.0),
        }
    }

    fn case(reps: Vec<Rep>) -> CaseResult {
        CaseResult {
            spec: CaseSpec {
                label: "loopback".into(),
                link: Link::Loopback,
                memory_mib: 1024,
                dirty_mbps: 0.0,
                reps: 3,
                convergence: false,
                vcpus: None,
                pretouch: false,
                rehearse: true,
            },
            probe_gbits: None,
            idle_cpu_cores: 0.0,
            reps,
            error: None,
        }
    }

    #[test]
    fn one_prediction_off_by_more_than_a_quarter_fails_the_case() {
        let good = rows(&[case(vec![rep(Some(4.4), 4.0), rep(Some(3.6), 4.0)])]);
        assert!(good[0].within_tolerance, "{good:?}");
        assert_eq!(good[0].moves, 2);
        assert!((good[0].total_ratio.unwrap() - 1.0).abs() < 1e-9);
        let bad = rows(&[case(vec![rep(Some(4.4), 4.0), rep(Some(5.2), 4.0)])]);
        assert!(!bad[0].within_tolerance);
        assert!((bad[0].worst_total_error.unwrap() - 0.3).abs() < 1e-9);
        let none = rows(&[case(vec![rep(None, 4.0)])]);
        assert!(!none[0].within_tolerance, "no prediction is no pass");
        assert!(render(&bad).contains("| NO |"));
    }
}
