//! The app's state, with no egui types: what the fleet looks like, what the operator picked,
//! what runs and how it went. The windows draw it and push commands; [`Model::apply`] folds
//! the engine's events into it. Everything here is plain logic, unit-tested below.

use std::collections::BTreeSet;
use std::time::Duration;

use lparmover::api::{Inventory, LparView};
use lparmover::checks::{CheckReport, Verdict};
use lparmover::connectivity::ConnectivityReport;
use lparmover::fleetview::{HvmSnapshot, LparRef, LparSelector};
use lparmover::jobs::wwn::PendingRollback;
use lparmover::jobs::{ColdMoveReport, JobProgress, JobStage, LiveMoveReport, RehearsalReport};
use lparmover::model::{LparNumber, LparStatus, MigrationPath, Mode};
use lparmover::mover::Progress;
use lparmover::ops::logs::{FleetLogEntry, LogFilter};
use lparmover::ops::moves::MoveEvent;
use lparmover::ops::recover::{RecoverySummary, describe_job};
use lparmover::ops::stall::{Headway, StallWatch};
use lparmover::ops::{CheckRequest, Destination};

use crate::command::{Event, HistoryView};
use crate::icons::Icon;

pub mod policies;
pub mod profile;
pub mod storage;

use profile::{ProfileForm, RegisteredHvm};

/// How long an HVM may take to answer a refresh before it shows "failed update".
pub const HVM_ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);

/// One registered HVM as the navigator knows it.
#[derive(Clone, Debug)]
pub struct HvmEntry {
    /// HVM name.
    pub name: String,
    /// Chassis.
    pub chassis: String,
    /// The last inventory it answered with (kept when a later update fails).
    pub inventory: Option<Inventory>,
    /// Why the last update failed (None: it succeeded, or none finished yet).
    pub error: Option<String>,
    /// Whether any update has finished.
    pub answered: bool,
}

impl HvmEntry {
    /// Table 7-1.
    pub fn icon(&self) -> Icon {
        if self.error.is_some() {
            return Icon::HvmUpdateFailed;
        }
        let Some(inv) = &self.inventory else {
            return Icon::HvmNormal;
        };
        let lpars = || inv.lpars.iter().map(LparView::shown_status);
        if lpars().any(|s| s == LparStatus::RequiresRecovery) {
            Icon::HvmRequiresRecovery
        } else if lpars().any(|s| s == LparStatus::Migrating) {
            Icon::HvmMigrating
        } else {
            Icon::HvmNormal
        }
    }

    fn free_numbers(&self, at_most: usize) -> Vec<LparNumber> {
        let Some(inv) = &self.inventory else {
            return Vec::new();
        };
        LparNumber::all()
            .filter(|n| inv.lpars.iter().all(|l| l.lpar.number != *n))
            .take(at_most)
            .collect()
    }
}

/// Table 7-2 for an LPAR of an HVM whose last update `failed` or not.
pub fn lpar_icon(view: &LparView, failed: bool) -> Icon {
    if failed {
        return Icon::LparUpdateFailed;
    }
    match view.shown_status() {
        LparStatus::Deactivated => Icon::LparDeactivated,
        LparStatus::Activated if wwn_unknown(view) => Icon::LparWwnUnknown,
        LparStatus::Activated if uses_migration_wwpns(view) => Icon::LparMigrationWwpn,
        LparStatus::Activated => Icon::LparActivated,
        LparStatus::Migrating => Icon::LparMigrating,
        LparStatus::RequiresRecovery => Icon::LparRequiresRecovery,
        LparStatus::Blocked => Icon::LparBlocked,
        LparStatus::WwnRollbackPending => Icon::LparWwnRollback,
    }
}

/// Tables 7-4 and 7-5: the State (Vfc) and State (Mig) icons of a vFC (none where its array
/// could not be asked).
pub fn registration_icons(
    row: &lparmover::storage::VfcRegistration,
) -> (Option<Icon>, Option<Icon>) {
    use lparmover::storage::{MigrationWwpnState as M, WwpnState as W};
    let vfc = match row.wwpn_state {
        W::Registered => Some(Icon::WwpnRegistered),
        W::Unregistered => Some(Icon::WwpnUnregistered),
        W::Unknown => None,
    };
    let mig = match row.migration_state {
        M::Registered => Some(Icon::MigWwpnRegistered),
        M::Unregistered => Some(Icon::MigWwpnUnregistered),
        M::Unregistrable => Some(Icon::MigWwpnUnregistrable),
        M::Unknown => None,
    };
    (vfc, mig)
}

/// Whether the array one of the LPAR's vFCs logs in at cannot be asked (table 7-2's "the state
/// of assigned WWNs is Unknown").
fn wwn_unknown(view: &LparView) -> bool {
    view.fabric
        .iter()
        .any(|f| matches!(f.state, lparmover::api::FabricLoginState::Unknown { .. }))
}

/// Whether the LPAR reaches its LUs through a migration WWPN right now.
fn uses_migration_wwpns(view: &LparView) -> bool {
    view.lpar
        .vfcs
        .iter()
        .any(|v| view.fc_logins.contains(&v.migration_wwpn))
}

