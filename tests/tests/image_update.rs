//! An update of the SD-card image in QEMU, driven from the host over the
//! VM management channel alone (skytimectl on the guest's system bus
//! through the virtio-serial bridge; no shell in the guest), with RAUC
//! 1.13 from the image, U-Boot's boot.scr and a verity bundle that
//! `image/bundle.sh` makes from the same build under a newer version.
//!
//! Before the first boot the host puts three bundles on the data partition
//! (grown on the card first: the image's data partition is small): one
//! second newer, the running version, and the newer one with a bit of its
//! signature flipped. Boot 1 on slot A: first boot makes the keys; a real
//! chrony on the host syncs over NTS and stays on through every boot;
//! `skytimectl update status` shows slot A booted and RAUC available; the
//! image's own hook refuses the running version (Downgrade) and its keyring
//! the tampered bundle (BundleRejected), changing nothing. Then an install
//! of the newer bundle and, while RAUC writes slot B, a power cut (QEMU
//! killed). Boot 1b: slot A again, the install recorded as failed ("the
//! device restarted before the install finished"); the same install again
//! to its end (progress, then "Installed ... in slot B", reboot pending,
//! slot B next); `skytimectl reboot`. Boot 2 on slot B: skytimed's health
//! check marks it good, "confirmed"; chrony gets authenticated replies
//! again. `skytimectl update rollback`: slot A first, slot B kept good.
//! Boot 3 on slot A: the status records the operator's rollback (from
//! slot B and its version), and the old version serves the same NTS keys
//! to chrony.
//! QEMU's i6300esb watchdog is attached, which systemd pets
//! (RuntimeWatchdogSec). No failed unit on any console.
//!
//! Needs `make image` first, and RAUC 1.13 on the host to sign the
//! bundle (`tests/scripts/trixie-tools.sh`, run here).

mod image_support;

use image_support::*;
use skytime_tests::vm::GuestReading;
use skytime_tests::{free_tcp_port, free_udp_port, require_program, wait_until, Chronyd};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The image's version, as its manifest records it (= IMAGE_VERSION).
fn image_version() -> String {
    let manifest = fs::read_to_string(repo().join("target/image/skytime-rpi4.manifest")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("image_version "))
        .unwrap_or_else(|| panic!("no image_version in the manifest: run make image"))
        .to_owned()
}

/// A version one second newer than `v` (same semantic version).
fn newer_version(v: &str) -> String {
    let tool = repo().join("target/image/cargo/release/skytime-ota-build");
    let epoch = String::from_utf8(run(Command::new(&tool).args(["epoch", v]))).unwrap();
    let epoch: u64 = epoch.trim().parse().unwrap();
    let semver = v.split('+').next().unwrap();
    String::from_utf8(run(Command::new(&tool).args([
        "version",
        semver,
        &(epoch + 1).to_string(),
    ])))
    .unwrap()
    .trim()
    .to_owned()
}

/// Grows partition 4 (data) to the end of the card and its ext4 with it,
/// then writes each (file, NAME) into it as /NAME (root, 0644).
fn put_data_files(img: &Path, dir: &Path, files: &[(&Path, &str)]) {
    // The MBR's fourth entry: its sector count (bytes 12..16) to the end
    // of the card, as the appliance's initramfs would grow it.
    use std::io::{Seek, SeekFrom, Write};
    let (start, _) = partition(img, 4);
    let sectors = (fs::metadata(img).unwrap().len() - start) / 512;
    let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(446 + 16 * 3 + 12)).unwrap();
    f.write_all(&u32::try_from(sectors).unwrap().to_le_bytes())
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let part = dir.join("data.ext4");
    extract(img, 4, &part);
    run(Command::new("e2fsck").args(["-fy"]).arg(&part));
    run(Command::new(require_program("resize2fs")).arg(&part));
    for (file, name) in files {
        run(Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("write {} {name}", file.display()))
            .arg(&part));
    }
    run(Command::new("dd")
        .arg(format!("if={}", part.display()))
        .arg(format!("of={}", img.display()))
        .args([
            "bs=1M",
            "oflag=seek_bytes",
            "conv=notrunc,fsync",
            "status=none",
        ])
        .arg(format!("seek={start}")));
}

/// `skytimectl ARGS` on the guest's bus, allowed `limit`.
fn ctl(bus: &Path, args: &[&str], limit: Duration) -> Output {
    on_guest_bus_within(bus, &skytime_tests::bin("skytimectl"), args, limit)
}

