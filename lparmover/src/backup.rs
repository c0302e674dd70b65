//! Backing up both HVMs' configurations before a move, and restoring them together (ch. 3,
//! "Saving and backing up HVM configuration").
//!
//! The seed is firm: "don't restore only either one on the source or destination server blade. It
//! may cause MAC address to be duplicated." So a backup is always a *set* of both HVMs taken for
//! one job, and [`restore_both`] either restores both or changes neither:
//!
//! 1. read and verify both files of the set (digest in the manifest);
//! 2. take a blade lease on both HVMs (nobody activates an LPAR meanwhile);
//! 3. check that both answer and every LPAR on both is deactivated — otherwise refuse;
//! 4. keep the current configuration of both (to undo), restore the source, restore the
//!    destination; if the second restore fails, put the first back as it was;
//! 5. release both leases.
//!
//! ```text
//! DATA/backups/JOB/manifest.json   written last: a set without it is incomplete
//! DATA/backups/JOB/HVM.json        one HvmConfigDoc per HVM
//! ```

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;

use crate::api::{ClientError, HvmClient, HvmConfigDoc, LockRequest, LockTarget};
use crate::dirs::ManagerDirs;
use crate::emg::{Emg, EmgError};
use crate::fsutil::write_atomic;
use crate::model::LparStatus;
use crate::profile::{Profile, ProfileError};
use lpm_formats::backup::{self, BackupFileError};
pub use lpm_formats::backup::{BackupEntry, BackupManifest, MANIFEST, MANIFEST_FORMAT};

/// Lease time of the blade locks a restore takes.
const RESTORE_LEASE_SECS: u64 = 120;

/// A backup or restore that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// An HVM is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An HVM could not be reached or refused a call.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The operator-facing reason a restore was refused; nothing was changed.
    #[error("{0}")]
    Refused(EmgError),
    /// Reading or writing a backup file failed.
    #[error("backup file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A backup file is not what the manifest says.
    #[error("backup file {path} is damaged: {detail}; restore from another backup set")]
    Damaged { path: String, detail: String },
    /// A backup file was written by a newer lparmover or HVM.
    #[error(transparent)]
    Newer(#[from] crate::format::NewerFormat),
    /// No backup set for that job.
    #[error(
        "no complete backup set for job {job:?} under {dir}; list the sets with `lparmover restore-config --list`"
    )]
    NotFound { job: String, dir: String },
    /// A job id or HVM name that cannot be a file name.
    #[error(
        "{what} {name:?} cannot name a backup file (use letters, digits, '.', '_' and '-', not starting with '.')"
    )]
    InvalidName { what: &'static str, name: String },
    /// The second restore failed after the first succeeded; the first was put back (or not).
    #[error(
        "restoring {failed} failed after {restored} was restored: {error}; {restored} was {undo}. Check both HVMs with `lparmover fleet` before retrying"
    )]
    Partial {
        restored: String,
        failed: String,
        error: Box<ClientError>,
        undo: String,
    },
}

/// A complete backup set on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupSet {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: BackupManifest,
}

/// What [`restore_both`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Job of the backup set.
    pub job: String,
    /// HVMs restored with the number of LPARs each now has.
    pub hvms: Vec<(String, usize)>,
    /// Whether both HVMs now report exactly the backed-up configuration.
    pub verified: bool,
}

fn check_name(what: &'static str, name: &str) -> Result<(), BackupError> {
    lpm_formats::backup::check_name(what, name).map_err(|e| file_error(Path::new(""), e))
}