/// Which tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Source tree: LPARs to move.
    Source,
    /// Destination tree: HVMs, Auto and free LPAR numbers.
    Destination,
}

impl Side {
    /// The prefix of the tree rows' accessibility labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Source => "Source",
            Self::Destination => "Destination",
        }
    }
}

/// What a tree row stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A chassis (expandable).
    Chassis(String),
    /// An HVM (expandable).
    Hvm(String),
    /// An existing LPAR.
    Lpar {
        /// Its HVM.
        hvm: String,
        /// Its number.
        number: LparNumber,
        /// Its name.
        name: String,
    },
    /// "Auto": the youngest free LPAR number of the HVM.
    Auto(String),
    /// A free LPAR number.
    Free {
        /// The HVM.
        hvm: String,
        /// The number.
        number: LparNumber,
    },
}

/// One visible row of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeRow {
    /// Indentation level.
    pub depth: u8,
    /// What it is.
    pub kind: RowKind,
    /// Text shown.
    pub text: String,
    /// Accessibility label (unique across both trees).
    pub label: String,
    /// State icon.
    pub icon: Icon,
    /// Hover text.
    pub hover: String,
    /// Whether clicking picks it.
    pub selectable: bool,
    /// Whether it has children and whether they show.
    pub expanded: Option<bool>,
}

/// The LPAR picked in the source tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePick {
    /// HVM.
    pub hvm: String,
    /// LPAR number.
    pub number: LparNumber,
    /// LPAR name.
    pub name: String,
}

impl SourcePick {
    /// As the library names it.
    pub fn lpar_ref(&self) -> LparRef {
        LparRef {
            hvm: self.hvm.clone(),
            lpar: LparSelector::Number(self.number),
        }
    }
}

/// State of Show Config.
#[derive(Clone, Debug, Default)]
pub enum CheckState {
    /// Not run for the current pick.
    #[default]
    NotRun,
    /// Running.
    Running(CheckRequest),
    /// Finished.
    Done(CheckRequest, Box<CheckReport>),
    /// Could not run.
    Failed(CheckRequest, String),
}

/// How a stage of a move stands (table 7-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStatus {
    /// Not reached yet.
    Queued,
    /// Running.
    InProgress,
    /// Done.
    Done,
    /// Failed here.
    Failed,
    /// Failed here and being rolled back.
    Terminating,
}

impl StageStatus {
    /// Table 7-3's icon.
    pub fn icon(self) -> Icon {
        match self {
            Self::Queued => Icon::ExecQueued,
            Self::InProgress => Icon::ExecInProgress,
            Self::Done => Icon::ExecDone,
            Self::Failed => Icon::ExecFailed,
            Self::Terminating => Icon::ExecTerminating,
        }
    }
}

/// One progress sample for the plots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the move started.
    pub t_s: f64,
    /// Pre-copy round.
    pub round: u32,
    /// Memory throughput, MB/s.
    pub throughput_mbps: f64,
    /// Guest dirty rate, MB/s.
    pub dirty_mbps: f64,
    /// Memory still to send, MB.
    pub remaining_mb: f64,
}

/// How a move ended.
#[derive(Clone, Debug)]
pub enum MoveOutcome {
    /// Live move done.
    Live(Box<LiveMoveReport>),
    /// Shutdown-mode move done.
    Shutdown(Box<ColdMoveReport>),
    /// Failed (and settled as the text says).
    Failed(String),
}

/// A move the navigator started (running or finished).
#[derive(Clone, Debug)]
pub struct MoveView {
    /// The LPAR.
    pub lpar: String,
    /// Source HVM.
    pub source: String,
    /// Destination HVM.
    pub destination: String,
    /// Live or Shutdown mode.
    pub live: bool,
    /// Job id, once known.
    pub job: Option<String>,
    /// Stage reached last.
    pub stage: Option<JobStage>,
    /// Stages so far, each with its status.
    pub stages: Vec<(String, StageStatus)>,
    /// Latest mover figures.
    pub latest: Option<Progress>,
    /// For the plots.
    pub samples: Vec<Sample>,
    /// Started at (model time).
    pub started: Duration,
    /// The stall rule's watch.
    pub stall: StallWatch,
    /// Lines worth showing (settled jobs, cancel / extend answers).
    pub notes: Vec<String>,
    /// Set when it ended.
    pub outcome: Option<MoveOutcome>,
    /// A cancel was asked for.
    pub cancel_requested: bool,
}

