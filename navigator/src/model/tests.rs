#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lparmover::checks::{self, testutil};
use lparmover::emg::{Emg, EmgError};
use lparmover::fleetview::HvmSnapshot;
use lparmover::jobs::{JobProgress, JobStage};
use lparmover::model::{LparStatus, Mode};
use lparmover::mover::Progress;
use lparmover::ops::Destination;

use super::*;
use crate::command::Event;

const DEMO: [(&str, &str); 4] = [
    ("ch1-b1", "CH1"),
    ("ch1-b2", "CH1"),
    ("ch2-b1", "CH2"),
    ("ch2-b2", "CH2"),
];

fn answered(model: &mut Model, name: &str) {
    model.apply(
        Duration::ZERO,
        Event::Hvm(Box::new(HvmSnapshot {
            name: name.into(),
            chassis: String::new(),
            url: String::new(),
            inventory: Some(testutil::inventory(name)),
            error: None,
        })),
    );
}

fn demo() -> Model {
    let mut model = Model::new(
        "demo",
        DEMO.iter().map(|(h, c)| (h.to_string(), c.to_string())),
    );
    for (h, _) in DEMO {
        answered(&mut model, h);
    }
    model
}

fn row<'a>(rows: &'a [TreeRow], label: &str) -> &'a TreeRow {
    rows.iter().find(|r| r.label == label).unwrap_or_else(|| {
        panic!(
            "no row {label:?} in {:#?}",
            rows.iter().map(|r| &r.label).collect::<Vec<_>>()
        )
    })
}

fn web01() -> SourcePick {
    SourcePick {
        hvm: "ch1-b1".into(),
        number: testutil::inventory("ch1-b1")
            .lpars
            .iter()
            .find(|l| l.lpar.name.as_str() == "web-01")
            .unwrap()
            .lpar
            .number,
        name: "web-01".into(),
    }
}

#[test]
fn trees_show_chassis_hvms_and_lpars_with_unique_labels() {
    let mut model = demo();
    let source = model.tree(Side::Source).to_vec();
    let dest = model.tree(Side::Destination).to_vec();
    assert_eq!(row(&source, "Source chassis CH1").icon, Icon::Chassis);
    assert_eq!(row(&source, "Source ch1-b1").icon, Icon::HvmNormal);
    let web = row(&source, "Source ch1-b1/web-01");
    assert!(web.selectable, "an activated LPAR can move live");
    assert_eq!(web.icon, Icon::LparActivated);
    assert!(row(&dest, "Destination ch1-b2/Auto").selectable);
    assert!(dest.iter().any(|r| matches!(r.kind, RowKind::Free { .. })));
    let mut labels: Vec<_> = source.iter().chain(&dest).map(|r| &r.label).collect();
    let total = labels.len();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), total, "accessibility labels must be unique");
}

#[test]
fn deactivated_lpars_are_selectable_only_in_shutdown_mode() {
    let mut model = demo();
    let deactivated = model
        .tree(Side::Source)
        .iter()
        .find(|r| r.icon == Icon::LparNotSelectable)
        .cloned()
        .expect("the demo has a deactivated LPAR, not selectable for a live move");
    assert!(!deactivated.selectable);
    model.mode = Mode::Shutdown;
    model.mode_changed();
    let again = row(model.tree(Side::Source), &deactivated.label).clone();
    assert!(again.selectable);
    assert_eq!(again.icon, Icon::LparDeactivated);
}

#[test]
fn collapsing_a_chassis_hides_its_hvms() {
    let mut model = demo();
    let before = model.tree(Side::Source).len();
    model.toggle(Side::Source, &RowKind::Chassis("CH2".into()));
    let rows = model.tree(Side::Source).to_vec();
    assert!(rows.len() < before);
    assert!(rows.iter().all(|r| r.label != "Source ch2-b1"));
    assert_eq!(row(&rows, "Source chassis CH2").expanded, Some(false));
    assert_eq!(
        model.tree(Side::Destination).len(),
        demo().tree(Side::Destination).len(),
        "the other tree keeps its own expansion"
    );
}

