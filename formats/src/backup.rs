//! The files of a backup set (`lparmover::backup`), decoded and checked without I/O: the
//! manifest that lists both HVMs' files with their digests, and each HVM's configuration
//! document (also what a blade saves as `saved-config.json` and restores). Reading them from
//! disk, and restoring, stay in lparmover; here only bytes come in, so the fuzz target `backup`
//! runs the same checks a restore does.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::format::NewerFormat;
use crate::model::{Blade, Lpar};

/// Current format of `manifest.json`.
pub const MANIFEST_FORMAT: u32 = 1;
/// The manifest's file name inside a set's directory.
pub const MANIFEST: &str = "manifest.json";
/// Longest job id or HVM name that names a backup file.
pub const MAX_NAME_LEN: usize = 128;

/// One HVM's file in a backup set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    /// HVM name (as in the profile).
    pub hvm: String,
    /// File name inside the set's directory.
    pub file: String,
    /// LPARs defined when it was taken.
    pub lpars: usize,
    /// BLAKE3 of the file, hex.
    pub blake3: String,
}

/// What a backup set holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`MANIFEST_FORMAT`] (missing in manifests of before versions: 1).
    #[serde(default = "crate::format::v1")]
    pub format: u32,
    /// Job the set was taken for.
    pub job: String,
    /// When.
    pub taken_at: DateTime<Utc>,
    /// Source HVM of the job.
    pub source: String,
    /// Destination HVM of the job.
    pub destination: String,
    /// Source first, then destination.
    pub hvms: Vec<BackupEntry>,
}

/// The persisted configuration of an HVM: what "save", "backup" and "restore" move around.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HvmConfigDoc {
    /// Format of this document ([`Self::FORMAT`]; missing in documents of before versions: 1).
    #[serde(default = "crate::format::v1")]
    pub format: u32,
    /// Blade this was taken from.
    pub blade_name: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
    /// The blade and HVM settings.
    pub blade: Blade,
    /// Every defined LPAR.
    pub lpars: Vec<Lpar>,
}

impl HvmConfigDoc {
    /// Current format number.
    pub const FORMAT: u32 = 1;
}

/// Why a backup file was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupFileError {
    /// The file is not what the set says it is.
    #[error("{0}")]
    Damaged(String),
    /// Written by a newer lparmover or HVM.
    #[error(transparent)]
    Newer(#[from] NewerFormat),
    /// A job id or HVM name that cannot be a file name.
    #[error(
        "{what} {name:?} cannot name a backup file (use letters, digits, '.', '_' and '-', not starting with '.')"
    )]
    InvalidName {
        /// "job id" or "HVM name".
        what: &'static str,
        /// The name (its first 64 characters).
        name: String,
    },
}

/// Refuses a job id or HVM name that could not be a plain file name in the backups directory.
pub fn check_name(what: &'static str, name: &str) -> Result<(), BackupFileError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BackupFileError::InvalidName {
            what,
            name: name.chars().take(64).collect(),
        })
    }
}

/// The manifest of `job`'s set read from `bytes` (`path` names it in errors): its version
/// first (a newer manifest may not parse here, and must say so), then a two-HVM set of this
/// job whose files are named after their HVMs.
pub fn parse_manifest(
    path: &Path,
    bytes: &[u8],
    job: &str,
) -> Result<BackupManifest, BackupFileError> {
    #[derive(Deserialize)]
    struct Version {
        #[serde(default = "crate::format::v1")]
        format: u32,
    }
    if let Ok(v) = serde_json::from_slice::<Version>(bytes) {
        crate::format::check(
            path,
            "backup manifest",
            "lparmover",
            v.format,
            MANIFEST_FORMAT,
        )?;
    }
    let manifest: BackupManifest =
        serde_json::from_slice(bytes).map_err(|e| BackupFileError::Damaged(e.to_string()))?;
    if manifest.job != job || manifest.hvms.len() != 2 {
        return Err(BackupFileError::Damaged(
            "not a two-HVM set of this job".into(),
        ));
    }
    for entry in &manifest.hvms {
        check_name("HVM name", &entry.hvm)?;
        if entry.file != format!("{}.json", entry.hvm) {
            return Err(BackupFileError::Damaged(format!(
                "unexpected file name {:?}",
                entry.file.chars().take(160).collect::<String>()
            )));
        }
    }
    Ok(manifest)
}