/// How often systemd restarted skytimed in this boot, and the result of
/// its last run ("success", "watchdog", "core-dump", ...), read from
/// systemd on the guest's bus with the host's busctl.
fn skytimed_restarts(bus: &Path) -> (u32, String) {
    let busctl = require_program("busctl");
    let get = |iface: &str, prop: &str| {
        let out = on_guest_bus(
            bus,
            &busctl,
            &[
                "--system",
                "get-property",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1/unit/skytimed_2eservice",
                iface,
                prop,
            ],
        );
        assert!(out.status.success(), "busctl {prop}: {}", text(&out));
        // "u 0", "s \"success\"".
        let value = String::from_utf8_lossy(&out.stdout);
        let value = value.trim();
        value
            .split_once(' ')
            .map_or(value, |(_, v)| v)
            .trim_matches('"')
            .to_owned()
    };
    let restarts = get("org.freedesktop.systemd1.Service", "NRestarts");
    let result = get("org.freedesktop.systemd1.Service", "Result");
    (
        restarts
            .parse()
            .unwrap_or_else(|_| panic!("NRestarts {restarts:?}")),
        result,
    )
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Polls `skytimectl update status` until it contains every `want`; on
/// timeout fails with the status and the guest's console.
fn wait_status(vm: &Qemu, bus: &Path, want: &[&str], limit: Duration) -> String {
    let mut last = String::new();
    let found = wait_until(limit, || {
        let out = ctl(bus, &["update", "status"], Duration::from_secs(60));
        last = text(&out);
        (out.status.success() && want.iter().all(|w| last.contains(w))).then_some(())
    });
    assert!(
        found.is_some(),
        "update status never showed {want:?}:\n{last}\n{}",
        vm.log()
    );
    last
}

/// `image/bundle.sh --version VERSION --to DIR/NAME`: the bundle's path.
fn make_bundle(dir: &Path, version: &str, name: &str) -> std::path::PathBuf {
    let bundle = dir.join(name);
    let made = skytime_tests::run_bounded(
        Command::new(repo().join("image/bundle.sh"))
            .args(["--version", version, "--to"])
            .arg(&bundle),
        Duration::from_secs(900),
    );
    assert!(made.status.success(), "image/bundle.sh: {}", text(&made));
    bundle
}

/// `skytimectl update install PATH` is refused with the D-Bus error `name`,
/// and the update state stays `idle` with slot A next.
fn assert_refused(vm: &Qemu, bus: &Path, path: &str, name: &str) {
    let r = ctl(bus, &["update", "install", path], Duration::from_secs(600));
    let out = text(&r);
    assert!(
        !r.status.success() && out.contains(name),
        "install of {path} should be refused with {name}:\n{out}\n{}",
        vm.log()
    );
    // RAUC's own operation may still read "installing" for a moment after
    // its hook refused the bundle: wait until it is idle again.
    let mut last = String::new();
    let settled = wait_until(Duration::from_secs(60), || {
        last = text(&ctl(bus, &["update", "status"], Duration::from_secs(60)));
        (last.contains("Update state    : idle")
            && last.contains("Next boot       : slot A")
            && !last.contains("Progress"))
        .then_some(())
    });
    assert!(
        settled.is_some(),
        "after refusing {path}: not idle with slot A next:\n{last}"
    );
}

#[test]
fn updates_over_dbus_survive_a_power_cut_confirm_on_b_and_roll_back() {
    require_program("chronyd");
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    grow_card(&img, 640 << 20);
    let (ntp, ke) = (free_udp_port(), free_tcp_port());

    // The bundles, from the same build: one second newer (installed), the
    // running version (refused: not newer), and the newer one with one bit
    // of its signature flipped (refused: RAUC's check against the image's
    // keyring).
    let running = image_version();
    let version = newer_version(&running);
    let newer = make_bundle(dir.path(), &version, "update.raucb");
    let same = make_bundle(dir.path(), &running, "same.raucb");
    let tampered = dir.path().join("tampered.raucb");
    let mut bytes = fs::read(&newer).unwrap();
    // The CMS signature sits before the bundle's last 8 bytes (its size).
    let at = bytes.len() - 8 - 200;
    bytes[at] ^= 0x10;
    fs::write(&tampered, &bytes).unwrap();
    put_data_files(
        &img,
        dir.path(),
        &[
            (&newer, "update.raucb"),
            (&same, "same.raucb"),
            (&tampered, "tampered.raucb"),
        ],
    );

    put_local_clock_nts_files(&img, dir.path(), ntp);

    let bus = dir.path().join("bus.sock");
    let mut extra = bus_channel_args(&bus);
    extra.extend(["-device".to_owned(), "i6300esb".to_owned()]);
    let boot = |name: &str, slot: &str| {
        let mut vm = Qemu::boot_with(&img, dir.path(), name, ntp, ke, &extra);
        vm.wait_for(
            &format!("skytime: booting slot {slot}"),
            Duration::from_secs(120),
        );
        vm
    };

    // Boot 1: slot A, first boot; chrony on the host syncs over NTS.
    let mut vm = boot("boot1", "A");
    vm.wait_for(
        "Finished skytime-firstboot.service",
        Duration::from_secs(600),
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
    let (cert, _) = data_file(&img, dir.path(), "cert.pem");
    let cert_path = dir.path().join("cert.pem");
    fs::write(&cert_path, &cert).unwrap();
    // Polls every 64 s once synchronized: a reboot then costs a few of
    // its eight cookies, not a new key exchange.
    let chrony = Chronyd::start(&[
        format!("server 127.0.0.1 port {ntp} nts ntsport {ke} iburst minpoll 6 maxpoll 6"),
        format!("ntstrustedcerts {}", cert_path.display()),
    ]);
    let server: SocketAddr = format!("127.0.0.1:{ntp}").parse().unwrap();
    assert!(
        chrony.wait_synchronized(Duration::from_secs(180)).is_some(),
        "chrony never synchronized over NTS:\n{}",
        chrony.log()
    );
    let (auth, good_a) = chrony.ntpdata(server);
    assert!(
        auth && good_a > 0,
        "no authenticated NTP replies from slot A"
    );
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let status = wait_status(
        &vm,
        &bus,
        &["(slot A)", "RAUC            : available", &running],
        Duration::from_secs(120),
    );
    assert!(status.contains("Next boot       : slot A"), "{status}");

    // Refusals on the appliance itself: its hook's version policy, its
    // keyring. Nothing changes.
    assert_refused(
        &vm,
        &bus,
        "/var/lib/skytime/same.raucb",
        "org.skytime.Error.Downgrade",
    );
    assert_refused(
        &vm,
        &bus,
        "/var/lib/skytime/tampered.raucb",
        "org.skytime.Error.BundleRejected",
    );

    // A power cut in the middle of an install: QEMU is killed as soon as
    // skytimectl's progress lines (it polls every 0.5 s) show RAUC working
    // on slot B's root (rootfs.1), before 100 %.
    let guest_bus = GuestBus::start(&bus);
    let mut installer = Command::new(skytime_tests::bin("skytimectl"))
        .args(["update", "install", "/var/lib/skytime/update.raucb"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &guest_bus.address)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = installer.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let cut_at = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no progress on slot B's root before the install ended or timed out:\n{}\n{}",
                seen.join("\n"),
                vm.log()
            )
        });
        seen.push(line.clone());
        let percent = line
            .split_once('%')
            .and_then(|(n, _)| n.trim().parse::<u32>().ok());
        if let Some(p) = percent {
            assert!(
                p < 100,
                "the install ended before the power cut could be made:\n{}",
                seen.join("\n")
            );
            if line.contains("rootfs.1") {
                break line;
            }
        }
    };
    let console = vm.stop();
    let _ = installer.kill();
    let _ = installer.wait();
    drop(guest_bus);
    assert_no_failed_units(&console);
    eprintln!("image_update: power cut at {cut_at:?}");

    // Boot 1b: slot A still (RAUC had taken B out of the boot order before
    // writing it); the interrupted install is recorded as failed.
    let mut vm = boot("boot1b", "A");
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
    wait_status(
        &vm,
        &bus,
        &[
            "Update state    : failed",
            "restarted before the install finished",
            "Next boot       : slot A",
            "(slot A)",
        ],
        Duration::from_secs(180),
    );

    // The same install again, to its end.
    let started = Instant::now();
    let install = ctl(
        &bus,
        &["update", "install", "/var/lib/skytime/update.raucb"],
        Duration::from_secs(1200),
    );
    let out = text(&install);
    let (restarts, result) = skytimed_restarts(&bus);
    assert!(
        install.status.success(),
        "skytimectl update install:\n{out}\nskytimed restarts: {restarts}, last result: {result}\n{}",
        vm.log()
    );
    // skytimed answered throughout the install: no restart by systemd
    // (its watchdog kills a daemon whose loops stall).
    assert_eq!(
        (restarts, result.as_str()),
        (0, "success"),
        "skytimed was restarted during the install"
    );
    assert!(out.contains('%'), "no progress shown:\n{out}");
    assert!(
        out.contains(&format!("Installed {version} in slot B")),
        "no completion in slot B:\n{out}"
    );
    let install_s = started.elapsed().as_secs_f64();
    let status = wait_status(
        &vm,
        &bus,
        &["installed (reboot pending)", "Next boot       : slot B"],
        Duration::from_secs(60),
    );
    assert!(status.contains(&version), "{status}");

    let rebooted = Instant::now();
    let reboot = ctl(&bus, &["reboot"], Duration::from_secs(60));
    assert!(
        reboot.status.success(),
        "skytimectl reboot: {}",
        text(&reboot)
    );
    let console = vm.wait_exit(Duration::from_secs(180));
    assert_no_failed_units(&console);
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_ORDER=B A"),
        "slot B is not first:\n{env}"
    );

    // Boot 2: slot B, the health check confirms it.
    let mut vm = boot("boot2", "B");
    vm.wait_for("root=PARTUUID=5c7e0001-03", Duration::from_secs(120));
    let answered = wait_until(Duration::from_secs(600), || GuestReading::read(ntp));
    assert!(
        answered.is_some(),
        "slot B never answered NTP:\n{}",
        vm.log()
    );
    let downtime_s = rebooted.elapsed().as_secs_f64();
    eprintln!(
        "image_update: bundle {} bytes, install {install_s:.0} s, \
         from the reboot request to NTP answered on slot B {downtime_s:.0} s (QEMU TCG)",
        fs::metadata(&newer).unwrap().len()
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    let status = wait_status(
        &vm,
        &bus,
        &["Update state    : confirmed", "(slot B)", &version],
        Duration::from_secs(600),
    );
    assert!(status.contains("Next boot       : slot B"), "{status}");
    // chrony kept its NTS session through the update: more authenticated
    // replies, now from slot B.
    let good_b = wait_until(Duration::from_secs(300), || {
        let (auth, good) = chrony.ntpdata(server);
        (auth && good > good_a).then_some(good)
    })
    .unwrap_or_else(|| {
        panic!(
            "chrony got no authenticated reply from slot B:\n{}\n{}",
            chrony.chronyc(&["authdata"]),
            chrony.log()
        )
    });

    // The operator goes back: slot A, which ran before, boots next.
    let rollback = ctl(&bus, &["update", "rollback"], Duration::from_secs(120));
    assert!(
        rollback.status.success(),
        "skytimectl update rollback: {}\n{}",
        text(&rollback),
        vm.log()
    );
    let console = vm.wait_exit(Duration::from_secs(180));
    assert_no_failed_units(&console);
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_ORDER=A B") && env.contains("BOOT_B_LEFT=3"),
        "slot A should be first and slot B kept good (confirmed):\n{env}"
    );

    // Boot 3: slot A again, serving the same NTS keys.
    let mut vm = boot("boot3", "A");
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    // The state records the operator's rollback: from slot B and the
    // version it ran, to slot A. The version that ran is the running
    // system's own (os-release's IMAGE_VERSION), and the newer bundle here
    // carries this very build's root under a newer bundle version, so
    // slot B ran `running` too (slot B's install record, in the slot
    // table, has the bundle's version).
    let status = wait_status(
        &vm,
        &bus,
        &[
            "(slot A)",
            "Next boot       : slot A",
            "Update state    : rolled-back-by-operator",
            &format!("the operator rolled back from slot B (version {running}) to slot A"),
            &format!("Version left    : {running}"),
            &version,
        ],
        Duration::from_secs(180),
    );
    assert!(!status.contains("Update state    : failed"), "{status}");
    let more = wait_until(Duration::from_secs(300), || {
        let (auth, good) = chrony.ntpdata(server);
        (auth && good > good_b).then_some(good)
    });
    assert!(
        more.is_some(),
        "chrony got no authenticated reply after the rollback:\n{}\n{}",
        chrony.chronyc(&["authdata"]),
        chrony.log()
    );
    assert_no_failed_units(&vm.stop());
}
