//! The foundation end to end: real hvmsim processes on loopback, driven through the lparmover
//! client and CLI.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;
use std::time::Duration;

use lparmover::api::{LockRequest, LockTarget};
use lparmover::emg::Emg;
use lparmover::model::lpar::{VfcRequest, Vlan, VnicRequest};
use lparmover::model::{LparNumber, LparRequest, LparStatus, ProcessorMode, Processors, Workload};
use lpm_tests::{TestBlade, TestFleet, demo_fleet, run_binary};

fn new_lpar(name: &str) -> LparRequest {
    LparRequest {
        number: None,
        name: name.parse().unwrap(),
        processors: Processors {
            mode: ProcessorMode::Shared,
            count: 1,
            service_ratio: 100,
            group: 0,
        },
        memory_mib: 128,
        vnics: vec![VnicRequest {
            segment: "1a".parse().unwrap(),
            vlan: Vlan::Untag { id: 10 },
            mac: None,
        }],
        vfcs: vec![VfcRequest {
            port: "3/0".parse().unwrap(),
            vfc_id: None,
            names: None,
        }],
        usb: Default::default(),
        options: Default::default(),
        workload: Workload {
            dirty_rate_mbps: 1.0,
            working_set_mib: 16,
            ..Workload::default()
        },
        activate: false,
    }
}

