//! lparmover: the manager side of LPAR migration.
//!
//! It owns the domain model, the HVM and array API contract, compatibility checks, the LPAR Mover
//! pre-copy protocol (generic over [`partition::Partition`]), migration jobs, and history.
//! It never depends on hvmsim, the navigator or the policy runner.

pub mod api;
pub mod backup;
pub mod bench;
pub mod checks;
pub mod connectivity;
pub mod dirs;
pub mod emg;
pub mod fleetview;
pub use lpm_formats::format;
pub mod fsutil;
pub mod history;
pub mod jobs;
pub mod metrics;
// The model and its fleet file live in `lpm-formats` (see there why); the old path stays.
pub use lpm_formats::model;
pub mod mover;
pub mod ops;
pub mod partition;
pub mod paths;
pub mod peerlog;
pub mod profile;
pub mod replication;
pub mod storage;
pub mod testenv;
pub mod tls;
