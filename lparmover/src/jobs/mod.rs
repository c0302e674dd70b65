//! Migration jobs run by the manager: the live move (Concurrent Maintenance), the Shutdown-mode
//! move and the rehearsal, sharing leases, checks and the blades' migration primitives.

pub mod cold;
pub mod fault;
pub mod journal;
pub mod leases;
pub mod live;
pub mod recovery;
pub mod rehearsal;

pub use cold::{ColdMoveReport, ColdMoveRequest, shutdown_move};
pub use live::{
    JobError, JobProgress, JobStage, LiveMoveReport, LiveMoveRequest, live_move, new_job_id,
};
pub use recovery::{LparRecovery, RecoveryReport, recover_lpars, recover_unfinished};
pub use rehearsal::{RehearsalReport, rehearse};
