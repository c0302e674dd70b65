//! QEMU's own live migration on the same guest, memory and link as ours, for
//! `lparmover bench vs-qemu`.
//!
//! The guest is ours: `hvmsim qemu-image` writes a RAM file holding our guests' content and a
//! multiboot kernel running our workload (`hvmsim::guest::qemu`). QEMU maps the file as a
//! shared `memory-backend-file`, so this process reads the heartbeat of the source and the
//! destination from outside ([`ram`]) and measures the guest-visible pause exactly as our
//! blades do: last heartbeat on the source to the first newer one on the destination.
//!
//! A move: start `qemu-system-x86_64 -incoming defer` in the destination's namespace on a fresh
//! RAM file (allocated before the move, so the host's first-touch cost is not charged to QEMU),
//! give both sides the same capabilities and parameters over QMP ([`qmp`]), `migrate`, poll
//! `query-migrate` every 100 ms (status, throttle), then stop the old source. Moves alternate
//! direction like `bench live`'s.

pub mod qmp;
pub mod ram;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::netns::{NetnsPair, Side};
use super::procstat;
use qmp::{Qmp, QmpError};
use ram::{HeartbeatTrace, RamView};

/// How QEMU moves memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QemuMode {
    /// The main migration stream only.
    OneChannel,
    /// multifd with this many channels, uncompressed.
    Multifd(u8),
    /// multifd with this many channels and zstd (level 1).
    MultifdZstd(u8),
}

impl QemuMode {
    /// The modes a calibration move tries.
    pub const CANDIDATES: [QemuMode; 5] = [
        Self::OneChannel,
        Self::Multifd(2),
        Self::Multifd(4),
        Self::MultifdZstd(2),
        Self::MultifdZstd(4),
    ];

    /// Short name.
    pub fn name(self) -> String {
        match self {
            Self::OneChannel => "1 channel".into(),
            Self::Multifd(n) => format!("multifd {n}"),
            Self::MultifdZstd(n) => format!("multifd {n} + zstd"),
        }
    }
}

/// Everything QEMU is told, printed with the results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QemuSettings {
    /// Transfer mode.
    pub mode: QemuMode,
    /// `downtime-limit`, ms.
    pub downtime_limit_ms: u64,
}

/// `max-bandwidth`: QEMU caps migration at 32 MiB/s unless told otherwise; this lifts it.
pub const MAX_BANDWIDTH: u64 = 1 << 40;

impl QemuSettings {
    /// `migrate-set-capabilities` list.
    pub fn capabilities(&self) -> Value {
        let multifd = !matches!(self.mode, QemuMode::OneChannel);
        json!([
            { "capability": "auto-converge", "state": true },
            { "capability": "multifd", "state": multifd },
        ])
    }

    /// `migrate-set-parameters` arguments.
    pub fn parameters(&self) -> Value {
        let mut p = json!({
            "downtime-limit": self.downtime_limit_ms,
            "max-bandwidth": MAX_BANDWIDTH,
        });
        match self.mode {
            QemuMode::OneChannel => {}
            QemuMode::Multifd(n) => {
                p["multifd-channels"] = json!(n);
                p["multifd-compression"] = json!("none");
            }
            QemuMode::MultifdZstd(n) => {
                p["multifd-channels"] = json!(n);
                p["multifd-compression"] = json!("zstd");
                p["multifd-zstd-level"] = json!(1);
            }
        }
        p
    }

    /// One line naming every setting.
    pub fn describe(&self) -> String {
        format!(
            "capabilities {}; parameters {}",
            self.capabilities(),
            self.parameters()
        )
    }
}

/// Why a QEMU move could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// QEMU is not installed and could not be.
    #[error("{0}")]
    NotInstalled(String),
    /// Starting or talking to QEMU failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The guest or the migration did something unexpected.
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QemuError {
    let what = what.into();
    move |source| QemuError::Io { what, source }
}

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// Finds `qemu-system-x86_64`; as root, installs Debian's `qemu-system-x86` when it is missing.
pub fn ensure_installed() -> Result<PathBuf, QemuError> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(QEMU))
                .find(|p| p.is_file())
        })
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    // SAFETY: geteuid() has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(QemuError::NotInstalled(format!(
            "{QEMU} is not installed; run as root (the command installs it) or `sudo apt-get install -y qemu-system-x86`"
        )));
    }
    eprintln!("{QEMU} missing: apt-get install -y qemu-system-x86");
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "qemu-system-x86",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(io("apt-get install qemu-system-x86"))?;
    match find() {
        Some(path) if status.success() => Ok(path),
        _ => Err(QemuError::NotInstalled(format!(
            "apt-get install qemu-system-x86 failed ({status}); install it by hand"
        ))),
    }
}

