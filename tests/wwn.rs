//! WWN rollback end to end (the seed's ch. 3 "Rolling back WWNs"): a live move whose destination
//! dies mid-copy leaves the source marked (case a), a marked HVM refuses new live moves with the
//! seed's message, `lparmover rollback-wwn HVM/LPAR` rolls the WWNs back, and the move then
//! succeeds. A source whose commit fails during recovery (its state disk is full) leaves the
//! destination marked (case c) until the disk is freed and `lparmover rollback-wwn` settles the
//! move.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use lparmover::api::{HvmClient, Role, WwnRollbackReason};
use lparmover::api::{MoveOptions, PrepareIncoming, StartSend};
use lparmover::emg::Emg;
use lparmover::jobs::journal::Outcome;
use lparmover::jobs::{JobError, live_move};
use lparmover::model::LparStatus;
use lpm_tests::{
    FailingStateDisk, TestBlade, demo_fleet, find_lpar as find,
    live_move_losing_destination_mid_copy, manager_at_barrier, profile_of, run_binary,
    web01_to_b2 as request,
};
use tokio_util::sync::CancellationToken;

const SEED_MESSAGE: &str = "LPAR Migration was canceled. Migration WWNs are already used.";
/// What an HVM that cannot write its state file answers.
const NOT_SAVED: &str = "the HVM could not save its configuration information";

