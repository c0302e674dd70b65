//! `hvmsim vm`: the VM process of one LPAR. It maps the guest memory file its blade created,
//! runs the vCPUs ([`LocalVm`]) and answers control requests ([`super::wire`]) on the
//! connection it was started with and on its socket, where a restarted blade finds it again.
//!
//! It takes one controller at a time, and only one that runs as its own user (`SO_PEERCRED`,
//! [`super::peer`]): the blade that started it, or after that blade died, the one that adopts
//! it. Anyone else who connects gets a refusal and the connection closed.
//!
//! It outlives its blade on purpose: a blade process killed mid-move must not take the guest
//! with it. It stops when told to ([`Request::Stop`]), or when its socket file disappears
//! (the blade's state was deleted: nobody can adopt it any more).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use lparmover::model::GuestSpec;
use lparmover::partition::{DirtyBitmap, PartitionError};

use super::peer::{self, PeerCred};
use super::wire::{self, Request, Response, VmHello, WireError};
use crate::guest::layout;
use crate::guest::memory::GuestMemory;
use crate::guest::vm::{LocalVm, VmOps, resolve_backend};

/// How often the VM process checks that its socket file still exists.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(500);
/// How long a new connection waits for the attached controller to go before it is refused: a
/// blade restarted right after a crash connects while the dead blade's connection may still be
/// closing here.
const ATTACH_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `hvmsim vm` (started by a blade, not by hand).
#[derive(Debug, Clone, clap::Args)]
pub struct VmArgs {
    /// Control socket to listen on.
    #[arg(long)]
    pub socket: PathBuf,
    /// LPAR number (for logs and the hello).
    #[arg(long)]
    pub lpar: u8,
    /// The guest spec, as JSON.
    #[arg(long)]
    pub spec: String,
    /// Start paused over blank memory, waiting for an incoming migration.
    #[arg(long)]
    pub incoming: bool,
    /// The state directory lock of the blade that started the VM: a controller that connects
    /// to the socket later (a restarted blade adopting the VM) must hold it.
    #[arg(long)]
    pub blade_lock: Option<PathBuf>,
}

struct Server {
    vm: LocalVm,
    hello: VmHello,
    state_restored: AtomicBool,
    stop_tx: mpsc::Sender<()>,
    /// What a controller connecting to the socket must hold ([`VmArgs::blade_lock`]).
    blade_lock: Option<PathBuf>,
    /// The attached controller, if one is: the only connection served.
    controller: Mutex<Option<PeerCred>>,
    detached: Condvar,
}

/// How a controller reached the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The socket pair the starting blade passed at spawn (only that blade has the other end).
    Spawner,
    /// The listening socket in the state directory (a restarted blade adopting the VM).
    Socket,
}

/// The hold of one controller on the VM; dropping it lets the next one attach.
struct Attached {
    server: Arc<Server>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        *self
            .server
            .controller
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.server.detached.notify_all();
    }
}

impl Server {
    /// Attaches the peer on `conn` as the controller: it must run as our uid, and no other
    /// controller may be attached (after waiting [`ATTACH_GRACE`] for one to go). A refusal is
    /// the sentence to send back.
    fn attach(self: &Arc<Self>, conn: &UnixStream, via: Via) -> Result<Attached, String> {
        let cred = peer::peer_cred(conn).map_err(|e| e.to_string())?;
        peer::check_uid(cred, peer::own_uid())
            .map_err(|e| format!("this VM process takes controllers of its own user only: {e}"))?;
        if via == Via::Socket {
            self.check_lock_holder(cred)?;
        }
        let held = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        let (mut held, _) = self
            .detached
            .wait_timeout_while(held, ATTACH_GRACE, |c| c.is_some())
            .unwrap_or_else(|e| e.into_inner());
        if let Some(current) = *held {
            return Err(format!(
                "the VM process of LPAR {} already has a controller (pid {}); it takes one at a time, so pid {} is refused",
                self.hello.lpar, current.pid, cred.pid
            ));
        }
        *held = Some(cred);
        tracing::info!(pid = cred.pid, "a controller attached to the VM");
        Ok(Attached {
            server: Arc::clone(self),
        })
    }

