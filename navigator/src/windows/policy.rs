//! Migration Policy (ch. 3 "Policy migration"): pick a saved policy, New / Modify / Delete it,
//! add the current pick as an entry with Add [Shutdown] or Add [Concurrent Maintenance],
//! reorder with Up / Down, Save / Save as, Release; Execute runs it through the policy runner
//! with table 7-3's icon per entry, Stop → Continue / End, and on a failure the Retry / Skip /
//! End dialog with Show Config for the failed entry.

use egui::{Color32, RichText};
use lparmover::model::Mode;
use lparmover::ops::CheckRequest;
use policy::runner::{Decision, Resume};

use crate::app::{Icons, Outbox};
use crate::command::Command;
use crate::model::policies::{Draft, PolicyRun, RunQuestion};
use crate::model::{Model, Pending};

const ERROR_RED: Color32 = Color32::from_rgb(200, 40, 40);

/// Draws the window (and its dialogs) when open.
pub fn show(ctx: &egui::Context, model: &mut Model, icons: &Icons, outbox: &mut Outbox) {
    let mut open = model.open.policy;
    if open && matches!(model.policies.saved, Pending::Idle) {
        model.policies.saved = Pending::Running;
        outbox.push(Command::ListPolicies);
    }
    // On the right, so the Source and Destination trees its Add buttons take the pick from
    // stay in view.
    egui::Window::new("Migration Policy")
        .open(&mut open)
        .default_pos([700.0, 60.0])
        .default_size([660.0, 520.0])
        .show(ctx, |ui| {
            chooser(ui, model, outbox);
            ui.separator();
            if model.policies.draft.is_some() {
                editor(ui, model, outbox);
            } else if let Some(p) = model.policies.selected_policy() {
                ui.label(format!("Comment: {}", p.comment));
                ui.label(format!(
                    "{} mode, {} entr{}, at most {} at once, on error: {}",
                    p.mode,
                    p.entries.len(),
                    if p.entries.len() == 1 { "y" } else { "ies" },
                    p.limits.concurrency.total,
                    p.on_error
                ));
                if model
                    .policies
                    .run
                    .as_ref()
                    .is_none_or(|r| r.name != p.name.as_str())
                {
                    for (i, e) in p.entries.iter().enumerate() {
                        ui.label(format!("{}. {}", i + 1, e.describe()));
                    }
                }
            }
            if let Some(run) = &model.policies.run {
                ui.separator();
                run_view(ui, run, icons);
            }
            if let Some(note) = &model.policies.note {
                ui.separator();
                match note {
                    Ok(said) => ui.label(said),
                    Err(e) => ui.colored_label(ERROR_RED, e),
                };
            }
        });
    model.open.policy = open;
    question_dialog(ctx, model, outbox);
}

