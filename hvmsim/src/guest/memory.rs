//! Guest memory: one mapping, plus an atomic page bitmap.
//!
//! The mapping is anonymous and private ([`GuestMemory::new`], guests run in this process) or
//! of a memfd ([`GuestMemory::shared`], [`GuestMemory::attach`]) that a guest's VM process and
//! its blade both map, so the guest outlives a blade process that dies. Either way untouched
//! pages cost nothing and read as zero, so a large guest activates in the time it takes to
//! write its non-zero pages.
//!
//! Guest memory is shared with agents Rust cannot see (a KVM vCPU, or the software guest's worker
//! threads storing through atomics), so every access goes through raw pointers and copies, as in
//! rust-vmm's `vm-memory`: a reader racing a writer may see a torn page, which the dirty log then
//! reports again.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use lparmover::partition::{DirtyBitmap, PAGE_SIZE, PartitionError};

use super::layout::PAGE;

/// The host's switch for transparent huge pages in shared memory (memfds included).
const SHMEM_THP: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// Size of the host's default huge pages, the unit of its huge page pool.
pub const HUGE_PAGE: u64 = 2 << 20;

/// `HUGETLBFS_MAGIC` from linux/magic.h: `f_type` of a file in the huge page pool.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// Whether `fd` is a file of the host's huge page pool.
fn is_hugetlb(fd: libc::c_int) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `stat` is a writable buffer of the right type for the call; it is read only when
    // the call succeeded and so filled it.
    unsafe {
        libc::fstatfs(fd, stat.as_mut_ptr()) == 0 && stat.assume_init().f_type == HUGETLBFS_MAGIC
    }
}

/// Lets guest memory files use transparent huge pages: when the host's shared-memory THP mode
/// is "never" (the kernel default), sets it to "advise", under which only mappings that ask
/// with `MADV_HUGEPAGE` (guest memory does) get huge pages; nothing else on the host changes.
/// Guest memory is shared between a blade and its VM processes, and on 4 KiB pages a 4 GiB
/// move takes about 1.5 s longer (measured with `lparmover bench live`). Without permission
/// (not root, read-only sysfs) guests run on small pages, and a warning says how to fix it.
pub fn allow_shared_huge_pages() {
    let Ok(mode) = std::fs::read_to_string(SHMEM_THP) else {
        return;
    };
    // The file lists every mode with the current one in brackets.
    let current = mode
        .split_whitespace()
        .find(|m| m.starts_with('['))
        .map(|m| m.trim_matches(['[', ']']).to_owned());
    if current.as_deref() != Some("never") {
        return;
    }
    match std::fs::write(SHMEM_THP, "advise") {
        Ok(()) => tracing::info!(
            "set {SHMEM_THP} to \"advise\" (was \"never\"): guest memory shared with VM processes may use huge pages"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "guest memory runs on 4 KiB pages ({SHMEM_THP} is \"never\"); moves are slower. \
             As root: echo advise > {SHMEM_THP}"
        ),
    }
}

