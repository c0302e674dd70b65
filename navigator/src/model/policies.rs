//! The Migration Policy window's state: the saved policies, the one being created or modified
//! (New, Add [Shutdown] / Add [Concurrent Maintenance], Delete, Up / Down, Save / Save as,
//! Release), and the run being executed with table 7-3's state per entry and the question the
//! runner asks (Retry / Skip / End on a failure, Continue / End after Stop).

use lparmover::fleetview::LparRef;
use lparmover::model::Mode;
use lparmover::ops::Destination;
use policy::report::{EntryResult, RunReport};
use policy::runner::RunEvent;
use policy::{Entry, Policy, PolicyName};

use super::Pending;
use crate::icons::Icon;

/// A policy file of the policies directory: the policy, or why it is not one.
#[derive(Clone, Debug)]
pub struct SavedPolicy {
    /// File stem.
    pub name: String,
    /// The policy or its problems.
    pub policy: Result<Policy, String>,
}

/// A policy being created or modified.
#[derive(Clone, Debug)]
pub struct Draft {
    /// The policy as edited.
    pub policy: Policy,
    /// Changed since it was loaded or saved.
    pub dirty: bool,
    /// The entry row picked (for Delete, Up, Down).
    pub row: Option<usize>,
}

impl Draft {
    /// A draft of a saved (or new) policy.
    pub fn of(policy: Policy) -> Self {
        Self {
            policy,
            dirty: false,
            row: None,
        }
    }

    /// Add [Shutdown] / Add [Concurrent Maintenance]: the pick as a new last entry. A policy
    /// holds entries of one mode only (the manual's rule).
    pub fn add(
        &mut self,
        mode: Mode,
        source: LparRef,
        destination: Destination,
    ) -> Result<(), String> {
        if !self.policy.entries.is_empty() && self.policy.mode != mode {
            return Err(format!(
                "This policy holds {} entries; Shutdown and Concurrent Maintenance entries cannot be registered together. Make another policy for {mode} moves.",
                self.policy.mode
            ));
        }
        if source.hvm == destination.hvm {
            return Err(format!(
                "{source} is on {}: pick another HVM as the destination.",
                destination.hvm
            ));
        }
        if self.policy.entries.len() >= policy::model::MAX_ENTRIES {
            return Err(format!(
                "A policy holds at most {} entries.",
                policy::model::MAX_ENTRIES
            ));
        }
        self.policy.mode = mode;
        self.policy.entries.push(Entry::new(source, destination));
        self.row = Some(self.policy.entries.len() - 1);
        self.dirty = true;
        Ok(())
    }

    /// Delete: removes the picked entry.
    pub fn delete(&mut self) {
        if let Some(i) = self.row.filter(|&i| i < self.policy.entries.len()) {
            self.policy.entries.remove(i);
            self.row =
                (!self.policy.entries.is_empty()).then(|| i.min(self.policy.entries.len() - 1));
            self.dirty = true;
        }
    }

    /// Up (`-1`) or Down (`+1`): moves the picked entry.
    pub fn shift(&mut self, down: bool) {
        let Some(i) = self.row else { return };
        let j = if down { i + 1 } else { i.wrapping_sub(1) };
        if j < self.policy.entries.len() && i < self.policy.entries.len() {
            self.policy.entries.swap(i, j);
            self.row = Some(j);
            self.dirty = true;
        }
    }
}

/// An entry's state in the run (table 7-3's icons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting for its turn or for the caps.
    Queued,
    /// Being rehearsed or moved.
    InProgress,
    /// Running while the run stops (it finishes, nothing new starts).
    Terminating,
    /// Moved.
    Done,
    /// Failed (skipped, or the run ended on it).
    Failed,
    /// Not run (the run ended or stopped first, or the window closed).
    NotRun,
}

impl EntryState {
    /// Its icon.
    pub fn icon(self) -> Icon {
        match self {
            Self::Queued | Self::NotRun => Icon::ExecQueued,
            Self::InProgress => Icon::ExecInProgress,
            Self::Terminating => Icon::ExecTerminating,
            Self::Done => Icon::ExecDone,
            Self::Failed => Icon::ExecFailed,
        }
    }

    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in progress",
            Self::Terminating => "terminating",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::NotRun => "not run",
        }
    }
}

/// What the runner asks the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunQuestion {
    /// Entry `entry` failed: Retry, Skip or End?
    Failed {
        /// Which entry (0-based).
        entry: usize,
        /// What failed.
        error: String,
        /// What to do about it.
        action: Option<String>,
    },
    /// Stop took effect: Continue or End?
    Stopped,
}

