//! One VM process per activated LPAR, as libvirt runs one QEMU per domain: the guest's vCPUs run
//! in `hvmsim vm` ([`child`]), and the blade drives them over a Unix socket ([`wire`]) while both
//! map the same guest memory file. A blade process that is killed leaves its guests running;
//! the restarted blade finds them by their sockets in its state directory ([`scan`]) and
//! adopts them ([`adopt`]), so a crash of the blade's management process loses no guest and no
//! guest state, mid-move included.
//!
//! The blade side of a VM is [`VmProcess`], a [`VmOps`] over the socket; a [`Guest`] built on it
//! reads and writes memory directly through its own mapping of the file, so the migration
//! engine's copy costs no more than with an in-process guest.

pub mod child;
pub mod peer;
pub mod wire;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lparmover::model::{GuestSpec, LparNumber};
use lparmover::partition::{DirtyBitmap, Partition, PartitionError, VcpuState};

use crate::guest::control::StopReason;
use crate::guest::memory::GuestMemory;
use crate::guest::vm::{VmOps, VmStatus};
use crate::guest::{BackendKind, Guest, GuestError};
use peer::VerifiedPid;
use wire::{Request, Response, VmHello};

/// How long a VM process may take to start (filling a large guest's memory takes seconds).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a control request may take (a pause waits up to 2 s for the vCPUs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`VmProcess::stop`] waits for the process to exit before killing it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How stale a cached run state may be. The heartbeat watch samples every 200 µs and asks
/// whether the guest failed each time; the cache keeps that from becoming 5000 requests a second.
const STATUS_CACHE: Duration = Duration::from_millis(20);
/// Longest socket path `bind` accepts (`sun_path` minus its NUL).
const MAX_SOCKET_PATH: usize = 107;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> PartitionError {
    move |source| PartitionError::Backend { what, source }
}

/// The blade's side of a VM process.
pub struct VmProcess {
    hello: VmHello,
    /// The process, as the kernel names it: what the blade signals and reads `/proc` of (never
    /// the pid in `hello`, which is only what the process said).
    pid: VerifiedPid,
    socket: PathBuf,
    conn: Mutex<Option<UnixStream>>,
    /// Set when the VM process stopped answering: why.
    lost: Mutex<Option<String>>,
    /// Our child, when this blade process started it (an adopted VM is not).
    child: Mutex<Option<Child>>,
    cache: Mutex<Option<(Instant, VmStatus)>>,
}

impl std::fmt::Debug for VmProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmProcess(lpar {}, pid {})",
            self.hello.lpar,
            self.pid.get()
        )
    }
}

