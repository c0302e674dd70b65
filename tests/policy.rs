//! Policies end to end on real blades: the `policy` CLI runs the demo's sample unattended
//! (rehearsed, one entry skipped per `on_error`), writes its reports and the return policy
//! that brings everything home; the runner answers an operator's Retry / Skip / End and Stop
//! → Continue / End, keeps a window, meets an operator's move of the same LPAR with "busy",
//! and runs entries on disjoint blades two at a time, never more; `policy stop` from a second
//! process stops a running `policy run`, or the daemon's run, after its running entry.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lparmover::api::HvmClient;
use lparmover::model::LparNumber;
use lparmover::profile::Profile;
use lpm_tests::{
    TestFleet, binary, demo_fleet, find_lpar, http_get, metrics_address, test_data_dir,
};
use policy::report::{EntryResult, RunOutcome, RunReport, RunStore};
use policy::runner::{Attendance, Decision, Question, Resume, RunControl, RunEvent, RunOptions};
use policy::{Entry, OnError, Policy, PolicyName};
use tokio::sync::mpsc;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/policies");
const BATCH_FLEET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/fleets/batch.toml");

fn policy_cli(profile: &Path, policies: &Path, args: &[&str]) -> Output {
    Command::new(binary("policy"))
        .arg("--profile")
        .arg(profile)
        .arg("--policies")
        .arg(policies)
        .args(args)
        .env("LPARMOVER_DATA", test_data_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run policy")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where LPAR `name` is now: (HVM, number).
async fn where_is(profile: &Profile, name: &str) -> (String, LparNumber) {
    for hvm in &profile.hvms {
        let client = HvmClient::new(hvm).unwrap();
        if let Some(view) = find_lpar(&client, name).await {
            return (hvm.name.clone(), view.lpar.number);
        }
    }
    panic!("LPAR {name} is on no HVM of the profile");
}

fn n(number: u8) -> LparNumber {
    LparNumber::new(number).unwrap()
}

#[test]
fn the_sample_policy_runs_unattended_skips_its_failing_entry_and_its_return_brings_all_home() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let policies = dir.path().join("policies");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let validated = policy_cli(&fleet.profile_path, &policies, &["validate", SAMPLES]);
    assert!(
        !validated.status.success(),
        "a directory is not a policy file"
    );
    let sample = format!("{SAMPLES}/demo-evening.toml");
    let out = policy_cli(
        &fleet.profile_path,
        &policies,
        &["run", &sample, "--unattended", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "some entries completed, one skipped: {}",
        text(&out)
    );
    let report: RunReport = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    let results: Vec<EntryResult> = report.entries.iter().map(|e| e.result).collect();
    assert_eq!(
        results,
        [
            EntryResult::Completed,
            EntryResult::Completed,
            EntryResult::Skipped
        ],
        "{}",
        text(&out)
    );
    assert_eq!(report.outcome, Some(RunOutcome::Finished));
    let db = &report.entries[2];
    let rehearsal = db.rehearsal.as_ref().expect("db-01 was rehearsed");
    assert!(!rehearsal.passed);
    assert!(
        rehearsal
            .notes
            .iter()
            .any(|n| n.contains("register-migration ch1-b1/db-01")),
        "the rehearsal says how to fix it: {rehearsal:?}"
    );
    // Entry 1 changes ch1-b1, so db-01 is rehearsed just before it would start.
    assert_eq!(db.attempts, 1, "{db:?}");
    assert!(
        db.failures[0].error.contains("rehearsal failed"),
        "{:?}",
        db.failures
    );
    for e in &report.entries[..2] {
        let r = e.rehearsal.as_ref().expect("rehearsed");
        assert!(r.passed && r.predicted_total_s.is_some(), "{r:?}");
        assert!(e.suspension_ms.is_some() && e.wire_bytes.is_some(), "{e:?}");
    }
    rt.block_on(async {
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b2");
        assert_eq!(where_is(&profile, "app-01").await.0, "ch1-b1");
        assert_eq!(where_is(&profile, "db-01").await, ("ch1-b1".into(), n(2)));
    });
    // The history says the policy moved and rehearsed them, as whoever ran it.
    let me = lpm_tests::operator();
    let by_policy = lparmover::history::Actor {
        origin: lparmover::history::Origin::policy("demo-evening"),
        ..me
    };
    let history =
        lparmover::ops::history(&lparmover::dirs::ManagerDirs::for_profile(&profile), 500)
            .expect("history readable");
    // (Other tests of this file run beside it with the same data directory: look up this
    // run's own jobs.)
    for entry in &report.entries[..2] {
        let job = entry
            .job
            .as_deref()
            .expect("a completed entry names its job");
        let moved = history.iter().find_map(|e| match e {
            lparmover::history::HistoryEntry::Move(m) if m.job == job => Some(m),
            _ => None,
        });
        let moved = moved.unwrap_or_else(|| panic!("{job} is in the history"));
        assert_eq!(moved.actor.as_ref(), Some(&by_policy), "{moved:?}");
        let lpar = moved.lpar.as_str();
        assert!(
            history.iter().any(|e| matches!(e,
                lparmover::history::HistoryEntry::Trial(t)
                    if t.lpar.as_deref() == Some(lpar) && t.actor.as_ref() == Some(&by_policy))),
            "{lpar}'s rehearsal is recorded as the policy's"
        );
    }

    let html = std::fs::read_to_string(
        RunStore::new(test_data_dir().join("policy-runs"))
            .run_dir(&report.run)
            .join("report.html"),
    )
    .expect("the HTML report");
    for e in &report.entries {
        assert!(html.contains(&e.source), "{} in the page", e.source);
    }
    assert!(html.contains("skipped") && html.contains("completed"));
    let shown = policy_cli(&fleet.profile_path, &policies, &["report", &report.run]);
    assert!(
        text(&shown).contains("2 completed, 1 skipped"),
        "{}",
        text(&shown)
    );

    let reversed = policy_cli(&fleet.profile_path, &policies, &["reverse", &sample]);
    assert!(reversed.status.success(), "{}", text(&reversed));
    let back = policy_cli(
        &fleet.profile_path,
        &policies,
        &["run", "demo-evening-return", "--unattended"],
    );
    assert!(back.status.success(), "{}", text(&back));
    rt.block_on(async {
        assert_eq!(where_is(&profile, "web-01").await, ("ch1-b1".into(), n(1)));
        assert_eq!(where_is(&profile, "app-01").await, ("ch1-b2".into(), n(1)));
    });
    let listed = policy_cli(&fleet.profile_path, &policies, &["list"]);
    assert!(
        text(&listed).contains("demo-evening-return"),
        "{}",
        text(&listed)
    );
}

/// What an attending operator does: answers failures in turn, stops after the first start.
#[derive(Clone, Default)]
struct Operator {
    decisions: Vec<Decision>,
    stop_after_first_start: bool,
    resume: Option<Resume>,
}

struct Attended {
    report: RunReport,
    events: Vec<String>,
    asked: usize,
}

async fn run_with(
    profile: &Profile,
    policy: &Policy,
    operator: Operator,
    window: Option<Duration>,
) -> Attended {
    let runs = tempfile::tempdir().unwrap();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (questions_tx, mut questions) = mpsc::unbounded_channel::<Question>();
    let control = RunControl::new();
    let options = RunOptions {
        attendance: Attendance::Operator(questions_tx),
        window_end: window.map(|w| chrono::Utc::now() + chrono::Duration::from_std(w).unwrap()),
        origin: "test".into(),
        runs: RunStore::new(runs.path()),
        events: Some(events_tx),
        control: control.clone(),
    };
    let asked = Arc::new(Mutex::new(0));
    let answering = {
        let asked = Arc::clone(&asked);
        let operator = operator.clone();
        tokio::spawn(async move {
            let mut decisions = operator.decisions.into_iter();
            while let Some(q) = questions.recv().await {
                *asked.lock().unwrap() += 1;
                match q {
                    Question::Failed { reply, .. } => {
                        let _ = reply.send(decisions.next().expect("a failure nobody expected"));
                    }
                    Question::Stopped { reply } => {
                        let _ = reply.send(operator.resume.expect("a stop nobody asked for"));
                    }
                }
            }
        })
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watching = {
        let seen = Arc::clone(&seen);
        let control = control.clone();
        tokio::spawn(async move {
            let mut stopped = false;
            while let Some(event) = events_rx.recv().await {
                let line = match &event {
                    RunEvent::Started { entry, attempt, .. } => {
                        if operator.stop_after_first_start && !stopped {
                            stopped = true;
                            control.stop();
                        }
                        format!("started {entry} attempt {attempt}")
                    }
                    RunEvent::EntryDone { entry, report } => {
                        format!("done {entry} {}", report.result.label())
                    }
                    RunEvent::Stopping => "stopping".into(),
                    RunEvent::Stopped => "stopped".into(),
                    RunEvent::Resumed => "resumed".into(),
                    _ => continue,
                };
                seen.lock().unwrap().push(line);
            }
        })
    };
    let result = policy::run(profile, policy, options)
        .await
        .expect("the run");
    let _ = watching.await;
    answering.abort();
    let events = seen.lock().unwrap().clone();
    let asked = *asked.lock().unwrap();
    Attended {
        report: result.report,
        events,
        asked,
    }
}

/// Runs a live policy of `entries` whose operator stops it as soon as its first entry starts
/// and then answers `resume`.
async fn stopped_after_first_start(
    profile: &Profile,
    name: &str,
    entries: &[(&str, &str)],
    resume: Resume,
) -> Attended {
    run_with(
        profile,
        &live_policy(name, entries),
        Operator {
            stop_after_first_start: true,
            resume: Some(resume),
            ..Operator::default()
        },
        None,
    )
    .await
}

fn live_policy(name: &str, entries: &[(&str, &str)]) -> Policy {
    let mut p = Policy::new(
        PolicyName::new(name).unwrap(),
        lparmover::model::Mode::ConcurrentMaintenance,
    );
    p.limits.concurrency.total = 1;
    p.entries = entries
        .iter()
        .map(|(s, d)| Entry::new(s.parse().unwrap(), d.parse().unwrap()))
        .collect();
    p
}

fn results(report: &RunReport) -> Vec<EntryResult> {
    report.entries.iter().map(|e| e.result).collect()
}

#[test]
fn an_operator_retries_skips_ends_stops_and_continues_and_a_window_and_a_busy_lpar_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // db-01's migration WWPNs are not on the demo array: its move fails its checks.
        let p = live_policy(
            "retry-skip",
            &[("ch1-b1/db-01", "ch1-b2"), ("ch1-b1/web-01", "ch1-b2")],
        );
        let run = run_with(
            &profile,
            &p,
            Operator {
                decisions: vec![Decision::Retry, Decision::Skip],
                ..Operator::default()
            },
            None,
        )
        .await;
        assert_eq!(
            results(&run.report),
            [EntryResult::Skipped, EntryResult::Completed]
        );
        let db = &run.report.entries[0];
        assert_eq!((db.attempts, db.failures.len()), (2, 2), "{db:?}");
        assert!(
            db.failures[0].action.is_some(),
            "a catalogue error carries its action: {:?}",
            db.failures[0]
        );
        assert_eq!(run.asked, 2);
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b2");

        let p = live_policy(
            "end",
            &[("ch1-b1/db-01", "ch1-b2"), ("ch1-b2/web-01", "ch1-b1")],
        );
        let run = run_with(
            &profile,
            &p,
            Operator {
                decisions: vec![Decision::End],
                ..Operator::default()
            },
            None,
        )
        .await;
        assert_eq!(
            results(&run.report),
            [EntryResult::Failed, EntryResult::NotRun]
        );
        assert_eq!(run.report.outcome, Some(RunOutcome::Ended));
        assert!(run.report.entries[1].reason.is_some());
        assert_eq!(
            where_is(&profile, "web-01").await.0,
            "ch1-b2",
            "End ran nothing more"
        );

        let run = stopped_after_first_start(
            &profile,
            "stop-continue",
            &[("ch1-b2/web-01", "ch1-b1"), ("ch1-b2/app-01", "ch1-b1")],
            Resume::Continue,
        )
        .await;
        assert_eq!(
            results(&run.report),
            [EntryResult::Completed, EntryResult::Completed]
        );
        let at = |what: &str| {
            run.events
                .iter()
                .position(|e| e == what)
                .unwrap_or_else(|| panic!("no {what:?} in {:?}", run.events))
        };
        assert!(at("stopping") < at("done 0 completed"), "{:?}", run.events);
        assert!(
            at("done 0 completed") < at("stopped"),
            "stop waits for the running entry"
        );
        assert!(
            at("resumed") < at("started 1 attempt 1"),
            "{:?}",
            run.events
        );

        let run = stopped_after_first_start(
            &profile,
            "stop-end",
            &[("ch1-b1/web-01", "ch1-b2"), ("ch1-b1/app-01", "ch1-b2")],
            Resume::End,
        )
        .await;
        assert_eq!(
            results(&run.report),
            [EntryResult::Completed, EntryResult::NotRun]
        );
        assert_eq!(run.report.outcome, Some(RunOutcome::Stopped));
        assert_eq!(where_is(&profile, "app-01").await.0, "ch1-b1");

        // A 1 s window: no rehearsed move fits 1.25 × its prediction into it.
        let mut p = live_policy("window", &[("ch1-b2/web-01", "ch1-b1")]);
        p.rehearse = true;
        let run = run_with(
            &profile,
            &p,
            Operator::default(),
            Some(Duration::from_secs(1)),
        )
        .await;
        assert_eq!(results(&run.report), [EntryResult::OutsideWindow]);
        assert_eq!(run.report.outcome, Some(RunOutcome::WindowClosed));
        assert!(
            run.report.entries[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("window")),
            "{:?}",
            run.report.entries[0]
        );
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b2");

        // An operator moves web-01 by hand; the policy's entry for it is refused (busy) and
        // follows on_error (skip), and exactly one move happens.
        let control = lparmover::ops::moves::MoveControl::new();
        let (moving_tx, mut moving) = mpsc::unbounded_channel();
        let by_hand = {
            let profile = profile.clone();
            tokio::spawn(async move {
                let target = lparmover::ops::MoveTarget::Given {
                    source: "ch1-b2/web-01".parse().unwrap(),
                    destination: "ch1-b1".parse().unwrap(),
                };
                lparmover::ops::moves::live(
                    &profile,
                    &lpm_tests::operator(),
                    &target,
                    lparmover::api::MoveOptions::default(),
                    &control,
                    move |e| {
                        // Past Locking: the move holds its leases, so the policy's entry
                        // for the same LPAR meets "busy".
                        use lparmover::jobs::JobStage;
                        if let lparmover::ops::moves::MoveEvent::Progress(p) = &e
                            && matches!(
                                p.stage,
                                JobStage::BackingUp | JobStage::Preparing | JobStage::Transferring
                            )
                        {
                            let _ = moving_tx.send(());
                        }
                    },
                )
                .await
            })
        };
        moving
            .recv()
            .await
            .expect("the operator's move holds its leases");
        let mut p = live_policy("race", &[("ch1-b2/web-01", "ch1-b1")]);
        p.on_error = OnError::Skip;
        let runs = tempfile::tempdir().unwrap();
        let raced = policy::run(
            &profile,
            &p,
            RunOptions {
                attendance: Attendance::Unattended,
                window_end: None,
                origin: "test".into(),
                runs: RunStore::new(runs.path()),
                events: None,
                control: RunControl::new(),
            },
        )
        .await
        .unwrap()
        .report;
        let by_hand = by_hand.await.unwrap();
        assert!(
            by_hand.is_ok(),
            "the operator's move completes: {by_hand:?}"
        );
        let entry = &raced.entries[0];
        assert_eq!(entry.result, EntryResult::Skipped, "{entry:?}");
        assert_eq!(entry.attempts, 1, "{entry:?}");
        // The running move protects its LPAR either way: its leases ("busy") or, once it has
        // defined the LPAR on the destination, the check that the name is unused there.
        let refused = &entry.failures[0].error;
        assert!(
            refused.contains("busy") || refused.contains("already named web-01"),
            "{:?}",
            entry.failures
        );
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b1");
    });
}

