//! Two network namespaces joined by a veth pair, shaped with `tc tbf`, for benchmarks.
//!
//! ```text
//!   netns lpm-bench-PID-N-a                      netns lpm-bench-PID-N-b
//!   lo up                                        lo up
//!   lpmbPIDNa  198.18.0.1/24  (management)  ══  lpmbPIDNb  198.18.0.2/24  (management)
//!              198.18.1.1/24  (migration)   tbf            198.18.1.2/24  (migration)
//!              egress: tbf RATE                            egress: tbf RATE
//! ```
//!
//! Management and migration paths sit in different subnets (the checks refuse a migration path
//! that shares the management network) but on the same veth. Addresses come from the RFC 2544 benchmarking range 198.18.0.0/15 and exist only inside the
//! two namespaces this helper creates; nothing is added to the host's own network. Both ends are
//! shaped on egress, so each direction of the link is limited to the rate. Dropping a
//! [`NetnsPair`] deletes both namespaces (which deletes the veth and its qdiscs with them), also
//! when a panic unwinds through its owner.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why the namespaces cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not root.
    #[error(
        "network namespaces need root (CAP_NET_ADMIN); run as root, e.g. `sudo -E lparmover bench live …`"
    )]
    NotRoot,
    /// `ip` or `tc` missing.
    #[error("`{0}` is not installed; install iproute2: `apt-get install -y iproute2`")]
    MissingTool(&'static str),
    /// The kernel refused (no netns, veth or tbf support) or a command failed.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// A command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The throughput probe failed.
    #[error("throughput probe: {0}")]
    Probe(String),
}

/// One end of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// First namespace (the source blade and the manager in the benchmark).
    A,
    /// Second namespace.
    B,
}

/// Addresses of one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndAddresses {
    /// Management address of the blade on this end.
    pub management: Ipv4Addr,
    /// Migration-path address of the blade on this end.
    pub migration: Ipv4Addr,
}

/// Prefix length of the veth subnet.
pub const PREFIX: u8 = 24;

/// Two namespaces and a shaped veth pair between them; deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    names: [String; 2],
    devs: [String; 2],
    rate_bits: Option<u64>,
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that namespaces can be created here: root, `ip` and `tc`. As root in CI (`$CI` set)
/// a missing iproute2 is installed with apt-get first.
pub fn preflight() -> Result<(), NetnsError> {
    // SAFETY: geteuid() has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NetnsError::NotRoot);
    }
    if (!which("ip") || !which("tc")) && std::env::var_os("CI").is_some() && which("apt-get") {
        eprintln!("iproute2 missing in CI: apt-get install -y iproute2");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "iproute2"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    for tool in ["ip", "tc"] {
        if !which(tool) {
            return Err(NetnsError::MissingTool(tool));
        }
    }
    Ok(())
}

