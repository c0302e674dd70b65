//! The HTTPS server of a blade's and an array's API, with the limits a management plane needs
//! against a peer that opens connections and never finishes them (slowloris) or never lets
//! them go: connections per peer address and in all, TLS handshake time, HTTP/1 header-read
//! time (which also closes a keep-alive connection left idle), an idle time after which a
//! connection with no request under way is closed (HTTP/2 included, pings or not), HTTP/2
//! streams per connection, keep-alive pings that drop a vanished peer, and a time for a request
//! body to arrive whole ([`BODY_READ`], checked by the JSON extractors).
//!
//! A connection over a limit is closed at once, before TLS: it costs the server a file
//! descriptor for a moment, never a task or a handshake. Peers under the limits (a manager on
//! another address) are answered meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use lparmover::peerlog::PerPeerLog;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Time a request body has to arrive whole once its head is in (1 MiB at most: a second on the
/// slowest management link). Reading the body comes before a handler changes anything, so a
/// body that trickles is refused with nothing changed.
pub const BODY_READ: Duration = Duration::from_secs(10);

/// The limits of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections from one peer address.
    pub connections_per_peer: usize,
    /// Open connections in all.
    pub connections: usize,
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake: Duration,
    /// Time an HTTP/1 client has to send a request's head, counted from when the server waits
    /// for it (so a keep-alive connection idle this long is closed too).
    pub header_read: Duration,
    /// Time a connection may stay open with no request under way (HTTP/2 pings do not count).
    /// Longer than a manager's pool keeps an idle connection
    /// (`lparmover::api::client::POOL_IDLE`), so a manager never reuses one the server closed.
    pub idle: Duration,
    /// Concurrent HTTP/2 streams (requests) on one connection.
    pub streams_per_connection: u32,
    /// How often an HTTP/2 connection is pinged, and how long the answer may take before the
    /// connection is dropped.
    pub keep_alive: (Duration, Duration),
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // A manager holds a handful (the navigator, a CLI, the policy daemon, each with a
            // pool); 32 leaves room for several managers behind one address.
            connections_per_peer: 32,
            connections: 512,
            tls_handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            streams_per_connection: 64,
            keep_alive: (Duration::from_secs(30), Duration::from_secs(10)),
        }
    }
}

/// How often a refused peer is logged (the first refusal is logged at once).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` over TLS within `limits` until `handle` shuts it down.
pub fn serve_https(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    handle: axum_server::Handle<SocketAddr>,
    limits: HttpLimits,
    app: axum::Router,
) -> io::Result<tokio::task::JoinHandle<io::Result<()>>> {
    listener.set_nonblocking(true)?;
    let acceptor = RustlsAcceptor::new(tls)
        .handshake_timeout(limits.tls_handshake)
        .acceptor(ConnectionLimiter::new(limits));
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle);
    let builder = server.http_builder();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.streams_per_connection)
        .keep_alive_interval(limits.keep_alive.0)
        .keep_alive_timeout(limits.keep_alive.1);
    Ok(tokio::spawn(async move {
        server.serve(app.into_make_service()).await
    }))
}

/// Counts open connections per peer address; refuses one over a limit.
#[derive(Clone, Debug)]
struct ConnectionLimiter {
    limits: HttpLimits,
    open: Arc<Mutex<OpenConnections>>,
    refusals: Arc<PerPeerLog>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    per_peer: HashMap<IpAddr, usize>,
    total: usize,
}

impl ConnectionLimiter {
    fn new(limits: HttpLimits) -> Self {
        Self {
            limits,
            open: Arc::new(Mutex::new(OpenConnections::default())),
            refusals: Arc::new(PerPeerLog::new(REFUSAL_LOG_EVERY)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        // The counts are plain integers: a panic elsewhere cannot leave them half written.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `peer`, or why there is none.
    fn admit(&self, peer: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.lock();
        let from_peer = open.per_peer.get(&peer).copied().unwrap_or(0);
        let refused = if from_peer >= self.limits.connections_per_peer {
            Some("connections from this address")
        } else if open.total >= self.limits.connections {
            Some("connections in all")
        } else {
            None
        };
        if let Some(limit) = refused {
            drop(open);
            if let Some(unlogged) = self.refusals.should_log(peer) {
                tracing::warn!(
                    %peer,
                    limit,
                    per_peer = self.limits.connections_per_peer,
                    total = self.limits.connections,
                    unlogged_since_last = unlogged,
                    "connection refused: too many open (logged at most once a minute per address)"
                );
            }
            return Err(limit);
        }
        *open.per_peer.entry(peer).or_insert(0) += 1;
        open.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            peer,
        })
    }

    fn release(&self, peer: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_peer.remove(&peer);
            }
        }
    }
}

