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

    // ch1-b1 ≡ ch1-b2: a live move passes (Warnings allowed). The demo fleet's array answers
    // the storage rows: both blades cabled to ams1:0A, web-01's WWPN and migration WWPN in its
    // host group there.
    let twin = check(profile, "ch1-b2", "concurrent");
    assert_eq!(errors(&twin), [], "{}", twin.text);
    assert_eq!(twin.code, Some(0));
    for group in ["[Server]", "[HBA]", "[NIC]", "[Storage]", "[Path]"] {
        assert!(twin.text.contains(group), "{group} missing:\n{}", twin.text);
    }
    let storage: Vec<&serde_json::Value> = twin.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == "storage")
        .collect();
    let items: Vec<&str> = storage
        .iter()
        .map(|r| r["item"].as_str().unwrap())
        .collect();
    assert_eq!(
        items,
        ["vFC 3/0 storage port", "vFC 3/0 host group"],
        "{}",
        twin.text
    );
    assert!(
        storage.iter().all(|r| r["verdict"] == "OK"),
        "{}",
        twin.text
    );
    assert_eq!(storage[0]["source"], "ams1:0A");
    assert_eq!(storage[0]["destination"], "ams1:0A");
    assert!(
        storage[1]["destination"]
            .as_str()
            .unwrap()
            .ends_with("registered"),
        "{}",
        twin.text
    );

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

