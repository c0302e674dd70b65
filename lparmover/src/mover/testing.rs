//! An in-memory [`Partition`] for tests and benchmarks of the LPAR Mover.
//!
//! Memory is a slice of `AtomicU64` (so a background "guest" thread may write while the sender
//! reads, without data races), with a software dirty bitmap. A writer thread dirties pages of a
//! hot set at a configured rate, bumps a heartbeat counter kept in page 0, obeys pause/resume and
//! throttling. Content is a realistic mix of zero, text-like and pointer-like pages.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::model::workload::ContentMix;
use crate::partition::{
    DirtyBitmap, Heartbeat, MemoryDigest, PAGE_SIZE, Partition, PartitionError, VcpuState,
};

const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

/// How the in-memory guest behaves.
#[derive(Clone, Debug)]
pub struct MemGuestConfig {
    /// Memory size in bytes (rounded down to whole pages).
    pub memory_size: u64,
    /// Content of the initial memory.
    pub mix: ContentMix,
    /// Bytes per second the writer thread dirties (0 = no writer).
    pub dirty_rate: u64,
    /// Share of memory the writer touches (the hot set), 0 < f ≤ 1.
    pub hot_fraction: f64,
    /// Seed of the content and the writer.
    pub seed: u64,
}

impl Default for MemGuestConfig {
    fn default() -> Self {
        Self {
            memory_size: 64 << 20,
            mix: ContentMix::default(),
            dirty_rate: 0,
            hot_fraction: 0.1,
            seed: 1,
        }
    }
}

struct Gate {
    paused: bool,
    in_burst: bool,
    stop: bool,
}

struct Shared {
    mem: Box<[AtomicU64]>,
    dirty: Box<[AtomicU64]>,
    pages: u64,
    tracking: AtomicBool,
    throttle: AtomicU8,
    gate: Mutex<Gate>,
    cv: Condvar,
    vcpu: Mutex<Vec<u8>>,
    writes: AtomicU64,
    /// A page whose incoming copy is damaged on write (`u64::MAX`: none).
    damaged: AtomicU64,
}

/// An in-memory partition with an optional background writer.
pub struct MemPartition {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MemPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemPartition({} pages)", self.shared.pages)
    }
}

impl MemPartition {
    /// A blank (all zero) partition, as a destination prepares it. No writer; paused.
    pub fn blank(memory_size: u64) -> Self {
        let pages = memory_size / PAGE_SIZE as u64;
        let shared = Self::alloc(pages);
        if let Ok(mut g) = shared.gate.lock() {
            g.paused = true;
        }
        Self {
            shared: Arc::new(shared),
            writer: Mutex::new(None),
        }
    }

    /// A running guest: memory filled with the configured mix, writer thread started.
    pub fn running(cfg: &MemGuestConfig) -> Self {
        let pages = cfg.memory_size / PAGE_SIZE as u64;
        let shared = Arc::new(Self::alloc(pages));
        fill(&shared, cfg);
        if let Ok(mut v) = shared.vcpu.lock() {
            *v = b"soft-vcpu:rip=0x1000".to_vec();
        }
        let writer = (cfg.dirty_rate > 0).then(|| {
            let s = Arc::clone(&shared);
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name("memguest-writer".into())
                .spawn(move || writer_loop(&s, &cfg))
                .ok()
        });
        Self {
            shared,
            writer: Mutex::new(writer.flatten()),
        }
    }

    fn alloc(pages: u64) -> Shared {
        let words = pages as usize * WORDS_PER_PAGE;
        let dwords = pages.div_ceil(64) as usize;
        Shared {
            mem: (0..words).map(|_| AtomicU64::new(0)).collect(),
            dirty: (0..dwords).map(|_| AtomicU64::new(0)).collect(),
            pages,
            tracking: AtomicBool::new(false),
            throttle: AtomicU8::new(0),
            gate: Mutex::new(Gate {
                paused: false,
                in_burst: false,
                stop: false,
            }),
            cv: Condvar::new(),
            vcpu: Mutex::new(Vec::new()),
            writes: AtomicU64::new(0),
            damaged: AtomicU64::new(u64::MAX),
        }
    }

