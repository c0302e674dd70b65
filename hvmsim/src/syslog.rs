//! The HVM's system log: appended to `logs.jsonl` and kept in memory for the API.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use chrono::Utc;
use lparmover::api::{LogEntry, LogLevel};

/// Entries kept in memory for `GET /v1/logs`.
const KEPT: usize = 2000;

/// The system log of one HVM.
#[derive(Debug)]
pub struct SystemLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: Option<File>,
    entries: VecDeque<LogEntry>,
    next_seq: u64,
}

impl SystemLog {
    /// Opens the log at `path`, reading what earlier runs wrote (a torn last line is skipped).
    pub fn open(path: &Path) -> Self {
        let mut entries = VecDeque::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
                    if entries.len() == KEPT {
                        entries.pop_front();
                    }
                    entries.push_back(entry);
                }
            }
        }
        let next_seq = entries.back().map_or(1, |e: &LogEntry| e.seq + 1);
        let file = OpenOptions::new().create(true).append(true).open(path);
        if let Err(e) = &file {
            tracing::warn!(path = %path.display(), error = %e, "system log file cannot be opened; logging in memory only");
        }
        Self {
            inner: Mutex::new(Inner {
                file: file.ok(),
                entries,
                next_seq,
            }),
        }
    }

    /// Appends an entry.
    pub fn record(&self, level: LogLevel, area: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(area, %message, "system log");
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let entry = LogEntry {
            seq: inner.next_seq,
            time: Utc::now(),
            level,
            area: area.to_owned(),
            message,
        };
        inner.next_seq += 1;
        if let Some(file) = inner.file.as_mut()
            && let Ok(mut line) = serde_json::to_vec(&entry)
        {
            line.push(b'\n');
            let _ = file.write_all(&line);
        }
        if inner.entries.len() == KEPT {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    /// Entries with a sequence number above `after`.
    pub fn since(&self, after: u64) -> Vec<LogEntry> {
        self.inner
            .lock()
            .map(|i| {
                i.entries
                    .iter()
                    .filter(|e| e.seq > after)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}
