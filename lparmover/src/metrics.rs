//! Metrics of moves in the Prometheus text format (version 0.0.4), for `/metrics`.
//!
//! Every blade (`hvmsim serve`) keeps a [`Metrics`] of its own and serves it on its
//! management API (`GET /metrics`, bearer token; `GET /healthz` without). The manager's
//! long-running processes (the navigator, the policy daemon) count the moves they drive
//! through [`crate::ops::moves`] in the process-wide [`manager`] metrics and serve them with
//! [`http::serve`] on a loopback address the operator gives.
//!
//! Labels are small and bounded: the part a process played in a move (`role`: source,
//! destination, manager), its mode (`mode`: live, shutdown, rehearsal), how it ended (`outcome`:
//! completed, failed, cancelled, rolled_back) and, for the throttle of a move under way, the
//! LPAR number (an HVM has a bounded number of them; never a name).
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `lparmover_moves_started_total` | counter | role, mode | moves begun here |
//! | `lparmover_moves_ended_total` | counter | role, mode, outcome | moves over here |
//! | `lparmover_moves_in_progress` | gauge | role, mode | begun and not over |
//! | `lparmover_move_wire_bytes_total` | counter | role, mode | bytes on the migration path (sent by a source, page payload received by a destination) |
//! | `lparmover_move_memory_bytes_total` | counter | role, mode | guest memory moved (pages × page size, zero pages included) |
//! | `lparmover_move_duration_seconds` | histogram | role, mode | completed moves, from their start to their end in this process |
//! | `lparmover_move_suspension_seconds` | histogram | role | completed live moves: the guest's pause (see below) |
//! | `lparmover_move_precopy_rounds` | histogram | role | completed live moves: rounds including the final one |
//! | `lparmover_move_max_throttle_percent` | histogram | role | completed live moves: the highest auto-converge throttle |
//! | `lparmover_move_throttle_percent` | gauge | lpar | a source's live moves under way: the throttle now |
//!
//! Suspension, as each part can see it: a source records the sender's own measure (pause →
//! the destination holds every page and the vCPU state, the figure the downtime limit
//! bounds); the manager records the guest-visible pause from its heartbeat (last change on
//! the source → first change on the destination, which adds the commit decision and the
//! resume). A destination records none.
//!
//! A rehearsal (prepare, a short send, abort) counts on the blades under `mode="rehearsal"`,
//! with the bytes it really moved; its planned abort ends it as `rolled_back` there, never
//! among the live moves. The manager's series count no rehearsal. A Shutdown-mode move is one
//! step on each blade (the define, the release).

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

use crate::model::{LparNumber, Mode};

pub mod http;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The part a process played in a move.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Part {
    /// The HVM that sent the LPAR.
    Source,
    /// The HVM that received it.
    Destination,
    /// The manager that drove it (CLI, navigator, policy runner).
    Manager,
}

impl Part {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Manager => "manager",
        }
    }
}

impl From<crate::api::Role> for Part {
    fn from(role: crate::api::Role) -> Self {
        match role {
            crate::api::Role::Source => Self::Source,
            crate::api::Role::Destination => Self::Destination,
        }
    }
}

/// How a move ended in this process.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The LPAR runs on the destination (a source: released it; a destination: resumed it).
    Completed,
    /// It failed before the commit point; the LPAR stayed where it was.
    Failed,
    /// The operator cancelled it while memory moved.
    Cancelled,
    /// Undone after it got under way: aborted after the switch-over, fenced by the blades,
    /// scrubbed on a destination, or settled backward by recovery.
    RolledBack,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// What kind of move a series counts: its `mode` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MoveKind {
    /// A live (Concurrent Maintenance) move.
    Live,
    /// A Shutdown-mode move.
    Shutdown,
    /// A rehearsal's short transfer, aborted on purpose.
    Rehearsal,
}

impl MoveKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Shutdown => "shutdown",
            Self::Rehearsal => "rehearsal",
        }
    }
}

