//! A blade's state directory: everything an HVM must find again after a crash.
//!
//! ```text
//! STATE_DIR/
//!   state.json          running configuration (HvmState), rewritten atomically on every change
//!   saved-config.json   the configuration "Save HVM configuration" stored
//!   identity/cert.pem   the HVM's TLS certificate (pinned by the manager)
//!   identity/key.pem    its private key (0600)
//!   identity/token      the management API bearer token (0600)
//!   endpoint.json       where the API listens (read by the fleet launcher)
//!   logs.jsonl          system log, one JSON entry per line (rotated: logs.1.jsonl …)
//!   blade.lock          held (flock) by the `hvmsim serve` serving the directory; holds its PID
//! ```

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use lparmover::api::HvmConfigDoc;
use lparmover::fsutil::write_atomic;
use lparmover::tls::Identity;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::hvm::HvmState;

/// A state directory problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A file is not what it should be.
    #[error(
        "state file {path} is damaged: {detail}; restore it from a backup or remove the state directory to start from the fleet file"
    )]
    Damaged { path: String, detail: String },
    /// Certificate generation failed.
    #[error("cannot create the HVM's certificate: {0}")]
    Tls(#[from] lparmover::tls::TlsError),
    /// A file was written by a newer hvmsim.
    #[error(transparent)]
    Newer(#[from] lparmover::format::NewerFormat),
    /// Another process serves this state directory.
    #[error(
        "state directory {path} is in use by another hvmsim serve (PID {pid}); stop that blade first, or give this one a state directory of its own"
    )]
    InUse {
        /// The state directory.
        path: String,
        /// Who holds it, as it wrote in the lock file ("unknown" when unreadable).
        pid: String,
    },
}

/// The exclusive hold of a blade on its state directory: an `flock` on `blade.lock`, released
/// by the kernel when the process ends (kill -9 included). The file descriptor is close-on-exec,
/// so the VM processes a blade starts do not inherit the hold.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Where the API of a blade listens, as the fleet launcher and the manager need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Blade name.
    pub name: String,
    /// Chassis (empty for a storage array).
    pub chassis: String,
    /// `https://IP:PORT`.
    pub url: String,
    /// Bound socket address.
    pub addr: SocketAddr,
    /// Process id serving it.
    pub pid: u32,
}

