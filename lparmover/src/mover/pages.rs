//! Page batches: planning them from a dirty bitmap, encoding them on the sender (zero detection,
//! zstd or raw) and applying them on the receiver.

use std::time::Instant;

use bytes::Bytes;

use super::wire::{Encoding, MAX_BATCH_PAGES, PageBatch, WireError, encode_batch_frame};
use crate::partition::{DirtyBitmap, PAGE_SIZE, Partition, PartitionError};

/// zstd level for page data: on page batches level -1 matched level 1's ratio (3.5 on the
/// realistic mix) and compressed faster; level 3 only costs speed.
pub const ZSTD_LEVEL: i32 = -1;

/// The pages of one batch, as runs `(first_page, count)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    /// Runs of consecutive pages.
    pub runs: Vec<(u64, u8)>,
    /// Total pages.
    pub pages: usize,
}

/// Groups the dirty pages into batches of at most `max_pages` (≤ 64) pages, contiguous runs kept
/// together where they fit.
pub fn plan_batches(bitmap: &DirtyBitmap, max_pages: usize) -> Vec<BatchPlan> {
    let max = max_pages.clamp(1, MAX_BATCH_PAGES);
    let mut out = Vec::new();
    let mut cur = BatchPlan {
        runs: Vec::new(),
        pages: 0,
    };
    for (mut first, mut count) in bitmap.ranges() {
        while count > 0 {
            let room = (max - cur.pages) as u64;
            let take = count.min(room);
            // take ≤ 64, so it fits a u8.
            cur.runs.push((first, take as u8));
            cur.pages += take as usize;
            first += take;
            count -= take;
            if cur.pages == max {
                out.push(std::mem::replace(
                    &mut cur,
                    BatchPlan {
                        runs: Vec::new(),
                        pages: 0,
                    },
                ));
            }
        }
    }
    if cur.pages > 0 {
        out.push(cur);
    }
    out
}

/// What encoding one batch produced.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Batches encoded.
    pub batches: u64,
    /// Pages sent as a zero bit.
    pub pages_zero: u64,
    /// Pages sent raw.
    pub pages_raw: u64,
    /// Pages sent compressed.
    pub pages_compressed: u64,
    /// Memory bytes covered.
    pub memory_bytes: u64,
    /// Frame bytes produced.
    pub wire_bytes: u64,
    /// Time spent compressing, ns.
    pub compress_ns: u64,
    /// Memory bytes that went through the compressor.
    pub compress_input: u64,
}

impl BatchStats {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &BatchStats) {
        self.batches += o.batches;
        self.pages_zero += o.pages_zero;
        self.pages_raw += o.pages_raw;
        self.pages_compressed += o.pages_compressed;
        self.memory_bytes += o.memory_bytes;
        self.wire_bytes += o.wire_bytes;
        self.compress_ns += o.compress_ns;
        self.compress_input += o.compress_input;
    }
}

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

/// Errors encoding a batch.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Reading guest memory failed.
    #[error("reading guest pages failed: {0}")]
    Partition(#[from] PartitionError),
    /// Building the frame failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// zstd failed.
    #[error("zstd compression failed: {0}")]
    Compress(std::io::Error),
}

