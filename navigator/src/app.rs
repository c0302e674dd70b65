//! The eframe app: drains engine events into the model, draws the Migration tab and the open
//! windows, and sends the commands they emit after the frame.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use egui::{Color32, RichText, TextureHandle};
use lparmover::api::MoveOptions;
use lparmover::model::Mode;
use lparmover::ops::MoveTarget;
use lparmover::ops::moves::ShutdownOptions;
use lparmover::profile::Profile;

use crate::command::Command;
use crate::engine::{Engine, Waker};
use crate::icons::Icon;
use crate::model::{CloseDecision, Model};
use crate::windows;

/// The textures of every icon, loaded once.
#[derive(Clone)]
pub struct Icons(HashMap<Icon, TextureHandle>);

impl std::fmt::Debug for Icons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Icons({})", self.0.len())
    }
}

impl Icons {
    fn load(ctx: &egui::Context) -> Self {
        let mut map = HashMap::new();
        for icon in Icon::ALL {
            let Ok(decoded) = image::load_from_memory(icon.png()) else {
                continue;
            };
            let rgba = decoded.to_rgba8();
            let size = [rgba.width() as usize, rgba.height() as usize];
            let image = egui::ColorImage::from_rgba_unmultiplied(size, rgba.as_raw());
            map.insert(
                icon,
                ctx.load_texture(icon.id(), image, egui::TextureOptions::LINEAR),
            );
        }
        Self(map)
    }

    /// An image widget of the icon at `size` points.
    pub fn image(&self, icon: Icon, size: f32) -> egui::Image<'static> {
        match self.0.get(&icon) {
            Some(t) => egui::Image::new((t.id(), egui::vec2(size, size))),
            None => egui::Image::new((egui::TextureId::default(), egui::vec2(size, size))),
        }
    }
}

/// DejaVu Sans (assets/fonts) behind egui's own fonts: the arrows, dashes and symbols of the
/// library's messages ("ch1-b1 → ch1-b2") draw as glyphs, not boxes.
fn install_fallback_font(ctx: &egui::Context) {
    let families = [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
        .into_iter()
        .map(|family| egui::epaint::text::InsertFontFamily {
            family,
            priority: egui::epaint::text::FontPriority::Lowest,
        })
        .collect();
    ctx.add_font(egui::epaint::text::FontInsert {
        name: "DejaVuSans".into(),
        data: egui::FontData::from_static(include_bytes!("../../assets/fonts/DejaVuSans.ttf")),
        families,
    });
}

/// What the windows ask for during one frame (sent after it).
#[derive(Debug, Default)]
pub struct Outbox(Vec<Command>);

impl Outbox {
    /// Queues a command.
    pub fn push(&mut self, command: Command) {
        self.0.push(command);
    }
}

/// The navigator.
pub struct NavigatorApp {
    /// The state (public for tests that inspect it).
    pub model: Model,
    engine: Engine,
    icons: Icons,
    clock: Instant,
    quit_after_move: bool,
    tour: Option<crate::tour::Tour>,
}

impl std::fmt::Debug for NavigatorApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NavigatorApp").finish_non_exhaustive()
    }
}

impl NavigatorApp {
    /// The app on a profile read from `profile_path` (where the Profile window writes what it
    /// registers); the engine starts at once and settles unfinished jobs first.
    pub fn new(
        ctx: &egui::Context,
        profile: Profile,
        profile_path: std::path::PathBuf,
    ) -> std::io::Result<Self> {
        let repaint_ctx = ctx.clone();
        let wake: Waker = std::sync::Arc::new(move || repaint_ctx.request_repaint());
        let model = Model::for_profile(&profile);
        let engine = Engine::start(profile, profile_path, wake, true)?;
        install_fallback_font(ctx);
        Ok(Self {
            model,
            engine,
            icons: Icons::load(ctx),
            clock: Instant::now(),
            quit_after_move: false,
            tour: None,
        })
    }

