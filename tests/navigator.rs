//! The navigator driven by accessibility labels (egui_kittest, no renderer) against a real
//! demo fleet: a live move end to end, an incompatible pair refused, a cancel mid-transfer,
//! a failed move recovered, a move a killed manager left settled when the app starts, and
//! Evacuate… on an HVM's context menu saving its plan into Migration Policy.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use lparmover::model::LparStatus;
use lparmover::profile::Profile;
use lpm_tests::{TestFleet, demo_fleet, find_lpar};
use navigator::NavigatorApp;
use navigator::model::Pending;

/// The app on the profile saved at `path` (where its Profile window registers HVMs).
fn app(path: &std::path::Path) -> Harness<'static, NavigatorApp> {
    let profile = Profile::load(path).expect("profile");
    let path = path.to_owned();
    Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .build_eframe(move |cc| {
            NavigatorApp::new(&cc.egui_ctx, profile, path).expect("engine starts")
        })
}

/// Steps frames until `done` holds (the engine works in the background meanwhile).
fn wait_for(
    harness: &mut Harness<'static, NavigatorApp>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Harness<'static, NavigatorApp>) -> bool,
) {
    let start = Instant::now();
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}; labels now: {:?}",
            labels(harness)
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn labels(harness: &Harness<'static, NavigatorApp>) -> Vec<String> {
    harness
        .root()
        .query_all(egui_kittest::kittest::By::new())
        .filter_map(|n| n.accesskit_node().label())
        .take(400)
        .collect()
}

fn has(harness: &Harness<'static, NavigatorApp>, label: &str) -> bool {
    harness.query_by_label(label).is_some()
}

fn has_text(harness: &Harness<'static, NavigatorApp>, part: &str) -> bool {
    harness.query_all_by_label_contains(part).next().is_some()
}

fn click(harness: &mut Harness<'static, NavigatorApp>, label: &str) {
    harness.get_by_label(label).click();
    harness.step();
    harness.step();
}

/// LPAR `name` as HVM `hvm` of the profile reports it now.
fn lpar_on(profile: &Profile, hvm: &str, name: &str) -> Option<lparmover::api::LparView> {
    let client = lparmover::api::HvmClient::new(profile.hvm(hvm).expect("HVM in the profile"))
        .expect("client");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(find_lpar(&client, name))
}

fn fleet() -> (tempfile::TempDir, TestFleet, Profile) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, file) = demo_fleet(dir.path());
    let fleet = TestFleet::start(&file, dir.path()).expect("demo fleet starts");
    let profile = Profile::load(&fleet.profile_path).expect("profile");
    (dir, fleet, profile)
}

fn pick_and_check(harness: &mut Harness<'static, NavigatorApp>, source: &str, dest: &str) {
    pick(harness, source, dest);
    click(harness, "Show Config");
    wait_for(harness, "the check result", Duration::from_secs(30), |h| {
        has_text(h, "Result: ")
    });
}

/// Picks `source` in the Source tree and `dest` in the Destination tree.
fn pick(harness: &mut Harness<'static, NavigatorApp>, source: &str, dest: &str) {
    wait_for(harness, source, Duration::from_secs(20), |h| has(h, source));
    // A click lands where its row was drawn last frame; an inventory refresh can move the
    // trees in between, so the pick is checked in the model and made again until it holds.
    let want_source = source.trim_start_matches("Source ").to_owned();
    let want_dest = dest.trim_start_matches("Destination ").replace("/Auto", "");
    let picked = |h: &Harness<'static, NavigatorApp>| {
        let m = &h.state().model;
        let source_ok = m
            .source
            .as_ref()
            .is_some_and(|s| format!("{}/{}", s.hvm, s.name) == want_source);
        source_ok
            && m.destination
                .as_ref()
                .is_some_and(|d| d.to_string() == want_dest)
    };
    for _ in 0..5 {
        click(harness, source);
        click(harness, dest);
        if picked(harness) {
            break;
        }
    }
    assert!(
        picked(harness),
        "the pick {source} → {dest} did not hold: {:?} → {:?}",
        harness.state().model.source,
        harness.state().model.destination
    );
}

