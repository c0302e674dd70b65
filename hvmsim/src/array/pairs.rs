//! Replication pairs as plain data with pure rules (the table is in
//! `lparmover::api::array::pair`). The service does the LU file I/O these rules ask for, in the
//! order that keeps a kill -9 harmless: a copy is written and synced before the state that says
//! it is done, and a host write is remembered (as a difference or a pending copy) before it
//! reaches the file.
//!
//! Volumes are copied in [`CHUNK`]-sized pieces. Per pair the array keeps which chunks the
//! current copy still has to move (`pending`) and which chunks each volume was written in since
//! the two were last the same (`mv_dirty`, `rv_dirty`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lparmover::api::array::{
    ArrayError, ArrayErrorCode, LuNumber, MAX_LU_IO, Pair, PairState, RestoreMode, RvAccess,
    SetPair,
};
use serde::{Deserialize, Serialize};

use super::state::ArrayState;

/// The unit of copying and of difference tracking.
pub const CHUNK: u64 = 1 << 20;

/// Which way a pair copies now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Replicate, Separate, and MV writes reflected in the Replicate / Restore states.
    MvToRv,
    /// Restore.
    RvToMv,
}

/// Chunks to copy between the volumes of one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyWork {
    /// The pair's MV.
    pub mv: LuNumber,
    /// Its RV.
    pub rv: LuNumber,
    /// Which way.
    pub direction: Direction,
    /// Chunk indexes.
    pub chunks: Vec<u32>,
}

/// A pair as the array keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRecord {
    /// The replication volume.
    pub rv: LuNumber,
    /// Where the pair is.
    pub state: PairState,
    /// Mode of the last Restore, while it matters.
    #[serde(default)]
    pub restore_mode: Option<RestoreMode>,
    /// Whether the RV has held a whole copy of the MV.
    pub synchronized: bool,
    /// Chunks the current copy still has to move.
    #[serde(default)]
    pub pending: BTreeSet<u32>,
    /// Chunks in the current copy.
    #[serde(default)]
    pub copy_total: u32,
    /// MV chunks written since the volumes were last the same.
    #[serde(default)]
    pub mv_dirty: BTreeSet<u32>,
    /// RV chunks written while separated.
    #[serde(default)]
    pub rv_dirty: BTreeSet<u32>,
    /// When the last operation started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why the pair is in Fault.
    #[serde(default)]
    pub fault: Option<String>,
}

impl PairRecord {
    /// A pair just set: separated, the RV never copied.
    pub fn new(rv: LuNumber) -> Self {
        Self {
            rv,
            state: PairState::Separated,
            restore_mode: None,
            synchronized: false,
            pending: BTreeSet::new(),
            copy_total: 0,
            mv_dirty: BTreeSet::new(),
            rv_dirty: BTreeSet::new(),
            started_at: None,
            ended_at: None,
            fault: None,
        }
    }

    /// Which way the pending chunks go.
    pub fn direction(&self) -> Direction {
        if self.state == PairState::Restoring {
            Direction::RvToMv
        } else {
            Direction::MvToRv
        }
    }

    fn rv_access(&self) -> RvAccess {
        match self.state {
            PairState::Separated | PairState::Fault => RvAccess::Rw,
            _ => RvAccess::Nr,
        }
    }

    fn begin(&mut self, state: PairState, pending: BTreeSet<u32>, now: DateTime<Utc>) {
        self.copy_total = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        self.pending = pending;
        self.state = state;
        self.started_at = Some(now);
        self.ended_at = None;
        self.fault = None;
    }

    fn end(&mut self, state: PairState, now: DateTime<Utc>) {
        self.state = state;
        self.ended_at = Some(now);
        self.copy_total = 0;
    }

    fn difference(&mut self) -> BTreeSet<u32> {
        let mut all = std::mem::take(&mut self.mv_dirty);
        all.append(&mut self.rv_dirty);
        all
    }
}

fn wrong_state(mv: LuNumber, state: PairState, what: &str, then: &str) -> ArrayError {
    ArrayError::new(
        ArrayErrorCode::PairStateWrong,
        format!(
            "the pair of MV {mv} is {} ({}): {what}; {then}",
            state.code(),
            state.label()
        ),
    )
}

fn chunks_of(size_mib: u32) -> BTreeSet<u32> {
    (0..size_mib).collect()
}

