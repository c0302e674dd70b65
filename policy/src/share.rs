//! A policy's aggregate bandwidth cap, shared by the entries whose moves send memory now.
//!
//! Every member gets an even part of the cap. An entry that joins gets what is left once the
//! others moving were lowered to their new part, so together they never pass the cap; one that
//! leaves hands its part back to those still moving. A move's cap is changed on its source
//! blade (`lparmover::ops::moves::set_bandwidth`) while its memory moves; a move that has not
//! reported its job yet keeps the cap it started with until it does, and the others wait for
//! their raise until then.

use std::collections::BTreeMap;

use lparmover::api::MoveOptions;
use lparmover::ops::moves;
use lparmover::profile::Profile;
use tokio::sync::Mutex;
use tracing::{debug, info};

/// One entry in the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Member {
    /// Its source HVM and job id, once its move sends memory.
    moving: Option<(String, String)>,
    /// The cap it runs under now, bytes/s.
    given: u64,
    /// The highest cap it ran under, bytes/s.
    peak: u64,
}

/// The caps of the entries in the pool, and the changes that get them there.
#[derive(Debug, Default)]
struct Members {
    by_entry: BTreeMap<usize, Member>,
}

/// A change of one running move's cap.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    entry: usize,
    hvm: String,
    job: String,
    to: u64,
}

impl Members {
    fn even_part(&self, total: u64) -> u64 {
        (total / self.by_entry.len().max(1) as u64).max(MoveOptions::MIN_BANDWIDTH)
    }

    fn given(&self) -> u64 {
        self.by_entry.values().map(|m| m.given).sum()
    }

    /// Lowerings first (they free the budget), then raises within it, all to the even part.
    /// A member without a job cannot be changed: it keeps its cap.
    fn plan(&self, total: u64) -> Vec<Change> {
        let part = self.even_part(total);
        let change = |(entry, m): (&usize, &Member)| {
            m.moving.as_ref().map(|(hvm, job)| Change {
                entry: *entry,
                hvm: hvm.clone(),
                job: job.clone(),
                to: part,
            })
        };
        let mut lower: Vec<Change> = self
            .by_entry
            .iter()
            .filter(|(_, m)| m.given > part)
            .filter_map(change)
            .collect();
        let mut budget = total.saturating_sub(
            self.given()
                - lower
                    .iter()
                    .map(|c| self.by_entry[&c.entry].given - part)
                    .sum::<u64>(),
        );
        for (entry, m) in self.by_entry.iter().filter(|(_, m)| m.given < part) {
            if let Some(mut c) = change((entry, m)) {
                let raise = (part - m.given).min(budget);
                if raise == 0 {
                    continue;
                }
                budget -= raise;
                c.to = m.given + raise;
                lower.push(c);
            }
        }
        lower
    }

    fn applied(&mut self, change: &Change) {
        if let Some(m) = self.by_entry.get_mut(&change.entry) {
            m.given = change.to;
            m.peak = m.peak.max(change.to);
        }
    }
}

/// The cap shared by a run's moving entries.
#[derive(Debug)]
pub struct BandwidthPool {
    total: u64,
    profile: Profile,
    members: Mutex<Members>,
}

impl BandwidthPool {
    /// A pool of `total` bytes/s for moves of `profile`'s blades.
    pub fn new(profile: &Profile, total: u64) -> Self {
        Self {
            total: total.max(MoveOptions::MIN_BANDWIDTH),
            profile: profile.clone(),
            members: Mutex::new(Members::default()),
        }
    }

    /// Entry `entry` is about to start its move: the others moving are lowered to their new
    /// part first; returns the cap the new move starts with (its part, or what is left of the
    /// cap while a member that cannot be lowered yet holds more).
    pub async fn join(&self, entry: usize) -> u64 {
        let mut members = self.members.lock().await;
        members.by_entry.insert(entry, Member::default());
        self.rebalance(&mut members).await;
        let part = members.even_part(self.total);
        let left = self.total.saturating_sub(members.given());
        let start = part.min(left).max(MoveOptions::MIN_BANDWIDTH);
        if let Some(m) = members.by_entry.get_mut(&entry) {
            m.given = start;
            m.peak = start;
        }
        start
    }

