//! Boot structures for 64-bit long mode: GDT, identity-mapped page tables, segment and control
//! registers. Addresses are in [`guest::layout`](crate::guest::layout).
//!
//! The program runs in 64-bit **user mode** (CPL 3, code selector 0x1b, data 0x23) with IOPL 3
//! so its port I/O is allowed. On VMX/SVM that costs nothing; on hosts whose KVM is `kvm_pvm`
//! (software "pagetable-based" KVM on nested cloud machines, as on our build hosts) supervisor
//! code outside PVM's kernel range is emulated instruction by instruction (measured: ~55 µs per
//! write, 75 MB/s at most), while user-mode code runs natively (5 GB/s).
//!
//! Page tables map all guest-physical space up to the end of guest memory (rounded up to 1 GiB)
//! with 2 MiB user pages. Accessed and dirty bits are preset in every entry, and the accessed bit in
//! every GDT descriptor, so the CPU never writes the layout pages: the dirty log then holds only
//! the workload's writes.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

use crate::guest::layout::{
    CODE_GPA, GDT_GPA, HEARTBEAT_GPA, HEARTBEAT_SLOT, PAGE, PD_GPA, PDPT_GPA, PML4_GPA, SlotLayout,
    WorkingSet,
};
use crate::guest::memory::GuestMemory;

use super::program::PROGRAM;

/// Present, writable, user, accessed.
const TABLE: u64 = 0x1 | 0x2 | 0x4 | 0x20;
/// Present, writable, accessed, dirty, 2 MiB page.
const LARGE_PAGE: u64 = TABLE | 0x40 | 0x80;

/// GDT: null, ring-0 code and data (unused), ring-3 64-bit code (selector 0x1b) and data (0x23);
/// accessed bits set.
const GDT: [u64; 5] = [
    0,
    0x00AF_9B00_0000_FFFF,
    0x00CF_9300_0000_FFFF,
    0x00AF_FB00_0000_FFFF,
    0x00CF_F300_0000_FFFF,
];
const CODE_SELECTOR: u16 = 0x18 | 3;
const DATA_SELECTOR: u16 = 0x20 | 3;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Writes the GDT, the page tables and the program into a fresh image.
pub fn write_boot_image(memory: &GuestMemory, slots: SlotLayout) {
    for (i, entry) in GDT.iter().enumerate() {
        memory.write_u64(GDT_GPA + 8 * i as u64, *entry);
    }
    memory.write_u64(PML4_GPA, PDPT_GPA | TABLE);
    let gib = slots.gpa_end().div_ceil(1 << 30);
    for g in 0..gib {
        let pd = PD_GPA + g * PAGE;
        memory.write_u64(PDPT_GPA + 8 * g, pd | TABLE);
        for e in 0..512u64 {
            memory.write_u64(pd + 8 * e, (g << 30) | (e << 21) | LARGE_PAGE);
        }
    }
    let mut code = vec![0u8; PAGE as usize];
    code[..PROGRAM.len()].copy_from_slice(PROGRAM);
    // The code page lies in the reserved low pages, inside any valid guest.
    if let Err(e) = memory.write(CODE_GPA / PAGE, &code) {
        tracing::error!("writing the workload program failed: {e}");
    }
}

/// Special registers for 64-bit mode on these tables.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector: CODE_SELECTOR,
        type_: 0xB,
        present: 1,
        dpl: 3,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: DATA_SELECTOR,
        type_: 0x3,
        db: 1,
        l: 0,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// General registers at the program's entry for vCPU `vcpu`.
pub fn entry_regs(vcpu: u32, working_set: WorkingSet, rng_state: u64) -> kvm_regs {
    kvm_regs {
        rip: CODE_GPA,
        rflags: 0x3002,
        r8: working_set.base_gpa(),
        r9: working_set.pages,
        r10: rng_state,
        r11: HEARTBEAT_GPA + u64::from(vcpu) * HEARTBEAT_SLOT,
        ..Default::default()
    }
}

/// FPU at reset as Linux expects it (x87 control word, MXCSR).
pub fn reset_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37F,
        mxcsr: 0x1F80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_identity_map_with_large_pages() {
        let memory = GuestMemory::new(64 << 20).expect("mmap");
        write_boot_image(&memory, SlotLayout::new(64 << 20));
        assert_eq!(memory.read_u64(PML4_GPA), PDPT_GPA | TABLE);
        assert_eq!(memory.read_u64(PDPT_GPA), PD_GPA | TABLE);
        assert_eq!(memory.read_u64(PD_GPA + 8 * 3), (3 << 21) | LARGE_PAGE);
        assert_eq!(memory.read_u64(CODE_GPA) & 0xFF, 0x66);
    }
}
