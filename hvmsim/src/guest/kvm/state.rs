//! Saving and restoring KVM vCPU state (after firecracker's `vstate::vcpu`).
//!
//! Per vCPU: MP state, general and special registers, XSAVE area (x87/SSE/AVX: it supersedes
//! `KVM_GET_FPU`), XCRs, debug registers, LAPIC, the MSRs that matter (TSC included: writing
//! `IA32_TSC` on the destination makes the guest's TSC continue from the saved value), the TSC
//! frequency and pending events. Encoded as [`VcpuState`] `{ backend: "kvm" }` with the header of
//! [`encode_state`]. Restore follows firecracker's order.

use kvm_bindings::{
    Msrs, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use kvm_ioctls::{Kvm, VcpuFd};
use lparmover::partition::{PartitionError, VcpuState};
use serde::{Deserialize, Serialize};

use super::{SharedVcpu, backend_err};
use crate::guest::{BackendKind, decode_state, encode_state};

const STATE_VERSION: u32 = 1;

/// MSRs saved when the host's KVM lists them: TSC, SYSENTER CS/ESP/EIP, MISC_ENABLE, PAT,
/// TSC_DEADLINE, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX.
const MSRS: [u32; 13] = [
    0x10,
    0x174,
    0x175,
    0x176,
    0x1A0,
    0x277,
    0x6E0,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0102,
    0xC000_0103,
];

#[derive(Serialize, Deserialize)]
struct KvmVcpuState {
    id: u32,
    mp_state: kvm_mp_state,
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: kvm_xsave,
    xcrs: kvm_xcrs,
    debug_regs: kvm_debugregs,
    lapic: kvm_lapic_state,
    msrs: Vec<(u32, u64)>,
    tsc_khz: Option<u32>,
    events: kvm_vcpu_events,
}

fn lock(v: &SharedVcpu) -> std::sync::MutexGuard<'_, VcpuFd> {
    v.lock().unwrap_or_else(|e| e.into_inner())
}

fn msr_list(entries: &[kvm_msr_entry]) -> Result<Msrs, PartitionError> {
    Msrs::from_entries(entries).map_err(|e| PartitionError::Backend {
        what: "building the MSR list",
        source: std::io::Error::other(format!("{e:?}")),
    })
}

/// Saves every vCPU (they must be parked).
pub(crate) fn save(kvm: &Kvm, vcpus: &[SharedVcpu]) -> Result<VcpuState, PartitionError> {
    let supported = kvm
        .get_msr_index_list()
        .map_err(backend_err("KVM_GET_MSR_INDEX_LIST"))?;
    let wanted: Vec<u32> = MSRS
        .iter()
        .copied()
        .filter(|m| supported.as_slice().contains(m))
        .collect();
    let mut states = Vec::with_capacity(vcpus.len());
    for (id, vcpu) in vcpus.iter().enumerate() {
        let fd = lock(vcpu);
        let mut msrs = Vec::with_capacity(wanted.len());
        for &index in &wanted {
            let mut one = msr_list(&[kvm_msr_entry {
                index,
                ..Default::default()
            }])?;
            if fd.get_msrs(&mut one).map_err(backend_err("KVM_GET_MSRS"))? == 1
                && let Some(entry) = one.as_slice().first()
            {
                msrs.push((entry.index, entry.data));
            }
        }
        states.push(KvmVcpuState {
            id: id as u32,
            mp_state: fd.get_mp_state().map_err(backend_err("KVM_GET_MP_STATE"))?,
            regs: fd.get_regs().map_err(backend_err("KVM_GET_REGS"))?,
            sregs: fd.get_sregs().map_err(backend_err("KVM_GET_SREGS"))?,
            xsave: fd.get_xsave().map_err(backend_err("KVM_GET_XSAVE"))?,
            xcrs: fd.get_xcrs().map_err(backend_err("KVM_GET_XCRS"))?,
            debug_regs: fd
                .get_debug_regs()
                .map_err(backend_err("KVM_GET_DEBUGREGS"))?,
            lapic: fd.get_lapic().map_err(backend_err("KVM_GET_LAPIC"))?,
            msrs,
            tsc_khz: fd.get_tsc_khz().ok(),
            events: fd
                .get_vcpu_events()
                .map_err(backend_err("KVM_GET_VCPU_EVENTS"))?,
        });
    }
    encode_state(BackendKind::Kvm, STATE_VERSION, &states)
}

/// Restores every vCPU (they must be parked).
pub(crate) fn restore(vcpus: &[SharedVcpu], saved: &VcpuState) -> Result<(), PartitionError> {
    let states: Vec<KvmVcpuState> = decode_state(saved, STATE_VERSION)?;
    if states.len() != vcpus.len() {
        return Err(PartitionError::IncompatibleState(format!(
            "state holds {} vCPUs, this guest has {}",
            states.len(),
            vcpus.len()
        )));
    }
    for (id, (vcpu, s)) in vcpus.iter().zip(&states).enumerate() {
        if s.id != id as u32 {
            return Err(PartitionError::IncompatibleState(format!(
                "vCPU {id} of the state is numbered {}",
                s.id
            )));
        }
        let fd = lock(vcpu);
        if let Some(khz) = s.tsc_khz
            && fd.get_tsc_khz().ok() != Some(khz)
        {
            fd.set_tsc_khz(khz)
                .map_err(backend_err("KVM_SET_TSC_KHZ"))?;
        }
        fd.set_mp_state(s.mp_state)
            .map_err(backend_err("KVM_SET_MP_STATE"))?;
        fd.set_regs(&s.regs).map_err(backend_err("KVM_SET_REGS"))?;
        fd.set_sregs(&s.sregs)
            .map_err(backend_err("KVM_SET_SREGS"))?;
        // SAFETY: `s.xsave` is a whole `kvm_xsave` (4 KiB) written by KVM_GET_XSAVE. This VMM
        // never asks for dynamically enabled XSAVE features (no ARCH_REQ_XCOMP_GUEST_PERM), so
        // KVM reads no more than those 4 KiB.
        unsafe { fd.set_xsave(&s.xsave) }.map_err(backend_err("KVM_SET_XSAVE"))?;
        fd.set_xcrs(&s.xcrs).map_err(backend_err("KVM_SET_XCRS"))?;
        fd.set_debug_regs(&s.debug_regs)
            .map_err(backend_err("KVM_SET_DEBUGREGS"))?;
        fd.set_lapic(&s.lapic)
            .map_err(backend_err("KVM_SET_LAPIC"))?;
        let entries: Vec<kvm_msr_entry> = s
            .msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = msr_list(&entries)?;
        let written = fd.set_msrs(&msrs).map_err(backend_err("KVM_SET_MSRS"))?;
        if written != entries.len() {
            let failed = entries.get(written).map_or(0, |e| e.index);
            return Err(PartitionError::IncompatibleState(format!(
                "this host refused MSR {failed:#x} of vCPU {id}"
            )));
        }
        fd.set_vcpu_events(&s.events)
            .map_err(backend_err("KVM_SET_VCPU_EVENTS"))?;
    }
    Ok(())
}
