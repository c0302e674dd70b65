//! The batch runner: a policy's entries in order, several at once up to the caps, each a real
//! `lparmover` job (never a second copy of a move). Stop takes effect after the running
//! entries, then Continue or End; a failed entry is retried, skipped or ends the run, as the
//! operator answers or, unattended, as the policy's `on_error` says. The report is saved after
//! every entry, so even a run that is killed leaves one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lparmover::api::MoveOptions;
use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::history::{Actor, Origin};
use lparmover::jobs::JobProgress;
use lparmover::ops::moves::{self, MoveControl, MoveError, MoveEvent, ShutdownOptions};
use lparmover::ops::stall::{Headway, StallWatch};
use lparmover::ops::{self, CheckRequest, MoveTarget};
use lparmover::profile::Profile;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use crate::live::{LiveError, RunLock};
use crate::model::{Bandwidth, Entry, OnError, Policy};
use crate::report::{
    EntryReport, EntryResult, Failure, Rehearsal, ReportError, RunOutcome, RunReport, RunStore,
};
use crate::share::BandwidthPool;

/// What the operator answers when an entry failed (the seed's confirmation window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the entry again (after fixing the cause).
    Retry,
    /// Skip it and go on with the next.
    Skip,
    /// End the run here.
    End,
}

/// What the operator answers once a stopped run's running entries have finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Go on with the next entries.
    Continue,
    /// End the run.
    End,
}

/// A question the runner asks an attending operator. Dropping the reply means End.
#[derive(Debug)]
pub enum Question {
    /// Entry `entry` (0-based) failed: Retry, Skip or End?
    Failed {
        /// Which entry.
        entry: usize,
        /// What failed, with its action.
        failure: Failure,
        /// Where the answer goes.
        reply: oneshot::Sender<Decision>,
    },
    /// Stop took effect (nothing runs): Continue or End?
    Stopped {
        /// Where the answer goes.
        reply: oneshot::Sender<Resume>,
    },
}

/// Who answers the runner's questions.
#[derive(Debug)]
pub enum Attendance {
    /// Nobody: failures follow `on_error`, a stop ends the run.
    Unattended,
    /// An operator, through this channel.
    Operator(mpsc::UnboundedSender<Question>),
}

/// What happens during a run, for whoever shows it.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// Entry `entry` (0-based) is being rehearsed.
    Rehearsing {
        /// Which entry.
        entry: usize,
    },
    /// Its rehearsal said this.
    Rehearsed {
        /// Which entry.
        entry: usize,
        /// The verdict.
        rehearsal: Rehearsal,
    },
    /// An attempt started.
    Started {
        /// Which entry.
        entry: usize,
        /// 1 = first.
        attempt: u32,
        /// The policy's bandwidth cap it shares with the other moving entries, MB/s (None:
        /// uncapped); its own part shows in its progress (`mover.bandwidth_limit`).
        bandwidth_cap_mbps: Option<f64>,
    },
    /// Live-move progress.
    Progress {
        /// Which entry.
        entry: usize,
        /// The job's progress.
        progress: JobProgress,
    },
    /// A Shutdown-mode stage, worded for the operator.
    Stage {
        /// Which entry.
        entry: usize,
        /// The stage.
        stage: String,
    },
    /// An entry reached its result (or an attempt failed and is retried: `result` NotRun).
    EntryDone {
        /// Which entry.
        entry: usize,
        /// Its report so far.
        report: Box<EntryReport>,
    },
    /// Stop was asked: the running entries finish, nothing new starts.
    Stopping,
    /// Stop took effect; the run waits for Continue or End.
    Stopped,
    /// Continue after a stop.
    Resumed,
}

/// Stop, shared with whoever shows the run.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    stop: Arc<AtomicBool>,
}

impl RunControl {
    /// A fresh control.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop after the running entries.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop is pending.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn clear(&self) {
        self.stop.store(false, Ordering::Release);
    }
}

/// How a run is asked to go.
#[derive(Debug)]
pub struct RunOptions {
    /// Who answers failures and stops.
    pub attendance: Attendance,
    /// No entry starts unless it is predicted to end before this (1.25 × its prediction).
    pub window_end: Option<DateTime<Utc>>,
    /// Who runs it (`cli`, `daemon`, `navigator`), for the report.
    pub origin: String,
    /// Where its report goes.
    pub runs: RunStore,
    /// Events, for a progress display.
    pub events: Option<mpsc::UnboundedSender<RunEvent>>,
    /// Stop.
    pub control: RunControl,
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing to run.
    #[error("policy {0} has no entries; add some (`[[entry]]` with source and destination) first")]
    NoEntries(String),
    /// The policy file changed since the interrupted run began.
    #[error(
        "run {0} cannot be continued: policy {1} changed since it began (its entries differ); its report stays as it is, run the policy anew"
    )]
    Changed(String, String),
    /// Another process runs this run already.
    #[error(transparent)]
    Held(LiveError),
}

