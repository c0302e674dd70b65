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
//!   logs.jsonl          system log, one JSON entry per line
//! ```

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
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
}

/// Where the API of a blade listens, as the fleet launcher and the manager need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Blade name.
    pub name: String,
    /// Chassis.
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

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = Self {
            root: root.to_owned(),
        };
        fs::create_dir_all(root.join("identity")).map_err(|e| dir.io(root, e))?;
        Ok(dir)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
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

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.root.join(name);
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| self.io(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        write_atomic(&path, &bytes).map_err(|e| self.io(&path, e))
    }

    /// The running state, if the HVM ran before.
    pub fn load_state(&self) -> Result<Option<HvmState>, StoreError> {
        self.read_json("state.json")
    }

    /// Persists the running state.
    pub fn save_state(&self, state: &HvmState) -> Result<(), StoreError> {
        self.write_json("state.json", state)
    }

    /// Stores the saved configuration.
    pub fn save_config(&self, doc: &HvmConfigDoc) -> Result<(), StoreError> {
        self.write_json("saved-config.json", doc)
    }

    /// The saved configuration, if any.
    pub fn saved_config(&self) -> Result<Option<HvmConfigDoc>, StoreError> {
        self.read_json("saved-config.json")
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

    fn write_secret(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(path, bytes).map_err(|e| self.io(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| self.io(path, e))
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
            return Ok((Identity { cert_pem, key_pem }, token.trim().to_owned()));
        }
        let identity = Identity::generate(name, addresses)?;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let new_token = hex::encode(raw);
        self.write_secret(&key, identity.key_pem.as_bytes())?;
        self.write_secret(&token, new_token.as_bytes())?;
        write_atomic(&cert, identity.cert_pem.as_bytes()).map_err(|e| self.io(&cert, e))?;
        Ok((identity, new_token))
    }
}