impl MoveView {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.outcome.is_none()
    }

    /// Whether the commit point has passed (a cancel would be refused; closing must wait).
    pub fn past_commit(&self) -> bool {
        self.stage.is_some_and(JobStage::is_past_commit)
    }

    /// Whether Cancel and Extend timeout apply now (while memory moves).
    pub fn memory_moving(&self) -> bool {
        self.running() && matches!(self.stage, Some(JobStage::Transferring))
    }

    /// The stall verdict at `now`.
    pub fn headway(&self, now: Duration) -> Headway {
        if !self.running() {
            return Headway::Moving;
        }
        self.stall.headway(now)
    }

    fn observe(&mut self, now: Duration, p: &JobProgress) {
        self.job = Some(p.job.clone());
        self.stall.observe(now, p);
        if self.stage != Some(p.stage) {
            if let Some(last) = self.stages.last_mut() {
                last.1 = StageStatus::Done;
            }
            let failing = p.stage == JobStage::RollingBack;
            if failing && let Some(last) = self.stages.last_mut() {
                last.1 = StageStatus::Failed;
            }
            let status = if p.stage == JobStage::Completed {
                StageStatus::Done
            } else if failing {
                StageStatus::Terminating
            } else {
                StageStatus::InProgress
            };
            self.stages.push((p.stage.display(), status));
            self.stage = Some(p.stage);
        }
        if let Some(m) = &p.mover {
            self.samples.push(Sample {
                t_s: now.saturating_sub(self.started).as_secs_f64(),
                round: m.round,
                throughput_mbps: m.memory_throughput_mbps,
                dirty_mbps: m.dirty_rate_mbps,
                remaining_mb: m.bytes_remaining as f64 / 1e6,
            });
            self.latest = Some(m.clone());
        }
    }

    fn finish(&mut self, outcome: MoveOutcome) {
        let failed = matches!(outcome, MoveOutcome::Failed(_));
        if let Some(last) = self.stages.last_mut()
            && last.1 != StageStatus::Done
        {
            last.1 = if failed {
                StageStatus::Failed
            } else {
                StageStatus::Done
            };
        }
        if !failed
            && self
                .stages
                .last()
                .is_none_or(|s| !s.0.contains("completed"))
        {
            self.stages
                .push((JobStage::Completed.display(), StageStatus::Done));
        }
        self.outcome = Some(outcome);
    }
}

/// A long-running request whose answer a window shows.
#[derive(Clone, Debug, Default)]
pub enum Pending<T> {
    /// Not asked.
    #[default]
    Idle,
    /// Asked, no answer yet.
    Running,
    /// Answered.
    Done(T),
    /// Failed.
    Failed(String),
}

impl<T> Pending<T> {
    /// Whether an answer is awaited.
    pub fn running(&self) -> bool {
        matches!(self, Self::Running)
    }

    fn from(result: Result<T, String>) -> Self {
        match result {
            Ok(v) => Self::Done(v),
            Err(e) => Self::Failed(e),
        }
    }
}

/// The Migration Path Setting form (text as typed; parsed on Set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathForm {
    /// HVM.
    pub hvm: String,
    /// Path name.
    pub name: String,
    /// NIC segment, e.g. `1b`.
    pub segment: String,
    /// IPv4 address.
    pub ip: String,
    /// Prefix length.
    pub prefix: String,
    /// VLAN (empty: untagged).
    pub vlan: String,
    /// Primary use.
    pub primary: bool,
}

impl PathForm {
    /// The path the form describes, or what is wrong with it (the HVM checks the rest).
    pub fn path(&self) -> Result<MigrationPath, String> {
        if self.hvm.is_empty() {
            return Err("Pick an HVM.".into());
        }
        let name = self.name.trim();
        if name.is_empty() {
            return Err("Give the path a name.".into());
        }
        let segment = self
            .segment
            .trim()
            .parse()
            .map_err(|e| format!("NIC segment {:?}: {e}", self.segment))?;
        let ip = self
            .ip
            .trim()
            .parse()
            .map_err(|_| format!("IPv4 address {:?} is not like 127.0.2.9", self.ip))?;
        let prefix = self
            .prefix
            .trim()
            .parse::<u8>()
            .map_err(|_| format!("prefix {:?} is not a number from 8 to 30", self.prefix))?;
        let vlan = match self.vlan.trim() {
            "" => None,
            v => Some(
                v.parse::<u16>()
                    .map_err(|_| format!("VLAN {v:?} is not a number from 1 to 4094"))?,
            ),
        };
        Ok(MigrationPath {
            name: name.to_owned(),
            primary: self.primary,
            segment,
            ip,
            prefix,
            vlan,
        })
    }
}

/// Which windows are open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenWindows {
    /// Migration Config Viewer.
    pub config_viewer: bool,
    /// Migration Progress.
    pub progress: bool,
    /// Rehearsal.
    pub rehearsal: bool,
    /// Connectivity Test.
    pub connectivity: bool,
    /// Recovery.
    pub recovery: bool,
    /// Rollback WWN.
    pub rollback_wwn: bool,
    /// Migration History.
    pub history: bool,
    /// System Logs.
    pub logs: bool,
    /// Migration Path Setting.
    pub path_setting: bool,
    /// Profile (register HVMs).
    pub profile: bool,
    /// Migration Policy.
    pub policy: bool,
    /// WWN Setting (every vFC's WWPN and migration-WWPN registration).
    pub wwn_setting: bool,
}

