//! Progress events of a move and its final summary (serde, for the manager's HTTP API).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire::Encoding;

/// Where a move is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Connecting to the destination's migration path.
    #[default]
    Connecting,
    /// TLS done, presenting the job ticket.
    Handshake,
    /// Iterative pre-copy rounds while the guest runs.
    PreCopy,
    /// The guest is paused; the last dirty pages and the vCPU state are on their way.
    Suspended,
    /// The destination holds everything, paused; waiting for the caller's commit decision.
    SwitchoverReady,
    /// The caller committed; the destination is authoritative.
    Committed,
    /// The move was cancelled; the source runs on, the destination was scrubbed.
    Cancelled,
    /// The move timed out without converging; the source runs on.
    TimedOut,
    /// The move failed; the source runs on.
    Failed,
    /// The caller decided not to commit after the switchover; the source resumed.
    Aborted,
}

impl Stage {
    /// The seed's stage number where it has one (`0x4050: (SRC) Transferring Memory Data`, the
    /// only stage in which Extend timeout and Cancel Migration are offered).
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::PreCopy => Some(0x4050),
            _ => None,
        }
    }

    /// The operator-facing label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "(SRC) Connecting to Destination",
            Self::Handshake => "(SRC) Authenticating Migration Path",
            Self::PreCopy => "(SRC) Transferring Memory Data",
            Self::Suspended => "(SRC) Suspending LPAR and Transferring Final Data",
            Self::SwitchoverReady => "(DST) LPAR Ready to Resume",
            Self::Committed => "Switch-over Committed",
            Self::Cancelled => "Canceled",
            Self::TimedOut => "Timed Out",
            Self::Failed => "Failed",
            Self::Aborted => "Aborted after Suspension",
        }
    }
}

/// How pages are being sent and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressionChoice {
    /// The encoding of non-zero pages in use.
    pub encoding: Encoding,
    /// Why (measured figures).
    pub reason: String,
}

impl Default for CompressionChoice {
    fn default() -> Self {
        Self {
            encoding: Encoding::Raw,
            reason: "not decided yet".into(),
        }
    }
}

/// One progress event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Where the move is.
    pub stage: Stage,
    /// Current pre-copy round (0 = full copy).
    pub round: u32,
    /// Guest memory size in bytes.
    pub memory_size: u64,
    /// Bytes put on the wire so far (frames, after zero elision and compression).
    pub wire_bytes_sent: u64,
    /// Guest memory bytes sent so far (pages × page size, zero pages included).
    pub memory_bytes_sent: u64,
    /// Memory bytes still to send in this round plus the dirty bytes known at its start.
    pub bytes_remaining: u64,
    /// Rate at which the guest dirties memory, MB/s (10^6 bytes).
    pub dirty_rate_mbps: f64,
    /// Path throughput in MB/s of wire bytes, measured on the last round.
    pub wire_throughput_mbps: f64,
    /// Throughput in MB/s of guest memory, measured on the last round.
    pub memory_throughput_mbps: f64,
    /// Memory bytes ÷ wire bytes so far (zero pages and zstd).
    pub compression_ratio: f64,
    /// Encoding in use and why.
    pub compression: CompressionChoice,
    /// Suspension time expected if the guest were paused now, ms.
    pub expected_suspension_ms: Option<f64>,
    /// Current auto-converge throttle, percent.
    pub throttle_percent: u8,
    /// Time since the move started, ms.
    pub elapsed_ms: u64,
    /// Seconds before the move times out.
    pub timeout_in_s: u64,
    /// Latest notable event, for the operator ("auto-converge: throttling vCPUs to 30 %").
    pub note: Option<String>,
    /// The cap on wire bytes per second in force now (`None` = none); it can change while the
    /// move runs (a policy re-splits its shared cap as entries start and finish).
    #[serde(default)]
    pub bandwidth_limit: Option<u64>,
}

/// Figures of a finished move.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveSummary {
    /// Connect → destination ready.
    #[serde(with = "duration_ms")]
    pub total_time: Duration,
    /// Pause of the source → the destination's Ready, as the sender measured it.
    #[serde(with = "duration_ms")]
    pub downtime: Duration,
    /// Rounds including the final one.
    pub rounds: u32,
    /// Guest memory size.
    pub memory_size: u64,
    /// Memory bytes sent over all rounds.
    pub memory_bytes_sent: u64,
    /// Bytes put on the wire (frames).
    pub wire_bytes: u64,
    /// Pages sent as a zero bit only.
    pub pages_zero: u64,
    /// Pages sent raw.
    pub pages_raw: u64,
    /// Pages sent zstd-compressed.
    pub pages_compressed: u64,
    /// Pages in the final (paused) round.
    pub final_round_pages: u64,
    /// Highest throttle applied, percent.
    pub max_throttle_percent: u8,
    /// Encoding chosen last, and why.
    pub compression: CompressionChoice,
    /// Average memory throughput (memory bytes sent ÷ total time), MB/s.
    pub memory_throughput_mbps: f64,
    /// Whether the destination compared digests and they matched.
    pub verified: bool,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64((ms / 1e3).max(0.0)))
    }
}
