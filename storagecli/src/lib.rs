//! The storage command line (DESIGN §5): host groups, migration-WWPN registration, exports and
//! replication pairs against simulated array daemons.
//!
//! Status: the crate exists so the workspace has its final shape; the array API and its commands
//! arrive with their issue.
