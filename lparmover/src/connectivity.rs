//! Connectivity Test (ch. 4 "Executing Connectivity Test"): proves the migration path between two
//! HVMs before a maintenance window — a mutually authenticated QUIC handshake between their
//! migration path addresses, round-trip latency, a throughput probe and the path MTU — and ends
//! with "Connectivity Test completed!".
//!
//! ```text
//! manager                         destination HVM                      source HVM
//!   | ticket = random 32 bytes          |                                  |
//!   |-- POST /v1/probe/listen --------->| bind QUIC on its migration path, |
//!   |   {ticket, source cert}           | pin the source's certificate     |
//!   |<-- {addr, cert} ------------------|                                  |
//!   |-- POST /v1/probe/run -------------------------------------------------->|
//!   |   {dest addr, dest cert, ticket, limits}                               |
//!   |                                   |<==== QUIC (mutual pinned TLS) ====|
//!   |                                   |  bidi: ticket → OK, pings ⇄      |
//!   |                                   |  uni:  N bytes →                 |
//!   |                                   |  bidi: ← bytes received          |
//!   |<-- ProbeReport --------------------------------------------------------|
//! ```
//!
//! The QUIC halves ([`serve_probe`], [`run_probe`]) live here so both are tested without an HVM;
//! hvmsim only binds the endpoints on its migration path with its own certificate.
//!
//! Every test, passed or not, goes into the migration history as a trial
//! ([`crate::history::TrialKind::ConnectivityTest`]); it moves no LPAR.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::api::limits::{InvalidField, check_ticket_and_cert};
use crate::api::{ClientError, HvmClient, Inventory};
use crate::emg::{Emg, EmgError};
use crate::history::{Actor, JobHistory, MoveResult, TrialKind, TrialRecord};
use crate::mover::tls::{self as mtls, PinnedClients, SERVER_NAME};
use crate::mover::{Identity, JobTicket};
use crate::profile::{Profile, ProfileError};

/// The seed's closing line of a successful test.
pub const COMPLETED: &str = "Connectivity Test completed!";
/// Default throughput probe size.
pub const DEFAULT_BYTES: u64 = 64 << 20;
/// Default throughput probe time limit.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(1);
/// Longest throughput probe accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(10);
/// Largest probe accepted.
pub const MAX_BYTES: u64 = 4 << 30;
/// Default number of ping-pongs.
pub const DEFAULT_PINGS: u32 = 10;
/// How long a destination waits for the source to connect.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Handshake time limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of one write of the throughput probe.
const CHUNK: usize = 64 << 10;
/// Bytes of a ping.
const PING_LEN: usize = 8;
/// What the destination answers a good ticket with.
const TICKET_OK: u8 = 0x01;

/// `POST /v1/probe/listen` (destination): expect one probe from the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeListen {
    /// One-time ticket, hex (64 characters).
    pub ticket: String,
    /// The source HVM's certificate (PEM), the only client accepted.
    pub source_cert_pem: String,
    /// Seconds to wait for the source (default [`LISTEN_TIMEOUT`]).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// The destination's answer: where to connect and which certificate it presents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeListening {
    /// The probe endpoint, on the destination's migration path.
    pub addr: SocketAddr,
    /// Its certificate (PEM), for the source to pin.
    pub cert_pem: String,
}

/// `POST /v1/probe/run` (source): probe the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRun {
    /// The destination's probe endpoint.
    pub dest_addr: SocketAddr,
    /// The destination's certificate (PEM), pinned.
    pub dest_cert_pem: String,
    /// The ticket the destination expects, hex.
    pub ticket: String,
    /// Throughput probe: stop after this many bytes …
    pub max_bytes: u64,
    /// … or after this long, whichever comes first.
    pub max_duration_ms: u64,
    /// Ping-pongs for the round-trip time.
    pub pings: u32,
}

/// Longest a destination waits for the source's probe.
pub const MAX_LISTEN: Duration = Duration::from_secs(120);
/// Most ping-pongs in one test.
pub const MAX_PINGS: u32 = 1000;

fn in_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<(), InvalidField> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(InvalidField {
        field,
        problem: format!("= {value} is out of range"),
        remedy: format!("give {min} to {max} {unit}"),
    })
}

impl ProbeListen {
    /// Checks the wait and the text fields before anything listens.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(t) = self.timeout_s {
            in_range(
                "timeout_s",
                t,
                1,
                MAX_LISTEN.as_secs(),
                "s (or leave it out)",
            )?;
        }
        check_ticket_and_cert(&self.ticket, "source_cert_pem", &self.source_cert_pem)
    }
}

