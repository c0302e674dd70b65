//! The HVM's system log: appended to `logs.jsonl` and kept in memory for the API.
//!
//! Bounded on disk: when `logs.jsonl` reaches [`LogLimits::max_file_bytes`] it is renamed
//! `logs.1.jsonl` (`logs.1` becomes `logs.2`, …, and the oldest beyond
//! [`LogLimits::kept_files`] is removed), so a blade never holds more than
//! `(kept_files + 1) × max_file_bytes` of log. At start only the tail that `GET /v1/logs` serves
//! ([`KEPT`] entries) is read back — from the end of the current file, and of the previous one
//! when the current holds fewer — never a whole file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use lparmover::api::{LogEntry, LogLevel};

/// Entries kept in memory for `GET /v1/logs`.
const KEPT: usize = 2000;

/// Bytes read back from the end of a log file at start: [`KEPT`] entries are a few hundred
/// bytes each, so this holds them with room to spare; what lies before is never read.
const TAIL_BYTES: u64 = 2 << 20;

/// How much system log a blade keeps on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// The current file is rotated once it holds this many bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one (`logs.1.jsonl` … `logs.N.jsonl`).
    pub kept_files: u32,
}

impl Default for LogLimits {
    /// 4 MiB files, 4 rotated ones: at most 20 MiB, some 50,000 entries.
    fn default() -> Self {
        Self {
            max_file_bytes: 4 << 20,
            kept_files: 4,
        }
    }
}

/// The system log of one HVM.
#[derive(Debug)]
pub struct SystemLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    limits: LogLimits,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    entries: VecDeque<LogEntry>,
    next_seq: u64,
}

/// `logs.jsonl` → `logs.N.jsonl`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "logs".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "jsonl".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.{n}.{ext}"))
}

/// The entries in the last [`TAIL_BYTES`] of `path` (none when it is missing). A torn last line
/// (killed mid-write) and the partial first line of the tail are skipped.
fn read_tail(path: &Path) -> Vec<LogEntry> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // Started mid-line (or right at a line start, which then loses one entry: harmless).
        text = text
            .split_once('\n')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
    }
    text.lines()
        .filter_map(|line| serde_json::from_str::<LogEntry>(line).ok())
        .collect()
}

impl SystemLog {
    /// Opens the log at `path` with the default [`LogLimits`].
    pub fn open(path: &Path) -> Self {
        Self::open_with(path, LogLimits::default())
    }

    /// Opens the log at `path`, reading back the last entries earlier runs wrote.
    pub fn open_with(path: &Path, limits: LogLimits) -> Self {
        let mut tail = read_tail(path);
        if tail.len() < KEPT {
            let mut older = read_tail(&rotated(path, 1));
            older.append(&mut tail);
            tail = older;
        }
        let skip = tail.len().saturating_sub(KEPT);
        let entries: VecDeque<LogEntry> = tail.into_iter().skip(skip).collect();
        let next_seq = entries.back().map_or(1, |e: &LogEntry| e.seq + 1);
        let file = OpenOptions::new().create(true).append(true).open(path);
        if let Err(e) = &file {
            tracing::warn!(path = %path.display(), error = %e, "system log file cannot be opened; logging in memory only");
        }
        let size = file
            .as_ref()
            .ok()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            inner: Mutex::new(Inner {
                path: path.to_owned(),
                limits,
                file: file.ok(),
                size,
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
        if let Ok(mut line) = serde_json::to_vec(&entry) {
            line.push(b'\n');
            inner.append(&line);
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

impl Inner {
    fn append(&mut self, line: &[u8]) {
        // On a failed rotation keep appending to the file we have: a log that grows beats a
        // lost entry.
        if self.size > 0
            && self.size + line.len() as u64 > self.limits.max_file_bytes
            && let Err(e) = self.rotate()
        {
            tracing::warn!(path = %self.path.display(), error = %e, "system log rotation failed");
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write_all(line) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "system log entry not written")
            }
        }
    }

    /// `logs.(N-1)` → `logs.N` … `logs` → `logs.1`, dropping the oldest; a new current file.
    fn rotate(&mut self) -> io::Result<()> {
        let kept = self.limits.kept_files;
        if kept == 0 {
            self.file = None;
            fs::remove_file(&self.path)?;
        } else {
            match fs::remove_file(rotated(&self.path, kept)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..kept).rev() {
                match fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn log_files(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_log_on_disk_is_bounded_by_rotation_and_sequence_numbers_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let limits = LogLimits {
            max_file_bytes: 4096,
            kept_files: 2,
        };
        let log = SystemLog::open_with(&path, limits);
        for i in 0..500 {
            log.record(LogLevel::Info, "lpar", format!("entry {i}"));
        }
        let files = log_files(dir.path());
        assert_eq!(
            files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["logs.1.jsonl", "logs.2.jsonl", "logs.jsonl"],
            "two rotated files and the current one, the oldest dropped"
        );
        assert!(
            files.iter().all(|f| f.1 <= limits.max_file_bytes),
            "{files:?}"
        );
        drop(log);
        // A restart reads back what is left, in order, and numbers on from the last entry.
        let again = SystemLog::open_with(&path, limits);
        let back = again.since(0);
        assert_eq!(back.last().unwrap().message, "entry 499");
        assert!(back.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert!(
            back.len() > 20,
            "the previous file is read too: {}",
            back.len()
        );
        again.record(LogLevel::Info, "lpar", "after restart");
        assert_eq!(again.since(500).len(), 1);
        assert_eq!(again.since(500)[0].seq, 501);
    }

    #[test]
    fn start_reads_only_the_tail_of_a_large_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        // An old, unrotated 8 MiB log whose head is not even UTF-8: a reader that starts at the
        // beginning stops there (or spends its time on it); the tail holds the last entries.
        let mut f = File::create(&path).unwrap();
        let junk = vec![0xFFu8; 1 << 20];
        for _ in 0..8 {
            f.write_all(&junk).unwrap();
        }
        f.write_all(b"\n").unwrap();
        for seq in 1..=3000u64 {
            let e = LogEntry {
                seq,
                time: Utc::now(),
                level: LogLevel::Info,
                area: "lpar".into(),
                message: format!("entry {seq}"),
            };
            let mut line = serde_json::to_vec(&e).unwrap();
            line.push(b'\n');
            f.write_all(&line).unwrap();
        }
        // Killed mid-write.
        f.write_all(b"{\"seq\":30").unwrap();
        drop(f);
        let log = SystemLog::open(&path);
        let back = log.since(0);
        assert_eq!(back.len(), KEPT);
        assert_eq!(back.first().unwrap().seq, 3001 - KEPT as u64);
        assert_eq!(back.last().unwrap().seq, 3000);
        // The oversized file is rotated away at the next entry.
        log.record(LogLevel::Info, "lpar", "next");
        assert_eq!(log.since(3000)[0].seq, 3001);
        assert!(fs::metadata(&path).unwrap().len() < 1024);
        assert!(rotated(&path, 1).exists());
    }
}
