//! The desktop navigator for operators (DESIGN §7).
//!
//! Shape, as in the egui demo app and rerun's viewer:
//! - [`model`]: the app state, no egui types, unit-tested;
//! - [`windows`]: one file per window or panel; each draws the model and pushes typed
//!   [`command::Command`]s, never doing I/O in a frame;
//! - [`engine`]: a tokio runtime that runs the commands through the same `lparmover::ops`
//!   operations the CLI calls and sends [`command::Event`]s back with a repaint;
//! - [`app`]: the eframe app that ties them together.

pub mod app;
pub mod bench;
pub mod command;
pub mod engine;
pub mod icons;
pub mod model;
pub mod tour;
pub mod windows;

pub use app::NavigatorApp;
