//! Lock leases held by the HVM: one operation at a time per LPAR, or per blade.
//!
//! A lease on the blade conflicts with every other lease; a lease on an LPAR conflicts with the
//! blade lease and with leases on the same LPAR. Leases run out unless renewed, so a manager
//! that died does not hold anything for long.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use lparmover::api::{Lease, LockRequest, LockTarget};
use lparmover::emg::{Emg, EmgError};
use rand::RngCore;

/// Longest lease one request may take.
pub const MAX_TTL_SECS: u64 = 3600;

/// The leases of one HVM.
#[derive(Debug, Default)]
pub struct LockTable {
    leases: HashMap<String, (Lease, u64)>,
}

fn conflicts(a: LockTarget, b: LockTarget) -> bool {
    matches!((a, b), (LockTarget::Blade, _) | (_, LockTarget::Blade)) || a == b
}

fn busy(lease: &Lease) -> EmgError {
    let kind = match lease.target {
        // A manager's migration job holds the blade: "wait until another migration is completed".
        LockTarget::Blade if lparmover::jobs::is_job_id(&lease.purpose) => Emg::BladeBusyMigration,
        LockTarget::Blade => Emg::BladeBusyOperation,
        LockTarget::Lpar(_) => Emg::LparBusy,
    };
    EmgError::new(
        kind,
        format!(
            "held by {} for {} until {}",
            lease.owner,
            lease.purpose,
            lease.expires_at.format("%H:%M:%S")
        ),
    )
}

impl LockTable {
    fn expire(&mut self, now: DateTime<Utc>) {
        self.leases.retain(|_, (lease, _)| lease.expires_at > now);
    }

    /// Grants a lease unless a conflicting one is held.
    pub fn acquire(
        &mut self,
        request: &LockRequest,
        now: DateTime<Utc>,
    ) -> Result<Lease, EmgError> {
        if request.ttl_secs == 0 || request.ttl_secs > MAX_TTL_SECS {
            return Err(EmgError::new(
                Emg::InvalidRequest,
                format!(
                    "lease time ttl_secs = {} s is out of range: give 1 to {MAX_TTL_SECS} s",
                    request.ttl_secs
                ),
            ));
        }
        if request.owner.trim().is_empty() {
            return Err(EmgError::new(Emg::InvalidRequest, "a lock needs an owner"));
        }
        self.expire(now);
        if let Some((held, _)) = self
            .leases
            .values()
            .find(|(l, _)| conflicts(l.target, request.target))
        {
            return Err(busy(held));
        }
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let lease = Lease {
            id: hex::encode(raw),
            target: request.target,
            owner: request.owner.clone(),
            purpose: request.purpose.clone(),
            expires_at: now + Duration::seconds(i64::try_from(request.ttl_secs).unwrap_or(60)),
        };
        self.leases
            .insert(lease.id.clone(), (lease.clone(), request.ttl_secs));
        Ok(lease)
    }

    /// Extends a lease by its TTL.
    pub fn renew(&mut self, id: &str, now: DateTime<Utc>) -> Result<Lease, EmgError> {
        self.expire(now);
        let (lease, ttl) = self
            .leases
            .get_mut(id)
            .ok_or_else(|| EmgError::new(Emg::LeaseNotHeld, format!("lease {id}")))?;
        lease.expires_at = now + Duration::seconds(i64::try_from(*ttl).unwrap_or(60));
        Ok(lease.clone())
    }

    /// Releases a lease.
    pub fn release(&mut self, id: &str) -> Result<(), EmgError> {
        self.leases
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| EmgError::new(Emg::LeaseNotHeld, format!("lease {id}")))
    }

    /// Checks that an operation on `target` may run: no conflicting lease, or the caller presents
    /// it.
    pub fn check(
        &mut self,
        target: LockTarget,
        presented: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), EmgError> {
        self.expire(now);
        match self
            .leases
            .values()
            .find(|(l, _)| conflicts(l.target, target) && Some(l.id.as_str()) != presented)
        {
            Some((held, _)) => Err(busy(held)),
            None => Ok(()),
        }
    }

    /// Every live lease.
    pub fn list(&mut self, now: DateTime<Utc>) -> Vec<Lease> {
        self.expire(now);
        let mut all: Vec<Lease> = self.leases.values().map(|(l, _)| l.clone()).collect();
        all.sort_by_key(|l| l.expires_at);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lparmover::model::LparNumber;

    fn req(target: LockTarget, owner: &str) -> LockRequest {
        LockRequest {
            target,
            owner: owner.into(),
            purpose: "test".into(),
            ttl_secs: 30,
        }
    }

    #[test]
    fn a_blade_held_by_a_migration_job_says_so() {
        let now = Utc::now();
        let mut t = LockTable::default();
        let job = LockRequest {
            purpose: lparmover::jobs::new_job_id(),
            ..req(LockTarget::Blade, "manager-a")
        };
        t.acquire(&job, now).unwrap();
        let err = t.acquire(&req(LockTarget::Blade, "b"), now).unwrap_err();
        assert_eq!(err.kind, Emg::BladeBusyMigration);
        let mut t = LockTable::default();
        t.acquire(&req(LockTarget::Blade, "a"), now).unwrap();
        let err = t.acquire(&req(LockTarget::Blade, "b"), now).unwrap_err();
        assert_eq!(err.kind, Emg::BladeBusyOperation);
    }

    #[test]
    fn blade_lease_blocks_lpar_and_vice_versa() {
        let now = Utc::now();
        let mut t = LockTable::default();
        let one = LockTarget::Lpar(LparNumber::new(1).unwrap());
        let two = LockTarget::Lpar(LparNumber::new(2).unwrap());
        let lease = t.acquire(&req(one, "a"), now).unwrap();
        assert_eq!(
            t.acquire(&req(one, "b"), now).unwrap_err().kind,
            Emg::LparBusy
        );
        assert!(t.acquire(&req(two, "b"), now).is_ok());
        assert_eq!(
            t.acquire(&req(LockTarget::Blade, "c"), now)
                .unwrap_err()
                .kind,
            Emg::LparBusy
        );
        assert!(t.check(one, Some(&lease.id), now).is_ok());
        assert!(t.check(one, None, now).is_err());
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let now = Utc::now();
        let mut t = LockTable::default();
        let lease = t.acquire(&req(LockTarget::Blade, "a"), now).unwrap();
        let later = now + Duration::seconds(20);
        t.renew(&lease.id, later).unwrap();
        let much_later = later + Duration::seconds(31);
        assert!(t.acquire(&req(LockTarget::Blade, "b"), much_later).is_ok());
        assert_eq!(
            t.renew(&lease.id, much_later).unwrap_err().kind,
            Emg::LeaseNotHeld
        );
    }
}
