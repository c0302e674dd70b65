//! Behaviour tests run on both backends: each body is one function taking the backend, and
//! [`both_backends!`] makes a `soft_*` and a `kvm_*` test of it. The KVM tests skip loudly where
//! `/dev/kvm` cannot be opened, and fail under CI (`lparmover::testenv`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lparmover::model::workload::{GuestBackend, GuestSpec, ShutdownBehaviour, Workload};
use lparmover::partition::{DirtyBitmap, PAGE_SIZE, Partition, PartitionError, VcpuState};

use super::layout::{HEARTBEAT_PAGE, PAGE};
use super::workload::{Sequence, initial_state};
use super::{Guest, HeartbeatWatch, PauseGap, start, start_incoming};

fn spec(backend: GuestBackend, mib: u64, rate: f64, ws_mib: u64, vcpus: u32) -> GuestSpec {
    GuestSpec {
        memory_bytes: mib << 20,
        vcpus,
        workload: Workload {
            dirty_rate_mbps: rate,
            working_set_mib: ws_mib,
            seed: 42,
            ..Workload::default()
        },
        backend,
    }
}

fn snapshot(g: &Guest) -> Vec<u8> {
    let mut out = vec![0; g.memory_size() as usize];
    g.read_pages(0, &mut out).unwrap();
    out
}

fn changed_pages(a: &[u8], b: &[u8]) -> BTreeSet<u64> {
    a.chunks(PAGE_SIZE)
        .zip(b.chunks(PAGE_SIZE))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64)
        .collect()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

