//! Compatibility checks: the "Migration Config Viewer".
//!
//! For a source LPAR, a destination HVM (and optionally a destination LPAR number) and a
//! [`Mode`], every requirement of the seed's tables 2-8 and 2-9 and of chapter 2's per-mode
//! sections that the model can express becomes one or more [`CheckRow`]s, grouped Server / HBA /
//! NIC / Storage / Path, each with the source value, the destination value, a [`Verdict`], the
//! catalogue error ([`Emg`]) and the action to take.
//!
//! The rules are pure functions over a [`CheckInput`] (inventories, load figures, port states,
//! storage facts, the time): [`run`] needs no network and every rule has unit tests.
//! [`gather`] queries both HVMs concurrently and runs them; a migration calls it first and
//! refuses to start while [`CheckReport::ensure_no_errors`] fails.
//!
//! ```text
//!  gather(profile, lpar, dest, mode, number)
//!     ├── source HVM:      inventory ─┐ load, ports (optional: missing → Warning "not checked")
//!     ├── destination HVM: inventory ─┤ load, ports
//!     └── storage facts (no array client yet → Warning "not checked")
//!                                     ▼
//!                          run(&CheckInput) → CheckReport { rows, verdict }
//! ```

mod devices;
mod gather;
mod path;
mod server;
mod storage;
mod tables;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::{Inventory, LoadFigures, PortStates};
use crate::emg::{Emg, EmgError};
use crate::model::{Lpar, LparNumber, Mode};

pub use gather::storage_facts;
pub use gather::{DestinationChoice, GatherError, gather, gather_for};
pub use storage::{ArrayFacts, StorageFacts};

/// The group a row is shown in (the seed's configuration tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Blade, firmware, HVM and LPAR-level requirements.
    Server,
    /// FC HBA cards, ports and vFCs.
    Hba,
    /// NIC cards, segments and vNICs.
    Nic,
    /// Storage reachability and LUN security.
    Storage,
    /// Migration paths.
    Path,
}

impl Group {
    /// Heading shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            Self::Server => "Server",
            Self::Hba => "HBA",
            Self::Nic => "NIC",
            Self::Storage => "Storage",
            Self::Path => "Path",
        }
    }

    /// Every group in display order.
    pub const ALL: [Group; 5] = [
        Group::Server,
        Group::Hba,
        Group::Nic,
        Group::Storage,
        Group::Path,
    ];
}

/// Outcome of one row; ordered so the worst wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Verdict {
    /// The requirement holds.
    #[serde(rename = "OK")]
    Ok,
    /// The migration can run, but look at this (or it was not checked).
    Warning,
    /// The migration must not start.
    Error,
}

impl Verdict {
    /// Text shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "Warning",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Group it is shown in.
    pub group: Group,
    /// What is compared, e.g. `EFI/BIOS version`.
    pub item: String,
    /// Value on the source side.
    pub source: String,
    /// Value on the destination side.
    pub destination: String,
    /// Outcome.
    pub verdict: Verdict,
    /// Catalogue row, for Warning and Error rows.
    pub code: Option<Emg>,
    /// The seed-shaped code line of `code` (`EMG…:MODULE:message`).
    pub emg: Option<String>,
    /// What exactly differs (empty for plain OK rows).
    pub detail: String,
    /// What to do, for Warning and Error rows.
    pub action: Option<String>,
}

impl CheckRow {
    /// An OK row.
    pub fn ok(
        group: Group,
        item: impl Into<String>,
        source: impl Into<String>,
        destination: impl Into<String>,
    ) -> Self {
        Self {
            group,
            item: item.into(),
            source: source.into(),
            destination: destination.into(),
            verdict: Verdict::Ok,
            code: None,
            emg: None,
            detail: String::new(),
            action: None,
        }
    }

