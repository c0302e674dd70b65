//! Shared helpers of the end-to-end tests: find the binaries, start blades and fleets as real
//! processes on loopback, kill and restart them, and talk to them through the real client.
//!
//! No test writes into the operator's manager data (`~/.local/share/lparmover`): every helper
//! fixes this test process's data directory to a fresh temporary one ([`test_data_dir`]), for
//! jobs run in-process and for every `lparmover` process started through [`run_binary`]; a test
//! that needs a history of its own passes its own directory to [`run_binary_with_data`].
//!
//! A test that needs root, `/dev/kvm`, `tc` or a tmpfs and cannot have it calls
//! [`unavailable`] and returns: under CI (`CI` set) that fails the test, elsewhere it skips
//! with a loud `SKIP:` line.

pub mod display;
pub mod netns;

pub use lparmover::testenv::{Need, in_ci, unavailable};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use hvmsim::launcher::BladeProcess;
use hvmsim::serve::GuestChoice;
use lparmover::api::HvmClient;
use lparmover::dirs::ManagerDirs;
use lparmover::model::Fleet;
use lparmover::model::fleet::DEMO_FLEET_TOML;
use lparmover::profile::ProfileHvm;

/// This test process's manager data directory (migration history, job backups): a fresh
/// temporary directory, removed when the process exits. The first call also makes it what
/// [`ManagerDirs::from_env`] answers in this process, so jobs run in-process record there.
pub fn test_data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("lpm-tests-data-")
            .tempdir()
            .expect("create the test data directory")
            .keep();
        ManagerDirs::set_process_default(&dir);
        let _ = CLEANUP.set(dir.clone());
        // SAFETY: registers a plain `extern "C" fn()` that only touches a OnceLock and the file
        // system; atexit has no other preconditions.
        unsafe { libc::atexit(remove_test_data_dir) };
        dir
    })
}

static CLEANUP: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_test_data_dir() {
    if let Some(dir) = CLEANUP.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The directory holding the workspace's binaries for this test build (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/foundation-HASH → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// Path to a workspace binary, built once per test process if cargo did not build it already.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let started = std::time::Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = bin_dir()
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned);
        let mut build = Command::new(cargo);
        // Cargo gives a test process the variables of the crate under test; a build script
        // that watches one of them (ring's watches CARGO_MANIFEST_DIR) would otherwise see it
        // change between this build and the next `cargo test`, and both would rebuild it and
        // everything above it every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        // The same selection `cargo test --workspace` compiles (every package, its tests and so
        // its dev-dependencies): cargo resolves features over what it builds, and building only
        // the two binaries resolved them differently and rebuilt much of the tree a second time
        // (measured at 200 s in CI). With the same selection everything is fresh but the
        // binaries themselves.
        build.args(["build", "--quiet", "--workspace", "--bins", "--tests"]);
        match profile.as_deref() {
            Some("debug") | None => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building the workspace binaries failed");
        // `cargo test` has built these already; a slow build here means features or flags
        // differ between the two and every test binary pays for a second build.
        let took = started.elapsed();
        if took > std::time::Duration::from_secs(5) {
            eprintln!("building the workspace binaries for the tests took {took:.1?}");
        }
    });
    bin_dir().join(name)
}

/// The demo fleet written to `dir`, returned with its path.
pub fn demo_fleet(dir: &Path) -> (Fleet, PathBuf) {
    let path = dir.join("demo.toml");
    std::fs::write(&path, DEMO_FLEET_TOML).expect("write fleet file");
    (Fleet::load(&path).expect("demo fleet parses"), path)
}

/// One blade running as its own `hvmsim serve` process.
#[derive(Debug)]
pub struct TestBlade {
    name: String,
    fleet: Fleet,
    fleet_file: PathBuf,
    state_dir: PathBuf,
    process: BladeProcess,
    arrays: Vec<PathBuf>,
    env: Vec<(String, String)>,
    /// Profile entry (address, pinned certificate, token).
    pub profile: ProfileHvm,
}