    /// Runs the screenshot tour (`--tour DIR`) and closes when it is done.
    pub fn with_tour(mut self, ctx: &egui::Context, dir: std::path::PathBuf) -> Self {
        // Wherever the virtual pointer rests, no tooltip covers the screenshots.
        ctx.all_styles_mut(|s| s.interaction.tooltip_delay = f32::INFINITY);
        self.tour = Some(crate::tour::Tour::new(dir));
        self
    }

    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn drain_events(&mut self) {
        let now = self.now();
        while let Some(event) = self.engine.try_recv() {
            self.model.apply(now, event);
        }
    }

    /// Sends a command, marking in the model what now waits for an answer.
    fn dispatch(&mut self, command: Command) {
        use crate::model::Pending;
        match &command {
            Command::Check(request) => self.model.check_started(request.clone()),
            Command::Rehearse { .. } => self.model.rehearsal = Pending::Running,
            Command::ConnectivityTest { .. } => self.model.connectivity = Pending::Running,
            Command::Recover => self.model.recovery = Pending::Running,
            Command::RollbackWwn(_) => self.model.rollback = Pending::Running,
            Command::History(_) => self.model.history = Pending::Running,
            Command::Logs(_) => self.model.logs = Pending::Running,
            Command::SetPath { .. } | Command::RemovePath { .. } => {
                self.model.path_change = Pending::Running;
            }
            Command::Register(_) | Command::Unregister(_) => {
                self.model.profile_change = Pending::Running;
            }
            Command::Cancel => {
                if let Some(m) = &mut self.model.current_move {
                    m.cancel_requested = true;
                }
            }
            _ => {}
        }
        self.engine.send(command);
    }

    fn handle_close(&mut self, ctx: &egui::Context) {
        let asked = ctx.input(|i| i.viewport().close_requested());
        if asked && !self.quit_after_move {
            match self.model.close_decision() {
                CloseDecision::Close => {}
                CloseDecision::AskCancelOrWait | CloseDecision::WaitForCommit => {
                    ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                    self.model.close_dialog = true;
                }
            }
        }
        if self.quit_after_move && self.model.close_decision() == CloseDecision::Close {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn close_dialog(&mut self, ctx: &egui::Context) {
        if !self.model.close_dialog {
            return;
        }
        let decision = self.model.close_decision();
        if decision == CloseDecision::Close && !self.quit_after_move {
            self.model.close_dialog = false;
            return;
        }
        let mut cancel_and_quit = false;
        let mut keep = false;
        egui::Modal::new(egui::Id::unique("close-dialog")).show(ctx, |ui| {
            ui.heading("A migration is running");
            match decision {
                CloseDecision::AskCancelOrWait => {
                    ui.label("The move has not reached its commit point. Cancel it (the source keeps running) and quit, or keep waiting?");
                    ui.horizontal(|ui| {
                        cancel_and_quit = ui.button("Cancel migration and quit").clicked();
                        keep = ui.button("Keep waiting").clicked();
                    });
                }
                CloseDecision::WaitForCommit | CloseDecision::Close => {
                    ui.label("The move passed its commit point: the destination is authoritative. The navigator closes when the move has finished.");
                    ui.spinner();
                    keep = ui.button("Keep the navigator open").clicked();
                }
            }
        });
        if cancel_and_quit {
            self.dispatch(Command::Cancel);
            self.quit_after_move = true;
        } else if decision == CloseDecision::WaitForCommit && !keep {
            self.quit_after_move = true;
        }
        if keep {
            self.quit_after_move = false;
            self.model.close_dialog = false;
        }
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        let open = &mut self.model.open;
        ui.horizontal(|ui| {
            ui.strong(format!("lparmover navigator — fleet {}", self.model.fleet));
            ui.separator();
            ui.toggle_value(&mut open.recovery, "Recovery");
            ui.toggle_value(&mut open.rollback_wwn, "Rollback WWN");
            ui.toggle_value(&mut open.connectivity, "Connectivity Test");
            ui.toggle_value(&mut open.rehearsal, "Rehearsal");
            ui.toggle_value(&mut open.history, "Migration History");
            ui.toggle_value(&mut open.logs, "System Logs");
            ui.toggle_value(&mut open.path_setting, "Migration Path Setting");
            ui.toggle_value(&mut open.policy, "Migration Policy");
            ui.toggle_value(&mut open.wwn_setting, "WWN Setting");
            ui.toggle_value(&mut open.profile, "Profile");
            if self.model.current_move.is_some() {
                ui.toggle_value(&mut open.progress, "Migration Progress");
            }
        });
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let n = self.model.lpars_requiring_recovery();
            let text = format!("LPARs requiring recovery: {n} LPARs");
            if n > 0 {
                ui.add(self.icons.image(Icon::LparRequiresRecovery, 16.0));
                ui.label(RichText::new(text).color(Color32::from_rgb(230, 160, 40)));
            } else {
                ui.label(text);
            }
            ui.separator();
            ui.label(format!(
                "LPARs with WWNs pending rollback: {} LPARs",
                self.model.lpars_with_wwns_pending_rollback()
            ));
            ui.separator();
            let answered = self.model.hvms.iter().filter(|h| h.answered).count();
            let failed = self.model.hvms.iter().filter(|h| h.error.is_some()).count();
            ui.label(format!(
                "HVMs: {} registered, {answered} updated, {failed} failed update",
                self.model.hvms.len()
            ));
            if let Some(last) = self.model.notices.last() {
                ui.separator();
                ui.label(last);
            }
        });
    }

