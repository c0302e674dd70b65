//! The source side of a move: pre-copy rounds over QUIC, adaptive compression, auto-converge,
//! timeout and cancel, and the switch-over up to the caller's commit decision.
//!
//! Every dirty bit taken from the partition is kept in an *outstanding* bitmap until the
//! receiver acknowledges the round that carried it; on any failure those bits go back with
//! [`Partition::restore_dirty`], the throttle is lifted and the source resumed — a failed move
//! changes nothing on the source. Dirty tracking is left running after a failure (the bits stay
//! meaningful); the caller stops it when it gives up on the partition's move.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::pages::{BatchEncoder, BatchPlan, BatchStats, plan_batches};
use super::progress::{CompressionChoice, MoveSummary, Progress, Stage};
use super::settle::SettleDial;
use super::tls::{self, Identity, SERVER_NAME};
use super::wire::{Encoding, JobTicket, MAX_BATCH_PAGES, Message, SettleStep, Verdict, WireError};
use super::{MoveError, close_code, conn_lost};
use crate::partition::{DirtyBitmap, MemoryDigest, PAGE_SIZE, Partition};

/// How non-zero pages are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionMode {
    /// Measure raw against zstd on the live path and keep the faster (default).
    #[default]
    Auto,
    /// Always zstd.
    Always,
    /// Never compress.
    Never,
}

/// Settings of one outgoing move.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Local address of the source's migration path (port 0: ephemeral).
    pub bind_addr: SocketAddr,
    /// The destination's migration endpoint.
    pub peer_addr: SocketAddr,
    /// The destination HVM's certificate, pinned by the manager.
    pub pinned_peer_cert: CertificateDer<'static>,
    /// This HVM's certificate and key.
    pub identity: Identity,
    /// The one-time job ticket the manager issued.
    pub ticket: JobTicket,
    /// The LPAR moved (its name): the destination accepts the ticket for that LPAR only.
    pub lpar: String,
    /// Longest acceptable suspension (default 50 ms).
    pub downtime_limit: Duration,
    /// Give up (the seed's "Memory write is intensive") after this long without converging
    /// (default 900 s; extendable with [`TimeoutHandle::extend`]).
    pub timeout: Duration,
    /// Throttle the guest's vCPUs when rounds stop shrinking (default on).
    pub auto_converge: bool,
    /// Compression policy.
    pub compression: CompressionMode,
    /// Unidirectional data streams (default 4), spread over the data connections.
    pub streams: usize,
    /// QUIC connections carrying data, each from its own endpoint (default 1; quinn drives an
    /// endpoint from one task, so a fast path needs about one connection per core).
    pub connections: usize,
    /// Ask the destination to compare a memory digest before Ready (adds two digests to the
    /// suspension time).
    pub verify: bool,
    /// Pages per batch (≤ 64).
    pub batch_pages: usize,
    /// Cap on wire bytes per second (policy bandwidth caps, tests of slow paths). `None` = none.
    pub bandwidth_limit: Option<u64>,
    /// Raises `downtime_limit` as rounds stall, then gives up (None: the limit stays).
    pub convergence: Option<lpm_formats::moves::ConvergenceSchedule>,
    /// A rehearsal: once the rounds converge, hold there (the guest keeps running) until
    /// cancelled, never pausing the source for a switchover nobody will commit.
    pub hold_at_convergence: bool,
}

impl SenderConfig {
    /// Defaults for everything but the addresses, certificates and ticket.
    pub fn new(
        bind_addr: SocketAddr,
        peer_addr: SocketAddr,
        identity: Identity,
        pinned_peer_cert: CertificateDer<'static>,
        ticket: JobTicket,
    ) -> Self {
        Self {
            bind_addr,
            peer_addr,
            pinned_peer_cert,
            identity,
            ticket,
            lpar: String::new(),
            downtime_limit: Duration::from_millis(50),
            timeout: Duration::from_secs(900),
            auto_converge: true,
            compression: CompressionMode::Auto,
            streams: 4,
            connections: 1,
            verify: false,
            batch_pages: MAX_BATCH_PAGES,
            bandwidth_limit: None,
            convergence: None,
            hold_at_convergence: false,
        }
    }
}

/// Extends (or reads) a running move's timeout.
#[derive(Clone, Debug)]
pub struct TimeoutHandle {
    inner: Arc<TimeoutInner>,
}

#[derive(Debug)]
struct TimeoutInner {
    deadline: Mutex<tokio::time::Instant>,
    extendable: AtomicBool,
    changed: Notify,
}

impl TimeoutHandle {
    fn new(timeout: Duration) -> Self {
        Self {
            inner: Arc::new(TimeoutInner {
                // An absurd timeout is "never", not a panic.
                deadline: Mutex::new(far_after(tokio::time::Instant::now(), timeout)),
                extendable: AtomicBool::new(true),
                changed: Notify::new(),
            }),
        }
    }

    /// Pushes the deadline back by `by`. Only while memory is being transferred: returns false
    /// (and changes nothing) once the move has suspended the guest or ended.
    pub fn extend(&self, by: Duration) -> bool {
        if !self.inner.extendable.load(Ordering::Acquire) {
            return false;
        }
        if let Ok(mut d) = self.inner.deadline.lock() {
            *d = far_after(*d, by);
        }
        self.inner.changed.notify_waiters();
        true
    }

    /// Time left before the move times out.
    pub fn remaining(&self) -> Duration {
        self.deadline()
            .saturating_duration_since(tokio::time::Instant::now())
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.inner
            .deadline
            .lock()
            .map(|d| *d)
            .unwrap_or_else(|_| tokio::time::Instant::now())
    }

    async fn expired(&self) {
        loop {
            let changed = self.inner.changed.notified();
            let d = self.deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(d) => {
                    if tokio::time::Instant::now() >= self.deadline() {
                        return;
                    }
                }
                _ = changed => {}
            }
        }
    }
}

/// The source side of one move.
pub struct Sender<P: Partition + 'static> {
    partition: Arc<P>,
    cfg: SenderConfig,
    progress: watch::Sender<Progress>,
    cancel: CancellationToken,
    timeout: TimeoutHandle,
    bandwidth: BandwidthHandle,
}

impl<P: Partition + 'static> std::fmt::Debug for Sender<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sender(to {})", self.cfg.peer_addr)
    }
}

enum WriterItem {
    Frame(Bytes),
    Flush(oneshot::Sender<()>),
}

/// A running move's cap on wire bytes per second, changeable while it runs: a policy's shared
/// cap is split again as its entries start and finish. Every data stream reads it per frame.
#[derive(Clone, Debug, Default)]
pub struct BandwidthHandle(Arc<AtomicU64>);

