//! WWN rollback marks: the blade's side of the seed's "Rolling back WWNs" (ch. 3).
//!
//! The manager marks an LPAR when a failed live move may have left one of the LPAR's migration
//! WWPNs logged in somewhere, or left the LPAR running on its migration WWPNs
//! (`lparmover::api::WwnRollback` says which). Marks live in the state file
//! ([`HvmState::wwn_rollbacks`]) and are written like every other change: applied to a copy,
//! persisted atomically, then made current, so a mark a client was told about survives `kill -9`.
//!
//! While an HVM holds any mark it refuses to prepare an incoming live move and to send one, with
//! the seed's "LPAR Migration was canceled. Migration WWNs are already used." Executing a mark
//! (the manager does it once the other HVM holds nothing of the move any more) logs the LPAR's
//! vFCs in with its own WWPNs — a destination that resumed on the migration WWPNs swaps here, a
//! source keeps its WWPNs — drops a resumed destination's record of the move and clears the mark.
//! A swap of the same job ([`BladeService::swap_migration`]) clears it too: the identity exchange
//! completed the normal way.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lparmover::api::{LogLevel, MarkWwnRollback, RecordPhase, Role, WwnRollback, WwnRolledBack};
use lparmover::emg::{Emg, EmgError};
use lparmover::model::{LparNumber, LparStatus, Wwpn};

use crate::api::{ApiError, ApiJson};
use crate::blade::{BladeService, lock};
use crate::hvm::HvmState;

impl HvmState {
    /// Marks LPAR `request.lpar`; a mark already on that LPAR stays as it is (idempotent).
    pub fn mark_wwn_rollback(
        &mut self,
        request: &MarkWwnRollback,
        now: DateTime<Utc>,
    ) -> Result<WwnRollback, EmgError> {
        if let Some(existing) = self.wwn_rollbacks.get(&request.lpar) {
            return Ok(existing.clone());
        }
        let lpar = self.lpar(request.lpar)?;
        let mark = WwnRollback {
            job: request.job.clone(),
            lpar: lpar.number,
            lpar_name: lpar.name.clone(),
            role: request.role,
            peer: request.peer.clone(),
            reason: request.reason,
            wwpns: lpar.vfcs.iter().map(|v| v.wwpn).collect(),
            migration_wwpns: lpar.vfcs.iter().map(|v| v.migration_wwpn).collect(),
            marked_at: now,
        };
        self.wwn_rollbacks.insert(mark.lpar, mark.clone());
        Ok(mark)
    }

    /// Executes the mark of LPAR `number`: returns it with the WWPNs the LPAR's vFCs log in with
    /// from now on (its own when it runs, none otherwise). A move of the same job still under way
    /// here (anything but a resumed destination) must be settled by the manager first.
    pub fn execute_wwn_rollback(
        &mut self,
        number: LparNumber,
    ) -> Result<(WwnRollback, Vec<Wwpn>), EmgError> {
        let hvm = self.blade.name.clone();
        let mark = self.wwn_rollbacks.get(&number).cloned().ok_or_else(|| {
            EmgError::new(
                Emg::LparNotFound,
                format!("no WWNs pending rollback for LPAR {number} on HVM {hvm}"),
            )
        })?;
        if let Some(record) = self.migrations.get(&mark.job) {
            let resumed_here =
                record.role == Role::Destination && record.phase == RecordPhase::Resumed;
            if !resumed_here {
                return Err(EmgError::new(
                    Emg::InvalidLparState,
                    format!(
                        "job {} is still under way on HVM {hvm} ({:?} {:?}); run `lparmover recover` first",
                        mark.job, record.role, record.phase
                    ),
                ));
            }
            // The destination ran on the migration WWPNs: the rollback is its swap.
            self.migrations.remove(&mark.job);
        }
        self.wwn_rollbacks.remove(&number);
        let logins = match self.lpars.get(&number) {
            Some(lpar) if lpar.status == LparStatus::Activated => {
                lpar.vfcs.iter().map(|v| v.wwpn).collect()
            }
            _ => Vec::new(),
        };
        Ok((mark, logins))
    }

    /// Clears the marks job `job` left on this HVM (its identity swap completed normally).
    pub fn clear_wwn_rollbacks_of(&mut self, job: &str) -> Vec<WwnRollback> {
        let (cleared, kept) = std::mem::take(&mut self.wwn_rollbacks)
            .into_iter()
            .partition(|(_, m)| m.job == job);
        self.wwn_rollbacks = kept;
        cleared.into_values().collect()
    }

