//! Runs one case: starts the two blades, moves the LPAR back and forth, measures.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fleet::{BLADE_A, BLADE_B, FleetParams, LPAR, generate};
use super::{BenchError, CaseEnv, CaseResult, CaseSpec, Rep, procstat};
use crate::api::MoveOptions;
use crate::fleetview::{LparRef, LparSelector};
use crate::jobs::{LiveMoveRequest, live_move};
use crate::profile::Profile;

/// How long a blade may take to boot (a multi-GiB guest fills its memory first).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// `hvmsim fleet` for one blade, stopped (SIGTERM, then SIGKILL) when dropped.
struct BladeFleet {
    name: String,
    child: Child,
    profile: PathBuf,
}

/// A blade process started but not yet ready.
struct Starting {
    blade: BladeFleet,
    ready: std::sync::mpsc::Receiver<()>,
    log: PathBuf,
}

impl BladeFleet {
    /// Starts the process. Call it from a thread that outlives the blade (a runtime worker, not
    /// a `spawn_blocking` thread): the death signal fires when the *thread* that forked the
    /// child exits, and tokio retires idle blocking threads after a few seconds.
    fn spawn(env: &CaseEnv, spec: &CaseSpec, index: usize) -> Result<Starting, BenchError> {
        let name = [BLADE_A, BLADE_B][index].to_owned();
        let addresses = env.netns.as_ref().map(|ends| {
            [
                (ends[0].management, ends[0].migration),
                (ends[1].management, ends[1].migration),
            ]
        });
        let (text, _) = generate(&FleetParams {
            memory_mib: spec.memory_mib,
            dirty_mbps: spec.dirty_mbps,
            addresses,
            only: Some(name.clone()),
            vcpus: spec.vcpus,
        })?;
        let dir = env.workdir.join(&name);
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("create {}", dir.display())))?;
        let fleet_file = dir.join("fleet.toml");
        std::fs::write(&fleet_file, text)
            .map_err(BenchError::io(format!("write {}", fleet_file.display())))?;
        let profile = dir.join("profile.toml");
        let log = dir.join("hvmsim.log");
        let mut command = match &env.netns {
            Some(ends) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ends[index].name])
                    .arg(&env.hvmsim);
                c
            }
            None => Command::new(&env.hvmsim),
        };
        command
            .arg("fleet")
            .arg(&fleet_file)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--profile")
            .arg(&profile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log)
                    .map_err(BenchError::io(format!("create {}", log.display())))?,
            ));
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and touches
        // no shared memory. `ip netns exec` execs hvmsim, which keeps the death signal.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(BenchError::io(format!("start {}", env.hvmsim.display())))?;
        let stdout = child.stdout.take();
        let blade = Self {
            name,
            child,
            profile,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("READY") {
                        let _ = tx.send(());
                    }
                }
            });
        }
        Ok(Starting {
            blade,
            ready: rx,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Starting {
    /// Waits (blocking) until the launcher prints READY.
    fn wait_ready(self) -> Result<BladeFleet, BenchError> {
        let Self {
            mut blade,
            ready,
            log,
        } = self;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready.recv_timeout(Duration::from_millis(200)).is_ok() {
                return Ok(blade);
            }
            let exited = blade.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let tail = tail(&log);
                return Err(BenchError::Blade {
                    blade: blade.name.clone(),
                    message: match exited {
                        Some(status) => format!("exited during start-up ({status}); log:\n{tail}"),
                        None => format!("not up within {START_TIMEOUT:?}; log:\n{tail}"),
                    },
                });
            }
        }
    }
}