/// A finished run: its report and where the pages were saved.
#[derive(Debug)]
pub struct RunResult {
    /// The report.
    pub report: RunReport,
    /// The HTML page, or why the report could not be written.
    pub saved: Result<PathBuf, ReportError>,
}

/// Margin on a prediction before an entry may start inside a window.
pub const WINDOW_MARGIN: f64 = 1.25;

/// Runs `policy` to its end.
pub async fn run(
    profile: &Profile,
    policy: &Policy,
    options: RunOptions,
) -> Result<RunResult, RunError> {
    if policy.entries.is_empty() {
        return Err(RunError::NoEntries(policy.name.to_string()));
    }
    let started = Utc::now();
    let run_id = new_run_id(&options.runs, policy, started);
    let span = info_span!("policy_run", run = %run_id, policy = %policy.name);
    let metrics = crate::metrics::policy();
    metrics.run_started();
    let result = Runner::new(profile, policy, options, run_id, started)
        .go()
        .instrument(span)
        .await;
    metrics.run_ended(&result);
    result
}

/// Continues a run a killed runner left (its report has no outcome): entries with a result
/// keep it and never run again; the entry that was in flight is settled by the job journal
/// first and counts as completed if its LPAR is on the destination, else as a failed attempt
/// that goes through `on_error`.
pub async fn resume(
    profile: &Profile,
    policy: &Policy,
    prior: RunReport,
    options: RunOptions,
) -> Result<RunResult, RunError> {
    let same = prior.policy == policy.name.as_str()
        && prior.mode == policy.mode
        && prior.entries.len() == policy.entries.len()
        && prior.entries.iter().zip(&policy.entries).all(|(r, e)| {
            r.source == e.source.to_string() && r.destination == e.destination.to_string()
        });
    if !same {
        return Err(RunError::Changed(
            prior.run.clone(),
            policy.name.to_string(),
        ));
    }
    let span = info_span!("policy_run", run = %prior.run, policy = %policy.name, resumed = true);
    let mut runner = Runner::new(profile, policy, options, prior.run.clone(), prior.started);
    runner.report = RunReport {
        outcome: None,
        ended: None,
        origin: runner.report.origin.clone(),
        window_end: runner.report.window_end.or(prior.window_end),
        ..prior
    };
    runner.resumed = true;
    let metrics = crate::metrics::policy();
    metrics.run_started();
    let result = runner.go().instrument(span).await;
    metrics.run_ended(&result);
    result
}

/// A run id no other run has: its directory is created here (two runners starting the same
/// policy in the same second get two ids).
fn new_run_id(runs: &RunStore, policy: &Policy, at: DateTime<Utc>) -> String {
    let base = format!("run-{}-{}", at.format("%Y%m%d-%H%M%S"), policy.name);
    let _ = lparmover::fsutil::create_private_dir(&runs.run_dir(""));
    let mut id = base.clone();
    let mut n = 2;
    loop {
        match std::fs::create_dir(runs.run_dir(&id)) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                id = format!("{base}-{n}");
                n += 1;
            }
            // Created, or not creatable at all (then saving the report says why).
            _ => return id,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Completed(Box<EntryReport>),
    Failed(Failure, Option<Rehearsal>),
}

struct Runner<'a> {
    profile: &'a Profile,
    policy: &'a Policy,
    options: RunOptions,
    report: RunReport,
    /// Entries that must be rehearsed just before they start (an earlier entry changes their
    /// source or destination).
    late_rehearsal: Vec<bool>,
    /// The bandwidth cap the moving entries share (None: uncapped).
    pool: Option<Arc<BandwidthPool>>,
    /// Continuing a run a killed runner left.
    resumed: bool,
}

