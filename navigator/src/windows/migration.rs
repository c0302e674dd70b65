//! The Migration tab: mode selection, the Source and Destination trees (chassis → HVM → LPAR
//! with the state icons of tables 7-1 and 7-2), and the buttons that start the procedures.

use egui::{RichText, Ui};
use lparmover::model::Mode;
use lparmover::ops::Destination;

use crate::app::{Icons, NavigatorApp, Outbox};
use crate::command::Command;
use crate::model::policies::EvacuationDialog;
use crate::model::{Model, RowKind, Side, SourcePick};

const ROW_HEIGHT: f32 = 20.0;

/// Draws the tab.
pub fn ui(ui: &mut Ui, model: &mut Model, icons: &Icons, outbox: &mut Outbox) {
    ui.horizontal(|ui| {
        ui.label("Migration mode:");
        let before = model.mode;
        ui.radio_value(&mut model.mode, Mode::Shutdown, "Shutdown");
        ui.radio_value(
            &mut model.mode,
            Mode::ConcurrentMaintenance,
            "Concurrent Maintenance",
        );
        if model.mode != before {
            model.mode_changed();
        }
        if model.mode == Mode::Shutdown {
            ui.separator();
            ui.checkbox(&mut model.remote_shutdown, "Shut down the guest OS");
            ui.checkbox(&mut model.activate_after, "Activate on the destination");
            let mut group = model.processor_group.map_or(-1, i32::from);
            egui::ComboBox::from_label("Processor group")
                .selected_text(match model.processor_group {
                    None => "LPAR's own".to_owned(),
                    Some(g) => g.to_string(),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut group, -1, "LPAR's own");
                    for g in destination_groups(model) {
                        ui.selectable_value(&mut group, i32::from(g), g.to_string());
                    }
                });
            model.processor_group = u8::try_from(group).ok();
        }
        if ui.button("Refresh").clicked() {
            outbox.push(Command::Refresh);
        }
        if model.refreshing {
            ui.spinner();
        }
    });
    ui.separator();
    let buttons_height = 90.0;
    let tree_height = (ui.available_height() - buttons_height).max(120.0);
    ui.columns(2, |cols| {
        tree_ui(
            &mut cols[0],
            model,
            icons,
            Side::Source,
            tree_height,
            outbox,
        );
        tree_ui(
            &mut cols[1],
            model,
            icons,
            Side::Destination,
            tree_height,
            outbox,
        );
    });
    ui.separator();
    picks_ui(ui, model);
    ui.horizontal(|ui| {
        let request = model.check_request();
        if ui
            .add_enabled(request.is_some(), egui::Button::new("Show Config"))
            .on_disabled_hover_text("Pick a source LPAR and a destination first.")
            .clicked()
            && let Some(r) = request
        {
            outbox.push(Command::Check(r));
        }
        let allowed = model.migration_allowed();
        let execute = ui
            .add_enabled(allowed.is_ok(), egui::Button::new("Migration"))
            .on_disabled_hover_text(allowed.as_ref().err().cloned().unwrap_or_default());
        if execute.clicked()
            && let Some(command) = NavigatorApp::migration_command(model)
        {
            outbox.push(command);
        }
        let live_pick = model.source.is_some()
            && model.destination.is_some()
            && model.mode == Mode::ConcurrentMaintenance;
        if ui
            .add_enabled(
                live_pick && !model.rehearsal.running(),
                egui::Button::new("Rehearsal"),
            )
            .on_disabled_hover_text(
                "Pick a source LPAR and a destination HVM in Concurrent Maintenance mode.",
            )
            .clicked()
            && let (Some(s), Some(d)) = (&model.source, &model.destination)
        {
            model.open.rehearsal = true;
            outbox.push(Command::Rehearse {
                source: s.lpar_ref(),
                destination: d.hvm.clone(),
            });
        }
        if ui
            .add_enabled(
                model.source.is_some() && model.destination.is_some(),
                egui::Button::new("Connectivity Test"),
            )
            .clicked()
            && let (Some(s), Some(d)) = (&model.source, &model.destination)
        {
            model.open.connectivity = true;
            outbox.push(Command::ConnectivityTest {
                source: s.hvm.clone(),
                destination: d.hvm.clone(),
            });
        }
    });
    if let Err(why) = model.migration_allowed() {
        ui.label(RichText::new(why).weak());
    }
}