/// What closing the app would do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseDecision {
    /// Nothing runs: close.
    Close,
    /// A move runs before its commit point: ask (cancel and quit, or keep waiting).
    AskCancelOrWait,
    /// A move passed its commit point: wait for it to finish.
    WaitForCommit,
}

/// The whole app state.
#[derive(Clone, Debug)]
pub struct Model {
    /// Fleet name.
    pub fleet: String,
    /// Registered HVMs in profile order.
    pub hvms: Vec<HvmEntry>,
    /// Whether a refresh is under way.
    pub refreshing: bool,
    /// How long each finished refresh took (every HVM answered or failed), oldest first.
    pub refreshes: Vec<Duration>,
    /// Migration mode chosen on the Migration tab.
    pub mode: Mode,
    /// Processor group on the destination (Shutdown mode; None: the LPAR's own).
    pub processor_group: Option<u8>,
    /// Shutdown mode: shut the guest OS down remotely.
    pub remote_shutdown: bool,
    /// Shutdown mode: activate on the destination.
    pub activate_after: bool,
    /// Source pick.
    pub source: Option<SourcePick>,
    /// Destination pick.
    pub destination: Option<Destination>,
    /// Expanded chassis and HVM nodes, per tree.
    expanded: BTreeSet<(bool, String)>,
    /// Tree rows cached until the fleet or the expansion changes.
    tree_cache: [Option<Vec<TreeRow>>; 2],
    /// Show Config.
    pub check: CheckState,
    /// The move started last.
    pub current_move: Option<MoveView>,
    /// Rehearsal.
    pub rehearsal: Pending<RehearsalReport>,
    /// Connectivity Test.
    pub connectivity: Pending<ConnectivityReport>,
    /// Recovery Execute.
    pub recovery: Pending<RecoverySummary>,
    /// WWN Status List.
    pub wwn_rollbacks: Pending<Vec<PendingRollback>>,
    /// Last Rollback WWN.
    pub rollback: Pending<String>,
    /// WWN Setting: the registration of every vFC.
    pub wwn_status: Pending<lparmover::ops::storage::WwnStatus>,
    /// WWN Setting: the last registration change.
    pub wwn_change: Pending<String>,
    /// WWN Setting: where Export CSV writes.
    pub wwn_csv_path: String,
    /// WWN Setting: the last export.
    pub wwn_csv: Pending<String>,
    /// WWN Setting: arrays, Add Storage, Password Setting, nickname editing.
    pub storage: storage::StorageSetting,
    /// Migration Policy: saved policies, the one edited, the run.
    pub policies: policies::PolicyWindow,
    /// Migration History.
    pub history: Pending<HistoryView>,
    /// LPAR the history window asks for (empty: all).
    pub history_lpar: String,
    /// System Logs.
    pub logs: Pending<Vec<FleetLogEntry>>,
    /// System Logs filter.
    pub log_filter: LogFilter,
    /// Migration Path Setting form.
    pub path_form: PathForm,
    /// Last Migration Path Setting change.
    pub path_change: Pending<String>,
    /// The profile's HVMs as the Profile window lists them.
    pub registered: Vec<RegisteredHvm>,
    /// The Profile window's registration form.
    pub profile_form: ProfileForm,
    /// The last registration or removal.
    pub profile_change: Pending<String>,
    /// Open windows.
    pub open: OpenWindows,
    /// What happened at start-up and since, newest last (status bar).
    pub notices: Vec<String>,
    /// The close dialog is showing.
    pub close_dialog: bool,
}

impl Model {
    /// A model for the profile's HVMs, none answered yet.
    pub fn new(fleet: &str, hvms: impl IntoIterator<Item = (String, String)>) -> Self {
        let hvms: Vec<HvmEntry> = hvms
            .into_iter()
            .map(|(name, chassis)| HvmEntry {
                name,
                chassis,
                inventory: None,
                error: None,
                answered: false,
            })
            .collect();
        let mut expanded = BTreeSet::new();
        // A small fleet opens fully expanded; a large one shows its HVMs, LPARs folded.
        let open_all = hvms.len() <= 16;
        for side in [true, false] {
            for h in &hvms {
                expanded.insert((side, format!("c:{}", h.chassis)));
                if open_all {
                    expanded.insert((side, format!("h:{}", h.name)));
                }
            }
        }
        Self {
            fleet: fleet.to_owned(),
            hvms,
            refreshing: false,
            refreshes: Vec::new(),
            mode: Mode::ConcurrentMaintenance,
            processor_group: None,
            remote_shutdown: false,
            activate_after: true,
            source: None,
            destination: None,
            expanded,
            tree_cache: [None, None],
            check: CheckState::NotRun,
            current_move: None,
            rehearsal: Pending::Idle,
            connectivity: Pending::Idle,
            recovery: Pending::Idle,
            wwn_rollbacks: Pending::Idle,
            rollback: Pending::Idle,
            wwn_status: Pending::Idle,
            wwn_change: Pending::Idle,
            wwn_csv_path: std::env::temp_dir()
                .join("lparmover-wwn.csv")
                .display()
                .to_string(),
            wwn_csv: Pending::Idle,
            storage: storage::StorageSetting::default(),
            policies: policies::PolicyWindow::default(),
            history: Pending::Idle,
            history_lpar: String::new(),
            logs: Pending::Idle,
            log_filter: LogFilter::default(),
            path_form: PathForm {
                prefix: "24".into(),
                ..PathForm::default()
            },
            path_change: Pending::Idle,
            registered: Vec::new(),
            profile_form: ProfileForm::default(),
            profile_change: Pending::Idle,
            open: OpenWindows::default(),
            notices: Vec::new(),
            close_dialog: false,
        }
    }