impl<'a> Runner<'a> {
    fn new(
        profile: &'a Profile,
        policy: &'a Policy,
        options: RunOptions,
        run: String,
        started: DateTime<Utc>,
    ) -> Self {
        let entries = policy
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                EntryReport::pending(i + 1, e.source.to_string(), e.destination.to_string())
            })
            .collect();
        let late_rehearsal = policy
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                policy.rehearse
                    && policy.entries[..i].iter().any(|earlier| {
                        let touched = [&earlier.source.hvm, &earlier.destination.hvm];
                        touched.contains(&&e.source.hvm) || touched.contains(&&e.destination.hvm)
                    })
            })
            .collect();
        // The moving entries split the cap evenly, again whenever one starts or ends.
        let pool = match policy.limits.bandwidth {
            Bandwidth::Unlimited => None,
            Bandwidth::MegabytesPerSecond(mbps) => Some(Arc::new(BandwidthPool::new(
                profile,
                mbps.saturating_mul(1_000_000),
            ))),
        };
        let report = RunReport {
            run,
            policy: policy.name.to_string(),
            mode: policy.mode,
            origin: options.origin.clone(),
            started,
            ended: None,
            window_end: options.window_end,
            outcome: None,
            peak_concurrency: 0,
            concurrency_cap: policy.limits.concurrency.total,
            bandwidth_cap_mbps: match policy.limits.bandwidth {
                Bandwidth::Unlimited => None,
                Bandwidth::MegabytesPerSecond(n) => Some(n),
            },
            entries,
        };
        Self {
            profile,
            policy,
            options,
            report,
            late_rehearsal,
            pool,
            resumed: false,
        }
    }

    fn emit(&self, event: RunEvent) {
        if let Some(tx) = &self.options.events {
            let _ = tx.send(event);
        }
    }

    fn save(&self) -> Result<PathBuf, ReportError> {
        let saved = self.options.runs.save(&self.report);
        if let Err(e) = &saved {
            warn!(error = %e, "the run report could not be saved");
        }
        saved
    }

    async fn go(mut self) -> Result<RunResult, RunError> {
        // Running from here on: `policy stop` in another process sees the run and may stop it.
        let lock = match RunLock::acquire(
            &self.options.runs,
            &self.report.run,
            &self.report.policy,
            &self.options.origin,
        ) {
            Ok(lock) => Some(Arc::new(lock)),
            Err(e @ LiveError::Held { .. }) => return Err(RunError::Held(e)),
            Err(e) => {
                warn!(error = %e, "the run cannot be marked running; `policy stop` will not see it (Stop and Ctrl-C still work)");
                None
            }
        };
        let _watch = lock.as_ref().map(|l| l.watch(self.options.control.clone()));
        info!(entries = self.policy.entries.len(), mode = %self.policy.mode, "policy run starts");
        let _ = self.save();
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut ending: Option<RunOutcome> = None;
        if self.resumed {
            match ops::recover::settle_unfinished(self.profile).await {
                Ok(settled) => info!(
                    jobs = settled.len(),
                    "unfinished jobs settled before the run continues"
                ),
                Err(e) => warn!(error = %e, "unfinished jobs could not be read"),
            }
        }
        for i in 0..self.policy.entries.len() {
            if self.resumed {
                let (result, attempts) = (
                    self.report.entries[i].result,
                    self.report.entries[i].attempts,
                );
                if result != EntryResult::NotRun {
                    continue;
                }
                if attempts > 0 && self.settle_in_flight(i).await {
                    continue;
                }
                if attempts > 0 {
                    let failure = Failure {
                        attempt: self.report.entries[i].attempts,
                        error: "interrupted: the runner was killed while this entry moved; the job journal settled it and the LPAR is still on its source".into(),
                        action: None,
                        code: None,
                    };
                    let attempts = self.report.entries[i].attempts;
                    match self.decide(i, failure.clone(), attempts).await {
                        Decision::Retry => self.report.entries[i].failures.push(failure),
                        Decision::Skip => {
                            self.finish_failed(
                                i,
                                failure,
                                EntryResult::Skipped,
                                "skipped after it was interrupted",
                            );
                            continue;
                        }
                        Decision::End => {
                            self.finish_failed(
                                i,
                                failure,
                                EntryResult::Failed,
                                "the run ended on this interrupted entry",
                            );
                            ending = Some(RunOutcome::Ended);
                            break;
                        }
                    }
                }
                if self.report.entries[i].rehearsal.is_some() {
                    queue.push_back(i);
                    continue;
                }
            }
            if self.policy.rehearse && !self.late_rehearsal[i] {
                self.emit(RunEvent::Rehearsing { entry: i });
                let rehearsal = rehearse(self.profile, self.policy, &self.policy.entries[i]).await;
                self.report.entries[i].rehearsal = Some(rehearsal.clone());
                self.emit(RunEvent::Rehearsed {
                    entry: i,
                    rehearsal: rehearsal.clone(),
                });
                if !rehearsal.passed {
                    let failure = Failure {
                        attempt: 0,
                        error: "its rehearsal failed (the rehearsal line says why)".into(),
                        action: None,
                        code: None,
                    };
                    match self.decide(i, failure.clone(), 0).await {
                        Decision::Retry => {}
                        Decision::Skip => {
                            self.finish_failed(
                                i,
                                failure,
                                EntryResult::Skipped,
                                "skipped: its rehearsal failed",
                            );
                            continue;
                        }
                        Decision::End => {
                            self.finish_failed(
                                i,
                                failure,
                                EntryResult::Failed,
                                "the run ended on its failed rehearsal",
                            );
                            ending = Some(RunOutcome::Ended);
                            break;
                        }
                    }
                }
            }
            queue.push_back(i);
        }
        let _ = self.save();

        let mut running: JoinSet<(usize, Attempt)> = JoinSet::new();
        let mut active: Vec<usize> = Vec::new();
        let mut stop_seen = false;
        loop {
            // Looked at here too (not only every STOP_POLL): a stop written before the next
            // entry starts is always honoured.
            if let Some(lock) = &lock
                && lock.take_stop_request()
            {
                self.options.control.stop();
            }
            if self.options.control.stopping() && !stop_seen {
                stop_seen = true;
                self.emit(RunEvent::Stopping);
                info!("stop asked: the running entries finish, nothing new starts");
            }
            self.start_what_may(&mut queue, &mut running, &mut active, &mut ending);
            if active.is_empty() {
                if ending.is_none() && self.options.control.stopping() && !queue.is_empty() {
                    self.emit(RunEvent::Stopped);
                    info!(left = queue.len(), "stop took effect");
                    match self.ask_resume().await {
                        Resume::Continue => {
                            self.options.control.clear();
                            stop_seen = false;
                            self.emit(RunEvent::Resumed);
                            continue;
                        }
                        Resume::End => ending = Some(RunOutcome::Stopped),
                    }
                }
                if queue.is_empty() || ending.is_some() {
                    break;
                }
                continue;
            }
            let control = self.options.control.clone();
            // Wakes the loop when a stop is asked while entries run (checked often rather than
            // signalled, so a stop asked at any instant is seen).
            let stop_asked = async {
                while !control.stopping() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (i, attempt) = match joined {
                        Ok(done) => done,
                        Err(e) => {
                            warn!(error = %e, "an entry's task ended abnormally");
                            continue;
                        }
                    };
                    active.retain(|&a| a != i);
                    match attempt {
                        Attempt::Completed(entry) => {
                            self.report.entries[i] = *entry;
                            self.emit(RunEvent::EntryDone { entry: i, report: Box::new(self.report.entries[i].clone()) });
                        }
                        Attempt::Failed(failure, rehearsal) => {
                            if rehearsal.is_some() {
                                self.report.entries[i].rehearsal = rehearsal;
                            }
                            let attempts = self.report.entries[i].attempts;
                            match self.decide(i, failure.clone(), attempts).await {
                                Decision::Retry => {
                                    self.report.entries[i].failures.push(failure);
                                    self.emit(RunEvent::EntryDone { entry: i, report: Box::new(self.report.entries[i].clone()) });
                                    queue.push_front(i);
                                }
                                Decision::Skip => self.finish_failed(i, failure, EntryResult::Skipped, "skipped after it failed"),
                                Decision::End => {
                                    self.finish_failed(i, failure, EntryResult::Failed, "the run ended on this entry");
                                    ending = Some(RunOutcome::Ended);
                                }
                            }
                        }
                    }
                    let _ = self.save();
                }
                () = stop_asked, if !stop_seen => {}
            }
        }
        for &i in &queue {
            let e = &mut self.report.entries[i];
            if e.result == EntryResult::NotRun && e.reason.is_none() {
                e.reason = Some(match ending {
                    Some(RunOutcome::Stopped) => "not started: the operator stopped the run".into(),
                    _ => "not started: the run ended on an earlier entry".into(),
                });
            }
        }
        self.report.outcome = Some(ending.unwrap_or(RunOutcome::Finished));
        self.report.ended = Some(Utc::now());
        let saved = self.save();
        info!(outcome = ?self.report.outcome, "policy run ended");
        Ok(RunResult {
            report: self.report,
            saved,
        })
    }

    /// After a kill: whether entry `i`, in flight then, completed (its LPAR is on the
    /// destination now); if so it is recorded as completed.
    async fn settle_in_flight(&mut self, i: usize) -> bool {
        let entry = &self.policy.entries[i];
        let name = match (&entry.source.lpar, &self.report.entries[i].lpar) {
            (LparSelector::Name(n), _) | (_, Some(n)) => n.clone(),
            (LparSelector::Number(_), None) => return false,
        };
        let there = LparRef {
            hvm: entry.destination.hvm.clone(),
            lpar: LparSelector::Name(name.clone()),
        };
        let Ok(view) = ops::lpar(self.profile, &there).await else {
            return false;
        };
        let e = &mut self.report.entries[i];
        e.result = EntryResult::Completed;
        e.lpar = Some(name);
        e.landed = Some(format!("{}/{}", there.hvm, view.lpar.number));
        e.reason = Some(
            "completed; the runner was killed while it moved and the job journal finished it"
                .into(),
        );
        self.emit(RunEvent::EntryDone {
            entry: i,
            report: Box::new(self.report.entries[i].clone()),
        });
        true
    }

    fn finish_failed(&mut self, i: usize, failure: Failure, result: EntryResult, reason: &str) {
        let e = &mut self.report.entries[i];
        e.failures.push(failure);
        e.result = result;
        e.reason = Some(reason.to_owned());
        self.emit(RunEvent::EntryDone {
            entry: i,
            report: Box::new(self.report.entries[i].clone()),
        });
    }

    /// Starts every waiting entry that may start now, in policy order. An entry may overtake
    /// an earlier waiting one only when they share no HVM, so entries on the same blades keep
    /// their order (a later one may depend on an earlier one's result).
    fn start_what_may(
        &mut self,
        queue: &mut VecDeque<usize>,
        running: &mut JoinSet<(usize, Attempt)>,
        active: &mut Vec<usize>,
        ending: &mut Option<RunOutcome>,
    ) {
        let mut pos = 0;
        let mut waiting_hvms: Vec<String> = Vec::new();
        while ending.is_none()
            && !self.options.control.stopping()
            && pos < queue.len()
            && active.len() < usize::from(self.policy.limits.concurrency.total)
        {
            let i = queue[pos];
            let e = &self.policy.entries[i];
            let behind_earlier =
                waiting_hvms.contains(&e.source.hvm) || waiting_hvms.contains(&e.destination.hvm);
            if behind_earlier || !self.may_start(i, active) {
                waiting_hvms.push(e.source.hvm.clone());
                waiting_hvms.push(e.destination.hvm.clone());
                pos += 1;
                continue;
            }
            if let Some(reason) = self.outside_window(i) {
                for &j in queue.iter() {
                    self.report.entries[j].result = EntryResult::OutsideWindow;
                    self.report.entries[j].reason = Some(if j == i {
                        reason.clone()
                    } else {
                        "not started: the window closed on an earlier entry".into()
                    });
                }
                queue.clear();
                *ending = Some(RunOutcome::WindowClosed);
                return;
            }
            queue.remove(pos);
            self.spawn(i, running);
            active.push(i);
            self.report.peak_concurrency = self.report.peak_concurrency.max(active.len());
        }
    }

    /// Whether entry `i` may start next to the `active` ones: under every cap, and touching
    /// neither an LPAR nor a blade a running entry holds.
    fn may_start(&self, i: usize, active: &[usize]) -> bool {
        let caps = self.policy.limits.concurrency;
        let e = &self.policy.entries[i];
        let running: Vec<&Entry> = active.iter().map(|&a| &self.policy.entries[a]).collect();
        let from_source = running
            .iter()
            .filter(|r| r.source.hvm == e.source.hvm)
            .count();
        let to_destination = running
            .iter()
            .filter(|r| r.destination.hvm == e.destination.hvm)
            .count();
        // A move leases its destination blade whole (the blade refuses any other job there
        // until it ends) and its source LPAR: so no entry goes to, or leaves, a blade another
        // running entry goes to, and none goes to a blade another is leaving.
        let blades_busy = running.iter().any(|r| {
            r.destination.hvm == e.source.hvm
                || r.destination.hvm == e.destination.hvm
                || r.source.hvm == e.destination.hvm
        });
        let conflict = blades_busy || running.iter().any(|r| r.source == e.source);
        running.len() < usize::from(caps.total)
            && from_source < usize::from(caps.per_source_hvm)
            && to_destination < usize::from(caps.per_destination_hvm)
            && !conflict
    }

    /// Why entry `i` may not start inside the window, if it may not.
    fn outside_window(&self, i: usize) -> Option<String> {
        let end = self.options.window_end?;
        let now = Utc::now();
        let predicted = self.report.entries[i]
            .rehearsal
            .as_ref()
            .and_then(|r| r.predicted_total_s)
            .unwrap_or(0.0);
        let needed = Duration::from_secs_f64(predicted * WINDOW_MARGIN);
        let finish = now + chrono::Duration::from_std(needed).unwrap_or(chrono::Duration::MAX);
        (finish > end).then(|| {
            format!(
                "not started: the window ends {}, and {WINDOW_MARGIN} × its predicted {predicted:.1} s from {} would pass it",
                end.format("%H:%M:%S UTC"),
                now.format("%H:%M:%S UTC")
            )
        })
    }

    fn spawn(&mut self, i: usize, running: &mut JoinSet<(usize, Attempt)>) {
        let entry = &mut self.report.entries[i];
        entry.attempts += 1;
        entry.started = Some(Utc::now());
        let attempt = entry.attempts;
        // On disk before the move starts: a runner killed from here on finds the entry in
        // flight when it continues the run.
        let _ = self.save();
        self.emit(RunEvent::Started {
            entry: i,
            attempt,
            bandwidth_cap_mbps: self.report.bandwidth_cap_mbps.map(|c| c as f64),
        });
        let job = EntryJob {
            index: i,
            attempt,
            profile: self.profile.clone(),
            policy: self.policy.clone(),
            base: self.report.entries[i].clone(),
            rehearse_first: self.late_rehearsal[i],
            pool: self.pool.clone(),
            events: self.options.events.clone(),
        };
        let span = info_span!("entry", n = i + 1, attempt, source = %self.policy.entries[i].source);
        running.spawn(async move { (i, job.run().await) }.instrument(span));
    }

    async fn decide(&self, i: usize, failure: Failure, attempts: u32) -> Decision {
        match &self.options.attendance {
            Attendance::Unattended => match self.policy.on_error {
                OnError::Skip => Decision::Skip,
                OnError::End => Decision::End,
                OnError::RetryThenSkip(n) if attempts <= u32::from(n) && attempts > 0 => {
                    Decision::Retry
                }
                OnError::RetryThenSkip(_) => Decision::Skip,
            },
            Attendance::Operator(tx) => {
                let (reply, answer) = oneshot::channel();
                if tx
                    .send(Question::Failed {
                        entry: i,
                        failure,
                        reply,
                    })
                    .is_err()
                {
                    return Decision::End;
                }
                answer.await.unwrap_or(Decision::End)
            }
        }
    }

    async fn ask_resume(&self) -> Resume {
        match &self.options.attendance {
            Attendance::Unattended => Resume::End,
            Attendance::Operator(tx) => {
                let (reply, answer) = oneshot::channel();
                if tx.send(Question::Stopped { reply }).is_err() {
                    return Resume::End;
                }
                answer.await.unwrap_or(Resume::End)
            }
        }
    }
}

