//! The morning report of one run: what ran, what was skipped and why, the window used; per entry
//! its result, rehearsal verdict, times, suspension, bytes and errors with their actions. Saved
//! as JSON (read back by `policy report` and by `policy reverse`), text and an HTML page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryResult {
    /// The LPAR moved.
    Completed,
    /// It failed and was skipped (by the operator or `on_error`); the LPAR stayed where it was.
    Skipped,
    /// It failed and the run ended on it.
    Failed,
    /// Never started: the run ended or was stopped before it.
    NotRun,
    /// Never started: it would not have ended inside the window.
    OutsideWindow,
}

impl EntryResult {
    /// As the report shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::NotRun => "not run",
            Self::OutsideWindow => "left for the window",
        }
    }
}

/// What the rehearsal of an entry said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rehearsal {
    /// Whether it passed.
    pub passed: bool,
    /// Predicted total time of the move, s (live moves).
    pub predicted_total_s: Option<f64>,
    /// Predicted suspension, ms (live moves).
    pub predicted_suspension_ms: Option<f64>,
    /// What it found (the error with its action, or the check warnings).
    pub notes: Vec<String>,
}

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Attempt number (1 = first).
    pub attempt: u32,
    /// What failed.
    pub error: String,
    /// What to do about it (the catalogue's action when there is one).
    pub action: Option<String>,
    /// The catalogue code line, when there is one.
    pub code: Option<String>,
}

/// One entry in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryReport {
    /// 1-based position in the policy.
    pub index: usize,
    /// `HVM/LPAR` as the policy names it.
    pub source: String,
    /// `HVM` or `HVM/N` as the policy names it.
    pub destination: String,
    /// How it ended.
    pub result: EntryResult,
    /// Why it did not complete, in a sentence (None when completed).
    pub reason: Option<String>,
    /// Its rehearsal, when the policy rehearses.
    pub rehearsal: Option<Rehearsal>,
    /// Attempts made (0 when never started).
    pub attempts: u32,
    /// When its last attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When its last attempt ended.
    pub ended: Option<DateTime<Utc>>,
    /// The move's job id (completed moves).
    pub job: Option<String>,
    /// The LPAR's number on its source HVM when it started (where a return brings it).
    pub from_number: Option<lparmover::model::LparNumber>,
    /// Where the LPAR ended up: `HVM/N` (completed moves).
    pub landed: Option<String>,
    /// LPAR name (completed moves).
    pub lpar: Option<String>,
    /// Whole move, s.
    pub total_s: Option<f64>,
    /// Memory transfer alone (pre-copy rounds to resume), s (live moves).
    pub transfer_s: Option<f64>,
    /// Guest-visible suspension, ms (live moves).
    pub suspension_ms: Option<f64>,
    /// Bytes on the migration path (live moves).
    pub wire_bytes: Option<u64>,
    /// Memory throughput, MB/s (live moves).
    pub throughput_mbps: Option<f64>,
    /// Highest bandwidth cap the move ran under, MB/s (None: uncapped): its part of the
    /// policy's cap, which grows as other entries finish.
    pub bandwidth_cap_mbps: Option<f64>,
    /// Every failed attempt, in order.
    pub failures: Vec<Failure>,
}

impl EntryReport {
    /// An entry that has not run yet.
    pub fn pending(index: usize, source: String, destination: String) -> Self {
        Self {
            index,
            source,
            destination,
            result: EntryResult::NotRun,
            reason: None,
            rehearsal: None,
            attempts: 0,
            started: None,
            ended: None,
            job: None,
            from_number: None,
            landed: None,
            lpar: None,
            total_s: None,
            transfer_s: None,
            suspension_ms: None,
            wire_bytes: None,
            throughput_mbps: None,
            bandwidth_cap_mbps: None,
            failures: Vec::new(),
        }
    }
}

/// How the run as a whole ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Every entry was tried (completed or skipped).
    Finished,
    /// An entry failed and the run ended there (`End`).
    Ended,
    /// The operator stopped it and chose End.
    Stopped,
    /// The window closed with entries left.
    WindowClosed,
}

impl RunOutcome {
    /// As the report shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Ended => "ended on a failed entry",
            Self::Stopped => "stopped by the operator",
            Self::WindowClosed => "window closed with entries left",
        }
    }
}

