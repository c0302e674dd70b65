//! The vCPU thread: `KVM_RUN` in a loop, every exit handled.
//!
//! - `in` on [`QUOTA_PORT`]: ask [`Control::next`] (which paces, sleeping as needed) and answer
//!   the batch size; on a pause request answer 0, complete the `in` with `immediate_exit` so the
//!   saved registers are consistent (KVM finishes pending port I/O only on the next `KVM_RUN`),
//!   release the vCPU and park.
//! - `out` on [`REPORT_PORT`]: end of a batch; run on.
//! - `out` on [`POWER_OFF_PORT`] or `hlt`: the guest OS powered off.
//! - `EINTR`/`EAGAIN`: run again.
//! - anything else stops the guest with an error naming the exit (reported by `heartbeat()`
//!   and the stats), never a hang.

use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::{VcpuExit, VcpuFd};

use super::SharedVcpu;
use super::program::{POWER_OFF, POWER_OFF_PORT, QUOTA_PORT, REPORT_PORT};
use crate::guest::control::{Control, Next, Pacer, StopReason};

enum Action {
    Run,
    Park,
    PowerOff,
    Exit,
    Fail(String),
}

/// Everything one vCPU thread needs.
pub(crate) struct VcpuThread {
    pub id: u32,
    pub fd: SharedVcpu,
    pub control: Arc<Control>,
}

fn lock(fd: &Mutex<VcpuFd>) -> MutexGuard<'_, VcpuFd> {
    fd.lock().unwrap_or_else(|e| e.into_inner())
}

impl VcpuThread {
    /// Runs until stop, power-off or failure.
    pub fn run(self) {
        // Incoming guests start parked, before their state is restored.
        if self.control.is_paused() && !self.control.park() {
            self.control.exited();
            return;
        }
        let mut pacer = Pacer::new();
        let mut fd = lock(&self.fd);
        loop {
            let action = match fd.run() {
                Ok(VcpuExit::IoIn(QUOTA_PORT, data)) => {
                    let (answer, action) = match self.control.next(&mut pacer) {
                        Next::Batch(n) => (n, Action::Run),
                        Next::Park => (0, Action::Park),
                        Next::PowerOff => (POWER_OFF, Action::Run),
                        Next::Exit => (0, Action::Exit),
                    };
                    match data.len() {
                        4 => {
                            data.copy_from_slice(&answer.to_le_bytes());
                            action
                        }
                        n => Action::Fail(format!("{n}-byte read of the quota port")),
                    }
                }
                Ok(VcpuExit::IoOut(REPORT_PORT, _)) => Action::Run,
                Ok(VcpuExit::IoOut(POWER_OFF_PORT, _)) | Ok(VcpuExit::Hlt) => Action::PowerOff,
                Ok(exit) => Action::Fail(format!("unexpected exit {exit:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Action::Run,
                Err(e) => Action::Fail(format!("KVM_RUN failed: {e}")),
            };
            match action {
                Action::Run => {}
                Action::Park => {
                    if let Err(why) = complete_pending_io(&mut fd) {
                        self.fail(why);
                        break;
                    }
                    drop(fd);
                    let go_on = self.control.park();
                    fd = lock(&self.fd);
                    if !go_on {
                        break;
                    }
                    pacer.reset();
                }
                Action::PowerOff => {
                    tracing::info!(vcpu = self.id, "KVM guest powered off");
                    self.control.stop(StopReason::ShutDown);
                    break;
                }
                Action::Exit => break,
                Action::Fail(why) => {
                    self.fail(why);
                    break;
                }
            }
        }
        // Leave no port I/O half done, so a stopped guest can still be saved.
        let _ = complete_pending_io(&mut fd);
        drop(fd);
        self.control.exited();
    }

    fn fail(&self, why: String) {
        let why = format!("vCPU {}: {why}", self.id);
        tracing::error!("guest stopped: {why}");
        self.control.stop(StopReason::Failed(why));
    }
}

/// Lets KVM finish the pending port I/O without entering the guest (KVM API: "KVM_RUN with
/// immediate_exit set … completes pending operations" before state is read).
fn complete_pending_io(fd: &mut VcpuFd) -> Result<(), String> {
    fd.set_kvm_immediate_exit(1);
    let result = match fd.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(e) => Err(format!("completing port I/O failed: {e}")),
        Ok(exit) => Err(format!(
            "unexpected exit {exit:?} while completing port I/O"
        )),
    };
    fd.set_kvm_immediate_exit(0);
    result
}
