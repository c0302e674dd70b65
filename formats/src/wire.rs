//! The LPAR Mover wire format (protocol version [`PROTOCOL_VERSION`]).
//!
//! One QUIC connection joins the source HVM (the *sender*, QUIC client) and the destination HVM
//! (the *receiver*, QUIC server). Both ends present a certificate that the manager pinned for this
//! job; the sender also presents the one-time job ticket in [`Message::Hello`]. The connection holds
//! one bidirectional **control** stream, opened by the sender, and `data_streams` unidirectional
//! **data** streams (sender → receiver) that carry only [`Message::Batch`] frames.
//!
//! quinn drives each endpoint from one task, so one connection tops out at about one core. The
//! sender may open *extra data connections*, each from its own endpoint, with the same pinned
//! certificates; each of their data streams opens with [`Message::Join`] carrying the secret of
//! the move's [`Message::Welcome`] (the job ticket is single-use, the join secret lives as long
//! as the move). Control stays on the first connection.
//!
//! ```text
//!  sender (source HVM)                                      receiver (destination HVM)
//!  ───────────────────                                      ──────────────────────────
//!  QUIC handshake, mutual TLS, both certs pinned ───────────────▶
//!  control: Hello{version, ticket, LPAR, memory, page size, streams} ─▶ ticket expected? unused?
//!                                                           for this LPAR and source? size fits?
//!          ◀────────────────────────────────────────────── Welcome{version, join}   (or Refused{code, why})
//!  optional extra data connections (own endpoint each, same pinned certs), every uni stream
//!  opening with Join{join} ──────────────────────────────────▶ attached to the move's session
//!  data ×N: Batch{round 0, runs, zero mask, raw|zstd}… ─────────▶ write pages (any stream, any order)
//!  control: RoundEnd{round 0, batches} ─────────────────────────▶ wait until that many batches applied
//!          ◀────────────────────────────────────────────── RoundAck{round 0, batches}
//!      … rounds 1, 2 … with the pages dirtied meanwhile (a round starts only after the previous
//!        round's ack, so a page written twice always lands in round order) …
//!  pause the guest, take the last dirty bitmap
//!  data ×N: Batch{round n}… ────────────────────────────────────▶
//!  control: Switchover{round n, batches, vCPU state, digest?} ──▶ apply, load vCPU state, compare
//!          ◀────────────────────────────────────────────── Ready{digest?}   (destination paused)
//!  ── the caller journals the commit point ──
//!  control: Commit ─────────────────────────────────────────────▶ keep memory (caller resumes it)
//!          ◀────────────────────────────────────────────── Committed
//!  or, at any time before Commit:
//!  control: Abort{reason} ──────────────────────────────────────▶ scrub (zero) all received memory
//!          ◀────────────────────────────────────────────── Aborted
//!
//!  settlement (the manager's switch-over lease lapsed while the source was paused): a new
//!  connection from the same pinned certificate, one bidirectional stream
//!  Settle{ticket, Decide} ──────────────────────────────────────▶ resumed already? else write
//!                                                                 "fenced" durably (never resume)
//!          ◀────────────────────────────────────────────── Verdict{Resumed | Fenced}
//!  (Resumed: the source logs its vFCs out, then)
//!  Settle{ticket, SourceLoggedOut} ─────────────────────────────▶ vFCs log in with the WWPNs
//!          ◀────────────────────────────────────────────── Verdict{Resumed}
//! ```
//!
//! The receiver is an explicit state machine ([`super::receiver::RecvState`], driven by the pure
//! function [`super::receiver::step`]); anything else in a state is refused as out of order:
//!
//! ```text
//!   AwaitHello ──Hello──▶ Receiving{r} ──RoundEnd{r}──▶ Draining{r} ──all batches──▶ Receiving{r+1}
//!                           │      ▲  (if all batches already applied, straight back to Receiving{r+1})
//!                           │      └──────── Batch{r} applied ───────┘
//!                           └──Switchover{r}──▶ Finishing{r} ──all batches──▶ Ready ──Commit──▶ Committed
//!   any state before Committed ──Abort / connection lost before Ready──▶ Aborted (memory scrubbed)
//! ```
//!
//! ## Framing
//!
//! Every message is one frame: an 8-byte header then `len` payload bytes, all integers
//! little-endian:
//!
//! ```text
//!   0      2      4              8
//!   ┌──────┬──────┬──────────────┬──────────────────────────┐
//!   │ kind │flags │ len (u32)    │ payload (len ≤ MAX_PAYLOAD)
//!   └──────┴──────┴──────────────┴──────────────────────────┘
//! ```
//!
//! `flags` must be zero in this version. The length is checked against [`MAX_PAYLOAD`] *before*
//! anything is allocated, unknown kinds are refused, and a payload must be consumed exactly.
//!
//! A [`PageBatch`] names up to [`MAX_BATCH_PAGES`] pages as runs of consecutive pages; a 64-bit
//! mask marks the all-zero pages, which travel as that bit only. The other pages follow, in
//! order, raw or as one zstd frame.

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
#[cfg(feature = "tokio")]
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::guest::{MemoryDigest, PAGE_SIZE, VcpuState};