    /// Migration Execute from the Migration tab.
    pub fn migration_command(model: &Model) -> Option<Command> {
        let request = model.migration_allowed().ok()?;
        let target = MoveTarget::Given {
            source: request.source,
            destination: request.destination,
        };
        Some(match request.mode {
            Mode::ConcurrentMaintenance => Command::MoveLive {
                target,
                options: MoveOptions::default(),
            },
            Mode::Shutdown => Command::MoveShutdown {
                target,
                options: ShutdownOptions {
                    processor_group: request.processor_group,
                    remote_shutdown: model.remote_shutdown,
                    activate: model.activate_after,
                    ..ShutdownOptions::default()
                },
            },
        })
    }
}

impl NavigatorApp {
    /// The work before a frame: fold engine events into the model, handle a close request.
    pub fn before_frame(&mut self, ctx: &egui::Context) {
        self.drain_events();
        self.handle_close(ctx);
        // The stall flag depends on time passing, not only on events.
        if self
            .model
            .current_move
            .as_ref()
            .is_some_and(|m| m.running())
        {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    /// One frame of the whole app (eframe calls it; so does the frame benchmark).
    pub fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let mut outbox = Outbox::default();
        let now = self.now();
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            windows::migration::ui(ui, &mut self.model, &self.icons, &mut outbox);
        });
        windows::config_viewer::show(&ctx, &mut self.model, &mut outbox);
        windows::policy::show_evacuation(&ctx, &mut self.model, &mut outbox);
        windows::progress::show(&ctx, &mut self.model, &self.icons, now, &mut outbox);
        windows::trials::show_rehearsal(&ctx, &mut self.model, &mut outbox);
        windows::trials::show_connectivity(&ctx, &mut self.model, &mut outbox);
        windows::recovery::show(&ctx, &mut self.model, &self.icons, &mut outbox);
        windows::recovery::show_rollback_wwn(&ctx, &mut self.model, &mut outbox);
        windows::history::show(&ctx, &mut self.model, &mut outbox);
        windows::logs::show(&ctx, &mut self.model, &mut outbox);
        windows::paths::show(&ctx, &mut self.model, &mut outbox);
        windows::profile::show(&ctx, &mut self.model, &mut outbox);
        windows::wwn_setting::show(&ctx, &mut self.model, &self.icons, &mut outbox);
        windows::policy::show(&ctx, &mut self.model, &self.icons, &mut outbox);
        self.close_dialog(&ctx);
        if let Some(tour) = &mut self.tour {
            outbox.0.extend(tour.drive(&ctx, &mut self.model));
            if tour.done() {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
        for command in outbox.0 {
            self.dispatch(command);
        }
    }
}

impl eframe::App for NavigatorApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.before_frame(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }
}
