//! The policies directory: one `NAME.toml` per policy, written atomically (a kill -9 leaves the
//! old file or the new one), listed with what is wrong in the broken ones.

use std::path::{Path, PathBuf};

use lparmover::dirs::ManagerDirs;

use crate::file::{self, PolicyFileError, Problem};
use crate::model::{Policy, PolicyName};

/// A directory of policy files.
#[derive(Clone, Debug)]
pub struct PolicyStore {
    dir: PathBuf,
}

/// One file of the directory as listed.
#[derive(Debug)]
pub struct Listed {
    /// The file.
    pub path: PathBuf,
    /// The policy, or why the file is not one.
    pub policy: Result<Policy, PolicyFileError>,
}

/// Why the store could not do what was asked. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such policy.
    #[error("no policy {name:?} in {}; `policy list` shows the ones there", dir.display())]
    NotFound {
        /// Asked name.
        name: String,
        /// The directory.
        dir: PathBuf,
    },
    /// The name is not a policy name.
    #[error("{0}")]
    BadName(String),
    /// The file is broken.
    #[error(transparent)]
    File(#[from] PolicyFileError),
    /// The file's `name` is not its file name.
    #[error("{} says name = {inside:?}; a policy file is named after its policy: rename the file to {inside}.toml or change the name", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The name inside it.
        inside: String,
    },
    /// Save as onto an existing policy.
    #[error("a policy {0:?} exists already; pick another name or delete it first")]
    Exists(String),
    /// The directory could not be read or written.
    #[error("policies directory {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl PolicyStore {
    /// The store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The manager's own policies directory (`DATA/policies`).
    pub fn for_manager(dirs: &ManagerDirs) -> Self {
        Self::new(dirs.data().join("policies"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where policy `name` lives.
    pub fn path(&self, name: &PolicyName) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Every `*.toml` in the directory, sorted by name, broken ones with their problems.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort_by_key(|p| p.file_stem().map(std::ffi::OsStr::to_os_string));
        Ok(paths
            .into_iter()
            .map(|path| {
                let policy = load_named(&path);
                Listed { path, policy }
            })
            .collect())
    }

    /// Policy `name`.
    pub fn load(&self, name: &str) -> Result<Policy, StoreError> {
        let name = PolicyName::new(name).map_err(StoreError::BadName)?;
        let path = self.path(&name);
        if !path.exists() {
            return Err(StoreError::NotFound {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let policy = load_named(&path)?;
        if policy.name != name {
            return Err(StoreError::NameMismatch {
                path,
                inside: policy.name.to_string(),
            });
        }
        Ok(policy)
    }

    /// Writes `policy` as `NAME.toml` (Save: replaces the file of the same name).
    pub fn save(&self, policy: &Policy) -> Result<PathBuf, StoreError> {
        let text = file::render(policy);
        // What is written must read back: a policy that cannot is never saved.
        file::parse(&text).map_err(|problems| {
            StoreError::File(PolicyFileError::Invalid {
                path: self.path(&policy.name),
                problems,
            })
        })?;
        lparmover::fsutil::create_missing_dirs_private(&self.dir).map_err(|e| self.io(e))?;
        let path = self.path(&policy.name);
        lparmover::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| self.io(e))?;
        Ok(path)
    }

    /// Save as: writes `policy` under `name`, refusing to replace another policy.
    pub fn save_as(&self, policy: &Policy, name: &str) -> Result<PathBuf, StoreError> {
        let name = PolicyName::new(name).map_err(StoreError::BadName)?;
        if self.path(&name).exists() {
            return Err(StoreError::Exists(name.to_string()));
        }
        let mut copy = policy.clone();
        copy.name = name;
        self.save(&copy)
    }

    /// Deletes policy `name`.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = PolicyName::new(name).map_err(StoreError::BadName)?;
        let path = self.path(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                name: name.to_string(),
                dir: self.dir.clone(),
            }),
            Err(e) => Err(self.io(e)),
        }
    }
}

fn load_named(path: &Path) -> Result<Policy, PolicyFileError> {
    let policy = file::load(path)?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(policy.name.as_str()) {
        return Err(PolicyFileError::Invalid {
            path: path.to_owned(),
            problems: vec![Problem {
                line: 1,
                text: format!(
                    "name = {:?} but the file is {}; a policy file is named NAME.toml: rename one of them",
                    policy.name.as_str(),
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ),
            }],
        });
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;
    use lparmover::model::Mode;

    #[test]
    fn saved_policies_list_load_and_refuse_a_save_as_over_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PolicyStore::new(dir.path().join("policies"));
        assert!(store.list().expect("empty list").is_empty());
        let mut policy = Policy::new(
            PolicyName::new("night").expect("name"),
            Mode::ConcurrentMaintenance,
        );
        policy.entries.push(Entry::new(
            "ch1-b1/web-01".parse().expect("ref"),
            "ch1-b2".parse().expect("dest"),
        ));
        store.save(&policy).expect("save");
        store.save_as(&policy, "night-copy").expect("save as");
        assert!(matches!(
            store.save_as(&policy, "night"),
            Err(StoreError::Exists(_))
        ));
        std::fs::write(store.dir().join("broken.toml"), "name = 3\n").expect("write");
        let listed = store.list().expect("list");
        let names: Vec<String> = listed
            .iter()
            .map(|l| {
                l.path
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["broken", "night", "night-copy"]);
        assert!(listed[0].policy.is_err());
        let loaded = store.load("night").expect("load");
        assert_eq!(loaded.entries.len(), 1);
        assert!(matches!(
            store.load("nothing"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(store.load("../etc"), Err(StoreError::BadName(_))));
        store.delete("night-copy").expect("delete");
        assert_eq!(store.list().expect("list").len(), 2);
    }
}
