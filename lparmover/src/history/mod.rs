//! Migration history (ch. 4 "Tracing back Migration History on LPARs"): every migration instance
//! the manager ran, per LPAR "Now", "old1" … "oldN", with HVM, LPAR number, date and time, mode,
//! result, suspension time and job id.
//!
//! Stored in an embedded SQLite database ([`crate::dirs::ManagerDirs::history_db`]) in WAL mode
//! with `synchronous=FULL`: a [`History::record`] that returned is on disk and survives kill -9
//! or power loss; one that did not return is either wholly there or wholly absent.
//!
//! A job may record itself twice (e.g. [`MoveResult::InProgress`] when it starts, its outcome
//! when it ends): the row of a job id is replaced, never duplicated.
//!
//! Rehearsals and Connectivity Tests ([`TrialRecord`]) prove a move without making it. They are
//! kept apart from the moves: the seed's "Now / old1 / …" rows say where the LPAR *ran*, and a
//! trial never changes that, nor is it a move a return migration could undo
//! ([`History::where_from`] only looks at completed moves). [`History::entries`] lists both, the
//! way the main window's Migration History list shows every instance.
//!
//! Jobs record through [`JobHistory`], which never lets a history problem fail a move.

mod actor;
mod schema;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

pub use actor::{Actor, Origin};
pub use schema::SCHEMA_VERSION;

use crate::dirs::ManagerDirs;
use crate::emg::Emg;
use crate::model::{LparNumber, Mode};

/// How long a writer waits for another process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A history database problem.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite failed (I/O, corruption, lock timeout).
    #[error("migration history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The directory of the database could not be created.
    #[error("cannot create the history directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer lparmover.
    #[error(
        "{path} is a migration history database of schema version {found}, newer than this lparmover reads (up to version {known}); upgrade lparmover to the version that wrote it"
    )]
    SchemaTooNew {
        /// The database file (`:memory:` for an in-memory one).
        path: String,
        /// Its `user_version`.
        found: i64,
        /// [`schema::SCHEMA_VERSION`].
        known: i64,
    },
    /// A stored row does not parse.
    #[error("history row {id} is damaged: {detail}")]
    Damaged { id: i64, detail: String },
}

/// How a migration instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveResult {
    /// Still running (or the manager died during it; recovery will record the outcome).
    InProgress,
    /// The LPAR runs on the destination.
    Completed,
    /// The move failed; the LPAR stayed on (or was rolled back to) the source.
    Failed,
    /// The operator cancelled; the LPAR stayed on the source.
    Cancelled,
}

impl MoveResult {
    /// Stored and shown text.
    pub fn label(self) -> &'static str {
        match self {
            Self::InProgress => "In progress",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The outcome of a job that ended with an error of catalogue row `kind` (if known): the
    /// operator's cancel is Cancelled, anything else Failed.
    pub fn after_error(kind: Option<Emg>) -> Self {
        match kind {
            Some(Emg::TerminatedByUser) => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [
            Self::InProgress,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|r| r.key() == key)
    }
}

impl fmt::Display for MoveResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An HVM and an LPAR number on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    /// HVM (blade) name.
    pub hvm: String,
    /// LPAR number there.
    pub number: LparNumber,
}

/// One migration instance, as the job records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// Job id (unique; recording the same job again replaces its row).
    pub job: String,
    /// LPAR name.
    pub lpar: String,
    /// Where it ran before.
    pub source: Placement,
    /// Destination HVM.
    pub dest_hvm: String,
    /// LPAR number on the destination, once known.
    pub dest_number: Option<LparNumber>,
    /// Shutdown or Concurrent Maintenance.
    pub mode: Mode,
    /// Outcome so far.
    pub result: MoveResult,
    /// When the job started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while in progress).
    pub finished_at: Option<DateTime<Utc>>,
    /// Guest-visible pause (live moves).
    pub suspension: Option<Duration>,
    /// Error text of a failed move.
    pub detail: Option<String>,
    /// Who asked for it (`None` in rows written before lparmover recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

impl MoveRecord {
    /// Where the LPAR is after this instance: the destination when it completed, else the source.
    pub fn location_after(&self) -> Placement {
        match (self.result, self.dest_number) {
            (MoveResult::Completed, Some(number)) => Placement {
                hvm: self.dest_hvm.clone(),
                number,
            },
            _ => self.source.clone(),
        }
    }
}

/// One line of an LPAR's history, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// `Now`, `old1`, `old2`, …
    pub label: String,
    /// HVM the LPAR was on after this instance.
    pub hvm: String,
    /// Its LPAR number there.
    pub number: LparNumber,
    /// The migration instance.
    pub record: MoveRecord,
}