impl ProbeRun {
    /// Checks every limit of the probe before anything connects.
    pub fn validate(&self) -> Result<(), InvalidField> {
        ProbeLimits {
            max_bytes: self.max_bytes,
            max_duration: Duration::from_millis(self.max_duration_ms),
            pings: self.pings,
        }
        .validate()?;
        check_ticket_and_cert(&self.ticket, "dest_cert_pem", &self.dest_cert_pem)
    }
}

/// Round-trip times of the ping-pongs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    /// Fastest, ms.
    pub min_ms: f64,
    /// Median, ms.
    pub median_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// How many.
    pub samples: u32,
}

/// What the source measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The source's migration path address (the socket it sent from).
    pub source_addr: SocketAddr,
    /// The destination's probe endpoint.
    pub dest_addr: SocketAddr,
    /// QUIC + TLS handshake time, ms.
    pub handshake_ms: f64,
    /// Ping-pong round trips.
    pub rtt: RttStats,
    /// Bytes the destination confirmed receiving.
    pub bytes: u64,
    /// Time from the first byte sent to the destination's confirmation, ms.
    pub transfer_ms: f64,
    /// Throughput, Mbit/s.
    pub throughput_mbps: f64,
    /// Largest UDP payload the connection uses after path MTU discovery (quinn's `current_mtu`).
    pub max_udp_payload: u16,
    /// The IPv4 path MTU that implies (payload + 28 bytes of IPv4 and UDP headers).
    pub path_mtu: u16,
    /// Packets QUIC had to resend.
    pub lost_packets: u64,
}

/// What the manager shows: which HVMs, which paths, and the probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectivityReport {
    /// Job id (its row in the migration history).
    #[serde(default)]
    pub job: String,
    /// Source HVM.
    pub source: String,
    /// Destination HVM.
    pub destination: String,
    /// The probe's figures.
    pub probe: ProbeReport,
    /// Always [`COMPLETED`] on success.
    pub result: String,
}

/// A Connectivity Test that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ConnectivityError {
    /// An HVM is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An HVM could not be reached or answered with a catalogue error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A precondition failed (no migration path, same address, same HVM).
    #[error("{0}")]
    Refused(EmgError),
    /// A limit of the test is out of range (nothing was asked of any HVM).
    #[error(transparent)]
    Limits(#[from] InvalidField),
}

impl ConnectivityError {
    /// The catalogue error behind it.
    pub fn emg(&self) -> EmgError {
        match self {
            Self::Profile(e) => EmgError::new(Emg::BladeNotFound, e.to_string()),
            Self::Client(e) => e.emg(),
            Self::Refused(e) => e.clone(),
            Self::Limits(e) => EmgError::new(Emg::InvalidRequest, e.to_string()),
        }
    }
}

/// A probe that failed on an HVM (mapped to the catalogue by the HVM).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Endpoint or TLS setup failed.
    #[error(transparent)]
    Tls(#[from] mtls::TlsError),
    /// The handshake did not complete.
    #[error("connecting to {addr} over the migration path failed: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The connection broke or a step timed out.
    #[error("the probe connection failed while {step}: {reason}")]
    Lost { step: &'static str, reason: String },
    /// The destination refused the ticket.
    #[error("the destination refused the probe: {0}")]
    Refused(String),
    /// A bad request.
    #[error("{0}")]
    Invalid(String),
}

impl ProbeError {
    /// The catalogue error for the operator.
    pub fn emg(&self) -> EmgError {
        let kind = match self {
            Self::Tls(mtls::TlsError::Bind { .. }) => Emg::InvalidMigrationPathSrc,
            Self::Invalid(_) => Emg::InvalidRequest,
            _ => Emg::MoverConnectionRefused,
        };
        EmgError::new(kind, self.to_string())
    }
}

fn lost(step: &'static str) -> impl FnOnce(String) -> ProbeError {
    move |reason| ProbeError::Lost { step, reason }
}

async fn timed<T, E: std::fmt::Display>(
    limit: Duration,
    step: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(lost(step)(e.to_string())),
        Err(_) => Err(lost(step)(format!("no answer within {limit:?}"))),
    }
}

/// Parses a hex ticket.
pub fn parse_ticket(hex_ticket: &str) -> Result<JobTicket, ProbeError> {
    JobTicket::from_hex(hex_ticket).map_err(|e| ProbeError::Invalid(e.to_string()))
}

