//! Operation deterrence (the seed's Table 5-2): what an operator may do to an LPAR or to the HVM
//! while a migration is in progress or an LPAR requires recovery.
//!
//! | | target LPAR | other LPARs on the HVM | the HVM |
//! | --- | --- | --- | --- |
//! | migration in progress | refused (¹) | allowed | refused |
//! | an LPAR requires recovery | refused, except deactivate (²) | allowed | refused, except save (³) |
//!
//! ¹ "The specified LPAR is busy, please wait until another migration is completed." (the seed
//!   lets SC/BSM deactivate it, cancelling the move; this HVM's API does not).
//! ² an LPAR requiring recovery can be deactivated with any console or tool; here that clears the
//!   state to Deactivated when no move still claims the LPAR (the same as recovering it).
//! ³ saving the HVM configuration stays possible (shutting down and rebooting the HVM are the
//!   process's own business here).
//!
//! One row the seed's table does not have: an LPAR with WWNs pending rollback runs on and can be
//! activated or deactivated, but is not deleted before its WWNs are rolled back (the mark would
//! lose its LPAR).
//!
//! [`deter`] is a pure function of the operation, the target's [`Standing`] and the HVM's
//! [`HvmCondition`]; [`HvmState::deter`] derives those from the state. The blade's activate,
//! deactivate, shutdown, delete, define, save and restore handlers call it before anything else
//! (after the lease check); the HVM's own operations (booting after a restart, a guest shutting
//! itself down, the migration primitives) are not operator operations and do not.

use lparmover::api::Role;
use lparmover::emg::{Emg, EmgError};
use lparmover::model::{LparNumber, LparStatus};

use crate::hvm::HvmState;

/// An operator operation on an LPAR or on the HVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Activate an LPAR.
    Activate,
    /// Deactivate an LPAR.
    Deactivate,
    /// Ask an LPAR's guest OS to shut down.
    Shutdown,
    /// Delete an LPAR.
    Delete,
    /// Define a new LPAR (one of the "other LPARs" of the table).
    Define,
    /// Save the HVM configuration.
    SaveConfig,
    /// Restore the HVM configuration from a backup.
    RestoreConfig,
}

impl Operation {
    fn verb(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::Shutdown => "shut down",
            Self::Delete => "delete",
            Self::Define => "define",
            Self::SaveConfig => "save the configuration of",
            Self::RestoreConfig => "restore the configuration of",
        }
    }
}

/// Where the operation's LPAR stands (the table's columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The LPAR of a migration in progress, in this role (a destination stays so until its
    /// vFCs swapped to the WWPNs).
    Migrating(Role),
    /// An LPAR requiring recovery.
    RequiresRecovery,
    /// An LPAR with WWNs pending rollback.
    WwnRollbackPending,
    /// Any other LPAR.
    Other,
}

/// The table's rows, as they apply to the whole HVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmCondition {
    /// Some LPAR of this HVM takes part in a migration.
    pub migration_in_progress: bool,
    /// Some LPAR of this HVM requires recovery.
    pub lpars_requiring_recovery: bool,
}

/// Whether `op` is allowed: `standing` is the target LPAR's (ignored for HVM-level operations),
/// `hvm` the condition of the HVM. A refusal carries the seed's message.
pub fn deter(op: Operation, standing: Standing, hvm: HvmCondition) -> Result<(), EmgError> {
    use Operation::*;
    let refuse = |kind: Emg, why: &str| {
        Err(EmgError::new(
            kind,
            format!("cannot {} {why} (operation deterrence)", op.verb()),
        ))
    };
    match op {
        Activate | Deactivate | Shutdown | Delete => match (standing, op) {
            (Standing::Migrating(role), _) => refuse(
                Emg::LparBusy,
                &format!(
                    "an LPAR that is being migrated (this HVM is its {})",
                    match role {
                        Role::Source => "source",
                        Role::Destination => "destination",
                    }
                ),
            ),
            (Standing::RequiresRecovery, Deactivate) => Ok(()),
            (Standing::RequiresRecovery, _) => refuse(
                Emg::LparCorrupted,
                "an LPAR requiring recovery; run `lparmover recover HVM/LPAR`",
            ),
            (Standing::WwnRollbackPending, Delete) => refuse(
                Emg::InvalidLparState,
                "an LPAR with WWNs pending rollback; run `lparmover rollback-wwn HVM/LPAR` first",
            ),
            (Standing::WwnRollbackPending | Standing::Other, _) => Ok(()),
        },
        Define => Ok(()),
        SaveConfig | RestoreConfig if hvm.migration_in_progress => refuse(
            Emg::BladeBusyMigration,
            "an HVM while one of its LPARs is being migrated",
        ),
        SaveConfig => Ok(()),
        RestoreConfig if hvm.lpars_requiring_recovery => refuse(
            Emg::LparCorrupted,
            "an HVM with LPARs requiring recovery; run `lparmover recover` first",
        ),
        RestoreConfig => Ok(()),
    }
}