#[test]
fn six_moves_on_disjoint_blades_run_two_at_a_time_never_more() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::start(Path::new(BATCH_FLEET), dir.path()).expect("batch fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let policy =
        policy::file::load(Path::new(&format!("{SAMPLES}/batch-night.toml"))).expect("the sample");
    assert_eq!(policy.entries.len(), 6);
    assert_eq!(policy.limits.concurrency.total, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let runs = tempfile::tempdir().unwrap();
        // The wire bytes of all running moves, second by second, come from the progress samples.
        let (result, seen) = run_with_events(&profile, &policy, runs.path()).await;
        let start = seen.first().map(|(t, _)| *t).unwrap();
        let mut last_sent: std::collections::HashMap<usize, u64> = Default::default();
        let mut per_second: Vec<u64> = Vec::new();
        for (at, event) in &seen {
            if let RunEvent::Progress { entry, progress } = event
                && let Some(m) = &progress.mover
            {
                let before = last_sent.insert(*entry, m.wire_bytes_sent).unwrap_or(0);
                let second = usize::try_from(at.duration_since(start).as_secs()).unwrap();
                if per_second.len() <= second {
                    per_second.resize(second + 1, 0);
                }
                per_second[second] += m.wire_bytes_sent.saturating_sub(before);
            }
        }
        let cap = 100e6;
        assert!(
            per_second.iter().any(|&b| b > 0),
            "progress carried wire bytes"
        );
        for (second, &bytes) in per_second.iter().enumerate() {
            assert!(
                bytes as f64 <= 1.1 * cap,
                "second {second}: {:.1} MB on the wire across the running moves, cap 100 MB/s: {per_second:?}",
                bytes as f64 / 1e6
            );
        }
        let (mut now, mut peak) = (0usize, 0usize);
        for (_, event) in seen {
            match event {
                RunEvent::Started { .. } => {
                    now += 1;
                    peak = peak.max(now);
                }
                RunEvent::EntryDone { .. } => now -= 1,
                _ => {}
            }
        }
        let report = result.report;
        assert!(report.all_completed(), "{}", report.text());
        assert_eq!(peak, 2, "two at a time, never more");
        assert_eq!(report.peak_concurrency, 2);
        // The 100 MB/s cap is shared: no entry ran above the part it was given.
        for e in &report.entries {
            let cap = e.bandwidth_cap_mbps.expect("a capped entry says its cap");
            assert!(cap <= 100.0, "{e:?}");
            let rate = e.wire_bytes.unwrap() as f64 / 1e6 / e.transfer_s.unwrap();
            assert!(
                rate <= 1.1 * cap,
                "entry {} sent {rate:.1} MB/s on the wire while its memory moved, cap {cap} MB/s",
                e.index
            );
        }
        assert!(result.saved.is_ok());
    });
}

