//! ota/bundle.sh: same inputs give the same bytes; RAUC 1.13 verifies the
//! verity bundle (signature with check-purpose=codesign, and the payload
//! against our deterministic hash tree) and, with the appliance's
//! system.conf, refuses plain bundles; bad inputs fail without touching
//! the output.

mod support;

use skytime_ota::manifest::{BundleFormat, Manifest};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

const V: &str = "0.3.0+20250401.120000";

/// RAUC with the appliance's own ota/system.conf (only the keyring path
/// is a build-host one).
fn rauc_as_appliance(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(rauc());
    cmd.arg(format!(
        "--conf={}",
        top().join("ota/system.conf").display()
    ))
    .arg(format!("--keyring={}", trusted().keyring.display()))
    .args(args);
    run_bounded(&mut cmd, Duration::from_secs(120))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn same_inputs_same_bytes_and_rauc_verifies_the_payload() {
    let spec = Spec {
        format: "verity",
        ..Spec::plain(V)
    };
    let one = scratch().join("one.raucb");
    let two = scratch().join("two.raucb");
    make_bundle(&spec, &one);
    make_bundle(&spec, &two);
    let a = fs::read(&one).unwrap();
    assert_eq!(
        a,
        fs::read(&two).unwrap(),
        "two runs on the same inputs differ"
    );
    // Another version is another bundle.
    let three = scratch().join("three.raucb");
    make_bundle(
        &Spec {
            version: "0.3.1+20250401.120000".into(),
            ..spec.clone()
        },
        &three,
    );
    assert_ne!(a, fs::read(&three).unwrap());

    // The appliance's configuration accepts it (signature, codesign).
    let info = rauc_as_appliance(&["info".as_ref(), one.as_os_str()]);
    assert!(info.status.success(), "{}", text(&info));
    assert!(text(&info).contains("Bundle Format: \tverity") || text(&info).contains("verity"));

    // `rauc extract` checks every payload block against the hash tree.
    let out = scratch().join("extracted");
    let ex = rauc_as_appliance(&["extract".as_ref(), one.as_os_str(), out.as_os_str()]);
    assert!(ex.status.success(), "{}", text(&ex));
    assert_eq!(fs::read(out.join("rootfs.img")).unwrap(), rootfs_bytes(V));
    assert_eq!(
        fs::read(out.join("hook")).unwrap(),
        fs::read(hook()).unwrap()
    );
    let m: Manifest = fs::read_to_string(out.join("manifest.raucm"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(m.format, BundleFormat::Verity);
    assert_eq!(m.update.version.as_deref(), Some(V));
    assert!(
        m.image("bootfiles").unwrap().sha256.is_some(),
        "RAUC added the checksums"
    );

    // One flipped payload byte: the signature still verifies (it covers
    // the manifest), the payload check does not.
    let mut bytes = a.clone();
    bytes[8 * 4096 + 100] ^= 1;
    let bad = scratch().join("tampered-verity.raucb");
    fs::write(&bad, &bytes).unwrap();
    let out2 = scratch().join("extracted-tampered");
    let ex = rauc_as_appliance(&["extract".as_ref(), bad.as_os_str(), out2.as_os_str()]);
    assert!(!ex.status.success());
    assert!(
        text(&ex).contains("bundle payload is corrupted"),
        "{}",
        text(&ex)
    );
}

#[test]
fn the_appliance_refuses_plain_bundles() {
    let plain = bundle(&Spec::plain(V));
    let info = rauc_as_appliance(&["info".as_ref(), plain.as_os_str()]);
    assert!(!info.status.success(), "{}", text(&info));
    assert!(
        text(&info).contains("Bundle format 'plain' not allowed"),
        "{}",
        text(&info)
    );
}

fn run_script(args: &[&str], signer: &Signer) -> Output {
    let mut cmd = Command::new(top().join("ota/bundle.sh"));
    cmd.args(args)
        .env("RAUC", rauc())
        .env("SKYTIME_OTA_BUILD", env!("CARGO_BIN_EXE_skytime-ota-build"))
        .env("SKYTIME_SIGNING_CERT", &signer.cert)
        .env("SKYTIME_SIGNING_KEY", &signer.key)
        .env("SKYTIME_SIGNING_KEYRING", &signer.keyring);
    run_bounded(&mut cmd, Duration::from_secs(300))
}

#[test]
fn bad_inputs_fail_and_leave_the_output_alone() {
    let dir = scratch().join("bad-inputs");
    let boot = dir.join("boot");
    fs::create_dir_all(&boot).unwrap();
    fs::write(boot.join("vmlinuz"), "k").unwrap();
    fs::write(dir.join("rootfs.erofs"), vec![0u8; 8192]).unwrap();
    let out = dir.join("out.raucb");
    fs::write(&out, "previous").unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let hook = p(hook());
    let base = |version: &str| {
        vec![
            "--rootfs".to_owned(),
            p(&dir.join("rootfs.erofs")),
            "--bootfiles".into(),
            p(&boot),
            "--hook".into(),
            hook.clone(),
            "--version".into(),
            version.into(),
            "--out".into(),
            p(&out),
        ]
    };
    let run = |args: Vec<String>, signer: &Signer| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_script(&refs, signer)
    };

    // No initrd.img among the boot files.
    let r = run(base(V), trusted());
    assert!(!r.status.success());
    assert!(
        text(&r).contains("boot file list has no initrd.img"),
        "{}",
        text(&r)
    );
    fs::write(boot.join("initrd.img"), "i").unwrap();

    // A version that is not one.
    let r = run(base("1.0"), trusted());
    assert!(!r.status.success());
    assert!(text(&r).contains("version \"1.0\""), "{}", text(&r));

    // A certificate the given keyring does not trust.
    let mixed = Signer {
        keyring: trusted().keyring.clone(),
        ..untrusted().clone()
    };
    let r = run(base(V), &mixed);
    assert!(!r.status.success());
    assert!(
        text(&r).contains("unable to get local issuer certificate"),
        "{}",
        text(&r)
    );

    // Unknown option, missing input.
    let mut args = base(V);
    args.push("--colour".into());
    let r = run(args, trusted());
    assert!(!r.status.success() && text(&r).contains("unknown argument --colour"));
    let mut args = base(V);
    args[1] = p(&dir.join("missing.erofs"));
    let r = run(args, trusted());
    assert!(!r.status.success() && text(&r).contains("is not a file"));

    assert_eq!(fs::read_to_string(&out).unwrap(), "previous");
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bundle"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With everything in place it works and replaces the output.
    let r = run(base(V), trusted());
    assert!(r.status.success(), "{}", text(&r));
    assert_ne!(fs::read(&out).unwrap(), b"previous");
}