impl ArrayState {
    fn lu_size(&self, lu: LuNumber) -> Result<u32, ArrayError> {
        self.lus
            .iter()
            .find(|l| l.number == lu)
            .map(|l| l.size_mib)
            .ok_or_else(|| {
                ArrayError::new(
                    ArrayErrorCode::LuNotFound,
                    format!(
                        "array {} has no LU {lu}; list them with `storagecli lu list {}`",
                        self.info.name, self.info.name
                    ),
                )
            })
    }

    fn lu_name(&self, lu: LuNumber) -> String {
        self.lus
            .iter()
            .find(|l| l.number == lu)
            .map(|l| l.name.clone())
            .unwrap_or_default()
    }

    /// The pair of MV `mv`, as clients see it.
    pub fn pair_view(&self, mv: LuNumber) -> Result<Pair, ArrayError> {
        let record = self.pair_record(mv)?;
        Ok(Pair {
            mv,
            mv_name: self.lu_name(mv),
            rv: record.rv,
            rv_name: self.lu_name(record.rv),
            state: record.state,
            rv_access: record.rv_access(),
            restore_mode: record.restore_mode,
            synchronized: record.synchronized,
            copy_total_mib: u64::from(record.copy_total),
            copy_remaining_mib: record.pending.len() as u64,
            difference_mib: record.mv_dirty.union(&record.rv_dirty).count() as u64,
            started_at: record.started_at,
            ended_at: record.ended_at,
            fault: record.fault.clone(),
        })
    }

    /// Every pair.
    pub fn pair_views(&self) -> Vec<Pair> {
        self.pairs
            .keys()
            .filter_map(|mv| self.pair_view(*mv).ok())
            .collect()
    }

    fn pair_record(&self, mv: LuNumber) -> Result<&PairRecord, ArrayError> {
        self.pairs.get(&mv).ok_or_else(|| {
            let as_rv = self
                .pairs
                .iter()
                .find(|(_, p)| p.rv == mv)
                .map(|(m, _)| format!(" (it is the RV of MV {m}; name the MV)"))
                .unwrap_or_default();
            ArrayError::new(
                ArrayErrorCode::PairNotFound,
                format!("LU {mv} is the MV of no pair{as_rv}"),
            )
        })
    }

    fn pair_mut(&mut self, mv: LuNumber) -> Result<&mut PairRecord, ArrayError> {
        self.pair_record(mv)?;
        self.pairs
            .get_mut(&mv)
            .ok_or_else(|| ArrayError::new(ArrayErrorCode::PairNotFound, "pair vanished"))
    }

    /// The pair `lu` belongs to, as (MV, whether `lu` is the RV).
    fn pair_of(&self, lu: LuNumber) -> Option<(LuNumber, bool)> {
        if self.pairs.contains_key(&lu) {
            return Some((lu, false));
        }
        self.pairs
            .iter()
            .find(|(_, p)| p.rv == lu)
            .map(|(mv, _)| (*mv, true))
    }

    /// `iSMrc_pair -pair`.
    pub fn set_pair(&mut self, request: &SetPair) -> Result<Pair, ArrayError> {
        let SetPair { mv, rv } = *request;
        let mv_size = self.lu_size(mv)?;
        let rv_size = self.lu_size(rv)?;
        let refuse = |detail: String| ArrayError::new(ArrayErrorCode::PairNotPossible, detail);
        if mv == rv {
            return Err(refuse(format!("LU {mv} cannot be paired with itself")));
        }
        if mv_size != rv_size {
            return Err(refuse(format!(
                "MV {mv} has {mv_size} MiB and RV {rv} {rv_size} MiB; paired volumes must be the same size"
            )));
        }
        for lu in [mv, rv] {
            if let Some((owner, _)) = self.pair_of(lu) {
                return Err(refuse(format!(
                    "LU {lu} is already in the pair of MV {owner}"
                )));
            }
        }
        if let Some(group) = self
            .host_groups
            .iter()
            .find(|g| g.luns.iter().any(|m| m.lu == rv))
        {
            return Err(refuse(format!(
                "RV {rv} is presented to host group {}: Replicate would overwrite a disk hosts use",
                group.label()
            )));
        }
        self.pairs.insert(mv, PairRecord::new(rv));
        self.pair_view(mv)
    }

