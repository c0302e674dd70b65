//! Page batches: planning them from a dirty bitmap, encoding them on the sender (zero detection,
//! zstd or raw) and applying them on the receiver.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::wire::{
    Encoding, MAX_BATCH_PAGES, PageBatch, WireError, batch_prefix_len, encode_batch_frame,
    finish_batch_frame,
};
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
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Marks the zero pages of `data` (whole pages) in a mask and moves the non-zero pages to the
/// front, in order; returns the mask and the number of non-zero pages. Pages only move once a
/// zero page was seen, so a batch without zero pages is not copied at all.
fn compact_nonzero(data: &mut [u8]) -> (u64, usize) {
    let mut zero_mask = 0u64;
    let mut kept = 0usize;
    for i in 0..data.len() / PAGE_SIZE {
        let at = i * PAGE_SIZE;
        if crate::partition::is_zero_page(&data[at..at + PAGE_SIZE]) {
            zero_mask |= 1 << i;
        } else {
            if kept != i {
                data.copy_within(at..at + PAGE_SIZE, kept * PAGE_SIZE);
            }
            kept += 1;
        }
    }
    (zero_mask, kept)
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
            read: Vec::new(),
            compressor: None,
        }
    }

    /// Reads the planned pages, elides zero pages, compresses the rest if `encoding` says so
    /// (falling back to raw when zstd does not shrink them), and returns the encoded frame.
    ///
    /// Raw batches take only the non-zero pages from the partition, straight into the frame:
    /// guest memory is copied once on the way to quinn, and zero pages not at all.
    pub fn encode<P: Partition + ?Sized>(
        &mut self,
        partition: &P,
        plan: &BatchPlan,
        round: u32,
        encoding: Encoding,
    ) -> Result<(Bytes, BatchStats), EncodeError> {
        let prefix = batch_prefix_len(plan.runs.len());
        let bytes = plan.pages * PAGE_SIZE;
        let mut stats = BatchStats {
            batches: 1,
            memory_bytes: bytes as u64,
            ..BatchStats::default()
        };
        if encoding == Encoding::Raw {
            let mut frame = BytesMut::with_capacity(prefix + bytes);
            frame.resize(prefix, 0);
            let mut zero_mask = 0u64;
            let mut at = 0u32;
            for &(first, n) in &plan.runs {
                let zeros = partition.append_nonzero_pages(first, usize::from(n), &mut frame)?;
                zero_mask |= zeros << at;
                at += u32::from(n);
            }
            let kept = (frame.len() - prefix) / PAGE_SIZE;
            stats.pages_zero = u64::from(zero_mask.count_ones());
            stats.pages_raw = kept as u64;
            let frame = finish_batch_frame(frame, round, &plan.runs, zero_mask, Encoding::Raw)?;
            stats.wire_bytes = frame.len() as u64;
            return Ok((frame, stats));
        }
        self.read.resize(bytes, 0);
        read_plan(partition, plan, &mut self.read)?;
        let (zero_mask, kept) = compact_nonzero(&mut self.read);
        stats.pages_zero = u64::from(zero_mask.count_ones());
        let nonzero = &self.read[..kept * PAGE_SIZE];
        let mut compressed: Option<Vec<u8>> = None;
        if !nonzero.is_empty() {
            let start = Instant::now();
            let comp = match &mut self.compressor {
                Some(c) => c,
                None => self.compressor.insert(
                    zstd::bulk::Compressor::new(self.level).map_err(EncodeError::Compress)?,
                ),
            };
            let out = comp.compress(nonzero).map_err(EncodeError::Compress)?;
            stats.compress_ns = start.elapsed().as_nanos() as u64;
            stats.compress_input = nonzero.len() as u64;
            // Not worth it when it saves less than 1/16: send raw, cheaper to decode.
            if out.len() < nonzero.len() - nonzero.len() / 16 {
                compressed = Some(out);
            }
        }
        let frame = match &compressed {
            Some(c) => {
                stats.pages_compressed = kept as u64;
                encode_batch_frame(round, &plan.runs, zero_mask, Encoding::Zstd, c)?
            }
            None => {
                stats.pages_raw = kept as u64;
                encode_batch_frame(round, &plan.runs, zero_mask, Encoding::Raw, nonzero)?
            }
        };
        stats.wire_bytes = frame.len() as u64;
        Ok((frame, stats))
    }
}

/// Reads the pages of `plan`, in order, into `out` (exactly `plan.pages` pages long).
fn read_plan<P: Partition + ?Sized>(
    partition: &P,
    plan: &BatchPlan,
    out: &mut [u8],
) -> Result<(), EncodeError> {
    let mut off = 0;
    for &(first, n) in &plan.runs {
        let len = usize::from(n) * PAGE_SIZE;
        partition.read_pages(first, &mut out[off..off + len])?;
        off += len;
    }
    Ok(())
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
    // Raw page data is written straight from the received payload; only zstd needs `scratch`.
    let data: &[u8] = match batch.encoding {
        Encoding::Raw => &batch.payload,
        Encoding::Zstd => {
            batch.decode_pages(scratch)?;
            scratch
        }
    };
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
                    flush(s, data)?;
                }
                span = Some((page, 1, zero, off));
            }
        }
        if !zero {
            off += PAGE_SIZE;
        }
    }
    if let Some(s) = span {
        flush(s, data)?;
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
