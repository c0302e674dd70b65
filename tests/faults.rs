//! The fault matrix: for each stage of a live move, inject each fault — kill -9 the source
//! hvmsim, the destination hvmsim or the manager; drop or stall the migration path; cut the
//! manager off from the source's management API (blades still up, their migration path intact);
//! fill the destination's state disk — then let recovery run and check the invariants:
//!
//! * the LPAR is activated and running on exactly one blade;
//! * no WWPN is logged in twice, no WWPN or MAC is defined twice;
//! * no migration record and no unfinished job is left; "requires recovery" only where no HVM
//!   held a consistent copy any more, and then `lparmover recover` clears it;
//! * no WWN rollback mark is left: marks recovery wrote during the cell (a blade lost on one
//!   side of the move) are rolled back by the same `lparmover recover` (the cell's line says
//!   "WWNs marked" where that happened);
//! * the guest's memory outside its working set (what the workload never writes) has the digest
//!   it had at activation, on whichever blade it runs;
//! * the guest's heartbeat continues from where it was at the fault (its memory is the state it
//!   had, not a fresh boot). Guests run in VM processes of their own (`hvmsim::vmproc`), so a
//!   killed hvmsim leaves them running and its restart adopts them; a guest that had to boot
//!   again lost its state, and the cell is lost.
//!
//! The move is stopped at each stage by the manager's fault barrier (`lparmover::jobs::fault`).
//! Drop and stall shape the loopback device with `tc` (an HTB class at 8 bit/s that the migration
//! path's UDP is classified into), one filter per cell on the cell's own migration addresses;
//! the cut-off puts the source's management address and port (TCP) into the same class, so the
//! manager's requests and lease renewals vanish while the blades settle between themselves.
//! Without `tc` those cells are skipped, loudly (in CI they fail). The matrix is printed at
//! the end.
//!
//! A Shutdown-mode move gets its own matrix (`fault_matrix_of_a_shutdown_move`): the manager
//! stops after the backups, after the guest shut down, after the destination defined the LPAR
//! and after the source released it; each cell kills a process or fills the destination's disk,
//! then `lparmover recover` runs and the LPAR must be defined on exactly one blade (deactivated,
//! or activated and running), with no name defined twice and nothing left in the journal.
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lparmover::api::HvmClient;
use lparmover::api::array::ArrayClient;
use lparmover::jobs::fault::{BARRIER_ENV, DIR_ENV};
use lparmover::model::LparStatus;
use lparmover::model::fleet::DEMO_FLEET_TOML;
use lpm_tests::{TestArray, TestBlade, binary, profile_of};

const STAGES: [&str; 7] = [
    "prepare",
    "round0",
    "rounds",
    "suspension",
    "commit",
    "swap",
    "release",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillSource,
    KillDestination,
    KillManager,
    DropPath,
    StallPath,
    CutOffSource,
    DiskFull,
}

const FAULTS: [Fault; 7] = [
    Fault::KillSource,
    Fault::KillDestination,
    Fault::KillManager,
    Fault::DropPath,
    Fault::StallPath,
    Fault::CutOffSource,
    Fault::DiskFull,
];

impl Fault {
    /// Whether the fault is injected with `tc`.
    fn shapes(self) -> bool {
        matches!(self, Self::DropPath | Self::StallPath | Self::CutOffSource)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KillSource => "kill -9 source",
            Self::KillDestination => "kill -9 destination",
            Self::KillManager => "kill -9 manager",
            Self::DropPath => "drop path",
            Self::StallPath => "stall path 3 s",
            Self::CutOffSource => "manager cut off source",
            Self::DiskFull => "destination disk full",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Invariants hold and the guest kept its state.
    Survived,
    /// Something was lost or left behind.
    Lost(String),
    /// The fault could not be injected here (no `tc`).
    Skipped(String),
}

impl Verdict {
    fn cell(&self) -> &'static str {
        match self {
            Self::Survived => "survived",
            Self::Lost(_) => "LOST",
            Self::Skipped(_) => "skipped",
        }
    }
}