impl From<Mode> for MoveKind {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::ConcurrentMaintenance => Self::Live,
            Mode::Shutdown => Self::Shutdown,
        }
    }
}

macro_rules! label_value {
    ($t:ty, $f:expr) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str($f(*self))
            }
        }
    };
}

label_value!(Part, Part::as_str);
label_value!(Outcome, Outcome::as_str);
label_value!(MoveKind, MoveKind::as_str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoveLabels {
    role: Part,
    mode: MoveKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    role: Part,
    mode: MoveKind,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: Part,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LparLabels {
    lpar: u8,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 1 ms … ~33 min: a suspension of milliseconds and a move of many minutes both land inside.
    Histogram::new(exponential_buckets(0.001, 2.0, 22))
}

fn rounds_buckets() -> Histogram {
    Histogram::new([
        1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0,
    ])
}

fn percent_buckets() -> Histogram {
    Histogram::new(linear_buckets(0.0, 10.0, 11))
}

/// Figures of a move that completed, as far as this process knows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoveFigures {
    /// Bytes on the migration path.
    pub wire_bytes: u64,
    /// Guest memory moved.
    pub memory_bytes: u64,
    /// The guest's pause (live moves; see the module docs for whose measure).
    pub suspension: Option<Duration>,
    /// Pre-copy rounds including the final one (live moves).
    pub rounds: Option<u32>,
    /// The highest throttle applied, percent (live moves).
    pub max_throttle_percent: Option<u8>,
}

/// The move metrics of one process (cheap to clone: every clone counts into the same series).
#[derive(Clone, Debug)]
pub struct MoveMetrics {
    started: Family<MoveLabels, Counter>,
    ended: Family<EndLabels, Counter>,
    in_progress: Family<MoveLabels, Gauge>,
    wire_bytes: Family<MoveLabels, Counter>,
    memory_bytes: Family<MoveLabels, Counter>,
    duration: Histograms<MoveLabels>,
    suspension: Histograms<RoleLabels>,
    rounds: Histograms<RoleLabels>,
    max_throttle: Histograms<RoleLabels>,
    throttle_now: Family<LparLabels, Gauge>,
}

impl MoveMetrics {
    /// New series, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            started: Family::default(),
            ended: Family::default(),
            in_progress: Family::default(),
            wire_bytes: Family::default(),
            memory_bytes: Family::default(),
            duration: Family::new_with_constructor(seconds_buckets),
            suspension: Family::new_with_constructor(seconds_buckets),
            rounds: Family::new_with_constructor(rounds_buckets),
            max_throttle: Family::new_with_constructor(percent_buckets),
            throttle_now: Family::default(),
        };
        registry.register("moves_started", "Moves begun here", m.started.clone());
        registry.register(
            "moves_ended",
            "Moves over here, by outcome (completed, failed, cancelled, rolled_back)",
            m.ended.clone(),
        );
        registry.register(
            "moves_in_progress",
            "Moves begun here and not over yet",
            m.in_progress.clone(),
        );
        registry.register(
            "move_wire_bytes",
            "Bytes on the migration path: sent by a source, page payload received by a destination",
            m.wire_bytes.clone(),
        );
        registry.register(
            "move_memory_bytes",
            "Guest memory moved (pages times page size, zero pages included)",
            m.memory_bytes.clone(),
        );
        registry.register(
            "move_duration_seconds",
            "Completed moves: their start to their end in this process",
            m.duration.clone(),
        );
        registry.register(
            "move_suspension_seconds",
            "Completed live moves: the guest's pause (a source: pause until the destination held every page; the manager: the guest's heartbeat gap)",
            m.suspension.clone(),
        );
        registry.register(
            "move_precopy_rounds",
            "Completed live moves: pre-copy rounds including the final one",
            m.rounds.clone(),
        );
        registry.register(
            "move_max_throttle_percent",
            "Completed live moves: the highest auto-converge throttle of the guest's vCPUs",
            m.max_throttle.clone(),
        );
        registry.register(
            "move_throttle_percent",
            "Live moves under way on this source: the auto-converge throttle now",
            m.throttle_now.clone(),
        );
        m
    }

    /// Creates every series of `parts` at zero, so a scrape shows them before the first move
    /// (a series that appears only with its first sample defeats `rate()` and alerts on
    /// absence).
    pub fn prefill(&self, parts: &[Part]) {
        for &role in parts {
            // The manager's series count no rehearsal (its trials are in the history).
            let kinds: &[MoveKind] = if role == Part::Manager {
                &[MoveKind::Live, MoveKind::Shutdown]
            } else {
                &[MoveKind::Live, MoveKind::Shutdown, MoveKind::Rehearsal]
            };
            for &mode in kinds {
                let labels = MoveLabels { role, mode };
                drop(self.started.get_or_create(&labels));
                drop(self.in_progress.get_or_create(&labels));
                drop(self.wire_bytes.get_or_create(&labels));
                drop(self.memory_bytes.get_or_create(&labels));
                drop(self.duration.get_or_create(&labels));
                for outcome in [
                    Outcome::Completed,
                    Outcome::Failed,
                    Outcome::Cancelled,
                    Outcome::RolledBack,
                ] {
                    drop(self.ended.get_or_create(&EndLabels {
                        role,
                        mode,
                        outcome,
                    }));
                }
            }
            if role == Part::Destination {
                // A destination measures no suspension and applies no throttle.
                continue;
            }
            let labels = RoleLabels { role };
            drop(self.suspension.get_or_create(&labels));
            drop(self.rounds.get_or_create(&labels));
            drop(self.max_throttle.get_or_create(&labels));
        }
    }

    /// A move begins here; end it with [`MoveInFlight::end`] (dropped without, it ends as
    /// failed).
    pub fn begin(&self, role: Part, kind: impl Into<MoveKind>) -> MoveInFlight {
        let labels = MoveLabels {
            role,
            mode: kind.into(),
        };
        self.started.get_or_create(&labels).inc();
        self.in_progress.get_or_create(&labels).inc();
        MoveInFlight {
            metrics: self.clone(),
            labels,
            since: Instant::now(),
            lpar: None,
            over: false,
        }
    }

    /// A move that is one step here (a Shutdown-mode define or release on a blade): begun and
    /// completed at once.
    pub fn one_step(&self, role: Part, mode: Mode) {
        self.begin(role, mode)
            .end(Outcome::Completed, &MoveFigures::default());
    }

    fn end(&self, labels: &MoveLabels, outcome: Outcome, took: Duration, figures: &MoveFigures) {
        self.in_progress.get_or_create(labels).dec();
        self.ended
            .get_or_create(&EndLabels {
                role: labels.role,
                mode: labels.mode,
                outcome,
            })
            .inc();
        self.wire_bytes
            .get_or_create(labels)
            .inc_by(figures.wire_bytes);
        self.memory_bytes
            .get_or_create(labels)
            .inc_by(figures.memory_bytes);
        if outcome != Outcome::Completed {
            return;
        }
        self.duration
            .get_or_create(labels)
            .observe(took.as_secs_f64());
        let role = RoleLabels { role: labels.role };
        if let Some(s) = figures.suspension {
            self.suspension
                .get_or_create(&role)
                .observe(s.as_secs_f64());
        }
        if let Some(r) = figures.rounds {
            self.rounds.get_or_create(&role).observe(f64::from(r));
        }
        if let Some(t) = figures.max_throttle_percent {
            self.max_throttle.get_or_create(&role).observe(f64::from(t));
        }
    }
}

