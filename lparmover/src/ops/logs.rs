//! System Logs of every HVM, gathered at once and filtered the way the navigator's System Logs
//! window and `lparmover logs` show them.

use serde::Serialize;

use crate::api::{HvmClient, LogEntry, LogLevel};
use crate::profile::Profile;

/// What to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this HVM (None: all).
    pub hvm: Option<String>,
    /// Only entries at least this severe (None: all).
    pub min_level: Option<LogLevel>,
    /// Only FC port events (table 5-5).
    pub fc_events_only: bool,
}

impl LogFilter {
    /// Whether an entry of `hvm` passes.
    pub fn admits(&self, hvm: &str, entry: &LogEntry) -> bool {
        self.hvm.as_deref().is_none_or(|h| h == hvm)
            && self
                .min_level
                .is_none_or(|min| severity(entry.level) >= severity(min))
            && (!self.fc_events_only || entry.area == "fc-port")
    }
}

fn severity(level: LogLevel) -> u8 {
    match level {
        LogLevel::Info => 0,
        LogLevel::Warning => 1,
        LogLevel::Error => 2,
    }
}

/// One entry and the HVM that logged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetLogEntry {
    /// HVM name.
    pub hvm: String,
    /// The entry.
    pub entry: LogEntry,
}

/// The fleet's logs, newest first, at most `limit`, and the HVMs that did not answer.
pub async fn fleet_logs(
    profile: &Profile,
    filter: &LogFilter,
    limit: usize,
) -> (Vec<FleetLogEntry>, Vec<(String, String)>) {
    let tasks = profile
        .hvms
        .iter()
        .filter(|h| filter.hvm.as_deref().is_none_or(|n| n == h.name))
        .map(|h| async move {
            let result = match HvmClient::new(h) {
                Ok(client) => client.logs(0).await,
                Err(e) => Err(e),
            };
            (h.name.clone(), result)
        });
    let mut entries = Vec::new();
    let mut unreachable = Vec::new();
    for (hvm, result) in futures::future::join_all(tasks).await {
        match result {
            Ok(list) => entries.extend(list.into_iter().filter(|e| filter.admits(&hvm, e)).map(
                |entry| FleetLogEntry {
                    hvm: hvm.clone(),
                    entry,
                },
            )),
            Err(e) => unreachable.push((hvm, e.to_string())),
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.entry.time));
    entries.truncate(limit);
    (entries, unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: LogLevel, area: &str) -> LogEntry {
        LogEntry {
            seq: 1,
            time: chrono::Utc::now(),
            level,
            area: area.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn filters_by_hvm_severity_and_fc_events() {
        let all = LogFilter::default();
        assert!(all.admits("a", &entry(LogLevel::Info, "lpar")));
        let warn = LogFilter {
            min_level: Some(LogLevel::Warning),
            ..LogFilter::default()
        };
        assert!(!warn.admits("a", &entry(LogLevel::Info, "lpar")));
        assert!(warn.admits("a", &entry(LogLevel::Error, "lpar")));
        let fc = LogFilter {
            hvm: Some("a".into()),
            fc_events_only: true,
            ..LogFilter::default()
        };
        assert!(fc.admits("a", &entry(LogLevel::Info, "fc-port")));
        assert!(!fc.admits("b", &entry(LogLevel::Info, "fc-port")));
        assert!(!fc.admits("a", &entry(LogLevel::Info, "lpar")));
    }
}
