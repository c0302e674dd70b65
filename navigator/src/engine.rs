//! The background engine: a tokio runtime that runs the UI's [`Command`]s through the same
//! `lparmover::ops` operations the CLI calls and sends [`Event`]s back, waking the UI with a
//! repaint. The UI thread never waits on it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use lparmover::api::HvmClient;
use lparmover::connectivity::ProbeLimits;
use lparmover::dirs::ManagerDirs;
use lparmover::emg::{Emg, EmgError};
use lparmover::fleetview::HvmSnapshot;
use lparmover::history::{Actor, Origin};
use lparmover::ops::moves::{self, CancelOutcome, MoveControl, MoveEvent};
use lparmover::ops::recover::{self, describe_job};
use lparmover::ops::register;
use lparmover::ops::{self, Endpoints};
use lparmover::profile::Profile;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{Instrument, info_span, warn};

use crate::command::{Command, Event, HistoryView};
use crate::model::HVM_ANSWER_TIMEOUT;

/// How often the fleet is refreshed on its own.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// Wakes the UI (a repaint) when an event is waiting.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The handle the UI holds.
pub struct Engine {
    commands: UnboundedSender<Command>,
    events: mpsc::Receiver<Event>,
    running_move: Arc<Mutex<Option<RunningMove>>>,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The engine's threads yield to the UI thread: refreshing hundreds of HVMs must never make
/// a frame wait for a core.
fn lower_this_threads_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes its
    // scheduling priority.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, u32::try_from(tid).unwrap_or(0), 10);
    }
}

#[derive(Clone)]
struct RunningMove {
    control: MoveControl,
    source: String,
    job: Arc<Mutex<Option<String>>>,
}

#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Event>,
    wake: Waker,
}

impl Outbox {
    fn send(&self, event: Event) {
        if self.tx.send(event).is_ok() {
            (self.wake)();
        }
    }
}

impl Engine {
    /// Starts the engine for the profile read from `profile_path` (where the Profile window
    /// writes registrations). `settle_first` settles unfinished jobs before the
    /// first refresh and reports what it did.
    pub fn start(
        profile: Profile,
        profile_path: PathBuf,
        wake: Waker,
        settle_first: bool,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("navigator-engine")
            .on_thread_start(lower_this_threads_priority)
            .enable_all()
            .build()?;
        let (commands, rx) = unbounded_channel();
        let (tx, events) = mpsc::channel();
        let outbox = Outbox { tx, wake };
        let running_move = Arc::new(Mutex::new(None));
        let worker = Worker {
            shared_profile: Arc::new(RwLock::new(Arc::new(profile))),
            profile_path,
            outbox,
            clients: Arc::new(Mutex::new(HashMap::new())),
            in_flight: Arc::new(Mutex::new(std::collections::HashSet::new())),
            running_move: running_move.clone(),
            policy_run: Arc::new(Mutex::new(None)),
            actor: Arc::new(Actor::of_this_process(Origin::Navigator)),
        };
        runtime.spawn(worker.run(rx, settle_first));
        Ok(Self {
            commands,
            events,
            running_move,
            _runtime: runtime,
        })
    }

    /// Queues a command (never blocks).
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The next waiting event, if any (never blocks).
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Cancels the running move at once (used when the app quits before the commit point).
    pub fn cancel_running_move(&self) -> Option<CancelOutcome> {
        let running = self.running_move.lock().ok()?.clone()?;
        Some(running.control.cancel())
    }
}

enum PathChange {
    Set(lparmover::model::MigrationPath),
    Remove(String),
}

#[derive(Clone)]
struct Worker {
    /// Swapped whole when the Profile window registers or removes an HVM.
    shared_profile: Arc<RwLock<Arc<Profile>>>,
    /// Where registrations are written (the profile the app opened).
    profile_path: PathBuf,
    outbox: Outbox,
    clients: Arc<Mutex<HashMap<String, HvmClient>>>,
    in_flight: Arc<Mutex<std::collections::HashSet<String>>>,
    running_move: Arc<Mutex<Option<RunningMove>>>,
    policy_run: Arc<Mutex<Option<PolicyRunHandle>>>,
    /// Whoever runs the navigator: the history records it for every move and trial.
    actor: Arc<Actor>,
}

