//! The workload both backends run, as a Rust model.
//!
//! Each vCPU keeps a xorshift64 state `x` (13/7/17). One *write* advances `x`, then stores `x` as a
//! little-endian `u64` in working-set page `(x * ws_pages) >> 64` at byte offset `x & 0xff8`.
//! After each batch of writes the vCPU adds the batch size to its `WRITES` word, stores its TSC
//! and increments its heartbeat counter (see [`layout`](super::layout)). The KVM program
//! ([`kvm::program`](super::kvm::program)) is the same loop in machine code; the software guest
//! calls [`Sequence::next_write`].

use super::content::splitmix64;
use super::layout::{HEARTBEAT_GPA, HEARTBEAT_SLOT, PAGE, WorkingSet, slot};

/// Initial xorshift state of vCPU `vcpu` for `seed` (never zero).
pub fn initial_state(seed: u64, vcpu: u32) -> u64 {
    let x = splitmix64(seed ^ splitmix64(0xC0DE_0000 + u64::from(vcpu)));
    if x == 0 { 1 } else { x }
}

/// One write of the workload: which page, at which offset, which value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// Absolute guest page.
    pub page: u64,
    /// Byte offset in the page (8-byte aligned).
    pub offset: u64,
    /// Value stored.
    pub value: u64,
}

/// The write sequence of one vCPU.
#[derive(Clone, Copy, Debug)]
pub struct Sequence {
    /// xorshift64 state (register r10 of the KVM program).
    pub state: u64,
    /// Where the writes go.
    pub working_set: WorkingSet,
}

impl Sequence {
    /// Advances the state and returns the write it makes.
    pub fn next_write(&mut self) -> Write {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let index = ((u128::from(x) * u128::from(self.working_set.pages)) >> 64) as u64;
        Write {
            page: self.working_set.first_page + index,
            offset: x & 0xFF8,
            value: x,
        }
    }
}

/// Byte offset (in the image) of word `field` of vCPU `vcpu`'s heartbeat slot.
pub fn heartbeat_offset(vcpu: u32, field: u64) -> u64 {
    HEARTBEAT_GPA + u64::from(vcpu) * HEARTBEAT_SLOT + field
}

/// Fields of a heartbeat slot.
pub const FIELDS: [u64; 3] = [slot::COUNTER, slot::TSC, slot::WRITES];

/// Bytes one write dirties (one page).
pub const BYTES_PER_WRITE: u64 = PAGE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_the_working_set() {
        let ws = WorkingSet {
            first_page: 256,
            pages: 300,
        };
        let mut seq = Sequence {
            state: initial_state(5, 0),
            working_set: ws,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let w = seq.next_write();
            assert!((256..556).contains(&w.page));
            assert_eq!(w.offset % 8, 0);
            assert!(w.offset < PAGE);
            seen.insert(w.page);
        }
        assert_eq!(seen.len(), 300, "the sequence covers the working set");
    }

    #[test]
    fn vcpus_have_distinct_streams() {
        assert_ne!(initial_state(1, 0), initial_state(1, 1));
        assert_ne!(initial_state(1, 0), initial_state(2, 0));
    }
}
