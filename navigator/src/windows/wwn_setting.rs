//! WWN Setting (seed ch. 3 "Registering/removing migration WWN"): every vFC of the fleet with
//! its WWPN and migration WWPN, the State (Vfc) and State (Mig) icons of tables 7-4 / 7-5, Add
//! and Delete of an LPAR's migration WWPNs, and Export CSV. The arrays come from the profile
//! (`storagecli array add`; `hvmsim fleet` registers the fleet's own with their saved login).

use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::storage::MigrationWwpnState;

use crate::app::{Icons, Outbox};
use crate::command::Command;
use crate::model::{Model, Pending, registration_icons};
use crate::windows::config_viewer::ERROR_RED;

/// Draws the WWN Setting window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, icons: &Icons, outbox: &mut Outbox) {
    let mut open = model.open.wwn_setting;
    let was_open = open;
    egui::Window::new("WWN Setting")
        .open(&mut open)
        .default_size([980.0, 360.0])
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label("Register Migration WWN Setting: the WWPN and migration WWPN of every vFC, and the host groups of the array port its FC cable reaches.");
                if ui.button("Update").clicked() {
                    outbox.push(Command::WwnStatus);
                    model.wwn_status = Pending::Running;
                }
            });
            let busy = model.wwn_change.running();
            match &model.wwn_status {
                Pending::Idle => {
                    outbox.push(Command::WwnStatus);
                    model.wwn_status = Pending::Running;
                }
                Pending::Running => {
                    ui.spinner();
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                Pending::Done(status) => {
                    egui::ScrollArea::vertical().max_height(260.0).show(ui, |ui| {
                        egui::Grid::new("wwn-setting").striped(true).show(ui, |ui| {
                            for h in [
                                "LPAR",
                                "Port",
                                "vfcID",
                                "State (Vfc)",
                                "WWPN",
                                "State (Mig)",
                                "Migration WWPN",
                                "Migration WWPN Nickname",
                                "Host groups",
                                "",
                            ] {
                                ui.strong(h);
                            }
                            ui.end_row();
                            let mut last_lpar = None;
                            for row in &status.rows {
                                let (vfc, mig) = registration_icons(row);
                                let lpar = format!("{}/{}", row.hvm, row.lpar_name);
                                ui.label(&lpar);
                                ui.label(row.port.to_string());
                                ui.label(row.vfc_id.get().to_string());
                                let unknown = row.unknown_because.as_deref().unwrap_or("unknown");
                                match vfc {
                                    Some(i) => {
                                        ui.add(icons.image(i, 16.0)).on_hover_text(i.hover());
                                    }
                                    None => {
                                        ui.label("?").on_hover_text(unknown);
                                    }
                                }
                                ui.label(format!("{} ({})", row.wwpn, row.wwpn_state.label()));
                                match mig {
                                    Some(i) => {
                                        ui.add(icons.image(i, 16.0)).on_hover_text(i.hover());
                                    }
                                    None => {
                                        ui.label("?").on_hover_text(unknown);
                                    }
                                }
                                ui.label(format!(
                                    "{} ({})",
                                    row.migration_wwpn,
                                    row.migration_state.label()
                                ));
                                ui.label(&row.migration_nickname);
                                ui.label(row.host_groups.join(", "));
                                // One button per LPAR: the operation covers all its vFCs.
                                if last_lpar.as_ref() != Some(&lpar) {
                                    let target = LparRef {
                                        hvm: row.hvm.clone(),
                                        lpar: LparSelector::Number(row.lpar),
                                    };
                                    let lpar_rows = status.rows.iter().filter(|r| {
                                        r.hvm == row.hvm && r.lpar == row.lpar
                                    });
                                    let states: Vec<MigrationWwpnState> =
                                        lpar_rows.map(|r| r.migration_state).collect();
                                    if states.contains(&MigrationWwpnState::Unregistered)
                                        && !states.contains(&MigrationWwpnState::Unregistrable)
                                    {
                                        if ui
                                            .add_enabled(!busy, egui::Button::new(format!("Add {lpar}")))
                                            .clicked()
                                        {
                                            outbox.push(Command::ChangeMigrationWwpns {
                                                lpar: target,
                                                register: true,
                                            });
                                            model.wwn_change = Pending::Running;
                                        }
                                    } else if states.iter().all(|s| *s == MigrationWwpnState::Registered)
                                    {
                                        if ui
                                            .add_enabled(!busy, egui::Button::new(format!("Delete {lpar}")))
                                            .clicked()
                                        {
                                            outbox.push(Command::ChangeMigrationWwpns {
                                                lpar: target,
                                                register: false,
                                            });
                                            model.wwn_change = Pending::Running;
                                        }
                                    } else {
                                        ui.label("");
                                    }
                                    last_lpar = Some(lpar);
                                } else {
                                    ui.label("");
                                }
                                ui.end_row();
                            }
                        });
                    });
                    for (hvm, e) in &status.unreachable {
                        ui.colored_label(ERROR_RED, format!("{hvm}: not answering ({e})"));
                    }
                }
            }
            outcome(ui, &model.wwn_change);
            ui.separator();
            ui.horizontal(|ui| {
                ui.label("CSV file");
                ui.text_edit_singleline(&mut model.wwn_csv_path);
                if ui
                    .add_enabled(!model.wwn_csv.running(), egui::Button::new("Export CSV"))
                    .clicked()
                {
                    outbox.push(Command::ExportWwnCsv(model.wwn_csv_path.clone().into()));
                    model.wwn_csv = Pending::Running;
                }
            });
            outcome(ui, &model.wwn_csv);
        });
    if open && !was_open {
        model.wwn_status = Pending::Idle;
    }
    model.open.wwn_setting = open;
}

/// What the last change or export said: its words, its error in red, or a spinner meanwhile.
fn outcome(ui: &mut egui::Ui, pending: &Pending<String>) {
    match pending {
        Pending::Done(text) => {
            ui.label(text);
        }
        Pending::Failed(e) => {
            ui.colored_label(ERROR_RED, e);
        }
        Pending::Running => {
            ui.spinner();
        }
        Pending::Idle => {}
    }
}
