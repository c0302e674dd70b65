//! Hostile and mistyped input (issue 17, items 1 to 3): every extreme value of every move option
//! is refused where it enters, by the CLI, by the manager library and by the blade's API, with an
//! error naming the field and its range, before anything is written: the LPAR stays Activated and
//! the blade's state file is unchanged byte for byte. The same holds for every other entry point
//! of the blade (definitions, leases, query strings, workloads, probes, incoming moves, restores);
//! a handler that panics anyway answers 500 with an id its system log carries and leaves no LPAR
//! Migrating; the blade's secrets are owner-only on disk and never logged.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use lparmover::api::{MoveOptions, StartSend};
use lparmover::jobs::{JobError, live_move};
use lparmover::model::LparStatus;
use lpm_tests::{TestBlade, demo_fleet, find_lpar, profile_of, run_binary, web01_to_b2};
use tokio_util::sync::CancellationToken;

/// Each option set to values around and far beyond its limits, with the field it must name.
fn extremes() -> Vec<(&'static str, MoveOptions)> {
    let with = |f: &dyn Fn(&mut MoveOptions)| {
        let mut o = MoveOptions::default();
        f(&mut o);
        o
    };
    let mut out = Vec::new();
    for v in [0, MoveOptions::MAX_TIMEOUT_S + 1, u64::MAX, 1 << 63] {
        out.push(("timeout_s", with(&|o| o.timeout_s = v)));
    }
    for v in [0, MoveOptions::MAX_DOWNTIME_LIMIT_MS + 1, u64::MAX] {
        out.push(("downtime_limit_ms", with(&|o| o.downtime_limit_ms = v)));
    }
    for v in [0, 17, usize::MAX] {
        out.push(("streams", with(&|o| o.streams = v)));
    }
    for v in [0, 1, u64::MAX] {
        out.push(("bandwidth_limit", with(&|o| o.bandwidth_limit = Some(v))));
    }
    for v in [0, MoveOptions::MIN_SWITCHOVER_LEASE_MS - 1, u64::MAX] {
        out.push(("switchover_lease_ms", with(&|o| o.switchover_lease_ms = v)));
    }
    out.push(("compression", with(&|o| o.compression = "zip".into())));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn extreme_move_options_are_refused_everywhere_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let profile = profile_of(&[&b1, &b2]);
    let src = b1.client();
    let web = find_lpar(&src, "web-01").await.unwrap();
    let state = || std::fs::read(b1.state_dir().join("state.json")).unwrap();
    let before = state();

    for (field, options) in extremes() {
        // The blade's API.
        let refused = src
            .start_send(
                &StartSend {
                    job: "job-20260101-000000-00ff".into(),
                    lpar: web.lpar.number,
                    ticket: "00".repeat(32),
                    dest_addr: "127.0.2.2:9".parse().unwrap(),
                    dest_cert_pem: b2.profile.cert_pem.clone(),
                    options: options.clone(),
                    exchange: Default::default(),
                    purpose: Default::default(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains(field),
            "the blade names {field}: {refused}"
        );
        // The manager library the CLI, the navigator and policies share.
        let job = live_move(
            &profile,
            &web01_to_b2(options),
            |_| {},
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&job, JobError::Options(e) if e.field == field),
            "{field}: {job}"
        );
    }
    // An extension of a day and a second, or of u64::MAX seconds, is refused too.
    for seconds in [0, 24 * 3600 + 1, u64::MAX] {
        let refused = src
            .extend_migration("job-20260101-000000-00ff", seconds)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("seconds"), "{refused}");
    }
    // A bandwidth cap below 1 MB/s or above 1 TB/s, or for a job this blade does not send, is
    // refused; so is a body that forgot the field (it must not lift a cap by accident).
    for bandwidth in [0, 999_999, 1_000_000_000_001, u64::MAX] {
        let refused = src
            .set_migration_bandwidth("job-20260101-000000-00ff", Some(bandwidth))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("bandwidth_limit"), "{refused}");
    }
    let unknown = src
        .set_migration_bandwidth("job-20260101-000000-00ff", Some(50_000_000))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("job-20260101-000000-00ff"),
        "{unknown}"
    );
    let (code, answer) = b1
        .api(
            reqwest::Method::POST,
            "/v1/migrations/job-20260101-000000-00ff/bandwidth",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer.to_string().contains("bandwidth_limit"), "{answer}");
    let web_after = find_lpar(&src, "web-01").await.unwrap();
    assert_eq!(web_after.lpar.status, LparStatus::Activated);
    assert_eq!(
        state(),
        before,
        "a refused request changed the blade's state file"
    );

    // The CLI: clear errors naming the flag, exit 1, no panic, nothing moved.
    let profile_path = dir.path().join("profile.toml");
    profile.save(&profile_path).unwrap();
    for (flag, value) in [
        ("--timeout", "18446744073709551615s"),
        ("--timeout", "0s"),
        ("--bandwidth-limit", "18446744073709551615"),
        ("--downtime-limit", "99999h"),
    ] {
        let out = run_binary(
            "lparmover",
            &[
                "--profile",
                profile_path.to_str().unwrap(),
                "migrate",
                "--from",
                "ch1-b1/web-01",
                "--to",
                "ch1-b2",
                flag,
                value,
            ],
            Duration::from_secs(60),
        )
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{flag} {value}: {text}");
        assert!(!text.contains("panicked"), "{flag} {value}: {text}");
        assert!(
            text.contains(flag) || text.contains("out of range"),
            "{flag} {value}: {text}"
        );
    }
    assert_eq!(state(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_blade_api_answers_wrong_routes_methods_sizes_and_fields_in_the_catalogue_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let http = b1.raw_client();
    let base = b1.profile.url.trim_end_matches('/').to_owned();
    let token = b1.profile.token.clone();
    let state = || std::fs::read(b1.state_dir().join("state.json")).unwrap();
    let before = state();
    let send = |method: reqwest::Method, path: &str, body: Option<Vec<u8>>| {
        let mut r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        r.send()
    };
    // What, method, path, body, then the status and the catalogue kind in the answer.
    type Case = (
        &'static str,
        reqwest::Method,
        &'static str,
        Option<Vec<u8>>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("unknown route", reqwest::Method::GET, "/v1/no-such-thing", None, 404, "no-such-route"),
        ("another version", reqwest::Method::GET, "/v2/inventory", None, 400, "version-mismatch"),
        ("wrong method", reqwest::Method::DELETE, "/v1/inventory", None, 405, "method-not-allowed"),
        (
            "oversize body",
            reqwest::Method::POST,
            "/v1/lpars",
            Some(vec![b' '; 2 << 20]),
            413,
            "request-too-large",
        ),
        (
            "misspelled field",
            reqwest::Method::POST,
            "/v1/locks",
            Some(
                br#"{"target": {"kind": "lpar", "lpar": 1}, "owner": "t", "purpose": "p", "ttl_secs": 30, "ttl_s": 30}"#
                    .to_vec(),
            ),
            400,
            "invalid-request",
        ),
        (
            "misspelled move option",
            reqwest::Method::POST,
            "/v1/migrations/job-20260101-000000-0001/send",
            Some(
                serde_json::to_vec(&serde_json::json!({
                    "job": "job-20260101-000000-0001",
                    "lpar": 1,
                    "ticket": "00".repeat(32),
                    "dest_addr": "127.0.2.2:9",
                    "dest_cert_pem": b1.profile.cert_pem,
                    "options": {"downtime_limit_msec": 5},
                    "exchange": {"vfcs": [], "vnics": []},
                }))
                .unwrap(),
            ),
            400,
            "invalid-request",
        ),
    ];
    for (what, method, path, body, status, kind) in cases {
        let answer = send(method, path, body).await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{what}");
        let error: serde_json::Value = answer.json().await.unwrap_or_default();
        assert_eq!(
            error.get("kind").and_then(|k| k.as_str()),
            Some(kind),
            "{what}: {error}"
        );
        if what.starts_with("misspelled") {
            let detail = error
                .get("detail")
                .and_then(|d| d.as_str())
                .unwrap_or_default();
            assert!(detail.contains("unknown field"), "{what}: {detail}");
        }
    }
    assert_eq!(
        state(),
        before,
        "a refused request changed the blade's state file"
    );
}

/// The answer's catalogue kind and detail.
fn kind_and_detail(answer: &serde_json::Value) -> (String, String) {
    let text = |k: &str| {
        answer
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (text("kind"), text("detail"))
}

/// Every other entry point of the blade's API, sent 0, negative numbers, `u64::MAX`, 2^63,
/// numbers JSON cannot hold, over-long text and misspelled parameters: each is refused with a
/// 400-range catalogue error naming the field, and the blade's state file is unchanged byte for
/// byte.
#[tokio::test(flavor = "multi_thread")]
async fn extreme_values_at_every_other_entry_point_are_refused_and_change_nothing() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let web = find_lpar(&b1.client(), "web-01").await.unwrap();
    let before = b1.state_bytes();
    let huge = u64::MAX;
    let two_63 = 1u64 << 63;
    let long = "x".repeat(10_000);
    let cert = b1.profile.cert_pem.clone();
    let lpar = serde_json::to_value(&web.lpar).unwrap();
    let define = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(lpm_tests::small_lpar_request("hostile-01")).unwrap();
        f(&mut v);
        Some(v)
    };
    let lock = |ttl: serde_json::Value, owner: &str| {
        Some(serde_json::json!({
            "target": {"kind": "blade"}, "owner": owner, "purpose": "p", "ttl_secs": ttl,
        }))
    };
    let probe_run =
        |max_bytes: serde_json::Value, ms: serde_json::Value, pings: serde_json::Value| {
            Some(serde_json::json!({
                "dest_addr": "127.0.2.2:9", "dest_cert_pem": cert, "ticket": "00".repeat(32),
                "max_bytes": max_bytes, "max_duration_ms": ms, "pings": pings,
            }))
        };
    let prepare = |job: &str, memory: u64| {
        let mut l = lpar.clone();
        l["memory_mib"] = memory.into();
        Some(serde_json::json!({
            "job": job, "lpar": l, "number": null, "ticket": "00".repeat(32),
            "source_cert_pem": cert,
        }))
    };
    // What, method, path, body, and a word the error must contain (the field).
    type Case = (
        String,
        Method,
        String,
        Option<serde_json::Value>,
        &'static str,
    );
    let mut cases: Vec<Case> = Vec::new();
    for m in [0, 3, huge - 1, two_63, huge] {
        cases.push((
            format!("define memory_mib {m}"),
            Method::POST,
            "/v1/lpars".into(),
            define(&|v| v["memory_mib"] = m.into()),
            "memory",
        ));
    }
    for c in [0, u64::from(u32::MAX)] {
        cases.push((
            format!("define processors {c}"),
            Method::POST,
            "/v1/lpars".into(),
            define(&|v| v["processors"]["count"] = c.into()),
            "processor",
        ));
    }
    cases.push((
        "define processors beyond u32".into(),
        Method::POST,
        "/v1/lpars".into(),
        define(&|v| v["processors"]["count"] = huge.into()),
        "count",
    ));
    cases.push((
        "define negative memory".into(),
        Method::POST,
        "/v1/lpars".into(),
        define(&|v| v["memory_mib"] = (-2).into()),
        "memory_mib",
    ));
    cases.push((
        "define negative dirty rate".into(),
        Method::POST,
        "/v1/lpars".into(),
        define(&|v| v["workload"]["dirty_rate_mbps"] = (-1.0).into()),
        "dirty rate",
    ));
    cases.push((
        "define an over-long name".into(),
        Method::POST,
        "/v1/lpars".into(),
        define(&|v| v["name"] = long.clone().into()),
        "name",
    ));
    for ttl in [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(two_63),
        serde_json::json!(huge),
        serde_json::json!(1e300),
    ] {
        cases.push((
            format!("lock ttl {ttl}"),
            Method::POST,
            "/v1/locks".into(),
            lock(ttl, "t"),
            "ttl_secs",
        ));
    }
    cases.push((
        "lock owner of 10000 bytes".into(),
        Method::POST,
        "/v1/locks".into(),
        lock(30.into(), &long),
        "owner",
    ));
    for query in [
        "after=-1",
        "after=18446744073709551616",
        "after=NaN",
        "since=1",
    ] {
        cases.push((
            format!("logs ?{query}"),
            Method::GET,
            format!("/v1/logs?{query}"),
            None,
            if query.starts_with("since") {
                "since"
            } else {
                "after"
            },
        ));
    }
    cases.push((
        "status wait_ms negative".into(),
        Method::GET,
        "/v1/migrations/job-20260101-000000-0001?wait_ms=-1".into(),
        None,
        "wait_ms",
    ));
    for (what, patch, word) in [
        (
            "NaN-like dirty rate",
            serde_json::json!({"dirty_rate_mbps": -1.0}),
            "dirty rate",
        ),
        (
            "huge dirty rate",
            serde_json::json!({"dirty_rate_mbps": 1e300}),
            "dirty rate",
        ),
        (
            "no working set",
            serde_json::json!({"working_set_mib": 0}),
            "working set",
        ),
        ("negative seed", serde_json::json!({"seed": -1}), "seed"),
        (
            "misspelled knob",
            serde_json::json!({"dirty_rate": 5}),
            "unknown field",
        ),
    ] {
        cases.push((
            format!("workload {what}"),
            Method::PUT,
            format!("/v1/lpars/{}/workload", web.lpar.number),
            Some(serde_json::json!({ "workload": patch })),
            word,
        ));
    }
    for (ms, pings, bytes, word) in [
        (0, 10, 1 << 20, "max_duration_ms"),
        (huge, 10, 1 << 20, "max_duration_ms"),
        (1000, 0, 1 << 20, "pings"),
        (1000, u64::from(u32::MAX), 1 << 20, "pings"),
        (1000, 10, 0, "max_bytes"),
        (1000, 10, huge, "max_bytes"),
    ] {
        cases.push((
            format!("probe run {word}"),
            Method::POST,
            "/v1/probe/run".into(),
            probe_run(bytes.into(), ms.into(), pings.into()),
            word,
        ));
    }
    for t in [0, two_63, huge] {
        cases.push((
            format!("probe listen timeout_s {t}"),
            Method::POST,
            "/v1/probe/listen".into(),
            Some(serde_json::json!({
                "ticket": "00".repeat(32), "source_cert_pem": cert, "timeout_s": t,
            })),
            "timeout_s",
        ));
    }
    cases.push((
        "probe listen misspelled".into(),
        Method::POST,
        "/v1/probe/listen".into(),
        Some(serde_json::json!({
            "ticket": "00".repeat(32), "source_cert_pem": cert, "timeout": 5,
        })),
        "unknown field",
    ));
    for m in [huge, two_63] {
        cases.push((
            format!("prepare incoming of {m} MiB"),
            Method::POST,
            "/v1/migrations/incoming".into(),
            prepare("job-20260101-000000-0002", m),
            "MiB",
        ));
    }
    cases.push((
        "prepare incoming with a 10000-byte job id".into(),
        Method::POST,
        "/v1/migrations/incoming".into(),
        prepare(&long, 64),
        "job",
    ));
    cases.push((
        "cold define with a job id holding a slash".into(),
        Method::POST,
        "/v1/migrations/cold".into(),
        Some(serde_json::json!({"job": "job/../../x", "lpar": lpar, "number": null})),
        "job",
    ));
    cases.push((
        "WWN rollback mark with a 10000-byte peer".into(),
        Method::POST,
        "/v1/wwn-rollbacks".into(),
        Some(serde_json::json!({
            "job": "job-20260101-000000-0003", "lpar": web.lpar.number, "role": "source",
            "peer": long, "reason": "destination-unreachable",
        })),
        "peer",
    ));
    for (what, path) in [
        ("LPAR number 0", "/v1/lpars/0"),
        ("LPAR number u64::MAX", "/v1/lpars/18446744073709551615"),
        ("LPAR number -1", "/v1/lpars/-1"),
    ] {
        cases.push((what.into(), Method::GET, path.into(), None, "LPAR"));
    }

    for (what, method, path, body, word) in cases {
        let (status, answer) = b1.api(method, &path, body).await;
        let (kind, detail) = kind_and_detail(&answer);
        assert!(
            (400..500).contains(&status),
            "{what}: status {status}, {answer}"
        );
        assert!(!kind.is_empty(), "{what}: no catalogue kind in {answer}");
        assert!(
            detail.to_lowercase().contains(&word.to_lowercase()),
            "{what}: the detail should name {word:?}: {detail}"
        );
        assert!(detail.len() < 2_000, "{what}: the error echoes too much");
    }
    // A long poll asking to wait u64::MAX ms answers (the wait is bounded) and changes nothing.
    let started = std::time::Instant::now();
    let (status, _) = b1
        .api(
            Method::GET,
            &format!("/v1/migrations/job-20260101-000000-0001?wait_ms={huge}"),
            None,
        )
        .await;
    assert!((400..500).contains(&status), "unknown job: {status}");
    assert!(started.elapsed() < Duration::from_secs(10));

    assert_eq!(
        find_lpar(&b1.client(), "web-01").await.unwrap().lpar.status,
        LparStatus::Activated
    );
    assert!(find_lpar(&b1.client(), "hostile-01").await.is_none());
    assert!(b1.client().locks().await.unwrap().is_empty());
    assert!(b1.client().wwn_rollbacks().await.unwrap().is_empty());
    assert_eq!(
        b1.state_bytes(),
        before,
        "a refused request changed the blade's state file"
    );
}