/// Whoever runs the runner, through the policy: what the history records for its moves and
/// rehearsals.
fn policy_actor(policy: &Policy) -> Actor {
    Actor::of_this_process(Origin::policy(&policy.name))
}

/// Rehearses one entry: a live move's rehearsal (checks and a short real transfer), or the
/// checks of a Shutdown-mode move.
async fn rehearse(profile: &Profile, policy: &Policy, entry: &Entry) -> Rehearsal {
    if policy.mode.is_live() {
        let options = live_options(entry, policy, None, None);
        let actor = policy_actor(policy);
        match ops::rehearse(
            profile,
            &actor,
            &entry.source,
            &entry.destination.hvm,
            &options,
        )
        .await
        {
            Ok(r) => Rehearsal {
                passed: true,
                predicted_total_s: Some(r.predicted_total_s),
                predicted_suspension_ms: Some(r.predicted_suspension_ms),
                notes: r.warnings,
            },
            Err(e) => Rehearsal {
                passed: false,
                predicted_total_s: None,
                predicted_suspension_ms: None,
                // A catalogue error's text carries its action already.
                notes: vec![e.to_string()],
            },
        }
    } else {
        let request = CheckRequest {
            source: entry.source.clone(),
            destination: entry.destination.clone(),
            mode: policy.mode,
            processor_group: None,
        };
        match ops::check(profile, &request).await {
            Ok(report) => {
                let errors = report.blocking_errors();
                Rehearsal {
                    passed: errors.is_empty(),
                    predicted_total_s: None,
                    predicted_suspension_ms: None,
                    notes: errors
                        .iter()
                        .map(|r| {
                            with_action(
                                &format!("{}: {} vs {}", r.item, r.source, r.destination),
                                r.action.clone(),
                            )
                        })
                        .collect(),
                }
            }
            Err(e) => Rehearsal {
                passed: false,
                predicted_total_s: None,
                predicted_suspension_ms: None,
                notes: vec![format!("the checks could not run: {e}")],
            },
        }
    }
}

