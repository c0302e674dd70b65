//! Resource limits of the blades' and arrays' HTTPS API (issue 17 item 5), against a real blade
//! process: a peer that opens connections and never speaks, or speaks too slowly, or holds a
//! keep-alive connection idle, loses those connections, and a manager on another address is
//! answered meanwhile.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvmsim::httpd::HttpLimits;
use lparmover::api::HvmClient;
use lpm_tests::{TestBlade, demo_fleet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The address of a blade's management API.
fn api_addr(blade: &TestBlade) -> SocketAddr {
    blade
        .profile
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (the hostile peer has an address
/// of its own; the manager's client uses the kernel's default, 127.0.0.1).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Reads until the server closes the connection (end of stream or reset); what it sent, and
/// `None` if it was still open after `within`.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn manager_is_answered(blade: &TestBlade) {
    let started = Instant::now();
    HvmClient::new(&blade.profile)
        .unwrap()
        .inventory()
        .await
        .expect("the manager is answered meanwhile");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered promptly, not after the hostile peer's connections: {:?}",
        started.elapsed()
    );
}

const HOSTILE: [u8; 4] = [127, 0, 9, 9];

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_holding_too_many_silent_connections_is_refused_and_the_manager_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let addr = api_addr(&blade);
    let limits = HttpLimits::default();

    // As many connections as one address may hold, each silent (not even a TLS hello).
    let mut held = Vec::new();
    for _ in 0..limits.connections_per_peer {
        held.push(connect_from(HOSTILE, addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // One more is closed at once.
    let mut over = connect_from(HOSTILE, addr).await.unwrap();
    assert!(
        read_until_closed(&mut over, Duration::from_secs(3))
            .await
            .is_some(),
        "connection {} from one address is refused",
        limits.connections_per_peer + 1
    );
    manager_is_answered(&blade).await;

    // The silent ones lose their place once the TLS handshake time is up, and the address may
    // connect again.
    for stream in &mut held {
        assert!(
            read_until_closed(stream, limits.tls_handshake + Duration::from_secs(5))
                .await
                .is_some(),
            "a connection that never starts TLS is closed after {:?}",
            limits.tls_handshake
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from(HOSTILE, addr).await.unwrap();
    assert!(
        read_until_closed(&mut again, Duration::from_millis(500))
            .await
            .is_none(),
        "the address has its places back"
    );
    manager_is_answered(&blade).await;
}

/// A TLS connection speaking HTTP/1.1 (slowloris is an HTTP/1 attack; the managers speak h2).
async fn http1_connection(blade: &TestBlade) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = lparmover::tls::pinned_client_config(&blade.profile.cert_pem).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = api_addr(blade);
    let tcp = connect_from(HOSTILE, addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(addr.ip().into(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_sent_too_slowly_or_a_connection_left_idle_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let limits = HttpLimits::default();
    let within = limits.header_read + Duration::from_secs(5);

    // Slowloris: half a request head, then nothing.
    let mut slow = http1_connection(&blade).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: blade\r\nX-Slow: ")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    // Idle: one whole request, answered, then the connection kept open doing nothing.
    let mut idle = http1_connection(&blade).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: blade\r\n\r\n")
        .await
        .unwrap();
    idle.flush().await.unwrap();
    let started = Instant::now();

    manager_is_answered(&blade).await;
    let answered = read_until_closed(&mut idle, within)
        .await
        .expect("an idle keep-alive connection is closed");
    let text = String::from_utf8_lossy(&answered);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "its request was answered first: {text}"
    );
    let cut = read_until_closed(&mut slow, within.saturating_sub(started.elapsed()))
        .await
        .expect("a request head that never ends is cut off");
    assert!(
        started.elapsed() >= limits.header_read - Duration::from_secs(2),
        "not before the header-read time ({:?}): {:?}",
        limits.header_read,
        started.elapsed()
    );
    // hyper answers a timed-out head with 408 or just closes; either way no handler ran.
    let text = String::from_utf8_lossy(&cut);
    assert!(!text.contains(" 200 "), "{text}");
    manager_is_answered(&blade).await;
}
