//! `skytime-update-guard` against a real RAUC 1.13 (`rauc service` on a
//! private bus, the test bootloader backend), with the kernel's boot clock
//! set per case by a time namespace (`unshare --time --boottime`), so the
//! guard sees a boot of the age each case needs: it waits while the slot
//! on trial is young and stands down when skytimed confirms it; past the
//! limit it saves "rolled back" with its reason, has RAUC mark the slot
//! bad and asks a stand-in logind for the reboot; it leaves a slot that is
//! not on trial alone.

mod support;

use skytime_ota::state::{Bundle, State};
use skytime_ota::store::Store;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::*;

const VERSION: &str = "0.3.0+20250401.120000";

fn bundle() -> Bundle {
    Bundle {
        source: "/var/lib/skytime/update.raucb".into(),
        version: VERSION.into(),
        manifest_hash: None,
        force: false,
        transaction: "4a7e0c3e-1f2b-4d7a-9d1c-2b0f6f3e9a10".into(),
    }
}

/// The install from A to B completed; B boots next (reboot pending).
fn installed() -> State {
    State::Installed {
        bundle: bundle(),
        from_slot: "A".into(),
        target_slot: "B".into(),
        boot_id: "a-boot-before".into(),
    }
}

struct Case {
    // Dropped before the rig: the stand-in logind's connection.
    _logind: zbus::Connection,
    reboots: Reboots,
    rig: Rig,
    state: Store,
    config: PathBuf,
}

impl Case {
    /// RAUC booted from `booted`, the update state `state`, skytimed's
    /// configuration with `health_deadline = 30`.
    async fn start(booted: &str, state: &State) -> Self {
        let rig = Rig::start_with(booted, &[LOGIND_POLICY]).await;
        let (logind, reboots) = stand_in_logind(&rig).await;
        // As RAUC leaves it after installing B: B first, with 3 attempts.
        fs::write(rig.path("bl/BOOT_ORDER"), "B A\n").unwrap();
        let store = Store::new(rig.path("data/ota/state.json"));
        store.save(state).unwrap();
        let config = rig.path("skytime.toml");
        fs::write(
            &config,
            "[ntp]\nlisten = [\"127.0.0.1:123\"]\n\n[update]\nhealth_deadline = 30\n",
        )
        .unwrap();
        Self {
            _logind: logind,
            reboots,
            rig,
            state: store,
            config,
        }
    }

    /// The guard in a time namespace whose boot clock reads `uptime`
    /// seconds; the first `--config` names a file that does not exist
    /// (the managed file before the image's default, as in the image).
    fn guard(&self, uptime: u64) -> Command {
        let now: f64 = fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let offset = uptime as i64 - now as i64;
        let mut cmd = Command::new("unshare");
        cmd.args(["--fork", "--time", "--boottime", &offset.to_string()])
            .arg(skytime_tests::bin("skytime-update-guard"))
            .arg("--config")
            .arg(self.rig.path("absent.toml"))
            .arg("--config")
            .arg(&self.config)
            .args(["--margin", "0", "--state"])
            .arg(self.state.path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.rig.bus.address)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, uptime: u64) -> Output {
        run_bounded(&mut self.guard(uptime), Duration::from_secs(120))
    }