/// `PUT /v1/lpars/{n}/workload` changes the knobs it names and keeps the others: naming only
/// the dirty rate never resets the working set or the seed to their defaults.
#[tokio::test(flavor = "multi_thread")]
async fn a_partial_workload_update_keeps_what_it_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let client = b1.client();
    let web = find_lpar(&client, "web-01").await.unwrap();
    let mut full = web.lpar.workload.clone();
    full.working_set_mib = 48;
    full.seed = 4242;
    client.set_workload(web.lpar.number, &full).await.unwrap();
    let (status, answer) = b1
        .api(
            reqwest::Method::PUT,
            &format!("/v1/lpars/{}/workload", web.lpar.number),
            Some(serde_json::json!({"workload": {"dirty_rate_mbps": 3.5}})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let after = find_lpar(&client, "web-01").await.unwrap().lpar.workload;
    assert_eq!(after.dirty_rate_mbps, 3.5);
    assert_eq!((after.working_set_mib, after.seed), (48, 4242));
    assert_eq!(after.mix, full.mix);
    assert_eq!(after.shutdown, full.shutdown);
}

/// A restored configuration passes the rules of define: a backup that claims hardware the blade
/// does not have, devices on cards it lacks, an identity twice, or an LPAR larger than the blade
/// is refused and nothing is restored (byte for byte).
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_passes_the_same_rules_as_define() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch2-b1", &dir.path().join("b")).unwrap();
    let client = blade.client();
    for l in client.lpars().await.unwrap() {
        if l.lpar.status == LparStatus::Activated {
            client.deactivate(l.lpar.number, None).await.unwrap();
        }
    }
    // Two LPARs with a vNIC and a vFC each, to give the backup identities to collide.
    for name in ["restore-a", "restore-b"] {
        client
            .define(&lpm_tests::small_lpar_request(name), None)
            .await
            .unwrap();
    }
    let backup = serde_json::to_value(client.backup_config().await.unwrap()).unwrap();
    let at = |name: &str| {
        backup["lpars"]
            .as_array()
            .unwrap()
            .iter()
            .position(|l| l["name"] == name)
            .unwrap()
    };
    let (a, b) = (at("restore-a"), at("restore-b"));
    let before = blade.state_bytes();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = backup.clone();
        f(&mut doc);
        doc
    };
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "more memory than the blade has",
            with(&|d| d["blade"]["memory_mib"] = (u64::MAX).into()),
            "memory",
        ),
        (
            "more processors",
            with(&|d| d["blade"]["processors"] = 4096.into()),
            "processors",
        ),
        (
            "a card it does not have",
            with(&|d| {
                let mut card = d["blade"]["cards"][0].clone();
                card["slot"] = 9.into();
                d["blade"]["cards"].as_array_mut().unwrap().push(card);
            }),
            "cards",
        ),
        (
            "a vFC on a missing card",
            with(&|d| d["lpars"][a]["vfcs"][0]["port"] = "9/0".into()),
            "no FC HBA port",
        ),
        (
            "one WWPN twice",
            with(&|d| {
                let w = d["lpars"][a]["vfcs"][0]["wwpn"].clone();
                d["lpars"][b]["vfcs"][0]["wwpn"] = w;
            }),
            "in use",
        ),
        (
            "one MAC twice",
            with(&|d| {
                let m = d["lpars"][a]["vnics"][0]["mac"].clone();
                d["lpars"][b]["vnics"][0]["mac"] = m;
            }),
            "in use",
        ),
        (
            "an LPAR larger than the blade",
            with(&|d| d["lpars"][a]["memory_mib"] = (1u64 << 62).into()),
            "MiB",
        ),
        (
            "a misspelled field",
            with(&|d| d["taken"] = "now".into()),
            "unknown field",
        ),
    ];
    for (what, doc, word) in cases {
        let (status, answer) = blade
            .api(reqwest::Method::POST, "/v1/config/restore", Some(doc))
            .await;
        let (_, detail) = kind_and_detail(&answer);
        assert!((400..500).contains(&status), "{what}: {status} {answer}");
        assert!(detail.contains(word), "{what}: {detail}");
        assert_eq!(
            blade.state_bytes(),
            before,
            "{what}: something was restored"
        );
    }
    // The unchanged backup is still accepted.
    let (status, answer) = blade
        .api(reqwest::Method::POST, "/v1/config/restore", Some(backup))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// A request handler that panics anyway (here hvmsim's test hook, right after the source marked