    /// Refuses a live move while any mark is left (the seed: no LPAR of such an HVM migrates).
    pub fn refuse_live_move_while_marked(&self) -> Result<(), EmgError> {
        if self.wwn_rollbacks.is_empty() {
            return Ok(());
        }
        let hvm = &self.blade.name;
        let pending: Vec<String> = self
            .wwn_rollbacks
            .values()
            .map(|m| {
                format!(
                    "LPAR {} ({}) from job {}: run `lparmover rollback-wwn {hvm}/{}`",
                    m.lpar, m.lpar_name, m.job, m.lpar_name
                )
            })
            .collect();
        Err(EmgError::new(
            Emg::MigrationWwnsInUse,
            format!(
                "HVM {hvm} has WWNs pending rollback: {}",
                pending.join("; ")
            ),
        ))
    }
}

impl BladeService {
    /// Every mark on this HVM.
    pub fn wwn_rollbacks(&self) -> Vec<WwnRollback> {
        lock(&self.state).wwn_rollbacks.values().cloned().collect()
    }

    /// Marks an LPAR: WWNs to roll back (durable before the answer).
    pub fn mark_wwn_rollback(&self, request: &MarkWwnRollback) -> Result<WwnRollback, EmgError> {
        let mark = self.mutate(|s| s.mark_wwn_rollback(request, Utc::now()))?;
        self.log.record(
            LogLevel::Warning,
            "migration",
            format!(
                "job {}: LPAR {} ({}) has WWNs pending rollback ({}); live moves on this HVM are refused until `lparmover rollback-wwn {}/{}`",
                mark.job,
                mark.lpar,
                mark.lpar_name,
                mark.reason.label(),
                self.name,
                mark.lpar_name
            ),
        );
        Ok(mark)
    }

    /// Executes the mark of LPAR `number` (see the module docs).
    pub fn execute_wwn_rollback(&self, number: LparNumber) -> Result<WwnRolledBack, EmgError> {
        let (mark, fc_logins) = self.mutate(|s| s.execute_wwn_rollback(number))?;
        self.set_fc_logins(number, fc_logins.clone());
        self.log.record(
            LogLevel::Info,
            "migration",
            format!(
                "job {}: WWNs of LPAR {} ({}) rolled back; vFCs logged in with {}",
                mark.job,
                mark.lpar,
                mark.lpar_name,
                if fc_logins.is_empty() {
                    "nothing (not running)".to_owned()
                } else {
                    "its WWPNs".to_owned()
                }
            ),
        );
        Ok(WwnRolledBack { mark, fc_logins })
    }

    /// Refuses a live move (either side) while this HVM has marks.
    pub(crate) fn refuse_live_move_while_marked(&self) -> Result<(), EmgError> {
        lock(&self.state).refuse_live_move_while_marked()
    }
}

async fn list(State(s): State<Arc<BladeService>>) -> Result<Json<Vec<WwnRollback>>, ApiError> {
    Ok(Json(s.wwn_rollbacks()))
}

async fn mark(
    State(s): State<Arc<BladeService>>,
    ApiJson(request): ApiJson<MarkWwnRollback>,
) -> Result<Json<WwnRollback>, ApiError> {
    crate::api::checked(request.check_fields())?;
    Ok(Json(s.mark_wwn_rollback(&request)?))
}

async fn execute(
    State(s): State<Arc<BladeService>>,
    Path(n): Path<String>,
) -> Result<Json<WwnRolledBack>, ApiError> {
    let number: LparNumber = n.parse().map_err(|e: lparmover::model::InvalidId| {
        ApiError(EmgError::new(Emg::InvalidRequest, e.to_string()))
    })?;
    Ok(Json(s.execute_wwn_rollback(number)?))
}

