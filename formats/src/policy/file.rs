//! Policy files: TOML as operators write it, read into a [`Policy`] only when every value is
//! valid, and written back (Save, Save as, a reverse or an evacuation policy) in the same form.
//!
//! Every problem is reported with its line, all at once, so one edit fixes a file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::model::Mode;
use crate::moves::{
    ConvergenceSchedule, ConvergenceStep, DEFAULT_DOWNTIME_LIMIT_MS, Destination, LparRef,
    MAX_DOWNTIME_LIMIT_MS, parse_duration,
};
use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::model::{
    Bandwidth, Concurrency, Entry, Limits, MAX_CONCURRENCY, MAX_ENTRIES, MAX_RETRIES, OnError,
    Policy, PolicyName, Schedule,
};

/// Largest policy file read (a thousand entries fit in far less).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest bandwidth cap a file may give, MB/s (1 TB/s: beyond any link).
pub const MAX_BANDWIDTH_MBPS: i64 = 1_000_000;
/// Shortest stall timeout: the progress samples come every second or so.
pub const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest comment kept.
pub const MAX_COMMENT_CHARS: usize = 4096;

/// One thing wrong in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong and what to write instead.
    pub text: String,
}

/// Why a policy file was not read. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bigger than any policy.
    #[error("policy file {} has {size} bytes, more than the {MAX_FILE_BYTES} a policy may have; split it", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The text is not a valid policy.
    #[error("{}", Invalid { path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Everything wrong in it, by line.
        problems: Vec<Problem>,
    },
}

struct Invalid<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "policy file {} is not valid ({n} problem{}); nothing was changed:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            if p.line > 0 {
                write!(f, "\n  {}:{}: {}", self.path.display(), p.line, p.text)?;
            } else {
                write!(f, "\n  {}: {}", self.path.display(), p.text)?;
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    comment: String,
    mode: Spanned<String>,
    #[serde(default)]
    rehearse: bool,
    on_error: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    schedule: Option<Spanned<RawSchedule>>,
    limits: Option<Spanned<RawLimits>>,
    #[serde(default, rename = "entry")]
    entries: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
    time_zone: Spanned<String>,
    window_end: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    concurrency: Option<Spanned<i64>>,
    per_source_hvm: Option<Spanned<i64>>,
    per_destination_hvm: Option<Spanned<i64>>,
    bandwidth_mbps: Option<Spanned<i64>>,
    completion_timeout_per_gib: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    convergence: Option<Spanned<RawConvergence>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConvergence {
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    abort_after_stalled_rounds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    stalled_rounds: Spanned<i64>,
    downtime_limit: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    source: Spanned<String>,
    destination: Spanned<String>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    activate: Option<Spanned<bool>>,
    #[serde(default)]
    guest_shutdown: Option<Spanned<bool>>,
    timeout: Option<Spanned<String>>,
    downtime_limit: Option<Spanned<String>>,
}

/// Byte offsets → 1-based lines.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn at(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
    fn of<T>(&self, s: &Spanned<T>) -> usize {
        self.at(s.span().start)
    }
}

