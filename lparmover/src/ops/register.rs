//! Registering a real HVM by address (the Profile window, `lparmover`'s profile): fetch the
//! certificate it presents, show its fingerprint, pin exactly that certificate once the
//! operator confirms, prove the token works, and store the profile readable by its owner only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::api::HvmClient;
use crate::profile::{Profile, ProfileError, ProfileHvm};

/// How long fetching a certificate may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The certificate an address presented, not trusted yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenCertificate {
    /// The URL it was fetched from.
    pub url: String,
    /// The certificate (PEM), to pin on confirmation.
    pub pem: String,
    /// SHA-256 of the DER certificate, `AB:CD:…`, for the operator to compare.
    pub fingerprint: String,
}

/// Why registering failed (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Not `https://HOST:PORT`.
    #[error("{0:?} is not an HVM address like https://127.0.1.1:40123; give the management URL")]
    BadUrl(String),
    /// No TLS server there.
    #[error(
        "cannot fetch the certificate of {url}: {detail}; check the address and that the HVM runs"
    )]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// A name is missing or taken.
    #[error("{0}")]
    Invalid(String),
    /// The HVM refused the token or did not answer with the pinned certificate.
    #[error("the HVM did not accept the registration: {0}; check the token and the fingerprint")]
    Refused(String),
    /// The token could not be imported.
    #[error("cannot import a token from {path}: {detail}")]
    Import {
        /// The fleet profile.
        path: String,
        /// Why.
        detail: String,
    },
    /// The profile could not be read or written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

fn host_port(url: &str) -> Result<(String, SocketAddr), RegisterError> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .ok_or_else(|| RegisterError::BadUrl(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| RegisterError::BadUrl(url.to_owned()))?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    Ok((host, addr))
}

