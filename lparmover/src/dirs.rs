//! Where the manager keeps its own data: migration history, job backups, the job journal.
//!
//! ```text
//! DATA/                     $LPARMOVER_DATA, else $XDG_DATA_HOME/lparmover, else ~/.local/share/lparmover
//!   history.db              migration history (SQLite, WAL)
//!   backups/JOB/HVM.json    HVM configurations taken before a move (crate::backup)
//!   backups/JOB/manifest.json
//!   journal/                job journal (crate::jobs)
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The data directory fixed for this process by [`ManagerDirs::set_process_default`].
static PROCESS_DATA: OnceLock<PathBuf> = OnceLock::new();

/// The manager's data directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerDirs {
    data: PathBuf,
}

impl ManagerDirs {
    /// Data rooted at `data` (a `--data-dir` flag, a test's temporary directory).
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self { data: data.into() }
    }

    /// Fixes the directory [`Self::from_env`] answers for the rest of this process, ahead of the
    /// environment. For programs that run jobs in-process and must never write into the
    /// operator's data (tests), without changing the environment of a running, threaded process.
    /// The first call wins; returns whether this one did.
    pub fn set_process_default(data: impl Into<PathBuf>) -> bool {
        PROCESS_DATA.set(data.into()).is_ok()
    }

    /// The directory fixed by [`Self::set_process_default`], else `$LPARMOVER_DATA`, else
    /// `$XDG_DATA_HOME/lparmover`, else `~/.local/share/lparmover`, else `./lparmover-data` when
    /// not even `$HOME` is set.
    pub fn from_env() -> Self {
        if let Some(p) = PROCESS_DATA.get() {
            return Self::new(p);
        }
        if let Some(p) = std::env::var_os("LPARMOVER_DATA").filter(|p| !p.is_empty()) {
            return Self::new(p);
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        match base {
            Some(base) => Self::new(base.join("lparmover")),
            None => Self::new("lparmover-data"),
        }
    }

    /// The profile's `data_dir` when it names one, else [`Self::from_env`].
    pub fn for_profile(profile: &crate::profile::Profile) -> Self {
        profile
            .data_dir
            .as_deref()
            .map_or_else(Self::from_env, Self::new)
    }

    /// `dir` when given, else [`Self::from_env`].
    pub fn from_flag(dir: Option<&Path>) -> Self {
        dir.map_or_else(Self::from_env, Self::new)
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The migration history database.
    pub fn history_db(&self) -> PathBuf {
        self.data.join("history.db")
    }

    /// Where backup sets live, one directory per job.
    pub fn backups(&self) -> PathBuf {
        self.data.join("backups")
    }

    /// The backup set of one job.
    pub fn backup_set(&self, job: &str) -> PathBuf {
        self.backups().join(job)
    }

    /// The job journal directory.
    pub fn journal(&self) -> PathBuf {
        self.data.join("journal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_hang_off_the_data_directory() {
        let dirs = ManagerDirs::new("/d");
        assert_eq!(dirs.history_db(), PathBuf::from("/d/history.db"));
        assert_eq!(dirs.backup_set("j1"), PathBuf::from("/d/backups/j1"));
        assert_eq!(dirs.journal(), PathBuf::from("/d/journal"));
        assert_eq!(
            ManagerDirs::from_flag(Some(Path::new("/x"))).data(),
            Path::new("/x")
        );
    }
}
