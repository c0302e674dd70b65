//! Live moves end to end: two real hvmsim processes with real (KVM, else software) guests, the
//! manager's live-move job, and what an operator would check afterwards.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;
use std::time::Duration;

use lparmover::api::{HvmClient, LparView, MoveOptions};
use lparmover::emg::Emg;
use lparmover::jobs::journal::Outcome;
use lparmover::jobs::{JobError, live_move};
use lparmover::model::{LparStatus, Wwpn};
use lpm_tests::{
    TestBlade, demo_fleet, find_lpar as find, live_move_losing_destination_mid_copy, profile_of,
    web01_to_b2 as request,
};
use tokio_util::sync::CancellationToken;

async fn heartbeat(client: &HvmClient, name: &str) -> u64 {
    find(client, name)
        .await
        .and_then(|l| l.runtime)
        .map(|r| r.heartbeat.counter)
        .unwrap_or(0)
}

/// The guest's heartbeat keeps counting on `client`.
async fn assert_running(client: &HvmClient, name: &str) {
    let before = heartbeat(client, name).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = heartbeat(client, name).await;
    assert!(
        after > before,
        "{name} on {}: heartbeat {before} → {after}, not running",
        client.name()
    );
}

async fn all_logins(clients: &[&HvmClient]) -> Vec<Wwpn> {
    let mut all = Vec::new();
    for c in clients {
        for l in c.lpars().await.unwrap() {
            all.extend(l.fc_logins);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn live_move_keeps_the_guest_running_with_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let before = find(&src, "web-01").await.unwrap();
    let counter_before = heartbeat(&src, "web-01").await;
    assert_running(&src, "web-01").await;

    let mut stages = Vec::new();
    let options = MoveOptions {
        verify: true,
        ..MoveOptions::default()
    };
    let report = live_move(
        &profile_of(&[&b1, &b2]),
        &request(options),
        |p| stages.push(p.stage),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert!(
        report.summary.verified,
        "destination memory equals the source's at suspension, byte for byte"
    );
    assert!(
        report.suspension.is_some(),
        "suspension measured from the guest's heartbeat"
    );
    assert!(
        stages.iter().any(|s| s.code() == 0x4050),
        "operator saw 0x4050 (SRC) Transferring Memory Data"
    );
    assert!(
        find(&src, "web-01").await.is_none(),
        "the source no longer has the LPAR"
    );
    let moved = find(&dst, "web-01").await.unwrap();
    assert_eq!(moved.lpar.status, LparStatus::Activated);
    let macs = |v: &LparView| v.lpar.vnics.iter().map(|n| n.mac).collect::<Vec<_>>();
    let wwpns = |v: &LparView| v.lpar.vfcs.iter().map(|f| f.wwpn).collect::<Vec<_>>();
    assert_eq!(macs(&moved), macs(&before), "MACs move with the LPAR");
    assert_eq!(wwpns(&moved), wwpns(&before), "WWPNs move with the LPAR");
    assert_eq!(
        moved.fc_logins,
        wwpns(&before),
        "destination vFCs swapped to the WWPNs"
    );
    assert!(
        heartbeat(&dst, "web-01").await > counter_before,
        "heartbeat continues from where it stopped"
    );
    assert_running(&dst, "web-01").await;

    let logins = all_logins(&[&src, &dst]).await;
    let unique: HashSet<_> = logins.iter().collect();
    assert_eq!(
        unique.len(),
        logins.len(),
        "no WWPN logged in twice: {logins:?}"
    );

    // The source HVM took the destination's unused names in exchange: a new LPAR in the freed
    // slot gets fresh names, never the moved LPAR's.
    let mut req = lparmover::model::Fleet::load(&fleet_file)
        .unwrap()
        .blade("ch1-b1")
        .unwrap()
        .lpars[0]
        .clone();
    req.number = None;
    req.name = "web-02".parse().unwrap();
    let fresh = src.define(&req, None).await.unwrap();
    for (new, old) in fresh.lpar.vfcs.iter().zip(&before.lpar.vfcs) {
        assert_ne!(
            new.wwpn, old.wwpn,
            "a moved WWPN is never generated again on the source"
        );
    }
    let mut all_macs = HashSet::new();
    for c in [&src, &dst] {
        for l in c.lpars().await.unwrap() {
            for n in &l.lpar.vnics {
                assert!(
                    all_macs.insert(n.mac),
                    "MAC {} defined twice in the fleet",
                    n.mac
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_transfer_leaves_the_source_running_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let before = find(&src, "web-01").await.unwrap();
    let dst_free = dst.inventory().await.unwrap().resources;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // A slow path (20 MB/s) so there is time to cancel while memory moves.
    let options = MoveOptions {
        bandwidth_limit: Some(20_000_000),
        ..MoveOptions::default()
    };
    let result = live_move(
        &profile_of(&[&b1, &b2]),
        &request(options),
        move |p| {
            if p.mover
                .as_ref()
                .is_some_and(|m| m.memory_bytes_sent > 32 << 20)
            {
                trigger.cancel();
            }
        },
        cancel,
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(
        err.emg().map(|e| e.kind),
        Some(Emg::TerminatedByUser),
        "{err}"
    );
    assert!(
        matches!(&err, JobError::Settled { recovery, .. } if recovery.outcome == Some(Outcome::RolledBack)),
        "the journal records the roll-back: {err}"
    );

    let after = find(&src, "web-01").await.unwrap();
    assert_eq!(after.lpar, before.lpar, "the source LPAR is untouched");
    assert_running(&src, "web-01").await;
    assert!(
        find(&dst, "web-01").await.is_none(),
        "the destination dropped its definition"
    );
    assert_eq!(
        dst.inventory().await.unwrap().resources,
        dst_free,
        "reservation released"
    );
    assert!(
        src.locks().await.unwrap().is_empty() && dst.locks().await.unwrap().is_empty(),
        "leases released"
    );

    // Both blades counted the move as over and not completed; the source as cancelled, with
    // the bytes it had sent.
    let ended = |role: &str, outcome: &str| {
        format!(
            "lparmover_moves_ended_total{{role=\"{role}\",mode=\"live\",outcome=\"{outcome}\"}}"
        )
    };
    let src_text = scrape(&b1).await;
    assert_eq!(sample(&src_text, &ended("source", "cancelled")), 1.0);
    assert_eq!(sample(&src_text, &ended("source", "completed")), 0.0);
    assert!(
        sample(
            &src_text,
            "lparmover_move_memory_bytes_total{role=\"source\",mode=\"live\"}"
        ) > f64::from(32 << 20),
        "{src_text}"
    );
    assert_eq!(
        sample(
            &src_text,
            "lparmover_move_suspension_seconds_count{role=\"source\"}"
        ),
        0.0,
        "no suspension: the guest never paused"
    );
    let dst_text = scrape(&b2).await;
    let undone = sample(&dst_text, &ended("destination", "cancelled"))
        + sample(&dst_text, &ended("destination", "rolled_back"));
    assert_eq!(undone, 1.0, "{dst_text}");
    assert_eq!(
        sample(
            &dst_text,
            "lparmover_moves_in_progress{role=\"destination\",mode=\"live\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_killed_mid_copy_leaves_the_source_running() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let mut b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let src = b1.client();
    let before = find(&src, "web-01").await.unwrap();
    let profile = profile_of(&[&b1, &b2]);
    let options = MoveOptions {
        bandwidth_limit: Some(20_000_000),
        ..MoveOptions::default()
    };
    let err = live_move_losing_destination_mid_copy(profile, request(options), &mut b2)
        .await
        .unwrap_err();
    assert!(
        err.emg().is_some(),
        "a catalogue error for the operator: {err}"
    );

    match &err {
        JobError::Settled { recovery, .. } => {
            assert_eq!(recovery.outcome, Some(Outcome::RolledBack), "{err}");
            assert!(
                recovery
                    .detail
                    .contains("lparmover rollback-wwn ch1-b1/web-01"),
                "{err}"
            );
        }
        other => panic!("recovery settles the move without the destination: {other}"),
    }

    let after = find(&src, "web-01").await.unwrap();
    assert_eq!(after.lpar, before.lpar, "the source LPAR is untouched");
    assert_running(&src, "web-01").await;
    assert_eq!(
        after.fc_logins, before.fc_logins,
        "the source keeps its fabric logins"
    );
    // The destination may have logged in with the migration WWPNs before it died: the source is
    // marked until the WWNs are rolled back.
    assert!(after.wwn_rollback_pending);
    assert_eq!(after.shown_status(), LparStatus::WwnRollbackPending);
    let marks = src.wwn_rollbacks().await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].peer, "ch1-b2");

    // The restarted destination knows from its record that the copy it was receiving died
    // with it and never ran: it drops the definition on its own.
    b2.restart().unwrap();
    assert!(
        find(&b2.client(), "web-01").await.is_none(),
        "the half-received LPAR is not left defined on the destination"
    );
    assert!(b2.client().migrations().await.unwrap().is_empty());

    // With the destination answering again and holding nothing of the move, recovery rolls the
    // WWNs back.
    let profile = profile_of(&[&b1, &b2]);
    let dirs = lparmover::dirs::ManagerDirs::for_profile(&profile);
    let reports = lparmover::jobs::rollback_all(&profile, &dirs, None).await;
    assert!(reports.len() == 1 && reports[0].rolled_back, "{reports:?}");
    assert!(src.wwn_rollbacks().await.unwrap().is_empty());
    let after = find(&src, "web-01").await.unwrap();
    assert!(!after.wwn_rollback_pending);
    assert_eq!(after.fc_logins, before.fc_logins);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_mode_moves_a_running_lpar_after_a_remote_shutdown() {
    use lparmover::jobs::{ColdMoveRequest, shutdown_move};
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let profile = profile_of(&[&b1, &b2]);
    let before = find(&src, "web-01").await.unwrap();
    let mut request = ColdMoveRequest {
        source: "ch1-b1/web-01".parse().unwrap(),
        destination: "ch1-b2".into(),
        dest_number: None,
        processor_group: None,
        remote_shutdown: false,
        shutdown_wait: Duration::from_secs(30),
        activate: true,
        actor: lpm_tests::operator(),
    };
    let refused = shutdown_move(&profile, &request, |_| {}).await.unwrap_err();
    assert_eq!(
        refused.emg().unwrap().kind,
        Emg::LparActivatedForShutdownMode
    );
    assert_running(&src, "web-01").await;

    request.remote_shutdown = true;
    let report = shutdown_move(&profile, &request, |_| {}).await.unwrap();
    assert!(report.shut_down && report.activated);
    assert!(find(&src, "web-01").await.is_none());
    let moved = find(&dst, "web-01").await.unwrap();
    assert_eq!(moved.lpar.vnics, before.lpar.vnics, "MACs kept");
    assert_eq!(
        moved.lpar.vfcs.iter().map(|v| v.wwpn).collect::<Vec<_>>(),
        before.lpar.vfcs.iter().map(|v| v.wwpn).collect::<Vec<_>>()
    );
    assert_running(&dst, "web-01").await;

    // A Shutdown-mode move is one step on each blade.
    let one = |role: &str| {
        format!(
            "lparmover_moves_ended_total{{role=\"{role}\",mode=\"shutdown\",outcome=\"completed\"}}"
        )
    };
    assert_eq!(sample(&scrape(&b1).await, &one("source")), 1.0);
    assert_eq!(sample(&scrape(&b2).await, &one("destination")), 1.0);
    assert_eq!(sample(&scrape(&b2).await, &one("source")), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waiting_when_the_guest_refuses() {
    use lparmover::jobs::{ColdMoveRequest, shutdown_move};
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch2-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch2-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    // test-01 is the guest that refuses to shut down.
    let n = find(&src, "test-01").await.unwrap().lpar.number;
    src.activate(n, None).await.unwrap();
    let request = ColdMoveRequest {
        source: "ch2-b1/test-01".parse().unwrap(),
        destination: "ch2-b2".into(),
        dest_number: None,
        processor_group: None,
        remote_shutdown: true,
        shutdown_wait: Duration::from_secs(2),
        activate: false,
        actor: lpm_tests::operator(),
    };
    let err = shutdown_move(&profile_of(&[&b1, &b2]), &request, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.emg().unwrap().kind, Emg::ShutdownWaiting, "{err}");
    assert!(
        find(&dst, "test-01").await.is_none(),
        "nothing defined on the destination"
    );
    assert_running(&src, "test-01").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rehearsal_releases_everything_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let (src, dst) = (b1.client(), b2.client());
    let src_before = src.backup_config().await.unwrap().lpars;
    let dst_before = dst.inventory().await.unwrap();
    let report = lparmover::jobs::rehearse(
        &profile_of(&[&b1, &b2]),
        &lpm_tests::operator(),
        &"ch1-b1/web-01".parse().unwrap(),
        "ch1-b2",
        &MoveOptions::default(),
        64 << 20,
    )
    .await
    .unwrap();
    assert!(
        report.sampled_bytes >= 64 << 20,
        "a real transfer happened: {report:?}"
    );
    assert!(
        report.throughput_mbps > 1.0 && report.predicted_total_s > 0.0,
        "{report:?}"
    );
    assert_eq!(
        src.backup_config().await.unwrap().lpars,
        src_before,
        "source untouched"
    );
    assert_running(&src, "web-01").await;
    let dst_after = dst.inventory().await.unwrap();
    assert_eq!(
        dst_after.resources, dst_before.resources,
        "reservation released"
    );
    assert_eq!(
        dst_after.lpars.len(),
        dst_before.lpars.len(),
        "no definition left"
    );
    assert!(src.locks().await.unwrap().is_empty() && dst.locks().await.unwrap().is_empty());
    // Both blades count it as a rehearsal, never as a live move rolled back.
    for (blade, role) in [(&b1, "source"), (&b2, "destination")] {
        let text = scrape(blade).await;
        let ended = |mode: &str, outcome: &str| {
            sample(
                &text,
                &format!(
                    "lparmover_moves_ended_total{{role=\"{role}\",mode=\"{mode}\",outcome=\"{outcome}\"}}"
                ),
            )
        };
        let outcomes = ["completed", "failed", "cancelled", "rolled_back"];
        let rehearsals: f64 = outcomes.iter().map(|o| ended("rehearsal", o)).sum();
        assert_eq!(rehearsals, 1.0, "{role}:\n{text}");
        for outcome in outcomes {
            assert_eq!(ended("live", outcome), 0.0, "{role} {outcome}:\n{text}");
        }
        // The source counts what it sent; a destination what it had applied when told to abort.
        assert!(
            role == "destination"
                || sample(
                    &text,
                    &format!(
                        "lparmover_move_memory_bytes_total{{role=\"{role}\",mode=\"rehearsal\"}}"
                    )
                ) >= (64 << 20) as f64,
            "{role}: the rehearsal's real transfer is counted:\n{text}"
        );
    }
}

/// The value of the sample `series` (name and labels exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("sample {series}: {e}"))
}

/// `GET path` on `blade` with its bearer token (or `token`).
async fn get(blade: &TestBlade, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = blade
        .raw_client()
        .get(format!("{}{path}", blade.profile.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn scrape(blade: &TestBlade) -> String {
    let answer = get(blade, "/metrics", Some(&blade.profile.token)).await;
    assert_eq!(answer.status(), 200, "{} /metrics", blade.profile.name);
    assert_eq!(
        answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(lparmover::metrics::CONTENT_TYPE)
    );
    answer.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_live_move_on_both_blades_and_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();

    // Health answers without a token; the metrics do not.
    let health = get(&b1, "/healthz", None).await;
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "up", "{health}");
    assert_eq!(health["state_dir"], "ok", "{health}");
    assert_eq!(health["blade"], "ch1-b1", "{health}");
    assert_eq!(get(&b1, "/metrics", None).await.status(), 401);
    assert_eq!(
        get(&b1, "/no-such-route", None).await.status(),
        401,
        "only /healthz answers without the token"
    );
    assert_eq!(
        get(&b1, "/metrics", Some("not-the-token")).await.status(),
        401
    );

    let started = "lparmover_moves_started_total{role=\"source\",mode=\"live\"}";
    let before = scrape(&b1).await;
    assert_eq!(
        sample(&before, started),
        0.0,
        "shown at zero before any move"
    );
    let manager = lparmover::metrics::manager();
    let manager_completed =
        "lparmover_moves_ended_total{role=\"manager\",mode=\"live\",outcome=\"completed\"}";
    let manager_suspensions = "lparmover_move_suspension_seconds_count{role=\"manager\"}";
    let (completed_before, suspensions_before) = {
        let text = manager.render();
        (
            sample(&text, manager_completed),
            sample(&text, manager_suspensions),
        )
    };

    let target = lparmover::ops::MoveTarget::Given {
        source: "ch1-b1/web-01".parse().unwrap(),
        destination: lparmover::ops::Destination::auto("ch1-b2"),
    };
    let report = lparmover::ops::moves::live(
        &profile_of(&[&b1, &b2]),
        &lpm_tests::operator(),
        &target,
        MoveOptions::default(),
        &lparmover::ops::moves::MoveControl::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.summary.wire_bytes > 0);

    // The source counted its part: the release is its end, a moment after the manager's
    // move returned.
    let src = scrape(&b1).await;
    let series =
        |role: &str, what: &str| format!("lparmover_{what}{{role=\"{role}\",mode=\"live\"}}");
    for (series, want) in [
        (series("source", "moves_started_total"), 1.0),
        (
            "lparmover_moves_ended_total{role=\"source\",mode=\"live\",outcome=\"completed\"}"
                .to_owned(),
            1.0,
        ),
        (
            "lparmover_moves_ended_total{role=\"source\",mode=\"live\",outcome=\"failed\"}"
                .to_owned(),
            0.0,
        ),
        (series("source", "moves_in_progress"), 0.0),
        (series("destination", "moves_started_total"), 0.0),
        (
            "lparmover_move_suspension_seconds_count{role=\"source\"}".to_owned(),
            1.0,
        ),
        (
            "lparmover_move_precopy_rounds_count{role=\"source\"}".to_owned(),
            1.0,
        ),
        (series("source", "move_duration_seconds_count"), 1.0),
    ] {
        assert_eq!(sample(&src, &series), want, "{series} on the source");
    }
    let src_wire = sample(&src, &series("source", "move_wire_bytes_total"));
    let src_memory = sample(&src, &series("source", "move_memory_bytes_total"));
    assert_eq!(src_wire, report.summary.wire_bytes as f64);
    assert_eq!(src_memory, report.summary.memory_bytes_sent as f64);
    let suspension = sample(
        &src,
        "lparmover_move_suspension_seconds_sum{role=\"source\"}",
    );
    assert!(
        (suspension - report.summary.downtime.as_secs_f64()).abs() < 1e-6,
        "the source's suspension is the sender's downtime: {suspension} s vs {:?}",
        report.summary.downtime
    );

    let dst = scrape(&b2).await;
    for (series, want) in [
        (series("destination", "moves_started_total"), 1.0),
        (
            "lparmover_moves_ended_total{role=\"destination\",mode=\"live\",outcome=\"completed\"}"
                .to_owned(),
            1.0,
        ),
        (series("destination", "moves_in_progress"), 0.0),
        (series("source", "moves_started_total"), 0.0),
        (
            "lparmover_move_precopy_rounds_count{role=\"destination\"}".to_owned(),
            1.0,
        ),
    ] {
        assert_eq!(sample(&dst, &series), want, "{series} on the destination");
    }
    let dst_wire = sample(&dst, &series("destination", "move_wire_bytes_total"));
    assert!(
        dst_wire > 0.0 && dst_wire <= src_wire,
        "the destination's page payload ({dst_wire}) is part of what the source put on the wire ({src_wire})"
    );
    assert_eq!(
        sample(&dst, &series("destination", "move_memory_bytes_total")),
        src_memory,
        "every page the source sent was written on the destination"
    );
    assert_eq!(
        sample(
            &dst,
            "lparmover_move_precopy_rounds_sum{role=\"destination\"}"
        ),
        f64::from(report.summary.rounds),
        "both sides count the same rounds"
    );

    // The manager that drove it counted it too, with the guest-visible suspension.
    let text = manager.render();
    assert_eq!(sample(&text, manager_completed), completed_before + 1.0);
    assert_eq!(sample(&text, manager_suspensions), suspensions_before + 1.0);
}
