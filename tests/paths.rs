//! Migration Path Setting end to end: real `hvmsim serve` blades, the `lparmover::paths`
//! workflow, the `/v1/migration-paths` API and the `lparmover path` CLI. A changed path is
//! what the inventory, the checks, the Connectivity Test and the migration listener use; bad
//! input is refused with a clear error and leaves the blade's state file as it was, byte for
//! byte.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use lparmover::api::{ClientError, MigrationPaths, MoveOptions, SetMigrationPaths};
use lparmover::checks::gather;
use lparmover::connectivity::{COMPLETED, ProbeLimits, connectivity_test};
use lparmover::emg::Emg;
use lparmover::model::{MigrationPath, Mode};
use lpm_tests::{TestBlade, demo_fleet, profile_of, run_binary_with_data};

const OWNER: &str = "paths-test";

fn path(name: &str, segment: &str, ip: &str, prefix: u8) -> MigrationPath {
    MigrationPath {
        name: name.to_owned(),
        primary: false,
        segment: segment.parse().unwrap(),
        ip: ip.parse().unwrap(),
        prefix,
        vlan: None,
    }
}

fn state_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("state.json")).unwrap()
}

fn primary_ip(paths: &MigrationPaths) -> Ipv4Addr {
    paths.primary().unwrap().ip
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_path_is_used_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let src = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("src")).unwrap();
    let dst_dir = dir.path().join("dst");
    let mut dst = TestBlade::start(&fleet_file, "ch1-b2", &dst_dir).unwrap();
    let profile = profile_of(&[&src, &dst]);
    let client = dst.client();

    // The fleet file's path, named and primary.
    let start = lparmover::paths::list(&client).await.unwrap();
    assert_eq!(start.hvm, "ch1-b2");
    assert_eq!(start.paths.len(), 1);
    assert_eq!(start.paths[0].name, "mig-1b");
    assert!(start.paths[0].primary);
    assert_eq!(primary_ip(&start), Ipv4Addr::new(127, 0, 2, 2));

    // Add a second path on segment 1c and make it primary.
    let mut fast = path("mig-fast", "1c", "127.0.5.2", 24);
    fast.primary = true;
    fast.vlan = Some(300);
    let set = lparmover::paths::set_path(&client, OWNER, fast.clone())
        .await
        .unwrap();
    assert_eq!(set.paths.len(), 2);
    assert_eq!(set.primary().unwrap().name, "mig-fast");
    assert!(!set.paths[0].primary, "the primary use moved");
    assert!(client.locks().await.unwrap().is_empty(), "lease released");

    // The inventory and the checks read the new primary path.
    let inv = client.inventory().await.unwrap();
    assert_eq!(inv.blade.hvm.migration_paths, set.paths);
    assert_eq!(
        inv.blade.hvm.primary_migration_path().unwrap().ip,
        Ipv4Addr::new(127, 0, 5, 2)
    );
    let report = gather(
        &profile,
        &"ch1-b1/web-01".parse().unwrap(),
        "ch1-b2",
        Mode::ConcurrentMaintenance,
        None,
    )
    .await
    .unwrap();
    let row = report
        .rows
        .iter()
        .find(|r| r.item == "Migration path configured")
        .unwrap();
    assert_eq!(row.destination, "127.0.5.2/24 on 1c VLAN 300", "{row:?}");
    let distinct = report
        .rows
        .iter()
        .find(|r| r.item == "Migration path addresses distinct")
        .unwrap();
    assert_eq!(distinct.destination, "127.0.5.2");

    // The Connectivity Test goes to the new address.
    let limits = ProbeLimits {
        max_bytes: 8 << 20,
        ..ProbeLimits::default()
    };
    let probe = connectivity_test(&profile, &lpm_tests::operator(), "ch1-b1", "ch1-b2", limits)
        .await
        .unwrap();
    assert_eq!(probe.result, COMPLETED);
    assert_eq!(
        probe.probe.dest_addr.ip().to_string(),
        "127.0.5.2",
        "probe to the new primary path"
    );

    // A rehearsal (a real transfer to the destination's migration listener) binds the listener
    // on the new primary path.
    let web01: lparmover::fleetview::LparRef = "ch1-b1/web-01".parse().unwrap();
    let options = MoveOptions::default();
    let operator = lpm_tests::operator();
    let rehearse =
        || lparmover::jobs::rehearse(&profile, &operator, &web01, "ch1-b2", &options, 16 << 20);
    let r = rehearse().await.unwrap();
    assert!(r.sampled_bytes > 0, "{r:?}");
    let listed = lparmover::paths::list(&client).await.unwrap();
    assert_eq!(
        listed.listening.map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.5.2"),
        "{listed:?}"
    );

    // Moving the primary use back rebinds the listener at once; the next transfer uses it.
    let back = lparmover::paths::set_path(
        &client,
        OWNER,
        MigrationPath {
            primary: true,
            ..start.paths[0].clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(back.primary().unwrap().name, "mig-1b");
    assert_eq!(
        back.listening.map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.2.2"),
        "listener rebound: {back:?}"
    );
    rehearse().await.unwrap();

    // Every invalid field is refused, with its catalogue row, and nothing is written.
    let before = state_bytes(&dst_dir);
    let good = back.paths.clone();
    let with = |f: &dyn Fn(&mut Vec<MigrationPath>)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    let cases: Vec<(Vec<MigrationPath>, Emg, &str)> = vec![
        (
            with(&|p| p[1].name = String::new()),
            Emg::InvalidMigrationPathSetting,
            "has no name",
        ),
        (
            with(&|p| p[1].name = "n".repeat(40)),
            Emg::InvalidMigrationPathSetting,
            "longer than 32",
        ),
        (
            with(&|p| p[1].name = "MIG-1B".into()),
            Emg::InvalidMigrationPathSetting,
            "named \"mig-1b\"",
        ),
        (
            with(&|p| p[0].primary = false),
            Emg::InvalidMigrationPathSetting,
            "no migration path is marked",
        ),
        (
            with(&|p| p[1].primary = true),
            Emg::InvalidMigrationPathSetting,
            "mig-1b, mig-fast",
        ),
        (
            with(&|p| p[1].segment = "5a".parse().unwrap()),
            Emg::InvalidMigrationPathSetting,
            "no NIC segment 5a",
        ),
        (
            with(&|p| p[1].segment = "1d".parse().unwrap()),
            Emg::InvalidMigrationPathSetting,
            "dedicated mode",
        ),
        (
            with(&|p| p[1].ip = "192.168.1.2".parse().unwrap()),
            Emg::InvalidMigrationPathSetting,
            "not in 127.0.0.0/8",
        ),
        (
            with(&|p| p[1].ip = "127.0.1.2".parse().unwrap()),
            Emg::InvalidMigrationPathSetting,
            "management address",
        ),
        (
            with(&|p| p[1].ip = "127.0.2.2".parse().unwrap()),
            Emg::InvalidMigrationPathSetting,
            "both use 127.0.2.2",
        ),
        (
            with(&|p| p[1].prefix = 31),
            Emg::InvalidMigrationPathSetting,
            "/31 is not between /8 and /30",
        ),
        (
            with(&|p| p[1].vlan = Some(4095)),
            Emg::InvalidMigrationPathSetting,
            "VLAN 4095",
        ),
        (
            with(&|p| {
                p[1].prefix = 8;
                p[1].vlan = None;
            }),
            Emg::PathCollidesWithManagement,
            "shares the management network",
        ),
    ];
    for (paths, kind, text) in cases {
        let err = client
            .set_migration_paths(&SetMigrationPaths { paths }, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Api { .. }), "{err}");
        assert_eq!(err.kind(), kind, "{err}");
        let shown = err.to_string();
        assert!(shown.contains(text), "{text:?} not in {shown}");
        assert!(shown.contains("Action:"), "{shown}");
        assert_eq!(state_bytes(&dst_dir), before, "state changed by {shown}");
    }
    // Malformed bodies: an IPv6 address, an unknown field, a VLAN that is no number.
    let raw = dst.raw_client();
    for body in [
        serde_json::json!({"paths": [{"name": "v6", "primary": true, "segment": "1b", "ip": "::1", "prefix": 24}]}),
        serde_json::json!({"paths": [{"name": "x", "primary": true, "segment": "1b", "ip": "127.0.2.2", "prefix": 24, "mtu": 9000}]}),
        serde_json::json!({"paths": [], "extra": 1}),
        serde_json::json!({"paths": [{"name": "x", "primary": true, "segment": "1b", "ip": "127.0.2.2", "prefix": 24, "vlan": "ten"}]}),
    ] {
        let answer = raw
            .put(format!("{}/v1/migration-paths", dst.profile.url))
            .bearer_auth(&dst.profile.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{body}");
        let err: lparmover::emg::EmgError = answer.json().await.unwrap();
        assert_eq!(err.kind, Emg::InvalidRequest, "{body}: {err}");
        assert_eq!(state_bytes(&dst_dir), before, "state changed by {body}");
    }
    // Removing the primary path while another remains is refused by the workflow.
    let err = lparmover::paths::remove_path(&client, OWNER, "mig-1b")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("mark another path primary"),
        "{err}"
    );
    assert_eq!(state_bytes(&dst_dir), before);
    assert!(client.locks().await.unwrap().is_empty(), "lease released");

    // The CLI: list as JSON, a refused set with the EMG line, a remove.
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str]| {
        let mut all = vec!["--profile", profile_path.to_str().unwrap()];
        all.extend_from_slice(args);
        run_binary_with_data("lparmover", &all, &data, Duration::from_secs(60)).unwrap()
    };
    let out = cli(&["path", "list", "ch1-b2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: MigrationPaths = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.paths, good);
    let out = cli(&[
        "path",
        "set",
        "ch1-b2",
        "--name",
        "bad",
        "--segment",
        "1c",
        "--ip",
        "127.0.6.2",
        "--prefix",
        "24",
        "--vlan",
        "0",
    ]);
    assert!(!out.status.success());
    let err_text = String::from_utf8_lossy(&out.stderr);
    assert!(
        err_text.contains("EMG000000000f0f0002") && err_text.contains("VLAN 0"),
        "{err_text}"
    );
    assert_eq!(state_bytes(&dst_dir), before);
    let out = cli(&["path", "remove", "ch1-b2", "mig-fast"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mig-1b") && !text.contains("mig-fast"),
        "{text}"
    );

    // A set path survives a crash of the blade.
    let out = cli(&[
        "path",
        "set",
        "ch1-b2",
        "--name",
        "mig-new",
        "--segment",
        "1a",
        "--ip",
        "127.0.7.2",
        "--prefix",
        "24",
        "--vlan",
        "77",
        "--primary",
    ]);
    assert!(out.status.success(), "{out:?}");
    dst.kill9();
    dst.restart().unwrap();
    let after = lparmover::paths::list(&dst.client()).await.unwrap();
    assert_eq!(after.primary().unwrap().name, "mig-new");
    assert_eq!(primary_ip(&after), Ipv4Addr::new(127, 0, 7, 2));
    let profile = profile_of(&[&src, &dst]);
    let probe = connectivity_test(&profile, &lpm_tests::operator(), "ch1-b1", "ch1-b2", limits)
        .await
        .unwrap();
    assert_eq!(probe.probe.dest_addr.ip().to_string(), "127.0.7.2");
}
