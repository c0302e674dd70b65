//! The KVM backend: a KVM VM whose vCPUs run the workload program in 64-bit long mode.
//!
//! Setup (modelled on the kvm-ioctls crate example and firecracker's vstate): open `/dev/kvm`,
//! create the VM, its TSS address and in-kernel irqchip (for a LAPIC to save and restore), one
//! memory slot below the 3 GiB hole and one above 4 GiB (see [`SlotLayout`]), the boot image
//! ([`layout`]), then vCPUs with the host's supported CPUID, long-mode registers and the
//! runnable MP state, each on its own thread ([`vcpu`]).
//!
//! Dirty logging is switched on by re-registering the slots with `KVM_MEM_LOG_DIRTY_PAGES`
//! (KVM starts from an empty log) and off by clearing the flag, so an idle guest pays nothing.

pub mod layout;
pub mod program;
pub mod state;
pub mod vcpu;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use lparmover::model::workload::GuestSpec;
use lparmover::partition::{DirtyBitmap, PartitionError, VcpuState};

use super::control::{Control, StopReason};
use super::layout::{PAGE, SlotLayout, WorkingSet};
use super::memory::GuestMemory;
use super::workload::initial_state;
use super::{BackendKind, Engine, GuestError};

/// Where the TSS of the VM sits (in the hole below 4 GiB; Intel needs it).
const TSS_ADDRESS: usize = 0xFFFB_D000;

/// Checks that `/dev/kvm` opens and speaks the stable API.
pub fn probe() -> Result<(), String> {
    let kvm = Kvm::new().map_err(|e| format!("opening /dev/kvm: {e}"))?;
    if kvm.get_api_version() != 12 {
        return Err(format!(
            "KVM API version {} is not 12",
            kvm.get_api_version()
        ));
    }
    Ok(())
}

