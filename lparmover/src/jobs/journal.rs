//! The job journal: every step of a move is written durably before it runs (intent) and after
//! (done / failed), so a manager killed at any point can be followed by one that drives the job
//! forward or backward (`super::recovery`).
//!
//! ```text
//! DATA/journal/JOB.jsonl        an unfinished job: one JSON entry per line, fsynced per entry
//! DATA/journal/done/JOB.jsonl   a finished job (renamed there after its Finished entry)
//! ```
//!
//! The manager running a job holds an exclusive `flock` on its file; the kernel drops it when
//! that process dies (kill -9 included), which is how recovery tells an orphaned job from one
//! still running in another manager. A torn last line (killed mid-write) is ignored: the step it
//! announced is treated as not announced, which is safe because every step is announced before
//! it runs and every blade call is idempotent or refused with a clear state error.
//!
//! The journal is the manager's intent, not the last word on a live move's commit: that is the
//! destination's durable "resumed" or "fenced" record (`crate::api::RecordPhase`), since the
//! blades settle a switch-over on their own when the manager goes silent while the source is
//! paused. Recovery reads both.
//!
//! Every line carries the journal format ([`JOURNAL_FORMAT`], `"format"`; a line without one is
//! version 1). A line of a newer format is refused with [`JournalError::Newer`] — a manager must
//! not drive a job it may misread — even where the rest of the line would not parse here.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::NameExchange;
use crate::dirs::ManagerDirs;
use crate::model::LparNumber;

/// What kind of job a journal describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Concurrent Maintenance (live) move.
    Live,
    /// Shutdown-mode move (the LPAR moves deactivated).
    Shutdown,
}

/// The job as it was asked for: enough to find both HVMs and the LPAR again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHeader {
    /// Job id.
    pub job: String,
    /// Kind.
    pub kind: JobKind,
    /// LPAR name.
    pub lpar: String,
    /// Source HVM.
    pub source_hvm: String,
    /// LPAR number on the source.
    pub source_number: LparNumber,
    /// Destination HVM.
    pub dest_hvm: String,
    /// Shutdown mode: activate the LPAR on the destination once moved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub activate_after: bool,
    /// Who asked for the job, for the history row recovery writes when the job had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<crate::history::Actor>,
}

/// A step of a live move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Leases on both HVMs.
    Lock,
    /// Both HVM configurations backed up.
    Backup,
    /// Destination prepared (LPAR defined, resources reserved).
    Prepare,
    /// Source sending (pre-copy running).
    Send,
    /// Destination committed and resumed.
    Resume,
    /// Source committed (vFCs logged out).
    SourceCommit,
    /// Destination vFCs on the WWPNs.
    Swap,
    /// Source released the LPAR.
    Release,
    /// Both sides rolled back.
    Rollback,
    /// Shutdown mode: the guest OS was asked to shut down (and did).
    GuestShutdown,
    /// Shutdown mode: the LPAR activated on the destination.
    Activate,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The LPAR runs on the destination.
    Completed,
    /// The LPAR runs on the source, the destination holds nothing.
    RolledBack,
    /// Neither HVM held a consistent copy any more (both restarted, or the only holder did):
    /// the LPAR is left "requires recovery" for `lparmover recover`.
    NeedsRecovery,
}

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "kebab-case")]
pub enum Entry {
    /// The job began.
    Begin(JobHeader),
    /// A step is about to run.
    Intent {
        /// The step.
        step: Step,
    },
    /// A step ran.
    Done {
        /// The step.
        step: Step,
        /// Destination LPAR number and names given up (for [`Step::Prepare`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prepared: Option<(LparNumber, NameExchange)>,
    },
    /// A step failed.
    Failed {
        /// The step.
        step: Step,
        /// Why.
        error: String,
    },
    /// The manager's commit point: it will tell the destination to resume. The move goes
    /// forward unless the destination had already fenced the job (the manager's switch-over
    /// lease lapsed first): the destination's durable record is the real commit point.
    CommitPoint,
    /// The job is over.
    Finished {
        /// How.
        outcome: Outcome,
        /// What happened, for the operator.
        detail: String,
    },
}

