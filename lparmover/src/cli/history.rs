//! `lparmover history`: the Migration History list (moves, rehearsals, Connectivity Tests), or
//! one LPAR's "Now / old1 / …" history followed by its rehearsals.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use lparmover::dirs::ManagerDirs;
use lparmover::history::{Actor, HistoryEntry, HistoryRow, TrialRecord};

/// The job column's heading (job ids are 25 characters wide).
const JOB: &str = "Job";

/// Arguments of `lparmover history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Show this LPAR's history (Now, old1, … oldN, then its rehearsals); without it, every
    /// migration, rehearsal and Connectivity Test, newest first.
    pub lpar: Option<String>,
    /// Most entries to list without an LPAR.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Manager data directory (default: $LPARMOVER_DATA or ~/.local/share/lparmover).
    #[arg(long, env = "LPARMOVER_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Prints the history.
pub fn run(
    args: HistoryArgs,
    profile: Option<&lparmover::profile::Profile>,
) -> anyhow::Result<ExitCode> {
    let dirs = match (args.data_dir.as_deref(), profile) {
        (None, Some(profile)) => ManagerDirs::for_profile(profile),
        (flag, _) => ManagerDirs::from_flag(flag),
    };
    match &args.lpar {
        Some(lpar) => {
            let view = lparmover::ops::lpar_history(&dirs, lpar)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render_lpar(lpar, &view.placements));
                print!("{}", render_rehearsals(&view.rehearsals));
            }
        }
        None => {
            let entries = lparmover::ops::history(&dirs, args.limit)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", render_all(&entries));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn suspension(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

fn number(n: Option<lparmover::model::LparNumber>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// One LPAR: "Now" first, then "old1" … (the seed's Migration History window).
pub fn render_lpar(lpar: &str, rows: &[HistoryRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Migration history of LPAR {lpar}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (no migration recorded)");
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<6} {:<10} {:>4}  {:<19}  {:<22}  {:<11}  {:>10}  {:<14}  {JOB:<25}  By",
        "", "HVM", "LPAR", "Date and time", "Mode", "Result", "Suspension", "From"
    );
    for row in rows {
        let r = &row.record;
        let _ = writeln!(
            out,
            "  {:<6} {:<10} {:>4}  {:<19}  {:<22}  {:<11}  {:>10}  {:<14}  {:<25}  {}",
            row.label,
            row.hvm,
            row.number.to_string(),
            when(r.started_at),
            r.mode.label(),
            r.result.label(),
            suspension(r.suspension),
            format!("{}/{}", r.source.hvm, r.source.number),
            r.job,
            Actor::shown(r.actor.as_ref())
        );
        if let Some(detail) = &r.detail {
            let _ = writeln!(out, "         {detail}");
        }
    }
    out
}

/// An LPAR's rehearsals, after its Now / old rows; nothing when it has none.
pub fn render_rehearsals(trials: &[TrialRecord]) -> String {
    let mut out = String::new();
    if trials.is_empty() {
        return out;
    }
    let _ = writeln!(out, "Rehearsals (the LPAR stayed where it was)");
    let _ = writeln!(
        out,
        "  {:<19}  {:<14}  {:<14}  {:<11}  {JOB:<25}  By",
        "Date and time", "Source", "Destination", "Result"
    );
    for t in trials {
        let _ = writeln!(
            out,
            "  {:<19}  {:<14}  {:<14}  {:<11}  {:<25}  {}",
            when(t.started_at),
            trial_source(t),
            t.dest_hvm,
            t.result.label(),
            t.job,
            Actor::shown(t.actor.as_ref())
        );
        if let Some(detail) = &t.detail {
            let _ = writeln!(out, "         {detail}");
        }
    }
    out
}

fn trial_source(t: &TrialRecord) -> String {
    match t.source_number {
        Some(n) => format!("{}/{n}", t.source_hvm),
        None => t.source_hvm.clone(),
    }
}

/// Every migration, rehearsal and Connectivity Test, newest first (the main window's Migration
/// History list). "Kind" is the mode of a move, or what the trial was.
pub fn render_all(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        let _ = writeln!(out, "No migration recorded.");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<19}  {:<10}  {:<14}  {:<14}  {:<22}  {:<11}  {:>10}  {JOB:<25}  By",
        "Date and time", "LPAR", "Source", "Destination", "Kind", "Result", "Suspension"
    );
    for entry in entries {
        match entry {
            HistoryEntry::Move(r) => {
                let _ = writeln!(
                    out,
                    "{:<19}  {:<10}  {:<14}  {:<14}  {:<22}  {:<11}  {:>10}  {:<25}  {}",
                    when(r.started_at),
                    r.lpar,
                    format!("{}/{}", r.source.hvm, r.source.number),
                    format!("{}/{}", r.dest_hvm, number(r.dest_number)),
                    r.mode.label(),
                    r.result.label(),
                    suspension(r.suspension),
                    r.job,
                    Actor::shown(r.actor.as_ref())
                );
            }
            HistoryEntry::Trial(t) => {
                let _ = writeln!(
                    out,
                    "{:<19}  {:<10}  {:<14}  {:<14}  {:<22}  {:<11}  {:>10}  {:<25}  {}",
                    when(t.started_at),
                    t.lpar.as_deref().unwrap_or("-"),
                    trial_source(t),
                    t.dest_hvm,
                    t.kind.label(),
                    t.result.label(),
                    "-",
                    t.job,
                    Actor::shown(t.actor.as_ref())
                );
                if let Some(detail) = &t.detail {
                    let _ = writeln!(out, "    {detail}");
                }
            }
        }
    }
    out
}
