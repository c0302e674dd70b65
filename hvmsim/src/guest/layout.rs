//! Guest memory layout shared by both backends.
//!
//! Guest pages are numbered `0..page_count` the way the migration engine sees them (one linear
//! image). The KVM guest places that image in guest-physical memory with a hole below 4 GiB
//! (see [`SlotLayout`]); the software guest uses the page index directly.
//!
//! ```text
//!  page      guest-physical   what
//!  0x000     0x0000_0000      unused, always zero
//!  0x001     0x0000_1000      GDT (null, 64-bit code 0x08, data 0x10)
//!  0x002     0x0000_2000      PML4
//!  0x003     0x0000_3000      PDPT
//!  0x004..   0x0000_4000      page directories, one per GiB of guest-physical space (≤ 64)
//!  0x080     0x0008_0000      workload program (KVM)
//!  0x090     0x0009_0000      heartbeat page: one 64-byte slot per vCPU (see below)
//!  0x100..   0x0010_0000      content and the working set (the working set starts here)
//! ```
//!
//! Heartbeat slot of vCPU `i`, at `HEARTBEAT_GPA + i * 64`, three little-endian `u64`:
//! `+0` heartbeat counter (incremented after every batch of writes), `+8` the guest's TSC at that
//! heartbeat, `+16` total pages written by this vCPU since it first started.

use crate::guest::GuestError;
use lparmover::partition::PAGE_SIZE;

/// Page size as a `u64`.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Guest-physical address of the GDT.
pub const GDT_GPA: u64 = 0x1000;
/// Guest-physical address of the PML4.
pub const PML4_GPA: u64 = 0x2000;
/// Guest-physical address of the PDPT.
pub const PDPT_GPA: u64 = 0x3000;
/// Guest-physical address of the first page directory.
pub const PD_GPA: u64 = 0x4000;
/// Page directories available (each maps 1 GiB with 2 MiB pages).
pub const MAX_PDS: u64 = 64;
/// Guest-physical address of the workload program.
pub const CODE_GPA: u64 = 0x8_0000;
/// Guest-physical address of the heartbeat page.
pub const HEARTBEAT_GPA: u64 = 0x9_0000;
/// Page index of the heartbeat page.
pub const HEARTBEAT_PAGE: u64 = HEARTBEAT_GPA / PAGE;
/// Bytes per vCPU heartbeat slot.
pub const HEARTBEAT_SLOT: u64 = 64;
/// Most vCPUs a guest can have (one heartbeat slot each in one page).
pub const MAX_VCPUS: u32 = (PAGE / HEARTBEAT_SLOT) as u32;
/// Pages reserved for the layout; content and the working set start here.
pub const RESERVED_PAGES: u64 = 0x100;
/// Start of the guest-physical hole below 4 GiB (LAPIC, IOAPIC, TSS live there).
pub const HOLE_START: u64 = 3 << 30;
/// End of the hole: memory above `HOLE_START` continues here.
pub const HOLE_END: u64 = 4 << 30;
/// Guest memory must be a multiple of this.
pub const MEMORY_ALIGN: u64 = 2 << 20;

/// Offsets inside a heartbeat slot.
pub mod slot {
    /// Heartbeat counter.
    pub const COUNTER: u64 = 0;
    /// TSC at the last heartbeat.
    pub const TSC: u64 = 8;
    /// Pages written so far.
    pub const WRITES: u64 = 16;
}

/// Where the working set lies, in guest pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkingSet {
    /// First page of the working set.
    pub first_page: u64,
    /// Number of pages.
    pub pages: u64,
}

impl WorkingSet {
    /// The working set for `working_set_mib` in a guest of `memory_bytes`: starts at
    /// [`RESERVED_PAGES`], clamped to guest memory and to the memory below the hole (so the
    /// workload addresses it linearly).
    pub fn new(memory_bytes: u64, working_set_mib: u64) -> Self {
        let usable_end = memory_bytes.min(HOLE_START) / PAGE;
        let available = usable_end.saturating_sub(RESERVED_PAGES).max(1);
        let wanted = working_set_mib.saturating_mul(1 << 20) / PAGE;
        Self {
            first_page: RESERVED_PAGES,
            pages: wanted.clamp(1, available),
        }
    }

    /// Guest-physical (and, below the hole, linear) address of the first working-set page.
    pub fn base_gpa(&self) -> u64 {
        self.first_page * PAGE
    }
}

/// Checks a guest size and vCPU count are usable by both backends.
pub fn validate(memory_bytes: u64, vcpus: u32) -> Result<(), GuestError> {
    if memory_bytes < 2 * MEMORY_ALIGN || !memory_bytes.is_multiple_of(MEMORY_ALIGN) {
        return Err(GuestError::InvalidSpec(format!(
            "guest memory of {memory_bytes} bytes must be a multiple of 2 MiB and at least 4 MiB"
        )));
    }
    if SlotLayout::new(memory_bytes).gpa_end() > MAX_PDS << 30 {
        return Err(GuestError::InvalidSpec(format!(
            "guest memory of {} MiB is above the {} GiB this layout maps; use a smaller guest",
            memory_bytes >> 20,
            MAX_PDS - 1
        )));
    }
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(GuestError::InvalidSpec(format!(
            "{vcpus} vCPUs asked for; a guest has 1 to {MAX_VCPUS}"
        )));
    }
    Ok(())
}

/// How the linear guest image maps to guest-physical memory slots (KVM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Bytes of the image below the hole (slot 0, at guest-physical 0).
    pub low_bytes: u64,
    /// Bytes of the image above the hole (slot 1, at [`HOLE_END`]); 0 when the guest is small.
    pub high_bytes: u64,
}

impl SlotLayout {
    /// The slots of a guest of `memory_bytes`.
    pub fn new(memory_bytes: u64) -> Self {
        let low_bytes = memory_bytes.min(HOLE_START);
        Self {
            low_bytes,
            high_bytes: memory_bytes - low_bytes,
        }
    }

    /// One past the highest guest-physical address.
    pub fn gpa_end(&self) -> u64 {
        if self.high_bytes == 0 {
            self.low_bytes
        } else {
            HOLE_END + self.high_bytes
        }
    }

    /// `(slot, guest_phys_addr, image_offset, bytes)` of every non-empty slot.
    pub fn slots(&self) -> Vec<(u32, u64, u64, u64)> {
        let mut out = vec![(0, 0, 0, self.low_bytes)];
        if self.high_bytes > 0 {
            out.push((1, HOLE_END, self.low_bytes, self.high_bytes));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_is_clamped_below_the_hole_and_memory() {
        let ws = WorkingSet::new(64 << 20, 256);
        assert_eq!(ws.first_page, RESERVED_PAGES);
        assert_eq!(ws.pages, (64 << 20) / PAGE - RESERVED_PAGES);
        let ws = WorkingSet::new(8 << 30, 8192);
        assert_eq!(ws.first_page + ws.pages, HOLE_START / PAGE);
    }

    #[test]
    fn slots_split_at_the_hole() {
        let s = SlotLayout::new(4 << 30);
        assert_eq!(
            s.slots(),
            vec![(0, 0, 0, 3 << 30), (1, 4 << 30, 3 << 30, 1 << 30)]
        );
        assert_eq!(SlotLayout::new(64 << 20).slots().len(), 1);
    }

    #[test]
    fn layout_regions_do_not_overlap() {
        const {
            assert!(PD_GPA + MAX_PDS * PAGE <= CODE_GPA);
            assert!(CODE_GPA < HEARTBEAT_GPA);
            assert!(HEARTBEAT_GPA < RESERVED_PAGES * PAGE);
        }
    }
}
