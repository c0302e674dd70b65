//! The live-move benchmark behind `lparmover bench live`: real `hvmsim serve` processes with
//! real guests, an LPAR moved back and forth through [`crate::jobs::live_move`], per link.
//!
//! # Links and where each process runs
//!
//! * **loopback**: both blades on 127.0.1.x/127.0.2.x addresses of the host's loopback; the
//!   manager (this process) drives the moves directly.
//! * **1gbit / 10gbit**: a [`netns::NetnsPair`] — two network namespaces joined by a veth pair,
//!   `tc tbf` on both ends' egress. Each blade runs inside its own namespace
//!   (`ip netns exec NS hvmsim fleet …`), with its management *and* migration-path addresses
//!   on its veth end (198.18.0.1 + 198.18.1.1 and 198.18.0.2 + 198.18.1.2, RFC 2544's benchmarking range,
//!   allowed only by the fleet's explicit `network = "netns-bench"`). The manager must reach
//!   both management APIs, so the bench re-executes itself inside namespace A
//!   (`ip netns exec A lparmover bench worker SPEC`): blade A's API is local there, blade B's is
//!   across the veth, exactly like a manager sitting next to one blade. This was chosen over a
//!   second, unshaped veth pair from the host namespace because it needs no address, route or
//!   interface outside the two namespaces and no per-thread `setns` games inside the async
//!   runtime; the price is that management requests to blade B share the shaped link (a few
//!   KB per move next to gigabytes of memory). The worker prints its [`CaseResult`] as one
//!   JSON line on stdout; the parent renders every case together.
//!
//! # What is measured
//!
//! Per repetition, from the job's [`crate::jobs::LiveMoveReport`]: the total job time, the
//! guest-visible suspension (heartbeat-based), wire bytes and memory size, memory throughput,
//! and the CPU time (user + system) of both blade process trees from `/proc/PID/stat` over the
//! move. Before the first move the blades' idle CPU is sampled, so the per-move CPU can be read
//! against the guests' own load.

pub mod fleet;
pub mod hugepages;
pub mod netns;
pub mod predict;
mod procstat;
pub mod qemu;
pub mod report;
mod runner;
pub mod vsqemu;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use report::{CaseSummary, Ratio, Stats, Summary, Verdict, render, summarize};
pub use runner::run_case;

/// Share of its configured dirty rate a guest must achieve during a move to count as carrying
/// its load.
pub const CARRIED_LOAD_SHARE: f64 = 0.9;

/// Whether a guest configured for `configured` MB/s that achieved `achieved` during a move
/// carried its load: at least [`CARRIED_LOAD_SHARE`] of it (an idle guest always does; an
/// unknown rate does not).
pub fn carried_load(configured: f64, achieved: Option<f64>) -> bool {
    configured <= 0.0 || achieved.is_some_and(|a| a >= CARRIED_LOAD_SHARE * configured)
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// File or process I/O.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Namespaces or shaping.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// The generated fleet file is invalid.
    #[error(transparent)]
    Fleet(#[from] crate::model::FleetError),
    /// A profile could not be read.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    /// A blade did not come up.
    #[error("blade {blade}: {message}")]
    Blade { blade: String, message: String },
    /// A move failed.
    #[error("move {rep} ({direction}): {source}")]
    Move {
        rep: u32,
        direction: String,
        #[source]
        source: Box<crate::jobs::JobError>,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// The path between the two blades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Link {
    /// The host's loopback, unshaped.
    #[serde(rename = "loopback")]
    Loopback,
    /// veth between namespaces, `tbf rate 1gbit`.
    #[serde(rename = "1gbit")]
    Gbit1,
    /// veth between namespaces, `tbf rate 10gbit`.
    #[serde(rename = "10gbit")]
    Gbit10,
    /// veth between namespaces, unshaped.
    #[serde(rename = "veth")]
    Veth,
}

impl Link {
    /// Shaping rate in bits per second (None = unshaped).
    pub fn rate_bits(self) -> Option<u64> {
        match self {
            Self::Loopback | Self::Veth => None,
            Self::Gbit1 => Some(1_000_000_000),
            Self::Gbit10 => Some(10_000_000_000),
        }
    }

    /// Whether the blades run in a pair of network namespaces (every link but loopback).
    pub fn in_netns(self) -> bool {
        !matches!(self, Self::Loopback)
    }

    /// Short name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Gbit1 => "1gbit",
            Self::Gbit10 => "10gbit",
            Self::Veth => "veth",
        }
    }
}