/// Version of this wire format; [`Message::Hello`] carries it and the receiver refuses others.
pub const PROTOCOL_VERSION: u16 = 2;
/// Four bytes opening every [`Hello`] payload, so a stray peer is told apart from an old version.
pub const HELLO_MAGIC: [u8; 4] = *b"LPM\x01";
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload of one frame (1 MiB). Checked before any allocation.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Most pages in one [`PageBatch`] (the zero mask is one `u64`).
pub const MAX_BATCH_PAGES: usize = 64;
/// Longest free-text reason in [`Message::Abort`] / [`Message::Refused`].
pub const MAX_REASON: usize = 4096;
/// Largest vCPU state carried by [`Message::Switchover`].
pub const MAX_VCPU_STATE: usize = MAX_PAYLOAD - 1024;
/// The ALPN protocol name of the migration path.
pub const ALPN: &[u8] = b"lparmover-mover/1";

/// A one-time job ticket the manager issues for one move (32 random bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobTicket(pub [u8; 32]);

impl JobTicket {
    /// A fresh random ticket.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Compares in constant time (the ticket is a secret).
    pub fn matches(&self, other: &JobTicket) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Hex form, for the management API.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form: the one parser of tickets, for the migration path, the
    /// connectivity test and every API request that carries one.
    pub fn from_hex(s: &str) -> Result<Self, TicketError> {
        let bytes = hex::decode(s).map_err(|_| TicketError::NotHex)?;
        let len = bytes.len();
        let arr: [u8; 32] = bytes.try_into().map_err(|_| TicketError::Length(len))?;
        Ok(Self(arr))
    }
}

/// Why a job ticket's hex form does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not hexadecimal.
    #[error("ticket is not hexadecimal; give the 64 hex digits the manager issued for this job")]
    NotHex,
    /// Hexadecimal, but not 32 bytes.
    #[error(
        "ticket holds {0} bytes, not 32; give the 64 hex digits the manager issued for this job"
    )]
    Length(usize),
}

impl std::fmt::Debug for JobTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only a prefix: the ticket is a secret.
        write!(f, "JobTicket({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer sent a frame kind this version does not know.
    #[error("unknown message kind {0:#06x}; the peer speaks another protocol version")]
    UnknownKind(u16),
    /// Non-zero flags.
    #[error("message flags {0:#06x} are not zero; the peer speaks another protocol version")]
    BadFlags(u16),
    /// The header announces a payload above [`MAX_PAYLOAD`].
    #[error("frame of {len} bytes is larger than the {MAX_PAYLOAD}-byte maximum; refusing it")]
    Oversize { len: u64 },
    /// The payload does not parse.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The stream ended inside a frame.
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    /// Reading the stream failed.
    #[error("reading a frame failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How the non-zero pages of a batch travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Encoding {
    /// Page bytes as they are.
    Raw = 0,
    /// One zstd frame holding all non-zero pages.
    Zstd = 1,
}

/// Up to [`MAX_BATCH_PAGES`] pages of one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageBatch {
    /// The round these pages belong to.
    pub round: u32,
    /// Runs of consecutive pages `(first_page, count)`, in the batch's page order.
    pub runs: Vec<(u64, u8)>,
    /// Bit `i` set: the batch's `i`-th page is all zeros and has no bytes in `payload`.
    pub zero_mask: u64,
    /// How `payload` is encoded.
    pub encoding: Encoding,
    /// The non-zero pages, in order, encoded as `encoding` says.
    pub payload: Bytes,
}

impl PageBatch {
    /// Number of pages the batch names.
    pub fn page_count(&self) -> usize {
        self.runs.iter().map(|(_, n)| usize::from(*n)).sum()
    }

    /// Number of pages whose bytes are in the payload.
    pub fn nonzero_count(&self) -> usize {
        self.page_count() - self.zero_mask.count_ones() as usize
    }