fn chooser(ui: &mut egui::Ui, model: &mut Model, outbox: &mut Outbox) {
    let move_running = model.current_move.as_ref().is_some_and(|m| m.running());
    let editing = model.policies.draft.is_some();
    ui.horizontal(|ui| {
        let names: Vec<(String, bool)> = match &model.policies.saved {
            Pending::Done(saved) => saved
                .iter()
                .map(|s| (s.name.clone(), s.policy.is_ok()))
                .collect(),
            _ => Vec::new(),
        };
        let shown = model
            .policies
            .selected
            .clone()
            .unwrap_or_else(|| "(none)".into());
        ui.add_enabled_ui(!editing, |ui| {
            egui::ComboBox::from_label("Policy")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    for (name, valid) in &names {
                        let label = if *valid {
                            name.clone()
                        } else {
                            format!("{name} (not valid)")
                        };
                        ui.selectable_value(
                            &mut model.policies.selected,
                            Some(name.clone()),
                            label,
                        );
                    }
                });
        });
        if ui.add_enabled(!editing, egui::Button::new("New")).clicked() {
            model.policies.new_name = Some(String::new());
        }
        let selected = model.policies.selected_policy().cloned();
        if ui
            .add_enabled(!editing && selected.is_some(), egui::Button::new("Modify"))
            .clicked()
            && let Some(p) = selected.clone()
        {
            model.policies.draft = Some(Draft::of(p));
        }
        if ui
            .add_enabled(
                !editing && model.policies.selected.is_some(),
                egui::Button::new("Delete policy"),
            )
            .clicked()
            && let Some(name) = model.policies.selected.take()
        {
            outbox.push(Command::DeletePolicy(name));
        }
        let refused = model.policies.execute_refused(move_running);
        let execute = ui
            .add_enabled(refused.is_none(), egui::Button::new("Execute"))
            .on_disabled_hover_text(refused.unwrap_or_default());
        if execute.clicked()
            && let Some(p) = selected
        {
            model.policies.run = Some(PolicyRun::starting(&p));
            model.policies.note = None;
            outbox.push(Command::RunPolicy(Box::new(p)));
        }
        let running = model.policies.run.as_ref().is_some_and(PolicyRun::running);
        let stopping = model.policies.run.as_ref().is_some_and(|r| r.stopping);
        if ui
            .add_enabled(running && !stopping, egui::Button::new("Stop"))
            .on_hover_text("Stops after the running entries finish; then Continue or End.")
            .clicked()
        {
            outbox.push(Command::StopPolicy);
        }
        if ui.button("Reload").clicked() {
            model.policies.saved = Pending::Running;
            outbox.push(Command::ListPolicies);
        }
    });
    if model.policies.new_name.is_some() {
        ui.horizontal(|ui| {
            ui.label("New policy name:");
            if let Some(name) = &mut model.policies.new_name {
                ui.text_edit_singleline(name);
            }
            if ui.button("Create policy").clicked() {
                let mode = model.mode;
                if let Err(e) = model.policies.start_new(mode) {
                    model.policies.note = Some(Err(e));
                }
            }
            if ui.button("Cancel new policy").clicked() {
                model.policies.new_name = None;
            }
        });
    }
}

fn editor(ui: &mut egui::Ui, model: &mut Model, outbox: &mut Outbox) {
    // By name: a policy outlives LPAR numbers (an earlier entry or a move renumbers them).
    let pick = model
        .source
        .as_ref()
        .zip(model.destination.clone())
        .map(|(s, d)| {
            let source = lparmover::fleetview::LparRef {
                hvm: s.hvm.clone(),
                lpar: lparmover::fleetview::LparSelector::Name(s.name.clone()),
            };
            (source, d)
        });
    let Some(draft) = &mut model.policies.draft else {
        return;
    };
    ui.heading(format!(
        "Policy Information: {}{}",
        draft.policy.name,
        if draft.dirty { " (not saved)" } else { "" }
    ));
    ui.horizontal(|ui| {
        ui.label("Comment");
        if ui.text_edit_singleline(&mut draft.policy.comment).changed() {
            draft.dirty = true;
        }
    });
    let mut note = None;
    ui.horizontal(|ui| {
        let hint = "Adds the LPAR picked in the Source tree and the destination picked in the Destination tree of the Migration tab.";
        for (label, mode) in [
            ("Add [Shutdown]", Mode::Shutdown),
            ("Add [Concurrent Maintenance]", Mode::ConcurrentMaintenance),
        ] {
            let clicked = ui
                .add_enabled(pick.is_some(), egui::Button::new(label))
                .on_hover_text(hint)
                .on_disabled_hover_text(hint)
                .clicked();
            if clicked && let Some((source, destination)) = pick.clone() {
                note = draft.add(mode, source, destination).err().map(Err);
            }
        }
    });
    ui.label(format!("{} mode entries:", draft.policy.mode));
    egui::ScrollArea::vertical().max_height(200.0).show(ui, |ui| {
        for (i, e) in draft.policy.entries.iter().enumerate() {
            if ui
                .selectable_label(draft.row == Some(i), format!("Entry {}: {}", i + 1, e.describe()))
                .clicked()
            {
                draft.row = Some(i);
            }
        }
        if draft.policy.entries.is_empty() {
            ui.label("No entries yet: pick a source and a destination on the Migration tab, then Add.");
        }
    });
    let picked = draft.row.is_some();
    let mut save = None;
    let mut release = false;
    ui.horizontal(|ui| {
        if ui
            .add_enabled(picked, egui::Button::new("Delete"))
            .clicked()
        {
            draft.delete();
        }
        if ui.add_enabled(picked, egui::Button::new("Up")).clicked() {
            draft.shift(false);
        }
        if ui.add_enabled(picked, egui::Button::new("Down")).clicked() {
            draft.shift(true);
        }
        ui.separator();
        if ui.button("Save").clicked() {
            save = Some((draft.policy.clone(), true));
        }
        if ui.button("Save as").clicked() {
            model.policies.save_as = Some(format!("{}-copy", draft.policy.name));
        }
        if ui
            .button("Release")
            .on_hover_text("Ends editing; unsaved changes are dropped.")
            .clicked()
        {
            release = true;
        }
    });
    if let Some(name) = &mut model.policies.save_as {
        let mut chosen = None;
        ui.horizontal(|ui| {
            ui.label("Save as policy name:");
            ui.text_edit_singleline(name);
            if ui.button("Save under this name").clicked() {
                chosen = Some(name.trim().to_owned());
            }
        });
        if let Some(name) = chosen {
            match policy::PolicyName::new(&name) {
                Ok(n) => {
                    draft.policy.name = n;
                    save = Some((draft.policy.clone(), false));
                    model.policies.save_as = None;
                }
                Err(e) => note = Some(Err(e)),
            }
        }
    }
    if let Some((policy, replace)) = save {
        outbox.push(Command::SavePolicy {
            policy: Box::new(policy),
            replace,
        });
    }
    if release {
        model.policies.draft = None;
        model.policies.save_as = None;
    }
    if note.is_some() {
        model.policies.note = note;
    }
}

