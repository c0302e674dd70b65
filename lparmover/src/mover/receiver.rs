//! The destination side: a [`MigrationListener`] on the migration path that accepts a partition
//! only for a job ticket the manager told it to expect ([`MigrationListener::expect`]), once, from
//! the source HVM whose certificate was pinned for that ticket; and the receiver's explicit state
//! machine ([`RecvState`], [`step`]), pure, so it is tested without a network.
//!
//! Until the sender's `Commit`, the destination's memory is provisional: an `Abort`, a cancel, a
//! protocol error or a lost connection scrubs (zeroes) everything received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::peerlog::PerPeerLog;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::pages::apply_batch;
use super::tls::{self, Identity, PinnedClients};
use super::wire::{
    Encoding, Hello, JobTicket, Message, PROTOCOL_VERSION, PageBatch, RefuseCode, SettleStep,
    Verdict, WireError,
};
use super::{MoveError, close_code, conn_lost};
use crate::partition::{MemoryDigest, PAGE_SIZE, Partition, VcpuState};

/// How long a connected sender may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the HVM may take to answer a settlement (one durable state write).
const SETTLE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

// The pure state machine lives in `lpm-formats`, so it is fuzzed without building this crate.
pub use lpm_formats::receiver::{Action, Input, OutOfOrder, RecvState, step};

/// What the destination reports while receiving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecvStage {
    /// Waiting for the source to connect.
    #[default]
    Expecting,
    /// Receiving memory.
    Receiving,
    /// Holding all memory and vCPU state, paused; waiting for the commit.
    Ready,
    /// Committed.
    Committed,
    /// Aborted or failed; memory scrubbed.
    Scrubbed,
}

/// Receiver progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvStatus {
    /// Stage.
    pub stage: RecvStage,
    /// Current round.
    pub round: u32,
    /// Batches written.
    pub batches: u64,
    /// Page payload of the batches written, bytes as they came off the migration path
    /// (after zero elision and compression; frame headers not counted).
    #[serde(default)]
    pub payload_bytes: u64,
    /// Guest memory the batches written cover (pages × page size, zero pages included).
    #[serde(default)]
    pub memory_bytes: u64,
}

/// How an incoming move ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// The sender committed: the destination holds the partition, paused; the caller resumes it.
    Committed { rounds: u32, batches: u64 },
    /// The sender aborted; memory was scrubbed.
    Aborted { reason: String },
    /// The connection ended after `Ready` without a decision: memory kept, partition paused. The
    /// manager resolves it from its journal (resume here, or scrub).
    Undecided,
}

struct Job<P> {
    peer_cert: Vec<u8>,
    /// The LPAR the ticket was issued for.
    lpar: String,
    partition: Arc<P>,
    status: watch::Sender<RecvStatus>,
    done: oneshot::Sender<Result<ReceiveOutcome, MoveError>>,
    cancel: CancellationToken,
    commit: CancellationToken,
}

type Jobs<P> = Arc<Mutex<HashMap<[u8; 32], Job<P>>>>;

/// A running move that extra data connections may join.
struct Joinable<P> {
    partition: Arc<P>,
    peer_cert: Vec<u8>,
    events: mpsc::Sender<Event>,
    gate: Arc<Gate>,
}

type Sessions<P> = Arc<Mutex<HashMap<[u8; 32], Joinable<P>>>>;

/// A settlement request from the source (its switch-over lease lapsed), for the HVM to answer
/// from its durable record of the job ([`SettleInbox`]).
#[derive(Debug)]
pub struct SettleCall {
    /// What the source asks.
    pub step: SettleStep,
    /// The answer: written durably before it is sent, or why it could not be given.
    pub reply: oneshot::Sender<Result<Verdict, String>>,
}

/// A job the source may settle: its pinned certificate and where its requests go.
struct Settler {
    peer_cert: Vec<u8>,
    calls: mpsc::Sender<SettleCall>,
}

type Settlers = Arc<Mutex<HashMap<[u8; 32], Settler>>>;

/// The settlement requests of one incoming move. The HVM answers them until the job is settled
/// on its side; dropping the inbox unregisters the job and stops trusting the source's
/// certificate for it (the certificate stays pinned while either the move or the inbox lives).
pub struct SettleInbox {
    calls: mpsc::Receiver<SettleCall>,
    ticket: [u8; 32],
    settlers: Settlers,
    pinned: PinnedClients,
    peer_cert: Vec<u8>,
}