/// Reads and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, PolicyFileError> {
    let read = |source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_FILE_BYTES {
        return Err(PolicyFileError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse(&text).map_err(|problems| PolicyFileError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

/// Validates policy text: the policy, or every problem in it with its line.
pub fn parse(text: &str) -> Result<Policy, Vec<Problem>> {
    let lines = Lines(text);
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        vec![Problem {
            line: e.span().map_or(0, |s| lines.at(s.start)),
            text: e.message().trim().to_owned(),
        }]
    })?;
    let mut problems = Vec::new();
    let mut problem = |line: usize, text: String| problems.push(Problem { line, text });

    let name = PolicyName::new(raw.name.get_ref())
        .map_err(|e| problem(lines.of(&raw.name), e))
        .ok();
    let mode = raw.mode.get_ref().parse::<Mode>().unwrap_or_else(|e| {
        problem(lines.of(&raw.mode), e.to_string());
        Mode::ConcurrentMaintenance
    });
    if raw.comment.chars().count() > MAX_COMMENT_CHARS {
        problem(
            0,
            format!("comment has more than {MAX_COMMENT_CHARS} characters; shorten it"),
        );
    }
    let on_error = on_error(&raw, &lines, &mut problem);
    let schedule = raw
        .schedule
        .as_ref()
        .and_then(|s| schedule(s.get_ref(), &lines, &mut problem));
    let limits = raw
        .limits
        .as_ref()
        .map(|l| limits(l.get_ref(), &lines, &mut problem))
        .unwrap_or_default();
    if raw.entries.len() > MAX_ENTRIES {
        problem(
            0,
            format!(
                "{} entries; a policy holds at most {MAX_ENTRIES}: split it",
                raw.entries.len()
            ),
        );
    }
    let entries: Vec<Entry> = raw
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| entry(i + 1, e, mode, &lines, &mut problem))
        .collect();
    if let Some(schedule) = &limits.convergence {
        let line = raw
            .limits
            .as_ref()
            .and_then(|l| l.get_ref().convergence.as_ref())
            .map_or(0, |c| lines.of(c));
        if !mode.is_live() {
            problem(
                line,
                "[limits.convergence] is for live moves; a Shutdown-mode move has no pre-copy rounds (remove it)".into(),
            );
        }
        // Each entry's own downtime limit is where the schedule starts: its steps must rise
        // above it.
        for (i, e) in entries.iter().enumerate() {
            let base = e.downtime_limit.map_or(DEFAULT_DOWNTIME_LIMIT_MS, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            });
            if let Err(why) = schedule.validate(base) {
                problem(
                    e.line,
                    format!(
                        "entry {}: its downtime limit of {base} ms does not fit [limits.convergence] (line {line}): {why}",
                        i + 1
                    ),
                );
            }
        }
    }
    match name {
        Some(name) if problems.is_empty() => Ok(Policy {
            name,
            comment: raw.comment,
            mode,
            rehearse: raw.rehearse,
            on_error,
            schedule,
            limits,
            entries,
        }),
        _ => {
            problems.sort_by_key(|p| p.line);
            Err(problems)
        }
    }
}

fn on_error(
    raw: &RawPolicy,
    lines: &Lines<'_>,
    problem: &mut impl FnMut(usize, String),
) -> OnError {
    let retries = raw.retries.as_ref();
    let action = raw
        .on_error
        .as_ref()
        .map(|s| (s.get_ref().as_str(), lines.of(s)));
    match action {
        None | Some(("skip", _)) | Some(("end", _)) => {
            if let Some(r) = retries {
                problem(
                    lines.of(r),
                    "`retries` goes with on_error = \"retry\"; remove it or set on_error = \"retry\"".into(),
                );
            }
            match action {
                Some(("end", _)) => OnError::End,
                _ => OnError::Skip,
            }
        }
        Some(("retry", _)) => match retries {
            None => OnError::RetryThenSkip(2),
            Some(r) => match u8::try_from(*r.get_ref()) {
                Ok(n @ 1..=MAX_RETRIES) => OnError::RetryThenSkip(n),
                _ => {
                    problem(
                        lines.of(r),
                        format!("retries = {}: give 1 to {MAX_RETRIES}", r.get_ref()),
                    );
                    OnError::RetryThenSkip(2)
                }
            },
        },
        Some((other, line)) => {
            problem(
                line,
                format!(
                    "on_error = {other:?}: write \"skip\", \"end\" or \"retry\" (with retries = N, then skip)"
                ),
            );
            OnError::Skip
        }
    }
}

fn duration(
    s: &Spanned<String>,
    field: &str,
    lines: &Lines<'_>,
    problem: &mut impl FnMut(usize, String),
) -> Option<Duration> {
    parse_duration(s.get_ref())
        .map_err(|e| problem(lines.of(s), format!("{field}: {e}")))
        .ok()
}

