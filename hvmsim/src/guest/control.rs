//! Run control shared by the VMM and the vCPU threads of either backend: pacing of the dirty
//! rate, throttling, pause/park, shutdown and stop.
//!
//! A vCPU thread asks [`Control::next`] before every batch of writes (the KVM guest does so on
//! its quota port-I/O exit). `next` sleeps as long as the pacing needs, but never longer than
//! [`HEARTBEAT_QUANTUM`], so the guest heartbeats at least every millisecond and a pause request
//! is seen within one batch. Banked credit is capped at [`MAX_BATCH_TIME`] worth of writes at
//! the configured rate, batches at [`MAX_BATCH`] writes and at about [`BATCH_GUEST_TIME`] of guest time as
//! measured from the previous batches. That bounds pause latency to about a millisecond without
//! kicking vCPUs out of `KVM_RUN` with a signal.
//!
//! Throttling (auto-converge) scales the pace: at `p` % the vCPU writes `(100 - p)` % of the
//! configured rate and spends the rest of its time asleep in the VMM.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::workload::BYTES_PER_WRITE;

/// Longest time a vCPU goes without a heartbeat when it is not paused.
pub const HEARTBEAT_QUANTUM: Duration = Duration::from_millis(1);
/// Credit a vCPU may bank, as time's worth of writes at the configured rate: a vCPU thread the
/// host scheduler delayed catches up (in batches still capped by [`BATCH_GUEST_TIME`]) instead
/// of losing the writes.
pub const MAX_BATCH_TIME: Duration = Duration::from_millis(250);
/// Hard cap on writes in one batch.
pub const MAX_BATCH: u32 = 4096;
/// Batches are also sized to take about this much guest time, from the measured time per write
/// (which varies a lot: first writes after a dirty-log round fault into the hypervisor).
pub const BATCH_GUEST_TIME: Duration = Duration::from_millis(1);
/// Batch cap until the time per write has been measured.
const FIRST_BATCH_CAP: f64 = 256.0;
/// How long [`Control::pause`] waits for the vCPUs to park.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the guest stopped running.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// The VMM stopped it (`stop`, drop).
    Stopped,
    /// The guest OS shut down after a shutdown request.
    ShutDown,
    /// Something went wrong (unexpected exit, failed ioctl).
    Failed(String),
}

/// What a vCPU does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Run a batch of this many writes.
    Batch(u32),
    /// Park: a pause was requested.
    Park,
    /// Shut the guest OS down (power off), then exit.
    PowerOff,
    /// Exit the thread.
    Exit,
}

/// Per-vCPU token bucket.
#[derive(Debug)]
pub struct Pacer {
    tokens: f64,
    last: Instant,
    last_batch: Instant,
    /// The batch handed out last and when, to measure the time per write.
    handed: Option<(Instant, u32)>,
    /// Smoothed guest time per write, in seconds (0 = not measured yet).
    per_write: f64,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// A pacer with no credit.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            tokens: 0.0,
            last: now,
            last_batch: now,
            handed: None,
            per_write: 0.0,
        }
    }

    /// Forgets credit (after a pause) so a resumed guest does not burst.
    pub fn reset(&mut self) {
        *self = Self {
            per_write: self.per_write,
            ..Self::new()
        };
    }

    /// Called when the vCPU asks for its next batch: learns how long the last one took.
    fn batch_done(&mut self) {
        if let Some((at, n)) = self.handed.take()
            && n >= 16
        {
            let per = at.elapsed().as_secs_f64() / f64::from(n);
            self.per_write = if self.per_write == 0.0 {
                per
            } else {
                0.7 * self.per_write + 0.3 * per
            };
        }
    }

    /// Largest batch that fits [`BATCH_GUEST_TIME`] at the measured speed.
    fn batch_cap(&self) -> f64 {
        let cap = if self.per_write > 0.0 {
            BATCH_GUEST_TIME.as_secs_f64() / self.per_write
        } else {
            FIRST_BATCH_CAP
        };
        cap.clamp(16.0, f64::from(MAX_BATCH))
    }
}

#[derive(Debug)]
struct RunState {
    pause_requested: bool,
    parked: u32,
    exited: u32,
    stop: Option<StopReason>,
    shutdown_at: Option<Instant>,
    rate_mbps: f64,
    throttle: u8,
    /// Total time spent paused (for rates over running time).
    paused_total: Duration,
    paused_since: Option<Instant>,
}

/// Shared run control of one guest.
#[derive(Debug)]
pub struct Control {
    vcpus: u32,
    state: Mutex<RunState>,
    cv: Condvar,
}