    /// The model of a profile's fleet, none of its HVMs answered yet.
    pub fn for_profile(profile: &lparmover::profile::Profile) -> Self {
        let mut model = Self::new(
            &profile.fleet,
            profile
                .hvms
                .iter()
                .map(|h| (h.name.clone(), h.chassis.clone())),
        );
        model.registered = RegisteredHvm::list(profile);
        model
    }

    /// The profile changed (an HVM registered or removed): the trees follow it, keeping what
    /// the HVMs still registered last answered.
    pub fn set_profile(&mut self, profile: &lparmover::profile::Profile) {
        let small = profile.hvms.len() <= 16;
        let mut old: Vec<HvmEntry> = std::mem::take(&mut self.hvms);
        for h in &profile.hvms {
            let entry = match old
                .iter()
                .position(|e| e.name == h.name && e.chassis == h.chassis)
            {
                Some(i) => old.swap_remove(i),
                None => {
                    for side in [true, false] {
                        self.expanded.insert((side, format!("c:{}", h.chassis)));
                        if small {
                            self.expanded.insert((side, format!("h:{}", h.name)));
                        }
                    }
                    HvmEntry {
                        name: h.name.clone(),
                        chassis: h.chassis.clone(),
                        inventory: None,
                        error: None,
                        answered: false,
                    }
                }
            };
            self.hvms.push(entry);
        }
        let gone = |hvm: &str| !profile.hvms.iter().any(|h| h.name == hvm);
        if self.source.as_ref().is_some_and(|s| gone(&s.hvm)) {
            self.source = None;
        }
        if self.destination.as_ref().is_some_and(|d| gone(&d.hvm)) {
            self.destination = None;
        }
        self.registered = RegisteredHvm::list(profile);
        self.tree_cache = [None, None];
    }

    /// "LPARs requiring recovery: N LPARs" — N.
    pub fn lpars_requiring_recovery(&self) -> usize {
        self.all_lpars()
            .filter(|(_, l)| l.shown_status() == LparStatus::RequiresRecovery)
            .count()
    }

    /// "LPARs with WWNs pending rollback: N LPARs" — N.
    pub fn lpars_with_wwns_pending_rollback(&self) -> usize {
        self.hvms
            .iter()
            .filter_map(|h| h.inventory.as_ref())
            .map(|i| i.wwn_rollbacks.len())
            .sum()
    }

    fn all_lpars(&self) -> impl Iterator<Item = (&HvmEntry, &LparView)> {
        self.hvms.iter().flat_map(|h| {
            h.inventory
                .iter()
                .flat_map(move |inv| inv.lpars.iter().map(move |l| (h, l)))
        })
    }

    /// Where an LPAR of this name runs now (Activated or Deactivated, not a leftover).
    pub fn find_lpar(&self, name: &str) -> Option<(&str, &LparView)> {
        self.all_lpars()
            .find(|(_, l)| l.lpar.name.as_str() == name)
            .map(|(h, l)| (h.name.as_str(), l))
    }

    /// The HVM entry of a name.
    pub fn hvm(&self, name: &str) -> Option<&HvmEntry> {
        self.hvms.iter().find(|h| h.name == name)
    }

    /// The check request the current picks make, if complete.
    pub fn check_request(&self) -> Option<CheckRequest> {
        Some(CheckRequest {
            source: self.source.as_ref()?.lpar_ref(),
            destination: self.destination.clone()?,
            mode: self.mode,
            processor_group: match self.mode {
                Mode::Shutdown => self.processor_group,
                Mode::ConcurrentMaintenance => None,
            },
        })
    }

    /// Whether Migration Execute may be pressed, or why not.
    pub fn migration_allowed(&self) -> Result<CheckRequest, String> {
        if self.current_move.as_ref().is_some_and(MoveView::running) {
            return Err("A migration is running; wait for it to finish.".into());
        }
        let Some(request) = self.check_request() else {
            return Err(
                "Pick an LPAR in the Source tree and an HVM (or LPAR number) in the Destination tree."
                    .into(),
            );
        };
        match &self.check {
            CheckState::Done(asked, report) if *asked == request => {
                let errors = report.blocking_errors();
                match errors.first() {
                    None => Ok(request),
                    Some(row) => Err(format!(
                        "Migration is disabled: {} Error row(s) stand in Show Config (first: {}). {}",
                        errors.len(),
                        row.item,
                        row.action
                            .as_deref()
                            .unwrap_or("Fix it and run Show Config again.")
                    )),
                }
            }
            CheckState::Running(asked) if *asked == request => {
                Err("Show Config is running; wait for its result.".into())
            }
            CheckState::Failed(asked, e) if *asked == request => {
                Err(format!("Show Config could not run: {e}"))
            }
            _ => Err("Run Show Config for this source and destination first.".into()),
        }
    }

