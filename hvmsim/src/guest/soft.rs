//! The software guest: one worker thread per vCPU makes the workload's writes (see
//! [`workload`](super::workload)) into the mapping through atomics, paced and parked by the same
//! [`Control`] as the KVM guest, and marks a software dirty bitmap after every write (after, so a
//! bitmap taken between a write and its mark loses nothing: the mark lands in the next one).
//!
//! Its "TSC" is host `CLOCK_MONOTONIC` nanoseconds plus an offset that a restore adjusts, so the
//! heartbeat's TSC keeps increasing across a migration.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lparmover::model::workload::GuestSpec;
use lparmover::partition::{DirtyBitmap, PartitionError, VcpuState};
use serde::{Deserialize, Serialize};

use super::control::{Control, Next, Pacer, StopReason};
use super::layout::{HEARTBEAT_PAGE, PAGE, WorkingSet, slot};
use super::memory::{AtomicBitmap, GuestMemory};
use super::stats::monotonic_ns;
use super::workload::{Sequence, heartbeat_offset, initial_state};
use super::{BackendKind, Engine, GuestError, decode_state, encode_state};

const STATE_VERSION: u32 = 1;

struct Shared {
    memory: Arc<GuestMemory>,
    control: Arc<Control>,
    working_set: WorkingSet,
    dirty: AtomicBitmap,
    tracking: AtomicBool,
    /// xorshift state per vCPU (the KVM program's r10).
    rng: Vec<AtomicU64>,
    /// Guest TSC = monotonic ns + offset.
    tsc_offset: AtomicI64,
}

impl Shared {
    fn tsc(&self) -> u64 {
        (monotonic_ns() as i64).wrapping_add(self.tsc_offset.load(Ordering::Relaxed)) as u64
    }

    fn batch(&self, vcpu: u32, writes: u32) {
        let index = vcpu as usize;
        let Some(rng) = self.rng.get(index) else {
            return;
        };
        let mut seq = Sequence {
            state: rng.load(Ordering::Relaxed),
            working_set: self.working_set,
        };
        for _ in 0..writes {
            let w = seq.next_write();
            self.memory.write_u64(w.page * PAGE + w.offset, w.value);
            if self.tracking.load(Ordering::Relaxed) {
                self.dirty.set(w.page);
            }
        }
        rng.store(seq.state, Ordering::Relaxed);
        let word = |field| self.memory.atomic_u64(heartbeat_offset(vcpu, field));
        if let Some(a) = word(slot::WRITES) {
            a.fetch_add(u64::from(writes), Ordering::Release);
        }
        if let Some(a) = word(slot::TSC) {
            a.store(self.tsc(), Ordering::Release);
        }
        if let Some(a) = word(slot::COUNTER) {
            a.fetch_add(1, Ordering::Release);
        }
        if self.tracking.load(Ordering::Relaxed) {
            self.dirty.set(HEARTBEAT_PAGE);
        }
    }

    fn run(&self, vcpu: u32) {
        let mut pacer = Pacer::new();
        loop {
            match self.control.next(&mut pacer) {
                Next::Batch(n) => self.batch(vcpu, n),
                Next::Park => {
                    if !self.control.park() {
                        break;
                    }
                    pacer.reset();
                }
                Next::PowerOff => {
                    tracing::info!(vcpu, "software guest powered off");
                    self.control.stop(StopReason::ShutDown);
                    break;
                }
                Next::Exit => break,
            }
        }
        self.control.exited();
    }
}

/// Software backend of a [`Guest`](super::Guest).
pub struct SoftGuest {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Serialize, Deserialize)]
struct SoftVcpu {
    rng: u64,
    tsc: u64,
}

impl SoftGuest {
    /// Starts the workers (parked when `incoming`).
    pub(crate) fn new(
        spec: &GuestSpec,
        memory: Arc<GuestMemory>,
        control: Arc<Control>,
        _incoming: bool,
    ) -> Result<Self, GuestError> {
        let pages = memory.pages();
        let shared = Arc::new(Shared {
            memory,
            control,
            working_set: WorkingSet::new(spec.memory_bytes, spec.workload.working_set_mib),
            dirty: AtomicBitmap::new(pages),
            tracking: AtomicBool::new(false),
            rng: (0..spec.vcpus)
                .map(|v| AtomicU64::new(initial_state(spec.workload.seed, v)))
                .collect(),
            tsc_offset: AtomicI64::new(0),
        });
        let guest = Self {
            shared,
            threads: Mutex::new(Vec::new()),
        };
        for vcpu in 0..spec.vcpus {
            let shared = Arc::clone(&guest.shared);
            let handle = std::thread::Builder::new()
                .name(format!("soft-vcpu{vcpu}"))
                .spawn(move || shared.run(vcpu));
            match handle {
                Ok(h) => guest
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(h),
                Err(e) => {
                    guest
                        .shared
                        .control
                        .stop(StopReason::Failed("thread spawn failed".into()));
                    guest.join();
                    return Err(GuestError::Thread(e));
                }
            }
        }
        Ok(guest)
    }
}

impl Engine for SoftGuest {
    fn kind(&self) -> BackendKind {
        BackendKind::Soft
    }

    fn start_dirty_log(&self) -> Result<(), PartitionError> {
        self.shared.dirty.clear();
        self.shared.tracking.store(true, Ordering::Release);
        Ok(())
    }

    fn stop_dirty_log(&self) -> Result<(), PartitionError> {
        self.shared.tracking.store(false, Ordering::Release);
        Ok(())
    }

    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError> {
        Ok(self.shared.dirty.take())
    }

    fn save_state(&self) -> Result<VcpuState, PartitionError> {
        let tsc = self.shared.tsc();
        let vcpus: Vec<SoftVcpu> = self
            .shared
            .rng
            .iter()
            .map(|r| SoftVcpu {
                rng: r.load(Ordering::Relaxed),
                tsc,
            })
            .collect();
        encode_state(BackendKind::Soft, STATE_VERSION, &vcpus)
    }

    fn restore_state(&self, state: &VcpuState) -> Result<(), PartitionError> {
        let vcpus: Vec<SoftVcpu> = decode_state(state, STATE_VERSION)?;
        if vcpus.len() != self.shared.rng.len() {
            return Err(PartitionError::IncompatibleState(format!(
                "state holds {} vCPUs, this guest has {}",
                vcpus.len(),
                self.shared.rng.len()
            )));
        }
        for (reg, saved) in self.shared.rng.iter().zip(&vcpus) {
            reg.store(saved.rng, Ordering::Relaxed);
        }
        if let Some(first) = vcpus.first() {
            let offset = (first.tsc as i64).wrapping_sub(monotonic_ns() as i64);
            self.shared.tsc_offset.store(offset, Ordering::Relaxed);
        }
        Ok(())
    }

    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a software vCPU thread panicked");
            }
        }
    }
}