/// A move under way in this process. Ends once: [`Self::end`], or failed when dropped.
#[derive(Debug)]
pub struct MoveInFlight {
    metrics: MoveMetrics,
    labels: MoveLabels,
    since: Instant,
    lpar: Option<LparNumber>,
    over: bool,
}

impl MoveInFlight {
    /// The source's throttle of LPAR `lpar` now (shown while the move is under way).
    pub fn throttle(&mut self, lpar: LparNumber, percent: u8) {
        self.lpar = Some(lpar);
        self.metrics
            .throttle_now
            .get_or_create(&LparLabels { lpar: lpar.get() })
            .set(i64::from(percent));
    }

    /// The move is over here.
    pub fn end(mut self, outcome: Outcome, figures: &MoveFigures) {
        self.finish(outcome, figures);
    }

    fn finish(&mut self, outcome: Outcome, figures: &MoveFigures) {
        if std::mem::replace(&mut self.over, true) {
            return;
        }
        if let Some(lpar) = self.lpar.take() {
            self.metrics
                .throttle_now
                .remove(&LparLabels { lpar: lpar.get() });
        }
        self.metrics
            .end(&self.labels, outcome, self.since.elapsed(), figures);
    }
}

impl Drop for MoveInFlight {
    fn drop(&mut self) {
        self.finish(Outcome::Failed, &MoveFigures::default());
    }
}

