//! What a blade and a VM process say to each other over the VM's control socket.
//!
//! One request, one response, in order. A frame is a little-endian `u32` length and a JSON
//! body; a dirty bitmap follows its [`Response::Bitmap`] as one raw frame of little-endian
//! words (128 KiB for a 4 GiB guest), so no JSON number array is built per round.

use std::io::{Read, Write};
use std::time::Duration;

use lparmover::model::GuestSpec;
use lparmover::partition::{PartitionError, VcpuState};
use serde::{Deserialize, Serialize};

use crate::guest::BackendKind;
use crate::guest::vm::VmStatus;

/// Largest frame accepted: bounds what a confused peer can make us allocate.
const MAX_FRAME: usize = 64 << 20;

/// The fd number a VM process finds its guest memory file at.
pub const MEMORY_FD: i32 = 3;
/// The fd number a VM process finds its first control connection at.
pub const CONTROL_FD: i32 = 4;

/// Who a VM process is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmHello {
    /// LPAR number on its blade.
    pub lpar: u8,
    /// Process id (its memory file is `/proc/PID/fd/3`).
    pub pid: u32,
    /// What it runs.
    pub spec: GuestSpec,
    /// Backend running the vCPUs.
    pub kind: BackendKind,
    /// An incoming guest that has not received vCPU state yet.
    pub awaiting_state: bool,
    /// How long activation took.
    pub activation: Duration,
}

/// A blade's request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Who are you?
    Hello,
    /// Run state.
    Status,
    /// See [`crate::guest::vm::VmOps`].
    StartDirtyLog,
    /// See [`crate::guest::vm::VmOps`].
    StopDirtyLog,
    /// Answered by [`Response::Bitmap`] and a raw frame.
    TakeDirtyLog,
    /// See [`crate::guest::vm::VmOps`].
    SaveState,
    /// See [`crate::guest::vm::VmOps`].
    RestoreState(VcpuState),
    /// See [`crate::guest::vm::VmOps`].
    Pause,
    /// See [`crate::guest::vm::VmOps`].
    Resume,
    /// MB/s.
    SetRate(f64),
    /// Percent.
    SetThrottle(u8),
    /// The guest OS powers off after this long.
    RequestShutdown(Duration),
    /// Stop the vCPUs and exit.
    Stop,
}

/// A VM process's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// To [`Request::Hello`].
    Hello(VmHello),
    /// Done.
    Done,
    /// To [`Request::Status`].
    Status(VmStatus),
    /// To [`Request::Pause`]: how long the vCPUs took to park.
    Paused(Duration),
    /// To [`Request::SaveState`].
    State(VcpuState),
    /// To [`Request::TakeDirtyLog`]: a raw frame of the bitmap's words follows.
    Bitmap {
        /// Pages the bitmap covers.
        pages: u64,
    },
    /// The request failed.
    Failed(WireError),
}

/// A [`PartitionError`] that crossed the socket: the variants callers act on keep their kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WireError {
    /// [`PartitionError::GuestStopped`].
    GuestStopped(String),
    /// [`PartitionError::IncompatibleState`].
    IncompatibleState(String),
    /// [`PartitionError::NotPaused`].
    NotPaused,
    /// Anything else, as text.
    Other(String),
}

impl From<&PartitionError> for WireError {
    fn from(e: &PartitionError) -> Self {
        match e {
            PartitionError::GuestStopped(why) => Self::GuestStopped(why.clone()),
            PartitionError::IncompatibleState(why) => Self::IncompatibleState(why.clone()),
            PartitionError::NotPaused => Self::NotPaused,
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<WireError> for PartitionError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::GuestStopped(why) => Self::GuestStopped(why),
            WireError::IncompatibleState(why) => Self::IncompatibleState(why),
            WireError::NotPaused => Self::NotPaused,
            WireError::Other(why) => Self::Backend {
                what: "the VM process",
                source: std::io::Error::other(why),
            },
        }
    }
}

/// Writes one raw frame.
pub fn write_raw(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other(format!("frame of {} bytes", body.len())))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one raw frame.
pub fn read_raw(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is above the {MAX_FRAME}-byte bound"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Writes one JSON frame.
pub fn write_msg<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    write_raw(w, &body)
}

/// Reads one JSON frame.
pub fn read_msg<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    let body = read_raw(r)?;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Little-endian bytes of bitmap words.
pub fn words_to_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Bitmap words from little-endian bytes (a trailing partial word is an error).
pub fn bytes_to_words(bytes: &[u8]) -> std::io::Result<Vec<u64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bitmap frame is not whole words",
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &Request::SetThrottle(40)).expect("write");
        write_raw(&mut buf, &words_to_bytes(&[1, u64::MAX])).expect("write");
        let mut r = buf.as_slice();
        assert!(matches!(
            read_msg::<Request>(&mut r),
            Ok(Request::SetThrottle(40))
        ));
        let words = bytes_to_words(&read_raw(&mut r).expect("raw")).expect("words");
        assert_eq!(words, vec![1, u64::MAX]);
        let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(read_raw(&mut huge.as_slice()).is_err());
        assert!(bytes_to_words(&[0; 7]).is_err());
    }

    #[test]
    fn partition_errors_keep_their_kind_across_the_socket() {
        let e = PartitionError::IncompatibleState("other backend".into());
        let back: PartitionError = WireError::from(&e).into();
        assert!(matches!(back, PartitionError::IncompatibleState(w) if w == "other backend"));
        let back: PartitionError = WireError::from(&PartitionError::NotPaused).into();
        assert!(matches!(back, PartitionError::NotPaused));
    }
}