    fn reboots(&self) -> u32 {
        *self.reboots.lock().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_limit_the_unconfirmed_slot_is_rolled_back_marked_bad_and_rebooted() {
    let case = Case::start("B", &installed()).await;
    assert_eq!(case.rig.boot_var("BOOT_ORDER"), "B A");
    let out = case.run(100_000);
    assert!(out.status.success(), "{}", text(&out));
    let State::RolledBack {
        failed_slot,
        reason,
        ..
    } = case.state.load().unwrap()
    else {
        panic!("not rolled back: {:?}\n{}", case.state.load(), text(&out));
    };
    assert_eq!(failed_slot, "B");
    assert_eq!(
        reason,
        "health check failed on slot B: skytimed did not confirm it within 30 s of boot (the update guard)"
    );
    // RAUC marked the booted slot bad: no attempts left, out of the order.
    assert_eq!(case.rig.boot_var("BOOT_B_LEFT"), "0", "{}", case.rig.log());
    assert_eq!(case.rig.boot_var("BOOT_ORDER"), "A");
    assert_eq!(case.reboots(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_young_slot_is_watched_until_skytimed_confirms_it() {
    let unconfirmed = State::BootedUnconfirmed {
        bundle: bundle(),
        slot: "B".into(),
        previous_slot: "A".into(),
        boot_id: "an-earlier-boot".into(),
    };
    let case = Case::start("B", &unconfirmed).await;
    // 10 s after boot; the limit is 30 s.
    let mut guard: Child = case
        .guard(10)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        guard.try_wait().unwrap().is_none(),
        "the guard ended while the slot was on trial and young"
    );
    assert_eq!(case.state.load().unwrap(), unconfirmed);
    // skytimed confirms the slot: the guard stands down.
    case.state
        .save(&State::Confirmed {
            bundle: bundle(),
            slot: "B".into(),
        })
        .unwrap();
    let ended = skytime_tests::wait_until(Duration::from_secs(60), || guard.try_wait().unwrap());
    let Some(status) = ended else {
        let _ = guard.kill();
        panic!("the guard did not stand down after the confirmation");
    };
    let out = guard.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not on trial (update state confirmed)"),
        "{}",
        text(&out)
    );
    assert_eq!(case.reboots(), 0);
    assert_eq!(case.rig.boot_var("BOOT_B_LEFT"), "3");
    assert_eq!(case.rig.boot_var("BOOT_ORDER"), "B A");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slot_an_update_came_from_is_never_judged() {
    // The install completed on A, but A booted again (a power cut before
    // the reboot and a bootloader that fell back, say): A is not on trial.
    let case = Case::start("A", &installed()).await;
    let out = case.run(100_000);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("slot A is not on trial (update state installed)"),
        "{}",
        text(&out)
    );
    assert_eq!(case.state.load().unwrap(), installed());
    assert_eq!(case.rig.boot_var("BOOT_ORDER"), "B A");
    assert_eq!(case.rig.boot_var("BOOT_A_LEFT"), "3");
    assert_eq!(case.rig.boot_var("BOOT_B_LEFT"), "3");
    assert_eq!(case.reboots(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settled_update_ends_the_guard_at_once_and_a_bad_state_file_is_an_error() {
    let case = Case::start("B", &State::Idle).await;
    let out = case.run(100_000);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing on trial (update state idle)"),
        "{}",
        text(&out)
    );
    // A corrupt state file: an error naming it, and the file kept.
    fs::write(case.state.path(), b"{\"format\": 1, \"state\": garbage").unwrap();
    let out = case.run(100_000);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&case.state.path().display().to_string()),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs::read(case.state.path()).unwrap(),
        b"{\"format\": 1, \"state\": garbage"
    );
    assert_eq!(case.reboots(), 0);
}

/// A configuration skytimed refuses (it does not run then): the guard
/// still acts, at skytimed's default deadline, and says why.
async fn refused_config_still_fails_the_slot(config: &str) {
    let case = Case::start("B", &installed()).await;
    fs::write(&case.config, config).unwrap();
    let out = case.run(100_000);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}: ", case.config.display()))
            && text(&out).contains("using skytimed's default deadline of 300 s"),
        "{}",
        text(&out)
    );
    assert!(
        matches!(case.state.load().unwrap(), State::RolledBack { .. }),
        "{:?}",
        case.state.load()
    );
    assert_eq!(case.rig.boot_var("BOOT_B_LEFT"), "0");
    assert_eq!(case.reboots(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_that_does_not_parse_still_lets_the_guard_act() {
    refused_config_still_fails_the_slot("[update\nhealth_deadline = 60\n").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_skytimed_refuses_still_lets_the_guard_act() {
    refused_config_still_fails_the_slot("[update]\nhealth_deadline = 1e9\n").await;
}