fn run_view(ui: &mut egui::Ui, run: &PolicyRun, icons: &Icons) {
    let state = match &run.finished {
        Pending::Running if run.stopping => "stopping after the running entries".to_owned(),
        Pending::Running => "running".to_owned(),
        Pending::Done(r) => r.outcome.map_or("ended", |o| o.label()).to_owned(),
        Pending::Failed(e) => format!("could not run: {e}"),
        Pending::Idle => String::new(),
    };
    ui.label(RichText::new(format!("Policy migration {}: {state}", run.name)).strong());
    if let Pending::Done(report) = &run.finished {
        ui.label(if report.all_completed() {
            "Migration completed!".to_owned()
        } else {
            format!(
                "{} of {} entries completed.",
                report.count(policy::report::EntryResult::Completed),
                report.entries.len()
            )
        });
    }
    egui::Grid::new("policy-run").striped(true).show(ui, |ui| {
        for (i, row) in run.rows.iter().enumerate() {
            ui.add(icons.image(row.state.icon(), 16.0))
                .on_hover_text(row.state.label());
            ui.label(format!(
                "{}. {}: {}",
                i + 1,
                row.describe,
                row.state.label()
            ));
            // A catalogue error is long: the first words here, the whole of it on hover.
            let short: String = row.note.chars().take(90).collect();
            if short.len() < row.note.len() {
                ui.label(format!("{short}…")).on_hover_text(&row.note);
            } else {
                ui.label(&row.note);
            }
            ui.end_row();
        }
    });
}