impl BandwidthHandle {
    /// A handle holding `limit` (bytes/s; `None` = none).
    pub fn new(limit: Option<u64>) -> Self {
        let handle = Self::default();
        handle.set(limit);
        handle
    }

    /// Sets the cap; the next frame of every stream is paced to it.
    pub fn set(&self, limit: Option<u64>) {
        // 0 stands for "none": a cap of 0 bytes/s would never send anything.
        self.0.store(limit.unwrap_or(0), Ordering::Release);
    }

    /// The cap in force.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            bps => Some(bps),
        }
    }
}

/// Spaces frames to the cap a [`BandwidthHandle`] holds.
struct Pacer {
    limit: BandwidthHandle,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    async fn pace(&self, n: usize) {
        // Uncapped, a frame goes at once (one atomic load, no lock on the fast path).
        let Some(bps) = self.limit.get() else {
            return;
        };
        let at = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = tokio::time::Instant::now();
            if *next < now {
                *next = now;
            }
            // A cap lowered mid-move slows the next frames; one raised does not hand out the
            // time already booked, so the link sees no burst.
            let at = *next;
            *next += Duration::from_secs_f64(n as f64 / bps as f64);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Everything a running move holds.
struct Link {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    control: quinn::SendStream,
    events: mpsc::Receiver<Result<Option<Message>, WireError>>,
    writers: Vec<mpsc::Sender<WriterItem>>,
    /// Extra data connections, each on its own endpoint (its own driver task).
    extra: Vec<(quinn::Endpoint, quinn::Connection)>,
}

/// The error for a connection the receiver closed: a refusal or a protocol error it reported
/// keeps its kind (with its reason), anything else is a lost connection.
pub(super) fn closed_by_peer(reason: quinn::ConnectionError) -> MoveError {
    if let quinn::ConnectionError::ApplicationClosed(c) = &reason {
        let text = String::from_utf8_lossy(&c.reason).into_owned();
        let code = u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX);
        if code == close_code::PROTOCOL {
            return MoveError::Protocol(format!("the destination stopped the move: {text}"));
        }
        if let Some(code) = close_code::refusal(code) {
            return MoveError::Refused {
                code,
                message: text,
            };
        }
    }
    conn_lost(reason)
}

impl Link {
    async fn send(&mut self, m: &Message) -> Result<(), MoveError> {
        let bytes = m.encode()?;
        match self.control.write_all(&bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(e)),
        }
    }

    fn lost(&self, e: impl std::fmt::Display) -> MoveError {
        let reason = self
            .conn
            .close_reason()
            .or_else(|| self.extra.iter().find_map(|(_, c)| c.close_reason()));
        match reason {
            Some(r) => closed_by_peer(r),
            None => conn_lost(e),
        }
    }

