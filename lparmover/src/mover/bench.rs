//! A loopback benchmark of the LPAR Mover: an in-memory guest moved over real QUIC on 127.0.0.1.
//! The lead wires it into `lparmover bench live`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::MoveError;
use super::progress::{MoveSummary, Progress};
use super::receiver::{MigrationListener, ReceiveOutcome};
use super::sender::{CompressionMode, Sender, SenderConfig};
use super::testing::{MemGuestConfig, MemPartition};
use super::tls::Identity;
use super::wire::JobTicket;
use crate::model::workload::ContentMix;
use crate::partition::Partition;

/// What to move.
#[derive(Clone, Debug)]
pub struct LoopbackBench {
    /// Guest memory in bytes.
    pub memory_size: u64,
    /// Bytes per second the guest dirties.
    pub dirty_rate: u64,
    /// Content mix.
    pub mix: ContentMix,
    /// Compression policy.
    pub compression: CompressionMode,
    /// Data streams.
    pub streams: usize,
    /// Data connections (one endpoint each).
    pub connections: usize,
    /// Suspension budget.
    pub downtime_limit: Duration,
    /// Wire bandwidth cap (bytes/s), to imitate a slower path.
    pub bandwidth_limit: Option<u64>,
    /// Compare digests before Ready.
    pub verify: bool,
}

impl Default for LoopbackBench {
    fn default() -> Self {
        Self {
            memory_size: 1 << 30,
            dirty_rate: 10_000_000,
            mix: ContentMix::default(),
            compression: CompressionMode::Auto,
            streams: 4,
            connections: 1,
            downtime_limit: Duration::from_millis(50),
            bandwidth_limit: None,
            verify: false,
        }
    }
}

/// Moves an in-memory partition over loopback QUIC and returns the sender's figures, after
/// checking that the destination's memory equals the source's at suspension.
pub async fn loopback(b: &LoopbackBench) -> Result<MoveSummary, MoveError> {
    let src_id = Identity::generate("source-hvm", &[]).map_err(super::tls::TlsError::from)?;
    let dst_id = Identity::generate("destination-hvm", &[]).map_err(super::tls::TlsError::from)?;
    let src = Arc::new(MemPartition::running(&MemGuestConfig {
        memory_size: b.memory_size,
        mix: b.mix,
        dirty_rate: b.dirty_rate,
        ..MemGuestConfig::default()
    }));
    let dst = Arc::new(MemPartition::blank(src.memory_size()));
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = MigrationListener::bind(localhost, &dst_id)?;
    let ticket = JobTicket::generate();
    let incoming = listener.expect(ticket, "bench", src_id.cert.clone(), Arc::clone(&dst));
    let mut cfg = SenderConfig::new(
        localhost,
        listener.local_addr()?,
        src_id,
        dst_id.cert.clone(),
        ticket,
    );
    cfg.compression = b.compression;
    cfg.streams = b.streams;
    cfg.connections = b.connections;
    cfg.downtime_limit = b.downtime_limit;
    cfg.bandwidth_limit = b.bandwidth_limit;
    cfg.verify = b.verify;
    let (ptx, _prx) = watch::channel(Progress::default());
    let sender = Sender::new(Arc::clone(&src), cfg, ptx, CancellationToken::new());
    let ready = sender.run().await?;
    let src_digest = src
        .digest()
        .map_err(MoveError::partition("source digest"))?;
    let summary = ready.commit().await?;
    match incoming.finished().await? {
        ReceiveOutcome::Committed { .. } => {}
        other => {
            return Err(MoveError::Internal(format!(
                "receiver ended with {other:?}"
            )));
        }
    }
    let dst_digest = dst
        .digest()
        .map_err(MoveError::partition("destination digest"))?;
    if src_digest != dst_digest {
        return Err(MoveError::DigestMismatch {
            source_digest: src_digest,
            destination: dst_digest,
        });
    }
    Ok(summary)
}