/// `/wwn-rollbacks` routes (nested under `/v1`).
pub fn routes() -> Router<Arc<BladeService>> {
    Router::new()
        .route("/wwn-rollbacks", get(list).post(mark))
        .route("/wwn-rollbacks/{lpar}/execute", post(execute))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lparmover::api::{MigrationRecord, WwnRollbackReason};
    use lparmover::model::{Fleet, fleet::DEMO_FLEET_TOML};

    fn hvm() -> HvmState {
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo").unwrap();
        let fb = fleet.blade("ch1-b1").unwrap().clone();
        let mut hvm = HvmState::new(fb.blade.clone());
        for req in &fb.lpars {
            hvm.define(req).unwrap();
        }
        hvm
    }

    fn one() -> LparNumber {
        LparNumber::new(1).unwrap()
    }

    fn request(job: &str, role: Role) -> MarkWwnRollback {
        MarkWwnRollback {
            job: job.into(),
            lpar: one(),
            role,
            peer: "ch1-b2".into(),
            reason: WwnRollbackReason::DestinationUnreachable,
        }
    }

    #[test]
    fn a_mark_refuses_live_moves_until_executed() {
        let mut hvm = hvm();
        hvm.refuse_live_move_while_marked().unwrap();
        hvm.activate(one()).unwrap();
        let mark = hvm
            .mark_wwn_rollback(&request("job-a", Role::Source), Utc::now())
            .unwrap();
        assert_eq!(mark.wwpns.len(), hvm.lpar(one()).unwrap().vfcs.len());
        // Idempotent: a second mark of the same LPAR keeps the first.
        let again = hvm
            .mark_wwn_rollback(&request("job-b", Role::Source), Utc::now())
            .unwrap();
        assert_eq!(again.job, "job-a");
        let err = hvm.refuse_live_move_while_marked().unwrap_err();
        assert_eq!(err.kind, Emg::MigrationWwnsInUse);
        assert!(
            err.detail
                .contains(&format!("lparmover rollback-wwn ch1-b1/{}", mark.lpar_name)),
            "{}",
            err.detail
        );
        let (done, logins) = hvm.execute_wwn_rollback(one()).unwrap();
        assert_eq!(done, mark);
        assert_eq!(
            logins, mark.wwpns,
            "a running LPAR logs in with its own WWPNs"
        );
        hvm.refuse_live_move_while_marked().unwrap();
        assert_eq!(
            hvm.execute_wwn_rollback(one()).unwrap_err().kind,
            Emg::LparNotFound
        );
    }

    #[test]
    fn a_resumed_destination_swaps_when_executed_and_a_move_under_way_is_refused() {
        let mut hvm = hvm();
        hvm.activate(one()).unwrap();
        hvm.mark_wwn_rollback(&request("job-d", Role::Destination), Utc::now())
            .unwrap();
        hvm.migrations.insert(
            "job-d".into(),
            MigrationRecord {
                role: Role::Destination,
                lpar: one(),
                phase: RecordPhase::Started,
                exchange: None,
            },
        );
        let before = hvm.clone();
        let err = hvm.execute_wwn_rollback(one()).unwrap_err();
        assert_eq!(err.kind, Emg::InvalidLparState);
        assert_eq!(hvm, before, "a refusal changes nothing");
        if let Some(r) = hvm.migrations.get_mut("job-d") {
            r.phase = RecordPhase::Resumed;
        }
        hvm.execute_wwn_rollback(one()).unwrap();
        assert!(hvm.migrations.is_empty(), "the rollback was the swap");
        assert!(hvm.wwn_rollbacks.is_empty());
    }

    #[test]
    fn a_swap_of_the_job_clears_its_marks_and_a_restore_keeps_them() {
        let mut hvm = hvm();
        hvm.mark_wwn_rollback(&request("job-s", Role::Destination), Utc::now())
            .unwrap();
        let doc = hvm.config_doc();
        hvm.restore(&doc).unwrap();
        assert_eq!(hvm.wwn_rollbacks.len(), 1, "restore keeps marks");
        assert!(hvm.clear_wwn_rollbacks_of("other").is_empty());
        assert_eq!(hvm.clear_wwn_rollbacks_of("job-s").len(), 1);
        assert!(hvm.wwn_rollbacks.is_empty());
        let (_, logins) = {
            hvm.mark_wwn_rollback(&request("job-t", Role::Source), Utc::now())
                .unwrap();
            hvm.execute_wwn_rollback(one()).unwrap()
        };
        assert!(logins.is_empty(), "a deactivated LPAR logs in with nothing");
    }

    #[test]
    fn marks_survive_the_state_file() {
        let mut hvm = hvm();
        hvm.mark_wwn_rollback(&request("job-p", Role::Source), Utc::now())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::StateDir::open(dir.path()).unwrap();
        store.save_state(&hvm).unwrap();
        let loaded = store.load_state().unwrap().unwrap();
        assert_eq!(loaded.wwn_rollbacks, hvm.wwn_rollbacks);
        // A state file from before marks existed still loads.
        let mut old = serde_json::to_value(&hvm).unwrap();
        old.as_object_mut().unwrap().remove("wwn_rollbacks");
        let old: HvmState = serde_json::from_value(old).unwrap();
        assert!(old.wwn_rollbacks.is_empty());
    }
}