    /// `iSMrc_pair -unpair`: only a separated pair.
    pub fn unset_pair(&mut self, mv: LuNumber) -> Result<(), ArrayError> {
        let state = self.pair_record(mv)?.state;
        if !matches!(state, PairState::Separated | PairState::Fault) {
            return Err(wrong_state(
                mv,
                state,
                "only a separated pair can be cancelled",
                "separate it first (`storagecli pair separate ARRAY MV --wait`)",
            ));
        }
        self.pairs.remove(&mv);
        Ok(())
    }

    /// `iSMrc_replicate`: copies the difference (everything the first time, or after a fault)
    /// MV → RV; the RV becomes Not Ready. Asking again while it replicates changes nothing.
    pub fn replicate(&mut self, mv: LuNumber, now: DateTime<Utc>) -> Result<Pair, ArrayError> {
        let size = self.lu_size(mv)?;
        let pair = self.pair_mut(mv)?;
        match pair.state {
            PairState::Replicating | PairState::Replicated => {}
            PairState::Separated | PairState::Fault => {
                let whole = !pair.synchronized || pair.state == PairState::Fault;
                let difference = pair.difference();
                let pending = if whole { chunks_of(size) } else { difference };
                pair.restore_mode = None;
                pair.begin(PairState::Replicating, pending, now);
            }
            state @ (PairState::Separating | PairState::Restoring | PairState::Restored) => {
                return Err(wrong_state(
                    mv,
                    state,
                    "Replicate needs a separated pair",
                    match state {
                        PairState::Restored => "separate it first",
                        _ => "wait until it is separated or restored (`storagecli pair wait`)",
                    },
                ));
            }
        }
        self.pair_view(mv)
    }

    /// `iSMrc_separate`: the RV keeps what the MV held at this moment; chunks still on their
    /// way are copied before the RV becomes usable.
    pub fn separate(&mut self, mv: LuNumber, now: DateTime<Utc>) -> Result<Pair, ArrayError> {
        let pair = self.pair_mut(mv)?;
        match pair.state {
            PairState::Separated | PairState::Separating | PairState::Fault => {}
            PairState::Replicating => {
                pair.state = PairState::Separating;
                pair.started_at = Some(now);
            }
            PairState::Replicated | PairState::Restored => {
                let pending = std::mem::take(&mut pair.pending);
                pair.restore_mode = None;
                pair.begin(PairState::Separating, pending, now);
            }
            state @ PairState::Restoring => {
                return Err(wrong_state(
                    mv,
                    state,
                    "a Restore is copying the RV to the MV",
                    "wait until it is done (`storagecli pair wait ARRAY MV --cond rst`), then separate",
                ));
            }
        }
        self.pair_view(mv)
    }

    /// `iSMrc_restore`: copies the difference RV → MV. The service first finishes any MV → RV
    /// reflection still pending (see [`Self::reflection_pending`]).
    pub fn restore(
        &mut self,
        mv: LuNumber,
        mode: RestoreMode,
        now: DateTime<Utc>,
    ) -> Result<Pair, ArrayError> {
        let pair = self.pair_mut(mv)?;
        match pair.state {
            PairState::Separated if !pair.synchronized => {
                return Err(wrong_state(
                    mv,
                    pair.state,
                    "the RV has never held a copy of the MV, so Restore would copy an empty volume",
                    "replicate first",
                ));
            }
            PairState::Separated => {
                let difference = pair.difference();
                pair.restore_mode = Some(mode);
                pair.begin(PairState::Restoring, difference, now);
            }
            PairState::Replicated | PairState::Restored if pair.pending.is_empty() => {
                pair.restore_mode = Some(mode);
                pair.begin(PairState::Restoring, BTreeSet::new(), now);
            }
            state => {
                return Err(wrong_state(
                    mv,
                    state,
                    "Restore needs a separated or synchronized pair",
                    match state {
                        PairState::Fault => "replicate first to make the RV whole again",
                        _ => "wait until the copy is done (`storagecli pair wait`)",
                    },
                ));
            }
        }
        self.pair_view(mv)
    }

    /// Chunks an MV → RV reflection still has to copy before Restore may start on `mv`.
    pub fn reflection_pending(&self, mv: LuNumber) -> Option<CopyWork> {
        let pair = self.pairs.get(&mv)?;
        let synced = matches!(pair.state, PairState::Replicated | PairState::Restored);
        (synced && !pair.pending.is_empty()).then(|| CopyWork {
            mv,
            rv: pair.rv,
            direction: Direction::MvToRv,
            chunks: pair.pending.iter().copied().collect(),
        })
    }

