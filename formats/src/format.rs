//! Format versions of every file the manager and the blades persist.
//!
//! Each persisted format carries a version number: a field in the document (`format`) or, for
//! the journal's JSON lines, in every line; SQLite's `user_version` for the history. A reader
//! accepts the version it writes and every older one — a file without a version is version 1,
//! as written before versions were recorded — and refuses a newer one with [`NewerFormat`],
//! which names the file, its version and what to do, instead of misreading it.
//!
//! | file | what | current |
//! | --- | --- | --- |
//! | blade `state.json` | `HvmState::format` (hvmsim) | 1 |
//! | blade `saved-config.json`, backup `HVM.json` | `HvmConfigDoc::FORMAT` ([`crate::backup`]) | 1 |
//! | backup `manifest.json` | [`crate::backup::MANIFEST_FORMAT`] | 1 |
//! | job journal `JOB.jsonl` | `lparmover::jobs::journal::JOURNAL_FORMAT`, per line | 1 |
//! | `history.sqlite` | `PRAGMA user_version` (`lparmover::history`) | 3 |
//! | `profile.toml` | `lparmover::profile::PROFILE_FORMAT` (top-level `format`) | 1 |

use std::path::Path;

/// The version of a file written before versions were recorded (serde `default`).
pub fn v1() -> u32 {
    1
}

/// A file written by a newer program than this one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path} is a {what} of format version {found}, newer than this {program} reads (up to version {current}); upgrade {program} to the version that wrote it, or restore the file from a backup of this version"
)]
pub struct NewerFormat {
    /// The file.
    pub path: String,
    /// What it holds ("blade state file", "job journal", …).
    pub what: &'static str,
    /// Its version.
    pub found: u32,
    /// The newest version this program reads.
    pub current: u32,
    /// The program that must be upgraded (`lparmover`, `hvmsim`).
    pub program: &'static str,
}

/// Accepts `found` when it is `current` or older.
pub fn check(
    path: &Path,
    what: &'static str,
    program: &'static str,
    found: u32,
    current: u32,
) -> Result<u32, NewerFormat> {
    if found <= current {
        Ok(found)
    } else {
        Err(NewerFormat {
            path: path.display().to_string(),
            what,
            found,
            current,
            program,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_older_versions_are_read_and_a_newer_one_is_refused_by_name() {
        let path = Path::new("/var/lib/b1/state.json");
        assert_eq!(check(path, "blade state file", "hvmsim", 1, 2), Ok(1));
        assert_eq!(check(path, "blade state file", "hvmsim", 2, 2), Ok(2));
        let err = check(path, "blade state file", "hvmsim", 3, 2).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "/var/lib/b1/state.json is a blade state file of format version 3, newer than this hvmsim reads (up to version 2); upgrade hvmsim"
            ),
            "{text}"
        );
    }
}
