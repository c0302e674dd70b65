//! `lparmover check`: the Migration Config Viewer on the command line.

use lparmover::checks::{self, CheckReport, Group, Verdict};
use lparmover::fleetview::LparRef;
use lparmover::model::Mode;
use lparmover::ops::{self, CheckRequest, Destination};
use lparmover::profile::Profile;
use std::fmt::Write;
use std::process::ExitCode;

/// Exit code when at least one Error row stands.
pub const EXIT_CHECK_ERRORS: u8 = 3;

/// Arguments of `lparmover check`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when no Error row stands (Warnings allowed), 3 when at least one Error row stands, 1 when the check could not run."
)]
pub struct CheckArgs {
    /// Source LPAR: HVM/LPAR, by name or number (e.g. ch1-b1/web-01).
    #[arg(long)]
    pub from: LparRef,
    /// Destination HVM, optionally with the LPAR number to use there (e.g. ch1-b2 or ch1-b2/5).
    #[arg(long)]
    pub to: Destination,
    /// Migration mode: shutdown or concurrent.
    #[arg(long)]
    pub mode: Mode,
    /// Processor group on the destination (default: the LPAR's own group).
    #[arg(long, value_name = "N")]
    pub processor_group: Option<u8>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks and prints the report.
pub async fn run(profile: &Profile, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let request = CheckRequest {
        source: args.from,
        destination: args.to,
        mode: args.mode,
        processor_group: args.processor_group,
    };
    let report = ops::check(profile, &request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.blocking_errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_ERRORS)
    })
}

/// The report as a table grouped by Server / HBA / NIC / Storage / Path; each Warning and Error
/// row is followed by its detail, EMG code line and action.
pub fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    let dest_number = report
        .destination_number
        .map_or_else(|| "Auto".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "Migration Config Viewer: LPAR {} ({}) {} -> {} (LPAR number {dest_number}), {} mode",
        report.lpar_number,
        report.lpar_name,
        report.source_hvm,
        report.destination_hvm,
        report.mode
    );
    let width = |f: fn(&checks::CheckRow) -> usize, min: usize| {
        report.rows.iter().map(f).max().unwrap_or(0).max(min)
    };
    let wi = width(|r| r.item.chars().count(), 4);
    let ws = width(|r| r.source.chars().count(), 6).max(report.source_hvm.len());
    let wd = width(|r| r.destination.chars().count(), 11).max(report.destination_hvm.len());
    for group in Group::ALL {
        let rows: Vec<_> = report.group(group).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<9}  {:<wi$}  {:<ws$}  {:<wd$}",
            format!("[{}]", group.label()),
            "Item",
            format!("Source {}", report.source_hvm),
            format!("Destination {}", report.destination_hvm),
        );
        for row in rows {
            let _ = writeln!(
                out,
                "{:<9}  {:<wi$}  {:<ws$}  {:<wd$}",
                row.verdict.label(),
                row.item,
                row.source,
                row.destination
            );
            if row.verdict == Verdict::Ok {
                if !row.detail.is_empty() {
                    let _ = writeln!(out, "{:<9}    note: {}", "", row.detail);
                }
                continue;
            }
            if !row.detail.is_empty() {
                let _ = writeln!(out, "{:<9}    {}", "", row.detail);
            }
            if let Some(emg) = &row.emg {
                let _ = writeln!(out, "{:<9}    {emg}", "");
            }
            if let Some(action) = &row.action {
                let _ = writeln!(out, "{:<9}    Action: {action}", "");
            }
        }
    }
    let errors = report.blocking_errors().len();
    let warnings = report.warnings().len();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Result: {} ({errors} error(s), {warnings} warning(s)){}",
        report.verdict,
        if errors > 0 {
            "; the migration will not start until every Error row is fixed"
        } else {
            ""
        }
    );
    out
}
