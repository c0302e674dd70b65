//! Deterministic, realistic memory content.
//!
//! Every page from [`RESERVED_PAGES`](super::layout::RESERVED_PAGES) on is, at activation, one of
//! three kinds chosen from `(seed, page index)` by the [`ContentMix`]:
//!
//! - **zero**: left untouched in the fresh mapping (costs nothing to "fill");
//! - **text-like**: a page header naming the page, then words from a small vocabulary with
//!   punctuation and line breaks (compresses like log buffers and page cache);
//! - **pointer-like**: 512 machine words, mostly user and kernel pointers near a per-page base,
//!   small integers and zeros, with some random words (compresses like heap and slab pages).
//!
//! [`fill_page`] recomputes any page from `(seed, mix, page)`, so tests can check a page without a
//! copy of the whole image. The generator is splitmix64 + xorshift64, a few nanoseconds per word.

use lparmover::model::workload::ContentMix;
use lparmover::partition::PAGE_SIZE;

use super::layout::RESERVED_PAGES;
use super::memory::GuestMemory;

/// Kind of a content page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// All zero.
    Zero,
    /// Text-like.
    Text,
    /// Pointer-like.
    Pointer,
}

/// splitmix64: a good 64-bit mix of `x`.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn page_hash(seed: u64, page: u64) -> u64 {
    splitmix64(seed ^ splitmix64(page.wrapping_add(0x5EED)))
}