/// Format of the journal lines this manager writes (and the newest it reads).
pub const JOURNAL_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(default = "crate::format::v1")]
    format: u32,
    at: DateTime<Utc>,
    #[serde(flatten)]
    entry: Entry,
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal could not be written or read.
    #[error(
        "job journal {path}: {source}; check the manager's data directory (LPARMOVER_DATA) is writable and not full"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A line other than the last does not parse.
    #[error(
        "job journal {path} line {line} is not a journal entry ({detail}); move the file aside and run `lparmover recover` again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        detail: String,
    },
    /// The file has no Begin entry.
    #[error("job journal {0} has no header; move the file aside")]
    NoHeader(PathBuf),
    /// A line was written by a newer lparmover.
    #[error(transparent)]
    Newer(#[from] crate::format::NewerFormat),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An open job journal, owned (locked) by this process.
#[derive(Debug)]
pub struct JobJournal {
    file: File,
    path: PathBuf,
    done_dir: PathBuf,
    facts: JobFacts,
}

impl JobJournal {
    /// Starts the journal of a new job (the Begin entry is durable when this returns).
    pub fn begin(dirs: &ManagerDirs, header: JobHeader) -> Result<Self, JournalError> {
        let dir = dirs.journal();
        dirs.create_private(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("{}.jsonl", header.job));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.try_lock().map_err(|e| JournalError::Io {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        sync_dir(&dir).map_err(io_err(&dir))?;
        let mut journal = Self {
            file,
            path,
            done_dir: dir.join("done"),
            facts: JobFacts::new(header.clone()),
        };
        journal.append(Entry::Begin(header))?;
        Ok(journal)
    }

    /// Takes over an orphaned journal (its manager died). `None` when another live manager
    /// still holds it.
    pub fn adopt(path: &Path) -> Result<Option<Self>, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map_err(io_err(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
        }
        let facts = read_facts(path)?;
        let done_dir = path
            .parent()
            .map_or_else(|| PathBuf::from("done"), |p| p.join("done"));
        Ok(Some(Self {
            file,
            path: path.to_owned(),
            done_dir,
            facts,
        }))
    }

    /// What the journal says so far.
    pub fn facts(&self) -> &JobFacts {
        &self.facts
    }

    /// Appends one entry durably.
    pub fn append(&mut self, entry: Entry) -> Result<(), JournalError> {
        let mut text = serde_json::to_string(&Line {
            format: JOURNAL_FORMAT,
            at: Utc::now(),
            entry: entry.clone(),
        })
        .map_err(|e| io_err(&self.path)(io::Error::other(e)))?;
        text.push('\n');
        let file = &mut self.file;
        crate::fsutil::off_the_runtime(|| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_data())
        })
        .map_err(io_err(&self.path))?;
        self.facts.apply(&entry);
        Ok(())
    }

    /// `Intent { step }`.
    pub fn intent(&mut self, step: Step) -> Result<(), JournalError> {
        self.append(Entry::Intent { step })
    }

    /// `Done { step }`.
    pub fn done(&mut self, step: Step) -> Result<(), JournalError> {
        self.append(Entry::Done {
            step,
            prepared: None,
        })
    }

    /// Records the outcome and files the journal under `done/`.
    pub fn finish(
        mut self,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Result<(), JournalError> {
        self.append(Entry::Finished {
            outcome,
            detail: detail.into(),
        })?;
        crate::fsutil::create_private_dir(&self.done_dir).map_err(io_err(&self.done_dir))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_default();
        let target = self.done_dir.join(name);
        std::fs::rename(&self.path, &target).map_err(io_err(&self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        sync_dir(&self.done_dir).map_err(io_err(&self.done_dir))?;
        Ok(())
    }
}

/// The journals of jobs that have not finished (running elsewhere or orphaned).
pub fn unfinished(dirs: &ManagerDirs) -> Result<Vec<PathBuf>, JournalError> {
    let dir = dirs.journal();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// What a journal says happened, folded from its entries.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    /// The job.
    pub header: JobHeader,
    /// Steps announced.
    pub intents: Vec<Step>,
    /// Steps done.
    pub done: Vec<Step>,
    /// Destination LPAR number and exchanged names, once prepared.
    pub prepared: Option<(LparNumber, NameExchange)>,
    /// The commit point was written.
    pub commit_point: bool,
    /// The job finished.
    pub finished: Option<Outcome>,
}

impl JobFacts {
    fn new(header: JobHeader) -> Self {
        Self {
            header,
            intents: Vec::new(),
            done: Vec::new(),
            prepared: None,
            commit_point: false,
            finished: None,
        }
    }

    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Begin(h) => self.header = h.clone(),
            Entry::Intent { step } => self.intents.push(*step),
            Entry::Done { step, prepared } => {
                self.done.push(*step);
                if let Some(p) = prepared {
                    self.prepared = Some(p.clone());
                }
            }
            Entry::Failed { .. } => {}
            Entry::CommitPoint => self.commit_point = true,
            Entry::Finished { outcome, .. } => self.finished = Some(*outcome),
        }
    }

    /// Whether `step` was announced.
    pub fn intended(&self, step: Step) -> bool {
        self.intents.contains(&step)
    }

    /// Whether `step` is known to have run.
    pub fn is_done(&self, step: Step) -> bool {
        self.done.contains(&step)
    }
}

/// Reads a journal file; a torn last line is ignored.
pub fn read_facts(path: &Path) -> Result<JobFacts, JournalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let lines: Vec<String> = io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    let mut facts: Option<JobFacts> = None;
    let count = lines.len();
    for (i, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        #[derive(Deserialize)]
        struct Version {
            #[serde(default = "crate::format::v1")]
            format: u32,
        }
        if let Ok(v) = serde_json::from_str::<Version>(text) {
            crate::format::check(path, "job journal", "lparmover", v.format, JOURNAL_FORMAT)?;
        }
        let line: Line = match serde_json::from_str(text) {
            Ok(l) => l,
            Err(_) if i + 1 == count => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_owned(),
                    line: i + 1,
                    detail: e.to_string(),
                });
            }
        };
        match (&mut facts, &line.entry) {
            (None, Entry::Begin(h)) => facts = Some(JobFacts::new(h.clone())),
            (None, _) => return Err(JournalError::NoHeader(path.to_owned())),
            (Some(f), e) => f.apply(e),
        }
    }
    facts.ok_or_else(|| JournalError::NoHeader(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(job: &str) -> JobHeader {
        JobHeader {
            job: job.into(),
            kind: JobKind::Live,
            lpar: "web-01".into(),
            source_hvm: "a".into(),
            source_number: LparNumber::new(1).unwrap(),
            dest_hvm: "b".into(),
            activate_after: false,
            actor: None,
        }
    }

    #[test]
    fn entries_survive_and_a_torn_last_line_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(tmp.path());
        let mut j = JobJournal::begin(&dirs, header("j1")).unwrap();
        j.intent(Step::Prepare).unwrap();
        j.append(Entry::Done {
            step: Step::Prepare,
            prepared: Some((LparNumber::new(3).unwrap(), NameExchange::default())),
        })
        .unwrap();
        j.append(Entry::CommitPoint).unwrap();
        let path = tmp.path().join("journal/j1.jsonl");
        // A kill -9 in the middle of the next write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at\":\"2026-")
            .unwrap();
        let facts = read_facts(&path).unwrap();
        assert!(facts.commit_point);
        assert_eq!(facts.prepared.as_ref().map(|p| p.0.get()), Some(3));
        assert!(facts.intended(Step::Prepare) && facts.is_done(Step::Prepare));
        assert!(!facts.intended(Step::Resume));
    }

    #[test]
    fn a_running_job_cannot_be_adopted_and_an_orphan_can() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(tmp.path());
        let j = JobJournal::begin(&dirs, header("j2")).unwrap();
        let paths = unfinished(&dirs).unwrap();
        assert_eq!(paths.len(), 1);
        assert!(
            JobJournal::adopt(&paths[0]).unwrap().is_none(),
            "locked by its owner"
        );
        drop(j); // the owner died
        let adopted = JobJournal::adopt(&paths[0]).unwrap().unwrap();
        assert_eq!(adopted.facts().header.job, "j2");
        adopted.finish(Outcome::RolledBack, "test").unwrap();
        assert!(unfinished(&dirs).unwrap().is_empty());
        assert!(tmp.path().join("journal/done/j2.jsonl").exists());
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_naming_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(tmp.path());
        let mut j = JobJournal::begin(&dirs, header("j3")).unwrap();
        let path = tmp.path().join("journal/j3.jsonl");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        j.intent(Step::Lock).unwrap();
        let err = read_facts(&path).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn lines_without_a_version_are_version_1_and_a_newer_line_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j4.jsonl");
        // A journal of before versions were written.
        std::fs::write(
            &path,
            concat!(
                r#"{"at":"2026-11-30T10:00:00Z","entry":"begin","job":"j4","kind":"live","lpar":"web-01","source_hvm":"a","source_number":1,"dest_hvm":"b"}"#,
                "\n",
                r#"{"at":"2026-11-30T10:00:01Z","entry":"commit-point"}"#,
                "\n"
            ),
        )
        .unwrap();
        let facts = read_facts(&path).unwrap();
        assert_eq!(facts.header, header("j4"));
        assert!(facts.commit_point);
        // One written by a newer manager, with an entry this one does not know.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(
                format!(
                    "{{\"format\":{},\"at\":\"2026-11-30T10:00:02Z\",\"entry\":\"settled-by-blades\"}}\n",
                    JOURNAL_FORMAT + 1
                )
                .as_bytes(),
            )
            .unwrap();
        let err = read_facts(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, JournalError::Newer(_)), "{text}");
        assert!(
            text.contains(&path.display().to_string())
                && text.contains(&format!("format version {}", JOURNAL_FORMAT + 1))
                && text.contains("upgrade lparmover"),
            "{text}"
        );
    }

    #[test]
    fn written_lines_carry_the_current_format() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ManagerDirs::new(tmp.path());
        let _j = JobJournal::begin(&dirs, header("j5")).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("journal/j5.jsonl")).unwrap();
        assert!(
            text.starts_with(&format!("{{\"format\":{JOURNAL_FORMAT},")),
            "{text}"
        );
    }
}