#[test]
fn a_convergence_schedule_gives_up_on_a_guest_that_writes_too_fast_and_it_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::start(Path::new(BATCH_FLEET), dir.path()).expect("batch fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let policies = dir.path().join("policies");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b11 = HvmClient::new(profile.hvm("ch001-b01").unwrap()).unwrap();
    rt.block_on(async {
        // lp00001 rewrites its whole 16 MiB working set many times per round of a 20 MB/s path.
        let view = find_lpar(&b11, "lp00001").await.expect("lp00001");
        let mut workload = view.lpar.workload.clone();
        workload.dirty_rate_mbps = 200.0;
        b11.set_workload(view.lpar.number, &workload).await.unwrap();
    });
    let file = dir.path().join("hot.toml");
    std::fs::write(
        &file,
        r#"name = "hot"
mode = "concurrent"
on_error = "skip"

[limits]
concurrency = 1
bandwidth_mbps = 20

[limits.convergence]
steps = [{ stalled_rounds = 1, downtime_limit = "60ms" }]
abort_after_stalled_rounds = 3

[[entry]]
source = "ch001-b01/lp00001"
destination = "ch001-b02"
"#,
    )
    .unwrap();
    let shown = policy_cli(
        &fleet.profile_path,
        &policies,
        &["show", file.to_str().unwrap()],
    );
    assert!(
        text(&shown).contains("60 ms after 1 stalled rounds; gives up after 3"),
        "{}",
        text(&shown)
    );
    let out = policy_cli(
        &fleet.profile_path,
        &policies,
        &["run", file.to_str().unwrap(), "--unattended", "--json"],
    );
    let report: RunReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report as JSON ({e}): {}", text(&out)));
    assert_eq!(results(&report), [EntryResult::Skipped], "{}", text(&out));
    let failure = &report.entries[0].failures[0];
    assert!(
        failure.error.contains("Memory write is intensive")
            && failure.error.contains("convergence schedule gives up"),
        "{failure:?}"
    );
    assert!(failure.code.is_some(), "the catalogue's row: {failure:?}");
    rt.block_on(async {
        let view = find_lpar(&b11, "lp00001")
            .await
            .expect("still on its source");
        assert_eq!(view.lpar.status, lparmover::model::LparStatus::Activated);
        let hb = view.runtime.expect("running").heartbeat.counter;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = find_lpar(&b11, "lp00001").await.unwrap();
        assert!(later.runtime.unwrap().heartbeat.counter > hb, "and it runs");
    });
}

