//! What the UI asks of the engine, and what the engine reports back. The windows only ever
//! push [`Command`]s; the engine only ever sends [`Event`]s.

use std::time::Duration;

use lparmover::api::MoveOptions;
use lparmover::checks::CheckReport;
use lparmover::connectivity::ConnectivityReport;
use lparmover::fleetview::{HvmSnapshot, LparRef};
use lparmover::history::HistoryEntry;
use lparmover::jobs::wwn::PendingRollback;
use lparmover::jobs::{ColdMoveReport, LiveMoveReport, RehearsalReport};
use lparmover::model::FcPort;
use lparmover::ops::logs::{FleetLogEntry, LogFilter};
use lparmover::ops::moves::{MoveEvent, ShutdownOptions};
use lparmover::ops::recover::RecoverySummary;
use lparmover::ops::register::{Registration, SeenCertificate};
use lparmover::ops::{CheckRequest, LparHistory, MoveTarget};

/// A request from the UI.
#[derive(Clone, Debug)]
pub enum Command {
    /// Ask every HVM for its inventory again.
    Refresh,
    /// Show Config: run the checks.
    Check(CheckRequest),
    /// Migration Execute, Concurrent Maintenance.
    MoveLive {
        /// What to move where.
        target: MoveTarget,
        /// Tunables.
        options: MoveOptions,
    },
    /// Migration Execute, Shutdown mode.
    MoveShutdown {
        /// What to move where.
        target: MoveTarget,
        /// Shutdown-mode options.
        options: ShutdownOptions,
    },
    /// Cancel the running live move.
    Cancel,
    /// Extend the running live move's timeout.
    Extend {
        /// By how much.
        by: Duration,
    },
    /// Rehearsal.
    Rehearse {
        /// The LPAR.
        source: LparRef,
        /// Destination HVM.
        destination: String,
    },
    /// Connectivity Test between two HVMs.
    ConnectivityTest {
        /// Source HVM.
        source: String,
        /// Destination HVM.
        destination: String,
    },
    /// Recovery Execute.
    Recover,
    /// Rollback WWN of one LPAR.
    RollbackWwn(LparRef),
    /// The WWN Status List.
    ListWwnRollbacks,
    /// Migration History (all, or of one LPAR).
    History(Option<String>),
    /// System Logs.
    Logs(LogFilter),
    /// Migration Path Setting: add or replace a path (by name) on an HVM.
    SetPath {
        /// HVM.
        hvm: String,
        /// The path.
        path: lparmover::model::MigrationPath,
    },
    /// Migration Path Setting: remove a path.
    RemovePath {
        /// HVM.
        hvm: String,
        /// Path name.
        name: String,
    },
    /// Profile: fetch the certificate an address presents (not trusted yet).
    FetchCertificate(String),
    /// Profile: take an HVM's token from a fleet profile.
    ImportToken {
        /// The fleet profile file.
        fleet_profile: std::path::PathBuf,
        /// HVM name to look for.
        name: String,
        /// Address to look for.
        url: String,
    },
    /// Profile: pin the confirmed certificate and register the HVM.
    Register(Registration),
    /// Profile: stop managing an HVM.
    Unregister(String),
    /// WWN Setting: the registration of every vFC.
    WwnStatus,
    /// WWN Setting: register (true) or remove (false) an LPAR's migration WWPNs.
    ChangeMigrationWwpns {
        /// The LPAR.
        lpar: LparRef,
        /// Register or remove.
        register: bool,
    },
    /// WWN Setting: write the CSV export to a file.
    ExportWwnCsv(std::path::PathBuf),
    /// WWN Setting: give a migration WWPN a nickname (None: the default one).
    RenameMigrationWwpn {
        /// The LPAR.
        lpar: LparRef,
        /// Its vFC.
        port: FcPort,
        /// The nickname.
        nickname: Option<String>,
    },
    /// Storage Selection: the arrays of the profile and what they answer.
    ListArrays,
    /// Add Storage: fetch the certificate an array's address presents.
    SearchArray(String),
    /// Add Storage: take the token a fleet profile holds for this address.
    ImportArrayToken {
        /// The fleet profile.
        fleet_profile: std::path::PathBuf,
        /// The array's URL.
        url: String,
    },
    /// Add Storage: pin the confirmed certificate and register the array.
    AddArray {
        /// The certificate seen and confirmed.
        certificate: SeenCertificate,
        /// Its API token.
        token: String,
    },
    /// Storage Password Setting: check these logins, keep them, and save them when asked.
    SetArrayLogins {
        /// Array and its user ID / password.
        logins: Vec<(String, lparmover::api::array::Credentials)>,
        /// "Save password setting".
        save: bool,
    },
    /// Migration Policy: the policies directory.
    ListPolicies,
    /// Migration Policy: Save (`replace`: over the policy of the same name) or Save as / New.
    SavePolicy {
        /// The policy.
        policy: Box<policy::Policy>,
        /// Replace a saved policy of that name.
        replace: bool,
    },
    /// Migration Policy: delete a saved policy.
    DeletePolicy(String),
    /// Migration Policy: Execute.
    RunPolicy(Box<policy::Policy>),
    /// Migration Policy: Stop (after the running entries).
    StopPolicy,
    /// Migration Policy: the answer to a failed entry.
    AnswerPolicyFailure(policy::runner::Decision),
    /// Migration Policy: the answer after Stop took effect.
    AnswerPolicyStop(policy::runner::Resume),
    /// Evacuate… on an HVM: plan the policies that empty it (nothing is saved).
    PlanEvacuation(String),
}

