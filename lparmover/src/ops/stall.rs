//! The one rule that says whether a running move makes progress (the navigator's "stalled"
//! flag and the policy runner's stall timeout both use it).
//!
//! A move *moves* while bytes travel and the memory still to send reaches new lows. It is
//! *not converging* when bytes travel but the remaining memory has not reached a new low for a
//! whole window (the guest dirties as fast as the path sends; auto-converge should act). It is
//! *stalled* when nothing travelled and the stage did not change for a whole window (a hung
//! HVM, a dead path).

use std::time::Duration;

use crate::jobs::{JobProgress, JobStage};

/// Default window: as long without progress before a move is called stalled.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// How a move is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Headway {
    /// Progressing.
    Moving,
    /// Bytes travel, the remaining memory does not shrink (since this long).
    NotConverging(Duration),
    /// Nothing travels (since this long).
    Stalled(Duration),
}

/// Watches one move's progress samples. Time is given by the caller (monotonic, any origin),
/// so the rule is the same in the app, in the runner and in tests.
#[derive(Clone, Debug)]
pub struct StallWatch {
    window: Duration,
    stage: Option<JobStage>,
    sent: u64,
    lowest_remaining: Option<u64>,
    last_travel: Duration,
    last_new_low: Duration,
}

impl StallWatch {
    /// A watch that flags after `window` without progress.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            stage: None,
            sent: 0,
            lowest_remaining: None,
            last_travel: Duration::ZERO,
            last_new_low: Duration::ZERO,
        }
    }

    /// Takes a progress sample seen at `now`.
    pub fn observe(&mut self, now: Duration, progress: &JobProgress) {
        if self.stage != Some(progress.stage) {
            self.stage = Some(progress.stage);
            self.last_travel = now;
            self.last_new_low = now;
        }
        let Some(m) = &progress.mover else {
            return;
        };
        if m.wire_bytes_sent > self.sent {
            self.sent = m.wire_bytes_sent;
            self.last_travel = now;
        }
        if self
            .lowest_remaining
            .is_none_or(|low| m.bytes_remaining < low)
        {
            self.lowest_remaining = Some(m.bytes_remaining);
            self.last_new_low = now;
        }
    }

    /// The verdict at `now` (which may be later than the last sample: a move whose HVM stopped
    /// answering gets no more samples and so becomes stalled).
    pub fn headway(&self, now: Duration) -> Headway {
        let quiet = now.saturating_sub(self.last_travel);
        if quiet >= self.window {
            return Headway::Stalled(quiet);
        }
        let flat = now.saturating_sub(self.last_new_low);
        if self.stage == Some(JobStage::Transferring) && flat >= self.window {
            return Headway::NotConverging(flat);
        }
        Headway::Moving
    }
}

impl Default for StallWatch {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::Progress;

    fn sample(stage: JobStage, sent: u64, remaining: u64) -> JobProgress {
        JobProgress {
            job: "job-t".into(),
            stage,
            mover: Some(Progress {
                wire_bytes_sent: sent,
                bytes_remaining: remaining,
                ..Progress::default()
            }),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn bytes_travelling_and_shrinking_is_moving() {
        let mut w = StallWatch::new(S(10));
        for t in 0..30 {
            w.observe(
                S(t),
                &sample(JobStage::Transferring, t * 100, 10_000 - t * 100),
            );
        }
        assert_eq!(w.headway(S(30)), Headway::Moving);
    }

    #[test]
    fn nothing_travelling_for_a_window_is_stalled_even_without_samples() {
        let mut w = StallWatch::new(S(10));
        w.observe(S(0), &sample(JobStage::Transferring, 100, 900));
        w.observe(S(5), &sample(JobStage::Transferring, 100, 900));
        assert_eq!(w.headway(S(9)), Headway::Moving);
        assert_eq!(w.headway(S(12)), Headway::Stalled(S(12)));
    }

    #[test]
    fn bytes_travelling_without_new_lows_is_not_converging() {
        let mut w = StallWatch::new(S(10));
        w.observe(S(0), &sample(JobStage::Transferring, 0, 500));
        for t in 1..=15 {
            w.observe(S(t), &sample(JobStage::Transferring, t * 1000, 600));
        }
        assert_eq!(w.headway(S(15)), Headway::NotConverging(S(15)));
    }

    #[test]
    fn a_stage_change_is_progress() {
        let mut w = StallWatch::new(S(10));
        w.observe(S(0), &sample(JobStage::Transferring, 100, 900));
        w.observe(
            S(9),
            &JobProgress {
                job: "job-t".into(),
                stage: JobStage::Committing,
                mover: None,
            },
        );
        assert_eq!(w.headway(S(15)), Headway::Moving);
        assert!(matches!(w.headway(S(20)), Headway::Stalled(_)));
    }
}