impl TestBlade {
    /// Starts blade `name` of the fleet file with its state in `state_dir`.
    pub fn start(fleet_file: &Path, name: &str, state_dir: &Path) -> anyhow::Result<Self> {
        Self::start_cabled(fleet_file, name, state_dir, &[])
    }

    /// [`Self::start`] with the blade's vFCs logging in at the fabric of `arrays`.
    pub fn start_cabled(
        fleet_file: &Path,
        name: &str,
        state_dir: &Path,
        arrays: &[&TestArray],
    ) -> anyhow::Result<Self> {
        Self::start_full(fleet_file, name, state_dir, arrays, &[])
    }

    /// [`Self::start`] with extra environment variables for the blade process, e.g. hvmsim's
    /// `HVMSIM_FAULT_PANIC` (kept for [`Self::restart`]).
    pub fn start_with_env(
        fleet_file: &Path,
        name: &str,
        state_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_full(fleet_file, name, state_dir, &[], env)
    }

    fn start_full(
        fleet_file: &Path,
        name: &str,
        state_dir: &Path,
        arrays: &[&TestArray],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        test_data_dir();
        let fleet = Fleet::load(fleet_file)?;
        let arrays: Vec<PathBuf> = arrays.iter().map(|a| a.state_dir().to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut process = BladeProcess::spawn_with_env(
            &binary("hvmsim"),
            fleet_file,
            name,
            state_dir,
            GuestChoice::Auto,
            &arrays,
            &env,
        )?;
        let endpoint = process.wait_ready(Duration::from_secs(60))?;
        let profile = process.profile_entry(&endpoint, &fleet)?;
        Ok(Self {
            name: name.to_owned(),
            fleet,
            fleet_file: fleet_file.to_owned(),
            state_dir: state_dir.to_owned(),
            process,
            arrays,
            env,
            profile,
        })
    }

    /// A client pinned to this blade's certificate.
    pub fn client(&self) -> HvmClient {
        HvmClient::new(&self.profile).expect("client for test blade")
    }

    /// A raw HTTPS client trusting this blade, for requests the typed client cannot send.
    pub fn raw_client(&self) -> reqwest::Client {
        let tls = lparmover::tls::pinned_client_config(&self.profile.cert_pem).expect("pinned tls");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("raw client")
    }

    /// Its state directory (its VM processes' sockets live under it).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The PID of the `hvmsim serve` process.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Starts the blade again on the same state directory, stopping it first (SIGTERM: its
    /// guests power off) if it still runs.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        // A blade still running holds its state directory: stop it first (a no-op after kill9).
        self.process.stop();
        let mut process = BladeProcess::spawn_with_env(
            &binary("hvmsim"),
            &self.fleet_file,
            &self.name,
            &self.state_dir,
            GuestChoice::Auto,
            &self.arrays,
            &self.env,
        )?;
        let endpoint = process.wait_ready(Duration::from_secs(60))?;
        self.profile = process.profile_entry(&endpoint, &self.fleet)?;
        self.process = process;
        Ok(())
    }
}

impl Drop for TestBlade {
    fn drop(&mut self) {
        self.process.stop();
    }
}

impl TestBlade {
    /// Sends `method path` (under the blade's base URL, e.g. `/v1/locks`) with the blade's token
    /// and an optional JSON body; returns the status and the answer's JSON (`null` when the
    /// answer has none), for requests the typed client would never send.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let base = self.profile.url.trim_end_matches('/');
        let mut request = self
            .raw_client()
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.profile.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("the blade answers");
        let status = answer.status().as_u16();
        let json = answer.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// The blade's state file as it is on disk, to check byte for byte that a refused request
    /// changed nothing.
    pub fn state_bytes(&self) -> Vec<u8> {
        std::fs::read(self.state_dir.join("state.json")).expect("the blade's state file")
    }
}