/// The configuration document of `entry`'s HVM read from `bytes`: the digest the manifest
/// gives, a format this program reads, and taken from that HVM.
pub fn parse_document(
    path: &Path,
    bytes: &[u8],
    entry: &BackupEntry,
) -> Result<HvmConfigDoc, BackupFileError> {
    if blake3::hash(bytes).to_hex().as_str() != entry.blake3 {
        return Err(BackupFileError::Damaged(
            "digest does not match the manifest".into(),
        ));
    }
    let doc: HvmConfigDoc =
        serde_json::from_slice(bytes).map_err(|e| BackupFileError::Damaged(e.to_string()))?;
    crate::format::check(
        path,
        "backed-up HVM configuration",
        "lparmover",
        doc.format,
        HvmConfigDoc::FORMAT,
    )?;
    if doc.blade_name != entry.hvm {
        return Err(BackupFileError::Damaged(format!(
            "taken from {:?}, not {:?}",
            doc.blade_name.chars().take(160).collect::<String>(),
            entry.hvm
        )));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(job: &str, hvms: &[&str]) -> String {
        let entries: Vec<String> = hvms
            .iter()
            .map(|h| format!(r#"{{"hvm":"{h}","file":"{h}.json","lpars":1,"blake3":"00"}}"#))
            .collect();
        format!(
            r#"{{"job":"{job}","taken_at":"2026-12-01T00:00:00Z","source":"a","destination":"b","hvms":[{}]}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn a_manifest_of_another_job_or_shape_or_version_is_refused_by_name() {
        let path = Path::new("/d/manifest.json");
        let good = manifest("job-1", &["ch1-b1", "ch1-b2"]);
        let m = parse_manifest(path, good.as_bytes(), "job-1").unwrap();
        assert_eq!((m.format, m.hvms.len()), (1, 2));
        assert!(matches!(
            parse_manifest(path, good.as_bytes(), "job-2"),
            Err(BackupFileError::Damaged(_))
        ));
        let one = manifest("job-1", &["ch1-b1"]);
        assert!(parse_manifest(path, one.as_bytes(), "job-1").is_err());
        let escape = manifest("job-1", &["ch1-b1", "../etc"]);
        assert!(matches!(
            parse_manifest(path, escape.as_bytes(), "job-1"),
            Err(BackupFileError::InvalidName { .. })
        ));
        let newer = good.replacen('{', r#"{"format":9,"#, 1);
        let err = parse_manifest(path, newer.as_bytes(), "job-1").unwrap_err();
        assert!(err.to_string().contains("format version 9"), "{err}");
    }

    #[test]
    fn a_document_whose_digest_or_blade_differs_is_damaged() {
        let path = Path::new("/d/ch1-b1.json");
        let bytes = b"{}";
        let entry = BackupEntry {
            hvm: "ch1-b1".into(),
            file: "ch1-b1.json".into(),
            lpars: 0,
            blake3: "00".into(),
        };
        let err = parse_document(path, bytes, &entry).unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        let entry = BackupEntry {
            blake3: blake3::hash(bytes).to_hex().to_string(),
            ..entry
        };
        assert!(matches!(
            parse_document(path, bytes, &entry),
            Err(BackupFileError::Damaged(_))
        ));
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(check_name("job id", bad).is_err(), "{bad:?}");
        }
        for good in ["job-20261201-1", "ch1-b1", "a.b_c"] {
            assert!(check_name("job id", good).is_ok(), "{good:?}");
        }
    }
}
