//! Migration policy files (DESIGN §6): the validated [`model`] the runner works on and the TOML
//! [`file`] parser that builds it, naming the line of every problem. The runner, the daemon and
//! the navigator are in the `policy` crate, which re-exports both modules at its root.

pub mod file;
pub mod model;
