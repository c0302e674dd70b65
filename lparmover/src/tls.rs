//! Certificates and TLS settings shared by the management API and its clients.
//!
//! Every HVM has its own self-signed certificate; the manager pins exactly that certificate at
//! registration (it is written to the profile), so no CA is trusted and a stolen address alone
//! gets an attacker nothing. rustls runs on `ring`, like quinn.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

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

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Identity {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { cert_pem, key_pem: <redacted> }")
    }
}

impl Identity {
    /// A fresh self-signed certificate valid for `name` and the given addresses.
    pub fn generate(name: &str, addresses: &[IpAddr]) -> Result<Self, TlsError> {
        let mut sans: Vec<String> = vec![name.to_owned()];
        sans.extend(addresses.iter().map(|a| a.to_string()));
        let certified = rcgen::generate_simple_self_signed(sans)?;
        Ok(Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// Certificate chain for rustls.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        parse_certs(&self.cert_pem)
    }

    /// Private key for rustls.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "private key",
            detail: e.to_string(),
        })
    }

    /// The same certificate and key for the migration path (QUIC with pinned certificates).
    pub fn mover_identity(&self) -> Result<crate::mover::Identity, TlsError> {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        let cert = self
            .cert_chain()?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Pem {
                what: "certificate",
                detail: "empty chain".into(),
            })?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| {
            TlsError::Pem {
                what: "PKCS#8 private key",
                detail: e.to_string(),
            }
        })?;
        Ok(crate::mover::Identity::from_der(
            cert.to_vec(),
            key.secret_pkcs8_der().to_vec(),
        ))
    }

    /// A rustls server configuration presenting this identity.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain()?, self.private_key()?)?;
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