    /// Current throttle percentage.
    pub fn throttle(&self) -> u8 {
        self.shared.throttle.load(Ordering::Relaxed)
    }

    /// Pages written by the writer so far.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// Peeks at the dirty bitmap without clearing it.
    pub fn peek_dirty(&self) -> DirtyBitmap {
        let words = self
            .shared
            .dirty
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect();
        DirtyBitmap::from_words(self.shared.pages, words)
    }

    /// From now on, every write of `page` (an incoming copy) lands with its first byte
    /// flipped: a destination whose memory goes bad, for the digest check to catch.
    pub fn damage_writes_of(&self, page: u64) {
        self.shared.damaged.store(page, Ordering::Relaxed);
    }

    /// A copy of all memory.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.shared.pages as usize * PAGE_SIZE];
        copy_out(&self.shared.mem, &mut out);
        out
    }

    /// Whether every byte is zero (a scrubbed destination).
    pub fn is_all_zero(&self) -> bool {
        self.shared
            .mem
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0)
    }

    fn check(&self, first: u64, len: usize) -> Result<u64, PartitionError> {
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(PartitionError::NotPageAligned { len });
        }
        let n = (len / PAGE_SIZE) as u64;
        let end = first.saturating_add(n);
        if end > self.shared.pages {
            return Err(PartitionError::OutOfRange {
                first,
                end,
                pages: self.shared.pages,
            });
        }
        Ok(n)
    }
}

