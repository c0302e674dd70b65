//! `lparmover check` end to end: the demo fleet as real hvmsim processes, the CLI as a real
//! process, and the rows that fail for the demo's odd blades.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use lpm_tests::{TestFleet, demo_fleet, run_binary};
use serde_json::Value;

struct Run {
    code: Option<i32>,
    text: String,
    json: Value,
}

fn check(profile: &str, to: &str, mode: &str) -> Run {
    let args = |json: bool| {
        let mut a = vec![
            "check",
            "--profile",
            profile,
            "--from",
            "ch1-b1/web-01",
            "--to",
            to,
            "--mode",
            mode,
        ];
        if json {
            a.push("--json");
        }
        a
    };
    let text = run_binary("lparmover", &args(false), Duration::from_secs(60)).unwrap();
    let json = run_binary("lparmover", &args(true), Duration::from_secs(60)).unwrap();
    assert_eq!(text.status.code(), json.status.code());
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(
        matches!(text.status.code(), Some(0 | 3)),
        "check failed to run: {stderr}"
    );
    Run {
        code: text.status.code(),
        text: String::from_utf8_lossy(&text.stdout).into_owned(),
        json: serde_json::from_slice(&json.stdout).unwrap(),
    }
}

/// (group, item, code) of every Error row.
fn errors(run: &Run) -> Vec<(String, String, String)> {
    run.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "Error")
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_owned(),
                r["item"].as_str().unwrap().to_owned(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triple(g: &str, i: &str, c: &str) -> (String, String, String) {
    (g.to_owned(), i.to_owned(), c.to_owned())
}

#[test]
fn check_shows_the_exact_failing_rows_of_the_demo_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let running = TestFleet::start(&fleet_file, dir.path()).unwrap();
    let profile = running.profile_path.to_str().unwrap();

    // ch1-b1 ≡ ch1-b2: a live move passes (Warnings allowed, e.g. storage not checked).
    let twin = check(profile, "ch1-b2", "concurrent");
    assert_eq!(errors(&twin), [], "{}", twin.text);
    assert_eq!(twin.code, Some(0));
    for group in ["[Server]", "[HBA]", "[NIC]", "[Storage]", "[Path]"] {
        assert!(twin.text.contains(group), "{group} missing:\n{}", twin.text);
    }
    assert!(
        twin.text
            .contains("not checked: no storage array registered"),
        "{}",
        twin.text
    );
    let storage = twin.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "storage")
        .unwrap();
    assert_eq!(storage["verdict"], "Warning");

    // ch2-b1 runs EFI/BIOS 10-40: Concurrent Maintenance needs the full version…
    let efi_live = check(profile, "ch2-b1", "concurrent");
    assert_eq!(
        errors(&efi_live),
        [triple(
            "server",
            "EFI/BIOS version",
            "efi-bios-version-mismatch"
        )],
        "{}",
        efi_live.text
    );
    assert_eq!(efi_live.code, Some(3));
    assert!(
        efi_live.text.contains("10-46") && efi_live.text.contains("10-40"),
        "{}",
        efi_live.text
    );
    assert!(
        efi_live.text.contains("Action: Update the EFI/BIOS"),
        "{}",
        efi_live.text
    );
    assert!(efi_live.text.contains("EMG00000000"), "{}", efi_live.text);
    // …Shutdown mode only the major version.
    let efi_cold = check(profile, "ch2-b1", "shutdown");
    assert_eq!(errors(&efi_cold), [], "{}", efi_cold.text);
    assert_eq!(efi_cold.code, Some(0));
    assert!(
        efi_cold.text.contains("major versions match"),
        "{}",
        efi_cold.text
    );

    // ch2-b2 has no FC card in slot 3, where web-01's vFC sits.
    for mode in ["shutdown", "concurrent"] {
        let no_fc = check(profile, "ch2-b2", mode);
        assert_eq!(
            errors(&no_fc),
            [
                triple("hba", "FC HBA card slot 3", "fc-card-missing"),
                triple("hba", "vFC 3/0 (vfcID 1)", "fc-card-missing"),
            ],
            "{mode}: {}",
            no_fc.text
        );
        assert_eq!(no_fc.code, Some(3));
        assert!(
            no_fc.text.contains(
                "Action: Make the device configuration consistent between the source and the destination."
            ),
            "{}",
            no_fc.text
        );
        assert!(
            no_fc
                .text
                .contains(":MMS:The MMS could not attach the shared FC"),
            "{}",
            no_fc.text
        );
    }

    // A destination number that is taken is an Error row of its own.
    let taken = check(profile, "ch1-b2/1", "concurrent");
    assert_eq!(
        errors(&taken),
        [triple(
            "server",
            "Destination LPAR number",
            "lpar-number-in-use"
        )],
        "{}",
        taken.text
    );
}

#[test]
fn check_refuses_unknown_lpars_and_modes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let running = TestFleet::start(&fleet_file, dir.path()).unwrap();
    let profile = running.profile_path.to_str().unwrap();
    let out = run_binary(
        "lparmover",
        &[
            "check",
            "--profile",
            profile,
            "--from",
            "ch1-b1/nope",
            "--to",
            "ch1-b2",
            "--mode",
            "shutdown",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no LPAR nope on HVM ch1-b1") && err.contains("web-01"),
        "{err}"
    );
    let out = run_binary(
        "lparmover",
        &[
            "check",
            "--profile",
            profile,
            "--from",
            "ch1-b1/web-01",
            "--to",
            "ch1-b2",
            "--mode",
            "warm",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `shutdown` or `concurrent`"));
}
