//! The storage command line (DESIGN §5): register arrays, list host groups, register / remove /
//! rename WWPNs, back up host groups, log in to protected arrays, set accounts, and export the
//! WWPN / migration-WWPN registration of every vFC as CSV, replicate / separate / restore
//! replication pairs and wait for their states (seed 002), against array daemons
//! (`hvmsim array`). The array CLI's own command names are accepted too ([`aliases`]).
//!
//! Exit status: 0 done; 1 the array refused (the message id says why); 2 the command line or a
//! value is wrong; 3 the array or an HVM cannot be reached; 4 the API token, the login or the
//! password was refused; 5 a wait for a pair state ended without it.

pub mod aliases;
pub mod render;

/// The array or an HVM cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// A wait for a pair state ended without it.
pub const EXIT_WAIT_FAILED: u8 = 5;
