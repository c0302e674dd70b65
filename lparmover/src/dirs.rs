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

    /// Creates `dir` (one of the directories above) owner-only, and narrows the data directory
    /// to owner-only too: history, journal and backups hold every WWPN, MAC and configuration
    /// of the fleet.
    pub fn create_private(&self, dir: &Path) -> std::io::Result<()> {
        crate::fsutil::create_private_dir(&self.data)?;
        crate::fsutil::create_private_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_and_its_parts_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let dirs = ManagerDirs::new(&data);
        dirs.create_private(&dirs.backup_set("job-1"))
            .expect("create");
        for dir in [data.clone(), dirs.backups(), dirs.backup_set("job-1")] {
            let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }

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
