//! `navigator --tour DIR`: the README's screenshots, taken from the real window. The app walks
//! through the main procedures on the demo fleet, through the same commands the buttons send,
//! and saves a PNG of the window at each step.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lparmover::ops::Destination;

use crate::command::Command;
use crate::model::profile::CertificateState;
use crate::model::{CheckState, Model, Pending, SourcePick};

/// One step of the tour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    WaitFleet,
    PickPair,
    ShowConfig,
    PickIncompatible,
    ShowConfigError,
    Move,
    MoveRunning,
    MoveDone,
    Rehearse,
    Connectivity,
    History,
    Logs,
    Profile,
    WwnSetting,
    /// Storage Password Setting over WWN Setting.
    PasswordSetting,
    /// Add Storage with the fleet array's certificate searched.
    AddStorage,
    /// Migration Policy with a policy being edited.
    PolicyEdit,
    /// The edited policy saved and executed.
    PolicySave,
    /// The policy executing, until its failed entry asks.
    PolicyFailure,
    /// The failure dialog shown.
    PolicyQuestion,
    /// Skip answered.
    PolicySkip,
    /// The policy's run ended.
    PolicyDone,
    /// Evacuate… on ch1-b1 (its context menu's action): the plan asked.
    Evacuate,
    /// The evacuation plan shown.
    EvacuationShown,
    Done,
}

/// The tour's state.
#[derive(Debug)]
pub struct Tour {
    dir: PathBuf,
    step: Step,
    since: Instant,
    shot_pending: Option<Arc<AtomicBool>>,
}