impl NetnsPair {
    /// Creates the namespaces, the veth pair, the addresses and (when `rate_bits` is set) a
    /// `tbf` qdisc of that many bits per second on both ends.
    pub fn create(rate_bits: Option<u64>) -> Result<Self, NetnsError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        preflight()?;
        let pid = std::process::id();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pair = Self {
            names: [
                format!("lpm-bench-{pid}-{n}-a"),
                format!("lpm-bench-{pid}-{n}-b"),
            ],
            // Interface names are limited to 15 bytes.
            devs: [
                format!("lpmb{}a", (pid % 100_000) * 100 + n % 100),
                format!("lpmb{}b", (pid % 100_000) * 100 + n % 100),
            ],
            rate_bits,
        };
        // From here on, Drop cleans up whatever was created.
        pair.setup()?;
        Ok(pair)
    }

    fn setup(&self) -> Result<(), NetnsError> {
        let [na, nb] = &self.names;
        let [da, db] = &self.devs;
        run("ip", &["netns", "add", na])?;
        run("ip", &["netns", "add", nb])?;
        // Created directly inside the namespaces: the veth never exists in the host's namespace.
        run(
            "ip",
            &[
                "link", "add", da, "netns", na, "type", "veth", "peer", "name", db, "netns", nb,
            ],
        )?;
        for side in [Side::A, Side::B] {
            let ns = self.name(side);
            let dev = self.dev(side);
            let end = self.addresses(side);
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            for ip in [end.management, end.migration] {
                run(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &format!("{ip}/{PREFIX}"),
                        "dev",
                        dev,
                    ],
                )?;
            }
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            if let Some(rate) = self.rate_bits {
                // Burst: 4 ms at line rate (at least 64 KiB, enough for a GSO super-packet and
                // for the kernel's timer granularity); queue: 10 ms.
                let burst = (rate / 8 / 250).max(64 * 1024);
                run(
                    "tc",
                    &[
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        &format!("{rate}bit"),
                        "burst",
                        &burst.to_string(),
                        "latency",
                        "10ms",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Namespace name of one end.
    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.names[0],
            Side::B => &self.names[1],
        }
    }

    /// veth device of one end (inside its namespace).
    pub fn dev(&self, side: Side) -> &str {
        match side {
            Side::A => &self.devs[0],
            Side::B => &self.devs[1],
        }
    }

    /// Addresses of one end.
    pub fn addresses(&self, side: Side) -> EndAddresses {
        match side {
            Side::A => EndAddresses {
                management: Ipv4Addr::new(198, 18, 0, 1),
                migration: Ipv4Addr::new(198, 18, 1, 1),
            },
            Side::B => EndAddresses {
                management: Ipv4Addr::new(198, 18, 0, 2),
                migration: Ipv4Addr::new(198, 18, 1, 2),
            },
        }
    }

    /// The configured rate, bits per second.
    pub fn rate_bits(&self) -> Option<u64> {
        self.rate_bits
    }

    /// `ip netns exec NS program`: a command that runs `program` inside one end's namespace.
    pub fn command(&self, side: Side, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.name(side)])
            .arg(program);
        command
    }

    /// The qdisc of one end as `tc` prints it.
    pub fn qdisc(&self, side: Side) -> Result<String, NetnsError> {
        run(
            "tc",
            &[
                "-n",
                self.name(side),
                "qdisc",
                "show",
                "dev",
                self.dev(side),
            ],
        )
        .map(|s| s.trim().to_owned())
    }

    /// Bytes sent by both ends of the veth so far (their `tx_bytes`): what crossed the link in
    /// either direction, whoever sent it.
    pub fn link_bytes(&self) -> Result<u64, NetnsError> {
        link_bytes(&[
            (self.name(Side::A), self.dev(Side::A)),
            (self.name(Side::B), self.dev(Side::B)),
        ])
    }

    /// Measures the link A → B with one TCP stream for `duration`, in bits per second.
    ///
    /// Two threads join the namespaces with `setns` (a thread's namespace is its own); plain
    /// blocking sockets, nothing else runs on those threads.
    pub fn probe_tcp(&self, duration: Duration) -> Result<f64, NetnsError> {
        use std::io::{Read, Write};
        let dst = self.addresses(Side::B).migration;
        let ns_b = format!("/run/netns/{}", self.name(Side::B));
        let ns_a = format!("/run/netns/{}", self.name(Side::A));
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || -> Result<u64, String> {
            enter_netns(&ns_b)?;
            let listener = std::net::TcpListener::bind((dst, 0)).map_err(|e| e.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let _ = tx.send(port);
            let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n as u64,
                    Err(e) => return Err(e.to_string()),
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| NetnsError::Probe("receiver did not start".into()))?;
        let client = std::thread::spawn(move || -> Result<(u64, Duration), String> {
            enter_netns(&ns_a)?;
            let mut stream =
                std::net::TcpStream::connect((dst, port)).map_err(|e| e.to_string())?;
            let buf = vec![0x5au8; 1 << 16];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < duration {
                stream.write_all(&buf).map_err(|e| e.to_string())?;
                sent += buf.len() as u64;
            }
            stream
                .shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            Ok((sent, start.elapsed()))
        });
        let (_, _) = client
            .join()
            .map_err(|_| NetnsError::Probe("sender panicked".into()))?
            .map_err(NetnsError::Probe)?;
        let start_recv = Instant::now();
        let received = server
            .join()
            .map_err(|_| NetnsError::Probe("receiver panicked".into()))?
            .map_err(NetnsError::Probe)?;
        // The receiver finished when the last byte arrived: measure bytes over the whole span.
        let span = duration + start_recv.elapsed();
        Ok(received as f64 * 8.0 / span.as_secs_f64())
    }
}

/// Sum of `tx_bytes` of each `(namespace, device)`, read with `ip -s -j link show`.
pub fn link_bytes(ends: &[(&str, &str)]) -> Result<u64, NetnsError> {
    let mut total = 0u64;
    for (ns, dev) in ends {
        let text = run("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
        let tx = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get(0)?.get("stats64")?.get("tx")?.get("bytes")?.as_u64())
            .ok_or_else(|| NetnsError::Command {
                command: format!("ip -n {ns} -s -j link show dev {dev}"),
                stderr: format!("no stats64.tx.bytes in {text}"),
            })?;
        total = total.saturating_add(tx);
    }
    Ok(total)
}

/// Moves the calling thread into the network namespace bound at `path`.
fn enter_netns(path: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns() takes a valid open descriptor (kept alive by `file` for the call) and a
    // namespace type; it only changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for name in &self.names {
            // Deleting a namespace deletes the veth end inside it, which deletes its peer.
            if let Err(e) = run("ip", &["netns", "del", name]) {
                tracing::debug!(%name, error = %e, "netns cleanup");
            }
        }
    }
}
