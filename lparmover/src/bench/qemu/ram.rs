//! The low pages of a QEMU guest's RAM file, read from outside while QEMU runs it: the
//! heartbeat slot of vCPU 0 and the parameter page (see `hvmsim::guest::qemu`).

use std::fs::File;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Heartbeat slot of vCPU 0 (`hvmsim::guest::layout::HEARTBEAT_GPA`).
pub const HEARTBEAT_GPA: usize = 0x9_0000;
/// Parameter page (`hvmsim::guest::qemu::PARAMS_GPA`).
pub const PARAMS_GPA: usize = 0x9_1000;
/// Offset of the guest's "started" word in the parameter page.
pub const STARTED_OFFSET: usize = 0x48;
/// Bytes mapped: the reserved low megabyte.
const MAPPED: usize = 1 << 20;

/// A read-only shared mapping of a RAM file's first megabyte.
pub struct RamView {
    base: NonNull<u8>,
}

// SAFETY: the mapping is read-only, owned by this value until drop, and only read with volatile
// loads of aligned words (QEMU writes it concurrently; torn reads cannot happen for aligned u64).
unsafe impl Send for RamView {}
// SAFETY: as above.
unsafe impl Sync for RamView {}

impl RamView {
    /// Maps `path` (which must be at least 1 MiB long).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let file = File::open(path)?;
        if file.metadata()?.len() < MAPPED as u64 {
            return Err(std::io::Error::other(format!(
                "{} is shorter than 1 MiB: not a guest RAM file",
                path.display()
            )));
        }
        // SAFETY: a new read-only shared mapping with no address hint; the fd is open for the
        // call (the mapping keeps the file referenced afterwards); checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAPPED,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { base })
    }

    /// The aligned little-endian word at byte `offset` (< 1 MiB).
    pub fn word(&self, offset: usize) -> u64 {
        let offset = offset.min(MAPPED - 8) & !7;
        // SAFETY: offset is 8-byte aligned and inside the mapping; a volatile read of a u64 the
        // guest may be writing reads either the old or the new value.
        u64::from_le(unsafe {
            std::ptr::read_volatile(self.base.as_ptr().add(offset).cast::<u64>())
        })
    }

    /// Heartbeat counter of vCPU 0.
    pub fn counter(&self) -> u64 {
        self.word(HEARTBEAT_GPA)
    }

    /// Pages written by vCPU 0 since it started.
    pub fn writes(&self) -> u64 {
        self.word(HEARTBEAT_GPA + 16)
    }

    /// Whether the guest's workload runs (it sets this word once in user mode).
    pub fn started(&self) -> bool {
        self.word(PARAMS_GPA + STARTED_OFFSET) == 1
    }
}

impl Drop for RamView {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `open`, which nothing uses any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), MAPPED) };
    }
}

/// Samples both sides' heartbeat counters every [`SAMPLE`] during a migration.
pub struct HeartbeatTrace {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Trace>>,
}

/// Sampling period.
pub const SAMPLE: Duration = Duration::from_micros(200);

/// What the sampler saw.
#[derive(Debug, Default)]
pub struct Trace {
    /// When the source's counter last changed, and to what.
    pub source_last_change: Option<(Instant, u64)>,
    /// Every change of the destination's counter.
    pub destination_changes: Vec<(Instant, u64)>,
}

impl Trace {
    /// The guest-visible pause: from the source's last heartbeat to the destination's first
    /// heartbeat beyond it (the page copies carry the source's old counters; only a larger one
    /// is the guest running there).
    pub fn pause(&self) -> Option<Duration> {
        let (last, value) = self.source_last_change?;
        let (first, _) = self
            .destination_changes
            .iter()
            .find(|(_, counter)| *counter > value)?;
        Some(first.saturating_duration_since(last))
    }
}

impl HeartbeatTrace {
    /// Starts sampling.
    pub fn start(source: Arc<RamView>, destination: Arc<RamView>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut trace = Trace::default();
            let mut src = source.counter();
            let mut dst = destination.counter();
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                let s = source.counter();
                if s != src {
                    src = s;
                    trace.source_last_change = Some((now, s));
                }
                let d = destination.counter();
                if d != dst {
                    dst = d;
                    trace.destination_changes.push((now, d));
                }
                std::thread::sleep(SAMPLE);
            }
            trace
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> Trace {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for HeartbeatTrace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_ends_at_the_first_counter_beyond_the_source() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let trace = Trace {
            source_last_change: Some((at(100), 500)),
            // Page copies bring old counters (480, 500), then the guest runs on (501).
            destination_changes: vec![(at(40), 480), (at(130), 500), (at(160), 501)],
        };
        assert_eq!(trace.pause(), Some(Duration::from_millis(60)));
        let never_resumed = Trace {
            source_last_change: Some((at(100), 500)),
            destination_changes: vec![(at(130), 500)],
        };
        assert_eq!(never_resumed.pause(), None);
    }

    #[test]
    fn words_are_read_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ram");
        let mut bytes = vec![0u8; MAPPED];
        bytes[HEARTBEAT_GPA..HEARTBEAT_GPA + 8].copy_from_slice(&7u64.to_le_bytes());
        bytes[HEARTBEAT_GPA + 16..HEARTBEAT_GPA + 24].copy_from_slice(&9u64.to_le_bytes());
        bytes[PARAMS_GPA + STARTED_OFFSET] = 1;
        std::fs::write(&path, &bytes).expect("write");
        let view = RamView::open(&path).expect("map");
        assert_eq!(
            (view.counter(), view.writes(), view.started()),
            (7, 9, true)
        );
        std::fs::write(&path, [0u8; 16]).expect("write");
        assert!(RamView::open(&path).is_err(), "a short file is refused");
    }
}
