//! Recovery ("LPARs requiring recovery: N LPARs", Recovery Execute) and Rollback WWN (the WWN
//! Status List and its Execute).

use egui::RichText;
use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::model::LparStatus;

use crate::app::{Icons, Outbox};
use crate::command::Command;
use crate::icons::Icon;
use crate::model::{Model, Pending};
use crate::windows::config_viewer::ERROR_RED;

/// Draws the Recovery window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, icons: &Icons, outbox: &mut Outbox) {
    let mut open = model.open.recovery;
    egui::Window::new("Recovery").open(&mut open).show(ctx, |ui| {
        ui.label(format!(
            "LPARs requiring recovery: {} LPARs",
            model.lpars_requiring_recovery()
        ));
        for h in &model.hvms {
            let Some(inv) = &h.inventory else { continue };
            for l in inv
                .lpars
                .iter()
                .filter(|l| l.shown_status() == LparStatus::RequiresRecovery)
            {
                ui.horizontal(|ui| {
                    ui.add(icons.image(Icon::LparRequiresRecovery, 16.0))
                        .on_hover_text(Icon::LparRequiresRecovery.hover());
                    ui.label(format!("{}/{} (LPAR {})", h.name, l.lpar.name, l.lpar.number));
                });
            }
        }
        ui.label("Recovery Execute settles every migration a manager left unfinished, recovers the LPARs requiring recovery and rolls back the WWNs that can be rolled back safely.");
        if ui
            .add_enabled(!model.recovery.running(), egui::Button::new("Recovery Execute"))
            .clicked()
        {
            outbox.push(Command::Recover);
        }
        match &model.recovery {
            Pending::Idle => {}
            Pending::Running => {
                ui.spinner();
            }
            Pending::Failed(e) => {
                ui.colored_label(ERROR_RED, format!("Recovery failed: {e}"));
            }
            Pending::Done(summary) => {
                for line in summary.lines() {
                    ui.label(line);
                }
                ui.label(RichText::new(if summary.settled() {
                    "Recovery completed!"
                } else {
                    "Recovery is not finished: an HVM did not answer; run it again."
                })
                .strong());
            }
        }
    });
    model.open.recovery = open;
}

/// Draws the Rollback WWN window when open.
pub fn show_rollback_wwn(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.rollback_wwn;
    let was_open = open;
    egui::Window::new("Rollback WWN")
        .open(&mut open)
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "LPARs with WWNs pending rollback: {} LPARs",
                    model.lpars_with_wwns_pending_rollback()
                ));
                if ui.button("Refresh list").clicked() {
                    outbox.push(Command::ListWwnRollbacks);
                }
            });
            match &model.wwn_rollbacks {
                Pending::Idle => {
                    outbox.push(Command::ListWwnRollbacks);
                    model.wwn_rollbacks = Pending::Running;
                }
                Pending::Running => {
                    ui.spinner();
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                Pending::Done(marks) if marks.is_empty() => {
                    ui.label("No WWNs are pending rollback.");
                }
                Pending::Done(marks) => {
                    egui::Grid::new("wwn-status").striped(true).show(ui, |ui| {
                        for h in ["HVM", "LPAR", "Job", "Since", "Reason", ""] {
                            ui.strong(h);
                        }
                        ui.end_row();
                        for p in marks {
                            let m = &p.mark;
                            ui.label(&p.hvm);
                            ui.label(format!("{} ({})", m.lpar_name, m.lpar));
                            ui.label(&m.job);
                            ui.label(m.marked_at.format("%Y-%m-%d %H:%M:%S").to_string());
                            ui.label(m.reason.label());
                            if ui
                                .add_enabled(
                                    !model.rollback.running(),
                                    egui::Button::new("Execute"),
                                )
                                .clicked()
                            {
                                outbox.push(Command::RollbackWwn(LparRef {
                                    hvm: p.hvm.clone(),
                                    lpar: LparSelector::Number(m.lpar),
                                }));
                            }
                            ui.end_row();
                        }
                    });
                }
            }
            match &model.rollback {
                Pending::Done(text) => {
                    ui.label(text);
                    ui.label(RichText::new("Rollback completed!").strong());
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                Pending::Running => {
                    ui.spinner();
                }
                Pending::Idle => {}
            }
        });
    if open && !was_open {
        model.wwn_rollbacks = Pending::Idle;
    }
    model.open.rollback_wwn = open;
}