impl Drop for BladeFleet {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill() on our own child's pid with a valid signal has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(blade = %self.name, "blade did not stop within 20 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Bytes both veth ends have sent so far (None on loopback or when `ip` cannot say).
fn link_bytes(env: &CaseEnv) -> Option<u64> {
    let ends = env.netns.as_ref()?;
    let pairs: Vec<(&str, &str)> = ends
        .iter()
        .map(|e| (e.name.as_str(), e.dev.as_str()))
        .collect();
    super::netns::link_bytes(&pairs).ok()
}

/// Pages the bench LPAR's guest wrote so far, as `hvm` reports it (None when it cannot say).
async fn guest_writes(profile: &Profile, hvm: &str) -> Option<u64> {
    let lpar = LparRef {
        hvm: hvm.into(),
        lpar: LparSelector::Name(LPAR.into()),
    };
    let view = crate::ops::lpar(profile, &lpar).await.ok()?;
    view.runtime.map(|r| r.guest_writes)
}

/// Starts both blades of `spec` in `env`, moves the LPAR `spec.reps` times (A → B, B → A, …)
/// and returns the figures. A failed move ends the case with its error recorded; the moves
/// before it are kept.
pub async fn run_case(spec: &CaseSpec, env: &CaseEnv) -> Result<CaseResult, BenchError> {
    std::fs::create_dir_all(&env.workdir)
        .map_err(BenchError::io(format!("create {}", env.workdir.display())))?;
    eprintln!(
        "[{}] starting 2 blades ({} MiB LPAR, {} MB/s dirty){}",
        spec.label,
        spec.memory_mib,
        spec.dirty_mbps,
        env.netns
            .as_ref()
            .map(|e| format!(" in namespaces {} and {}", e[0].name, e[1].name))
            .unwrap_or_default()
    );
    let starting = [
        BladeFleet::spawn(env, spec, 0)?,
        BladeFleet::spawn(env, spec, 1)?,
    ];
    let blades = tokio::task::spawn_blocking(move || -> Result<_, BenchError> {
        let [a, b] = starting;
        Ok([a.wait_ready()?, b.wait_ready()?])
    })
    .await
    .map_err(|e| BenchError::Other(format!("blade start-up task: {e}")))??;
    let mut profile = Profile {
        fleet: "bench".into(),
        ..Profile::default()
    };
    for blade in &blades {
        profile.hvms.extend(Profile::load(&blade.profile)?.hvms);
    }
    let pids: Vec<u32> = blades.iter().map(BladeFleet::pid).collect();

    // The guests' own load, nothing moving.
    let idle_window = Duration::from_secs(2);
    let before = procstat::cpu_seconds(&pids);
    tokio::time::sleep(idle_window).await;
    let idle_cpu_cores = (procstat::cpu_seconds(&pids) - before) / idle_window.as_secs_f64();

    let mut result = CaseResult {
        spec: spec.clone(),
        probe_gbits: None,
        idle_cpu_cores,
        reps: Vec::new(),
        error: None,
    };
    let options = MoveOptions::default();
    if spec.rehearse {
        // On this class of machine the first transfers between fresh blades ran at a tenth of
        // the rate of every later one (a guest host backing memory on first touch), and a
        // rehearsal on cold blades predicted a move already warmed by the rehearsal itself.
        eprintln!(
            "[{}] warm-up moves {BLADE_A} → {BLADE_B} → {BLADE_A} (not measured)",
            spec.label
        );
        for (from, to) in [(BLADE_A, BLADE_B), (BLADE_B, BLADE_A)] {
            let request = bench_move(from, to, &options);
            if let Err(source) =
                live_move(&profile, &request, |_| {}, CancellationToken::new()).await
            {
                let e = BenchError::Move {
                    rep: 0,
                    direction: format!("{from} → {to} (warm-up)"),
                    source: Box::new(source),
                };
                eprintln!("[{}] {e}", spec.label);
                result.error = Some(e.to_string());
                return Ok(result);
            }
        }
    }
    for rep in 0..spec.reps {
        let (from, to) = if rep % 2 == 0 {
            (BLADE_A, BLADE_B)
        } else {
            (BLADE_B, BLADE_A)
        };
        let direction = format!("{from} → {to}");
        let request = bench_move(from, to, &options);
        if spec.pretouch {
            let bytes = (spec.memory_mib + 256) << 20;
            let _ = tokio::task::spawn_blocking(move || super::touch_host_memory(bytes)).await;
        }
        let prediction = if spec.rehearse {
            let actor = crate::history::Actor::of_this_process(crate::history::Origin::Cli);
            match crate::ops::rehearse(&profile, &actor, &request.source, to, &options).await {
                Ok(r) => Some(r),
                Err(source) => {
                    let e = BenchError::Move {
                        rep: rep + 1,
                        direction: format!("{direction} (its rehearsal)"),
                        source: Box::new(source),
                    };
                    eprintln!("[{}] {e}", spec.label);
                    result.error = Some(e.to_string());
                    break;
                }
            }
        } else {
            None
        };
        let link_before = link_bytes(env);
        let cpu_before = procstat::cpu_seconds(&pids);
        let writes_before = guest_writes(&profile, from).await;
        let started = Instant::now();
        let outcome = live_move(&profile, &request, |_| {}, CancellationToken::new()).await;
        let cpu_s = procstat::cpu_seconds(&pids) - cpu_before;
        let writes_after = guest_writes(&profile, to).await;
        let link_bytes = match (link_before, link_bytes(env)) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let elapsed = started.elapsed().as_secs_f64();
        let achieved_dirty_mbps = match (writes_before, writes_after) {
            (Some(b), Some(a)) if elapsed > 0.0 => {
                Some(a.saturating_sub(b) as f64 * 4096.0 / elapsed / 1e6)
            }
            _ => None,
        };
        let report = match outcome {
            Ok(report) => report,
            Err(source) => {
                let e = BenchError::Move {
                    rep: rep + 1,
                    direction,
                    source: Box::new(source),
                };
                eprintln!("[{}] {e}", spec.label);
                result.error = Some(e.to_string());
                break;
            }
        };
        let s = &report.summary;
        let r = Rep {
            direction,
            total_s: report.total.as_secs_f64(),
            suspension_ms: report.suspension.map(|d| d.as_secs_f64() * 1e3),
            mover_downtime_ms: s.downtime.as_secs_f64() * 1e3,
            transfer_s: s.total_time.as_secs_f64(),
            memory_size: s.memory_size,
            memory_sent: s.memory_bytes_sent,
            wire_bytes: s.wire_bytes,
            rounds: s.rounds,
            max_throttle_percent: s.max_throttle_percent,
            memory_mbps: s.memory_throughput_mbps,
            cpu_s,
            achieved_dirty_mbps,
            link_bytes,
            predicted_total_s: prediction.as_ref().map(|p| p.predicted_total_s),
            predicted_suspension_ms: prediction.as_ref().map(|p| p.predicted_suspension_ms),
        };
        eprintln!(
            "[{}] move {}/{} {}: total {:.2} s, suspension {}, wire {:.2} × memory, {} rounds, throttle ≤ {} %, CPU {:.1} s, guest dirtied {} MB/s",
            spec.label,
            rep + 1,
            spec.reps,
            r.direction,
            r.total_s,
            r.suspension_ms
                .map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.1} ms")),
            r.wire_bytes as f64 / r.memory_size.max(1) as f64,
            r.rounds,
            r.max_throttle_percent,
            r.cpu_s,
            r.achieved_dirty_mbps
                .map_or_else(|| "?".to_owned(), |d| format!("{d:.0}")),
        );
        if let Some(p) = &prediction {
            eprintln!(
                "[{}]   its rehearsal predicted {:.2} s ({:+.0} %), pause {:.1} ms, from {:.0} MB sampled at {:.0} MB/s (the move: {:.0} MB/s over {:.2} s)",
                spec.label,
                p.predicted_total_s,
                (p.predicted_total_s / r.total_s.max(1e-9) - 1.0) * 100.0,
                p.predicted_suspension_ms,
                p.sampled_bytes as f64 / 1e6,
                p.throughput_mbps,
                r.memory_mbps,
                r.transfer_s,
            );
        }
        result.reps.push(r);
        // Let the guest run a moment on its new blade before moving it again.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stop = tokio::task::spawn_blocking(move || drop(blades));
    let _ = stop.await;
    Ok(result)
}

/// The bench LPAR's live move from blade `from` to blade `to`.
fn bench_move(from: &str, to: &str, options: &MoveOptions) -> LiveMoveRequest {
    LiveMoveRequest {
        source: LparRef {
            hvm: from.into(),
            lpar: LparSelector::Name(LPAR.into()),
        },
        destination: to.into(),
        dest_number: None,
        options: options.clone(),
        actor: crate::history::Actor::of_this_process(crate::history::Origin::Cli),
    }
}