/// Parses a PEM certificate.
pub fn parse_cert(pem: &str) -> Result<CertificateDer<'static>, ProbeError> {
    crate::tls::parse_certs(pem)
        .map_err(|e| ProbeError::Invalid(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::Invalid("no certificate in PEM".into()))
}

/// Destination: a QUIC endpoint on `addr` accepting one probe from `source_cert` presenting
/// `ticket`. Returns the endpoint (whose `local_addr` the manager passes on) and the future
/// that serves the probe; run it on a task.
pub fn listen_probe(
    addr: SocketAddr,
    identity: &Identity,
    source_cert: &CertificateDer<'static>,
    ticket: JobTicket,
    timeout: Duration,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<u64, ProbeError>> + use<>,
    ),
    ProbeError,
> {
    let pinned = PinnedClients::default();
    pinned.add(source_cert.as_ref());
    let endpoint = mtls::endpoint(addr, Some(mtls::server_config(identity, pinned)?))?;
    let local = endpoint
        .local_addr()
        .map_err(|source| mtls::TlsError::Bind { addr, source })?;
    Ok((local, serve_probe(endpoint, ticket, timeout)))
}

/// Serves exactly one probe on `endpoint`, then closes it. Returns the bytes received.
pub async fn serve_probe(
    endpoint: quinn::Endpoint,
    ticket: JobTicket,
    timeout: Duration,
) -> Result<u64, ProbeError> {
    let result = serve_one(&endpoint, &ticket, timeout).await;
    endpoint.close(0u32.into(), b"probe over");
    endpoint.wait_idle().await;
    result
}

async fn serve_one(
    endpoint: &quinn::Endpoint,
    ticket: &JobTicket,
    timeout: Duration,
) -> Result<u64, ProbeError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let incoming = timed(left(), "waiting for the source", async {
        endpoint.accept().await.ok_or("endpoint closed")
    })
    .await?;
    let conn = timed(CONNECT_TIMEOUT, "handshaking", async { incoming.await }).await?;
    let (mut send, mut recv) =
        timed(left(), "opening the control stream", conn.accept_bi()).await?;
    let mut presented = [0u8; 32];
    timed(
        CONNECT_TIMEOUT,
        "reading the ticket",
        recv.read_exact(&mut presented),
    )
    .await?;
    if !ticket.matches(&JobTicket(presented)) {
        conn.close(crate::mover::close_code::REFUSED.into(), b"unknown ticket");
        return Err(ProbeError::Refused("wrong ticket".into()));
    }
    timed(
        CONNECT_TIMEOUT,
        "confirming the ticket",
        send.write_all(&[TICKET_OK]),
    )
    .await?;
    // Pings until the source opens the data stream: echo each one.
    let mut ping = [0u8; PING_LEN];
    let data = loop {
        tokio::select! {
            read = recv.read_exact(&mut ping) => {
                read.map_err(|e| lost("echoing pings")(e.to_string()))?;
                timed(CONNECT_TIMEOUT, "echoing pings", send.write_all(&ping)).await?;
            }
            uni = conn.accept_uni() => break uni.map_err(|e| lost("accepting the data stream")(e.to_string()))?,
            () = tokio::time::sleep(left()) => return Err(lost("waiting for data")(format!("no data within {timeout:?}"))),
        }
    };
    let mut data = data;
    let mut received = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while let Some(n) = timed(left(), "receiving data", data.read(&mut buf)).await? {
        received += n as u64;
    }
    timed(
        CONNECT_TIMEOUT,
        "confirming data",
        send.write_all(&received.to_be_bytes()),
    )
    .await?;
    let _ = send.finish();
    // The source closes once it read the confirmation.
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.closed()).await;
    tracing::info!(received, "connectivity probe served");
    Ok(received)
}