    /// Picks a source LPAR (clicking the same one again keeps it).
    pub fn pick_source(&mut self, pick: SourcePick) {
        self.source = Some(pick);
    }

    /// Picks a destination.
    pub fn pick_destination(&mut self, destination: Destination) {
        self.destination = Some(destination);
    }

    /// Opens or closes a chassis or HVM node.
    pub fn toggle(&mut self, side: Side, kind: &RowKind) {
        let key = match kind {
            RowKind::Chassis(c) => format!("c:{c}"),
            RowKind::Hvm(h) => format!("h:{h}"),
            _ => return,
        };
        let key = (side == Side::Source, key);
        if !self.expanded.remove(&key) {
            self.expanded.insert(key);
        }
        self.tree_cache[side as usize] = None;
    }

    /// The visible rows of a tree (cached; rebuilt only when the fleet or expansion changed).
    pub fn tree(&mut self, side: Side) -> &[TreeRow] {
        let slot = side as usize;
        if self.tree_cache[slot].is_none() {
            self.tree_cache[slot] = Some(self.build_tree(side));
        }
        self.tree_cache[slot].as_deref().unwrap_or(&[])
    }

    fn is_expanded(&self, side: Side, key: String) -> bool {
        self.expanded.contains(&(side == Side::Source, key))
    }

    fn build_tree(&self, side: Side) -> Vec<TreeRow> {
        let mut rows = Vec::new();
        let mut chassis: Vec<&str> = Vec::new();
        for h in &self.hvms {
            if !chassis.contains(&h.chassis.as_str()) {
                chassis.push(&h.chassis);
            }
        }
        let prefix = side.label();
        for c in chassis {
            let open = self.is_expanded(side, format!("c:{c}"));
            rows.push(TreeRow {
                depth: 0,
                kind: RowKind::Chassis(c.to_owned()),
                text: format!("Chassis {c}"),
                label: format!("{prefix} chassis {c}"),
                icon: Icon::Chassis,
                hover: Icon::Chassis.hover().to_owned(),
                selectable: false,
                expanded: Some(open),
            });
            if !open {
                continue;
            }
            for h in self.hvms.iter().filter(|h| h.chassis == c) {
                let open = self.is_expanded(side, format!("h:{}", h.name));
                let icon = h.icon();
                let hover = match &h.error {
                    Some(e) => format!("{} {e}", icon.hover()),
                    None if !h.answered => "Waiting for the first status update.".to_owned(),
                    None => icon.hover().to_owned(),
                };
                rows.push(TreeRow {
                    depth: 1,
                    kind: RowKind::Hvm(h.name.clone()),
                    text: h.name.clone(),
                    label: format!("{prefix} {}", h.name),
                    icon,
                    hover,
                    selectable: side == Side::Destination,
                    expanded: Some(open),
                });
                if !open {
                    continue;
                }
                self.hvm_children(side, h, &mut rows);
            }
        }
        rows
    }

    fn hvm_children(&self, side: Side, h: &HvmEntry, rows: &mut Vec<TreeRow>) {
        let prefix = side.label();
        let failed = h.error.is_some();
        if side == Side::Destination {
            rows.push(TreeRow {
                depth: 2,
                kind: RowKind::Auto(h.name.clone()),
                text: "Auto".into(),
                label: format!("{prefix} {}/Auto", h.name),
                icon: Icon::Auto,
                hover: Icon::Auto.hover().to_owned(),
                selectable: !failed,
                expanded: None,
            });
        }
        let Some(inv) = &h.inventory else {
            return;
        };
        for l in &inv.lpars {
            let icon = lpar_icon(l, failed);
            let selectable = side == Side::Source
                && !failed
                && match self.mode {
                    Mode::ConcurrentMaintenance => l.shown_status() == LparStatus::Activated,
                    Mode::Shutdown => matches!(
                        l.shown_status(),
                        LparStatus::Activated | LparStatus::Deactivated
                    ),
                };
            let icon = if side == Side::Destination || selectable || failed {
                icon
            } else if matches!(
                l.shown_status(),
                LparStatus::Activated | LparStatus::Deactivated
            ) {
                Icon::LparNotSelectable
            } else {
                icon
            };
            rows.push(TreeRow {
                depth: 2,
                kind: RowKind::Lpar {
                    hvm: h.name.clone(),
                    number: l.lpar.number,
                    name: l.lpar.name.to_string(),
                },
                text: format!("{:>2} {}", l.lpar.number, l.lpar.name),
                label: format!("{prefix} {}/{}", h.name, l.lpar.name),
                icon,
                hover: format!(
                    "{} ({}, {} MiB, {})",
                    icon.hover(),
                    l.shown_status().label(),
                    l.lpar.memory_mib,
                    processors_label(l)
                ),
                selectable,
                expanded: None,
            });
        }
        if side == Side::Destination {
            for n in h.free_numbers(3) {
                rows.push(TreeRow {
                    depth: 2,
                    kind: RowKind::Free {
                        hvm: h.name.clone(),
                        number: n,
                    },
                    text: format!("{n:>2} (unassigned)"),
                    label: format!("{prefix} {}/{n}", h.name),
                    icon: Icon::LparUnassigned,
                    hover: Icon::LparUnassigned.hover().to_owned(),
                    selectable: !failed,
                    expanded: None,
                });
            }
        }
    }

