//! hvmsim: simulated server blades and their HVMs.
//!
//! Each blade runs as its own process (`hvmsim serve`) with persistent state, LPARs backed by real
//! guests, and the HTTPS management API of `lparmover::api`. `hvmsim fleet` starts a whole fleet
//! on loopback addresses and writes the profile the manager reads. hvmsim offers primitives; the
//! manager (lparmover) decides.

pub mod api;
pub mod array;
pub mod blade;
pub mod deterrence;
pub mod fabric;
pub mod faultpoint;
pub mod fcports;
pub mod fingerprint;
pub mod genfleet;
pub mod guest;
pub mod guests;
pub mod httpd;
pub mod hvm;
pub mod launcher;
pub mod load;
pub mod locks;
pub mod migration;
pub mod paths;
pub mod probe;
pub mod serve;
pub mod store;
pub mod syslog;
pub mod vmproc;
pub mod wwn;