/// One entry as the run shows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    /// `HVM/LPAR → HVM`.
    pub describe: String,
    /// Its state.
    pub state: EntryState,
    /// The last thing said about it (progress, result, error).
    pub note: String,
}

/// A policy being executed.
#[derive(Clone, Debug)]
pub struct PolicyRun {
    /// Policy name.
    pub name: String,
    /// Its entries, in order.
    pub rows: Vec<RunRow>,
    /// The policy's entries (for Show Config of a failed one).
    pub entries: Vec<Entry>,
    /// Mode of the policy.
    pub mode: Mode,
    /// Stop was asked and has not yet been answered.
    pub stopping: bool,
    /// What the runner waits for.
    pub question: Option<RunQuestion>,
    /// The report, once it ended (or why it could not run).
    pub finished: Pending<RunReport>,
}

impl PolicyRun {
    /// A run of `policy` that is starting.
    pub fn starting(policy: &Policy) -> Self {
        Self {
            name: policy.name.to_string(),
            rows: policy
                .entries
                .iter()
                .map(|e| RunRow {
                    describe: e.describe(),
                    state: EntryState::Queued,
                    note: String::new(),
                })
                .collect(),
            entries: policy.entries.clone(),
            mode: policy.mode,
            stopping: false,
            question: None,
            finished: Pending::Running,
        }
    }

    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.finished.running()
    }

    /// Folds a runner event in.
    pub fn apply(&mut self, event: RunEvent) {
        let stopping = self.stopping;
        match event {
            RunEvent::Rehearsing { entry } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    r.state = EntryState::InProgress;
                    r.note = "rehearsing".into();
                }
            }
            RunEvent::Rehearsed { entry, rehearsal } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    r.state = EntryState::Queued;
                    r.note = match (rehearsal.passed, rehearsal.predicted_total_s) {
                        (true, Some(t)) => format!("rehearsal passed, predicts {t:.1} s"),
                        (true, None) => "rehearsal passed".into(),
                        (false, _) => format!("rehearsal failed: {}", rehearsal.notes.join("; ")),
                    };
                }
            }
            RunEvent::Started { entry, attempt, .. } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    r.state = if stopping {
                        EntryState::Terminating
                    } else {
                        EntryState::InProgress
                    };
                    r.note = format!("attempt {attempt}");
                }
            }
            RunEvent::Progress { entry, progress } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    r.note = match &progress.mover {
                        Some(m) => format!(
                            "{} round {}, {:.0} MB left, {:.0} MB/s",
                            progress.stage.display(),
                            m.round,
                            m.bytes_remaining as f64 / 1e6,
                            m.memory_throughput_mbps
                        ),
                        None => progress.stage.display(),
                    };
                }
            }
            RunEvent::Stage { entry, stage } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    r.note = stage;
                }
            }
            RunEvent::EntryDone { entry, report } => {
                if let Some(r) = self.rows.get_mut(entry) {
                    (r.state, r.note) = match report.result {
                        EntryResult::Completed => (
                            EntryState::Done,
                            format!(
                                "moved to {} in {:.2} s{}",
                                report.landed.as_deref().unwrap_or("?"),
                                report.total_s.unwrap_or(0.0),
                                report
                                    .suspension_ms
                                    .map_or(String::new(), |s| format!(", suspension {s:.1} ms"))
                            ),
                        ),
                        EntryResult::Skipped | EntryResult::Failed => (
                            EntryState::Failed,
                            report.failures.last().map_or_else(
                                || report.result.label().to_owned(),
                                |f| f.error.clone(),
                            ),
                        ),
                        EntryResult::NotRun => (
                            EntryState::Queued,
                            report
                                .failures
                                .last()
                                .map_or(String::new(), |f| format!("retrying after: {}", f.error)),
                        ),
                        EntryResult::OutsideWindow => (
                            EntryState::NotRun,
                            report.reason.clone().unwrap_or_default(),
                        ),
                    };
                }
            }
            RunEvent::Stopping => {
                self.stopping = true;
                for r in &mut self.rows {
                    if r.state == EntryState::InProgress {
                        r.state = EntryState::Terminating;
                    }
                }
            }
            RunEvent::Stopped => {}
            RunEvent::Resumed => self.stopping = false,
        }
    }

    /// The runner asks: a failed entry shows as failed while the operator decides.
    pub fn asked(&mut self, question: RunQuestion) {
        if let RunQuestion::Failed { entry, error, .. } = &question
            && let Some(r) = self.rows.get_mut(*entry)
        {
            r.state = EntryState::Failed;
            r.note = format!("waiting for Retry / Skip / End: {error}");
        }
        self.question = Some(question);
    }

    /// The run ended with `report`.
    pub fn ended(&mut self, result: Result<RunReport, String>) {
        if let Ok(report) = &result {
            for (row, e) in self.rows.iter_mut().zip(&report.entries) {
                if matches!(e.result, EntryResult::NotRun | EntryResult::OutsideWindow) {
                    row.state = EntryState::NotRun;
                    row.note = e.reason.clone().unwrap_or_default();
                }
            }
        }
        self.question = None;
        self.stopping = false;
        self.finished = match result {
            Ok(r) => Pending::Done(r),
            Err(e) => Pending::Failed(e),
        };
    }
}

