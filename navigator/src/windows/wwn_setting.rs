//! WWN Setting (seed ch. 3 "Registering/removing migration WWN"): the Storage Selection (the
//! arrays of the profile, with Add Storage and Password Setting), every vFC of the fleet with
//! its WWPN and migration WWPN, the State (Vfc) and State (Mig) icons of tables 7-4 / 7-5, Add
//! and Delete of an LPAR's migration WWPNs, a migration WWPN's nickname (with Default), and
//! Export CSV. All of it through `lparmover::ops::{storage, arrays}`, as storagecli and
//! `lparmover wwn` do.

use lparmover::fleetview::{LparRef, LparSelector};
use lparmover::storage::MigrationWwpnState;

use crate::app::{Icons, Outbox};
use crate::command::Command;
use crate::model::storage::{NicknameEdit, PasswordForm};
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
            storage_selection(ui, model, outbox);
            ui.separator();
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
                    let mut model_nickname = None;
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
                                ui.horizontal(|ui| {
                                    ui.label(&row.migration_nickname);
                                    if row.migration_state == MigrationWwpnState::Registered
                                        && ui
                                            .add_enabled(!busy, egui::Button::new("Nickname").small())
                                            .on_hover_text(format!("Give the migration WWPN of {lpar} vFC {} a nickname", row.port))
                                            .clicked()
                                    {
                                        model_nickname = Some(NicknameEdit {
                                            lpar: LparRef {
                                                hvm: row.hvm.clone(),
                                                lpar: LparSelector::Number(row.lpar),
                                            },
                                            label: lpar.clone(),
                                            port: row.port,
                                            text: row.migration_nickname.clone(),
                                            default: lparmover::ops::storage::default_nickname(&row.lpar_name, row.port),
                                        });
                                    }
                                });
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
                    if model_nickname.is_some() {
                        model.storage.nickname = model_nickname;
                    }
                }
            }
            nickname_editor(ui, model, outbox);
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
        model.storage.arrays = Pending::Idle;
    }
    model.open.wwn_setting = open;
    if open {
        add_storage(ctx, model, outbox);
        password_setting(ctx, model, outbox);
    }
}

/// A text field with an accessibility label of its own.
fn field(ui: &mut egui::Ui, label: &str, text: &mut String, password: bool) -> egui::Response {
    let shown = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .password(password)
            .desired_width(300.0),
    )
    .labelled_by(shown.id)
}

