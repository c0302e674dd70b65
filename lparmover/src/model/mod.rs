//! The domain model: chassis, blades, HVMs, LPARs and their identities.

pub mod workload;