fn schedule(
    raw: &RawSchedule,
    lines: &Lines<'_>,
    problem: &mut impl FnMut(usize, String),
) -> Option<Schedule> {
    let cron_text = raw.cron.get_ref().trim();
    let fields = cron_text.split_whitespace().count();
    let cron_ok = if fields != 5 {
        problem(
            lines.of(&raw.cron),
            format!(
                "cron = {cron_text:?} has {fields} field(s); write the standard 5: minute hour day-of-month month day-of-week (e.g. \"0 22 * * 1-5\")"
            ),
        );
        false
    } else {
        match croner::Cron::from_str(cron_text) {
            Ok(_) => true,
            Err(e) => {
                problem(lines.of(&raw.cron), format!("cron = {cron_text:?}: {e}"));
                false
            }
        }
    };
    let zone = raw
        .time_zone
        .get_ref()
        .parse::<chrono_tz::Tz>()
        .map_err(|_| {
            problem(
                lines.of(&raw.time_zone),
                format!(
                    "time_zone = {:?} is not an IANA time zone; write e.g. \"UTC\", \"Europe/Berlin\" or \"Asia/Tokyo\"",
                    raw.time_zone.get_ref()
                ),
            )
        })
        .ok();
    let end = NaiveTime::parse_from_str(raw.window_end.get_ref(), "%H:%M")
        .map_err(|_| {
            problem(
                lines.of(&raw.window_end),
                format!(
                    "window_end = {:?}: write the local time the window closes as HH:MM (e.g. \"05:30\"; it may be after midnight)",
                    raw.window_end.get_ref()
                ),
            )
        })
        .ok();
    match (cron_ok, zone, end) {
        (true, Some(time_zone), Some(window_end)) => Some(Schedule {
            cron: cron_text.to_owned(),
            time_zone,
            window_end,
        }),
        _ => None,
    }
}

fn limits(raw: &RawLimits, lines: &Lines<'_>, problem: &mut impl FnMut(usize, String)) -> Limits {
    let mut limits = Limits::default();
    let mut cap = |s: &Option<Spanned<i64>>, field: &str, max: u8| -> Option<u8> {
        let s = s.as_ref()?;
        match u8::try_from(*s.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                problem(
                    lines.of(s),
                    format!("{field} = {}: give 1 to {max}", s.get_ref()),
                );
                None
            }
        }
    };
    let total = cap(&raw.concurrency, "concurrency", MAX_CONCURRENCY)
        .unwrap_or(super::model::DEFAULT_CONCURRENCY);
    let per_source = cap(&raw.per_source_hvm, "per_source_hvm", total).unwrap_or(total);
    let per_destination =
        cap(&raw.per_destination_hvm, "per_destination_hvm", total).unwrap_or(total);
    limits.concurrency = Concurrency {
        total,
        per_source_hvm: per_source,
        per_destination_hvm: per_destination,
    };
    if let Some(b) = &raw.bandwidth_mbps {
        limits.bandwidth = match *b.get_ref() {
            -1 => Bandwidth::Unlimited,
            n @ 1..=MAX_BANDWIDTH_MBPS if n >= i64::from(total) => {
                Bandwidth::MegabytesPerSecond(n.unsigned_abs())
            }
            n @ 1..=MAX_BANDWIDTH_MBPS => {
                problem(
                    lines.of(b),
                    format!(
                        "bandwidth_mbps = {n} is shared by up to {total} running entries, under the 1 MB/s a move needs each; give at least {total} or lower concurrency"
                    ),
                );
                Bandwidth::Unlimited
            }
            n => {
                problem(
                    lines.of(b),
                    format!(
                        "bandwidth_mbps = {n}: give -1 (no cap) or 1 to {MAX_BANDWIDTH_MBPS} MB/s for all running entries together"
                    ),
                );
                Bandwidth::Unlimited
            }
        };
    }
    if let Some(s) = &raw.completion_timeout_per_gib {
        limits.completion_timeout_per_gib =
            duration(s, "completion_timeout_per_gib", lines, problem);
    }
    if let Some(s) = &raw.stall_timeout
        && let Some(d) = duration(s, "stall_timeout", lines, problem)
    {
        if d < MIN_STALL_TIMEOUT {
            problem(
                lines.of(s),
                format!(
                    "stall_timeout = {:?}: give at least {} s (progress arrives about once a second)",
                    s.get_ref(),
                    MIN_STALL_TIMEOUT.as_secs()
                ),
            );
        } else {
            limits.stall_timeout = d;
        }
    }
    if let Some(c) = &raw.convergence {
        limits.convergence = convergence(c, lines, problem);
    }
    limits
}

