//! Mutual TLS on the migration path with certificates pinned by the manager, and QUIC endpoints.
//!
//! Each HVM holds a self-signed certificate ([`Identity`]). The manager gives the sender the
//! receiver's certificate and the receiver the sender's; the verifiers below accept exactly the
//! pinned DER (byte for byte) and check the handshake signature with its key. Names, dates and
//! chains play no part: the pin is the trust.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::udp::{MAX_UDP_PAYLOAD, SplitBatches};
use super::wire::ALPN;

/// The server name the sender asks for (ignored by the pinned verifier, but TLS needs one).
pub const SERVER_NAME: &str = "lparmover-hvm";

/// UDP socket buffer size for migration endpoints (the kernel's `rmem_max` on our hosts).
pub const UDP_BUFFER: usize = 4 << 20;

/// Errors setting up TLS or an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The HVM's certificate could not be made or read.
    #[error("the HVM's migration certificate: {0}")]
    Identity(#[from] crate::tls::TlsError),
    /// rustls refused the configuration (bad key, unsupported algorithm).
    #[error("TLS configuration refused: {0}; check the HVM's migration certificate and key")]
    Config(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration refused: {0}")]
    Quic(String),
    /// Binding the UDP socket failed.
    #[error(
        "binding the migration endpoint to {addr} failed: {source}; check the migration path address"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The HVM's one identity, the same certificate its management API presents.
pub use crate::tls::Identity;

/// ring's provider with TLS 1.3's AES-128-GCM first: every byte of guest memory goes through
/// the AEAD twice (seal, open), and AES-128 does 10 rounds to AES-256's 14 — with the same
/// GHASH, a 128-bit key and a one-time session, it is the cheaper of two sound choices.
/// AES-256-GCM and ChaCha20-Poly1305 stay offered for peers that insist.
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// Accepts exactly one pinned server certificate.
#[derive(Debug)]
struct PinnedServer {
    pinned: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The set of client certificates a listener currently expects (one per open job).
#[derive(Debug, Default, Clone)]
pub struct PinnedClients(Arc<RwLock<HashMap<Vec<u8>, usize>>>);

impl PinnedClients {
    /// Trusts `cert` until as many [`PinnedClients::remove`] as `add` (two moves from the
    /// same source each hold their own pin).
    pub fn add(&self, cert: &[u8]) {
        if let Ok(mut pins) = self.0.write() {
            *pins.entry(cert.to_vec()).or_default() += 1;
        }
    }
    /// Gives back one pin of `cert`.
    pub fn remove(&self, cert: &[u8]) {
        if let Ok(mut pins) = self.0.write()
            && let Some(count) = pins.get_mut(cert)
        {
            *count -= 1;
            if *count == 0 {
                pins.remove(cert);
            }
        }
    }
    fn contains(&self, cert: &[u8]) -> bool {
        self.0.read().map(|s| s.contains_key(cert)).unwrap_or(false)
    }
}

#[derive(Debug)]
struct PinnedClientVerifier {
    pinned: PinnedClients,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pinned.contains(end_entity.as_ref()) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Initial congestion window of migration connections: room for the largest MTU probe (one
/// whole [`MAX_UDP_PAYLOAD`] datagram) and a full-sized packet beside it, twice over.
///
/// Why: quinn's default (14,720 bytes) is smaller than the MTU probes a loopback path climbs
/// to (33 KB, 49 KB, … 65 KB), so right after the handshake one probe fills the window until
/// the peer acknowledges it. quinn-proto 0.11.19 gates even the CONNECTION_CLOSE packet on the
/// window, and a closed connection processes no more ACKs (quinn-rs/quinn#2785, fixed upstream
/// by #2787, not yet released): a connection closed in that moment — a receiver refusing a
/// join secret, a ticket or a digest — never sends its close, drains, and the peer gets a
/// stateless reset instead of the reason. On a loaded host the peer's ACK comes late and that
/// moment is wide. With this window a probe never fills it. A dedicated migration path
/// (≥ 1 Gbit/s, short) takes a 256 KiB first flight without harm.
pub const INITIAL_WINDOW: u64 = 4 * MAX_UDP_PAYLOAD as u64;

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(Arc::new(cubic));
    // Default windows: a short path does not need more (MEASURED.md). Room for many data streams.
    t.max_concurrent_uni_streams(64u32.into());
    t.max_concurrent_bidi_streams(4u32.into());
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    // Discover the path MTU up to MAX_UDP_PAYLOAD; 1200 until then, so any path works.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    // Black-hole detection can fire spuriously under loss: search again soon.
    mtu.black_hole_cooldown(Duration::from_secs(5));
    t.mtu_discovery_config(Some(mtu));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(15)) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

/// QUIC client configuration for a sender: trusts only `pinned_peer`, presents `own`.
pub fn client_config(
    own: &Identity,
    pinned_peer: &CertificateDer<'static>,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        pinned: pinned_peer.clone(),
        algs: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![own.cert.clone()], own.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// QUIC server configuration for a receiver: presents `own`, accepts only clients in `pinned`.
pub fn server_config(
    own: &Identity,
    pinned: PinnedClients,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        pinned,
        algs: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![own.cert.clone()], own.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// A UDP socket with 4 MiB buffers bound to `addr`, ready for quinn.
pub fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, TlsError> {
    let bind = |e| TlsError::Bind { addr, source: e };
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(bind)?;
    // Best effort: the kernel caps these at rmem_max / wmem_max.
    if let Err(e) = sock.set_recv_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the UDP receive buffer");
    }
    if let Err(e) = sock.set_send_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the UDP send buffer");
    }
    sock.bind(&addr.into()).map_err(bind)?;
    sock.set_nonblocking(true).map_err(bind)?;
    Ok(sock.into())
}

/// A quinn endpoint on `addr`, as server when `server` is given. Must run inside a tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, TlsError> {
    let sock = udp_socket(addr)?;
    let mut config = quinn::EndpointConfig::default();
    // Accept the large datagrams MTU discovery may settle on (loopback).
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| TlsError::Quic(format!("max UDP payload size: {e:?}")))?;
    let socket = SplitBatches::wrap(sock).map_err(|e| TlsError::Bind { addr, source: e })?;
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, Arc::new(quinn::TokioRuntime))
        .map_err(|e| TlsError::Bind { addr, source: e })
}
