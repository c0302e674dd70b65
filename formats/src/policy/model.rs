//! A validated migration policy: what the runner, the daemon and the navigator work on. Every
//! value here has passed [`super::file::parse`]; a `Policy` cannot hold a mixed mode, a cap out
//! of range or an entry that names no LPAR.

use std::fmt;
use std::time::Duration;

use crate::model::Mode;
use crate::moves::{Destination, LparRef};
use chrono::NaiveTime;

/// Most migrations one policy runs at once (seed 000).
pub const MAX_CONCURRENCY: u8 = 10;
/// Concurrent migrations when the policy does not say (seed 000).
pub const DEFAULT_CONCURRENCY: u8 = 5;
/// Most retries `on_error = "retry"` may ask for before it skips.
pub const MAX_RETRIES: u8 = 5;
/// Most entries one policy holds (a blade holds 60 LPARs; a policy may empty several).
pub const MAX_ENTRIES: usize = 1000;
/// Stall timeout when the policy does not say: as long without progress before a move is
/// cancelled (its source keeps running) and counted as failed.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A policy's name: 1–64 of `A–Z a–z 0–9 . _ -`, not starting with a dot (it names the file).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName(String);

impl PolicyName {
    /// Longest name.
    pub const MAX_LEN: usize = 64;

    /// Checks `text` as a policy name.
    pub fn new(text: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(format!(
                "a policy name has 1 to {} characters; {:?} has {}",
                Self::MAX_LEN,
                text.chars().take(80).collect::<String>(),
                text.chars().count()
            ));
        }
        if text.starts_with('.') || !text.chars().all(ok_char) {
            return Err(format!(
                "policy name {text:?}: use letters, digits, '.', '_' and '-' only, not starting with '.' (it names the file NAME.toml)"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an unattended run does when an entry fails (interactive runs ask the operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Skip the entry and go on with the next.
    Skip,
    /// End the run: running entries finish, nothing new starts.
    End,
    /// Run the entry again up to this many times, then skip it.
    RetryThenSkip(u8),
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skip => f.write_str("skip"),
            Self::End => f.write_str("end"),
            Self::RetryThenSkip(n) => write!(f, "retry {n} time(s), then skip"),
        }
    }
}

/// A cap on the migration path shared by the running entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bandwidth {
    /// No cap (the file's `-1`).
    Unlimited,
    /// At most this many MB/s (10^6 bytes) for all running entries together.
    MegabytesPerSecond(u64),
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlimited => f.write_str("none"),
            Self::MegabytesPerSecond(n) => write!(f, "{n} MB/s"),
        }
    }
}

/// How many entries may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concurrency {
    /// In all (1..=10).
    pub total: u8,
    /// Leaving one source HVM.
    pub per_source_hvm: u8,
    /// Arriving at one destination HVM.
    pub per_destination_hvm: u8,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            total: DEFAULT_CONCURRENCY,
            per_source_hvm: DEFAULT_CONCURRENCY,
            per_destination_hvm: DEFAULT_CONCURRENCY,
        }
    }
}

/// Caps and timeouts of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent entries.
    pub concurrency: Concurrency,
    /// Migration-path cap shared by the running entries.
    pub bandwidth: Bandwidth,
    /// A live move's timeout per GiB of LPAR memory (overrides the entry's own when larger).
    pub completion_timeout_per_gib: Option<Duration>,
    /// As long without progress before a live move is cancelled and counted as failed.
    pub stall_timeout: Duration,
    /// Live moves: raise the downtime limit step by step as rounds stall, then give up.
    pub convergence: Option<crate::moves::ConvergenceSchedule>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: Concurrency::default(),
            bandwidth: Bandwidth::Unlimited,
            completion_timeout_per_gib: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            convergence: None,
        }
    }
}

/// When an unattended run starts and by when it must be over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Standard 5-field cron expression, as written.
    pub cron: String,
    /// Time zone the expression and the window end are read in.
    pub time_zone: chrono_tz::Tz,
    /// Local time the window ends (the next one after the start; windows may cross midnight).
    pub window_end: NaiveTime,
}

/// One migration of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The LPAR and where it is when the entry runs.
    pub source: LparRef,
    /// Where it goes (Auto: the youngest free LPAR number).
    pub destination: Destination,
    /// Shutdown mode: activate the LPAR on the destination afterwards.
    pub activate: bool,
    /// Shutdown mode: shut the guest OS down remotely if the LPAR is activated.
    pub guest_shutdown: bool,
    /// Live: give up without convergence after this long; Shutdown: the remote shutdown's
    /// waiting limit.
    pub timeout: Option<Duration>,
    /// Live: longest acceptable suspension.
    pub downtime_limit: Option<Duration>,
    /// Line of the entry in its file (for messages), 0 when built in memory.
    pub line: usize,
}

