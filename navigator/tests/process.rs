//! The navigator as an operator starts it: `navigator` with no options opens its window on the
//! embedded demo fleet it starts, and Ctrl-C or SIGTERM stops that fleet with it: no blade or
//! VM process is left running. Runs the real binary under a virtual display (Xvfb).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lpm_tests::display::VirtualDisplay;

/// Every process below `pid` (children, their children, …).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(p) {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent of a live (not zombie) process.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

fn command_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn run_and_stop(display: &VirtualDisplay, signal: libc::c_int, workdir: &Path) {
    // The binary cargo built for this test, with the blades' binary named outright (cargo's
    // variables removed, so it never builds anything itself).
    let mut navigator = Command::new(env!("CARGO_BIN_EXE_navigator"))
        .env_remove("CARGO")
        .env("LPARMOVER_HVMSIM", lpm_tests::binary("hvmsim"))
        .arg("--workdir")
        .arg(workdir)
        .env("DISPLAY", &display.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("LPARMOVER_DATA", workdir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the navigator");
    let pid = navigator.id();
    // Up when the demo fleet's blades and their guests run below it.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let fleet = descendants(pid);
        let blades = fleet
            .iter()
            .filter(|p| command_of(**p).contains(" serve "))
            .count();
        if blades == 4 && workdir.join("profile.toml").exists() {
            break;
        }
        if let Ok(Some(status)) = navigator.try_wait() {
            panic!("the navigator exited on its own ({status}) before its fleet was up");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few frames with the window open and the engine refreshing.
    std::thread::sleep(Duration::from_secs(3));
    let fleet = descendants(pid);
    let described: Vec<String> = fleet
        .iter()
        .map(|p| format!("{p}: {}", command_of(*p)))
        .collect();
    assert!(
        fleet
            .iter()
            .filter(|p| command_of(**p).contains(" serve "))
            .count()
            == 4,
        "the demo fleet's four blades run below the navigator: {described:#?}"
    );
    assert!(
        fleet.iter().any(|p| command_of(*p).contains(" vm ")),
        "and their guests' VM processes: {described:#?}"
    );
    // SAFETY: kill(2) on the child this test started, with a valid signal number.
    let sent = unsafe { libc::kill(i32::try_from(pid).expect("pid"), signal) };
    assert_eq!(sent, 0, "signal the navigator");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = navigator.try_wait().expect("wait for the navigator") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the navigator did not stop within 30 s of signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = navigator.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        stderr.contains("stopping the demo fleet"),
        "it says it stops the fleet (status {status}); stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("could not open"),
        "the window opened (no headless fallback); stderr:\n{stderr}"
    );
    let start = Instant::now();
    loop {
        let left: Vec<String> = fleet
            .iter()
            .filter(|p| alive(**p))
            .map(|p| format!("{p}: {}", command_of(*p)))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "left running 20 s after the navigator stopped on signal {signal}: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_and_ctrl_c_stop_the_demo_fleet_and_leave_nothing_running() {
    let Some(display) = VirtualDisplay::for_test(
        "sigterm_and_ctrl_c_stop_the_demo_fleet_and_leave_nothing_running",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The same work directory twice: the second start finds the first run's state.
    for signal in [libc::SIGTERM, libc::SIGINT] {
        run_and_stop(&display, signal, dir.path());
    }
}