    /// The same row with a note, still OK.
    pub fn note(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The same row with `verdict`, catalogue row `kind` and `detail`. `Verdict::Ok` keeps the
    /// row OK and only records the detail.
    pub fn with(mut self, verdict: Verdict, kind: Emg, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        if verdict == Verdict::Ok {
            return self;
        }
        let error = EmgError::new(kind, self.detail.clone());
        self.verdict = verdict;
        self.code = Some(kind);
        self.emg = Some(error.code_line());
        self.action = Some(error.action().to_owned());
        self
    }

    /// Error row.
    pub fn error(self, kind: Emg, detail: impl Into<String>) -> Self {
        self.with(Verdict::Error, kind, detail)
    }

    /// Warning row.
    pub fn warning(self, kind: Emg, detail: impl Into<String>) -> Self {
        self.with(Verdict::Warning, kind, detail)
    }

    /// The row as a catalogue error (Warning and Error rows).
    pub fn emg_error(&self) -> Option<EmgError> {
        self.code.map(|kind| {
            EmgError::new(
                kind,
                format!("{} / {}: {}", self.group.label(), self.item, self.detail),
            )
        })
    }
}

/// What one HVM looks like to the checks.
#[derive(Clone, Debug)]
pub struct HvmFacts {
    /// Blade, HVM, resources and LPARs.
    pub inventory: Inventory,
    /// CPU and NIC load, or why it could not be read.
    pub load: Result<LoadFigures, String>,
    /// Port link states, or why they could not be read.
    pub ports: Result<PortStates, String>,
}

/// Everything the rules look at.
#[derive(Clone, Debug)]
pub struct CheckInput {
    /// The source HVM.
    pub source: HvmFacts,
    /// The LPAR to migrate (as the source HVM holds it).
    pub lpar: Lpar,
    /// The destination HVM.
    pub destination: HvmFacts,
    /// Migration mode.
    pub mode: Mode,
    /// LPAR number asked for on the destination (`None` = Auto, the youngest free one).
    pub dest_number: Option<LparNumber>,
    /// Processor group asked for on the destination (`None`: the LPAR's own group).
    pub processor_group: Option<u8>,
    /// What the registered storage arrays say.
    pub storage: StorageFacts,
    /// The time the checks are evaluated at.
    pub now: DateTime<Utc>,
}

impl CheckInput {
    /// Name of the source HVM.
    pub fn source_name(&self) -> &str {
        &self.source.inventory.blade.name
    }
    /// Name of the destination HVM.
    pub fn destination_name(&self) -> &str {
        &self.destination.inventory.blade.name
    }
    /// Whether the mode is live.
    pub fn live(&self) -> bool {
        self.mode.is_live()
    }
    /// The processor group the LPAR would run in on the destination.
    pub fn target_group(&self) -> u8 {
        self.processor_group.unwrap_or(self.lpar.processors.group)
    }
}

/// The report: every row and the overall verdict.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Migration mode checked.
    pub mode: Mode,
    /// Source HVM.
    pub source_hvm: String,
    /// Source LPAR number.
    pub lpar_number: LparNumber,
    /// Source LPAR name.
    pub lpar_name: String,
    /// Destination HVM.
    pub destination_hvm: String,
    /// Destination LPAR number asked for (`None` = Auto).
    pub destination_number: Option<LparNumber>,
    /// Destination processor group asked for (`None`: the LPAR's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_group: Option<u8>,
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
    /// Worst verdict of all rows.
    pub verdict: Verdict,
    /// Rows in group order (Server, HBA, NIC, Storage, Path), rule order within a group.
    pub rows: Vec<CheckRow>,
}

/// A migration refused because Error rows stand.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "LPAR {lpar} cannot migrate from {source_hvm} to {destination_hvm} in {mode} mode: {} check(s) failed: {}",
    .errors.len(),
    .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
)]
pub struct ChecksFailed {
    /// Source LPAR name.
    pub lpar: String,
    /// Source HVM.
    pub source_hvm: String,
    /// Destination HVM.
    pub destination_hvm: String,
    /// Mode.
    pub mode: Mode,
    /// One catalogue error per Error row, naming its group and item.
    pub errors: Vec<EmgError>,
}

