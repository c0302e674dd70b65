//! The same guest for QEMU: `hvmsim qemu-image` writes a RAM file and a multiboot kernel so that
//! `qemu-system-x86_64 -kernel KERNEL -object memory-backend-file,mem-path=RAM,share=on …` runs
//! the workload of our KVM guest on the memory content our guests start with.
//!
//! - **Memory**: the file is the guest image page for page as a blade's guest has it at
//!   activation ([`content::fill`], [`kvm::layout::write_boot_image`]). QEMU's `pc` machine
//!   maps RAM above 3 GiB at 4 GiB, exactly where [`SlotLayout`] puts it, so file offset = image
//!   offset for every size. QEMU's firmware writes a few low pages before the kernel runs; the
//!   content pages (from 1 MiB up, below the firmware's tables at the top of low memory) are ours.
//! - **Program**: `guest.S` (assembled into `guest.bin`, checked by a test) — the KVM program's
//!   write loop and heartbeat in 64-bit user mode, paced from the TSC instead of the quota port.
//! - **Parameters**: page [`PARAMS_GPA`], read once at boot.
//! - **Heartbeat**: vCPU 0's slot at [`HEARTBEAT_GPA`], as in [`layout`]; with the RAM file
//!   shared, whoever maps the file reads it from outside (the benchmark measures downtime so on
//!   both sides of a QEMU migration).
//!
//! One vCPU: bringing up application processors needs a real-mode trampoline the stub does not
//! have; the benchmark runs our LPAR with one vCPU too.

use std::fs::File;
use std::path::Path;

use lparmover::model::workload::ContentMix;

use super::layout::{self, HEARTBEAT_GPA, PAGE, SlotLayout, WorkingSet};
use super::memory::GuestMemory;
use super::{content, kvm, workload};

/// The multiboot kernel (see `guest.S`).
pub const KERNEL: &[u8] = include_bytes!("guest.bin");

/// Guest-physical address of the parameter page (a reserved page of [`layout`]).
pub const PARAMS_GPA: u64 = 0x9_1000;
/// First word of the parameter page.
pub const MAGIC: u64 = u64::from_le_bytes(*b"LPMQEMU1");
/// Word the guest sets to 1 once its workload runs (offset in the parameter page).
pub const STARTED_OFFSET: u64 = 0x48;
/// Heartbeats per second of the QEMU guest (the KVM guest's is at least this: 1 ms quantum).
pub const BATCHES_PER_SECOND: f64 = 1000.0;
/// Backlog a held-back guest catches up, as the KVM guest's pacer banks
/// ([`control::MAX_BATCH_TIME`](super::control::MAX_BATCH_TIME)).
pub const CATCH_UP_SECONDS: f64 = 0.25;

/// What the image holds and how its guest behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageSpec {
    /// Guest memory in bytes (a multiple of 2 MiB).
    pub memory_bytes: u64,
    /// Content and write-sequence seed (as an LPAR's workload seed).
    pub seed: u64,
    /// Content mix.
    pub mix: ContentMix,
    /// Working set, MiB.
    pub working_set_mib: u64,
    /// Dirty rate, MB/s (10^6 bytes).
    pub dirty_mbps: f64,
    /// TSC ticks per second of the host (the guest's TSC runs at the host's rate under KVM).
    pub tsc_hz: f64,
}

/// Why an image cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The spec is not a guest both backends can run.
    #[error("{0}")]
    Invalid(String),
    /// Writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The parameter words at [`PARAMS_GPA`], in order (see `guest.S`).
pub fn parameters(spec: &ImageSpec) -> Result<[u64; 9], ImageError> {
    layout::validate(spec.memory_bytes, 1).map_err(|e| ImageError::Invalid(e.to_string()))?;
    if !(spec.dirty_mbps.is_finite() && spec.dirty_mbps >= 0.0 && spec.dirty_mbps <= 100_000.0) {
        return Err(ImageError::Invalid(format!(
            "dirty rate {} MB/s: give 0 to 100000",
            spec.dirty_mbps
        )));
    }
    if !(spec.tsc_hz.is_finite() && spec.tsc_hz >= 1e8) {
        return Err(ImageError::Invalid(format!(
            "TSC rate {} Hz is not a TSC's; measure it (e.g. /proc/cpuinfo `tsc` or rdtsc over a second)",
            spec.tsc_hz
        )));
    }
    let slots = SlotLayout::new(spec.memory_bytes);
    let ws = WorkingSet::new(spec.memory_bytes, spec.working_set_mib);
    let writes_per_batch =
        spec.dirty_mbps * 1e6 / workload::BYTES_PER_WRITE as f64 / BATCHES_PER_SECOND;
    Ok([
        MAGIC,
        slots.gpa_end().div_ceil(1 << 30),
        ws.base_gpa(),
        ws.pages,
        workload::initial_state(spec.seed, 0),
        HEARTBEAT_GPA,
        (spec.tsc_hz / BATCHES_PER_SECOND).round() as u64,
        (writes_per_batch * 4_294_967_296.0).round() as u64,
        (spec.tsc_hz * CATCH_UP_SECONDS).round() as u64,
    ])
}

