//! End-to-end tests of the LPAR Mover over real QUIC on 127.0.0.1 (ephemeral ports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::receiver::{IncomingMove, MigrationListener, ReceiveOutcome};
use super::sender::{CompressionMode, Sender, SenderConfig};
use super::testing::{MemGuestConfig, MemPartition, vcpu_bytes};
use super::tls::Identity;
use super::wire::{JobTicket, Message, RefuseCode};
use super::{MEMORY_WRITE_INTENSIVE, MoveError, Progress, Stage};
use crate::partition::Partition;

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn test_mib() -> u64 {
    std::env::var("LPM_TEST_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

struct Rig {
    src: Arc<MemPartition>,
    dst: Arc<MemPartition>,
    listener: MigrationListener<MemPartition>,
    incoming: IncomingMove<MemPartition>,
    cfg: SenderConfig,
    progress: watch::Receiver<Progress>,
    ptx: watch::Sender<Progress>,
    cancel: CancellationToken,
    src_id: Identity,
    dst_id: Identity,
}

/// The name of the LPAR every rig moves.
const LPAR: &str = "web-01";

fn rig(guest: MemGuestConfig) -> Rig {
    let src_id = Identity::generate("src", &[]).expect("cert");
    let dst_id = Identity::generate("dst", &[]).expect("cert");
    let src = Arc::new(MemPartition::running(&guest));
    let dst = Arc::new(MemPartition::blank(src.memory_size()));
    let listener = MigrationListener::bind(LOCAL, &dst_id).expect("bind");
    let ticket = JobTicket::generate();
    let incoming = listener.expect(ticket, LPAR, src_id.cert.clone(), Arc::clone(&dst));
    let mut cfg = SenderConfig::new(
        LOCAL,
        listener.local_addr().expect("addr"),
        src_id.clone(),
        dst_id.cert.clone(),
        ticket,
    );
    cfg.lpar = LPAR.to_owned();
    let (ptx, progress) = watch::channel(Progress::default());
    Rig {
        src,
        dst,
        listener,
        incoming,
        cfg,
        progress,
        ptx,
        cancel: CancellationToken::new(),
        src_id,
        dst_id,
    }
}

impl Rig {
    fn sender(&self) -> Sender<MemPartition> {
        Sender::new(
            Arc::clone(&self.src),
            self.cfg.clone(),
            self.ptx.clone(),
            self.cancel.clone(),
        )
    }
}

fn assert_source_running(src: &MemPartition) {
    assert!(!src.is_paused(), "the source must be running");
    assert_eq!(src.throttle(), 0, "the source must be un-throttled");
}

async fn assert_heartbeat_moves(src: &MemPartition) {
    let a = src.heartbeat().expect("hb").counter;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        src.heartbeat().expect("hb").counter > a,
        "the guest must keep running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_with_dirtying_writer_matches_source_byte_for_byte() {
    let mut r = rig(MemGuestConfig {
        memory_size: test_mib() << 20,
        dirty_rate: 20_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.verify = true;
    let ready = r.sender().run().await.expect("move converges");
    // Source paused at suspension: its memory is the reference.
    assert!(r.src.is_paused());
    let src_mem = r.src.snapshot();
    assert!(
        r.dst.snapshot() == src_mem,
        "destination differs from source"
    );
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
    let vcpu = r.src.save_vcpu_state().expect("vcpu");
    assert_eq!(vcpu_bytes(&r.dst), vcpu.bytes, "vCPU state must arrive");
    let s = ready.summary().clone();
    assert!(s.verified);
    assert!(s.pages_zero > 0, "zero pages travel as bits");
    assert!(s.wire_bytes < s.memory_bytes_sent, "{s:?}");
    assert!(r.progress.borrow().expected_suspension_ms.is_some());
    let summary = ready.commit().await.expect("commit");
    assert_eq!(summary.rounds, s.rounds);
    assert!(matches!(
        r.incoming.finished().await.expect("receiver"),
        ReceiveOutcome::Committed { .. }
    ));
    assert!(
        r.src.is_paused(),
        "a committed source stays paused for release"
    );
    assert_eq!(r.progress.borrow().stage, Stage::Committed);
    // Serializable for the manager's HTTP API.
    assert!(
        serde_json::to_string(&summary)
            .expect("json")
            .contains("downtime")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zstd_move_matches_and_compresses() {
    let mut r = rig(MemGuestConfig {
        memory_size: 8 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.compression = CompressionMode::Always;
    let ready = r.sender().run().await.expect("move");
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
    let s = ready.commit().await.expect("commit");
    assert!(s.pages_compressed > 0, "{s:?}");
    assert!(
        s.memory_bytes_sent as f64 / s.wire_bytes as f64 > 2.0,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extra_data_connections_join_the_move() {
    let mut r = rig(MemGuestConfig {
        memory_size: 16 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.connections = 3;
    r.cfg.streams = 6;
    let ready = r.sender().run().await.expect("move over 3 connections");
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
    ready.commit().await.expect("commit");
    assert!(matches!(
        r.incoming.finished().await.expect("receiver"),
        ReceiveOutcome::Committed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_connection_with_a_wrong_join_secret_is_closed() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let (_conn, _send, _recv) = raw_session(&r).await;
    let client = super::tls::client_config(&r.src_id, &r.dst_id.cert).expect("client");
    let ep = super::tls::endpoint(LOCAL, None).expect("endpoint");
    let extra = ep
        .connect_with(client, r.cfg.peer_addr, super::tls::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let mut s = extra.open_uni().await.expect("uni");
    s.write_all(&Message::join([0; 32]).encode().expect("e"))
        .await
        .expect("join");
    let closed = tokio::time::timeout(Duration::from_secs(5), extra.closed())
        .await
        .expect("closed by the receiver");
    assert!(
        closed.to_string().contains("unknown join secret"),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_mid_transfer_keeps_source_running_and_scrubs_destination() {
    let mut r = rig(MemGuestConfig {
        memory_size: 32 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.bandwidth_limit = Some(10_000_000);
    let cancel = r.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let err = r.sender().run().await.expect_err("cancelled");
    assert!(matches!(err, MoveError::Cancelled), "{err}");
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    // Round 0 was never acknowledged: every page is dirty again.
    let bits = r.src.take_dirty_bitmap().expect("bits");
    assert_eq!(bits.count(), r.src.page_count(), "dirty bits lost");
    assert!(matches!(
        r.incoming.finished().await.expect("receiver"),
        ReceiveOutcome::Aborted { .. }
    ));
    assert!(r.dst.is_all_zero(), "destination not scrubbed");
    assert_eq!(r.progress.borrow().stage, Stage::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rehearsal_holds_at_convergence_and_never_pauses_the_guest() {
    let mut r = rig(MemGuestConfig {
        memory_size: 32 << 20,
        dirty_rate: 1_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.hold_at_convergence = true;
    let run = tokio::spawn(r.sender().run());
    let mut progress = r.progress.clone();
    // (The borrow `wait_for` returns is dropped at once: held, it would block the sender's
    // next progress update.)
    let held = tokio::time::timeout(
        Duration::from_secs(20),
        progress.wait_for(|p| p.note.as_deref().is_some_and(|n| n.contains("holds"))),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(held, "never converged: {:?}", r.progress.borrow());
    // Holding: the guest runs on, un-paused, well past when a move would have switched over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    assert!(!run.is_finished(), "a rehearsal waits to be cancelled");
    r.cancel.cancel();
    let err = run.await.expect("join").expect_err("cancelled");
    assert!(matches!(err, MoveError::Cancelled), "{err}");
    assert_source_running(&r.src);
    assert!(matches!(
        r.incoming.finished().await.expect("receiver"),
        ReceiveOutcome::Aborted { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connection_fails_cleanly_with_source_resumed_and_bits_restored() {
    let mut r = rig(MemGuestConfig {
        memory_size: 32 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.bandwidth_limit = Some(10_000_000);
    let sender = r.sender();
    let run = tokio::spawn(sender.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.listener.close();
    let err = run.await.expect("join").expect_err("connection dropped");
    assert!(matches!(err, MoveError::ConnectionLost(_)), "{err}");
    assert!(err.to_string().contains("source keeps running"), "{err}");
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    assert_eq!(
        r.src.take_dirty_bitmap().expect("bits").count(),
        r.src.page_count()
    );
    assert!(r.incoming.finished().await.is_err());
    assert!(r.dst.is_all_zero(), "destination not scrubbed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_ticket_is_refused_and_a_ticket_works_only_once() {
    let mut r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let good = r.cfg.ticket;
    r.cfg.ticket = JobTicket::generate();
    let err = r.sender().run().await.expect_err("wrong ticket");
    assert!(
        matches!(
            err,
            MoveError::Refused {
                code: RefuseCode::Ticket,
                ..
            }
        ),
        "{err}"
    );
    assert_source_running(&r.src);
    r.cfg.ticket = good;
    r.sender()
        .run()
        .await
        .expect("right ticket")
        .commit()
        .await
        .expect("commit");
    let Rig {
        src,
        incoming,
        cfg,
        ptx,
        listener: _listener,
        ..
    } = r;
    incoming.finished().await.expect("receiver");
    // Same ticket again (the destination no longer expects it, nor this source's certificate).
    let err = Sender::new(src, cfg, ptx, CancellationToken::new())
        .run()
        .await
        .expect_err("reused ticket");
    assert!(
        matches!(err, MoveError::Connect { .. } | MoveError::Refused { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpinned_certificates_are_refused_both_ways() {
    let mut r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    // The sender pins a certificate the receiver does not hold.
    r.cfg.pinned_peer_cert = Identity::generate("impostor", &[]).expect("cert").cert;
    let err = r.sender().run().await.expect_err("server not pinned");
    assert!(matches!(err, MoveError::Connect { .. }), "{err}");
    // The sender presents a certificate the receiver was not told to expect.
    r.cfg.pinned_peer_cert = r.dst_id.cert.clone();
    r.cfg.identity = Identity::generate("other-source", &[]).expect("cert");
    let err = r.sender().run().await.expect_err("client not pinned");
    assert!(
        matches!(
            err,
            MoveError::Connect { .. } | MoveError::ConnectionLost(_)
        ),
        "{err}"
    );
    assert_source_running(&r.src);
    // The expected source still gets in afterwards.
    r.cfg.identity = r.src_id.clone();
    r.sender()
        .run()
        .await
        .expect("pinned source")
        .commit()
        .await
        .expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_is_valid_for_its_lpar_only() {
    let mut r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    // Same ticket, same pinned source, same memory size, but another LPAR's memory.
    r.cfg.lpar = "db-01".into();
    let err = r.sender().run().await.expect_err("ticket of another LPAR");
    match &err {
        MoveError::Refused {
            code: RefuseCode::Ticket,
            message,
        } => assert!(
            message.contains("\"web-01\"") && message.contains("\"db-01\""),
            "{message}"
        ),
        other => panic!("expected a ticket refusal, got {other}"),
    }
    assert_source_running(&r.src);
    assert!(
        r.dst.is_all_zero(),
        "nothing was written on the destination"
    );
    // The refusal did not use the ticket up: the LPAR it was issued for still moves.
    r.cfg.lpar = LPAR.into();
    r.sender()
        .run()
        .await
        .expect("the right LPAR")
        .commit()
        .await
        .expect("commit");
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_nobody_waits_for_withdraws_its_ticket() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    // The destination gave the move up before the source came (its manager aborted, the ticket
    // expired): the expectation is dropped, not cancelled.
    let Rig {
        src,
        dst,
        listener: _listener,
        incoming,
        cfg,
        ptx,
        ..
    } = r;
    drop(incoming);
    let err = Sender::new(Arc::clone(&src), cfg, ptx, CancellationToken::new())
        .run()
        .await
        .expect_err("a withdrawn ticket");
    assert!(
        matches!(
            err,
            MoveError::Connect { .. }
                | MoveError::ConnectionLost(_)
                | MoveError::Refused {
                    code: RefuseCode::Ticket,
                    ..
                }
        ),
        "{err}"
    );
    assert_source_running(&src);
    assert!(
        dst.is_all_zero(),
        "a late source wrote into a given-up partition"
    );
}

fn hot_guest() -> MemGuestConfig {
    MemGuestConfig {
        memory_size: 16 << 20,
        dirty_rate: 40_000_000,
        hot_fraction: 1.0,
        ..MemGuestConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_dirtying_faster_than_the_path_converges_by_auto_converge() {
    let mut r = rig(hot_guest());
    r.cfg.bandwidth_limit = Some(20_000_000);
    r.cfg.timeout = Duration::from_secs(60);
    let ready = r
        .sender()
        .run()
        .await
        .expect("auto-converge makes it converge");
    let s = ready.summary().clone();
    assert!(s.max_throttle_percent >= 20, "{s:?}");
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
    ready.commit().await.expect("commit");
}

fn schedule(steps: &[(u32, u64)], abort: Option<u32>) -> lpm_formats::moves::ConvergenceSchedule {
    lpm_formats::moves::ConvergenceSchedule {
        steps: steps
            .iter()
            .map(
                |&(stalled_rounds, downtime_limit_ms)| lpm_formats::moves::ConvergenceStep {
                    stalled_rounds,
                    downtime_limit_ms,
                },
            )
            .collect(),
        abort_after_stalled_rounds: abort,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_convergence_schedule_raises_the_downtime_limit_as_rounds_stall() {
    // 16 MiB written all over at 40 MB/s through a 20 MB/s path never fits 50 ms, and without
    // auto-converge nothing slows the guest: only the schedule's 2 s step lets it switch over.
    let mut r = rig(hot_guest());
    r.cfg.bandwidth_limit = Some(20_000_000);
    r.cfg.auto_converge = false;
    r.cfg.timeout = Duration::from_secs(60);
    r.cfg.convergence = Some(schedule(&[(2, 2000)], Some(50)));
    let mut notes = r.progress.clone();
    let watching = tokio::spawn(async move {
        let mut seen = Vec::new();
        while notes.changed().await.is_ok() {
            if let Some(n) = notes.borrow().note.clone()
                && !seen.contains(&n)
            {
                seen.push(n);
            }
        }
        seen
    });
    let ready = r
        .sender()
        .run()
        .await
        .expect("the raised limit lets it converge");
    let s = ready.summary().clone();
    assert_eq!(s.max_throttle_percent, 0, "{s:?}");
    assert!(
        s.downtime > Duration::from_millis(50) && s.downtime < Duration::from_secs(4),
        "a suspension past the base limit, within the raised one: {s:?}"
    );
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
    ready.commit().await.expect("commit");
    drop(r.ptx);
    let notes = watching.await.expect("notes");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rounds stalled, downtime limit raised to 2000 ms")),
        "the raise is told: {notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_convergence_schedule_gives_up_and_the_source_keeps_running() {
    let mut r = rig(hot_guest());
    r.cfg.bandwidth_limit = Some(20_000_000);
    r.cfg.auto_converge = false;
    r.cfg.timeout = Duration::from_secs(60);
    r.cfg.convergence = Some(schedule(&[(1, 60)], Some(3)));
    let err = r.sender().run().await.expect_err("gives up");
    assert!(
        matches!(
            err,
            MoveError::DidNotConverge {
                stalled_rounds: 3,
                downtime_limit_ms: 60,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.emg().kind, crate::emg::Emg::MemoryWriteIntensive);
    assert!(
        err.action().contains("convergence schedule"),
        "{}",
        err.action()
    );
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    assert!(r.dst.is_all_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bandwidth_cap_changed_mid_move_paces_the_rest_of_it() {
    let mut r = rig(MemGuestConfig {
        memory_size: 32 << 20,
        ..MemGuestConfig::default()
    });
    r.cfg.compression = CompressionMode::Never;
    r.cfg.bandwidth_limit = Some(2_000_000);
    let sender = r.sender();
    let cap = sender.bandwidth_handle();
    assert_eq!(cap.get(), Some(2_000_000));
    let started = std::time::Instant::now();
    let moving = tokio::spawn(sender.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Uncapped, 32 MiB cross loopback in well under 0.5 s; at 2 MB/s about 1 MB has gone on
    // the wire by now, plus the frames queued to the streams (counted when queued).
    let early = r.progress.borrow().wire_bytes_sent;
    let done_early = moving.is_finished();
    cap.set(Some(200_000_000));
    let ready = moving.await.expect("task").expect("the move");
    let s = ready.summary().clone();
    let took = started.elapsed();
    ready.commit().await.expect("commit");
    assert!(
        !done_early && early < (32 << 20) / 2,
        "{early} bytes in the first 0.5 s at 2 MB/s (finished: {done_early})"
    );
    let at_old_cap = Duration::from_secs_f64(s.wire_bytes as f64 / 2_000_000.0);
    assert!(
        s.wire_bytes > 8_000_000 && took < at_old_cap / 2,
        "{} MB in {took:?}; at the old cap it needed {at_old_cap:?}",
        s.wire_bytes / 1_000_000
    );
    assert_eq!(r.progress.borrow().bandwidth_limit, Some(200_000_000));
    assert_eq!(r.src.digest().expect("d"), r.dst.digest().expect("d"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_auto_converge_times_out_with_the_seed_message() {
    let mut r = rig(hot_guest());
    r.cfg.bandwidth_limit = Some(20_000_000);
    r.cfg.auto_converge = false;
    r.cfg.timeout = Duration::from_secs(2);
    let sender = r.sender();
    let handle = sender.timeout_handle();
    assert!(
        handle.extend(Duration::from_secs(1)),
        "extendable while memory moves"
    );
    let started = std::time::Instant::now();
    let err = sender.run().await.expect_err("times out");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "extension ignored"
    );
    assert_eq!(err.to_string(), MEMORY_WRITE_INTENSIVE);
    assert!(
        err.action().contains("extend the timeout"),
        "{}",
        err.action()
    );
    assert!(
        !handle.extend(Duration::from_secs(1)),
        "not extendable after the end"
    );
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    assert_eq!(r.progress.borrow().stage, Stage::TimedOut);
    assert!(r.dst.is_all_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_after_suspend_resumes_the_source_and_scrubs_the_destination() {
    let r = rig(MemGuestConfig {
        memory_size: 4 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    let ready = r.sender().run().await.expect("move");
    assert!(r.src.is_paused());
    let final_pages = ready.summary().final_round_pages;
    ready
        .abort("the manager chose not to commit")
        .await
        .expect("abort");
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    // The final round's pages are dirty again for a later attempt.
    assert!(r.src.take_dirty_bitmap().expect("bits").count() >= final_pages);
    assert!(matches!(
        r.incoming.finished().await.expect("receiver"),
        ReceiveOutcome::Aborted { .. }
    ));
    assert!(r.dst.is_all_zero());
}

/// A destination whose memory went bad: the digest check stops the move before the switch,
/// and the failure says so — its own catalogue row, not "connection refused".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_digest_mismatch_fails_the_move_as_a_digest_mismatch() {
    let mut r = rig(MemGuestConfig {
        memory_size: 4 << 20,
        dirty_rate: 1_000_000,
        ..MemGuestConfig::default()
    });
    r.cfg.verify = true;
    // A page that is not zero at the start, so round 0 carries it.
    let page = (0..r.src.page_count())
        .find(|&p| {
            let mut buf = vec![0u8; crate::partition::PAGE_SIZE];
            r.src.read_pages(p, &mut buf).expect("read");
            !crate::partition::is_zero_page(&buf)
        })
        .expect("a non-zero page");
    r.dst.damage_writes_of(page);
    let err = r.sender().run().await.expect_err("the digests differ");
    // The destination compares first and refuses; its refusal reaches the source whether the
    // Refused message or only the connection's close arrives.
    assert!(
        matches!(
            err,
            MoveError::DigestMismatch { .. }
                | MoveError::Refused {
                    code: RefuseCode::Digest,
                    ..
                }
        ),
        "{err}"
    );
    let shown = err.emg();
    assert_eq!(shown.kind, crate::emg::Emg::MemoryDigestMismatch, "{shown}");
    assert!(
        shown.to_string().contains("does not match the source")
            && shown.detail.contains("digest mismatch"),
        "{shown}"
    );
    assert_source_running(&r.src);
    let theirs = r
        .incoming
        .finished()
        .await
        .expect_err("the receiver refused");
    assert_eq!(
        theirs.emg().kind,
        crate::emg::Emg::MemoryDigestMismatch,
        "{theirs}"
    );
    assert!(r.dst.is_all_zero(), "destination scrubbed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn geometry_mismatch_is_refused() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let other = Arc::new(MemPartition::blank(2 << 20));
    let ticket = JobTicket::generate();
    let incoming = r
        .listener
        .expect(ticket, LPAR, r.src_id.cert.clone(), other);
    let mut cfg = r.cfg.clone();
    cfg.ticket = ticket;
    let err = Sender::new(
        Arc::clone(&r.src),
        cfg,
        r.ptx.clone(),
        CancellationToken::new(),
    )
    .run()
    .await
    .expect_err("size mismatch");
    assert!(
        matches!(
            err,
            MoveError::Refused {
                code: RefuseCode::Geometry,
                ..
            }
        ),
        "{err}"
    );
    assert!(incoming.finished().await.is_err());
}

/// A peer that passes TLS and the ticket, then sends garbage, is cut off and the partial memory
/// scrubbed.
async fn raw_session(r: &Rig) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let client = super::tls::client_config(&r.src_id, &r.dst_id.cert).expect("client");
    let ep = super::tls::endpoint(LOCAL, None).expect("endpoint");
    let conn = ep
        .connect_with(client, r.cfg.peer_addr, super::tls::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    let hello = Message::hello(r.cfg.ticket, LPAR, r.src.memory_size(), 1);
    send.write_all(&hello.encode().expect("enc"))
        .await
        .expect("hello");
    let welcome = Message::read_async(&mut recv)
        .await
        .expect("read")
        .expect("msg");
    assert!(matches!(welcome, Message::Welcome { .. }));
    (conn, send, recv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_frame_on_the_wire_is_refused() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let (_conn, mut send, mut recv) = raw_session(&r).await;
    let mut header = [0u8; 8];
    header[0] = 3; // Batch
    header[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
    send.write_all(&header).await.expect("write");
    let err = r.incoming.finished().await.expect_err("refused");
    assert!(err.to_string().contains("larger than"), "{err}");
    // The sender side learns it too.
    let reply = Message::read_async(&mut recv).await;
    assert!(
        matches!(reply, Ok(Some(Message::Refused { .. })) | Err(_)),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_order_message_on_the_wire_is_refused_and_scrubbed() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let (conn, mut send, _recv) = raw_session(&r).await;
    // Write one page on a data stream, then commit before any switch-over.
    let mut data = conn.open_uni().await.expect("uni");
    let page = super::wire::PageBatch {
        round: 0,
        runs: vec![(3, 1)],
        zero_mask: 0,
        encoding: super::wire::Encoding::Raw,
        payload: bytes::Bytes::from(vec![0xab; crate::partition::PAGE_SIZE]),
    };
    data.write_all(&Message::batch(page).expect("b").encode().expect("e"))
        .await
        .expect("data");
    tokio::time::sleep(Duration::from_millis(200)).await;
    send.write_all(&Message::commit().encode().expect("e"))
        .await
        .expect("commit");
    let err = r.incoming.finished().await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("Commit is not allowed in receiver state Receiving"),
        "{err}"
    );
    assert_eq!(err.emg().kind, crate::emg::Emg::MoverProtocolError);
    assert!(r.dst.is_all_zero(), "partial memory must be scrubbed");
    // The sender learns what went wrong from the close, not just that the connection went.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed by the receiver");
    let sender_side = super::sender::closed_by_peer(closed);
    assert!(
        matches!(&sender_side, MoveError::Protocol(m) if m.contains("Commit is not allowed")),
        "{sender_side}"
    );
    assert_eq!(sender_side.emg().kind, crate::emg::Emg::MoverProtocolError);
}

/// A pinned source that opens data streams and never finishes them holds at most 64 at once;
/// the move goes on, and the streams it finishes give their places back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_holds_at_most_64_data_streams_at_once() {
    let r = rig(MemGuestConfig {
        memory_size: 1 << 20,
        ..MemGuestConfig::default()
    });
    let (conn, _send, _recv) = raw_session(&r).await;
    let page = |index: u64| {
        let batch = super::wire::PageBatch {
            round: 0,
            runs: vec![(index, 1)],
            zero_mask: 0,
            encoding: super::wire::Encoding::Raw,
            payload: bytes::Bytes::from(vec![0xab; crate::partition::PAGE_SIZE]),
        };
        Message::batch(batch).expect("b").encode().expect("e")
    };
    let mut held = Vec::new();
    for index in 0..64 {
        let mut stream = conn.open_uni().await.expect("a stream under the cap");
        stream.write_all(&page(index)).await.expect("page");
        held.push(stream);
    }
    let over = tokio::time::timeout(Duration::from_secs(1), conn.open_uni()).await;
    assert!(over.is_err(), "stream 65 opened while 64 are open");
    assert!(conn.close_reason().is_none(), "the move goes on");

    // quinn announces new places once more than an eighth of them are free.
    for stream in &mut held[..9] {
        stream.finish().expect("finish");
    }
    let freed = tokio::time::timeout(Duration::from_secs(5), conn.open_uni())
        .await
        .expect("finished streams give their places back");
    freed.expect("stream 65");
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
}

/// `LPM_BENCH_MIB=1024 LPM_BENCH_DIRTY=10000000 cargo test --release -p lparmover --lib
/// bench_loopback -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release mode"]
async fn bench_loopback() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let mut b = super::bench::LoopbackBench {
        memory_size: env("LPM_BENCH_MIB", 1024) << 20,
        dirty_rate: env("LPM_BENCH_DIRTY", 10_000_000),
        ..Default::default()
    };
    if let Ok(c) = std::env::var("LPM_BENCH_COMPRESSION") {
        b.compression = match c.as_str() {
            "always" => CompressionMode::Always,
            "never" => CompressionMode::Never,
            _ => CompressionMode::Auto,
        };
    }
    b.connections = env("LPM_BENCH_CONNS", 1) as usize;
    b.verify = env("LPM_BENCH_VERIFY", 0) == 1;
    if let Some(bw) = std::env::var("LPM_BENCH_BW")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        b.bandwidth_limit = Some(bw);
    }
    let s = super::bench::loopback(&b).await.expect("bench");
    println!("{}", serde_json::to_string_pretty(&s).expect("json"));
    println!(
        "total {:.2} s, downtime {:.1} ms, rounds {}, wire/memory {:.3} ({:.1} MB wire for {:.1} MB memory sent, {} MiB guest), memory throughput {:.0} MB/s",
        s.total_time.as_secs_f64(),
        s.downtime.as_secs_f64() * 1e3,
        s.rounds,
        s.wire_bytes as f64 / s.memory_bytes_sent as f64,
        s.wire_bytes as f64 / 1e6,
        s.memory_bytes_sent as f64 / 1e6,
        s.memory_size >> 20,
        s.memory_throughput_mbps,
    );
}

/// Single-thread encoder figures: `cargo test --release -p lparmover --lib bench_encoder -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run in release mode"]
fn bench_encoder() {
    use super::pages::{BatchEncoder, BatchStats, plan_batches};
    use super::wire::Encoding;
    let p = MemPartition::running(&MemGuestConfig {
        memory_size: 256 << 20,
        ..MemGuestConfig::default()
    });
    let plans = plan_batches(&crate::partition::DirtyBitmap::full(p.page_count()), 64);
    for (enc, level) in [
        (Encoding::Raw, 1),
        (Encoding::Zstd, 1),
        (Encoding::Zstd, -1),
        (Encoding::Zstd, -3),
    ] {
        let mut e = BatchEncoder::with_level(level);
        let mut st = BatchStats::default();
        let t = std::time::Instant::now();
        for plan in &plans {
            st.add(&e.encode(&p, plan, 0, enc).expect("encode").1);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{enc:?} level {level}: {:.0} MB/s of memory, ratio {:.2}, compress {:.0} MB/s of non-zero input",
            st.memory_bytes as f64 / secs / 1e6,
            st.memory_bytes as f64 / st.wire_bytes as f64,
            st.compress_input as f64 / (st.compress_ns.max(1) as f64 / 1e9) / 1e6
        );
    }
}

/// The manager went silent at switch-over: the source asks the destination on a settlement
/// connection; the HVM behind the inbox answers (here: fenced), and the source takes the guest
/// back. A second question gets the same durable answer; a stranger's ticket gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_asks_the_destination_and_a_fence_resumes_the_source() {
    use super::wire::{SettleStep, Verdict};
    let mut r = rig(MemGuestConfig {
        memory_size: 4 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    let mut inbox = r.incoming.take_settlements().expect("inbox");
    assert!(r.incoming.take_settlements().is_none(), "taken once");
    // The destination's side: one durable decision, repeated to every question.
    let asked = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&asked);
    tokio::spawn(async move {
        while let Some(call) = inbox.next().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(call.step, SettleStep::Decide);
            let _ = call.reply.send(Ok(Verdict::Fenced));
        }
    });
    let ready = r.sender().run().await.expect("move");
    assert!(r.src.is_paused());
    let within = Duration::from_secs(2);
    assert_eq!(
        ready
            .settle(SettleStep::Decide, within)
            .await
            .expect("answer"),
        Verdict::Fenced
    );
    assert_eq!(
        ready
            .settle(SettleStep::Decide, within)
            .await
            .expect("answer"),
        Verdict::Fenced,
        "asked again, the same answer"
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Another ticket from the same pinned source is refused.
    let mut stranger = r.cfg.clone();
    stranger.ticket = JobTicket::generate();
    let other = super::settle::SettleDial {
        bind_addr: stranger.bind_addr,
        peer_addr: stranger.peer_addr,
        identity: stranger.identity.clone(),
        pinned_peer_cert: stranger.pinned_peer_cert.clone(),
        ticket: stranger.ticket,
    };
    match other.ask(SettleStep::Decide, within).await {
        Err(MoveError::Refused { code, .. }) => assert_eq!(code, RefuseCode::Ticket),
        other => panic!("a stranger's ticket must be refused, got {other:?}"),
    }
    ready.resume_after_fence().expect("resume");
    assert_source_running(&r.src);
    assert_heartbeat_moves(&r.src).await;
    let _ = &r.listener;
}

/// Nobody answers (the destination's HVM is gone): each attempt fails within its bound, and
/// the source stays paused — it never resumes on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_without_an_answer_leaves_the_source_paused() {
    use super::wire::SettleStep;
    let r = rig(MemGuestConfig {
        memory_size: 4 << 20,
        dirty_rate: 5_000_000,
        ..MemGuestConfig::default()
    });
    let ready = r.sender().run().await.expect("move");
    r.listener.close();
    let started = std::time::Instant::now();
    let answer = ready
        .settle(SettleStep::Decide, Duration::from_millis(800))
        .await;
    assert!(answer.is_err(), "no destination, no verdict: {answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded attempt"
    );
    assert!(
        r.src.is_paused(),
        "the source must stay paused without a verdict"
    );
    drop(ready);
}