#[test]
fn a_move_left_alone_gets_the_whole_bandwidth_cap() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::start(Path::new(BATCH_FLEET), dir.path()).expect("batch fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // big-01 (256 MiB) beside lp00001 (64 MiB): its memory still moves after lp00001's
        // move has ended.
        let b21 = HvmClient::new(profile.hvm("ch002-b01").unwrap()).unwrap();
        let mut big = lpm_tests::small_lpar_request("big-01");
        big.memory_mib = 256;
        big.vfcs.clear();
        big.workload.dirty_rate_mbps = 0.0;
        big.workload.working_set_mib = 16;
        big.activate = true;
        b21.define(&big, None).await.expect("big-01 defined and activated");
        let mut policy = live_policy(
            "shared-cap",
            &[
                ("ch001-b01/lp00001", "ch001-b02"),
                ("ch002-b01/big-01", "ch002-b02"),
            ],
        );
        policy.limits.concurrency.total = 2;
        policy.limits.bandwidth = policy::model::Bandwidth::MegabytesPerSecond(20);
        let runs = tempfile::tempdir().unwrap();
        let (result, seen) = run_with_events(&profile, &policy, runs.path()).await;
        let report = result.report;
        assert!(report.all_completed(), "{}", report.text());
        // big-01's wire cap, sample by sample, split at lp00001's end.
        let (mut before, mut after, mut first_done) = (Vec::new(), Vec::new(), false);
        for (_, event) in &seen {
            match event {
                RunEvent::EntryDone { entry: 0, .. } => first_done = true,
                RunEvent::Progress { entry: 1, progress } => {
                    if let Some(cap) = progress.mover.as_ref().and_then(|m| m.bandwidth_limit) {
                        if first_done { &mut after } else { &mut before }.push(cap / 1_000_000);
                    }
                }
                _ => {}
            }
        }
        assert!(
            before.iter().all(|&c| c <= 20) && before.contains(&10),
            "while both moved, big-01 ran under its half (or less, until the other's was lowered): {before:?}"
        );
        assert_eq!(
            after.last(),
            Some(&20),
            "left alone, big-01 gets the whole 20 MB/s: {after:?}"
        );
        assert_eq!(report.entries[1].bandwidth_cap_mbps, Some(20.0));
        assert!(
            report.entries[0].bandwidth_cap_mbps.is_some_and(|c| c <= 20.0),
            "{:?}",
            report.entries[0]
        );
    });
}