/// Evacuate… on an HVM of the trees: the plan `policy::evacuate::plan` made (the same one
/// `policy evacuate HVM` writes), shown before anything is saved.
#[derive(Clone, Debug)]
pub struct EvacuationDialog {
    /// The blade to empty.
    pub hvm: String,
    /// The plan, once the engine made it.
    pub plan: Pending<policy::evacuate::Evacuation>,
}

impl EvacuationDialog {
    /// The dialog for `hvm`, its plan asked for.
    pub fn asked(hvm: &str) -> Self {
        Self {
            hvm: hvm.to_owned(),
            plan: Pending::Running,
        }
    }

    /// The policies the plan writes (live first), none while it is not made.
    pub fn policies(&self) -> Vec<Policy> {
        match &self.plan {
            Pending::Done(plan) => [&plan.live, &plan.shutdown]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The Migration Policy window.
#[derive(Clone, Debug, Default)]
pub struct PolicyWindow {
    /// The policies directory.
    pub saved: Pending<Vec<SavedPolicy>>,
    /// The policy picked in the combo box.
    pub selected: Option<String>,
    /// New Policy: the name typed (Some while the New Policy prompt is shown).
    pub new_name: Option<String>,
    /// Save as: the name typed (Some while the prompt is shown).
    pub save_as: Option<String>,
    /// The policy being created or modified.
    pub draft: Option<Draft>,
    /// What the last action said.
    pub note: Option<Result<String, String>>,
    /// The run, while and after it executes.
    pub run: Option<PolicyRun>,
    /// Evacuate…: the plan shown for confirmation.
    pub evacuation: Option<EvacuationDialog>,
}

impl PolicyWindow {
    /// The saved policy picked, when it is valid.
    pub fn selected_policy(&self) -> Option<&Policy> {
        let Pending::Done(saved) = &self.saved else {
            return None;
        };
        let name = self.selected.as_deref()?;
        saved
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.policy.as_ref().ok())
    }

    /// The plan of `hvm` arrived (a plan for another HVM than the dialog's is dropped).
    pub fn evacuation_planned(
        &mut self,
        hvm: &str,
        plan: Result<policy::evacuate::Evacuation, String>,
    ) {
        if let Some(d) = self.evacuation.as_mut().filter(|d| d.hvm == hvm) {
            d.plan = Pending::from(plan);
        }
    }

    /// Save and open: closes the dialog and returns the policies to save; the first becomes
    /// the one picked, so the window shows it once the list is read again.
    pub fn accept_evacuation(&mut self) -> Vec<Policy> {
        let Some(dialog) = self.evacuation.take() else {
            return Vec::new();
        };
        let policies = dialog.policies();
        if let Some(first) = policies.first() {
            self.selected = Some(first.name.to_string());
            self.draft = None;
            self.note = Some(Ok(format!(
                "Evacuation of {}: {} saved; Execute runs the one picked.",
                dialog.hvm,
                policies
                    .iter()
                    .map(|p| p.name.to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
        policies
    }

    /// New: a draft of an empty policy named as typed, in `mode`.
    pub fn start_new(&mut self, mode: Mode) -> Result<(), String> {
        let typed = self.new_name.clone().unwrap_or_default();
        let name = PolicyName::new(typed.trim())?;
        if let Pending::Done(saved) = &self.saved
            && saved.iter().any(|s| s.name == name.as_str())
        {
            return Err(format!(
                "A policy {name} exists already; pick another name."
            ));
        }
        self.draft = Some(Draft::of(Policy::new(name, mode)));
        self.new_name = None;
        Ok(())
    }

    /// Why Execute is refused, if it is.
    pub fn execute_refused(&self, move_running: bool) -> Option<String> {
        if self.run.as_ref().is_some_and(PolicyRun::running) {
            return Some("A policy is running; wait for it to end.".into());
        }
        if move_running {
            return Some("A migration is running; wait for it to finish.".into());
        }
        if self.draft.as_ref().is_some_and(|d| d.dirty) {
            return Some("Save the policy (or Release it) before executing it.".into());
        }
        match self.selected_policy() {
            None => Some("Pick a valid saved policy in the Policy box.".into()),
            Some(p) if p.entries.is_empty() => {
                Some("The policy has no entries; Modify it and add some.".into())
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft::of(Policy::new(
            PolicyName::new("t").expect("name"),
            Mode::ConcurrentMaintenance,
        ))
    }

    #[test]
    fn a_draft_refuses_a_second_mode_and_reorders_and_deletes_its_entries() {
        let mut d = draft();
        let r = |s: &str| s.parse::<LparRef>().expect("ref");
        let to = |s: &str| s.parse::<Destination>().expect("dest");
        d.add(
            Mode::ConcurrentMaintenance,
            r("ch1-b1/web-01"),
            to("ch1-b2"),
        )
        .expect("add");
        d.add(
            Mode::ConcurrentMaintenance,
            r("ch1-b2/app-01"),
            to("ch1-b1"),
        )
        .expect("add");
        let refused = d
            .add(Mode::Shutdown, r("ch1-b1/batch-01"), to("ch1-b2"))
            .expect_err("mixed");
        assert!(
            refused.contains("cannot be registered together"),
            "{refused}"
        );
        assert!(
            d.add(Mode::ConcurrentMaintenance, r("ch1-b1/db-01"), to("ch1-b1"))
                .is_err()
        );
        assert_eq!(d.row, Some(1));
        d.shift(false);
        assert_eq!(d.policy.entries[0].source.to_string(), "ch1-b2/app-01");
        d.shift(false);
        assert_eq!(d.row, Some(0), "the first entry cannot go up");
        d.delete();
        assert_eq!(d.policy.entries.len(), 1);
        assert_eq!(d.policy.entries[0].source.to_string(), "ch1-b1/web-01");
        assert!(d.dirty);
    }

    #[test]
    fn an_evacuation_plan_is_shown_for_its_hvm_only_and_save_picks_its_first_policy() {
        let mut w = PolicyWindow {
            evacuation: Some(EvacuationDialog::asked("ch1-b1")),
            ..PolicyWindow::default()
        };
        let mut live = Policy::new(
            PolicyName::new("evacuate-ch1-b1-live").expect("name"),
            Mode::ConcurrentMaintenance,
        );
        live.entries.push(Entry::new(
            "ch1-b1/web-01".parse().expect("ref"),
            "ch1-b2".parse().expect("dest"),
        ));
        let plan = |hvm: &str| policy::evacuate::Evacuation {
            hvm: hvm.into(),
            live: Some(live.clone()),
            shutdown: None,
            unplaced: Vec::new(),
        };
        w.evacuation_planned("ch2-b1", Ok(plan("ch2-b1")));
        assert!(w.evacuation.as_ref().is_some_and(|d| d.plan.running()));
        w.evacuation_planned("ch1-b1", Ok(plan("ch1-b1")));
        let saved = w.accept_evacuation();
        assert_eq!(saved.len(), 1);
        assert_eq!(w.selected.as_deref(), Some("evacuate-ch1-b1-live"));
        assert!(w.evacuation.is_none());
        assert!(w.accept_evacuation().is_empty(), "nothing twice");
    }

    #[test]
    fn entry_states_follow_the_runner_and_a_stop_makes_running_entries_terminating() {
        let mut p = Policy::new(
            PolicyName::new("t").expect("name"),
            Mode::ConcurrentMaintenance,
        );
        p.entries.push(Entry::new(
            "a/x".parse().expect("ref"),
            "b".parse().expect("dest"),
        ));
        p.entries.push(Entry::new(
            "a/y".parse().expect("ref"),
            "b".parse().expect("dest"),
        ));
        let mut run = PolicyRun::starting(&p);
        run.apply(RunEvent::Started {
            entry: 0,
            attempt: 1,
            bandwidth_cap_mbps: None,
        });
        assert_eq!(run.rows[0].state, EntryState::InProgress);
        run.apply(RunEvent::Stopping);
        assert_eq!(run.rows[0].state, EntryState::Terminating);
        assert_eq!(run.rows[1].state, EntryState::Queued);
        assert_eq!(run.rows[0].state.icon(), Icon::ExecTerminating);
    }
}
