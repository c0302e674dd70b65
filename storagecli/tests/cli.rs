//! The `storagecli` binary on bad command lines: exit code 2 and what is missing.

use std::process::Command;

#[test]
fn an_incomplete_array_cli_command_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_storagecli"))
        .args(["auhgwwn", "-unit", "ams1", "-assign", "-permhg", "0", "A"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONTROLLER PORT WWPN"));
}
