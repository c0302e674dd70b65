//! Migration Path Setting: each HVM's migration paths as its inventory reports them.
//!
//! Editing arrives with the blade's migration-path API; until then the window shows what each
//! HVM has and says how paths are set today.

use crate::model::Model;

/// Draws the window when open.
pub fn show(ctx: &egui::Context, model: &mut Model) {
    let mut open = model.open.path_setting;
    egui::Window::new("Migration Path Setting")
        .open(&mut open)
        .show(ctx, |ui| {
            egui::Grid::new("paths").striped(true).show(ui, |ui| {
                for head in ["HVM", "Segment", "IPv4", "Prefix", "Management path"] {
                    ui.strong(head);
                }
                ui.end_row();
                for h in &model.hvms {
                    let Some(inv) = &h.inventory else {
                        ui.label(&h.name);
                        ui.label("—");
                        ui.label(h.error.as_deref().unwrap_or("no answer yet"));
                        ui.end_row();
                        continue;
                    };
                    for p in &inv.blade.hvm.migration_paths {
                        ui.label(&h.name);
                        ui.label(p.segment.to_string());
                        ui.label(p.ip.to_string());
                        ui.label(format!("/{}", p.prefix));
                        ui.label(inv.blade.hvm.management.ip.to_string());
                        ui.end_row();
                    }
                }
            });
            ui.label("Paths are read-only here for now: they come from the fleet file.");
        });
    model.open.path_setting = open;
}
