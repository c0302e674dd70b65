//! What the guest of an LPAR does while it runs: memory content and how fast it dirties memory.
//!
//! These knobs sit in the fleet file per LPAR and in the management API; hvmsim's guests obey them.

use serde::{Deserialize, Serialize};

/// Share of each kind of page in freshly activated guest memory, in percent (sums to 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ContentMixRepr", into = "ContentMixRepr")]
pub struct ContentMix {
    zero: u8,
    text: u8,
    pointer: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentMixRepr {
    zero: u8,
    text: u8,
    pointer: u8,
}

impl ContentMix {
    /// A mix of `zero` % zero pages, `text` % text-like and `pointer` % pointer-like pages.
    pub fn new(zero: u8, text: u8, pointer: u8) -> Result<Self, InvalidWorkload> {
        let sum = u32::from(zero) + u32::from(text) + u32::from(pointer);
        if sum != 100 {
            return Err(InvalidWorkload(format!(
                "content mix {zero}/{text}/{pointer} adds up to {sum} %, not 100 %; adjust the three shares"
            )));
        }
        Ok(Self {
            zero,
            text,
            pointer,
        })
    }
    /// Percent of zero pages.
    pub fn zero(&self) -> u8 {
        self.zero
    }
    /// Percent of text-like pages.
    pub fn text(&self) -> u8 {
        self.text
    }
    /// Percent of pointer-like pages.
    pub fn pointer(&self) -> u8 {
        self.pointer
    }
}

impl Default for ContentMix {
    /// About what a running server's memory holds: 40 % zero, 30 % text, 30 % pointers.
    fn default() -> Self {
        Self {
            zero: 40,
            text: 30,
            pointer: 30,
        }
    }
}

impl TryFrom<ContentMixRepr> for ContentMix {
    type Error = InvalidWorkload;
    fn try_from(r: ContentMixRepr) -> Result<Self, Self::Error> {
        Self::new(r.zero, r.text, r.pointer)
    }
}

impl From<ContentMix> for ContentMixRepr {
    fn from(m: ContentMix) -> Self {
        Self {
            zero: m.zero,
            text: m.text,
            pointer: m.pointer,
        }
    }
}

/// A workload setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workload: {0}")]
pub struct InvalidWorkload(pub String);

/// How the guest OS answers a shutdown request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "answer")]
pub enum ShutdownBehaviour {
    /// Shuts down this many milliseconds after the request.
    Comply { after_ms: u64 },
    /// Ignores the request (to exercise "Shutdown waiting").
    Refuse,
}

impl Default for ShutdownBehaviour {
    fn default() -> Self {
        Self::Comply { after_ms: 500 }
    }
}

/// Which guest implementation runs an activated LPAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestBackend {
    /// KVM when `/dev/kvm` can be opened, else the software guest.
    #[default]
    Auto,
    /// A KVM virtual machine (rust-vmm).
    Kvm,
    /// Threads writing into an anonymous mapping with a software dirty bitmap.
    Soft,
}

/// The workload knobs of one LPAR's guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Target rate at which the guest dirties memory, in MB/s (10^6 bytes). 0 = idle.
    pub dirty_rate_mbps: f64,
    /// Size of the working set the guest writes into, in MiB (clamped to guest memory).
    pub working_set_mib: u64,
    /// Content of memory at activation.
    pub mix: ContentMix,
    /// Seed of the deterministic content and write sequence.
    pub seed: u64,
    /// Answer to a guest OS shutdown request.
    pub shutdown: ShutdownBehaviour,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            dirty_rate_mbps: 10.0,
            working_set_mib: 256,
            mix: ContentMix::default(),
            seed: 1,
            shutdown: ShutdownBehaviour::default(),
        }
    }
}

impl Workload {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), InvalidWorkload> {
        if !self.dirty_rate_mbps.is_finite() || self.dirty_rate_mbps < 0.0 {
            return Err(InvalidWorkload(format!(
                "dirty rate {} MB/s must be a finite number ≥ 0",
                self.dirty_rate_mbps
            )));
        }
        if self.dirty_rate_mbps > 100_000.0 {
            return Err(InvalidWorkload(format!(
                "dirty rate {} MB/s is above 100000 MB/s, more than memory can take; lower it",
                self.dirty_rate_mbps
            )));
        }
        if self.working_set_mib == 0 {
            return Err(InvalidWorkload("working set must be at least 1 MiB".into()));
        }
        Ok(())
    }
}

/// A change of some workload knobs (`PUT /v1/lpars/{n}/workload`): the knobs named change, the
/// others keep the LPAR's current value, so a request that names only the dirty rate never
/// resets the working set or the seed to their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadPatch {
    /// New dirty rate, MB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_rate_mbps: Option<f64>,
    /// New working set, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set_mib: Option<u64>,
    /// New content mix (used at the next activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<ContentMix>,
    /// New seed (used at the next activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// New answer to a shutdown request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownBehaviour>,
}

impl WorkloadPatch {
    /// `current` with the named knobs changed.
    pub fn apply(&self, current: &Workload) -> Workload {
        Workload {
            dirty_rate_mbps: self.dirty_rate_mbps.unwrap_or(current.dirty_rate_mbps),
            working_set_mib: self.working_set_mib.unwrap_or(current.working_set_mib),
            mix: self.mix.unwrap_or(current.mix),
            seed: self.seed.unwrap_or(current.seed),
            shutdown: self.shutdown.unwrap_or(current.shutdown),
        }
    }
}

impl From<Workload> for WorkloadPatch {
    /// Every knob named: the whole workload replaced.
    fn from(w: Workload) -> Self {
        Self {
            dirty_rate_mbps: Some(w.dirty_rate_mbps),
            working_set_mib: Some(w.working_set_mib),
            mix: Some(w.mix),
            seed: Some(w.seed),
            shutdown: Some(w.shutdown),
        }
    }
}

/// Everything needed to start a guest: size, vCPUs, workload, backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// Guest memory in bytes (a multiple of 2 MiB).
    pub memory_bytes: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// What the guest does.
    pub workload: Workload,
    /// Which implementation to use.
    pub backend: GuestBackend,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_must_add_to_100() {
        assert!(ContentMix::new(40, 30, 30).is_ok());
        let err = ContentMix::new(50, 30, 30).expect_err("must fail");
        assert!(err.0.contains("110"), "{err}");
    }

    #[test]
    fn a_patch_changes_only_the_knobs_it_names() {
        let current = Workload {
            dirty_rate_mbps: 5.0,
            working_set_mib: 64,
            seed: 9,
            ..Workload::default()
        };
        let patch: WorkloadPatch = serde_json::from_str(r#"{"dirty_rate_mbps": 50}"#).unwrap();
        let next = patch.apply(&current);
        assert_eq!(next.dirty_rate_mbps, 50.0);
        assert_eq!((next.working_set_mib, next.seed), (64, 9));
        assert_eq!(
            WorkloadPatch::from(current.clone()).apply(&Workload::default()),
            current
        );
        let misspelled = serde_json::from_str::<WorkloadPatch>(r#"{"dirty_rate": 50}"#);
        assert!(
            misspelled
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn workload_rejects_negative_rate() {
        let w = Workload {
            dirty_rate_mbps: -1.0,
            ..Workload::default()
        };
        assert!(w.validate().is_err());
    }

    #[test]
    fn workload_toml_round_trip() {
        let w = Workload::default();
        let text = toml::to_string(&w).expect("serialize");
        let back: Workload = toml::from_str(&text).expect("parse");
        assert_eq!(w, back);
    }
}
