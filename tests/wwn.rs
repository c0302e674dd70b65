//! WWN rollback end to end (the seed's ch. 3 "Rolling back WWNs"): a live move whose destination
//! dies mid-copy leaves the source marked, a marked HVM refuses new live moves with the seed's
//! message, `lparmover rollback-wwn HVM/LPAR` rolls the WWNs back, and the move then succeeds.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use lparmover::api::{MoveOptions, PrepareIncoming, StartSend};
use lparmover::emg::Emg;
use lparmover::jobs::journal::Outcome;
use lparmover::jobs::{JobError, live_move};
use lparmover::model::LparStatus;
use lpm_tests::{
    TestBlade, demo_fleet, find_lpar as find, live_move_losing_destination_mid_copy, profile_of,
    run_binary, web01_to_b2 as request,
};
use tokio_util::sync::CancellationToken;

const SEED_MESSAGE: &str = "LPAR Migration was canceled. Migration WWNs are already used.";

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
