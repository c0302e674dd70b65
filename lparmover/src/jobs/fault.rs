//! A test hook: a job stops at a named stage so a fault-injection test can act there (kill a
//! process, cut the migration path, fill a disk) and then let it go on.
//!
//! Compiled in only with the `fault-injection` cargo feature, which only the end-to-end tests
//! enable: an operator's build ignores these variables, so no environment can stall a job.
//! With it, off unless `LPARMOVER_FAULT_BARRIER=<stage>` and `LPARMOVER_FAULT_DIR=<dir>` are set: the job
//! writes `<dir>/reached` (containing the stage) when it gets there, then waits until
//! `<dir>/go` exists. Stages of a live move: `prepare`, `round0`, `rounds`, `suspension`,
//! `commit`, `swap`, `release`; of a Shutdown-mode move: `cold-prepare`, `cold-shutdown`,
//! `cold-define`, `cold-release`. Each barrier fires once per process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Environment variable naming the stage to stop at.
pub const BARRIER_ENV: &str = "LPARMOVER_FAULT_BARRIER";
/// Environment variable naming the directory of the handshake files.
pub const DIR_ENV: &str = "LPARMOVER_FAULT_DIR";

static FIRED: AtomicBool = AtomicBool::new(false);

#[cfg(not(feature = "fault-injection"))]
fn armed_for(_stage: &str) -> Option<PathBuf> {
    None
}

#[cfg(feature = "fault-injection")]
fn armed_for(stage: &str) -> Option<PathBuf> {
    let want = std::env::var(BARRIER_ENV).ok()?;
    if want != stage {
        return None;
    }
    std::env::var_os(DIR_ENV).map(PathBuf::from)
}

/// Whether a barrier is armed for `stage` (lets callers skip work to detect it).
pub fn armed(stage: &str) -> bool {
    !FIRED.load(Ordering::Relaxed) && armed_for(stage).is_some()
}

/// Stops here if the hook is armed for `stage`, until the test says go.
pub async fn barrier(stage: &str) {
    let Some(dir) = armed_for(stage) else {
        return;
    };
    if FIRED.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::warn!(stage, dir = %dir.display(), "fault-injection barrier reached; waiting for go");
    if let Err(e) = crate::fsutil::write_atomic(&dir.join("reached"), stage.as_bytes()) {
        tracing::warn!(error = %e, "fault barrier: cannot write the handshake file");
        return;
    }
    while !dir.join("go").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
