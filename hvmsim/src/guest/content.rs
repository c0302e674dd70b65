//! Deterministic, realistic memory content.
//!
//! Every page from [`RESERVED_PAGES`](super::layout::RESERVED_PAGES) on is, at activation, one of
//! three kinds chosen from `(seed, page index)` by the [`ContentMix`]:
//!
//! - **zero**: left untouched in the fresh mapping (costs nothing to "fill");
//! - **text-like**: a page header naming the page, then a slice (at an offset drawn from the
//!   seed and page) of a 4 MiB corpus of words from a small vocabulary with punctuation and line
//!   breaks (compresses like log buffers and page cache);
//! - **pointer-like**: 512 machine words, mostly user and kernel pointers near a common base,
//!   small integers and zeros, with some random words (compresses like heap and slab pages), cut
//!   at an offset drawn from the seed and page from a 4 MiB corpus of such pages.
//!
//! [`fill_page`] recomputes any page from `(seed, mix, page)`, so tests can check a page without a
//! copy of the whole image. Both corpora are generated once per process (splitmix64 +
//! xorshift64), so filling a page is one `memcpy`; the page faults of a fresh mapping dominate.

use std::sync::OnceLock;

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

/// Bytes of the shared text corpus text pages are cut from.
const CORPUS_LEN: usize = 4 << 20;

/// The text corpus: words from [`WORDS`], generated once from a fixed seed. A text page is a
/// page header plus a slice of it at an offset drawn from `(seed, page)`, so filling a text page
/// costs one `memcpy`.
fn corpus() -> &'static [u8] {
    static CORPUS: OnceLock<Vec<u8>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut text = vec![0; CORPUS_LEN];
        write_words(0xC0A9_0500, &mut text);
        text
    })
}

/// The pointer corpus: pointer-like pages, each around its own heap and kernel base, generated
/// once. A pointer page is an 8-byte-aligned slice of it at an offset drawn from `(seed, page)`.
fn pointer_corpus() -> &'static [u8] {
    static CORPUS: OnceLock<Vec<u8>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut words = vec![0; CORPUS_LEN];
        for (i, page) in words.chunks_exact_mut(PAGE_SIZE).enumerate() {
            write_pointers(splitmix64(0xB0B0_0000 + i as u64), page);
        }
        words
    })
}

fn fill_pointers(hash: u64, out: &mut [u8]) {
    let corpus = pointer_corpus();
    let offset = ((hash >> 8) as usize % (corpus.len() - out.len())) & !7;
    out.copy_from_slice(&corpus[offset..offset + out.len()]);
}

fn fill_text(hash: u64, page: u64, out: &mut [u8]) {
    // Header "page 0x0000000abcde\n": names the page, so no two text pages are equal.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut header = *b"page 0x000000000000\n";
    for (i, byte) in header[7..19].iter_mut().enumerate() {
        *byte = HEX[((page >> (4 * (11 - i))) & 0xF) as usize];
    }
    let pos = header.len().min(out.len());
    out[..pos].copy_from_slice(&header[..pos]);
    let rest = &mut out[pos..];
    let corpus = corpus();
    let offset = (hash >> 8) as usize % (corpus.len() - rest.len());
    rest.copy_from_slice(&corpus[offset..offset + rest.len()]);
}

fn write_words(seed: u64, out: &mut [u8]) {
    let mut pos = 0;
    let mut rng = XorShift::new(seed);
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

fn write_pointers(hash: u64, out: &mut [u8]) {
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
