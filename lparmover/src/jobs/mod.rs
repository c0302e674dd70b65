//! Migration jobs run by the manager: the live move (Concurrent Maintenance) today; Shutdown
//! mode, rehearsal and recovery build on the same steps.

pub mod live;

pub use live::{
    JobError, JobProgress, JobStage, LiveMoveReport, LiveMoveRequest, live_move, new_job_id,
};
