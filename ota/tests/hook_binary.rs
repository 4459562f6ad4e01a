//! The hook binary run directly with a crafted RAUC environment: exit
//! codes, the reason on the last stderr line, the boot files written.

mod support;

use skytime_ota::bootfiles::{sha256_copy, write_archive};
use skytime_ota::state::{Bundle, State};
use skytime_ota::store::Store;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{bootfiles, run_bounded, RUNNING};

const NEWER: &str = "0.3.0+20250401.120000";
const OLDER: &str = "0.1.0+20250101.000000";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A mounted bundle stand-in (manifest of `version`), os-release of the
    /// running system, no update state.
    fn new(version: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("bundle")).unwrap();
        let manifest = include_str!("../manifest.raucm.in")
            .replace("@COMPATIBLE@", "skytime-rpi4")
            .replace("@VERSION@", version)
            .replace("@FORMAT@", "verity")
            .replace("@BUILD@", "test");
        fs::write(d.join("bundle/manifest.raucm"), manifest).unwrap();
        fs::write(d.join("os-release"), format!("IMAGE_VERSION={RUNNING}\n")).unwrap();
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn install_check_env(&self, compatible: &str, version: &str) -> Vec<(&'static str, OsString)> {
        vec![
            ("RAUC_SYSTEM_COMPATIBLE", "skytime-rpi4".into()),
            ("RAUC_SYSTEM_VARIANT", "".into()),
            ("RAUC_MF_COMPATIBLE", compatible.into()),
            ("RAUC_MF_VERSION", version.into()),
            ("RAUC_MF_BUILD", "test".into()),
            ("RAUC_MOUNT_PREFIX", "/run/rauc".into()),
            ("SKYTIME_OTA_BUNDLE_DIR", self.path("bundle").into()),
            ("SKYTIME_OTA_OS_RELEASE", self.path("os-release").into()),
            ("SKYTIME_OTA_STATE", self.path("state.json").into()),
        ]
    }
}