impl std::fmt::Debug for SettleInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SettleInbox")
    }
}

impl SettleInbox {
    /// The next request (None once the listener is gone).
    pub async fn next(&mut self) -> Option<SettleCall> {
        self.calls.recv().await
    }
}

impl Drop for SettleInbox {
    fn drop(&mut self) {
        if let Ok(mut s) = self.settlers.lock() {
            s.remove(&self.ticket);
        }
        self.pinned.remove(&self.peer_cert);
    }
}

/// What every connection handler of a listener shares.
struct Shared<P> {
    jobs: Jobs<P>,
    pinned: PinnedClients,
    sessions: Sessions<P>,
    settlers: Settlers,
    /// Failed handshakes are a stranger's to repeat: logged once a minute per address.
    failed_handshakes: Arc<PerPeerLog>,
}

impl<P> Clone for Shared<P> {
    fn clone(&self) -> Self {
        Self {
            jobs: Arc::clone(&self.jobs),
            pinned: self.pinned.clone(),
            sessions: Arc::clone(&self.sessions),
            settlers: Arc::clone(&self.settlers),
            failed_handshakes: Arc::clone(&self.failed_handshakes),
        }
    }
}

/// Commits an incoming move from the destination's side (see [`IncomingMove::commit_handle`]).
#[derive(Clone, Debug)]
pub struct CommitHandle(CancellationToken);

impl CommitHandle {
    /// Commits once the receiver is `Ready` (at once if it already is).
    pub fn commit(&self) {
        self.0.cancel();
    }
}

/// A destination's migration endpoint.
pub struct MigrationListener<P: Partition + 'static> {
    endpoint: quinn::Endpoint,
    jobs: Jobs<P>,
    pinned: PinnedClients,
    settlers: Settlers,
    accept: tokio::task::JoinHandle<()>,
}

impl<P: Partition + 'static> std::fmt::Debug for MigrationListener<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MigrationListener({:?})",
            self.endpoint.local_addr().ok()
        )
    }
}

/// A move the destination expects (returned by [`MigrationListener::expect`]).
pub struct IncomingMove<P: Partition + 'static> {
    ticket: [u8; 32],
    jobs: Jobs<P>,
    pinned: PinnedClients,
    peer_cert: Vec<u8>,
    /// Progress of the move.
    pub status: watch::Receiver<RecvStatus>,
    /// Taken by [`IncomingMove::finished`].
    done: Option<oneshot::Receiver<Result<ReceiveOutcome, MoveError>>>,
    cancel: CancellationToken,
    commit: CancellationToken,
    settle: Option<SettleInbox>,
}

impl<P: Partition + 'static> Drop for IncomingMove<P> {
    /// A move nobody waits for any more must not start: a ticket the source has not used yet is
    /// withdrawn, so a source that comes late is refused at the ticket check instead of writing
    /// into a partition its HVM already gave back (a session under way is left alone).
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl<P: Partition + 'static> std::fmt::Debug for IncomingMove<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IncomingMove({:?})", *self.status.borrow())
    }
}

impl<P: Partition + 'static> IncomingMove<P> {
    /// Cancels: withdraws the ticket if the source has not connected, else aborts the transfer
    /// (memory scrubbed).
    pub fn cancel(&self) {
        self.withdraw();
        self.cancel.cancel();
    }

    /// Withdraws the ticket if the source has not used it yet.
    fn withdraw(&self) {
        let withdrawn = self
            .jobs
            .lock()
            .map(|mut j| j.remove(&self.ticket).is_some())
            .unwrap_or(false);
        if withdrawn {
            self.pinned.remove(&self.peer_cert);
        }
    }

    /// A handle that commits the move on the destination's side (the manager passed the
    /// commit point and told this HVM directly): once the receiver is `Ready` it moves to
    /// `Committed` and tells the sender so; an `Abort` can no longer scrub the memory.
    pub fn commit_handle(&self) -> CommitHandle {
        CommitHandle(self.commit.clone())
    }

    /// The settlement requests the source will send if the manager's switch-over lease lapses
    /// (once; the HVM keeps it until the job is settled on its side).
    pub fn take_settlements(&mut self) -> Option<SettleInbox> {
        self.settle.take()
    }

    /// Waits until the move ends.
    pub async fn finished(mut self) -> Result<ReceiveOutcome, MoveError> {
        let Some(done) = self.done.take() else {
            return Err(MoveError::Cancelled);
        };
        match done.await {
            Ok(r) => r,
            Err(_) => Err(MoveError::Cancelled),
        }
    }
}

