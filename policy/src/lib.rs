//! Migration policies: named, ordered lists of migrations of one mode, stored as TOML, run in
//! order by the batch runner (DESIGN §6). The CLI, the overnight daemon and the navigator use
//! the same runner.
//!
//! This crate never moves bytes or re-implements a migration: every entry is an
//! `lparmover::ops::moves` job, so checks, leases, journal, recovery and history are the ones
//! a single move has.

pub use lpm_formats::policy::{file, model};

pub mod daemon;
pub mod evacuate;
pub mod live;
pub mod metrics;
pub mod report;
pub mod reverse;
pub mod runner;
pub mod share;
pub mod store;

pub use model::{Entry, OnError, Policy, PolicyName};
pub use report::{RunReport, RunStore};
pub use runner::{RunControl, RunOptions, run};
pub use store::PolicyStore;
