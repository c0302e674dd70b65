//! The desktop navigator for operators (DESIGN §7): fleet trees, checks, migration progress,
//! recovery, policies and history, talking only through the lparmover library and never blocking
//! its UI thread on I/O.
//!
//! Status: the crate exists so the workspace has its final shape; the egui application arrives
//! with its issue.