/// The policy run in progress: its Stop, and the reply the runner waits for.
struct PolicyRunHandle {
    control: policy::RunControl,
    reply: Option<PolicyReply>,
}

enum PolicyReply {
    Failure(tokio::sync::oneshot::Sender<policy::runner::Decision>),
    Stop(tokio::sync::oneshot::Sender<policy::runner::Resume>),
}

impl Worker {
    /// The profile as it is now.
    fn profile(&self) -> Arc<Profile> {
        match self.shared_profile.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `profile` the one every later command uses; forgets the clients of HVMs whose
    /// entry changed (a new certificate or token) or went away.
    fn replace_profile(&self, profile: Profile) {
        let old = self.profile();
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|name, _| {
                old.hvms.iter().find(|h| &h.name == name)
                    == profile.hvms.iter().find(|h| &h.name == name)
            });
        }
        match self.shared_profile.write() {
            Ok(mut p) => *p = Arc::new(profile),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(profile),
        }
    }

    async fn run(self, mut rx: UnboundedReceiver<Command>, settle_first: bool) {
        if settle_first {
            let result = recover::settle_unfinished(&self.profile())
                .await
                .map(|reports| reports.iter().map(describe_job).collect())
                .map_err(|e| e.to_string());
            self.outbox.send(Event::StartupSettled(result));
        }
        self.refresh();
        let mut ticker = tokio::time::interval(REFRESH_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                _ = ticker.tick() => self.refresh(),
            }
        }
    }

    fn client(&self, name: &str) -> Result<HvmClient, String> {
        let mut clients = self.clients.lock().map_err(|e| e.to_string())?;
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        let profile = self.profile();
        let hvm = profile.hvm(name).map_err(|e| e.to_string())?;
        let client = HvmClient::new(hvm).map_err(|e| e.to_string())?;
        clients.insert(name.to_owned(), client.clone());
        Ok(client)
    }

    /// Asks every HVM at once; each answer (or timeout) is its own event, so a hung blade
    /// never delays the others, and an HVM whose last request still hangs is not asked again.
    fn refresh(&self) {
        self.outbox.send(Event::RefreshStarted);
        let started = std::time::Instant::now();
        let mut asked = Vec::new();
        let profile = self.profile();
        for hvm in &profile.hvms {
            let name = hvm.name.clone();
            if let Ok(mut in_flight) = self.in_flight.lock()
                && !in_flight.insert(name.clone())
            {
                continue;
            }
            let me = self.clone();
            let chassis = hvm.chassis.clone();
            let url = hvm.url.clone();
            asked.push(tokio::spawn(async move {
                let result = match me.client(&name) {
                    Ok(client) => {
                        match tokio::time::timeout(HVM_ANSWER_TIMEOUT, client.inventory()).await {
                            Ok(Ok(inv)) => Ok(inv),
                            Ok(Err(e)) => Err(e.emg()),
                            Err(_) => Err(EmgError::new(
                                Emg::ConnectionRefusedMms,
                                format!(
                                    "HVM {name} did not answer within {:.1} s",
                                    HVM_ANSWER_TIMEOUT.as_secs_f64()
                                ),
                            )),
                        }
                    }
                    Err(e) => Err(EmgError::new(Emg::ConnectionRefusedMms, e)),
                };
                if let Ok(mut in_flight) = me.in_flight.lock() {
                    in_flight.remove(&name);
                }
                let (inventory, error) = match result {
                    Ok(inv) => (Some(inv), None),
                    Err(e) => (None, Some(e)),
                };
                me.outbox.send(Event::Hvm(Box::new(HvmSnapshot {
                    name,
                    chassis,
                    url,
                    inventory,
                    error,
                })));
            }));
        }
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            futures::future::join_all(asked).await;
            outbox.send(Event::RefreshDone(started.elapsed()));
        });
    }

    fn handle(&self, command: Command) {
        let me = self.clone();
        match command {
            Command::Refresh => self.refresh(),
            Command::Check(request) => {
                tokio::spawn(async move {
                    let result = ops::check(&me.profile(), &request)
                        .await
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::Checked(Box::new(result)));
                });
            }
            Command::MoveLive { target, options } => {
                tokio::spawn(async move { me.move_live(target, options).await });
            }
            Command::MoveShutdown { target, options } => {
                tokio::spawn(async move {
                    let Some(endpoints) = me.announce(&target, false) else {
                        return;
                    };
                    let outbox = me.outbox.clone();
                    let result = moves::shutdown(&me.profile(), &me.actor, &target, options, |e| {
                        outbox.send(Event::Move(e));
                    })
                    .instrument(info_span!("navigator move", lpar = %endpoints.source))
                    .await
                    .map_err(|e| e.to_string());
                    me.outbox.send(Event::ShutdownMoveDone(Box::new(result)));
                    me.refresh();
                });
            }
            Command::Cancel => {
                let answer = match self.running_move.lock().ok().and_then(|m| m.clone()) {
                    None => "No migration is running.".to_owned(),
                    Some(m) => match m.control.cancel() {
                        CancelOutcome::Cancelling => {
                            "Cancelling: the source keeps running, the destination scrubs what it received.".to_owned()
                        }
                        CancelOutcome::PastCommit => {
                            "Cancel refused: the move passed its commit point; the destination is authoritative and the move completes.".to_owned()
                        }
                    },
                };
                self.outbox.send(Event::CancelAnswer(answer));
            }
            Command::Extend { by } => {
                tokio::spawn(async move {
                    let running = me.running_move.lock().ok().and_then(|m| m.clone());
                    let result = match running {
                        None => Err("No migration is running.".to_owned()),
                        Some(m) => {
                            let job = m.job.lock().ok().and_then(|j| j.clone());
                            match job {
                                None => {
                                    Err("The move has no job yet; try again in a moment."
                                        .to_owned())
                                }
                                Some(job) => moves::extend(
                                    &me.profile(),
                                    &m.source,
                                    &job,
                                    by.as_secs(),
                                )
                                .await
                                .map(|s| {
                                    format!(
                                        "Timeout extended by {} s; the move now times out in {} s.",
                                        by.as_secs(),
                                        s.progress.map_or(0, |p| p.timeout_in_s)
                                    )
                                })
                                .map_err(|e| format!("Extend timeout failed: {e}")),
                            }
                        }
                    };
                    me.outbox.send(Event::ExtendAnswer(result));
                });
            }
            Command::Rehearse {
                source,
                destination,
            } => {
                tokio::spawn(async move {
                    let result = ops::rehearse(
                        &me.profile(),
                        &me.actor,
                        &source,
                        &destination,
                        &lparmover::api::MoveOptions::default(),
                    )
                    .await
                    .map_err(|e| e.to_string());
                    me.outbox.send(Event::Rehearsed(Box::new(result)));
                });
            }
            Command::ConnectivityTest {
                source,
                destination,
            } => {
                tokio::spawn(async move {
                    let result = ops::connectivity_test(
                        &me.profile(),
                        &me.actor,
                        &source,
                        &destination,
                        ProbeLimits::default(),
                    )
                    .await
                    .map_err(|e| e.emg().to_string());
                    me.outbox.send(Event::Connectivity(Box::new(result)));
                });
            }
            Command::Recover => {
                tokio::spawn(async move {
                    let result = recover::recover_all(&me.profile(), None)
                        .await
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::Recovered(Box::new(result)));
                    me.refresh();
                });
            }
            Command::RollbackWwn(target) => {
                tokio::spawn(async move {
                    let result = recover::rollback_wwn(&me.profile(), &target)
                        .await
                        .map(|r| format!("LPAR {}/{}: {}", r.hvm, r.lpar, r.detail))
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::RolledBack(result));
                    me.list_wwn_rollbacks().await;
                    me.refresh();
                });
            }
            Command::SetPath { hvm, path } => {
                tokio::spawn(async move { me.change_path(hvm, PathChange::Set(path)).await });
            }
            Command::RemovePath { hvm, name } => {
                tokio::spawn(async move { me.change_path(hvm, PathChange::Remove(name)).await });
            }
            Command::FetchCertificate(url) => {
                tokio::task::spawn_blocking(move || {
                    let result = register::fetch_certificate(&url).map_err(|e| e.to_string());
                    me.outbox.send(Event::CertificateSeen(result));
                });
            }
            Command::ImportToken {
                fleet_profile,
                name,
                url,
            } => {
                tokio::task::spawn_blocking(move || {
                    let result = register::import_token(&fleet_profile, &name, &url)
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::TokenImported(result));
                });
            }
            Command::Register(registration) => {
                tokio::spawn(async move {
                    let name = registration.name.trim().to_owned();
                    let fingerprint = registration.certificate.fingerprint.clone();
                    let result = register::register(&me.profile_path, registration)
                        .await
                        .map(|profile| {
                            me.replace_profile(profile.clone());
                            let said = format!(
                                "Registered {name}: certificate {fingerprint} pinned, profile {} saved (owner-only).",
                                me.profile_path.display()
                            );
                            (Box::new(profile), said)
                        })
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::ProfileChanged(result));
                    me.refresh();
                });
            }
            Command::Unregister(name) => {
                tokio::task::spawn_blocking(move || {
                    let result = register::unregister(&me.profile_path, &name)
                        .map(|profile| {
                            me.replace_profile(profile.clone());
                            (
                                Box::new(profile),
                                format!("Removed {name} from the profile; its LPARs keep running where they are."),
                            )
                        })
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::ProfileChanged(result));
                });
            }
            Command::WwnStatus => {
                tokio::spawn(async move { me.wwn_status().await });
            }
            Command::ChangeMigrationWwpns { lpar, register } => {
                tokio::spawn(async move {
                    let profile = me.profile();
                    let result = if register {
                        lparmover::ops::storage::register_migration(&profile, &lpar).await
                    } else {
                        lparmover::ops::storage::remove_migration(&profile, &lpar).await
                    };
                    let result = result
                        .map(|steps| {
                            let changed = steps.iter().filter(|s| s.changed).count();
                            format!(
                                "{lpar}: migration WWPNs {} in {changed} of {} host group entries",
                                if register { "registered" } else { "removed" },
                                steps.len()
                            )
                        })
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::WwnChanged(result));
                    me.wwn_status().await;
                });
            }
            Command::ExportWwnCsv(path) => {
                tokio::spawn(async move {
                    let result = match lparmover::ops::storage::wwn_status(&me.profile(), None)
                        .await
                    {
                        Ok(status) => {
                            let csv = lparmover::storage::export_csv(&status.rows);
                            let target = path.clone();
                            tokio::task::spawn_blocking(move || {
                                lparmover::fsutil::write_atomic(&target, csv.as_bytes())
                            })
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                            .map(|()| {
                                format!("{} vFCs exported to {}", status.rows.len(), path.display())
                            })
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    me.outbox.send(Event::WwnCsv(result));
                });
            }
            Command::RenameMigrationWwpn {
                lpar,
                port,
                nickname,
            } => {
                tokio::spawn(async move {
                    let result = lparmover::ops::storage::rename_migration(
                        &me.profile(),
                        &lpar,
                        Some(port),
                        nickname.as_deref(),
                    )
                    .await
                    .map(|steps| {
                        format!(
                            "{lpar} vFC {port}: migration WWPN renamed in {} host group entries",
                            steps.len()
                        )
                    })
                    .map_err(|e| e.to_string());
                    me.outbox.send(Event::WwnChanged(result));
                    me.wwn_status().await;
                });
            }
            Command::ListArrays => {
                tokio::spawn(async move { me.list_arrays().await });
            }
            Command::SearchArray(url) => {
                tokio::task::spawn_blocking(move || {
                    let result = register::fetch_certificate(&url).map_err(|e| e.to_string());
                    me.outbox.send(Event::ArrayCertificate(result));
                });
            }
            Command::ImportArrayToken { fleet_profile, url } => {
                tokio::task::spawn_blocking(move || {
                    let result = lparmover::ops::arrays::import_token(&fleet_profile, &url)
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::ArrayTokenImported(result));
                });
            }
            Command::AddArray { certificate, token } => {
                tokio::spawn(async move {
                    let entry =
                        lparmover::ops::arrays::entry_from_certificate(&certificate, &token);
                    let result =
                        match lparmover::ops::arrays::add(&me.profile_path, entry, None).await {
                            Ok(info) => {
                                // What is on disk now, with the logins kept for this session.
                                me.reload_profile_keeping_logins();
                                Ok(format!(
                                    "Array {} ({} {}) added; its certificate is pinned.",
                                    info.name, info.model, info.serial
                                ))
                            }
                            Err(e) => Err(e.to_string()),
                        };
                    me.outbox.send(Event::ArrayAdded(result));
                    me.list_arrays().await;
                    me.wwn_status().await;
                });
            }
            Command::SetArrayLogins { logins, save } => {
                tokio::spawn(async move {
                    let mut said = Vec::new();
                    let mut failed = None;
                    for (array, credentials) in logins {
                        let user = credentials.user.clone();
                        match lparmover::ops::arrays::set_login(
                            &me.profile_path,
                            &me.profile(),
                            &array,
                            Some(credentials),
                            save,
                        )
                        .await
                        {
                            Ok(updated) => {
                                me.replace_profile(updated);
                                said.push(format!("{array}: logged in as {user}"));
                            }
                            Err(e) => {
                                failed = Some(format!("{array}: {e}"));
                                break;
                            }
                        }
                    }
                    let result = match failed {
                        Some(e) => Err(e),
                        None => Ok(format!(
                            "{}; {}.",
                            said.join(", "),
                            if save {
                                format!("saved in {} (mode 0600)", me.profile_path.display())
                            } else {
                                "kept for this session only".to_owned()
                            }
                        )),
                    };
                    me.outbox.send(Event::ArrayLogins(result));
                    me.list_arrays().await;
                    me.wwn_status().await;
                });
            }
            Command::ListPolicies => {
                tokio::task::spawn_blocking(move || me.list_policies());
            }
            Command::SavePolicy { policy, replace } => {
                tokio::task::spawn_blocking(move || {
                    let store = me.policy_store();
                    let result = if replace {
                        store.save(&policy)
                    } else {
                        store.save_as(&policy, policy.name.as_str())
                    }
                    .map(|path| format!("Saved policy {} ({}).", policy.name, path.display()))
                    .map_err(|e| e.to_string());
                    me.outbox.send(Event::PolicySaved(result));
                    me.list_policies();
                });
            }
            Command::DeletePolicy(name) => {
                tokio::task::spawn_blocking(move || {
                    let result = me
                        .policy_store()
                        .delete(&name)
                        .map(|()| format!("Deleted policy {name}."))
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::PolicySaved(result));
                    me.list_policies();
                });
            }
            Command::PlanEvacuation(hvm) => {
                tokio::spawn(async move {
                    let profile = me.profile();
                    let plan = policy::evacuate::plan(&profile, &hvm, None)
                        .instrument(info_span!("navigator evacuation", hvm = %hvm))
                        .await
                        .map_err(|e| e.to_string());
                    me.outbox.send(Event::EvacuationPlanned {
                        hvm,
                        plan: Box::new(plan),
                    });
                });
            }
            Command::RunPolicy(policy) => {
                tokio::spawn(async move { me.run_policy(*policy).await });
            }
            Command::StopPolicy => {
                if let Ok(run) = self.policy_run.lock()
                    && let Some(run) = run.as_ref()
                {
                    run.control.stop();
                }
            }
            Command::AnswerPolicyFailure(decision) => {
                if let Some(PolicyReply::Failure(tx)) = self.take_policy_reply() {
                    let _ = tx.send(decision);
                }
            }
            Command::AnswerPolicyStop(resume) => {
                if let Some(PolicyReply::Stop(tx)) = self.take_policy_reply() {
                    let _ = tx.send(resume);
                }
            }
            Command::ListWwnRollbacks => {
                tokio::spawn(async move { me.list_wwn_rollbacks().await });
            }
            Command::History(lpar) => {
                let dirs = ManagerDirs::for_profile(&me.profile());
                tokio::task::spawn_blocking(move || {
                    let result = match lpar {
                        Some(l) => ops::lpar_history(&dirs, &l).map(HistoryView::Lpar),
                        None => ops::history(&dirs, 200).map(HistoryView::All),
                    }
                    .map_err(|e| e.to_string());
                    me.outbox.send(Event::History(Box::new(result)));
                });
            }
            Command::Logs(filter) => {
                tokio::spawn(async move {
                    let (entries, unreachable) =
                        ops::logs::fleet_logs(&me.profile(), &filter, 500).await;
                    let result = if entries.is_empty() && !unreachable.is_empty() {
                        Err(unreachable
                            .iter()
                            .map(|(h, e)| format!("{h}: {e}"))
                            .collect::<Vec<_>>()
                            .join("; "))
                    } else {
                        Ok(entries)
                    };
                    me.outbox.send(Event::Logs(result));
                });
            }
        }
    }

    async fn change_path(&self, hvm: String, change: PathChange) {
        let owner = format!(
            "navigator@{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
        );
        let result = match self.client(&hvm) {
            Err(e) => Err(e),
            Ok(client) => match change {
                PathChange::Set(path) => lparmover::paths::set_path(&client, &owner, path)
                    .await
                    .map(|p| format!("{hvm}: {} migration path(s) stored", p.paths.len())),
                PathChange::Remove(name) => lparmover::paths::remove_path(&client, &owner, &name)
                    .await
                    .map(|_| format!("{hvm}: path {name} removed")),
            }
            .map_err(|e| e.emg().to_string()),
        };
        self.outbox.send(Event::PathChanged(result));
        self.refresh();
    }

    async fn list_arrays(&self) {
        let rows = lparmover::ops::arrays::list(&self.profile()).await;
        self.outbox.send(Event::Arrays(rows));
    }

    /// Reads the profile file again (an array was added there), keeping the array logins this
    /// session holds that the file does not.
    fn reload_profile_keeping_logins(&self) {
        let current = self.profile();
        match Profile::load(&self.profile_path) {
            Ok(mut fresh) => {
                for a in &mut fresh.arrays {
                    if a.credentials.is_none() {
                        a.credentials = current
                            .arrays
                            .iter()
                            .find(|c| c.name == a.name)
                            .and_then(|c| c.credentials.clone());
                    }
                }
                self.replace_profile(fresh);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the profile again"),
        }
    }

    async fn wwn_status(&self) {
        let result = lparmover::ops::storage::wwn_status(&self.profile(), None)
            .await
            .map_err(|e| e.to_string());
        self.outbox.send(Event::WwnStatus(Box::new(result)));
    }

    async fn list_wwn_rollbacks(&self) {
        let result = recover::pending_wwn_rollbacks(&self.profile(), None)
            .await
            .map(|(marks, _)| marks)
            .map_err(|e| e.to_string());
        self.outbox.send(Event::WwnRollbacks(result));
    }

    /// Resolves the endpoints and tells the UI a move starts (or why it cannot).
    fn announce(&self, target: &ops::MoveTarget, live: bool) -> Option<Endpoints> {
        let endpoints = match target.resolve(&ManagerDirs::for_profile(&self.profile())) {
            Ok(e) => e,
            Err(e) => {
                let done = if live {
                    Event::LiveMoveDone(Box::new(Err(e.to_string())))
                } else {
                    Event::ShutdownMoveDone(Box::new(Err(e.to_string())))
                };
                self.outbox.send(done);
                return None;
            }
        };
        self.outbox.send(Event::MoveStarted {
            lpar: endpoints.source.lpar.to_string(),
            source: endpoints.source.hvm.clone(),
            destination: endpoints.destination.hvm.clone(),
            live,
        });
        Some(endpoints)
    }

    async fn move_live(&self, target: ops::MoveTarget, options: lparmover::api::MoveOptions) {
        let Some(endpoints) = self.announce(&target, true) else {
            return;
        };
        let running = RunningMove {
            control: MoveControl::new(),
            source: endpoints.source.hvm.clone(),
            job: Arc::new(Mutex::new(None)),
        };
        if let Ok(mut slot) = self.running_move.lock() {
            *slot = Some(running.clone());
        }
        let outbox = self.outbox.clone();
        let job = running.job.clone();
        let result = moves::live(
            &self.profile(),
            &self.actor,
            &target,
            options,
            &running.control,
            |e| {
                if let MoveEvent::Progress(p) = &e
                    && let Ok(mut j) = job.lock()
                    && j.is_none()
                {
                    *j = Some(p.job.clone());
                }
                outbox.send(Event::Move(e));
            },
        )
        .instrument(info_span!("navigator move", lpar = %endpoints.source))
        .await;
        if let Ok(mut slot) = self.running_move.lock() {
            *slot = None;
        }
        if let Err(e) = &result {
            warn!(error = %e, "live move failed");
        }
        self.outbox.send(Event::LiveMoveDone(Box::new(
            result.map_err(|e| e.to_string()),
        )));
        self.refresh();
    }
}

