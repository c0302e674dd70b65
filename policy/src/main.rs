//! `policy`: list, show, validate, run, stop, reverse and report migration policies.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lparmover::dirs::ManagerDirs;
use lparmover::profile::Profile;
use policy::file;
use policy::report::{EntryResult, RunReport, RunStore};
use policy::runner::{Attendance, Decision, Question, Resume, RunControl, RunEvent, RunOptions};
use policy::{Policy, PolicyStore};
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

/// Saved migration policies: ordered batches of moves of one mode, run with caps, retried,
/// skipped or ended on error, and reported.
#[derive(Debug, Parser)]
#[command(name = "policy", version)]
struct Cli {
    /// Manager profile (registered HVMs and arrays).
    #[arg(long, global = true, env = "LPARMOVER_PROFILE")]
    profile: Option<PathBuf>,
    /// Policies directory (default: the manager's DATA/policies).
    #[arg(long, global = true)]
    policies: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The saved policies, broken ones with their problems.
    List,
    /// One policy: NAME from the policies directory, or a FILE path.
    Show {
        /// Policy name or file.
        policy: String,
        /// As JSON-like TOML exactly as saved.
        #[arg(long)]
        toml: bool,
    },
    /// Checks policy files; every problem with its line. Exit 1 when any is invalid.
    Validate {
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Copies a policy file into the policies directory (after validating it).
    Import {
        /// File.
        file: PathBuf,
        /// Replace a saved policy of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// Deletes a saved policy.
    Delete {
        /// Policy name.
        name: String,
    },
    /// Runs a policy now. Ctrl-C stops it after the running entries.
    Run {
        /// Policy name or file.
        policy: String,
        /// Nobody answers: failures follow the policy's `on_error`, Ctrl-C ends the run.
        #[arg(long)]
        unattended: bool,
        /// Nothing starts that would not end within this long from now (e.g. 2h).
        #[arg(long, value_parser = parse_duration)]
        window: Option<Duration>,
        /// Print the report as JSON at the end.
        #[arg(long)]
        json: bool,
    },
    /// Asks a running run (a `policy run` process, the daemon's, the navigator's) to stop after
    /// its running entries: nothing new starts; an unattended run then ends, "stopped by the
    /// operator". Without RUN|POLICY: the only running run (several are listed).
    Stop {
        /// Run id, or the name of the policy it runs.
        which: Option<String>,
        /// Wait until the run has ended (its running entries finished).
        #[arg(long)]
        wait: bool,
    },
    /// Writes the policy that brings back everything a run moved.
    Reverse {
        /// Policy name or file that ran.
        policy: String,
        /// Run id (default: the newest run of that policy).
        #[arg(long)]
        run: Option<String>,
        /// Where to write it (default: the policies directory, as NAME-return).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Runs every scheduled policy of the policies directory when it is due, unattended,
    /// until SIGTERM or Ctrl-C (then the running entries finish). Continues the runs a killed
    /// daemon left.
    Daemon {
        /// Command run after a run in which not every entry completed, with the report's
        /// HTML path as its argument and in POLICY_REPORT (e.g. a mail or chat hook).
        #[arg(long, value_name = "COMMAND")]
        on_failure: Option<String>,
        /// Serve /metrics (Prometheus text format: moves, policy runs and entries) and
        /// /healthz over plain HTTP on this loopback address, e.g. 127.0.0.1:9465.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Let --metrics listen outside 127.0.0.0/8 and ::1 (no token: anyone who can reach
        /// the address reads the figures).
        #[arg(long, requires = "metrics")]
        metrics_allow_remote: bool,
    },
    /// Writes the policies that move every LPAR off HVM (live for activated LPARs, Shutdown
    /// mode for deactivated ones), each to a destination the checks accept, spread out.
    Evacuate {
        /// The blade to empty.
        hvm: String,
        /// Only these destinations (comma-separated; default: every other HVM).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
    /// A run's morning report (default: the newest run).
    Report {
        /// Run id.
        run: Option<String>,
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Print the HTML page's path instead.
        #[arg(long)]
        html: bool,
        /// List the runs.
        #[arg(long)]
        list: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    lparmover::ops::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log is its record of the night; the other commands print what they did.
    let default = match cli.command {
        Command::Daemon { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LPARMOVER_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Context_ {
    profile_path: PathBuf,
    policies: Option<PathBuf>,
}

impl Context_ {
    fn profile(&self) -> anyhow::Result<Profile> {
        Profile::load(&self.profile_path).with_context(|| {
            format!(
                "reading the manager profile {} (give --profile FILE; `hvmsim fleet FILE` writes one)",
                self.profile_path.display()
            )
        })
    }

    fn dirs(&self) -> ManagerDirs {
        match Profile::load(&self.profile_path) {
            Ok(p) => ManagerDirs::for_profile(&p),
            Err(_) => ManagerDirs::from_env(),
        }
    }

    fn store(&self) -> PolicyStore {
        match &self.policies {
            Some(dir) => PolicyStore::new(dir),
            None => PolicyStore::for_manager(&self.dirs()),
        }
    }

    fn runs(&self) -> RunStore {
        RunStore::for_manager(&self.dirs())
    }

    /// NAME from the store, or a file path (anything with a `/` or ending in `.toml`).
    fn policy(&self, which: &str) -> anyhow::Result<Policy> {
        if which.contains('/') || which.ends_with(".toml") {
            Ok(file::load(Path::new(which))?)
        } else {
            Ok(self.store().load(which)?)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context_ {
        profile_path: cli.profile.unwrap_or_else(Profile::default_path),
        policies: cli.policies,
    };
    match cli.command {
        Command::List => list(&ctx),
        Command::Show { policy, toml } => {
            let p = ctx.policy(&policy)?;
            if toml {
                print!("{}", file::render(&p));
            } else {
                show(&p);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            let mut bad = 0;
            for f in &files {
                match file::load(f) {
                    Ok(p) => println!(
                        "{}: valid ({} mode, {} entr{})",
                        f.display(),
                        p.mode,
                        p.entries.len(),
                        if p.entries.len() == 1 { "y" } else { "ies" }
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("{e}");
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Import {
            file: path,
            replace,
        } => {
            let p = file::load(&path)?;
            let store = ctx.store();
            if !replace && store.path(&p.name).exists() {
                bail!(
                    "a policy {} is saved already; give --replace to replace it",
                    p.name
                );
            }
            let saved = store.save(&p)?;
            println!("saved policy {} as {}", p.name, saved.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { name } => {
            ctx.store().delete(&name)?;
            println!("deleted policy {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            policy,
            unattended,
            window,
            json,
        } => run(&ctx, &policy, unattended, window, json).await,
        Command::Stop { which, wait } => stop(&ctx, which.as_deref(), wait).await,
        Command::Reverse {
            policy,
            run,
            output,
        } => {
            let p = ctx.policy(&policy)?;
            let runs = ctx.runs();
            let report = match run {
                Some(r) => runs.load(Some(&r))?,
                None => newest_run_of(&runs, &p)?,
            };
            let back = policy::reverse::reverse(&p, &report)?;
            let path = match output {
                Some(path) => {
                    lparmover::fsutil::write_atomic(&path, file::render(&back).as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    path
                }
                None => ctx.store().save(&back)?,
            };
            println!(
                "wrote policy {} ({} entr{}, {} mode) to {}; run it with `policy run {}`",
                back.name,
                back.entries.len(),
                if back.entries.len() == 1 { "y" } else { "ies" },
                back.mode,
                path.display(),
                if path.starts_with(ctx.store().dir()) {
                    back.name.to_string()
                } else {
                    path.display().to_string()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Evacuate { hvm, to } => {
            let profile = ctx.profile()?;
            let candidates = (!to.is_empty()).then_some(to.as_slice());
            let plan = policy::evacuate::plan(&profile, &hvm, candidates).await?;
            let store = ctx.store();
            for p in [&plan.live, &plan.shutdown].into_iter().flatten() {
                let path = store.save(p)?;
                println!(
                    "wrote policy {} ({} mode, {} entr{}) to {}",
                    p.name,
                    p.mode,
                    p.entries.len(),
                    if p.entries.len() == 1 { "y" } else { "ies" },
                    path.display()
                );
                for (i, e) in p.entries.iter().enumerate() {
                    println!("  {:>3}. {}", i + 1, e.describe());
                }
            }
            for u in &plan.unplaced {
                println!("{} stays on {hvm}: no destination takes it", u.lpar);
                for r in &u.refusals {
                    println!("  {}: {}", r.candidate, r.reasons.join("; "));
                }
            }
            if plan.live.is_none() && plan.shutdown.is_none() {
                println!("nothing to move off {hvm}");
            } else {
                println!(
                    "run them with `policy run NAME`; after the maintenance, `policy reverse NAME` writes the policy that brings everything home"
                );
            }
            Ok(if plan.unplaced.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Daemon {
            on_failure,
            metrics,
            metrics_allow_remote,
        } => {
            let dirs = ctx.dirs();
            let config = policy::daemon::DaemonConfig {
                profile: ctx.profile_path.clone(),
                store: ctx.store(),
                runs: ctx.runs(),
                state: dirs.data().join("policy-daemon").join("daemon.json"),
                on_failure,
            };
            // The profile must be readable now; it is read again for every run.
            ctx.profile()?;
            if let Some(addr) = metrics {
                let listener = lparmover::metrics::http::bind(addr, metrics_allow_remote)?;
                let addr = listener.local_addr()?;
                // The policy series exist (at zero) before the first scrape.
                policy::metrics::policy();
                let manager = lparmover::metrics::manager().clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        lparmover::metrics::http::serve(listener, manager, "policy-daemon").await
                    {
                        tracing::error!(error = %e, "the metrics endpoint stopped");
                    }
                });
                eprintln!("policy daemon: metrics on http://{addr}/metrics");
            }
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stopper = shutdown.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                stopper.cancel();
            });
            eprintln!(
                "policy daemon: policies in {}, reports in {}",
                config.store.dir().display(),
                config.runs.run_dir("").display()
            );
            policy::daemon::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            run,
            json,
            html,
            list,
        } => {
            let runs = ctx.runs();
            if list {
                for r in runs.runs()? {
                    println!("{r}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let report = runs.load(run.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if html {
                println!(
                    "{}",
                    runs.run_dir(&report.run).join("report.html").display()
                );
            } else {
                print!("{}", report.text());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn stop(ctx: &Context_, which: Option<&str>, wait: bool) -> anyhow::Result<ExitCode> {
    let runs = ctx.runs();
    let live = policy::live::running(&runs)?;
    let describe = |r: &policy::live::LiveRun| {
        format!(
            "{} (policy {}, {} in process {}, since {})",
            r.run,
            if r.policy.is_empty() { "?" } else { &r.policy },
            if r.origin.is_empty() { "?" } else { &r.origin },
            r.pid,
            r.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    };
    let chosen: Vec<&policy::live::LiveRun> = match which {
        Some(w) => live
            .iter()
            .filter(|r| r.run == w || r.policy == w)
            .collect(),
        None => live.iter().collect(),
    };
    let target = match (chosen.as_slice(), which) {
        ([one], _) => *one,
        ([], Some(w)) => bail!(
            "no run of {w} is running (nothing was changed){}",
            if live.is_empty() {
                String::new()
            } else {
                format!(
                    "; running now: {}",
                    live.iter()
                        .map(|r| r.run.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        ([], None) => bail!("no policy run is running; nothing to stop"),
        (several, _) => {
            for r in several {
                println!("{}", describe(r));
            }
            bail!(
                "{} runs are running; name the one to stop: `policy stop RUN`",
                several.len()
            );
        }
    };
    policy::live::request_stop(&runs, target)?;
    println!(
        "asked run {} to stop: its running entries finish, nothing new starts",
        describe(target)
    );
    if wait {
        while policy::live::running(&runs)?
            .iter()
            .any(|r| r.run == target.run)
        {
            tokio::time::sleep(policy::live::STOP_POLL).await;
        }
        match runs.load(Some(&target.run)) {
            Ok(report) => println!(
                "run {} ended: {}",
                report.run,
                report.outcome.map_or("interrupted", |o| o.label())
            ),
            Err(_) => println!("run {} ended", target.run),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn newest_run_of(runs: &RunStore, policy: &Policy) -> anyhow::Result<RunReport> {
    for id in runs.runs()?.iter().rev() {
        let report = runs.load(Some(id))?;
        if report.policy == policy.name.as_str() {
            return Ok(report);
        }
    }
    bail!(
        "policy {} has no run on record; run it first (`policy run {}`) or give --run",
        policy.name,
        policy.name
    )
}

fn list(ctx: &Context_) -> anyhow::Result<ExitCode> {
    let store = ctx.store();
    let listed = store.list()?;
    if listed.is_empty() {
        println!(
            "no policies in {} (`policy import FILE` saves one; samples in assets/policies/)",
            store.dir().display()
        );
    }
    for l in listed {
        match l.policy {
            Ok(p) => println!(
                "{:<24} {:<22} {:>3} entr{}  {}",
                p.name,
                p.mode.label(),
                p.entries.len(),
                if p.entries.len() == 1 { "y  " } else { "ies" },
                p.comment
            ),
            Err(e) => println!("{e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(p: &Policy) {
    println!("Policy {} ({} mode)", p.name, p.mode);
    if !p.comment.is_empty() {
        println!("  comment      {}", p.comment);
    }
    println!("  on error     {}", p.on_error);
    println!("  rehearse     {}", if p.rehearse { "yes" } else { "no" });
    let c = p.limits.concurrency;
    println!(
        "  at once      {} (per source HVM {}, per destination HVM {})",
        c.total, c.per_source_hvm, c.per_destination_hvm
    );
    println!("  bandwidth    {}", p.limits.bandwidth);
    println!("  stall after  {} s", p.limits.stall_timeout.as_secs());
    if let Some(t) = p.limits.completion_timeout_per_gib {
        println!("  timeout      {} s per GiB", t.as_secs());
    }
    if let Some(c) = &p.limits.convergence {
        let steps: Vec<String> = c
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} ms after {} stalled rounds",
                    s.downtime_limit_ms, s.stalled_rounds
                )
            })
            .collect();
        println!(
            "  convergence  {}{}",
            if steps.is_empty() {
                "downtime limit kept".to_owned()
            } else {
                steps.join(", ")
            },
            c.abort_after_stalled_rounds
                .map_or(String::new(), |n| format!("; gives up after {n}"))
        );
    }
    match &p.schedule {
        Some(s) => println!(
            "  schedule     {} ({}), window ends {}",
            s.cron,
            s.time_zone,
            s.window_end.format("%H:%M")
        ),
        None => println!("  schedule     none (run by hand)"),
    }
    for (i, e) in p.entries.iter().enumerate() {
        println!("  {:>3}. {}", i + 1, e.describe());
    }
}

async fn run(
    ctx: &Context_,
    which: &str,
    unattended: bool,
    window: Option<Duration>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let profile = ctx.profile()?;
    let policy = ctx.policy(which)?;
    let interactive = !unattended && std::io::stdin().is_terminal();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (questions_tx, mut questions) = mpsc::unbounded_channel();
    let control = RunControl::new();
    let window_end = match window {
        Some(w) => Some(
            chrono::Utc::now()
                + chrono::Duration::from_std(w).context("the window is longer than a year")?,
        ),
        None => None,
    };
    let options = RunOptions {
        attendance: if interactive {
            Attendance::Operator(questions_tx)
        } else {
            Attendance::Unattended
        },
        window_end,
        origin: "cli".into(),
        runs: ctx.runs(),
        events: Some(events_tx),
        control: control.clone(),
    };
    eprintln!(
        "running policy {} ({} mode, {} entries, at most {} at once, bandwidth cap {}, on error: {})",
        policy.name,
        policy.mode,
        policy.entries.len(),
        policy.limits.concurrency.total,
        policy.limits.bandwidth,
        if interactive {
            "ask".to_owned()
        } else {
            policy.on_error.to_string()
        }
    );
    let stopper = control.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the running entries (Ctrl-C)…");
            stopper.stop();
        }
    });
    let bars = MultiProgress::new();
    let mut shown: HashMap<usize, ProgressBar> = HashMap::new();
    let running = policy::run(&profile, &policy, options);
    tokio::pin!(running);
    let result = loop {
        tokio::select! {
            result = &mut running => break result?,
            Some(event) = events.recv() => show_event(&bars, &mut shown, &policy, event, json),
            Some(question) = questions.recv() => answer(&bars, &policy, question),
        }
    };
    while let Ok(event) = events.try_recv() {
        show_event(&bars, &mut shown, &policy, event, json);
    }
    let report = &result.report;
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.text());
    }
    match &result.saved {
        Ok(html) => eprintln!("report: {}", html.display()),
        Err(e) => eprintln!("warning: the report could not be saved: {e}"),
    }
    Ok(if report.all_completed() {
        ExitCode::SUCCESS
    } else if report.count(EntryResult::Completed) > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::from(4)
    })
}

fn show_event(
    bars: &MultiProgress,
    shown: &mut HashMap<usize, ProgressBar>,
    policy: &Policy,
    event: RunEvent,
    quiet: bool,
) {
    let name = |i: usize| {
        policy
            .entries
            .get(i)
            .map_or_else(String::new, |e| format!("{}. {}", i + 1, e.describe()))
    };
    let say = |line: String| {
        if !quiet {
            let _ = bars.println(line);
        }
    };
    match event {
        RunEvent::Rehearsing { entry } => say(format!("rehearsing {}", name(entry))),
        RunEvent::Rehearsed { entry, rehearsal } => say(format!(
            "rehearsal of {}: {}{}",
            name(entry),
            if rehearsal.passed { "passed" } else { "FAILED" },
            match (
                rehearsal.predicted_total_s,
                rehearsal.predicted_suspension_ms
            ) {
                (Some(t), Some(s)) => format!(" (predicts {t:.1} s, {s:.0} ms suspension)"),
                _ => String::new(),
            } + &rehearsal
                .notes
                .iter()
                .map(|n| format!("; {n}"))
                .collect::<String>()
        )),
        RunEvent::Started {
            entry,
            attempt,
            bandwidth_cap_mbps,
        } => {
            let bar = bars.add(ProgressBar::new(100));
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(name(entry));
            bar.set_message(format!(
                "attempt {attempt}{}",
                bandwidth_cap_mbps
                    .map_or(String::new(), |c| format!(", sharing a {c:.0} MB/s cap"))
            ));
            if quiet {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            shown.insert(entry, bar);
        }
        RunEvent::Progress { entry, progress } => {
            if let (Some(bar), Some(m)) = (shown.get(&entry), &progress.mover) {
                if m.memory_size > 0 {
                    let done = m.memory_size.saturating_sub(m.bytes_remaining);
                    bar.set_position(done.saturating_mul(100) / m.memory_size);
                }
                bar.set_message(format!(
                    "{} round {} | {:.0} MB/s | dirty {:.1} MB/s{}",
                    progress.stage.display(),
                    m.round,
                    m.memory_throughput_mbps,
                    m.dirty_rate_mbps,
                    m.bandwidth_limit.map_or(String::new(), |b| format!(
                        " | wire cap {:.0} MB/s",
                        b as f64 / 1e6
                    ))
                ));
            }
        }
        RunEvent::Stage { entry, stage } => {
            if let Some(bar) = shown.get(&entry) {
                bar.set_message(stage);
            }
        }
        RunEvent::EntryDone { entry, report } => {
            if let Some(bar) = shown.remove(&entry) {
                bar.finish_and_clear();
            }
            let line = match report.result {
                EntryResult::Completed => format!(
                    "{}: completed in {:.2} s{}",
                    name(entry),
                    report.total_s.unwrap_or(0.0),
                    report
                        .suspension_ms
                        .map_or(String::new(), |s| format!(", suspension {s:.1} ms"))
                ),
                other => format!(
                    "{}: {}{}",
                    name(entry),
                    other.label(),
                    report
                        .failures
                        .last()
                        .map_or(String::new(), |f| format!(" — {}", f.error))
                ),
            };
            say(line);
        }
        RunEvent::Stopping => {
            say("stop asked: the running entries finish, nothing new starts".into())
        }
        RunEvent::Stopped => say("stopped: nothing runs now".into()),
        RunEvent::Resumed => say("continuing".into()),
    }
}

fn ask(bars: &MultiProgress, prompt: &str) -> String {
    bars.suspend(|| {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim().to_ascii_lowercase()
    })
}

fn answer(bars: &MultiProgress, policy: &Policy, question: Question) {
    match question {
        Question::Failed {
            entry,
            failure,
            reply,
        } => {
            let what = policy
                .entries
                .get(entry)
                .map_or_else(String::new, |e| e.describe());
            let mut prompt = format!("\nentry {} ({what}) failed: {}\n", entry + 1, failure.error);
            if let Some(a) = &failure.action {
                prompt.push_str(&format!("  action: {a}\n"));
            }
            prompt.push_str("[r]etry, [s]kip or [e]nd? ");
            let decision = loop {
                match ask(bars, &prompt).as_str() {
                    "r" | "retry" => break Decision::Retry,
                    "s" | "skip" => break Decision::Skip,
                    "e" | "end" | "" => break Decision::End,
                    _ => {}
                }
            };
            let _ = reply.send(decision);
        }
        Question::Stopped { reply } => {
            let resume = loop {
                match ask(bars, "\nstopped. [c]ontinue or [e]nd? ").as_str() {
                    "c" | "continue" => break Resume::Continue,
                    "e" | "end" | "" => break Resume::End,
                    _ => {}
                }
            };
            let _ = reply.send(resume);
        }
    }
}
