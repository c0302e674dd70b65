//! Injected panics for the end-to-end tests: with the `fault-injection` cargo feature (which only
//! `tests/` enables) and `HVMSIM_FAULT_PANIC=<point>` in the blade's environment, the request
//! handler passing [`panic_at`]`(point)` panics there. The tests use it to prove that a handler
//! that panics anyway answers 500 with an id, logs it in the blade's system log, and leaves no
//! LPAR Migrating. Without the feature [`panic_at`] is empty and the variable is never read.

/// Environment variable naming the point to panic at.
pub const PANIC_ENV: &str = "HVMSIM_FAULT_PANIC";

/// After the source marked the LPAR Migrating, before the sender starts (`start_send`).
pub const START_SEND_MARKED: &str = "start-send-marked";

/// Panics if the blade was started to panic at `point` (test builds only).
#[cfg(feature = "fault-injection")]
pub fn panic_at(point: &str) {
    if std::env::var(PANIC_ENV).is_ok_and(|p| p == point) {
        panic!("fault injection: {PANIC_ENV}={point}");
    }
}

/// Panics if the blade was started to panic at `point` (test builds only).
#[cfg(not(feature = "fault-injection"))]
pub fn panic_at(_point: &str) {}
