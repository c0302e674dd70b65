//! How well a rehearsal predicts the move it rehearses (`lparmover bench predict`): each move
//! of a case is rehearsed just before it runs (checks and a short real transfer on the same
//! blades, link and guest), and the rehearsal's predicted total time and suspension are set
//! beside the move's own. Medians within ±25 % (of the total time and of the suspension) are the
//! target a policy's window planning relies on (an entry starts only if now + 1.25 × its
//! prediction ends inside the window); the worst single move is shown beside them.

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
    /// Median predicted total ÷ median actual total.
    pub total_ratio: Option<f64>,
    /// Largest |predicted ÷ actual − 1| over the moves.
    pub worst_total_error: Option<f64>,
    /// Median predicted suspension, ms.
    pub predicted_suspension_ms: Option<f64>,
    /// Median guest-visible suspension of the moves, ms.
    pub actual_suspension_ms: Option<f64>,
    /// Median predicted suspension ÷ median actual suspension.
    pub suspension_ratio: Option<f64>,
    /// Both medians of the predictions within ±25 % of the moves' medians.
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
            let predicted_total_s = median(paired.iter().map(|(p, _)| *p).collect());
            let actual_total_s = median(paired.iter().map(|(_, a)| *a).collect());
            let suspensions: Vec<(f64, f64)> = r
                .reps
                .iter()
                .filter_map(|rep| Some((rep.predicted_suspension_ms?, rep.suspension_ms?)))
                .collect();
            let predicted_suspension_ms = median(suspensions.iter().map(|(p, _)| *p).collect());
            let actual_suspension_ms = median(suspensions.iter().map(|(_, a)| *a).collect());
            let ratio = |p: Option<f64>, a: Option<f64>| match (p, a) {
                (Some(p), Some(a)) if a > 0.0 => Some(p / a),
                _ => None,
            };
            let total_ratio = ratio(predicted_total_s, actual_total_s);
            let suspension_ratio = ratio(predicted_suspension_ms, actual_suspension_ms);
            let within = |r: Option<f64>| r.is_some_and(|r| (r - 1.0).abs() <= TOLERANCE);
            PredictionRow {
                label: r.spec.label.clone(),
                memory_mib: r.spec.memory_mib,
                dirty_mbps: r.spec.dirty_mbps,
                moves: paired.len(),
                predicted_total_s,
                actual_total_s,
                total_ratio,
                worst_total_error: worst,
                predicted_suspension_ms,
                actual_suspension_ms,
                suspension_ratio,
                within_tolerance: within(total_ratio) && within(suspension_ratio),
                error: r.error.clone(),
            }
        })
        .collect()
}

/// The rows as a markdown table, with a line per case that has no figures.
pub fn render(rows: &[PredictionRow]) -> String {
    let f = |v: Option<f64>, digits: usize| v.map_or("–".to_owned(), |v| format!("{v:.digits$}"));
    let mut out = String::from(
        "| case | memory | dirty MB/s | moves | predicted total s | actual total s | predicted ÷ actual | worst single move | predicted pause ms | actual pause ms | predicted ÷ actual | medians within ±25 % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} MiB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
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
            f(r.suspension_ratio, 2),
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
            predicted_suspension_ms: predicted.map(|_| 21.0),
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
    fn medians_off_by_more_than_a_quarter_fail_the_case() {
        let good = rows(&[case(vec![
            rep(Some(4.4), 4.0),
            rep(Some(3.6), 4.0),
            rep(Some(6.0), 4.0),
        ])]);
        assert!(good[0].within_tolerance, "{good:?}");
        assert_eq!(good[0].moves, 3);
        assert!((good[0].total_ratio.unwrap() - 1.1).abs() < 1e-9);
        assert!((good[0].worst_total_error.unwrap() - 0.5).abs() < 1e-9);
        let bad = rows(&[case(vec![rep(Some(5.2), 4.0), rep(Some(5.2), 4.0)])]);
        assert!(!bad[0].within_tolerance);
        // The pause counts too: 30 ms predicted against 20 ms is 50 % off.
        let mut pause_off = rep(Some(4.0), 4.0);
        pause_off.predicted_suspension_ms = Some(30.0);
        let off = rows(&[case(vec![pause_off])]);
        assert!(!off[0].within_tolerance, "{off:?}");
        let none = rows(&[case(vec![rep(None, 4.0)])]);
        assert!(!none[0].within_tolerance, "no prediction is no pass");
        assert!(render(&bad).contains("| NO |"));
    }
}