/// What a trial proved, without moving anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialKind {
    /// Everything a live move does except the switch (checks, reservation, a short transfer).
    Rehearsal,
    /// Handshake, latency, throughput and MTU over two HVMs' migration paths.
    ConnectivityTest,
}

impl TrialKind {
    /// Shown text (the seed's names).
    pub fn label(self) -> &'static str {
        match self {
            Self::Rehearsal => "Rehearsal",
            Self::ConnectivityTest => "Connectivity Test",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Rehearsal => "rehearsal",
            Self::ConnectivityTest => "connectivity-test",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [Self::Rehearsal, Self::ConnectivityTest]
            .into_iter()
            .find(|k| k.key() == key)
    }
}

impl fmt::Display for TrialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One rehearsal or Connectivity Test. It leaves every LPAR where it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Job id (unique; recording the same job again replaces its row).
    pub job: String,
    /// Rehearsal or Connectivity Test.
    pub kind: TrialKind,
    /// The LPAR a rehearsal rehearsed (`None` for a Connectivity Test, which is between HVMs).
    pub lpar: Option<String>,
    /// Source HVM.
    pub source_hvm: String,
    /// The LPAR's number on the source (rehearsals).
    pub source_number: Option<LparNumber>,
    /// Destination HVM.
    pub dest_hvm: String,
    /// Outcome so far ([`MoveResult::Completed`]: the trial passed).
    pub result: MoveResult,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// What it measured when it passed, the error when it did not.
    pub detail: Option<String>,
    /// Who asked for it (`None` in rows written before lparmover recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

/// One line of the Migration History list: a move or a trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "kebab-case")]
pub enum HistoryEntry {
    /// A migration instance (it may have moved the LPAR).
    Move(MoveRecord),
    /// A rehearsal or Connectivity Test (it moved nothing).
    Trial(TrialRecord),
}

impl HistoryEntry {
    /// When it started.
    pub fn started_at(&self) -> DateTime<Utc> {
        match self {
            Self::Move(m) => m.started_at,
            Self::Trial(t) => t.started_at,
        }
    }

    /// Its job id.
    pub fn job(&self) -> &str {
        match self {
            Self::Move(m) => &m.job,
            Self::Trial(t) => &t.job,
        }
    }
}

/// The history as a running job uses it: opened from the manager's data directory, and
/// best effort — when the database cannot be opened or written the job goes on and a warning
/// says why (a move must never fail, or be left half way, because its history could not be
/// written).
#[derive(Debug)]
pub struct JobHistory {
    history: Option<History>,
}

impl JobHistory {
    /// The history in `dirs`.
    pub fn open(dirs: &ManagerDirs) -> Self {
        let history = History::open(&dirs.history_db())
            .map_err(|e| {
                tracing::warn!(error = %e, "migration history unavailable; the job goes on without it");
            })
            .ok();
        Self { history }
    }

    /// The history in [`ManagerDirs::from_env`].
    pub fn from_env() -> Self {
        Self::open(&ManagerDirs::from_env())
    }

    /// Records (or updates) a move.
    pub fn save_move(&self, record: &MoveRecord) {
        if let Some(h) = &self.history
            && let Err(e) = h.record(record)
        {
            tracing::warn!(job = %record.job, error = %e, "history not recorded");
        }
    }

    /// Records (or updates) a trial.
    pub fn save_trial(&self, record: &TrialRecord) {
        if let Some(h) = &self.history
            && let Err(e) = h.record_trial(record)
        {
            tracing::warn!(job = %record.job, error = %e, "history not recorded");
        }
    }
}