impl Tour {
    /// A tour saving its PNGs into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            step: Step::WaitFleet,
            since: Instant::now(),
            shot_pending: None,
        }
    }

    /// Whether it has finished.
    pub fn done(&self) -> bool {
        self.step == Step::Done
    }

    fn next(&mut self, step: Step) {
        self.step = step;
        self.since = Instant::now();
    }

    fn settled(&self) -> bool {
        self.since.elapsed() > Duration::from_millis(700)
    }

    fn shoot(&mut self, ctx: &egui::Context, name: &'static str) {
        let path = self.dir.join(format!("{name}.png"));
        let saved = Arc::new(AtomicBool::new(false));
        self.shot_pending = Some(saved.clone());
        let repaint = ctx.clone();
        let callback = egui::ScreenshotCallback::new(move |image: Arc<egui::ColorImage>| {
            let [w, h] = image.size;
            let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
            let result = u32::try_from(w)
                .ok()
                .zip(u32::try_from(h).ok())
                .and_then(|(w, h)| image::RgbaImage::from_raw(w, h, bytes));
            match result.map(|img| img.save(&path)) {
                Some(Ok(())) => eprintln!("tour: saved {}", path.display()),
                Some(Err(e)) => eprintln!("tour: cannot save {}: {e}", path.display()),
                None => eprintln!("tour: screenshot {} has a wrong size", path.display()),
            }
            saved.store(true, Ordering::Release);
            repaint.request_repaint();
        });
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
    }

    /// Whether the last screenshot asked for has been saved.
    fn collect(&mut self) -> bool {
        match &self.shot_pending {
            Some(saved) if !saved.load(Ordering::Acquire) => false,
            _ => {
                self.shot_pending = None;
                true
            }
        }
    }

    /// Advances the tour; returns commands to send (as the buttons would).
    pub fn drive(&mut self, ctx: &egui::Context, model: &mut Model) -> Vec<Command> {
        ctx.request_repaint_after(Duration::from_millis(100));
        if !self.collect() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let pick = |model: &mut Model, dest: &str| {
            if let Some((hvm, view)) = model.find_lpar("web-01") {
                let pick = SourcePick {
                    hvm: hvm.to_owned(),
                    number: view.lpar.number,
                    name: "web-01".into(),
                };
                model.pick_source(pick);
            }
            model.pick_destination(Destination::auto(dest));
        };
        match self.step {
            Step::WaitFleet => {
                if model.hvms.iter().all(|h| h.answered) && self.settled() {
                    self.next(Step::PickPair);
                }
            }
            Step::PickPair => {
                pick(model, "ch1-b2");
                self.shoot(ctx, "migration-tab");
                self.next(Step::ShowConfig);
            }
            Step::ShowConfig => match &model.check {
                CheckState::NotRun => {
                    if let Some(r) = model.check_request() {
                        out.push(Command::Check(r));
                    }
                }
                CheckState::Done(..) | CheckState::Failed(..) if self.settled() => {
                    self.shoot(ctx, "show-config");
                    self.next(Step::PickIncompatible);
                }
                _ => {}
            },
            Step::PickIncompatible => {
                pick(model, "ch2-b1");
                if let Some(r) = model.check_request() {
                    out.push(Command::Check(r));
                }
                self.next(Step::ShowConfigError);
            }
            Step::ShowConfigError => {
                if matches!(model.check, CheckState::Done(..)) && self.settled() {
                    self.shoot(ctx, "show-config-error");
                    self.next(Step::Move);
                }
            }
            Step::Move
                if self.settled()
                    && matches!(model.check, CheckState::Done(..))
                    && model
                        .destination
                        .as_ref()
                        .is_some_and(|d| d.hvm == "ch2-b1") =>
            {
                pick(model, "ch1-b2");
                if let Some(r) = model.check_request() {
                    out.push(Command::Check(r));
                }
            }
            Step::Move => {
                if model.migration_allowed().is_ok() {
                    model.open.config_viewer = false;
                    if let Some(c) = crate::app::NavigatorApp::migration_command(model) {
                        out.push(c);
                    }
                    self.next(Step::MoveRunning);
                }
            }
            Step::MoveRunning => {
                let m = model.current_move.as_ref();
                if m.is_some_and(|m| m.samples.len() >= 4 || !m.running()) {
                    self.shoot(ctx, "progress-running");
                    self.next(Step::MoveDone);
                }
            }
            Step::MoveDone => {
                if model.current_move.as_ref().is_some_and(|m| !m.running()) && self.settled() {
                    self.shoot(ctx, "progress-completed");
                    self.next(Step::Rehearse);
                }
            }
            Step::Rehearse => match &model.rehearsal {
                Pending::Idle => {
                    model.open.progress = false;
                    if let Some((hvm, view)) = model.find_lpar("web-01") {
                        let source = lparmover::fleetview::LparRef {
                            hvm: hvm.to_owned(),
                            lpar: lparmover::fleetview::LparSelector::Number(view.lpar.number),
                        };
                        model.open.rehearsal = true;
                        model.rehearsal = Pending::Running;
                        out.push(Command::Rehearse {
                            source,
                            destination: "ch1-b1".into(),
                        });
                    }
                }
                Pending::Done(_) | Pending::Failed(_) if self.settled() => {
                    self.shoot(ctx, "rehearsal");
                    self.next(Step::Connectivity);
                }
                _ => {}
            },
            Step::Connectivity => match &model.connectivity {
                Pending::Idle => {
                    model.open.rehearsal = false;
                    model.open.connectivity = true;
                    model.connectivity = Pending::Running;
                    out.push(Command::ConnectivityTest {
                        source: "ch1-b1".into(),
                        destination: "ch1-b2".into(),
                    });
                }
                Pending::Done(_) | Pending::Failed(_) if self.settled() => {
                    self.shoot(ctx, "connectivity-test");
                    self.next(Step::History);
                }
                _ => {}
            },
            Step::History => {
                model.open.connectivity = false;
                model.open.history = true;
                if matches!(model.history, Pending::Done(_)) && self.settled() {
                    self.shoot(ctx, "history");
                    self.next(Step::Logs);
                }
            }
            Step::Logs => {
                model.open.history = false;
                model.open.logs = true;
                model.open.recovery = true;
                if matches!(model.logs, Pending::Done(_)) && self.settled() {
                    self.shoot(ctx, "logs-recovery");
                    self.next(Step::Profile);
                }
            }
            Step::Profile => {
                model.open.logs = false;
                model.open.recovery = false;
                model.open.profile = true;
                let form = &mut model.profile_form;
                match &form.certificate {
                    CertificateState::NotFetched => {
                        if let Some(h) = model.registered.iter().find(|h| h.name == "ch2-b2") {
                            form.url = h.url.clone();
                            form.name = h.name.clone();
                            if let Ok(url) = form.fetch_allowed() {
                                form.fetch_started(url.clone());
                                out.push(Command::FetchCertificate(url));
                            }
                        }
                    }
                    CertificateState::Seen(_) if !form.confirmed => form.confirmed = true,
                    CertificateState::Seen(_) | CertificateState::Failed(_) if self.settled() => {
                        self.shoot(ctx, "profile");
                        self.next(Step::WwnSetting);
                    }
                    _ => {}
                }
            }
            Step::WwnSetting => {
                model.open.profile = false;
                model.open.wwn_setting = true;
                if matches!(model.wwn_status, Pending::Done(_))
                    && matches!(model.storage.arrays, Pending::Done(_))
                    && self.settled()
                {
                    self.shoot(ctx, "wwn-setting");
                    if let Pending::Done(rows) = &model.storage.arrays {
                        model.storage.password =
                            crate::model::storage::PasswordForm::open_for(rows);
                    }
                    self.next(Step::PasswordSetting);
                }
            }
            Step::PasswordSetting => {
                if self.settled() {
                    self.shoot(ctx, "storage-password-setting");
                    self.next(Step::AddStorage);
                }
            }
            Step::AddStorage if model.storage.password.open => {
                // The shot of Password Setting is taken; Add Storage comes in its place.
                {
                    model.storage.password.open = false;
                    model.storage.add.open = true;
                    let array = model_array_address(model);
                    model.storage.add.address = array;
                    if let Ok(url) = model.storage.add.search() {
                        out.push(Command::SearchArray(url));
                    }
                    self.since = Instant::now();
                }
            }
            Step::AddStorage => {
                if model.storage.add.seen().is_some() && self.settled() {
                    self.shoot(ctx, "add-storage");
                    self.next(Step::PolicyEdit);
                }
            }
            Step::PolicyEdit => {
                if model.policies.draft.is_none() {
                    model.storage.add.open = false;
                    model.open.wwn_setting = false;
                    model.open.policy = true;
                    model.policies.draft = tour_policy(model);
                    self.since = Instant::now();
                } else if self.settled() {
                    self.shoot(ctx, "migration-policy-edit");
                    self.next(Step::PolicySave);
                }
            }
            Step::PolicySave => {
                if let Some(d) = model.policies.draft.take() {
                    model.policies.selected = Some(d.policy.name.to_string());
                    model.policies.run =
                        Some(crate::model::policies::PolicyRun::starting(&d.policy));
                    out.push(Command::SavePolicy {
                        policy: Box::new(d.policy.clone()),
                        replace: true,
                    });
                    out.push(Command::RunPolicy(Box::new(d.policy)));
                }
                self.next(Step::PolicyFailure);
            }
            Step::PolicyFailure => {
                let run = model.policies.run.as_ref();
                if run.is_some_and(|r| r.question.is_some()) {
                    self.next(Step::PolicyQuestion);
                } else if run.is_some_and(|r| !r.running()) {
                    self.next(Step::PolicyDone);
                }
            }
            Step::PolicyQuestion => {
                if self.settled() {
                    self.shoot(ctx, "migration-policy-failure");
                    self.next(Step::PolicySkip);
                }
            }
            Step::PolicySkip => {
                out.push(Command::AnswerPolicyFailure(policy::runner::Decision::Skip));
                if let Some(r) = &mut model.policies.run {
                    r.question = None;
                }
                self.next(Step::PolicyDone);
            }
            Step::PolicyDone => {
                if model.policies.run.as_ref().is_some_and(|r| !r.running()) && self.settled() {
                    self.shoot(ctx, "migration-policy");
                    self.next(Step::Evacuate);
                }
            }
            Step::Evacuate => {
                model.open.policy = false;
                model.policies.evacuation =
                    Some(crate::model::policies::EvacuationDialog::asked("ch1-b1"));
                out.push(Command::PlanEvacuation("ch1-b1".into()));
                self.next(Step::EvacuationShown);
            }
            Step::EvacuationShown => {
                let planned = model
                    .policies
                    .evacuation
                    .as_ref()
                    .is_some_and(|d| !d.plan.running());
                if planned && self.settled() {
                    self.shoot(ctx, "evacuate");
                    self.next(Step::Done);
                }
            }
            Step::Done => {}
        }
        out
    }
}

