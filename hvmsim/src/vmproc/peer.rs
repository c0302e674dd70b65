//! Who is on the other end of a VM control socket, as the kernel reports it (`SO_PEERCRED`),
//! never as the peer says; and [`VerifiedPid`], the only way the blade can name a VM process it
//! signals or whose `/proc` entry it reads.
//!
//! Both ends check: a VM process takes a controller only if it runs as the VM's own uid
//! ([`check_uid`]); a blade takes a VM process only if it runs as the blade's uid and is the
//! process its hello names ([`VerifiedPid::of_peer`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::{Duration, Instant};

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd on the very process whose credentials `SO_PEERCRED`
/// reports. The `libc` crate does not export it for this target.
const SO_PEERPIDFD: libc::c_int = 77;

/// Why a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The kernel could not say who the peer is.
    #[error("cannot read the credentials of the socket's peer: {0}")]
    Credentials(#[source] io::Error),
    /// The peer runs as another user.
    #[error("the peer (pid {pid}) runs as uid {peer}, not as this process's uid {own}")]
    ForeignUid {
        /// The peer's pid.
        pid: u32,
        /// The peer's effective uid.
        peer: u32,
        /// Ours.
        own: u32,
    },
    /// The peer's hello names another process than the kernel does.
    #[error(
        "the VM process says it is pid {claimed}, but the kernel says the socket's peer is pid {actual}; refused, and neither pid is signalled"
    )]
    PidMismatch {
        /// The pid in the hello.
        claimed: u32,
        /// The pid `SO_PEERCRED` (or `fork`) reports.
        actual: u32,
    },
    /// No pidfd could be had on the verified process (it exited?).
    #[error("cannot get a pidfd on pid {pid}: {source}")]
    Pidfd {
        /// The verified pid.
        pid: u32,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// The credentials a socket's peer had when it connected, listened or made the socket pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Its process id (thread group id).
    pub pid: u32,
    /// Its effective uid.
    pub uid: u32,
}

