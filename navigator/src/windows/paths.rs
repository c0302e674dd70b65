//! Migration Path Setting: each HVM's migration paths (name, primary use, NIC segment, IPv4,
//! mask, VLAN), set and removed through the blade's migration-path API (`lparmover::paths`,
//! the same code as `lparmover path set|remove`).

use egui::RichText;

use crate::app::Outbox;
use crate::command::Command;
use crate::model::{Model, Pending};
use crate::windows::config_viewer::ERROR_RED;

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.path_setting;
    egui::Window::new("Migration Path Setting")
        .open(&mut open)
        .default_size([820.0, 420.0])
        .show(ctx, |ui| {
            egui::ScrollArea::vertical().max_height(260.0).show(ui, |ui| {
                egui::Grid::new("paths").striped(true).show(ui, |ui| {
                    for head in ["HVM", "Name", "Primary", "Segment", "IPv4", "Mask", "VLAN", "Management", ""] {
                        ui.strong(head);
                    }
                    ui.end_row();
                    for h in &model.hvms {
                        let Some(inv) = &h.inventory else {
                            ui.label(&h.name);
                            ui.label(h.error.as_deref().unwrap_or("no answer yet"));
                            ui.end_row();
                            continue;
                        };
                        for p in &inv.blade.hvm.migration_paths {
                            ui.label(&h.name);
                            ui.label(&p.name);
                            ui.label(if p.primary { "primary" } else { "" });
                            ui.label(p.segment.to_string());
                            ui.label(p.ip.to_string());
                            ui.label(format!("{} (/{})", p.subnet_mask(), p.prefix));
                            ui.label(p.vlan.map_or("untagged".to_owned(), |v| v.to_string()));
                            ui.label(inv.blade.hvm.management.ip.to_string());
                            ui.horizontal(|ui| {
                                if ui.small_button("Edit").clicked() {
                                    model.path_form = crate::model::PathForm {
                                        hvm: h.name.clone(),
                                        name: p.name.clone(),
                                        segment: p.segment.to_string(),
                                        ip: p.ip.to_string(),
                                        prefix: p.prefix.to_string(),
                                        vlan: p.vlan.map_or(String::new(), |v| v.to_string()),
                                        primary: p.primary,
                                    };
                                }
                                if ui
                                    .add_enabled(!model.path_change.running(), egui::Button::new("Remove").small())
                                    .clicked()
                                {
                                    outbox.push(Command::RemovePath {
                                        hvm: h.name.clone(),
                                        name: p.name.clone(),
                                    });
                                }
                            });
                            ui.end_row();
                        }
                    }
                });
            });
            ui.separator();
            let f = &mut model.path_form;
            egui::Grid::new("path-form").num_columns(2).show(ui, |ui| {
                ui.label("HVM");
                egui::ComboBox::from_id_salt("path-hvm")
                    .selected_text(if f.hvm.is_empty() { "pick one" } else { &f.hvm })
                    .show_ui(ui, |ui| {
                        for h in &model.hvms {
                            ui.selectable_value(&mut f.hvm, h.name.clone(), &h.name);
                        }
                    });
                ui.end_row();
                for (label, text) in [
                    ("Name", &mut f.name),
                    ("NIC segment", &mut f.segment),
                    ("IPv4 address", &mut f.ip),
                    ("Prefix", &mut f.prefix),
                    ("VLAN (empty: untagged)", &mut f.vlan),
                ] {
                    ui.label(label);
                    ui.text_edit_singleline(text);
                    ui.end_row();
                }
                ui.label("Primary use");
                ui.checkbox(&mut f.primary, "migrations use this path");
                ui.end_row();
            });
            let parsed = model.path_form.path();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(parsed.is_ok() && !model.path_change.running(), egui::Button::new("Set"))
                    .clicked()
                    && let Ok(path) = &parsed
                {
                    outbox.push(Command::SetPath {
                        hvm: model.path_form.hvm.clone(),
                        path: path.clone(),
                    });
                }
                if let Err(why) = &parsed {
                    ui.label(RichText::new(why).weak());
                }
            });
            match &model.path_change {
                Pending::Idle => {}
                Pending::Running => {
                    ui.spinner();
                }
                Pending::Done(text) => {
                    ui.label(text);
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
            }
            ui.label(RichText::new("The HVM checks every field (segment on a shared NIC port, address free and not the management path, one primary) and changes nothing when one is wrong; a move running on it refuses the change.").weak());
        });
    model.open.path_setting = open;
}