/// Storage Selection: the arrays the profile holds and what they answer.
fn storage_selection(ui: &mut egui::Ui, model: &mut Model, outbox: &mut Outbox) {
    ui.horizontal(|ui| {
        ui.strong("Storage Selection");
        if ui.button("Add Storage").clicked() {
            model.storage.add.open = true;
        }
        let rows = match &model.storage.arrays {
            Pending::Done(rows) => Some(rows.clone()),
            _ => None,
        };
        if ui
            .add_enabled(
                rows.as_ref().is_some_and(|r| !r.is_empty()),
                egui::Button::new("Password Setting"),
            )
            .on_hover_text(
                "The user ID and password of each protected array (Storage Password Setting)",
            )
            .clicked()
            && let Some(rows) = rows
        {
            model.storage.password = PasswordForm::open_for(&rows);
        }
    });
    match &model.storage.arrays {
        Pending::Idle => {
            outbox.push(Command::ListArrays);
            model.storage.arrays = Pending::Running;
        }
        Pending::Running => {
            ui.spinner();
        }
        Pending::Failed(e) => {
            ui.colored_label(ERROR_RED, e);
        }
        Pending::Done(rows) if rows.is_empty() => {
            ui.label("No storage array is registered: Add Storage, or `storagecli array add`.");
        }
        Pending::Done(rows) => {
            egui::Grid::new("storage-selection")
                .striped(true)
                .show(ui, |ui| {
                    for h in [
                        "Array",
                        "Model",
                        "Serial",
                        "Controllers",
                        "Security",
                        "Login",
                        "Address",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in rows {
                        ui.label(&r.name);
                        match &r.info {
                            Ok(i) => {
                                ui.label(&i.model);
                                ui.label(&i.serial);
                                ui.label(
                                    i.controllers
                                        .iter()
                                        .map(|c| format!("CTL{} {}", c.number, c.ip))
                                        .collect::<Vec<_>>()
                                        .join(", "),
                                );
                                ui.label(i.security.label());
                            }
                            Err(e) => {
                                ui.colored_label(ERROR_RED, "not answering")
                                    .on_hover_text(e);
                                for _ in 0..3 {
                                    ui.label("");
                                }
                            }
                        }
                        ui.label(match &r.saved_user {
                            Some(u) => format!("as {u}"),
                            None => "none".to_owned(),
                        });
                        ui.label(&r.url);
                        ui.end_row();
                    }
                });
        }
    }
    outcome(ui, &model.storage.add.result);
    outcome(ui, &model.storage.password.result);
}

/// The nickname of one migration WWPN, being edited.
fn nickname_editor(ui: &mut egui::Ui, model: &mut Model, outbox: &mut Outbox) {
    let Some(edit) = &mut model.storage.nickname else {
        return;
    };
    let mut close = false;
    ui.horizontal(|ui| {
        field(
            ui,
            &format!(
                "Migration WWPN nickname of {} vFC {}",
                edit.label, edit.port
            ),
            &mut edit.text,
            false,
        );
        if ui.button("Default").clicked() {
            edit.text = edit.default.clone();
        }
        let problem = lparmover::api::array::validate_nickname(&edit.text).err();
        if ui
            .add_enabled(problem.is_none(), egui::Button::new("Execute"))
            .clicked()
        {
            outbox.push(Command::RenameMigrationWwpn {
                lpar: edit.lpar.clone(),
                port: edit.port,
                nickname: Some(edit.text.clone()),
            });
            model.wwn_change = Pending::Running;
            close = true;
        }
        if ui.button("Cancel").clicked() {
            close = true;
        }
        if let Some(p) = problem {
            ui.colored_label(ERROR_RED, p);
        }
    });
    if close {
        model.storage.nickname = None;
    }
}

/// Add Storage: search an address, compare the certificate, give the token.
fn add_storage(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.storage.add.open;
    egui::Window::new("Add Storage")
        .open(&mut open)
        .default_size([640.0, 300.0])
        .show(ctx, |ui| {
            let form = &mut model.storage.add;
            ui.label("The IP address of a controller of the array (its API port is 40200 unless you give another).");
            ui.horizontal(|ui| {
                field(ui, "IP address", &mut form.address, false);
                let searching = matches!(form.certificate, crate::model::profile::CertificateState::Fetching(_));
                if ui.add_enabled(!searching, egui::Button::new("Search")).clicked() {
                    match form.search() {
                        Ok(url) => outbox.push(Command::SearchArray(url)),
                        Err(e) => form.certificate = crate::model::profile::CertificateState::Failed(e),
                    }
                }
            });
            match &form.certificate {
                crate::model::profile::CertificateState::Fetching(url) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!("Asking {url} …"));
                    });
                }
                crate::model::profile::CertificateState::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                _ => {}
            }
            if let Some(seen) = form.seen().cloned() {
                ui.label(format!("{} presents a certificate with SHA-256 fingerprint", seen.url));
                ui.label(egui::RichText::new(&seen.fingerprint).monospace().strong());
                ui.checkbox(&mut form.confirmed, "The fingerprint is the array's own: pin this certificate");
            }
            egui::Grid::new("add-storage").num_columns(2).show(ui, |ui| {
                field(ui, "Token", &mut form.token, true);
                ui.end_row();
                field(ui, "Import token from fleet profile", &mut form.import_from, false);
                ui.end_row();
            });
            ui.horizontal(|ui| {
                let url = form.seen().map(|s| s.url.clone());
                if ui
                    .add_enabled(url.is_some() && !form.import_from.trim().is_empty(), egui::Button::new("Import token"))
                    .clicked()
                    && let Some(url) = url
                {
                    outbox.push(Command::ImportArrayToken {
                        fleet_profile: form.import_from.trim().into(),
                        url,
                    });
                }
                match &form.import_note {
                    Some(Ok(t)) => {
                        ui.label(t);
                    }
                    Some(Err(e)) => {
                        ui.colored_label(ERROR_RED, e);
                    }
                    None => {}
                }
            });
            let submission = form.submission();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(submission.is_ok() && !form.result.running(), egui::Button::new("Add"))
                    .clicked()
                    && let Ok((certificate, token)) = submission.clone()
                {
                    outbox.push(Command::AddArray { certificate, token });
                    form.result = Pending::Running;
                }
                if let Err(why) = &submission {
                    ui.label(egui::RichText::new(why).weak());
                }
            });
            outcome(ui, &form.result);
        });
    // Closed by its own button, or by a successful Add (which clears the form).
    model.storage.add.open = open && model.storage.add.open;
}

/// Storage Password Setting: per array its security type, user ID and password.
fn password_setting(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.storage.password.open;
    egui::Window::new("Storage Password Setting")
        .open(&mut open)
        .default_size([640.0, 240.0])
        .show(ctx, |ui| {
            let form = &mut model.storage.password;
            ui.label("Enter the same user ID and password as set on each array you manage; leave the others empty.");
            for row in &mut form.rows {
                ui.horizontal(|ui| {
                    ui.strong(&row.array);
                    ui.label(format!(
                        "Security Type: {}",
                        row.security.map_or("not answering", |s| s.label())
                    ));
                });
                let protected = row.security != Some(lparmover::model::SecurityMode::None);
                ui.add_enabled_ui(protected, |ui| {
                    ui.horizontal(|ui| {
                        let user = ui.label(format!("User ID of {}", row.array));
                        ui.add(egui::TextEdit::singleline(&mut row.user).desired_width(160.0))
                            .labelled_by(user.id);
                        let password = ui.label(format!("Password of {}", row.array));
                        ui.add(
                            egui::TextEdit::singleline(&mut row.password)
                                .password(true)
                                .desired_width(160.0),
                        )
                        .labelled_by(password.id);
                    });
                });
                ui.separator();
            }
            ui.checkbox(&mut form.save, "Save password setting (in the profile, readable by you only)");
            let logins = form.logins();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(logins.is_ok() && !form.result.running(), egui::Button::new("OK"))
                    .clicked()
                    && let Ok(logins) = logins.clone()
                {
                    outbox.push(Command::SetArrayLogins { logins, save: form.save });
                    form.result = Pending::Running;
                }
                if let Err(why) = &logins {
                    ui.label(egui::RichText::new(why).weak());
                }
            });
            outcome(ui, &form.result);
        });
    model.storage.password.open = open && model.storage.password.open;
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