/// A small two-blade fleet (ch1-b1 running web-01 at 128 MiB, ch1-b2 empty) with migration
/// addresses of its own, so cells can run side by side and be shaped one by one, and the demo's
/// storage array: each cell runs one, whose fabric view is the witness that no WWPN is active
/// twice.
fn cell_fleet(src_ip: &str, dst_ip: &str) -> String {
    let blocks: Vec<&str> = DEMO_FLEET_TOML.split("[[blade]]").collect();
    let header = blocks[0];
    let keep_lpar = |blade: &str, lpar: Option<&str>| -> String {
        let parts: Vec<&str> = blade.split("[[blade.lpars]]").collect();
        let mut out = parts[0].to_owned();
        if let Some(name) = lpar {
            let chosen = parts
                .iter()
                .skip(1)
                .find(|p| p.contains(&format!("name = \"{name}\"")))
                .unwrap();
            out.push_str("[[blade.lpars]]");
            out.push_str(
                &chosen
                    .replace("memory_mib = 512", "memory_mib = 128")
                    .replace("working_set_mib = 64", "working_set_mib = 32")
                    .replace("dirty_rate_mbps = 10", "dirty_rate_mbps = 20"),
            );
        }
        out
    };
    let b1 = keep_lpar(blocks[1], Some("web-01"));
    let b2 = keep_lpar(blocks[2], None);
    assert!(b1.contains("name = \"ch1-b1\"") && b2.contains("name = \"ch1-b2\""));
    let array = DEMO_FLEET_TOML[DEMO_FLEET_TOML.find("[[array]]").unwrap()..]
        .replace(r#"["web-01", "app-01"]"#, r#"["web-01"]"#);
    assert!(array.contains(r#"migration_wwpns_registered = ["web-01"]"#));
    format!("{header}[[blade]]{b1}[[blade]]{b2}\n{array}")
        .replace("ip = \"127.0.2.1\"", &format!("ip = \"{src_ip}\""))
        .replace("ip = \"127.0.2.2\"", &format!("ip = \"{dst_ip}\""))
}

/// HTB on the loopback device: cells' filters send their migration UDP to a class at 8 bit/s.
struct Shaper;

impl Shaper {
    fn tc(args: &str) -> bool {
        Command::new("tc")
            .args(args.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The one shaper of this process (tests that shape run side by side and share it; the
    /// qdisc goes when the last of them drops it).
    fn shared() -> Option<Arc<Self>> {
        static SHARED: Mutex<std::sync::Weak<Shaper>> = Mutex::new(std::sync::Weak::new());
        let mut slot = SHARED.lock().unwrap();
        if let Some(s) = slot.upgrade() {
            return Some(s);
        }
        let s = Arc::new(Self::install()?);
        *slot = Arc::downgrade(&s);
        Some(s)
    }

    fn install() -> Option<Self> {
        Self::tc("qdisc del dev lo root");
        let ok = Self::tc("qdisc add dev lo root handle 1: htb default 1")
            && Self::tc("class add dev lo parent 1: classid 1:1 htb rate 100gbit")
            && Self::tc("class add dev lo parent 1: classid 1:2 htb rate 8bit ceil 8bit")
            && Self::tc("qdisc add dev lo parent 1:2 handle 20: pfifo limit 1");
        if ok {
            Some(Self)
        } else {
            Self::tc("qdisc del dev lo root");
            None
        }
    }

    fn block(&self, pref: u32, ips: &[&str]) {
        for (i, ip) in ips.iter().enumerate() {
            let p = pref + i as u32;
            assert!(
                Self::tc(&format!(
                    "filter add dev lo parent 1: pref {p} protocol ip u32 match ip dst {ip}/32 match ip protocol 17 0xff flowid 1:2"
                )),
                "tc filter for {ip}"
            );
        }
    }

    /// Drops TCP to `ip:port` (a blade's management API): the manager's requests, the lease
    /// renewals among them, go nowhere; the blade itself keeps running.
    fn cut_off(&self, pref: u32, ip: &str, port: u16) {
        assert!(
            Self::tc(&format!(
                "filter add dev lo parent 1: pref {pref} protocol ip u32 match ip dst {ip}/32 match ip protocol 6 0xff match ip dport {port} 0xffff flowid 1:2"
            )),
            "tc filter for {ip}:{port}"
        );
    }

    fn unblock(&self, pref: u32, count: u32) {
        for p in pref..pref + count {
            Self::tc(&format!("filter del dev lo parent 1: pref {p}"));
        }
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        Self::tc("qdisc del dev lo root");
    }
}

fn wait_for(path: &Path, child: &mut Child, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the manager exited ({status}) before the barrier"));
        }
        if start.elapsed() > limit {
            return Err("the barrier was not reached in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn wait_exit(child: &mut Child, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return format!("{status}: {}", err.lines().last().unwrap_or(""));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return "the manager hung; killed".into();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lparmover(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("lparmover"))
        .args(args)
        .env("LPARMOVER_PROFILE", profile)
        .output()
        .unwrap()
}

struct Blades {
    b1: TestBlade,
    b2: TestBlade,
    /// The cell's array: its fabric view says which blade holds which WWPN.
    array: TestArray,
    /// web-01's memory digest outside its working set, taken once it ran at the cell's start.
    memory_at_start: String,
}

impl Blades {
    fn clients(&self) -> [HvmClient; 2] {
        [self.b1.client(), self.b2.client()]
    }
}

async fn heartbeat_on(client: &HvmClient) -> Option<(LparStatus, u64)> {
    let lpars = client.lpars().await.ok()?;
    let view = lpars
        .into_iter()
        .find(|l| l.lpar.name.as_str() == "web-01")?;
    Some((
        view.lpar.status,
        view.runtime.map_or(0, |r| r.heartbeat.counter),
    ))
}

async fn highest_heartbeat(blades: &Blades) -> u64 {
    let mut best = 0;
    for c in blades.clients() {
        if let Some((_, hb)) = heartbeat_on(&c).await {
            best = best.max(hb);
        }
    }
    best
}

/// The digest of web-01's memory outside its working set on `client`.
async fn memory_digest(client: &HvmClient) -> Result<String, String> {
    let view = client
        .lpars()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|l| l.lpar.name.as_str() == "web-01")
        .ok_or_else(|| format!("web-01 is not on {}", client.name()))?;
    Ok(client
        .memory_digest(view.lpar.number)
        .await
        .map_err(|e| format!("memory digest of web-01 on {}: {e}", client.name()))?
        .blake3)
}

/// web-01's memory digest on `client` once its guest runs (its heartbeat moves).
async fn memory_once_running(client: &HvmClient) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while heartbeat_on(client).await.is_none_or(|(_, hb)| hb == 0) {
        if Instant::now() > deadline {
            return Err(format!("web-01 did not start running on {}", client.name()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    memory_digest(client).await
}

/// The memory web-01 runs with on `client` is the memory it had at the cell's start (outside
/// its working set, which the workload keeps writing).
async fn memory_intact(blades: &Blades, client: &HvmClient) -> Result<(), String> {
    let now = memory_digest(client).await?;
    if now != blades.memory_at_start {
        return Err(format!(
            "web-01's memory on {} is not what it was at activation (digest outside the working set {} → {})",
            client.name(),
            &blades.memory_at_start[..16],
            &now[..16.min(now.len())]
        ));
    }
    Ok(())
}

/// "Requires recovery" is allowed only if `lparmover recover HVM/web-01` clears it.
async fn recover_requiring_recovery(blades: &Blades, profile: &Path) -> Result<(), String> {
    for (client, hvm) in blades.clients().iter().zip(["ch1-b1", "ch1-b2"]) {
        if let Some((LparStatus::RequiresRecovery, _)) = heartbeat_on(client).await {
            let out = lparmover(profile, &["recover", &format!("{hvm}/web-01")]);
            if !out.status.success() {
                return Err(format!(
                    "`lparmover recover {hvm}/web-01` failed: {}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
        }
    }
    Ok(())
}

/// No blade still records a part in a move.
async fn no_migration_records(client: &HvmClient) -> Result<(), String> {
    let leftovers: Vec<String> = client
        .migrations()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|m| m.record.is_some())
        .map(|m| format!("{} {:?}", m.job, m.phase))
        .collect();
    if !leftovers.is_empty() {
        return Err(format!(
            "migration records left on {}: {leftovers:?}",
            client.name()
        ));
    }
    Ok(())
}

/// No WWPN logged in twice, no WWPN or MAC defined twice, fleet-wide.
fn names_unique<W: Ord + Clone + fmt::Debug, M: Ord + Clone + fmt::Debug>(
    wwpns_logged_in: &[W],
    names_defined: &[W],
    macs: &[M],
) -> Result<(), String> {
    for (what, list) in [
        ("logged-in WWPN", wwpns_logged_in),
        ("defined WWPN", names_defined),
    ] {
        let mut sorted = list.to_vec();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("a {what} appears twice: {sorted:?}"));
        }
    }
    let mut sorted = macs.to_vec();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("a MAC is defined twice: {sorted:?}"));
    }
    Ok(())
}

/// Shutdown mode, after recovery: web-01 is defined on exactly one blade (activated there, and
/// running, or deactivated), no name is defined twice, no migration record is left.
async fn check_cold_invariants(blades: &Blades, profile: &Path) -> Result<(), String> {
    recover_requiring_recovery(blades, profile).await?;
    let mut holders = Vec::new();
    let (mut logged_in, mut defined, mut macs) = (Vec::new(), Vec::new(), Vec::new());
    for client in blades.clients() {
        let lpars = client.lpars().await.map_err(|e| e.to_string())?;
        for l in &lpars {
            logged_in.extend(l.fc_logins.iter().copied());
            for v in &l.lpar.vfcs {
                defined.push(v.wwpn);
                defined.push(v.migration_wwpn);
            }
            macs.extend(l.lpar.vnics.iter().map(|n| n.mac));
            if l.lpar.name.as_str() == "web-01" {
                match l.lpar.status {
                    LparStatus::Activated | LparStatus::Deactivated => {
                        holders.push((client.clone(), l.lpar.status));
                    }
                    other => {
                        return Err(format!("web-01 is {} on {}", other.label(), client.name()));
                    }
                }
            }
        }
        no_migration_records(&client).await?;
    }
    if holders.len() != 1 {
        let on: Vec<String> = holders
            .iter()
            .map(|(c, st)| format!("{} ({})", c.name(), st.label()))
            .collect();
        return Err(format!(
            "web-01 is defined on {} blades: {on:?}",
            holders.len()
        ));
    }
    names_unique(&logged_in, &defined, &macs)?;
    let (client, status) = &holders[0];
    if *status == LparStatus::Activated {
        memory_intact(blades, client).await?;
        let (_, hb1) = heartbeat_on(client).await.ok_or("web-01 vanished")?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, hb2) = heartbeat_on(client).await.ok_or("web-01 vanished")?;
        if hb2 <= hb1 {
            return Err(format!(
                "web-01 is activated on {} but does not run (heartbeat {hb1} → {hb2})",
                client.name()
            ));
        }
    }
    Ok(())
}

/// Checks the invariants after recovery; returns whether the guest kept its state.
async fn check_invariants(
    blades: &Blades,
    profile: &Path,
    hb_at_fault: u64,
) -> Result<bool, String> {
    // "Requires recovery" is allowed only if `lparmover recover` clears it.
    recover_requiring_recovery(blades, profile).await?;
    for client in blades.clients() {
        let marks = client.wwn_rollbacks().await.map_err(|e| e.to_string())?;
        if !marks.is_empty() {
            return Err(format!(
                "WWNs pending rollback left on {}: {:?}",
                client.name(),
                marks
                    .iter()
                    .map(|m| format!("{} ({})", m.lpar_name, m.job))
                    .collect::<Vec<_>>()
            ));
        }
        no_migration_records(&client).await?;
    }
    let (_, hb) = exactly_one_copy_runs(blades).await?;
    Ok(hb >= hb_at_fault)
}

/// web-01 is activated on exactly one blade and its heartbeat advances there; no WWPN is logged
/// in twice and no WWPN or MAC is defined twice. Returns that blade and the heartbeat read.
async fn exactly_one_copy_runs(blades: &Blades) -> Result<(HvmClient, u64), String> {
    let mut running = Vec::new();
    let mut wwpns_logged_in = Vec::new();
    let mut names_defined = Vec::new();
    let mut macs = Vec::new();
    for client in blades.clients() {
        let lpars = client.lpars().await.map_err(|e| e.to_string())?;
        for l in &lpars {
            wwpns_logged_in.extend(l.fc_logins.iter().copied());
            for v in &l.lpar.vfcs {
                names_defined.push(v.wwpn);
                names_defined.push(v.migration_wwpn);
            }
            macs.extend(l.lpar.vnics.iter().map(|n| n.mac));
            if l.lpar.name.as_str() == "web-01" {
                match l.lpar.status {
                    LparStatus::Activated => running.push(client.clone()),
                    other => {
                        return Err(format!("web-01 is {} on {}", other.label(), client.name()));
                    }
                }
            }
        }
    }
    if running.len() != 1 {
        return Err(format!("web-01 is activated on {} blades", running.len()));
    }
    names_unique(&wwpns_logged_in, &names_defined, &macs)?;
    let client = running.remove(0);
    fabric_agrees(&blades.array, &client).await?;
    one_vm_process(blades).await?;
    memory_intact(blades, &client).await?;
    let (_, hb1) = heartbeat_on(&client).await.ok_or("web-01 vanished")?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, hb2) = heartbeat_on(&client).await.ok_or("web-01 vanished")?;
    if hb2 <= hb1 {
        return Err(format!(
            "web-01 on {} does not run (heartbeat {hb1} → {hb2})",
            client.name()
        ));
    }
    Ok((client, hb2))
}

/// The array's fabric view agrees with the blades (within the fabric agents' reconcile time):
/// every WWPN web-01 runs with on `running` is logged in by that blade, and no WWPN or
/// migration WWPN of web-01 is logged in by the other one.
async fn fabric_agrees(array: &TestArray, running: &HvmClient) -> Result<(), String> {
    let fabric = ArrayClient::new(&array.profile).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = lpm_tests::find_lpar(running, "web-01")
            .await
            .ok_or("web-01 vanished")?;
        let logins = fabric.fabric_logins().await.map_err(|e| e.to_string())?;
        let mine: Vec<_> = view
            .lpar
            .vfcs
            .iter()
            .flat_map(|v| [v.wwpn, v.migration_wwpn])
            .collect();
        let wrong: Vec<String> = view
            .fc_logins
            .iter()
            .filter(|w| {
                !logins
                    .iter()
                    .any(|l| l.wwpn == **w && l.blade == running.name())
            })
            .map(|w| format!("{w} not logged in by {}", running.name()))
            .chain(
                logins
                    .iter()
                    .filter(|l| mine.contains(&l.wwpn) && l.blade != running.name())
                    .map(|l| format!("{} still logged in by {}", l.wwpn, l.blade)),
            )
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the array's fabric disagrees: {}",
                wrong.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `hvmsim vm` processes of the cell's blades (their control sockets live under the
/// blades' state directories), as `PID socket`.
fn vm_processes(blades: &Blades) -> Vec<String> {
    let dirs = [blades.b1.state_dir(), blades.b2.state_dir()];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.filter_map(Result::ok) {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) != Some("vm") {
            continue;
        }
        let socket = args
            .iter()
            .position(|a| a == "--socket")
            .and_then(|i| args.get(i + 1));
        if let Some(socket) = socket
            && dirs.iter().any(|d| Path::new(socket).starts_with(d))
        {
            found.push(format!("{} {socket}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// Exactly one `hvmsim vm` process runs for the cell (the running copy's): a failed side left
/// no paused or orphaned guest behind. Reaping may lag the failure by a moment.
async fn one_vm_process(blades: &Blades) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = vm_processes(blades);
        if found.len() == 1 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{} hvmsim vm processes for one LPAR: {}",
                found.len(),
                found.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn unfinished_journals(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default()
}

fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xA5u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

/// One cell's directory, fleet file and (for the disk-full fault) the destination's small
/// state disk; unmounted when dropped.
struct Cell {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    b2_dir: PathBuf,
    mounted: bool,
    src_ip: String,
    dst_ip: String,
}

impl Cell {
    fn new(index: u32, fault: Fault) -> Result<Self, Verdict> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (src_ip, dst_ip) = (
            format!("127.0.2.{}", 20 + 2 * index),
            format!("127.0.2.{}", 21 + 2 * index),
        );
        std::fs::write(dir.join("fleet.toml"), cell_fleet(&src_ip, &dst_ip)).unwrap();
        let b2_dir = dir.join("b2");
        std::fs::create_dir_all(&b2_dir).unwrap();
        let mounted = fault == Fault::DiskFull
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
                .arg(&b2_dir)
                .status()
                .is_ok_and(|s| s.success());
        if fault == Fault::DiskFull && !mounted {
            return Err(Verdict::Skipped(
                "cannot mount a tmpfs for the destination".into(),
            ));
        }
        Ok(Self {
            _tmp: tmp,
            dir,
            b2_dir,
            mounted,
            src_ip,
            dst_ip,
        })
    }

    /// Starts both blades and writes a profile whose journal, history and backups stay with
    /// the cell.
    fn start(&self) -> Result<(Blades, PathBuf, PathBuf), String> {
        let fleet = self.dir.join("fleet.toml");
        let array =
            TestArray::start(&fleet, "ams1", &self.dir.join("ams1")).map_err(|e| e.to_string())?;
        let b1 = TestBlade::start_cabled(&fleet, "ch1-b1", &self.dir.join("b1"), &[&array])
            .map_err(|e| e.to_string())?;
        let b2 = TestBlade::start_cabled(&fleet, "ch1-b2", &self.b2_dir, &[&array])
            .map_err(|e| e.to_string())?;
        let memory_at_start = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(memory_once_running(&b1.client()))?;
        let blades = Blades {
            b1,
            b2,
            array,
            memory_at_start,
        };
        let mut profile = profile_of(&[&blades.b1, &blades.b2]);
        profile.arrays.push(blades.array.profile.clone());
        let data = self.dir.join("manager");
        profile.data_dir = Some(data.clone());
        let profile_path = self.dir.join("profile.toml");
        profile.save(&profile_path).unwrap();
        Ok((blades, profile_path, data))
    }

    /// Starts `lparmover ARGS` armed to stop at `stage`, and waits until it is there.
    fn manager_at(&self, profile: &Path, stage: &str, args: &[&str]) -> Result<Child, String> {
        let fault_dir = self.fault_dir();
        std::fs::create_dir_all(&fault_dir).unwrap();
        let mut manager = Command::new(binary("lparmover"))
            .args(args)
            .env("LPARMOVER_PROFILE", profile)
            .env(BARRIER_ENV, stage)
            .env(DIR_ENV, &fault_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Err(e) = wait_for(
            &fault_dir.join("reached"),
            &mut manager,
            Duration::from_secs(90),
        ) {
            let tail = wait_exit(&mut manager, Duration::from_secs(5));
            return Err(format!("{e}: {tail}"));
        }
        Ok(manager)
    }

    fn fault_dir(&self) -> PathBuf {
        self.dir.join("fault")
    }

    /// Injects `fault` into a manager waiting at its barrier, lets it go on, and waits for it
    /// (or kills it) and restarts what was killed.
    fn inject(
        &self,
        fault: Fault,
        index: u32,
        blades: &mut Blades,
        manager: &mut Child,
        shaper: Option<&Shaper>,
    ) -> Result<(), String> {
        let go = || std::fs::write(self.fault_dir().join("go"), b"go").unwrap();
        let pref = 100 + 2 * index;
        let ips = [self.src_ip.as_str(), self.dst_ip.as_str()];
        match fault {
            Fault::KillSource => {
                blades.b1.kill9();
                go();
                wait_exit(manager, Duration::from_secs(90));
                blades.b1.restart().map_err(|e| e.to_string())?;
            }
            Fault::KillDestination => {
                blades.b2.kill9();
                go();
                wait_exit(manager, Duration::from_secs(90));
                blades.b2.restart().map_err(|e| e.to_string())?;
            }
            Fault::KillManager => {
                let _ = manager.kill();
                let _ = manager.wait();
            }
            Fault::DropPath => {
                let s = shaper.ok_or("no shaper")?;
                s.block(pref, &ips);
                go();
                wait_exit(manager, Duration::from_secs(120));
                s.unblock(pref, 2);
            }
            Fault::StallPath => {
                let s = shaper.ok_or("no shaper")?;
                s.block(pref, &ips);
                go();
                std::thread::sleep(Duration::from_secs(3));
                s.unblock(pref, 2);
                wait_exit(manager, Duration::from_secs(120));
            }
            Fault::CutOffSource => {
                let s = shaper.ok_or("no shaper")?;
                let url = reqwest::Url::parse(&blades.b1.profile.url).map_err(|e| e.to_string())?;
                let (ip, port) = (
                    url.host_str()
                        .ok_or("no host in the source's URL")?
                        .to_owned(),
                    url.port().ok_or("no port in the source's URL")?,
                );
                s.cut_off(pref, &ip, port);
                go();
                wait_exit(manager, Duration::from_secs(120));
                s.unblock(pref, 1);
            }
            Fault::DiskFull => {
                let filler = fill(&self.b2_dir);
                go();
                wait_exit(manager, Duration::from_secs(90));
                let _ = std::fs::remove_file(filler);
            }
        }
        Ok(())
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.b2_dir).status();
        }
    }
}

fn run_cell(index: u32, stage: &str, fault: Fault, shaper: Option<&Shaper>) -> CellResult {
    if fault.shapes() && shaper.is_none() {
        return (Verdict::Skipped("tc/HTB unavailable".into()), None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cell = match Cell::new(index, fault) {
        Ok(c) => c,
        Err(v) => return (v, None),
    };
    let mut at_fault = None;
    let verdict = (|| {
        let (mut blades, profile_path, data) = cell.start()?;
        let mut manager = cell.manager_at(
            &profile_path,
            stage,
            &[
                "migrate",
                "--from",
                "ch1-b1/web-01",
                "--to",
                "ch1-b2",
                "--bandwidth-limit",
                "40",
                "--downtime-limit",
                "100ms",
                // Raw pages, so the bandwidth limit alone sets how long each round lasts.
                "--compression",
                "never",
                "--verify",
                "--json",
            ],
        )?;
        let hb_at_fault = rt.block_on(highest_heartbeat(&blades));
        at_fault = Some(rt.block_on(where_the_blades_are(&blades)));
        let fault_time = chrono::Utc::now();
        cell.inject(fault, index, &mut blades, &mut manager, shaper)?;
        // What a restarted manager does first.
        let out = lparmover(&profile_path, &["recover"]);
        let recover_said = String::from_utf8_lossy(&out.stdout).to_string();
        let continued = rt
            .block_on(check_invariants(&blades, &profile_path, hb_at_fault))
            .map_err(|e| format!("{e} (recover said: {})", recover_said.trim()))?;
        // A guest that booted again (after its blade's restart or `lparmover recover`) did not
        // keep its state, whatever its heartbeat reads by now.
        let booted_again = rt.block_on(async {
            let mut booted = false;
            for client in blades.clients() {
                for entry in client.logs(0).await.unwrap_or_default() {
                    booted |= entry.time > fault_time
                        && (entry.message.contains("(web-01) activated")
                            || entry.message.contains("(web-01) re-activated"));
                }
            }
            booted
        });
        let kept_state = continued && !booted_again;
        let marked = rt.block_on(async {
            let mut marked = false;
            for client in blades.clients() {
                for entry in client.logs(0).await.unwrap_or_default() {
                    marked |= entry.message.contains("has WWNs pending rollback");
                }
            }
            marked
        });
        if marked {
            eprintln!("cell {stage} × {fault}: WWNs marked, rolled back by `lparmover recover`");
        }
        let left = unfinished_journals(&data);
        if !left.is_empty() {
            return Err(format!("unfinished jobs left in the journal: {left:?}"));
        }
        drop(blades);
        Ok(kept_state)
    })();
    let verdict = match verdict {
        Ok(true) => Verdict::Survived,
        Ok(false) => Verdict::Lost(
            "the guest booted again after the fault: its state before the fault is lost".into(),
        ),
        Err(e) => Verdict::Lost(e),
    };
    (verdict, at_fault)
}

/// A cell's verdict, and where the blades were when the fault hit (from their own status).
type CellResult = (Verdict, Option<String>);

/// web-01's status and its move's phase on each blade, e.g. `Migrating/switchover-ready ·
/// Migrating/switchover-ready` (source · destination; `-` where a blade has none).
async fn where_the_blades_are(blades: &Blades) -> String {
    let mut sides = Vec::new();
    for client in blades.clients() {
        let status = heartbeat_on(&client)
            .await
            .map_or("-".to_string(), |(s, _)| s.label().to_string());
        let phase = match client.migrations().await {
            Ok(m) => m
                .first()
                .map_or("-".to_string(), |m| m.phase.as_str().to_string()),
            Err(_) => "unreachable".to_string(),
        };
        sides.push(format!("{status}/{phase}"));
    }
    sides.join(" · ")
}

/// Runs one cell: (index, stage, fault) → verdict.
type CellRunner = dyn Fn(u32, &str, Fault) -> CellResult + Send + Sync;

/// Runs the cells `stages × faults` (cell `i` gets index `base + i`, which picks its
/// addresses), three at a time, and prints the matrix whatever the outcome — on the real
/// stderr, so `cargo test` shows it for a passing run too. Fails the test on any lost cell.
fn run_matrix(
    title: &str,
    stages: &[&'static str],
    faults: &[Fault],
    base: u32,
    run: Arc<CellRunner>,
) {
    let cells: Vec<(u32, &'static str, Fault)> = stages
        .iter()
        .flat_map(|s| faults.iter().map(move |f| (*s, *f)))
        .enumerate()
        .map(|(i, (s, f))| (base + i as u32, s, f))
        .collect();
    // LPM_FAULT_STAGES=round0,commit and LPM_FAULT_KINDS=manager,drop narrow the run (debugging).
    let only = |var: &str, text: &str| {
        std::env::var(var)
            .map(|v| v.split(',').any(|w| text.contains(w.trim())))
            .unwrap_or(true)
    };
    let wanted: Vec<(u32, &str, Fault)> = cells
        .iter()
        .copied()
        .filter(|(_, s, f)| only("LPM_FAULT_STAGES", s) && only("LPM_FAULT_KINDS", &f.to_string()))
        .collect();
    let results: Arc<Mutex<Vec<(u32, CellResult)>>> = Arc::new(Mutex::new(
        cells
            .iter()
            .filter(|c| !wanted.contains(c))
            .map(|(i, _, _)| (*i, (Verdict::Skipped("not selected".into()), None)))
            .collect(),
    ));
    let queue = Arc::new(Mutex::new(wanted));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let results = Arc::clone(&results);
            let run = Arc::clone(&run);
            std::thread::spawn(move || {
                loop {
                    let Some((i, stage, fault)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let started = Instant::now();
                    let (verdict, at_fault) = run(i, stage, fault);
                    eprintln!(
                        "cell {stage:>13} × {fault:<22} [{}] → {} ({:.1} s){}",
                        at_fault.as_deref().unwrap_or("not reached"),
                        verdict.cell(),
                        started.elapsed().as_secs_f64(),
                        match &verdict {
                            Verdict::Lost(why) | Verdict::Skipped(why) => format!(": {why}"),
                            _ => String::new(),
                        }
                    );
                    results.lock().unwrap().push((i, (verdict, at_fault)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let result_of = |i: u32| {
        results
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    let verdict_of = |i: u32| result_of(i).0;
    let mut table = format!("\n{title} (faults × stages)\n{:<24}", "");
    for s in stages {
        table.push_str(&format!("{s:>14}"));
    }
    table.push('\n');
    for (fi, f) in faults.iter().enumerate() {
        table.push_str(&format!("{:<24}", f.to_string()));
        for si in 0..stages.len() {
            let i = base + (si * faults.len() + fi) as u32;
            table.push_str(&format!("{:>14}", verdict_of(i).cell()));
        }
        table.push('\n');
    }
    table.push_str(
        "survived: invariants hold and the LPAR kept its state (its heartbeat went on from where it\n\
         was at the fault) and its memory (digest outside the working set as at the start);\n\
         LOST: an invariant failed or the guest had to boot again\n",
    );
    table.push_str(
        "\nwhere the blades were at each injection, from their own status\n\
         (source · destination: web-01's LPAR status / its move's phase)\n",
    );
    for (i, stage, fault) in &cells {
        table.push_str(&format!(
            "{stage:>13} × {:<22} {}\n",
            fault.to_string(),
            result_of(*i).1.as_deref().unwrap_or("not reached")
        ));
    }
    {
        use std::io::Write;
        // Not eprintln!: the test harness captures that for passing tests.
        let _ = std::io::stderr().write_all(table.as_bytes());
    }
    let ran = cells
        .iter()
        .filter(|(i, _, _)| !matches!(verdict_of(*i), Verdict::Skipped(_)))
        .count();
    {
        use std::io::Write;
        // `.ci/run` prints this line.
        let _ = writeln!(
            std::io::stderr(),
            "FAULT-MATRIX {title}: {ran} of {} cells ran",
            cells.len()
        );
    }
    let narrowed = std::env::var_os("LPM_FAULT_STAGES").is_some()
        || std::env::var_os("LPM_FAULT_KINDS").is_some();
    assert!(
        ran == cells.len() || narrowed || !lpm_tests::in_ci(),
        "{title}: only {ran} of the {} cells it defines ran (in CI every cell must run)",
        cells.len()
    );
    let lost: Vec<String> = cells
        .iter()
        .filter_map(|(i, s, f)| match verdict_of(*i) {
            Verdict::Lost(why) => Some(format!("{s} × {f}: {why}")),
            _ => None,
        })
        .collect();
    assert!(
        lost.is_empty(),
        "cells that lost something:\n{}",
        lost.join("\n")
    );
}

#[test]
fn fault_matrix_of_a_live_move() {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("NOTE: /dev/kvm is missing: the fault matrix runs on software guests");
    }
    let shaper = Shaper::shared();
    if shaper.is_none() {
        // Outside CI the drop/stall/cut-off cells are then skipped (and shown so in the matrix).
        lpm_tests::unavailable(
            "fault_matrix_of_a_live_move (drop/stall/cut-off cells)",
            lpm_tests::Need::Tc,
            &"`tc` with HTB on the loopback device does not work (run as root with iproute2)",
        );
    }
    if let Err(why) = lpm_tests::tmpfs_mountable() {
        // Outside CI the disk-full cells are then skipped (and shown so in the matrix).
        lpm_tests::unavailable(
            "fault_matrix_of_a_live_move (disk-full cells)",
            lpm_tests::Need::Tmpfs,
            &why,
        );
    }
    let shaper = Arc::new(shaper);
    run_matrix(
        "fault matrix of a live move",
        &STAGES,
        &FAULTS,
        0,
        Arc::new(move |i, stage, fault| run_cell(i, stage, fault, shaper.as_ref().as_deref())),
    );
}

/// Stages of a Shutdown-mode move where the manager stops (`lparmover::jobs::cold`): after the
/// backups, after the guest shut down, after the destination defined the LPAR, after the source
/// released it (before the activation on the destination).
const COLD_STAGES: [&str; 4] = [
    "cold-prepare",
    "cold-shutdown",
    "cold-define",
    "cold-release",
];

/// A Shutdown-mode move sends nothing over the migration path: no drop or stall cells.
const COLD_FAULTS: [Fault; 4] = [
    Fault::KillSource,
    Fault::KillDestination,
    Fault::KillManager,
    Fault::DiskFull,
];

fn run_cold_cell(index: u32, stage: &str, fault: Fault) -> CellResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cell = match Cell::new(index, fault) {
        Ok(c) => c,
        Err(v) => return (v, None),
    };
    let mut at_fault = None;
    let verdict = (|| {
        let (mut blades, profile_path, data) = cell.start()?;
        let mut manager = cell.manager_at(
            &profile_path,
            stage,
            &[
                "migrate",
                "--mode",
                "shutdown",
                "--from",
                "ch1-b1/web-01",
                "--to",
                "ch1-b2",
                "--shutdown",
                "--activate",
                "--json",
            ],
        )?;
        at_fault = Some(rt.block_on(where_the_blades_are(&blades)));
        cell.inject(fault, index, &mut blades, &mut manager, None)?;
        let out = lparmover(&profile_path, &["recover"]);
        let recover_said = String::from_utf8_lossy(&out.stdout).to_string();
        rt.block_on(check_cold_invariants(&blades, &profile_path))
            .map_err(|e| format!("{e} (recover said: {})", recover_said.trim()))?;
        let left = unfinished_journals(&data);
        if !left.is_empty() {
            return Err(format!("unfinished jobs left in the journal: {left:?}"));
        }
        Ok(())
    })();
    let verdict = match verdict {
        Ok(()) => Verdict::Survived,
        Err(e) => Verdict::Lost(e),
    };
    (verdict, at_fault)
}

#[test]
fn fault_matrix_of_a_shutdown_move() {
    run_matrix(
        "fault matrix of a Shutdown-mode move",
        &COLD_STAGES,
        &COLD_FAULTS,
        50,
        Arc::new(run_cold_cell),
    );
}

#[test]
fn two_managers_racing_for_one_lpar_make_one_move_and_one_busy_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fleet = dir.join("fleet.toml");
    std::fs::write(&fleet, cell_fleet("127.0.2.200", "127.0.2.201")).unwrap();
    let array = TestArray::start(&fleet, "ams1", &dir.join("ams1")).unwrap();
    let b1 = TestBlade::start_cabled(&fleet, "ch1-b1", &dir.join("b1"), &[&array]).unwrap();
    let b2 = TestBlade::start_cabled(&fleet, "ch1-b2", &dir.join("b2"), &[&array]).unwrap();
    let profile_path = dir.join("profile.toml");
    let mut profile = profile_of(&[&b1, &b2]);
    profile.arrays.push(array.profile.clone());
    profile.save(&profile_path).unwrap();
    let spawn = || {
        Command::new(binary("lparmover"))
            .args([
                "migrate",
                "--from",
                "ch1-b1/web-01",
                "--to",
                "ch1-b2",
                "--json",
            ])
            .env("LPARMOVER_PROFILE", &profile_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let memory_at_start = rt.block_on(memory_once_running(&b1.client())).unwrap();
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let won: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .collect();
    assert_eq!(won.len(), 1, "exactly one move: {lost:?}");
    assert_eq!(lost.len(), 1);
    assert!(
        lost[0].contains("is busy")
            || lost[0].contains("not found")
            || lost[0].contains("Migrating"),
        "the loser is told why: {}",
        lost[0]
    );
    let blades = Blades {
        b1,
        b2,
        array,
        memory_at_start,
    };
    rt.block_on(async {
        let on_dst = heartbeat_on(&blades.b2.client()).await;
        assert!(
            matches!(on_dst, Some((LparStatus::Activated, _))),
            "{on_dst:?}"
        );
        assert!(
            heartbeat_on(&blades.b1.client()).await.is_none(),
            "moved exactly once"
        );
        memory_intact(&blades, &blades.b2.client()).await.unwrap();
    });
}

// ─── Bounded suspension: the blades settle a switch-over without the manager ───────────────

/// The switch-over lease these tests give the move (`--switchover-lease`).
const LEASE: Duration = Duration::from_secs(2);
/// Slack on top of the lease: the settlement itself, the source's resume, and the test's own
/// 20 ms polling of the heartbeat over HTTPS.
const SLACK: Duration = Duration::from_millis(1000);

/// The matrix's move, with an explicit switch-over lease.
const LEASED_MOVE: [&str; 15] = [
    "migrate",
    "--from",
    "ch1-b1/web-01",
    "--to",
    "ch1-b2",
    "--bandwidth-limit",
    "40",
    "--downtime-limit",
    "100ms",
    "--compression",
    "never",
    "--verify",
    "--switchover-lease",
    "2s",
    "--json",
];

/// Polls both blades every 20 ms until web-01 is activated somewhere with its heartbeat past
/// `hb_paused`; returns that blade's name and how long it took.
async fn wait_until_running(
    blades: &Blades,
    hb_paused: u64,
    limit: Duration,
) -> Result<(String, Duration), String> {
    let started = Instant::now();
    loop {
        for client in blades.clients() {
            if let Some((LparStatus::Activated, hb)) = heartbeat_on(&client).await
                && hb > hb_paused
            {
                return Ok((client.name().to_owned(), started.elapsed()));
            }
        }
        if started.elapsed() > limit {
            return Err(format!("web-01 did not run again within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The source's status of the cell's only job.
async fn source_job(blades: &Blades) -> Option<lparmover::api::MigrationStatus> {
    blades
        .b1
        .client()
        .migrations()
        .await
        .ok()?
        .into_iter()
        .next()
}

/// Whether web-01's heartbeat stands still on the source for `span` (it is paused there).
async fn stays_paused(blades: &Blades, span: Duration) -> Result<(), String> {
    let before = heartbeat_on(&blades.b1.client()).await.map(|(_, hb)| hb);
    tokio::time::sleep(span).await;
    let after = heartbeat_on(&blades.b1.client()).await.map(|(_, hb)| hb);
    if before != after {
        return Err(format!(
            "web-01 ran on the source without a verdict (heartbeat {before:?} → {after:?})"
        ));
    }
    for client in blades.clients() {
        if let Some((LparStatus::Activated, _)) = heartbeat_on(&client).await {
            return Err(format!(
                "web-01 runs on {} without a verdict",
                client.name()
            ));
        }
    }
    Ok(())
}

/// `lparmover recover` settles what the blades left and says they did it.
fn recover_reports_the_blades(profile: &Path, expect: &str) -> Result<String, String> {
    let out = lparmover(profile, &["recover"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !said.contains("settled by the blades") || !said.contains(expect) {
        return Err(format!(
            "`lparmover recover` should report the blades' settlement ({expect}): {} {said}",
            out.status
        ));
    }
    Ok(said)
}

/// The history row of the cell's job, as `lparmover history --json` shows it.
fn history_says(profile: &Path, want: &str) -> Result<(), String> {
    let out = lparmover(profile, &["history", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains(want) || text.contains("in-progress") {
        return Err(format!("the history should say {want:?}: {text}"));
    }
    Ok(())
}

/// kill -9 of the manager at `stage`; no `recover`: the guest runs again on exactly one blade
/// (`runs_on`) within the lease plus slack, memory intact; then `recover` reports the blades'
/// settlement (`settled`) and the history shows `result`.
fn manager_killed_at(index: u32, stage: &str, runs_on: &str, settled: &str, result: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cell = Cell::new(index, Fault::KillManager).unwrap();
    let (blades, profile, data) = cell.start().unwrap();
    let mut manager = cell.manager_at(&profile, stage, &LEASED_MOVE).unwrap();
    let hb_paused = rt.block_on(highest_heartbeat(&blades));
    let killed = Instant::now();
    manager.kill().unwrap();
    manager.wait().unwrap();
    let (on, after) = rt
        .block_on(wait_until_running(
            &blades,
            hb_paused,
            LEASE + SLACK + SLACK,
        ))
        .unwrap();
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "manager killed at {stage}: web-01 runs again on {on} {:.0} ms after the kill (lease {} ms)\n",
            after.as_secs_f64() * 1e3,
            LEASE.as_millis()
        )
        .as_bytes(),
    );
    assert_eq!(
        on, runs_on,
        "the guest runs on the blade the commit point chose"
    );
    assert!(
        after <= LEASE + SLACK,
        "the guest must run again within the lease plus slack after the manager died: {after:?}"
    );
    // After the commit point the copy on the destination never stopped; the source lets go
    // once the lease lapsed.
    let let_go = rt.block_on(async {
        loop {
            let source_still_holds = heartbeat_on(&blades.b1.client()).await.is_some();
            if runs_on == "ch1-b1" || !source_still_holds {
                return killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(
        let_go <= LEASE + SLACK,
        "the blades must settle within the lease plus slack: {let_go:?}"
    );
    // No `recover` yet: exactly one copy runs, from its own memory, names unique.
    let (client, hb) = rt.block_on(exactly_one_copy_runs(&blades)).unwrap();
    assert_eq!(client.name(), runs_on);
    assert!(
        hb > hb_paused,
        "the heartbeat went on from where it was paused"
    );
    // The source is done with the job on its own.
    let source = rt
        .block_on(source_job(&blades))
        .expect("the source knows the job");
    assert!(
        matches!(
            source.settlement,
            Some(lparmover::api::Settlement::Forward | lparmover::api::Settlement::Backward)
        ),
        "{source:?}"
    );
    recover_reports_the_blades(&profile, settled).unwrap();
    assert!(
        rt.block_on(check_invariants(&blades, &profile, hb_paused))
            .unwrap()
    );
    assert!(unfinished_journals(&data).is_empty());
    history_says(&profile, result).unwrap();
}

#[test]
fn manager_killed_at_suspension_the_source_resumes_within_the_lease() {
    manager_killed_at(100, "suspension", "ch1-b1", "fenced", "failed");
}

#[test]
fn manager_killed_at_the_commit_point_the_source_resumes_within_the_lease() {
    // The commit point is in the journal, but the destination never resumed: it fences.
    manager_killed_at(101, "commit", "ch1-b1", "fenced", "failed");
}

#[test]
fn manager_killed_after_the_commit_point_the_blades_finish_the_move() {
    // The destination resumed: the source lets go and the blades swap identities.
    manager_killed_at(102, "swap", "ch1-b2", "swapped identities", "completed");
}

#[test]
fn a_manager_frozen_past_the_lease_gets_its_late_commit_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cell = Cell::new(103, Fault::KillManager).unwrap();
    let (blades, profile, _data) = cell.start().unwrap();
    let manager = cell.manager_at(&profile, "commit", &LEASED_MOVE).unwrap();
    let hb_paused = rt.block_on(highest_heartbeat(&blades));
    let pid = manager.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(cell.fault_dir().join("go"), b"go").unwrap();
    let (on, after) = rt
        .block_on(wait_until_running(
            &blades,
            hb_paused,
            LEASE + SLACK + SLACK,
        ))
        .unwrap();
    assert_eq!(on, "ch1-b1", "the destination fenced: the source resumed");
    assert!(after <= LEASE + SLACK, "{after:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = manager.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the late commit must not succeed");
    assert!(said.contains("fenced"), "the refusal says why: {said}");
    // The manager's own recovery acknowledged the fence: nothing left, one copy runs.
    assert!(
        rt.block_on(check_invariants(&blades, &profile, hb_paused))
            .unwrap()
    );
    let (client, _) = rt.block_on(exactly_one_copy_runs(&blades)).unwrap();
    assert_eq!(client.name(), "ch1-b1");
}

#[test]
fn a_destination_killed_during_the_settlement_leaves_the_source_paused_for_recovery() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cell = Cell::new(104, Fault::KillManager).unwrap();
    let (mut blades, profile, _data) = cell.start().unwrap();
    let mut manager = cell
        .manager_at(&profile, "suspension", &LEASED_MOVE)
        .unwrap();
    let hb_paused = rt.block_on(highest_heartbeat(&blades));
    manager.kill().unwrap();
    manager.wait().unwrap();
    blades.b2.kill9();
    // The lease lapses; nobody answers: the source stays paused and says so.
    std::thread::sleep(LEASE + SLACK);
    rt.block_on(stays_paused(&blades, Duration::from_secs(1)))
        .unwrap();
    let source = rt
        .block_on(source_job(&blades))
        .expect("the source knows the job");
    assert!(
        matches!(
            source.settlement,
            Some(lparmover::api::Settlement::DestinationUnreachable { .. })
        ),
        "{source:?}"
    );
    let logged = rt.block_on(blades.b1.client().logs(0)).unwrap_or_default();
    assert!(
        logged
            .iter()
            .any(|e| e.message.contains("stays paused here")),
        "the source's log says it stays paused"
    );
    // Today's recovery takes over once the destination is back.
    blades.b2.restart().unwrap();
    let out = lparmover(&profile, &["recover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        rt.block_on(check_invariants(&blades, &profile, hb_paused))
            .unwrap()
    );
}

#[test]
fn a_migration_path_dropped_during_the_settlement_holds_the_source_until_it_returns() {
    let Some(shaper) = Shaper::shared() else {
        lpm_tests::unavailable(
            "a_migration_path_dropped_during_the_settlement_holds_the_source_until_it_returns",
            lpm_tests::Need::Tc,
            &"`tc` with HTB on the loopback device does not work (run as root with iproute2)",
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let index = 105;
    let cell = Cell::new(index, Fault::DropPath).unwrap();
    let (blades, profile, data) = cell.start().unwrap();
    let mut manager = cell
        .manager_at(&profile, "suspension", &LEASED_MOVE)
        .unwrap();
    let hb_paused = rt.block_on(highest_heartbeat(&blades));
    let pref = 100 + 2 * index;
    shaper.block(pref, &[cell.src_ip.as_str(), cell.dst_ip.as_str()]);
    manager.kill().unwrap();
    manager.wait().unwrap();
    std::thread::sleep(LEASE + SLACK);
    let held = rt.block_on(stays_paused(&blades, Duration::from_secs(1)));
    shaper.unblock(pref, 2);
    held.unwrap();
    // The path is back: the next attempt gets the verdict (fenced), the source resumes.
    let (on, after) = rt
        .block_on(wait_until_running(
            &blades,
            hb_paused,
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(on, "ch1-b1");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "migration path back: web-01 runs again on ch1-b1 {:.0} ms later\n",
            after.as_secs_f64() * 1e3
        )
        .as_bytes(),
    );
    rt.block_on(exactly_one_copy_runs(&blades)).unwrap();
    recover_reports_the_blades(&profile, "fenced").unwrap();
    assert!(
        rt.block_on(check_invariants(&blades, &profile, hb_paused))
            .unwrap()
    );
    assert!(unfinished_journals(&data).is_empty());
}