/// A report from the engine.
#[derive(Clone, Debug)]
pub enum Event {
    /// Settling unfinished jobs at start-up (before the first refresh) is done.
    StartupSettled(Result<Vec<String>, String>),
    /// A refresh started (`hvms` answers will follow, one per HVM).
    RefreshStarted,
    /// Every HVM asked by that refresh answered or failed, after this long.
    RefreshDone(Duration),
    /// One HVM answered (or failed / timed out).
    Hvm(Box<HvmSnapshot>),
    /// Show Config finished.
    Checked(Box<Result<CheckReport, String>>),
    /// A move started.
    MoveStarted {
        /// The LPAR as named.
        lpar: String,
        /// Source HVM.
        source: String,
        /// Destination HVM.
        destination: String,
        /// Whether it is live.
        live: bool,
    },
    /// Something a running move said.
    Move(MoveEvent),
    /// A live move ended.
    LiveMoveDone(Box<Result<LiveMoveReport, String>>),
    /// A Shutdown-mode move ended.
    ShutdownMoveDone(Box<Result<ColdMoveReport, String>>),
    /// What a cancel request did, in words.
    CancelAnswer(String),
    /// What an extend request did, in words.
    ExtendAnswer(Result<String, String>),
    /// A rehearsal ended.
    Rehearsed(Box<Result<RehearsalReport, String>>),
    /// A Connectivity Test ended.
    Connectivity(Box<Result<ConnectivityReport, String>>),
    /// Recovery Execute ended.
    Recovered(Box<Result<RecoverySummary, String>>),
    /// A Rollback WWN ended.
    RolledBack(Result<String, String>),
    /// The WWN Status List.
    WwnRollbacks(Result<Vec<PendingRollback>, String>),
    /// Migration History.
    History(Box<Result<HistoryView, String>>),
    /// System Logs.
    Logs(Result<Vec<FleetLogEntry>, String>),
    /// A Migration Path Setting change, in words.
    PathChanged(Result<String, String>),
    /// Profile: the certificate an address presented.
    CertificateSeen(Result<SeenCertificate, String>),
    /// Profile: a token imported from a fleet profile.
    TokenImported(Result<String, String>),
    /// Profile: a registration or removal took effect (the profile now, and what happened),
    /// or why nothing changed.
    ProfileChanged(Result<(Box<lparmover::profile::Profile>, String), String>),
    /// WWN Setting: the registration of every vFC.
    WwnStatus(Box<Result<lparmover::ops::storage::WwnStatus, String>>),
    /// WWN Setting: what a registration change did, in words.
    WwnChanged(Result<String, String>),
    /// WWN Setting: where the CSV went.
    WwnCsv(Result<String, String>),
    /// The arrays of the profile.
    Arrays(Vec<lparmover::ops::arrays::ArrayRow>),
    /// The certificate an array's address presented.
    ArrayCertificate(Result<SeenCertificate, String>),
    /// An array token imported from a fleet profile.
    ArrayTokenImported(Result<String, String>),
    /// What Add Storage did.
    ArrayAdded(Result<String, String>),
    /// What Storage Password Setting did.
    ArrayLogins(Result<String, String>),
    /// The policies directory.
    Policies(Result<Vec<crate::model::policies::SavedPolicy>, String>),
    /// What Save / Save as / Delete did.
    PolicySaved(Result<String, String>),
    /// Something the running policy said.
    PolicyRun(policy::runner::RunEvent),
    /// The running policy asks the operator.
    PolicyQuestion(crate::model::policies::RunQuestion),
    /// The policy run ended (its report), or could not run.
    PolicyRunDone(Box<Result<policy::RunReport, String>>),
    /// The evacuation plan of an HVM, or why none could be made.
    EvacuationPlanned {
        /// The HVM to empty.
        hvm: String,
        /// The plan.
        plan: Box<Result<policy::evacuate::Evacuation, String>>,
    },
}

/// What the Migration History window shows.
#[derive(Clone, Debug)]
pub enum HistoryView {
    /// Every migration instance, newest first.
    All(Vec<HistoryEntry>),
    /// One LPAR's Now / old1 … and rehearsals.
    Lpar(LparHistory),
}
