//! The manager's profile: the HVMs it manages, how to reach them, and the certificate pinned for
//! each. `hvmsim fleet` writes one for the fleet it starts; the manager reads it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic_mode;

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Missing or unreadable.
    #[error(
        "cannot read profile {path}: {source}; start a fleet with `hvmsim fleet FILE` (it writes the profile) or pass --profile"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML or fields wrong.
    #[error("profile {path} is not valid: {message}")]
    Parse { path: String, message: String },
    /// Could not be written.
    #[error("cannot write profile {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// No HVM of that name.
    #[error("no HVM named {name:?} in the profile; registered: {known}")]
    UnknownHvm { name: String, known: String },
    /// No storage array of that name.
    #[error(
        "no storage array named {name:?} in the profile; registered: {known} (register one with `storagecli array add`)"
    )]
    UnknownArray { name: String, known: String },
    /// Written by a newer lparmover (or fleet launcher).
    #[error(transparent)]
    Newer(#[from] crate::format::NewerFormat),
}

/// Format of the profile this build writes (a top-level `format = N`; none: version 1).
pub const PROFILE_FORMAT: u32 = 1;

/// One registered HVM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileHvm {
    /// Blade / HVM name.
    pub name: String,
    /// Chassis it sits in.
    pub chassis: String,
    /// Base URL of the management API, e.g. `https://127.0.1.1:40123`.
    pub url: String,
    /// The HVM's certificate, pinned at registration (PEM).
    pub cert_pem: String,
    /// Bearer token for the management API.
    pub token: String,
    /// Migration path addresses.
    #[serde(default)]
    pub migration_paths: Vec<Ipv4Addr>,
}

// By hand, so that secrets (token) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for ProfileHvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileHvm")
            .field("name", &self.name)
            .field("chassis", &self.chassis)
            .field("url", &self.url)
            .field("cert_pem", &self.cert_pem)
            .field("token", &"<redacted>")
            .field("migration_paths", &self.migration_paths)
            .finish()
    }
}

/// A storage array registered with the manager.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileArray {
    /// Array name.
    pub name: String,
    /// Base URL of its API, e.g. `https://127.0.4.1:40200`.
    pub url: String,
    /// The array's certificate, pinned at registration (PEM).
    pub cert_pem: String,
    /// Bearer token for its API.
    pub token: String,
    /// The user ID and password of a protected array, when the operator chose to save them
    /// (the seed's "Save password setting"); the profile is written with mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<crate::api::array::Credentials>,
}