/// `[limits.convergence]`: `steps = [{ stalled_rounds = 3, downtime_limit = "100ms" }, …]` and
/// `abort_after_stalled_rounds = N`. Checked on its own here (ranges, rising order from the
/// default limit); against each entry's own limit once the entries are read.
fn convergence(
    raw: &Spanned<RawConvergence>,
    lines: &Lines<'_>,
    problem: &mut impl FnMut(usize, String),
) -> Option<ConvergenceSchedule> {
    let line = lines.of(raw);
    let raw = raw.get_ref();
    let mut ok = true;
    let mut rounds = |s: &Spanned<i64>, field: &str| -> u32 {
        match u32::try_from(*s.get_ref()) {
            Ok(n) if (1..=crate::moves::MAX_STALLED_ROUNDS).contains(&n) => n,
            _ => {
                ok = false;
                problem(
                    lines.of(s),
                    format!(
                        "convergence: {field} = {}: give 1 to {}",
                        s.get_ref(),
                        crate::moves::MAX_STALLED_ROUNDS
                    ),
                );
                0
            }
        }
    };
    let mut steps = Vec::new();
    let mut limits = Vec::new();
    for step in &raw.steps {
        let stalled_rounds = rounds(&step.get_ref().stalled_rounds, "stalled_rounds");
        limits.push(&step.get_ref().downtime_limit);
        steps.push(ConvergenceStep {
            stalled_rounds,
            downtime_limit_ms: 0,
        });
    }
    let abort_after_stalled_rounds = raw
        .abort_after_stalled_rounds
        .as_ref()
        .map(|a| rounds(a, "abort_after_stalled_rounds"));
    for (step, limit) in steps.iter_mut().zip(limits) {
        match parse_duration(limit.get_ref()) {
            Ok(d) if d.as_millis() <= u128::from(MAX_DOWNTIME_LIMIT_MS) => {
                step.downtime_limit_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            }
            Ok(_) => {
                ok = false;
                problem(
                    lines.of(limit),
                    format!(
                        "convergence: downtime_limit = {:?}: give at most {MAX_DOWNTIME_LIMIT_MS} ms",
                        limit.get_ref()
                    ),
                );
            }
            Err(e) => {
                ok = false;
                problem(lines.of(limit), format!("convergence: downtime_limit: {e}"));
            }
        }
    }
    if raw.steps.is_empty() && abort_after_stalled_rounds.is_none() {
        problem(
            line,
            "[limits.convergence] has no steps and no abort_after_stalled_rounds; give steps = [{ stalled_rounds = 3, downtime_limit = \"100ms\" }] or remove it".into(),
        );
        return None;
    }
    let schedule = ConvergenceSchedule {
        steps,
        abort_after_stalled_rounds,
    };
    if !ok {
        return None;
    }
    // Against the default limit here; an entry with its own limit is checked again.
    if let Err(why) = schedule.validate(1) {
        problem(line, format!("[limits.convergence]: {why}"));
        return None;
    }
    Some(schedule)
}