/// The tour's policy: web-01 back to ch1-b1, then db-01 (whose migration WWPNs the demo array
/// lacks, so it fails and the failure dialog shows).
fn tour_policy(model: &Model) -> Option<crate::model::policies::Draft> {
    let name = policy::PolicyName::new("tour-evening").ok()?;
    let mut policy = policy::Policy::new(name, lparmover::model::Mode::ConcurrentMaintenance);
    policy.comment = "web-01 home, then db-01 to the second blade".into();
    let mut draft = crate::model::policies::Draft::of(policy);
    let (hvm, _) = model.find_lpar("web-01")?;
    let back = if hvm == "ch1-b1" { "ch1-b2" } else { "ch1-b1" };
    draft
        .add(
            lparmover::model::Mode::ConcurrentMaintenance,
            format!("{hvm}/web-01").parse().ok()?,
            Destination::auto(back),
        )
        .ok()?;
    draft
        .add(
            lparmover::model::Mode::ConcurrentMaintenance,
            "ch1-b1/db-01".parse().ok()?,
            Destination::auto("ch1-b2"),
        )
        .ok()?;
    Some(draft)
}

/// The address of the first array the WWN Setting window lists (IP:PORT).
fn model_array_address(model: &Model) -> String {
    match &model.storage.arrays {
        Pending::Done(rows) => rows
            .first()
            .map(|r| r.url.trim_start_matches("https://").to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}