impl CheckReport {
    /// The rows that forbid the migration.
    pub fn blocking_errors(&self) -> Vec<&CheckRow> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Error)
            .collect()
    }

    /// The Warning rows.
    pub fn warnings(&self) -> Vec<&CheckRow> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Warning)
            .collect()
    }

    /// `Ok` when no Error row stands; otherwise which rows failed, as catalogue errors. A
    /// migration calls this before it changes anything.
    pub fn ensure_no_errors(&self) -> Result<(), ChecksFailed> {
        let errors: Vec<EmgError> = self
            .blocking_errors()
            .iter()
            .filter_map(|r| r.emg_error())
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(ChecksFailed {
            lpar: self.lpar_name.clone(),
            source_hvm: self.source_hvm.clone(),
            destination_hvm: self.destination_hvm.clone(),
            mode: self.mode,
            errors,
        })
    }

    /// Rows of one group.
    pub fn group(&self, group: Group) -> impl Iterator<Item = &CheckRow> {
        self.rows.iter().filter(move |r| r.group == group)
    }
}

/// One rule: a name (for tests and logs) and a pure function producing its rows.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Short name, e.g. `efi-bios-version`.
    pub name: &'static str,
    /// The check.
    pub check: fn(&CheckInput) -> Vec<CheckRow>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Rule").field(&self.name).finish()
    }
}

/// Every rule, in display order within its group.
pub fn rules() -> Vec<Rule> {
    let mut all = Vec::new();
    all.extend_from_slice(server::RULES);
    all.extend_from_slice(devices::RULES);
    all.extend_from_slice(storage::RULES);
    all.extend_from_slice(path::RULES);
    all
}

/// Runs every rule over `input`.
pub fn run(input: &CheckInput) -> CheckReport {
    let mut rows: Vec<CheckRow> = rules().iter().flat_map(|r| (r.check)(input)).collect();
    rows.sort_by_key(|r| r.group);
    let verdict = rows.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Ok);
    CheckReport {
        mode: input.mode,
        source_hvm: input.source_name().to_owned(),
        lpar_number: input.lpar.number,
        lpar_name: input.lpar.name.to_string(),
        destination_hvm: input.destination_name().to_owned(),
        destination_number: input.dest_number,
        processor_group: input.processor_group,
        checked_at: input.now,
        verdict,
        rows,
    }
}

#[cfg(any(test, feature = "testutil"))]
#[doc(hidden)]
pub mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn identical_pair_has_no_error_in_either_mode() {
        for mode in [Mode::Shutdown, Mode::ConcurrentMaintenance] {
            let report = run(&input("ch1-b1", "web-01", "ch1-b2", mode));
            assert!(
                report.blocking_errors().is_empty(),
                "{mode}: {:#?}",
                report.blocking_errors()
            );
            assert!(report.ensure_no_errors().is_ok());
            for g in Group::ALL {
                assert!(report.group(g).count() > 0, "{mode}: no {g:?} rows");
            }
        }
    }

    #[test]
    fn efi_difference_blocks_live_but_not_cold() {
        let live = run(&input(
            "ch1-b1",
            "web-01",
            "ch2-b1",
            Mode::ConcurrentMaintenance,
        ));
        let items: Vec<&str> = live
            .blocking_errors()
            .iter()
            .map(|r| r.item.as_str())
            .collect();
        assert_eq!(items, ["EFI/BIOS version"]);
        let err = live.ensure_no_errors().unwrap_err().to_string();
        assert!(
            err.contains("EFI/BIOS version") && err.contains("10-46"),
            "{err}"
        );
        let cold = run(&input("ch1-b1", "web-01", "ch2-b1", Mode::Shutdown));
        assert!(
            cold.blocking_errors().is_empty(),
            "{:#?}",
            cold.blocking_errors()
        );
    }

    #[test]
    fn missing_fc_card_is_an_error_with_its_action() {
        let report = run(&input("ch1-b1", "web-01", "ch2-b2", Mode::Shutdown));
        let errors = report.blocking_errors();
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|r| r.group == Group::Hba), "{errors:#?}");
        let card = errors
            .iter()
            .find(|r| r.code == Some(Emg::FcCardMissing))
            .unwrap();
        assert!(
            card.action
                .as_deref()
                .unwrap()
                .contains("device configuration")
        );
        assert!(card.emg.as_deref().unwrap().starts_with("EMG"));
    }
}