impl Worker {
    fn policy_store(&self) -> policy::PolicyStore {
        policy::PolicyStore::for_manager(&ManagerDirs::for_profile(&self.profile()))
    }

    fn list_policies(&self) {
        let result = self
            .policy_store()
            .list()
            .map(|listed| {
                listed
                    .into_iter()
                    .map(|l| crate::model::policies::SavedPolicy {
                        name: l
                            .path
                            .file_stem()
                            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                        policy: l.policy.map_err(|e| e.to_string()),
                    })
                    .collect()
            })
            .map_err(|e| e.to_string());
        self.outbox.send(Event::Policies(result));
    }

    fn take_policy_reply(&self) -> Option<PolicyReply> {
        self.policy_run.lock().ok()?.as_mut()?.reply.take()
    }

    /// Executes a policy with the operator attending: the runner's questions become events,
    /// the answers come back as commands.
    async fn run_policy(&self, policy: policy::Policy) {
        use crate::model::policies::RunQuestion;
        use policy::runner::{Attendance, Question, RunOptions};
        let control = policy::RunControl::new();
        {
            let Ok(mut slot) = self.policy_run.lock() else {
                return;
            };
            if slot.is_some() {
                self.outbox.send(Event::PolicyRunDone(Box::new(Err(
                    "A policy is running already.".into(),
                ))));
                return;
            }
            *slot = Some(PolicyRunHandle {
                control: control.clone(),
                reply: None,
            });
        }
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let (questions_tx, mut questions) = tokio::sync::mpsc::unbounded_channel();
        let profile = self.profile();
        let options = RunOptions {
            attendance: Attendance::Operator(questions_tx),
            window_end: None,
            origin: "navigator".into(),
            runs: policy::RunStore::for_manager(&ManagerDirs::for_profile(&profile)),
            events: Some(events_tx),
            control,
        };
        let running = policy::run(&profile, &policy, options)
            .instrument(info_span!("navigator policy", policy = %policy.name));
        tokio::pin!(running);
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                Some(event) = events.recv() => {
                    let refresh = matches!(event, policy::runner::RunEvent::EntryDone { .. });
                    self.outbox.send(Event::PolicyRun(event));
                    if refresh {
                        self.refresh();
                    }
                }
                Some(question) = questions.recv() => {
                    let (reply, asked) = match question {
                        Question::Failed { entry, failure, reply } => (
                            PolicyReply::Failure(reply),
                            RunQuestion::Failed { entry, error: failure.error, action: failure.action },
                        ),
                        Question::Stopped { reply } => (PolicyReply::Stop(reply), RunQuestion::Stopped),
                    };
                    if let Ok(mut slot) = self.policy_run.lock()
                        && let Some(run) = slot.as_mut()
                    {
                        run.reply = Some(reply);
                    }
                    self.outbox.send(Event::PolicyQuestion(asked));
                }
            }
        };
        while let Ok(event) = events.try_recv() {
            self.outbox.send(Event::PolicyRun(event));
        }
        if let Ok(mut slot) = self.policy_run.lock() {
            *slot = None;
        }
        let result = result.map(|r| r.report).map_err(|e| e.to_string());
        self.outbox.send(Event::PolicyRunDone(Box::new(result)));
        self.refresh();
    }
}