fn destination_groups(model: &Model) -> Vec<u8> {
    let Some(d) = &model.destination else {
        return Vec::new();
    };
    let Some(inv) = model.hvm(&d.hvm).and_then(|h| h.inventory.as_ref()) else {
        return Vec::new();
    };
    let mut groups: Vec<u8> = std::iter::once(0)
        .chain(inv.blade.processor_groups.iter().map(|g| g.id))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

fn picks_ui(ui: &mut Ui, model: &Model) {
    ui.horizontal(|ui| {
        ui.label("Source:");
        ui.strong(model.source.as_ref().map_or("—".to_owned(), |s| {
            format!("{}/{} (LPAR {})", s.hvm, s.name, s.number)
        }));
        ui.separator();
        ui.label("Destination:");
        ui.strong(
            model
                .destination
                .as_ref()
                .map_or("—".to_owned(), |d| match d.number {
                    Some(n) => format!("{} LPAR {n}", d.hvm),
                    None => format!("{} (Auto)", d.hvm),
                }),
        );
    });
}

fn tree_ui(
    ui: &mut Ui,
    model: &mut Model,
    icons: &Icons,
    side: Side,
    height: f32,
    outbox: &mut Outbox,
) {
    ui.heading(side.label());
    let rows = model.tree(side).to_vec();
    let mut clicked = None;
    let mut toggled = None;
    let mut evacuate = None;
    egui::ScrollArea::vertical()
        .id_salt(side.label())
        .max_height(height)
        .auto_shrink([false, false])
        .show_rows(ui, ROW_HEIGHT, rows.len(), |ui, range| {
            for row in &rows[range] {
                ui.horizontal(|ui| {
                    ui.add_space(f32::from(row.depth) * 16.0);
                    if let Some(open) = row.expanded {
                        let arrow = if open { "−" } else { "+" };
                        if ui
                            .small_button(arrow)
                            .on_hover_text(if open { "Collapse" } else { "Expand" })
                            .clicked()
                        {
                            toggled = Some(row.kind.clone());
                        }
                    }
                    ui.add(icons.image(row.icon, 16.0))
                        .on_hover_text(&row.hover);
                    let selected = is_selected(model, side, &row.kind);
                    // An HVM row takes a right-click on either tree (its context menu).
                    let enabled = row.selectable || matches!(row.kind, RowKind::Hvm(_));
                    let response = ui
                        .add_enabled(enabled, egui::Button::selectable(selected, &row.text))
                        .on_hover_text(&row.hover)
                        .on_disabled_hover_text(&row.hover);
                    let label = row.label.clone();
                    response.widget_info(|| {
                        egui::WidgetInfo::selected(egui::Role::Button, enabled, selected, &label)
                    });
                    if response.clicked() && row.selectable {
                        clicked = Some(row.kind.clone());
                    }
                    if let RowKind::Hvm(hvm) = &row.kind {
                        response.context_menu(|ui| {
                            if ui
                                .button("Evacuate…")
                                .on_hover_text(
                                    "Plan the policies that move every LPAR off this HVM",
                                )
                                .clicked()
                            {
                                evacuate = Some(hvm.clone());
                                ui.close();
                            }
                        });
                    }
                });
            }
        });
    if let Some(kind) = toggled {
        model.toggle(side, &kind);
    }
    if let Some(hvm) = evacuate {
        model.policies.evacuation = Some(EvacuationDialog::asked(&hvm));
        outbox.push(Command::PlanEvacuation(hvm));
    }
    if let Some(kind) = clicked {
        match (side, kind) {
            (Side::Source, RowKind::Lpar { hvm, number, name }) => {
                model.pick_source(SourcePick { hvm, number, name });
            }
            (Side::Destination, RowKind::Hvm(hvm) | RowKind::Auto(hvm)) => {
                model.pick_destination(Destination::auto(hvm));
            }
            (Side::Destination, RowKind::Free { hvm, number }) => {
                model.pick_destination(Destination {
                    hvm,
                    number: Some(number),
                });
            }
            _ => {}
        }
    }
}

fn is_selected(model: &Model, side: Side, kind: &RowKind) -> bool {
    match (side, kind) {
        (Side::Source, RowKind::Lpar { hvm, number, .. }) => model
            .source
            .as_ref()
            .is_some_and(|s| &s.hvm == hvm && s.number == *number),
        (Side::Destination, RowKind::Auto(hvm)) => model
            .destination
            .as_ref()
            .is_some_and(|d| &d.hvm == hvm && d.number.is_none()),
        (Side::Destination, RowKind::Free { hvm, number }) => model
            .destination
            .as_ref()
            .is_some_and(|d| &d.hvm == hvm && d.number == Some(*number)),
        _ => false,
    }
}
