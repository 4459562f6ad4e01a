//! skytime-ota's RAUC client against a real RAUC 1.13 (`rauc service` on a
//! private bus, file-backed slots, plain bundles made by ota/bundle.sh):
//! inspect, install with progress and `Completed`, slot status during and
//! after an install, `Mark`, `GetPrimary`, and every refusal with its
//! reason, leaving the slots as they were.

mod support;

use futures_lite::StreamExt;
use skytime_ota::bootfiles::sha256_copy;
use skytime_ota::rauc::{InstallOptions, MarkState, Rauc, RaucError, SlotStatus, CONTRACT};
use skytime_ota::state::{Bundle, State};
use skytime_ota::store::Store;
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::*;

const NEWER: &str = "0.3.0+20250401.120000";
const OLDER: &str = "0.1.0+20250101.000000";
const LIMIT: Duration = Duration::from_secs(90);

fn sha(data: &[u8]) -> String {
    sha256_copy(data, None).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn slot<'a>(slots: &'a [SlotStatus], name: &str) -> &'a SlotStatus {
    slots
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no slot {name} in {slots:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reports_the_manifest_and_properties_the_system() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    assert_eq!(rauc.compatible().await.unwrap(), "skytime-rpi4");
    assert_eq!(rauc.boot_slot().await.unwrap(), "A");
    assert_eq!(rauc.operation().await.unwrap(), "idle");
    assert_eq!(rauc.last_error().await.unwrap(), "");

    for format in ["plain", "verity"] {
        let spec = Spec {
            format,
            ..Spec::plain(NEWER)
        };
        let info = rauc
            .inspect(s(&bundle(&spec)))
            .await
            .unwrap_or_else(|e| panic!("{format}: {e}\n{}", rig.log()));
        assert_eq!(info.format, format);
        assert_eq!(info.compatible, "skytime-rpi4");
        assert_eq!(info.version.as_deref(), Some(NEWER));
        assert_eq!(info.build.as_deref(), Some("host test"));
        assert_eq!(info.hooks, ["install-check"]);
        assert_eq!(info.manifest_hash.len(), 64);
        let rootfs = info
            .images
            .iter()
            .find(|i| i.slot_class == "rootfs")
            .unwrap();
        assert_eq!(rootfs.filename.as_deref(), Some("rootfs.img"));
        assert_eq!(rootfs.size, Some(1 << 20));
        assert_eq!(
            rootfs.checksum.as_deref(),
            Some(sha(&rootfs_bytes(NEWER)).as_str())
        );
        assert!(rootfs.hooks.is_empty());
        let boot = info
            .images
            .iter()
            .find(|i| i.slot_class == "bootfiles")
            .unwrap();
        assert_eq!(boot.filename.as_deref(), Some("bootfiles.tar"));
        assert_eq!(boot.hooks, ["install"]);
    }
    // Inspecting changes nothing.
    rig.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn install_writes_the_other_slot_with_progress_and_completed() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    assert_eq!(rauc.primary().await.unwrap(), "rootfs.0");
    let before = rauc.slot_status().await.unwrap();
    assert_eq!(slot(&before, "rootfs.0").state.as_deref(), Some("booted"));
    assert_eq!(slot(&before, "rootfs.1").status, None, "never installed");
    let slot_a = rig.tree("boot/slot-a");

    let options = InstallOptions {
        transaction_id: Some("4f6c1b0e-2d1a-4c3e-9b8a-0d7e6f5a4b3c".into()),
        ..InstallOptions::default()
    };
    let mut progress = Vec::new();
    rauc.install_and_wait(s(&bundle(&Spec::plain(NEWER))), &options, LIMIT, |p| {
        progress.push(p.clone())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));

    // Progress arrived, up to 100 % when done.
    assert!(progress.len() >= 3, "{progress:?}");
    assert_eq!(
        progress.last().map(|p| p.percent),
        Some(100),
        "{progress:?}"
    );
    assert!(progress.iter().all(|p| (0..=100).contains(&p.percent)));
    assert!(
        progress.iter().any(|p| p.message.contains("rootfs.1")),
        "{progress:?}"
    );
    assert_eq!(rauc.operation().await.unwrap(), "idle");

    // Slot B holds the new root, slot-b/ the new boot files, A is as it was.
    let b = fs::read(rig.path("slots/b.img")).unwrap();
    assert_eq!(&b[..1 << 20], &rootfs_bytes(NEWER)[..]);
    let boot_b = rig.tree("boot/slot-b").unwrap();
    for (rel, data) in bootfiles(NEWER) {
        assert_eq!(boot_b.get(rel), Some(&data), "{rel}");
    }
    assert!(boot_b.contains_key("bootfiles.sha256"));
    assert_eq!(boot_b.len(), 4, "{:?}", boot_b.keys());
    assert_eq!(rig.tree("boot/slot-a"), slot_a);

    // RAUC's record and the bootloader: B is primary with fresh attempts.
    let after = rauc.slot_status().await.unwrap();
    let r1 = slot(&after, "rootfs.1");
    assert_eq!(r1.status.as_deref(), Some("ok"));
    assert_eq!(r1.bundle_version.as_deref(), Some(NEWER));
    assert_eq!(r1.bundle_compatible.as_deref(), Some("skytime-rpi4"));
    assert_eq!(r1.installed_transaction, options.transaction_id);
    assert_eq!(
        r1.sha256.as_deref(),
        Some(sha(&rootfs_bytes(NEWER)).as_str())
    );
    assert_eq!(r1.boot_status.as_deref(), Some("good"));
    let bf1 = slot(&after, "bootfiles.1");
    assert_eq!(bf1.status.as_deref(), Some("ok"));
    assert_eq!(bf1.parent.as_deref(), Some("rootfs.1"));
    assert_eq!(slot(&after, "rootfs.0").state.as_deref(), Some("booted"));
    assert_eq!(rauc.primary().await.unwrap(), "rootfs.1");
    assert_eq!(rig.boot_var("BOOT_ORDER"), "B A");
    assert_eq!(rig.boot_var("BOOT_B_LEFT"), "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_installing_rauc_answers_busy_then_completes() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    let path = bundle(&Spec::plain(NEWER));
    // Hold the install in its first bootloader call (set-state B bad).
    fs::write(rig.path("bl/gate"), "").unwrap();
    let mut completed = rauc.proxy().receive_completed().await.unwrap();
    rauc.install(s(&path), &InstallOptions::default())
        .await
        .unwrap();
    let calls = rig.path("bl/calls");
    wait_for(LIMIT, "RAUC to mark slot B non-bootable", || {
        fs::read_to_string(&calls).is_ok_and(|c| c.contains("set-state B bad"))
    });

    assert_eq!(rauc.operation().await.unwrap(), "installing");
    assert!(matches!(rauc.slot_status().await, Err(RaucError::Busy)));
    assert!(matches!(rauc.primary().await, Err(RaucError::Busy)));
    assert!(matches!(
        rauc.mark(MarkState::Good, "booted").await,
        Err(RaucError::Busy)
    ));
    assert!(matches!(rauc.inspect(s(&path)).await, Err(RaucError::Busy)));
    let again = rauc.install(s(&path), &InstallOptions::default()).await;
    assert!(matches!(again, Err(RaucError::Busy)), "{again:?}");
    assert_eq!(
        RaucError::Busy.to_string(),
        "RAUC is busy with another operation (an install is running)"
    );

    fs::remove_file(rig.path("bl/gate")).unwrap();
    let signal = tokio::time::timeout(LIMIT, completed.next())
        .await
        .expect("Completed within the limit")
        .unwrap();
    assert_eq!(*signal.args().unwrap().result(), 0, "{}", rig.log());
    let slots = rauc.slot_status().await.unwrap();
    assert_eq!(slot(&slots, "rootfs.1").status.as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mark_and_primary_follow_the_bootloader() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    assert_eq!(rauc.primary().await.unwrap(), "rootfs.0");

    let (name, message) = rauc.mark(MarkState::Bad, "other").await.unwrap();
    assert_eq!(name, "rootfs.1");
    assert!(message.contains("rootfs.1"), "{message}");
    assert_eq!(rig.boot_var("BOOT_ORDER"), "A");
    assert_eq!(rig.boot_var("BOOT_B_LEFT"), "0");
    let slots = rauc.slot_status().await.unwrap();
    assert_eq!(slot(&slots, "rootfs.1").boot_status.as_deref(), Some("bad"));
    assert_eq!(
        slot(&slots, "rootfs.0").boot_status.as_deref(),
        Some("good")
    );

    let (name, _) = rauc.mark(MarkState::Active, "rootfs.1").await.unwrap();
    assert_eq!(name, "rootfs.1");
    assert_eq!(rauc.primary().await.unwrap(), "rootfs.1");
    assert_eq!(rig.boot_var("BOOT_ORDER"), "B A");

    rig_set(&rig, "BOOT_A_LEFT", "1");
    let (name, _) = rauc.mark(MarkState::Good, "booted").await.unwrap();
    assert_eq!(name, "rootfs.0");
    assert_eq!(rig.boot_var("BOOT_A_LEFT"), "3");

    let e = rauc.mark(MarkState::Good, "rootfs.7").await.unwrap_err();
    assert!(
        matches!(&e, RaucError::Rejected(m) if m.contains("rootfs.7")),
        "{e}"
    );
}

fn rig_set(rig: &Rig, var: &str, value: &str) {
    fs::write(rig.path(&format!("bl/{var}")), format!("{value}\n")).unwrap();
}

/// Installs `path` and expects RAUC to refuse it with `reason` in
/// `LastError`, changing nothing.
async fn refused(rig: &Rig, rauc: &Rauc, path: &Path, reason: &str) {
    let e = rauc
        .install_and_wait(s(path), &InstallOptions::default(), LIMIT, |_| {})
        .await
        .expect_err("RAUC must refuse the bundle");
    match &e {
        RaucError::InstallFailed { code, last_error } => {
            assert_ne!(*code, 0);
            assert!(
                last_error.contains(reason),
                "want {reason:?} in {last_error:?}\n{}",
                rig.log()
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        rauc.last_error().await.unwrap(),
        match &e {
            RaucError::InstallFailed { last_error, .. } => last_error.clone(),
            _ => unreachable!(),
        }
    );
    rig.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_say_why_and_change_nothing() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    let good = bundle(&Spec::plain(NEWER));
    let bad = scratch().join("refusals");
    fs::create_dir_all(&bad).unwrap();

    // Signed by a CA the appliance does not trust.
    let other = bundle(&Spec {
        trusted: false,
        ..Spec::plain(NEWER)
    });
    let e = rauc.inspect(s(&other)).await.unwrap_err();
    assert!(
        matches!(&e, RaucError::Rejected(m) if m.contains("signature")),
        "{e}"
    );
    refused(
        &rig,
        &rauc,
        &other,
        "unable to get local issuer certificate",
    )
    .await;

    // A payload byte changed after signing.
    let tampered = bad.join("tampered.raucb");
    let mut bytes = fs::read(&good).unwrap();
    bytes[3 * 4096 + 5] ^= 0x40;
    fs::write(&tampered, &bytes).unwrap();
    let e = rauc.inspect(s(&tampered)).await.unwrap_err();
    assert!(
        matches!(&e, RaucError::Rejected(m) if m.contains("signature")),
        "{e}"
    );
    refused(&rig, &rauc, &tampered, "signature").await;

    // Cut short.
    let truncated = bad.join("truncated.raucb");
    let whole = fs::read(&good).unwrap();
    fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let e = rauc.inspect(s(&truncated)).await.unwrap_err();
    assert!(matches!(e, RaucError::Rejected(_)), "{e}");
    refused(&rig, &rauc, &truncated, "bundle").await;

    // Not a bundle at all.
    let text = bad.join("notes.raucb");
    fs::write(&text, "these are not the bytes you are looking for\n").unwrap();
    let e = rauc.inspect(s(&text)).await.unwrap_err();
    assert!(
        matches!(&e, RaucError::Rejected(m) if m.contains("Invalid bundle format")),
        "{e}"
    );
    refused(&rig, &rauc, &text, "Invalid bundle format").await;

    // Missing file.
    let e = rauc.inspect("/nonexistent/bundle.raucb").await.unwrap_err();
    assert!(matches!(e, RaucError::Rejected(_)), "{e}");

    // Built for another board: signature fine, our install-check refuses.
    let foreign = bundle(&Spec {
        compatible: "other-board",
        ..Spec::plain(NEWER)
    });
    assert_eq!(
        rauc.inspect(s(&foreign)).await.unwrap().compatible,
        "other-board"
    );
    refused(
        &rig,
        &rauc,
        &foreign,
        "Bundle rejected: Hook returned: 'bundle is for \"other-board\", this system is \"skytime-rpi4\"'",
    )
    .await;

    // Older than the running 0.2.0: refused by the version policy...
    let older = bundle(&Spec::plain(OLDER));
    refused(
        &rig,
        &rauc,
        &older,
        "bundle version 0.1.0+20250101.000000 is older than the running system's 0.2.0+20250301.000000; force the install to downgrade",
    )
    .await;
    // ... and the running version itself too.
    let same = bundle(&Spec::plain(RUNNING));
    refused(&rig, &rauc, &same, "is the version already running").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_downgrade_goes_through_the_update_state() {
    let rig = Rig::start().await;
    let rauc = Rauc::new(&rig.conn).await.unwrap();
    let older = bundle(&Spec::plain(OLDER));
    let store = Store::new(rig.path("data/ota/state.json"));
    let staged = |force: bool, version: &str| State::Staged {
        bundle: Bundle {
            source: s(&older).to_owned(),
            version: version.to_owned(),
            manifest_hash: None,
            force,
            transaction: "t-1".into(),
        },
        from_slot: "A".into(),
        boot_id: "b1".into(),
    };
    // A force for another version does not apply.
    store.save(&staged(true, "0.1.1+20250101.000000")).unwrap();
    refused(&rig, &rauc, &older, "force the install to downgrade").await;
    // A corrupt state file means no force, says so, and is left as it is.
    fs::write(store.path(), "{\"format\": 1, \"state\": ").unwrap();
    refused(&rig, &rauc, &older, "(no force applies: update state ").await;
    refused(&rig, &rauc, &older, "is corrupt: EOF while parsing").await;
    assert_eq!(
        fs::read_to_string(store.path()).unwrap(),
        "{\"format\": 1, \"state\": "
    );
    // Forced for this version: installed.
    store.save(&staged(true, OLDER)).unwrap();
    rauc.install_and_wait(s(&older), &InstallOptions::default(), LIMIT, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let slots = rauc.slot_status().await.unwrap();
    assert_eq!(
        slot(&slots, "rootfs.1").bundle_version.as_deref(),
        Some(OLDER)
    );
    assert_eq!(
        rig.tree("boot/slot-b").unwrap()["vmlinuz"],
        bootfiles(OLDER)[0].1
    );
}

/// The members of the Installer interface in introspection XML, as
/// (kind, name, in-signature, out-signature).
fn members(xml: &str) -> Vec<(String, String, String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..].split('"').next()?.to_owned())
    };
    let iface = xml
        .split("<interface name=\"de.pengutronix.rauc.Installer\">")
        .nth(1)
        .expect("the Installer interface")
        .split("</interface>")
        .next()
        .unwrap();
    let mut out = Vec::new();
    let mut current: Option<(String, String, String, String)> = None;
    for tag in iface.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        let kind = tag.split_whitespace().next().unwrap_or("");
        match kind {
            "method" | "signal" => {
                if let Some(m) = current.take() {
                    out.push(m);
                }
                current = Some((
                    kind.into(),
                    attr(tag, "name").unwrap(),
                    String::new(),
                    String::new(),
                ));
                if tag.ends_with('/') {
                    out.extend(current.take());
                }
            }
            "property" => out.push((
                "property".into(),
                attr(tag, "name").unwrap(),
                String::new(),
                attr(tag, "type").unwrap(),
            )),
            "arg" => {
                let m = current.as_mut().expect("an arg inside a method or signal");
                let ty = attr(tag, "type").unwrap();
                match attr(tag, "direction").as_deref() {
                    Some("in") => m.2.push_str(&ty),
                    // Signal arguments have no direction: they go out.
                    _ => m.3.push_str(&ty),
                }
            }
            "/method" | "/signal" => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_matches_what_rauc_113_introspects() {
    let rig = Rig::start().await;
    let introspect = zbus::fdo::IntrospectableProxy::builder(&rig.conn)
        .destination("de.pengutronix.rauc")
        .unwrap()
        .path("/")
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = members(&introspect.introspect().await.unwrap());
    let shipped = members(
        &fs::read_to_string(
            top().join("target/trixie-tools/root/usr/share/dbus-1/interfaces/de.pengutronix.rauc.Installer.xml"),
        )
        .unwrap(),
    );
    for (kind, name, sig_in, sig_out) in CONTRACT {
        let want = (
            kind.to_string(),
            name.to_string(),
            sig_in.to_string(),
            sig_out.to_string(),
        );
        assert!(
            live.contains(&want),
            "RAUC does not offer {want:?}: {live:?}"
        );
        assert!(shipped.contains(&want), "the interface XML lacks {want:?}");
    }
    // The parser sees everything: 1.13 has 8 methods, 6 properties, 1 signal.
    assert_eq!(shipped.len(), 15, "{shipped:?}");
}