/// Source: connects from `local` to the destination and measures.
pub async fn run_probe(
    local: SocketAddr,
    identity: &Identity,
    request: &ProbeRun,
) -> Result<ProbeReport, ProbeError> {
    let ticket = parse_ticket(&request.ticket)?;
    let dest_cert = parse_cert(&request.dest_cert_pem)?;
    let max_bytes = request.max_bytes.clamp(1, MAX_BYTES);
    let max_duration = Duration::from_millis(request.max_duration_ms).min(MAX_DURATION);
    let pings = request.pings.clamp(1, 1000);

    let endpoint = mtls::endpoint(local, None)?;
    let source_addr = endpoint
        .local_addr()
        .map_err(|source| mtls::TlsError::Bind {
            addr: local,
            source,
        })?;
    let config = mtls::client_config(identity, &dest_cert)?;
    let connect_err = |reason: String| ProbeError::Connect {
        addr: request.dest_addr,
        reason,
    };
    let started = Instant::now();
    let connecting = endpoint
        .connect_with(config, request.dest_addr, SERVER_NAME)
        .map_err(|e| connect_err(e.to_string()))?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(connect_err(e.to_string())),
        Err(_) => {
            return Err(connect_err(format!(
                "no handshake within {CONNECT_TIMEOUT:?}"
            )));
        }
    };
    let handshake = started.elapsed();
    let result = measure(&conn, &ticket, max_bytes, max_duration, pings).await;
    match &result {
        Ok(_) => conn.close(crate::mover::close_code::DONE.into(), b"probe done"),
        Err(_) => conn.close(crate::mover::close_code::ABORT.into(), b"probe failed"),
    }
    let stats = conn.stats();
    endpoint.wait_idle().await;
    let (rtt, bytes, transfer) = result?;
    let secs = transfer.as_secs_f64().max(1e-9);
    let mtu = stats.path.current_mtu;
    Ok(ProbeReport {
        source_addr,
        dest_addr: request.dest_addr,
        handshake_ms: ms(handshake),
        rtt,
        bytes,
        transfer_ms: ms(transfer),
        throughput_mbps: bytes as f64 * 8.0 / secs / 1e6,
        max_udp_payload: mtu,
        path_mtu: mtu.saturating_add(28),
        lost_packets: stats.path.lost_packets,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(
    conn: &quinn::Connection,
    ticket: &JobTicket,
    max_bytes: u64,
    max_duration: Duration,
    pings: u32,
) -> Result<(RttStats, u64, Duration), ProbeError> {
    let (mut send, mut recv) = timed(
        CONNECT_TIMEOUT,
        "opening the control stream",
        conn.open_bi(),
    )
    .await?;
    timed(
        CONNECT_TIMEOUT,
        "sending the ticket",
        send.write_all(&ticket.0),
    )
    .await?;
    let mut ok = [0u8; 1];
    match tokio::time::timeout(CONNECT_TIMEOUT, recv.read_exact(&mut ok)).await {
        Ok(Ok(())) if ok[0] == TICKET_OK => {}
        Ok(Ok(())) => return Err(ProbeError::Refused(format!("answer {:#x}", ok[0]))),
        Ok(Err(e)) => return Err(ProbeError::Refused(e.to_string())),
        Err(_) => return Err(lost("presenting the ticket")("no answer".into())),
    }

    let mut samples = Vec::with_capacity(pings as usize);
    let mut echo = [0u8; PING_LEN];
    for i in 0..u64::from(pings) {
        let t = Instant::now();
        timed(CONNECT_TIMEOUT, "pinging", send.write_all(&i.to_be_bytes())).await?;
        timed(CONNECT_TIMEOUT, "pinging", recv.read_exact(&mut echo)).await?;
        if echo != i.to_be_bytes() {
            return Err(lost("pinging")("echo does not match".into()));
        }
        samples.push(ms(t.elapsed()));
    }
    samples.sort_by(f64::total_cmp);
    let rtt = RttStats {
        min_ms: samples.first().copied().unwrap_or_default(),
        median_ms: samples.get(samples.len() / 2).copied().unwrap_or_default(),
        max_ms: samples.last().copied().unwrap_or_default(),
        samples: pings,
    };

    // Incompressible-looking but cheap content: QUIC encrypts it anyway.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 131 % 251) as u8).collect();
    let mut data = timed(CONNECT_TIMEOUT, "opening the data stream", conn.open_uni()).await?;
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < max_bytes && t.elapsed() < max_duration {
        let n = (max_bytes - sent).min(CHUNK as u64) as usize;
        timed(CONNECT_TIMEOUT, "sending data", data.write_all(&chunk[..n])).await?;
        sent += n as u64;
    }
    data.finish()
        .map_err(|e| lost("sending data")(e.to_string()))?;
    let mut confirmed = [0u8; 8];
    timed(
        CONNECT_TIMEOUT + max_duration,
        "waiting for the data confirmation",
        recv.read_exact(&mut confirmed),
    )
    .await?;
    let transfer = t.elapsed();
    let received = u64::from_be_bytes(confirmed);
    if received != sent {
        return Err(lost("confirming data")(format!(
            "sent {sent} bytes, the destination received {received}"
        )));
    }
    Ok((rtt, received, transfer))
}

impl HvmClient {
    /// Destination: expect one connectivity probe.
    pub async fn probe_listen(&self, request: &ProbeListen) -> Result<ProbeListening, ClientError> {
        self.call(Method::POST, "/probe/listen", Some(request), None)
            .await
    }

    /// Source: run a connectivity probe against a listening destination.
    pub async fn probe_run(&self, request: &ProbeRun) -> Result<ProbeReport, ClientError> {
        self.call(Method::POST, "/probe/run", Some(request), None)
            .await
    }
}

/// Limits of a test.
#[derive(Clone, Copy, Debug)]
pub struct ProbeLimits {
    /// Stop the throughput probe after this many bytes …
    pub max_bytes: u64,
    /// … or this long.
    pub max_duration: Duration,
    /// Ping-pongs.
    pub pings: u32,
}

impl ProbeLimits {
    /// Checks the limits an operator gave (the CLI's `--mib` and `--max-ms`, the navigator's
    /// fields) before any HVM is asked: the error names the field and its range.
    pub fn validate(&self) -> Result<(), InvalidField> {
        in_range("max_bytes", self.max_bytes, 1, MAX_BYTES, "bytes")?;
        in_range(
            "max_duration_ms",
            u64::try_from(self.max_duration.as_millis()).unwrap_or(u64::MAX),
            1,
            u64::try_from(MAX_DURATION.as_millis()).unwrap_or(u64::MAX),
            "ms",
        )?;
        in_range(
            "pings",
            u64::from(self.pings),
            1,
            u64::from(MAX_PINGS),
            "ping-pongs",
        )
    }
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_BYTES,
            max_duration: DEFAULT_DURATION,
            pings: DEFAULT_PINGS,
        }
    }
}