/// Records the server's certificate and accepts it (the handshake only reads it: no token or
/// request is ever sent over this connection).
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The SHA-256 fingerprint of a DER certificate, `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Connects to `url`, completes a TLS handshake and returns the certificate the server
/// presented (blocking, at most [`FETCH_TIMEOUT`]; run it off the UI thread).
pub fn fetch_certificate(url: &str) -> Result<SeenCertificate, RegisterError> {
    let (host, addr) = host_port(url)?;
    let fetch_err = |detail: String| RegisterError::Fetch {
        url: url.to_owned(),
        detail,
    };
    let provider = crate::tls::provider();
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fetch_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host).map_err(|e| fetch_err(e.to_string()))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| fetch_err(e.to_string()))?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| fetch_err(e.to_string()))?;
    tcp.set_read_timeout(Some(FETCH_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(FETCH_TIMEOUT)))
        .map_err(|e| fetch_err(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| fetch_err(format!("TLS handshake failed: {e}")))?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    let _ = tcp.flush();
    let mut sink = [0u8; 1];
    let _ = tcp.read(&mut sink);
    let der = recorder
        .seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| fetch_err("the server presented no certificate".into()))?;
    let pem = pem_of(&der);
    Ok(SeenCertificate {
        url: url.trim().trim_end_matches('/').to_owned(),
        fingerprint: fingerprint(&der),
        pem,
    })
}

fn pem_of(der: &[u8]) -> String {
    // LF line endings, as the blades write theirs: a pinned PEM reads the same everywhere.
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The token a fleet profile holds for the HVM at `url` (or of that name).
pub fn import_token(fleet_profile: &Path, name: &str, url: &str) -> Result<String, RegisterError> {
    let import_err = |detail: String| RegisterError::Import {
        path: fleet_profile.display().to_string(),
        detail,
    };
    let other = Profile::load(fleet_profile).map_err(|e| import_err(e.to_string()))?;
    let url = url.trim().trim_end_matches('/');
    other
        .hvms
        .iter()
        .find(|h| h.url.trim_end_matches('/') == url || h.name == name)
        .map(|h| h.token.clone())
        .ok_or_else(|| import_err(format!("it registers no HVM at {url} or named {name:?}")))
}

/// What the operator confirmed.
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    /// HVM name.
    pub name: String,
    /// Chassis (empty: the one the blade reports).
    pub chassis: String,
    /// The certificate seen and confirmed.
    pub certificate: SeenCertificate,
    /// The bearer token.
    pub token: String,
}

// By hand, so that secrets (token) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("chassis", &self.chassis)
            .field("certificate", &self.certificate)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Pins the confirmed certificate, proves the token with an inventory call, and adds (or
/// replaces, by name) the HVM in the profile at `path`, written atomically with mode 0600.
pub async fn register(path: &Path, registration: Registration) -> Result<Profile, RegisterError> {
    let name = registration.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(RegisterError::Invalid(
            "give the HVM a name of 1 to 64 characters".into(),
        ));
    }
    if registration.token.trim().is_empty() {
        return Err(RegisterError::Invalid(
            "give the HVM's token, or import it from a fleet profile".into(),
        ));
    }
    let hvm = ProfileHvm {
        name: name.to_owned(),
        chassis: registration.chassis.trim().to_owned(),
        url: registration.certificate.url.clone(),
        cert_pem: registration.certificate.pem.clone(),
        token: registration.token.trim().to_owned(),
        migration_paths: Vec::new(),
    };
    let client = HvmClient::new(&hvm).map_err(|e| RegisterError::Refused(e.to_string()))?;
    let inventory = client
        .inventory()
        .await
        .map_err(|e| RegisterError::Refused(e.to_string()))?;
    // An empty chassis is the one the blade reports about itself.
    let chassis = if hvm.chassis.is_empty() {
        inventory.blade.chassis.clone()
    } else {
        hvm.chassis.clone()
    };
    let hvm = ProfileHvm {
        chassis,
        migration_paths: inventory
            .blade
            .hvm
            .migration_paths
            .iter()
            .map(|p| p.ip)
            .collect(),
        ..hvm
    };
    let mut profile = Profile::load_or_default(path)?;
    if let Some(other) = profile
        .hvms
        .iter()
        .find(|h| h.name != hvm.name && h.url.trim_end_matches('/') == hvm.url)
    {
        return Err(RegisterError::Invalid(format!(
            "{} is already registered as {}; remove that HVM first or register it under its name",
            hvm.url, other.name
        )));
    }
    profile.hvms.retain(|h| h.name != hvm.name);
    profile.hvms.push(hvm);
    profile.save(path)?;
    Ok(profile)
}

/// The SHA-256 fingerprint of the certificate pinned for a registered HVM (None: its PEM does
/// not parse, which `HvmClient::new` reports on first use).
pub fn pinned_fingerprint(hvm: &ProfileHvm) -> Option<String> {
    let certs = crate::tls::parse_certs(&hvm.cert_pem).ok()?;
    certs.first().map(|der| fingerprint(der.as_ref()))
}

/// Removes the HVM named `name` from the profile at `path` (written atomically, 0600). Its
/// LPARs stay where they are; the manager only stops managing it.
pub fn unregister(path: &Path, name: &str) -> Result<Profile, RegisterError> {
    let mut profile = Profile::load(path)?;
    profile.hvm(name)?;
    profile.hvms.retain(|h| h.name != name);
    profile.save(path)?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_are_refused_with_what_to_give() {
        for bad in [
            "127.0.1.1:40123",
            "http://127.0.1.1:1",
            "https://",
            "https://nohost",
        ] {
            let err = fetch_certificate(bad).unwrap_err().to_string();
            assert!(err.contains("not an HVM address"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_pem_made_here_parses_back_to_the_same_certificate() {
        let id = crate::tls::Identity::generate("t", &["127.0.0.1".parse().unwrap()]).unwrap();
        let der = id.cert.clone();
        let pem = pem_of(&der);
        let back = crate::tls::parse_certs(&pem).unwrap();
        assert_eq!(back[0].as_ref(), der.as_ref());
        assert_eq!(fingerprint(&der).len(), 32 * 3 - 1);
    }
}