/// A registry and the move metrics in it: one per blade, one per manager process.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The moves.
    pub moves: MoveMetrics,
}

impl Metrics {
    /// Fresh metrics for a process that plays `parts` in moves (a blade: source and
    /// destination; a manager: manager), every name prefixed `lparmover_`, every series of
    /// those parts shown from the start at zero.
    pub fn new(parts: &[Part]) -> Self {
        let mut registry = Registry::with_prefix("lparmover");
        let moves = MoveMetrics::register(&mut registry);
        moves.prefill(parts);
        Self {
            registry: Mutex::new(registry),
            moves,
        }
    }

    /// Registers more series (a process's own, e.g. the policy daemon's runs) in the same
    /// registry, under the same `lparmover_` prefix.
    pub fn register<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry())
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Registration never panics half way; a poisoned lock still holds a whole registry.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every series in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry())
        {
            // Writing into a String fails only if a label's encoder does; none of ours does.
            tracing::error!(error = %e, "metrics could not be rendered");
            out.clear();
            let _ = writeln!(out, "# metrics could not be rendered: {e}");
        }
        out
    }
}

static MANAGER: LazyLock<Arc<Metrics>> = LazyLock::new(|| Arc::new(Metrics::new(&[Part::Manager])));

/// The metrics of this manager process (the moves it drives through [`crate::ops::moves`]).
pub fn manager() -> &'static Arc<Metrics> {
    &MANAGER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: u8) -> LparNumber {
        LparNumber::new(n).expect("valid LPAR number")
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_rehearsal_is_counted_apart_from_live_moves() {
        let m = Metrics::new(&[Part::Source, Part::Destination]);
        m.moves.begin(Part::Source, MoveKind::Rehearsal).end(
            Outcome::RolledBack,
            &MoveFigures {
                wire_bytes: 500,
                memory_bytes: 8192,
                ..MoveFigures::default()
            },
        );
        let text = m.render();
        for want in [
            "lparmover_moves_ended_total{role=\"source\",mode=\"rehearsal\",outcome=\"rolled_back\"} 1",
            "lparmover_moves_ended_total{role=\"source\",mode=\"live\",outcome=\"rolled_back\"} 0",
            "lparmover_moves_started_total{role=\"source\",mode=\"live\"} 0",
            "lparmover_move_wire_bytes_total{role=\"source\",mode=\"rehearsal\"} 500",
            "lparmover_moves_started_total{role=\"destination\",mode=\"rehearsal\"} 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let manager = Metrics::new(&[Part::Manager]).render();
        assert!(!manager.contains("rehearsal"), "{manager}");
    }

    #[test]
    fn a_completed_live_move_renders_its_counters_and_histograms() {
        let m = Metrics::new(&[Part::Source, Part::Destination]);
        let mut flight = m.moves.begin(Part::Source, Mode::ConcurrentMaintenance);
        flight.throttle(number(3), 40);
        let during = m.render();
        assert!(
            during.contains("lparmover_moves_in_progress{role=\"source\",mode=\"live\"} 1"),
            "{during}"
        );
        assert!(
            during.contains("lparmover_move_throttle_percent{lpar=\"3\"} 40"),
            "{during}"
        );
        flight.end(
            Outcome::Completed,
            &MoveFigures {
                wire_bytes: 1000,
                memory_bytes: 4096,
                suspension: Some(Duration::from_millis(30)),
                rounds: Some(4),
                max_throttle_percent: Some(40),
            },
        );
        let text = m.render();
        for want in [
            "# TYPE lparmover_moves_started_total counter",
            // Prefilled: shown at zero before anything of them happened.
            "lparmover_moves_started_total{role=\"destination\",mode=\"shutdown\"} 0",
            "lparmover_moves_ended_total{role=\"source\",mode=\"live\",outcome=\"rolled_back\"} 0",
            "lparmover_moves_started_total{role=\"source\",mode=\"live\"} 1",
            "lparmover_moves_ended_total{role=\"source\",mode=\"live\",outcome=\"completed\"} 1",
            "lparmover_moves_in_progress{role=\"source\",mode=\"live\"} 0",
            "lparmover_move_wire_bytes_total{role=\"source\",mode=\"live\"} 1000",
            "lparmover_move_memory_bytes_total{role=\"source\",mode=\"live\"} 4096",
            "# TYPE lparmover_move_suspension_seconds histogram",
            "lparmover_move_suspension_seconds_count{role=\"source\"} 1",
            "lparmover_move_suspension_seconds_bucket{role=\"source\",le=\"0.032\"} 1",
            "lparmover_move_suspension_seconds_bucket{role=\"source\",le=\"0.016\"} 0",
            "lparmover_move_precopy_rounds_sum{role=\"source\"} 4.0",
            "lparmover_move_max_throttle_percent_count{role=\"source\"} 1",
            "lparmover_move_duration_seconds_count{role=\"source\",mode=\"live\"} 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(
            line(&text, "lparmover_move_throttle_percent{").is_none(),
            "the throttle of a finished move stays shown:\n{text}"
        );
        // The classic text format has no OpenMetrics end marker.
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_dropped_move_ends_as_failed_and_only_once() {
        let m = Metrics::new(&[]);
        drop(m.moves.begin(Part::Manager, Mode::Shutdown));
        m.moves.one_step(Part::Destination, Mode::Shutdown);
        let text = m.render();
        for want in [
            "lparmover_moves_ended_total{role=\"manager\",mode=\"shutdown\",outcome=\"failed\"} 1",
            "lparmover_moves_in_progress{role=\"manager\",mode=\"shutdown\"} 0",
            "lparmover_moves_ended_total{role=\"destination\",mode=\"shutdown\",outcome=\"completed\"} 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // A failed move observes no duration.
        assert!(
            line(
                &text,
                "lparmover_move_duration_seconds_count{role=\"manager\""
            )
            .is_none(),
            "{text}"
        );
        assert!(
            text.contains(
                "lparmover_move_duration_seconds_count{role=\"destination\",mode=\"shutdown\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn more_series_join_the_same_registry() {
        let m = Metrics::new(&[Part::Manager]);
        let runs: Counter = m.register(|r| {
            let c = Counter::default();
            r.register("policy_runs_started", "Runs", c.clone());
            c
        });
        runs.inc();
        let text = m.render();
        assert!(
            text.contains("lparmover_policy_runs_started_total 1"),
            "{text}"
        );
        assert!(
            text.contains("lparmover_moves_started_total{role=\"manager\",mode=\"live\"} 0"),
            "{text}"
        );
    }
}
