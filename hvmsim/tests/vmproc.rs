//! A real `hvmsim vm` process and its control socket: it takes one controller at a time, and a
//! blade adopts it only as the process the kernel says is on the socket.
//!
//! The VM runs the software backend, so no KVM is needed.

#![allow(clippy::unwrap_used)]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hvmsim::guest::memory::GuestMemory;
use hvmsim::vmproc::wire::{self, Request, Response, VmHello, WireError};
use lparmover::model::workload::{GuestBackend, GuestSpec, Workload};

fn spec() -> GuestSpec {
    GuestSpec {
        memory_bytes: 64 << 20,
        vcpus: 1,
        workload: Workload {
            dirty_rate_mbps: 5.0,
            working_set_mib: 1,
            ..Workload::default()
        },
        backend: GuestBackend::Soft,
    }
}

/// Starts `hvmsim vm` as a blade does (`hvmsim::vmproc::spawn`, whose executable is the
/// current one): guest memory at fd 3, our end of a socket pair at fd 4. Returns the process,
/// our end, and its hello.
fn start_vm(socket: &Path) -> (Child, UnixStream, VmHello) {
    let spec = spec();
    let (_memory, memory_fd) = GuestMemory::shared(spec.memory_bytes, "vmproc-test").unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hvmsim"));
    command
        .arg("vm")
        .arg("--socket")
        .arg(socket)
        .args(["--lpar", "1", "--spec"])
        .arg(serde_json::to_string(&spec).unwrap())
        .stdin(Stdio::null());
    let (m, c) = (memory_fd.as_raw_fd(), theirs.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl and dup2,
    // which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            let m = libc::fcntl(m, libc::F_DUPFD_CLOEXEC, 16);
            let c = libc::fcntl(c, libc::F_DUPFD_CLOEXEC, 16);
            if m < 0
                || c < 0
                || libc::dup2(m, wire::MEMORY_FD) < 0
                || libc::dup2(c, wire::CONTROL_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(theirs);
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let hello = match wire::read_msg::<Response>(&mut ours).unwrap() {
        Response::Hello(h) => h,
        other => panic!("the VM said {other:?}"),
    };
    (child, ours, hello)
}

fn status(conn: &mut UnixStream) -> Response {
    wire::write_msg(conn, &Request::Status).unwrap();
    wire::read_msg(conn).unwrap()
}

#[test]
fn a_vm_takes_one_controller_at_a_time_and_a_blade_adopts_it_as_the_kernel_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lpar-1-0000000000000001.sock");
    let (mut vm, mut first, hello) = start_vm(&socket);
    assert_eq!(hello.pid, vm.id());
    assert!(socket.exists(), "the VM listens before it says hello");

    // A second controller while the first is attached: told why, then closed.
    let mut second = UnixStream::connect(&socket).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    match wire::read_msg::<Response>(&mut second) {
        Ok(Response::Failed(WireError::Other(why))) => assert!(
            why.contains("already has a controller")
                && why.contains(&format!("pid {}", std::process::id())),
            "{why}"
        ),
        other => panic!("a second controller was not refused: {other:?}"),
    }
    let closed = wire::write_msg(&mut second, &Request::Stop)
        .and_then(|()| wire::read_msg::<Response>(&mut second));
    assert!(
        closed.is_err(),
        "the refused connection is served: {closed:?}"
    );

    // The first one still drives the VM (and the refused one's Stop did nothing).
    match status(&mut first) {
        Response::Status(s) => assert!(s.stop.is_none() && !s.paused, "{s:?}"),
        other => panic!("the first controller lost the VM: {other:?}"),
    }

    // The first controller goes (its blade died); a blade adopting the VM at once is taken
    // (within the grace for the old connection to close) and verified by SO_PEERCRED.
    drop(first);
    let adopted = hvmsim::vmproc::adopt(&socket).unwrap();
    assert_eq!(adopted.lpar.get(), 1);
    assert!(adopted.guest.is_running());
    let mut third = UnixStream::connect(&socket).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(
        matches!(
            wire::read_msg::<Response>(&mut third),
            Ok(Response::Failed(_))
        ),
        "a second controller beside an adopting blade was not refused"
    );

    // Stopping through the adopted handle: the VM exits by itself, and the blade's wait on its
    // pidfd sees that (no SIGKILL after the exit timeout).
    let t = Instant::now();
    adopted.guest.stop();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let exit = vm.wait().unwrap();
    assert!(exit.success(), "the VM process ended with {exit}");
}