    /// Folds one engine event into the state. `now` is the model clock (monotonic).
    pub fn apply(&mut self, now: Duration, event: Event) {
        match event {
            Event::StartupSettled(Ok(lines)) => {
                if lines.is_empty() {
                    self.notices
                        .push("Start-up: no unfinished migration to settle.".into());
                }
                for line in lines {
                    self.notices.push(format!("Start-up recovery: {line}"));
                }
            }
            Event::StartupSettled(Err(e)) => self
                .notices
                .push(format!("Start-up recovery could not run: {e}")),
            Event::RefreshStarted => self.refreshing = true,
            Event::RefreshDone(took) => {
                self.refreshing = false;
                self.refreshes.push(took);
            }
            Event::Hvm(snapshot) => self.apply_hvm(*snapshot),
            Event::CertificateSeen(result) => self.profile_form.fetched(result),
            Event::TokenImported(result) => self.profile_form.imported(result),
            Event::ProfileChanged(Ok((profile, said))) => {
                self.set_profile(&profile);
                if self.profile_form.seen().is_some_and(|c| {
                    profile
                        .hvms
                        .iter()
                        .any(|h| h.url.trim_end_matches('/') == c.url)
                }) {
                    let import_from = std::mem::take(&mut self.profile_form.import_from);
                    self.profile_form.clear();
                    self.profile_form.import_from = import_from;
                }
                self.notices.push(said.clone());
                self.profile_change = Pending::Done(said);
            }
            Event::ProfileChanged(Err(e)) => self.profile_change = Pending::Failed(e),
            Event::Checked(result) => {
                let request = match &self.check {
                    CheckState::Running(r) => r.clone(),
                    _ => return,
                };
                self.check = match *result {
                    Ok(report) => CheckState::Done(request, Box::new(report)),
                    Err(e) => CheckState::Failed(request, e),
                };
            }
            Event::MoveStarted {
                lpar,
                source,
                destination,
                live,
            } => {
                // A move named by number shows its LPAR's name.
                let lpar = lpar
                    .parse::<LparNumber>()
                    .ok()
                    .and_then(|n| {
                        self.hvm(&source)?
                            .inventory
                            .as_ref()?
                            .lpars
                            .iter()
                            .find(|l| l.lpar.number == n)
                            .map(|l| l.lpar.name.to_string())
                    })
                    .unwrap_or(lpar);
                self.current_move = Some(MoveView {
                    lpar,
                    source,
                    destination,
                    live,
                    job: None,
                    stage: None,
                    stages: Vec::new(),
                    latest: None,
                    samples: Vec::new(),
                    started: now,
                    stall: {
                        let mut w = StallWatch::default();
                        w.observe(
                            now,
                            &JobProgress {
                                job: String::new(),
                                stage: JobStage::Checking,
                                mover: None,
                            },
                        );
                        w
                    },
                    notes: Vec::new(),
                    outcome: None,
                    cancel_requested: false,
                });
                self.open.progress = true;
            }
            Event::Move(event) => {
                let Some(m) = &mut self.current_move else {
                    return;
                };
                match event {
                    MoveEvent::Progress(p) => m.observe(now, &p),
                    MoveEvent::Settled(r) => {
                        m.notes.push(format!("Settled first: {}", describe_job(&r)))
                    }
                    MoveEvent::SettleFailed(e) => m
                        .notes
                        .push(format!("Unfinished jobs could not be read: {e}")),
                    MoveEvent::Stage(s) => {
                        if let Some(last) = m.stages.last_mut() {
                            last.1 = StageStatus::Done;
                        }
                        m.stages.push((s, StageStatus::InProgress));
                    }
                }
            }
            Event::LiveMoveDone(result) => self.finish_move(match *result {
                Ok(r) => MoveOutcome::Live(Box::new(r)),
                Err(e) => MoveOutcome::Failed(e),
            }),
            Event::ShutdownMoveDone(result) => self.finish_move(match *result {
                Ok(r) => MoveOutcome::Shutdown(Box::new(r)),
                Err(e) => MoveOutcome::Failed(e),
            }),
            Event::CancelAnswer(text) | Event::ExtendAnswer(Ok(text) | Err(text)) => {
                if let Some(m) = &mut self.current_move {
                    m.notes.push(text);
                }
            }
            Event::Rehearsed(r) => self.rehearsal = Pending::from(*r),
            Event::Connectivity(r) => self.connectivity = Pending::from(*r),
            Event::Recovered(r) => self.recovery = Pending::from(*r),
            Event::RolledBack(r) => self.rollback = Pending::from(r),
            Event::WwnRollbacks(r) => self.wwn_rollbacks = Pending::from(r),
            Event::WwnStatus(r) => self.wwn_status = Pending::from(*r),
            Event::WwnChanged(r) => self.wwn_change = Pending::from(r),
            Event::WwnCsv(r) => self.wwn_csv = Pending::from(r),
            Event::Arrays(rows) => self.storage.arrays = Pending::Done(rows),
            Event::ArrayCertificate(r) => self.storage.add.fetched(r),
            Event::ArrayTokenImported(r) => self.storage.add.imported(r),
            Event::ArrayAdded(Ok(said)) => {
                self.storage.add.clear();
                self.storage.add.result = Pending::Done(said);
            }
            Event::ArrayAdded(Err(e)) => self.storage.add.result = Pending::Failed(e),
            Event::ArrayLogins(Ok(said)) => {
                self.storage.password.open = false;
                self.storage.password.rows.clear();
                self.storage.password.result = Pending::Done(said);
            }
            Event::ArrayLogins(Err(e)) => self.storage.password.result = Pending::Failed(e),
            Event::Policies(r) => {
                if let Ok(saved) = &r
                    && self.policies.selected.is_none()
                {
                    self.policies.selected = saved.first().map(|s| s.name.clone());
                }
                self.policies.saved = Pending::from(r);
            }
            Event::PolicySaved(r) => {
                if r.is_ok()
                    && let Some(d) = &mut self.policies.draft
                {
                    d.dirty = false;
                    self.policies.selected = Some(d.policy.name.to_string());
                }
                self.policies.note = Some(r);
            }
            Event::PolicyRun(e) => {
                if let Some(run) = &mut self.policies.run {
                    run.apply(e);
                }
            }
            Event::PolicyQuestion(q) => {
                if let Some(run) = &mut self.policies.run {
                    run.asked(q);
                }
            }
            Event::PolicyRunDone(r) => match &mut self.policies.run {
                Some(run) => run.ended(*r),
                None => self.policies.note = r.err().map(Err),
            },
            Event::EvacuationPlanned { hvm, plan } => {
                self.policies.evacuation_planned(&hvm, *plan);
            }
            Event::History(r) => self.history = Pending::from(*r),
            Event::Logs(r) => self.logs = Pending::from(r),
            Event::PathChanged(r) => self.path_change = Pending::from(r),
        }
    }