fn with_action(error: &str, action: Option<String>) -> String {
    match action {
        Some(a) => format!("{error} (action: {a})"),
        None => error.to_owned(),
    }
}

/// A live move's options for `entry`: its own limits, else the policy's per-GiB timeout for
/// `memory_mib`, else the defaults; `share` is the bandwidth cap it starts with.
fn live_options(
    entry: &Entry,
    policy: &Policy,
    memory_mib: Option<u64>,
    share: Option<u64>,
) -> MoveOptions {
    let mut options = MoveOptions::default();
    if let Some(d) = entry.downtime_limit {
        options.downtime_limit_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    }
    let per_gib = policy
        .limits
        .completion_timeout_per_gib
        .zip(memory_mib)
        .map(|(per, mib)| per.as_secs_f64() * (mib as f64 / 1024.0).max(1.0));
    if let Some(t) = entry.timeout {
        options.timeout_s = t.as_secs().max(1);
    } else if let Some(s) = per_gib {
        options.timeout_s = (s.ceil() as u64).clamp(1, MoveOptions::MAX_TIMEOUT_S);
    }
    options.bandwidth_limit = share;
    options.convergence = policy.limits.convergence.clone();
    options
}

/// One attempt of one entry, as a task of its own.
struct EntryJob {
    index: usize,
    attempt: u32,
    profile: Profile,
    policy: Policy,
    base: EntryReport,
    rehearse_first: bool,
    pool: Option<Arc<BandwidthPool>>,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
}