/// The primary migration path's address: where the HVM's probe and migration endpoint listen.
fn first_path(inv: &Inventory) -> Option<std::net::Ipv4Addr> {
    inv.blade.hvm.primary_migration_path().map(|p| p.ip)
}

/// Runs a Connectivity Test from `source` to `destination` (HVM names in the profile) and
/// records it, passed or failed, in the migration history.
pub async fn connectivity_test(
    profile: &Profile,
    actor: &Actor,
    source: &str,
    destination: &str,
    limits: ProbeLimits,
) -> Result<ConnectivityReport, ConnectivityError> {
    let mut record = TrialRecord {
        job: crate::jobs::new_job_id(),
        kind: TrialKind::ConnectivityTest,
        lpar: None,
        source_hvm: source.to_owned(),
        source_number: None,
        dest_hvm: destination.to_owned(),
        result: MoveResult::InProgress,
        started_at: chrono::Utc::now(),
        finished_at: None,
        detail: None,
        actor: Some(actor.clone()),
    };
    limits.validate()?;
    let result = probe_between(profile, source, destination, limits).await;
    record.finished_at = Some(chrono::Utc::now());
    match &result {
        Ok(probe) => {
            record.result = MoveResult::Completed;
            record.detail = Some(format!(
                "RTT median {:.3} ms, {:.0} Mbit/s, path MTU {}",
                probe.rtt.median_ms, probe.throughput_mbps, probe.path_mtu
            ));
        }
        Err(e) => {
            record.result = MoveResult::Failed;
            record.detail = Some(e.emg().to_string());
        }
    }
    JobHistory::from_env().save_trial(&record);
    Ok(ConnectivityReport {
        job: record.job,
        source: source.to_owned(),
        destination: destination.to_owned(),
        probe: result?,
        result: COMPLETED.to_owned(),
    })
}

