//! hvmsim: simulated blades and HVMs whose LPARs run real (KVM or software) guests.

pub mod guest;
