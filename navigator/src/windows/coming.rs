//! The places of the Migration Policy and WWN Setting windows. They belong to the policy
//! runner and the storage array, which are not built yet; each window says so and what the
//! operator can use meanwhile, rather than offering buttons that do nothing.

use crate::model::Model;

/// Draws whichever of the two is open.
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
    let mut wwn = model.open.wwn_setting;
    egui::Window::new("WWN Setting")
        .open(&mut wwn)
        .default_size([520.0, 160.0])
        .show(ctx, |ui| {
            ui.label("WWN Setting (the storage array's host groups and LUN paths for each LPAR's WWPNs) comes with the storage array support, which is not part of this build.");
            ui.label("Meanwhile: WWPNs move with their LPAR on every migration, and Rollback WWN restores them after a failed move.");
        });
    model.open.wwn_setting = wwn;
}