#[test]
fn the_daemon_runs_a_due_policy_survives_its_kill_mid_run_and_never_repeats_a_completed_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::start(Path::new(BATCH_FLEET), dir.path()).expect("batch fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let data = dir.path().join("manager");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // Due at the next minute, window open for an hour; one move at a time, slow enough
    // (20 MB/s) to be killed in the middle (the entry in flight then is settled by the journal
    // and, if rolled back, retried); the last entry's LPAR is deactivated, so a live move of
    // it fails, is retried once, skipped, and the run's on_failure hook gets the report.
    let window_end = (chrono::Utc::now() + chrono::Duration::minutes(60)).format("%H:%M");
    let text = format!(
        r#"name = "nightly"
mode = "concurrent"
on_error = "retry"
retries = 1
[schedule]
cron = "* * * * *"
time_zone = "UTC"
window_end = "{window_end}"
[limits]
concurrency = 1
bandwidth_mbps = 20
[[entry]]
source = "ch001-b01/lp00001"
destination = "ch001-b02"
[[entry]]
source = "ch002-b01/lp00005"
destination = "ch002-b02"
[[entry]]
source = "ch001-b01/lp00002"
destination = "ch001-b02"
[[entry]]
source = "ch001-b02/lp00004"
destination = "ch001-b01"
"#
    );
    std::fs::write(policies.join("nightly.toml"), text).unwrap();
    let hook_out = dir.path().join("hook.txt");
    let daemon = || {
        Command::new(binary("policy"))
            .arg("--profile")
            .arg(&fleet.profile_path)
            .arg("--policies")
            .arg(&policies)
            .args(["daemon", "--metrics", "127.0.0.1:0", "--on-failure"])
            .arg(format!("echo > {}", hook_out.display()))
            .env("LPARMOVER_DATA", &data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
            .spawn()
            .expect("start the daemon")
    };
    let runs = RunStore::new(data.join("policy-runs"));
    let report_now = || {
        runs.runs()
            .unwrap()
            .pop()
            .and_then(|r| runs.load(Some(&r)).ok())
    };
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let mut first = daemon();
    // The schedule fires within a minute; kill the daemon once the first entry completed
    // and while the second moves.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let before_kill = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled run did not get going: {}",
            log()
        );
        if let Some(r) = report_now()
            && r.entries[0].result == EntryResult::Completed
            && r.entries[1].attempts > 0
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(before_kill.outcome, None, "killed mid-run");
    let first_job = before_kill.entries[0].job.clone().expect("entry 1's job");

    let mut second = daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let report = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted run was not continued: {}",
            log()
        );
        if let Some(r) = runs
            .load(Some(&before_kill.run))
            .ok()
            .filter(|r| r.outcome.is_some())
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The second daemon counted the run it continued, its entries and their moves.
    let metrics = metrics_address(&dir.path().join("daemon.log"), Duration::from_secs(5)).unwrap();
    let (status, text) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    let _ = second.kill();
    let _ = second.wait();
    for (series, want) in [
        ("lparmover_policy_runs_started_total", 1),
        ("lparmover_policy_runs_ended_total{outcome=\"finished\"}", 1),
        ("lparmover_policy_runs_in_progress", 0),
        ("lparmover_policy_entries_total{result=\"completed\"}", 3),
        ("lparmover_policy_entries_total{result=\"skipped\"}", 1),
    ] {
        assert!(
            text.lines().any(|l| l == format!("{series} {want}")),
            "{series} is not {want} in\n{text}"
        );
    }
    assert!(
        !text
            .lines()
            .any(|l| l == "lparmover_moves_started_total{role=\"manager\",mode=\"live\"} 0"),
        "the continued run's moves count as the manager's:\n{text}"
    );
    assert_eq!(report.origin, "daemon");
    assert_eq!(
        results(&report),
        [
            EntryResult::Completed,
            EntryResult::Completed,
            EntryResult::Completed,
            EntryResult::Skipped
        ],
        "{}",
        report.text()
    );
    assert_eq!(
        report.entries[0].job.as_deref(),
        Some(first_job.as_str()),
        "a completed entry is never run again"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for lpar in ["lp00001", "lp00002"] {
            assert_eq!(where_is(&profile, lpar).await.0, "ch001-b02");
        }
        assert_eq!(where_is(&profile, "lp00005").await.0, "ch002-b02");
        assert_eq!(where_is(&profile, "lp00004").await.0, "ch001-b02");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !hook_out.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        hook_out.exists(),
        "on_failure ran for a run with a skipped entry: {}",
        log()
    );
}