impl HvmState {
    /// Where LPAR `number` stands (an unknown LPAR is "other": the operation reports it).
    pub fn standing(&self, number: LparNumber) -> Standing {
        let Some(lpar) = self.lpars.get(&number) else {
            return Standing::Other;
        };
        // A job the blades settled only waits for the manager's acknowledgement.
        let record = self
            .migrations
            .values()
            .find(|r| r.lpar == number && !r.phase.is_settled());
        if lpar.status == LparStatus::RequiresRecovery {
            Standing::RequiresRecovery
        } else if let Some(record) = record {
            Standing::Migrating(record.role)
        } else if lpar.status == LparStatus::Migrating {
            Standing::Migrating(Role::Source)
        } else if self.wwn_rollbacks.contains_key(&number) {
            Standing::WwnRollbackPending
        } else {
            Standing::Other
        }
    }

    /// The HVM's condition.
    pub fn condition(&self) -> HvmCondition {
        HvmCondition {
            migration_in_progress: self.migrations.values().any(|r| !r.phase.is_settled())
                || self
                    .lpars
                    .values()
                    .any(|l| l.status == LparStatus::Migrating),
            lpars_requiring_recovery: self
                .lpars
                .values()
                .any(|l| l.status == LparStatus::RequiresRecovery),
        }
    }