/// The history database. Cheap to share behind an `Arc`; calls are short and synchronous (call
/// them from `spawn_blocking` where a stall on a slow disk matters).
pub struct History {
    conn: Mutex<Connection>,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("History")
    }
}

/// Fixed-width UTC text, so that text order is time order.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn dur_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl History {
    /// Opens (creating it and its directory) the database at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The data directory: owner-only, like everything in it.
            crate::fsutil::create_private_dir(dir).map_err(|source| HistoryError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        Self::configure(conn)
    }

    /// An in-memory database (tests, previews).
    pub fn in_memory() -> Result<Self, HistoryError> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(mut conn: Connection) -> Result<Self, HistoryError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; FULL: a commit is fsynced before it returns.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            tracing::warn!(mode, "history database is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent (open transactions roll
        // back when dropped), so the poisoned guard is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a migration instance in one transaction, replacing an earlier row of the same job.
    /// Returns the row id.
    pub fn record(&self, record: &MoveRecord) -> Result<i64, HistoryError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: i64 = tx.query_row(
            "INSERT INTO moves (job, lpar, src_hvm, src_number, dst_hvm, dst_number, mode, result,
                                started_at, finished_at, suspension_us, detail,
                                actor_user, actor_host, actor_via, actor_policy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT (job) DO UPDATE SET
                 lpar = excluded.lpar, src_hvm = excluded.src_hvm,
                 src_number = excluded.src_number, dst_hvm = excluded.dst_hvm,
                 dst_number = excluded.dst_number, mode = excluded.mode,
                 result = excluded.result, started_at = excluded.started_at,
                 finished_at = excluded.finished_at, suspension_us = excluded.suspension_us,
                 detail = excluded.detail, actor_user = excluded.actor_user,
                 actor_host = excluded.actor_host, actor_via = excluded.actor_via,
                 actor_policy = excluded.actor_policy
             RETURNING id",
            params![
                record.job,
                record.lpar,
                record.source.hvm,
                record.source.number.get(),
                record.dest_hvm,
                record.dest_number.map(LparNumber::get),
                mode_key(record.mode),
                record.result.key(),
                stamp(record.started_at),
                record.finished_at.map(stamp),
                record.suspension.map(dur_us),
                record.detail,
                record.actor.as_ref().map(|a| &a.user),
                record.actor.as_ref().map(|a| &a.host),
                record.actor.as_ref().map(|a| a.origin.key()),
                record.actor.as_ref().and_then(|a| a.origin.policy_name()),
            ],
            |r| r.get(0),
        )?;
        tx.commit()?;
        tracing::debug!(job = %record.job, lpar = %record.lpar, result = %record.result, "history recorded");
        Ok(id)
    }

    /// The record of one job.
    pub fn job(&self, job: &str) -> Result<Option<MoveRecord>, HistoryError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM moves WHERE job = ?1"),
                [job],
                raw_row,
            )
            .optional()?;
        row.map(RawRow::parse).transpose()
    }

    /// An LPAR's history, newest first: `Now`, `old1`, … `oldN`.
    pub fn lpar_history(&self, lpar: &str) -> Result<Vec<HistoryRow>, HistoryError> {
        let records = self.query(
            &format!(
                "SELECT {COLUMNS} FROM moves WHERE lpar = ?1 ORDER BY started_at DESC, id DESC"
            ),
            rusqlite::params![lpar],
        )?;
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(i, record)| {
                let at = record.location_after();
                HistoryRow {
                    label: if i == 0 {
                        "Now".to_owned()
                    } else {
                        format!("old{i}")
                    },
                    hvm: at.hvm,
                    number: at.number,
                    record,
                }
            })
            .collect())
    }

    /// The newest `limit` migration instances of every LPAR, newest first (the main window's
    /// Migration History list).
    pub fn all(&self, limit: usize) -> Result<Vec<MoveRecord>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!("SELECT {COLUMNS} FROM moves ORDER BY started_at DESC, id DESC LIMIT ?1"),
            rusqlite::params![limit],
        )
    }

    /// Where the LPAR came from in its latest completed move (HVM and LPAR number), for a return
    /// migration; `None` when it never moved.
    pub fn where_from(&self, lpar: &str) -> Result<Option<Placement>, HistoryError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, src_hvm, src_number FROM moves WHERE lpar = ?1 AND result = ?2
                 ORDER BY started_at DESC, id DESC LIMIT 1",
                params![lpar, MoveResult::Completed.key()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(id, hvm, number)| {
            Ok(Placement {
                hvm,
                number: lpar_number(id, number)?,
            })
        })
        .transpose()
    }

    /// The mode of `lpar`'s last completed move: a return migration undoes it in that mode.
    pub fn last_move_mode(&self, lpar: &str) -> Result<Option<Mode>, HistoryError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, mode FROM moves WHERE lpar = ?1 AND result = ?2
                 ORDER BY started_at DESC, id DESC LIMIT 1",
                params![lpar, MoveResult::Completed.key()],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        row.map(|(id, mode)| {
            Mode::from_str(&mode).map_err(|e| HistoryError::Damaged {
                id,
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// Records a rehearsal or Connectivity Test in one transaction, replacing an earlier row of
    /// the same job. Returns the row id.
    pub fn record_trial(&self, record: &TrialRecord) -> Result<i64, HistoryError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: i64 = tx.query_row(
            "INSERT INTO trials (job, kind, lpar, src_hvm, src_number, dst_hvm, result,
                                 started_at, finished_at, detail,
                                 actor_user, actor_host, actor_via, actor_policy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (job) DO UPDATE SET
                 kind = excluded.kind, lpar = excluded.lpar, src_hvm = excluded.src_hvm,
                 src_number = excluded.src_number, dst_hvm = excluded.dst_hvm,
                 result = excluded.result, started_at = excluded.started_at,
                 finished_at = excluded.finished_at, detail = excluded.detail,
                 actor_user = excluded.actor_user, actor_host = excluded.actor_host,
                 actor_via = excluded.actor_via, actor_policy = excluded.actor_policy
             RETURNING id",
            params![
                record.job,
                record.kind.key(),
                record.lpar,
                record.source_hvm,
                record.source_number.map(LparNumber::get),
                record.dest_hvm,
                record.result.key(),
                stamp(record.started_at),
                record.finished_at.map(stamp),
                record.detail,
                record.actor.as_ref().map(|a| &a.user),
                record.actor.as_ref().map(|a| &a.host),
                record.actor.as_ref().map(|a| a.origin.key()),
                record.actor.as_ref().and_then(|a| a.origin.policy_name()),
            ],
            |r| r.get(0),
        )?;
        tx.commit()?;
        tracing::debug!(job = %record.job, kind = %record.kind, result = %record.result, "trial recorded");
        Ok(id)
    }

    /// The rehearsals of one LPAR, newest first.
    pub fn trials_of(&self, lpar: &str) -> Result<Vec<TrialRecord>, HistoryError> {
        self.query_trials(
            &format!(
                "SELECT {TRIAL_COLUMNS} FROM trials WHERE lpar = ?1 ORDER BY started_at DESC, id DESC"
            ),
            rusqlite::params![lpar],
        )
    }

    /// The newest `limit` moves and trials of every LPAR and HVM, newest first (the main
    /// window's Migration History list).
    pub fn entries(&self, limit: usize) -> Result<Vec<HistoryEntry>, HistoryError> {
        let moves = self.all(limit)?;
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let trials = self.query_trials(
            &format!(
                "SELECT {TRIAL_COLUMNS} FROM trials ORDER BY started_at DESC, id DESC LIMIT ?1"
            ),
            rusqlite::params![sql_limit],
        )?;
        let mut all: Vec<HistoryEntry> = moves
            .into_iter()
            .map(HistoryEntry::Move)
            .chain(trials.into_iter().map(HistoryEntry::Trial))
            .collect();
        // Stable: among equal times moves stay before trials, each newest first.
        all.sort_by_key(|e| std::cmp::Reverse(e.started_at()));
        all.truncate(limit);
        Ok(all)
    }

    fn query_trials(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<TrialRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let raws = stmt
            .query_map(params, raw_trial)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(RawTrial::parse).collect()
    }

    fn query(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<MoveRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let raws = stmt
            .query_map(params, raw_row)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(RawRow::parse).collect()
    }
}

const COLUMNS: &str = "id, job, lpar, src_hvm, src_number, dst_hvm, dst_number, mode, result, \
                       started_at, finished_at, suspension_us, detail, \
                       actor_user, actor_host, actor_via, actor_policy";

const TRIAL_COLUMNS: &str = "id, job, kind, lpar, src_hvm, src_number, dst_hvm, result, \
                             started_at, finished_at, detail, \
                             actor_user, actor_host, actor_via, actor_policy";

/// The four actor columns as stored.
struct RawActor {
    user: Option<String>,
    host: Option<String>,
    via: Option<String>,
    policy: Option<String>,
}

impl RawActor {
    fn read(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            user: r.get(first)?,
            host: r.get(first + 1)?,
            via: r.get(first + 2)?,
            policy: r.get(first + 3)?,
        })
    }

    /// `None` for a row written before actors were recorded.
    fn parse(self, id: i64) -> Result<Option<Actor>, HistoryError> {
        let (Some(user), Some(host), Some(via)) = (self.user, self.host, self.via) else {
            return Ok(None);
        };
        let origin = Origin::from_key(&via, self.policy).ok_or_else(|| HistoryError::Damaged {
            id,
            detail: format!("front end {via:?}"),
        })?;
        Ok(Some(Actor { user, host, origin }))
    }
}