/// the LPAR Migrating) answers 500 with an id, that id is in the blade's system log, and the LPAR
/// is Activated again with no migration left: the state file is as before, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_send_answers_500_logs_its_id_and_leaves_the_lpar_activated() {
    use hvmsim::faultpoint::{PANIC_ENV, START_SEND_MARKED};
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start_with_env(
        &fleet_file,
        "ch1-b1",
        &dir.path().join("b1"),
        &[(PANIC_ENV, START_SEND_MARKED)],
    )
    .unwrap();
    let client = b1.client();
    let web = find_lpar(&client, "web-01").await.unwrap();
    let before = b1.state_bytes();
    let send = StartSend {
        job: "job-20260101-000000-0bad".into(),
        lpar: web.lpar.number,
        ticket: "00".repeat(32),
        dest_addr: "127.0.2.2:9".parse().unwrap(),
        dest_cert_pem: b1.profile.cert_pem.clone(),
        options: MoveOptions::default(),
        exchange: Default::default(),
        purpose: Default::default(),
    };
    let (status, answer) = b1
        .api(
            reqwest::Method::POST,
            &format!("/v1/migrations/{}/send", send.job),
            Some(serde_json::to_value(&send).unwrap()),
        )
        .await;
    let (kind, detail) = kind_and_detail(&answer);
    assert_eq!(status, 500, "{answer}");
    assert_eq!(kind, "internal", "{answer}");
    let id = detail
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("panic-"))
        .unwrap_or_else(|| panic!("no panic id in {detail}"))
        .to_owned();
    let logs = client.logs(0).await.unwrap();
    assert!(
        logs.iter().any(|e| e.message.contains(&id)),
        "the system log names {id}: {logs:?}"
    );
    let web = find_lpar(&client, "web-01").await.unwrap();
    assert_eq!(web.lpar.status, LparStatus::Activated);
    assert!(client.migrations().await.unwrap().is_empty());
    assert_eq!(
        b1.state_bytes(),
        before,
        "the undone mark left the state file changed"
    );
}

