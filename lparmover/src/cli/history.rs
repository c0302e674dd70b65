//! `lparmover history`: the Migration History list, or one LPAR's "Now / old1 / …" history.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use lparmover::dirs::ManagerDirs;
use lparmover::history::{History, HistoryRow, MoveRecord};

/// Arguments of `lparmover history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Show this LPAR's history (Now, old1, … oldN); without it, every migration newest first.
    pub lpar: Option<String>,
    /// Most migrations to list without an LPAR.
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
pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let dirs = ManagerDirs::from_flag(args.data_dir.as_deref());
    let history = History::open(&dirs.history_db())?;
    match &args.lpar {
        Some(lpar) => {
            let rows = history.lpar_history(lpar)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", render_lpar(lpar, &rows));
            }
        }
        None => {
            let records = history.all(args.limit)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                print!("{}", render_all(&records));
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
        "  {:<6} {:<10} {:>4}  {:<19}  {:<22}  {:<11}  {:>10}  {:<14}  Job",
        "", "HVM", "LPAR", "Date and time", "Mode", "Result", "Suspension", "From"
    );
    for row in rows {
        let r = &row.record;
        let _ = writeln!(
            out,
            "  {:<6} {:<10} {:>4}  {:<19}  {:<22}  {:<11}  {:>10}  {:<14}  {}",
            row.label,
            row.hvm,
            row.number.to_string(),
            when(r.started_at),
            r.mode.label(),
            r.result.label(),
            suspension(r.suspension),
            format!("{}/{}", r.source.hvm, r.source.number),
            r.job
        );
        if let Some(detail) = &r.detail {
            let _ = writeln!(out, "         {detail}");
        }
    }
    out
}

/// Every migration, newest first (the main window's Migration History list).
pub fn render_all(records: &[MoveRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        let _ = writeln!(out, "No migration recorded.");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<19}  {:<10}  {:<14}  {:<14}  {:<22}  {:<11}  {:>10}  Job",
        "Date and time", "LPAR", "Source", "Destination", "Mode", "Result", "Suspension"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<19}  {:<10}  {:<14}  {:<14}  {:<22}  {:<11}  {:>10}  {}",
            when(r.started_at),
            r.lpar,
            format!("{}/{}", r.source.hvm, r.source.number),
            format!("{}/{}", r.dest_hvm, number(r.dest_number)),
            r.mode.label(),
            r.result.label(),
            suspension(r.suspension),
            r.job
        );
    }
    out
}