/// The dirty log holds exactly the pages whose content changed while tracking was on.
fn dirty_log_reports_exactly_the_written_pages(backend: GuestBackend) {
    let g = start(&spec(backend, 64, 20.0, 1, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    g.pause().unwrap();
    g.start_dirty_tracking().unwrap();
    let before = snapshot(&g);
    g.resume().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    g.pause().unwrap();
    let bitmap = g.take_dirty_bitmap().unwrap();
    let after = snapshot(&g);
    let changed = changed_pages(&before, &after);
    assert!(changed.len() > 20, "only {} pages changed", changed.len());
    assert!(changed.contains(&HEARTBEAT_PAGE));
    assert_eq!(bitmap.iter().collect::<BTreeSet<_>>(), changed);
}

/// The guest makes exactly the writes of the Rust model of the workload.
fn workload_follows_the_model(backend: GuestBackend) {
    let s = spec(backend, 64, 20.0, 1, 1);
    let g = start(&s).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    g.pause().unwrap();
    let writes = g.guest_writes();
    assert!(writes > 100, "{writes} writes");
    let mut seq = Sequence {
        state: initial_state(42, 0),
        working_set: g.working_set(),
    };
    let mut last = HashMap::new();
    for _ in 0..writes {
        let w = seq.next_write();
        last.insert((w.page, w.offset), w.value);
    }
    let memory = snapshot(&g);
    for ((page, offset), value) in last {
        let at = (page * PAGE + offset) as usize;
        let got = u64::from_le_bytes(memory[at..at + 8].try_into().unwrap());
        assert_eq!(got, value, "page {page} offset {offset}");
    }
}

/// A paused guest writes nothing: heartbeat frozen, dirty log empty, memory unchanged.
fn pause_stops_all_writes(backend: GuestBackend) {
    let g = start(&spec(backend, 64, 50.0, 8, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    g.start_dirty_tracking().unwrap();
    g.pause().unwrap();
    let latency = g.stats().last_pause_latency.unwrap();
    eprintln!("{backend:?}: pause took {latency:?}");
    assert!(
        latency < Duration::from_millis(50),
        "pause took {latency:?}"
    );
    let _ = g.take_dirty_bitmap().unwrap();
    let hb = g.heartbeat().unwrap();
    let digest = g.digest().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(g.heartbeat().unwrap().counter, hb.counter);
    assert!(g.take_dirty_bitmap().unwrap().is_empty());
    assert_eq!(g.digest().unwrap(), digest);
    g.resume().unwrap();
    assert!(wait_until(Duration::from_secs(1), || g
        .heartbeat()
        .unwrap()
        .counter
        > hb.counter));
    assert!(wait_until(Duration::from_secs(1), || !g
        .take_dirty_bitmap()
        .unwrap()
        .is_empty()));
}

/// Memory + vCPU state moved to an incoming guest resume the workload where it stopped.
fn migration_resumes_the_workload(backend: GuestBackend) {
    let s = spec(backend, 64, 10.0, 4, 2);
    let src = start(&s).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let src_watch = HeartbeatWatch::start(Arc::clone(&src), Duration::from_micros(200));
    std::thread::sleep(Duration::from_millis(20));
    src.pause().unwrap();
    let before = src.heartbeat().unwrap();
    let writes_before = src.guest_writes();
    let state = src.save_vcpu_state().unwrap();
    assert_eq!(state.backend, src.backend().name());

    let dst = start_incoming(&s).unwrap();
    assert!(dst.is_paused());
    assert!(matches!(
        dst.resume(),
        Err(PartitionError::IncompatibleState(_))
    ));
    let mut buf = vec![0; 256 * PAGE_SIZE];
    for first in (0..src.page_count()).step_by(256) {
        src.read_pages(first, &mut buf).unwrap();
        dst.write_pages(first, &buf).unwrap();
    }
    dst.restore_vcpu_state(&state).unwrap();
    assert_eq!(src.digest().unwrap(), dst.digest().unwrap());
    let dst_watch = HeartbeatWatch::start(Arc::clone(&dst), Duration::from_micros(200));
    std::thread::sleep(Duration::from_millis(5));
    dst.resume().unwrap();
    assert!(wait_until(Duration::from_secs(2), || dst.guest_writes()
        > writes_before + 50));
    let after = dst.heartbeat().unwrap();
    assert!(after.counter > before.counter, "{after:?} vs {before:?}");
    assert!(
        after.tsc >= before.tsc,
        "TSC went backwards: {after:?} vs {before:?}"
    );
    // Both vCPUs run on the destination.
    assert!(wait_until(Duration::from_secs(1), || dst
        .read_heartbeat(1)
        .counter
        > src.read_heartbeat(1).counter));
    let last = src_watch.last_change().unwrap();
    let first = dst_watch.first_change().unwrap();
    let gap = PauseGap::between(&last, &first).unwrap();
    eprintln!("{backend:?}: guest-visible gap {gap:?}");
    // The samplers may miss a heartbeat on either side; the counter only moves forward.
    assert!(gap.counter_delta >= 1, "{gap:?}");
    assert!(gap.host_gap < Duration::from_secs(5));
    assert!(gap.tsc_delta < 1 << 40, "guest clock jumped: {gap:?}");
}

/// The achieved dirty rate follows `set_dirty_rate` and the throttle.
fn dirty_rate_follows_the_setting(backend: GuestBackend) {
    let g = start(&spec(backend, 64, 4.0, 32, 1)).unwrap();
    let measure = |rate: f64| {
        g.set_dirty_rate(rate).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        g.stats().achieved_dirty_mbps
    };
    let slow = measure(4.0);
    let fast = measure(40.0);
    eprintln!("{backend:?}: 4 MB/s -> {slow:.2}, 40 MB/s -> {fast:.2}");
    assert!((slow / 4.0 - 1.0).abs() < 0.2, "{slow}");
    assert!((fast / 40.0 - 1.0).abs() < 0.2, "{fast}");
    g.set_throttle(50).unwrap();
    let throttled = measure(40.0);
    assert!((throttled / 20.0 - 1.0).abs() < 0.2, "{throttled}");
}

fn shutdown_is_honoured_or_refused(backend: GuestBackend) {
    let mut s = spec(backend, 16, 1.0, 1, 2);
    s.workload.shutdown = ShutdownBehaviour::Comply { after_ms: 50 };
    let g = start(&s).unwrap();
    let asked = Instant::now();
    assert!(g.request_shutdown().unwrap());
    assert!(wait_until(Duration::from_secs(2), || g.has_shut_down()));
    assert!(asked.elapsed() >= Duration::from_millis(50));
    assert!(!g.is_running());
    assert!(g.failure().is_none());

    s.workload.shutdown = ShutdownBehaviour::Refuse;
    let g = start(&s).unwrap();
    assert!(!g.request_shutdown().unwrap());
    std::thread::sleep(Duration::from_millis(150));
    assert!(g.is_running() && !g.has_shut_down());
}

fn foreign_state_is_refused(backend: GuestBackend) {
    let g = start(&spec(backend, 16, 0.0, 1, 1)).unwrap();
    g.pause().unwrap();
    let state = g.save_vcpu_state().unwrap();
    let other = if state.backend == "kvm" {
        "soft"
    } else {
        "kvm"
    };
    let foreign = VcpuState {
        backend: other.into(),
        bytes: state.bytes.clone(),
    };
    assert!(matches!(
        g.restore_vcpu_state(&foreign),
        Err(PartitionError::IncompatibleState(_))
    ));
    let two = start_incoming(&spec(backend, 16, 0.0, 1, 2)).unwrap();
    assert!(matches!(
        two.restore_vcpu_state(&state),
        Err(PartitionError::IncompatibleState(_))
    ));
    let garbage = VcpuState {
        backend: state.backend.clone(),
        bytes: b"LPMV\x07\0\0\0{}".to_vec(),
    };
    assert!(matches!(
        g.restore_vcpu_state(&garbage),
        Err(PartitionError::IncompatibleState(_))
    ));
    g.restore_vcpu_state(&state).unwrap();
    g.resume().unwrap();
    assert!(g.is_running());
}

/// The workload writes only its working set (and the heartbeat below it): the digest of the
/// pages above it holds while the guest runs, and a write there shows in it.
fn digest_outside_the_working_set_holds_while_the_guest_runs(backend: GuestBackend) {
    let g = start(&spec(backend, 64, 50.0, 4, 2)).unwrap();
    assert!(wait_until(Duration::from_secs(2), || g.guest_writes() > 100));
    let outside = g.pages_outside_working_set();
    assert_eq!(outside.end, g.page_count());
    assert!(outside.start > HEARTBEAT_PAGE && outside.end - outside.start > 1000);
    let at_start = g.digest_outside_working_set();
    let whole = g.digest().unwrap();
    let writes = g.guest_writes();
    assert!(wait_until(Duration::from_secs(2), || g.guest_writes() > writes + 500));
    assert_eq!(
        g.digest_outside_working_set(),
        at_start,
        "the workload wrote outside its working set"
    );
    assert_ne!(
        g.digest().unwrap(),
        whole,
        "the working set changed, the whole image with it"
    );
    let mut page = vec![0; PAGE_SIZE];
    g.read_pages(outside.start + 7, &mut page).unwrap();
    page[100] ^= 0x5a;
    g.write_pages(outside.start + 7, &page).unwrap();
    assert_ne!(
        g.digest_outside_working_set(),
        at_start,
        "a changed page outside must show"
    );
}

/// VMM writes and given-back bits reach the next bitmap.
fn vmm_writes_and_restored_bits_are_tracked(backend: GuestBackend) {
    let g = start(&spec(backend, 16, 0.0, 1, 1)).unwrap();
    assert!(matches!(
        g.take_dirty_bitmap(),
        Err(PartitionError::TrackingOff)
    ));
    g.start_dirty_tracking().unwrap();
    let _ = g.take_dirty_bitmap().unwrap();
    g.write_pages(1000, &vec![7u8; 2 * PAGE_SIZE]).unwrap();
    let taken = g.take_dirty_bitmap().unwrap();
    assert!(taken.is_set(1000) && taken.is_set(1001));
    let mut back = DirtyBitmap::new(g.page_count());
    back.set(3000);
    g.restore_dirty(&back).unwrap();
    let again = g.take_dirty_bitmap().unwrap();
    assert!(again.is_set(3000) && !again.is_set(1000));
    assert!(g.read_pages(g.page_count(), &mut [0; PAGE_SIZE]).is_err());
}

/// Whether `test` can have KVM; when it cannot, fails under CI and skips loudly elsewhere
/// (`lparmover::testenv`).
fn kvm_usable(test: &str) -> bool {
    match super::kvm::probe() {
        Ok(()) => true,
        Err(why) => {
            lparmover::testenv::unavailable(test, lparmover::testenv::Need::Kvm, &why);
            false
        }
    }
}

macro_rules! both_backends {
    ($($body:ident),* $(,)?) => {
        mod soft {
            $(#[test] fn $body() { super::$body(super::GuestBackend::Soft) })*
        }
        mod kvm {
            $(#[test] fn $body() {
                if super::kvm_usable(concat!("kvm::", stringify!($body))) {
                    super::$body(super::GuestBackend::Kvm)
                }
            })*
        }
    };
}

both_backends!(
    dirty_log_reports_exactly_the_written_pages,
    workload_follows_the_model,
    pause_stops_all_writes,
    migration_resumes_the_workload,
    dirty_rate_follows_the_setting,
    shutdown_is_honoured_or_refused,
    foreign_state_is_refused,
    vmm_writes_and_restored_bits_are_tracked,
    digest_outside_the_working_set_holds_while_the_guest_runs,
);

/// A guest that faults (here: its program overwritten with `int3`, no IDT, so it triple-faults)
/// stops with an error naming the exit instead of hanging.
#[test]
fn kvm_unexpected_exit_stops_the_guest_with_an_error() {
    if !kvm_usable("kvm_unexpected_exit_stops_the_guest_with_an_error") {
        return;
    }
    let g = start(&spec(GuestBackend::Kvm, 16, 1.0, 1, 1)).unwrap();
    g.pause().unwrap();
    g.write_pages(super::layout::CODE_GPA / PAGE, &[0xCC; PAGE_SIZE])
        .unwrap();
    g.resume().unwrap();
    assert!(wait_until(Duration::from_secs(2), || g.failure().is_some()));
    let err = g.heartbeat().unwrap_err().to_string();
    assert!(err.contains("Shutdown"), "{err}");
    assert!(g.stats().error.is_some());
    assert!(g.pause().is_err());
}

#[test]
fn auto_backend_picks_kvm_when_it_opens() {
    let g = start(&spec(GuestBackend::Auto, 16, 0.0, 1, 1)).unwrap();
    let expected = if super::kvm::probe().is_ok() {
        "kvm"
    } else {
        "soft"
    };
    assert_eq!(g.backend().name(), expected);
}

#[test]
fn bad_specs_are_refused() {
    assert!(start(&spec(GuestBackend::Soft, 3, 0.0, 1, 1)).is_err());
    assert!(start(&spec(GuestBackend::Soft, 16, 0.0, 1, 0)).is_err());
    assert!(start(&spec(GuestBackend::Soft, 16, -1.0, 1, 1)).is_err());
}