/// The demo fleet with ch1-b2 turned into an odd twin of ch1-b1 that breaks one catalogue rule
/// per setting: another processor model (CPUID), 768 MiB of memory, app-01 running on 15 of its
/// 16 processors, a single vfcID (app-01 uses it), and a migration path on the dedicated segment
/// 1d, which also carries its management path.
fn odd_twin_fleet(dir: &std::path::Path) -> std::path::PathBuf {
    let (_, path) = demo_fleet(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("name = \"ch1-b2\"").unwrap();
    let end = start + text[start..].find("[[blade]]").unwrap();
    let mut b2 = text[start..end].to_owned();
    for (from, to) in [
        (
            "cpu_model = \"Intel Xeon E5-2667 v4\"",
            "cpu_model = \"Intel Xeon Gold 6130\"",
        ),
        ("memory_mib = 65536", "memory_mib = 768"),
        ("processor_groups = [{ id = 1, processors = 2 }]\n", ""),
        (
            "management = { ip = \"127.0.1.2\" }",
            "management = { ip = \"127.0.1.2\", segment = \"1d\" }",
        ),
        (
            "{ segment = \"1b\", ip = \"127.0.2.2\"",
            "{ segment = \"1d\", ip = \"127.0.2.2\"",
        ),
        (
            "vfc_ids = { first = 1, last = 32 }",
            "vfc_ids = { first = 1, last = 1 }",
        ),
        ("count = 2, service_ratio", "count = 15, service_ratio"),
    ] {
        assert!(b2.contains(from), "{from}");
        b2 = b2.replacen(from, to, 1);
    }
    let patched = dir.join("odd-twin.toml");
    std::fs::write(&patched, format!("{}{b2}{}", &text[..start], &text[end..])).unwrap();
    patched
}

fn check_args<'a>(profile: &'a str, mode: &'a str, json: bool) -> Vec<&'a str> {
    let mut args = vec![
        "--profile",
        profile,
        "check",
        "--from",
        "ch1-b1/web-01",
        "--to",
        "ch1-b2",
        "--mode",
        mode,
    ];
    if json {
        args.push("--json");
    }
    args
}

/// The catalogue rows an operator meets most, each from a real HVM that breaks the rule: same
/// LPAR name on the destination, CPUID mismatch, not enough processors / memory / vfcIDs, an
/// invalid migration path and one colliding with the management path; the migration refuses
/// and names every one.
#[tokio::test(flavor = "multi_thread")]
async fn an_odd_destination_shows_each_catalogue_error_and_the_move_refuses() {
    use lparmover::model::{LparRequest, LparStatus};
    use lpm_tests::{TestBlade, profile_of, small_lpar_request};

    let dir = tempfile::tempdir().unwrap();
    let fleet_file = odd_twin_fleet(dir.path());
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let profile_path = dir.path().join("profile.toml");
    profile_of(&[&b1, &b2]).save(&profile_path).unwrap();
    let profile = profile_path.to_str().unwrap();
    // Someone already named an LPAR web-01 on the destination.
    b2.client()
        .define(
            &LparRequest {
                vfcs: Vec::new(),
                ..small_lpar_request("web-01")
            },
            None,
        )
        .await
        .unwrap();

    let run = |mode: &str| {
        let text = run_binary(
            "lparmover",
            &check_args(profile, mode, false),
            Duration::from_secs(60),
        )
        .unwrap();
        let json = run_binary(
            "lparmover",
            &check_args(profile, mode, true),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            text.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&text.stderr)
        );
        Run {
            code: text.status.code(),
            text: String::from_utf8_lossy(&text.stdout).into_owned(),
            json: serde_json::from_slice(&json.stdout).unwrap(),
        }
    };

    let live = run("concurrent");
    println!("{}", live.text);
    assert_eq!(
        errors(&live),
        [
            triple(
                "server",
                "LPAR name unused on destination",
                "dst-same-lpar-name"
            ),
            triple("server", "Processor model (CPUID)", "cpu-id-mismatch"),
            triple("server", "Processors", "dst-no-free-processors"),
            triple("server", "Memory", "dst-not-enough-memory"),
            triple("hba", "vfcIDs", "dst-no-free-vfc-id"),
            triple(
                "path",
                "Migration path link (shared, >= 1 Gbit/s, IPv4)",
                "invalid-migration-path-dst"
            ),
            triple(
                "path",
                "Migration path apart from management path",
                "path-collides-with-management"
            ),
        ],
        "{}",
        live.text
    );
    // Each with the seed's message and its action, as the operator reads them.
    for text in [
        "because the specified LPAR is the same LPAR name in the destination blade.",
        "Action: Rename the source LPAR to a unique name in the system and then retry migration.",
        ":MMS:CPUIDs are different.",
        "Action: Check the server blade model and retry.",
        "because there are not free processors in the destination blade.",
        "the LPAR needs 2, ch1-b2 has 1 free",
        "because there is not enough memory in the destination blade.",
        "the LPAR needs 512 MiB, ch1-b2 has 256 MiB free",
        "There is not enough vfcID on the shared FC device to define an LPAR.",
        "Action: Check if the FC port at the destination has a free vfcID.",
        "Invalid Migration Path was Specified (Dst-Blade)",
        "segment 1d is not in shared mode",
        "The specified Migration Path collides with the Management Path Settings.",
        "ch1-b2: segment 1d carries the management path",
    ] {
        assert!(live.text.contains(text), "{text:?} missing:\n{}", live.text);
    }

    // Shutdown mode needs no migration path and lets the guest boot on another CPU model.
    let cold = run("shutdown");
    assert_eq!(
        errors(&cold),
        [
            triple(
                "server",
                "LPAR name unused on destination",
                "dst-same-lpar-name"
            ),
            triple("server", "Processors", "dst-no-free-processors"),
            triple("server", "Memory", "dst-not-enough-memory"),
            triple("hba", "vfcIDs", "dst-no-free-vfc-id"),
        ],
        "{}",
        cold.text
    );
    assert_eq!(cold.code, Some(3));
    let cpuid = cold.json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item"] == "Processor model (CPUID)")
        .unwrap();
    assert_eq!(cpuid["verdict"], "Warning");

    // The move refuses before touching anything, naming every failed row.
    let before = (
        b1.client().backup_config().await.unwrap().lpars,
        b2.client().backup_config().await.unwrap().lpars,
    );
    let out = run_binary(
        "lparmover",
        &[
            "--profile",
            profile,
            "migrate",
            "--from",
            "ch1-b1/web-01",
            "--to",
            "ch1-b2",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("7 check(s) failed"), "{err}");
    for text in [
        "CPUIDs are different.",
        "Invalid Migration Path was Specified (Dst-Blade)",
        "collides with the Management Path Settings",
        "not enough vfcID",
    ] {
        assert!(err.contains(text), "{text:?} missing: {err}");
    }
    let after = (
        b1.client().backup_config().await.unwrap().lpars,
        b2.client().backup_config().await.unwrap().lpars,
    );
    assert_eq!(after, before, "a refused move changes nothing");
    let web = b1
        .client()
        .lpars()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.lpar.name.as_str() == "web-01")
        .unwrap();
    assert_eq!(web.lpar.status, LparStatus::Activated);
}