/// Runs `policy` unattended and returns its result with every event it sent, each with the
/// instant it arrived.
async fn run_with_events(
    profile: &Profile,
    policy: &Policy,
    runs: &Path,
) -> (
    policy::runner::RunResult,
    Vec<(std::time::Instant, RunEvent)>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = rx.recv().await {
            seen.push((std::time::Instant::now(), event));
        }
        seen
    });
    let options = RunOptions {
        events: Some(tx),
        ..unattended(runs)
    };
    let result = policy::run(profile, policy, options).await.unwrap();
    (result, collector.await.unwrap())
}

fn unattended(runs: &Path) -> RunOptions {
    RunOptions {
        attendance: Attendance::Unattended,
        window_end: None,
        origin: "test".into(),
        runs: RunStore::new(runs),
        events: None,
        control: RunControl::new(),
    }
}

#[test]
fn an_evacuation_empties_a_blade_lists_what_cannot_leave_and_its_return_refills_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let before = policy::evacuate::plan(&profile, "ch1-b1", None)
            .await
            .unwrap();
        let db = before
            .unplaced
            .iter()
            .find(|u| u.lpar == "db-01")
            .expect("db-01 cannot leave: no migration WWPNs on the array");
        let to_b2 = db
            .refusals
            .iter()
            .find(|r| r.candidate == "ch1-b2")
            .unwrap();
        assert!(
            to_b2.reasons.iter().any(|r| r.contains("migration WWPN")),
            "{to_b2:?}"
        );
        let efi = db
            .refusals
            .iter()
            .find(|r| r.candidate == "ch2-b1")
            .unwrap();
        assert!(efi.reasons.iter().any(|r| r.contains("EFI")), "{efi:?}");

        lparmover::ops::storage::register_migration(&profile, &"ch1-b1/db-01".parse().unwrap())
            .await
            .expect("register db-01's migration WWPNs");
        let plan = policy::evacuate::plan(&profile, "ch1-b1", None)
            .await
            .unwrap();
        assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced);
        let live = plan.live.expect("the activated LPARs leave live");
        let cold = plan.shutdown.expect("batch-01 leaves in Shutdown mode");
        let names = |p: &Policy| -> Vec<String> {
            p.entries.iter().map(|e| e.source.to_string()).collect()
        };
        assert_eq!(names(&live), ["ch1-b1/web-01", "ch1-b1/db-01"]);
        assert_eq!(names(&cold), ["ch1-b1/batch-01"]);
        assert_ne!(
            cold.entries[0].destination.hvm, "ch1-b2",
            "spread: ch1-b2 takes the two live moves already"
        );

        let runs = tempfile::tempdir().unwrap();
        let mut reports = Vec::new();
        for p in [&live, &cold] {
            let report = policy::run(&profile, p, unattended(runs.path()))
                .await
                .unwrap()
                .report;
            assert!(report.all_completed(), "{}", report.text());
            reports.push(report);
        }
        let client = HvmClient::new(profile.hvm("ch1-b1").unwrap()).unwrap();
        assert!(client.lpars().await.unwrap().is_empty(), "ch1-b1 is empty");

        for (p, report) in [&live, &cold].into_iter().zip(&reports) {
            let back = policy::reverse::reverse(p, report).unwrap();
            let home = policy::run(&profile, &back, unattended(runs.path()))
                .await
                .unwrap()
                .report;
            assert!(home.all_completed(), "{}", home.text());
        }
        for (lpar, number) in [("web-01", 1), ("db-01", 2), ("batch-01", 3)] {
            assert_eq!(where_is(&profile, lpar).await, ("ch1-b1".into(), n(number)));
        }
    });
}