    /// A controller coming through the socket must be the blade serving the state directory:
    /// it holds the directory's lock (`crate::store::StateDir::lock`). Another process of the
    /// same user cannot take a guest over while its blade is down.
    fn check_lock_holder(&self, cred: peer::PeerCred) -> Result<(), String> {
        let Some(lock) = &self.blade_lock else {
            return Ok(());
        };
        match peer::holds_flock(cred.pid, lock) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "pid {} does not hold the blade lock {}; only the `hvmsim serve` serving that state directory may control LPAR {}'s VM",
                cred.pid,
                lock.display(),
                self.hello.lpar
            )),
            Err(e) => Err(format!(
                "cannot tell whether pid {} holds the blade lock {} ({e}); refused",
                cred.pid,
                lock.display()
            )),
        }
    }

    /// Attaches the peer on `conn` and serves it, or tells it why not and closes it.
    fn attach_and_serve(self: &Arc<Self>, mut conn: UnixStream) {
        match self.attach(&conn, Via::Socket) {
            Ok(_attached) => self.serve(conn),
            Err(why) => {
                tracing::warn!(lpar = self.hello.lpar, reason = %why, "refused a control connection");
                let _ = wire::write_msg(&mut conn, &Response::Failed(WireError::Other(why)));
            }
        }
    }

    fn hello(&self) -> VmHello {
        VmHello {
            awaiting_state: self.hello.awaiting_state
                && !self.state_restored.load(Ordering::Acquire),
            ..self.hello.clone()
        }
    }

    /// Answers one request; a bitmap's raw frame is returned beside the response.
    fn answer(&self, request: Request) -> (Response, Option<DirtyBitmap>) {
        let done = |r: Result<(), PartitionError>| match r {
            Ok(()) => Response::Done,
            Err(e) => Response::Failed(WireError::from(&e)),
        };
        let response = match request {
            Request::Hello => Response::Hello(self.hello()),
            Request::Status => Response::Status(self.vm.status()),
            Request::StartDirtyLog => done(self.vm.start_dirty_log()),
            Request::StopDirtyLog => done(self.vm.stop_dirty_log()),
            Request::TakeDirtyLog => match self.vm.take_dirty_log() {
                Ok(bitmap) => {
                    return (
                        Response::Bitmap {
                            pages: bitmap.pages(),
                        },
                        Some(bitmap),
                    );
                }
                Err(e) => Response::Failed(WireError::from(&e)),
            },
            Request::SaveState => match self.vm.save_state() {
                Ok(state) => Response::State(state),
                Err(e) => Response::Failed(WireError::from(&e)),
            },
            Request::RestoreState(state) => {
                let r = self.vm.restore_state(&state);
                if r.is_ok() {
                    self.state_restored.store(true, Ordering::Release);
                }
                done(r)
            }
            Request::Pause => match self.vm.pause() {
                Ok(latency) => Response::Paused(latency),
                Err(e) => Response::Failed(WireError::from(&e)),
            },
            Request::Resume => done(self.vm.resume()),
            Request::SetRate(mbps) => done(self.vm.set_rate(mbps)),
            Request::SetThrottle(p) => done(self.vm.set_throttle(p)),
            Request::RequestShutdown(after) => done(self.vm.request_shutdown(after)),
            Request::Stop => {
                self.vm.stop();
                Response::Done
            }
        };
        (response, None)
    }

    /// Serves one blade connection until it closes. The VM keeps running when it does.
    fn serve(&self, mut conn: UnixStream) {
        loop {
            let request: Request = match wire::read_msg(&mut conn) {
                Ok(r) => r,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        tracing::warn!(lpar = self.hello.lpar, error = %e, "control connection broke");
                    }
                    return;
                }
            };
            let stopping = matches!(request, Request::Stop);
            let (response, bitmap) = self.answer(request);
            let sent = wire::write_msg(&mut conn, &response).and_then(|()| match bitmap {
                Some(b) => wire::write_raw(&mut conn, &wire::words_to_bytes(b.words())),
                None => Ok(()),
            });
            if stopping {
                // Only after the answer went out: the process exits on this.
                let _ = self.stop_tx.send(());
                return;
            }
            if let Err(e) = sent {
                tracing::warn!(lpar = self.hello.lpar, error = %e, "control connection broke");
                return;
            }
        }
    }
}

