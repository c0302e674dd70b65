//! One file per window or panel. Each draws the model and pushes commands; none does I/O.

pub mod config_viewer;
pub mod history;
pub mod logs;
pub mod migration;
pub mod paths;
pub mod policy;
pub mod profile;
pub mod progress;
pub mod recovery;
pub mod trials;
pub mod wwn_setting;