/// Secrets on disk: the blade's state and identity directories are 0700, its key and token
/// 0600; the token appears in no log, not even after requests with wrong tokens.
#[tokio::test(flavor = "multi_thread")]
async fn blade_secrets_are_owner_only_and_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = b1.state_dir();
    assert_eq!(mode(root), 0o700, "state directory");
    assert_eq!(mode(&root.join("identity")), 0o700, "identity directory");
    assert_eq!(mode(&root.join("identity/key.pem")), 0o600, "private key");
    assert_eq!(mode(&root.join("identity/token")), 0o600, "token");
    // A wrong token, then a good one: neither appears anywhere in the blade's logs.
    let base = b1.profile.url.trim_end_matches('/').to_owned();
    let wrong = format!("{}-wrong", b1.profile.token);
    let answer = b1
        .raw_client()
        .get(format!("{base}/v1/inventory"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let text = answer.text().await.unwrap();
    assert!(!text.contains(&b1.profile.token), "{text}");
    b1.client().inventory().await.unwrap();
    let logs = std::fs::read_to_string(root.join("logs.jsonl")).unwrap_or_default();
    assert!(
        !logs.contains(&b1.profile.token),
        "the system log holds the token"
    );
}

/// The management clients trust exactly the certificate pinned at registration: a server at the
/// registered address that presents another one (here, another blade's) is refused during the
/// TLS handshake, before the request and its bearer token are sent.
#[tokio::test(flavor = "multi_thread")]
async fn the_https_clients_refuse_a_server_with_another_certificate() {
    use lparmover::api::HvmClient;
    use lparmover::api::array::ArrayClient;

    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let array = lpm_tests::TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let refused_for_its_certificate = |text: String| {
        assert!(
            text.to_lowercase().contains("certificate"),
            "the error says the certificate is wrong: {text}"
        );
    };

    // ch1-b2's address and token, but ch1-b1's certificate pinned.
    let mut impostor = b2.profile.clone();
    impostor.cert_pem = b1.profile.cert_pem.clone();
    let err = HvmClient::new(&impostor)
        .unwrap()
        .inventory()
        .await
        .unwrap_err();
    refused_for_its_certificate(err.to_string());
    assert!(!err.to_string().contains(&b2.profile.token), "{err}");
    HvmClient::new(&b2.profile)
        .unwrap()
        .inventory()
        .await
        .expect("the right pin still works");

    // The array's address and token, a blade's certificate pinned.
    let mut impostor = array.profile.clone();
    impostor.cert_pem = b1.profile.cert_pem.clone();
    let err = ArrayClient::new(&impostor)
        .unwrap()
        .info()
        .await
        .unwrap_err();
    refused_for_its_certificate(err.to_string());
    ArrayClient::new(&array.profile)
        .unwrap()
        .info()
        .await
        .expect("the right pin still works");
}
