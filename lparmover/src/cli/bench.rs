//! `lparmover bench live`: the live-move benchmark over loopback and shaped veth links.
//!
//! Shaped links need network namespaces (root). The parent creates a
//! [`lparmover::bench::netns::NetnsPair`] per shaped case, probes it, and re-executes itself
//! inside namespace A as the hidden `lparmover bench worker SPEC`, which starts the blades,
//! drives the moves and prints its result as one JSON line. See `lparmover::bench`.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use lparmover::bench::hugepages::HugePagePool;
use lparmover::bench::netns::{NetnsPair, Side};
use lparmover::bench::{CaseEnv, CaseResult, CaseSpec, Link, render, run_case, summarize};

/// `bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Move an LPAR back and forth between two real blades and report medians and targets.
    Live(LiveArgs),
    /// Race our live move against QEMU's on the same guest, memory and link (root: network
    /// namespaces, tc, and QEMU, which it installs when missing).
    VsQemu(super::vsqemu::VsQemuArgs),
    /// Rehearse every move just before it runs and set the rehearsal's predicted total time
    /// and suspension beside the move's own (the target: within ±25 %).
    Predict(PredictArgs),
    /// Internal: run one case in the current network namespace and print it as JSON.
    #[command(hide = true)]
    Worker {
        /// The case and its environment, JSON.
        spec: String,
    },
}

/// Which links to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkChoice {
    /// Host loopback.
    Loopback,
    /// veth with `tbf rate 1gbit`.
    #[value(name = "1gbit")]
    Gbit1,
    /// veth with `tbf rate 10gbit`.
    #[value(name = "10gbit")]
    Gbit10,
    /// All three, plus the convergence case.
    All,
}

impl LinkChoice {
    /// The links the choice measures.
    fn links(self) -> &'static [Link] {
        match self {
            Self::Loopback => &[Link::Loopback],
            Self::Gbit1 => &[Link::Gbit1],
            Self::Gbit10 => &[Link::Gbit10],
            Self::All => &[Link::Loopback, Link::Gbit1, Link::Gbit10],
        }
    }
}

/// Options of `bench live`.
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// LPAR memory (e.g. 4GiB, 512MiB).
    #[arg(long, default_value = "4GiB", value_parser = parse_size_mib)]
    pub size: u64,
    /// Guest dirty rate, MB/s.
    #[arg(long, default_value_t = 10.0)]
    pub dirty: f64,
    /// Moves per link (alternating directions).
    #[arg(long, default_value_t = 10)]
    pub reps: u32,
    /// Link(s) to measure.
    #[arg(long, value_enum, default_value = "all")]
    pub link: LinkChoice,
    /// Dirty rate of the convergence case on 1 Gbit/s (run with `--link 1gbit` or `all`), MB/s.
    #[arg(long, default_value_t = 200.0)]
    pub converge_dirty: f64,
    /// Moves of the convergence case (default: min(reps, 3)).
    #[arg(long)]
    pub converge_reps: Option<u32>,
    /// Skip the convergence case.
    #[arg(long)]
    pub no_converge: bool,
    /// Back guest memory with memory the host already holds: reserve and touch a huge page
    /// pool for source and destination guest before the first move (root; restored after),
    /// or, where the pool cannot be had, touch the LPAR's size right before each move. On a VM
    /// host that backs memory on first touch this measures the move, not the host.
    #[arg(long)]
    pub pretouch: bool,
    /// Skip the TCP probe of shaped links.
    #[arg(long)]
    pub no_probe: bool,
    /// Keep blade state and logs here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a target is missed.
    #[arg(long)]
    pub strict: bool,
}

/// Options of `bench predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// LPAR memory of every case (e.g. 1GiB, 512MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size_mib)]
    pub size: u64,
    /// Guest dirty rates to run, MB/s (one case per rate and link).
    #[arg(long, value_delimiter = ',', default_value = "0,20")]
    pub dirty: Vec<f64>,
    /// Rehearsed moves per case (alternating directions).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Link(s) to measure (`all`: loopback, 1gbit and 10gbit; shaped links need root).
    #[arg(long, value_enum, default_value = "loopback")]
    pub link: LinkChoice,
    /// Keep blade state and logs here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a case's prediction is off by more than 25 %.
    #[arg(long)]
    pub strict: bool,
}