impl VmProcess {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid.get()
    }

    /// Sends one request, reads its answer and hands it to `then` (which may read more from
    /// the stream). A broken connection marks the VM lost. Every request but
    /// [`Request::Status`] and [`Request::Hello`] may change the run state, so the cached state
    /// is dropped under the same lock that orders the requests: a status answer read before a
    /// pause can never be cached after it.
    fn exchange<T>(
        &self,
        request: &Request,
        then: impl FnOnce(&mut UnixStream, Response) -> std::io::Result<T>,
    ) -> Result<T, PartitionError> {
        let mut conn = lock(&self.conn);
        let Some(stream) = conn.as_mut() else {
            return Err(PartitionError::GuestStopped(self.lost_reason()));
        };
        let result = wire::write_msg(stream, request)
            .and_then(|()| wire::read_msg::<Response>(stream))
            .and_then(|response| {
                if let (Request::Status, Response::Status(status)) = (request, &response) {
                    *lock(&self.cache) = Some((Instant::now(), status.clone()));
                }
                then(stream, response)
            });
        if !matches!(request, Request::Status | Request::Hello) {
            *lock(&self.cache) = None;
        }
        result.map_err(|e| {
            let why = format!(
                "the VM process of LPAR {} (pid {}) stopped answering: {e}",
                self.hello.lpar,
                self.pid.get()
            );
            tracing::error!(lpar = self.hello.lpar, error = %e, "VM process lost");
            *conn = None;
            *lock(&self.lost) = Some(why.clone());
            PartitionError::GuestStopped(why)
        })
    }

    /// [`Self::exchange`] for a request answered by one response; a refusal is an error.
    fn call(&self, request: &Request) -> Result<Response, PartitionError> {
        match self.exchange(request, |_, response| Ok(response))? {
            Response::Failed(e) => Err(e.into()),
            response => Ok(response),
        }
    }

    fn lost_reason(&self) -> String {
        lock(&self.lost)
            .clone()
            .unwrap_or_else(|| "the VM process is gone".into())
    }

    fn done(&self, request: &Request) -> Result<(), PartitionError> {
        match self.call(request)? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits for the process to exit, killing it after [`EXIT_TIMEOUT`].
    fn reap(&self) {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        if let Some(mut child) = lock(&self.child).take() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) if Instant::now() >= deadline => {
                        tracing::warn!(pid = self.pid.get(), "VM process did not exit; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        // Adopted: not our child, so wait on its pidfd, and kill through it: a plain kill(pid)
        // after the process exited could hit another process that got the pid since.
        if !self
            .pid
            .wait_exit(deadline.saturating_duration_since(Instant::now()))
        {
            tracing::warn!(
                pid = self.pid.get(),
                "adopted VM process did not exit; killing it"
            );
            if let Err(e) = self.pid.kill()
                && e.raw_os_error() != Some(libc::ESRCH)
            {
                tracing::warn!(pid = self.pid.get(), error = %e, "killing an adopted VM process");
            }
        }
    }
}

fn unexpected(r: &Response) -> PartitionError {
    PartitionError::Backend {
        what: "the VM process",
        source: std::io::Error::other(format!("unexpected answer {r:?}")),
    }
}

impl VmOps for VmProcess {
    fn kind(&self) -> BackendKind {
        self.hello.kind
    }

    fn start_dirty_log(&self) -> Result<(), PartitionError> {
        self.done(&Request::StartDirtyLog)
    }

    fn stop_dirty_log(&self) -> Result<(), PartitionError> {
        self.done(&Request::StopDirtyLog)
    }

    fn take_dirty_log(&self) -> Result<DirtyBitmap, PartitionError> {
        self.exchange(&Request::TakeDirtyLog, |stream, response| {
            Ok(match response {
                Response::Bitmap { pages } => {
                    let words = wire::bytes_to_words(&wire::read_raw(stream)?)?;
                    if words.len() as u64 != pages.div_ceil(64) {
                        return Err(std::io::Error::other(
                            "bitmap frame does not match its size",
                        ));
                    }
                    Ok(DirtyBitmap::from_words(pages, words))
                }
                Response::Failed(e) => Err(PartitionError::from(e)),
                other => Err(unexpected(&other)),
            })
        })?
    }

    fn save_state(&self) -> Result<VcpuState, PartitionError> {
        match self.call(&Request::SaveState)? {
            Response::State(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    fn restore_state(&self, state: &VcpuState) -> Result<(), PartitionError> {
        self.done(&Request::RestoreState(state.clone()))
    }

    fn pause(&self) -> Result<Duration, PartitionError> {
        match self.call(&Request::Pause)? {
            Response::Paused(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    fn resume(&self) -> Result<(), PartitionError> {
        self.done(&Request::Resume)
    }

    fn status(&self) -> VmStatus {
        if let Some((at, status)) = lock(&self.cache).as_ref()
            && at.elapsed() < STATUS_CACHE
        {
            return status.clone();
        }
        match self.call(&Request::Status) {
            Ok(Response::Status(s)) => s,
            Ok(other) => {
                tracing::warn!(answer = ?other, "unexpected answer to a status request");
                lost_status(format!("unexpected answer {other:?}"))
            }
            Err(e) => lost_status(e.to_string()),
        }
    }

    fn set_rate(&self, mbps: f64) -> Result<(), PartitionError> {
        self.done(&Request::SetRate(mbps))
    }

    fn set_throttle(&self, percent: u8) -> Result<(), PartitionError> {
        self.done(&Request::SetThrottle(percent))
    }

    fn request_shutdown(&self, after: Duration) -> Result<(), PartitionError> {
        self.done(&Request::RequestShutdown(after))
    }

    fn stop(&self) {
        // Called where a guest is dropped, often in an async handler: waiting for the VM
        // process to exit must not hold up the blade's other tasks.
        lparmover::fsutil::off_the_runtime(|| self.stop_and_reap());
    }
}

impl VmProcess {
    fn stop_and_reap(&self) {
        if lock(&self.conn).is_some() {
            if let Err(e) = self.done(&Request::Stop) {
                tracing::debug!(error = %e, "stop request not answered");
            }
            *lock(&self.conn) = None;
            *lock(&self.lost) = Some("the VM was stopped".into());
        }
        self.reap();
        if let Err(e) = std::fs::remove_file(&self.socket)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "removing a VM socket");
        }
    }
}

fn lost_status(why: String) -> VmStatus {
    VmStatus {
        paused: false,
        stop: Some(StopReason::Failed(why)),
        rate_mbps: 0.0,
        throttle: 0,
        paused_total: Duration::ZERO,
        dirty_log: false,
    }
}

/// Where a blade keeps its VM sockets.
pub fn vm_dir(state_root: &Path) -> PathBuf {
    state_root.join("vms")
}

/// Starts the VM process of LPAR `lpar`: a booting guest, or (`incoming`) a paused one over blank
/// memory waiting for a migration. Returns once the VM runs.
pub fn spawn(
    spec: &GuestSpec,
    lpar: LparNumber,
    dir: &Path,
    incoming: bool,
) -> Result<Arc<Guest>, GuestError> {
    let fail = |why: String| GuestError::InvalidSpec(why);
    // Owner-only: the control sockets in it drive the guests.
    lparmover::fsutil::create_private_dir(dir)
        .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let socket = dir.join(format!(
        "lpar-{}-{:016x}.sock",
        lpar.get(),
        rand::random::<u64>()
    ));
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(fail(format!(
            "the VM socket path {} is longer than {MAX_SOCKET_PATH} bytes; start the blade with a shorter --state-dir",
            socket.display()
        )));
    }
    let exe =
        std::env::current_exe().map_err(|e| fail(format!("finding the hvmsim executable: {e}")))?;
    let spec_json = serde_json::to_string(spec).map_err(|e| fail(e.to_string()))?;
    let (memory, memory_fd) =
        GuestMemory::shared(spec.memory_bytes, &format!("lpar-{}", lpar.get()))?;
    let (mut ours, theirs) =
        UnixStream::pair().map_err(io_err("creating the VM control socket"))?;
    let mut command = Command::new(exe);
    command
        .arg("vm")
        .arg("--socket")
        .arg(&socket)
        .arg("--lpar")
        .arg(lpar.get().to_string())
        .arg("--spec")
        .arg(spec_json)
        .stdin(Stdio::null());
    // The VMs of a state directory take later controllers only from the blade holding its lock.
    if let Some(root) = dir.parent() {
        command
            .arg("--blade-lock")
            .arg(crate::store::lock_path(root));
    }
    if incoming {
        command.arg("--incoming");
    }
    let memory_raw = memory_fd.as_raw_fd();
    let control_raw = theirs.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls setsid, fcntl,
    // dup2 and close, which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            // Its own session: a Ctrl-C meant for the blade's terminal does not reach the guest.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Move both fds out of the way first, so placing one cannot clobber the other.
            let m = libc::fcntl(memory_raw, libc::F_DUPFD_CLOEXEC, 16);
            let c = libc::fcntl(control_raw, libc::F_DUPFD_CLOEXEC, 16);
            if m < 0 || c < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 leaves the new fds without CLOEXEC: they survive the exec.
            if libc::dup2(m, wire::MEMORY_FD) < 0 || libc::dup2(c, wire::CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(m);
            libc::close(c);
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| fail(format!("starting the VM process: {e}")))?;
    drop(theirs);
    drop(memory_fd);
    ours.set_read_timeout(Some(START_TIMEOUT))
        .map_err(io_err("setting a socket timeout"))?;
    let hello = match wire::read_msg::<Response>(&mut ours) {
        Ok(Response::Hello(hello)) => hello,
        Ok(Response::Failed(e)) => {
            let mut child = child;
            let _ = child.wait();
            return Err(GuestError::Partition(e.into()));
        }
        Ok(other) => return Err(GuestError::Partition(unexpected(&other))),
        Err(e) => {
            let mut child = child;
            let _ = child.kill();
            let status = child.wait().ok();
            return Err(fail(format!(
                "the VM process of LPAR {} did not start ({e}; exit {status:?}); see the blade's log",
                lpar.get()
            )));
        }
    };
    let pid = match VerifiedPid::of_child(&child, hello.pid) {
        Ok(pid) => pid,
        Err(reason) => {
            // Our own child, not yet reaped: killing it by its handle cannot hit another process.
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(GuestError::VmRefused {
                socket: socket.display().to_string(),
                reason,
            });
        }
    };
    ours.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(io_err("setting a socket timeout"))?;
    tracing::info!(lpar = lpar.get(), pid = pid.get(), "VM process started");
    Ok(guest_of(hello, pid, socket, ours, Some(child), memory))
}

/// The guest a blade drives through the VM process that said `hello` on `conn`.
fn guest_of(
    hello: VmHello,
    pid: VerifiedPid,
    socket: PathBuf,
    conn: UnixStream,
    child: Option<Child>,
    memory: GuestMemory,
) -> Arc<Guest> {
    let spec = hello.spec.clone();
    let (awaiting, activation) = (hello.awaiting_state, hello.activation);
    let vm = VmProcess {
        hello,
        pid,
        socket,
        conn: Mutex::new(Some(conn)),
        lost: Mutex::new(None),
        child: Mutex::new(child),
        cache: Mutex::new(None),
    };
    Arc::new(Guest::assemble(
        &spec,
        Arc::new(memory),
        Box::new(vm),
        awaiting,
        activation,
    ))
}

/// A VM process a restarted blade found running.
pub struct Adopted {
    /// The LPAR it runs.
    pub lpar: LparNumber,
    /// Its guest ([`Guest::awaiting_state`]: an incoming one that never received vCPU state).
    pub guest: Arc<Guest>,
}

/// Connects to the VM process listening on `socket`, maps its memory and switches off the dirty
/// logging and throttling a move may have left on.
pub fn adopt(socket: &Path) -> Result<Adopted, GuestError> {
    let fail = |why: String| GuestError::NotRunning(why);
    let mut conn = UnixStream::connect(socket)
        .map_err(|e| fail(format!("no VM answers on {}: {e}", socket.display())))?;
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(io_err("setting a socket timeout"))?;
    let hello = match wire::write_msg(&mut conn, &Request::Hello)
        .and_then(|()| wire::read_msg::<Response>(&mut conn))
    {
        Ok(Response::Hello(h)) => h,
        Ok(Response::Failed(e)) => {
            return Err(fail(format!(
                "the VM on {} refused this blade: {}",
                socket.display(),
                PartitionError::from(e)
            )));
        }
        Ok(other) => return Err(GuestError::Partition(unexpected(&other))),
        Err(e) => {
            return Err(fail(format!(
                "the VM on {} did not answer: {e}",
                socket.display()
            )));
        }
    };
    let lpar = LparNumber::new(hello.lpar).map_err(|e| {
        fail(format!(
            "the VM on {} names a bad LPAR: {e}",
            socket.display()
        ))
    })?;
    // The kernel's word on who listens there, not the hello's: a process that lies about its
    // pid is refused here, before anything reads its /proc entry or could ever signal it.
    let pid = VerifiedPid::of_peer(&conn, hello.pid).map_err(|reason| GuestError::VmRefused {
        socket: socket.display().to_string(),
        reason,
    })?;
    // The memory file is still open in the VM process; opening its /proc link opens the same
    // file (root, or the same user, may).
    let path = format!("/proc/{}/fd/{}", pid.get(), wire::MEMORY_FD);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| fail(format!("opening the guest memory {path}: {e}")))?;
    // Still running after the open: the pid named the verified process all along, not one that
    // got its number after it exited.
    if !pid.running() {
        return Err(fail(format!(
            "the VM process {} on {} exited while it was adopted",
            pid.get(),
            socket.display()
        )));
    }
    let memory = GuestMemory::attach(&file, hello.spec.memory_bytes)?;
    let guest = guest_of(hello, pid, socket.to_owned(), conn, None, memory);
    // No move outlives the blade process that ran it: whatever an interrupted one switched on
    // goes off before the restarted blade uses the guest. A VM that cannot do that is not
    // adoptable.
    guest.stop_dirty_tracking()?;
    guest.set_throttle(0)?;
    Ok(Adopted { lpar, guest })
}

/// Every VM process still running from an earlier life of the blade whose sockets are in `dir`.
/// Sockets nobody answers on are removed.
pub fn scan(dir: &Path) -> Vec<Adopted> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        match adopt(&path) {
            Ok(adopted) => {
                tracing::info!(lpar = adopted.lpar.get(), socket = %path.display(), "found a running VM");
                found.push(adopted);
            }
            Err(e @ GuestError::VmRefused { .. }) => {
                tracing::warn!(error = %e, "refusing a VM process; removing its socket");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                tracing::info!(error = %e, "removing a stale VM socket");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    use lparmover::model::workload::{GuestBackend, Workload};

    use super::peer::PeerError;
    use super::*;

    fn spec() -> GuestSpec {
        GuestSpec {
            memory_bytes: 64 << 20,
            vcpus: 1,
            workload: Workload::default(),
            backend: GuestBackend::Soft,
        }
    }

    /// A process that is not a VM but has a file of the guest's size open at the memory fd, as a
    /// VM process has: a blade that believed a hello naming it could map that file, adopt it and
    /// later kill it.
    fn bystander(dir: &Path) -> Child {
        let file = dir.join("bystander-memory");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(spec().memory_bytes)
            .unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3<>"$0"; exec sleep 1000"#)
            .arg(&file)
            .spawn()
            .unwrap();
        // Until the shell has exec'd sleep, /proc/PID/fd/3 may not be there yet.
        let fd3 = format!("/proc/{}/fd/{}", child.id(), wire::MEMORY_FD);
        let t = Instant::now();
        while std::fs::read_link(&fd3).ok() != Some(file.clone()) {
            assert!(t.elapsed() < Duration::from_secs(10), "{fd3} never opened");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// A fake VM on `socket` whose hello says it is `pid`, for `connections` connections; it
    /// answers every other request with `Done` and reports each request it got.
    fn liar(socket: &Path, pid: u32, connections: usize) -> mpsc::Receiver<String> {
        let listener = UnixListener::bind(socket).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let (mut conn, _) = listener.accept().unwrap();
                while let Ok(request) = wire::read_msg::<Request>(&mut conn) {
                    let _ = tx.send(format!("{request:?}"));
                    let response = match request {
                        Request::Hello => Response::Hello(VmHello {
                            lpar: 1,
                            pid,
                            spec: spec(),
                            kind: BackendKind::Soft,
                            awaiting_state: false,
                            activation: Duration::ZERO,
                        }),
                        _ => Response::Done,
                    };
                    if wire::write_msg(&mut conn, &response).is_err() {
                        break;
                    }
                }
            }
        });
        rx
    }

    fn running(child: &mut Child) -> bool {
        child.try_wait().unwrap().is_none()
    }

    #[test]
    fn a_vm_whose_hello_names_another_pid_is_refused_and_that_pid_is_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let mut victim = bystander(dir.path());
        let vms = dir.path().join("vms");
        std::fs::create_dir(&vms).unwrap();
        let socket = vms.join("lpar-1-0000000000000001.sock");
        let asked = liar(&socket, victim.id(), 1);

        let refused = adopt(&socket);
        let message = refused.as_ref().err().map(ToString::to_string);
        let e = refused.as_ref().err();
        assert!(
            matches!(
                e,
                Some(GuestError::VmRefused {
                    reason: PeerError::PidMismatch { claimed, actual },
                    ..
                }) if *claimed == victim.id() && *actual == std::process::id()
            ),
            "a VM lying about its pid was not refused: {e:?}"
        );
        let message = message.unwrap_or_default();
        assert!(
            message.contains(&format!("pid {}", victim.id()))
                && message.contains(&format!("pid {}", std::process::id())),
            "the refusal names both pids: {message}"
        );
        // Were it adopted, dropping its guest would stop it: a Stop request, then, as the
        // victim does not exit, SIGKILL to the victim after EXIT_TIMEOUT.
        drop(refused);
        std::thread::sleep(Duration::from_millis(200));
        assert!(running(&mut victim), "the pid named in the lie was killed");
        let asked: Vec<String> = asked.try_iter().collect();
        assert_eq!(
            asked,
            ["Hello"],
            "nothing but a hello is asked of a refused VM"
        );

        // A restarted blade's scan refuses it too and drops its socket.
        let again = dir.path().join("vms-again");
        std::fs::create_dir(&again).unwrap();
        let socket = again.join("lpar-2-0000000000000002.sock");
        let _asked = liar(&socket, victim.id(), 1);
        assert!(scan(&again).is_empty());
        assert!(!socket.exists());
        std::thread::sleep(Duration::from_millis(200));
        assert!(running(&mut victim), "the pid named in the lie was killed");
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}