struct RawTrial {
    id: i64,
    job: String,
    kind: String,
    lpar: Option<String>,
    src_hvm: String,
    src_number: Option<i64>,
    dst_hvm: String,
    result: String,
    started_at: String,
    finished_at: Option<String>,
    detail: Option<String>,
    actor: RawActor,
}

fn raw_trial(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawTrial> {
    Ok(RawTrial {
        id: r.get(0)?,
        job: r.get(1)?,
        kind: r.get(2)?,
        lpar: r.get(3)?,
        src_hvm: r.get(4)?,
        src_number: r.get(5)?,
        dst_hvm: r.get(6)?,
        result: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        detail: r.get(10)?,
        actor: RawActor::read(r, 11)?,
    })
}

impl RawTrial {
    fn parse(self) -> Result<TrialRecord, HistoryError> {
        let id = self.id;
        let damaged = |detail: String| HistoryError::Damaged { id, detail };
        Ok(TrialRecord {
            job: self.job,
            kind: TrialKind::from_key(&self.kind)
                .ok_or_else(|| damaged(format!("trial kind {:?}", self.kind)))?,
            lpar: self.lpar,
            source_hvm: self.src_hvm,
            source_number: self.src_number.map(|n| lpar_number(id, n)).transpose()?,
            dest_hvm: self.dst_hvm,
            result: MoveResult::from_key(&self.result)
                .ok_or_else(|| damaged(format!("result {:?}", self.result)))?,
            started_at: time(id, &self.started_at)?,
            finished_at: self.finished_at.map(|t| time(id, &t)).transpose()?,
            detail: self.detail,
            actor: self.actor.parse(id)?,
        })
    }
}

fn mode_key(mode: Mode) -> &'static str {
    match mode {
        Mode::Shutdown => "shutdown",
        Mode::ConcurrentMaintenance => "concurrent-maintenance",
    }
}

