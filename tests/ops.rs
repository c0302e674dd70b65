//! Operations around moves, end to end with real hvmsim processes: migration history, return
//! migration, Shutdown-mode moves into a processor group, a busy destination, backing up and
//! restoring both HVM configurations together, and the Connectivity Test.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use lparmover::api::{ClientError, HvmClient};
use lparmover::backup::{BackupError, BackupSet, backup_both, restore_both};
use lparmover::connectivity::{
    COMPLETED, ConnectivityError, ProbeLimits, ProbeListen, connectivity_test,
};
use lparmover::dirs::ManagerDirs;
use lparmover::emg::Emg;
use lparmover::history::{History, MoveRecord, MoveResult, Placement};
use lparmover::model::{LparNumber, LparStatus, Mode};
use lparmover::mover::JobTicket;
use lpm_tests::{
    TestBlade, demo_fleet, profile_of, run_binary, run_binary_with_data, small_lpar_request,
};

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// (number, name) of every LPAR, sorted.
async fn lpar_names(client: &HvmClient) -> Vec<(u8, String)> {
    let mut v: Vec<_> = client
        .lpars()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.lpar.number.get(), l.lpar.name.as_str().to_owned()))
        .collect();
    v.sort();
    v
}

async fn deactivate_all(client: &HvmClient) {
    for l in client.lpars().await.unwrap() {
        if l.lpar.status == LparStatus::Activated {
            client.deactivate(l.lpar.number, None).await.unwrap();
        }
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn history_cli_prints_now_and_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = ManagerDirs::new(dir.path().join("data"));
    let history = History::open(&dirs.history_db()).unwrap();
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let n = |v| LparNumber::new(v).unwrap();
    for (i, (job, from, to)) in [
        ("job-a", ("ch1-b1", 1), ("ch1-b2", 2)),
        ("job-b", ("ch1-b2", 2), ("ch1-b1", 1)),
    ]
    .into_iter()
    .enumerate()
    {
        let started_at = t0 + chrono::Duration::minutes(i as i64);
        history
            .record(&MoveRecord {
                job: job.into(),
                lpar: "web-01".into(),
                source: Placement {
                    hvm: from.0.into(),
                    number: n(from.1),
                },
                dest_hvm: to.0.into(),
                dest_number: Some(n(to.1)),
                mode: Mode::ConcurrentMaintenance,
                result: MoveResult::Completed,
                started_at,
                finished_at: Some(started_at + chrono::Duration::seconds(3)),
                suspension: Some(Duration::from_millis(12)),
                detail: None,
                // job-a predates recorded actors; job-b came from a policy.
                actor: (job == "job-b").then(|| lparmover::history::Actor {
                    user: "ops".into(),
                    host: "mgr-1".into(),
                    origin: lparmover::history::Origin::policy("nightly"),
                }),
            })
            .unwrap();
    }
    drop(history);
    let data = dirs.data().to_str().unwrap();
    let out = run_binary(
        "lparmover",
        &["history", "web-01", "--data-dir", data],
        CLI_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    println!("{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("Now") || l.trim_start().starts_with("old"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains("ch1-b1") && rows[0].contains("job-b"),
        "{text}"
    );
    assert!(
        rows[1].contains("ch1-b2") && rows[1].contains("job-a"),
        "{text}"
    );
    assert!(rows[0].contains("Concurrent Maintenance") && rows[0].contains("12.0 ms"));
    assert!(rows[0].ends_with(" ops@mgr-1 via policy nightly"), "{text}");
    assert_eq!(rows[1].split_whitespace().last(), Some("-"), "{text}");

    let out = run_binary(
        "lparmover",
        &["history", "--json", "--data-dir", data],
        CLI_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["job"], "job-b");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_config_brings_both_hvms_back_or_changes_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (c1, c2) = (b1.client(), b2.client());
    let profile = profile_of(&[&b1, &b2]);
    let dirs = ManagerDirs::new(dir.path().join("data"));

    let set = backup_both(&profile, "ch1-b1", "ch1-b2", "job-t1", &dirs)
        .await
        .unwrap();
    assert!(set.dir.join("ch1-b1.json").is_file() && set.dir.join("ch1-b2.json").is_file());
    assert_eq!(BackupSet::load(&dirs, "job-t1").unwrap(), set);
    let before1 = lpar_names(&c1).await;
    let before2 = lpar_names(&c2).await;

    // Change both HVMs after the backup.
    let batch = c1
        .lpars()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.lpar.name.as_str() == "batch-01")
        .unwrap();
    c1.delete(batch.lpar.number, None).await.unwrap();
    c2.define(&small_lpar_request("extra-01"), None)
        .await
        .unwrap();
    let changed1 = lpar_names(&c1).await;
    let changed2 = lpar_names(&c2).await;
    assert_ne!(changed1, before1);
    assert_ne!(changed2, before2);

    // web-01 and db-01 run on ch1-b1, app-01 on ch1-b2: refused, neither changes.
    let err = restore_both(&profile, &set).await.unwrap_err();
    match &err {
        BackupError::Refused(e) => {
            assert_eq!(e.kind, Emg::InvalidLparState, "{err}");
            assert!(
                e.detail.contains("ch1-b1: LPAR") && e.detail.contains("ch1-b2: LPAR"),
                "{err}"
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(lpar_names(&c1).await, changed1);
    assert_eq!(lpar_names(&c2).await, changed2);
    assert!(
        c1.locks().await.unwrap().is_empty(),
        "restore leases released"
    );
    assert!(
        c2.locks().await.unwrap().is_empty(),
        "restore leases released"
    );

    // The CLI lists the set and restores both once every LPAR is deactivated.
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    let (p, d) = (
        profile_path.to_str().unwrap(),
        dirs.data().to_str().unwrap(),
    );
    let out = run_binary(
        "lparmover",
        &["--profile", p, "restore-config", "--list", "--data-dir", d],
        CLI_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("job-t1") && stdout(&out).contains("ch1-b2"),
        "{}",
        stdout(&out)
    );

    deactivate_all(&c1).await;
    deactivate_all(&c2).await;
    let out = run_binary(
        "lparmover",
        &[
            "--profile",
            p,
            "restore-config",
            "--job",
            "job-t1",
            "--data-dir",
            d,
        ],
        CLI_TIMEOUT,
    )
    .unwrap();
    let text = stdout(&out);
    println!("{text}");
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    assert!(
        text.contains("restored on both HVMs; both match the backup"),
        "{text}"
    );
    assert_eq!(lpar_names(&c1).await, before1);
    assert_eq!(lpar_names(&c2).await, before2);
    for c in [&c1, &c2] {
        assert!(
            c.lpars()
                .await
                .unwrap()
                .iter()
                .all(|l| l.lpar.status == LparStatus::Deactivated)
        );
        assert!(c.locks().await.unwrap().is_empty());
    }
}

/// The demo fleet file with `blade`'s migration paths removed.
fn fleet_without_path(dir: &Path, blade: &str) -> std::path::PathBuf {
    let (_, path) = demo_fleet(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("name = \"") {
            current = name.trim_end_matches('"').to_owned();
        }
        if current == blade && line.starts_with("migration_paths") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let patched = dir.join("no-path.toml");
    std::fs::write(&patched, out).unwrap();
    patched
}

#[tokio::test(flavor = "multi_thread")]
async fn connectivity_test_over_the_migration_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let src = TestBlade::start(&fleet_file, "ch2-b2", &dir.path().join("src")).unwrap();
    let dst = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("dst")).unwrap();
    let profile = profile_of(&[&src, &dst]);

    let report = connectivity_test(
        &profile,
        &lpm_tests::operator(),
        "ch2-b2",
        "ch1-b2",
        ProbeLimits {
            max_bytes: 16 << 20,
            ..ProbeLimits::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.result, COMPLETED);
    let p = &report.probe;
    assert_eq!(
        p.source_addr.ip().to_string(),
        "127.0.2.4",
        "sent from the source's migration path"
    );
    assert_eq!(
        p.dest_addr.ip().to_string(),
        "127.0.2.2",
        "to the destination's migration path"
    );
    assert!(p.bytes > 0 && p.throughput_mbps > 0.0, "{p:?}");
    assert!(p.rtt.min_ms > 0.0 && p.rtt.min_ms <= p.rtt.max_ms, "{p:?}");
    assert!(
        p.max_udp_payload >= 1200 && p.path_mtu == p.max_udp_payload + 28,
        "{p:?}"
    );

    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    let data = dir.path().join("data");
    let out = lparmover(
        &profile_path,
        &data,
        &[
            "connectivity-test",
            "--from",
            "ch2-b2",
            "--to",
            "ch1-b2",
            "--mib",
            "16",
        ],
    );
    let text = stdout(&out);
    println!("{text}");
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("Round trip") && text.contains("Throughput") && text.contains("Path MTU"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some(COMPLETED), "{text}");

    // The Migration History list shows the test (it moved no LPAR).
    let out = lparmover(&profile_path, &data, &["history"]);
    let text = stdout(&out);
    println!("{text}");
    let row = text
        .lines()
        .find(|l| l.contains("Connectivity Test"))
        .unwrap_or_else(|| panic!("no Connectivity Test in:\n{text}"));
    assert!(
        row.contains("ch2-b2") && row.contains("ch1-b2") && row.contains("Completed"),
        "{row}"
    );
    // …and who ran it, from where.
    let me = lpm_tests::operator();
    assert!(
        row.ends_with(&format!("{}@{} via CLI", me.user, me.host)),
        "{row}"
    );
    assert!(
        text.contains("RTT median") && text.contains("path MTU"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connectivity_test_refuses_a_destination_without_migration_path() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_file = fleet_without_path(dir.path(), "ch1-b2");
    let src = TestBlade::start(&fleet_file, "ch2-b2", &dir.path().join("src")).unwrap();
    let dst = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("dst")).unwrap();
    let profile = profile_of(&[&src, &dst]);

    let err = connectivity_test(
        &profile,
        &lpm_tests::operator(),
        "ch2-b2",
        "ch1-b2",
        ProbeLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectivityError::Refused(_)), "{err}");
    assert_eq!(err.emg().kind, Emg::DestinationPathMissing);
    assert!(
        err.to_string()
            .contains("Specified NIC was not found. (Dst-Blade)"),
        "{err}"
    );

    // The HVM refuses the same way when asked directly.
    let err = dst
        .client()
        .probe_listen(&ProbeListen {
            ticket: JobTicket::generate().to_hex(),
            source_cert_pem: src.profile.cert_pem.clone(),
            timeout_s: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Api { .. }), "{err}");
    assert_eq!(err.kind(), Emg::DestinationPathMissing, "{err}");

    // And the CLI says so with the catalogue line and its action.
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    let data = dir.path().join("data");
    let out = lparmover(
        &profile_path,
        &data,
        &["connectivity-test", "--from", "ch2-b2", "--to", "ch1-b2"],
    );
    assert!(!out.status.success());
    let err_text = stderr(&out);
    println!("{}{err_text}", stdout(&out));
    assert!(
        err_text.contains("EMG0000000300a50002")
            && err_text.contains("Specified NIC was not found. (Dst-Blade)"),
        "{err_text}"
    );
    assert!(
        err_text.contains("Action: Check the setting of a migration path"),
        "{err_text}"
    );

    // The failed test is in the history too, with why it failed.
    let out = lparmover(&profile_path, &data, &["history"]);
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("Connectivity Test"))
        .unwrap_or_else(|| panic!("no Connectivity Test in:\n{text}"));
    assert!(row.contains("Failed"), "{row}");
    assert!(
        text.contains("Specified NIC was not found. (Dst-Blade)"),
        "{text}"
    );
}

/// Runs `lparmover --profile PROFILE ARGS…` with `data` as its manager data directory.
fn lparmover(profile: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--profile", profile.to_str().unwrap()];
    all.extend_from_slice(args);
    run_binary_with_data("lparmover", &all, data, CLI_TIMEOUT).unwrap()
}

/// (number, status, processor group) of LPAR `name` on `client`, if it is there.
async fn placed(client: &HvmClient, name: &str) -> Option<(u8, LparStatus, u8)> {
    client
        .lpars()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.lpar.name.as_str() == name)
        .map(|l| (l.lpar.number.get(), l.lpar.status, l.lpar.processors.group))
}

/// The `Now` / `oldN` lines of `lparmover history LPAR`.
fn placement_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("Now") || l.starts_with("old"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn return_migration_goes_back_to_the_hvm_and_number_the_history_names() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (c1, c2) = (b1.client(), b2.client());
    let profile = dir.path().join("profile.toml");
    profile_of(&[&b1, &b2]).save(&profile).unwrap();
    let data = dir.path().join("data");

    // Nothing to return from yet: a clear error, nothing moves.
    let out = lparmover(&profile, &data, &["migrate", "--return", "web-01"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no migration history for LPAR \"web-01\""),
        "{}",
        stderr(&out)
    );
    // A rehearsal is listed in the history but moved nothing: still nothing to return from.
    let out = lparmover(
        &profile,
        &data,
        &["rehearse", "--from", "ch1-b1/web-01", "--to", "ch1-b2"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = lparmover(&profile, &data, &["migrate", "--return", "web-01"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a return migration needs a completed move to undo"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        placed(&c1, "web-01").await,
        Some((1, LparStatus::Activated, 0))
    );

    // Live to ch1-b2 as LPAR 7 (Auto would have picked 2).
    let out = lparmover(
        &profile,
        &data,
        &["migrate", "--from", "ch1-b1/web-01", "--to", "ch1-b2/7"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        placed(&c2, "web-01").await,
        Some((7, LparStatus::Activated, 0))
    );
    assert_eq!(placed(&c1, "web-01").await, None);

    // Return, in Shutdown mode: back on ch1-b1 as LPAR 1, running again.
    let out = lparmover(
        &profile,
        &data,
        &[
            "migrate",
            "--mode",
            "shutdown",
            "--return",
            "web-01",
            "--shutdown",
            "--activate",
        ],
    );
    println!("{}", stdout(&out));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Migration completed!"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        placed(&c1, "web-01").await,
        Some((1, LparStatus::Activated, 0))
    );
    assert_eq!(placed(&c2, "web-01").await, None);

    let out = lparmover(&profile, &data, &["history", "web-01"]);
    let text = stdout(&out);
    println!("{text}");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = placement_lines(&text);
    assert_eq!(rows.len(), 2, "{text}");
    for (row, want) in rows.iter().zip([
        ["Now", "ch1-b1", " 1 ", "Shutdown", "Completed", "ch1-b2/7"],
        [
            "old1",
            "ch1-b2",
            " 7 ",
            "Concurrent Maintenance",
            "Completed",
            "ch1-b1/1",
        ],
    ]) {
        for w in want {
            assert!(row.contains(w), "{w:?} not in {row:?}\n{text}");
        }
    }
    let (_, rehearsals) = text
        .split_once("Rehearsals (the LPAR stayed where it was)")
        .unwrap_or_else(|| panic!("no rehearsals listed:\n{text}"));
    assert!(
        rehearsals.contains("ch1-b1/1")
            && rehearsals.contains("ch1-b2")
            && rehearsals.contains("Completed"),
        "{text}"
    );

    // Returning again undoes the return: to ch1-b2 as LPAR 7 again, from the history.
    let out = lparmover(
        &profile,
        &data,
        &[
            "migrate",
            "--mode",
            "shutdown",
            "--return",
            "web-01",
            "--shutdown",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        placed(&c2, "web-01").await,
        Some((7, LparStatus::Deactivated, 0))
    );

    let out = lparmover(&profile, &data, &["history", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let what = e["mode"].as_str().or(e["kind"].as_str()).unwrap();
            (what.to_owned(), e["result"].as_str().unwrap().to_owned())
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        kinds,
        [
            pair("shutdown", "completed"),
            pair("shutdown", "completed"),
            pair("concurrent-maintenance", "completed"),
            pair("rehearsal", "completed"),
        ],
        "{all:#}"
    );

    // Without --mode a return takes the mode of the move it undoes (Shutdown mode here; the
    // LPAR is deactivated, so a live return would be refused).
    let out = lparmover(&profile, &data, &["migrate", "--return", "web-01"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("in Shutdown mode, the mode of the move it undoes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        placed(&c1, "web-01").await,
        Some((1, LparStatus::Deactivated, 0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_move_into_a_processor_group_and_its_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (c1, c2) = (b1.client(), b2.client());
    let profile = dir.path().join("profile.toml");
    profile_of(&[&b1, &b2]).save(&profile).unwrap();
    let data = dir.path().join("data");
    let cold = |lpar: &str, extra: &[&str]| {
        let from = format!("ch1-b1/{lpar}");
        let mut args = vec![
            "migrate", "--mode", "shutdown", "--from", &from, "--to", "ch1-b2",
        ];
        args.extend_from_slice(extra);
        lparmover(&profile, &data, &args)
    };

    // web-01 runs: Shutdown mode wants it shut down (or --shutdown).
    let out = cold("web-01", &["--processor-group", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "The MMS could not accept a migration with activated LPAR. Please shutdown the specified LPAR, and try again."
        ),
        "{}",
        stderr(&out)
    );
    // ch1-b2 has groups 0 and 1 only; group 1 holds 2 processors, db-01 has 4.
    let out = cold("web-01", &["--processor-group", "4", "--shutdown"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the specified processor group has not been defined")
            && err.contains(
                "ch1-b2 has no processor group 4; its groups (processors): 0 (14), 1 (2)"
            )
            && err.contains("Action: Check the setting of processor groups on the destination HVM"),
        "{err}"
    );
    let out = cold("db-01", &["--processor-group", "1", "--shutdown"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the specified processor group has fewer processors than the LPAR")
            && err.contains("the LPAR has 4 processors, group 1 on ch1-b2 has 2"),
        "{err}"
    );
    // Refused before anything happened: both still run on ch1-b1.
    assert_eq!(
        placed(&c1, "web-01").await,
        Some((1, LparStatus::Activated, 0))
    );
    assert_eq!(
        placed(&c1, "db-01").await,
        Some((2, LparStatus::Activated, 0))
    );
    assert_eq!(placed(&c2, "web-01").await, None);

    // The check shows the same row before anyone tries.
    let out = lparmover(
        &profile,
        &data,
        &[
            "check",
            "--from",
            "ch1-b1/web-01",
            "--to",
            "ch1-b2",
            "--mode",
            "shutdown",
            "--processor-group",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("group 1: 2 processors, 2 free"),
        "{}",
        stdout(&out)
    );

    let out = cold(
        "web-01",
        &["--processor-group", "1", "--shutdown", "--activate"],
    );
    println!("{}", stdout(&out));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("processor group 1 there"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        placed(&c2, "web-01").await,
        Some((2, LparStatus::Activated, 1))
    );
    assert_eq!(placed(&c1, "web-01").await, None);
    let out = lparmover(&profile, &data, &["fleet"]);
    let text = stdout(&out);
    assert!(
        text.contains("processor groups 0 (14 CPU), 1 (2 CPU)"),
        "{text}"
    );
    let line = text.lines().find(|l| l.contains("web-01")).unwrap();
    assert!(line.contains("2 CPU (group 1)"), "{line}");
    // Group 1 is now full: batch-01 (2 processors) is refused there.
    let out = cold("batch-01", &["--processor-group", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("processor group 1 on ch1-b2 has 0 free"),
        "{}",
        stderr(&out)
    );

    let out = lparmover(&profile, &data, &["history", "web-01"]);
    let rows = placement_lines(&stdout(&out));
    assert_eq!(rows.len(), 1, "{}", stdout(&out));
    assert!(
        rows[0].contains("ch1-b2") && rows[0].contains("Shutdown") && rows[0].contains("Completed"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_busy_with_another_migration_refuses_until_it_is_done() {
    use lparmover::api::{LockRequest, LockTarget};
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (c1, c2) = (b1.client(), b2.client());
    let profile = dir.path().join("profile.toml");
    profile_of(&[&b1, &b2]).save(&profile).unwrap();
    let data = dir.path().join("data");

    // Another manager's migration job holds ch1-b2.
    let other = c2
        .lock(&LockRequest {
            target: LockTarget::Blade,
            owner: "lparmover-4242@other-manager".into(),
            purpose: lparmover::jobs::new_job_id(),
            ttl_secs: 60,
        })
        .await
        .unwrap();
    let args = [
        "migrate",
        "--mode",
        "shutdown",
        "--from",
        "ch1-b1/batch-01",
        "--to",
        "ch1-b2",
    ];
    let out = lparmover(&profile, &data, &args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "EMG0000000200200002:0000000000000000:0000000000000000:(1):MMS:The specified blade is busy. Please wait until another migration is completed."
        ) && err.contains("held by lparmover-4242@other-manager"),
        "{err}"
    );
    assert!(
        err.contains("Action: Wait for completion of the preceding migration and then retry."),
        "{err}"
    );
    assert_eq!(
        placed(&c1, "batch-01").await,
        Some((3, LparStatus::Deactivated, 0))
    );
    assert!(
        c1.locks().await.unwrap().is_empty(),
        "the source LPAR's lease was given back"
    );

    // Once the other migration is done, the same command works.
    c2.unlock(&other.id).await.unwrap();
    let out = lparmover(&profile, &data, &args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        placed(&c2, "batch-01").await,
        Some((2, LparStatus::Deactivated, 0))
    );
}

#[test]
fn hvm_add_pins_only_the_expected_fingerprint_and_hvm_remove_forgets_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let fleet_profile = dir.path().join("fleet-profile.toml");
    profile_of(&[&blade]).save(&fleet_profile).unwrap();
    let mine = dir.path().join("mine.toml");
    let mine_s = mine.to_str().unwrap();
    let url = blade.profile.url.clone();
    let expected = lparmover::ops::register::pinned_fingerprint(&blade.profile).unwrap();
    let token_from = fleet_profile.to_str().unwrap();
    let add = |more: &[&str]| {
        let mut args = vec![
            "--profile",
            mine_s,
            "hvm",
            "add",
            &url,
            "--name",
            "ch1-b2",
            "--token-from",
            token_from,
        ];
        args.extend_from_slice(more);
        run_binary("lparmover", &args, Duration::from_secs(30)).unwrap()
    };
    // Another certificate than expected: refused with exit 3, nothing written.
    let wrong = add(&["--fingerprint", "00:11:22"]);
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("not the one expected"),
        "{}",
        stderr(&wrong)
    );
    assert!(!mine.exists(), "nothing written");
    // Piped stdin and no --fingerprint: it does not pin unasked.
    let unasked = add(&[]);
    assert!(!unasked.status.success());
    assert!(
        stderr(&unasked).contains("pass it as --fingerprint"),
        "{}",
        stderr(&unasked)
    );
    assert!(!mine.exists());

    let ok = add(&["--fingerprint", &expected.to_lowercase()]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains(&expected),
        "the fingerprint is shown: {}",
        stdout(&ok)
    );
    let saved = lparmover::profile::Profile::load(&mine).unwrap();
    let entry = saved.hvm("ch1-b2").unwrap();
    assert_eq!(entry.cert_pem.trim(), blade.profile.cert_pem.trim());
    assert_eq!(entry.chassis, "CH1", "the blade's own chassis");
    assert_eq!(
        std::fs::metadata(&mine).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = run_binary(
        "lparmover",
        &["--profile", mine_s, "hvm", "list"],
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(stdout(&list).contains(&expected), "{}", stdout(&list));
    // The registered HVM is managed: its fleet view answers through the pinned certificate.
    let fleet = run_binary(
        "lparmover",
        &["--profile", mine_s, "fleet"],
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(fleet.status.success(), "{}", stderr(&fleet));
    assert!(
        stdout(&fleet).contains("web-01") || stdout(&fleet).contains("app-01"),
        "{}",
        stdout(&fleet)
    );

    let removed = run_binary(
        "lparmover",
        &["--profile", mine_s, "hvm", "remove", "ch1-b2"],
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        lparmover::profile::Profile::load(&mine)
            .unwrap()
            .hvms
            .is_empty()
    );
    let again = run_binary(
        "lparmover",
        &["--profile", mine_s, "hvm", "remove", "ch1-b2"],
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no HVM named"),
        "{}",
        stderr(&again)
    );
}
