//! skytimed's `org.skytime.Appliance1.Update` against a real RAUC 1.13
//! (`rauc service` on a private dbus-daemon, file-backed slots, plain
//! bundles made by ota/bundle.sh: the rig of `skytime_tests::rauc`), with
//! the real skytimed on that bus serving NTP and NTS-KE on loopback.
//!
//! Through skytimed's D-Bus (typed proxy and skytimectl): Check; Install
//! with progress, `Completed` and slot B written; every refusal by its
//! error name with nothing written; a second install while one runs;
//! Rollback refused; callers outside the admin group refused; the state
//! kept across a restart; the health check marking a newly booted slot
//! good; a boot back on the old slot recorded as rolled back; the
//! operator's Rollback recorded before its reboot, a reboot back on the
//! slot it left said so, and a reboot into the other slot (RAUC restarted
//! as booted from it) settled as "rolled-back-by-operator"; RAUC absent;
//! the gateway's upload route installing a bundle end to end; and
//! skytimectl following an install across a SIGKILL and restart of
//! skytimed, or giving up when it does not come back.

use futures_lite::StreamExt;
use skytime_api::client::{self, UpdateProxy};
use skytime_api::{interface, ApiError, UpdateProperties};
use skytime_tests::dbus::{initialized_dir, run, PrivateBus, UNPRIVILEGED};
use skytime_tests::mgmt::{Ca, Gateway, Usage};
use skytime_tests::rauc::*;
use skytime_tests::{bin, Daemon};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::Value;

const NEWER: &str = "0.3.0+20250401.120000";
const OLDER: &str = "0.1.0+20250101.000000";
const LIMIT: Duration = Duration::from_secs(90);

/// skytimed's configuration on the rig's bus: NTP and NTS-KE on
/// loopback, the update state where the rig's RAUC hook reads it.
fn config(rig: &Rig, allow: &str, deadline: u32) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"{allow}\"]\n\
         local_stratum = 10\n[nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"{}\"\n\
         [update]\nstate_file = \"{}\"\nos_release = \"{}\"\nhealth_deadline = {deadline}\n",
        rig.bus.address,
        rig.path("data/ota/state.json").display(),
        rig.path("os-release").display(),
    )
}

fn start_daemon(rig: &Rig, dir: tempfile::TempDir) -> Daemon {
    Daemon::start_in_env(dir, &config(rig, "127.0.0.0/8", 60), &[], &[])
}

