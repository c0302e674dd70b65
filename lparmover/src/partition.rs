//! The guest abstraction the migration engine is generic over.
//!
//! A [`Partition`] is the running (or paused) memory and vCPUs of one LPAR. hvmsim implements it
//! twice — a KVM guest and a software guest — and the LPAR Mover sender and receiver only ever see
//! this trait, so the protocol can be tested without a blade and a blade can run any guest.
//!
//! Dirty tracking follows the firecracker rule: a bitmap taken with
//! [`Partition::take_dirty_bitmap`] is *owned* by the caller; if the pages it names are not
//! delivered (error, cancel) the caller gives the bits back with [`Partition::restore_dirty`] so
//! no write is ever lost.

use std::fmt;

use serde::{Deserialize, Serialize};

// The value types the wire format carries live in `lpm-formats` (fuzzed without this crate).
pub use lpm_formats::guest::{MemoryDigest, PAGE_SIZE, VcpuState};

/// Whether a page is all zeros (word-wise, far cheaper than compressing it).
pub fn is_zero_page(page: &[u8]) -> bool {
    page.chunks_exact(64).all(|c| {
        c.chunks_exact(8).fold(0u64, |acc, w| {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            acc | u64::from_ne_bytes(b)
        }) == 0
    })
}

/// Errors a partition backend reports.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A page range outside guest memory was asked for.
    #[error(
        "pages {first}..{end} are outside guest memory of {pages} pages; ask for pages below {pages}"
    )]
    OutOfRange { first: u64, end: u64, pages: u64 },
    /// A buffer that is not a whole number of pages was given.
    #[error("buffer of {len} bytes is not a whole number of {PAGE_SIZE}-byte pages")]
    NotPageAligned { len: usize },
    /// The operation needs the vCPUs paused.
    #[error("the partition must be paused for this operation; pause it first")]
    NotPaused,
    /// Dirty tracking was not started.
    #[error("dirty tracking is not running; start it before taking dirty bitmaps")]
    TrackingOff,
    /// The saved vCPU state does not fit this partition.
    #[error("vCPU state does not fit this partition: {0}")]
    IncompatibleState(String),
    /// The guest stopped on its own (crash, unexpected exit).
    #[error("the guest stopped: {0}")]
    GuestStopped(String),
    /// The backend (KVM ioctl, mmap …) failed.
    #[error("{what} failed: {source}")]
    Backend {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One bit per guest page; set means "written since the bitmap was last taken".
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyBitmap {
    pages: u64,
    words: Vec<u64>,
}

impl DirtyBitmap {
    /// An empty bitmap for `pages` pages.
    pub fn new(pages: u64) -> Self {
        let words = usize::try_from(pages.div_ceil(64)).unwrap_or(usize::MAX);
        Self {
            pages,
            words: vec![0; words],
        }
    }

    /// A bitmap with every page set (round 0 sends everything).
    pub fn full(pages: u64) -> Self {
        let mut bitmap = Self::new(pages);
        bitmap.words.iter_mut().for_each(|w| *w = u64::MAX);
        bitmap.trim_tail();
        bitmap
    }

    /// Builds a bitmap from raw 64-bit words as KVM's dirty log returns them.
    /// Bits past `pages` are ignored.
    pub fn from_words(pages: u64, mut words: Vec<u64>) -> Self {
        let want = usize::try_from(pages.div_ceil(64)).unwrap_or(usize::MAX);
        words.resize(want, 0);
        let mut bitmap = Self { pages, words };
        bitmap.trim_tail();
        bitmap
    }

    fn trim_tail(&mut self) {
        let rem = self.pages % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << rem) - 1;
        }
    }

    /// Number of pages this bitmap covers.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The raw words (bit `i % 64` of word `i / 64` is page `i`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Marks `page` dirty. Pages past the end are ignored.
    pub fn set(&mut self, page: u64) {
        if page < self.pages {
            self.words[(page / 64) as usize] |= 1 << (page % 64);
        }
    }

    /// Clears `page`.
    pub fn clear(&mut self, page: u64) {
        if page < self.pages {
            self.words[(page / 64) as usize] &= !(1 << (page % 64));
        }
    }

    /// Whether `page` is dirty.
    pub fn is_set(&self, page: u64) -> bool {
        page < self.pages && self.words[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    /// Number of dirty pages.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Whether no page is dirty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Adds every page dirty in `other` (which must cover the same pages).
    pub fn merge(&mut self, other: &DirtyBitmap) {
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= *theirs;
        }
    }

    /// The dirty pages in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut w = word;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = u64::from(w.trailing_zeros());
                w &= w - 1;
                Some(i as u64 * 64 + bit)
            })
        })
    }

    /// Dirty pages coalesced into `(first_page, count)` runs, in ascending order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for page in self.iter() {
            match out.last_mut() {
                Some((first, count)) if *first + *count == page => *count += 1,
                _ => out.push((page, 1)),
            }
        }
        out
    }
}

impl fmt::Debug for DirtyBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirtyBitmap({} of {} pages)", self.count(), self.pages)
    }
}