    /// Entry `entry`'s move sends memory as `job` from `source_hvm`: from now on its cap can
    /// change; the pool brings everyone to their part.
    pub async fn transferring(&self, entry: usize, source_hvm: &str, job: &str) {
        let mut members = self.members.lock().await;
        let Some(m) = members.by_entry.get_mut(&entry) else {
            return;
        };
        if m.moving.is_some() {
            return;
        }
        m.moving = Some((source_hvm.to_owned(), job.to_owned()));
        self.rebalance(&mut members).await;
    }

    /// Entry `entry` is done (whatever the outcome): its part goes to those still moving.
    /// Returns the highest cap it ran under, bytes/s.
    pub async fn leave(&self, entry: usize) -> Option<u64> {
        let mut members = self.members.lock().await;
        let left = members.by_entry.remove(&entry).map(|m| m.peak);
        self.rebalance(&mut members).await;
        left
    }

    async fn rebalance(&self, members: &mut Members) {
        for change in members.plan(self.total) {
            match moves::set_bandwidth(&self.profile, &change.hvm, &change.job, Some(change.to))
                .await
            {
                Ok(_) => {
                    info!(
                        entry = change.entry + 1,
                        job = %change.job,
                        mbps = change.to as f64 / 1e6,
                        "bandwidth share changed"
                    );
                    members.applied(&change);
                }
                // The move left the transfer (switch-over, failure): its cap no longer matters
                // to the link, and it leaves the pool when its entry ends.
                Err(e) => {
                    debug!(entry = change.entry + 1, error = %e, "bandwidth share not changed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn member(job: Option<&str>, given: u64) -> Member {
        Member {
            moving: job.map(|j| ("ch1-b1".to_owned(), j.to_owned())),
            given,
            peak: given,
        }
    }

    fn members(list: &[(usize, Member)]) -> Members {
        Members {
            by_entry: list.iter().cloned().collect(),
        }
    }

    fn apply(m: &mut Members, total: u64) -> Vec<(usize, u64)> {
        let plan = m.plan(total);
        for c in &plan {
            m.applied(c);
        }
        plan.iter().map(|c| (c.entry, c.to / MB)).collect()
    }

    #[test]
    fn a_joining_entry_lowers_the_others_before_it_gets_its_part() {
        let mut m = members(&[(0, member(Some("a"), 100 * MB)), (1, member(None, 0))]);
        assert_eq!(
            apply(&mut m, 100 * MB),
            [(0, 50)],
            "lowered first, nothing raised"
        );
        assert_eq!(m.given(), 50 * MB, "50 MB/s left for the new entry");
    }

    #[test]
    fn a_member_without_a_job_keeps_its_cap_and_the_others_wait_for_their_raise() {
        // Entry 0 started at 100 before entry 1 joined and has not reported its job yet.
        let mut m = members(&[(0, member(None, 100 * MB)), (1, member(Some("b"), MB))]);
        assert_eq!(apply(&mut m, 100 * MB), [], "no budget: entry 1 waits");
        m.by_entry.get_mut(&0).unwrap().moving = Some(("ch1-b1".into(), "a".into()));
        assert_eq!(apply(&mut m, 100 * MB), [(0, 50), (1, 50)]);
        assert!(m.given() <= 100 * MB);
    }

    #[test]
    fn a_leaving_entry_hands_its_part_to_those_still_moving() {
        let mut m = members(&[
            (0, member(Some("a"), 33 * MB)),
            (2, member(Some("c"), 33 * MB)),
        ]);
        assert_eq!(apply(&mut m, 100 * MB), [(0, 50), (2, 50)]);
        assert_eq!(m.by_entry[&0].peak, 50 * MB);
        m.by_entry.remove(&0);
        assert_eq!(apply(&mut m, 100 * MB), [(2, 100)]);
        assert_eq!(
            apply(&mut m, 100 * MB),
            [],
            "settled: nothing more to change"
        );
    }
}