/// Reusable buffers and compressor of one encoding worker.
pub struct BatchEncoder {
    level: i32,
    read: Vec<u8>,
    nonzero: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchEncoder {
    /// Empty buffers; the compressor is created on first use.
    pub fn new() -> Self {
        Self::with_level(ZSTD_LEVEL)
    }

    /// With a zstd level (negative levels trade ratio for speed).
    pub fn with_level(level: i32) -> Self {
        Self {
            level,
            read: Vec::with_capacity(MAX_BATCH_PAGES * PAGE_SIZE),
            nonzero: Vec::with_capacity(MAX_BATCH_PAGES * PAGE_SIZE),
            compressor: None,
        }
    }

    /// Reads the planned pages, elides zero pages, compresses the rest if `encoding` says so
    /// (falling back to raw when zstd does not shrink them), and returns the encoded frame.
    pub fn encode<P: Partition + ?Sized>(
        &mut self,
        partition: &P,
        plan: &BatchPlan,
        round: u32,
        encoding: Encoding,
    ) -> Result<(Bytes, BatchStats), EncodeError> {
        self.read.resize(plan.pages * PAGE_SIZE, 0);
        let mut off = 0;
        for &(first, n) in &plan.runs {
            let len = usize::from(n) * PAGE_SIZE;
            partition.read_pages(first, &mut self.read[off..off + len])?;
            off += len;
        }
        let mut zero_mask = 0u64;
        self.nonzero.clear();
        for (i, page) in self.read.chunks_exact(PAGE_SIZE).enumerate() {
            if is_zero_page(page) {
                zero_mask |= 1 << i;
            } else {
                self.nonzero.extend_from_slice(page);
            }
        }
        let mut stats = BatchStats {
            batches: 1,
            memory_bytes: (plan.pages * PAGE_SIZE) as u64,
            pages_zero: u64::from(zero_mask.count_ones()),
            ..BatchStats::default()
        };
        let nonzero_pages = (self.nonzero.len() / PAGE_SIZE) as u64;
        let mut compressed: Option<Vec<u8>> = None;
        if encoding == Encoding::Zstd && !self.nonzero.is_empty() {
            let start = Instant::now();
            let comp = match &mut self.compressor {
                Some(c) => c,
                None => self.compressor.insert(
                    zstd::bulk::Compressor::new(self.level).map_err(EncodeError::Compress)?,
                ),
            };
            let out = comp
                .compress(&self.nonzero)
                .map_err(EncodeError::Compress)?;
            stats.compress_ns = start.elapsed().as_nanos() as u64;
            stats.compress_input = self.nonzero.len() as u64;
            // Not worth it when it saves less than 1/16: send raw, cheaper to decode.
            if out.len() < self.nonzero.len() - self.nonzero.len() / 16 {
                compressed = Some(out);
            }
        }
        let frame = match &compressed {
            Some(c) => {
                stats.pages_compressed = nonzero_pages;
                encode_batch_frame(round, &plan.runs, zero_mask, Encoding::Zstd, c)?
            }
            None => {
                stats.pages_raw = nonzero_pages;
                encode_batch_frame(round, &plan.runs, zero_mask, Encoding::Raw, &self.nonzero)?
            }
        };
        stats.wire_bytes = frame.len() as u64;
        Ok((frame, stats))
    }
}

/// Errors applying a batch on the receiver.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The batch's page data does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Writing into the destination partition failed.
    #[error("writing pages into the destination partition failed: {0}")]
    Partition(#[from] PartitionError),
}

/// Writes a batch into `partition`: zero pages zeroed, the others copied, consecutive pages of the
/// same kind in one call. `scratch` is reused between calls.
pub fn apply_batch<P: Partition + ?Sized>(
    partition: &P,
    batch: &PageBatch,
    scratch: &mut Vec<u8>,
) -> Result<(), ApplyError> {
    batch.decode_pages(scratch)?;
    // A span of consecutive pages of one kind: (first page, count, zero?, offset in scratch).
    let mut span: Option<(u64, u64, bool, usize)> = None;
    let mut off = 0usize;
    let flush = |s: (u64, u64, bool, usize), data: &[u8]| -> Result<(), PartitionError> {
        let (first, n, zero, at) = s;
        if zero {
            partition.zero_pages(first, n)
        } else {
            partition.write_pages(first, &data[at..at + n as usize * PAGE_SIZE])
        }
    };
    for (i, page) in batch.pages().enumerate() {
        let zero = batch.zero_mask & (1 << i) != 0;
        match &mut span {
            Some((first, n, z, _)) if *z == zero && *first + *n == page => *n += 1,
            _ => {
                if let Some(s) = span.take() {
                    flush(s, scratch)?;
                }
                span = Some((page, 1, zero, off));
            }
        }
        if !zero {
            off += PAGE_SIZE;
        }
    }
    if let Some(s) = span {
        flush(s, scratch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::testing::MemPartition;
    use crate::mover::wire::Message;

    #[test]
    fn plans_keep_runs_and_cap_pages() {
        let mut b = DirtyBitmap::new(1000);
        for p in (0..100).chain([200, 202, 204]) {
            b.set(p);
        }
        let plans = plan_batches(&b, 64);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].runs, vec![(0, 64)]);
        assert_eq!(plans[1].runs, vec![(64, 36), (200, 1), (202, 1), (204, 1)]);
        assert_eq!(plans.iter().map(|p| p.pages).sum::<usize>(), 103);
    }

    #[test]
    fn encode_then_apply_copies_pages_and_elides_zeros() {
        let src = MemPartition::blank(64 * PAGE_SIZE as u64);
        let mut data = vec![0u8; 64 * PAGE_SIZE];
        for (i, b) in data.iter_mut().enumerate() {
            // Pages 3, 4 and 10 stay zero.
            let page = i / PAGE_SIZE;
            if ![3, 4, 10].contains(&page) {
                *b = (i % 251) as u8;
            }
        }
        src.write_pages(0, &data).expect("fill");
        let dst = MemPartition::blank(64 * PAGE_SIZE as u64);
        dst.write_pages(3, &vec![0xaa; PAGE_SIZE])
            .expect("dirty a zero page on the destination");
        let plan = plan_batches(&DirtyBitmap::full(64), 64).remove(0);
        for enc in [Encoding::Raw, Encoding::Zstd] {
            let (frame, stats) = BatchEncoder::new()
                .encode(&src, &plan, 0, enc)
                .expect("encode");
            assert_eq!(stats.pages_zero, 3);
            let msg = Message::read_from(&mut std::io::Cursor::new(frame.to_vec()))
                .expect("decode")
                .expect("frame");
            let Message::Batch(b) = msg else {
                panic!("not a batch")
            };
            assert_eq!(b.encoding, enc);
            let mut scratch = Vec::new();
            apply_batch(&dst, &b, &mut scratch).expect("apply");
            assert_eq!(dst.snapshot(), src.snapshot());
        }
    }
}