/// Runs a VM process; returns when the VM stopped.
pub fn run(args: VmArgs) -> anyhow::Result<()> {
    for fd in [wire::MEMORY_FD, wire::CONTROL_FD] {
        // SAFETY: F_GETFD only reads the flags of a descriptor number; a closed one gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            anyhow::bail!(
                "fd {fd} is not open: `hvmsim vm` is started by a blade (`hvmsim serve`), which passes it the guest memory and control socket; do not run it by hand"
            );
        }
    }
    // SAFETY: the blade starts this process with the guest memory file at MEMORY_FD and its end
    // of the control socket pair at CONTROL_FD (see `super::spawn`); nothing else owns them.
    let (memory_fd, control) = unsafe {
        (
            OwnedFd::from_raw_fd(wire::MEMORY_FD),
            UnixStream::from_raw_fd(wire::CONTROL_FD),
        )
    };
    let started = Instant::now();
    let spec: GuestSpec = serde_json::from_str(&args.spec).context("parsing --spec")?;
    let span = tracing::info_span!("vm", lpar = args.lpar);
    let _entered = span.enter();
    let launched = launch(&spec, &memory_fd, args.incoming);
    let mut first = control;
    let (vm, memory) = match launched {
        Ok(v) => v,
        Err(e) => {
            let _ = wire::write_msg(
                &mut first,
                &Response::Failed(WireError::Other(format!("{e:#}"))),
            );
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(&args.socket);
    // The socket drives the guest: created owner-only, not narrowed after. Nothing else this
    // process creates is meant for anyone else.
    // SAFETY: umask only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("listening on {}", args.socket.display()))?;
    let (stop_tx, stop_rx) = mpsc::channel();
    let server = Arc::new(Server {
        hello: VmHello {
            lpar: args.lpar,
            pid: std::process::id(),
            spec,
            kind: vm.kind(),
            awaiting_state: args.incoming,
            activation: started.elapsed(),
        },
        vm,
        state_restored: AtomicBool::new(false),
        stop_tx,
        blade_lock: args.blade_lock.clone(),
        controller: Mutex::new(None),
        detached: Condvar::new(),
    });
    // Attached before the listener accepts anything: the blade that started the VM is its
    // first controller.
    let attached = server
        .attach(&first, Via::Spawner)
        .map_err(anyhow::Error::msg)
        .context("attaching the blade that started the VM")?;
    wire::write_msg(&mut first, &Response::Hello(server.hello()))
        .context("telling the blade the VM started")?;
    {
        let server = Arc::clone(&server);
        spawn_control(move || {
            let _attached = attached;
            server.serve(first);
        });
    }
    {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("vm-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(conn) => {
                            let server = Arc::clone(&server);
                            spawn_control(move || server.attach_and_serve(conn));
                        }
                        Err(e) => tracing::warn!(error = %e, "accepting a control connection"),
                    }
                }
            })
            .context("starting the accept thread")?;
    }
    tracing::info!(socket = %args.socket.display(), "VM running");
    loop {
        match stop_rx.recv_timeout(WATCHDOG_PERIOD) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if !args.socket.exists() => {
                tracing::warn!(
                    "the VM's socket file is gone (the blade's state was removed); stopping"
                );
                server.vm.stop();
                break;
            }
            Err(_) => {}
        }
    }
    remove_socket(&args.socket);
    drop(memory);
    tracing::info!("VM stopped");
    Ok(())
}

/// Runs one control connection on a thread of its own.
fn spawn_control(serve: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("vm-control".into())
        .spawn(serve)
    {
        tracing::error!(error = %e, "starting a control thread");
    }
}

fn launch(
    spec: &GuestSpec,
    memory_fd: &OwnedFd,
    incoming: bool,
) -> anyhow::Result<(LocalVm, Arc<GuestMemory>)> {
    spec.workload.validate()?;
    layout::validate(spec.memory_bytes, spec.vcpus)?;
    let kind = resolve_backend(spec.backend)?;
    let memory = Arc::new(GuestMemory::attach(memory_fd, spec.memory_bytes)?);
    let vm = LocalVm::launch(spec, kind, &memory, incoming)?;
    Ok((vm, memory))
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, path = %path.display(), "removing the VM socket");
    }
}
