//! Hostile and mistyped numbers (issue 17, item 1, for the move options): every extreme value of
//! every move option is refused where it enters, by the CLI, by the manager library and by the
//! blade's API, with an error naming the field and its range, before anything is written: the
//! LPAR stays Activated and the blade's state file is unchanged byte for byte.

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