    fn finish_move(&mut self, outcome: MoveOutcome) {
        if !matches!(outcome, MoveOutcome::Failed(_)) {
            // The LPAR is elsewhere now: the old pick and its check no longer describe it.
            self.source = None;
            self.check = CheckState::NotRun;
        }
        if let Some(m) = &mut self.current_move {
            m.finish(outcome);
        }
        if self.close_dialog && self.close_decision() == CloseDecision::Close {
            self.notices
                .push("The move ended; the navigator closes.".into());
        }
    }

    fn apply_hvm(&mut self, snapshot: HvmSnapshot) {
        let Some(entry) = self.hvms.iter_mut().find(|h| h.name == snapshot.name) else {
            return;
        };
        entry.answered = true;
        match (snapshot.inventory, snapshot.error) {
            (Some(inv), _) => {
                entry.inventory = Some(inv);
                entry.error = None;
            }
            (None, Some(e)) => entry.error = Some(e.to_string()),
            (None, None) => entry.error = Some("no answer".into()),
        }
        self.tree_cache = [None, None];
    }

    /// What closing now would do (the close dialog asks accordingly).
    pub fn close_decision(&self) -> CloseDecision {
        match &self.current_move {
            Some(m) if m.running() && m.past_commit() => CloseDecision::WaitForCommit,
            Some(m) if m.running() => CloseDecision::AskCancelOrWait,
            _ => CloseDecision::Close,
        }
    }

    /// Invalidates the tree caches (the mode changed what is selectable).
    pub fn mode_changed(&mut self) {
        self.tree_cache = [None, None];
    }

    /// Marks Show Config as running for `request`.
    pub fn check_started(&mut self, request: CheckRequest) {
        self.check = CheckState::Running(request);
        self.open.config_viewer = true;
    }

    /// The Show Config report for the current picks, if there is one.
    pub fn current_report(&self) -> Option<&CheckReport> {
        match &self.check {
            CheckState::Done(_, report) => Some(report),
            _ => None,
        }
    }
}

fn processors_label(l: &LparView) -> String {
    let p = &l.lpar.processors;
    format!("{} {:?} processor(s), group {}", p.count, p.mode, p.group)
}

/// Whether an Error row stands in a report.
pub fn has_errors(report: &CheckReport) -> bool {
    report.rows.iter().any(|r| r.verdict == Verdict::Error)
}

#[cfg(test)]
mod tests;
