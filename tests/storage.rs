//! The storage side end to end: an `hvmsim array` process with the demo fleet's host groups,
//! driven through `storagecli` (its own names and the array CLI's) and `lparmover wwn`, with
//! real blades for the checks; bad input is refused with its message id and changes nothing,
//! and a kill -9 loses nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use lparmover::api::array::ArrayClient;
use lparmover::profile::Profile;
use lpm_tests::{TestArray, TestBlade, binary, demo_fleet, profile_of, test_data_dir};

fn storagecli(profile: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(binary("storagecli"));
    command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("LPARMOVER_DATA", test_data_dir())
        .stdin(std::process::Stdio::null());
    if let Some(p) = password {
        command.env("STORAGECLI_PASSWORD", p);
    }
    command.output().expect("run storagecli")
}

fn lparmover(profile: &Path, args: &[&str]) -> Output {
    Command::new(binary("lparmover"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("LPARMOVER_DATA", test_data_dir())
        .output()
        .expect("run lparmover")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts `out` failed with exit code `code` and a message naming `id`.
fn refused(out: &Output, code: i32, id: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(text(out).contains(id), "expected {id}: {}", text(out));
}

/// A client of the profile's first array, logged in with its saved account.
async fn logged_in_client(profile: &Path) -> ArrayClient {
    let loaded = Profile::load(profile).unwrap();
    let array = &loaded.arrays[0];
    let client = ArrayClient::new(array).unwrap();
    let session = client
        .login(array.credentials.as_ref().unwrap())
        .await
        .unwrap();
    client.with_session(Some(session.token))
}

fn profile_with_array(dir: &Path, array: &TestArray, blades: &[&TestBlade]) -> std::path::PathBuf {
    let mut profile = profile_of(blades);
    profile.arrays.push(array.profile.clone());
    let path = dir.join("profile.toml");
    profile.save(&path).expect("save profile");
    path
}

#[test]
fn host_groups_survive_a_kill_9_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let mut array = TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let profile = profile_with_array(dir.path(), &array, &[]);

    let listed = storagecli(&profile, &["hostgroup", "list", "ams1"], None);
    assert!(listed.status.success(), "{}", text(&listed));
    let table = text(&listed);
    for name in ["web-01", "db-01", "app-01", "mail-01"] {
        assert!(table.contains(name), "no host group {name}:\n{table}");
    }

    // The array CLI's name for the same list.
    let referred = storagecli(&profile, &["auhgwwn", "-unit", "ams1", "-refer"], None);
    assert!(referred.status.success(), "{}", text(&referred));
    assert!(
        text(&referred).contains("web-01-MIG-3-0"),
        "{}",
        text(&referred)
    );

    let wwpn = "50:00:08:70:00:0f:00:01";
    let before = array.state_bytes();
    refused(
        &storagecli(
            &profile,
            &["wwn", "register", "ams1", "0A", "001", "50:00:zz"],
            None,
        ),
        2,
        "invalid WWPN",
    );
    refused(
        &storagecli(
            &profile,
            &["wwn", "register", "ams1", "0A", "099", wwpn],
            None,
        ),
        1,
        "STG-0202",
    );
    refused(
        &storagecli(
            &profile,
            &["wwn", "register", "ams1", "9Z", "001", wwpn],
            None,
        ),
        1,
        "STG-0201",
    );
    refused(
        &storagecli(
            &profile,
            &["login", "ams1", "--user", "admin"],
            Some("not-the-password"),
        ),
        4,
        "STG-0102",
    );
    let mut without_login: Profile = Profile::load(&profile).unwrap();
    without_login.arrays[0].credentials = None;
    let anonymous = dir.path().join("anonymous.toml");
    without_login.save(&anonymous).unwrap();
    refused(
        &storagecli(
            &anonymous,
            &["wwn", "register", "ams1", "0A", "001", wwpn],
            None,
        ),
        4,
        "STG-0101",
    );
    assert_eq!(
        array.state_bytes(),
        before,
        "refused requests changed the array"
    );

    let added = storagecli(
        &profile,
        &[
            "wwn",
            "register",
            "ams1",
            "0A",
            "001",
            wwpn,
            "--nickname",
            "spare",
        ],
        None,
    );
    assert!(added.status.success(), "{}", text(&added));
    assert!(text(&added).contains("STG-I101"), "{}", text(&added));
    let after_add = array.state_bytes();
    refused(
        &storagecli(
            &profile,
            &["wwn", "register", "ams1", "0A", "001", wwpn],
            None,
        ),
        1,
        "STG-0204",
    );
    assert_eq!(
        array.state_bytes(),
        after_add,
        "a duplicate changed the array"
    );

    array.kill9();
    array.restart().unwrap();
    let profile = profile_with_array(dir.path(), &array, &[]);
    let shown = storagecli(
        &profile,
        &["--json", "hostgroup", "show", "ams1", "0A", "001"],
        None,
    );
    assert!(shown.status.success(), "{}", text(&shown));
    let group: lparmover::api::array::HostGroup = serde_json::from_slice(&shown.stdout).unwrap();
    let kept = group.wwns.iter().find(|w| w.wwpn.to_string() == wwpn);
    assert_eq!(
        kept.map(|w| w.nickname.as_str()),
        Some("spare"),
        "the registration a client was told about survives kill -9"
    );
    let removed = storagecli(
        &profile,
        &[
            "auhgwwn", "-unit", "ams1", "-rm", "-permhg", "0", "A", wwpn, "-gno", "001",
        ],
        None,
    );
    assert!(removed.status.success(), "{}", text(&removed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_wwpn_registered_in_one_command_turns_the_check_green() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let array = TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
    let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
    let profile = profile_with_array(dir.path(), &array, &[&b1, &b2]);

    // db-01's migration WWPNs are not registered: exactly those rows fail, and only them.
    let storage_errors = |out: &Output| -> Vec<(String, String)> {
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == "storage" && r["verdict"] == "Error")
            .map(|r| {
                (
                    r["item"].as_str().unwrap_or_default().to_owned(),
                    r["code"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let check = |lpar: &str| {
        lparmover(
            &profile,
            &[
                "check",
                "--from",
                lpar,
                "--to",
                "ch1-b2",
                "--mode",
                "concurrent",
                "--json",
            ],
        )
    };
    let before = check("ch1-b1/db-01");
    let errors = storage_errors(&before);
    assert_eq!(errors.len(), 2, "{errors:?}: {}", text(&before));
    assert!(
        errors
            .iter()
            .all(|(_, code)| code.contains("migration-wwpn-not-registered")),
        "{errors:?}"
    );
    assert!(storage_errors(&check("ch1-b1/web-01")).is_empty());

    let status = storagecli(&profile, &["wwn", "export-csv"], None);
    assert!(status.status.success(), "{}", text(&status));
    let csv = String::from_utf8_lossy(&status.stdout).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], lparmover::storage::CSV_HEADER);
    // ch1-b1: web-01 (1 vFC), db-01 (2), batch-01 (1); ch1-b2: app-01 (1).
    assert_eq!(lines.len(), 1 + 5, "{csv}");
    let db = lines
        .iter()
        .filter(|l| l.contains(",db-01,"))
        .collect::<Vec<_>>();
    assert_eq!(db.len(), 2);
    assert!(
        db.iter()
            .all(|l| l.contains(",Registered,") && l.contains(",Unregistered,")),
        "{db:?}"
    );

    let registered = lparmover(&profile, &["wwn", "register-migration", "ch1-b1/db-01"]);
    assert!(registered.status.success(), "{}", text(&registered));
    assert!(
        text(&registered).contains("2 of 2"),
        "{}",
        text(&registered)
    );
    assert!(storage_errors(&check("ch1-b1/db-01")).is_empty());
    let again = lparmover(&profile, &["wwn", "register-migration", "ch1-b1/db-01"]);
    assert!(
        text(&again).contains("0 of 2"),
        "registering twice changes nothing: {}",
        text(&again)
    );

    // A migration WWPN whose WWPN is not registered cannot be (table 7-5's third state).
    let web = b1.client().lpars().await.unwrap();
    let web = web
        .iter()
        .find(|l| l.lpar.name.as_str() == "web-01")
        .unwrap();
    let web_wwpn = web.lpar.vfcs[0].wwpn;
    let client = logged_in_client(&profile).await;
    let groups = client.host_groups().await.unwrap();
    let group = groups.iter().find(|g| g.permits(web_wwpn)).unwrap();
    client
        .remove(group.port, group.number, web_wwpn)
        .await
        .unwrap();
    client
        .remove(group.port, group.number, web.lpar.vfcs[0].migration_wwpn)
        .await
        .unwrap();
    let before = array.state_bytes();
    let unregistrable = lparmover(&profile, &["wwn", "register-migration", "ch1-b1/web-01"]);
    assert!(!unregistrable.status.success());
    assert!(
        text(&unregistrable).contains("cannot be registered")
            && text(&unregistrable).contains("nothing was changed"),
        "{}",
        text(&unregistrable)
    );
    assert_eq!(array.state_bytes(), before);
    let csv = storagecli(&profile, &["wwn", "export-csv", "--hvm", "ch1-b1"], None);
    let web_line = String::from_utf8_lossy(&csv.stdout)
        .lines()
        .find(|l| l.contains(",web-01,"))
        .map(str::to_owned)
        .unwrap();
    assert!(web_line.contains("Unregistrable"), "{web_line}");
}

/// The array's fabric view of `wwpn`: the blade that has it logged in.
async fn logged_in_by(array: &TestArray, wwpn: lparmover::model::Wwpn) -> Option<String> {
    ArrayClient::new(&array.profile)
        .unwrap()
        .fabric_logins()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.wwpn == wwpn)
        .map(|l| l.blade)
}

/// Waits (up to 10 s) until `wwpn` is logged in by `blade` (or by nobody, for `None`).
async fn wait_logged_in(array: &TestArray, wwpn: lparmover::model::Wwpn, blade: Option<&str>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = logged_in_by(array, wwpn).await;
        if now.as_deref() == blade {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{wwpn}: logged in by {now:?}, expected {blade:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_array_sees_the_logins_swap_at_switch_over_and_vfcs_show_wwn_unknown_while_it_is_down()
{
    use lparmover::api::FabricLoginState;
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let mut array = TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let b1 =
        TestBlade::start_cabled(&fleet_file, "ch1-b1", &dir.path().join("b1"), &[&array]).unwrap();
    let b2 =
        TestBlade::start_cabled(&fleet_file, "ch1-b2", &dir.path().join("b2"), &[&array]).unwrap();
    let mut profile = profile_of(&[&b1, &b2]);
    profile.arrays.push(array.profile.clone());

    let web = lpm_tests::find_lpar(&b1.client(), "web-01").await.unwrap();
    let (wwpn, migration_wwpn) = (web.lpar.vfcs[0].wwpn, web.lpar.vfcs[0].migration_wwpn);
    wait_logged_in(&array, wwpn, Some("ch1-b1")).await;
    assert_eq!(logged_in_by(&array, migration_wwpn).await, None);

    // The destination logs web-01's vFC in with its migration WWPN while memory moves, and
    // switches to the WWPN once the source has let go of it.
    let report = lparmover::jobs::live_move(
        &profile,
        &lpm_tests::web01_to_b2(lparmover::api::MoveOptions::default()),
        |_| {},
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(report.suspension.is_some());
    wait_logged_in(&array, wwpn, Some("ch1-b2")).await;
    assert_eq!(
        logged_in_by(&array, migration_wwpn).await,
        None,
        "after the swap the destination runs on the WWPN, its migration WWPN is logged out"
    );

    // The array goes away: the vFC's WWN state is unknown, and comes back with the array.
    array.kill9();
    let dst = b2.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let view = lpm_tests::find_lpar(&dst, "web-01").await.unwrap();
        if view
            .fabric
            .iter()
            .any(|f| matches!(f.state, FabricLoginState::Unknown { .. }))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", view.fabric);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    array.restart().unwrap();
    wait_logged_in(&array, wwpn, Some("ch1-b2")).await;
    let view = lpm_tests::find_lpar(&dst, "web-01").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut view = view;
    while view
        .fabric
        .iter()
        .any(|f| f.state != FabricLoginState::LoggedIn)
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", view.fabric);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        view = lpm_tests::find_lpar(&dst, "web-01").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_wwpn_the_array_refuses_cancels_the_move_with_fc_login_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let array = TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let b1 =
        TestBlade::start_cabled(&fleet_file, "ch1-b1", &dir.path().join("b1"), &[&array]).unwrap();
    let b2 =
        TestBlade::start_cabled(&fleet_file, "ch1-b2", &dir.path().join("b2"), &[&array]).unwrap();
    let profile = profile_with_array(dir.path(), &array, &[&b1, &b2]);
    let registered = lparmover(&profile, &["wwn", "register-migration", "ch1-b1/db-01"]);
    assert!(registered.status.success(), "{}", text(&registered));

    // The checks pass; between them and the destination's preparation the registration goes.
    let fault_dir = dir.path().join("fault");
    let mut manager = lpm_tests::manager_at_barrier(
        &profile,
        "backed-up",
        &fault_dir,
        &["migrate", "--from", "ch1-b1/db-01", "--to", "ch1-b2"],
    )
    .unwrap();
    let db = lpm_tests::find_lpar(&b1.client(), "db-01").await.unwrap();
    let migration_wwpn = db.lpar.vfcs[0].migration_wwpn;
    let client = logged_in_client(&profile).await;
    let group = client
        .host_groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.permits(migration_wwpn))
        .unwrap();
    client
        .remove(group.port, group.number, migration_wwpn)
        .await
        .unwrap();
    std::fs::write(fault_dir.join("go"), b"go").unwrap();
    let status = tokio::task::spawn_blocking(move || manager.wait())
        .await
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(fault_dir.join("manager.log")).unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("FC Login timeout (Migration WWN)"), "{log}");
    let still = lpm_tests::find_lpar(&b1.client(), "db-01").await.unwrap();
    assert_eq!(still.lpar.status, lparmover::model::LparStatus::Activated);
    assert!(
        lpm_tests::find_lpar(&b2.client(), "db-01").await.is_none(),
        "nothing of db-01 is left on the destination"
    );
    assert_eq!(logged_in_by(&array, migration_wwpn).await, None);
}

/// The first word of `storagecli lu digest LU`.
fn digest(profile: &Path, lu: &str) -> String {
    let out = storagecli(profile, &["lu", "digest", lu], None);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(out));
    text(out)
}

/// Asserts the seed's output style: `NAME Start  yyyy/mm/dd hh:mm:ss` … `NAME Normal End  …`.
fn seed_style(out: &str, name: &str) {
    for title in [format!("{name} Start"), format!("{name} Normal End")] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&title))
            .unwrap_or_else(|| panic!("no {title:?} line in:\n{out}"));
        let stamp = line[title.len()..].trim();
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y/%m/%d %H:%M:%S").is_ok(),
            "{title} has no time stamp: {line:?}"
        );
    }
}

#[test]
fn replication_pairs_copy_for_real_and_a_kill_9_in_mid_copy_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fleet_file) = demo_fleet(dir.path());
    let mut array = TestArray::start(&fleet_file, "ams1", &dir.path().join("ams1")).unwrap();
    let profile = profile_with_array(dir.path(), &array, &[]);
    let (mv, rv) = ("web-01-boot", "web-01-rv");

    assert_ne!(
        digest(&profile, mv),
        digest(&profile, rv),
        "a boot LU is not empty"
    );
    let replicated = ok(&storagecli(
        &profile,
        &["pair", "replicate", mv, "--wait"],
        None,
    ));
    seed_style(&replicated, "Replicate");
    assert_eq!(
        digest(&profile, mv),
        digest(&profile, rv),
        "after Replicate"
    );

    // In the Replicate state the RV is Not Ready and MV writes reach it.
    refused(
        &storagecli(&profile, &["lu", "write", rv, "--text", "x"], None),
        1,
        "STG-0504",
    );
    ok(&storagecli(
        &profile,
        &[
            "lu",
            "write",
            mv,
            "--offset",
            "5000000",
            "--text",
            "written while replicated",
        ],
        None,
    ));
    // The array CLI's names for Separate.
    let separated = ok(&storagecli(
        &profile,
        &["iSMrc_separate", "-mv", mv, "-mvflg", "ld", "-wait"],
        None,
    ));
    seed_style(&separated, "Separate");
    let at_separate = digest(&profile, mv);
    assert_eq!(
        at_separate,
        digest(&profile, rv),
        "the RV has every write before Separate"
    );

    // Separated: writes to one volume do not reach the other.
    ok(&storagecli(
        &profile,
        &[
            "lu",
            "write",
            mv,
            "--offset",
            "9000000",
            "--text",
            "after separate",
        ],
        None,
    ));
    assert_eq!(
        digest(&profile, rv),
        at_separate,
        "an MV write reached the separated RV"
    );
    ok(&storagecli(
        &profile,
        &[
            "lu",
            "write",
            rv,
            "--offset",
            "20000000",
            "--text",
            "backup mark",
        ],
        None,
    ));
    let rv_content = digest(&profile, rv);
    assert_ne!(digest(&profile, mv), rv_content);

    // Restore with protect: the MV gets the RV back, the pair separates by itself, and the RV
    // is left as it was.
    let restored = ok(&storagecli(
        &profile,
        &["pair", "restore", mv, "--mode", "protect", "--wait"],
        None,
    ));
    seed_style(&restored, "Restore");
    assert_eq!(digest(&profile, mv), rv_content, "the MV is the RV again");
    assert_eq!(digest(&profile, rv), rv_content);
    let read = storagecli(
        &profile,
        &["lu", "read", mv, "--offset", "20000000", "--length", "11"],
        None,
    );
    assert_eq!(read.stdout, b"backup mark", "{}", text(&read));
    let status = storagecli(&profile, &["--json", "pair", "status", mv], None);
    let pairs: Vec<lparmover::api::array::Pair> = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(pairs[0].state, lparmover::api::array::PairState::Separated);

    // Bad input: clear errors, nothing changed.
    let before = array.state_bytes();
    refused(
        &storagecli(&profile, &["pair", "replicate", "db-01-rv"], None),
        1,
        "STG-0501",
    );
    refused(
        &storagecli(
            &profile,
            &["pair", "set", "--mv", mv, "--rv", "db-01-boot"],
            None,
        ),
        1,
        "STG-0502",
    );
    refused(
        &storagecli(
            &profile,
            &["lu", "write", mv, "--offset", "67108864", "--text", "x"],
            None,
        ),
        2,
        "STG-0001",
    );
    refused(
        &storagecli(&profile, &["pair", "replicate", "no-such-lu"], None),
        1,
        "no LU \"no-such-lu\"",
    );
    let waited = storagecli(&profile, &["pair", "wait", mv, "--cond", "sync"], None);
    assert_eq!(waited.status.code(), Some(5), "{}", text(&waited));
    assert!(
        text(&waited).contains("pair replicate"),
        "{}",
        text(&waited)
    );
    assert_eq!(
        array.state_bytes(),
        before,
        "refused requests changed the array"
    );

    // kill -9 while a whole-volume copy runs: the restarted array finishes it.
    let (db, db_rv) = ("db-01-boot", "db-01-rv");
    let chunk = dir.path().join("chunk.bin");
    std::fs::write(&chunk, "0123456789abcdef".repeat(65536)).unwrap();
    let chunk = chunk.to_str().unwrap();
    for i in 0..48u64 {
        let offset = (i << 20).to_string();
        ok(&storagecli(
            &profile,
            &["lu", "write", db, "--offset", &offset, "--file", chunk],
            None,
        ));
    }
    ok(&storagecli(
        &profile,
        &["iSMrc_replicate", "-mv", db, "-mvflg", "ld"],
        None,
    ));
    array.kill9();
    array.restart().unwrap();
    let profile = profile_with_array(dir.path(), &array, &[]);
    let after = storagecli(&profile, &["--json", "pair", "list"], None);
    let pairs: Vec<lparmover::api::array::Pair> = serde_json::from_slice(&after.stdout).unwrap();
    let db_pair = pairs.iter().find(|p| p.mv_name == db).unwrap();
    assert!(
        matches!(
            db_pair.state,
            lparmover::api::array::PairState::Replicating
                | lparmover::api::array::PairState::Replicated
        ),
        "the Replicate a client was told about survives kill -9: {db_pair:?}"
    );
    ok(&storagecli(
        &profile,
        &["pair", "wait", db, "--cond", "sync", "--timeout", "60"],
        None,
    ));
    assert_eq!(
        digest(&profile, db),
        digest(&profile, db_rv),
        "after a restart mid-copy"
    );
}