#[test]
fn a_failed_update_keeps_the_last_inventory_and_shows_it_failed() {
    let mut model = demo();
    model.apply(
        Duration::ZERO,
        Event::Hvm(Box::new(HvmSnapshot {
            name: "ch2-b1".into(),
            chassis: String::new(),
            url: String::new(),
            inventory: None,
            error: Some(EmgError::new(
                Emg::ConnectionRefusedMms,
                "did not answer within 1.5 s",
            )),
        })),
    );
    let rows = model.tree(Side::Source).to_vec();
    let hvm = row(&rows, "Source ch2-b1");
    assert_eq!(hvm.icon, Icon::HvmUpdateFailed);
    assert!(hvm.hover.contains("1.5 s"), "{}", hvm.hover);
    let lpars: Vec<_> = rows
        .iter()
        .filter(|r| matches!(&r.kind, RowKind::Lpar { hvm, .. } if hvm == "ch2-b1"))
        .collect();
    assert!(!lpars.is_empty(), "the last inventory stays visible");
    assert!(
        lpars
            .iter()
            .all(|r| r.icon == Icon::LparUpdateFailed && !r.selectable)
    );
    assert_eq!(row(&rows, "Source ch1-b1").icon, Icon::HvmNormal);
}

#[test]
fn migration_needs_picks_then_a_clean_show_config_for_exactly_those_picks() {
    let mut model = demo();
    assert!(model.migration_allowed().unwrap_err().contains("Pick"));
    model.pick_source(web01());
    model.pick_destination(Destination::auto("ch2-b1"));
    assert!(
        model
            .migration_allowed()
            .unwrap_err()
            .contains("Show Config")
    );
    let request = model.check_request().unwrap();
    model.check_started(request.clone());
    assert!(model.migration_allowed().unwrap_err().contains("running"));
    let report = checks::run(&testutil::input(
        "ch1-b1",
        "web-01",
        "ch2-b1",
        Mode::ConcurrentMaintenance,
    ));
    assert!(
        has_errors(&report),
        "ch2-b1's older EFI refuses a live move"
    );
    model.apply(Duration::ZERO, Event::Checked(Box::new(Ok(report))));
    let why = model.migration_allowed().unwrap_err();
    assert!(why.contains("Error row"), "{why}");
    assert!(why.contains("EFI"), "{why}");

    model.pick_destination(Destination::auto("ch1-b2"));
    assert!(
        model
            .migration_allowed()
            .unwrap_err()
            .contains("Show Config"),
        "a report for another destination does not count"
    );
    let request = model.check_request().unwrap();
    model.check_started(request);
    let report = checks::run(&testutil::input(
        "ch1-b1",
        "web-01",
        "ch1-b2",
        Mode::ConcurrentMaintenance,
    ));
    model.apply(Duration::ZERO, Event::Checked(Box::new(Ok(report))));
    assert!(model.migration_allowed().is_ok());
}

fn progress(stage: JobStage, sent: u64) -> Event {
    Event::Move(lparmover::ops::moves::MoveEvent::Progress(JobProgress {
        job: "job-20261201-000000-abcd".into(),
        stage,
        mover: Some(Progress {
            wire_bytes_sent: sent,
            memory_bytes_sent: sent,
            bytes_remaining: 1_000_000_000u64.saturating_sub(sent),
            ..Progress::default()
        }),
    }))
}

fn started(model: &mut Model) {
    model.apply(
        Duration::ZERO,
        Event::MoveStarted {
            lpar: web01().number.to_string(),
            source: "ch1-b1".into(),
            destination: "ch1-b2".into(),
            live: true,
        },
    );
}

#[test]
fn a_move_lists_its_stages_with_table_7_3_states_and_blocks_closing_as_it_should() {
    let mut model = demo();
    assert_eq!(model.close_decision(), CloseDecision::Close);
    started(&mut model);
    assert!(model.open.progress);
    model.apply(Duration::from_secs(1), progress(JobStage::Preparing, 0));
    model.apply(
        Duration::from_secs(2),
        progress(JobStage::Transferring, 1000),
    );
    let m = model.current_move.as_ref().unwrap();
    assert_eq!(m.lpar, "web-01");
    assert_eq!(m.stages.len(), 2);
    assert_eq!(m.stages[0].1, StageStatus::Done);
    assert_eq!(m.stages[1].1, StageStatus::InProgress);
    assert!(m.memory_moving());
    assert_eq!(m.samples.len(), 2);
    assert_eq!(model.close_decision(), CloseDecision::AskCancelOrWait);
    assert!(model.migration_allowed().unwrap_err().contains("running"));
    model.apply(Duration::from_secs(3), progress(JobStage::Committing, 2000));
    assert_eq!(model.close_decision(), CloseDecision::WaitForCommit);
    assert!(!model.current_move.as_ref().unwrap().memory_moving());
}

