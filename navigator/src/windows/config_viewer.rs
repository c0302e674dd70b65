//! Show Config: the Migration Config Viewer, source and destination side by side, grouped
//! Server / HBA / NIC / Storage / Path; Error rows red with their code and action.

use egui::{Color32, RichText};
use lparmover::checks::{Group, Verdict};

use crate::app::Outbox;
use crate::command::Command;
use crate::model::{CheckState, Model};

/// Error-row red.
pub const ERROR_RED: Color32 = Color32::from_rgb(235, 80, 70);
/// Warning amber.
pub const WARNING_AMBER: Color32 = Color32::from_rgb(230, 170, 50);

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.config_viewer;
    let mut rerun = None;
    egui::Window::new("Migration Config Viewer")
        .open(&mut open)
        .default_pos([200.0, 60.0])
        .default_size([1000.0, 640.0])
        .vscroll(true)
        .show(ctx, |ui| match &model.check {
            CheckState::NotRun => {
                ui.label("Pick a source and a destination, then press Show Config.");
            }
            CheckState::Running(_) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Checking both HVMs…");
                });
            }
            CheckState::Failed(request, e) => {
                ui.colored_label(ERROR_RED, format!("Show Config could not run: {e}"));
                if ui.button("Show Config again").clicked() {
                    rerun = Some(request.clone());
                }
            }
            CheckState::Done(request, report) => {
                let dest = report
                    .destination_number
                    .map_or("Auto".to_owned(), |n| n.to_string());
                ui.label(format!(
                    "LPAR {} ({}) {} → {} (LPAR number {dest}), {} mode, checked {}",
                    report.lpar_number,
                    report.lpar_name,
                    report.source_hvm,
                    report.destination_hvm,
                    report.mode,
                    report.checked_at.format("%H:%M:%S")
                ));
                let errors = report.blocking_errors().len();
                let warnings = report.warnings().len();
                let verdict = format!(
                    "Result: {} ({errors} error(s), {warnings} warning(s))",
                    report.verdict
                );
                if errors > 0 {
                    ui.label(RichText::new(verdict).color(ERROR_RED).strong());
                    ui.colored_label(
                        ERROR_RED,
                        "Migration is disabled until every Error row is fixed.",
                    );
                } else {
                    ui.label(RichText::new(verdict).strong());
                }
                if ui.button("Show Config again").clicked() {
                    rerun = Some(request.clone());
                }
                ui.separator();
                for group in Group::ALL {
                    let rows: Vec<_> = report.group(group).collect();
                    if rows.is_empty() {
                        continue;
                    }
                    ui.heading(group.label());
                    egui::Grid::new(("checks", group.label()))
                        .striped(true)
                        .num_columns(4)
                        .show(ui, |ui| {
                            ui.strong("Verdict");
                            ui.strong("Item");
                            ui.strong(format!("Source {}", report.source_hvm));
                            ui.strong(format!("Destination {}", report.destination_hvm));
                            ui.end_row();
                            for row in rows {
                                let color = match row.verdict {
                                    Verdict::Error => Some(ERROR_RED),
                                    Verdict::Warning => Some(WARNING_AMBER),
                                    Verdict::Ok => None,
                                };
                                let cell = |ui: &mut egui::Ui, text: &str| match color {
                                    Some(c) => ui.label(RichText::new(text).color(c)),
                                    None => ui.label(text),
                                };
                                cell(ui, row.verdict.label());
                                ui.vertical(|ui| {
                                    ui.set_max_width(420.0);
                                    cell(ui, &row.item);
                                    if row.verdict != Verdict::Ok {
                                        let c = color.unwrap_or(Color32::GRAY);
                                        let wrapped = |ui: &mut egui::Ui, text: String| {
                                            ui.add(
                                                egui::Label::new(
                                                    RichText::new(text).color(c).small(),
                                                )
                                                .wrap(),
                                            );
                                        };
                                        if !row.detail.is_empty() {
                                            wrapped(ui, row.detail.clone());
                                        }
                                        if let Some(emg) = &row.emg {
                                            wrapped(ui, emg.clone());
                                        }
                                        if let Some(action) = &row.action {
                                            wrapped(ui, format!("Action: {action}"));
                                        }
                                    }
                                });
                                cell(ui, &row.source);
                                cell(ui, &row.destination);
                                ui.end_row();
                            }
                        });
                }
            }
        });
    model.open.config_viewer = open;
    if let Some(request) = rerun {
        outbox.push(Command::Check(request));
    }
}
