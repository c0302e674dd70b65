//! The overnight daemon: runs every scheduled policy of the policies directory when its cron
//! expression fires, unattended (failures follow `on_error`), inside its window; keeps running
//! when a run fails; and, started again after a kill -9, first continues the runs it left
//! (entries completed are never run again).
//!
//! What it has seen is kept in `STATE/daemon.json` (written atomically): per policy, the last
//! time its schedule was looked at, so a restart neither runs a missed night twice nor runs
//! a schedule that fired while it was down and whose window has closed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lparmover::profile::Profile;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::model::Policy;
use crate::report::{RunReport, RunStore};
use crate::runner::{self, Attendance, RunControl, RunOptions, RunResult};
use crate::store::PolicyStore;

/// How often the policies directory is looked at.
pub const POLL: Duration = Duration::from_secs(5);

/// How the daemon is set up.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The manager profile, read again for every run (registrations take effect).
    pub profile: PathBuf,
    /// The policies.
    pub store: PolicyStore,
    /// Where run reports go.
    pub runs: RunStore,
    /// The daemon's own state file.
    pub state: PathBuf,
    /// A command run with the report's HTML path as its argument (and in `POLICY_REPORT`)
    /// after a run in which not every entry completed.
    pub on_failure: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DaemonState {
    /// Per policy: the last time its schedule was looked at.
    seen: BTreeMap<String, DateTime<Utc>>,
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Its state file could not be written.
    #[error("daemon state {}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn load_state(path: &Path) -> DaemonState {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(file = %path.display(), error = %e, "daemon state unreadable; starting afresh (no past schedule is run)");
            DaemonState::default()
        }),
        Err(_) => DaemonState::default(),
    }
}

fn save_state(path: &Path, state: &DaemonState) -> Result<(), DaemonError> {
    let fail = |source| DaemonError::State {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        lparmover::fsutil::create_private_dir(dir).map_err(fail)?;
    }
    let body = serde_json::to_vec_pretty(state).map_err(|e| fail(std::io::Error::other(e)))?;
    lparmover::fsutil::write_atomic(path, &body).map_err(fail)
}

/// Runs until `shutdown` is cancelled (then lets the running runs finish their entries).
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let mut state = load_state(&config.state);
    let mut runs: JoinSet<String> = JoinSet::new();
    let mut running: Vec<String> = Vec::new();
    let mut controls: Vec<RunControl> = Vec::new();
    info!(policies = %config.store.dir().display(), "policy daemon starts");

    for prior in interrupted(&config.runs) {
        let Ok(policy) = config.store.load(&prior.policy) else {
            warn!(run = %prior.run, policy = %prior.policy, "an interrupted run's policy is gone; its report stays as it was");
            continue;
        };
        info!(run = %prior.run, "continuing a run the daemon left");
        running.push(policy.name.to_string());
        let control = RunControl::new();
        controls.push(control.clone());
        runs.spawn(one_run(config.clone(), policy, Some(prior), None, control));
    }

    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Ok(name) = done {
                    running.retain(|n| *n != name);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let listed = match config.store.list() {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "the policies directory could not be read");
                continue;
            }
        };
        for l in listed {
            let policy = match l.policy {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "a policy file is not valid; it is not run");
                    continue;
                }
            };
            let Some(schedule) = policy.schedule.clone() else {
                continue;
            };
            let name = policy.name.to_string();
            let last = *state.seen.entry(name.clone()).or_insert(now);
            let Some(due) = schedule.next_start_after(last) else {
                continue;
            };
            if due > now {
                continue;
            }
            state.seen.insert(name.clone(), now);
            let window_end = schedule.window_end_after(due);
            if running.contains(&name) {
                warn!(policy = %name, "its schedule fired while its previous run still runs; this one is skipped");
            } else if window_end <= now {
                warn!(policy = %name, due = %due, "its schedule fired while the daemon was down and its window has closed; skipped");
            } else {
                info!(policy = %name, window_end = %window_end, "a scheduled run starts");
                running.push(name.clone());
                let control = RunControl::new();
                controls.push(control.clone());
                runs.spawn(one_run(
                    config.clone(),
                    policy,
                    None,
                    Some(window_end),
                    control,
                ));
            }
        }
        save_state(&config.state, &state)?;
    }
    info!(
        runs = runs.len(),
        "policy daemon stops after the running entries"
    );
    for c in &controls {
        c.stop();
    }
    while runs.join_next().await.is_some() {}
    Ok(())
}

/// Runs the daemon left unfinished (a report without an outcome, from the daemon).
fn interrupted(runs: &RunStore) -> Vec<RunReport> {
    runs.runs()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| runs.load(Some(id)).ok())
        .filter(|r| r.outcome.is_none() && r.origin == "daemon")
        .collect()
}

async fn one_run(
    config: DaemonConfig,
    policy: Policy,
    prior: Option<RunReport>,
    window_end: Option<DateTime<Utc>>,
    control: RunControl,
) -> String {
    let name = policy.name.to_string();
    let span = info_span!("scheduled_run", policy = %name);
    async {
        let profile = match Profile::load(&config.profile) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "the manager profile could not be read; the run does not start");
                return;
            }
        };
        let options = RunOptions {
            attendance: Attendance::Unattended,
            window_end,
            origin: "daemon".into(),
            runs: config.runs.clone(),
            events: None,
            control,
        };
        let result = match prior {
            Some(prior) => runner::resume(&profile, &policy, prior, options).await,
            None => runner::run(&profile, &policy, options).await,
        };
        match result {
            Ok(result) => after(&config, &result).await,
            Err(e) => error!(error = %e, "the run did not start"),
        }
    }
    .instrument(span)
    .await;
    name
}

async fn after(config: &DaemonConfig, result: &RunResult) {
    let report = &result.report;
    info!(
        run = %report.run,
        outcome = ?report.outcome,
        completed = report.count(crate::report::EntryResult::Completed),
        entries = report.entries.len(),
        "scheduled run ended"
    );
    if report.all_completed() {
        return;
    }
    let (Some(command), Ok(html)) = (&config.on_failure, &result.saved) else {
        return;
    };
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$POLICY_REPORT\""))
        .env("POLICY_REPORT", html)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => info!(command, "on_failure command ran"),
        Ok(s) => warn!(command, status = %s, "on_failure command failed"),
        Err(e) => warn!(command, error = %e, "on_failure command could not start"),
    }
}
