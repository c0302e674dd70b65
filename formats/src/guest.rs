//! The guest values the wire format carries: the page size, a partition's opaque vCPU state and
//! its memory digest. The `Partition` trait that produces them is `lparmover::partition`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The page size every partition uses (x86 small pages).
pub const PAGE_SIZE: usize = 4096;

/// Opaque, versioned vCPU state of all vCPUs, produced by one backend and consumed by the same
/// backend on another blade. The mover ships it as bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuState {
    /// Which backend wrote it (`"kvm"`, `"soft"`); importing into another backend is refused.
    pub backend: String,
    /// Backend-defined encoding.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VcpuState({}, {} bytes)", self.backend, self.bytes.len())
    }
}

/// A digest of all guest memory (BLAKE3), for verifying a move byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoryDigest(pub [u8; 32]);

impl MemoryDigest {
    /// Digest of a memory image.
    pub fn of(memory: &[u8]) -> Self {
        Self(*blake3::hash(memory).as_bytes())
    }
}

impl fmt::Debug for MemoryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryDigest({})", self)
    }
}

impl fmt::Display for MemoryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
