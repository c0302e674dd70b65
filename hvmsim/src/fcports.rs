//! Link states of the blade's physical NIC and FC HBA ports, with the time of their last change.
//!
//! The checks read them through `GET /v1/ports`: a live move needs every port it uses linked, and
//! the FC ports of both blades unchanged for 5 minutes (the seed's "Confirming if the states of FC
//! HBA ports are stable"). Every port comes up linked when the HVM starts; a change (a fault, a
//! test) is recorded with its time and written to the system log in the wording of table 5-5.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use lparmover::api::{LinkState, LogLevel, PortStates, PortStatus};
use lparmover::emg::{Emg, EmgError};
use lparmover::model::{Blade, CardKind};

use crate::blade::BladeService;
use crate::syslog::SystemLog;

/// Port states of one blade, keyed by (slot, port).
#[derive(Debug)]
pub struct PortTracker {
    ports: Mutex<BTreeMap<(u8, u8), PortStatus>>,
}

impl PortTracker {
    /// Every port of `blade` linked since `boot`.
    pub fn new(blade: &Blade, boot: DateTime<Utc>) -> Self {
        let ports = blade
            .cards
            .iter()
            .flat_map(|card| {
                card.ports.iter().map(move |p| {
                    (
                        (card.slot, p.port),
                        PortStatus {
                            kind: card.kind,
                            slot: card.slot,
                            port: p.port,
                            state: LinkState::Linked,
                            since: boot,
                            previous: None,
                        },
                    )
                })
            })
            .collect();
        Self {
            ports: Mutex::new(ports),
        }
    }

    /// Every port, in slot and port order.
    pub fn snapshot(&self, now: DateTime<Utc>) -> PortStates {
        let ports = self
            .ports
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        PortStates {
            taken_at: now,
            ports,
        }
    }

    /// Changes the state of one port (fault injection, tests) and logs it as table 5-5 does.
    pub fn set(
        &self,
        slot: u8,
        port: u8,
        state: LinkState,
        now: DateTime<Utc>,
        log: &SystemLog,
    ) -> Result<PortStatus, EmgError> {
        let mut ports = self
            .ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = ports.get_mut(&(slot, port)).ok_or_else(|| {
            EmgError::new(
                Emg::DeviceNotAvailable,
                format!("no port {port} on a card in slot {slot}"),
            )
        })?;
        if entry.state != state {
            entry.previous = Some(entry.state);
            entry.state = state;
            entry.since = now;
            let (level, message) = log_line(entry);
            log.record(level, "fc-port", message);
        }
        Ok(entry.clone())
    }
}

/// The system log line of a port change (table 5-5 wording for FC ports).
fn log_line(p: &PortStatus) -> (LogLevel, String) {
    let what = match p.kind {
        CardKind::FcHba => "Shared FC",
        CardKind::Nic => "Shared NIC",
    };
    match p.state {
        LinkState::Linked => (
            LogLevel::Info,
            format!(
                "{what} Link is Available. (Slot= {}, Port= {})",
                p.slot, p.port
            ),
        ),
        LinkState::Down => (
            LogLevel::Error,
            format!(
                "HVM detected Link Down error at {what} at expansion card. (Slot= {}, Port= {})",
                p.slot, p.port
            ),
        ),
        LinkState::Isolated => (
            LogLevel::Error,
            format!(
                "PCI Express Error Isolation was detected. (Slot= {}, Port= {})",
                p.slot, p.port
            ),
        ),
        LinkState::Error => (
            LogLevel::Error,
            format!(
                "HVM detected MCKINT at {what}.(Slot= {}, Port= {})",
                p.slot, p.port
            ),
        ),
        LinkState::FatalError => (
            LogLevel::Error,
            format!("HVM detected Hardware error at {what}. (Slot= {})", p.slot),
        ),
    }
}

/// `GET /v1/ports`.
pub async fn ports(State(s): State<Arc<BladeService>>) -> Json<PortStates> {
    Json(s.port_states())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use lparmover::model::Fleet;
    use lparmover::model::fleet::DEMO_FLEET_TOML;

    #[test]
    fn ports_start_linked_and_record_changes_with_time_and_log() {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo").unwrap();
        let blade = &fleet.blade("ch1-b1").unwrap().blade;
        let boot = Utc::now();
        let tracker = PortTracker::new(blade, boot);
        let all = tracker.snapshot(boot);
        assert_eq!(all.ports.len(), 4 + 2 + 2);
        assert!(
            all.ports
                .iter()
                .all(|p| p.state == LinkState::Linked && p.since == boot)
        );
        let dir = tempfile::tempdir().unwrap();
        let log = SystemLog::open(&dir.path().join("log.jsonl"));
        let later = boot + chrono::Duration::seconds(30);
        let changed = tracker.set(3, 0, LinkState::Down, later, &log).unwrap();
        assert_eq!((changed.state, changed.since), (LinkState::Down, later));
        assert_eq!(changed.previous, Some(LinkState::Linked));
        let fc = tracker.snapshot(later);
        assert_eq!(
            fc.port(CardKind::FcHba, 3, 0).map(|p| p.state),
            Some(LinkState::Down)
        );
        let logged = log.since(0);
        assert!(logged.iter().any(|e| e.area == "fc-port"
            && e.message.contains("Link Down error at Shared FC")
            && e.message.contains("Slot= 3, Port= 0")));
        assert!(tracker.set(9, 0, LinkState::Down, later, &log).is_err());
    }
}