/// Writes the RAM file (created or truncated, `memory_bytes` long) and the kernel.
pub fn write(spec: &ImageSpec, ram: &Path, kernel: &Path) -> Result<(), ImageError> {
    let params = parameters(spec)?;
    let io = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| ImageError::Io { what, path, source }
    };
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(ram)
        .map_err(io("creating", ram))?;
    file.set_len(spec.memory_bytes).map_err(io("sizing", ram))?;
    let memory = GuestMemory::attach(&file, spec.memory_bytes).map_err(|e| ImageError::Io {
        what: "mapping",
        path: ram.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    content::fill(&memory, spec.seed, spec.mix);
    kvm::layout::write_boot_image(&memory, SlotLayout::new(spec.memory_bytes));
    for (i, word) in params.iter().enumerate() {
        memory.write_u64(PARAMS_GPA + 8 * i as u64, *word);
    }
    drop(memory);
    file.sync_all().map_err(io("syncing", ram))?;
    lparmover::fsutil::write_atomic(kernel, KERNEL).map_err(|e| ImageError::Io {
        what: "writing",
        path: kernel.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

/// Arguments of `hvmsim qemu-image`.
#[derive(clap::Args, Debug)]
pub struct QemuImageArgs {
    /// Guest memory in MiB (a multiple of 2).
    #[arg(long)]
    pub memory_mib: u64,
    /// Dirty rate, MB/s.
    #[arg(long, default_value_t = 10.0)]
    pub dirty_mbps: f64,
    /// Working set, MiB.
    #[arg(long, default_value_t = 256)]
    pub working_set_mib: u64,
    /// Content and workload seed.
    #[arg(long, default_value_t = 31)]
    pub seed: u64,
    /// Content mix, percent zero/text/pointer pages.
    #[arg(long, default_value = "40/30/30")]
    pub mix: String,
    /// TSC ticks per second (default: measured here over 200 ms).
    #[arg(long)]
    pub tsc_hz: Option<f64>,
    /// RAM file to write (put it on a tmpfs such as /dev/shm).
    #[arg(long)]
    pub ram: std::path::PathBuf,
    /// Kernel file to write (QEMU's `-kernel`).
    #[arg(long)]
    pub kernel: std::path::PathBuf,
}

/// Parses `Z/T/P`.
fn parse_mix(s: &str) -> Result<ContentMix, ImageError> {
    let parts: Vec<u8> = s
        .split('/')
        .map(|p| p.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ImageError::Invalid(format!("mix {s:?}: give three percentages like 40/30/30"))
        })?;
    match parts[..] {
        [z, t, p] => ContentMix::new(z, t, p).map_err(|e| ImageError::Invalid(e.0)),
        _ => Err(ImageError::Invalid(format!(
            "mix {s:?}: give three percentages like 40/30/30"
        ))),
    }
}

/// TSC ticks per second, measured against `CLOCK_MONOTONIC`.
pub fn measure_tsc_hz() -> f64 {
    let read = || {
        // SAFETY: RDTSC has no memory effects; every x86-64 CPU has it.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        (tsc, super::stats::monotonic_ns())
    };
    let (t0, n0) = read();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (t1, n1) = read();
    (t1.wrapping_sub(t0)) as f64 * 1e9 / (n1.saturating_sub(n0)).max(1) as f64
}

/// `hvmsim qemu-image`: prints the parameters it wrote.
pub fn run(args: &QemuImageArgs) -> Result<String, ImageError> {
    let spec = ImageSpec {
        memory_bytes: args.memory_mib.saturating_mul(1 << 20),
        seed: args.seed,
        mix: parse_mix(&args.mix)?,
        working_set_mib: args.working_set_mib,
        dirty_mbps: args.dirty_mbps,
        tsc_hz: args.tsc_hz.unwrap_or_else(measure_tsc_hz),
    };
    write(&spec, &args.ram, &args.kernel)?;
    Ok(format!(
        "qemu image: {} MiB, {} MB/s dirty into {} MiB, seed {}, TSC {:.0} Hz: ram {} kernel {} (heartbeat at {:#x}, parameters at {:#x})",
        args.memory_mib,
        args.dirty_mbps,
        args.working_set_mib,
        args.seed,
        spec.tsc_hz,
        args.ram.display(),
        args.kernel.display(),
        HEARTBEAT_GPA,
        PARAMS_GPA
    ))
}

/// Page index of the parameter page.
pub const PARAMS_PAGE: u64 = PARAMS_GPA / PAGE;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            memory_bytes: 64 << 20,
            seed: 31,
            mix: ContentMix::default(),
            working_set_mib: 16,
            dirty_mbps: 200.0,
            tsc_hz: 2.5e9,
        }
    }

    #[test]
    fn parameters_pace_the_configured_rate() {
        let p = parameters(&spec()).expect("valid");
        assert_eq!(p[0], MAGIC);
        assert_eq!(p[1], 1, "64 MiB needs one page directory");
        assert_eq!(p[2], layout::RESERVED_PAGES * PAGE);
        assert_eq!(p[3], (16 << 20) / PAGE);
        assert_eq!(p[6], 2_500_000);
        // 200 MB/s = 48828.125 pages/s = 48.828125 writes per 1 ms batch.
        let per_batch = p[7] as f64 / 4_294_967_296.0;
        assert!((per_batch - 48.828125).abs() < 1e-6, "{per_batch}");
        let big = parameters(&ImageSpec {
            memory_bytes: 4 << 30,
            ..spec()
        })
        .expect("valid");
        assert_eq!(
            big[1], 5,
            "4 GiB ends at 5 GiB guest-physical (hole below 4 GiB)"
        );
    }

    #[test]
    fn bad_specs_are_refused_with_what_to_do() {
        let e = parameters(&ImageSpec {
            memory_bytes: (64 << 20) + 4096,
            ..spec()
        })
        .expect_err("unaligned");
        assert!(e.to_string().contains("multiple of 2 MiB"), "{e}");
        let e = parameters(&ImageSpec {
            dirty_mbps: f64::NAN,
            ..spec()
        })
        .expect_err("nan");
        assert!(e.to_string().contains("dirty rate"), "{e}");
        assert!(parse_mix("40/30").is_err());
        assert!(parse_mix("50/30/30").is_err());
        assert_eq!(parse_mix("40/30/30").expect("ok"), ContentMix::default());
    }

    #[test]
    fn the_image_holds_our_content_and_the_parameters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ram, kernel) = (dir.path().join("ram"), dir.path().join("kernel"));
        write(&spec(), &ram, &kernel).expect("written");
        let bytes = std::fs::read(&ram).expect("read");
        assert_eq!(bytes.len() as u64, 64 << 20);
        let page = |p: u64| &bytes[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
        for p in [layout::RESERVED_PAGES, 5000, 16383] {
            assert_eq!(
                page(p),
                content::expected_page(31, ContentMix::default(), p)
            );
        }
        let word = |gpa: u64| {
            u64::from_le_bytes(bytes[gpa as usize..gpa as usize + 8].try_into().expect("8"))
        };
        assert_eq!(word(PARAMS_GPA), MAGIC);
        assert_eq!(word(PARAMS_GPA + STARTED_OFFSET), 0, "the guest sets it");
        assert_eq!(std::fs::read(&kernel).expect("kernel"), KERNEL);
        // Multiboot header with the a.out kludge, loaded at the KVM program's address.
        assert_eq!(&KERNEL[0..4], &0x1BAD_B002u32.to_le_bytes());
        assert_eq!(&KERNEL[16..20], &(layout::CODE_GPA as u32).to_le_bytes());
    }

    /// `guest.bin` is what `guest.S` assembles to (GNU as, from binutils, which gcc brings).
    #[test]
    fn guest_binary_matches_its_source() {
        let have_as = std::process::Command::new("as")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_as {
            lparmover::testenv::unavailable(
                "guest_binary_matches_its_source",
                lparmover::testenv::Need::Assembler,
                &"`as --version` did not run",
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/guest/qemu/guest.S");
        let obj = dir.path().join("guest.o");
        let bin = dir.path().join("guest.bin");
        let ok = std::process::Command::new("as")
            .arg("--64")
            .arg(src)
            .arg("-o")
            .arg(&obj)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "as failed on {src}");
        let ok = std::process::Command::new("objcopy")
            .args(["-O", "binary"])
            .arg(&obj)
            .arg(&bin)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "objcopy failed");
        assert_eq!(
            std::fs::read(&bin).expect("assembled"),
            KERNEL,
            "guest.bin is stale: run `as --64 guest.S -o guest.o && objcopy -O binary guest.o guest.bin` in hvmsim/src/guest/qemu"
        );
    }
}