#[test]
fn the_daemon_serves_health_and_metrics_on_loopback_and_refuses_another_address() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.toml");
    Profile::default().save(&profile).unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let daemon = |metrics: &str, log: &Path| {
        Command::new(binary("policy"))
            .arg("--profile")
            .arg(&profile)
            .arg("--policies")
            .arg(&policies)
            .args(["daemon", "--metrics", metrics])
            .env("LPARMOVER_DATA", dir.path().join("manager"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start the daemon")
    };

    // Outside 127.0.0.0/8 without --metrics-allow-remote: refused before anything listens.
    let refused_log = dir.path().join("refused.log");
    let status = daemon("192.0.2.10:9465", &refused_log).wait().unwrap();
    assert!(!status.success());
    let said = std::fs::read_to_string(&refused_log).unwrap();
    assert!(
        said.contains("192.0.2.10:9465 is not a loopback address")
            && said.contains("--metrics-allow-remote"),
        "{said}"
    );

    let log = dir.path().join("daemon.log");
    let mut running = daemon("127.0.0.1:0", &log);
    let addr = metrics_address(&log, Duration::from_secs(20)).unwrap();
    let (status, health) = http_get(addr, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "up");
    assert_eq!(health["process"], "policy-daemon");
    let (status, text) = http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    for want in [
        "lparmover_policy_runs_started_total 0",
        "lparmover_policy_entries_total{result=\"failed\"} 0",
        "lparmover_moves_started_total{role=\"manager\",mode=\"live\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in\n{text}"
        );
    }
    let _ = running.kill();
    let _ = running.wait();
}

/// `policy` with its own data directory (so `policy stop` without an argument sees only this
/// test's runs).
fn policy_in(data: &Path, profile: &Path, policies: &Path) -> Command {
    let mut command = Command::new(binary("policy"));
    command
        .arg("--profile")
        .arg(profile)
        .arg("--policies")
        .arg(policies)
        .env("LPARMOVER_DATA", data)
        .stdin(std::process::Stdio::null());
    command
}

