//! Measurements: guest statistics, a heartbeat watcher, and the guest-visible pause gap.
//!
//! Suspension time as the guest sees it: on the source, the host-monotonic time of the **last**
//! heartbeat change before the pause; on the destination, that of the **first** change after the
//! resume. Start a [`HeartbeatWatch`] on the source before the switch-over and one on the
//! destination before it resumes, then [`PauseGap::between`] their
//! [`last_change`](HeartbeatWatch::last_change) and [`first_change`](HeartbeatWatch::first_change).
//! Both watches read `CLOCK_MONOTONIC`, so they compare across processes on one host. The error is
//! at most the guest's heartbeat period (≤ 1 ms) plus the sampling period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use lparmover::partition::{Heartbeat, Partition};
use serde::{Deserialize, Serialize};

/// Host `CLOCK_MONOTONIC` in nanoseconds (comparable between processes on this host).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A snapshot of what a guest is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestStats {
    /// `"kvm"` or `"soft"`.
    pub backend: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// Whether the vCPUs are paused.
    pub paused: bool,
    /// Whether the guest OS shut down.
    pub shut_down: bool,
    /// Why the guest stopped on its own, if it failed.
    pub error: Option<String>,
    /// Configured dirty rate, MB/s.
    pub configured_dirty_mbps: f64,
    /// Throttle, percent.
    pub throttle_percent: u8,
    /// Pages the guest wrote since it first started (its own counters, all vCPUs).
    pub guest_writes: u64,
    /// Dirty rate the guest achieved since the last rate change, over running (unpaused) time,
    /// in MB/s (writes × 4096 B).
    pub achieved_dirty_mbps: f64,
    /// Pages per second the dirty log reported in the last bitmap taken (0 when not tracking).
    pub dirty_log_pages_per_s: f64,
    /// Latest heartbeat of vCPU 0.
    pub heartbeat: Heartbeat,
    /// How long the last pause took to stop every vCPU.
    pub last_pause_latency: Option<Duration>,
    /// How long activation (mapping, content, vCPU setup) took.
    pub activation: Duration,
}

/// The gap in a guest's heartbeat across a pause (or a migration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseGap {
    /// Host time between the last heartbeat change before and the first after.
    pub host_gap: Duration,
    /// Heartbeats between the two (1 when none were lost or made while paused).
    pub counter_delta: u64,
    /// Guest TSC ticks between the two (what the guest's clock saw; near one heartbeat period
    /// when the destination restored the TSC).
    pub tsc_delta: u64,
}

impl PauseGap {
    /// The gap from `last_before` (source, last change before pause) to `first_after`
    /// (destination, first change after resume). `None` if time or the counter went backwards.
    pub fn between(last_before: &Heartbeat, first_after: &Heartbeat) -> Option<Self> {
        let ns = first_after
            .observed_at_ns
            .checked_sub(last_before.observed_at_ns)?;
        let counter_delta = first_after.counter.checked_sub(last_before.counter)?;
        Some(Self {
            host_gap: Duration::from_nanos(ns),
            counter_delta,
            tsc_delta: first_after.tsc.wrapping_sub(last_before.tsc),
        })
    }
}

#[derive(Default)]
struct WatchState {
    first_change: Option<Heartbeat>,
    last_change: Option<Heartbeat>,
    last_seen: Option<Heartbeat>,
    error: Option<String>,
}

/// Samples a guest's heartbeat on a thread and remembers when it changed.
pub struct HeartbeatWatch {
    state: Arc<Mutex<WatchState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HeartbeatWatch {
    /// Starts sampling `guest` every `period` (100–500 µs is a good choice during switch-over).
    pub fn start<P: Partition + ?Sized + 'static>(guest: Arc<P>, period: Duration) -> Self {
        let state = Arc::new(Mutex::new(WatchState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hb-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let sample = guest.heartbeat();
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        match sample {
                            Ok(hb) => {
                                let changed =
                                    s.last_seen.is_some_and(|prev| prev.counter != hb.counter);
                                if changed {
                                    s.first_change.get_or_insert(hb);
                                    s.last_change = Some(hb);
                                }
                                s.last_seen = Some(hb);
                            }
                            Err(e) => s.error = Some(e.to_string()),
                        }
                        drop(s);
                        std::thread::sleep(period);
                    }
                })
                .ok()
        };
        Self {
            state,
            stop,
            thread,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&WatchState) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The first heartbeat change seen since the watch started (destination: first after resume).
    pub fn first_change(&self) -> Option<Heartbeat> {
        self.read(|s| s.first_change)
    }

    /// The latest heartbeat change seen (source: last before pause).
    pub fn last_change(&self) -> Option<Heartbeat> {
        self.read(|s| s.last_change)
    }

    /// The last error reading the heartbeat, if any.
    pub fn error(&self) -> Option<String> {
        self.read(|s| s.error.clone())
    }

    /// Stops sampling.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HeartbeatWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_between_heartbeats() {
        let a = Heartbeat {
            counter: 10,
            tsc: 1000,
            observed_at_ns: 5_000_000,
        };
        let b = Heartbeat {
            counter: 11,
            tsc: 2000,
            observed_at_ns: 25_000_000,
        };
        let gap = PauseGap::between(&a, &b).expect("forward");
        assert_eq!(gap.host_gap, Duration::from_millis(20));
        assert_eq!(gap.counter_delta, 1);
        assert!(PauseGap::between(&b, &a).is_none());
    }
}