/// One admitted connection's place; given back when the connection ends.
#[derive(Debug)]
struct Slot {
    limiter: ConnectionLimiter,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.release(self.peer);
    }
}

impl<S> Accept<TcpStream, S> for ConnectionLimiter {
    type Stream = Admitted;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(Admitted, Tracked<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let idle = self.limits.idle;
        let admitted = stream.peer_addr().and_then(|peer| {
            self.admit(peer.ip())
                .map(|slot| {
                    let activity = Arc::new(Activity::new());
                    let connection = Admitted {
                        stream,
                        _slot: slot,
                        idle_check: Box::pin(tokio::time::sleep(idle)),
                        idle,
                        activity: Arc::clone(&activity),
                    };
                    let service = Tracked {
                        inner: service,
                        activity,
                    };
                    (connection, service)
                })
                .map_err(|limit| io::Error::other(format!("too many {limit}")))
        });
        std::future::ready(admitted)
    }
}

/// What one connection is doing: requests under way, and when that last changed.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last_change: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last_change: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        *self.last_change.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// When the connection will have been idle for `idle`, or `None` if it has been already.
    fn idle_until(&self, idle: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + idle);
        }
        let due = *self.last_change.lock().unwrap_or_else(|p| p.into_inner()) + idle;
        (due > now).then_some(due)
    }
}

/// One request under way on a connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A connection's service, counting the requests under way on it.
#[derive(Clone, Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> tower_service::Service<R> for Tracked<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = self.activity.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        })
    }
}

/// A TCP connection that holds its slot for as long as it is open, and ends once it has had no
/// request under way for its idle time.
#[derive(Debug)]
pub struct Admitted {
    stream: TcpStream,
    _slot: Slot,
    idle_check: Pin<Box<tokio::time::Sleep>>,
    idle: Duration,
    activity: Arc<Activity>,
}

impl Admitted {
    /// Whether the connection has been idle too long; otherwise the timer is set for when it
    /// could be (its wake-up polls the connection's reads again, which land here).
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_check.as_mut().poll(cx).is_ready() {
            match self.activity.idle_until(self.idle) {
                None => return true,
                Some(next) => self.idle_check.as_mut().reset(next),
            }
        }
        false
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.idle_too_long(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_peer: usize, total: usize) -> ConnectionLimiter {
        ConnectionLimiter::new(HttpLimits {
            connections_per_peer: per_peer,
            connections: total,
            ..HttpLimits::default()
        })
    }

    #[test]
    fn a_peer_over_its_limit_is_refused_while_another_is_admitted() {
        let l = limiter(2, 10);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = l.admit(a).unwrap();
        let _second = l.admit(a).unwrap();
        assert_eq!(
            l.admit(a).unwrap_err(),
            "connections from this address",
            "a third from the same address"
        );
        let _other = l.admit(b).expect("another address still gets in");
        drop(first);
        let _again = l.admit(a).expect("a closed connection gives its slot back");
        assert_eq!(l.lock().total, 3);
    }

    #[test]
    fn the_total_limit_holds_across_addresses_and_slots_come_back() {
        let l = limiter(10, 3);
        let slots: Vec<Slot> = (1..=3)
            .map(|i| l.admit(IpAddr::from([127, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(
            l.admit(IpAddr::from([127, 0, 0, 9])).unwrap_err(),
            "connections in all"
        );
        drop(slots);
        let open = l.lock();
        assert_eq!((open.total, open.per_peer.len()), (0, 0));
    }
}
