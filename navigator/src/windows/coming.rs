//! The place of the Migration Policy window. It belongs to the policy runner, which is not
//! built yet; the window says so and what the operator can use meanwhile, rather than offering
//! buttons that do nothing.

use crate::model::Model;

/// Draws it when open.
pub fn show(ctx: &egui::Context, model: &mut Model) {
    let mut policy = model.open.policy;
    egui::Window::new("Migration Policy")
        .open(&mut policy)
        .default_size([520.0, 160.0])
        .show(ctx, |ui| {
            ui.label("Saved migration policies (batches of moves run at a set time, each rehearsed and checked first) come with the policy runner, which is not part of this build.");
            ui.label("Meanwhile: move LPARs one at a time from the Migration tab, and prove a plan with Rehearsal and Connectivity Test.");
        });
    model.open.policy = policy;
}