/// `SO_PEERCRED` of a connected Unix socket (`UnixStream::peer_cred` is not stable in std).
pub fn peer_cred(conn: &UnixStream) -> Result<PeerCred, PeerError> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = socklen_of::<libc::ucred>();
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a live `ucred` of exactly that
    // size, and updates `len`; the descriptor is open for the call because `conn` borrows it.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(PeerError::Credentials(io::Error::last_os_error()));
    }
    match u32::try_from(cred.pid) {
        Ok(pid) if pid > 0 && len == socklen_of::<libc::ucred>() => {
            Ok(PeerCred { pid, uid: cred.uid })
        }
        _ => Err(PeerError::Credentials(io::Error::other(
            "the kernel recorded no peer for this socket",
        ))),
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    // A ucred or an int: a dozen bytes at most.
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// This process's effective uid (what `SO_PEERCRED` reports of us to our peers).
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a peer that runs as another user than `own`.
pub fn check_uid(peer: PeerCred, own: u32) -> Result<(), PeerError> {
    if peer.uid == own {
        Ok(())
    } else {
        Err(PeerError::ForeignUid {
            pid: peer.pid,
            peer: peer.uid,
            own,
        })
    }
}

/// Whether process `pid` holds an exclusive `flock` on `lock_file` through one of its open
/// descriptors, as the kernel reports it: `/proc/PID/fdinfo/N` lists a `lock:` line only for
/// locks held through that very descriptor. Needs the access to `/proc/PID/fd` that a process of
/// the same uid has.
pub fn holds_flock(pid: u32, lock_file: &std::path::Path) -> io::Result<bool> {
    let want = std::fs::canonicalize(lock_file)?;
    let fds = std::path::PathBuf::from(format!("/proc/{pid}/fd"));
    for entry in std::fs::read_dir(&fds)? {
        let entry = entry?;
        // A descriptor closed while we look is no lock.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target != want {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info) else {
            continue;
        };
        let exclusive_flock = |line: &str| {
            let mut fields = line.split_whitespace();
            fields.next() == Some("lock:")
                && fields.nth(1) == Some("FLOCK")
                && fields.nth(1) == Some("WRITE")
        };
        if info.lines().any(exclusive_flock) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The pid of a VM process as the kernel reported it, with a pidfd on that very process.
///
/// The only constructors check the kernel's view against what the process said: there is no
/// way to make one from a number read off the wire. Signals go through the pidfd
/// (`pidfd_send_signal`), not `kill(pid)`: a VM process that exits between our checks and our
/// signal frees its pid for reuse, and `kill` would then hit whichever process got the number.
/// A pidfd refers to one process for its whole life; once that process is gone, signalling it
/// fails with `ESRCH` and reaches nobody else.
#[derive(Debug)]
pub struct VerifiedPid {
    pid: u32,
    pidfd: OwnedFd,
}

impl VerifiedPid {
    /// The process on the other end of `conn` (which it listens on: we connected), if it runs
    /// as our uid and is the process `claimed` that its hello names.
    pub fn of_peer(conn: &UnixStream, claimed: u32) -> Result<Self, PeerError> {
        let cred = peer_cred(conn)?;
        check_uid(cred, own_uid())?;
        if cred.pid != claimed {
            return Err(PeerError::PidMismatch {
                claimed,
                actual: cred.pid,
            });
        }
        // SO_PEERPIDFD names the process the socket recorded, with no window for pid reuse;
        // only on a kernel without it (before 6.5) do we look the pid up again, which leaves the
        // short window between the peer's listen(2) and our pidfd_open(2).
        let pidfd = match peer_pidfd(conn) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                pidfd_open(cred.pid).map_err(|source| PeerError::Pidfd {
                    pid: cred.pid,
                    source,
                })?
            }
            Err(source) => {
                return Err(PeerError::Pidfd {
                    pid: cred.pid,
                    source,
                });
            }
        };
        Ok(Self {
            pid: cred.pid,
            pidfd,
        })
    }

    /// The VM process we started as `child`, if its hello names it.
    ///
    /// Its first connection is one end of a socket pair we made, and `SO_PEERCRED` of a pair
    /// reports the process that made it (us), so here `fork` is the kernel's word on the pid;
    /// a child not yet reaped cannot lose its pid to another process, so the pidfd opened now
    /// is its own.
    pub(super) fn of_child(child: &Child, claimed: u32) -> Result<Self, PeerError> {
        let pid = child.id();
        if pid != claimed {
            return Err(PeerError::PidMismatch {
                claimed,
                actual: pid,
            });
        }
        let pidfd = pidfd_open(pid).map_err(|source| PeerError::Pidfd { pid, source })?;
        Ok(Self { pid, pidfd })
    }

    /// The process id (for logs and for `/proc/PID`, confirmed with [`Self::running`] after use).
    pub fn get(&self) -> u32 {
        self.pid
    }

    /// Whether the process has not exited yet (a zombie has). While it is running, its pid
    /// names it and nothing else.
    pub fn running(&self) -> bool {
        !self.wait_exit(Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to exit; whether it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            let mut fds = [libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll reads and writes exactly the one pollfd of the array it is given; the
            // pidfd is open for the call because `self` owns it.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
            if n > 0 {
                // A pidfd polls readable once its process exited.
                return true;
            }
            if n == 0 {
                return false;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(pid = self.pid, error = %e, "polling a VM process's pidfd");
                return false;
            }
        }
    }

    /// Sends SIGKILL to this process and no other.
    pub fn kill(&self) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0) reads no memory of ours;
        // the pidfd is open for the call because `self` owns it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A pidfd on the process the kernel recorded as `conn`'s peer.
fn peer_pidfd(conn: &UnixStream) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = socklen_of::<libc::c_int>();
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, a live int of that size; the
    // socket is open for the call because `conn` borrows it.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    owned_cloexec(fd)
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: pidfd_open(pid, flags = 0) takes no pointers; it returns a new descriptor (which
    // we then own) or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(r).map_err(|_| io::Error::other("descriptor out of range"))?;
    owned_cloexec(fd)
}

/// Takes ownership of a descriptor the kernel just gave us, and keeps it from the VM processes
/// this process starts later (pidfds are close-on-exec already; this makes sure of it).
fn owned_cloexec(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::other("the kernel returned no descriptor"));
    }
    // SAFETY: `fd` is a descriptor the kernel has just opened for us and nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD only sets the flags of a descriptor we own.
    if unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_process_holding_the_lock_through_its_own_descriptor_is_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blade.lock");
        let me = std::process::id();
        let file = std::fs::File::create(&path).unwrap();
        assert!(!holds_flock(me, &path).unwrap(), "open is not locked");
        file.try_lock().unwrap();
        assert!(holds_flock(me, &path).unwrap(), "we hold it");
        let other = dir.path().join("other.lock");
        let _open = std::fs::File::create(&other).unwrap();
        assert!(!holds_flock(me, &other).unwrap(), "another file, unlocked");
        let mut bystander = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(
            !holds_flock(bystander.id(), &path).unwrap(),
            "a process without the file does not hold it"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
        file.unlock().unwrap();
        assert!(!holds_flock(me, &path).unwrap(), "released");
        assert!(holds_flock(me, &dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_peer_of_another_uid_is_refused_and_one_of_ours_accepted() {
        let peer = PeerCred { pid: 42, uid: 1000 };
        assert!(check_uid(peer, 1000).is_ok());
        let e = check_uid(peer, 0).unwrap_err();
        assert!(
            matches!(
                e,
                PeerError::ForeignUid {
                    pid: 42,
                    peer: 1000,
                    own: 0
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_connected_socket_reports_the_listening_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let conn = UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let me = PeerCred {
            pid: std::process::id(),
            uid: own_uid(),
        };
        assert_eq!(peer_cred(&conn).unwrap(), me);
        assert_eq!(peer_cred(&accepted).unwrap(), me);
        let verified = VerifiedPid::of_peer(&conn, std::process::id()).unwrap();
        assert_eq!(verified.get(), std::process::id());
        assert!(verified.running());
        let e = VerifiedPid::of_peer(&conn, 1).unwrap_err();
        assert!(
            matches!(e, PeerError::PidMismatch { claimed: 1, actual } if actual == std::process::id()),
            "{e}"
        );
    }

    #[test]
    fn a_pidfd_sees_its_process_exit_and_kills_only_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let verified = VerifiedPid::of_child(&child, child.id()).unwrap();
        assert!(VerifiedPid::of_child(&child, child.id() + 1).is_err());
        assert!(verified.running());
        assert!(!verified.wait_exit(Duration::from_millis(50)));
        verified.kill().unwrap();
        assert!(verified.wait_exit(Duration::from_secs(10)));
        child.wait().unwrap();
        // Reaped: the pid may belong to anyone now, and the pidfd still reaches nobody.
        assert_eq!(
            verified.kill().unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }
}
