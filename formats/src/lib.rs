//! What lparmover reads from outside, decoded without I/O: the LPAR Mover wire format
//! ([`wire`]) and the receiver's state machine ([`receiver`]), the identifiers of blades, LPARs
//! and storage ([`model::ids`]) and the fleet file with the model it builds ([`model`]).
//!
//! It is its own crate so that a coverage-instrumented build of these parsers (the fuzz targets
//! in `fuzz/`) stays small: none of lparmover's network, TLS or database stack comes along.
//! lparmover re-exports every module at its old path (`lparmover::model`,
//! `lparmover::mover::wire`, `lparmover::partition::VcpuState` …).

pub mod backup;
pub mod format;
pub mod fuzz;
pub mod guest;
pub mod model;
pub mod moves;
pub mod policy;
pub mod receiver;
pub mod wire;