/// What the guest's workload last wrote to its heartbeat page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Incremented by the guest on every heartbeat.
    pub counter: u64,
    /// The guest's time stamp counter at that heartbeat.
    pub tsc: u64,
    /// Host monotonic time (ns since an arbitrary origin of this host) when the heartbeat was read.
    pub observed_at_ns: u64,
}

/// The memory and vCPUs of one LPAR, as the migration engine sees them.
///
/// All methods take `&self`: backends use interior mutability so the sender can read pages from
/// several tasks while the vCPUs keep running.
pub trait Partition: Send + Sync {
    /// Guest memory size in bytes (a whole number of pages).
    fn memory_size(&self) -> u64;

    /// Page size in bytes.
    fn page_size(&self) -> usize {
        PAGE_SIZE
    }

    /// Number of guest pages.
    fn page_count(&self) -> u64 {
        self.memory_size() / self.page_size() as u64
    }

    /// Copies pages `first_page..first_page + out.len() / PAGE_SIZE` into `out`.
    /// May race with running vCPUs; the dirty log reports pages written meanwhile.
    fn read_pages(&self, first_page: u64, out: &mut [u8]) -> Result<(), PartitionError>;

    /// Appends to `out`, in order, those of the `count` pages from `first_page` that are not
    /// all zero, and returns a mask with bit `i` set when page `first_page + i` is zero
    /// (`count` ≤ 64). May race with running vCPUs like [`Partition::read_pages`].
    ///
    /// The default reads every page through [`Partition::read_pages`]; a backend with mapped
    /// memory checks pages in place and copies only the non-zero ones, once.
    fn append_nonzero_pages(
        &self,
        first_page: u64,
        count: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<u64, PartitionError> {
        assert!(count <= 64, "a page mask holds 64 pages");
        let mut pages = vec![0u8; count * PAGE_SIZE];
        self.read_pages(first_page, &mut pages)?;
        let mut zero_mask = 0u64;
        for (i, page) in pages.chunks_exact(PAGE_SIZE).enumerate() {
            if is_zero_page(page) {
                zero_mask |= 1 << i;
            } else {
                out.extend_from_slice(page);
            }
        }
        Ok(zero_mask)
    }

    /// Writes whole pages (destination side; the vCPUs are paused or not yet started).
    fn write_pages(&self, first_page: u64, data: &[u8]) -> Result<(), PartitionError>;

    /// Fills `count` pages from `first_page` with zeros (destination side).
    fn zero_pages(&self, first_page: u64, count: u64) -> Result<(), PartitionError>;

    /// Starts dirty tracking; the first bitmap taken afterwards holds writes since this call.
    fn start_dirty_tracking(&self) -> Result<(), PartitionError>;

    /// Stops dirty tracking.
    fn stop_dirty_tracking(&self) -> Result<(), PartitionError>;

    /// Returns the pages written since the last call (or since tracking started) and clears them.
    fn take_dirty_bitmap(&self) -> Result<DirtyBitmap, PartitionError>;

    /// Gives back bits taken but not delivered, so the next bitmap includes them again.
    fn restore_dirty(&self, bitmap: &DirtyBitmap) -> Result<(), PartitionError>;

    /// Stops every vCPU; returns once none runs.
    fn pause(&self) -> Result<(), PartitionError>;

    /// Lets the vCPUs run again.
    fn resume(&self) -> Result<(), PartitionError>;

    /// Whether the vCPUs are paused.
    fn is_paused(&self) -> bool;

    /// Saves the state of every vCPU (requires a pause).
    fn save_vcpu_state(&self) -> Result<VcpuState, PartitionError>;

    /// Loads vCPU state saved by the same backend elsewhere (requires a pause).
    fn restore_vcpu_state(&self, state: &VcpuState) -> Result<(), PartitionError>;

    /// The latest heartbeat the guest wrote.
    fn heartbeat(&self) -> Result<Heartbeat, PartitionError>;

    /// BLAKE3 digest of all guest memory.
    fn digest(&self) -> Result<MemoryDigest, PartitionError>;

    /// Slows the vCPUs down to `(100 - percent)` % of their speed (auto-converge). 0 = full speed.
    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bitmap_has_exactly_the_pages() {
        let b = DirtyBitmap::full(130);
        assert_eq!(b.count(), 130);
        assert!(b.is_set(129));
        assert!(!b.is_set(130));
    }

    #[test]
    fn ranges_coalesce_runs() {
        let mut b = DirtyBitmap::new(200);
        for p in [0, 1, 2, 63, 64, 65, 150] {
            b.set(p);
        }
        assert_eq!(b.ranges(), vec![(0, 3), (63, 3), (150, 1)]);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 1, 2, 63, 64, 65, 150]);
    }

    #[test]
    fn merge_restores_given_back_bits() {
        let mut taken = DirtyBitmap::new(100);
        taken.set(7);
        let mut live = DirtyBitmap::new(100);
        live.set(9);
        live.merge(&taken);
        assert_eq!(live.iter().collect::<Vec<_>>(), vec![7, 9]);
    }

    #[test]
    fn from_words_ignores_bits_past_the_end() {
        let b = DirtyBitmap::from_words(3, vec![u64::MAX, u64::MAX]);
        assert_eq!(b.count(), 3);
        assert_eq!(b.words().len(), 1);
    }
}