fn question_dialog(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let Some(run) = &model.policies.run else {
        return;
    };
    let Some(question) = run.question.clone() else {
        return;
    };
    let mut answered = false;
    let mut show_config = None;
    match &question {
        RunQuestion::Failed {
            entry,
            error,
            action,
        } => {
            let failed = run.entries.get(*entry).cloned();
            let mode = run.mode;
            egui::Window::new("Policy migration failed")
                .collapsible(false)
                .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
                .default_width(560.0)
                .show(ctx, |ui| {
                    ui.label(format!(
                        "Entry {} ({}) failed:",
                        entry + 1,
                        failed.as_ref().map_or_else(String::new, |e| e.describe())
                    ));
                    ui.colored_label(ERROR_RED, error);
                    if let Some(a) = action {
                        ui.label(format!("Action: {a}"));
                    }
                    ui.label("Fix the cause and Retry, Skip this entry, or End the policy migration here.");
                    ui.horizontal(|ui| {
                        for (label, decision) in [
                            ("Retry", Decision::Retry),
                            ("Skip", Decision::Skip),
                            ("End", Decision::End),
                        ] {
                            if ui.button(label).clicked() {
                                outbox.push(Command::AnswerPolicyFailure(decision));
                                answered = true;
                            }
                        }
                        if ui.button("Show Config for this entry").clicked()
                            && let Some(e) = &failed
                        {
                            show_config = Some(CheckRequest {
                                source: e.source.clone(),
                                destination: e.destination.clone(),
                                mode,
                                processor_group: None,
                            });
                        }
                    });
                });
        }
        RunQuestion::Stopped => {
            egui::Window::new("Policy migration stopped")
                .collapsible(false)
                .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
                .show(ctx, |ui| {
                    ui.label("The running entries finished. Continue with the next entries, or End the policy migration?");
                    ui.horizontal(|ui| {
                        if ui.button("Continue").clicked() {
                            outbox.push(Command::AnswerPolicyStop(Resume::Continue));
                            answered = true;
                        }
                        if ui.button("End").clicked() {
                            outbox.push(Command::AnswerPolicyStop(Resume::End));
                            answered = true;
                        }
                    });
                });
        }
    }
    if let Some(request) = show_config {
        model.check_started(request.clone());
        outbox.push(Command::Check(request));
    }
    if answered && let Some(run) = &mut model.policies.run {
        run.question = None;
    }
}

/// Evacuate… (an HVM's context menu in the trees): which LPARs go where and which cannot
/// leave (with the check rows that refuse each candidate); Save and open writes the policies
/// and shows them in this window, where Execute runs them.
pub fn show_evacuation(ctx: &egui::Context, model: &mut Model, outbox: &mut Outbox) {
    let Some(dialog) = &model.policies.evacuation else {
        return;
    };
    let mut open = true;
    let mut accept = false;
    let mut cancel = false;
    egui::Window::new(format!("Evacuate {}", dialog.hvm))
        .open(&mut open)
        .collapsible(false)
        .default_pos([260.0, 120.0])
        .default_size([560.0, 360.0])
        .show(ctx, |ui| match &dialog.plan {
            Pending::Idle | Pending::Running => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!(
                        "Checking every other HVM for each LPAR of {}…",
                        dialog.hvm
                    ));
                });
            }
            Pending::Failed(e) => {
                ui.colored_label(ERROR_RED, format!("No plan: {e}"));
                if ui.button("Close").clicked() {
                    cancel = true;
                }
            }
            Pending::Done(plan) => {
                egui::ScrollArea::vertical()
                    .max_height(300.0)
                    .show(ui, |ui| {
                        for p in [&plan.live, &plan.shutdown].into_iter().flatten() {
                            ui.strong(format!(
                                "Policy {} ({} mode, {} entr{})",
                                p.name,
                                p.mode,
                                p.entries.len(),
                                if p.entries.len() == 1 { "y" } else { "ies" }
                            ));
                            for (i, e) in p.entries.iter().enumerate() {
                                ui.label(format!("{}. {}", i + 1, e.describe()));
                            }
                        }
                        for u in &plan.unplaced {
                            ui.colored_label(
                                ERROR_RED,
                                format!(
                                    "{} stays on {}: no destination takes it",
                                    u.lpar, plan.hvm
                                ),
                            );
                            for r in &u.refusals {
                                ui.label(format!("    {}: {}", r.candidate, r.reasons.join("; ")));
                            }
                        }
                        if plan.live.is_none() && plan.shutdown.is_none() {
                            ui.label(format!("Nothing can move off {}.", plan.hvm));
                        }
                    });
                ui.separator();
                ui.horizontal(|ui| {
                    let any = plan.live.is_some() || plan.shutdown.is_some();
                    if ui
                        .add_enabled(any, egui::Button::new("Save and open"))
                        .on_hover_text("Save the policies and show them in Migration Policy")
                        .clicked()
                    {
                        accept = true;
                    }
                    if ui.button("Cancel").clicked() {
                        cancel = true;
                    }
                });
            }
        });
    if accept {
        for policy in model.policies.accept_evacuation() {
            outbox.push(Command::SavePolicy {
                policy: Box::new(policy),
                replace: true,
            });
        }
        model.open.policy = true;
    } else if cancel || !open {
        model.policies.evacuation = None;
    }
}
