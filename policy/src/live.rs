//! Which runs are running now, and `policy stop` from another process.
//!
//! A running run (a `policy run` process, the daemon, the navigator) holds an exclusive
//! `flock` on `DATA/policy-runs/RUN/running.lock` for as long as it runs, and describes itself
//! in `running.json` next to it (pid, policy, a token unique to this runner). The kernel drops
//! the lock when the process dies, even by kill -9, so a leftover file never makes a dead run
//! look alive: a run is running exactly when its lock file is locked.
//!
//! `policy stop` writes `stop-request.json` (atomically) into the run's directory with the
//! runner's token; the runner looks for it every [`STOP_POLL`] and then stops as the operator's
//! Stop does (the running entries finish, nothing new starts). A request whose token is not
//! the runner's own (left from a runner that was killed before it saw it) is dropped, never
//! honoured.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::report::RunStore;
use crate::runner::RunControl;

/// How often a runner looks for a stop request.
pub const STOP_POLL: Duration = Duration::from_millis(500);

const LOCK: &str = "running.lock";
const INFO: &str = "running.json";
const STOP: &str = "stop-request.json";

/// A running run, as `policy stop` sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRun {
    /// Run id.
    pub run: String,
    /// Its policy.
    pub policy: String,
    /// Who runs it (`cli`, `daemon`, `navigator`).
    pub origin: String,
    /// The runner's process.
    pub pid: u32,
    /// When this runner took the run.
    pub since: DateTime<Utc>,
    /// Unique to this runner: a stop request names it.
    token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StopRequest {
    token: String,
    at: DateTime<Utc>,
    by_pid: u32,
}

/// Why a run could not be marked running, listed or asked to stop.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Another process runs this run already.
    #[error(
        "run {run} is running already in process {pid}; stop it there (`policy stop {run}`) or wait for it to end"
    )]
    Held {
        /// The run.
        run: String,
        /// Who holds it (0 when it could not be read).
        pid: u32,
    },
    /// A file of the run could not be read or written.
    #[error("policy run file {}: {source}; check that the manager's data directory is writable", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LiveError + '_ {
    move |source| LiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Held by a runner for as long as it runs the run; dropping it says the run is over.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: PathBuf,
    info: LiveRun,
}

impl RunLock {
    /// Marks `run` as running in this process.
    pub fn acquire(
        runs: &RunStore,
        run: &str,
        policy: &str,
        origin: &str,
    ) -> Result<Self, LiveError> {
        let dir = runs.run_dir(run);
        lparmover::fsutil::create_private_dir(&dir).map_err(io_err(&dir))?;
        let path = dir.join(LOCK);
        // The file locked must still be the one at `path` (a runner that ended removes it; a
        // lock on a removed file would guard nothing), so lock, then compare inodes.
        let file = loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let pid = read_info(&dir).map_or(0, |i| i.pid);
                    return Err(LiveError::Held {
                        run: run.to_owned(),
                        pid,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
            let held = file.metadata().map_err(io_err(&path))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => break file,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        let info = LiveRun {
            run: run.to_owned(),
            policy: policy.to_owned(),
            origin: origin.to_owned(),
            pid: std::process::id(),
            since: Utc::now(),
            token: format!(
                "{}-{}",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
        };
        // A request left by a runner that was killed before it saw it is not for us.
        let stop = dir.join(STOP);
        match std::fs::remove_file(&stop) {
            Ok(()) => info!(run, "a stale stop request of an earlier runner was dropped"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&stop)(e)),
        }
        let info_path = dir.join(INFO);
        let body = serde_json::to_vec_pretty(&info).map_err(|e| io_err(&info_path)(e.into()))?;
        // It holds the run's token: owner-only from the moment it exists.
        lparmover::fsutil::write_atomic_mode(&info_path, &body, 0o600)
            .map_err(io_err(&info_path))?;
        Ok(Self {
            _file: file,
            dir,
            info,
        })
    }

    /// What this runner says of itself.
    pub fn info(&self) -> &LiveRun {
        &self.info
    }

    /// Takes a stop request meant for this runner, if one was written. A request for another
    /// runner (a stale one) is removed and ignored.
    pub fn take_stop_request(&self) -> bool {
        let path = self.dir.join(STOP);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "a stop request could not be read");
                return false;
            }
        };
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(file = %path.display(), error = %e, "a stop request could not be removed");
        }
        match serde_json::from_slice::<StopRequest>(&body) {
            Ok(r) if r.token == self.info.token => {
                info!(run = %self.info.run, by_pid = r.by_pid, at = %r.at, "stop asked by `policy stop`");
                true
            }
            Ok(_) => {
                warn!(run = %self.info.run, "a stop request for an earlier runner of this run was ignored");
                false
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "a stop request that is not one was ignored");
                false
            }
        }
    }

    /// Looks for a stop request every [`STOP_POLL`] and stops `control` when one comes, until
    /// the returned guard is dropped.
    pub fn watch(self: &std::sync::Arc<Self>, control: RunControl) -> WatchGuard {
        let lock = self.clone();
        WatchGuard(tokio::spawn(async move {
            let mut tick = tokio::time::interval(STOP_POLL);
            loop {
                tick.tick().await;
                if lock.take_stop_request() {
                    control.stop();
                }
            }
        }))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked: nobody takes a lock on a file about to go.
        let _ = std::fs::remove_file(self.dir.join(INFO));
        let _ = std::fs::remove_file(self.dir.join(STOP));
        let _ = std::fs::remove_file(self.dir.join(LOCK));
    }
}