impl Control {
    /// Control for `vcpus` vCPUs; `paused` starts them parked (incoming guests).
    pub fn new(vcpus: u32, rate_mbps: f64, paused: bool) -> Self {
        Self {
            vcpus,
            state: Mutex::new(RunState {
                pause_requested: paused,
                parked: 0,
                exited: 0,
                stop: None,
                shutdown_at: None,
                rate_mbps,
                throttle: 0,
                paused_total: Duration::ZERO,
                paused_since: paused.then(Instant::now),
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        // A poisoned lock only means a vCPU thread panicked mid-update of plain fields; the
        // state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pages per second one vCPU may write now.
    fn pages_per_second(&self, s: &RunState) -> f64 {
        let share = f64::from(100 - s.throttle.min(99)) / 100.0;
        s.rate_mbps * 1e6 / BYTES_PER_WRITE as f64 / f64::from(self.vcpus) * share
    }

    /// Decides the next batch of a vCPU, sleeping for pacing as needed.
    pub fn next(&self, pacer: &mut Pacer) -> Next {
        pacer.batch_done();
        let mut s = self.lock();
        loop {
            if s.stop.is_some() {
                return Next::Exit;
            }
            if s.shutdown_at.is_some_and(|t| Instant::now() >= t) {
                return Next::PowerOff;
            }
            if s.pause_requested {
                return Next::Park;
            }
            let now = Instant::now();
            let rate = self.pages_per_second(&s);
            let cap = (rate * MAX_BATCH_TIME.as_secs_f64()).max(1.0);
            pacer.tokens =
                (pacer.tokens + rate * now.duration_since(pacer.last).as_secs_f64()).min(cap);
            pacer.last = now;
            let deadline = pacer.last_batch + HEARTBEAT_QUANTUM;
            if pacer.tokens >= 1.0 || now >= deadline {
                let batch = pacer.tokens.floor().min(pacer.batch_cap());
                pacer.tokens -= batch;
                pacer.last_batch = now;
                // `batch` is a whole number in 0..=MAX_BATCH.
                let batch = batch as u32;
                pacer.handed = Some((now, batch));
                return Next::Batch(batch);
            }
            let mut wait = deadline - now;
            if rate > 0.0 {
                wait = wait.min(Duration::from_secs_f64((1.0 - pacer.tokens) / rate));
            }
            if let Some(t) = s.shutdown_at {
                wait = wait.min(t.saturating_duration_since(now));
            }
            s = self
                .cv
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Parks the calling vCPU until resume or stop. Returns `false` when it must exit.
    pub fn park(&self) -> bool {
        let mut s = self.lock();
        s.parked += 1;
        self.cv.notify_all();
        while s.pause_requested && s.stop.is_none() {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.parked -= 1;
        s.stop.is_none()
    }

    /// Asks every vCPU to park and waits until they have (or exited).
    pub fn pause(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut s = self.lock();
        if let Some(reason) = &s.stop {
            return Err(format!("the guest is not running ({reason:?})"));
        }
        if !s.pause_requested {
            s.pause_requested = true;
            s.paused_since = Some(started);
        }
        self.cv.notify_all();
        while s.parked + s.exited < self.vcpus {
            let left = PAUSE_TIMEOUT.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "{} of {} vCPUs did not stop within {PAUSE_TIMEOUT:?}",
                    self.vcpus - s.parked - s.exited,
                    self.vcpus
                ));
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(started.elapsed())
    }

    /// Lets parked vCPUs run again.
    pub fn resume(&self) {
        let mut s = self.lock();
        s.pause_requested = false;
        if let Some(since) = s.paused_since.take() {
            s.paused_total += since.elapsed();
        }
        self.cv.notify_all();
    }

    /// Whether a pause is in force.
    pub fn is_paused(&self) -> bool {
        self.lock().pause_requested
    }

    /// Records that a vCPU thread has exited.
    pub fn exited(&self) {
        let mut s = self.lock();
        s.exited += 1;
        self.cv.notify_all();
    }

    /// Stops the guest for `reason` (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        let mut s = self.lock();
        if s.stop.is_none() {
            s.stop = Some(reason);
        }
        self.cv.notify_all();
    }

    /// Why the guest stopped, if it did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop.clone()
    }

    /// Schedules a guest OS shutdown `after` from now.
    pub fn request_shutdown(&self, after: Duration) {
        let mut s = self.lock();
        let at = Instant::now() + after;
        s.shutdown_at = Some(s.shutdown_at.map_or(at, |t| t.min(at)));
        self.cv.notify_all();
    }

    /// Sets the dirty rate in MB/s.
    pub fn set_rate(&self, mbps: f64) {
        self.lock().rate_mbps = mbps;
        self.cv.notify_all();
    }

    /// The configured dirty rate in MB/s.
    pub fn rate(&self) -> f64 {
        self.lock().rate_mbps
    }

    /// Sets the throttle in percent (clamped to 99).
    pub fn set_throttle(&self, percent: u8) {
        self.lock().throttle = percent.min(99);
        self.cv.notify_all();
    }

    /// The throttle in percent.
    pub fn throttle(&self) -> u8 {
        self.lock().throttle
    }

    /// Total time spent paused so far.
    pub fn paused_total(&self) -> Duration {
        let s = self.lock();
        s.paused_total + s.paused_since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_guest_heartbeats_every_quantum() {
        let c = Control::new(1, 0.0, false);
        let mut p = Pacer::new();
        let t = Instant::now();
        assert_eq!(c.next(&mut p), Next::Batch(0));
        assert!(t.elapsed() >= HEARTBEAT_QUANTUM / 2);
    }

    #[test]
    fn pacing_hands_out_the_rate() {
        // 40.96 MB/s = 10_000 pages/s.
        let c = Control::new(1, 40.96, false);
        let mut p = Pacer::new();
        let t = Instant::now();
        let mut pages = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            if let Next::Batch(n) = c.next(&mut p) {
                pages += u64::from(n);
            }
        }
        let rate = pages as f64 / t.elapsed().as_secs_f64();
        assert!((rate / 10_000.0 - 1.0).abs() < 0.1, "{rate}");
    }

    #[test]
    fn pause_request_parks() {
        let c = Control::new(1, 0.0, true);
        let mut p = Pacer::new();
        assert_eq!(c.next(&mut p), Next::Park);
        c.resume();
        assert!(matches!(c.next(&mut p), Next::Batch(_)));
    }
}