/// One benchmark case: a link, an LPAR and how often to move it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseSpec {
    /// Label shown in the table, e.g. `1gbit` or `1gbit dirty 200`.
    pub label: String,
    /// Path between the blades.
    pub link: Link,
    /// LPAR memory, MiB.
    pub memory_mib: u64,
    /// Guest dirty rate, MB/s.
    pub dirty_mbps: f64,
    /// Moves (alternating A → B, B → A).
    pub reps: u32,
    /// Whether this is the convergence case (must complete by throttling).
    pub convergence: bool,
    /// vCPUs of the LPAR (None: the bench fleet's 2).
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Touch (and free) the LPAR's memory size in this process right before each move, so the
    /// destination's new guest memory lands on memory the host already backs (see
    /// [`touch_host_memory`]).
    #[serde(default)]
    pub pretouch: bool,
    /// Rehearse each move just before it runs and keep the rehearsal's predictions beside
    /// the move's figures (`bench predict`).
    #[serde(default)]
    pub rehearse: bool,
}

/// Populates and frees `bytes` of anonymous memory. On a virtual machine whose host backs its
/// memory on first touch (and takes freed memory back through free page reporting, after a
/// couple of seconds), memory allocated right afterwards reuses pages the host already backs:
/// a benchmark calls this just before a move so that neither side pays the host's first touch.
pub fn touch_host_memory(bytes: u64) {
    let Ok(len) = usize::try_from(bytes) else {
        return;
    };
    // SAFETY: a fresh private anonymous mapping with no address hint, populated by the kernel,
    // then unmapped; no Rust reference to it exists.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            libc::munmap(p, len);
        }
    }
}

/// Where the blades of a case run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseEnv {
    /// The hvmsim executable.
    pub hvmsim: PathBuf,
    /// Scratch directory (fleet files, blade state, logs).
    pub workdir: PathBuf,
    /// Namespaces of blade A and blade B with their addresses; None = host loopback.
    pub netns: Option<[NetnsEnd; 2]>,
}

/// One blade's namespace and addresses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetnsEnd {
    /// Namespace name.
    pub name: String,
    /// Management address.
    pub management: std::net::Ipv4Addr,
    /// Migration-path address.
    pub migration: std::net::Ipv4Addr,
    /// The veth end inside the namespace.
    #[serde(default)]
    pub dev: String,
}

impl CaseEnv {
    /// The environment for the blades on the two ends of `pair`.
    pub fn in_netns(hvmsim: PathBuf, workdir: PathBuf, pair: &netns::NetnsPair) -> Self {
        let end = |side| {
            let a = pair.addresses(side);
            NetnsEnd {
                name: pair.name(side).to_owned(),
                management: a.management,
                migration: a.migration,
                dev: pair.dev(side).to_owned(),
            }
        };
        Self {
            hvmsim,
            workdir,
            netns: Some([end(netns::Side::A), end(netns::Side::B)]),
        }
    }
}

/// One move.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rep {
    /// `bench-a → bench-b` or back.
    pub direction: String,
    /// Whole job, s.
    pub total_s: f64,
    /// Guest-visible pause from the heartbeat, ms.
    pub suspension_ms: Option<f64>,
    /// The sender's own pause measurement, ms.
    pub mover_downtime_ms: f64,
    /// Memory transfer (connect → destination ready), s.
    pub transfer_s: f64,
    /// Guest memory size, bytes.
    pub memory_size: u64,
    /// Memory bytes sent over all rounds.
    pub memory_sent: u64,
    /// Bytes on the wire.
    pub wire_bytes: u64,
    /// Pre-copy rounds.
    pub rounds: u32,
    /// Highest throttle, percent.
    pub max_throttle_percent: u8,
    /// Memory throughput as the mover reports it, MB/s.
    pub memory_mbps: f64,
    /// CPU (user + sys) of both blade process trees over the move, s.
    pub cpu_s: f64,
    /// Dirty rate the guest achieved over the move, from its own write counter (source before,
    /// destination after), MB/s.
    #[serde(default)]
    pub achieved_dirty_mbps: Option<f64>,
    /// Bytes that crossed the veth link (both ends' `tx_bytes`) during the move; None on
    /// loopback.
    #[serde(default)]
    pub link_bytes: Option<u64>,
    /// The total time the rehearsal just before the move predicted, s (`bench predict`).
    #[serde(default)]
    pub predicted_total_s: Option<f64>,
    /// The suspension it predicted, ms.
    #[serde(default)]
    pub predicted_suspension_ms: Option<f64>,
}

/// The result of one case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// What ran.
    pub spec: CaseSpec,
    /// TCP probe of the shaped link before the case, Gbit/s.
    pub probe_gbits: Option<f64>,
    /// CPU of both blades while idle (guests running, nothing moving), cores.
    pub idle_cpu_cores: f64,
    /// Every move.
    pub reps: Vec<Rep>,
    /// Why the case stopped early, if it did.
    pub error: Option<String>,
}