/// Every file of a state directory with its content (the system log aside: the first blade may
/// log meanwhile, and a refused second one must not have written it anyway, checked by size).
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "logs.jsonl") {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_blade_on_a_served_state_directory_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let state = dir.path().join("b1");
    let mut blade = TestBlade::start(&fleet_file, "ch1-b1", &state).unwrap();
    let client = blade.client();
    let configs =
        |v: Vec<lparmover::api::LparView>| v.into_iter().map(|l| l.lpar).collect::<Vec<_>>();
    let before = configs(client.lpars().await.unwrap());
    let files_before = snapshot(&state);
    let started = std::time::Instant::now();
    let out = run_binary(
        "hvmsim",
        &[
            "serve",
            "--fleet",
            fleet_file.to_str().unwrap(),
            "--blade",
            "ch1-b1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second blade started: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused only after {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&state.display().to_string())
            && stderr.contains(&format!("PID {}", blade.pid())),
        "the refusal names neither the directory nor the holder: {stderr}"
    );
    assert_eq!(
        snapshot(&state),
        files_before,
        "the refused blade changed files"
    );
    assert_eq!(
        configs(client.lpars().await.unwrap()),
        before,
        "the first blade changed"
    );
    // A crash releases the hold (the guests' VM processes, which outlive it, do not keep it).
    blade.kill9();
    blade.restart().unwrap();
    assert_eq!(blade.client().lpars().await.unwrap().len(), before.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn defined_lpar_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let mut blade = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let client = blade.client();
    let defined = client.define(&new_lpar("new-01"), None).await.unwrap();
    let number = defined.lpar.number;
    let active = client.activate(number, None).await.unwrap();
    assert_eq!(active.lpar.status, LparStatus::Activated);
    let url_before = blade.profile.url.clone();
    let before = client.inventory().await.unwrap();
    let beat_before = heartbeat(&client, number).await;

    blade.kill9();
    assert!(
        client.inventory().await.is_err(),
        "a killed blade must not answer"
    );
    // The guest runs in its own VM process: it keeps beating while its blade is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile its control socket is owner-only, and another process of the same user that
    // connects (this test, as root) is refused: it does not hold the state directory's lock.
    let socket = vm_socket(blade.state_dir(), number);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(
        mode & 0o077,
        0,
        "{} is owner-only: {mode:o}",
        socket.display()
    );
    let refusal = tokio::task::spawn_blocking(move || {
        let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        hvmsim::vmproc::wire::read_msg::<hvmsim::vmproc::wire::Response>(&mut conn)
    })
    .await
    .unwrap();
    let refusal = format!("{refusal:?}");
    assert!(
        refusal.contains("does not hold the blade lock"),
        "a process without the blade lock is refused control of the VM: {refusal}"
    );
    blade.restart().unwrap();

    assert_eq!(
        blade.profile.url, url_before,
        "a restarted blade keeps its address"
    );
    let after = blade.client().inventory().await.unwrap();
    assert_eq!(after.blade, before.blade);
    let strip = |inv: &lparmover::api::Inventory| {
        inv.lpars.iter().map(|l| l.lpar.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&after),
        strip(&before),
        "LPARs, statuses and identities survive kill -9"
    );
    let again = after
        .lpars
        .iter()
        .find(|l| l.lpar.number == number)
        .unwrap();
    assert_eq!(again.lpar.status, LparStatus::Activated);
    assert!(
        again.runtime.is_some(),
        "the LPAR's guest runs again after the restart"
    );
    let beat_after = heartbeat(&blade.client(), number).await;
    assert!(
        beat_after > beat_before,
        "the guest went on from heartbeat {beat_before} (now {beat_after}): it kept its state"
    );
    let logs = blade.client().logs(0).await.unwrap();
    assert!(
        logs.iter()
            .any(|e| e.message.contains("(new-01): its guest kept running")),
        "the restarted blade says it adopted the running guest"
    );
    assert!(
        !logs
            .iter()
            .any(|e| e.message.contains("(new-01) re-activated")),
        "the guest was adopted, not booted again"
    );
}

/// The control socket of LPAR `number`'s VM process in the blade's state directory.
fn vm_socket(state_dir: &std::path::Path, number: LparNumber) -> std::path::PathBuf {
    let prefix = format!("lpar-{}-", number.get());
    std::fs::read_dir(hvmsim::vmproc::vm_dir(state_dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .expect("the VM's control socket")
}

/// The heartbeat counter of LPAR `number`'s guest (vCPU 0), once it is past zero.
async fn heartbeat(client: &lparmover::api::HvmClient, number: LparNumber) -> u64 {
    for _ in 0..200 {
        let view = client.lpar(number).await.unwrap();
        let beat = view.runtime.map_or(0, |r| r.heartbeat.counter);
        if beat > 0 {
            return beat;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("LPAR {number} shows no heartbeat");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_whose_vm_process_died_with_the_blade_boots_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let state = dir.path().join("b2");
    let mut blade = TestBlade::start(&fleet_file, "ch1-b2", &state).unwrap();
    let client = blade.client();
    let number = client
        .define(&new_lpar("new-02"), None)
        .await
        .unwrap()
        .lpar
        .number;
    client.activate(number, None).await.unwrap();
    heartbeat(&client, number).await;

    // The host lost everything: the blade process and the VM process.
    blade.kill9();
    let vms = state.join("vms");
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", "--", &format!("--socket {}", vms.display())])
        .status()
        .unwrap();
    assert!(killed.success(), "a VM process ran for the LPAR");
    blade.restart().unwrap();

    let view = blade.client().lpar(number).await.unwrap();
    assert_eq!(view.lpar.status, LparStatus::Activated);
    assert!(view.runtime.is_some(), "the LPAR's guest was booted again");
    let logs = blade.client().logs(0).await.unwrap();
    assert!(
        logs.iter().any(|e| e
            .message
            .contains("(new-02) re-activated after HVM restart")),
        "the blade says it booted the guest again"
    );
    let left: Vec<_> = std::fs::read_dir(&vms)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let active = blade
        .client()
        .lpars()
        .await
        .unwrap()
        .iter()
        .filter(|l| l.lpar.status == LparStatus::Activated)
        .count();
    assert_eq!(
        left.len(),
        active,
        "one socket per running guest, the dead VMs' stale sockets removed: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let client = blade.client();
    let before = client.backup_config().await.unwrap();

    let unknown = client.lpar(LparNumber::new(42).unwrap()).await.unwrap_err();
    assert_eq!(unknown.kind(), Emg::LparNotFound);

    let duplicate = client.define(&new_lpar("web-01"), None).await.unwrap_err();
    assert_eq!(duplicate.kind(), Emg::DuplicateLparName);
    assert!(duplicate.to_string().contains("web-01"), "{duplicate}");

    let no_name = serde_json::json!({
        "name": "NO_NAME", "processors": {"mode": "shared", "count": 1}, "memory_mib": 128
    });
    let raw = blade.raw_client();
    let url = format!("{}/v1/lpars", blade.profile.url);
    let bearer = format!("Bearer {}", blade.profile.token);
    let response = raw
        .post(&url)
        .header("authorization", &bearer)
        .json(&no_name)
        .send()
        .await
        .unwrap();
    // The HVM's placeholder name gets the catalogue's NO_NAME row, not a generic refusal.
    assert_eq!(response.status().as_u16(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "lpar-name-no-name");
    assert!(
        body["detail"].as_str().unwrap().contains("NO_NAME"),
        "{body}"
    );
    let shown = serde_json::from_value::<lparmover::emg::EmgError>(body).unwrap();
    assert!(
        shown.to_string().contains(
            "The MMS could not define an LPAR because the name of the specified LPAR is 'NO_NAME'"
        ),
        "{shown}"
    );

    let mut bad_wwpn = serde_json::to_value(new_lpar("fc-01")).unwrap();
    bad_wwpn["vfcs"][0]["names"] = serde_json::json!([
        "50:06:0e:80:zz:2a:3c:00",
        "50:06:0e:80:10:2a:3c:01",
        "50:06:0e:80:10:2a:3c:02"
    ]);
    let response = raw
        .post(&url)
        .header("authorization", &bearer)
        .json(&bad_wwpn)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("WWPN"), "{body}");

    let response = raw
        .post(&url)
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{\"name\": \"x\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "invalid-request");

    let response = raw
        .get(format!("{}/v1/inventory", blade.profile.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "no token, no answer");

    let missing_card = {
        let mut r = new_lpar("fc-02");
        r.vfcs[0].port = "5/0".parse().unwrap();
        client.define(&r, None).await.unwrap_err()
    };
    assert_eq!(missing_card.kind(), Emg::DeviceNotAvailable);

    let after = client.backup_config().await.unwrap();
    assert_eq!(
        after.lpars, before.lpars,
        "rejected requests changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_lock_holders_race_and_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let target = LockTarget::Lpar(LparNumber::new(1).unwrap());
    for round in 0..5 {
        let racers = (0..8).map(|i| {
            let client = blade.client();
            async move {
                client
                    .lock(&LockRequest {
                        target,
                        owner: format!("manager-{i}"),
                        purpose: format!("round {round}"),
                        ttl_secs: 30,
                    })
                    .await
            }
        });
        let results = futures::future::join_all(racers).await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one holder");
        for loser in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(loser.kind(), Emg::LparBusy);
            assert!(
                loser.to_string().contains("The specified LPAR is busy"),
                "{loser}"
            );
        }
        // The holder may work on the LPAR; nobody else may.
        let client = blade.client();
        let lease = winners[0].id.clone();
        assert_eq!(
            client
                .deactivate(LparNumber::new(1).unwrap(), None)
                .await
                .unwrap_err()
                .kind(),
            Emg::LparBusy
        );
        client.unlock(&lease).await.unwrap();
    }
    // A blade lock blocks defining LPARs by others.
    let client = blade.client();
    let lease = client
        .lock(&LockRequest {
            target: LockTarget::Blade,
            owner: "a".into(),
            purpose: "maintenance".into(),
            ttl_secs: 30,
        })
        .await
        .unwrap();
    assert_eq!(
        client
            .define(&new_lpar("late-01"), None)
            .await
            .unwrap_err()
            .kind(),
        Emg::BladeBusyOperation
    );
    client
        .define(&new_lpar("late-01"), Some(&lease.id))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch2-b1", &dir.path().join("b")).unwrap();
    let client = blade.client();
    let one = LparNumber::new(1).unwrap();
    client.deactivate(one, None).await.unwrap();
    let backup = client.backup_config().await.unwrap();
    client
        .delete(LparNumber::new(2).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(client.lpars().await.unwrap().len(), 1);
    client.activate(one, None).await.unwrap();
    let refused = client.restore_config(&backup, None).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        Emg::InvalidLparState,
        "no restore under a running guest"
    );
    client.deactivate(one, None).await.unwrap();
    client.restore_config(&backup, None).await.unwrap();
    let names: HashSet<String> = client
        .lpars()
        .await
        .unwrap()
        .iter()
        .map(|l| l.lpar.name.to_string())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["mail-01".to_owned(), "test-01".to_owned()])
    );
    let saved = client.save_config().await.unwrap();
    assert_eq!(saved.lpars.len(), 2);
}

#[test]
fn fleet_json_lists_every_blade_and_lpar_of_the_fleet_file() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, fleet_file) = demo_fleet(dir.path());
    let running = TestFleet::start(&fleet_file, dir.path()).unwrap();
    let profile = running.profile_path.to_str().unwrap();
    let out = run_binary(
        "lparmover",
        &["fleet", "--json", "--profile", profile],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hvms = json["hvms"].as_array().unwrap();
    assert_eq!(hvms.len(), fleet.blades.len());
    for fb in &fleet.blades {
        let hvm = hvms
            .iter()
            .find(|h| h["name"] == fb.blade.name.as_str())
            .unwrap();
        let lpars: HashSet<&str> = hvm["inventory"]["lpars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        let want: HashSet<&str> = fb.lpars.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(lpars, want, "blade {}", fb.blade.name);
    }
    assert_eq!(json["lpars_requiring_recovery"], 0);

    let text = run_binary(
        "lparmover",
        &["fleet", "--profile", profile],
        Duration::from_secs(30),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Chassis CH2") && text.contains("legacy-01"),
        "{text}"
    );
    assert!(text.contains("LPARs requiring recovery: 0 LPARs"), "{text}");

    let show = run_binary(
        "lparmover",
        &["lpar", "show", "ch1-b1/db-01", "--profile", profile],
        Duration::from_secs(30),
    )
    .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("migration WWPN") && show.contains("MAC 00:00:87"),
        "{show}"
    );
}

#[test]
fn fleet_view_stays_quick_when_a_blade_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let running = TestFleet::start(&fleet_file, dir.path()).unwrap();
    let mut profile = lparmover::profile::Profile::load(&running.profile_path).unwrap();
    // A registered HVM nobody answers for (a port on loopback with no listener).
    let mut dead = profile.hvms[0].clone();
    dead.name = "ghost".into();
    dead.url = "https://127.0.1.99:9".into();
    profile.hvms.push(dead);
    let path = dir.path().join("with-ghost.toml");
    profile.save(&path).unwrap();
    let started = std::time::Instant::now();
    let out = run_binary(
        "lparmover",
        &["fleet", "--profile", path.to_str().unwrap()],
        Duration::from_secs(30),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        text.contains("ghost")
            && text.contains("UNREACHABLE")
            && text.contains("Connection refused (MMC-MMS)"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unreachable blade is reported in the exit code"
    );
}

#[test]
fn demo_command_shows_the_demo_fleet() {
    let out = run_binary("lparmover", &["demo"], Duration::from_secs(120)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for blade in ["ch1-b1", "ch1-b2", "ch2-b1", "ch2-b2"] {
        assert!(text.contains(blade), "{blade} missing:\n{text}");
    }
    assert!(!text.contains("UNREACHABLE"), "{text}");
}
