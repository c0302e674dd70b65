//! Migration jobs run by the manager: the live move (Concurrent Maintenance), the Shutdown-mode
//! move and the rehearsal, sharing leases, checks and the blades' migration primitives.

pub mod cold;
pub mod fault;
pub mod journal;
pub mod leases;
pub mod live;
pub mod recovery;
pub mod rehearsal;
pub mod wwn;

pub use cold::{ColdMoveReport, ColdMoveRequest, shutdown_move};
pub use live::{
    JobError, JobProgress, JobStage, LiveMoveReport, LiveMoveRequest, live_move, new_job_id,
};
pub use recovery::{LparRecovery, RecoveryReport, recover_lpars, recover_unfinished};
pub use rehearsal::{RehearsalReport, rehearse};
pub use wwn::{WwnError, WwnRollbackReport, rollback_all, rollback_wwn};

/// Whether `text` is a job id as [`new_job_id`] makes them (`job-YYYYMMDD-HHMMSS-xxxx`): an HVM
/// holding a lease for such a purpose is busy with a migration, not with some other operation.
pub fn is_job_id(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("job-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    matches!(parts.as_slice(), [date, time, suffix]
        if date.len() == 8 && time.len() == 6 && suffix.len() == 4
            && date.chars().chain(time.chars()).all(|c| c.is_ascii_digit())
            && suffix.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_recognised() {
        assert!(is_job_id(&new_job_id()));
        assert!(is_job_id("job-20261122-021500-0a9f"));
        for other in ["maintenance", "job-t1", "job-2026-01-01", "restore-config"] {
            assert!(!is_job_id(other), "{other}");
        }
    }
}
