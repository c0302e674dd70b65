//! Certificates and TLS settings shared by the management API and its clients.
//!
//! Every HVM has its own self-signed certificate; the manager pins exactly that certificate at
//! registration (it is written to the profile), so no CA is trusted and a stolen address alone
//! gets an attacker nothing. rustls runs on `ring`, like quinn.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

/// A certificate problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM document did not hold what it should.
    #[error("invalid {what} PEM: {detail}; register the HVM again to refresh it")]
    Pem { what: &'static str, detail: String },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
}

/// An HVM's (or array's) certificate and private key: one identity for both planes, the
/// management API's HTTPS ([`Identity::server_config`]) and the migration path's mutual TLS
/// (`mover::tls`), so the certificate a manager pins at registration is the one both present.
pub struct Identity {
    /// The certificate (DER), what a peer pins.
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity({} byte certificate, key hidden)",
            self.cert.len()
        )
    }
}

impl Identity {
    /// A fresh self-signed certificate (ECDSA P-256) valid for `name` and the given addresses.
    pub fn generate(name: &str, addresses: &[IpAddr]) -> Result<Self, TlsError> {
        let mut sans: Vec<String> = vec![name.to_owned()];
        sans.extend(addresses.iter().map(|a| a.to_string()));
        let certified = rcgen::generate_simple_self_signed(sans)?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// The identity stored as PEM (certificate; PKCS#8 private key), checked: a damaged file is
    /// refused here, when the server starts, not at the first handshake.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let cert = parse_certs(cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Pem {
                what: "certificate",
                detail: "empty chain".into(),
            })?;
        let key =
            PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
                what: "PKCS#8 private key",
                detail: e.to_string(),
            })?;
        Ok(Self {
            cert,
            key,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The certificate, PEM (what a manager pins and a profile stores).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (PKCS#8), to store it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// A rustls server configuration presenting this identity over HTTPS.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.private_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The crypto provider every TLS endpoint of the project uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate of a PEM document.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate",
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// A client configuration that trusts exactly the pinned certificate and nothing else.
pub fn pinned_client_config(pinned_cert_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(pinned_cert_pem)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_stored_as_pem_reads_back_the_same_for_both_planes() {
        let made = Identity::generate("ch1-b1", &["127.0.1.1".parse().unwrap()]).unwrap();
        let back = Identity::from_pem(made.cert_pem(), made.key_pem()).unwrap();
        assert_eq!(
            back.cert, made.cert,
            "the pinned certificate is the stored one"
        );
        assert_eq!(
            parse_certs(back.cert_pem()).unwrap(),
            vec![made.cert.clone()]
        );
        // HTTPS and the migration path both accept it.
        back.server_config().unwrap();
        crate::mover::tls::client_config(&back, &made.cert).unwrap();
        assert!(
            !format!("{back:?}").contains("PRIVATE KEY"),
            "the key never reaches a log"
        );
    }

    #[test]
    fn a_damaged_key_or_certificate_is_refused_when_read() {
        let made = Identity::generate("ch1-b1", &[]).unwrap();
        let err = Identity::from_pem(made.cert_pem(), "not a key").unwrap_err();
        assert!(err.to_string().contains("PKCS#8 private key"), "{err}");
        let err = Identity::from_pem("", made.key_pem()).unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
