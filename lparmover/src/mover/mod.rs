//! The LPAR Mover: live pre-copy of a partition's memory and vCPU state over the migration path.
//!
//! * [`wire`]: the versioned wire format (sequence diagram and receiver state machine there).
//! * [`tls`]: mutual TLS with pinned certificates, QUIC endpoints with 4 MiB UDP buffers.
//! * [`udp`]: the endpoints' UDP socket, splitting GSO batches so datagrams can reach 64 KiB.
//! * [`pages`]: page batches — zero pages as a bitmap, the rest zstd or raw.
//! * [`sender`]: the source side, generic over [`crate::partition::Partition`].
//! * [`receiver`]: the destination side — a listener that accepts a partition only for a job
//!   ticket it was told to expect, and a pure state machine.
//! * [`progress`]: serde progress events and the final [`progress::MoveSummary`].
//! * [`testing`]: an in-memory partition with a dirtying writer thread (tests and benchmarks).
//! * [`bench`]: a loopback benchmark returning a [`progress::MoveSummary`].
//!
//! Who does what: hvmsim owns partitions and endpoints and runs a [`sender::Sender`] (source) or
//! a [`receiver::MigrationListener`] (destination); the manager issues the ticket, pins the
//! certificates, watches [`progress::Progress`], journals the commit point and then calls
//! [`sender::SwitchoverReady::commit`] (or [`sender::SwitchoverReady::abort`]).
//!
//! ```ignore
//! // Destination HVM, once per blade: bind the migration path.
//! let listener = MigrationListener::<MyPartition>::bind(dst_migration_addr, &dst_identity)?;
//! // When the manager opens the job: blank, paused partition of the source's size.
//! let incoming = listener.expect(ticket, "web-01", src_identity_cert, Arc::new(blank_partition));
//! // … `incoming.status` is a watch of the receiver's progress …
//! match incoming.finished().await? {
//!     ReceiveOutcome::Committed { .. } => { /* wait for the manager's "resume" */ }
//!     ReceiveOutcome::Aborted { .. } => { /* memory already scrubbed */ }
//!     ReceiveOutcome::Undecided => { /* paused, memory kept: the manager decides */ }
//! }
//!
//! // Source HVM, per job.
//! let cfg = SenderConfig::new(src_migration_addr, dst_listener_addr, src_identity, dst_cert, ticket);
//! let (progress_tx, progress_rx) = tokio::sync::watch::channel(Progress::default());
//! let cancel = CancellationToken::new();
//! let sender = Sender::new(Arc::clone(&partition), cfg, progress_tx, cancel.clone());
//! let timeout = sender.timeout_handle(); // `timeout.extend(d)` from the "Extend timeout" button
//! let ready = sender.run().await?;       // source paused, destination holds everything
//! // Manager journals the commit point, then:
//! let summary = ready.commit().await?;   // or `ready.abort("reason").await?` → source resumes
//! ```

pub mod bench;
pub mod pages;
pub mod progress;
pub mod receiver;
pub mod sender;
mod settle;
pub mod testing;
pub mod tls;
pub mod udp;
// The wire format lives in `lpm-formats` (fuzzed without this crate); the old path stays.
pub use lpm_formats::wire;

#[cfg(test)]
mod quic_tests;

pub use progress::{MoveSummary, Progress, Stage};
pub use receiver::{
    CommitHandle, IncomingMove, MigrationListener, ReceiveOutcome, SettleCall, SettleInbox,
};
pub use sender::{
    BandwidthHandle, CompressionMode, Sender, SenderConfig, SwitchoverReady, TimeoutHandle,
};
pub use tls::Identity;
pub use wire::{JobTicket, SettleStep, TicketError, Verdict};

use crate::partition::{MemoryDigest, PartitionError};

/// The seed's message when a move times out without converging.
pub const MEMORY_WRITE_INTENSIVE: &str =
    "LPAR Migration process was canceled. Memory write is intensive.";

/// QUIC application close codes of the migration path.
pub mod close_code {
    /// The move finished (committed).
    pub const DONE: u32 = 0;
    /// The sender aborted: the receiver scrubs what it received.
    pub const ABORT: u32 = 1;
    /// A protocol error.
    pub const PROTOCOL: u32 = 2;
    /// The receiver refused the connection (no certificate, unknown join secret).
    pub const REFUSED: u32 = 3;
    /// The receiver refused the move for a [`super::wire::RefuseCode`]: `REFUSED_BASE + code`,
    /// with the refusal's text as the close reason. The close carries the refusal because the
    /// `Refused` message on the control stream may not arrive: stream data still in flight
    /// when a connection closes is discarded, the CONNECTION_CLOSE frame is not.
    pub const REFUSED_BASE: u32 = 0x100;

    /// The close code of a refusal.
    pub fn refused(code: super::wire::RefuseCode) -> u32 {
        REFUSED_BASE + code as u32
    }

    /// The refusal a close code carries, if it is one.
    pub fn refusal(close: u32) -> Option<super::wire::RefuseCode> {
        let code = u16::try_from(close.checked_sub(REFUSED_BASE)?).ok()?;
        super::wire::RefuseCode::from_u16(code).ok()
    }
}

