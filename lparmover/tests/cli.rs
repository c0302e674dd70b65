//! The `lparmover` binary on bad command lines: a clear message and a non-zero exit, nothing
//! started. (Building this test also makes `cargo test` build the binary the end-to-end
//! suites in `tests/` run.)

use std::process::Command;

#[test]
fn a_missing_profile_and_a_malformed_lpar_are_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-profile.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_lparmover"))
        .arg("--profile")
        .arg(&missing)
        .args(["wwn", "register-migration", "ch1-b1/db-01"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("hvmsim fleet"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lparmover"))
        .args(["wwn", "register-migration", "no-slash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HVM/LPAR"));
}