#[test]
fn policy_stop_from_another_process_lets_the_running_entry_finish_and_starts_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = dir.path().join("data");
    let policies = dir.path().join("policies");
    let cli = || policy_in(&data, &fleet.profile_path, &policies);
    let runs = RunStore::new(data.join("policy-runs"));

    // Nothing runs: `policy stop` says so, fails, and writes nothing.
    let none = cli().arg("stop").output().unwrap();
    assert!(!none.status.success(), "{}", text(&none));
    assert!(
        text(&none).contains("no policy run is running"),
        "{}",
        text(&none)
    );
    assert!(!data.join("policy-runs").exists(), "nothing was written");

    let p = live_policy(
        "stop-elsewhere",
        &[
            ("ch1-b1/web-01", "ch1-b2"),
            ("ch1-b2/app-01", "ch1-b1"),
            ("ch1-b1/batch-01", "ch1-b2"),
        ],
    );
    let mut p = p;
    p.limits.concurrency.per_source_hvm = 1;
    p.limits.concurrency.per_destination_hvm = 1;
    policy::PolicyStore::new(&policies).save(&p).unwrap();
    let running = cli()
        .args(["run", "stop-elsewhere", "--unattended", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first entry is under way (its attempt is on disk, no result yet).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the first entry never started"
        );
        if let Ok(r) = runs.load(None)
            && r.entries[0].attempts == 1
        {
            assert_eq!(r.entries[0].result, EntryResult::NotRun, "still moving");
            break r.run;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop = cli().args(["stop", "stop-elsewhere"]).output().unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(text(&stop).contains(&run_id), "{}", text(&stop));

    let out = running.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "some entries completed: {}",
        text(&out)
    );
    let report: RunReport = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    assert_eq!(report.run, run_id);
    assert_eq!(
        results(&report),
        [
            EntryResult::Completed,
            EntryResult::NotRun,
            EntryResult::NotRun
        ],
        "{}",
        report.text()
    );
    assert_eq!(report.outcome, Some(RunOutcome::Stopped));
    for e in &report.entries[1..] {
        assert!(
            e.attempts == 0 && e.reason.as_deref().is_some_and(|r| r.contains("stopped")),
            "{e:?}"
        );
    }
    assert!(
        report.text().contains("stopped by the operator"),
        "{}",
        report.text()
    );
    rt.block_on(async {
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b2");
        assert_eq!(where_is(&profile, "app-01").await.0, "ch1-b2");
        assert_eq!(where_is(&profile, "batch-01").await.0, "ch1-b1");
    });

    // The run is over: stopping it again fails clearly and changes nothing.
    let run_dir = runs.run_dir(&run_id);
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = (
        listing(&run_dir),
        std::fs::read(run_dir.join("report.json")).unwrap(),
    );
    assert_eq!(
        before.0,
        ["report.html", "report.json", "report.txt"],
        "a finished run leaves no lock or request behind"
    );
    for args in [
        &["stop", "stop-elsewhere"][..],
        &["stop", &run_id],
        &["stop"],
    ] {
        let again = cli().args(args).output().unwrap();
        assert!(!again.status.success(), "{args:?}: {}", text(&again));
        assert!(text(&again).contains("is running"), "{}", text(&again));
    }
    assert!(
        text(&cli().args(["stop", "stop-elsewhere"]).output().unwrap())
            .contains("no run of stop-elsewhere is running"),
    );
    assert_eq!(
        (
            listing(&run_dir),
            std::fs::read(run_dir.join("report.json")).unwrap()
        ),
        before
    );
}

#[test]
fn policy_stop_ends_the_daemons_run_after_its_running_entry_and_the_daemon_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).unwrap();
    let data = dir.path().join("manager");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // Due at the next minute; one move at a time, capped so the first is still moving when
    // the operator asks the run to stop.
    let window_end = (chrono::Utc::now() + chrono::Duration::minutes(60)).format("%H:%M");
    let toml = format!(
        r#"name = "overnight"
mode = "concurrent"
on_error = "skip"
[schedule]
cron = "* * * * *"
time_zone = "UTC"
window_end = "{window_end}"
[limits]
concurrency = 1
bandwidth_mbps = 40
[[entry]]
source = "ch1-b1/web-01"
destination = "ch1-b2"
[[entry]]
source = "ch1-b2/app-01"
destination = "ch1-b1"
[[entry]]
source = "ch1-b1/batch-01"
destination = "ch1-b2"
"#
    );
    std::fs::write(policies.join("overnight.toml"), toml).unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut daemon = policy_in(&data, &fleet.profile_path, &policies)
        .args(["daemon", "--metrics", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the daemon");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let runs = RunStore::new(data.join("policy-runs"));

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let run_id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled run did not get going: {}",
            log()
        );
        if let Ok(r) = runs.load(None)
            && r.entries[0].attempts == 1
        {
            assert_eq!(r.entries[0].result, EntryResult::NotRun, "still moving");
            break r.run;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop = policy_in(&data, &fleet.profile_path, &policies)
        .args(["stop", "overnight"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(text(&stop).contains(&run_id), "{}", text(&stop));

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let report = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped run did not end: {}",
            log()
        );
        if let Some(r) = runs
            .load(Some(&run_id))
            .ok()
            .filter(|r| r.outcome.is_some())
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report.origin, "daemon");
    assert_eq!(
        report.outcome,
        Some(RunOutcome::Stopped),
        "{}",
        report.text()
    );
    assert_eq!(
        results(&report),
        [
            EntryResult::Completed,
            EntryResult::NotRun,
            EntryResult::NotRun
        ],
        "{}",
        report.text()
    );
    assert!(
        report.text().contains("stopped by the operator"),
        "{}",
        report.text()
    );
    // The daemon outlives the run it was told to stop and still answers.
    assert!(daemon.try_wait().unwrap().is_none(), "{}", log());
    let addr = metrics_address(&log_path, Duration::from_secs(5)).unwrap();
    let (status, health) = http_get(addr, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(where_is(&profile, "web-01").await.0, "ch1-b2");
        assert_eq!(where_is(&profile, "app-01").await.0, "ch1-b2");
        assert_eq!(where_is(&profile, "batch-01").await.0, "ch1-b1");
    });
}