fn entry(
    index: usize,
    raw: &Spanned<RawEntry>,
    mode: Mode,
    lines: &Lines<'_>,
    problem: &mut impl FnMut(usize, String),
) -> Option<Entry> {
    let line = lines.of(raw);
    let raw = raw.get_ref();
    let mut ok = true;
    let mut fail = |line: usize, text: String| {
        ok = false;
        problem(line, format!("entry {index}: {text}"));
    };
    if let Some(m) = &raw.mode {
        match m.get_ref().parse::<Mode>() {
            Ok(m2) if m2 != mode => fail(
                lines.of(m),
                format!(
                    "mode {m2} in a {mode} policy: a policy holds entries of one mode only (the manual: Shutdown and Concurrent Maintenance entries cannot be registered together); put it in a policy of its own"
                ),
            ),
            Ok(_) => {}
            Err(e) => fail(lines.of(m), e.to_string()),
        }
    }
    let source = raw
        .source
        .get_ref()
        .parse::<LparRef>()
        .map_err(|e| fail(lines.of(&raw.source), format!("source: {e}")))
        .ok();
    let destination = raw
        .destination
        .get_ref()
        .parse::<Destination>()
        .map_err(|e| fail(lines.of(&raw.destination), format!("destination: {e}")))
        .ok();
    if let (Some(s), Some(d)) = (&source, &destination)
        && s.hvm == d.hvm
    {
        fail(
            lines.of(&raw.destination),
            format!(
                "destination {} is the LPAR's own HVM; a migration goes to another HVM",
                d.hvm
            ),
        );
    }
    let shutdown_only = |field: &str| {
        format!(
            "{field} is a Shutdown-mode option; a live move keeps the guest running and active (remove it)"
        )
    };
    if mode.is_live() {
        if let Some(a) = &raw.activate {
            fail(lines.of(a), shutdown_only("activate"));
        }
        if let Some(g) = &raw.guest_shutdown {
            fail(lines.of(g), shutdown_only("guest_shutdown"));
        }
    } else if let Some(d) = &raw.downtime_limit {
        fail(
            lines.of(d),
            "downtime_limit is for live moves; a Shutdown-mode move has no suspension (remove it)"
                .into(),
        );
    }
    let mut timeout = None;
    if let Some(t) = &raw.timeout {
        match parse_duration(t.get_ref()) {
            Ok(d) => timeout = Some(d),
            Err(e) => fail(lines.of(t), format!("timeout: {e}")),
        }
    }
    let mut downtime_limit = None;
    if let Some(t) = &raw.downtime_limit {
        match parse_duration(t.get_ref()) {
            Ok(d) if d.as_millis() <= u128::from(crate::moves::MAX_DOWNTIME_LIMIT_MS) => {
                downtime_limit = Some(d)
            }
            Ok(_) => fail(
                lines.of(t),
                format!(
                    "downtime_limit = {:?}: give at most {} ms",
                    t.get_ref(),
                    crate::moves::MAX_DOWNTIME_LIMIT_MS
                ),
            ),
            Err(e) => fail(lines.of(t), format!("downtime_limit: {e}")),
        }
    }
    let (source, destination) = (source?, destination?);
    ok.then(|| Entry {
        source,
        destination,
        activate: raw.activate.as_ref().is_some_and(|a| *a.get_ref()),
        guest_shutdown: raw.guest_shutdown.as_ref().is_some_and(|g| *g.get_ref()),
        timeout,
        downtime_limit,
        line,
    })
}

#[derive(Serialize)]
struct OutPolicy<'a> {
    name: &'a str,
    comment: &'a str,
    mode: &'static str,
    rehearse: bool,
    on_error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<OutSchedule>,
    limits: OutLimits,
    #[serde(rename = "entry")]
    entries: Vec<OutEntry>,
}

#[derive(Serialize)]
struct OutSchedule {
    cron: String,
    time_zone: String,
    window_end: String,
}

#[derive(Serialize)]
struct OutLimits {
    concurrency: u8,
    per_source_hvm: u8,
    per_destination_hvm: u8,
    bandwidth_mbps: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_timeout_per_gib: Option<String>,
    stall_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    convergence: Option<OutConvergence>,
}

#[derive(Serialize)]
struct OutConvergence {
    steps: Vec<OutStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort_after_stalled_rounds: Option<u32>,
}

#[derive(Serialize)]
struct OutStep {
    stalled_rounds: u32,
    downtime_limit: String,
}

#[derive(Serialize)]
struct OutEntry {
    source: String,
    destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    activate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_shutdown: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    downtime_limit: Option<String>,
}

fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The policy as file text; [`parse`] reads it back to an equal policy (lines aside).
pub fn render(policy: &Policy) -> String {
    let (on_error, retries) = match policy.on_error {
        OnError::Skip => ("skip", None),
        OnError::End => ("end", None),
        OnError::RetryThenSkip(n) => ("retry", Some(n)),
    };
    let live = policy.mode.is_live();
    let out = OutPolicy {
        name: policy.name.as_str(),
        comment: &policy.comment,
        mode: if live { "concurrent" } else { "shutdown" },
        rehearse: policy.rehearse,
        on_error,
        retries,
        schedule: policy.schedule.as_ref().map(|s| OutSchedule {
            cron: s.cron.clone(),
            time_zone: s.time_zone.name().to_owned(),
            window_end: s.window_end.format("%H:%M").to_string(),
        }),
        limits: OutLimits {
            concurrency: policy.limits.concurrency.total,
            per_source_hvm: policy.limits.concurrency.per_source_hvm,
            per_destination_hvm: policy.limits.concurrency.per_destination_hvm,
            bandwidth_mbps: match policy.limits.bandwidth {
                Bandwidth::Unlimited => -1,
                Bandwidth::MegabytesPerSecond(n) => i64::try_from(n).unwrap_or(i64::MAX),
            },
            completion_timeout_per_gib: policy.limits.completion_timeout_per_gib.map(show_duration),
            stall_timeout: show_duration(policy.limits.stall_timeout),
            convergence: policy.limits.convergence.as_ref().map(|c| OutConvergence {
                steps: c
                    .steps
                    .iter()
                    .map(|s| OutStep {
                        stalled_rounds: s.stalled_rounds,
                        downtime_limit: format!("{}ms", s.downtime_limit_ms),
                    })
                    .collect(),
                abort_after_stalled_rounds: c.abort_after_stalled_rounds,
            }),
        },
        entries: policy
            .entries
            .iter()
            .map(|e| OutEntry {
                source: e.source.to_string(),
                destination: e.destination.to_string(),
                activate: (!live).then_some(e.activate),
                guest_shutdown: (!live).then_some(e.guest_shutdown),
                timeout: e.timeout.map(show_duration),
                downtime_limit: e.downtime_limit.map(show_duration),
            })
            .collect(),
    };
    toml::to_string(&out).unwrap_or_else(|e| format!("# could not render the policy: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "evening"
comment = "web tier to the second blade"
mode = "concurrent"
rehearse = true
on_error = "retry"
retries = 1

[schedule]
cron = "0 22 * * 1-5"
time_zone = "Asia/Tokyo"
window_end = "05:00"

[limits]
concurrency = 2
per_source_hvm = 1
bandwidth_mbps = 400
completion_timeout_per_gib = "120s"
stall_timeout = "30s"

[[entry]]
source = "ch1-b1/web-01"
destination = "ch1-b2"
downtime_limit = "80ms"

[[entry]]
source = "ch1-b2/app-01"
destination = "ch1-b1/7"
timeout = "10m"
"#;

    #[test]
    fn a_good_file_reads_into_its_policy_and_renders_back_to_the_same() {
        let p = parse(GOOD).expect("valid");
        assert_eq!(p.name.as_str(), "evening");
        assert_eq!(p.mode, Mode::ConcurrentMaintenance);
        assert_eq!(p.on_error, OnError::RetryThenSkip(1));
        assert_eq!(p.limits.concurrency.total, 2);
        assert_eq!(p.limits.concurrency.per_source_hvm, 1);
        assert_eq!(p.limits.concurrency.per_destination_hvm, 2);
        assert_eq!(p.limits.bandwidth, Bandwidth::MegabytesPerSecond(400));
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].line, 21, "the line of its [[entry]] header");
        assert_eq!(p.entries[1].destination.to_string(), "ch1-b1/7");
        assert_eq!(p.entries[1].timeout, Some(Duration::from_secs(600)));
        let schedule = p.schedule.as_ref().expect("schedule");
        assert_eq!(schedule.time_zone, chrono_tz::Asia::Tokyo);
        let again = parse(&render(&p)).expect("rendered text is valid");
        let strip = |mut p: Policy| {
            p.entries.iter_mut().for_each(|e| e.line = 0);
            p
        };
        assert_eq!(strip(again), strip(p));
    }

    const CONVERGING: &str = r#"name = "converging"
mode = "concurrent"

[limits.convergence]
steps = [
  { stalled_rounds = 3, downtime_limit = "100ms" },
  { stalled_rounds = 6, downtime_limit = "300ms" },
]
abort_after_stalled_rounds = 10

[[entry]]
source = "ch1-b1/web-01"
destination = "ch1-b2"
"#;

    #[test]
    fn a_convergence_schedule_reads_checks_each_entry_and_renders_back() {
        let p = parse(CONVERGING).expect("valid");
        let c = p.limits.convergence.clone().expect("a schedule");
        assert_eq!(c.downtime_limit_after(3, 50), 100);
        assert_eq!(c.downtime_limit_after(7, 50), 300);
        assert!(c.gives_up_after(10));
        let again = parse(&render(&p)).expect("rendered text is valid");
        assert_eq!(again.limits, p.limits);
        // An entry whose own limit is already above the first step does not fit.
        let high = CONVERGING.replace(
            "destination = \"ch1-b2\"",
            "destination = \"ch1-b2\"\ndowntime_limit = \"200ms\"",
        );
        let problems = parse(&high).unwrap_err();
        assert!(
            problems.iter().any(|p| p.line == 11
                && p.text.contains("entry 1: its downtime limit of 200 ms")
                && p.text.contains("step 1")),
            "{problems:?}"
        );
        // Falling steps, a huge count, a Shutdown policy: each named with its line.
        let falling = CONVERGING.replace("\"300ms\"", "\"80ms\"");
        assert!(
            parse(&falling)
                .unwrap_err()
                .iter()
                .any(|p| p.line == 4 && p.text.contains("step 2: downtime_limit = 80 ms")),
            "{falling}"
        );
        let huge = CONVERGING.replace("= 10\n", "= 18446744073709551615\n");
        assert!(parse(&huge).is_err(), "{huge}");
        let cold = CONVERGING.replace("\"concurrent\"", "\"shutdown\"");
        assert!(
            parse(&cold)
                .unwrap_err()
                .iter()
                .any(|p| p.text.contains("for live moves")),
            "{cold}"
        );
    }

    #[test]
    fn mixing_modes_is_refused_with_the_line_of_the_odd_entry() {
        let text = r#"name = "mixed"
mode = "concurrent"

[[entry]]
source = "ch1-b1/web-01"
destination = "ch1-b2"

[[entry]]
source = "ch1-b1/batch-01"
destination = "ch1-b2"
mode = "shutdown"
"#;
        let problems = parse(text).expect_err("mixed modes");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 11);
        assert!(problems[0].text.contains("entry 2"), "{}", problems[0].text);
        assert!(
            problems[0].text.contains("one mode only"),
            "{}",
            problems[0].text
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_line_at_once() {
        let text = r#"name = "bad name!"
mode = "concurrent"
on_error = "panic"

[schedule]
cron = "0 22 * *"
time_zone = "Mars/Olympus"
window_end = "25:00"

[limits]
concurrency = 11
bandwidth_mbps = 0

[[entry]]
source = "web-01"
destination = "ch1-b1"
activate = true
"#;
        let problems = parse(text).expect_err("broken");
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 3, 6, 7, 8, 11, 12, 15, 17], "{problems:#?}");
        assert!(problems[2].text.contains("5"), "{}", problems[2].text);
        assert!(problems[5].text.contains("1 to 10"), "{}", problems[5].text);
    }

    #[test]
    fn unknown_keys_and_bad_toml_name_their_line() {
        let problems =
            parse("name = \"a\"\nmode = \"concurrent\"\nconcurency = 3\n").expect_err("typo");
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(problems[0].text.contains("concurency"), "{problems:?}");
        let problems = parse("name = \"a\"\nmode = [\n").expect_err("syntax");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].line >= 2, "{problems:?}");
    }

    #[test]
    fn a_move_to_its_own_hvm_and_live_only_options_in_shutdown_mode_are_refused() {
        let text = r#"name = "cold"
mode = "shutdown"
[[entry]]
source = "ch1-b1/batch-01"
destination = "ch1-b1"
downtime_limit = "50ms"
"#;
        let problems = parse(text).expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].text.contains("own HVM"));
        assert!(
            problems[1]
                .text
                .contains("downtime_limit is for live moves")
        );
    }
}