fn sha256_hex(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

async fn props(conn: &zbus::Connection) -> UpdateProperties {
    client::properties(conn, interface::UPDATE).await.unwrap()
}

/// Waits until the update properties satisfy `f`.
async fn wait_props(
    conn: &zbus::Connection,
    what: &str,
    f: impl Fn(&UpdateProperties) -> bool,
) -> UpdateProperties {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let p = props(conn).await;
        if f(&p) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {what}: {p:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn opts(force: bool) -> HashMap<&'static str, Value<'static>> {
    HashMap::from([("force", Value::from(force))])
}

/// The API error of a failed call.
fn api(e: zbus::Error) -> ApiError {
    ApiError::from_call(&e).unwrap_or_else(|| panic!("not an API error: {e}"))
}

fn slot_b_holds(rig: &Rig, version: &str) -> bool {
    fs::read(rig.path("slots/b.img"))
        .unwrap()
        .starts_with(&rootfs_bytes(version))
}

/// The bad bundles of the refusal cases, made from good ones.
fn bad_bundles() -> Vec<(&'static str, std::path::PathBuf, &'static str)> {
    let good = bundle(&Spec::plain(NEWER));
    let dir = scratch().join("bad");
    fs::create_dir_all(&dir).unwrap();
    let tampered = dir.join("tampered.raucb");
    let mut bytes = fs::read(&good).unwrap();
    bytes[3 * 4096 + 5] ^= 0x40;
    fs::write(&tampered, &bytes).unwrap();
    let truncated = dir.join("truncated.raucb");
    let whole = fs::read(&good).unwrap();
    fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let text = dir.join("notes.raucb");
    fs::write(&text, "these are not the bytes you are looking for\n").unwrap();
    let other_ca = bundle(&Spec {
        trusted: false,
        ..Spec::plain(NEWER)
    });
    let foreign = bundle(&Spec {
        compatible: "other-board",
        ..Spec::plain(NEWER)
    });
    let older = bundle(&Spec::plain(OLDER));
    let same = bundle(&Spec::plain(RUNNING));
    const REJECTED: &str = "org.skytime.Error.BundleRejected";
    const DOWNGRADE: &str = "org.skytime.Error.Downgrade";
    vec![
        ("another CA", other_ca, REJECTED),
        ("a tampered payload", tampered, REJECTED),
        ("a truncated file", truncated, REJECTED),
        ("not a bundle", text, REJECTED),
        ("another board", foreign, REJECTED),
        ("an older version", older, DOWNGRADE),
        ("the running version", same, DOWNGRADE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_through_skytimed_with_progress_refusals_and_restart() {
    let rig = Rig::start().await;
    let daemon = start_daemon(&rig, initialized_dir());
    let conn = rig.conn.clone();
    let update = UpdateProxy::new(&conn).await.unwrap();

    let p = wait_props(&conn, "RAUC found", |p| p.available).await;
    assert_eq!(p.booted_slot, "A");
    assert_eq!(
        p.primary_slot,
        "A",
        "{p:?}\n{}\n{}",
        daemon.log(),
        rig.log()
    );
    assert_eq!(p.state, "idle");
    assert_eq!(p.current_version, RUNNING);
    assert_eq!(p.slots.len(), 2, "{p:?}");

    // Check: RAUC's signature check plus the version policy.
    let good = bundle(&Spec::plain(NEWER));
    let report = update.check(s(&good)).await.unwrap();
    assert_eq!(report.version, NEWER);
    assert_eq!(report.compatible, "skytime-rpi4");
    assert_eq!(
        (report.policy.as_str(), report.installable),
        ("upgrade", true)
    );
    assert_eq!(report.running_version.as_deref(), Some(RUNNING));

    // Every refusal by its name, from Check and Install; nothing written.
    for (what, path, name) in bad_bundles() {
        let e = api(update.check(s(&path)).await.unwrap_err());
        assert_eq!(e.name(), name, "Check of {what}: {e}");
        let e = api(update.install(s(&path), opts(false)).await.unwrap_err());
        assert_eq!(e.name(), name, "Install of {what}: {e}");
        assert!(!e.message().is_empty());
        rig.assert_untouched();
    }
    assert_eq!(props(&conn).await.state, "idle", "refusals change no state");
    let e = api(update
        .install("relative.raucb", opts(false))
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.freedesktop.DBus.Error.InvalidArgs");

    // Reboot into an update: nothing is installed.
    let e = api(update.reboot().await.unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.Refused", "{e}");

    // Rollback: slot B holds nothing installed.
    let e = api(update.rollback().await.unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.Refused", "{e}");
    assert!(e.message().contains("slot B"), "{e}");

    // Callers outside the admin group are refused (exit code 4).
    for dir in [rig.dir.path().to_owned(), rig.path("bus")] {
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let r = run(
        Some(UNPRIVILEGED),
        &bin("skytimectl"),
        &["update", "install", s(&good)],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)],
    );
    assert_eq!(r.code, Some(4), "{}", r.all());
    assert!(r.all().contains("access denied"), "{}", r.all());
    // Reading is open to them.
    let r = run(
        Some(UNPRIVILEGED),
        &bin("skytimectl"),
        &["--json", "update", "status"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)],
    );
    assert!(r.ok(), "{}", r.all());
    assert_eq!(r.json()["State"], "idle");

    // A forced downgrade, held in RAUC's first bootloader call: a second
    // install meanwhile is refused as in progress.
    let older = bundle(&Spec::plain(OLDER));
    fs::write(rig.path("bl/gate"), "").unwrap();
    let mut completed = update.receive_completed().await.unwrap();
    let r = update.install(s(&older), opts(true)).await.unwrap();
    assert_eq!((r.policy.as_str(), r.installable), ("older", false));
    let p = wait_props(&conn, "installing", |p| p.state == "installing").await;
    assert_eq!(p.bundle_version, OLDER);
    let e = api(update.install(s(&good), opts(false)).await.unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.UpdateInProgress", "{e}");
    fs::remove_file(rig.path("bl/gate")).unwrap();
    let c = tokio::time::timeout(LIMIT, completed.next())
        .await
        .expect("Completed")
        .unwrap();
    let args = c.args().unwrap();
    assert!(*args.success(), "{}\n{}", args.message(), rig.log());
    let p = wait_props(&conn, "installed", |p| p.state == "installed").await;
    assert_eq!(p.primary_slot, "B");
    assert!(slot_b_holds(&rig, OLDER), "{}", rig.log());

    // The newer bundle, with progress seen through PropertiesChanged.
    let mut progress = update.receive_progress_percent_changed().await;
    let install = update.install(s(&good), opts(false)).await.unwrap();
    assert_eq!(install.version, NEWER);
    let mut seen = Vec::new();
    let done = tokio::time::timeout(LIMIT, async {
        loop {
            tokio::select! {
                Some(p) = progress.next() => seen.push(p.get().await.unwrap()),
                c = completed.next() => break c.unwrap(),
            }
        }
    })
    .await
    .expect("Completed");
    let args = done.args().unwrap();
    assert!(*args.success(), "{}\n{}", args.message(), rig.log());
    assert!(args.message().contains(NEWER), "{}", args.message());
    // The stream may first yield the value current when it was made: the
    // forced downgrade's 100, before this install's first step.
    let fresh = seen
        .iter()
        .skip_while(|&&v| v == 100)
        .copied()
        .collect::<Vec<_>>();
    assert!(
        fresh.len() >= 2 && fresh.windows(2).all(|w| w[0] <= w[1] || w[1] == 0),
        "progress {seen:?}"
    );
    let p = wait_props(&conn, "installed at 100 %", |p| {
        p.state == "installed" && p.progress_percent == 100
    })
    .await;
    assert_eq!(
        (p.primary_slot.as_str(), p.bundle_version.as_str()),
        ("B", NEWER)
    );
    let b = p.slots.iter().find(|s| s.bootname == "B").unwrap();
    assert_eq!(b.bundle_version.as_deref(), Some(NEWER));
    assert_eq!(b.install_status.as_deref(), Some("ok"));
    assert!(slot_b_holds(&rig, NEWER), "{}", rig.log());
    assert_eq!(rig.boot_var("BOOT_ORDER").split(' ').next(), Some("B"));

    // skytimectl shows it; the state survives a daemon restart (the same
    // boot: the reboot is still pending).
    let r = run(
        None,
        &bin("skytimectl"),
        &["update", "status"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)],
    );
    assert!(
        r.ok() && r.stdout.contains("installed (reboot pending)"),
        "{}",
        r.all()
    );
    let (ok, log, dir) = daemon.stop();
    assert!(ok, "{log}");
    let daemon = start_daemon(&rig, dir);
    let p = wait_props(&conn, "RAUC found again", |p| p.available).await;
    assert_eq!(
        (p.state.as_str(), p.bundle_version.as_str()),
        ("installed", NEWER)
    );
    drop(daemon);
}

/// Saves an update state for `rig`'s skytimed to find (the store's
/// format): `fields` with the bundle of version NEWER.
fn save_state(rig: &Rig, mut fields: serde_json::Value) {
    fields["bundle"] = serde_json::json!({
        "source": "/data/uploads/next.raucb",
        "version": NEWER,
        "manifest_hash": null,
        "force": false,
        "transaction": "t-1",
    });
    let doc = serde_json::json!({"format": 1, "state": fields});
    fs::create_dir_all(rig.path("data/ota")).unwrap();
    fs::write(rig.path("data/ota/state.json"), doc.to_string()).unwrap();
}

/// The update state a previous boot left: slot B installed from A.
fn installed_before_reboot(rig: &Rig) {
    save_state(
        rig,
        serde_json::json!({
            "state": "installed",
            "from_slot": "A",
            "target_slot": "B",
            "boot_id": "an earlier boot",
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_slot_that_serves_is_marked_good() {
    let rig = Rig::start_booted("B").await;
    installed_before_reboot(&rig);
    fs::write(rig.path("bl/BOOT_ORDER"), "B A\n").unwrap();
    fs::write(rig.path("bl/BOOT_B_LEFT"), "2\n").unwrap();
    let _daemon = start_daemon(&rig, initialized_dir());
    let p = wait_props(&rig.conn, "confirmed", |p| p.state == "confirmed").await;
    assert_eq!(
        (p.booted_slot.as_str(), p.bundle_version.as_str()),
        ("B", NEWER)
    );
    // Mark good gave B its attempts back.
    wait_for(LIMIT, "slot B marked good", || {
        rig.boot_var("BOOT_B_LEFT") == "3"
    });
    let saved = fs::read_to_string(rig.path("data/ota/state.json")).unwrap();
    assert!(saved.contains("\"confirmed\""), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_slot_that_does_not_serve_is_marked_bad_and_rebooted() {
    let rig = Rig::start_with("B", &[LOGIND_POLICY]).await;
    let (_logind, reboots) = stand_in_logind(&rig).await;
    installed_before_reboot(&rig);
    fs::write(rig.path("bl/BOOT_ORDER"), "B A\n").unwrap();
    // NTP refuses loopback, so the health check never sees an answer.
    let daemon = Daemon::start_in_env(
        initialized_dir(),
        &config(&rig, "192.0.2.0/24", 30),
        &[],
        &[],
    );
    let p = wait_props(&rig.conn, "booted unconfirmed", |p| {
        p.state == "booted-unconfirmed"
    })
    .await;
    assert_eq!(p.booted_slot, "B");
    let p = wait_props(&rig.conn, "rolled back after the deadline", |p| {
        p.state == "rolled-back"
    })
    .await;
    assert!(
        p.state_reason.contains("health check failed on slot B")
            && p.state_reason.contains("NTP does not answer")
            && !p.state_reason.contains("NTS-KE"),
        "{p:?}"
    );
    wait_for(LIMIT, "slot B marked bad", || {
        rig.boot_var("BOOT_ORDER") == "A"
    });
    wait_for(LIMIT, "a reboot asked of logind", || {
        *reboots.lock().unwrap() == 1
    });
    // The alarm is raised.
    let monitor: skytime_api::MonitorProperties = client::properties(&rig.conn, interface::MONITOR)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut alarms = monitor.alarms;
    while !alarms.iter().any(|a| a.name == "update_rolled_back") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{alarms:?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        alarms =
            client::properties::<skytime_api::MonitorProperties>(&rig.conn, interface::MONITOR)
                .await
                .unwrap()
                .alarms;
    }
}

/// The saved state as the next boot finds it: a real reboot changes the
/// kernel's boot id, which the host running the test keeps.
fn as_if_rebooted(rig: &Rig) {
    let path = rig.path("data/ota/state.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let id = &mut doc["state"]["boot_id"];
    assert!(id.is_string(), "no boot id in {doc}");
    *id = "the boot before the reboot".into();
    fs::write(&path, doc.to_string()).unwrap();
}

/// A simulated reboot into `slot`: skytimed stops, the saved state gets
/// an earlier boot id, RAUC starts again as booted from `slot`, and
/// skytimed starts again with its data.
async fn reboot(rig: &mut Rig, daemon: Daemon, slot: &str) -> Daemon {
    let (ok, log, dir) = daemon.stop();
    assert!(ok, "{log}");
    as_if_rebooted(rig);
    rig.reboot_into(slot).await;
    start_daemon(rig, dir)
}

/// `skytimectl update status` on the rig's bus.
fn status_text(rig: &Rig) -> String {
    let r = run(
        None,
        &bin("skytimectl"),
        &["update", "status"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)],
    );
    assert!(r.ok(), "{}", r.all());
    r.stdout
}

/// `Rollback` through skytimed's typed proxy; panics on an error.
async fn rollback(rig: &Rig) {
    UpdateProxy::new(&rig.conn)
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_goes_back_to_the_slot_a_confirmed_update_came_from() {
    let mut rig = Rig::start_with("B", &[LOGIND_POLICY]).await;
    let (_logind, reboots) = stand_in_logind(&rig).await;
    save_state(&rig, serde_json::json!({"state": "confirmed", "slot": "B"}));
    fs::write(rig.path("bl/BOOT_ORDER"), "B A\n").unwrap();
    let daemon = start_daemon(&rig, initialized_dir());
    let p = wait_props(&rig.conn, "RAUC found", |p| p.available).await;
    assert_eq!(
        (p.state.as_str(), p.primary_slot.as_str()),
        ("confirmed", "B")
    );
    rollback(&rig).await;
    assert_eq!(rig.boot_var("BOOT_ORDER").split(' ').next(), Some("A"));
    assert_eq!(*reboots.lock().unwrap(), 1);
    let p = wait_props(&rig.conn, "slot A primary", |p| p.primary_slot == "A").await;
    // Recorded (and saved) before the reboot.
    assert_eq!(p.state, "rolling-back", "{p:?}");
    let saved = fs::read_to_string(rig.path("data/ota/state.json")).unwrap();
    assert!(saved.contains("\"rolling-back\""), "{saved}");
    // A second request before the reboot is refused.
    let e = api(UpdateProxy::new(&rig.conn)
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.UpdateInProgress", "{e}");

    // The bootloader falls back to B (RAUC's mark did not hold): the
    // rollback did not take, and B is still the confirmed update.
    fs::write(rig.path("bl/BOOT_ORDER"), "B A\n").unwrap();
    let daemon = reboot(&mut rig, daemon, "B").await;
    let p = wait_props(&rig.conn, "confirmed again", |p| {
        p.available && p.state == "confirmed"
    })
    .await;
    assert!(
        p.state_reason
            .contains("the operator's rollback from slot B (version ")
            && p.state_reason.contains("did not take: slot B booted again"),
        "{p:?}"
    );

    // Asked again; the reboot lands in A this time.
    rollback(&rig).await;
    assert_eq!(*reboots.lock().unwrap(), 2);
    let _daemon = reboot(&mut rig, daemon, "A").await;
    let p = wait_props(&rig.conn, "rolled back by the operator", |p| {
        p.available && p.state == "rolled-back-by-operator"
    })
    .await;
    let want = format!("the operator rolled back from slot B (version {RUNNING}) to slot A");
    assert!(p.state_reason.starts_with(&want), "{p:?}");
    assert_eq!(
        (p.booted_slot.as_str(), p.bundle_version.as_str()),
        ("A", RUNNING)
    );
    // No slot was marked bad and nothing more rebooted.
    assert_eq!(rig.boot_var("BOOT_ORDER").split(' ').next(), Some("A"));
    assert_ne!(rig.boot_var("BOOT_B_LEFT"), "0");
    assert_eq!(*reboots.lock().unwrap(), 2);
    // skytimectl says it plainly, and the record is saved.
    let text = status_text(&rig);
    assert!(
        text.contains("Update state    : rolled-back-by-operator\n")
            && text.contains(&format!("Reason          : {want}"))
            && text.contains(&format!("Version left    : {RUNNING}")),
        "{text}"
    );
    let saved = fs::read_to_string(rig.path("data/ota/state.json")).unwrap();
    assert!(saved.contains("\"rolled-back-by-operator\""), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_boot_back_on_the_old_slot_is_recorded_as_rolled_back() {
    let rig = Rig::start().await;
    installed_before_reboot(&rig);
    let _daemon = start_daemon(&rig, initialized_dir());
    let p = wait_props(&rig.conn, "rolled back", |p| p.state == "rolled-back").await;
    assert!(
        p.state_reason.contains("slot B did not boot")
            && p.state_reason.contains("went back to slot A")
            && !p.state_reason.contains("operator"),
        "{p:?}"
    );
    // skytimectl tells it from the operator's rollback.
    let text = status_text(&rig);
    assert!(
        text.contains("Update state    : rolled-back\n")
            && text.contains("Reason          : slot B did not boot")
            && text.contains(&format!("Bundle version  : {NEWER}")),
        "{text}"
    );
    // The failed slot is marked bad and dropped from the boot order.
    wait_for(LIMIT, "slot B marked bad", || {
        rig.boot_var("BOOT_ORDER") == "A"
    });
    assert_eq!(rig.boot_var("BOOT_B_LEFT"), "0");
    // Nothing good to roll back to.
    let e = api(UpdateProxy::new(&rig.conn)
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.Refused");
    assert!(e.message().contains("not good"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_from_url_downloads_checks_the_hash_and_installs() {
    let rig = Rig::start().await;
    let www = tempfile::tempdir().unwrap();
    let bytes = fs::read(bundle(&Spec::plain(NEWER))).unwrap();
    fs::write(www.path().join("next.raucb"), &bytes).unwrap();
    let (_server, port, ca) = https_server(www.path(), "localhost");
    let downloads = rig.path("data/downloads");
    let conf = format!(
        "{}download_dir = \"{}\"\nurl_ca_file = \"{}\"\n",
        config(&rig, "127.0.0.0/8", 60),
        downloads.display(),
        ca.display()
    );
    let _daemon = Daemon::start_in_env(initialized_dir(), &conf, &[], &[]);
    let conn = rig.conn.clone();
    wait_props(&conn, "RAUC found", |p| p.available).await;
    let update = UpdateProxy::new(&conn).await.unwrap();
    let url = format!("https://localhost:{port}/next.raucb");
    let mut completed = update.receive_completed().await.unwrap();

    // Arguments are checked before anything is fetched.
    let e = api(update
        .install_from_url(
            &url.replace("https", "http"),
            &sha256_hex(&bytes),
            opts(false),
        )
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.freedesktop.DBus.Error.InvalidArgs", "{e}");
    let e = api(update
        .install_from_url(&url, "abc", opts(false))
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.freedesktop.DBus.Error.InvalidArgs", "{e}");

    // Another hash: the download is refused and deleted, nothing written.
    update
        .install_from_url(&url, &"ab".repeat(32), opts(false))
        .await
        .unwrap();
    let c = tokio::time::timeout(LIMIT, completed.next())
        .await
        .unwrap()
        .unwrap();
    let args = c.args().unwrap();
    assert!(!*args.success());
    assert!(
        args.message().contains("SHA-256") && args.message().contains("BundleRejected"),
        "{}",
        args.message()
    );
    rig.assert_untouched();
    assert_eq!(
        fs::read_dir(&downloads).unwrap().count(),
        0,
        "the download was kept"
    );

    // The right hash: downloaded, checked by RAUC, installed.
    update
        .install_from_url(&url, &sha256_hex(&bytes), opts(false))
        .await
        .unwrap();
    let c = tokio::time::timeout(LIMIT, completed.next())
        .await
        .unwrap()
        .unwrap();
    let args = c.args().unwrap();
    assert!(*args.success(), "{}\n{}", args.message(), rig.log());
    let p = wait_props(&conn, "installed", |p| p.state == "installed").await;
    assert_eq!(
        (p.bundle_version.as_str(), p.primary_slot.as_str()),
        (NEWER, "B")
    );
    assert!(slot_b_holds(&rig, NEWER), "{}", rig.log());
    assert_eq!(fs::read_dir(&downloads).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_rauc_the_interface_says_so_and_time_is_served() {
    let bus = PrivateBus::start(&[]);
    let dir = initialized_dir();
    let conf = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nlocal_stratum = 10\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"{}\"\n[update]\nstate_file = \"{}\"\n",
        bus.address,
        dir.path().join("ota-state.json").display()
    );
    let daemon = Daemon::start_in_env(dir, &conf, &[], &[]);
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let e = api(UpdateProxy::new(&conn)
        .await
        .unwrap()
        .check("/nonexistent.raucb")
        .await
        .unwrap_err());
    assert_eq!(e.name(), "org.skytime.Error.UpdateUnavailable", "{e}");
    assert!(e.message().contains("de.pengutronix.rauc"), "{e}");
    let p = props(&conn).await;
    assert!(!p.available && p.state == "idle", "{p:?}");
    // Time service goes on.
    let reply = skytime_tests::ntp::query(daemon.ntp_addr());
    assert!(reply.is_some(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_upload_route_installs_a_bundle_end_to_end() {
    let rig = Rig::start_with("A", &[LOGIND_POLICY]).await;
    let reboots = stand_in_logind(&rig).await;
    let _daemon = start_daemon(&rig, initialized_dir());
    wait_props(&rig.conn, "RAUC found", |p| p.available).await;
    let ca = Ca::new("skytime test operators");
    let dir = Gateway::prepare(
        &rig.bus.address,
        "[limits]\nmax_upload = 16777216\nwrite_burst = 100\n",
        &[("skytime-admin-ca.pem", ca.pem.cert.as_str())],
    );
    let gw = Gateway::start(dir);
    let admin = ca.client("admin", 2100, Usage::ClientAuth);
    let bytes = fs::read(bundle(&Spec::plain(NEWER))).unwrap();
    let hash = sha256_hex(&bytes);
    let client = gw.client(Some(&admin));
    let r = tokio::task::block_in_place(|| {
        client.request(
            "POST",
            &format!("/api/v1/Update/Install?sha256={hash}&reboot=true"),
            &[],
            &bytes,
        )
    })
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.json()["Version"], NEWER);
    let p = wait_props(&rig.conn, "installed", |p| p.state == "installed").await;
    assert_eq!(p.primary_slot, "B");
    // reboot=true: once written, skytimed asks logind to reboot.
    let (_logind, reboots) = reboots;
    wait_for(LIMIT, "the reboot after the install", || {
        *reboots.lock().unwrap() == 1
    });
    assert!(slot_b_holds(&rig, NEWER), "{}", rig.log());
    // The update state through the gateway and in its metrics.
    let r = tokio::task::block_in_place(|| client.get("/api/v1/Update/properties")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["State"], "installed");
    let m = tokio::task::block_in_place(|| client.get("/metrics")).unwrap();
    assert!(
        m.text().contains("skytime_update_info{state=\"installed\""),
        "{}",
        m.text()
    );
    // A refused bundle through the gateway keeps its name.
    let junk = b"not a bundle at all".to_vec();
    let hash = sha256_hex(&junk);
    let r = tokio::task::block_in_place(|| {
        client.request(
            "POST",
            &format!("/api/v1/Update/Install?sha256={hash}&force=true"),
            &[],
            &junk,
        )
    })
    .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"], "org.skytime.Error.BundleRejected");

    // skytimectl --host: status, and an install uploaded through the
    // gateway (a forced downgrade), progress as plain lines off a tty.
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = admin.write(files.path(), "admin");
    let host = format!("localhost:{}", gw.addr.port());
    let remote = skytime_tests::mgmt::Remote::new(&host, &cert, &key, &gw.server_cert());
    let ctl = |args: &[&str]| tokio::task::block_in_place(|| remote.run(args));
    let r = ctl(&["--json", "update", "status"]);
    assert!(r.ok(), "{}", r.all());
    assert_eq!(r.json()["State"], "installed");
    let older = bundle(&Spec::plain(OLDER));
    let r = ctl(&["update", "install", s(&older)]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stderr.contains("org.skytime.Error.Downgrade"),
        "{}",
        r.all()
    );
    let r = ctl(&["update", "install", s(&older), "--force"]);
    assert!(r.ok(), "{}\n{}", r.all(), gw.log());
    assert!(
        r.stdout.contains(&format!("Installed {OLDER} in slot B")),
        "{}",
        r.all()
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        !r.stderr.contains('\r')
            && lines.iter().all(|l| l
                .split_once("% ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
            && lines.last().is_some_and(|l| l.starts_with("100% ")),
        "plain progress lines ending at 100 %: {:?}",
        r.stderr
    );
    assert!(slot_b_holds(&rig, OLDER), "{}", rig.log());
    let junk_file = files.path().join("junk.raucb");
    fs::write(&junk_file, &junk).unwrap();
    let r = ctl(&["update", "install", s(&junk_file)]);
    assert_eq!(r.code, Some(5), "{}", r.all());
    assert!(r.stderr.contains("BundleRejected"), "{}", r.all());
}

/// `skytimectl update install` running in the background on the rig's
/// bus; its stdout and stderr go to files in the rig.
struct Install {
    child: Killed,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Install {
    fn start(rig: &Rig, bundle: &Path, restart_wait: u32) -> Self {
        let (out, err) = (rig.path("ctl.out"), rig.path("ctl.err"));
        let child = std::process::Command::new(bin("skytimectl"))
            .args(["update", "install", s(bundle), "--restart-wait"])
            .arg(restart_wait.to_string())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Killed(child),
            out,
            err,
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) for skytimectl to exit: its code, stdout, stderr.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let status = skytime_tests::wait_until(limit, || self.child.0.try_wait().unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "skytimectl still running after {limit:?}: {}",
                    self.stderr()
                )
            });
        let out = fs::read_to_string(&self.out).unwrap();
        (status.code(), out, self.stderr())
    }
}

/// skytimed started on the rig, `skytimectl update install` of a newer
/// bundle (with `--restart-wait restart_wait`) held by the test backend's
/// gate in RAUC's first bootloader call, and skytimed killed (SIGKILL, as
/// a crash or the watchdog would) once the install is under way. The gate
/// stays closed: the caller removes `bl/gate` to let RAUC finish.
async fn kill_skytimed_mid_install(rig: &Rig, restart_wait: u32) -> (Install, tempfile::TempDir) {
    let daemon = start_daemon(rig, initialized_dir());
    wait_props(&rig.conn, "RAUC found", |p| p.available).await;
    let good = bundle(&Spec::plain(NEWER));
    fs::write(rig.path("bl/gate"), "").unwrap();
    let install = Install::start(rig, &good, restart_wait);
    wait_props(&rig.conn, "installing", |p| p.state == "installing").await;
    (install, daemon.kill())
}

/// skytimed killed (SIGKILL, as a crash or the watchdog would) while RAUC
/// installs, then started again: skytimectl says so and follows the
/// install to its real result. RAUC is held in the install's first
/// bootloader call (the test backend's gate) so that the kill lands
/// mid-install every time, not by timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skytimectl_follows_an_install_across_a_restart_of_skytimed() {
    let rig = Rig::start().await;
    let conn = rig.conn.clone();
    let (install, dir) = kill_skytimed_mid_install(&rig, 60).await;
    wait_for(LIMIT, "skytimectl to see skytimed gone", || {
        install
            .stderr()
            .contains("skytimed went away during the install")
    });
    let daemon = start_daemon(&rig, dir);
    let p = wait_props(&conn, "skytimed back with RAUC", |p| p.available).await;
    assert_eq!(
        (p.state.as_str(), p.bundle_version.as_str()),
        ("installing", NEWER),
        "the install's state is resumed from disk\n{}",
        daemon.log()
    );
    fs::remove_file(rig.path("bl/gate")).unwrap();

    let (code, out, err) = install.wait(LIMIT);
    assert_eq!(
        code,
        Some(0),
        "{out}\n{err}\n{}\n{}",
        daemon.log(),
        rig.log()
    );
    assert!(
        err.contains("skytimed restarted; still following the install"),
        "{err}"
    );
    assert!(
        out.contains(&format!("Installed {NEWER} in slot B")),
        "{out}\n{err}"
    );
    let p = props(&conn).await;
    assert_eq!(
        (p.state.as_str(), p.primary_slot.as_str()),
        ("installed", "B"),
        "{p:#?}"
    );
    assert!(slot_b_holds(&rig, NEWER), "{}", rig.log());
    let r = run(
        None,
        &bin("skytimectl"),
        &["update", "status"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)],
    );
    assert!(
        r.stdout.contains("installed (reboot pending)"),
        "{}",
        r.all()
    );
    drop(daemon);
}

/// skytimed killed during an install and not started again: skytimectl
/// gives up once its --restart-wait has passed, with exit code 3 and a
/// message naming what to check (not after the install, which RAUC holds
/// here for up to a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skytimectl_gives_up_when_skytimed_does_not_come_back() {
    let rig = Rig::start().await;
    let (install, dir) = kill_skytimed_mid_install(&rig, 3).await;
    drop(dir);
    let (code, out, err) = install.wait(Duration::from_secs(30));
    fs::remove_file(rig.path("bl/gate")).unwrap();
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(
        err.contains("skytimed went away during the install")
            && err.contains("did not come back within 3 s")
            && err.contains("journalctl -u skytimed"),
        "{err}"
    );
    assert!(!err.contains("restarted"), "{err}");
}

/// RAUC's own `Operation` ("idle" or "installing").
async fn rauc_operation(conn: &zbus::Connection) -> String {
    let p = zbus::Proxy::new(
        conn,
        "de.pengutronix.rauc",
        "/",
        "de.pengutronix.rauc.Installer",
    )
    .await
    .unwrap();
    p.get_property("Operation").await.unwrap()
}

/// skytimed killed mid-install, and RAUC finishes before skytimed is
/// back: its `Completed` reached no one, so skytimed on start finds RAUC
/// idle with its own state still "installing" and settles the install
/// from the slot RAUC made primary; skytimectl follows to the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_that_ended_while_skytimed_was_away_is_settled_on_its_start() {
    let rig = Rig::start().await;
    let conn = rig.conn.clone();
    let (install, dir) = kill_skytimed_mid_install(&rig, 60).await;
    fs::remove_file(rig.path("bl/gate")).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !(slot_b_holds(&rig, NEWER) && rauc_operation(&conn).await == "idle") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "RAUC did not finish\n{}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let daemon = start_daemon(&rig, dir);
    let p = wait_props(&conn, "the install settled", |p| p.state != "installing").await;
    assert_eq!(
        (p.state.as_str(), p.primary_slot.as_str()),
        ("installed", "B"),
        "{p:#?}\n{}",
        daemon.log()
    );
    assert!(
        daemon
            .log()
            .contains("RAUC finished the install while skytimed was not running"),
        "{}",
        daemon.log()
    );
    let (code, out, err) = install.wait(LIMIT);
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", daemon.log());
    assert!(
        err.contains("skytimed restarted; still following the install"),
        "{err}"
    );
    assert!(
        out.contains(&format!("Installed {NEWER} in slot B")),
        "{out}"
    );
}