/// Moves db-01 (the demo's largest LPAR, whose transfer lasts long enough to act on) from
/// ch1-b1 to ch1-b2 and returns while its memory moves.
fn db01_moving_memory(harness: &mut Harness<'static, NavigatorApp>, profile: &Profile) {
    pick_and_check(harness, "Source ch1-b1/db-01", "Destination ch1-b2/Auto");
    // The demo array does not hold db-01's migration WWPNs: that row is red, with its fix.
    let fix = "register-migration ch1-b1/db-01";
    assert!(has_text(harness, fix), "{:?}", labels(harness));
    let target = "ch1-b1/db-01".parse().expect("LPAR reference");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(lparmover::ops::storage::register_migration(
            profile, &target,
        ))
        .expect("register db-01's migration WWPNs");
    click(harness, "Show Config again");
    wait_for(
        harness,
        "the storage rows to pass",
        Duration::from_secs(30),
        |h| has_text(h, "Result: ") && !has_text(h, fix),
    );
    click(harness, "Migration");
    wait_for(harness, "memory transfer", Duration::from_secs(60), |h| {
        h.state()
            .model
            .current_move
            .as_ref()
            .is_some_and(|m| m.memory_moving())
            || has(h, "Migration completed!")
    });
    assert!(
        !has(harness, "Migration completed!"),
        "the move finished before it could be acted on; give db-01 more memory or dirty rate"
    );
}

#[test]
fn a_live_move_from_the_navigator_completes_and_the_lpar_shows_under_its_new_hvm() {
    let (dir, _fleet, mut profile) = fleet();
    // A history of its own: the other tests here move LPARs at the same time.
    let profile_path = own_data_dir(&mut profile, dir.path());
    let mut harness = app(&profile_path);
    pick_and_check(
        &mut harness,
        "Source ch1-b1/web-01",
        "Destination ch1-b2/Auto",
    );
    assert!(has_text(&harness, "0 error(s)"), "{:?}", labels(&harness));
    assert!(
        !harness
            .get_by_label("Migration")
            .accesskit_node()
            .is_disabled(),
        "Migration is enabled after a clean Show Config"
    );
    click(&mut harness, "Migration");
    wait_for(
        &mut harness,
        "Migration completed!",
        Duration::from_secs(120),
        |h| has(h, "Migration completed!") || has_text(h, "Migration failed"),
    );
    assert!(
        has(&harness, "Migration completed!"),
        "{:?}",
        labels(&harness)
    );
    wait_for(
        &mut harness,
        "web-01 under ch1-b2",
        Duration::from_secs(15),
        |h| has(h, "Source ch1-b2/web-01") && !has(h, "Source ch1-b1/web-01"),
    );
    let moved = lpar_on(&profile, "ch1-b2", "web-01").expect("web-01 on ch1-b2");
    assert_eq!(moved.lpar.status, LparStatus::Activated);

    // The Migration History names who moved it, and that it came through the navigator.
    let dirs = lparmover::dirs::ManagerDirs::for_profile(&profile);
    let entries = lparmover::ops::history(&dirs, 10).expect("history readable");
    let Some(lparmover::history::HistoryEntry::Move(moved)) = entries.first() else {
        panic!("no move recorded: {entries:?}");
    };
    assert_eq!(moved.lpar, "web-01");
    assert_eq!(
        moved.actor,
        Some(lparmover::history::Actor::of_this_process(
            lparmover::history::Origin::Navigator
        )),
        "{moved:?}"
    );
}