#[test]
fn a_failed_move_marks_its_stage_failed_and_a_rollback_terminating() {
    let mut model = demo();
    started(&mut model);
    model.apply(Duration::from_secs(1), progress(JobStage::Transferring, 10));
    model.apply(Duration::from_secs(2), progress(JobStage::RollingBack, 10));
    model.apply(
        Duration::from_secs(3),
        Event::LiveMoveDone(Box::new(Err("cancelled by the operator".into()))),
    );
    let m = model.current_move.as_ref().unwrap();
    let states: Vec<_> = m.stages.iter().map(|s| s.1).collect();
    assert_eq!(states, [StageStatus::Failed, StageStatus::Failed]);
    assert!(matches!(m.outcome, Some(MoveOutcome::Failed(_))));
    assert_eq!(model.close_decision(), CloseDecision::Close);
}

#[test]
fn a_move_that_sends_nothing_for_the_window_is_flagged_stalled() {
    let mut model = demo();
    started(&mut model);
    model.apply(
        Duration::from_secs(1),
        progress(JobStage::Transferring, 500),
    );
    let m = model.current_move.as_ref().unwrap();
    assert_eq!(m.headway(Duration::from_secs(5)), Headway::Moving);
    assert!(matches!(
        m.headway(Duration::from_secs(30)),
        Headway::Stalled(_)
    ));
}

#[test]
fn requires_recovery_is_counted_and_pinned_on_its_hvm() {
    let mut model = demo();
    let mut inv = testutil::inventory("ch1-b1");
    inv.lpars[0].lpar.status = LparStatus::RequiresRecovery;
    model.apply(
        Duration::ZERO,
        Event::Hvm(Box::new(HvmSnapshot {
            name: "ch1-b1".into(),
            chassis: String::new(),
            url: String::new(),
            inventory: Some(inv),
            error: None,
        })),
    );
    assert_eq!(model.lpars_requiring_recovery(), 1);
    let rows = model.tree(Side::Source).to_vec();
    assert_eq!(row(&rows, "Source ch1-b1").icon, Icon::HvmRequiresRecovery);
    assert!(rows.iter().any(|r| r.icon == Icon::LparRequiresRecovery));
}

#[test]
fn a_large_fleet_opens_on_its_hvms_with_their_lpars_folded() {
    let hvms = (0..200).map(|i| (format!("b{i}"), format!("C{}", i / 10)));
    let mut model = Model::new("large", hvms);
    let rows = model.tree(Side::Source);
    assert_eq!(
        rows.len(),
        20 + 200,
        "chassis and HVM rows, no LPAR rows until opened"
    );
    assert!(rows.iter().all(|r| r.expanded.is_some()));
}

fn seen(url: &str) -> lparmover::ops::register::SeenCertificate {
    lparmover::ops::register::SeenCertificate {
        url: url.into(),
        pem: "-----BEGIN CERTIFICATE-----".into(),
        fingerprint: "AB:CD".into(),
    }
}

#[test]
fn register_needs_the_certificate_of_the_address_typed_confirmed_a_name_and_a_token() {
    use profile::{CertificateState, ProfileForm};
    let mut form = ProfileForm::default();
    assert!(form.fetch_allowed().is_err(), "no address yet");
    form.url = "127.0.1.9:4000".into();
    assert!(form.fetch_allowed().is_err(), "not an https address");
    form.url = "https://127.0.1.9:4000/".into();
    let url = form.fetch_allowed().unwrap();
    assert_eq!(url, "https://127.0.1.9:4000");
    form.fetch_started(url.clone());
    assert!(form.fetch_allowed().is_err(), "one fetch at a time");
    form.fetched(Ok(seen(&url)));
    assert!(form.seen().is_some());
    form.name = "far-b1".into();
    form.token = "secret".into();
    let why = form.registration(&[]).unwrap_err();
    assert!(why.contains("Confirm"), "{why}");
    form.confirmed = true;
    let r = form.registration(&[]).unwrap();
    assert_eq!(
        (r.name.as_str(), r.certificate.url.as_str()),
        ("far-b1", url.as_str())
    );

    // The address changes after the fetch: the certificate and the confirmation are gone.
    form.url = "https://127.0.1.10:4000".into();
    form.address_edited();
    assert_eq!(form.certificate, CertificateState::NotFetched);
    assert!(!form.confirmed);
    assert!(
        form.registration(&[])
            .unwrap_err()
            .contains("Fetch the certificate")
    );

    // A fetch answered after the address changed is not shown as this address's.
    form.fetch_started("https://127.0.1.10:4000".into());
    form.url = "https://127.0.1.11:4000".into();
    form.fetched(Ok(seen("https://127.0.1.10:4000")));
    assert!(form.seen().is_none());
}

