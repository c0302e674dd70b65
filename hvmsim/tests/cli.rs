//! The `hvmsim` binary on bad command lines: a clear message naming the file, nothing created.
//! (Building this test also makes `cargo test` build the binary the end-to-end suites run.)

use std::process::Command;

#[test]
fn an_array_missing_from_the_fleet_file_is_named_with_the_arrays_there() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, lparmover::model::fleet::DEMO_FLEET_TOML).unwrap();
    let state = dir.path().join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_hvmsim"))
        .arg("array")
        .arg("--fleet")
        .arg(&fleet)
        .args(["--array", "ams9", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no array named \"ams9\"") && stderr.contains("ams1"),
        "{stderr}"
    );
    assert!(
        !state.exists(),
        "a refused start creates no state directory"
    );
}