impl Entry {
    /// A live or Shutdown entry with the defaults.
    pub fn new(source: LparRef, destination: Destination) -> Self {
        Self {
            source,
            destination,
            activate: false,
            guest_shutdown: false,
            timeout: None,
            downtime_limit: None,
            line: 0,
        }
    }

    /// `HVM/LPAR → HVM[/N]`, as an operator reads it.
    pub fn describe(&self) -> String {
        let dest = match self.destination.number {
            Some(_) => self.destination.to_string(),
            None => format!("{} (Auto)", self.destination.hvm),
        };
        format!("{} → {dest}", self.source)
    }
}

/// A named, ordered list of migrations of one mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Name (also the file's stem).
    pub name: PolicyName,
    /// The operator's memo.
    pub comment: String,
    /// The one mode of every entry.
    pub mode: Mode,
    /// Rehearse every entry at the start of the run.
    pub rehearse: bool,
    /// What an unattended run does on a failed entry.
    pub on_error: OnError,
    /// When the daemon runs it (None: by hand only).
    pub schedule: Option<Schedule>,
    /// Caps and timeouts.
    pub limits: Limits,
    /// The entries, in order.
    pub entries: Vec<Entry>,
}

impl Policy {
    /// An empty policy of `mode`.
    pub fn new(name: PolicyName, mode: Mode) -> Self {
        Self {
            name,
            comment: String::new(),
            mode,
            rehearse: false,
            on_error: OnError::Skip,
            schedule: None,
            limits: Limits::default(),
            entries: Vec::new(),
        }
    }
}

impl Schedule {
    /// The first start strictly after `after`, or None when the expression never fires again.
    pub fn next_start_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use std::str::FromStr;
        let cron = croner::Cron::from_str(&self.cron).ok()?;
        cron.find_next_occurrence(&after.with_timezone(&self.time_zone), false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// When the window that opens at `start` closes: the next `window_end` local time after
    /// it (so a 22:00 start with a 05:00 end closes the next morning).
    pub fn window_end_after(
        &self,
        start: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone as _;
        let local = start.with_timezone(&self.time_zone);
        (0..3)
            .filter_map(|days| {
                let date = local.date_naive() + chrono::Duration::days(days);
                // A local time a daylight-saving change skips falls back to an hour later.
                let at = date.and_time(self.window_end);
                self.time_zone
                    .from_local_datetime(&at)
                    .earliest()
                    .or_else(|| {
                        self.time_zone
                            .from_local_datetime(&(at + chrono::Duration::hours(1)))
                            .earliest()
                    })
            })
            .map(|t| t.with_timezone(&chrono::Utc))
            .find(|t| *t > start)
            .unwrap_or(start + chrono::Duration::days(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn schedule(cron: &str, tz: chrono_tz::Tz, end: &str) -> Schedule {
        Schedule {
            cron: cron.into(),
            time_zone: tz,
            window_end: NaiveTime::parse_from_str(end, "%H:%M").expect("time"),
        }
    }

    #[test]
    fn a_weekday_night_schedule_starts_in_its_zone_and_its_window_crosses_midnight() {
        let s = schedule("0 22 * * 1-5", chrono_tz::Asia::Tokyo, "05:00");
        // Friday 2026-12-04 12:00 UTC = 21:00 in Tokyo: the next start is 22:00 Tokyo, 13:00 UTC.
        let friday = Utc
            .with_ymd_and_hms(2026, 12, 4, 12, 0, 0)
            .single()
            .expect("t");
        let start = s.next_start_after(friday).expect("fires");
        assert_eq!(
            start,
            Utc.with_ymd_and_hms(2026, 12, 4, 13, 0, 0)
                .single()
                .expect("t")
        );
        // After it, Saturday and Sunday are skipped: Monday 22:00 Tokyo.
        let next = s.next_start_after(start).expect("fires");
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 12, 7, 13, 0, 0)
                .single()
                .expect("t")
        );
        // 05:00 Tokyo the next morning = 20:00 UTC the same day.
        assert_eq!(
            s.window_end_after(start),
            Utc.with_ymd_and_hms(2026, 12, 4, 20, 0, 0)
                .single()
                .expect("t")
        );
    }
}
