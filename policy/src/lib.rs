//! Migration policies: named, ordered lists of migrations of one mode, stored as TOML, run in
//! order by the batch runner and, unattended, by the overnight scheduler (DESIGN §6).
//!
//! This crate never moves bytes or re-implements a migration: it calls lparmover jobs.
//! Status: the crate exists so the workspace has its final shape; policies arrive with their
//! issue.