/// The report of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Run id (`run-YYYYMMDD-HHMMSS-NAME`).
    pub run: String,
    /// Policy name.
    pub policy: String,
    /// Mode of every entry.
    pub mode: lparmover::model::Mode,
    /// Who ran it: `cli`, `daemon`, `navigator`.
    pub origin: String,
    /// Started.
    pub started: DateTime<Utc>,
    /// Ended (None while it runs).
    pub ended: Option<DateTime<Utc>>,
    /// The window's end, when it had one.
    pub window_end: Option<DateTime<Utc>>,
    /// How it ended (None while it runs).
    pub outcome: Option<RunOutcome>,
    /// Most entries that ran at once.
    pub peak_concurrency: usize,
    /// Concurrency cap.
    pub concurrency_cap: u8,
    /// Aggregate bandwidth cap, MB/s (None: none).
    pub bandwidth_cap_mbps: Option<u64>,
    /// Every entry, in policy order.
    pub entries: Vec<EntryReport>,
}

impl RunReport {
    /// Entries with `result`.
    pub fn count(&self, result: EntryResult) -> usize {
        self.entries.iter().filter(|e| e.result == result).count()
    }

    /// Whether every entry completed.
    pub fn all_completed(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.result == EntryResult::Completed)
    }

    /// The report as text for a terminal or a mail.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Policy {} ({} mode), run {} from {}",
            self.policy, self.mode, self.run, self.origin
        );
        let _ = writeln!(
            out,
            "  started {}, ended {}{}",
            stamp(self.started),
            self.ended.map_or("—".to_owned(), stamp),
            self.window_end
                .map_or(String::new(), |w| format!(", window ends {}", stamp(w)))
        );
        let _ = writeln!(
            out,
            "  outcome: {}; {} completed, {} skipped, {} failed, {} not run, {} left for the window",
            self.outcome.map_or("running", RunOutcome::label),
            self.count(EntryResult::Completed),
            self.count(EntryResult::Skipped),
            self.count(EntryResult::Failed),
            self.count(EntryResult::NotRun),
            self.count(EntryResult::OutsideWindow),
        );
        let _ = writeln!(
            out,
            "  at most {} at once (cap {}), bandwidth cap {}",
            self.peak_concurrency,
            self.concurrency_cap,
            self.bandwidth_cap_mbps
                .map_or("none".to_owned(), |b| format!("{b} MB/s"))
        );
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{:>3}. {} → {}: {}",
                e.index,
                e.source,
                e.destination,
                e.result.label()
            );
            if let Some(r) = &e.rehearsal {
                let _ = writeln!(out, "     rehearsal: {}", rehearsal_line(r));
            }
            if e.result == EntryResult::Completed {
                let _ = writeln!(out, "     {}", figures_line(e));
            }
            for f in &e.failures {
                let _ = writeln!(out, "     attempt {}: {}", f.attempt, f.error);
                if let Some(a) = &f.action {
                    let _ = writeln!(out, "       action: {a}");
                }
            }
            if let Some(r) = &e.reason {
                let _ = writeln!(out, "     {r}");
            }
        }
        out
    }

    /// The report as a self-contained HTML page.
    pub fn html(&self) -> String {
        let mut rows = String::new();
        for e in &self.entries {
            let class = match e.result {
                EntryResult::Completed => "ok",
                EntryResult::Skipped | EntryResult::OutsideWindow | EntryResult::NotRun => "warn",
                EntryResult::Failed => "err",
            };
            let mut notes = String::new();
            for f in &e.failures {
                let _ = write!(
                    notes,
                    "<div>attempt {}: {}{}</div>",
                    f.attempt,
                    esc(&f.error),
                    f.action
                        .as_ref()
                        .map_or(String::new(), |a| format!("<br><i>Action: {}</i>", esc(a)))
                );
            }
            if let Some(r) = &e.reason {
                let _ = write!(notes, "<div>{}</div>", esc(r));
            }
            let _ = writeln!(
                rows,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{notes}</td></tr>",
                e.index,
                esc(&e.source),
                esc(&e.destination),
                e.result.label(),
                e.rehearsal
                    .as_ref()
                    .map_or("—".to_owned(), |r| esc(&rehearsal_line(r))),
                e.started.map_or("—".to_owned(), stamp),
                e.total_s.map_or("—".to_owned(), |t| format!("{t:.2} s")),
                e.suspension_ms
                    .map_or("—".to_owned(), |s| format!("{s:.1} ms")),
                e.wire_bytes
                    .map_or("—".to_owned(), |b| format!("{:.0} MB", b as f64 / 1e6)),
                e.throughput_mbps
                    .map_or("—".to_owned(), |t| format!("{t:.0} MB/s")),
            );
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Policy {policy}: run {run}</title>\n<style>\nbody{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:4px 8px;vertical-align:top}}tr.ok td:nth-child(4){{color:#176317}}tr.warn td:nth-child(4){{color:#8a5a00}}tr.err td:nth-child(4){{color:#b00020}}\n</style></head><body>\n<h1>Policy {policy}</h1>\n<p>Run <code>{run}</code> ({mode} mode, from {origin}): <b>{outcome}</b>.<br>Started {started}, ended {ended}{window}.<br>{completed} completed, {skipped} skipped, {failed} failed, {notrun} not run, {outside} left for the window; at most {peak} at once (cap {cap}); bandwidth cap {bw}.</p>\n<table>\n<tr><th>#</th><th>Source</th><th>Destination</th><th>Result</th><th>Rehearsal</th><th>Started</th><th>Total</th><th>Suspension</th><th>On the wire</th><th>Memory throughput</th><th>Errors and actions</th></tr>\n{rows}</table>\n</body></html>\n",
            policy = esc(&self.policy),
            run = esc(&self.run),
            mode = self.mode,
            origin = esc(&self.origin),
            outcome = self.outcome.map_or("running", RunOutcome::label),
            started = stamp(self.started),
            ended = self.ended.map_or("—".to_owned(), stamp),
            window = self
                .window_end
                .map_or(String::new(), |w| format!("; window ends {}", stamp(w))),
            completed = self.count(EntryResult::Completed),
            skipped = self.count(EntryResult::Skipped),
            failed = self.count(EntryResult::Failed),
            notrun = self.count(EntryResult::NotRun),
            outside = self.count(EntryResult::OutsideWindow),
            peak = self.peak_concurrency,
            cap = self.concurrency_cap,
            bw = self
                .bandwidth_cap_mbps
                .map_or("none".to_owned(), |b| format!("{b} MB/s")),
        )
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn rehearsal_line(r: &Rehearsal) -> String {
    let mut line = if r.passed { "passed" } else { "failed" }.to_owned();
    if let (Some(t), Some(s)) = (r.predicted_total_s, r.predicted_suspension_ms) {
        let _ = write!(line, ", predicts {t:.1} s and {s:.0} ms suspension");
    }
    for n in &r.notes {
        let _ = write!(line, "; {n}");
    }
    line
}

fn figures_line(e: &EntryReport) -> String {
    let mut line = format!(
        "landed {} in {:.2} s",
        e.landed.as_deref().unwrap_or("?"),
        e.total_s.unwrap_or(0.0)
    );
    if let Some(s) = e.suspension_ms {
        let _ = write!(line, ", suspension {s:.1} ms");
    }
    if let Some(b) = e.wire_bytes {
        let _ = write!(line, ", {:.0} MB on the wire", b as f64 / 1e6);
    }
    if let Some(t) = e.throughput_mbps {
        let _ = write!(line, ", memory at {t:.0} MB/s");
    }
    if let Some(c) = e.bandwidth_cap_mbps {
        let _ = write!(line, " (wire capped at up to {c:.0} MB/s)");
    }
    line
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where runs keep their reports: `DIR/RUN/report.{json,txt,html}`.
#[derive(Clone, Debug)]
pub struct RunStore {
    dir: PathBuf,
}

/// Why a report could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No run of that id (or none at all).
    #[error("no policy run {0:?} in {1}; `policy report` lists the runs there")]
    NotFound(String, String),
    /// Reading or writing failed.
    #[error("policy run report {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is not a report.
    #[error("policy run report {} is not a report: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

impl RunStore {
    /// Reports under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The manager's own (`DATA/policy-runs`).
    pub fn for_manager(dirs: &lparmover::dirs::ManagerDirs) -> Self {
        Self::new(dirs.data().join("policy-runs"))
    }

    /// The directory of run `run`.
    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.dir.join(run)
    }

    /// Writes the three forms of `report` atomically (JSON last: a run with a JSON has all
    /// three). Returns the HTML page's path.
    pub fn save(&self, report: &RunReport) -> Result<PathBuf, ReportError> {
        let dir = self.run_dir(&report.run);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ReportError::Io { path, source }
        };
        // Reports name every LPAR, HVM and error of a run: owner-only, like the data directory.
        lparmover::fsutil::create_private_dir(&dir).map_err(io(&dir))?;
        let html = dir.join("report.html");
        lparmover::fsutil::write_atomic(&dir.join("report.txt"), report.text().as_bytes())
            .map_err(io(&dir.join("report.txt")))?;
        lparmover::fsutil::write_atomic(&html, report.html().as_bytes()).map_err(io(&html))?;
        let json = dir.join("report.json");
        let body = serde_json::to_vec_pretty(report).map_err(|source| ReportError::Json {
            path: json.clone(),
            source,
        })?;
        lparmover::fsutil::write_atomic(&json, &body).map_err(io(&json))?;
        Ok(html)
    }

    /// Run ids, oldest first.
    pub fn runs(&self) -> Result<Vec<String>, ReportError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ReportError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut runs: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("report.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        runs.sort();
        Ok(runs)
    }

    /// Report of `run`, or of the newest run.
    pub fn load(&self, run: Option<&str>) -> Result<RunReport, ReportError> {
        let run = match run {
            Some(r) => r.to_owned(),
            None => self.runs()?.pop().ok_or_else(|| {
                ReportError::NotFound("(latest)".into(), self.dir.display().to_string())
            })?,
        };
        if run.contains('/') || run.starts_with('.') {
            return Err(ReportError::NotFound(run, self.dir.display().to_string()));
        }
        let path = self.run_dir(&run).join("report.json");
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReportError::NotFound(run, self.dir.display().to_string()));
            }
            Err(source) => return Err(ReportError::Io { path, source }),
        };
        serde_json::from_slice(&body).map_err(|source| ReportError::Json { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunReport {
        let mut skipped = EntryReport::pending(2, "ch1-b1/db-01".into(), "ch1-b2".into());
        skipped.result = EntryResult::Skipped;
        skipped.attempts = 1;
        skipped.failures.push(Failure {
            attempt: 1,
            error: "migration WWPNs <not registered>".into(),
            action: Some("Register them & retry".into()),
            code: None,
        });
        let mut done = EntryReport::pending(1, "ch1-b1/web-01".into(), "ch1-b2".into());
        done.result = EntryResult::Completed;
        done.total_s = Some(2.5);
        done.suspension_ms = Some(12.0);
        done.landed = Some("ch1-b2/2".into());
        RunReport {
            run: "run-20261202-220000-evening".into(),
            policy: "evening".into(),
            mode: lparmover::model::Mode::ConcurrentMaintenance,
            origin: "cli".into(),
            started: Utc::now(),
            ended: Some(Utc::now()),
            window_end: None,
            outcome: Some(RunOutcome::Finished),
            peak_concurrency: 1,
            concurrency_cap: 2,
            bandwidth_cap_mbps: None,
            entries: vec![done, skipped],
        }
    }

    #[test]
    fn the_report_round_trips_and_its_pages_show_every_entry_escaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RunStore::new(dir.path());
        let report = sample();
        let html_path = store.save(&report).expect("save");
        {
            use std::os::unix::fs::PermissionsExt;
            let run_dir = html_path.parent().expect("run dir");
            let mode = std::fs::metadata(run_dir)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "a run's reports are owner-only");
        }
        let html = std::fs::read_to_string(html_path).expect("html");
        assert!(html.contains("ch1-b1/web-01") && html.contains("ch1-b1/db-01"));
        assert!(
            html.contains("&lt;not registered&gt;") && html.contains("Register them &amp; retry")
        );
        assert!(!html.contains("<not registered>"));
        assert_eq!(store.load(None).expect("latest"), report);
        assert_eq!(
            store.runs().expect("runs"),
            std::slice::from_ref(&report.run)
        );
        let text = report.text();
        assert!(text.contains("1 completed, 1 skipped"), "{text}");
        assert!(text.contains("action: Register them & retry"), "{text}");
        assert!(matches!(
            store.load(Some("../x")),
            Err(ReportError::NotFound(..))
        ));
    }
}