/// Why a move failed. Before the switch-over commit, every error leaves the source running
/// (resumed, un-throttled, dirty bits restored) and the destination scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// TLS or endpoint setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The QUIC connection could not be opened.
    #[error(
        "connecting to the destination's migration path at {addr} failed: {reason}; check the migration path addresses, and that the pinned certificates are the HVMs' current ones"
    )]
    Connect {
        addr: std::net::SocketAddr,
        reason: String,
    },
    /// The connection was lost mid-move.
    #[error(
        "the migration path connection was lost: {0}; the source keeps running, retry the move"
    )]
    ConnectionLost(String),
    /// A frame could not be read or decoded.
    #[error("bad frame on the migration path: {0}")]
    Wire(#[from] wire::WireError),
    /// A message arrived that the current state does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The receiver refused the move.
    #[error("the destination refused the move ({code:?}): {message}")]
    Refused {
        code: wire::RefuseCode,
        message: String,
    },
    /// A partition operation failed.
    #[error("{what} failed: {source}")]
    Partition {
        what: &'static str,
        #[source]
        source: PartitionError,
    },
    /// Encoding pages failed.
    #[error(transparent)]
    Encode(#[from] pages::EncodeError),
    /// Applying pages failed on the receiver.
    #[error(transparent)]
    Apply(#[from] pages::ApplyError),
    /// The move was cancelled.
    #[error("the move was cancelled; the source keeps running and the destination was scrubbed")]
    Cancelled,
    /// An abort reached a destination that had already been committed (by the manager): the
    /// source stays paused and must not resume.
    #[error(
        "the destination was already committed; the source stays paused (run `lparmover recover`)"
    )]
    AlreadyCommitted,
    /// The move did not converge before the timeout (the seed's message).
    #[error("LPAR Migration process was canceled. Memory write is intensive.")]
    TimedOut {
        /// Rounds done.
        rounds: u32,
        /// Dirty bytes left at the timeout.
        dirty_bytes: u64,
    },
    /// The move's convergence schedule gave up: its rounds kept stalling up to its last step.
    #[error(
        "LPAR Migration process was canceled. Memory write is intensive: {stalled_rounds} pre-copy rounds did not shrink the dirty memory (the convergence schedule gives up there), at a downtime limit of {downtime_limit_ms} ms after {rounds} rounds; the source keeps running"
    )]
    DidNotConverge {
        /// Rounds done.
        rounds: u32,
        /// Rounds that did not shrink the dirty set.
        stalled_rounds: u32,
        /// The downtime limit in force at the end, ms.
        downtime_limit_ms: u64,
    },
    /// The destination's memory did not match the source's.
    #[error(
        "memory digest mismatch: source {source_digest}, destination {destination}; the move was aborted and the source resumed"
    )]
    DigestMismatch {
        source_digest: MemoryDigest,
        destination: MemoryDigest,
    },
    /// The peer took too long for a step.
    #[error("the peer did not answer within {0:?} while {1}; check the migration path")]
    PeerTimeout(std::time::Duration, &'static str),
    /// An internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl MoveError {
    /// What the operator should do about it (the seed pairs every message with an action).
    pub fn action(&self) -> &'static str {
        match self {
            Self::TimedOut { .. } => {
                "Reduce the memory load of the guest and migrate again, or migrate again and extend \
                 the timeout while memory data is being transferred."
            }
            Self::DidNotConverge { .. } => {
                "Reduce the memory load of the guest, or give the convergence schedule a higher \
                 last downtime limit or more stalled rounds before it gives up, and migrate again."
            }
            Self::Cancelled => "Nothing to do: the LPAR keeps running on the source.",
            Self::Connect { .. } | Self::ConnectionLost(_) | Self::PeerTimeout(..) => {
                "Check the migration path (addresses, link, certificates registered in the manager) \
                 and migrate again; the LPAR keeps running on the source."
            }
            Self::Refused { .. } => {
                "Open the migration job again from the manager (a ticket is valid once) and check \
                 that the destination was prepared for this LPAR."
            }
            _ => "Migrate again; if it fails the same way, collect the HVM system logs.",
        }
    }

    /// The catalogue error an operator sees for this failure. Each kind keeps its own row: a
    /// digest mismatch or a protocol error is never shown as a refused connection.
    pub fn emg(&self) -> crate::emg::EmgError {
        use crate::emg::Emg;
        let kind = match self {
            Self::Cancelled => Emg::TerminatedByUser,
            Self::TimedOut { .. } | Self::DidNotConverge { .. } => Emg::MemoryWriteIntensive,
            Self::Connect { .. } | Self::ConnectionLost(_) | Self::PeerTimeout(..) => {
                Emg::MoverConnectionRefused
            }
            Self::Wire(_) | Self::Protocol(_) | Self::Encode(_) | Self::Apply(_) => {
                Emg::MoverProtocolError
            }
            Self::Refused {
                code: wire::RefuseCode::Digest,
                ..
            } => Emg::MemoryDigestMismatch,
            Self::Refused {
                code: wire::RefuseCode::Protocol,
                ..
            } => Emg::MoverProtocolError,
            Self::Refused { .. } => Emg::MoverRefused,
            Self::DigestMismatch { .. } => Emg::MemoryDigestMismatch,
            Self::AlreadyCommitted => Emg::InvalidLparState,
            Self::Tls(_) | Self::Partition { .. } | Self::Internal(_) => Emg::Internal,
        };
        crate::emg::EmgError::new(kind, self.to_string())
    }

    pub(crate) fn partition(what: &'static str) -> impl FnOnce(PartitionError) -> Self {
        move |source| Self::Partition { what, source }
    }
}

fn conn_lost(e: impl std::fmt::Display) -> MoveError {
    MoveError::ConnectionLost(e.to_string())
}