/// `4GiB`, `512MiB`, `1G`, `256M` or a plain number of MiB.
pub(crate) fn parse_size_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4GiB or 512MiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mib" | "mb" => 1.0,
        "g" | "gib" | "gb" => 1024.0,
        _ => return Err(format!("unknown unit in {s:?}; use MiB or GiB")),
    };
    let mib = (value * factor).round();
    if !(16.0..=1024.0 * 1024.0).contains(&mib) {
        return Err(format!("{s:?}: size must be between 16 MiB and 1 TiB"));
    }
    Ok(mib as u64)
}

fn cases(args: &LiveArgs) -> Vec<CaseSpec> {
    let links = args.link.links();
    let mut out: Vec<CaseSpec> = links
        .iter()
        .map(|&link| CaseSpec {
            label: link.name().into(),
            link,
            memory_mib: args.size,
            dirty_mbps: args.dirty,
            reps: args.reps,
            convergence: false,
            vcpus: None,
            pretouch: args.pretouch,
            rehearse: false,
        })
        .collect();
    if links.contains(&Link::Gbit1) && !args.no_converge && args.converge_dirty > args.dirty {
        out.push(CaseSpec {
            label: format!("1gbit dirty {}", args.converge_dirty),
            link: Link::Gbit1,
            memory_mib: args.size,
            dirty_mbps: args.converge_dirty,
            reps: args.converge_reps.unwrap_or(args.reps.min(3)),
            convergence: true,
            vcpus: None,
            pretouch: args.pretouch,
            rehearse: false,
        });
    }
    out
}

/// `dir` when the operator gave one, else a temporary directory (removed when the returned
/// guard drops).
pub(crate) fn workdir_or_temp(
    dir: Option<&PathBuf>,
    prefix: &str,
) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .context("cannot create a temporary directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    })
}

/// Runs `bench …`.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Live(args) => live(args).await,
        BenchCommand::VsQemu(args) => super::vsqemu::run(args).await,
        BenchCommand::Predict(args) => predict(args).await,
        BenchCommand::Worker { spec } => {
            let (spec, env): (CaseSpec, CaseEnv) =
                serde_json::from_str(&spec).context("bench worker: bad spec")?;
            let result = run_case(&spec, &env).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn live(args: LiveArgs) -> anyhow::Result<ExitCode> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let hvmsim = lparmover::ops::fleetproc::find_hvmsim()?;
    let (workdir, _temp) = workdir_or_temp(args.workdir.as_ref(), "lparmover-bench-")?;
    let mut cases = cases(&args);
    if cases.iter().any(|c| c.link != Link::Loopback) {
        lparmover::bench::netns::preflight()
            .context("shaped links (--link 1gbit|10gbit|all) need network namespaces")?;
    }
    // Source and destination guest, plus room for a VM process still exiting.
    let _pool = if args.pretouch {
        let pool = reserve_pool((2 * args.size + 256) << 20);
        if pool.is_some() {
            // The pool already holds touched memory; touching more before each move would only
            // compete with it.
            cases.iter_mut().for_each(|c| c.pretouch = false);
        }
        pool
    } else {
        None
    };
    interruptible(run_cases(&args, &cases, &hvmsim, &workdir)).await
}

/// Runs `cases` one after the other, shaped ones in a fresh pair of network namespaces.
async fn run_all(
    cases: &[CaseSpec],
    hvmsim: &std::path::Path,
    workdir: &std::path::Path,
    probe: bool,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    for (i, spec) in cases.iter().enumerate() {
        let dir = workdir.join(format!("{i}-{}", spec.label.replace(' ', "-")));
        let result = if spec.link.in_netns() {
            let pair = NetnsPair::create(spec.link.rate_bits())
                .context("cannot set up the shaped link")?;
            let result = netns_case(spec, &pair, hvmsim, dir, probe).await?;
            drop(pair);
            result
        } else {
            let env = CaseEnv {
                hvmsim: hvmsim.to_owned(),
                workdir: dir,
                netns: None,
            };
            run_case(spec, &env).await?
        };
        results.push(result);
    }
    Ok(results)
}

async fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if let Some(bad) = args
        .dirty
        .iter()
        .find(|d| !d.is_finite() || !(0.0..=10_000.0).contains(*d))
    {
        bail!("--dirty {bad}: give dirty rates from 0 to 10000 MB/s");
    }
    let links = args.link.links();
    let hvmsim = lparmover::ops::fleetproc::find_hvmsim()?;
    let (workdir, _temp) = workdir_or_temp(args.workdir.as_ref(), "lparmover-predict-")?;
    if links.iter().any(|l| l.in_netns()) {
        lparmover::bench::netns::preflight()
            .context("shaped links (--link 1gbit|10gbit|all) need network namespaces")?;
    }
    let cases: Vec<CaseSpec> = links
        .iter()
        .flat_map(|&link| {
            args.dirty.iter().map(move |&dirty| CaseSpec {
                label: format!("{} dirty {dirty}", link.name()),
                link,
                memory_mib: args.size,
                dirty_mbps: dirty,
                reps: args.reps,
                convergence: false,
                vcpus: None,
                // This machine is itself a guest whose host backs memory on first touch: the
                // first rehearsal on fresh blades ran at a tenth of the rate of every later
                // transfer. Touching the memory first measures the prediction, not that host.
                pretouch: true,
                rehearse: true,
            })
        })
        .collect();
    let results = interruptible(run_all(&cases, &hvmsim, &workdir, false)).await?;
    let rows = lparmover::bench::predict::rows(&results);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "lparmover bench predict: {} MiB LPAR, {} rehearsed moves per case (each rehearsal right before its move)",
            args.size, args.reps
        );
        print!("{}", lparmover::bench::predict::render(&rows));
    }
    let off = rows.iter().any(|r| !r.within_tolerance);
    Ok(if off && args.strict {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_cases(
    args: &LiveArgs,
    cases: &[CaseSpec],
    hvmsim: &std::path::Path,
    workdir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let results = run_all(cases, hvmsim, workdir, !args.no_probe).await?;
    let summary = summarize(results);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "lparmover bench live: {} MiB LPAR, {} MB/s dirty, {} moves per link",
            args.size, args.dirty, args.reps
        );
        print!("{}", render(&summary));
    }
    let failed = summary.verdicts.iter().any(|v| !v.pass);
    Ok(if failed && args.strict {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Grows the host's huge page pool by `bytes` and touches it, so guest memory on either blade
/// comes from memory the host already backs (see [`lparmover::bench::hugepages`]); says on
/// stderr what it did, or why the run goes without.
pub(crate) fn reserve_pool(bytes: u64) -> Option<HugePagePool> {
    match tokio::task::block_in_place(|| HugePagePool::reserve(bytes)) {
        Ok(pool) => {
            eprintln!(
                "reserved and touched {:.1} GiB of 2 MiB huge pages for guest memory in {:.1} s (given back at the end)",
                pool.bytes() as f64 / (1u64 << 30) as f64,
                pool.warmed_in.as_secs_f64()
            );
            Some(pool)
        }
        Err(e) => {
            eprintln!(
                "WARNING: no huge page pool for guest memory ({e}); the destination's guest memory may pay the host's first touch"
            );
            None
        }
    }
}

/// Runs `work`, or stops it on Ctrl-C or SIGTERM, so that what it holds (network namespaces,
/// worker processes, the huge page pool of the caller) is given back either way.
pub(crate) async fn interruptible<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (Ctrl-C); its namespaces and huge pages are given back"),
        _ = term.recv() => bail!("terminated (SIGTERM); its namespaces and huge pages are given back"),
    }
}

/// Runs `spec` with its blades in the two namespaces of `pair` (the manager, a `bench worker`
/// re-executed inside namespace A).
pub(crate) async fn netns_case(
    spec: &CaseSpec,
    pair: &NetnsPair,
    hvmsim: &std::path::Path,
    dir: PathBuf,
    probe: bool,
) -> anyhow::Result<CaseResult> {
    eprintln!("[{}] {}", spec.label, pair.qdisc(Side::A)?);
    let probe_gbits = if probe {
        let bits = tokio::task::block_in_place(|| pair.probe_tcp(Duration::from_secs(2)))?;
        eprintln!("[{}] TCP probe A → B: {:.2} Gbit/s", spec.label, bits / 1e9);
        Some(bits / 1e9)
    } else {
        None
    };
    let env = CaseEnv::in_netns(hvmsim.to_owned(), dir, pair);
    let me = std::env::current_exe().context("cannot locate the lparmover executable")?;
    let mut command = tokio::process::Command::from(pair.command(Side::A, &me));
    command
        .args(["bench", "worker"])
        .arg(serde_json::to_string(&(spec, &env))?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // `output()` would capture stderr too, hiding the worker's progress lines.
    let out = command
        .spawn()
        .context("cannot run the bench worker")?
        .wait_with_output()
        .await
        .context("cannot run the bench worker")?;
    if !out.status.success() {
        bail!("bench worker for {} failed ({})", spec.label, out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("bench worker printed no result")?;
    let mut result: CaseResult =
        serde_json::from_str(line).context("bench worker printed a bad result")?;
    result.probe_gbits = probe_gbits;
    Ok(result)
}