    /// Next control message from the receiver; `Refused` becomes an error.
    async fn recv(&mut self) -> Result<Message, MoveError> {
        match self.events.recv().await {
            Some(Ok(Some(Message::Refused { code, message }))) => {
                Err(MoveError::Refused { code, message })
            }
            Some(Ok(Some(m))) => Ok(m),
            Some(Ok(None)) | None => Err(self.lost("the receiver closed the control stream")),
            Some(Err(e)) => {
                if self.conn.close_reason().is_some() {
                    Err(self.lost(e))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    async fn expect_ack(&mut self, round: u32, batches: u64) -> Result<(), MoveError> {
        match self.recv().await? {
            Message::RoundAck {
                round: r,
                batches: b,
            } if r == round && b == batches => Ok(()),
            other => Err(MoveError::Protocol(format!(
                "expected RoundAck for round {round} ({batches} batches), got {other:?}"
            ))),
        }
    }

    fn close(&self, code: u32, why: &[u8]) {
        self.conn.close(code.into(), why);
        self.endpoint.close(code.into(), why);
        for (ep, c) in &self.extra {
            c.close(code.into(), why);
            ep.close(code.into(), why);
        }
    }
}

type DigestTask = tokio::task::JoinHandle<Result<MemoryDigest, crate::partition::PartitionError>>;

/// Adaptive compression state.
struct Compressor {
    mode: CompressionMode,
    choice: CompressionChoice,
    /// Memory MB/s of the latest probes, raw and with zstd.
    raw_rates: RecentRates,
    zstd_rates: RecentRates,
}

/// Probes whose median sets an encoding's estimated rate. One probe can be far off (a
/// destination still pre-faulting measured zstd at 8 MB/s against 290 MB/s a second later);
/// the median of three ignores such a probe where a mean would carry it for many probes.
const PROBES_KEPT: usize = 3;

/// The last [`PROBES_KEPT`] rates of one encoding.
#[derive(Default)]
struct RecentRates(std::collections::VecDeque<f64>);

impl RecentRates {
    fn push(&mut self, rate: f64) {
        if self.0.len() == PROBES_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(rate);
    }

    /// Median of the kept rates (mean of the two middle ones for an even count).
    fn estimate(&self) -> f64 {
        let mut v: Vec<f64> = self.0.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Probe both encodings again after this many probe-sized stretches (32 MiB × 8 = 256 MiB;
/// four times as far apart when the last verdict was clear-cut).
const REPROBE_EVERY: usize = 8;

/// Probe-sized stretches sent raw before the first probe. A fresh connection is still in slow
/// start and MTU discovery, and a destination still pre-faulting its memory: measured then, raw
/// looked ten times slower than it is on loopback and the whole move was compressed.
const WARMUP_PROBES: usize = 2;

/// Memory bytes per probe segment of the adaptive compression.
const PROBE_BYTES: u64 = 32 << 20;

impl Compressor {
    fn new(mode: CompressionMode) -> Self {
        let choice = match mode {
            CompressionMode::Auto => CompressionChoice {
                encoding: Encoding::Raw,
                reason:
                    "auto: raw until a round is large enough (160 MiB) to measure raw against zstd"
                        .into(),
            },
            CompressionMode::Always => CompressionChoice {
                encoding: Encoding::Zstd,
                reason: "zstd forced by configuration".into(),
            },
            CompressionMode::Never => CompressionChoice {
                encoding: Encoding::Raw,
                reason: "compression disabled by configuration".into(),
            },
        };
        Self {
            mode,
            choice,
            raw_rates: RecentRates::default(),
            zstd_rates: RecentRates::default(),
        }
    }

    /// Whether to probe both encodings now: `left` batches remain in the round, `since` batches
    /// were sent in it since the last probe (or its start).
    fn should_probe(&self, left: usize, since: usize, probe_batches: usize) -> bool {
        left >= probe_batches * 3 && self.batches_until_due(since, probe_batches) == Some(0)
    }

    /// Batches until [`Self::should_probe`] may next say yes, `since` batches after the last
    /// probe (or the round's start); None when this mode never probes.
    fn batches_until_due(&self, since: usize, probe_batches: usize) -> Option<usize> {
        if self.mode != CompressionMode::Auto {
            return None;
        }
        // Until PROBES_KEPT probes are in, probe again soon: an early verdict rests on one or
        // two measurements and a wrong one would otherwise hold for up to a gigabyte.
        let due = if self.raw_rates.len() >= PROBES_KEPT {
            probe_batches * self.reprobe_every()
        } else {
            probe_batches * WARMUP_PROBES
        };
        Some(due.saturating_sub(since))
    }

    /// Probe-sized stretches between probes: rarely when the last verdict was clear-cut.
    fn reprobe_every(&self) -> usize {
        let (raw, zstd) = (self.raw_rates.estimate(), self.zstd_rates.estimate());
        let (hi, lo) = (raw.max(zstd), raw.min(zstd));
        if lo > 0.0 && hi / lo > 1.5 {
            REPROBE_EVERY * 4
        } else {
            REPROBE_EVERY
        }
    }

    fn decide(&mut self, raw: &SegmentResult, zstd: &SegmentResult) {
        // Over recent probes: one 32 MiB probe on a busy host is noisy.
        self.raw_rates.push(raw.memory_rate());
        self.zstd_rates.push(zstd.memory_rate());
        let (raw_rate, zstd_rate) = (self.raw_rates.estimate(), self.zstd_rates.estimate());
        let compress_rate = if zstd.stats.compress_ns > 0 {
            zstd.stats.compress_input as f64 / (zstd.stats.compress_ns as f64 / 1e9) / 1e6
        } else {
            0.0
        };
        let ratio = if zstd.stats.wire_bytes > 0 {
            zstd.stats.memory_bytes as f64 / zstd.stats.wire_bytes as f64
        } else {
            1.0
        };
        // On a tie compress: it frees a path other moves may share.
        let (encoding, why) = if zstd_rate >= raw_rate {
            (Encoding::Zstd, "the path is the bottleneck, compressing")
        } else {
            (
                Encoding::Raw,
                "CPU-bound (the path is faster than compression), sending raw",
            )
        };
        self.choice = CompressionChoice {
            encoding,
            reason: format!(
                "auto: {why}; measured {raw_rate:.0} MB/s of memory raw vs {zstd_rate:.0} MB/s with zstd \
                 (zstd {compress_rate:.0} MB/s per worker, ratio {ratio:.1} incl. zero pages)"
            ),
        };
        info!(choice = %self.choice.reason, "compression decided");
    }
}

struct SegmentResult {
    stats: BatchStats,
    elapsed: Duration,
}

impl SegmentResult {
    fn memory_rate(&self) -> f64 {
        self.stats.memory_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Figures of one round.
struct RoundResult {
    stats: BatchStats,
    elapsed: Duration,
}

/// Running totals and estimates.
#[derive(Default)]
struct Totals {
    stats: BatchStats,
    /// Best recent estimate of path throughput, wire bytes/s.
    wire_rate: f64,
    /// Wire bytes per memory byte of the latest sizeable round.
    wire_per_memory: f64,
    rounds: u32,
    max_throttle: u8,
}

/// The source is paused and the destination holds every page and the vCPU state, paused.
/// Call [`SwitchoverReady::commit`] once the commit point is journaled, or
/// [`SwitchoverReady::abort`] to resume the source. Dropping it without either resumes the
/// source and tells the destination to scrub.
pub struct SwitchoverReady<P: Partition + 'static> {
    partition: Arc<P>,
    link: Option<Link>,
    outstanding: DirtyBitmap,
    summary: MoveSummary,
    progress: watch::Sender<Progress>,
    dial: SettleDial,
}

impl<P: Partition + 'static> std::fmt::Debug for SwitchoverReady<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwitchoverReady({:?})", self.summary)
    }
}

impl<P: Partition + 'static> SwitchoverReady<P> {
    /// Figures of the move so far (downtime: pause → destination Ready).
    pub fn summary(&self) -> &MoveSummary {
        &self.summary
    }

    /// Tells the destination the move is committed. The source stays paused (the caller
    /// releases it); dirty tracking is stopped.
    pub async fn commit(mut self) -> Result<MoveSummary, MoveError> {
        let Some(mut link) = self.link.take() else {
            return Err(MoveError::Internal("switch-over already decided".into()));
        };
        link.send(&Message::commit()).await?;
        let acked = tokio::time::timeout(Duration::from_secs(10), link.recv()).await;
        link.close(close_code::DONE, b"committed");
        if let Err(e) = self.partition.stop_dirty_tracking() {
            warn!(error = %e, "stopping dirty tracking on the released source failed");
        }
        self.progress.send_modify(|p| p.stage = Stage::Committed);
        match acked {
            Ok(Ok(Message::Committed)) => Ok(self.summary.clone()),
            Ok(Ok(other)) => Err(MoveError::Protocol(format!(
                "expected Committed, got {}",
                other.name()
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MoveError::PeerTimeout(
                Duration::from_secs(10),
                "acknowledging the commit",
            )),
        }
    }

    /// Asks the destination, over a new settlement connection, whether it resumed the LPAR;
    /// if it had not, it fences the job (durably) before it answers. One attempt, bounded by
    /// `within`; the caller retries while the destination cannot be reached.
    pub async fn settle(&self, step: SettleStep, within: Duration) -> Result<Verdict, MoveError> {
        self.dial.ask(step, within).await
    }

    /// The destination fenced the job (it will never resume it): the source takes the guest
    /// back — un-throttled, its final dirty bits restored, resumed.
    pub fn resume_after_fence(mut self) -> Result<(), MoveError> {
        if let Some(link) = self.link.take() {
            link.close(close_code::ABORT, b"fenced by the destination");
        }
        restore_source(self.partition.as_ref(), &self.outstanding, true)?;
        self.progress.send_modify(|p| p.stage = Stage::Aborted);
        Ok(())
    }

    /// The destination resumed the LPAR (its settlement verdict): the source stays paused for
    /// its release and stops dirty tracking; nothing more goes over the move's connection.
    pub fn let_go(mut self) {
        if let Some(link) = self.link.take() {
            link.close(close_code::DONE, b"the destination resumed");
        }
        if let Err(e) = self.partition.stop_dirty_tracking() {
            warn!(error = %e, "stopping dirty tracking on the released source failed");
        }
        self.progress.send_modify(|p| p.stage = Stage::Committed);
    }

    /// Does not commit: the destination scrubs, the source is un-throttled and resumed with
    /// its final dirty bits restored.
    pub async fn abort(mut self, reason: &str) -> Result<(), MoveError> {
        let link = self.link.take();
        let result = match link {
            Some(mut link) => {
                let r = abort_receiver(&mut link, reason).await;
                link.close(close_code::ABORT, b"aborted after suspension");
                r
            }
            None => Ok(()),
        };
        if let Err(MoveError::AlreadyCommitted) = result {
            // The destination was committed by the manager and may be running the guest:
            // resuming here would run it twice. Stay paused; the manager's recovery decides.
            self.progress.send_modify(|p| p.stage = Stage::Committed);
            return result;
        }
        restore_source(self.partition.as_ref(), &self.outstanding, true)?;
        self.progress.send_modify(|p| p.stage = Stage::Aborted);
        result
    }
}

impl<P: Partition + 'static> Drop for SwitchoverReady<P> {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            warn!("switch-over dropped without a decision: resuming the source");
            link.close(close_code::ABORT, b"abandoned");
            if let Err(e) = restore_source(self.partition.as_ref(), &self.outstanding, true) {
                warn!(error = %e, "resuming the source failed");
            }
        }
    }
}

async fn abort_receiver(link: &mut Link, reason: &str) -> Result<(), MoveError> {
    link.send(&Message::abort(reason)).await?;
    match tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match link.recv().await? {
                Message::Aborted => return Ok(()),
                Message::Committed => return Err(MoveError::AlreadyCommitted),
                // RoundAcks or Ready still in flight.
                _ => continue,
            }
        }
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(MoveError::PeerTimeout(
            Duration::from_secs(5),
            "scrubbing after an abort",
        )),
    }
}

/// Gives back undelivered bits, lifts the throttle, resumes.
fn restore_source<P: Partition + ?Sized>(
    p: &P,
    outstanding: &DirtyBitmap,
    resume: bool,
) -> Result<(), MoveError> {
    let r1 = p
        .restore_dirty(outstanding)
        .map_err(MoveError::partition("restoring the source's dirty bits"));
    let r2 = p
        .set_throttle(0)
        .map_err(MoveError::partition("lifting the source's throttle"));
    let r3 = if resume && p.is_paused() {
        p.resume()
            .map_err(MoveError::partition("resuming the source"))
    } else {
        Ok(())
    };
    r1.and(r2).and(r3)
}

impl<P: Partition + 'static> Sender<P> {
    /// A move of `partition` as `cfg` says, reporting to `progress`, cancelled by `cancel`.
    pub fn new(
        partition: Arc<P>,
        cfg: SenderConfig,
        progress: watch::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Self {
        let timeout = TimeoutHandle::new(cfg.timeout);
        let bandwidth = BandwidthHandle::new(cfg.bandwidth_limit);
        Self {
            partition,
            cfg,
            progress,
            cancel,
            timeout,
            bandwidth,
        }
    }

    /// The handle that extends this move's timeout.
    pub fn timeout_handle(&self) -> TimeoutHandle {
        self.timeout.clone()
    }

    /// The handle that changes this move's bandwidth cap while it runs.
    pub fn bandwidth_handle(&self) -> BandwidthHandle {
        self.bandwidth.clone()
    }

    /// Runs the move up to the switch-over. On error the source is running, un-throttled, with
    /// every undelivered dirty bit restored, and the destination was told to scrub.
    pub async fn run(self) -> Result<SwitchoverReady<P>, MoveError> {
        let span = info_span!("lpar_move", peer = %self.cfg.peer_addr);
        self.run_inner().instrument(span).await
    }

    fn publish(&self, f: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(|p| {
            f(p);
            p.bandwidth_limit = self.bandwidth.get();
        });
    }

    async fn run_inner(self) -> Result<SwitchoverReady<P>, MoveError> {
        let started = Instant::now();
        let memory_size = self.partition.memory_size();
        self.publish(|p| {
            *p = Progress {
                stage: Stage::Connecting,
                memory_size,
                bytes_remaining: memory_size,
                timeout_in_s: self.timeout.remaining().as_secs(),
                ..Progress::default()
            }
        });
        let connected = tokio::select! {
            r = self.connect().instrument(info_span!("connect")) => r,
            _ = self.cancel.cancelled() => Err(MoveError::Cancelled),
        };
        let mut link = match connected {
            Ok(link) => link,
            Err(e) => {
                // Nothing on the source was touched yet.
                warn!(error = %e, "could not open the move");
                self.publish(|p| {
                    p.stage = if matches!(e, MoveError::Cancelled) {
                        Stage::Cancelled
                    } else {
                        Stage::Failed
                    };
                    p.note = Some(e.to_string());
                });
                return Err(e);
            }
        };
        let pages = self.partition.page_count();
        let mut outstanding = DirtyBitmap::new(pages);
        let result = self.precopy(&mut link, &mut outstanding, started).await;
        match result {
            Ok(summary) => {
                self.timeout
                    .inner
                    .extendable
                    .store(false, Ordering::Release);
                self.publish(|p| {
                    p.stage = Stage::SwitchoverReady;
                    p.bytes_remaining = 0;
                });
                info!(?summary, "switch-over ready");
                Ok(SwitchoverReady {
                    partition: Arc::clone(&self.partition),
                    link: Some(link),
                    outstanding,
                    summary,
                    progress: self.progress.clone(),
                    dial: SettleDial {
                        bind_addr: self.cfg.bind_addr,
                        peer_addr: self.cfg.peer_addr,
                        identity: self.cfg.identity.clone(),
                        pinned_peer_cert: self.cfg.pinned_peer_cert.clone(),
                        ticket: self.cfg.ticket,
                    },
                })
            }
            Err(e) => {
                self.timeout
                    .inner
                    .extendable
                    .store(false, Ordering::Release);
                let stage = match &e {
                    MoveError::Cancelled => Stage::Cancelled,
                    MoveError::TimedOut { .. } => Stage::TimedOut,
                    _ => Stage::Failed,
                };
                warn!(error = %e, "move failed; restoring the source");
                if link.conn.close_reason().is_none() {
                    let reason = e.to_string();
                    if let Err(ae) = abort_receiver(&mut link, &reason).await {
                        debug!(error = %ae, "the receiver did not confirm the abort");
                    }
                }
                link.close(close_code::ABORT, b"move failed");
                if let Err(re) = restore_source(self.partition.as_ref(), &outstanding, true) {
                    warn!(error = %re, "restoring the source after a failed move failed");
                }
                self.publish(|p| {
                    p.stage = stage;
                    p.note = Some(e.to_string());
                });
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Link, MoveError> {
        // With TLS 1.3 a refused client certificate shows only after the client's handshake:
        // a connection lost before Welcome is a failed connect.
        self.connect_inner().await.map_err(|e| match e {
            MoveError::ConnectionLost(reason) => MoveError::Connect {
                addr: self.cfg.peer_addr,
                reason,
            },
            other => other,
        })
    }

    async fn connect_inner(&self) -> Result<Link, MoveError> {
        let client = tls::client_config(&self.cfg.identity, &self.cfg.pinned_peer_cert)?;
        let endpoint = tls::endpoint(self.cfg.bind_addr, None)?;
        let addr = self.cfg.peer_addr;
        let connect_err = |reason: String| MoveError::Connect { addr, reason };
        let connecting = endpoint
            .connect_with(client, addr, SERVER_NAME)
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Err(_) => return Err(connect_err("no answer within 10 s".into())),
        };
        self.publish(|p| p.stage = Stage::Handshake);
        let (control, mut recv) = conn.open_bi().await.map_err(conn_lost)?;
        let (etx, events) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let m = Message::read_async(&mut recv).await;
                let end = !matches!(m, Ok(Some(_)));
                if etx.send(m).await.is_err() || end {
                    return;
                }
            }
        });
        let mut link = Link {
            endpoint,
            conn,
            control,
            events,
            writers: Vec::new(),
            extra: Vec::new(),
        };
        let connections = self.cfg.connections.clamp(1, 8);
        let streams = self.cfg.streams.clamp(connections, 32);
        link.send(&Message::hello(
            self.cfg.ticket,
            &self.cfg.lpar,
            self.partition.memory_size(),
            streams as u16,
        ))
        .await?;
        let join = match tokio::time::timeout(Duration::from_secs(10), link.recv()).await {
            Ok(Ok(Message::Welcome { join, .. })) => join,
            Ok(Ok(other)) => {
                return Err(MoveError::Protocol(format!(
                    "expected Welcome, got {}",
                    other.name()
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(MoveError::PeerTimeout(
                    Duration::from_secs(10),
                    "accepting the move",
                ));
            }
        };
        for _ in 1..connections {
            let ep = tls::endpoint(self.cfg.bind_addr, None)?;
            let client = tls::client_config(&self.cfg.identity, &self.cfg.pinned_peer_cert)?;
            let c = ep
                .connect_with(client, self.cfg.peer_addr, SERVER_NAME)
                .map_err(conn_lost)?
                .await
                .map_err(conn_lost)?;
            link.extra.push((ep, c));
        }
        let join_frame = Message::join(join).encode()?;
        let pacer = Arc::new(Pacer {
            limit: self.bandwidth.clone(),
            next: Mutex::new(tokio::time::Instant::now()),
        });
        for i in 0..streams {
            let mut s = match i % connections {
                0 => link.conn.open_uni().await.map_err(conn_lost)?,
                c => {
                    let mut s = link.extra[c - 1].1.open_uni().await.map_err(conn_lost)?;
                    s.write_all(&join_frame).await.map_err(conn_lost)?;
                    s
                }
            };
            let (tx, mut rx) = mpsc::channel::<WriterItem>(8);
            let pacer = pacer.clone();
            tokio::spawn(
                async move {
                    while let Some(item) = rx.recv().await {
                        match item {
                            WriterItem::Frame(b) => {
                                let n = b.len();
                                pacer.pace(n).await;
                                if let Err(e) = s.write_chunk(b).await {
                                    debug!(error = %e, "data stream failed");
                                    return;
                                }
                            }
                            WriterItem::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                    let _ = s.finish();
                }
                .instrument(info_span!("data_stream", i)),
            );
            link.writers.push(tx);
        }
        info!(streams, connections, "migration path open, move accepted");
        Ok(link)
    }

    async fn precopy(
        &self,
        link: &mut Link,
        outstanding: &mut DirtyBitmap,
        started: Instant,
    ) -> Result<MoveSummary, MoveError> {
        let pages = self.partition.page_count();
        let base_ms = u64::try_from(self.cfg.downtime_limit.as_millis()).unwrap_or(u64::MAX);
        let mut limit = self.cfg.downtime_limit;
        // Rounds that did not shrink the dirty set, over the whole move (the convergence
        // schedule's count; auto-converge's own count restarts at each throttle step).
        let mut stalled_in_all = 0u32;
        let mut comp = Compressor::new(self.cfg.compression);
        let mut totals = Totals {
            wire_per_memory: 1.0,
            ..Totals::default()
        };
        self.partition
            .start_dirty_tracking()
            .map_err(MoveError::partition("starting dirty tracking"))?;
        let mut bitmap = DirtyBitmap::full(pages);
        let mut round = 0u32;
        let mut stalled = 0u32;
        let mut prev_dirty = u64::MAX;
        let mut last_sent = pages;
        let mut throttle = 0u8;
        self.publish(|p| p.stage = Stage::PreCopy);
        loop {
            outstanding.merge(&bitmap);
            let r = tokio::select! {
                r = self.send_round(link, &mut comp, &mut totals, round, &bitmap, None)
                    .instrument(info_span!("precopy_round", round, pages = bitmap.count())) => r?,
                _ = self.cancel.cancelled() => return Err(MoveError::Cancelled),
                _ = self.timeout.expired() => return Err(MoveError::TimedOut {
                    rounds: round,
                    dirty_bytes: bitmap.count() * PAGE_SIZE as u64,
                }),
            };
            // Delivered: the receiver acknowledged the round.
            *outstanding = DirtyBitmap::new(pages);
            totals.rounds = round + 1;
            totals.stats.add(&r.stats);
            if r.stats.wire_bytes >= 4 << 20 || totals.wire_rate == 0.0 {
                let rate = r.stats.wire_bytes as f64 / r.elapsed.as_secs_f64().max(1e-6);
                totals.wire_rate = if totals.wire_rate == 0.0 {
                    rate
                } else {
                    0.5 * totals.wire_rate + 0.5 * rate
                };
            }
            if r.stats.memory_bytes >= 1 << 20 {
                totals.wire_per_memory = r.stats.wire_bytes as f64 / r.stats.memory_bytes as f64;
            }
            bitmap = self
                .partition
                .take_dirty_bitmap()
                .map_err(MoveError::partition("taking the dirty bitmap"))?;
            outstanding.merge(&bitmap);
            let dirty = bitmap.count();
            let dirty_bytes = dirty * PAGE_SIZE as u64;
            let dirty_rate = dirty_bytes as f64 / r.elapsed.as_secs_f64().max(1e-6) / 1e6;
            let rtt = link.conn.rtt();
            let expected = self.expected_suspension(&totals, dirty_bytes, rtt);
            debug!(round, dirty, ?expected, "round done");
            self.publish(|p| {
                p.round = round;
                p.wire_bytes_sent = totals.stats.wire_bytes;
                p.memory_bytes_sent = totals.stats.memory_bytes;
                p.bytes_remaining = dirty_bytes;
                p.dirty_rate_mbps = dirty_rate;
                p.wire_throughput_mbps =
                    r.stats.wire_bytes as f64 / r.elapsed.as_secs_f64().max(1e-6) / 1e6;
                p.memory_throughput_mbps =
                    r.stats.memory_bytes as f64 / r.elapsed.as_secs_f64().max(1e-6) / 1e6;
                p.compression_ratio = ratio(&totals.stats);
                p.compression = comp.choice.clone();
                p.expected_suspension_ms = Some(expected.as_secs_f64() * 1e3);
                p.throttle_percent = throttle;
                p.elapsed_ms = started.elapsed().as_millis() as u64;
                p.timeout_in_s = self.timeout.remaining().as_secs();
            });
            // Suspend when well under the budget, or under it and another round would not
            // shrink the set much (estimates on a busy host are optimistic: keep a margin while
            // rounds still halve the dirty set).
            let halving = dirty * 2 < last_sent;
            last_sent = bitmap_sent_pages(&r.stats).max(1);
            if expected <= limit.mul_f64(0.5) || (expected <= limit && !halving) {
                if self.cfg.hold_at_convergence {
                    info!(round, dirty, ?expected, "converged; a rehearsal holds here");
                    self.publish(|p| {
                        p.note = Some(format!(
                            "converged after round {round}: a rehearsal holds here, the guest keeps running"
                        ))
                    });
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(MoveError::Cancelled),
                        _ = self.timeout.expired() => return Err(MoveError::TimedOut {
                            rounds: round + 1,
                            dirty_bytes,
                        }),
                    }
                }
                info!(round, dirty, ?expected, "converged; suspending");
                break;
            }
            if self.cancel.is_cancelled() {
                return Err(MoveError::Cancelled);
            }
            if self.timeout.remaining().is_zero() {
                return Err(MoveError::TimedOut {
                    rounds: round + 1,
                    dirty_bytes,
                });
            }
            // Auto-converge: rounds that stop shrinking (by 10 %) twice in a row step the throttle.
            if (dirty as f64) > 0.9 * prev_dirty as f64 {
                stalled += 1;
                stalled_in_all = stalled_in_all.saturating_add(1);
                if let Some(schedule) = &self.cfg.convergence {
                    let now_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                    let raised = schedule.downtime_limit_after(stalled_in_all, base_ms);
                    if schedule.gives_up_after(stalled_in_all) {
                        warn!(round, stalled_in_all, "convergence schedule: giving up");
                        return Err(MoveError::DidNotConverge {
                            rounds: round + 1,
                            stalled_rounds: stalled_in_all,
                            downtime_limit_ms: now_ms,
                        });
                    }
                    if raised > now_ms {
                        limit = Duration::from_millis(raised);
                        let note = format!(
                            "convergence schedule: {stalled_in_all} rounds stalled, downtime limit raised to {raised} ms"
                        );
                        info!("{note}");
                        self.publish(|p| p.note = Some(note));
                    }
                }
            } else {
                stalled = 0;
            }
            prev_dirty = prev_dirty.min(dirty);
            if self.cfg.auto_converge && stalled >= 2 && throttle < 99 {
                throttle = if throttle == 0 {
                    20
                } else {
                    (throttle + 10).min(99)
                };
                self.partition
                    .set_throttle(throttle)
                    .map_err(MoveError::partition("throttling the source's vCPUs"))?;
                totals.max_throttle = throttle;
                stalled = 0;
                let note = format!(
                    "auto-converge: dirty set not shrinking ({} MB at {dirty_rate:.0} MB/s), throttling vCPUs by {throttle} %",
                    dirty_bytes / 1_000_000
                );
                info!("{note}");
                self.publish(|p| {
                    p.throttle_percent = throttle;
                    p.note = Some(note);
                });
            }
            round += 1;
        }
        self.switchover(
            link,
            &mut comp,
            &mut totals,
            outstanding,
            round + 1,
            bitmap,
            started,
        )
        .await
    }

    fn expected_suspension(&self, totals: &Totals, dirty_bytes: u64, rtt: Duration) -> Duration {
        if totals.wire_rate <= 0.0 {
            return Duration::MAX;
        }
        let wire = dirty_bytes as f64 * totals.wire_per_memory;
        // Two round trips: the pages and the Switchover, then Ready.
        Duration::from_secs_f64(wire / totals.wire_rate) + rtt * 2
    }

    #[allow(clippy::too_many_arguments)]
    async fn switchover(
        &self,
        link: &mut Link,
        comp: &mut Compressor,
        totals: &mut Totals,
        outstanding: &mut DirtyBitmap,
        round: u32,
        mut bitmap: DirtyBitmap,
        started: Instant,
    ) -> Result<MoveSummary, MoveError> {
        self.timeout
            .inner
            .extendable
            .store(false, Ordering::Release);
        let paused_at = Instant::now();
        let p = Arc::clone(&self.partition);
        tokio::task::spawn_blocking(move || p.pause())
            .await
            .map_err(|e| MoveError::Internal(format!("pause task: {e}")))?
            .map_err(MoveError::partition("pausing the source"))?;
        self.publish(|p| p.stage = Stage::Suspended);
        let last = self
            .partition
            .take_dirty_bitmap()
            .map_err(MoveError::partition("taking the final dirty bitmap"))?;
        bitmap.merge(&last);
        outstanding.merge(&bitmap);
        let digest_task = self.cfg.verify.then(|| {
            let p = Arc::clone(&self.partition);
            tokio::task::spawn_blocking(move || p.digest())
        });
        let final_pages = bitmap.count();
        let vcpu = self
            .partition
            .save_vcpu_state()
            .map_err(MoveError::partition("saving the source's vCPU state"))?;
        // The digest runs while the final pages travel (memory no longer changes).
        let verify = digest_task.is_some();
        let sw = (vcpu, digest_task);
        let r = tokio::select! {
            r = self.send_round(link, comp, totals, round, &bitmap, Some(sw))
                .instrument(info_span!("final_round", round, pages = final_pages)) => r?,
            _ = self.cancel.cancelled() => return Err(MoveError::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                return Err(MoveError::PeerTimeout(Duration::from_secs(60), "finishing the switch-over"));
            }
        };
        let downtime = paused_at.elapsed();
        totals.stats.add(&r.stats);
        totals.rounds = round + 1;
        let total_time = started.elapsed();
        let summary = MoveSummary {
            total_time,
            downtime,
            rounds: totals.rounds,
            memory_size: self.partition.memory_size(),
            memory_bytes_sent: totals.stats.memory_bytes,
            wire_bytes: totals.stats.wire_bytes,
            pages_zero: totals.stats.pages_zero,
            pages_raw: totals.stats.pages_raw,
            pages_compressed: totals.stats.pages_compressed,
            final_round_pages: final_pages,
            max_throttle_percent: totals.max_throttle,
            compression: comp.choice.clone(),
            memory_throughput_mbps: totals.stats.memory_bytes as f64
                / total_time.as_secs_f64().max(1e-9)
                / 1e6,
            verified: verify,
        };
        self.publish(|p| {
            p.round = round;
            p.wire_bytes_sent = totals.stats.wire_bytes;
            p.memory_bytes_sent = totals.stats.memory_bytes;
            p.compression_ratio = ratio(&totals.stats);
            p.elapsed_ms = total_time.as_millis() as u64;
            p.note = Some(format!(
                "suspended {:.1} ms for {final_pages} final pages",
                downtime.as_secs_f64() * 1e3
            ));
        });
        Ok(summary)
    }

    /// Sends the pages of `bitmap` as round `round` and waits for the receiver's ack; with
    /// `switchover` set, ends with `Switchover` and waits for `Ready` instead.
    async fn send_round(
        &self,
        link: &mut Link,
        comp: &mut Compressor,
        totals: &mut Totals,
        round: u32,
        bitmap: &DirtyBitmap,
        switchover: Option<(crate::partition::VcpuState, Option<DigestTask>)>,
    ) -> Result<RoundResult, MoveError> {
        let start = Instant::now();
        let plans = plan_batches(bitmap, self.cfg.batch_pages);
        let total_batches = plans.len() as u64;
        let mut stats = BatchStats::default();
        let mut rest: &[BatchPlan] = &plans;
        let probe = ((PROBE_BYTES / (self.cfg.batch_pages * PAGE_SIZE) as u64) as usize).max(1);
        let mut since_probe = 0usize;
        while !rest.is_empty() {
            if comp.should_probe(rest.len(), since_probe, probe) {
                let raw = self
                    .send_segment(link, round, &rest[..probe], Encoding::Raw)
                    .await?;
                rest = &rest[probe..];
                let zstd = self
                    .send_segment(link, round, &rest[..probe], Encoding::Zstd)
                    .await?;
                rest = &rest[probe..];
                stats.add(&raw.stats);
                stats.add(&zstd.stats);
                comp.decide(&raw, &zstd);
                since_probe = 0;
                self.publish(|p| p.compression = comp.choice.clone());
                continue;
            }
            // Up to the next point where a probe may be due: each segment ends with every
            // stream drained, so fewer, longer segments keep the path busy.
            let n = match comp.batches_until_due(since_probe, probe) {
                Some(due) if due > 0 => rest.len().min(due),
                // No probe due, or one due but too little of the round left for it.
                _ => rest.len(),
            };
            since_probe += n;
            let (sent_before, wire_before) = (
                totals.stats.memory_bytes + stats.memory_bytes,
                totals.stats.wire_bytes + stats.wire_bytes,
            );
            let round_left = rest.iter().map(|p| p.pages as u64).sum::<u64>() * PAGE_SIZE as u64;
            let r = self
                .send_segment_reporting(
                    link,
                    round,
                    &rest[..n],
                    comp.choice.encoding,
                    |memory, wire| {
                        self.publish(|p| {
                            p.memory_bytes_sent = sent_before + memory;
                            p.wire_bytes_sent = wire_before + wire;
                            p.bytes_remaining = round_left.saturating_sub(memory);
                            p.elapsed_ms = p.elapsed_ms.max(1);
                        })
                    },
                )
                .await?;
            rest = &rest[n..];
            stats.add(&r.stats);
        }
        match switchover {
            None => {
                link.send(&Message::round_end(round, total_batches)).await?;
                link.expect_ack(round, total_batches).await?;
            }
            Some((vcpu, digest_task)) => {
                let digest: Option<MemoryDigest> = match digest_task {
                    Some(t) => Some(
                        t.await
                            .map_err(|e| MoveError::Internal(format!("digest task: {e}")))?
                            .map_err(MoveError::partition(
                                "computing the source's memory digest",
                            ))?,
                    ),
                    None => None,
                };
                link.send(&Message::switchover(round, total_batches, vcpu, digest))
                    .await?;
                match link.recv().await? {
                    Message::Ready { digest: theirs } => {
                        if let (Some(ours), Some(theirs)) = (digest, theirs)
                            && ours != theirs
                        {
                            return Err(MoveError::DigestMismatch {
                                source_digest: ours,
                                destination: theirs,
                            });
                        }
                    }
                    other => {
                        return Err(MoveError::Protocol(format!(
                            "expected Ready, got {}",
                            other.name()
                        )));
                    }
                }
            }
        }
        Ok(RoundResult {
            stats,
            elapsed: start.elapsed(),
        })
    }

    /// Encodes `plans` on blocking workers (one per data stream) and waits until every frame is
    /// handed to quinn.
    async fn send_segment(
        &self,
        link: &Link,
        round: u32,
        plans: &[BatchPlan],
        encoding: Encoding,
    ) -> Result<SegmentResult, MoveError> {
        self.send_segment_reporting(link, round, plans, encoding, |_, _| ())
            .await
    }

    /// [`Self::send_segment`], calling `report(memory bytes, wire bytes)` of the segment so far
    /// every [`PROGRESS_EVERY`] while it runs.
    async fn send_segment_reporting(
        &self,
        link: &Link,
        round: u32,
        plans: &[BatchPlan],
        encoding: Encoding,
        mut report: impl FnMut(u64, u64),
    ) -> Result<SegmentResult, MoveError> {
        let start = Instant::now();
        let n = link.writers.len().max(1);
        let chunk = plans.len().div_ceil(n).max(1);
        let abort = Arc::new(AtomicBool::new(false));
        let done = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let mut workers = Vec::new();
        for (i, part) in plans.chunks(chunk).enumerate() {
            let part = part.to_vec();
            let tx = link.writers[i % n].clone();
            let p = Arc::clone(&self.partition);
            let abort = Arc::clone(&abort);
            let done = Arc::clone(&done);
            workers.push(tokio::task::spawn_blocking(move || {
                let mut enc = BatchEncoder::new();
                let mut stats = BatchStats::default();
                for plan in &part {
                    if abort.load(Ordering::Relaxed) {
                        return Err(MoveError::Cancelled);
                    }
                    let (frame, st) = enc.encode(p.as_ref(), plan, round, encoding)?;
                    done.0.fetch_add(st.memory_bytes, Ordering::Relaxed);
                    done.1.fetch_add(st.wire_bytes, Ordering::Relaxed);
                    stats.add(&st);
                    if tx.blocking_send(WriterItem::Frame(frame)).is_err() {
                        return Err(MoveError::ConnectionLost("a data stream closed".into()));
                    }
                }
                let (dtx, drx) = oneshot::channel();
                if tx.blocking_send(WriterItem::Flush(dtx)).is_err() {
                    return Err(MoveError::ConnectionLost("a data stream closed".into()));
                }
                Ok((stats, drx))
            }));
        }
        // Stop the workers if this future is dropped (cancel, timeout).
        struct AbortOnDrop(Arc<AtomicBool>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = AbortOnDrop(abort);
        let mut joined = std::pin::pin!(join_in_order(workers));
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let results = loop {
            tokio::select! {
                results = &mut joined => break results,
                _ = tick.tick() => {
                    report(done.0.load(Ordering::Relaxed), done.1.load(Ordering::Relaxed));
                }
            }
        };
        let mut stats = BatchStats::default();
        let mut first_err = None;
        let mut flushes = Vec::new();
        for w in results {
            match w {
                Ok(Ok((st, flushed))) => {
                    stats.add(&st);
                    flushes.push(flushed);
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(MoveError::Internal(format!("encoder task: {e}")));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(match e {
                MoveError::ConnectionLost(_) => link.lost(e),
                other => other,
            });
        }
        for f in flushes {
            if f.await.is_err() {
                return Err(link.lost("a data stream failed"));
            }
        }
        Ok(SegmentResult {
            stats,
            elapsed: start.elapsed(),
        })
    }
}

/// How often a long segment reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Awaits every task in order (each runs on its own; the order only sets who is awaited first).
async fn join_in_order<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

fn bitmap_sent_pages(s: &BatchStats) -> u64 {
    s.memory_bytes / PAGE_SIZE as u64
}

fn ratio(s: &BatchStats) -> f64 {
    if s.wire_bytes == 0 {
        1.0
    } else {
        s.memory_bytes as f64 / s.wire_bytes as f64
    }
}

/// `at + by`, or (when that would overflow the clock) the longest timeout after `at`.
fn far_after(at: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(Duration::from_secs(crate::api::MoveOptions::MAX_TIMEOUT_S)))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(memory: u64, wire: u64, ms: u64) -> SegmentResult {
        SegmentResult {
            stats: BatchStats {
                memory_bytes: memory,
                wire_bytes: wire,
                compress_input: memory / 2,
                compress_ns: 1_000_000,
                ..BatchStats::default()
            },
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn auto_compression_follows_the_bottleneck() {
        // CPU-bound (loopback): raw moves memory faster.
        let mut c = Compressor::new(CompressionMode::Auto);
        c.decide(&seg(32 << 20, 20 << 20, 30), &seg(32 << 20, 9 << 20, 90));
        assert_eq!(c.choice.encoding, Encoding::Raw);
        assert!(c.choice.reason.contains("CPU-bound"), "{}", c.choice.reason);
        // Path-bound (1 Gbit/s): zstd moves memory faster.
        let mut c = Compressor::new(CompressionMode::Auto);
        c.decide(&seg(32 << 20, 20 << 20, 170), &seg(32 << 20, 9 << 20, 90));
        assert_eq!(c.choice.encoding, Encoding::Zstd);
        assert!(c.choice.reason.contains("path is the bottleneck"));
        // Forced modes never probe.
        let c = Compressor::new(CompressionMode::Never);
        assert!(!c.should_probe(10_000, 0, 128));
        // Auto probes once the connection is warm and enough of the round is left.
        let c = Compressor::new(CompressionMode::Auto);
        assert!(!c.should_probe(10_000, 0, 128), "not on a cold connection");
        assert!(c.should_probe(3 * 128, 2 * 128, 128));
        assert!(!c.should_probe(3 * 128 - 1, 2 * 128, 128));
    }

    #[test]
    fn one_far_off_probe_does_not_hold_the_verdict() {
        // 1 Gbit/s path: raw moves 200 MB/s of memory, zstd 290 MB/s, but the first zstd probe
        // ran while the destination was still pre-faulting.
        let mut c = Compressor::new(CompressionMode::Auto);
        let raw = seg(32 << 20, 20 << 20, 168);
        c.decide(&raw, &seg(32 << 20, 9 << 20, 4_000));
        assert_eq!(c.choice.encoding, Encoding::Raw);
        // Not yet three probes: the next one comes after the warm-up distance, not 1 GiB later.
        assert_eq!(c.batches_until_due(0, 128), Some(WARMUP_PROBES * 128));
        c.decide(&raw, &seg(32 << 20, 9 << 20, 115));
        c.decide(&raw, &seg(32 << 20, 9 << 20, 110));
        assert_eq!(c.choice.encoding, Encoding::Zstd, "{}", c.choice.reason);
        assert!(c.batches_until_due(0, 128) > Some(WARMUP_PROBES * 128));
    }

    #[tokio::test]
    async fn timeout_extends_only_while_memory_moves() {
        let t = TimeoutHandle::new(Duration::from_secs(10));
        assert!(t.extend(Duration::from_secs(100)));
        assert!(t.remaining() > Duration::from_secs(100));
        t.inner.extendable.store(false, Ordering::Release);
        assert!(!t.extend(Duration::from_secs(100)));
        assert!(t.remaining() < Duration::from_secs(111));
    }

    #[tokio::test]
    async fn timeout_fires_at_the_extended_deadline() {
        let t = TimeoutHandle::new(Duration::from_millis(200));
        let t2 = t.clone();
        let start = tokio::time::Instant::now();
        let waiter = tokio::spawn(async move { t2.expired().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.extend(Duration::from_millis(300));
        waiter.await.expect("join");
        assert!(start.elapsed() >= Duration::from_millis(500));
    }
}