/// Stops a [`RunLock::watch`] task when dropped.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read_info(dir: &Path) -> Option<LiveRun> {
    let body = std::fs::read(dir.join(INFO)).ok()?;
    serde_json::from_slice(&body).ok()
}

/// Whether the run in `dir` is running: its lock file is locked by a live process.
fn locked(dir: &Path) -> Result<bool, LiveError> {
    let path = dir.join(LOCK);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&path)(e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// The runs running now, oldest first.
pub fn running(runs: &RunStore) -> Result<Vec<LiveRun>, LiveError> {
    let root = runs.run_dir("");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&root)(e)),
    };
    let mut live = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        if !locked(&dir)? {
            continue;
        }
        // Locked but not yet described: the runner is starting; it is shown by its directory.
        let run = entry.file_name().to_string_lossy().into_owned();
        live.push(read_info(&dir).unwrap_or(LiveRun {
            run,
            policy: String::new(),
            origin: String::new(),
            pid: 0,
            since: Utc::now(),
            token: String::new(),
        }));
    }
    live.sort_by(|a, b| a.run.cmp(&b.run));
    Ok(live)
}

/// Asks `run` to stop after its running entries. The caller found it in [`running`].
pub fn request_stop(runs: &RunStore, run: &LiveRun) -> Result<(), LiveError> {
    let path = runs.run_dir(&run.run).join(STOP);
    let body = serde_json::to_vec_pretty(&StopRequest {
        token: run.token.clone(),
        at: Utc::now(),
        by_pid: std::process::id(),
    })
    .map_err(|e| io_err(&path)(e.into()))?;
    lparmover::fsutil::write_atomic_mode(&path, &body, 0o600).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_run_is_listed_and_told_to_stop_and_a_released_one_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = RunStore::new(dir.path());
        assert!(running(&runs).expect("none").is_empty());
        let lock = RunLock::acquire(&runs, "run-1", "evening", "cli").expect("lock");
        assert!(matches!(
            RunLock::acquire(&runs, "run-1", "evening", "cli"),
            Err(LiveError::Held { .. })
        ));
        let live = running(&runs).expect("live");
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].policy, "evening");
        assert_eq!(live[0].pid, std::process::id());
        assert!(!lock.take_stop_request());
        request_stop(&runs, &live[0]).expect("stop");
        assert!(lock.take_stop_request());
        // Taken once: it is not honoured twice.
        assert!(!lock.take_stop_request());
        drop(lock);
        assert!(running(&runs).expect("none").is_empty());
    }

    #[test]
    fn a_stop_request_left_for_an_earlier_runner_is_never_honoured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = RunStore::new(dir.path());
        let first = RunLock::acquire(&runs, "run-1", "evening", "daemon").expect("lock");
        let seen = running(&runs).expect("live").remove(0);
        let stale_dir = first.dir.clone();
        drop(first);
        // As a kill -9 leaves it: the lock released, a request for the dead runner on disk.
        request_stop(&runs, &seen).expect("stop written after the runner died");
        assert!(stale_dir.join(STOP).exists());
        let second = RunLock::acquire(&runs, "run-1", "evening", "daemon").expect("relock");
        assert!(!second.take_stop_request());
        // A request written by hand with another token is dropped, not honoured.
        lparmover::fsutil::write_atomic(
            &stale_dir.join(STOP),
            br#"{"token":"someone-else","at":"2026-12-02T22:00:00Z","by_pid":1}"#,
        )
        .expect("write");
        assert!(!second.take_stop_request());
        assert!(!stale_dir.join(STOP).exists());
    }
}