#[test]
fn an_incompatible_destination_shows_the_efi_error_row_and_migration_stays_disabled() {
    let (_dir, fleet, _profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    pick_and_check(
        &mut harness,
        "Source ch1-b1/web-01",
        "Destination ch2-b1/Auto",
    );
    // ch2-b1's EFI/BIOS is 10-xx against ch1-b1's 09-xx: an Error row, whatever else passes.
    let rows = match &harness.state().model.check {
        navigator::model::CheckState::Done(_, report) => report
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{}: {:?} {} | {}",
                    r.item, r.verdict, r.source, r.destination
                )
            })
            .collect::<Vec<_>>(),
        other => panic!("the check did not finish: {other:?}"),
    };
    assert!(
        rows.iter()
            .any(|r| r.starts_with("EFI/BIOS version: Error")),
        "the EFI/BIOS row is an Error: {rows:#?}"
    );
    assert!(
        has_text(&harness, "Action: "),
        "the Error row carries its action"
    );
    // The verdict's second line can land a frame after the first on a loaded machine.
    wait_for(
        &mut harness,
        "the disabled-migration notice",
        Duration::from_secs(10),
        |h| has_text(h, "Migration is disabled"),
    );
    assert!(
        harness
            .get_by_label("Migration")
            .accesskit_node()
            .is_disabled(),
        "Migration is refused while an Error row stands"
    );
}

#[test]
fn a_move_cancelled_mid_transfer_leaves_the_source_running() {
    let (_dir, fleet, profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    db01_moving_memory(&mut harness, &profile);
    click(&mut harness, "Cancel");
    wait_for(
        &mut harness,
        "the move to end",
        Duration::from_secs(60),
        |h| {
            h.state()
                .model
                .current_move
                .as_ref()
                .is_some_and(|m| !m.running())
        },
    );
    assert!(
        has_text(&harness, "Migration failed"),
        "outcome {:?}; labels {:?}",
        harness
            .state()
            .model
            .current_move
            .as_ref()
            .map(|m| format!("{:?}", m.outcome)),
        labels(&harness)
    );
    let db = lpar_on(&profile, "ch1-b1", "db-01").expect("db-01 still on ch1-b1");
    assert_eq!(db.lpar.status, LparStatus::Activated, "the source runs on");
    assert!(db.runtime.is_some(), "its guest still runs");
}

fn own_data_dir(profile: &mut Profile, dir: &std::path::Path) -> std::path::PathBuf {
    profile.data_dir = Some(dir.join("manager"));
    let path = dir.join("manager-profile.toml");
    profile.save(&path).expect("save the profile");
    path
}

#[test]
fn a_move_left_by_a_killed_manager_is_settled_when_the_navigator_starts_and_it_says_so() {
    let (dir, _fleet, mut profile) = fleet();
    let profile_path = own_data_dir(&mut profile, dir.path());
    // A manager outside the app dies mid-copy (kill -9 at the first pre-copy round).
    let mut manager = lpm_tests::manager_at_barrier(
        &profile_path,
        "round0",
        &dir.path().join("fault"),
        &["migrate", "--from", "ch1-b1/web-01", "--to", "ch1-b2"],
    )
    .expect("the manager reaches round 0");
    manager.kill().expect("kill -9 the manager");
    manager.wait().expect("reap it");

    let mut harness = app(&profile_path);
    wait_for(
        &mut harness,
        "start-up recovery",
        Duration::from_secs(60),
        |h| {
            h.state()
                .model
                .notices
                .iter()
                .any(|n| n.starts_with("Start-up recovery"))
        },
    );
    let notices = harness.state().model.notices.clone();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("rolled back") && n.contains("web-01")),
        "the app says what it settled: {notices:?}"
    );
    wait_for(
        &mut harness,
        "the status bar to say so",
        Duration::from_secs(10),
        |h| has_text(h, "Start-up recovery"),
    );
    wait_for(
        &mut harness,
        "web-01 on ch1-b1",
        Duration::from_secs(15),
        |h| has(h, "Source ch1-b1/web-01"),
    );
    let web = lpar_on(&profile, "ch1-b1", "web-01").expect("web-01 on ch1-b1");
    assert_eq!(
        web.lpar.status,
        LparStatus::Activated,
        "rolled back: the source runs"
    );
}