/// A backup file's refusal with the file named.
fn file_error(path: &Path, error: BackupFileError) -> BackupError {
    match error {
        BackupFileError::Damaged(detail) => BackupError::Damaged {
            path: path.display().to_string(),
            detail,
        },
        BackupFileError::Newer(newer) => BackupError::Newer(newer),
        BackupFileError::InvalidName { what, name } => BackupError::InvalidName { what, name },
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, BackupError> {
    serde_json::to_vec_pretty(value).map_err(|e| BackupError::Damaged {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// Takes both HVMs' configurations at once and writes them, then the manifest, durably to
/// `DATA/backups/JOB/`. Call it before changing anything on either HVM.
pub async fn backup_both(
    profile: &Profile,
    src_hvm: &str,
    dst_hvm: &str,
    job_id: &str,
    dirs: &ManagerDirs,
) -> Result<BackupSet, BackupError> {
    check_name("job id", job_id)?;
    check_name("HVM name", src_hvm)?;
    check_name("HVM name", dst_hvm)?;
    if src_hvm == dst_hvm {
        return Err(BackupError::Refused(EmgError::new(
            Emg::SameBlade,
            format!("source and destination are both {src_hvm}"),
        )));
    }
    let src = HvmClient::new(profile.hvm(src_hvm)?)?;
    let dst = HvmClient::new(profile.hvm(dst_hvm)?)?;
    let (src_doc, dst_doc) = tokio::join!(src.backup_config(), dst.backup_config());
    let (src_doc, dst_doc) = (src_doc?, dst_doc?);

    let dir = dirs.backup_set(job_id);
    dirs.create_private(&dir).map_err(io_err(&dir))?;
    let mut entries = Vec::with_capacity(2);
    for (hvm, doc) in [(src_hvm, &src_doc), (dst_hvm, &dst_doc)] {
        let file = format!("{hvm}.json");
        let path = dir.join(&file);
        let bytes = to_json(&path, doc)?;
        write_atomic(&path, &bytes).map_err(io_err(&path))?;
        entries.push(BackupEntry {
            hvm: hvm.to_owned(),
            file,
            lpars: doc.lpars.len(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        });
    }
    let manifest = BackupManifest {
        format: MANIFEST_FORMAT,
        job: job_id.to_owned(),
        taken_at: Utc::now(),
        source: src_hvm.to_owned(),
        destination: dst_hvm.to_owned(),
        hvms: entries,
    };
    let path = dir.join(MANIFEST);
    let bytes = to_json(&path, &manifest)?;
    write_atomic(&path, &bytes).map_err(io_err(&path))?;
    tracing::info!(job = job_id, src = src_hvm, dst = dst_hvm, dir = %dir.display(), "HVM configurations backed up");
    Ok(BackupSet { dir, manifest })
}

impl BackupSet {
    /// The complete set taken for `job`.
    pub fn load(dirs: &ManagerDirs, job: &str) -> Result<Self, BackupError> {
        check_name("job id", job)?;
        let dir = dirs.backup_set(job);
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::NotFound {
                    job: job.to_owned(),
                    dir: dirs.backups().display().to_string(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let manifest =
            backup::parse_manifest(&path, &bytes, job).map_err(|e| file_error(&path, e))?;
        Ok(Self { dir, manifest })
    }

    /// Every complete set, newest first; incomplete or damaged ones are skipped with a warning.
    pub fn list(dirs: &ManagerDirs) -> Result<Vec<Self>, BackupError> {
        let root = dirs.backups();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&root)(e)),
        };
        let mut sets = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&root))?;
            let Some(job) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match Self::load(dirs, &job) {
                Ok(set) => sets.push(set),
                Err(e) => tracing::warn!(job, error = %e, "skipping backup set"),
            }
        }
        sets.sort_by_key(|s| std::cmp::Reverse(s.manifest.taken_at));
        Ok(sets)
    }

    /// The configuration documents, checked against the manifest's digests, in manifest order.
    pub fn documents(&self) -> Result<Vec<(String, HvmConfigDoc)>, BackupError> {
        self.manifest
            .hvms
            .iter()
            .map(|entry| {
                let path = self.dir.join(&entry.file);
                let bytes = std::fs::read(&path).map_err(io_err(&path))?;
                let doc = backup::parse_document(&path, &bytes, entry)
                    .map_err(|e| file_error(&path, e))?;
                Ok((entry.hvm.clone(), doc))
            })
            .collect()
    }
}

/// Restores both HVMs of a backup set together, or neither (see the module docs).
pub async fn restore_both(
    profile: &Profile,
    set: &BackupSet,
) -> Result<RestoreReport, BackupError> {
    let docs = set.documents()?;
    let [(a_name, a_doc), (b_name, b_doc)] =
        <[_; 2]>::try_from(docs).map_err(|_| BackupError::Damaged {
            path: set.dir.display().to_string(),
            detail: "a set holds exactly two HVMs".into(),
        })?;
    let a = HvmClient::new(profile.hvm(&a_name)?)?;
    let b = HvmClient::new(profile.hvm(&b_name)?)?;
    let request = LockRequest {
        target: LockTarget::Blade,
        owner: "lparmover restore-config".into(),
        purpose: format!("restore of the backup set of job {}", set.manifest.job),
        ttl_secs: RESTORE_LEASE_SECS,
    };
    let (lease_a, lease_b) = tokio::join!(a.lock(&request), b.lock(&request));
    let (lease_a, lease_b) = match (lease_a, lease_b) {
        (Ok(la), Ok(lb)) => (la, lb),
        (la, lb) => {
            let mut first_error = None;
            for (client, lease) in [(&a, la), (&b, lb)] {
                match lease {
                    Ok(lease) => release(client, &lease.id).await,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.map_or_else(
                || BackupError::Refused(EmgError::new(Emg::Internal, "lease failed")),
                BackupError::from,
            ));
        }
    };
    let result = restore_locked(
        (&a, &a_doc, &lease_a.id),
        (&b, &b_doc, &lease_b.id),
        &set.manifest.job,
    )
    .await;
    tokio::join!(release(&a, &lease_a.id), release(&b, &lease_b.id));
    result
}

async fn release(client: &HvmClient, lease: &str) {
    if let Err(e) = client.unlock(lease).await {
        tracing::warn!(hvm = client.name(), error = %e, "releasing the restore lease failed; it expires by itself");
    }
}

type Side<'a> = (&'a HvmClient, &'a HvmConfigDoc, &'a str);

async fn restore_locked(a: Side<'_>, b: Side<'_>, job: &str) -> Result<RestoreReport, BackupError> {
    // Both must answer and have every LPAR deactivated before either changes.
    let (lpars_a, lpars_b) = tokio::join!(a.0.lpars(), b.0.lpars());
    let (lpars_a, lpars_b) = (lpars_a?, lpars_b?);
    let active: Vec<String> = [(a.0, &lpars_a), (b.0, &lpars_b)]
        .into_iter()
        .flat_map(|(client, lpars)| {
            lpars
                .iter()
                .filter(|v| v.lpar.status != LparStatus::Deactivated)
                .map(move |v| {
                    format!(
                        "{}: LPAR {} ({}) is {}",
                        client.name(),
                        v.lpar.number,
                        v.lpar.name,
                        v.lpar.status.label()
                    )
                })
        })
        .collect();
    if !active.is_empty() {
        return Err(BackupError::Refused(EmgError::new(
            Emg::InvalidLparState,
            format!(
                "{}; deactivate every LPAR on both HVMs, then restore both together (nothing was changed)",
                active.join("; ")
            ),
        )));
    }
    let (undo_a, undo_b) = tokio::join!(a.0.backup_config(), b.0.backup_config());
    let (undo_a, _undo_b) = (undo_a?, undo_b?);

    let restored_a = a.0.restore_config(a.1, Some(a.2)).await?;
    let restored_b = match b.0.restore_config(b.1, Some(b.2)).await {
        Ok(doc) => doc,
        Err(error) => {
            let undo = match a.0.restore_config(&undo_a, Some(a.2)).await {
                Ok(_) => "put back as it was before the restore".to_owned(),
                Err(e) => format!("NOT put back ({e})"),
            };
            return Err(BackupError::Partial {
                restored: a.0.name().to_owned(),
                failed: b.0.name().to_owned(),
                error: Box::new(error),
                undo,
            });
        }
    };
    let verified = same_config(a.1, &restored_a) && same_config(b.1, &restored_b);
    if !verified {
        tracing::warn!(
            job,
            "a restored HVM does not report exactly the backed-up configuration"
        );
    }
    tracing::info!(
        job,
        a = a.0.name(),
        b = b.0.name(),
        "HVM configurations restored together"
    );
    Ok(RestoreReport {
        job: job.to_owned(),
        hvms: vec![
            (a.0.name().to_owned(), restored_a.lpars.len()),
            (b.0.name().to_owned(), restored_b.lpars.len()),
        ],
        verified,
    })
}

/// The seed's success condition: the HVM's configuration is the backed-up one (LPARs come back
/// deactivated).
fn same_config(backup: &HvmConfigDoc, now: &HvmConfigDoc) -> bool {
    let mut expected: Vec<_> = backup
        .lpars
        .iter()
        .map(|l| crate::model::Lpar {
            status: LparStatus::Deactivated,
            ..l.clone()
        })
        .collect();
    let mut got = now.lpars.clone();
    expected.sort_by_key(|l| l.number);
    got.sort_by_key(|l| l.number);
    backup.blade == now.blade && expected == got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_set_says_how_to_list_them() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(dir.path());
        let err = BackupSet::load(&dirs, "nope").unwrap_err();
        assert!(err.to_string().contains("--list"), "{err}");
        assert!(BackupSet::list(&dirs).unwrap().is_empty());
    }

    /// Writes a set for job `job` by hand: the manifest as `manifest` says (its `format` key
    /// left out when `None`), the two documents with `doc_format`.
    fn write_set(dirs: &ManagerDirs, job: &str, format: Option<u32>, doc_format: u32) {
        let fleet =
            crate::model::Fleet::parse(crate::model::fleet::DEMO_FLEET_TOML, "demo").unwrap();
        let dir = dirs.backup_set(job);
        std::fs::create_dir_all(&dir).unwrap();
        let mut hvms = Vec::new();
        for name in ["ch1-b1", "ch1-b2"] {
            let doc = HvmConfigDoc {
                format: doc_format,
                blade_name: name.into(),
                taken_at: Utc::now(),
                blade: fleet.blade(name).unwrap().blade.clone(),
                lpars: Vec::new(),
            };
            let bytes = serde_json::to_vec(&doc).unwrap();
            std::fs::write(dir.join(format!("{name}.json")), &bytes).unwrap();
            hvms.push(serde_json::json!({
                "hvm": name, "file": format!("{name}.json"), "lpars": 0,
                "blake3": blake3::hash(&bytes).to_hex().to_string(),
            }));
        }
        let mut manifest = serde_json::json!({
            "job": job, "taken_at": Utc::now(), "source": "ch1-b1",
            "destination": "ch1-b2", "hvms": hvms,
        });
        if let Some(f) = format {
            manifest["format"] = f.into();
        }
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&manifest).unwrap()).unwrap();
    }

    #[test]
    fn a_set_without_versions_is_version_1_and_newer_sets_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(dir.path());
        write_set(&dirs, "old", None, HvmConfigDoc::FORMAT);
        let old = BackupSet::load(&dirs, "old").unwrap();
        assert_eq!(old.manifest.format, 1);
        assert_eq!(old.documents().unwrap().len(), 2);

        write_set(&dirs, "newer-manifest", Some(MANIFEST_FORMAT + 1), 1);
        let err = BackupSet::load(&dirs, "newer-manifest").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BackupError::Newer(_)), "{text}");
        assert!(
            text.contains("newer-manifest/manifest.json is a backup manifest of format version")
                && text.contains("upgrade lparmover"),
            "{text}"
        );

        write_set(
            &dirs,
            "newer-doc",
            Some(MANIFEST_FORMAT),
            HvmConfigDoc::FORMAT + 1,
        );
        let set = BackupSet::load(&dirs, "newer-doc").unwrap();
        let text = set.documents().unwrap_err().to_string();
        assert!(
            text.contains("ch1-b1.json is a backed-up HVM configuration of format version"),
            "{text}"
        );
    }
}
