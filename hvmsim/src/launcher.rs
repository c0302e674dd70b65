//! `hvmsim fleet FILE`: starts every blade of a fleet as its own `hvmsim serve` process on its own
//! loopback address, writes the manager's profile, and stops the blades when it stops.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lparmover::model::Fleet;
use lparmover::profile::{Profile, ProfileHvm};

use crate::serve::GuestChoice;
use crate::store::{Endpoint, StateDir};

/// What `fleet` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Fleet file.
    pub file: PathBuf,
    /// Directory holding one state directory per blade (default: ~/.local/state/hvmsim/FLEET).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where to write the manager's profile (default: the manager's default profile path).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Guest implementation for activated LPARs.
    #[arg(long, value_enum, default_value = "auto")]
    pub guest: GuestChoice,
}

/// How long a blade may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A blade process started by the launcher (or a test).
#[derive(Debug)]
pub struct BladeProcess {
    /// Blade name.
    pub name: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// The process.
    pub child: Child,
}

impl BladeProcess {
    /// Starts `hvmsim serve` for one blade. The child gets SIGTERM if this process dies, so no
    /// blade outlives its launcher.
    pub fn spawn(
        exe: &Path,
        fleet_file: &Path,
        blade: &str,
        state_dir: &Path,
        guest: GuestChoice,
    ) -> anyhow::Result<Self> {
        let guest = match guest {
            GuestChoice::Auto => "auto",
            GuestChoice::Kvm => "kvm",
            GuestChoice::Soft => "soft",
        };
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--fleet")
            .arg(fleet_file)
            .arg("--blade")
            .arg(blade)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--guest")
            .arg(guest)
            .stdin(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(Self {
            name: blade.to_owned(),
            state_dir: state_dir.to_owned(),
            child,
        })
    }

    /// Waits until the blade has written its endpoint (it then answers requests).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Endpoint> {
        let store = StateDir::open(&self.state_dir)?;
        let pid = self.child.id();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(endpoint)) = store.endpoint()
                && endpoint.pid == pid
            {
                return Ok(endpoint);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "blade {} exited during start-up ({status}); see its log above",
                    self.name
                );
            }
            if Instant::now() > deadline {
                bail!("blade {} did not come up within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The profile entry for this blade.
    pub fn profile_entry(&self, endpoint: &Endpoint, fleet: &Fleet) -> anyhow::Result<ProfileHvm> {
        profile_entry(&self.state_dir, endpoint, fleet)
    }

    /// Stops the blade with SIGTERM and waits (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill() with a pid we spawned and a valid signal number has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A profile entry from a blade's state directory and endpoint.
pub fn profile_entry(
    state_dir: &Path,
    endpoint: &Endpoint,
    fleet: &Fleet,
) -> anyhow::Result<ProfileHvm> {
    let cert_pem = std::fs::read_to_string(state_dir.join("identity/cert.pem"))?;
    let token = std::fs::read_to_string(state_dir.join("identity/token"))?
        .trim()
        .to_owned();
    let migration_paths = fleet
        .blade(&endpoint.name)
        .map(|b| b.blade.hvm.migration_paths.iter().map(|p| p.ip).collect())
        .unwrap_or_default();
    Ok(ProfileHvm {
        name: endpoint.name.clone(),
        chassis: endpoint.chassis.clone(),
        url: endpoint.url.clone(),
        cert_pem,
        token,
        migration_paths,
    })
}

fn default_state_root(fleet: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("hvmsim").join(fleet)
}

/// Runs a whole fleet until SIGTERM or Ctrl-C.
pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let fleet = Fleet::load(&args.file)?;
    let file = std::fs::canonicalize(&args.file)?;
    let root = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_root(&fleet.name));
    let profile_path = args.profile.clone().unwrap_or_else(Profile::default_path);
    let exe = std::env::current_exe().context("cannot find the hvmsim executable")?;
    let mut blades = Vec::new();
    for fb in &fleet.blades {
        let dir = root.join(&fb.blade.name);
        blades.push(BladeProcess::spawn(
            &exe,
            &file,
            &fb.blade.name,
            &dir,
            args.guest,
        )?);
    }
    let started = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Vec<BladeProcess>, Vec<Endpoint>)> {
            let mut endpoints = Vec::new();
            for blade in &mut blades {
                endpoints.push(blade.wait_ready(START_TIMEOUT)?);
            }
            Ok((blades, endpoints))
        },
    )
    .await??;
    let (mut blades, endpoints) = started;
    let mut profile = Profile {
        fleet: fleet.name.clone(),
        ..Profile::default()
    };
    for (blade, endpoint) in blades.iter().zip(&endpoints) {
        profile.hvms.push(blade.profile_entry(endpoint, &fleet)?);
        tracing::info!(blade = %endpoint.name, url = %endpoint.url, "blade up");
    }
    profile.save(&profile_path)?;
    // One line on stdout that scripts and `lparmover demo` wait for.
    println!("READY {}", profile_path.display());
    tracing::info!(profile = %profile_path.display(), state = %root.display(), "fleet {} is up with {} blades", fleet.name, blades.len());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                for blade in &mut blades {
                    if let Ok(Some(status)) = blade.child.try_wait() {
                        tracing::warn!(blade = %blade.name, %status, "blade process exited; restart it with `hvmsim serve` (its state is kept)");
                    }
                }
            }
        }
    }
    tracing::info!("stopping the fleet");
    tokio::task::spawn_blocking(move || blades.iter_mut().for_each(BladeProcess::stop)).await?;
    Ok(())
}