#[test]
fn a_failed_move_is_recovered_from_the_recovery_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, file) = demo_fleet(dir.path());
    let b1 = lpm_tests::TestBlade::start(&file, "ch1-b1", &dir.path().join("b1")).expect("ch1-b1");
    let mut b2 =
        lpm_tests::TestBlade::start(&file, "ch1-b2", &dir.path().join("b2")).expect("ch1-b2");
    let mut profile = lpm_tests::profile_of(&[&b1, &b2]);
    let profile_path = own_data_dir(&mut profile, dir.path());
    // The destination dies mid-copy: the move rolls back and leaves the source's WWNs to roll
    // back (the destination may still be logged in with the migration WWPNs).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let failed = rt.block_on(lpm_tests::live_move_losing_destination_mid_copy(
        profile.clone(),
        lpm_tests::web01_to_b2(lparmover::api::MoveOptions::default()),
        &mut b2,
    ));
    assert!(failed.is_err(), "the move fails when its destination dies");
    b2.restart().expect("ch1-b2 comes back");

    let mut harness = app(&profile_path);
    wait_for(
        &mut harness,
        "the pending rollback",
        Duration::from_secs(30),
        |h| has(h, "LPARs with WWNs pending rollback: 1 LPARs"),
    );
    click(&mut harness, "Recovery");
    click(&mut harness, "Recovery Execute");
    wait_for(
        &mut harness,
        "Recovery completed!",
        Duration::from_secs(60),
        |h| has(h, "Recovery completed!") || has_text(h, "Recovery failed"),
    );
    assert!(
        has(&harness, "Recovery completed!"),
        "{:?}",
        labels(&harness)
    );
    wait_for(
        &mut harness,
        "no rollback pending",
        Duration::from_secs(15),
        |h| has(h, "LPARs with WWNs pending rollback: 0 LPARs"),
    );
    let web = rt
        .block_on(find_lpar(&b1.client(), "web-01"))
        .expect("web-01 on ch1-b1");
    assert_eq!(web.lpar.status, LparStatus::Activated);
    assert!(!web.wwn_rollback_pending);
}

fn type_into(harness: &mut Harness<'static, NavigatorApp>, label: &str, text: &str) {
    let role = if label == "Token" || label.starts_with("Password of") {
        egui::accesskit::Role::PasswordInput
    } else {
        egui::accesskit::Role::TextInput
    };
    harness.get_by_role_and_label(role, label).focus();
    harness.step();
    harness.get_by_role_and_label(role, label).type_text(text);
    harness.step();
    harness.step();
}

#[test]
fn an_hvm_is_registered_by_address_from_the_profile_window_with_its_fingerprint_pinned() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, fleet, full) = fleet();
    // The manager knows every blade but ch2-b2; the operator registers it by address.
    let far = full.hvm("ch2-b2").expect("ch2-b2 in the fleet").clone();
    let mut managed = full.clone();
    managed.hvms.retain(|h| h.name != "ch2-b2");
    let path = own_data_dir(&mut managed, dir.path());
    let mut harness = app(&path);
    wait_for(&mut harness, "the fleet", Duration::from_secs(20), |h| {
        has(h, "Source ch1-b1/web-01")
    });
    assert!(
        !has_text(&harness, "Source ch2-b2"),
        "ch2-b2 not managed yet"
    );
    click(&mut harness, "Profile");
    type_into(&mut harness, "Address", &far.url);
    click(&mut harness, "Fetch certificate");
    let pinned = lparmover::ops::register::pinned_fingerprint(&far).expect("fingerprint");
    wait_for(
        &mut harness,
        "the fingerprint",
        Duration::from_secs(10),
        |h| has(h, &pinned),
    );
    // What the blade's own console prints is what the window shows.
    let console = lpm_tests::run_binary(
        "hvmsim",
        &[
            "fingerprint",
            "--state-dir",
            &dir.path().join("state/ch2-b2").display().to_string(),
        ],
        Duration::from_secs(10),
    )
    .expect("hvmsim fingerprint");
    assert_eq!(
        String::from_utf8_lossy(&console.stdout).trim(),
        format!("SHA-256 {pinned}")
    );
    type_into(&mut harness, "HVM name", "ch2-b2");
    assert!(
        harness
            .get_by_label("Register")
            .accesskit_node()
            .is_disabled(),
        "nothing is pinned before the operator confirms the fingerprint"
    );
    click(
        &mut harness,
        "The fingerprint is the HVM's own: pin this certificate",
    );

    // A wrong token is refused by the HVM and nothing is written.
    let before = std::fs::read_to_string(&path).expect("profile");
    type_into(&mut harness, "Token", "not-the-token");
    click(&mut harness, "Register");
    wait_for(&mut harness, "the refusal", Duration::from_secs(10), |h| {
        has_text(h, "did not accept the registration")
    });
    assert_eq!(std::fs::read_to_string(&path).expect("profile"), before);

    // The token imported from the fleet's own profile is accepted.
    type_into(
        &mut harness,
        "Import token from fleet profile",
        &fleet.profile_path.display().to_string(),
    );
    click(&mut harness, "Import token");
    wait_for(&mut harness, "the token", Duration::from_secs(10), |h| {
        has_text(h, "Token imported from")
    });
    click(&mut harness, "Register");
    wait_for(
        &mut harness,
        "the registration",
        Duration::from_secs(10),
        |h| has_text(h, "Registered ch2-b2"),
    );
    wait_for(
        &mut harness,
        "ch2-b2's LPARs",
        Duration::from_secs(15),
        |h| has_text(h, "Source ch2-b2/"),
    );
    let saved = Profile::load(&path).expect("the saved profile");
    let entry = saved.hvm("ch2-b2").expect("ch2-b2 registered");
    assert_eq!(
        entry.cert_pem.trim(),
        far.cert_pem.trim(),
        "exactly the certificate seen is pinned"
    );
    assert_eq!(entry.token, far.token);
    assert_eq!(entry.chassis, far.chassis, "the blade's own chassis");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profile holds tokens: owner-only");
}