    /// [`deter`] for `op` on LPAR `number` (`None`: an HVM-level operation).
    pub fn deter(&self, op: Operation, number: Option<LparNumber>) -> Result<(), EmgError> {
        let standing = number.map_or(Standing::Other, |n| self.standing(n));
        deter(op, standing, self.condition()).map_err(|mut e| {
            if let Some(n) = number
                && let Some(lpar) = self.lpars.get(&n)
            {
                e.detail = format!(
                    "LPAR {} ({}) on {}: {}",
                    n, lpar.name, self.blade.name, e.detail
                );
            } else {
                e.detail = format!("HVM {}: {}", self.blade.name, e.detail);
            }
            e
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use Operation::*;

    const OK: Option<Emg> = None;
    const BUSY: Option<Emg> = Some(Emg::LparBusy);
    const CORRUPT: Option<Emg> = Some(Emg::LparCorrupted);
    const BLADE_BUSY: Option<Emg> = Some(Emg::BladeBusyMigration);
    const STATE: Option<Emg> = Some(Emg::InvalidLparState);

    const QUIET: HvmCondition = HvmCondition {
        migration_in_progress: false,
        lpars_requiring_recovery: false,
    };
    const MIGRATING: HvmCondition = HvmCondition {
        migration_in_progress: true,
        lpars_requiring_recovery: false,
    };
    const RECOVERY: HvmCondition = HvmCondition {
        migration_in_progress: false,
        lpars_requiring_recovery: true,
    };

    fn verdict(op: Operation, standing: Standing, hvm: HvmCondition) -> Option<Emg> {
        deter(op, standing, hvm).err().map(|e| e.kind)
    }

    /// Table 5-2, one line per (standing, HVM condition): the verdict of every LPAR operation.
    #[test]
    fn lpar_operations_follow_table_5_2() {
        let ops = [Activate, Deactivate, Shutdown, Delete];
        #[rustfmt::skip]
        let table: &[(Standing, HvmCondition, [Option<Emg>; 4])] = &[
            //                                         activate deactivate shutdown delete
            (Standing::Migrating(Role::Source),      MIGRATING, [BUSY, BUSY, BUSY, BUSY]),
            (Standing::Migrating(Role::Destination), MIGRATING, [BUSY, BUSY, BUSY, BUSY]),
            (Standing::Other,                        MIGRATING, [OK, OK, OK, OK]),
            (Standing::RequiresRecovery,             RECOVERY,  [CORRUPT, OK, CORRUPT, CORRUPT]),
            (Standing::Other,                        RECOVERY,  [OK, OK, OK, OK]),
            (Standing::WwnRollbackPending,           QUIET,     [OK, OK, OK, STATE]),
            (Standing::Other,                        QUIET,     [OK, OK, OK, OK]),
        ];
        for (standing, hvm, expected) in table {
            for (op, want) in ops.iter().zip(expected) {
                assert_eq!(
                    verdict(*op, *standing, *hvm),
                    *want,
                    "{op:?} on {standing:?} with {hvm:?}"
                );
            }
        }
    }

    /// Table 5-2's HVM column (note 3: saving stays possible while recovery is needed).
    #[test]
    fn hvm_operations_follow_table_5_2() {
        #[rustfmt::skip]
        let table: &[(HvmCondition, [Option<Emg>; 3])] = &[
            //            save        restore     define (an "other LPAR")
            (MIGRATING, [BLADE_BUSY, BLADE_BUSY, OK]),
            (RECOVERY,  [OK,         CORRUPT,    OK]),
            (QUIET,     [OK,         OK,         OK]),
        ];
        for (hvm, expected) in table {
            for (op, want) in [SaveConfig, RestoreConfig, Define].iter().zip(expected) {
                assert_eq!(
                    verdict(*op, Standing::Other, *hvm),
                    *want,
                    "{op:?} with {hvm:?}"
                );
            }
        }
    }

    #[test]
    fn refusals_carry_the_seed_messages() {
        let busy = deter(Activate, Standing::Migrating(Role::Source), MIGRATING).unwrap_err();
        assert_eq!(
            busy.kind.entry().message,
            "The specified LPAR is busy, please wait until another migration is completed."
        );
        assert!(busy.detail.contains("source"), "{}", busy.detail);
        let corrupt = deter(Activate, Standing::RequiresRecovery, RECOVERY).unwrap_err();
        assert_eq!(
            corrupt.kind.entry().message,
            "The specified LPAR has corrupted in an LPAR migration, please try to recover the LPAR."
        );
    }

    #[test]
    fn standing_and_condition_come_from_the_state() {
        use lparmover::api::{MigrationRecord, RecordPhase};
        use lparmover::model::{Fleet, fleet::DEMO_FLEET_TOML};
        let fleet = Fleet::parse(DEMO_FLEET_TOML, "demo").unwrap();
        let fb = fleet.blade("ch1-b1").unwrap().clone();
        let mut hvm = HvmState::new(fb.blade.clone());
        for req in &fb.lpars {
            hvm.define(req).unwrap();
        }
        let (one, two) = (LparNumber::new(1).unwrap(), LparNumber::new(2).unwrap());
        assert_eq!(hvm.standing(one), Standing::Other);
        assert_eq!(hvm.condition(), QUIET);
        hvm.set_status(one, LparStatus::Migrating).unwrap();
        hvm.migrations.insert(
            "j".into(),
            MigrationRecord {
                role: Role::Source,
                lpar: one,
                phase: RecordPhase::Started,
                exchange: None,
            },
        );
        assert_eq!(hvm.standing(one), Standing::Migrating(Role::Source));
        assert_eq!(hvm.standing(two), Standing::Other);
        assert!(hvm.condition().migration_in_progress);
        assert_eq!(
            hvm.deter(Activate, Some(one)).unwrap_err().kind,
            Emg::LparBusy
        );
        hvm.deter(Activate, Some(two)).unwrap();
        assert_eq!(
            hvm.deter(SaveConfig, None).unwrap_err().kind,
            Emg::BladeBusyMigration
        );
        hvm.set_status(one, LparStatus::RequiresRecovery).unwrap();
        assert_eq!(hvm.standing(one), Standing::RequiresRecovery);
        hvm.deter(Deactivate, Some(one)).unwrap();
    }
}
