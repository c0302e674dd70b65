//! Resource limits of the blades' and arrays' HTTPS API (issue 17 item 5), against a real blade
//! process: a peer that opens connections and never speaks, or speaks too slowly, or holds a
//! keep-alive connection idle, loses those connections, and a manager on another address is
//! answered meanwhile. A blade at its cap on running moves refuses the next one before anything
//! changes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvmsim::httpd::HttpLimits;
use lparmover::api::{HvmClient, IncomingPrepared, MoveOptions, PrepareIncoming, StartSend};
use lparmover::emg::Emg;
use lparmover::model::LparStatus;
use lparmover::mover::JobTicket;
use lpm_tests::{TestBlade, demo_fleet, find_lpar};
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

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_connection_with_no_request_under_way_is_closed_after_its_idle_time_pings_or_not()
{
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let limits = HttpLimits::default();

    let mut config = lparmover::tls::pinned_client_config(&blade.profile.cert_pem).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = api_addr(&blade);
    let tcp = connect_from(HOSTILE, addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(addr.ip().into(), tcp)
        .await
        .unwrap();
    // The client pings every 2 s, idle or not: pings are not requests.
    let (mut send, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .handshake::<_, String>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let driven = tokio::spawn(connection);
    let answer = send
        .send_request(
            hyper::Request::get(format!("https://{addr}/healthz"))
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "a request on the connection is answered"
    );
    let idle_since = Instant::now();

    manager_is_answered(&blade).await;
    let ended = tokio::time::timeout(limits.idle + Duration::from_secs(10), driven).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection idle for {:?} is closed, pings or not",
        limits.idle
    );
    assert!(
        idle_since.elapsed() >= limits.idle - Duration::from_secs(1),
        "not before its idle time ({:?}): {:?}",
        limits.idle,
        idle_since.elapsed()
    );
    manager_is_answered(&blade).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_that_trickles_is_refused_in_the_catalogue_shape_changing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let blade = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let before = blade.state_bytes();

    let mut slow = http1_connection(&blade).await;
    let head = format!(
        "POST /v1/lpars HTTP/1.1\r\nHost: blade\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"name\": \"slow-01\"",
        blade.profile.token
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    let started = Instant::now();
    manager_is_answered(&blade).await;

    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = hvmsim::httpd::BODY_READ + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("nothing was changed") {
        let n = tokio::time::timeout(
            deadline.saturating_sub(started.elapsed()),
            slow.read(&mut buf),
        )
        .await
        .expect("the server answers a body that never arrives")
        .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive whole within 10 s"), "{text}");
    assert!(
        started.elapsed() >= hvmsim::httpd::BODY_READ - Duration::from_secs(1),
        "not before the body-read time: {:?}",
        started.elapsed()
    );
    assert!(
        blade.state_bytes() == before,
        "a refused body changed the state"
    );
    assert!(find_lpar(&blade.client(), "slow-01").await.is_none());
    manager_is_answered(&blade).await;
}

/// The destination of `job` for `lpar` of `source`, expecting `source`'s certificate.
async fn prepare_incoming(
    source: &TestBlade,
    destination: &TestBlade,
    job: &str,
    lpar: &str,
) -> Result<IncomingPrepared, lparmover::api::ClientError> {
    let view = find_lpar(&source.client(), lpar).await.unwrap();
    destination
        .client()
        .prepare_incoming(
            &PrepareIncoming {
                job: job.into(),
                lpar: view.lpar,
                number: None,
                ticket: JobTicket::generate().to_hex(),
                source_cert_pem: source.profile.cert_pem.clone(),
                ticket_ttl_s: None,
                purpose: Default::default(),
            },
            None,
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blade_at_its_cap_on_running_moves_refuses_the_next_changing_nothing_and_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let source = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    // A cap of one, so that two moves show it (the default, 8, works the same way).
    let busy = TestBlade::start_with_env(
        &fleet_file,
        "ch1-b2",
        &dir.path().join("b2"),
        &[("HVMSIM_MAX_MIGRATIONS", "1")],
    )
    .unwrap();

    prepare_incoming(&source, &busy, "job-cap-first", "web-01")
        .await
        .expect("the first move is admitted");
    let before = busy.state_bytes();

    // The next incoming move, and an outgoing one of the blade's own LPAR, are refused.
    let refused = prepare_incoming(&source, &busy, "job-cap-second", "db-01")
        .await
        .expect_err("a second incoming move is over the cap")
        .emg();
    assert_eq!(refused.kind, Emg::BladeBusyMigration, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("as many migrations as it takes at once (1)")
            && refused.to_string().contains("--max-migrations"),
        "the refusal says why and what to do: {refused}"
    );
    let own = find_lpar(&busy.client(), "app-01").await.unwrap();
    let refused = busy
        .client()
        .start_send(
            &StartSend {
                job: "job-cap-out".into(),
                lpar: own.lpar.number,
                ticket: JobTicket::generate().to_hex(),
                dest_addr: "127.0.0.1:9".parse().unwrap(),
                dest_cert_pem: source.profile.cert_pem.clone(),
                options: MoveOptions::default(),
                exchange: Default::default(),
                purpose: Default::default(),
            },
            None,
        )
        .await
        .expect_err("an outgoing move is over the cap too")
        .emg();
    assert_eq!(refused.kind, Emg::BladeBusyMigration, "{refused}");
    assert!(
        busy.state_bytes() == before,
        "a refused move changed the blade's state file"
    );
    for job in ["job-cap-second", "job-cap-out"] {
        assert!(
            busy.client().migration_status(job).await.is_err(),
            "the refused {job} is not known to the blade"
        );
    }
    let own = find_lpar(&busy.client(), "app-01").await.unwrap();
    assert_eq!(own.lpar.status, LparStatus::Activated, "app-01 runs on");
    manager_is_answered(&busy).await;

    // A finished move gives its place back.
    busy.client()
        .abort_migration("job-cap-first")
        .await
        .unwrap();
    prepare_incoming(&source, &busy, "job-cap-second", "db-01")
        .await
        .expect("admitted once the first move is over");
    busy.client()
        .abort_migration("job-cap-second")
        .await
        .unwrap();
}

#[test]
fn a_cap_outside_its_range_is_refused_at_start_with_what_to_give() {
    for bad in ["0", "65", "-1", "many", "18446744073709551616"] {
        let out = std::process::Command::new(lpm_tests::binary("hvmsim"))
            .args(["serve", "--fleet", "x", "--blade", "x", "--state-dir", "x"])
            .arg(format!("--max-migrations={bad}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--max-migrations {bad} is refused");
        assert!(
            stderr.contains("is not a number of moves from 1 to 64"),
            "--max-migrations {bad}: {stderr}"
        );
    }
}