/// The window manager's close button.
fn request_close(harness: &mut Harness<'static, NavigatorApp>) {
    harness
        .input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    harness.step();
    harness.step();
}

fn commands_of_last_frame(harness: &Harness<'static, NavigatorApp>) -> Vec<String> {
    harness
        .output()
        .viewport_output
        .get(&egui::ViewportId::ROOT)
        .map(|v| v.commands.iter().map(|c| format!("{c:?}")).collect())
        .unwrap_or_default()
}

#[test]
fn closing_mid_move_asks_first_and_cancel_and_quit_closes_once_the_source_runs_on() {
    let (_dir, fleet, profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    db01_moving_memory(&mut harness, &profile);
    request_close(&mut harness);
    assert!(
        has_text(&harness, "has not reached its commit point"),
        "closing before the commit point asks: {:?}",
        labels(&harness)
    );
    // Keep waiting: the dialog goes, the move goes on, nothing closes.
    click(&mut harness, "Keep waiting");
    assert!(!has_text(&harness, "has not reached its commit point"));
    assert!(
        harness
            .state()
            .model
            .current_move
            .as_ref()
            .is_some_and(|m| m.running()),
        "the move still runs"
    );
    request_close(&mut harness);
    click(&mut harness, "Cancel migration and quit");
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(60) && !closed {
        harness.step();
        closed = commands_of_last_frame(&harness)
            .iter()
            .any(|c| c == "Close");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(closed, "the app closes once the cancelled move has ended");
    assert!(
        harness
            .state()
            .model
            .current_move
            .as_ref()
            .is_some_and(|m| !m.running()),
        "it closed only after the move ended"
    );
    let db = lpar_on(&profile, "ch1-b1", "db-01").expect("db-01 still on ch1-b1");
    assert_eq!(db.lpar.status, LparStatus::Activated, "the source runs on");
    assert!(db.runtime.is_some(), "its guest still runs");
}

#[test]
fn a_shutdown_mode_move_shuts_the_guest_down_moves_it_and_activates_it_on_the_destination() {
    let (_dir, fleet, profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    wait_for(&mut harness, "the fleet", Duration::from_secs(20), |h| {
        has(h, "Source ch1-b1/web-01")
    });
    click(&mut harness, "Shutdown");
    click(&mut harness, "Shut down the guest OS");
    pick_and_check(
        &mut harness,
        "Source ch1-b1/web-01",
        "Destination ch1-b2/Auto",
    );
    assert!(has_text(&harness, "0 error(s)"), "{:?}", labels(&harness));
    click(&mut harness, "Migration");
    wait_for(
        &mut harness,
        "Migration completed!",
        Duration::from_secs(120),
        |h| has(h, "Migration completed!") || has_text(h, "Migration failed"),
    );
    assert!(
        has(&harness, "Migration completed!"),
        "{:?}",
        labels(&harness)
    );
    assert!(
        !harness
            .state()
            .model
            .current_move
            .as_ref()
            .is_some_and(|m| m.live),
        "the move ran in Shutdown mode"
    );
    wait_for(
        &mut harness,
        "web-01 under ch1-b2",
        Duration::from_secs(15),
        |h| has(h, "Source ch1-b2/web-01") && !has(h, "Source ch1-b1/web-01"),
    );
    let moved = lpar_on(&profile, "ch1-b2", "web-01").expect("web-01 on ch1-b2");
    assert_eq!(
        moved.lpar.status,
        LparStatus::Activated,
        "activated on the destination"
    );
    assert!(moved.runtime.is_some(), "its guest runs there");
}

#[test]
fn wwn_setting_lists_every_vfc_registers_db01_and_exports_csv() {
    let (dir, fleet, _profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    click(&mut harness, "WWN Setting");
    // db-01's migration WWPNs are not registered on the demo array: it offers Add.
    wait_for(&mut harness, "the WWN list", Duration::from_secs(30), |h| {
        has(h, "Add ch1-b1/db-01")
    });
    assert!(
        has(&harness, "Delete ch1-b1/web-01"),
        "{:?}",
        labels(&harness)
    );
    click(&mut harness, "Add ch1-b1/db-01");
    wait_for(
        &mut harness,
        "db-01 registered",
        Duration::from_secs(30),
        |h| has(h, "Delete ch1-b1/db-01"),
    );
    assert!(has_text(
        &harness,
        "registered in 2 of 2 host group entries"
    ));

    let csv = dir.path().join("wwn.csv");
    harness.state_mut().model.wwn_csv_path = csv.display().to_string();
    click(&mut harness, "Export CSV");
    wait_for(&mut harness, "the export", Duration::from_secs(30), |h| {
        has_text(h, "vFCs exported to")
    });
    let text = std::fs::read_to_string(&csv).expect("the CSV was written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], lparmover::storage::CSV_HEADER);
    let db: Vec<&&str> = lines.iter().filter(|l| l.contains(",db-01,")).collect();
    assert_eq!(db.len(), 2, "{text}");
    assert!(db.iter().all(|l| !l.contains("Unregistered")), "{text}");

    // Storage Selection lists the fleet's array.
    wait_for(
        &mut harness,
        "Storage Selection",
        Duration::from_secs(30),
        |h| has(h, "AMS2500"),
    );

    // Nickname of db-01's first migration WWPN: Default, then a name of the operator's own.
    let index = {
        let model = &harness.state().model;
        let Pending::Done(status) = &model.wwn_status else {
            panic!("no WWN list");
        };
        status
            .rows
            .iter()
            .filter(|r| r.migration_state == lparmover::storage::MigrationWwpnState::Registered)
            .position(|r| r.lpar_name == "db-01")
            .expect("db-01 registered")
    };
    harness
        .query_all_by_label("Nickname")
        .nth(index)
        .expect("a Nickname button per registered migration WWPN")
        .click();
    harness.step();
    harness.step();
    let field = "Migration WWPN nickname of ch1-b1/db-01 vFC 3/0";
    assert!(has(&harness, field), "{:?}", labels(&harness));
    click(&mut harness, "Default");
    type_into(&mut harness, field, "-night");
    let wanted = harness
        .state()
        .model
        .storage
        .nickname
        .as_ref()
        .map(|n| n.text.clone())
        .expect("editing");
    assert!(wanted.ends_with("-night"), "{wanted}");
    click(&mut harness, "Execute");
    wait_for(&mut harness, "the rename", Duration::from_secs(30), |h| {
        has_text(h, "migration WWPN renamed in")
    });
    wait_for(
        &mut harness,
        "the new nickname listed",
        Duration::from_secs(30),
        |h| has(h, &wanted),
    );

    // Storage Password Setting: a wrong password is refused and nothing is saved; the right
    // one, not saved, holds for this session only.
    let on_disk = std::fs::read(&fleet.profile_path).unwrap();
    click(&mut harness, "Password Setting");
    type_into(&mut harness, "Password of ams1", "not-the-password");
    click(&mut harness, "OK");
    wait_for(&mut harness, "the refusal", Duration::from_secs(30), |h| {
        has_text(h, "STG-0102")
    });
    assert_eq!(std::fs::read(&fleet.profile_path).unwrap(), on_disk);
    click(&mut harness, "Password Setting");
    type_into(&mut harness, "Password of ams1", "demo-array-pw");
    click(&mut harness, "OK");
    wait_for(&mut harness, "the login", Duration::from_secs(30), |h| {
        has_text(h, "kept for this session only")
    });
    assert_eq!(
        std::fs::read(&fleet.profile_path).unwrap(),
        on_disk,
        "an unsaved password setting reached the profile"
    );

    // Add Storage: search the array's address, pin its certificate once confirmed, import
    // the token from the fleet's profile.
    let url = Profile::load(&fleet.profile_path).unwrap().arrays[0]
        .url
        .clone();
    click(&mut harness, "Add Storage");
    type_into(
        &mut harness,
        "IP address",
        url.trim_start_matches("https://"),
    );
    click(&mut harness, "Search");
    wait_for(
        &mut harness,
        "the fingerprint",
        Duration::from_secs(30),
        |h| {
            has(
                h,
                "The fingerprint is the array's own: pin this certificate",
            )
        },
    );
    click(
        &mut harness,
        "The fingerprint is the array's own: pin this certificate",
    );
    type_into(
        &mut harness,
        "Import token from fleet profile",
        &fleet.profile_path.display().to_string(),
    );
    click(&mut harness, "Import token");
    wait_for(&mut harness, "the token", Duration::from_secs(30), |h| {
        has_text(h, "Token imported")
    });
    click(&mut harness, "Add");
    wait_for(
        &mut harness,
        "the array added",
        Duration::from_secs(30),
        |h| has_text(h, "Array ams1 (AMS2500"),
    );
    let profile = Profile::load(&fleet.profile_path).unwrap();
    assert_eq!(profile.arrays.len(), 1, "re-adding replaces by name");
    assert!(
        profile.arrays[0].credentials.is_some(),
        "the saved login is kept"
    );
}

#[test]
fn a_policy_is_made_from_picks_saved_executed_and_its_failed_entry_skipped_from_the_dialog() {
    let (_dir, fleet, profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    click(&mut harness, "Migration Policy");
    wait_for(
        &mut harness,
        "the policy list",
        Duration::from_secs(10),
        |h| matches!(h.state().model.policies.saved, Pending::Done(_)),
    );
    click(&mut harness, "New");
    harness.state_mut().model.policies.new_name = Some("nav-evening".into());
    click(&mut harness, "Create policy");
    assert!(
        has_text(&harness, "Policy Information: nav-evening"),
        "{:?}",
        labels(&harness)
    );
    pick(
        &mut harness,
        "Source ch1-b1/web-01",
        "Destination ch1-b2/Auto",
    );
    click(&mut harness, "Add [Concurrent Maintenance]");
    pick(
        &mut harness,
        "Source ch1-b1/db-01",
        "Destination ch1-b2/Auto",
    );
    click(&mut harness, "Add [Concurrent Maintenance]");
    click(&mut harness, "Add [Shutdown]");
    assert!(
        has_text(&harness, "cannot be registered together"),
        "a Shutdown entry is refused in a live policy: {:?}",
        labels(&harness)
    );
    // The second entry is picked: Up puts it first, Down back.
    click(&mut harness, "Up");
    assert!(
        has_text(&harness, "Entry 1: ch1-b1/db-01"),
        "{:?}",
        labels(&harness)
            .into_iter()
            .filter(|l| l.contains("Entry") || l.contains("registered"))
            .collect::<Vec<_>>()
    );
    click(&mut harness, "Down");
    assert!(
        has_text(&harness, "Entry 1: ch1-b1/web-01"),
        "{:?}",
        labels(&harness)
    );
    click(&mut harness, "Save");
    wait_for(&mut harness, "the save", Duration::from_secs(10), |h| {
        has_text(h, "Saved policy nav-evening")
    });
    click(&mut harness, "Release");
    click(&mut harness, "Execute");
    // db-01's migration WWPNs are not on the demo array: its move fails and the runner asks.
    wait_for(
        &mut harness,
        "the failure dialog",
        Duration::from_secs(90),
        |h| has(h, "Skip"),
    );
    assert!(
        has_text(&harness, "Entry 2 (ch1-b1/db-01"),
        "{:?}",
        labels(&harness)
    );
    assert!(has(&harness, "Show Config for this entry"));
    click(&mut harness, "Skip");
    wait_for(
        &mut harness,
        "the run to end",
        Duration::from_secs(30),
        |h| {
            h.state()
                .model
                .policies
                .run
                .as_ref()
                .is_some_and(|r| !r.running())
        },
    );
    assert!(
        has_text(&harness, "1. ch1-b1/web-01 → ch1-b2 (Auto): done"),
        "{:?}",
        labels(&harness)
    );
    assert!(has_text(
        &harness,
        "2. ch1-b1/db-01 → ch1-b2 (Auto): failed"
    ));
    assert!(has_text(&harness, "1 of 2 entries completed."));
    assert!(
        lpar_on(&profile, "ch1-b2", "web-01").is_some(),
        "web-01 moved"
    );
    assert!(
        lpar_on(&profile, "ch1-b1", "db-01").is_some(),
        "db-01 stayed"
    );
}

#[test]
fn evacuate_on_an_hvms_context_menu_shows_the_plan_and_saves_it_into_migration_policy() {
    let (_dir, fleet, _profile) = fleet();
    let mut harness = app(&fleet.profile_path);
    wait_for(
        &mut harness,
        "the Source tree",
        Duration::from_secs(20),
        |h| has(h, "Source ch1-b1/web-01"),
    );
    harness.get_by_label("Source ch1-b1").click_secondary();
    harness.step();
    harness.step();
    click(&mut harness, "Evacuate…");
    wait_for(&mut harness, "the plan", Duration::from_secs(60), |h| {
        has(h, "Save and open")
    });
    // The live LPAR goes, the deactivated one goes in Shutdown mode, db-01 stays with the
    // check rows that refuse each candidate (its migration WWPNs are not on the demo array).
    for shown in [
        "Policy evacuate-ch1-b1-live",
        "ch1-b1/web-01",
        "Policy evacuate-ch1-b1-shutdown",
        "ch1-b1/batch-01",
        "db-01 stays on ch1-b1: no destination takes it",
        "migration WWPN",
    ] {
        assert!(has_text(&harness, shown), "{shown}: {:?}", labels(&harness));
    }
    click(&mut harness, "Save and open");
    wait_for(
        &mut harness,
        "the saved policies in the list",
        Duration::from_secs(10),
        |h| {
            h.state()
                .model
                .policies
                .selected_policy()
                .is_some_and(|p| p.name.as_str() == "evacuate-ch1-b1-live")
        },
    );
    assert!(
        harness.state().model.open.policy,
        "Migration Policy is open"
    );
    assert!(harness.state().model.policies.evacuation.is_none());
    let Pending::Done(saved) = &harness.state().model.policies.saved else {
        panic!("the policy list was read");
    };
    let names: Vec<&str> = saved.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"evacuate-ch1-b1-live") && names.contains(&"evacuate-ch1-b1-shutdown"),
        "{names:?}"
    );
    assert!(
        has_text(&harness, "1. ch1-b1/web-01"),
        "the window shows the picked policy's entries: {:?}",
        labels(&harness)
    );
}