impl<P: Partition + 'static> MigrationListener<P> {
    /// Binds the migration endpoint on `addr` (port 0 for an ephemeral port) with the HVM's
    /// certificate. Must run inside a tokio runtime.
    pub fn bind(addr: SocketAddr, identity: &Identity) -> Result<Self, MoveError> {
        let pinned = PinnedClients::default();
        let server = tls::server_config(identity, pinned.clone())?;
        let endpoint = tls::endpoint(addr, Some(server))?;
        let jobs: Jobs<P> = Arc::default();
        let settlers: Settlers = Arc::default();
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            Shared {
                jobs: Arc::clone(&jobs),
                pinned: pinned.clone(),
                sessions: Arc::default(),
                settlers: Arc::clone(&settlers),
                failed_handshakes: Arc::new(PerPeerLog::new(FAILED_HANDSHAKE_LOG_EVERY)),
            },
        ));
        info!(addr = ?endpoint.local_addr().ok(), "migration listener bound");
        Ok(Self {
            endpoint,
            jobs,
            pinned,
            settlers,
            accept,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, MoveError> {
        self.endpoint
            .local_addr()
            .map_err(|e| MoveError::Internal(format!("endpoint address: {e}")))
    }

    /// Expects one incoming move for `ticket` of LPAR `lpar` (its name) from the source HVM
    /// whose certificate is `peer_cert`, written into `partition` (prepared blank and paused, of
    /// the source's size).
    pub fn expect(
        &self,
        ticket: JobTicket,
        lpar: &str,
        peer_cert: CertificateDer<'static>,
        partition: Arc<P>,
    ) -> IncomingMove<P> {
        let (status_tx, status) = watch::channel(RecvStatus::default());
        let (done_tx, done) = oneshot::channel();
        let cancel = CancellationToken::new();
        let commit = CancellationToken::new();
        // One pin for the move's connections, one for the settlement inbox.
        self.pinned.add(peer_cert.as_ref());
        self.pinned.add(peer_cert.as_ref());
        let (calls_tx, calls) = mpsc::channel(4);
        if let Ok(mut settlers) = self.settlers.lock() {
            settlers.insert(
                ticket.0,
                Settler {
                    peer_cert: peer_cert.to_vec(),
                    calls: calls_tx,
                },
            );
        }
        let settle = SettleInbox {
            calls,
            ticket: ticket.0,
            settlers: Arc::clone(&self.settlers),
            pinned: self.pinned.clone(),
            peer_cert: peer_cert.to_vec(),
        };
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(
                ticket.0,
                Job {
                    peer_cert: peer_cert.to_vec(),
                    lpar: lpar.to_owned(),
                    partition,
                    status: status_tx,
                    done: done_tx,
                    cancel: cancel.clone(),
                    commit: commit.clone(),
                },
            );
        }
        IncomingMove {
            ticket: ticket.0,
            jobs: Arc::clone(&self.jobs),
            pinned: self.pinned.clone(),
            peer_cert: peer_cert.to_vec(),
            status,
            done: Some(done),
            cancel,
            commit,
            settle: Some(settle),
        }
    }

    /// Closes the endpoint: every connection on it is dropped.
    pub fn close(&self) {
        self.endpoint
            .close(close_code::ABORT.into(), b"listener closed");
        self.accept.abort();
    }
}

impl<P: Partition + 'static> Drop for MigrationListener<P> {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How often failed handshakes from one address are logged.
const FAILED_HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(60);

async fn accept_loop<P: Partition + 'static>(endpoint: quinn::Endpoint, shared: Shared<P>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            serve_connection(incoming, shared).instrument(info_span!("incoming_move", %remote)),
        );
    }
}

fn peer_cert(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let id = conn.peer_identity()?;
    let certs = id.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| c.to_vec())
}

enum Event {
    Control(Result<Option<Message>, WireError>),
    Applied {
        round: u32,
        payload_bytes: u64,
        memory_bytes: u64,
    },
    DataError(MoveError),
}

async fn send_msg(send: &mut quinn::SendStream, msg: &Message) -> Result<(), MoveError> {
    let bytes = msg.encode()?;
    send.write_all(&bytes).await.map_err(conn_lost)
}