/// A small LPAR definition for the demo fleet's blades: 1 shared processor, 64 MiB, a vNIC on
/// segment 1a and a vFC on FC port 3/0.
pub fn small_lpar_request(name: &str) -> lparmover::model::LparRequest {
    use lparmover::model::lpar::{VfcRequest, Vlan, VnicRequest};
    use lparmover::model::{ProcessorMode, Processors, Workload};
    lparmover::model::LparRequest {
        number: None,
        name: name.parse().expect("an LPAR name"),
        processors: Processors {
            mode: ProcessorMode::Shared,
            count: 1,
            service_ratio: 100,
            group: 0,
        },
        memory_mib: 64,
        vnics: vec![VnicRequest {
            segment: "1a".parse().expect("a segment"),
            vlan: Vlan::Untag { id: 10 },
            mac: None,
        }],
        vfcs: vec![VfcRequest {
            port: "3/0".parse().expect("an FC port"),
            vfc_id: None,
            names: None,
        }],
        usb: Default::default(),
        options: Default::default(),
        workload: Workload::default(),
        activate: false,
    }
}

/// One storage array running as its own `hvmsim array` process.
#[derive(Debug)]
pub struct TestArray {
    name: String,
    fleet: Fleet,
    fleet_file: PathBuf,
    state_dir: PathBuf,
    process: BladeProcess,
    /// Profile entry (address, pinned certificate, token, the fleet's first account).
    pub profile: lparmover::profile::ProfileArray,
}