    /// Checks a host read of `length` bytes of `lu` at `offset`.
    pub fn check_read(&self, lu: LuNumber, offset: u64, length: u64) -> Result<(), ArrayError> {
        self.check_range(lu, offset, length)?;
        if let Some((mv, true)) = self.pair_of(lu)
            && let Ok(pair) = self.pair_record(mv)
            && pair.rv_access() == RvAccess::Nr
        {
            return Err(self.rv_not_ready(mv, lu));
        }
        Ok(())
    }

    fn rv_not_ready(&self, mv: LuNumber, rv: LuNumber) -> ArrayError {
        let state = self.pairs.get(&mv).map(|p| p.state);
        ArrayError::new(
            ArrayErrorCode::RvNotReady,
            format!(
                "LU {rv} is the RV of MV {mv}, whose pair is {}",
                state.map(PairState::code).unwrap_or("unknown")
            ),
        )
    }

    fn check_range(&self, lu: LuNumber, offset: u64, length: u64) -> Result<u64, ArrayError> {
        let size = u64::from(self.lu_size(lu)?) * CHUNK;
        if length == 0 || length > MAX_LU_IO {
            return Err(ArrayError::new(
                ArrayErrorCode::InvalidRequest,
                format!("length {length} must be 1 to {MAX_LU_IO} bytes"),
            ));
        }
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(end),
            _ => Err(ArrayError::new(
                ArrayErrorCode::InvalidRequest,
                format!(
                    "offset {offset} + {length} bytes is beyond LU {lu}'s {size} bytes; give an offset below {}",
                    size.saturating_sub(length)
                ),
            )),
        }
    }

    /// Plans a host write of `length` bytes to `lu` at `offset`: remembers it in the pair's
    /// difference or pending copy, and returns the copies that must happen before the write
    /// reaches the file (a chunk a Separate or Restore still has to move keeps its old content).
    pub fn plan_write(
        &mut self,
        lu: LuNumber,
        offset: u64,
        length: u64,
    ) -> Result<Option<CopyWork>, ArrayError> {
        let end = self.check_range(lu, offset, length)?;
        let first = u32::try_from(offset / CHUNK).unwrap_or(u32::MAX);
        let last = u32::try_from((end - 1) / CHUNK).unwrap_or(u32::MAX);
        let touched: BTreeSet<u32> = (first..=last).collect();
        let Some((mv, is_rv)) = self.pair_of(lu) else {
            return Ok(None);
        };
        if is_rv {
            let state = self.pair_record(mv)?.state;
            if !matches!(state, PairState::Separated | PairState::Fault) {
                return Err(self.rv_not_ready(mv, lu));
            }
            self.pair_mut(mv)?.rv_dirty.extend(touched);
            return Ok(None);
        }
        let pair = self.pair_mut(mv)?;
        let before: Vec<u32> = match pair.state {
            PairState::Separating | PairState::Restoring => {
                touched.intersection(&pair.pending).copied().collect()
            }
            _ => Vec::new(),
        };
        let direction = pair.direction();
        for c in &before {
            pair.pending.remove(c);
        }
        match pair.state {
            PairState::Replicating | PairState::Replicated | PairState::Restored => {
                pair.pending.extend(touched);
            }
            PairState::Separated
            | PairState::Separating
            | PairState::Fault
            | PairState::Restoring => pair.mv_dirty.extend(touched),
        }
        let rv = pair.rv;
        Ok((!before.is_empty()).then_some(CopyWork {
            mv,
            rv,
            direction,
            chunks: before,
        }))
    }

    /// The next chunks to copy: up to `budget` per pair that has any.
    pub fn copy_work(&self, budget: usize) -> Vec<CopyWork> {
        self.pairs
            .iter()
            .filter(|(_, p)| !p.pending.is_empty() && p.state != PairState::Fault)
            .map(|(mv, p)| CopyWork {
                mv: *mv,
                rv: p.rv,
                direction: p.direction(),
                chunks: p.pending.iter().take(budget).copied().collect(),
            })
            .collect()
    }

    /// Whether the copy engine has anything to do: chunks to copy, or a copying pair whose copy
    /// is done and waits to [`Self::settle`]. An idle array answers this without copying its
    /// state, so the engine's 50 steps a second cost nothing when no pair copies.
    pub fn has_copy_step(&self) -> bool {
        self.pairs.values().any(|p| {
            (!p.pending.is_empty() && p.state != PairState::Fault)
                || (p.state.copying() && p.pending.is_empty())
        })
    }

    /// Records that `work` was copied (and synced).
    pub fn copied(&mut self, work: &CopyWork) {
        if let Some(pair) = self.pairs.get_mut(&work.mv) {
            for c in &work.chunks {
                pair.pending.remove(c);
            }
        }
    }

    /// A copy failed: the pair separates itself (failure separation); the next Replicate copies
    /// everything.
    pub fn copy_failed(&mut self, mv: LuNumber, detail: String, now: DateTime<Utc>) {
        if let Some(pair) = self.pairs.get_mut(&mv) {
            pair.pending.clear();
            pair.synchronized = false;
            pair.fault = Some(detail);
            pair.end(PairState::Fault, now);
        }
    }

    /// Moves every copying pair whose copy is done to its next state.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        for pair in self.pairs.values_mut() {
            if !pair.state.copying() || !pair.pending.is_empty() {
                continue;
            }
            match pair.state {
                PairState::Replicating => {
                    pair.synchronized = true;
                    pair.end(PairState::Replicated, now);
                }
                PairState::Separating => {
                    pair.synchronized = true;
                    pair.end(PairState::Separated, now);
                }
                PairState::Restoring if pair.restore_mode == Some(RestoreMode::Protect) => {
                    pair.end(PairState::Separated, now);
                }
                PairState::Restoring => {
                    // MV writes made during the restore now reach the RV.
                    pair.pending = std::mem::take(&mut pair.mv_dirty);
                    pair.end(PairState::Restored, now);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lparmover::api::array::{ArrayInfo, Lu};
    use lparmover::model::SecurityMode;
    use std::collections::BTreeMap;

    fn array() -> ArrayState {
        ArrayState {
            format: ArrayState::FORMAT,
            info: ArrayInfo {
                name: "ams1".parse().expect("name"),
                model: "AMS2500".into(),
                serial: "1".into(),
                controllers: Vec::new(),
                ports: Vec::new(),
                security: SecurityMode::None,
            },
            accounts: Vec::new(),
            host_groups: Vec::new(),
            lus: vec![
                Lu {
                    number: LuNumber(0),
                    name: "mv".into(),
                    size_mib: 4,
                },
                Lu {
                    number: LuNumber(100),
                    name: "rv".into(),
                    size_mib: 4,
                },
                Lu {
                    number: LuNumber(7),
                    name: "small".into(),
                    size_mib: 2,
                },
            ],
            logins: BTreeMap::new(),
            pairs: BTreeMap::new(),
        }
    }

    const MV: LuNumber = LuNumber(0);
    const RV: LuNumber = LuNumber(100);

    fn paired() -> ArrayState {
        let mut a = array();
        a.set_pair(&SetPair { mv: MV, rv: RV }).expect("pair");
        a
    }

    /// Runs the copy engine until nothing is pending.
    fn run_copies(a: &mut ArrayState) -> Vec<CopyWork> {
        let mut done = Vec::new();
        loop {
            let work = a.copy_work(2);
            if work.is_empty() {
                a.settle(Utc::now());
                return done;
            }
            for w in work {
                a.copied(&w);
                done.push(w);
            }
        }
    }

    #[test]
    fn pairs_need_two_distinct_free_volumes_of_one_size() {
        let mut a = paired();
        let code = |r: Result<Pair, ArrayError>| r.err().map(|e| e.code);
        assert_eq!(
            code(a.set_pair(&SetPair {
                mv: LuNumber(7),
                rv: LuNumber(7)
            })),
            Some(ArrayErrorCode::PairNotPossible)
        );
        assert_eq!(
            code(a.set_pair(&SetPair {
                mv: LuNumber(7),
                rv: RV
            })),
            Some(ArrayErrorCode::PairNotPossible)
        );
        assert_eq!(
            code(a.set_pair(&SetPair {
                mv: LuNumber(9),
                rv: RV
            })),
            Some(ArrayErrorCode::LuNotFound)
        );
        assert_eq!(a.pairs.len(), 1);
    }

    #[test]
    fn the_first_replicate_copies_everything_and_later_ones_only_the_difference() {
        let mut a = paired();
        assert_eq!(
            a.restore(MV, RestoreMode::Update, Utc::now())
                .err()
                .map(|e| e.code),
            Some(ArrayErrorCode::PairStateWrong),
            "restore before any copy"
        );
        assert!(
            !a.has_copy_step(),
            "a pair that never copied leaves the engine idle"
        );
        let p = a.replicate(MV, Utc::now()).expect("replicate");
        assert_eq!((p.state, p.copy_total_mib), (PairState::Replicating, 4));
        assert_eq!(p.rv_access, RvAccess::Nr);
        assert!(a.has_copy_step());
        let copied: usize = run_copies(&mut a).iter().map(|w| w.chunks.len()).sum();
        assert_eq!(copied, 4);
        assert_eq!(a.pair_view(MV).expect("pair").state, PairState::Replicated);
        assert!(
            !a.has_copy_step(),
            "a replicated pair leaves the engine idle"
        );
        a.separate(MV, Utc::now()).expect("separate");
        run_copies(&mut a);
        let p = a.pair_view(MV).expect("pair");
        assert_eq!((p.state, p.rv_access), (PairState::Separated, RvAccess::Rw));
        // One write to each side while separated: the next Replicate copies those two chunks.
        a.plan_write(MV, 10, 5).expect("mv write");
        a.plan_write(RV, 3 * CHUNK, 5).expect("rv write");
        assert_eq!(a.pair_view(MV).expect("pair").difference_mib, 2);
        let p = a.replicate(MV, Utc::now()).expect("replicate");
        assert_eq!(p.copy_total_mib, 2);
    }

    #[test]
    fn a_write_to_the_mv_during_separate_copies_the_old_chunk_first() {
        let mut a = paired();
        a.replicate(MV, Utc::now()).expect("replicate");
        a.separate(MV, Utc::now()).expect("separate");
        let before = a
            .plan_write(MV, CHUNK + 1, 2)
            .expect("write")
            .expect("a copy first");
        assert_eq!(before.chunks, vec![1]);
        assert_eq!(before.direction, Direction::MvToRv);
        let p = a.pair_view(MV).expect("pair");
        assert_eq!((p.copy_remaining_mib, p.difference_mib), (3, 1));
        // RV is Not Ready until the separate is done.
        assert_eq!(
            a.plan_write(RV, 0, 1).err().map(|e| e.code),
            Some(ArrayErrorCode::RvNotReady)
        );
        assert_eq!(
            a.check_read(RV, 0, 1).err().map(|e| e.code),
            Some(ArrayErrorCode::RvNotReady)
        );
    }

    #[test]
    fn restore_with_protect_separates_by_itself_and_update_keeps_reflecting() {
        for (mode, end) in [
            (RestoreMode::Protect, PairState::Separated),
            (RestoreMode::Update, PairState::Restored),
        ] {
            let mut a = paired();
            a.replicate(MV, Utc::now()).expect("replicate");
            run_copies(&mut a);
            a.separate(MV, Utc::now()).expect("separate");
            run_copies(&mut a);
            a.plan_write(MV, 0, 1).expect("write");
            let p = a.restore(MV, mode, Utc::now()).expect("restore");
            assert_eq!((p.state, p.copy_total_mib), (PairState::Restoring, 1));
            let work = run_copies(&mut a);
            assert_eq!(work[0].direction, Direction::RvToMv);
            assert_eq!(a.pair_view(MV).expect("pair").state, end, "{mode:?}");
        }
    }

    #[test]
    fn out_of_range_io_and_unknown_pairs_are_refused_without_change() {
        let mut a = paired();
        let before = a.clone();
        for (offset, length) in [(0, 0), (4 * CHUNK, 1), (u64::MAX, 2), (0, MAX_LU_IO + 1)] {
            assert_eq!(
                a.plan_write(MV, offset, length).err().map(|e| e.code),
                Some(ArrayErrorCode::InvalidRequest),
                "{offset} {length}"
            );
        }
        assert_eq!(
            a.replicate(RV, Utc::now()).err().map(|e| e.code),
            Some(ArrayErrorCode::PairNotFound)
        );
        assert_eq!(a, before);
    }
}