fn cli(profile: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--profile", profile.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_binary("lparmover", &all, Duration::from_secs(120)).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_lost_mid_copy_leaves_wwns_to_roll_back_until_rollback_wwn() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let mut b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let mut b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let src = b1.client();
    let before = find(&src, "web-01").await.unwrap();

    // 1. A real mark: the destination hvmsim is killed while memory is being copied.
    let profile = profile_of(&[&b1, &b2]);
    let slow = MoveOptions {
        bandwidth_limit: Some(20_000_000),
        ..MoveOptions::default()
    };
    let err = live_move_losing_destination_mid_copy(profile, request(slow), &mut b2)
        .await
        .unwrap_err();
    let JobError::Settled { recovery, .. } = &err else {
        panic!("recovery settles the move without the destination: {err}");
    };
    assert_eq!(recovery.outcome, Some(Outcome::RolledBack), "{err}");
    let marks = src.wwn_rollbacks().await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].lpar_name.as_str(), "web-01");
    assert_eq!(
        marks[0].migration_wwpns,
        before
            .lpar
            .vfcs
            .iter()
            .map(|v| v.migration_wwpn)
            .collect::<Vec<_>>()
    );
    let view = find(&src, "web-01").await.unwrap();
    assert_eq!(view.lpar.status, LparStatus::Activated, "the guest runs on");
    assert_eq!(view.shown_status(), LparStatus::WwnRollbackPending);

    // The mark is durable: it survives the source HVM's restart (its guest boots again).
    b1.restart().unwrap();
    let src = b1.client();
    assert_eq!(src.wwn_rollbacks().await.unwrap(), marks);
    b2.restart().unwrap();
    let profile = profile_of(&[&b1, &b2]);
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();

    let (ok, text) = cli(&profile_path, &["fleet"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("LPARs with WWNs pending rollback: 1 LPARs"),
        "{text}"
    );
    assert!(text.contains("WWN rollback pending"), "{text}");
    let (ok, text) = cli(
        &profile_path,
        &["rollback-wwn", "ch1-b1", "--list", "--json"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("\"lpar_name\": \"web-01\""), "{text}");

    // 2. A new live move of that LPAR is refused with the seed's message: by the checks ...
    let refused = live_move(
        &profile,
        &request(MoveOptions::default()),
        |_| {},
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let emg = refused.emg().unwrap();
    assert_eq!(emg.kind, Emg::MigrationWwnsInUse, "{refused}");
    assert!(emg.to_string().contains(SEED_MESSAGE), "{emg}");
    assert!(
        emg.to_string()
            .contains("lparmover rollback-wwn ch1-b1/web-01"),
        "{emg}"
    );
    let (ok, text) = cli(
        &profile_path,
        &[
            "check",
            "--from",
            "ch1-b1/web-01",
            "--to",
            "ch1-b2",
            "--mode",
            "concurrent",
        ],
    );
    assert!(!ok && text.contains(SEED_MESSAGE), "{text}");
    // ... and by the marked blade itself, as a source and as a destination.
    let (dst, app) = (b2.client(), find(&b2.client(), "app-01").await.unwrap());
    let send = src
        .start_send(
            &StartSend {
                job: "job-20260101-000000-0001".into(),
                lpar: before.lpar.number,
                ticket: "00".repeat(32),
                dest_addr: "127.0.2.2:9".parse().unwrap(),
                dest_cert_pem: b2.profile.cert_pem.clone(),
                options: MoveOptions::default(),
                exchange: Default::default(),
                purpose: Default::default(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(send.kind(), Emg::MigrationWwnsInUse, "{send}");
    let prepare = src
        .prepare_incoming(
            &PrepareIncoming {
                job: "job-20260101-000000-0002".into(),
                lpar: app.lpar.clone(),
                number: None,
                ticket: "00".repeat(32),
                source_cert_pem: b2.profile.cert_pem.clone(),
                ticket_ttl_s: None,
                purpose: Default::default(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(prepare.kind(), Emg::MigrationWwnsInUse, "{prepare}");
    assert!(prepare.to_string().contains(SEED_MESSAGE), "{prepare}");
    assert!(
        find(&src, "app-01").await.is_none(),
        "a refusal defines nothing"
    );

    // 3. Roll the WWNs back.
    let (ok, text) = cli(&profile_path, &["rollback-wwn", "ch1-b1/web-01"]);
    assert!(ok, "{text}");
    assert!(text.contains("Rollback completed!"), "{text}");
    assert!(src.wwn_rollbacks().await.unwrap().is_empty());
    let view = find(&src, "web-01").await.unwrap();
    assert!(!view.wwn_rollback_pending);
    assert_eq!(view.fc_logins, before.fc_logins, "vFCs on the WWPNs");
    let (ok, text) = cli(&profile_path, &["rollback-wwn", "ch1-b1/web-01"]);
    assert!(
        !ok && text.contains("no WWNs pending rollback"),
        "a second rollback says there is nothing: {text}"
    );

    // 4. The move now succeeds.
    let report = live_move(
        &profile,
        &request(MoveOptions::default()),
        |_| {},
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.destination, "ch1-b2");
    let moved = find(&dst, "web-01").await.unwrap();
    assert_eq!(moved.lpar.status, LparStatus::Activated);
    assert_eq!(moved.fc_logins, before.fc_logins, "WWPNs moved with it");
    assert!(find(&src, "web-01").await.is_none());
}

/// web-01's heartbeat counter on `client`'s HVM, read twice 500 ms apart.
async fn heartbeats(client: &HvmClient) -> Option<(u64, u64)> {
    let read = || async {
        find(client, "web-01")
            .await
            .and_then(|v| v.runtime.map(|r| r.heartbeat.counter))
    };
    let first = read().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Some((first, read().await?))
}

/// Across both HVMs: no WWPN logged in twice, no MAC on two running guests.
async fn nothing_active_twice(clients: &[&HvmClient]) {
    let (mut logins, mut macs) = (Vec::new(), Vec::new());
    for client in clients {
        for view in client.lpars().await.unwrap() {
            let on = |name: String| format!("{name} ({}/{})", client.name(), view.lpar.name);
            logins.extend(view.fc_logins.iter().map(|w| on(w.to_string())));
            if view.runtime.is_some() && view.lpar.status == LparStatus::Activated {
                macs.extend(view.lpar.vnics.iter().map(|n| on(n.mac.to_string())));
            }
        }
    }
    for (what, mut list) in [("WWPN logged in", logins), ("MAC of a running guest", macs)] {
        list.sort();
        let name = |entry: &String| entry.split(' ').next().unwrap_or_default().to_owned();
        assert!(
            !list.windows(2).any(|w| name(&w[0]) == name(&w[1])),
            "a {what} appears twice: {list:?}"
        );
    }
}

fn unfinished_jobs(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Case (c): the destination resumed, the manager died before the source committed, and the
/// source cannot commit during recovery because its state disk is full (it still answers). The
/// destination runs the LPAR on the migration WWPNs and is marked; every way out is refused
/// while the disk stays full; once it is freed, `lparmover rollback-wwn` (what the mark names)
/// settles the move, the swap clears the mark, and the LPAR moves again.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_cannot_commit_during_recovery_leaves_the_destination_marked() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1_dir = dir.path().join("b1");
    let mut disk = match FailingStateDisk::new(&b1_dir) {
        Ok(disk) => disk,
        Err(why) => {
            lpm_tests::unavailable(
                "a_source_that_cannot_commit_during_recovery_leaves_the_destination_marked",
                lpm_tests::Need::Tmpfs,
                &why,
            );
            return;
        }
    };
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &b1_dir).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let before = find(&src, "web-01").await.unwrap();
    let migration_wwpns: Vec<_> = before.lpar.vfcs.iter().map(|v| v.migration_wwpn).collect();
    // A data directory of its own: this test's `lparmover recover` settles only its own job.
    let mut profile = profile_of(&[&b1, &b2]);
    let data = dir.path().join("manager");
    profile.data_dir = Some(data.clone());
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    let back_to_b1 = ["migrate", "--from", "ch1-b2/web-01", "--to", "ch1-b1"];

    // 1. The manager stops after the destination resumed, before the source commits, and dies.
    let mut manager = manager_at_barrier(
        &profile_path,
        "swap",
        &dir.path().join("fault"),
        &["migrate", "--from", "ch1-b1/web-01", "--to", "ch1-b2"],
    )
    .unwrap();
    manager.kill().unwrap();
    manager.wait().unwrap();
    let resumed = find(&dst, "web-01").await.unwrap();
    assert_eq!(resumed.lpar.status, LparStatus::Activated);
    assert_eq!(resumed.fc_logins, migration_wwpns, "on the migration WWPNs");
    let job = unfinished_jobs(&data);
    assert_eq!(job.len(), 1, "{job:?}");
    let job = job[0].clone();

    // 2. The source's state disk fills up: it answers, but cannot record its commit.
    disk.fail_writes();
    let (ok, text) = cli(&profile_path, &["recover"]);
    assert!(!ok, "recover cannot settle the move: {text}");
    assert!(text.contains("not settled yet"), "{text}");
    assert!(text.contains(NOT_SAVED), "the operator is told why: {text}");
    assert!(!text.contains("Nothing to recover"), "{text}");

    // The destination is marked (case c), the source is not, the job stays in the journal.
    let marks = dst.wwn_rollbacks().await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mark = &marks[0];
    assert_eq!(mark.lpar_name.as_str(), "web-01");
    assert_eq!(mark.job, job);
    assert_eq!(mark.role, Role::Destination);
    assert_eq!(mark.peer, "ch1-b1");
    assert_eq!(mark.reason, WwnRollbackReason::SourceCommitFailed);
    assert_eq!(mark.migration_wwpns, migration_wwpns);
    assert!(src.wwn_rollbacks().await.unwrap().is_empty());
    assert_eq!(unfinished_jobs(&data), vec![job.clone()]);

    // web-01 runs on exactly one blade, the destination; nothing is active twice.
    let view = find(&dst, "web-01").await.unwrap();
    assert_eq!(view.lpar.status, LparStatus::Activated);
    assert_eq!(view.shown_status(), LparStatus::WwnRollbackPending);
    assert_eq!(
        view.fc_logins, migration_wwpns,
        "still on the migration WWPNs"
    );
    let (h1, h2) = heartbeats(&dst).await.unwrap();
    assert!(h2 > h1, "web-01 runs on ch1-b2 ({h1} → {h2})");
    let left = find(&src, "web-01").await.unwrap();
    assert_ne!(left.lpar.status, LparStatus::Activated, "{left:?}");
    if let Some((h1, h2)) = heartbeats(&src).await {
        assert_eq!(h1, h2, "the source's copy stays paused");
    }
    nothing_active_twice(&[&src, &dst]).await;

    // The operator sees the mark ...
    let (ok, text) = cli(&profile_path, &["rollback-wwn", "--list"]);
    assert!(ok, "{text}");
    assert!(text.contains("ch1-b2/web-01"), "{text}");
    assert!(
        text.contains(WwnRollbackReason::SourceCommitFailed.label()),
        "{text}"
    );
    assert!(
        text.contains("LPARs with WWNs pending rollback: 1 LPARs"),
        "{text}"
    );
    let (ok, text) = cli(&profile_path, &["fleet"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("LPARs with WWNs pending rollback: 1 LPARs"),
        "{text}"
    );
    // ... a new live move of the LPAR is refused with the seed's message ...
    let (ok, text) = cli(&profile_path, &back_to_b1);
    assert!(!ok && text.contains(SEED_MESSAGE), "{text}");
    assert!(
        text.contains("lparmover rollback-wwn ch1-b2/web-01"),
        "{text}"
    );
    // ... and rolling back refuses too while the source cannot commit: the mark stays.
    let (ok, text) = cli(&profile_path, &["rollback-wwn", "ch1-b2/web-01"]);
    assert!(!ok, "{text}");
    assert!(text.contains(NOT_SAVED), "{text}");
    assert!(!text.contains("Rollback completed!"), "{text}");
    assert_eq!(dst.wwn_rollbacks().await.unwrap(), marks);
    assert_eq!(
        find(&dst, "web-01").await.unwrap().fc_logins,
        migration_wwpns
    );
    nothing_active_twice(&[&src, &dst]).await;

    // 3. The disk is freed: the way out the mark names settles the move and clears the mark.
    disk.repair();
    let (ok, text) = cli(&profile_path, &["rollback-wwn", "ch1-b2/web-01"]);
    assert!(ok, "{text}");
    assert!(text.contains("Rollback completed!"), "{text}");
    assert!(dst.wwn_rollbacks().await.unwrap().is_empty());
    assert!(src.wwn_rollbacks().await.unwrap().is_empty());
    assert!(unfinished_jobs(&data).is_empty(), "the job is finished");
    let moved = find(&dst, "web-01").await.unwrap();
    assert_eq!(moved.shown_status(), LparStatus::Activated);
    assert_eq!(moved.fc_logins, before.fc_logins, "vFCs on the WWPNs now");
    assert!(find(&src, "web-01").await.is_none(), "the source let go");
    let (h1, h2) = heartbeats(&dst).await.unwrap();
    assert!(h2 > h1, "web-01 runs on ch1-b2 ({h1} → {h2})");
    nothing_active_twice(&[&src, &dst]).await;
    let (ok, text) = cli(&profile_path, &["recover"]);
    assert!(ok && text.contains("Nothing to recover"), "{text}");

    // 4. The move that was refused now succeeds.
    let (ok, text) = cli(&profile_path, &back_to_b1);
    assert!(ok, "{text}");
    let back = find(&src, "web-01").await.unwrap();
    assert_eq!(back.lpar.status, LparStatus::Activated);
    assert_eq!(back.fc_logins, before.fc_logins);
    assert!(find(&dst, "web-01").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_waits_while_the_other_hvm_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let mut b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let src = b1.client();
    let web = find(&src, "web-01").await.unwrap();
    src.mark_wwn_rollback(&lparmover::api::MarkWwnRollback {
        job: "job-20260101-000000-00aa".into(),
        lpar: web.lpar.number,
        role: lparmover::api::Role::Source,
        peer: "ch1-b2".into(),
        reason: lparmover::api::WwnRollbackReason::DestinationUnreachable,
    })
    .await
    .unwrap();
    b2.kill9();
    let profile = profile_of(&[&b1, &b2]);
    let dirs = lparmover::dirs::ManagerDirs::for_profile(&profile);
    let target = "ch1-b1/web-01".parse().unwrap();
    let err = lparmover::jobs::rollback_wwn(&profile, &dirs, &target)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not answer"), "{err}");
    assert_eq!(
        src.wwn_rollbacks().await.unwrap().len(),
        1,
        "the mark stays"
    );
    b2.restart().unwrap();
    let profile = profile_of(&[&b1, &b2]);
    let report = lparmover::jobs::rollback_wwn(&profile, &dirs, &target)
        .await
        .unwrap();
    assert!(report.rolled_back, "{report:?}");
    assert!(src.wwn_rollbacks().await.unwrap().is_empty());
}

/// Table 5-2 on real blades: while a live move runs, both HVMs refuse to save their
/// configuration and the migrating LPAR cannot be operated; other LPARs can; afterwards all is
/// allowed again.
#[tokio::test(flavor = "multi_thread")]
async fn operation_deterrence_while_a_live_move_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let profile = profile_of(&[&b1, &b2]);
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job = tokio::spawn(async move {
        live_move(
            &profile,
            &request(MoveOptions {
                bandwidth_limit: Some(20_000_000),
                ..MoveOptions::default()
            }),
            move |p| {
                if p.mover
                    .as_ref()
                    .is_some_and(|m| m.memory_bytes_sent > 16 << 20)
                {
                    let _ = tx.send(());
                }
            },
            token,
        )
        .await
    });
    rx.recv().await.unwrap();
    for client in [&src, &dst] {
        let err = client.save_config().await.unwrap_err();
        assert_eq!(err.kind(), Emg::BladeBusyMigration, "{err}");
    }
    let incoming = find(&dst, "web-01").await.unwrap();
    assert_eq!(incoming.lpar.status, LparStatus::Migrating);
    let err = dst.delete(incoming.lpar.number, None).await.unwrap_err();
    assert!(
        matches!(err.kind(), Emg::LparBusy | Emg::BladeBusyMigration),
        "{err}"
    );
    // Another LPAR of the source HVM is not affected.
    let other = find(&src, "batch-01").await.unwrap();
    let toggled = if other.lpar.status == LparStatus::Activated {
        src.deactivate(other.lpar.number, None).await
    } else {
        src.activate(other.lpar.number, None).await
    };
    assert!(toggled.is_ok(), "{toggled:?}");
    cancel.cancel();
    let err = job.await.unwrap().unwrap_err();
    assert_eq!(
        err.emg().map(|e| e.kind),
        Some(Emg::TerminatedByUser),
        "{err}"
    );
    src.save_config().await.unwrap();
    dst.save_config().await.unwrap();
}
