//! System Logs: every HVM's log, filtered by HVM, severity and FC events.

use lparmover::api::LogLevel;

use crate::app::Outbox;
use crate::command::Command;
use crate::model::{Model, Pending};
use crate::windows::config_viewer::{ERROR_RED, WARNING_AMBER};

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.logs;
    egui::Window::new("System Logs")
        .open(&mut open)
        .default_size([760.0, 420.0])
        .show(ctx, |ui| {
            let before = model.log_filter.clone();
            ui.horizontal(|ui| {
                let f = &mut model.log_filter;
                egui::ComboBox::from_label("HVM")
                    .selected_text(f.hvm.clone().unwrap_or_else(|| "all".into()))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.hvm, None, "all");
                        for h in &model.hvms {
                            ui.selectable_value(&mut f.hvm, Some(h.name.clone()), &h.name);
                        }
                    });
                egui::ComboBox::from_label("Severity")
                    .selected_text(match f.min_level {
                        None => "all",
                        Some(LogLevel::Info) => "info and above",
                        Some(LogLevel::Warning) => "warning and above",
                        Some(LogLevel::Error) => "error",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.min_level, None, "all");
                        ui.selectable_value(
                            &mut f.min_level,
                            Some(LogLevel::Warning),
                            "warning and above",
                        );
                        ui.selectable_value(&mut f.min_level, Some(LogLevel::Error), "error");
                    });
                ui.checkbox(&mut f.fc_events_only, "FC events only");
            });
            let refresh = ui.button("Refresh").clicked();
            if refresh || before != model.log_filter || matches!(model.logs, Pending::Idle) {
                outbox.push(Command::Logs(model.log_filter.clone()));
                model.logs = Pending::Running;
            }
            match &model.logs {
                Pending::Idle | Pending::Running => {
                    ui.spinner();
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                Pending::Done(entries) => {
                    let height = ui.text_style_height(&egui::TextStyle::Body);
                    egui::ScrollArea::vertical()
                        .auto_shrink([false, false])
                        .show_rows(ui, height, entries.len(), |ui, range| {
                            for e in &entries[range] {
                                let text = format!(
                                    "{}  {:<8} {:<7} {:<9} {}",
                                    e.entry.time.format("%Y-%m-%d %H:%M:%S"),
                                    e.hvm,
                                    format!("{:?}", e.entry.level),
                                    e.entry.area,
                                    e.entry.message
                                );
                                match e.entry.level {
                                    LogLevel::Error => ui.colored_label(ERROR_RED, text),
                                    LogLevel::Warning => ui.colored_label(WARNING_AMBER, text),
                                    LogLevel::Info => ui.label(text),
                                };
                            }
                        });
                }
            }
        });
    model.open.logs = open;
}
