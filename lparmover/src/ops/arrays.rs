//! The storage arrays a manager knows (the WWN Setting window's Storage Selection, `storagecli
//! array …`, `storagecli login`): listing them with what they answer, adding one by address the
//! way an HVM is registered (fetch the certificate it presents, pin it once the operator
//! confirms its fingerprint, prove the token), and the seed's Storage Password Setting: a user ID
//! and password checked against the array, saved in the profile (mode 0600) only when asked.

use std::path::Path;

use serde::Serialize;

use crate::api::array::{ArrayClient, ArrayClientError, ArrayInfo, Credentials};
use crate::ops::register::SeenCertificate;
use crate::profile::{Profile, ProfileArray, ProfileError};
use crate::storage::with_session;

/// The port arrays listen on unless it was taken when they first started.
pub const ARRAY_API_PORT: u16 = 40200;

/// Why an array could not be added or logged in to; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ArrayOpError {
    /// The profile could not be read or written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The array refused or could not be reached.
    #[error(transparent)]
    Array(#[from] ArrayClientError),
    /// Something given is missing or wrong.
    #[error("{0}")]
    Invalid(String),
}

/// One array as the Storage Selection shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ArrayRow {
    /// Name in the profile.
    pub name: String,
    /// API address.
    pub url: String,
    /// What it answered, or why it did not.
    pub info: Result<ArrayInfo, String>,
    /// The user whose login the profile holds.
    pub saved_user: Option<String>,
}

/// Every array of the profile, asked in parallel.
pub async fn list(profile: &Profile) -> Vec<ArrayRow> {
    futures::future::join_all(profile.arrays.iter().map(|a| async move {
        ArrayRow {
            name: a.name.clone(),
            url: a.url.clone(),
            info: with_session(a, |c| async move { c.info().await })
                .await
                .map_err(|e| e.to_string()),
            saved_user: a.credentials.as_ref().map(|c| c.user.clone()),
        }
    }))
    .await
}

/// An address as the operator types it: `127.0.4.1`, `127.0.4.1:40200` or a URL.
pub fn array_url(address: &str) -> Result<String, ArrayOpError> {
    let text = address.trim().trim_end_matches('/');
    if text.is_empty() {
        return Err(ArrayOpError::Invalid(
            "give the IP address of one of the array's controllers, e.g. 127.0.4.1".into(),
        ));
    }
    let authority = text.strip_prefix("https://").unwrap_or(text);
    if authority.contains('/') || text.starts_with("http://") {
        return Err(ArrayOpError::Invalid(format!(
            "{text:?} is not an array address; give IP, IP:PORT or https://IP:PORT"
        )));
    }
    Ok(if authority.contains(':') {
        format!("https://{authority}")
    } else {
        format!("https://{authority}:{ARRAY_API_PORT}")
    })
}

/// The profile entry of the array whose state directory (an `hvmsim array`) is `dir`: its
/// address, certificate and token are read there.
pub fn entry_from_state_dir(name: &str, dir: &Path) -> Result<ProfileArray, ArrayOpError> {
    #[derive(serde::Deserialize)]
    struct Endpoint {
        url: String,
    }
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| {
            ArrayOpError::Invalid(format!(
                "{} holds no running array ({file}: {e})",
                dir.display()
            ))
        })
    };
    let endpoint: Endpoint = serde_json::from_str(&read("endpoint.json")?).map_err(|e| {
        ArrayOpError::Invalid(format!("{}/endpoint.json is damaged: {e}", dir.display()))
    })?;
    Ok(ProfileArray {
        name: name.to_owned(),
        url: endpoint.url,
        cert_pem: read("identity/cert.pem")?,
        token: read("identity/token")?.trim().to_owned(),
        credentials: None,
    })
}

/// The token a fleet profile (`hvmsim fleet` writes one) holds for the array at `url`.
pub fn import_token(fleet_profile: &Path, url: &str) -> Result<String, ArrayOpError> {
    let other = Profile::load(fleet_profile)?;
    let url = url.trim().trim_end_matches('/');
    other
        .arrays
        .iter()
        .find(|a| a.url.trim_end_matches('/') == url)
        .map(|a| a.token.clone())
        .ok_or_else(|| {
            ArrayOpError::Invalid(format!(
                "{} registers no array at {url}",
                fleet_profile.display()
            ))
        })
}