async fn serve_connection<P: Partition + 'static>(incoming: quinn::Incoming, shared: Shared<P>) {
    let remote = incoming.remote_address().ip();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            if let Some(unlogged) = shared.failed_handshakes.should_log(remote) {
                warn!(
                    error = %e,
                    unlogged_since_last = unlogged,
                    "migration handshake failed (certificate not pinned for any job?); logged at most once a minute per address"
                );
            }
            return;
        }
    };
    let Some(cert) = peer_cert(&conn) else {
        conn.close(close_code::REFUSED.into(), b"no client certificate");
        return;
    };
    // A control stream (a new move) or a data stream (an extra data connection joining one).
    let first = tokio::time::timeout(HELLO_TIMEOUT, async {
        tokio::select! {
            bi = conn.accept_bi() => bi.map(Ok),
            uni = conn.accept_uni() => uni.map(Err),
        }
    })
    .await;
    let (mut send, mut recv) = match first {
        Ok(Ok(Ok(bi))) => bi,
        Ok(Ok(Err(uni))) => {
            join_data_connection(conn, cert, uni, &shared.sessions).await;
            return;
        }
        _ => {
            conn.close(close_code::PROTOCOL.into(), b"no control stream");
            return;
        }
    };
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, Message::read_async(&mut recv)).await {
        Ok(Ok(Some(Message::Hello(h)))) => h,
        Ok(Ok(Some(Message::Settle { ticket, step }))) => {
            serve_settlement(&conn, &cert, &mut send, ticket, step, &shared.settlers).await;
            return;
        }
        other => {
            let why = match other {
                Ok(Ok(Some(m))) => format!("expected Hello first, got {}", m.name()),
                Ok(Ok(None)) => "control stream closed before Hello".into(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no Hello within 10 s".into(),
            };
            refuse(&conn, &mut send, RefuseCode::Protocol, &why).await;
            return;
        }
    };
    let job = match take_job(&shared.jobs, &hello, &cert) {
        Ok(job) => job,
        Err((code, why)) => {
            warn!(%why, "refusing incoming move");
            refuse(&conn, &mut send, code, &why).await;
            return;
        }
    };
    if let Err(why) = check_geometry(&hello, job.partition.as_ref()) {
        shared.pinned.remove(&job.peer_cert);
        refuse(&conn, &mut send, RefuseCode::Geometry, &why).await;
        let _ = job.done.send(Err(MoveError::Refused {
            code: RefuseCode::Geometry,
            message: why,
        }));
        return;
    }
    let Job {
        lpar: _,
        partition,
        status,
        done,
        cancel,
        commit,
        peer_cert,
    } = job;
    let join: [u8; 32] = rand::random();
    let result = Session {
        conn: conn.clone(),
        partition,
        status,
        cancel,
        commit,
        gate: Arc::new(Gate::default()),
        join,
        peer_cert: peer_cert.clone(),
        sessions: Arc::clone(&shared.sessions),
    }
    .run(hello, send, recv)
    .await;
    // The certificate stays pinned while the move runs, for extra data connections.
    shared.pinned.remove(&peer_cert);
    if let Ok(mut s) = shared.sessions.lock() {
        s.remove(&join);
    }
    match &result {
        Ok(o) => info!(outcome = ?o, "incoming move ended"),
        Err(e) => warn!(error = %e, "incoming move failed; received memory scrubbed"),
    }
    let _ = done.send(result);
}

/// A settlement connection: the source's switch-over lease lapsed and it asks what the
/// destination's durable record says (writing "fenced" when it had not resumed).
async fn serve_settlement(
    conn: &quinn::Connection,
    cert: &[u8],
    send: &mut quinn::SendStream,
    ticket: JobTicket,
    step: SettleStep,
    settlers: &Settlers,
) {
    let calls = settlers.lock().ok().and_then(|s| {
        s.iter()
            .find(|(k, st)| JobTicket(**k).matches(&ticket) && st.peer_cert == cert)
            .map(|(_, st)| st.calls.clone())
    });
    let Some(calls) = calls else {
        refuse(
            conn,
            send,
            RefuseCode::Ticket,
            "no job to settle for this ticket here (its part of the move is over, or this HVM restarted since); the manager's recovery decides",
        )
        .await;
        return;
    };
    let (reply, answer) = oneshot::channel();
    if calls.send(SettleCall { step, reply }).await.is_err() {
        refuse(
            conn,
            send,
            RefuseCode::Settlement,
            "the HVM no longer settles this job",
        )
        .await;
        return;
    }
    match tokio::time::timeout(SETTLE_ANSWER_TIMEOUT, answer).await {
        Ok(Ok(Ok(verdict))) => {
            info!(?step, ?verdict, "settlement answered");
            if send_msg(send, &Message::Verdict(verdict)).await.is_ok() {
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            }
        }
        Ok(Ok(Err(why))) => refuse(conn, send, RefuseCode::Settlement, &why).await,
        Ok(Err(_)) | Err(_) => {
            refuse(
                conn,
                send,
                RefuseCode::Settlement,
                "the HVM did not answer the settlement in time",
            )
            .await;
        }
    }
}