/// The guest QEMU runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QemuGuest {
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Dirty rate, MB/s.
    pub dirty_mbps: f64,
    /// Working set, MiB.
    pub working_set_mib: u64,
    /// Content seed (the bench LPAR's).
    pub seed: u64,
}

/// One QEMU move.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QemuMove {
    /// `A → B` or back.
    pub direction: String,
    /// `migrate` to `completed`, as this process saw it, s.
    pub total_s: f64,
    /// QEMU's own `total-time`, s.
    pub qemu_total_s: Option<f64>,
    /// Guest-visible pause from the heartbeat, ms.
    pub pause_ms: Option<f64>,
    /// QEMU's own `downtime`, ms.
    pub qemu_downtime_ms: Option<f64>,
    /// `ram.transferred`: QEMU's own count (page bytes before multifd compression).
    pub transferred_bytes: u64,
    /// Bytes that crossed the veth link (both ends' `tx_bytes`) during the move.
    pub link_bytes: Option<u64>,
    /// `ram.dirty-sync-count`: passes over memory.
    pub rounds: u64,
    /// Highest `cpu-throttle-percentage` seen.
    pub max_throttle_percent: u8,
    /// CPU (user + sys) of both QEMU processes over the move, s.
    pub cpu_s: f64,
    /// Whether it completed before the timeout.
    pub converged: bool,
    /// Dirty rate the guest achieved during the move (its own write counter), MB/s.
    pub achieved_dirty_mbps: Option<f64>,
}

/// Where QEMU runs and with what.
pub struct QemuEnv<'a> {
    /// The two namespaces.
    pub pair: &'a NetnsPair,
    /// `hvmsim` (writes the image).
    pub hvmsim: &'a Path,
    /// Scratch directory (kernel, sockets, logs).
    pub workdir: &'a Path,
    /// Directory of the RAM files (a tmpfs).
    pub ram_dir: &'a Path,
    /// TSC rate to pace the guest with.
    pub tsc_hz: f64,
    /// Longest a move may take before it counts as not converging.
    pub timeout: Duration,
}

/// One running QEMU.
struct Instance {
    child: Child,
    qmp: Qmp,
    ram: PathBuf,
    view: Arc<RamView>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.qmp.execute("quit", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ram);
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::A => "A",
        Side::B => "B",
    }
}

impl QemuEnv<'_> {
    fn kernel(&self) -> PathBuf {
        self.workdir.join("qemu-guest.bin")
    }

    fn ram(&self, side: Side) -> PathBuf {
        self.ram_dir.join(format!(
            "lpm-vs-qemu-{}-{}.ram",
            std::process::id(),
            side_name(side)
        ))
    }

    /// Writes the source's RAM image (and the kernel) with `hvmsim qemu-image`.
    fn write_image(&self, guest: &QemuGuest, side: Side) -> Result<(), QemuError> {
        let out = Command::new(self.hvmsim)
            .arg("qemu-image")
            .args(["--memory-mib", &guest.memory_mib.to_string()])
            .args(["--dirty-mbps", &guest.dirty_mbps.to_string()])
            .args(["--working-set-mib", &guest.working_set_mib.to_string()])
            .args(["--seed", &guest.seed.to_string()])
            .args(["--tsc-hz", &format!("{:.0}", self.tsc_hz)])
            .arg("--ram")
            .arg(self.ram(side))
            .arg("--kernel")
            .arg(self.kernel())
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("run {} qemu-image", self.hvmsim.display())))?;
        if !out.status.success() {
            return Err(QemuError::Failed(format!(
                "hvmsim qemu-image failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Starts QEMU in `side`'s namespace: the guest from its image, or (`incoming`) a
    /// destination on a fresh, allocated RAM file.
    fn start(&self, guest: &QemuGuest, side: Side, incoming: bool) -> Result<Instance, QemuError> {
        let ram = self.ram(side);
        let bytes = guest.memory_mib << 20;
        if incoming {
            populate(&ram, bytes)?;
        }
        let tag = format!(
            "{}-{}",
            side_name(side),
            if incoming { "in" } else { "src" }
        );
        let sock = self
            .workdir
            .join(format!("qmp-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let log = self.workdir.join(format!("qemu-{tag}.log"));
        let mib = guest.memory_mib;
        let mut command = self.pair.command(side, Path::new(QEMU));
        command
            .args(["-name", &format!("lpm-vs-qemu-{tag}")])
            .args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"])
            .args(["-machine", "pc,memory-backend=ram", "-smp", "1"])
            .args(["-m", &format!("{mib}M")])
            .arg("-object")
            .arg(format!(
                "memory-backend-file,id=ram,size={mib}M,mem-path={},share=on",
                ram.display()
            ))
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-kernel")
            .arg(self.kernel())
            .arg("-debugcon")
            .arg(format!(
                "file:{}",
                self.workdir.join(format!("debugcon-{tag}.txt")).display()
            ));
        if incoming {
            command.args(["-incoming", "defer"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?,
            ));
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe. `ip netns
        // exec` execs QEMU, which keeps the death signal: no QEMU outlives the bench.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(io(format!("start {QEMU}")))?;
        let qmp = match Qmp::connect(&sock, Duration::from_secs(20)) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(QemuError::Failed(format!(
                    "{QEMU} on side {}: {e}; its log: {}",
                    side_name(side),
                    text.trim()
                )));
            }
        };
        let view = Arc::new(RamView::open(&ram).map_err(io(format!("map {}", ram.display())))?);
        Ok(Instance {
            child,
            qmp,
            ram,
            view,
        })
    }
}

/// Creates the destination's RAM file and writes every page of it once (zeros), before the
/// move: a tmpfs `fallocate` only reserves pages and leaves the zeroing, and the host's first
/// touch, to the first access, which would charge both to QEMU's move.
fn populate(ram: &Path, bytes: u64) -> Result<(), QemuError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(ram)
        .map_err(io(format!("create {}", ram.display())))?;
    file.set_len(bytes)
        .map_err(io(format!("size {}", ram.display())))?;
    let len = usize::try_from(bytes).map_err(|_| QemuError::Failed("guest too large".into()))?;
    // SAFETY: a new shared mapping of the file opened above (kept open for the call), checked
    // against MAP_FAILED; MADV_POPULATE_WRITE faults every page in writable, which zeroes it;
    // the mapping is unmapped before return and never referenced from Rust.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io(format!("map {}", ram.display()))(
                std::io::Error::last_os_error(),
            ));
        }
        let rc = libc::madvise(p, len, MADV_POPULATE_WRITE);
        let err = std::io::Error::last_os_error();
        libc::munmap(p, len);
        if rc != 0 {
            tracing::warn!(error = %err, "could not pre-populate the destination RAM file; QEMU pays the first touch");
        }
    }
    Ok(())
}

