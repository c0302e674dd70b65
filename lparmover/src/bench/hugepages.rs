//! A pool of 2 MiB huge pages reserved and touched for the length of a benchmark, so neither
//! side of a move pays the host's first touch of its memory.
//!
//! This machine class is itself a virtual machine whose hypervisor backs memory on first touch
//! and takes freed memory back (free page reporting): a page touched for the first time costs
//! about 0.3 GB/s, 3 s for a 1 GiB destination, and memory freed by one move is returned before
//! the next. Pages of the kernel's huge page pool stay allocated (and backed) while no one uses
//! them, and hvmsim places guest memory in the pool when it has room
//! (`hvmsim::guest::memory::GuestMemory::shared`), so a pool touched once serves every move of
//! the run at memory speed, the way QEMU's RAM files in the benchmark's tmpfs are written once.
//! Dropping the pool gives the pages back.

use std::time::{Duration, Instant};

/// The kernel's count of persistent 2 MiB huge pages.
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
/// Huge page size of that pool.
const HUGE_PAGE: u64 = 2 << 20;

/// Huge pages added to the host's pool, touched once; the pool's old size comes back on drop.
#[derive(Debug)]
pub struct HugePagePool {
    previous: u64,
    pages: u64,
    /// How long touching the pages took.
    pub warmed_in: Duration,
}

/// Why a pool could not be set up (the benchmark then runs without one and says so).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The pool's size could not be read or changed.
    #[error("{NR_HUGEPAGES}: {0} (reserving huge pages needs root)")]
    Sysctl(std::io::Error),
    /// The kernel found fewer free 2 MiB blocks than asked.
    #[error(
        "the kernel gave {got} of {wanted} huge pages (memory is short or fragmented); free memory or run with a smaller size"
    )]
    Short {
        /// Pages added.
        got: u64,
        /// Pages asked for.
        wanted: u64,
    },
    /// Touching the new pages failed.
    #[error("touching the huge page pool: {0}")]
    Touch(std::io::Error),
}

impl HugePagePool {
    /// Adds enough pages for `bytes` to the pool and touches every one of them.
    pub fn reserve(bytes: u64) -> Result<Self, PoolError> {
        let pages = bytes.div_ceil(HUGE_PAGE);
        let previous = read_pool()?;
        write_pool(previous + pages)?;
        // From here on, dropping `pool` gives the pages back, whatever fails next.
        let mut pool = Self {
            previous,
            pages,
            warmed_in: Duration::ZERO,
        };
        let got = read_pool()?.saturating_sub(previous);
        if got < pages {
            return Err(PoolError::Short { got, wanted: pages });
        }
        let started = Instant::now();
        touch(pages * HUGE_PAGE).map_err(PoolError::Touch)?;
        pool.warmed_in = started.elapsed();
        Ok(pool)
    }

    /// Bytes the pool was grown by.
    pub fn bytes(&self) -> u64 {
        self.pages * HUGE_PAGE
    }
}

impl Drop for HugePagePool {
    fn drop(&mut self) {
        if let Err(e) = write_pool(self.previous) {
            tracing::warn!(
                error = %e,
                "could not give the benchmark's huge pages back: echo {} > {NR_HUGEPAGES}",
                self.previous
            );
        }
    }
}

fn read_pool() -> Result<u64, PoolError> {
    let text = std::fs::read_to_string(NR_HUGEPAGES).map_err(PoolError::Sysctl)?;
    text.trim()
        .parse()
        .map_err(|e| PoolError::Sysctl(std::io::Error::other(format!("reads {text:?}: {e}"))))
}

fn write_pool(pages: u64) -> Result<(), PoolError> {
    std::fs::write(NR_HUGEPAGES, pages.to_string()).map_err(PoolError::Sysctl)
}

/// Faults `len` bytes of pool pages in through a huge page memfd and frees them again: they go
/// back to the pool, not to the host.
fn touch(len: u64) -> std::io::Result<()> {
    let size = usize::try_from(len).map_err(std::io::Error::other)?;
    let offset = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: the name is a NUL-terminated literal; the fd is checked, then owned.
    let raw = unsafe {
        libc::memfd_create(
            c"lparmover-bench-pool".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let fd_raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: plain syscall on the fd owned above.
    if unsafe { libc::ftruncate(fd_raw, offset) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new shared mapping of the file above with no address hint; checked against
    // MAP_FAILED, populated, and unmapped before returning; no Rust reference into it exists.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd_raw,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::madvise(p, size, libc::MADV_POPULATE_WRITE);
        let err = std::io::Error::last_os_error();
        libc::munmap(p, size);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}