struct RawRow {
    id: i64,
    job: String,
    lpar: String,
    src_hvm: String,
    src_number: i64,
    dst_hvm: String,
    dst_number: Option<i64>,
    mode: String,
    result: String,
    started_at: String,
    finished_at: Option<String>,
    suspension_us: Option<i64>,
    detail: Option<String>,
    actor: RawActor,
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        job: r.get(1)?,
        lpar: r.get(2)?,
        src_hvm: r.get(3)?,
        src_number: r.get(4)?,
        dst_hvm: r.get(5)?,
        dst_number: r.get(6)?,
        mode: r.get(7)?,
        result: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        suspension_us: r.get(11)?,
        detail: r.get(12)?,
        actor: RawActor::read(r, 13)?,
    })
}

fn lpar_number(id: i64, n: i64) -> Result<LparNumber, HistoryError> {
    u8::try_from(n)
        .ok()
        .and_then(|n| LparNumber::new(n).ok())
        .ok_or_else(|| HistoryError::Damaged {
            id,
            detail: format!("LPAR number {n}"),
        })
}

fn time(id: i64, text: &str) -> Result<DateTime<Utc>, HistoryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| HistoryError::Damaged {
            id,
            detail: format!("time {text:?}: {e}"),
        })
}

impl RawRow {
    fn parse(self) -> Result<MoveRecord, HistoryError> {
        let id = self.id;
        let damaged = |detail: String| HistoryError::Damaged { id, detail };
        Ok(MoveRecord {
            job: self.job,
            lpar: self.lpar,
            source: Placement {
                hvm: self.src_hvm,
                number: lpar_number(id, self.src_number)?,
            },
            dest_hvm: self.dst_hvm,
            dest_number: self.dst_number.map(|n| lpar_number(id, n)).transpose()?,
            mode: Mode::from_str(&self.mode).map_err(|e| damaged(e.to_string()))?,
            result: MoveResult::from_key(&self.result)
                .ok_or_else(|| damaged(format!("result {:?}", self.result)))?,
            started_at: time(id, &self.started_at)?,
            finished_at: self.finished_at.map(|t| time(id, &t)).transpose()?,
            suspension: self
                .suspension_us
                .map(|us| u64::try_from(us).map(Duration::from_micros))
                .transpose()
                .map_err(|_| damaged("negative suspension time".into()))?,
            detail: self.detail,
            actor: self.actor.parse(id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u8) -> LparNumber {
        LparNumber::new(v).unwrap()
    }

    fn rec(job: &str, lpar: &str, from: (&str, u8), to: (&str, u8), minute: u32) -> MoveRecord {
        let started_at = DateTime::parse_from_rfc3339(&format!("2026-01-02T03:{minute:02}:00Z"))
            .unwrap()
            .with_timezone(&Utc);
        MoveRecord {
            job: job.into(),
            lpar: lpar.into(),
            source: Placement {
                hvm: from.0.into(),
                number: n(from.1),
            },
            dest_hvm: to.0.into(),
            dest_number: Some(n(to.1)),
            mode: Mode::ConcurrentMaintenance,
            result: MoveResult::Completed,
            started_at,
            finished_at: Some(started_at + chrono::Duration::seconds(5)),
            suspension: Some(Duration::from_micros(31_250)),
            detail: None,
            actor: Some(Actor {
                user: "ops".into(),
                host: "mgr-1".into(),
                origin: Origin::Navigator,
            }),
        }
    }

    #[test]
    fn now_first_then_older_locations() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("sub/history.db")).unwrap();
        h.record(&rec("j1", "web-01", ("b1", 1), ("b2", 3), 1))
            .unwrap();
        h.record(&rec("j2", "web-01", ("b2", 3), ("b3", 2), 2))
            .unwrap();
        h.record(&rec("j3", "db-01", ("b1", 2), ("b2", 4), 3))
            .unwrap();
        let mut failed = rec("j4", "web-01", ("b3", 2), ("b1", 1), 4);
        failed.result = MoveResult::Failed;
        failed.detail = Some("Connection refused (LPAR Mover-LPAR Mover)".into());
        h.record(&failed).unwrap();

        let rows = h.lpar_history("web-01").unwrap();
        let shape: Vec<_> = rows
            .iter()
            .map(|r| (r.label.as_str(), r.hvm.as_str(), r.number.get()))
            .collect();
        assert_eq!(
            shape,
            [("Now", "b3", 2), ("old1", "b3", 2), ("old2", "b2", 3)],
            "a failed move leaves the LPAR where it was"
        );
        assert_eq!(rows[0].record, failed);
        assert_eq!(
            h.where_from("web-01").unwrap(),
            Some(Placement {
                hvm: "b2".into(),
                number: n(3)
            })
        );
        assert_eq!(h.where_from("nobody").unwrap(), None);
        assert_eq!(h.all(10).unwrap().len(), 4);
        assert_eq!(h.all(2).unwrap()[0].job, "j4");
    }

    #[test]
    fn recording_a_job_again_replaces_its_row_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let h = History::open(&path).unwrap();
            let mut r = rec("j1", "web-01", ("b1", 1), ("b2", 3), 1);
            r.result = MoveResult::InProgress;
            r.dest_number = None;
            r.finished_at = None;
            r.suspension = None;
            let id = h.record(&r).unwrap();
            assert_eq!(h.lpar_history("web-01").unwrap()[0].hvm, "b1");
            let done = rec("j1", "web-01", ("b1", 1), ("b2", 3), 1);
            assert_eq!(h.record(&done).unwrap(), id);
        }
        let h = History::open(&path).unwrap();
        let rows = h.lpar_history("web-01").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hvm, "b2");
        assert_eq!(h.job("j1").unwrap().unwrap().result, MoveResult::Completed);
        let conn = h.conn();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    fn trial(job: &str, kind: TrialKind, lpar: Option<&str>, minute: u32) -> TrialRecord {
        let started_at = DateTime::parse_from_rfc3339(&format!("2026-01-02T03:{minute:02}:30Z"))
            .unwrap()
            .with_timezone(&Utc);
        TrialRecord {
            job: job.into(),
            kind,
            lpar: lpar.map(Into::into),
            source_hvm: "b1".into(),
            source_number: lpar.map(|_| n(1)),
            dest_hvm: "b2".into(),
            result: MoveResult::Completed,
            started_at,
            finished_at: Some(started_at + chrono::Duration::seconds(2)),
            detail: Some("throughput 900 MB/s".into()),
            actor: Some(Actor {
                user: "ops".into(),
                host: "mgr-1".into(),
                origin: Origin::policy("nightly"),
            }),
        }
    }

    #[test]
    fn trials_are_listed_but_never_count_as_placements_or_returns() {
        let h = History::in_memory().unwrap();
        h.record(&rec("j1", "web-01", ("b1", 1), ("b2", 3), 1))
            .unwrap();
        h.record_trial(&trial("r1", TrialKind::Rehearsal, Some("web-01"), 2))
            .unwrap();
        h.record_trial(&trial("c1", TrialKind::ConnectivityTest, None, 3))
            .unwrap();

        // Now / old1 are placements: the rehearsal did not move web-01 back to b1.
        let rows = h.lpar_history("web-01").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].hvm.as_str(), rows[0].number.get()), ("b2", 3));
        assert_eq!(
            h.where_from("web-01").unwrap().unwrap().hvm,
            "b1",
            "a return goes back where the last real move came from"
        );
        let rehearsals = h.trials_of("web-01").unwrap();
        assert_eq!(
            rehearsals,
            [trial("r1", TrialKind::Rehearsal, Some("web-01"), 2)]
        );

        // The Migration History list shows all three, newest first.
        let entries = h.entries(10).unwrap();
        let jobs: Vec<&str> = entries.iter().map(HistoryEntry::job).collect();
        assert_eq!(jobs, ["c1", "r1", "j1"]);
        assert_eq!(h.entries(2).unwrap().len(), 2);
        let json = serde_json::to_value(&entries[0]).unwrap();
        assert_eq!(
            (json["entry"].as_str(), json["kind"].as_str()),
            (Some("trial"), Some("connectivity-test"))
        );
        assert_eq!(serde_json::to_value(&entries[2]).unwrap()["entry"], "move");

        // A trial recorded again (its outcome) replaces its row.
        let mut failed = trial("r1", TrialKind::Rehearsal, Some("web-01"), 2);
        failed.result = MoveResult::Failed;
        h.record_trial(&failed).unwrap();
        assert_eq!(h.trials_of("web-01").unwrap(), [failed]);
    }

    #[test]
    fn who_asked_is_kept_and_older_rows_say_nobody_recorded_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            // A schema-2 database with one move and one trial in it, as an older build left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE moves (id INTEGER PRIMARY KEY, job TEXT NOT NULL UNIQUE,
                     lpar TEXT NOT NULL, src_hvm TEXT NOT NULL, src_number INTEGER NOT NULL,
                     dst_hvm TEXT NOT NULL, dst_number INTEGER, mode TEXT NOT NULL,
                     result TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
                     suspension_us INTEGER, detail TEXT);
                 CREATE TABLE trials (id INTEGER PRIMARY KEY, job TEXT NOT NULL UNIQUE,
                     kind TEXT NOT NULL, lpar TEXT, src_hvm TEXT NOT NULL, src_number INTEGER,
                     dst_hvm TEXT NOT NULL, result TEXT NOT NULL, started_at TEXT NOT NULL,
                     finished_at TEXT, detail TEXT);
                 INSERT INTO moves (job, lpar, src_hvm, src_number, dst_hvm, mode, result,
                     started_at)
                 VALUES ('old', 'web-01', 'b1', 1, 'b2', 'shutdown', 'completed',
                     '2026-01-01T00:00:00.000000Z');
                 INSERT INTO trials (job, kind, src_hvm, dst_hvm, result, started_at)
                 VALUES ('old-ct', 'connectivity-test', 'b1', 'b2', 'completed',
                     '2026-01-01T00:00:01.000000Z');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let h = History::open(&path).unwrap();
        assert_eq!(h.job("old").unwrap().unwrap().actor, None);
        let new = rec("new", "web-01", ("b2", 1), ("b1", 1), 1);
        h.record(&new).unwrap();
        h.record_trial(&trial("r1", TrialKind::Rehearsal, Some("web-01"), 2))
            .unwrap();
        drop(h);

        let h = History::open(&path).unwrap();
        let entries = h.entries(10).unwrap();
        let who: Vec<(&str, Option<String>)> = entries
            .iter()
            .map(|e| {
                let actor = match e {
                    HistoryEntry::Move(m) => &m.actor,
                    HistoryEntry::Trial(t) => &t.actor,
                };
                (e.job(), actor.as_ref().map(ToString::to_string))
            })
            .collect();
        assert_eq!(
            who,
            [
                ("r1", Some("ops@mgr-1 via policy nightly".to_owned())),
                ("new", Some("ops@mgr-1 via navigator".to_owned())),
                ("old-ct", None),
                ("old", None),
            ]
        );
        let json = serde_json::to_value(&entries[0]).unwrap();
        assert_eq!(json["actor"]["via"], "policy");
        assert_eq!(json["actor"]["policy"], "nightly");
        assert!(
            serde_json::to_value(&entries[3])
                .unwrap()
                .get("actor")
                .is_none()
        );
    }

    #[test]
    fn job_history_goes_on_without_a_database() {
        let dir = tempfile::tempdir().unwrap();
        // The data "directory" is a file: the database cannot be created.
        let blocker = dir.path().join("data");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let jh = JobHistory::open(&ManagerDirs::new(&blocker));
        jh.save_move(&rec("j1", "web-01", ("b1", 1), ("b2", 3), 1));
        jh.save_trial(&trial("r1", TrialKind::Rehearsal, Some("web-01"), 2));

        let jh = JobHistory::open(&ManagerDirs::new(dir.path().join("ok")));
        jh.save_move(&rec("j1", "web-01", ("b1", 1), ("b2", 3), 1));
        let h = History::open(&ManagerDirs::new(dir.path().join("ok")).history_db()).unwrap();
        assert_eq!(h.lpar_history("web-01").unwrap().len(), 1);
    }

    #[test]
    fn a_cancel_is_recorded_as_cancelled_anything_else_as_failed() {
        assert_eq!(
            MoveResult::after_error(Some(Emg::TerminatedByUser)),
            MoveResult::Cancelled
        );
        assert_eq!(
            MoveResult::after_error(Some(Emg::ShutdownWaiting)),
            MoveResult::Failed
        );
        assert_eq!(MoveResult::after_error(None), MoveResult::Failed);
    }

    #[test]
    fn damaged_rows_are_reported_not_panicked_on() {
        let h = History::in_memory().unwrap();
        h.record(&rec("j1", "web-01", ("b1", 1), ("b2", 3), 1))
            .unwrap();
        h.conn()
            .execute("UPDATE moves SET src_number = 99", [])
            .unwrap();
        assert!(matches!(
            h.lpar_history("web-01"),
            Err(HistoryError::Damaged { .. })
        ));
    }
}