fn hook(arg: Option<&str>, env: &[(&str, OsString)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skytime-rauc-hook"));
    cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(a) = arg {
        cmd.arg(a);
    }
    run_bounded(&mut cmd, Duration::from_secs(30))
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn without(env: &[(&'static str, OsString)], var: &str) -> Vec<(&'static str, OsString)> {
    env.iter().filter(|(k, _)| *k != var).cloned().collect()
}

#[test]
fn install_check_accepts_a_newer_bundle() {
    let s = Setup::new(NEWER);
    let out = hook(
        Some("install-check"),
        &s.install_check_env("skytime-rpi4", NEWER),
    );
    assert_eq!(out.status.code(), Some(0), "{}", last_line(&out));
    assert!(last_line(&out).contains(&format!("bundle {NEWER} accepted")));
}

#[test]
fn install_check_refusals_exit_10_with_the_reason_last() {
    let s = Setup::new(OLDER);
    let out = hook(
        Some("install-check"),
        &s.install_check_env("skytime-rpi4", OLDER),
    );
    assert_eq!(out.status.code(), Some(10));
    assert_eq!(
        last_line(&out),
        format!("bundle version {OLDER} is older than the running system's {RUNNING}; force the install to downgrade")
    );

    let s = Setup::new(NEWER);
    let out = hook(
        Some("install-check"),
        &s.install_check_env("other-board", NEWER),
    );
    assert_eq!(out.status.code(), Some(10));
    assert_eq!(
        last_line(&out),
        "bundle is for \"other-board\", this system is \"skytime-rpi4\""
    );

    // The running version cannot be read: refused, saying where it looked.
    fs::remove_file(s.path("os-release")).unwrap();
    let out = hook(
        Some("install-check"),
        &s.install_check_env("skytime-rpi4", NEWER),
    );
    assert_eq!(out.status.code(), Some(10));
    let line = last_line(&out);
    assert!(
        line.contains("the running system's version is unknown"),
        "{line}"
    );
    assert!(
        line.contains(&s.path("os-release").display().to_string()),
        "{line}"
    );
}

#[test]
fn a_forced_version_in_the_update_state_lets_a_downgrade_through() {
    let s = Setup::new(OLDER);
    let state = |force| State::Installing {
        bundle: Bundle {
            source: "/data/older.raucb".into(),
            version: OLDER.into(),
            manifest_hash: None,
            force,
            transaction: "t".into(),
        },
        from_slot: "A".into(),
        boot_id: "b".into(),
        percent: 0,
        step: String::new(),
    };
    let store = Store::new(s.path("state.json"));
    store.save(&state(false)).unwrap();
    let env = s.install_check_env("skytime-rpi4", OLDER);
    assert_eq!(hook(Some("install-check"), &env).status.code(), Some(10));
    store.save(&state(true)).unwrap();
    let out = hook(Some("install-check"), &env);
    assert_eq!(out.status.code(), Some(0), "{}", last_line(&out));
    assert!(last_line(&out).ends_with("accepted (forced)"));
}

#[test]
fn broken_invocations_fail_with_exit_1_naming_the_cause() {
    let s = Setup::new(NEWER);
    let env = s.install_check_env("skytime-rpi4", NEWER);
    let out = hook(Some("install-check"), &without(&env, "RAUC_MF_COMPATIBLE"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        last_line(&out),
        "skytime-rauc-hook: RAUC_MF_COMPATIBLE is not set (is this running as a RAUC hook?)"
    );
    let out = hook(None, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_line(&out).contains("no hook command given"));
    let out = hook(Some("frobnicate"), &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_line(&out).contains("unknown hook command \"frobnicate\""));
    // The manifest beside the hook is required.
    fs::remove_file(s.path("bundle/manifest.raucm")).unwrap();
    let out = hook(Some("install-check"), &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_line(&out).contains("bundle/manifest.raucm"),
        "{}",
        last_line(&out)
    );
}

fn slot_env(s: &Setup, class: &str, archive: &Path, digest: &str) -> Vec<(&'static str, OsString)> {
    let size = fs::metadata(archive).unwrap().len().to_string();
    vec![
        ("RAUC_SYSTEM_COMPATIBLE", "skytime-rpi4".into()),
        ("RAUC_SLOT_NAME", format!("{class}.1").into()),
        ("RAUC_SLOT_STATE", "inactive".into()),
        ("RAUC_SLOT_CLASS", class.into()),
        ("RAUC_SLOT_TYPE", "vfat".into()),
        ("RAUC_SLOT_DEVICE", s.path("boot").into()),
        ("RAUC_SLOT_BOOTNAME", "B".into()),
        ("RAUC_SLOT_PARENT", "rootfs.1".into()),
        ("RAUC_IMAGE_NAME", archive.into()),
        ("RAUC_IMAGE_SIZE", size.into()),
        ("RAUC_IMAGE_DIGEST", digest.into()),
        ("RAUC_IMAGE_CLASS", class.into()),
        ("RAUC_MOUNT_PREFIX", s.path("mnt").into()),
        ("RAUC_BUNDLE_MOUNT_POINT", s.path("bundle").into()),
    ]
}

#[test]
fn slot_install_writes_the_boot_files_of_the_target_slot() {
    let s = Setup::new(NEWER);
    let src = s.path("src");
    for (rel, data) in bootfiles(NEWER) {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    let archive = s.path("bundle/bootfiles.tar");
    write_archive(&src, 0, fs::File::create(&archive).unwrap()).unwrap();
    let digest = sha256_copy(fs::File::open(&archive).unwrap(), None).unwrap();
    fs::create_dir_all(s.path("boot/slot-a")).unwrap();
    fs::write(s.path("boot/slot-a/vmlinuz"), "running kernel").unwrap();

    // A digest that is not RAUC's: nothing is written.
    let wrong = "0".repeat(64);
    let out = hook(
        Some("slot-install"),
        &slot_env(&s, "bootfiles", &archive, &wrong),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_line(&out).contains("RAUC says 0000"),
        "{}",
        last_line(&out)
    );
    assert!(!s.path("boot/slot-b").exists());

    let out = hook(
        Some("slot-install"),
        &slot_env(&s, "bootfiles", &archive, &digest),
    );
    assert_eq!(out.status.code(), Some(0), "{}", last_line(&out));
    assert!(last_line(&out).ends_with("3 boot files written to slot-b/"));
    for (rel, data) in bootfiles(NEWER) {
        assert_eq!(
            fs::read(s.path("boot/slot-b").join(rel)).unwrap(),
            data,
            "{rel}"
        );
    }
    assert_eq!(
        fs::read_to_string(s.path("boot/slot-a/vmlinuz")).unwrap(),
        "running kernel"
    );

    // Only the boot files have an install hook; other hooks do nothing.
    let out = hook(
        Some("slot-install"),
        &slot_env(&s, "rootfs", &archive, &digest),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(last_line(&out).contains("no slot-install for slot class \"rootfs\""));
    let out = hook(
        Some("slot-post-install"),
        &slot_env(&s, "bootfiles", &archive, &digest),
    );
    assert_eq!(out.status.code(), Some(0));
    // A slot without a bootname has no directory.
    let env = without(
        &slot_env(&s, "bootfiles", &archive, &digest),
        "RAUC_SLOT_BOOTNAME",
    );
    let out = hook(Some("slot-install"), &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_line(&out).contains("has no bootname"));
}