    /// The pages of the batch in order.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs
            .iter()
            .flat_map(|&(first, n)| (0..u64::from(n)).map(move |i| first + i))
    }

    fn validate(&self) -> Result<(), WireError> {
        let count = self.page_count();
        if count == 0 || count > MAX_BATCH_PAGES {
            return Err(WireError::Malformed("a page batch must name 1 to 64 pages"));
        }
        if self
            .runs
            .iter()
            .any(|(first, n)| *n == 0 || first.checked_add(u64::from(*n)).is_none())
        {
            return Err(WireError::Malformed(
                "a page batch has an empty or overflowing run",
            ));
        }
        if count < 64 && self.zero_mask >> count != 0 {
            return Err(WireError::Malformed("zero mask marks pages past the batch"));
        }
        if self.encoding == Encoding::Raw && self.payload.len() != self.nonzero_count() * PAGE_SIZE
        {
            return Err(WireError::Malformed(
                "raw page batch payload is not one page per non-zero page",
            ));
        }
        Ok(())
    }

    /// Decodes the non-zero pages into `out` (cleared first; `nonzero_count` pages long after).
    /// The decompressed size is bounded by the page count before anything is allocated.
    pub fn decode_pages(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let want = self.nonzero_count() * PAGE_SIZE;
        out.clear();
        match self.encoding {
            Encoding::Raw => out.extend_from_slice(&self.payload),
            Encoding::Zstd => {
                out.reserve(want);
                // One decompression context per thread, reused (creating one per batch costs
                // an allocation and its initialisation).
                thread_local! {
                    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                        const { std::cell::RefCell::new(None) };
                }
                let n = DECOMPRESSOR.with(|cell| -> Result<usize, WireError> {
                    let mut slot = cell.borrow_mut();
                    let dec = match &mut *slot {
                        Some(d) => d,
                        None => slot.insert(zstd::bulk::Decompressor::new()?),
                    };
                    dec.decompress_to_buffer(&self.payload[..], out)
                        .map_err(|_| WireError::Malformed("zstd page data does not decompress"))
                })?;
                if n != want {
                    return Err(WireError::Malformed(
                        "zstd page data does not hold one page per non-zero page",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The first message of the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The one-time ticket the manager issued for this move.
    pub ticket: JobTicket,
    /// The LPAR the sender moves (its name): the ticket is valid for that LPAR only.
    pub lpar: String,
    /// Guest memory size in bytes.
    pub memory_size: u64,
    /// Page size in bytes (must be [`PAGE_SIZE`]).
    pub page_size: u32,
    /// Number of data streams the sender will open.
    pub data_streams: u16,
}

/// The last control message of the sender before the commit decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switchover {
    /// The final round.
    pub round: u32,
    /// Number of batches sent in the final round.
    pub batches: u64,
    /// vCPU state saved on the paused source.
    pub vcpu: VcpuState,
    /// The source's memory digest taken while paused, when verification is asked for.
    pub digest: Option<MemoryDigest>,
}

/// Why the receiver refused a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseCode {
    /// Ticket unknown, already used, or issued for another peer certificate.
    Ticket = 1,
    /// Protocol version not spoken.
    Version = 2,
    /// The partition prepared on the destination does not fit (memory or page size).
    Geometry = 3,
    /// The peer broke the protocol.
    Protocol = 4,
    /// Writing into the destination partition failed.
    Partition = 5,
    /// The memory digest did not match.
    Digest = 6,
    /// A settlement could not be answered (the HVM could not write its decision).
    Settlement = 7,
}

impl RefuseCode {
    pub fn from_u16(v: u16) -> Result<Self, WireError> {
        Ok(match v {
            1 => Self::Ticket,
            2 => Self::Version,
            3 => Self::Geometry,
            4 => Self::Protocol,
            5 => Self::Partition,
            6 => Self::Digest,
            7 => Self::Settlement,
            _ => return Err(WireError::Malformed("unknown refusal code")),
        })
    }
}

/// What the source asks on a settlement connection (the manager's switch-over lease lapsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleStep {
    /// "Did you resume the LPAR? If not, promise never to": the destination answers from its
    /// durable record, writing "fenced" first when it had not resumed.
    Decide = 0,
    /// "I logged the LPAR's vFCs out": the destination swaps to the WWPNs.
    SourceLoggedOut = 1,
}

/// The destination's durable answer to a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It will never resume this job: the source takes the guest back.
    Fenced = 0,
    /// It resumed the LPAR: the source lets go.
    Resumed = 1,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Sender → receiver, control: opens the move.
    Hello(Hello),
    /// Receiver → sender: the move is accepted. `join` is the secret that extra data
    /// connections present in [`Message::Join`].
    Welcome { version: u16, join: [u8; 32] },
    /// Sender → receiver, first frame of every data stream on an *extra* data connection: joins
    /// the move whose `Welcome` carried `join`.
    Join { join: [u8; 32] },
    /// Sender → receiver, data streams only: pages.
    Batch(PageBatch),
    /// Sender → receiver: all `batches` of `round` are sent.
    RoundEnd { round: u32, batches: u64 },
    /// Receiver → sender: all `batches` of `round` are written into the destination.
    RoundAck { round: u32, batches: u64 },
    /// Sender → receiver: the last round, the vCPU state and, optionally, the digest.
    Switchover(Switchover),
    /// Receiver → sender: the destination holds all memory and the vCPU state, paused.
    Ready { digest: Option<MemoryDigest> },
    /// Sender → receiver: the caller committed the move.
    Commit,
    /// Receiver → sender: commit noted.
    Committed,
    /// Sender → receiver: give up; scrub received memory.
    Abort { reason: String },
    /// Receiver → sender: received memory scrubbed.
    Aborted,
    /// Receiver → sender: the move is refused.
    Refused { code: RefuseCode, message: String },
    /// Sender → receiver, first frame of a settlement connection (a new connection from the
    /// same pinned certificate, presenting the job's ticket).
    Settle { ticket: JobTicket, step: SettleStep },
    /// Receiver → sender: the answer to a settlement, written durably before it is sent.
    Verdict(Verdict),
}

const K_HELLO: u16 = 0x0001;
const K_WELCOME: u16 = 0x0002;
const K_BATCH: u16 = 0x0003;
const K_ROUND_END: u16 = 0x0004;
const K_ROUND_ACK: u16 = 0x0005;
const K_SWITCHOVER: u16 = 0x0006;
const K_READY: u16 = 0x0007;
const K_COMMIT: u16 = 0x0008;
const K_COMMITTED: u16 = 0x0009;
const K_ABORT: u16 = 0x000a;
const K_ABORTED: u16 = 0x000b;
const K_REFUSED: u16 = 0x000c;
const K_JOIN: u16 = 0x000d;
const K_SETTLE: u16 = 0x000e;
const K_VERDICT: u16 = 0x000f;

impl Message {
    /// The opening message of a move.
    pub fn hello(ticket: JobTicket, lpar: &str, memory_size: u64, data_streams: u16) -> Self {
        Self::Hello(Hello {
            version: PROTOCOL_VERSION,
            ticket,
            lpar: lpar.to_owned(),
            memory_size,
            page_size: PAGE_SIZE as u32,
            data_streams,
        })
    }
    /// The receiver's acceptance, with the join secret for extra data connections.
    pub fn welcome(join: [u8; 32]) -> Self {
        Self::Welcome {
            version: PROTOCOL_VERSION,
            join,
        }
    }
    /// Opens a data stream on an extra data connection.
    pub fn join(join: [u8; 32]) -> Self {
        Self::Join { join }
    }
    /// A page batch (validated: 1–64 pages, payload consistent with the mask).
    pub fn batch(batch: PageBatch) -> Result<Self, WireError> {
        batch.validate()?;
        Ok(Self::Batch(batch))
    }
    /// End of a pre-copy round.
    pub fn round_end(round: u32, batches: u64) -> Self {
        Self::RoundEnd { round, batches }
    }
    /// Acknowledgement of a round.
    pub fn round_ack(round: u32, batches: u64) -> Self {
        Self::RoundAck { round, batches }
    }
    /// The final round's trailer.
    pub fn switchover(
        round: u32,
        batches: u64,
        vcpu: VcpuState,
        digest: Option<MemoryDigest>,
    ) -> Self {
        Self::Switchover(Switchover {
            round,
            batches,
            vcpu,
            digest,
        })
    }
    /// The destination is ready to resume.
    pub fn ready(digest: Option<MemoryDigest>) -> Self {
        Self::Ready { digest }
    }
    /// The move is committed.
    pub fn commit() -> Self {
        Self::Commit
    }
    /// Commit noted.
    pub fn committed() -> Self {
        Self::Committed
    }
    /// Abort the move (reason truncated to [`MAX_REASON`] bytes).
    pub fn abort(reason: impl Into<String>) -> Self {
        Self::Abort {
            reason: truncate(reason.into()),
        }
    }
    /// Abort done, memory scrubbed.
    pub fn aborted() -> Self {
        Self::Aborted
    }
    /// Refusal (message truncated to [`MAX_REASON`] bytes).
    pub fn refused(code: RefuseCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: truncate(message.into()),
        }
    }

    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "Hello",
            Self::Welcome { .. } => "Welcome",
            Self::Join { .. } => "Join",
            Self::Batch(_) => "Batch",
            Self::RoundEnd { .. } => "RoundEnd",
            Self::RoundAck { .. } => "RoundAck",
            Self::Switchover(_) => "Switchover",
            Self::Ready { .. } => "Ready",
            Self::Commit => "Commit",
            Self::Committed => "Committed",
            Self::Abort { .. } => "Abort",
            Self::Aborted => "Aborted",
            Self::Refused { .. } => "Refused",
            Self::Settle { .. } => "Settle",
            Self::Verdict(_) => "Verdict",
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Hello(_) => K_HELLO,
            Self::Welcome { .. } => K_WELCOME,
            Self::Join { .. } => K_JOIN,
            Self::Batch(_) => K_BATCH,
            Self::RoundEnd { .. } => K_ROUND_END,
            Self::RoundAck { .. } => K_ROUND_ACK,
            Self::Switchover(_) => K_SWITCHOVER,
            Self::Ready { .. } => K_READY,
            Self::Commit => K_COMMIT,
            Self::Committed => K_COMMITTED,
            Self::Abort { .. } => K_ABORT,
            Self::Aborted => K_ABORTED,
            Self::Refused { .. } => K_REFUSED,
            Self::Settle { .. } => K_SETTLE,
            Self::Verdict(_) => K_VERDICT,
        }
    }

    /// Encodes header + payload into one buffer.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let mut p = BytesMut::with_capacity(64);
        match self {
            Self::Hello(h) => {
                p.put_slice(&HELLO_MAGIC);
                p.put_u16_le(h.version);
                p.put_slice(&h.ticket.0);
                let lpar_len = u8::try_from(h.lpar.len())
                    .map_err(|_| WireError::Malformed("an LPAR name is at most 255 bytes"))?;
                p.put_u8(lpar_len);
                p.put_slice(h.lpar.as_bytes());
                p.put_u64_le(h.memory_size);
                p.put_u32_le(h.page_size);
                p.put_u16_le(h.data_streams);
            }
            Self::Welcome { version, join } => {
                p.put_u16_le(*version);
                p.put_slice(join);
            }
            Self::Join { join } => p.put_slice(join),
            Self::Batch(b) => {
                return encode_batch_frame(b.round, &b.runs, b.zero_mask, b.encoding, &b.payload);
            }
            Self::RoundEnd { round, batches } | Self::RoundAck { round, batches } => {
                p.put_u32_le(*round);
                p.put_u64_le(*batches);
            }
            Self::Switchover(s) => {
                p.put_u32_le(s.round);
                p.put_u64_le(s.batches);
                put_str(&mut p, &s.vcpu.backend, 64)?;
                if s.vcpu.bytes.len() > MAX_VCPU_STATE {
                    return Err(WireError::Malformed(
                        "vCPU state is larger than the protocol allows",
                    ));
                }
                p.put_u32_le(s.vcpu.bytes.len() as u32);
                p.put_slice(&s.vcpu.bytes);
                put_digest(&mut p, s.digest.as_ref());
            }
            Self::Ready { digest } => put_digest(&mut p, digest.as_ref()),
            Self::Commit | Self::Committed | Self::Aborted => {}
            Self::Abort { reason } => put_str(&mut p, reason, MAX_REASON)?,
            Self::Refused { code, message } => {
                p.put_u16_le(*code as u16);
                put_str(&mut p, message, MAX_REASON)?;
            }
            Self::Settle { ticket, step } => {
                p.put_slice(&ticket.0);
                p.put_u8(*step as u8);
            }
            Self::Verdict(v) => p.put_u8(*v as u8),
        }
        if p.len() > MAX_PAYLOAD {
            return Err(WireError::Oversize {
                len: p.len() as u64,
            });
        }
        let mut out = BytesMut::with_capacity(HEADER_LEN + p.len());
        out.put_u16_le(self.kind());
        out.put_u16_le(0);
        out.put_u32_le(p.len() as u32);
        out.put_slice(&p);
        Ok(out.freeze())
    }

    /// Checks a header and returns `(kind, payload length)`; nothing is allocated.
    pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(u16, usize), WireError> {
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let flags = u16::from_le_bytes([header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(K_HELLO..=K_VERDICT).contains(&kind) {
            return Err(WireError::UnknownKind(kind));
        }
        if flags != 0 {
            return Err(WireError::BadFlags(flags));
        }
        let len = len as usize;
        if len > MAX_PAYLOAD {
            return Err(WireError::Oversize { len: len as u64 });
        }
        Ok((kind, len))
    }

    /// Decodes a payload of `kind` (as returned by [`Message::parse_header`]).
    pub fn decode(kind: u16, payload: Bytes) -> Result<Self, WireError> {
        let mut r = payload;
        let msg = match kind {
            K_HELLO => {
                let magic = take::<4>(&mut r)?;
                if magic != HELLO_MAGIC {
                    return Err(WireError::Malformed(
                        "Hello does not start with the LPAR Mover magic",
                    ));
                }
                let version = get_u16(&mut r)?;
                let ticket = JobTicket(take::<32>(&mut r)?);
                let lpar_len = usize::from(get_u8(&mut r)?);
                if r.remaining() < lpar_len {
                    return Err(WireError::Malformed("Hello ends inside the LPAR name"));
                }
                let lpar = String::from_utf8(r.split_to(lpar_len).to_vec())
                    .map_err(|_| WireError::Malformed("the LPAR name in Hello is not UTF-8"))?;
                let memory_size = get_u64(&mut r)?;
                let page_size = get_u32(&mut r)?;
                let data_streams = get_u16(&mut r)?;
                Self::Hello(Hello {
                    version,
                    ticket,
                    lpar,
                    memory_size,
                    page_size,
                    data_streams,
                })
            }
            K_WELCOME => Self::Welcome {
                version: get_u16(&mut r)?,
                join: take::<32>(&mut r)?,
            },
            K_JOIN => Self::Join {
                join: take::<32>(&mut r)?,
            },
            K_BATCH => {
                let round = get_u32(&mut r)?;
                let encoding = match get_u8(&mut r)? {
                    0 => Encoding::Raw,
                    1 => Encoding::Zstd,
                    _ => return Err(WireError::Malformed("unknown page encoding")),
                };
                let nruns = usize::from(get_u8(&mut r)?);
                if nruns == 0 || nruns > MAX_BATCH_PAGES {
                    return Err(WireError::Malformed("a page batch must have 1 to 64 runs"));
                }
                let mut runs = Vec::with_capacity(nruns);
                for _ in 0..nruns {
                    let first = get_u64(&mut r)?;
                    let n = get_u8(&mut r)?;
                    runs.push((first, n));
                }
                let zero_mask = get_u64(&mut r)?;
                let payload = std::mem::take(&mut r);
                let b = PageBatch {
                    round,
                    runs,
                    zero_mask,
                    encoding,
                    payload,
                };
                b.validate()?;
                Self::Batch(b)
            }
            K_ROUND_END => Self::RoundEnd {
                round: get_u32(&mut r)?,
                batches: get_u64(&mut r)?,
            },
            K_ROUND_ACK => Self::RoundAck {
                round: get_u32(&mut r)?,
                batches: get_u64(&mut r)?,
            },
            K_SWITCHOVER => {
                let round = get_u32(&mut r)?;
                let batches = get_u64(&mut r)?;
                let backend = get_str(&mut r, 64)?;
                let len = get_u32(&mut r)? as usize;
                if len > MAX_VCPU_STATE || len > r.remaining() {
                    return Err(WireError::Malformed("vCPU state length is out of bounds"));
                }
                let bytes = r.split_to(len).to_vec();
                let digest = get_digest(&mut r)?;
                Self::Switchover(Switchover {
                    round,
                    batches,
                    vcpu: VcpuState { backend, bytes },
                    digest,
                })
            }
            K_READY => Self::Ready {
                digest: get_digest(&mut r)?,
            },
            K_COMMIT => Self::Commit,
            K_COMMITTED => Self::Committed,
            K_ABORT => Self::Abort {
                reason: get_str(&mut r, MAX_REASON)?,
            },
            K_ABORTED => Self::Aborted,
            K_REFUSED => {
                let code = RefuseCode::from_u16(get_u16(&mut r)?)?;
                Self::Refused {
                    code,
                    message: get_str(&mut r, MAX_REASON)?,
                }
            }
            K_SETTLE => Self::Settle {
                ticket: JobTicket(take::<32>(&mut r)?),
                step: match get_u8(&mut r)? {
                    0 => SettleStep::Decide,
                    1 => SettleStep::SourceLoggedOut,
                    _ => return Err(WireError::Malformed("unknown settlement step")),
                },
            },
            K_VERDICT => Self::Verdict(match get_u8(&mut r)? {
                0 => Verdict::Fenced,
                1 => Verdict::Resumed,
                _ => return Err(WireError::Malformed("unknown settlement verdict")),
            }),
            other => return Err(WireError::UnknownKind(other)),
        };
        if r.has_remaining() {
            return Err(WireError::Malformed("trailing bytes after the message"));
        }
        Ok(msg)
    }

    /// Writes one frame to a blocking writer.
    pub fn write_to<W: Write>(&self, w: &mut W) -> Result<(), WireError> {
        w.write_all(&self.encode()?)?;
        Ok(())
    }

    /// Reads one frame from a blocking reader. `Ok(None)` at a clean end of stream.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Option<Self>, WireError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let n = r.read(&mut header[got..])?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            got += n;
        }
        let (kind, len) = Self::parse_header(&header)?;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
            _ => WireError::Io(e),
        })?;
        Self::decode(kind, Bytes::from(payload)).map(Some)
    }

    /// Reads one frame from an async reader (a quinn `RecvStream`). `Ok(None)` at a clean end.
    #[cfg(feature = "tokio")]
    pub async fn read_async<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Self>, WireError> {
        Self::read_async_buf(r, &mut BytesMut::new()).await
    }

    /// Like [`Message::read_async`], reading the payload into `buf`, whose memory is reused
    /// once the previous message's payload is dropped (no fresh allocation per page batch).
    #[cfg(feature = "tokio")]
    pub async fn read_async_buf<R: AsyncRead + Unpin>(
        r: &mut R,
        buf: &mut BytesMut,
    ) -> Result<Option<Self>, WireError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let n = r.read(&mut header[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            got += n;
        }
        let (kind, len) = Self::parse_header(&header)?;
        buf.clear();
        // Bounded by MAX_PAYLOAD above; reclaims the old allocation once it is free again.
        buf.reserve(len.max(MAX_BATCH_PAGES * PAGE_SIZE + 1024));
        // Read into the spare capacity: zeroing a 256 KiB payload first costs as much as
        // receiving it. `take` keeps the next message's bytes in the stream.
        let mut payload = r.take(len as u64);
        while buf.len() < len {
            if payload.read_buf(buf).await? == 0 {
                return Err(WireError::Truncated);
            }
        }
        let payload = buf.split_to(len).freeze();
        Self::decode(kind, payload).map(Some)
    }
}