/// An extra data connection: its first stream must open with the `Join` secret of a running
/// move from the same source certificate; then all its streams feed that move.
async fn join_data_connection<P: Partition + 'static>(
    conn: quinn::Connection,
    cert: Vec<u8>,
    mut first: quinn::RecvStream,
    sessions: &Sessions<P>,
) {
    let join = match tokio::time::timeout(HELLO_TIMEOUT, Message::read_async(&mut first)).await {
        Ok(Ok(Some(Message::Join { join }))) => join,
        _ => {
            warn!("a data connection did not open with Join; closing it");
            conn.close(close_code::PROTOCOL.into(), b"expected Join");
            return;
        }
    };
    let found = sessions.lock().ok().and_then(|s| {
        s.iter()
            .find(|(k, j)| JobTicket(**k).matches(&JobTicket(join)) && j.peer_cert == cert)
            .map(|(_, j)| {
                (
                    Arc::clone(&j.partition),
                    j.events.clone(),
                    Arc::clone(&j.gate),
                )
            })
    });
    let Some((partition, events, gate)) = found else {
        warn!("a data connection presented an unknown join secret; closing it");
        conn.close(close_code::REFUSED.into(), b"unknown join secret");
        return;
    };
    debug!("extra data connection joined");
    tokio::spawn(data_stream(
        first,
        Arc::clone(&partition),
        events.clone(),
        Arc::clone(&gate),
        None,
    ));
    accept_data(conn, partition, events, gate, Some(join)).await;
}

fn take_job<P>(jobs: &Jobs<P>, hello: &Hello, cert: &[u8]) -> Result<Job<P>, (RefuseCode, String)> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            RefuseCode::Version,
            format!(
                "protocol version {} is not spoken here (this HVM speaks {PROTOCOL_VERSION}); update the older HVM",
                hello.version
            ),
        ));
    }
    let mut jobs = jobs
        .lock()
        .map_err(|_| (RefuseCode::Ticket, "job table unavailable".to_string()))?;
    let key = jobs
        .keys()
        .find(|k| JobTicket(**k).matches(&hello.ticket))
        .copied()
        .ok_or((
            RefuseCode::Ticket,
            "job ticket unknown or already used; ask the manager to open the job again".to_string(),
        ))?;
    let matches_cert = jobs.get(&key).is_some_and(|j| j.peer_cert == cert);
    if !matches_cert {
        return Err((
            RefuseCode::Ticket,
            "job ticket was issued for another source HVM certificate".to_string(),
        ));
    }
    if let Some(expected) = jobs.get(&key).map(|j| &j.lpar)
        && *expected != hello.lpar
    {
        return Err((
            RefuseCode::Ticket,
            format!(
                "job ticket was issued for LPAR {expected:?}, not {:?}; nothing was received",
                hello.lpar
            ),
        ));
    }
    jobs.remove(&key)
        .ok_or((RefuseCode::Ticket, "job ticket already used".to_string()))
}

fn check_geometry<P: Partition + ?Sized>(hello: &Hello, p: &P) -> Result<(), String> {
    if hello.page_size as usize != PAGE_SIZE || p.page_size() != PAGE_SIZE {
        return Err(format!(
            "page size {} is not the {PAGE_SIZE} bytes this HVM uses",
            hello.page_size
        ));
    }
    if hello.memory_size != p.memory_size() {
        return Err(format!(
            "the source partition has {} bytes of memory but the destination was prepared with {}; prepare it with the source's size",
            hello.memory_size,
            p.memory_size()
        ));
    }
    if hello.data_streams == 0 || hello.data_streams > 32 {
        return Err(format!(
            "{} data streams is outside 1..=32",
            hello.data_streams
        ));
    }
    Ok(())
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: RefuseCode,
    why: &str,
) {
    if send_msg(send, &Message::refused(code, why)).await.is_ok() {
        let _ = send.finish();
        // Give the refusal a moment to leave before closing.
        let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    }
    conn.close(close_code::refused(code).into(), why.as_bytes());
}