/// Adds (or replaces, by name) an array in the profile at `path`: the array is asked with the
/// pinned certificate and the token, and must be named `expected` when one is given. A login
/// the profile already holds for it is kept. Returns what it answered.
pub async fn add(
    path: &Path,
    entry: ProfileArray,
    expected: Option<&str>,
) -> Result<ArrayInfo, ArrayOpError> {
    if entry.token.trim().is_empty() {
        return Err(ArrayOpError::Invalid(
            "give the array's API token (or import it from the fleet's profile)".into(),
        ));
    }
    let info = ArrayClient::new(&entry)?.info().await?;
    if let Some(name) = expected
        && info.name.as_str() != name
    {
        return Err(ArrayOpError::Invalid(format!(
            "the array there is named {}, not {name}; register it under its own name",
            info.name
        )));
    }
    let name = info.name.to_string();
    let mut profile = Profile::load_or_default(path)?;
    if let Some(other) = profile
        .arrays
        .iter()
        .find(|a| a.name != name && a.url.trim_end_matches('/') == entry.url.trim_end_matches('/'))
    {
        return Err(ArrayOpError::Invalid(format!(
            "{} is already registered as {}; remove that array first",
            entry.url, other.name
        )));
    }
    let kept = profile
        .arrays
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.credentials.clone());
    profile.arrays.retain(|a| a.name != name);
    profile.arrays.push(ProfileArray {
        name,
        credentials: kept,
        ..entry
    });
    profile.save(path)?;
    Ok(info)
}

/// The profile entry for an address whose certificate the operator confirmed (Add Storage).
pub fn entry_from_certificate(certificate: &SeenCertificate, token: &str) -> ProfileArray {
    ProfileArray {
        name: String::new(),
        url: certificate.url.clone(),
        cert_pem: certificate.pem.clone(),
        token: token.trim().to_owned(),
        credentials: None,
    }
}

/// Storage Password Setting for one array: proves `credentials` by logging in (and out), then
/// returns the profile with them in place; it is written to `path` only when `save` (the seed's
/// "Save password setting"), else the caller keeps it for this session. `None` forgets the
/// login.
pub async fn set_login(
    path: &Path,
    profile: &Profile,
    array: &str,
    credentials: Option<Credentials>,
    save: bool,
) -> Result<Profile, ArrayOpError> {
    let entry = profile.array(array)?.clone();
    if let Some(c) = &credentials {
        crate::api::array::validate_credentials(&c.user, &c.password)
            .map_err(ArrayOpError::Invalid)?;
        let client = ArrayClient::new(&entry)?;
        let session = client.login(c).await?;
        client.with_session(Some(session.token)).logout().await?;
    }
    let mut updated = profile.clone();
    if let Some(e) = updated.arrays.iter_mut().find(|e| e.name == array) {
        e.credentials = credentials.clone();
    }
    if save || credentials.is_none() {
        // Saved to disk: what is already in the file, plus this array's login.
        let mut on_disk = Profile::load(path)?;
        if let Some(e) = on_disk.arrays.iter_mut().find(|e| e.name == array) {
            e.credentials = credentials;
        }
        on_disk.save(path)?;
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_may_be_an_ip_an_ip_with_port_or_a_url() {
        assert_eq!(
            array_url("127.0.4.1").ok().as_deref(),
            Some("https://127.0.4.1:40200")
        );
        assert_eq!(
            array_url(" 127.0.4.1:41000 ").ok().as_deref(),
            Some("https://127.0.4.1:41000")
        );
        assert_eq!(
            array_url("https://127.0.4.2:40200/").ok().as_deref(),
            Some("https://127.0.4.2:40200")
        );
        assert!(array_url("").is_err());
        assert!(array_url("http://127.0.4.1").is_err());
        assert!(array_url("127.0.4.1/v1").is_err());
    }
}