/// Encodes a [`Message::Batch`] frame straight from borrowed page data (one copy), validated
/// like [`Message::batch`].
pub fn encode_batch_frame(
    round: u32,
    runs: &[(u64, u8)],
    zero_mask: u64,
    encoding: Encoding,
    payload: &[u8],
) -> Result<Bytes, WireError> {
    let count: usize = runs.iter().map(|(_, n)| usize::from(*n)).sum();
    if count == 0 || count > MAX_BATCH_PAGES {
        return Err(WireError::Malformed("a page batch must name 1 to 64 pages"));
    }
    if runs
        .iter()
        .any(|(first, n)| *n == 0 || first.checked_add(u64::from(*n)).is_none())
    {
        return Err(WireError::Malformed(
            "a page batch has an empty or overflowing run",
        ));
    }
    if count < 64 && zero_mask >> count != 0 {
        return Err(WireError::Malformed("zero mask marks pages past the batch"));
    }
    let nonzero = count - zero_mask.count_ones() as usize;
    if encoding == Encoding::Raw && payload.len() != nonzero * PAGE_SIZE {
        return Err(WireError::Malformed(
            "raw page batch payload is not one page per non-zero page",
        ));
    }
    let len = batch_prefix_len(runs.len()) - HEADER_LEN + payload.len();
    if len > MAX_PAYLOAD {
        return Err(WireError::Oversize { len: len as u64 });
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + len);
    put_batch_prefix(&mut out, round, runs, zero_mask, encoding, payload.len());
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Bytes of a [`Message::Batch`] frame before its page data (frame header included), for a
/// batch of `nruns` runs.
pub fn batch_prefix_len(nruns: usize) -> usize {
    HEADER_LEN + 4 + 1 + 1 + nruns * 9 + 8
}

/// Writes the frame header and batch fields of a [`Message::Batch`] whose page data is
/// `payload_len` bytes ([`batch_prefix_len`] bytes). The caller has validated the batch.
fn put_batch_prefix(
    out: &mut impl BufMut,
    round: u32,
    runs: &[(u64, u8)],
    zero_mask: u64,
    encoding: Encoding,
    payload_len: usize,
) {
    let len = batch_prefix_len(runs.len()) - HEADER_LEN + payload_len;
    out.put_u16_le(K_BATCH);
    out.put_u16_le(0);
    out.put_u32_le(len as u32);
    out.put_u32_le(round);
    out.put_u8(encoding as u8);
    // runs.len() ≤ count ≤ 64.
    out.put_u8(runs.len() as u8);
    for (first, n) in runs {
        out.put_u64_le(*first);
        out.put_u8(*n);
    }
    out.put_u64_le(zero_mask);
}

/// Completes a [`Message::Batch`] frame whose page data the caller already wrote in place:
/// `frame` holds [`batch_prefix_len`]`(runs.len())` bytes of room, then the page data. Fills the
/// room with the header and validates like [`encode_batch_frame`] (no copy of the page data).
pub fn finish_batch_frame(
    mut frame: BytesMut,
    round: u32,
    runs: &[(u64, u8)],
    zero_mask: u64,
    encoding: Encoding,
) -> Result<Bytes, WireError> {
    let prefix = batch_prefix_len(runs.len());
    if frame.len() < prefix {
        return Err(WireError::Malformed("batch frame shorter than its header"));
    }
    let payload_len = frame.len() - prefix;
    let count: usize = runs.iter().map(|(_, n)| usize::from(*n)).sum();
    if count == 0 || count > MAX_BATCH_PAGES {
        return Err(WireError::Malformed("a page batch must name 1 to 64 pages"));
    }
    if runs
        .iter()
        .any(|(first, n)| *n == 0 || first.checked_add(u64::from(*n)).is_none())
    {
        return Err(WireError::Malformed(
            "a page batch has an empty or overflowing run",
        ));
    }
    if count < 64 && zero_mask >> count != 0 {
        return Err(WireError::Malformed("zero mask marks pages past the batch"));
    }
    let nonzero = count - zero_mask.count_ones() as usize;
    if encoding == Encoding::Raw && payload_len != nonzero * PAGE_SIZE {
        return Err(WireError::Malformed(
            "raw page batch payload is not one page per non-zero page",
        ));
    }
    if prefix - HEADER_LEN + payload_len > MAX_PAYLOAD {
        return Err(WireError::Oversize {
            len: (prefix - HEADER_LEN + payload_len) as u64,
        });
    }
    let mut head = &mut frame[..prefix];
    put_batch_prefix(&mut head, round, runs, zero_mask, encoding, payload_len);
    Ok(frame.freeze())
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn put_str(p: &mut BytesMut, s: &str, max: usize) -> Result<(), WireError> {
    if s.len() > max {
        return Err(WireError::Malformed("text field is too long"));
    }
    p.put_u16_le(s.len() as u16);
    p.put_slice(s.as_bytes());
    Ok(())
}

fn put_digest(p: &mut BytesMut, d: Option<&MemoryDigest>) {
    match d {
        Some(d) => {
            p.put_u8(1);
            p.put_slice(&d.0);
        }
        None => p.put_u8(0),
    }
}

fn need(r: &Bytes, n: usize) -> Result<(), WireError> {
    if r.remaining() < n {
        Err(WireError::Malformed("message is shorter than its fields"))
    } else {
        Ok(())
    }
}

fn take<const N: usize>(r: &mut Bytes) -> Result<[u8; N], WireError> {
    need(r, N)?;
    let mut out = [0u8; N];
    r.copy_to_slice(&mut out);
    Ok(out)
}

fn get_u8(r: &mut Bytes) -> Result<u8, WireError> {
    need(r, 1)?;
    Ok(r.get_u8())
}
fn get_u16(r: &mut Bytes) -> Result<u16, WireError> {
    need(r, 2)?;
    Ok(r.get_u16_le())
}
fn get_u32(r: &mut Bytes) -> Result<u32, WireError> {
    need(r, 4)?;
    Ok(r.get_u32_le())
}
fn get_u64(r: &mut Bytes) -> Result<u64, WireError> {
    need(r, 8)?;
    Ok(r.get_u64_le())
}

fn get_str(r: &mut Bytes, max: usize) -> Result<String, WireError> {
    let len = usize::from(get_u16(r)?);
    if len > max {
        return Err(WireError::Malformed("text field is too long"));
    }
    need(r, len)?;
    let bytes = r.split_to(len);
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed("text field is not UTF-8"))
}

fn get_digest(r: &mut Bytes) -> Result<Option<MemoryDigest>, WireError> {
    match get_u8(r)? {
        0 => Ok(None),
        1 => Ok(Some(MemoryDigest(take::<32>(r)?))),
        _ => Err(WireError::Malformed(
            "digest presence flag is neither 0 nor 1",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;

    fn roundtrip(m: Message) {
        let mut buf = Vec::new();
        m.write_to(&mut buf).expect("encode");
        let mut cur = Cursor::new(buf);
        let back = Message::read_from(&mut cur)
            .expect("decode")
            .expect("one message");
        assert_eq!(back, m);
        assert!(Message::read_from(&mut cur).expect("eof").is_none());
    }

    fn zstd_batch() -> PageBatch {
        let pages: Vec<u8> = (0..2 * PAGE_SIZE).map(|i| (i % 7) as u8).collect();
        PageBatch {
            round: 3,
            runs: vec![(10, 2), (100, 1)],
            zero_mask: 0b010,
            encoding: Encoding::Zstd,
            payload: Bytes::from(zstd::bulk::compress(&pages, 1).expect("compress")),
        }
    }

    #[test]
    fn every_message_round_trips_through_a_cursor() {
        let ticket = JobTicket::generate();
        roundtrip(Message::hello(ticket, "web-01", 1 << 30, 4));
        roundtrip(Message::hello(ticket, "", 1 << 30, 4));
        roundtrip(Message::hello(ticket, "ü", 1, 1));
        roundtrip(Message::welcome([5; 32]));
        roundtrip(Message::join([6; 32]));
        roundtrip(
            Message::batch(PageBatch {
                round: 0,
                runs: vec![(0, 3)],
                zero_mask: 0b100,
                encoding: Encoding::Raw,
                payload: Bytes::from(vec![7u8; 2 * PAGE_SIZE]),
            })
            .expect("valid"),
        );
        roundtrip(Message::batch(zstd_batch()).expect("valid"));
        roundtrip(Message::round_end(5, 1234));
        roundtrip(Message::round_ack(5, 1234));
        roundtrip(Message::switchover(
            6,
            9,
            VcpuState {
                backend: "soft".into(),
                bytes: vec![1, 2, 3],
            },
            Some(MemoryDigest([9; 32])),
        ));
        roundtrip(Message::switchover(
            6,
            0,
            VcpuState {
                backend: "kvm".into(),
                bytes: vec![],
            },
            None,
        ));
        roundtrip(Message::ready(None));
        roundtrip(Message::ready(Some(MemoryDigest([1; 32]))));
        roundtrip(Message::commit());
        roundtrip(Message::committed());
        roundtrip(Message::abort("cancelled by the operator"));
        roundtrip(Message::aborted());
        roundtrip(Message::refused(RefuseCode::Ticket, "unknown ticket"));
        roundtrip(Message::Settle {
            ticket,
            step: SettleStep::Decide,
        });
        roundtrip(Message::Settle {
            ticket,
            step: SettleStep::SourceLoggedOut,
        });
        roundtrip(Message::Verdict(Verdict::Fenced));
        roundtrip(Message::Verdict(Verdict::Resumed));
    }

    #[test]
    fn zstd_batch_decodes_to_its_pages() {
        let b = zstd_batch();
        let mut out = Vec::new();
        b.decode_pages(&mut out).expect("decode");
        assert_eq!(out.len(), 2 * PAGE_SIZE);
        assert_eq!(out[8], 1);
        assert_eq!(b.pages().collect::<Vec<_>>(), vec![10, 11, 100]);
    }

    #[test]
    fn zstd_batch_that_inflates_past_its_pages_is_refused() {
        let mut b = zstd_batch();
        b.zero_mask = 0b011; // claims one non-zero page but holds two
        let mut out = Vec::new();
        assert!(b.decode_pages(&mut out).is_err());
    }

    #[test]
    fn oversize_frame_is_refused_before_allocation() {
        let mut header = [0u8; HEADER_LEN];
        header[0..2].copy_from_slice(&K_BATCH.to_le_bytes());
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Message::read_from(&mut Cursor::new(header.to_vec())).expect_err("must fail");
        assert!(matches!(err, WireError::Oversize { .. }), "{err}");
        assert!(err.to_string().contains("larger than"));
    }

    #[test]
    fn unknown_kind_and_flags_are_refused() {
        let mut header = [0u8; HEADER_LEN];
        header[0..2].copy_from_slice(&0x7777u16.to_le_bytes());
        let err = Message::read_from(&mut Cursor::new(header.to_vec())).expect_err("must fail");
        assert!(matches!(err, WireError::UnknownKind(0x7777)), "{err}");
        header[0..2].copy_from_slice(&K_COMMIT.to_le_bytes());
        header[2] = 1;
        let err = Message::read_from(&mut Cursor::new(header.to_vec())).expect_err("must fail");
        assert!(matches!(err, WireError::BadFlags(1)), "{err}");
    }

    #[test]
    fn truncated_and_trailing_frames_are_refused() {
        let mut buf = Message::round_end(1, 2).encode().expect("encode").to_vec();
        buf.pop();
        assert!(Message::read_from(&mut Cursor::new(buf.clone())).is_err());
        // Trailing byte inside the announced payload.
        let mut long = Message::commit().encode().expect("encode").to_vec();
        long[4] = 1;
        long.push(0);
        let err = Message::read_from(&mut Cursor::new(long)).expect_err("must fail");
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn bad_batches_are_refused() {
        let bad = PageBatch {
            round: 0,
            runs: vec![(0, 65)],
            zero_mask: 0,
            encoding: Encoding::Raw,
            payload: Bytes::new(),
        };
        assert!(Message::batch(bad).is_err());
        let bad = PageBatch {
            round: 0,
            runs: vec![(0, 1)],
            zero_mask: 0,
            encoding: Encoding::Raw,
            payload: Bytes::from(vec![0u8; 10]),
        };
        assert!(Message::batch(bad).is_err());
        let bad = PageBatch {
            round: 0,
            runs: vec![(0, 2)],
            zero_mask: 0b100,
            encoding: Encoding::Raw,
            payload: Bytes::from(vec![0u8; 2 * PAGE_SIZE]),
        };
        assert!(Message::batch(bad).is_err());
    }

    #[test]
    fn ticket_hex_round_trips() {
        let t = JobTicket::generate();
        assert_eq!(JobTicket::from_hex(&t.to_hex()).expect("hex"), t);
        assert!(!format!("{t:?}").contains(&t.to_hex()));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::read_from(&mut Cursor::new(data));
        }

        #[test]
        fn random_payloads_of_each_kind_never_panic(kind in 1u16..=13, data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Message::Batch(b)) = Message::decode(kind, Bytes::from(data)) {
                let mut out = Vec::new();
                let _ = b.decode_pages(&mut out);
            }
        }
    }
}
