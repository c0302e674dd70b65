//! Policy runs in the manager process's metrics (`lparmover::metrics::manager()`, served on
//! `/metrics` by `policy daemon --metrics ADDR` and `navigator --metrics ADDR`).
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `lparmover_policy_runs_started_total` | counter | | runs begun (or continued) in this process |
//! | `lparmover_policy_runs_ended_total` | counter | outcome | runs over: finished, ended, stopped, window_closed, interrupted (no outcome), error |
//! | `lparmover_policy_runs_in_progress` | gauge | | runs under way |
//! | `lparmover_policy_entries_total` | counter | result | entries of the runs over in this process: completed, skipped, failed, not_run, outside_window |
//!
//! The moves of the entries count in the `lparmover_moves_*` series with `role="manager"`.

use std::sync::LazyLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{EntryResult, RunOutcome};
use crate::runner::{RunError, RunResult};

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Label(&'static str);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Label,
}

const OUTCOMES: [&str; 6] = [
    "finished",
    "ended",
    "stopped",
    "window_closed",
    "interrupted",
    "error",
];

fn outcome_label(outcome: Option<RunOutcome>) -> &'static str {
    match outcome {
        Some(RunOutcome::Finished) => "finished",
        Some(RunOutcome::Ended) => "ended",
        Some(RunOutcome::Stopped) => "stopped",
        Some(RunOutcome::WindowClosed) => "window_closed",
        None => "interrupted",
    }
}

const RESULTS: [EntryResult; 5] = [
    EntryResult::Completed,
    EntryResult::Skipped,
    EntryResult::Failed,
    EntryResult::NotRun,
    EntryResult::OutsideWindow,
];

fn result_label(result: EntryResult) -> &'static str {
    match result {
        EntryResult::Completed => "completed",
        EntryResult::Skipped => "skipped",
        EntryResult::Failed => "failed",
        EntryResult::NotRun => "not_run",
        EntryResult::OutsideWindow => "outside_window",
    }
}

/// The policy series of this process.
#[derive(Debug)]
pub struct PolicyMetrics {
    started: Counter,
    ended: Family<OutcomeLabels, Counter>,
    in_progress: Gauge,
    entries: Family<ResultLabels, Counter>,
}

impl PolicyMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            started: Counter::default(),
            ended: Family::default(),
            in_progress: Gauge::default(),
            entries: Family::default(),
        };
        registry.register(
            "policy_runs_started",
            "Policy runs begun (or continued) in this process",
            m.started.clone(),
        );
        registry.register(
            "policy_runs_ended",
            "Policy runs over, by outcome",
            m.ended.clone(),
        );
        registry.register(
            "policy_runs_in_progress",
            "Policy runs under way",
            m.in_progress.clone(),
        );
        registry.register(
            "policy_entries",
            "Entries of the policy runs over in this process, by result",
            m.entries.clone(),
        );
        // Every series from the start, at zero.
        for outcome in OUTCOMES {
            drop(m.ended.get_or_create(&OutcomeLabels {
                outcome: Label(outcome),
            }));
        }
        for result in RESULTS {
            drop(m.entries.get_or_create(&ResultLabels {
                result: Label(result_label(result)),
            }));
        }
        m
    }

    /// A run begins.
    pub(crate) fn run_started(&self) {
        self.started.inc();
        self.in_progress.inc();
    }

    /// A run that [`Self::run_started`] counted is over.
    pub(crate) fn run_ended(&self, result: &Result<RunResult, RunError>) {
        self.in_progress.dec();
        let outcome = match result {
            Ok(r) => outcome_label(r.report.outcome),
            Err(_) => "error",
        };
        self.ended
            .get_or_create(&OutcomeLabels {
                outcome: Label(outcome),
            })
            .inc();
        if let Ok(r) = result {
            for entry in &r.report.entries {
                self.entries
                    .get_or_create(&ResultLabels {
                        result: Label(result_label(entry.result)),
                    })
                    .inc();
            }
        }
    }
}

static POLICY: LazyLock<PolicyMetrics> =
    LazyLock::new(|| lparmover::metrics::manager().register(PolicyMetrics::register));

/// The policy series, registered in the manager's metrics at the first call.
pub fn policy() -> &'static PolicyMetrics {
    &POLICY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_series_are_shown_at_zero_in_the_manager_metrics() {
        let _ = policy();
        let text = lparmover::metrics::manager().render();
        for want in [
            "# TYPE lparmover_policy_runs_started_total counter",
            "lparmover_policy_runs_ended_total{outcome=\"window_closed\"} ",
            "lparmover_policy_entries_total{result=\"outside_window\"} ",
            "# TYPE lparmover_policy_runs_in_progress gauge",
            // The moves' series share the registry.
            "lparmover_moves_started_total{role=\"manager\",mode=\"live\"} ",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