#[test]
fn an_address_registered_under_another_name_is_refused_before_anything_is_sent() {
    use profile::{ProfileForm, RegisteredHvm};
    let url = "https://127.0.1.9:4000";
    let mut form = ProfileForm {
        url: url.into(),
        name: "second-name".into(),
        token: "t".into(),
        ..ProfileForm::default()
    };
    form.fetch_started(url.into());
    form.fetched(Ok(seen(url)));
    form.confirmed = true;
    let registered = [RegisteredHvm {
        name: "far-b1".into(),
        chassis: "CH9".into(),
        url: url.into(),
        fingerprint: None,
    }];
    let why = form.registration(&registered).unwrap_err();
    assert!(why.contains("already registered as far-b1"), "{why}");
    form.name = "far-b1".into();
    assert!(
        form.registration(&registered).is_ok(),
        "re-registering by its own name"
    );
}

#[test]
fn an_imported_token_fills_the_form_and_a_failed_import_says_why() {
    use profile::ProfileForm;
    let mut form = ProfileForm::default();
    assert!(form.import_request().is_err(), "no fleet profile given");
    form.import_from = "/tmp/fleet/profile.toml".into();
    form.imported(Err("it registers no HVM at https://x".into()));
    assert!(form.token.is_empty());
    assert!(matches!(&form.import_note, Some(Err(e)) if e.contains("registers no HVM")));
    form.imported(Ok("tok".into()));
    assert_eq!(form.token, "tok");
}

fn profile_of(hvms: &[(&str, &str)]) -> lparmover::profile::Profile {
    lparmover::profile::Profile {
        fleet: "demo".into(),
        hvms: hvms
            .iter()
            .map(|(name, chassis)| lparmover::profile::ProfileHvm {
                name: (*name).into(),
                chassis: (*chassis).into(),
                url: format!("https://{name}:1"),
                cert_pem: String::new(),
                token: "t".into(),
                migration_paths: Vec::new(),
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn a_registered_hvm_joins_the_trees_and_a_removed_one_leaves_with_its_picks() {
    let mut model = demo();
    model.pick_source(web01());
    let mut hvms = DEMO.to_vec();
    hvms.push(("far-b1", "CH9"));
    model.apply(
        Duration::ZERO,
        Event::ProfileChanged(Ok((
            Box::new(profile_of(&hvms)),
            "Registered far-b1".into(),
        ))),
    );
    let rows = model.tree(Side::Destination).to_vec();
    row(&rows, "Destination chassis CH9");
    row(&rows, "Destination far-b1");
    assert!(
        model.hvm("ch1-b1").unwrap().inventory.is_some(),
        "HVMs still registered keep what they answered"
    );
    assert_eq!(model.registered.len(), 5);
    assert!(model.notices.iter().any(|n| n == "Registered far-b1"));

    // ch1-b1 removed: its LPARs leave the trees and the source pick goes with them.
    let without: Vec<_> = hvms.into_iter().filter(|(h, _)| *h != "ch1-b1").collect();
    model.apply(
        Duration::ZERO,
        Event::ProfileChanged(Ok((
            Box::new(profile_of(&without)),
            "Removed ch1-b1".into(),
        ))),
    );
    assert!(model.source.is_none());
    let rows = model.tree(Side::Source);
    assert!(!rows.iter().any(|r| r.label.contains("ch1-b1")));
}

#[test]
fn an_lpar_whose_array_cannot_be_asked_shows_wwn_unknown() {
    use lparmover::api::{FabricLoginState, FabricState};
    let mut view = testutil::inventory("ch1-b1").lpars[0].clone();
    assert_eq!(super::lpar_icon(&view, false), Icon::LparActivated);
    let wwpn = view.lpar.vfcs[0].wwpn;
    view.fc_logins = vec![wwpn];
    view.fabric = vec![FabricState {
        wwpn,
        state: FabricLoginState::LoggedIn,
    }];
    assert_eq!(super::lpar_icon(&view, false), Icon::LparActivated);
    view.fabric[0].state = FabricLoginState::Unknown {
        reason: "array ams1 cannot be reached".into(),
    };
    assert_eq!(super::lpar_icon(&view, false), Icon::LparWwnUnknown);
}