// By hand, so that secrets (token) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for ProfileArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileArray")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("cert_pem", &self.cert_pem)
            .field("token", &"<redacted>")
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The manager's profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Fleet name.
    pub fleet: String,
    /// Registered HVMs.
    #[serde(default, rename = "hvm")]
    pub hvms: Vec<ProfileHvm>,
    /// Registered storage arrays.
    #[serde(default, rename = "array")]
    pub arrays: Vec<ProfileArray>,
    /// Where the manager keeps this fleet's history, backups and job journal (unset: the
    /// default data directory, see [`crate::dirs::ManagerDirs::from_env`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Profile {
    /// Where the profile lives unless told otherwise: `$LPARMOVER_PROFILE`, else
    /// `$XDG_STATE_HOME/lparmover/profile.toml`, else `~/.local/state/lparmover/profile.toml`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("LPARMOVER_PROFILE") {
            return PathBuf::from(p);
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("lparmover").join("profile.toml")
    }

    /// The profile at `path`, or an empty one when there is no file yet (a first
    /// registration creates it).
    pub fn load_or_default(path: &Path) -> Result<Self, ProfileError> {
        match Self::load(path) {
            Err(ProfileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Self::default())
            }
            other => other,
        }
    }

    /// Reads a profile.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let parse_err = |e: toml::de::Error| ProfileError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // The version first: a newer profile may not parse here, and must say so.
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let found = match table.remove("format") {
            None => 1,
            Some(v) => v
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ProfileError::Parse {
                    path: path.display().to_string(),
                    message: format!("format must be a version number, not {v}"),
                })?,
        };
        crate::format::check(path, "profile", "lparmover", found, PROFILE_FORMAT)?;
        toml::Value::Table(table).try_into().map_err(parse_err)
    }

    /// Writes the profile atomically with mode 0600 (creating its directory).
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let write_err = |source| ProfileError::Write {
            path: path.display().to_string(),
            source,
        };
        // A directory made for the profile is the manager's own: owner only.
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            crate::fsutil::create_private_dir(dir).map_err(write_err)?;
        }
        let body = toml::to_string_pretty(self)
            .map_err(|e| write_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        // A top-level key, so before every table.
        let text = format!("format = {PROFILE_FORMAT}\n{body}");
        // It holds every HVM's token: owner-only from the moment it exists.
        write_atomic_mode(path, text.as_bytes(), 0o600).map_err(write_err)
    }

    /// The HVM named `name`.
    pub fn hvm(&self, name: &str) -> Result<&ProfileHvm, ProfileError> {
        self.hvms
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ProfileError::UnknownHvm {
                name: name.to_owned(),
                known: self
                    .hvms
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The storage array named `name`.
    pub fn array(&self, name: &str) -> Result<&ProfileArray, ProfileError> {
        self.arrays
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| ProfileError::UnknownArray {
                name: name.to_owned(),
                known: match self.arrays.len() {
                    0 => "none".to_owned(),
                    _ => self
                        .arrays
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/profile.toml");
        let profile = Profile {
            fleet: "demo".into(),
            hvms: vec![ProfileHvm {
                name: "b1".into(),
                chassis: "CH1".into(),
                url: "https://127.0.1.1:1234".into(),
                cert_pem: "PEM".into(),
                token: "t".into(),
                migration_paths: vec![Ipv4Addr::new(127, 0, 2, 1)],
            }],
            arrays: vec![],
            data_dir: Some(PathBuf::from("/srv/lparmover")),
        };
        profile.save(&path).unwrap();
        assert_eq!(Profile::load(&path).unwrap(), profile);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600, "the profile holds tokens");
            assert_eq!(
                mode(path.parent().unwrap()),
                0o700,
                "a directory made for it"
            );
        }
        assert!(matches!(
            profile.hvm("nope"),
            Err(ProfileError::UnknownHvm { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let hvm = ProfileHvm {
            name: "b1".into(),
            chassis: "CH1".into(),
            url: "https://127.0.1.1:1234".into(),
            cert_pem: "PEM".into(),
            token: "0123456789abcdef-secret".into(),
            migration_paths: vec![],
        };
        let array = ProfileArray {
            name: "ams1".into(),
            url: "https://127.0.4.1:1".into(),
            cert_pem: "PEM".into(),
            token: "fedcba-secret".into(),
            credentials: None,
        };
        let profile = Profile {
            fleet: "demo".into(),
            hvms: vec![hvm.clone()],
            arrays: vec![array],
            data_dir: None,
        };
        let client = crate::api::HvmClient::new(&hvm);
        for text in [format!("{profile:?}"), format!("{client:?}")] {
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn a_profile_without_a_version_is_version_1_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.toml");
        let profile = Profile {
            fleet: "demo".into(),
            hvms: Vec::new(),
            arrays: Vec::new(),
            data_dir: None,
        };
        profile.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("format = 1\n"), "{text}");
        assert_eq!(Profile::load(&path).unwrap(), profile);
        // Written before versions: no format key.
        std::fs::write(&path, "fleet = \"demo\"\n").unwrap();
        assert_eq!(Profile::load(&path).unwrap(), profile);
        std::fs::write(&path, "format = 2\nfleet = \"demo\"\n[[future]]\nx = 1\n").unwrap();
        let err = Profile::load(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProfileError::Newer(_)), "{text}");
        assert!(
            text.contains("profile.toml is a profile of format version 2")
                && text.contains("upgrade lparmover"),
            "{text}"
        );
    }
}