/// The kind of page `page` for this seed and mix (reserved layout pages are reported as zero).
pub fn page_kind(seed: u64, mix: ContentMix, page: u64) -> PageKind {
    if page < RESERVED_PAGES {
        return PageKind::Zero;
    }
    let r = page_hash(seed, page) % 100;
    if r < u64::from(mix.zero()) {
        PageKind::Zero
    } else if r < u64::from(mix.zero()) + u64::from(mix.text()) {
        PageKind::Text
    } else {
        PageKind::Pointer
    }
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const WORDS: [&[u8]; 64] = [
    b"the",
    b"of",
    b"and",
    b"to",
    b"in",
    b"is",
    b"that",
    b"for",
    b"it",
    b"as",
    b"was",
    b"with",
    b"be",
    b"by",
    b"on",
    b"not",
    b"he",
    b"this",
    b"are",
    b"or",
    b"his",
    b"from",
    b"at",
    b"which",
    b"but",
    b"have",
    b"an",
    b"had",
    b"they",
    b"you",
    b"were",
    b"their",
    b"one",
    b"all",
    b"we",
    b"can",
    b"her",
    b"has",
    b"there",
    b"been",
    b"if",
    b"more",
    b"when",
    b"will",
    b"would",
    b"who",
    b"so",
    b"no",
    b"request",
    b"server",
    b"error",
    b"partition",
    b"memory",
    b"status",
    b"user",
    b"session",
    b"config",
    b"value",
    b"timeout",
    b"connection",
    b"INFO",
    b"WARN",
    b"kernel",
    b"0x7f3a",
];

/// Writes the content of page `page` into `out` (one page). Zero pages are written as zeros.
pub fn fill_page(seed: u64, mix: ContentMix, page: u64, out: &mut [u8]) {
    match page_kind(seed, mix, page) {
        PageKind::Zero => out.fill(0),
        PageKind::Text => fill_text(page_hash(seed, page), page, out),
        PageKind::Pointer => fill_pointers(page_hash(seed, page), out),
    }
}

fn fill_text(hash: u64, page: u64, out: &mut [u8]) {
    let header = format!("page {page:#014x}\n");
    let mut pos = header.len().min(out.len());
    out[..pos].copy_from_slice(&header.as_bytes()[..pos]);
    let mut rng = XorShift::new(hash);
    let mut bits = 0u64;
    let mut left = 0;
    while pos < out.len() {
        if left == 0 {
            bits = rng.next();
            left = 8;
        }
        let pick = (bits & 0xFF) as usize;
        bits >>= 8;
        left -= 1;
        let word = WORDS[pick & 63];
        let n = word.len().min(out.len() - pos);
        out[pos..pos + n].copy_from_slice(&word[..n]);
        pos += n;
        if pos < out.len() {
            out[pos] = match pick >> 6 {
                0 if pick & 7 == 0 => b'\n',
                1 if pick & 3 == 0 => b',',
                _ => b' ',
            };
            pos += 1;
        }
    }
}

fn fill_pointers(hash: u64, out: &mut [u8]) {
    let mut rng = XorShift::new(hash);
    let heap = 0x0000_5500_0000_0000 | ((hash >> 20) & 0x00FF_FFFF_0000);
    let kernel = 0xFFFF_8880_0000_0000 | ((hash >> 8) & 0x3FFF_0000);
    for chunk in out.chunks_exact_mut(8) {
        let r = rng.next();
        let word = match r & 7 {
            0..=2 => heap + ((r >> 16) & 0xF_FFF8),
            3 | 4 => r >> 58,
            5 => 0,
            6 => kernel + ((r >> 24) & 0xFFFF8),
            _ => r,
        };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

/// The expected content of page `page` as a fresh page.
pub fn expected_page(seed: u64, mix: ContentMix, page: u64) -> Vec<u8> {
    let mut out = vec![0; PAGE_SIZE];
    fill_page(seed, mix, page, &mut out);
    out
}

/// Fills every non-zero content page of a fresh mapping (zero pages stay untouched), in parallel.
pub fn fill(memory: &GuestMemory, seed: u64, mix: ContentMix) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    memory.fill_pages_parallel(
        RESERVED_PAGES,
        memory.pages(),
        threads,
        |page, out| match page_kind(seed, mix, page) {
            PageKind::Zero => {}
            PageKind::Text => fill_text(page_hash(seed, page), page, out),
            PageKind::Pointer => fill_pointers(page_hash(seed, page), out),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind_wanted: Option<PageKind>, n: usize) -> Vec<Vec<u8>> {
        let mix = ContentMix::default();
        (RESERVED_PAGES..)
            .filter(|p| kind_wanted.is_none_or(|k| page_kind(7, mix, *p) == k))
            .take(n)
            .map(|p| expected_page(7, mix, p))
            .collect()
    }

    fn zstd1_ratio(pages: &[Vec<u8>]) -> f64 {
        let mut raw = 0usize;
        let mut packed = 0usize;
        for page in pages {
            raw += page.len();
            packed += zstd::bulk::compress(page, 1)
                .expect("zstd compresses")
                .len();
        }
        raw as f64 / packed as f64
    }

    #[test]
    fn default_mix_compresses_like_a_real_guest() {
        let all = zstd1_ratio(&sample(None, 2000));
        let text = zstd1_ratio(&sample(Some(PageKind::Text), 300));
        let pointers = zstd1_ratio(&sample(Some(PageKind::Pointer), 300));
        eprintln!("zstd-1 per 4 KiB page: mix {all:.2}x, text {text:.2}x, pointer {pointers:.2}x");
        assert!(
            (3.0..=5.5).contains(&all),
            "mix ratio {all:.2} outside 3..5.5"
        );
        assert!(
            text > 1.8 && pointers > 1.3,
            "text {text:.2}, pointers {pointers:.2}"
        );
    }

    #[test]
    fn mix_shares_are_respected() {
        let mix = ContentMix::default();
        let n = 20_000u64;
        let zero = (RESERVED_PAGES..RESERVED_PAGES + n)
            .filter(|p| page_kind(3, mix, *p) == PageKind::Zero)
            .count() as f64;
        assert!((zero / n as f64 - 0.40).abs() < 0.02, "{zero}");
    }

    #[test]
    fn content_is_deterministic_and_seed_dependent() {
        let mix = ContentMix::default();
        let p = (RESERVED_PAGES..)
            .find(|p| page_kind(1, mix, *p) == PageKind::Text)
            .unwrap_or(0);
        assert_eq!(expected_page(1, mix, p), expected_page(1, mix, p));
        assert_ne!(expected_page(1, mix, p), expected_page(2, mix, p));
    }

    #[test]
    fn fill_matches_expected_pages() {
        let mix = ContentMix::default();
        let memory = GuestMemory::new(8 << 20).expect("mmap");
        fill(&memory, 9, mix);
        let mut buf = vec![0; PAGE_SIZE];
        for page in 0..memory.pages() {
            memory.read(page, &mut buf).expect("read");
            assert_eq!(buf, expected_page(9, mix, page), "page {page}");
        }
    }
}