/// A blade's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// The lock file of the state directory `root` ([`StateDir::lock`]).
pub fn lock_path(root: &Path) -> PathBuf {
    root.join("blade.lock")
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = Self {
            root: root.to_owned(),
        };
        // Owner only: the identity holds the key and the token, the state dir the VMs' control
        // sockets and every LPAR's configuration.
        for d in [root.to_owned(), root.join("identity")] {
            lparmover::fsutil::create_private_dir(&d).map_err(|e| dir.io(&d, e))?;
        }
        Ok(dir)
    }

    /// Takes the exclusive hold of this directory for the life of the process (or of the
    /// returned [`DirLock`]). Fails at once, changing nothing, when another process holds it.
    pub fn lock(&self) -> Result<DirLock, StoreError> {
        use std::io::{Read, Seek, Write};
        let path = lock_path(&self.root);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = match file.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => text.trim().to_owned(),
                    _ => "unknown".to_owned(),
                };
                return Err(StoreError::InUse {
                    path: self.root.display().to_string(),
                    pid,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(self.io(&path, e)),
        }
        // Ours now: say who holds it (a reader of a half-written PID only gets a worse message).
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| self.io(&path, e))?;
        Ok(DirLock { _file: file })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a byte can be written into the directory now (the health check): writes and
    /// removes a probe file.
    pub fn probe_writable(&self) -> Result<(), StoreError> {
        let path = self.root.join("healthz.probe");
        fs::write(&path, b"1").map_err(|e| self.io(&path, e))?;
        match fs::remove_file(&path) {
            // Two health checks at once: the other one removed it.
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io(&path, e)),
            _ => Ok(()),
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn read_json<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Damaged {
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    pub(crate) fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.root.join(name);
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| self.io(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        write_atomic(&path, &bytes).map_err(|e| self.io(&path, e))
    }

    /// The running state, if the HVM ran before. A state file of an older format is read (no
    /// version: 1); one of a newer format is refused, naming the file and its version.
    pub fn load_state(&self) -> Result<Option<HvmState>, StoreError> {
        let mut state: Option<HvmState> = self.read_json("state.json")?;
        if let Some(s) = &mut state {
            lparmover::format::check(
                &self.root.join("state.json"),
                "blade state file",
                "hvmsim",
                s.format,
                HvmState::FORMAT,
            )?;
            // Read into today's structure: the next save writes the current format.
            s.format = HvmState::FORMAT;
        }
        Ok(state)
    }

    /// Persists the running state.
    pub fn save_state(&self, state: &HvmState) -> Result<(), StoreError> {
        self.write_json("state.json", state)
    }

    /// Stores the saved configuration.
    pub fn save_config(&self, doc: &HvmConfigDoc) -> Result<(), StoreError> {
        self.write_json("saved-config.json", doc)
    }

    /// The saved configuration, if any (older formats read, a newer one refused).
    pub fn saved_config(&self) -> Result<Option<HvmConfigDoc>, StoreError> {
        let doc: Option<HvmConfigDoc> = self.read_json("saved-config.json")?;
        if let Some(d) = &doc {
            lparmover::format::check(
                &self.root.join("saved-config.json"),
                "saved HVM configuration",
                "hvmsim",
                d.format,
                HvmConfigDoc::FORMAT,
            )?;
        }
        Ok(doc)
    }

    /// Where the API listened last time, if it ran before.
    pub fn endpoint(&self) -> Result<Option<Endpoint>, StoreError> {
        self.read_json("endpoint.json")
    }

    /// Records where the API listens.
    pub fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.write_json("endpoint.json", endpoint)
    }

    /// Path of the system log.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("logs.jsonl")
    }

    /// Writes a key or token, created with mode 0600 (never readable by others, not for an
    /// instant: no chmod after the fact).
    fn write_secret(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        lparmover::fsutil::write_atomic_mode(path, bytes, 0o600).map_err(|e| self.io(path, e))
    }

    /// The HVM's certificate and token, created on first start and kept afterwards.
    pub fn identity(
        &self,
        name: &str,
        addresses: &[IpAddr],
    ) -> Result<(Identity, String), StoreError> {
        let cert = self.root.join("identity/cert.pem");
        let key = self.root.join("identity/key.pem");
        let token = self.root.join("identity/token");
        if let (Ok(cert_pem), Ok(key_pem), Ok(token)) = (
            fs::read_to_string(&cert),
            fs::read_to_string(&key),
            fs::read_to_string(&token),
        ) {
            return Ok((
                Identity::from_pem(&cert_pem, &key_pem)?,
                token.trim().to_owned(),
            ));
        }
        let identity = Identity::generate(name, addresses)?;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let new_token = hex::encode(raw);
        self.write_secret(&key, identity.key_pem().as_bytes())?;
        self.write_secret(&token, new_token.as_bytes())?;
        write_atomic(&cert, identity.cert_pem().as_bytes()).map_err(|e| self.io(&cert, e))?;
        Ok((identity, new_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lparmover::model::{Fleet, fleet::DEMO_FLEET_TOML};

    fn state() -> HvmState {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo").unwrap();
        HvmState::new(fleet.blade("ch1-b1").unwrap().blade.clone())
    }

    fn write_with_format(store: &StateDir, name: &str, value: serde_json::Value) {
        std::fs::write(store.root().join(name), serde_json::to_vec(&value).unwrap()).unwrap();
    }

    #[test]
    fn a_state_file_without_a_version_is_version_1_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        let hvm = state();
        let mut old = serde_json::to_value(&hvm).unwrap();
        old.as_object_mut().unwrap().remove("format");
        write_with_format(&store, "state.json", old);
        let loaded = store.load_state().unwrap().unwrap();
        assert_eq!(loaded, hvm, "an unversioned state file reads as version 1");

        let mut newer = serde_json::to_value(&hvm).unwrap();
        newer["format"] = (HvmState::FORMAT + 1).into();
        newer["a_field_from_the_future"] = true.into();
        write_with_format(&store, "state.json", newer);
        let before = std::fs::read(store.root().join("state.json")).unwrap();
        let err = store.load_state().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Newer(_)), "{text}");
        assert!(
            text.contains(&format!("{}", dir.path().join("state.json").display()))
                && text.contains(&format!("format version {}", HvmState::FORMAT + 1))
                && text.contains("upgrade hvmsim"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(store.root().join("state.json")).unwrap(),
            before,
            "a refused file is left as it was"
        );
    }

    #[test]
    fn saved_configurations_of_older_formats_are_read_and_newer_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        let doc = state().config_doc();
        store.save_config(&doc).unwrap();
        assert_eq!(store.saved_config().unwrap(), Some(doc.clone()));
        let mut old = serde_json::to_value(&doc).unwrap();
        old.as_object_mut().unwrap().remove("format");
        write_with_format(&store, "saved-config.json", old);
        assert_eq!(store.saved_config().unwrap().unwrap().format, 1);
        let mut newer = serde_json::to_value(&doc).unwrap();
        newer["format"] = (HvmConfigDoc::FORMAT + 1).into();
        write_with_format(&store, "saved-config.json", newer);
        let text = store.saved_config().unwrap_err().to_string();
        assert!(
            text.contains("saved-config.json is a saved HVM configuration of format version"),
            "{text}"
        );
    }

    #[test]
    fn a_served_directory_is_refused_to_a_second_holder_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        let hold = store.lock().unwrap();
        // flock locks belong to open file descriptions: a second open in this process is a
        // second holder, as another process would be.
        let err = store.lock().unwrap_err();
        assert!(
            matches!(&err, StoreError::InUse { pid, .. } if *pid == std::process::id().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        drop(hold);
        store.lock().expect("free again once the holder is gone");
    }
}