fn kvm_err(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> GuestError {
    move |source| GuestError::Kvm { what, source }
}

fn backend_err(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> PartitionError {
    move |e| PartitionError::Backend {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// A vCPU shared between its thread (which holds the lock while in `KVM_RUN`) and the VMM
/// (which saves or restores state while the thread is parked).
pub(crate) type SharedVcpu = Arc<Mutex<VcpuFd>>;

/// KVM backend of a [`Guest`](super::Guest).
pub struct KvmGuest {
    threads: Mutex<Vec<JoinHandle<()>>>,
    vcpus: Vec<SharedVcpu>,
    vm: VmFd,
    kvm: Kvm,
    slots: SlotLayout,
    /// Bits read from KVM by a take that then failed on a later slot; merged into the next take.
    unreported: Mutex<Option<DirtyBitmap>>,
    control: Arc<Control>,
    /// Keeps the memory the slots point at alive as long as the VM.
    memory: Arc<GuestMemory>,
}

impl KvmGuest {
    /// Creates the VM and starts its vCPU threads (parked when `incoming`).
    pub(crate) fn new(
        spec: &GuestSpec,
        memory: Arc<GuestMemory>,
        control: Arc<Control>,
        incoming: bool,
    ) -> Result<Self, GuestError> {
        let kvm = Kvm::new().map_err(kvm_err("opening /dev/kvm"))?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let slots = SlotLayout::new(spec.memory_bytes);
        let mut guest = Self {
            threads: Mutex::new(Vec::new()),
            vcpus: Vec::new(),
            vm,
            kvm,
            slots,
            unreported: Mutex::new(None),
            control,
            memory,
        };
        guest.set_slots(0).map_err(GuestError::Partition)?;
        if !incoming {
            layout::write_boot_image(&guest.memory, slots);
        }
        let mut cpuid = guest
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let working_set = WorkingSet::new(spec.memory_bytes, spec.workload.working_set_mib);
        for id in 0..spec.vcpus {
            for entry in cpuid.as_mut_slice() {
                match entry.function {
                    // Initial APIC ID in CPUID.1:EBX[31:24], x2APIC ID in leaves 0xB/0x1F.
                    0x1 => entry.ebx = (entry.ebx & 0x00FF_FFFF) | (id << 24),
                    0xB | 0x1F => entry.edx = id,
                    _ => {}
                }
            }
            let fd = guest
                .vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
            let sregs = fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
            fd.set_sregs(&layout::long_mode_sregs(sregs))
                .map_err(kvm_err("KVM_SET_SREGS"))?;
            let regs = layout::entry_regs(id, working_set, initial_state(spec.workload.seed, id));
            fd.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
            fd.set_fpu(&layout::reset_fpu())
                .map_err(kvm_err("KVM_SET_FPU"))?;
            // Application processors start "uninitialized" (waiting for INIT/SIPI) with an
            // in-kernel irqchip; every vCPU here runs from the start.
            fd.set_mp_state(kvm_bindings::kvm_mp_state {
                mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
            })
            .map_err(kvm_err("KVM_SET_MP_STATE"))?;
            guest.vcpus.push(Arc::new(Mutex::new(fd)));
        }
        for (id, fd) in guest.vcpus.iter().enumerate() {
            let ctx = vcpu::VcpuThread {
                id: id as u32,
                fd: Arc::clone(fd),
                control: Arc::clone(&guest.control),
            };
            let handle = std::thread::Builder::new()
                .name(format!("kvm-vcpu{id}"))
                .spawn(move || ctx.run())
                .map_err(GuestError::Thread);
            match handle {
                Ok(h) => guest
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(h),
                Err(e) => {
                    guest
                        .control
                        .stop(StopReason::Failed("vCPU thread spawn failed".into()));
                    guest.join();
                    return Err(e);
                }
            }
        }
        Ok(guest)
    }

    fn set_slots(&self, flags: u32) -> Result<(), PartitionError> {
        for (slot, gpa, offset, bytes) in self.slots.slots() {
            let region = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: gpa,
                memory_size: bytes,
                userspace_addr: self.memory.host_addr() + offset,
            };
            // SAFETY: the region `offset..offset + bytes` lies inside the live guest mapping
            // (the slots partition `memory.len()`); `self` holds an `Arc` of that mapping, and
            // the VM fd is closed (field order) before that `Arc` is released.
            unsafe { self.vm.set_user_memory_region(region) }
                .map_err(backend_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }
}

impl Engine for KvmGuest {
    fn kind(&self) -> BackendKind {
        BackendKind::Kvm
    }

    fn start_dirty_log(&self) -> Result<(), PartitionError> {
        self.set_slots(KVM_MEM_LOG_DIRTY_PAGES)
    }

    fn stop_dirty_log(&self) -> Result<(), PartitionError> {
        self.set_slots(0)
    }

    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError> {
        let mut words = Vec::with_capacity(self.memory.pages().div_ceil(64) as usize);
        for (slot, _, _, bytes) in self.slots.slots() {
            // Slot sizes are multiples of 2 MiB, so each slot's bitmap is whole words and the
            // concatenation is the bitmap of the linear image.
            let size = usize::try_from(bytes).unwrap_or(usize::MAX);
            match self.vm.get_dirty_log(slot, size) {
                Ok(log) => {
                    debug_assert_eq!(log.len() as u64, bytes / PAGE / 64);
                    words.extend(log);
                }
                Err(e) => {
                    // KVM already cleared the slots read so far: keep their bits for next time.
                    let partial = DirtyBitmap::from_words(self.memory.pages(), words);
                    let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
                    match unreported.as_mut() {
                        Some(b) => b.merge(&partial),
                        None => *unreported = Some(partial),
                    }
                    return Err(backend_err("KVM_GET_DIRTY_LOG")(e));
                }
            }
        }
        let mut bitmap = DirtyBitmap::from_words(self.memory.pages(), words);
        if let Some(old) = self
            .unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bitmap.merge(&old);
        }
        Ok(bitmap)
    }

    fn save_state(&self) -> Result<VcpuState, PartitionError> {
        state::save(&self.kvm, &self.vcpus)
    }

    fn restore_state(&self, saved: &VcpuState) -> Result<(), PartitionError> {
        state::restore(&self.vcpus, saved)
    }

    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a KVM vCPU thread panicked");
            }
        }
    }
}
