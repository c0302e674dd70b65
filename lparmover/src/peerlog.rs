//! When to log an event a stranger can repeat at will (a refused connection, a failed
//! handshake): the first from a peer address at once, then at most once per interval with how
//! many went unlogged in between. A flood then costs a log line a minute per address, never one
//! per packet, and still says how big it was.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peers remembered at most; past it, peers not logged within the interval are forgotten, and
/// while none can be, new peers share one entry (so a flood from many addresses is a line a
/// minute too).
const MAX_PEERS: usize = 4096;

/// The entry new peers share while the table is full.
const OVERFLOW: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Log decisions per peer address.
#[derive(Debug)]
pub struct PerPeerLog {
    every: Duration,
    peers: Mutex<HashMap<IpAddr, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    logged_at: Instant,
    unlogged: u64,
}

impl PerPeerLog {
    /// Logs each peer at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this event from `peer` is to be logged now: `Some(n)` with the number of its
    /// events since the last one logged, `None` to stay quiet.
    pub fn should_log(&self, peer: IpAddr) -> Option<u64> {
        self.should_log_at(peer, Instant::now())
    }

    fn should_log_at(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        // Plain counters: a panic elsewhere cannot leave them half written.
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if !peers.contains_key(&peer) && peers.len() >= MAX_PEERS {
            let every = self.every;
            peers.retain(|_, seen| now.saturating_duration_since(seen.logged_at) < every);
        }
        let peer = if peers.contains_key(&peer) || peers.len() < MAX_PEERS {
            peer
        } else {
            OVERFLOW
        };
        if let Some(seen) = peers.get_mut(&peer) {
            if now.saturating_duration_since(seen.logged_at) < self.every {
                seen.unlogged = seen.unlogged.saturating_add(1);
                return None;
            }
            let unlogged = seen.unlogged;
            *seen = Seen {
                logged_at: now,
                unlogged: 0,
            };
            return Some(unlogged);
        }
        // The overflow entry may take the table one past its size.
        peers.insert(
            peer,
            Seen {
                logged_at: now,
                unlogged: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_logged_once_per_interval_with_what_went_unlogged() {
        let log = PerPeerLog::new(Duration::from_secs(60));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(log.should_log_at(a, t0), Some(0), "the first at once");
        for s in 1..=10 {
            assert_eq!(log.should_log_at(a, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            log.should_log_at(b, t0 + Duration::from_secs(5)),
            Some(0),
            "another peer is its own"
        );
        assert_eq!(
            log.should_log_at(a, t0 + Duration::from_secs(61)),
            Some(10),
            "a minute later, with the ten not logged"
        );
        assert_eq!(log.should_log_at(a, t0 + Duration::from_secs(62)), None);
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_memory_bounded() {
        let log = PerPeerLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let peer = |i: u32| IpAddr::from((i + 1).to_be_bytes());
        for i in 0..MAX_PEERS as u32 {
            assert_eq!(log.should_log_at(peer(i), t0), Some(0));
        }
        // Past the table's size, the newcomers share one line per interval.
        assert_eq!(log.should_log_at(peer(MAX_PEERS as u32), t0), Some(0));
        for i in 1..100 {
            assert_eq!(log.should_log_at(peer(MAX_PEERS as u32 + i), t0), None);
        }
        assert!(log.peers.lock().unwrap().len() <= MAX_PEERS + 1);
        // Once the old entries are a minute old they make room again.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            log.should_log_at(peer(MAX_PEERS as u32 + 500), later),
            Some(0)
        );
        assert!(log.peers.lock().unwrap().len() <= 2);
    }
}