async fn probe_between(
    profile: &Profile,
    source: &str,
    destination: &str,
    limits: ProbeLimits,
) -> Result<ProbeReport, ConnectivityError> {
    if source == destination {
        return Err(ConnectivityError::Refused(EmgError::new(
            Emg::SameBlade,
            format!("source and destination are both {source}"),
        )));
    }
    let src = HvmClient::new(profile.hvm(source)?)?;
    let dst = HvmClient::new(profile.hvm(destination)?)?;
    let (src_inv, dst_inv) = tokio::join!(src.inventory(), dst.inventory());
    let (src_inv, dst_inv) = (src_inv?, dst_inv?);
    let src_ip = first_path(&src_inv).ok_or_else(|| {
        ConnectivityError::Refused(EmgError::new(
            Emg::SourcePathMissing,
            format!("HVM {source} has no migration path"),
        ))
    })?;
    let dst_ip = first_path(&dst_inv).ok_or_else(|| {
        ConnectivityError::Refused(EmgError::new(
            Emg::DestinationPathMissing,
            format!("HVM {destination} has no migration path"),
        ))
    })?;
    if src_ip == dst_ip {
        return Err(ConnectivityError::Refused(EmgError::new(
            Emg::SameMigrationIp,
            format!("{source} and {destination} both use {src_ip}"),
        )));
    }
    let ticket = JobTicket::generate();
    let listening = dst
        .probe_listen(&ProbeListen {
            ticket: ticket.to_hex(),
            source_cert_pem: profile.hvm(source)?.cert_pem.clone(),
            timeout_s: Some(LISTEN_TIMEOUT.as_secs() + limits.max_duration.as_secs()),
        })
        .await?;
    tracing::info!(source, destination, addr = %listening.addr, "destination listens for the probe");
    let probe = src
        .probe_run(&ProbeRun {
            dest_addr: listening.addr,
            dest_cert_pem: listening.cert_pem,
            ticket: ticket.to_hex(),
            max_bytes: limits.max_bytes,
            max_duration_ms: u64::try_from(limits.max_duration.as_millis()).unwrap_or(u64::MAX),
            pings: limits.pings,
        })
        .await?;
    Ok(probe)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn loopback() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }

    /// A management identity (PEM) and its migration-path form.
    fn ident(name: &str) -> (String, Identity) {
        let id = crate::tls::Identity::generate(name, &[]).unwrap();
        (id.cert_pem().to_owned(), id)
    }

    #[tokio::test]
    async fn probe_measures_rtt_throughput_and_mtu() {
        let (_, src) = ident("src");
        let (dst_pem, dst) = ident("dst");
        let ticket = JobTicket::generate();
        let (addr, serve) =
            listen_probe(loopback(), &dst, &src.cert, ticket, LISTEN_TIMEOUT).unwrap();
        let served = tokio::spawn(serve);
        let report = run_probe(
            loopback(),
            &src,
            &ProbeRun {
                dest_addr: addr,
                dest_cert_pem: dst_pem.clone(),
                ticket: ticket.to_hex(),
                max_bytes: 8 << 20,
                max_duration_ms: 5000,
                pings: 5,
            },
        )
        .await
        .unwrap();
        assert_eq!(served.await.unwrap().unwrap(), 8 << 20);
        assert_eq!(report.bytes, 8 << 20);
        assert!(report.throughput_mbps > 0.0);
        assert!(
            report.rtt.min_ms <= report.rtt.median_ms && report.rtt.median_ms <= report.rtt.max_ms
        );
        // Loopback (MTU 65,536) carries datagrams far beyond quinn's own GSO-bound ceiling
        // (6,500): the endpoint's socket splits batches so discovery can climb.
        assert!(report.max_udp_payload > 16_000, "{report:?}");
        assert_eq!(report.path_mtu, report.max_udp_payload + 28);
    }

    #[tokio::test]
    async fn a_wrong_ticket_or_certificate_is_refused() {
        let (_, src) = ident("src");
        let (dst_pem, dst) = ident("dst");
        let (addr, serve) = listen_probe(
            loopback(),
            &dst,
            &src.cert,
            JobTicket::generate(),
            Duration::from_secs(5),
        )
        .unwrap();
        let served = tokio::spawn(serve);
        let request = ProbeRun {
            dest_addr: addr,
            dest_cert_pem: dst_pem.clone(),
            ticket: JobTicket::generate().to_hex(),
            max_bytes: 1 << 20,
            max_duration_ms: 1000,
            pings: 2,
        };
        let err = run_probe(loopback(), &src, &request).await.unwrap_err();
        assert_eq!(err.emg().kind, Emg::MoverConnectionRefused, "{err}");
        assert!(served.await.unwrap().is_err());

        // A stranger's certificate does not get past the handshake.
        let (addr, serve) = listen_probe(
            loopback(),
            &dst,
            &src.cert,
            JobTicket::generate(),
            Duration::from_secs(3),
        )
        .unwrap();
        let _served = tokio::spawn(serve);
        let (_, stranger) = ident("stranger");
        let err = run_probe(
            loopback(),
            &stranger,
            &ProbeRun {
                dest_addr: addr,
                ..request
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::Connect { .. } | ProbeError::Lost { .. } | ProbeError::Refused(_)
            ),
            "{err}"
        );
    }
}