impl EntryJob {
    fn emit(&self, event: RunEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    fn failed(&self, error: String, e: Option<&MoveError>) -> Failure {
        let emg = e.and_then(MoveError::emg);
        Failure {
            attempt: self.attempt,
            error,
            action: emg.as_ref().map(|m| m.action().to_owned()),
            code: emg.as_ref().map(|m| m.code_line()),
        }
    }

    async fn run(self) -> Attempt {
        let entry = &self.policy.entries[self.index];
        let mut rehearsal = None;
        if self.rehearse_first {
            self.emit(RunEvent::Rehearsing { entry: self.index });
            let r = rehearse(&self.profile, &self.policy, entry).await;
            self.emit(RunEvent::Rehearsed {
                entry: self.index,
                rehearsal: r.clone(),
            });
            if !r.passed {
                let error = "its rehearsal failed (the rehearsal line says why)".to_owned();
                return Attempt::Failed(self.failed(error, None), Some(r));
            }
            rehearsal = Some(r);
        }
        let target = MoveTarget::Given {
            source: entry.source.clone(),
            destination: entry.destination.clone(),
        };
        let mut report = self.base.clone();
        // Asked once: where a return brings it, and its memory for a per-GiB timeout.
        let mut memory_mib = None;
        if let Ok(view) = ops::lpar(&self.profile, &entry.source).await {
            report.from_number = Some(view.lpar.number);
            report.lpar = Some(view.lpar.name.to_string());
            memory_mib = Some(view.lpar.memory_mib);
        }
        if rehearsal.is_some() {
            report.rehearsal = rehearsal.clone();
        }
        let outcome = if self.policy.mode.is_live() {
            self.live(entry, &target, memory_mib, &mut report).await
        } else {
            self.shutdown(entry, &target, &mut report).await
        };
        report.ended = Some(Utc::now());
        match outcome {
            Ok(()) => {
                report.result = EntryResult::Completed;
                report.reason = None;
                Attempt::Completed(Box::new(report))
            }
            Err(failure) => Attempt::Failed(failure, rehearsal),
        }
    }

    async fn live(
        &self,
        entry: &Entry,
        target: &MoveTarget,
        memory_mib: Option<u64>,
        report: &mut EntryReport,
    ) -> Result<(), Failure> {
        let share = match &self.pool {
            Some(pool) => Some(pool.join(self.index).await),
            None => None,
        };
        let options = live_options(entry, &self.policy, memory_mib, share);
        let control = MoveControl::new();
        // The job id of the move, once its memory moves: its cap can change from then on.
        let (moving_tx, mut moving_rx) = mpsc::unbounded_channel::<String>();
        let mut job_told = false;
        let origin = Instant::now();
        let watch = Arc::new(Mutex::new(StallWatch::new(
            self.policy.limits.stall_timeout,
        )));
        let events = self.events.clone();
        let index = self.index;
        let observer = Arc::clone(&watch);
        let actor = policy_actor(&self.policy);
        let moving = moves::live(
            &self.profile,
            &actor,
            target,
            options,
            &control,
            move |event| {
                if let MoveEvent::Progress(p) = event {
                    if let Ok(mut w) = observer.lock() {
                        w.observe(origin.elapsed(), &p);
                    }
                    if p.mover.is_some() && !job_told {
                        job_told = true;
                        let _ = moving_tx.send(p.job.clone());
                    }
                    if let Some(tx) = &events {
                        let _ = tx.send(RunEvent::Progress {
                            entry: index,
                            progress: p,
                        });
                    }
                }
            },
        );
        tokio::pin!(moving);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stalled: Option<Duration> = None;
        let result = loop {
            tokio::select! {
                result = &mut moving => break result,
                Some(job) = moving_rx.recv() => {
                    if let Some(pool) = &self.pool {
                        pool.transferring(self.index, &entry.source.hvm, &job).await;
                    }
                }
                _ = tick.tick(), if stalled.is_none() => {
                    let headway = watch.lock().map(|w| w.headway(origin.elapsed())).unwrap_or(Headway::Moving);
                    if let Headway::Stalled(quiet) = headway {
                        warn!(quiet_s = quiet.as_secs(), "the move is stalled: cancelling it (the source keeps running)");
                        stalled = Some(quiet);
                        control.cancel();
                    }
                }
            }
        };
        if let Some(pool) = &self.pool {
            report.bandwidth_cap_mbps = pool.leave(self.index).await.map(|b| b as f64 / 1e6);
        }
        match result {
            Ok(r) => {
                report.job = Some(r.job.clone());
                report.lpar = Some(r.lpar.clone());
                report.landed = Some(format!("{}/{}", r.destination, r.dest_number));
                report.total_s = Some(r.total.as_secs_f64());
                report.transfer_s = Some(r.summary.total_time.as_secs_f64());
                report.suspension_ms = r.suspension.map(|d| d.as_secs_f64() * 1e3);
                report.wire_bytes = Some(r.summary.wire_bytes);
                report.throughput_mbps = Some(r.summary.memory_throughput_mbps);
                Ok(())
            }
            Err(e) => {
                let error = match stalled {
                    Some(q) => format!(
                        "stalled: nothing moved for {} s (stall timeout {} s), so it was cancelled and the source keeps running: {e}",
                        q.as_secs(),
                        self.policy.limits.stall_timeout.as_secs()
                    ),
                    None => e.to_string(),
                };
                Err(self.failed(error, Some(&e)))
            }
        }
    }

    async fn shutdown(
        &self,
        entry: &Entry,
        target: &MoveTarget,
        report: &mut EntryReport,
    ) -> Result<(), Failure> {
        let mut options = ShutdownOptions {
            remote_shutdown: entry.guest_shutdown,
            activate: entry.activate,
            ..ShutdownOptions::default()
        };
        if let Some(t) = entry.timeout {
            options.shutdown_wait = t;
        }
        let events = self.events.clone();
        let index = self.index;
        let actor = policy_actor(&self.policy);
        let result = moves::shutdown(&self.profile, &actor, target, options, move |event| {
            if let (MoveEvent::Stage(stage), Some(tx)) = (event, &events) {
                let _ = tx.send(RunEvent::Stage {
                    entry: index,
                    stage,
                });
            }
        })
        .await;
        match result {
            Ok(r) => {
                report.job = Some(r.job.clone());
                report.lpar = Some(r.lpar.clone());
                report.landed = Some(format!("{}/{}", r.destination, r.dest_number));
                report.total_s = Some(r.total_ms as f64 / 1e3);
                Ok(())
            }
            Err(e) => Err(self.failed(e.to_string(), Some(&e))),
        }
    }
}