impl Drop for MemPartition {
    fn drop(&mut self) {
        if let Ok(mut g) = self.shared.gate.lock() {
            g.stop = true;
            g.paused = false;
        }
        self.shared.cv.notify_all();
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}

fn copy_out(words: &[AtomicU64], out: &mut [u8]) {
    for (w, chunk) in words.iter().zip(out.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
}

fn copy_in(words: &[AtomicU64], data: &[u8]) {
    for (w, chunk) in words.iter().zip(data.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

const WORDS: &[&str] = &[
    "the ",
    "migration ",
    "partition ",
    "memory ",
    "page ",
    "kernel ",
    "buffer ",
    "struct ",
    "return ",
    "error: ",
    "INFO ",
    "request ",
    "GET /index.html ",
    "user=",
    "0x",
    "\n",
    "{\"id\":",
    "}, ",
    "database ",
    "commit ",
];

fn page_content(rng: &mut impl Rng, mix: &ContentMix, out: &mut [u64; WORDS_PER_PAGE]) {
    let roll: u8 = rng.random_range(0..100);
    if roll < mix.zero() {
        out.fill(0);
    } else if roll < mix.zero() + mix.text() {
        let mut bytes = [0u8; PAGE_SIZE];
        let mut i = 0;
        while i < PAGE_SIZE {
            let w = WORDS[rng.random_range(0..WORDS.len())].as_bytes();
            let n = w.len().min(PAGE_SIZE - i);
            bytes[i..i + n].copy_from_slice(&w[..n]);
            i += n;
            if rng.random_range(0..8) == 0 && i + 4 < PAGE_SIZE {
                let d: u32 = rng.random_range(0..100_000);
                let s = d.to_string();
                let n = s.len().min(PAGE_SIZE - i);
                bytes[i..i + n].copy_from_slice(&s.as_bytes()[..n]);
                i += n;
            }
        }
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *o = u64::from_le_bytes(b);
        }
    } else {
        // Pointer-like: heap addresses in a few arenas, small integers, some zeros.
        let base = 0x0000_7f00_0000_0000u64 | (u64::from(rng.random_range(0u16..16)) << 32);
        for o in out.iter_mut() {
            *o = match rng.random_range(0..8) {
                0..=3 => base | (rng.random_range(0u64..1 << 24) << 3),
                4 => rng.random_range(0..4096),
                5 => 0,
                _ => rng.random(),
            };
        }
    }
}

fn fill(s: &Shared, cfg: &MemGuestConfig) {
    let mut rng = rand_xoshiro_like(cfg.seed);
    let mut page = [0u64; WORDS_PER_PAGE];
    for (p, words) in s.mem.chunks_exact(WORDS_PER_PAGE).enumerate() {
        page_content(&mut rng, &cfg.mix, &mut page);
        if p == 0 {
            page.fill(0);
        }
        for (w, v) in words.iter().zip(page.iter()) {
            w.store(*v, Ordering::Relaxed);
        }
    }
}

fn rand_xoshiro_like(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn writer_loop(s: &Shared, cfg: &MemGuestConfig) {
    let mut rng = rand_xoshiro_like(cfg.seed ^ 0x5eed);
    let hot = ((s.pages as f64 * cfg.hot_fraction.clamp(0.0, 1.0)) as u64).clamp(1, s.pages.max(1));
    let tick = Duration::from_millis(2);
    let per_tick = cfg.dirty_rate as f64 * tick.as_secs_f64() / PAGE_SIZE as f64;
    let mut carry = 0.0f64;
    let mut counter = 0u64;
    let mut next = Instant::now();
    loop {
        {
            let Ok(mut g) = s.gate.lock() else { return };
            while g.paused && !g.stop {
                let Ok(ng) = s.cv.wait(g) else { return };
                g = ng;
            }
            if g.stop {
                return;
            }
            g.in_burst = true;
        }
        let speed = f64::from(100 - s.throttle.load(Ordering::Relaxed).min(100)) / 100.0;
        carry += per_tick * speed;
        let n = carry as u64;
        carry -= n as f64;
        for _ in 0..n {
            // Pages 1..hot are the hot set; page 0 holds the heartbeat.
            let page = if hot > 1 { rng.random_range(1..hot) } else { 0 };
            let base = page as usize * WORDS_PER_PAGE;
            let start = rng.random_range(0..WORDS_PER_PAGE - 16);
            let v: u64 = rng.random();
            for w in &s.mem[base + start..base + start + 16] {
                w.store(v, Ordering::Relaxed);
            }
            mark(s, page);
        }
        counter += 1;
        s.mem[0].store(counter, Ordering::Relaxed);
        mark(s, 0);
        s.writes.fetch_add(n, Ordering::Relaxed);
        {
            let Ok(mut g) = s.gate.lock() else { return };
            g.in_burst = false;
        }
        s.cv.notify_all();
        next += tick;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn mark(s: &Shared, page: u64) {
    if s.tracking.load(Ordering::Relaxed) {
        s.dirty[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Release);
    }
}

impl Partition for MemPartition {
    fn memory_size(&self) -> u64 {
        self.shared.pages * PAGE_SIZE as u64
    }

    fn read_pages(&self, first_page: u64, out: &mut [u8]) -> Result<(), PartitionError> {
        self.check(first_page, out.len())?;
        let start = first_page as usize * WORDS_PER_PAGE;
        copy_out(&self.shared.mem[start..start + out.len() / 8], out);
        Ok(())
    }

    fn write_pages(&self, first_page: u64, data: &[u8]) -> Result<(), PartitionError> {
        self.check(first_page, data.len())?;
        let start = first_page as usize * WORDS_PER_PAGE;
        copy_in(&self.shared.mem[start..start + data.len() / 8], data);
        let damaged = self.shared.damaged.load(Ordering::Relaxed);
        if damaged >= first_page && damaged < first_page + (data.len() / PAGE_SIZE) as u64 {
            let word = &self.shared.mem[damaged as usize * WORDS_PER_PAGE];
            word.fetch_xor(0xff, Ordering::Relaxed);
        }
        Ok(())
    }

    fn zero_pages(&self, first_page: u64, count: u64) -> Result<(), PartitionError> {
        self.check(first_page, (count as usize).saturating_mul(PAGE_SIZE))?;
        let start = first_page as usize * WORDS_PER_PAGE;
        for w in &self.shared.mem[start..start + count as usize * WORDS_PER_PAGE] {
            w.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    fn start_dirty_tracking(&self) -> Result<(), PartitionError> {
        self.shared.tracking.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn stop_dirty_tracking(&self) -> Result<(), PartitionError> {
        self.shared.tracking.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn take_dirty_bitmap(&self) -> Result<DirtyBitmap, PartitionError> {
        if !self.shared.tracking.load(Ordering::SeqCst) {
            return Err(PartitionError::TrackingOff);
        }
        let words = self
            .shared
            .dirty
            .iter()
            .map(|w| w.swap(0, Ordering::AcqRel))
            .collect();
        Ok(DirtyBitmap::from_words(self.shared.pages, words))
    }

    fn restore_dirty(&self, bitmap: &DirtyBitmap) -> Result<(), PartitionError> {
        for (w, b) in self.shared.dirty.iter().zip(bitmap.words()) {
            w.fetch_or(*b, Ordering::AcqRel);
        }
        Ok(())
    }

    fn pause(&self) -> Result<(), PartitionError> {
        let mut g = self
            .shared
            .gate
            .lock()
            .map_err(|_| PartitionError::GuestStopped("writer lock poisoned".into()))?;
        g.paused = true;
        while g.in_burst {
            g = self
                .shared
                .cv
                .wait(g)
                .map_err(|_| PartitionError::GuestStopped("writer lock poisoned".into()))?;
        }
        Ok(())
    }

    fn resume(&self) -> Result<(), PartitionError> {
        let mut g = self
            .shared
            .gate
            .lock()
            .map_err(|_| PartitionError::GuestStopped("writer lock poisoned".into()))?;
        g.paused = false;
        drop(g);
        self.shared.cv.notify_all();
        Ok(())
    }

    fn is_paused(&self) -> bool {
        self.shared.gate.lock().map(|g| g.paused).unwrap_or(true)
    }

    fn save_vcpu_state(&self) -> Result<VcpuState, PartitionError> {
        if !self.is_paused() {
            return Err(PartitionError::NotPaused);
        }
        let mut bytes = self
            .shared
            .vcpu
            .lock()
            .map_err(|_| PartitionError::GuestStopped("vCPU lock poisoned".into()))?
            .clone();
        bytes.extend_from_slice(&self.shared.mem[0].load(Ordering::Relaxed).to_le_bytes());
        Ok(VcpuState {
            backend: "soft".into(),
            bytes,
        })
    }

    fn restore_vcpu_state(&self, state: &VcpuState) -> Result<(), PartitionError> {
        if state.backend != "soft" {
            return Err(PartitionError::IncompatibleState(format!(
                "state from backend {:?}, this is a soft partition",
                state.backend
            )));
        }
        if !self.is_paused() {
            return Err(PartitionError::NotPaused);
        }
        let mut v = self
            .shared
            .vcpu
            .lock()
            .map_err(|_| PartitionError::GuestStopped("vCPU lock poisoned".into()))?;
        v.clone_from(&state.bytes);
        Ok(())
    }

    fn heartbeat(&self) -> Result<Heartbeat, PartitionError> {
        Ok(Heartbeat {
            counter: self.shared.mem[0].load(Ordering::Relaxed),
            tsc: 0,
            observed_at_ns: 0,
        })
    }

    fn digest(&self) -> Result<MemoryDigest, PartitionError> {
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * PAGE_SIZE];
        for words in self.shared.mem.chunks(buf.len() / 8) {
            let n = words.len() * 8;
            copy_out(words, &mut buf[..n]);
            h.update(&buf[..n]);
        }
        Ok(MemoryDigest(*h.finalize().as_bytes()))
    }

    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.shared
            .throttle
            .store(percent.min(99), Ordering::Relaxed);
        Ok(())
    }
}

/// The vCPU state a [`MemPartition`] last loaded (for tests).
pub fn vcpu_bytes(p: &MemPartition) -> Vec<u8> {
    p.shared.vcpu.lock().map(|v| v.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_dirties_and_pause_stops_it() {
        let p = MemPartition::running(&MemGuestConfig {
            memory_size: 4 << 20,
            dirty_rate: 50 << 20,
            ..MemGuestConfig::default()
        });
        p.start_dirty_tracking().expect("track");
        std::thread::sleep(Duration::from_millis(50));
        assert!(p.take_dirty_bitmap().expect("take").count() > 1);
        p.pause().expect("pause");
        let _ = p.take_dirty_bitmap().expect("take");
        let hb = p.heartbeat().expect("hb").counter;
        std::thread::sleep(Duration::from_millis(30));
        assert!(p.take_dirty_bitmap().expect("take").is_empty());
        assert_eq!(p.heartbeat().expect("hb").counter, hb);
        p.resume().expect("resume");
        std::thread::sleep(Duration::from_millis(30));
        assert!(p.heartbeat().expect("hb").counter > hb);
    }
}
