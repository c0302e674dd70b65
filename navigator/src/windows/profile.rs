//! Profile: the HVMs this manager manages, and registering one by address. The certificate
//! the address presents is fetched and its SHA-256 fingerprint shown; only after the operator
//! confirms it is the HVM's own is it pinned, with the token entered or imported from a fleet
//! profile (`lparmover::ops::register`, the profile written owner-only).

use egui::RichText;

use crate::app::Outbox;
use crate::command::Command;
use crate::model::profile::CertificateState;
use crate::model::{Model, Pending};
use crate::windows::config_viewer::ERROR_RED;

/// A text field with an accessibility label of its own (a label beside it, joined to it).
fn field(ui: &mut egui::Ui, label: &str, text: &mut String, password: bool) -> egui::Response {
    let shown = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .password(password)
            .desired_width(420.0),
    )
    .labelled_by(shown.id)
}

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let mut open = model.open.profile;
    egui::Window::new("Profile")
        .open(&mut open)
        .default_size([860.0, 520.0])
        .show(ctx, |ui| {
            ui.heading("Registered HVMs");
            egui::ScrollArea::vertical()
                .id_salt("registered")
                .max_height(200.0)
                .show(ui, |ui| {
                    egui::Grid::new("registered-hvms").striped(true).show(ui, |ui| {
                        for head in ["HVM", "Chassis", "Management address", "Pinned certificate (SHA-256)", ""] {
                            ui.strong(head);
                        }
                        ui.end_row();
                        for h in &model.registered {
                            ui.label(&h.name);
                            ui.label(&h.chassis);
                            ui.label(&h.url);
                            match &h.fingerprint {
                                Some(f) => ui.label(RichText::new(f).monospace().small()),
                                None => ui.colored_label(ERROR_RED, "unreadable: register it again"),
                            };
                            let idle = !model.profile_change.running()
                                && !model.current_move.as_ref().is_some_and(|m| m.running());
                            if ui
                                .add_enabled(idle, egui::Button::new(format!("Remove {}", h.name)).small())
                                .on_hover_text("The manager stops managing this HVM; its LPARs keep running.")
                                .clicked()
                            {
                                outbox.push(Command::Unregister(h.name.clone()));
                            }
                            ui.end_row();
                        }
                    });
                });
            ui.separator();
            ui.heading("Register an HVM");
            let form = &mut model.profile_form;
            ui.horizontal(|ui| {
                if field(ui, "Address", &mut form.url, false).changed() {
                    form.address_edited();
                }
                let fetch = form.fetch_allowed();
                if ui
                    .add_enabled(fetch.is_ok(), egui::Button::new("Fetch certificate"))
                    .clicked()
                    && let Ok(url) = fetch
                {
                    form.fetch_started(url.clone());
                    outbox.push(Command::FetchCertificate(url));
                }
            });
            match &form.certificate {
                CertificateState::NotFetched => {
                    ui.label(RichText::new("Fetch the certificate the address presents; nothing is trusted or sent until you confirm it.").weak());
                }
                CertificateState::Fetching(url) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!("Fetching the certificate of {url} …"));
                    });
                }
                CertificateState::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
                CertificateState::Seen(_) => {}
            }
            if let Some(seen) = form.seen().cloned() {
                ui.label(format!("{} presents a certificate with SHA-256 fingerprint", seen.url));
                ui.label(RichText::new(&seen.fingerprint).monospace().strong());
                ui.label(RichText::new("Compare it with the one the blade's console shows (`hvmsim fingerprint --state-dir DIR`). Pin it only if they are the same.").weak());
                ui.checkbox(&mut form.confirmed, "The fingerprint is the HVM's own: pin this certificate");
            }
            egui::Grid::new("register-form").num_columns(2).show(ui, |ui| {
                field(ui, "HVM name", &mut form.name, false);
                ui.end_row();
                field(ui, "Chassis (empty: the blade's own)", &mut form.chassis, false);
                ui.end_row();
                field(ui, "Token", &mut form.token, true);
                ui.end_row();
                field(ui, "Import token from fleet profile", &mut form.import_from, false);
                ui.end_row();
            });
            let import = form.import_request();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(import.is_ok(), egui::Button::new("Import token"))
                    .on_hover_text("Take the token the fleet profile holds for this address or name (hvmsim fleet writes one).")
                    .clicked()
                    && let Ok((fleet_profile, name, url)) = import
                {
                    outbox.push(Command::ImportToken { fleet_profile, name, url });
                }
                match &form.import_note {
                    Some(Ok(text)) => {
                        ui.label(text);
                    }
                    Some(Err(e)) => {
                        ui.colored_label(ERROR_RED, e);
                    }
                    None => {}
                }
            });
            let registration = model.profile_form.registration(&model.registered);
            ui.horizontal(|ui| {
                let enabled = registration.is_ok() && !model.profile_change.running();
                if ui.add_enabled(enabled, egui::Button::new("Register")).clicked()
                    && let Ok(r) = &registration
                {
                    outbox.push(Command::Register(r.clone()));
                }
                if let Err(why) = &registration {
                    ui.label(RichText::new(why).weak());
                }
            });
            match &model.profile_change {
                Pending::Idle => {}
                Pending::Running => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Checking the token with the HVM …");
                    });
                }
                Pending::Done(text) => {
                    ui.label(text);
                }
                Pending::Failed(e) => {
                    ui.colored_label(ERROR_RED, e);
                }
            }
        });
    model.open.profile = open;
}