/// Shared between the control loop and the data streams: which round is accepted, and a lock
/// that lets a scrub wait out batches being written.
#[derive(Default)]
struct Gate {
    round: AtomicU32,
    open: AtomicBool,
    writing: RwLock<()>,
}

struct Session<P: Partition + 'static> {
    conn: quinn::Connection,
    partition: Arc<P>,
    status: watch::Sender<RecvStatus>,
    cancel: CancellationToken,
    commit: CancellationToken,
    gate: Arc<Gate>,
    join: [u8; 32],
    peer_cert: Vec<u8>,
    sessions: Sessions<P>,
}

impl<P: Partition + 'static> Session<P> {
    async fn run(
        self,
        hello: Hello,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<ReceiveOutcome, MoveError> {
        let started = Instant::now();
        let (tx, mut rx) = mpsc::channel::<Event>(1024);
        // The control stream is read by its own task so the loop below stays cancel-safe.
        let ctl_tx = tx.clone();
        let control = tokio::spawn(async move {
            loop {
                let m = Message::read_async(&mut recv).await;
                let end = !matches!(m, Ok(Some(_)));
                if ctl_tx.send(Event::Control(m)).await.is_err() || end {
                    return;
                }
            }
        });
        let data = tokio::spawn(accept_data(
            self.conn.clone(),
            Arc::clone(&self.partition),
            tx.clone(),
            Arc::clone(&self.gate),
            None,
        ));
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                self.join,
                Joinable {
                    partition: Arc::clone(&self.partition),
                    peer_cert: self.peer_cert.clone(),
                    events: tx.clone(),
                    gate: Arc::clone(&self.gate),
                },
            );
        }
        drop(tx);
        let result = self.drive(hello, &mut send, &mut rx).await;
        control.abort();
        data.abort();
        match result {
            Ok(outcome) => {
                let stage = match outcome {
                    ReceiveOutcome::Committed { .. } => RecvStage::Committed,
                    ReceiveOutcome::Aborted { .. } => RecvStage::Scrubbed,
                    ReceiveOutcome::Undecided => RecvStage::Ready,
                };
                self.status.send_modify(|s| s.stage = stage);
                debug!(elapsed = ?started.elapsed(), "session done");
                Ok(outcome)
            }
            Err(e) => {
                if let Err(se) = self.scrub().await {
                    warn!(error = %se, "scrubbing the destination after a failure failed");
                }
                // The close itself says what went wrong (quinn truncates the reason to fit the
                // CONNECTION_CLOSE frame): the Refused message may not arrive before it.
                let (code, reason) = match &e {
                    MoveError::Refused { code: rc, message } => {
                        let _ = send_msg(&mut send, &Message::refused(*rc, message.clone())).await;
                        (close_code::refused(*rc), message.clone())
                    }
                    other => (close_code::PROTOCOL, other.to_string()),
                };
                self.conn.close(code.into(), reason.as_bytes());
                Err(e)
            }
        }
    }

    async fn drive(
        &self,
        hello: Hello,
        send: &mut quinn::SendStream,
        rx: &mut mpsc::Receiver<Event>,
    ) -> Result<ReceiveOutcome, MoveError> {
        let mut state = RecvState::AwaitHello;
        let mut batches = 0u64;
        let mut input = Input::Control(Message::Hello(hello));
        loop {
            let (next, action) =
                step(state, input).map_err(|e| MoveError::Protocol(e.to_string()))?;
            state = next;
            if let Some(r) = state.data_round() {
                self.gate.round.store(r, Ordering::Release);
                self.gate.open.store(true, Ordering::Release);
            } else {
                self.gate.open.store(false, Ordering::Release);
            }
            match action {
                Action::None => {}
                Action::Welcome => {
                    send_msg(send, &Message::welcome(self.join)).await?;
                    self.status.send_modify(|s| s.stage = RecvStage::Receiving);
                }
                Action::Ack { round, batches: n } => {
                    send_msg(send, &Message::round_ack(round, n)).await?;
                    self.status.send_modify(|s| s.round = round + 1);
                }
                Action::Finish { vcpu, digest } => {
                    let ours = self.finish(vcpu, digest).await?;
                    send_msg(send, &Message::ready(ours)).await?;
                    self.status.send_modify(|s| s.stage = RecvStage::Ready);
                    info!("destination ready: all memory and vCPU state in, paused");
                }
                Action::Commit => {
                    // Committed from here on, whether the commit came from the sender or from
                    // this HVM (the manager): say so before the connection winds down.
                    self.status.send_modify(|s| s.stage = RecvStage::Committed);
                    send_msg(send, &Message::committed()).await?;
                    let _ = send.finish();
                    let round = self.status.borrow().round;
                    // Let the sender close the connection.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.closed()).await;
                    return Ok(ReceiveOutcome::Committed {
                        rounds: round + 1,
                        batches,
                    });
                }
                Action::Abort { reason } => {
                    info!(%reason, "sender aborted the move; scrubbing");
                    self.scrub().await?;
                    send_msg(send, &Message::aborted()).await?;
                    let _ = send.finish();
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.closed()).await;
                    return Ok(ReceiveOutcome::Aborted { reason });
                }
            }
            let event = tokio::select! {
                ev = rx.recv() => ev,
                _ = self.commit.cancelled(), if state == RecvState::Ready => {
                    info!("committed by this HVM (the manager passed the commit point)");
                    input = Input::Control(Message::Commit);
                    continue;
                }
                _ = self.cancel.cancelled() => {
                    self.conn.close(close_code::ABORT.into(), b"cancelled at the destination");
                    return Err(MoveError::Cancelled);
                }
            };
            input = match event {
                Some(Event::Control(Ok(Some(m)))) => Input::Control(m),
                Some(Event::Applied {
                    round,
                    payload_bytes,
                    memory_bytes,
                }) => {
                    batches += 1;
                    self.status.send_modify(|s| {
                        s.batches = batches;
                        s.payload_bytes += payload_bytes;
                        s.memory_bytes += memory_bytes;
                    });
                    Input::BatchApplied { round }
                }
                Some(Event::Control(Ok(None))) => {
                    return self
                        .lost(&state, "the sender closed the control stream".into())
                        .await;
                }
                Some(Event::Control(Err(e))) => {
                    if self.conn.close_reason().is_some() {
                        return self.lost(&state, e.to_string()).await;
                    }
                    return Err(e.into());
                }
                Some(Event::DataError(e)) => {
                    if self.conn.close_reason().is_some() {
                        return self.lost(&state, e.to_string()).await;
                    }
                    return Err(e);
                }
                None => return self.lost(&state, "all streams ended".into()).await,
            };
        }
    }

    /// The connection ended without Commit or Abort.
    async fn lost(&self, state: &RecvState, why: String) -> Result<ReceiveOutcome, MoveError> {
        let reason = self.conn.close_reason();
        let aborted = matches!(
            &reason,
            Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == close_code::ABORT.into()
        );
        if *state == RecvState::Ready && !aborted {
            warn!(%why, "connection lost after Ready: keeping memory, the manager decides");
            return Ok(ReceiveOutcome::Undecided);
        }
        if aborted {
            self.scrub().await?;
            return Ok(ReceiveOutcome::Aborted {
                reason: "the sender closed the connection with ABORT".into(),
            });
        }
        Err(MoveError::ConnectionLost(match reason {
            Some(r) => r.to_string(),
            None => why,
        }))
    }

    async fn finish(
        &self,
        vcpu: VcpuState,
        digest: Option<MemoryDigest>,
    ) -> Result<Option<MemoryDigest>, MoveError> {
        let p = Arc::clone(&self.partition);
        tokio::task::spawn_blocking(move || {
            p.restore_vcpu_state(&vcpu)
                .map_err(MoveError::partition("loading the vCPU state on the destination"))?;
            let Some(theirs) = digest else {
                return Ok(None);
            };
            let ours = p
                .digest()
                .map_err(MoveError::partition("computing the destination's memory digest"))?;
            if ours != theirs {
                return Err(MoveError::Refused {
                    code: RefuseCode::Digest,
                    message: format!(
                        "memory digest mismatch: source {theirs}, destination {ours}; the move is aborted"
                    ),
                });
            }
            Ok(Some(ours))
        })
        .await
        .map_err(|e| MoveError::Internal(format!("vCPU/digest task: {e}")))?
    }

    async fn scrub(&self) -> Result<(), MoveError> {
        self.gate.open.store(false, Ordering::Release);
        let p = Arc::clone(&self.partition);
        let gate = Arc::clone(&self.gate);
        tokio::task::spawn_blocking(move || {
            // Wait out batches being written; none starts after `open` is false.
            let _w = gate
                .writing
                .write()
                .map_err(|_| MoveError::Internal("write gate poisoned".into()))?;
            p.zero_pages(0, p.page_count())
                .map_err(MoveError::partition("scrubbing the destination's memory"))
        })
        .await
        .map_err(|e| MoveError::Internal(format!("scrub task: {e}")))??;
        self.status.send_modify(|s| s.stage = RecvStage::Scrubbed);
        info!("destination memory scrubbed");
        Ok(())
    }
}