/// `madvise` advice that faults pages in writable (Linux 5.14).
const MADV_POPULATE_WRITE: libc::c_int = 23;

fn migration_address(pair: &NetnsPair, side: Side) -> String {
    format!("tcp:{}:4444", pair.addresses(side).migration)
}

fn configure(instance: &mut Instance, settings: &QemuSettings) -> Result<(), QemuError> {
    instance.qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": settings.capabilities() }),
    )?;
    instance
        .qmp
        .execute("migrate-set-parameters", settings.parameters())?;
    Ok(())
}

/// Runs `reps` QEMU moves of `guest` with `settings`, alternating A → B and B → A.
pub fn run_moves(
    env: &QemuEnv<'_>,
    guest: &QemuGuest,
    settings: &QemuSettings,
    reps: u32,
    label: &str,
) -> Result<Vec<QemuMove>, QemuError> {
    env.write_image(guest, Side::A)?;
    let mut running = env.start(guest, Side::A, false)?;
    let booted = Instant::now();
    while !running.view.started() {
        if booted.elapsed() > Duration::from_secs(60) {
            return Err(QemuError::Failed(format!(
                "the QEMU guest did not start its workload within 60 s (see {})",
                env.workdir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the guest settle into its pace before the first move.
    std::thread::sleep(Duration::from_secs(1));
    let mut at = Side::A;
    let mut moves = Vec::new();
    for rep in 0..reps {
        let to = match at {
            Side::A => Side::B,
            Side::B => Side::A,
        };
        let mut incoming = env.start(guest, to, true)?;
        configure(&mut incoming, settings)?;
        configure(&mut running, settings)?;
        let uri = migration_address(env.pair, to);
        incoming
            .qmp
            .execute("migrate-incoming", json!({ "uri": uri }))?;
        let pids = [running.child.id(), incoming.child.id()];
        let link_before = env.pair.link_bytes().ok();
        let cpu_before = procstat::cpu_seconds(&pids);
        let writes_before = running.view.writes();
        let trace = HeartbeatTrace::start(running.view.clone(), incoming.view.clone());
        let started = Instant::now();
        running.qmp.execute("migrate", json!({ "uri": uri }))?;
        let mut max_throttle = 0u8;
        let (status, last) = loop {
            std::thread::sleep(Duration::from_millis(100));
            let info = running.qmp.execute("query-migrate", json!({}))?;
            if let Some(t) = info.get("cpu-throttle-percentage").and_then(Value::as_u64) {
                max_throttle = max_throttle.max(u8::try_from(t).unwrap_or(100));
            }
            let status = info
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            match status.as_str() {
                "completed" | "failed" | "cancelled" => break (status, info),
                _ if started.elapsed() > env.timeout => {
                    let _ = running.qmp.execute("migrate_cancel", json!({}));
                    break ("timeout".to_owned(), info);
                }
                _ => {}
            }
        };
        let total = started.elapsed();
        let converged = status == "completed";
        if converged {
            // Wait for the guest's first heartbeat on the destination.
            let deadline = Instant::now() + Duration::from_secs(10);
            let resumed_at = running.view.counter();
            while incoming.view.counter() <= resumed_at && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Let the sampler see that first heartbeat too (it samples every 200 µs).
            std::thread::sleep(Duration::from_millis(5));
            if incoming.view.counter() <= resumed_at {
                eprintln!(
                    "[{label}] QEMU reported the move completed but the guest has not run on the destination within 10 s; its pause is not measured"
                );
            }
        }
        let trace = trace.finish();
        tracing::debug!(
            source_counter = running.view.counter(),
            destination_counter = incoming.view.counter(),
            source_last = ?trace.source_last_change.map(|(_, c)| c),
            destination_changes = trace.destination_changes.len(),
            destination_last = ?trace.destination_changes.last().map(|(_, c)| *c),
            "heartbeats after the move"
        );
        let cpu_s = procstat::cpu_seconds(&pids) - cpu_before;
        let link_bytes = match (link_before, env.pair.link_bytes().ok()) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let writes_after = if converged {
            incoming.view.writes()
        } else {
            running.view.writes()
        };
        let elapsed = started.elapsed().as_secs_f64();
        let ram = last.get("ram");
        let num = |v: Option<&Value>, k: &str| v.and_then(|r| r.get(k)).and_then(Value::as_u64);
        let m = QemuMove {
            direction: format!("{} → {}", side_name(at), side_name(to)),
            total_s: total.as_secs_f64(),
            qemu_total_s: num(Some(&last), "total-time").map(|ms| ms as f64 / 1e3),
            pause_ms: if converged {
                trace.pause().map(|d| d.as_secs_f64() * 1e3)
            } else {
                None
            },
            qemu_downtime_ms: num(Some(&last), "downtime").map(|ms| ms as f64),
            transferred_bytes: num(ram, "transferred").unwrap_or(0),
            link_bytes,
            rounds: num(ram, "dirty-sync-count").unwrap_or(0),
            max_throttle_percent: max_throttle,
            cpu_s,
            converged,
            achieved_dirty_mbps: (elapsed > 0.0).then(|| {
                writes_after.saturating_sub(writes_before) as f64 * 4096.0 / elapsed / 1e6
            }),
        };
        eprintln!(
            "[{label}] QEMU {} move {}/{reps} {}: {status} in {:.2} s, pause {} (QEMU says {} ms), {:.2} GB on the link, {} passes, throttle ≤ {} %, CPU {:.1} s, guest dirtied {:.0} MB/s",
            settings.mode.name(),
            rep + 1,
            m.direction,
            m.total_s,
            m.pause_ms
                .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1} ms")),
            m.qemu_downtime_ms
                .map_or_else(|| "?".to_owned(), |d| d.to_string()),
            m.link_bytes.unwrap_or(0) as f64 / 1e9,
            m.rounds,
            m.max_throttle_percent,
            m.cpu_s,
            m.achieved_dirty_mbps.unwrap_or(0.0),
        );
        moves.push(m);
        if !converged {
            // The source still runs the guest; the next move would start from the same place.
            drop(incoming);
            if status == "failed" {
                return Err(QemuError::Failed(format!(
                    "QEMU's migration failed: {last}; see {}",
                    env.workdir.display()
                )));
            }
            continue;
        }
        // The old source is paused in "postmigrate": stop it, the destination runs on.
        drop(std::mem::replace(&mut running, incoming));
        at = to;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_lifts_the_bandwidth_cap_and_turns_auto_converge_on() {
        for mode in QemuMode::CANDIDATES {
            let s = QemuSettings {
                mode,
                downtime_limit_ms: 50,
            };
            assert_eq!(s.parameters()["max-bandwidth"], json!(MAX_BANDWIDTH));
            assert_eq!(s.parameters()["downtime-limit"], json!(50));
            let caps = s.capabilities();
            assert_eq!(
                caps[0],
                json!({ "capability": "auto-converge", "state": true })
            );
            assert_eq!(
                caps[1]["state"],
                json!(mode != QemuMode::OneChannel),
                "{}",
                mode.name()
            );
        }
        let zstd = QemuSettings {
            mode: QemuMode::MultifdZstd(4),
            downtime_limit_ms: 300,
        };
        assert_eq!(zstd.parameters()["multifd-compression"], json!("zstd"));
        assert_eq!(zstd.parameters()["multifd-channels"], json!(4));
        assert!(zstd.describe().contains("\"multifd-zstd-level\":1"));
    }
}