impl TestArray {
    /// Starts array `name` of the fleet file with its state in `state_dir`.
    pub fn start(fleet_file: &Path, name: &str, state_dir: &Path) -> anyhow::Result<Self> {
        test_data_dir();
        let fleet = Fleet::load(fleet_file)?;
        let mut process =
            BladeProcess::spawn_array(&binary("hvmsim"), fleet_file, name, state_dir)?;
        let endpoint = process.wait_ready(Duration::from_secs(60))?;
        let profile = hvmsim::launcher::array_profile_entry(state_dir, &endpoint, &fleet)?;
        Ok(Self {
            name: name.to_owned(),
            fleet,
            fleet_file: fleet_file.to_owned(),
            state_dir: state_dir.to_owned(),
            process,
            profile,
        })
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The bytes of its state file (to prove a refused request changed nothing).
    pub fn state_bytes(&self) -> Vec<u8> {
        std::fs::read(self.state_dir.join(hvmsim::array::service::STATE_FILE))
            .expect("read the array state file")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Starts the array again on the same state directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop();
        let mut process = BladeProcess::spawn_array(
            &binary("hvmsim"),
            &self.fleet_file,
            &self.name,
            &self.state_dir,
        )?;
        let endpoint = process.wait_ready(Duration::from_secs(60))?;
        let credentials = self.profile.credentials.clone();
        self.profile =
            hvmsim::launcher::array_profile_entry(&self.state_dir, &endpoint, &self.fleet)?;
        self.profile.credentials = credentials;
        self.process = process;
        Ok(())
    }
}

impl Drop for TestArray {
    fn drop(&mut self) {
        self.process.stop();
    }
}

/// Runs a workspace binary to completion with a time limit, with this test process's data
/// directory ([`test_data_dir`]) as its `LPARMOVER_DATA`.
pub fn run_binary(name: &str, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    run_binary_with_data(name, args, test_data_dir(), timeout)
}

/// [`run_binary`] with `data` as the manager data directory (a test that reads the history its
/// own commands wrote, untouched by the other tests of the process).
pub fn run_binary_with_data(
    name: &str,
    args: &[&str],
    data: &Path,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let mut child = Command::new(binary(name))
        .args(args)
        .env("LPARMOVER_DATA", OsStr::new(data))
        // The hvmsim `binary` built: `lparmover demo` and `bench` would otherwise run cargo
        // themselves (they see CARGO in this process's environment), with this test crate's
        // CARGO_* variables, and rebuild what `binary` just built without them.
        .env("LPARMOVER_HVMSIM", binary("hvmsim"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{name} {args:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A whole fleet started with `hvmsim fleet`, stopped when dropped.
#[derive(Debug)]
pub struct TestFleet {
    child: std::process::Child,
    /// The profile the launcher wrote.
    pub profile_path: PathBuf,
}

impl TestFleet {
    /// Starts `hvmsim fleet FILE` with state and profile under `dir`.
    pub fn start(fleet_file: &Path, dir: &Path) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let profile_path = dir.join("profile.toml");
        let mut child = Command::new(binary("hvmsim"))
            .env("LPARMOVER_DATA", test_data_dir())
            .arg("fleet")
            .arg(fleet_file)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--profile")
            .arg(&profile_path)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("fleet stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        let mut fleet = Self {
            child,
            profile_path,
        };
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            fleet.stop();
            bail!("hvmsim fleet did not print READY");
        }
        Ok(fleet)
    }

    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill() on our own child's pid with a valid signal has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..500 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A profile holding the given blades (what `hvmsim fleet` would write for them).
pub fn profile_of(blades: &[&TestBlade]) -> lparmover::profile::Profile {
    test_data_dir();
    lparmover::profile::Profile {
        fleet: "test".into(),
        hvms: blades.iter().map(|b| b.profile.clone()).collect(),
        arrays: Vec::new(),
        // The test process's own data directory applies (`test_data_dir`).
        data_dir: None,
    }
}

/// The LPAR named `name` on `client`'s HVM, if defined there.
pub async fn find_lpar(client: &HvmClient, name: &str) -> Option<lparmover::api::LparView> {
    client
        .lpars()
        .await
        .unwrap_or_else(|e| panic!("listing the LPARs of {}: {e}", client.name()))
        .into_iter()
        .find(|l| l.lpar.name.as_str() == name)
}

/// Who the tests act as: this process's user and host, through the CLI.
pub fn operator() -> lparmover::history::Actor {
    lparmover::history::Actor::of_this_process(lparmover::history::Origin::Cli)
}

/// The demo fleet's standard live move: web-01 from ch1-b1 to ch1-b2.
pub fn web01_to_b2(options: lparmover::api::MoveOptions) -> lparmover::jobs::LiveMoveRequest {
    lparmover::jobs::LiveMoveRequest {
        source: "ch1-b1/web-01"
            .parse()
            .unwrap_or_else(|e| panic!("the demo LPAR reference parses: {e}")),
        destination: "ch1-b2".into(),
        dest_number: None,
        options,
        actor: operator(),
    }
}

/// Runs `request` as a live move and kills the destination blade with `kill -9` once 16 MiB of
/// memory went over (mid-copy); returns how the move ended.
pub async fn live_move_losing_destination_mid_copy(
    profile: lparmover::profile::Profile,
    request: lparmover::jobs::LiveMoveRequest,
    destination: &mut TestBlade,
) -> Result<lparmover::jobs::LiveMoveReport, lparmover::jobs::JobError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let job = tokio::spawn(async move {
        lparmover::jobs::live_move(
            &profile,
            &request,
            move |p| {
                if p.mover
                    .as_ref()
                    .is_some_and(|m| m.memory_bytes_sent > 16 << 20)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await
    });
    if rx.await.is_err() {
        // The move ended before 16 MiB went over: nothing to kill mid-copy.
        return match job.await {
            Ok(r) => r,
            Err(e) => panic!("the move task: {e}"),
        };
    }
    destination.kill9();
    match job.await {
        Ok(r) => r,
        Err(e) => panic!("the move task: {e}"),
    }
}

/// Starts `lparmover ARGS` (with `--profile profile`) armed to stop at the fault-injection
/// barrier `stage` (`lparmover::jobs::fault`), and waits until it stands there. The manager's
/// output goes to `fault_dir/manager.log`; the caller kills it or writes `fault_dir/go`.
pub fn manager_at_barrier(
    profile: &Path,
    stage: &str,
    fault_dir: &Path,
    args: &[&str],
) -> anyhow::Result<std::process::Child> {
    use lparmover::jobs::fault::{BARRIER_ENV, DIR_ENV};
    std::fs::create_dir_all(fault_dir)?;
    let log = std::fs::File::create(fault_dir.join("manager.log"))?;
    let mut manager = Command::new(binary("lparmover"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("LPARMOVER_DATA", test_data_dir())
        .env(BARRIER_ENV, stage)
        .env(DIR_ENV, fault_dir)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("start lparmover")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !fault_dir.join("reached").exists() {
        let log = || std::fs::read_to_string(fault_dir.join("manager.log")).unwrap_or_default();
        if let Some(status) = manager.try_wait()? {
            bail!(
                "the manager exited ({status}) before the {stage} barrier:\n{}",
                log()
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = manager.kill();
            let _ = manager.wait();
            bail!("the manager did not reach the {stage} barrier:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(manager)
}

/// Whether a tmpfs can be mounted here (root, and a kernel and container that allow it): mounts
/// one on a temporary directory and unmounts it.
pub fn tmpfs_mountable() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = Command::new("umount").arg(dir.path()).status();
    Ok(())
}

/// A blade's state directory whose writes can be made to fail for real, the way a full disk
/// makes them fail: a 16 MiB tmpfs filled up to the last byte (root, as in the fault matrix), or,
/// where mounting is not allowed, the directory made read-only (a file system remounted
/// read-only after an error; permissions bind only a non-root process). Unmounted when dropped.
#[derive(Debug)]
pub struct FailingStateDisk {
    dir: PathBuf,
    mounted: bool,
    filler: Option<PathBuf>,
    read_only: bool,
}

impl FailingStateDisk {
    /// Prepares `dir` (created if needed); `Err` says why writes there cannot be made to fail
    /// (root without the right to mount a tmpfs).
    pub fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        // SAFETY: geteuid has no preconditions and cannot fail.
        if !mounted && unsafe { libc::geteuid() } == 0 {
            return Err(
                "cannot mount a tmpfs, and as root a read-only directory would not stop writes"
                    .into(),
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            mounted,
            filler: None,
            read_only: false,
        })
    }

    /// From now on no file can be written in the directory (checked: panics if one still can).
    pub fn fail_writes(&mut self) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let path = self.dir.join("filler");
            let mut f = std::fs::File::create(&path).expect("create the filler");
            let block = vec![0xA5u8; 64 * 1024];
            while f.write_all(&block).is_ok() {}
            // tmpfs takes the last partial pages one byte at a time.
            while f.write_all(&[0xA5]).is_ok() {}
            let _ = f.sync_all();
            self.filler = Some(path);
        } else {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o555))
                .expect("make the state directory read-only");
            self.read_only = true;
        }
        let probe = self.dir.join(".probe");
        let written = std::fs::File::create(&probe)
            .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()));
        let _ = std::fs::remove_file(&probe);
        assert!(
            written.is_err(),
            "writes in {} still succeed: the fault is not real",
            self.dir.display()
        );
    }

    /// Writes work again (the filler is removed, or the directory writable again).
    pub fn repair(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(path) = self.filler.take() {
            std::fs::remove_file(&path).expect("remove the filler");
        }
        if self.read_only {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
                .expect("make the state directory writable");
            self.read_only = false;
        }
    }
}

impl Drop for FailingStateDisk {
    fn drop(&mut self) {
        if let Some(path) = self.filler.take() {
            let _ = std::fs::remove_file(path);
        }
        if self.read_only {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// One plain-HTTP GET (the manager processes' loopback `/metrics` and `/healthz`): the status
/// code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP head in {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The address a manager process says its metrics listen on (`… metrics on
/// http://ADDR/metrics` in its stderr `log`), waiting up to `within`.
pub fn metrics_address(log: &Path, within: Duration) -> anyhow::Result<std::net::SocketAddr> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| {
            l.split_once("metrics on http://")
                .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
                .and_then(|a| a.parse().ok())
        }) {
            return Ok(addr);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("no metrics address in {}: {text}", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn jobs_and_commands_of_a_test_process_write_into_its_own_temporary_data_dir() {
        let dir = test_data_dir();
        assert!(dir.is_dir());
        assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
        assert_eq!(ManagerDirs::from_env().data(), dir);
        assert_eq!(test_data_dir(), dir, "one per process");
    }
}
