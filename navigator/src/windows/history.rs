//! Migration History: every migration instance newest first, or one LPAR's Now / old1 …

use chrono::Local;
use lparmover::history::{Actor, HistoryEntry};

use crate::app::Outbox;
use crate::command::{Command, HistoryView};
use crate::model::{Model, Pending};
use crate::windows::config_viewer::ERROR_RED;

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.history;
    egui::Window::new("Migration History")
        .open(&mut open)
        .default_size([700.0, 400.0])
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label("LPAR (empty: every migration):");
                ui.text_edit_singleline(&mut model.history_lpar);
                if ui.button("Show").clicked() || matches!(model.history, Pending::Idle) {
                    let lpar = model.history_lpar.trim();
                    outbox.push(Command::History(
                        (!lpar.is_empty()).then(|| lpar.to_owned()),
                    ));
                    model.history = Pending::Running;
                }
            });
            egui::ScrollArea::vertical().show(ui, |ui| match &model.history {
                Pending::Idle | Pending::Running => {
                    ui.spinner();
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                Pending::Done(HistoryView::Lpar(h)) => {
                    egui::Grid::new("lpar-history")
                        .striped(true)
                        .show(ui, |ui| {
                            for head in ["", "HVM", "LPAR number", "Date and time", "By"] {
                                ui.strong(head);
                            }
                            ui.end_row();
                            for row in &h.placements {
                                ui.label(&row.label);
                                ui.label(&row.hvm);
                                ui.label(row.number.to_string());
                                ui.label(
                                    row.record
                                        .started_at
                                        .with_timezone(&Local)
                                        .format("%Y-%m-%d %H:%M:%S")
                                        .to_string(),
                                );
                                ui.label(Actor::shown(row.record.actor.as_ref()));
                                ui.end_row();
                            }
                        });
                    if h.placements.is_empty() {
                        ui.label(format!("No migration history for {}.", h.lpar));
                    }
                    for t in &h.rehearsals {
                        ui.label(format!(
                            "Rehearsal {} → {} at {}: {}, by {}",
                            t.source_hvm,
                            t.dest_hvm,
                            t.started_at
                                .with_timezone(&Local)
                                .format("%Y-%m-%d %H:%M:%S"),
                            t.result.label(),
                            Actor::shown(t.actor.as_ref())
                        ));
                    }
                }
                Pending::Done(HistoryView::All(entries)) => {
                    if entries.is_empty() {
                        ui.label("No migration yet.");
                    }
                    for e in entries {
                        ui.label(entry_line(e));
                    }
                }
            });
        });
    model.open.history = open;
}

fn entry_line(e: &HistoryEntry) -> String {
    let when = e
        .started_at()
        .with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S");
    match e {
        HistoryEntry::Move(m) => format!(
            "{when}  move {} {} → {}  {}{}  by {}",
            m.lpar,
            m.source.hvm,
            m.dest_hvm,
            m.result.label(),
            m.suspension.map_or(String::new(), |d| format!(
                ", suspension {:.1} ms",
                d.as_secs_f64() * 1e3
            )),
            Actor::shown(m.actor.as_ref())
        ),
        HistoryEntry::Trial(t) => format!(
            "{when}  {} {} → {}  {}  by {}",
            t.kind.label(),
            t.source_hvm,
            t.dest_hvm,
            t.result.label(),
            Actor::shown(t.actor.as_ref())
        ),
    }
}
