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

/// How long a blade may take to come up (for a whole fleet: how long the launcher waits without
/// any blade coming up before it gives up, so a fleet of hundreds of blades starting on a few
/// cores is not cut off while it makes progress).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopped blade may take before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
        Self::spawn_cabled(exe, fleet_file, blade, state_dir, guest, &[])
    }

    /// [`Self::spawn`] for a blade whose FC ports are cabled to the arrays whose state
    /// directories are `arrays`: its vFCs log in at their fabric.
    pub fn spawn_cabled(
        exe: &Path,
        fleet_file: &Path,
        blade: &str,
        state_dir: &Path,
        guest: GuestChoice,
        arrays: &[PathBuf],
    ) -> anyhow::Result<Self> {
        Self::spawn_with_env(exe, fleet_file, blade, state_dir, guest, arrays, &[])
    }

    /// [`Self::spawn_cabled`] with extra environment variables for the blade process (the
    /// tests' fault-injection hooks).
    pub fn spawn_with_env(
        exe: &Path,
        fleet_file: &Path,
        blade: &str,
        state_dir: &Path,
        guest: GuestChoice,
        arrays: &[PathBuf],
        env: &[(String, String)],
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
            .arg(guest);
        for dir in arrays {
            command.arg("--array").arg(dir);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Self::start(command, blade, state_dir)
    }

    /// Starts `hvmsim array` for array `array` of the fleet file (it reads the whole fleet on
    /// its first start, to give every LPAR its host groups).
    pub fn spawn_array(
        exe: &Path,
        fleet_file: &Path,
        array: &str,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .arg("array")
            .arg("--fleet")
            .arg(fleet_file)
            .arg("--array")
            .arg(array)
            .arg("--state-dir")
            .arg(state_dir);
        Self::start(command, array, state_dir)
    }

    fn start(mut command: Command, name: &str, state_dir: &Path) -> anyhow::Result<Self> {
        command.stdin(Stdio::null());
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
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
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

    /// Whether the process is still there (not reaped).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn terminate(&mut self) {
        if self.running()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            // SAFETY: kill() with a pid we spawned (not yet reaped, so not reused) and a valid
            // signal number has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// Stops the blade with SIGTERM and waits (SIGKILL after [`STOP_TIMEOUT`]).
    pub fn stop(&mut self) {
        stop_all(std::slice::from_mut(self));
    }
}

/// HVMs an operator registered by hand (the navigator's Profile window) in this fleet's
/// profile, and the data directory set in it, survive the fleet rewriting the profile; a
/// profile of another fleet is replaced whole.
fn keep_hand_registered(profile: &mut Profile, path: &Path) {
    let Ok(previous) = Profile::load(path) else {
        return;
    };
    if previous.fleet != profile.fleet {
        return;
    }
    let ours: Vec<String> = profile.hvms.iter().map(|h| h.name.clone()).collect();
    profile.hvms.extend(
        previous
            .hvms
            .into_iter()
            .filter(|h| !ours.contains(&h.name)),
    );
    let our_arrays: Vec<String> = profile.arrays.iter().map(|a| a.name.clone()).collect();
    profile.arrays.extend(
        previous
            .arrays
            .into_iter()
            .filter(|a| !our_arrays.contains(&a.name)),
    );
    if profile.data_dir.is_none() {
        profile.data_dir = previous.data_dir;
    }
}

/// Stops blades together: SIGTERM to every one first, then waits for all of them (SIGKILL for
/// those still running after [`STOP_TIMEOUT`]), so a fleet of hundreds stops in the time of its
/// slowest blade, not in the sum of them.
pub fn stop_all(blades: &mut [BladeProcess]) {
    blades.iter_mut().for_each(BladeProcess::terminate);
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        let left = blades
            .iter_mut()
            .map(|b| b.running())
            .filter(|&r| r)
            .count();
        if left == 0 {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                left,
                "blades did not stop within {STOP_TIMEOUT:?}; killing them"
            );
            for b in blades.iter_mut() {
                if b.running() {
                    let _ = b.child.kill();
                    let _ = b.child.wait();
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every blade wrote its endpoint. Gives up when a blade exits, or when no blade
/// came up for `stall` (progress resets the clock); logs progress every few seconds.
pub fn wait_all_ready(
    blades: &mut [BladeProcess],
    stall: Duration,
) -> anyhow::Result<Vec<Endpoint>> {
    let stores = blades
        .iter()
        .map(|b| StateDir::open(&b.state_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut endpoints: Vec<Option<Endpoint>> = vec![None; blades.len()];
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    let mut ready = 0;
    while ready < blades.len() {
        for (i, blade) in blades.iter_mut().enumerate() {
            if endpoints[i].is_some() {
                continue;
            }
            let pid = blade.child.id();
            if let Ok(Some(endpoint)) = stores[i].endpoint()
                && endpoint.pid == pid
            {
                endpoints[i] = Some(endpoint);
                ready += 1;
                last_progress = Instant::now();
                continue;
            }
            if let Some(status) = blade.child.try_wait()? {
                bail!(
                    "blade {} exited during start-up ({status}); see its log above",
                    blade.name
                );
            }
        }
        if ready == blades.len() {
            break;
        }
        if last_progress.elapsed() > stall {
            let missing: Vec<&str> = blades
                .iter()
                .zip(&endpoints)
                .filter(|(_, e)| e.is_none())
                .map(|(b, _)| b.name.as_str())
                .take(10)
                .collect();
            bail!(
                "{} of {} blades did not come up (none did for {stall:?}), e.g. {}; see their logs above",
                blades.len() - ready,
                blades.len(),
                missing.join(", ")
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            tracing::info!(ready, total = blades.len(), elapsed = ?started.elapsed(), "fleet starting");
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(endpoints.into_iter().flatten().collect())
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

/// A profile entry for an array from its state directory and endpoint; the credentials of its
/// first account are saved with it (the seed's "Save password setting"), so the manager's
/// registration works on the demo fleet without a prompt.
pub fn array_profile_entry(
    state_dir: &Path,
    endpoint: &Endpoint,
    fleet: &Fleet,
) -> anyhow::Result<lparmover::profile::ProfileArray> {
    let cert_pem = std::fs::read_to_string(state_dir.join("identity/cert.pem"))?;
    let token = std::fs::read_to_string(state_dir.join("identity/token"))?
        .trim()
        .to_owned();
    let credentials = fleet
        .array(&endpoint.name)
        .and_then(|a| a.security.accounts.first())
        .map(|a| lparmover::api::array::Credentials {
            user: a.user.clone(),
            password: a.password.clone(),
        });
    Ok(lparmover::profile::ProfileArray {
        name: endpoint.name.clone(),
        url: endpoint.url.clone(),
        cert_pem,
        token,
        credentials,
    })
}

/// Name of the one-blade fleet file the launcher writes into each blade's state directory.
pub const BLADE_FLEET_FILE: &str = "fleet.toml";

/// The fleet file of one blade: `fleet` with only that blade and its chassis (same name and
/// network), checked to parse back to the same definition.
///
/// The launcher hands each `hvmsim serve` this extract instead of the whole fleet file: every
/// blade process used to parse and keep the whole fleet (200 blades, 2,000 LPARs: about 0.1 s
/// of CPU and 20 MiB of heap per process, 4 GiB for the fleet; growing with the square of the
/// fleet), now it holds one blade.
pub fn blade_fleet_text(fleet: &Fleet, blade: &str) -> anyhow::Result<String> {
    let Some(fb) = fleet.blade(blade) else {
        bail!("fleet {} has no blade {blade:?}", fleet.name);
    };
    let one = Fleet {
        name: fleet.name.clone(),
        network: fleet.network,
        chassis: fleet
            .chassis
            .iter()
            .filter(|c| c.id == fb.blade.chassis)
            .cloned()
            .collect(),
        blades: vec![fb.clone()],
        arrays: fleet
            .arrays
            .iter()
            .filter(|a| fb.blade.reaches_array(&a.name))
            // What a blade needs of an array is where it is and its ports; its accounts and
            // first-start registrations stay with the array.
            .map(|a| lparmover::model::StorageArray {
                security: Default::default(),
                migration_wwpns_registered: Vec::new(),
                ..a.clone()
            })
            .collect(),
    };
    let body = toml::to_string(&one)
        .with_context(|| format!("cannot write the fleet file of blade {blade}"))?;
    let text = format!(
        "# Blade {blade} of fleet {:?}, written by `hvmsim fleet` at every start (edit the fleet file, not this).\n{body}",
        fleet.name
    );
    let back = Fleet::parse(&text, blade)
        .with_context(|| format!("the fleet file written for blade {blade} does not parse back"))?;
    if back.blades.first() != Some(fb) {
        bail!("the fleet file written for blade {blade} does not parse back to its definition");
    }
    Ok(text)
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
    let t0 = Instant::now();
    let fleet = Fleet::load(&args.file)?;
    let file = std::fs::canonicalize(&args.file)?;
    let root = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_root(&fleet.name));
    let profile_path = args.profile.clone().unwrap_or_else(Profile::default_path);
    let exe = std::env::current_exe().context("cannot find the hvmsim executable")?;
    // Arrays first: a blade logs its vFCs in at the array's fabric as it boots.
    let mut arrays = Vec::new();
    for array in &fleet.arrays {
        let dir = root.join("arrays").join(array.name.as_str());
        StateDir::open(&dir)?;
        arrays.push(BladeProcess::spawn_array(
            &exe,
            &file,
            array.name.as_str(),
            &dir,
        )?);
    }
    let (mut arrays, array_endpoints) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Vec<BladeProcess>, Vec<Endpoint>)> {
            match wait_all_ready(&mut arrays, START_TIMEOUT) {
                Ok(endpoints) => Ok((arrays, endpoints)),
                Err(e) => {
                    stop_all(&mut arrays);
                    Err(e)
                }
            }
        },
    )
    .await??;
    let mut blades = Vec::new();
    for fb in &fleet.blades {
        let dir = root.join(&fb.blade.name);
        StateDir::open(&dir)?;
        let blade_file = dir.join(BLADE_FLEET_FILE);
        lparmover::fsutil::write_atomic(
            &blade_file,
            blade_fleet_text(&fleet, &fb.blade.name)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", blade_file.display()))?;
        let cabled: Vec<PathBuf> = fleet
            .arrays
            .iter()
            .filter(|a| fb.blade.reaches_array(&a.name))
            .map(|a| root.join("arrays").join(a.name.as_str()))
            .collect();
        blades.push(BladeProcess::spawn_cabled(
            &exe,
            &blade_file,
            &fb.blade.name,
            &dir,
            args.guest,
            &cabled,
        )?);
    }
    tracing::info!(blades = blades.len(), file = %file.display(), elapsed = ?t0.elapsed(), "blade processes started");
    let started = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Vec<BladeProcess>, Vec<Endpoint>)> {
            match wait_all_ready(&mut blades, START_TIMEOUT) {
                Ok(endpoints) => Ok((blades, endpoints)),
                Err(e) => {
                    stop_all(&mut blades);
                    Err(e)
                }
            }
        },
    )
    .await;
    let (mut blades, endpoints) = match started {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => {
            stop_all(&mut arrays);
            return Err(e);
        }
        Err(e) => {
            stop_all(&mut arrays);
            return Err(e.into());
        }
    };
    let mut profile = Profile {
        fleet: fleet.name.clone(),
        ..Profile::default()
    };
    for (array, endpoint) in arrays.iter().zip(&array_endpoints) {
        profile
            .arrays
            .push(array_profile_entry(&array.state_dir, endpoint, &fleet)?);
        tracing::info!(array = %endpoint.name, url = %endpoint.url, "array up");
    }
    for (blade, endpoint) in blades.iter().zip(&endpoints) {
        profile.hvms.push(blade.profile_entry(endpoint, &fleet)?);
        tracing::info!(blade = %endpoint.name, url = %endpoint.url, "blade up");
    }
    keep_hand_registered(&mut profile, &profile_path);
    profile.save(&profile_path)?;
    // One line on stdout that scripts and `lparmover demo` wait for.
    println!("READY {}", profile_path.display());
    tracing::info!(profile = %profile_path.display(), state = %root.display(), elapsed = ?t0.elapsed(), "fleet {} is up with {} blades", fleet.name, blades.len());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                for blade in blades.iter_mut().chain(arrays.iter_mut()) {
                    if let Ok(Some(status)) = blade.child.try_wait() {
                        tracing::warn!(blade = %blade.name, %status, "blade process exited; restart it with `hvmsim serve` (its state is kept)");
                    }
                }
            }
        }
    }
    tracing::info!("stopping the fleet");
    tokio::task::spawn_blocking(move || {
        stop_all(&mut blades);
        stop_all(&mut arrays);
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_blade_fleet_file_parses_back_to_the_blade() {
        let demo = Fleet::parse(lparmover::model::fleet::DEMO_FLEET_TOML, "demo.toml").unwrap();
        for fb in &demo.blades {
            let text = blade_fleet_text(&demo, &fb.blade.name).unwrap();
            let one = Fleet::parse(&text, "one").unwrap();
            assert_eq!(one.blades, vec![fb.clone()]);
            assert!(
                !text.contains("demo-array-pw"),
                "a blade's extract holds no array password"
            );
            assert_eq!(one.chassis.len(), 1);
            assert_eq!(one.network, demo.network);
        }
        let large = Fleet::parse(include_str!("../../assets/fleets/large.toml"), "large").unwrap();
        let text = blade_fleet_text(&large, "ch020-b10").unwrap();
        assert!(text.len() < 20_000, "{} bytes", text.len());
        assert!(blade_fleet_text(&large, "nope").is_err());
    }

    fn hvm(name: &str) -> ProfileHvm {
        ProfileHvm {
            name: name.into(),
            chassis: "CH1".into(),
            url: format!("https://{name}:1"),
            cert_pem: String::new(),
            token: "t".into(),
            migration_paths: Vec::new(),
        }
    }

    #[test]
    fn a_rewritten_profile_keeps_hvms_registered_by_hand_only_for_the_same_fleet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.toml");
        let previous = Profile {
            fleet: "demo".into(),
            hvms: vec![hvm("ch1-b1"), hvm("far-b1")],
            data_dir: Some(dir.path().join("data")),
            ..Profile::default()
        };
        previous.save(&path).unwrap();
        let mut fresh = Profile {
            fleet: "demo".into(),
            hvms: vec![hvm("ch1-b1")],
            ..Profile::default()
        };
        keep_hand_registered(&mut fresh, &path);
        let names: Vec<_> = fresh.hvms.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["ch1-b1", "far-b1"],
            "the fleet's own entry is the new one"
        );
        assert_eq!(fresh.data_dir, previous.data_dir);

        let mut other = Profile {
            fleet: "large".into(),
            hvms: vec![hvm("ch001-b01")],
            ..Profile::default()
        };
        keep_hand_registered(&mut other, &path);
        assert_eq!(
            other.hvms.len(),
            1,
            "another fleet's profile is replaced whole"
        );
        assert_eq!(other.data_dir, None);
    }
}