/// Accepts the data streams of a connection; on an extra data connection (`join` set) each
/// must open with that `Join`.
async fn accept_data<P: Partition + 'static>(
    conn: quinn::Connection,
    partition: Arc<P>,
    tx: mpsc::Sender<Event>,
    gate: Arc<Gate>,
    join: Option<[u8; 32]>,
) {
    while let Ok(stream) = conn.accept_uni().await {
        tokio::spawn(data_stream(
            stream,
            Arc::clone(&partition),
            tx.clone(),
            Arc::clone(&gate),
            join,
        ));
    }
}

async fn data_stream<P: Partition + 'static>(
    mut recv: quinn::RecvStream,
    partition: Arc<P>,
    tx: mpsc::Sender<Event>,
    gate: Arc<Gate>,
    join: Option<[u8; 32]>,
) {
    let mut scratch = Vec::new();
    let mut buf = bytes::BytesMut::new();
    if let Some(want) = join {
        match Message::read_async(&mut recv).await {
            Ok(Some(Message::Join { join })) if JobTicket(join).matches(&JobTicket(want)) => {}
            _ => {
                let _ = tx
                    .send(Event::DataError(MoveError::Protocol(
                        "a data stream of an extra connection did not open with the move's Join"
                            .into(),
                    )))
                    .await;
                return;
            }
        }
    }
    loop {
        let batch = match Message::read_async_buf(&mut recv, &mut buf).await {
            Ok(None) => return,
            Ok(Some(Message::Batch(b))) => b,
            Ok(Some(other)) => {
                let _ = tx
                    .send(Event::DataError(MoveError::Protocol(format!(
                        "{} on a data stream; only Batch is allowed there",
                        other.name()
                    ))))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::DataError(e.into())).await;
                return;
            }
        };
        let round = batch.round;
        let payload_bytes = batch.payload.len() as u64;
        let memory_bytes = (batch.page_count() * PAGE_SIZE) as u64;
        let applied = if batch.encoding == Encoding::Raw {
            // A raw batch is one copy of at most 256 KiB (tens of µs): cheaper here than the
            // hand-off to a blocking thread and back, which cost more than the copy.
            gated_apply(partition.as_ref(), &gate, &batch, &mut scratch)
        } else {
            let p = Arc::clone(&partition);
            let g = Arc::clone(&gate);
            let mut scratch_buf = std::mem::take(&mut scratch);
            match tokio::task::spawn_blocking(move || {
                let r = gated_apply(p.as_ref(), &g, &batch, &mut scratch_buf);
                (r, scratch_buf)
            })
            .await
            {
                Ok((r, s)) => {
                    scratch = s;
                    r
                }
                Err(e) => Err(MoveError::Internal(format!("batch writer task: {e}"))),
            }
        };
        let ev = match applied {
            Ok(()) => Event::Applied {
                round,
                payload_bytes,
                memory_bytes,
            },
            Err(e) => Event::DataError(e),
        };
        let stop = matches!(ev, Event::DataError(_));
        if tx.send(ev).await.is_err() || stop {
            return;
        }
    }
}

/// Writes `batch` into `partition` if the gate accepts its round (a batch of another round, or
/// one arriving once the gate closed, is a protocol error).
fn gated_apply<P: Partition + ?Sized>(
    partition: &P,
    gate: &Gate,
    batch: &PageBatch,
    scratch: &mut Vec<u8>,
) -> Result<(), MoveError> {
    let _writing = gate
        .writing
        .read()
        .map_err(|_| MoveError::Internal("write gate poisoned".into()))?;
    let round = batch.round;
    let current = gate.round.load(Ordering::Acquire);
    if !gate.open.load(Ordering::Acquire) || current != round {
        return Err(MoveError::Protocol(format!(
            "a batch of round {round} arrived while the receiver accepts {}",
            if gate.open.load(Ordering::Acquire) {
                format!("round {current}")
            } else {
                "no batches".to_string()
            }
        )));
    }
    apply_batch(partition, batch, scratch).map_err(MoveError::from)
}
