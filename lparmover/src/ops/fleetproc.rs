//! A fleet started as a child process (`hvmsim fleet FILE`): the demo command and the
//! navigator start the embedded demo fleet this way, with nothing set up by hand.
//!
//! The child gets `PR_SET_PDEATHSIG`, so the fleet stops with us even when we are killed, and
//! dropping a [`FleetProcess`] stops it gracefully (SIGTERM: its blades power their guests off).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a fleet may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a fleet keeps what it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetDirs {
    /// The fleet file to start.
    pub fleet_file: PathBuf,
    /// One state directory per blade below it (kept across runs).
    pub state_dir: PathBuf,
    /// The manager profile the fleet writes.
    pub profile: PathBuf,
    /// The fleet's log.
    pub log: PathBuf,
}

impl FleetDirs {
    /// Everything inside one working directory, the fleet file written there from `toml`.
    pub fn in_workdir(workdir: &Path, fleet_name: &str, toml: &str) -> Result<Self, FleetError> {
        std::fs::create_dir_all(workdir).map_err(|e| FleetError::Io {
            what: format!("create {}", workdir.display()),
            source: e,
        })?;
        let fleet_file = workdir.join(format!("{fleet_name}.toml"));
        crate::fsutil::write_atomic(&fleet_file, toml.as_bytes()).map_err(|e| FleetError::Io {
            what: format!("write {}", fleet_file.display()),
            source: e,
        })?;
        Ok(Self {
            fleet_file,
            state_dir: workdir.join("state"),
            profile: workdir.join("profile.toml"),
            log: workdir.join("hvmsim.log"),
        })
    }
}

/// Why a fleet could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A program of the fleet is missing.
    #[error(
        "{name} not found next to {me}; build it with `cargo build --release -p {package}` or set {env}"
    )]
    NotFound {
        /// The program.
        name: String,
        /// Its package.
        package: String,
        /// The variable that names it.
        env: String,
        /// This executable.
        me: String,
    },
    /// Building hvmsim under `cargo run` failed.
    #[error("building hvmsim failed: {0}")]
    Build(String),
    /// A file or process could not be handled.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The fleet did not say READY in time.
    #[error("the fleet did not come up within {timeout:?}; last lines of {log}:\n{tail}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// Its log file.
        log: String,
        /// The end of the log.
        tail: String,
    },
}

/// Finds the hvmsim executable: `$LPARMOVER_HVMSIM`, or next to this executable (under
/// `cargo run`, built on the spot with the same profile first, so it is never stale).
pub fn find_hvmsim() -> Result<PathBuf, FleetError> {
    find_program("hvmsim", "hvmsim", "LPARMOVER_HVMSIM")
}

/// Finds the `lparmover` CLI the same way (`$LPARMOVER_CLI`, or next to this executable).
pub fn find_lparmover() -> Result<PathBuf, FleetError> {
    find_program("lparmover", "lparmover", "LPARMOVER_CLI")
}

/// The directory the navigator keeps its embedded demo fleet in, across runs
/// (`$XDG_STATE_HOME/lparmover/navigator-demo`, or `~/.local/state/…`).
pub fn demo_workdir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("lparmover").join("navigator-demo")
}

fn find_program(name: &str, package: &str, env: &str) -> Result<PathBuf, FleetError> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| FleetError::Io { what, source }
    };
    let me = std::env::current_exe().map_err(io("locate this executable"))?;
    let dir = me.parent().unwrap_or(Path::new("."));
    let sibling = dir.join(name);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        tracing::info!(profile, name, "building");
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                package,
                "--bin",
                name,
                "--profile",
                profile,
            ])
            .status()
            .map_err(io("run cargo to build the fleet's programs"))?;
        if !status.success() {
            return Err(FleetError::Build(status.to_string()));
        }
    }
    if sibling.exists() {
        return Ok(sibling);
    }
    Err(FleetError::NotFound {
        name: name.to_owned(),
        package: package.to_owned(),
        env: env.to_owned(),
        me: me.display().to_string(),
    })
}

/// A running `hvmsim fleet`; stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
#[derive(Debug)]
pub struct FleetProcess {
    child: Child,
    dirs: FleetDirs,
    /// The thread that forked the launcher, kept alive as long as the fleet runs:
    /// `PR_SET_PDEATHSIG` fires when the forking *thread* ends, so forking from a short-lived
    /// thread (a tokio blocking-pool thread is reaped after 10 s idle) would stop the fleet.
    keeper: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl FleetProcess {
    /// Starts the fleet and waits (blocking, up to [`START_TIMEOUT`]) until every blade answers.
    pub fn start(hvmsim: &Path, dirs: FleetDirs) -> Result<Self, FleetError> {
        let log = std::fs::File::create(&dirs.log).map_err(|e| FleetError::Io {
            what: format!("create {}", dirs.log.display()),
            source: e,
        })?;
        let mut command = Command::new(hvmsim);
        command
            .arg("fleet")
            .arg(&dirs.fleet_file)
            .arg("--state-dir")
            .arg(&dirs.state_dir)
            .arg("--profile")
            .arg(&dirs.profile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and touches
        // no shared memory. The fleet then dies with us even if we are killed.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (spawned_tx, spawned) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name("fleet-keeper".into())
            .spawn(move || {
                let _ = spawned_tx.send(command.spawn());
                // Parked until the FleetProcess is dropped (its sender goes away).
                let _ = released.recv();
            })
            .map_err(|e| FleetError::Io {
                what: "start the fleet keeper thread".into(),
                source: e,
            })?;
        let spawned = spawned.recv().map_err(|_| FleetError::Io {
            what: format!("start {}", hvmsim.display()),
            source: std::io::Error::other("the fleet keeper thread ended"),
        })?;
        let child = spawned.map_err(|e| FleetError::Io {
            what: format!("start {}", hvmsim.display()),
            source: e,
        })?;
        let mut fleet = Self {
            child,
            dirs,
            keeper: Some((release, keeper)),
        };
        let Some(stdout) = fleet.child.stdout.take() else {
            return Err(fleet.not_ready());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY ") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            return Err(fleet.not_ready());
        }
        Ok(fleet)
    }

    /// Where the fleet keeps its files (its profile among them).
    pub fn dirs(&self) -> &FleetDirs {
        &self.dirs
    }

    /// The launcher's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn not_ready(&self) -> FleetError {
        let log = std::fs::read_to_string(&self.dirs.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        FleetError::NotReady {
            timeout: START_TIMEOUT,
            log: self.dirs.log.display().to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill() on the pid of our own, not yet reaped child with a valid signal has
            // no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let mut exited = false;
        for _ in 0..500 {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some((release, keeper)) = self.keeper.take() {
            drop(release);
            let _ = keeper.join();
        }
    }
}