/// A mapping holding the guest image.
pub struct GuestMemory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value until drop; all access goes through
// raw-pointer copies and atomics (see the module docs), never through `&`/`&mut` references
// that could alias.
unsafe impl Send for GuestMemory {}
// SAFETY: as above; shared access never creates Rust references into the mapping.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Maps `len` bytes of zeroed, lazily allocated memory private to this process.
    pub fn new(len: u64) -> Result<Self, PartitionError> {
        Self::map(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
    }

    /// Creates `len` bytes of zeroed memory in a memfd that another process can map too (a
    /// guest's VM process and its blade both map it): returns the mapping and the fd.
    ///
    /// The memory comes from the host's pool of 2 MiB huge pages (`vm.nr_hugepages`) when the
    /// pool has room for all of it, as KVM hosts back guests: pool pages stay allocated and
    /// backed when a guest frees them, so a destination's memory costs a zeroing at memory speed
    /// instead of the host's first touch (on a virtual blade whose hypervisor takes freed memory
    /// back, that first touch runs at about 0.3 GB/s: 3 s of a 1 GiB move). Without a pool, or
    /// too small a one, it is an ordinary memfd on (transparent) huge pages where the host allows.
    pub fn shared(len: u64, name: &str) -> Result<(Self, OwnedFd), PartitionError> {
        if len.is_multiple_of(HUGE_PAGE) {
            match Self::create_file(len, name, libc::MFD_HUGETLB | libc::MFD_HUGE_2MB) {
                Ok(pair) => {
                    tracing::debug!(name, len, "guest memory on huge pages from the host's pool");
                    return Ok(pair);
                }
                // ENOMEM: the pool has fewer free pages than the guest needs (or none).
                Err(e) => {
                    tracing::debug!(error = %e, "guest memory not on the host's huge page pool")
                }
            }
        }
        Self::create_file(len, name, 0)
    }

    fn create_file(
        len: u64,
        name: &str,
        flags: libc::c_uint,
    ) -> Result<(Self, OwnedFd), PartitionError> {
        let err = |what| move |source| PartitionError::Backend { what, source };
        let name = std::ffi::CString::new(name)
            .map_err(|_| err("naming guest memory")(std::io::Error::other("name has a NUL")))?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call; the returned
        // fd is checked and then owned by the `OwnedFd`.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | flags) };
        if raw < 0 {
            return Err(err("memfd_create for guest memory")(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| err("sizing guest memory")(std::io::Error::other("too large")))?;
        // SAFETY: plain syscall on the fd owned above.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(err("sizing the guest memory file")(
                std::io::Error::last_os_error(),
            ));
        }
        let memory = Self::attach(&fd, len)?;
        Ok((memory, fd))
    }

    /// Maps the memory file `fd` of `len` bytes (see [`Self::shared`]).
    pub fn attach(fd: &impl AsRawFd, len: u64) -> Result<Self, PartitionError> {
        // Pool pages are reserved when mapped (the mmap fails if the pool is short), never
        // promised: with MAP_NORESERVE a fault beyond the pool would be a SIGBUS in a vCPU.
        let flags = if is_hugetlb(fd.as_raw_fd()) {
            libc::MAP_SHARED
        } else {
            libc::MAP_SHARED | libc::MAP_NORESERVE
        };
        Self::map(len, flags, fd.as_raw_fd())
    }

    fn map(len: u64, flags: libc::c_int, fd: libc::c_int) -> Result<Self, PartitionError> {
        let len = usize::try_from(len).map_err(|_| PartitionError::Backend {
            what: "sizing guest memory",
            source: std::io::Error::other("guest memory does not fit the address space"),
        })?;
        // SAFETY: a new mapping with no address hint touches no existing memory; `fd` is -1
        // (anonymous) or a memory file the caller keeps open for the call; the result is checked
        // against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PartitionError::Backend {
                what: "mmap of guest memory",
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| PartitionError::Backend {
            what: "mmap of guest memory",
            source: std::io::Error::other("mmap returned a null mapping"),
        })?;
        // Transparent huge pages (hosts default to "madvise" for private memory; memory files
        // follow /sys/kernel/mm/transparent_hugepage/shmem_enabled, which must say "advise"):
        // one fault and one memcg charge per 2 MiB instead of per 4 KiB. Pre-faulting a 4 GiB
        // destination took about a core for a second with small pages, competing with the
        // copy. KVM still logs dirty pages per 4 KiB (it splits its mappings while logging).
        // Best effort: without THP the guest runs on small pages.
        // SAFETY: advice on the mapping created above, which this function owns; MADV_HUGEPAGE
        // changes no contents.
        if unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "transparent huge pages unavailable for guest memory"
            );
        }
        Ok(Self { base, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the mapping is empty (never: guests have at least 4 MiB).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of the first byte (for KVM memory slots).
    pub fn host_addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.len() / PAGE
    }

    fn check(&self, first_page: u64, bytes: usize) -> Result<usize, PartitionError> {
        if !bytes.is_multiple_of(PAGE_SIZE) {
            return Err(PartitionError::NotPageAligned { len: bytes });
        }
        let count = (bytes / PAGE_SIZE) as u64;
        let end = first_page.saturating_add(count);
        if end > self.pages() {
            return Err(PartitionError::OutOfRange {
                first: first_page,
                end,
                pages: self.pages(),
            });
        }
        // Fits in usize: it is below `self.len`.
        Ok((first_page * PAGE) as usize)
    }

    /// Copies whole pages out.
    pub fn read(&self, first_page: u64, out: &mut [u8]) -> Result<(), PartitionError> {
        let offset = self.check(first_page, out.len())?;
        // SAFETY: `check` proved `offset + out.len() <= self.len`, so the source lies inside the
        // live mapping; `out` is a distinct Rust buffer, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        Ok(())
    }

    /// Copies whole pages in.
    pub fn write(&self, first_page: u64, data: &[u8]) -> Result<(), PartitionError> {
        let offset = self.check(first_page, data.len())?;
        // SAFETY: `check` proved the destination lies inside the live mapping; `data` is a
        // distinct Rust buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.as_ptr().add(offset),
                data.len(),
            );
        }
        Ok(())
    }

    /// Zeroes one page unless it already is zero (reading an untouched page does not allocate
    /// it). Returns whether the page was written.
    pub fn zero_page(&self, page: u64) -> Result<bool, PartitionError> {
        let offset = self.check(page, PAGE_SIZE)?;
        if self.page_is_zero(offset) {
            return Ok(false);
        }
        // SAFETY: `check` proved the page lies inside the live mapping.
        unsafe { std::ptr::write_bytes(self.base.as_ptr().add(offset), 0, PAGE_SIZE) };
        Ok(true)
    }

    /// Whether the page at byte `offset` (checked by the caller) is all zero, read in place:
    /// 256-byte pieces are copied to the stack, so a non-zero page is usually settled by its
    /// first piece and a zero page costs one pass over L1 — never a copy into a buffer.
    fn page_is_zero(&self, offset: usize) -> bool {
        const PIECE: usize = 256;
        let mut piece = [0u64; PIECE / 8];
        (0..PAGE_SIZE / PIECE).all(|i| {
            // SAFETY: the caller proved `offset..offset + PAGE_SIZE` lies inside the live
            // mapping; `piece` is a distinct stack buffer of exactly PIECE bytes. A raw copy, as
            // in `read`: a racing writer can only tear the snapshot, which the dirty log covers.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.as_ptr().add(offset + i * PIECE),
                    piece.as_mut_ptr().cast::<u8>(),
                    PIECE,
                );
            }
            piece.iter().fold(0, |acc, w| acc | w) == 0
        })
    }

    /// Appends the non-zero pages of `first_page..first_page + count` to `out` and returns the
    /// mask of zero ones (bit `i` = page `first_page + i`; `count` ≤ 64). Each page is checked
    /// in place and only non-zero pages are copied, once, straight into `out`.
    pub fn append_nonzero(
        &self,
        first_page: u64,
        count: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<u64, PartitionError> {
        debug_assert!(count <= 64, "a page mask holds 64 pages");
        let offset = self.check(first_page, count * PAGE_SIZE)?;
        let mut zero_mask = 0u64;
        for i in 0..count.min(64) {
            let at = offset + i * PAGE_SIZE;
            if self.page_is_zero(at) {
                zero_mask |= 1 << i;
                continue;
            }
            out.reserve(PAGE_SIZE);
            let spare = out.spare_capacity_mut();
            // SAFETY: `check` proved the page lies inside the live mapping; `spare` holds at
            // least PAGE_SIZE bytes (reserved above) of `out`'s own allocation, distinct from
            // guest memory. After the copy those bytes are initialised, so `set_len` exposes
            // only written bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.as_ptr().add(at),
                    spare.as_mut_ptr().cast::<u8>(),
                    PAGE_SIZE,
                );
                out.set_len(out.len() + PAGE_SIZE);
            }
        }
        Ok(zero_mask)
    }

    /// Reads a little-endian `u64` at byte `offset` (8-byte aligned).
    pub fn read_u64(&self, offset: u64) -> u64 {
        self.atomic_u64(offset)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// The `u64` at byte `offset` as an atomic, if it is aligned and inside memory.
    pub fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8)? > self.len() {
            return None;
        }
        // SAFETY: the offset is 8-byte aligned (and the mapping page-aligned) and inside the live
        // mapping, which outlives the returned reference (it borrows `self`). Every Rust access to
        // guest words uses atomics, so no non-atomic Rust reference aliases it.
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset as usize).cast::<u64>()) })
    }

    /// Writes a little-endian `u64` at byte `offset` (8-byte aligned).
    pub fn write_u64(&self, offset: u64, value: u64) {
        if let Some(a) = self.atomic_u64(offset) {
            a.store(value, Ordering::Release);
        }
    }

    /// Runs `f` on each page of `first..end` as a mutable byte slice, splitting the range over
    /// `threads` scoped threads. Only for setup, before any vCPU or worker runs.
    pub fn fill_pages_parallel<F>(&self, first: u64, end: u64, threads: usize, f: F)
    where
        F: Fn(u64, &mut [u8]) + Sync,
    {
        let end = end.min(self.pages());
        if first >= end {
            return;
        }
        let threads = threads.max(1) as u64;
        let per = (end - first).div_ceil(threads);
        let base = self.base.as_ptr() as usize;
        std::thread::scope(|s| {
            for t in 0..threads {
                let lo = first + t * per;
                let hi = (lo + per).min(end);
                if lo >= hi {
                    continue;
                }
                let f = &f;
                s.spawn(move || {
                    for page in lo..hi {
                        // SAFETY: each thread owns the disjoint page range `lo..hi`, inside the
                        // mapping (`end <= pages`); no vCPU or worker runs during setup, so this
                        // is the only reference to these bytes while it lives.
                        let bytes = unsafe {
                            std::slice::from_raw_parts_mut(
                                (base + (page * PAGE) as usize) as *mut u8,
                                PAGE_SIZE,
                            )
                        };
                        f(page, bytes);
                    }
                });
            }
        });
    }

    /// Faults every page in (destination guests: so the copy does not pay for page faults).
    pub fn prefault(&self) -> Result<(), PartitionError> {
        self.prefault_range(0, self.len())
    }

    /// Faults the bytes `offset..offset + len` in (page-aligned `offset`; clipped to the
    /// mapping). Present pages are left as they are, so it may race writers.
    pub fn prefault_range(&self, offset: u64, len: u64) -> Result<(), PartitionError> {
        let end = offset.saturating_add(len).min(self.len());
        if offset >= end {
            return Ok(());
        }
        if !offset.is_multiple_of(PAGE) {
            return Err(PartitionError::Backend {
                what: "prefaulting guest memory",
                source: std::io::Error::other("offset is not page-aligned"),
            });
        }
        // SAFETY: `offset..end` lies inside the live mapping (clipped above) and starts on a
        // page boundary; MADV_POPULATE_WRITE only allocates missing pages, it never changes
        // the contents of present ones.
        let rc = unsafe {
            libc::madvise(
                self.base.as_ptr().add(offset as usize).cast(),
                (end - offset) as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            return Err(PartitionError::Backend {
                what: "madvise(MADV_POPULATE_WRITE) of guest memory",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// BLAKE3 of the whole image.
    pub fn digest(&self) -> lparmover::partition::MemoryDigest {
        let mut hasher = blake3::Hasher::new();
        self.hash_pages(0..self.pages(), &mut hasher);
        lparmover::partition::MemoryDigest(*hasher.finalize().as_bytes())
    }

    /// BLAKE3 of the pages `ranges` name, in order (each clipped to the image).
    pub fn digest_of(&self, ranges: &[std::ops::Range<u64>]) -> lparmover::partition::MemoryDigest {
        let mut hasher = blake3::Hasher::new();
        for range in ranges {
            self.hash_pages(
                range.start.min(self.pages())..range.end.min(self.pages()),
                &mut hasher,
            );
        }
        lparmover::partition::MemoryDigest(*hasher.finalize().as_bytes())
    }

    fn hash_pages(&self, pages: std::ops::Range<u64>, hasher: &mut blake3::Hasher) {
        let mut buf = vec![0u8; 1 << 20];
        let mut page = pages.start;
        while page < pages.end {
            let n = ((pages.end - page) as usize).min(buf.len() / PAGE_SIZE);
            let chunk = &mut buf[..n * PAGE_SIZE];
            if self.read(page, chunk).is_err() {
                break;
            }
            hasher.update(chunk);
            page += n as u64;
        }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping created in `new`, unmapped once here; every
        // user (vCPU threads, KVM slots) is gone before the owning guest drops its memory.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One bit per page, set and taken atomically by any thread.
pub struct AtomicBitmap {
    pages: u64,
    words: Vec<AtomicU64>,
}

impl AtomicBitmap {
    /// An empty bitmap of `pages` pages.
    pub fn new(pages: u64) -> Self {
        Self {
            pages,
            words: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Marks `page`.
    pub fn set(&self, page: u64) {
        if let Some(w) = self.words.get((page / 64) as usize) {
            w.fetch_or(1 << (page % 64), Ordering::Relaxed);
        }
    }

    /// Marks `count` pages from `first`.
    pub fn set_range(&self, first: u64, count: u64) {
        for page in first..first.saturating_add(count).min(self.pages) {
            self.set(page);
        }
    }

    /// Marks every page of `bitmap`.
    pub fn merge(&self, bitmap: &DirtyBitmap) {
        for (mine, theirs) in self.words.iter().zip(bitmap.words()) {
            if *theirs != 0 {
                mine.fetch_or(*theirs, Ordering::Relaxed);
            }
        }
    }

    /// Takes (and clears) every mark.
    pub fn take(&self) -> DirtyBitmap {
        let words = self
            .words
            .iter()
            .map(|w| w.swap(0, Ordering::AcqRel))
            .collect();
        DirtyBitmap::from_words(self.pages, words)
    }

    /// Clears every mark.
    pub fn clear(&self) {
        self.words
            .iter()
            .for_each(|w| w.store(0, Ordering::Relaxed));
    }
}
