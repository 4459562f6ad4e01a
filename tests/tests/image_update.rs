//! Updates of the SD-card image in QEMU, driven from the host over the VM
//! management channel alone (skytimectl on the guest's system bus through
//! the virtio-serial bridge; no shell in the guest), with RAUC 1.13 from
//! the image, U-Boot's boot.scr and verity bundles made from the same
//! build (`image_update_support::Bundles`): the update one second newer,
//! every kind of bundle the appliance must refuse, and a release that
//! cannot serve.
//!
//! One card, nine boots; a real chrony on the host syncs over NTS from the
//! first and must keep getting authenticated replies across every update,
//! power cut and rollback without a new key exchange (its `authdata`).
//! The guest's skytime.toml sets `health_deadline = 60`.
//! - Boot 1, slot A (first boot): refused, each with its error and nothing
//!   changed: the running version (the hook's version policy), a flipped
//!   signature bit, another CA, another board, a truncated file, a file
//!   that is not a bundle; a flipped payload bit fails the install
//!   (dm-verity) with slot A still next. `InstallFromUrl` from an HTTPS
//!   server on the host, cut by a power cut (QEMU killed) part-way through
//!   the download.
//! - Boot 1b, slot A: skytimed removed the partial download. An install
//!   from a file, cut by a power cut while RAUC writes slot B.
//! - Boot 1c, slot A: the install recorded as failed; the same install
//!   again to its end, this time uploaded from the host through the
//!   management gateway (`skytimectl --host`, an admin CA enrolled from
//!   the boot partition at boot 1, the guest's 443 forwarded to
//!   loopback), as an operator updates a Pi from a laptop; then a power
//!   cut instead of the reboot.
//! - Boot 2, slot B: power cut as skytimed starts, before it could confirm
//!   the slot.
//! - Boot 2b, slot B: the health check confirms it; the operator rolls
//!   back (`skytimectl update rollback`); the boot-state copy that
//!   rollback wrote is then torn, as a power cut in its middle would.
//! - Boot 2c, slot B again (the copy from before the torn write): the
//!   update stays confirmed, noting that the rollback did not take; the
//!   operator rolls back again.
//! - Boot 3, slot A: the operator's rollback recorded; the release that
//!   cannot serve is installed and `skytimectl reboot` asked.
//! - Boot 4, slot B: skytimed runs but serves nothing; its health check
//!   marks slot B bad past the deadline and reboots.
//! - Boot 5, slot A: the update "rolled back" with the health check's
//!   reason, and time served to chrony again.
//!
//! QEMU's i6300esb watchdog is attached, which systemd pets
//! (RuntimeWatchdogSec). No failed unit on any console.
//!
//! Needs `make image` first, and RAUC 1.13 on the host to sign the
//! bundles (`tests/scripts/trixie-tools.sh`).

mod image_support;
mod image_update_support;

use image_support::*;
use image_update_support::*;
use skytime_tests::mgmt::{Ca, Usage};
use skytime_tests::vm::GuestReading;
use skytime_tests::{
    free_tcp_port, free_udp_port, require_program, run_bounded, wait_until, Chronyd,
};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `skytimectl update install PATH` is refused with the D-Bus error `name`
/// and a message containing `why`, and the update state stays as it was
/// (`idle`) with slot A next.
fn assert_refused(vm: &Qemu, bus: &Path, path: &str, name: &str, why: &str) {
    let r = ctl(bus, &["update", "install", path], Duration::from_secs(600));
    let out = text(&r);
    assert!(
        !r.status.success() && out.contains(name) && out.contains(why),
        "install of {path} should be refused with {name} ({why}):\n{out}\n{}",
        vm.log()
    );
    settled(bus, path, "Update state    : idle");
}

/// Waits until RAUC is idle again after a refused or failed install, with
/// `state` shown and slot A next.
fn settled(bus: &Path, path: &str, state: &str) {
    // RAUC's own operation may still read "installing" for a moment after
    // it refused the bundle.
    let mut last = String::new();
    let done = wait_until(Duration::from_secs(60), || {
        last = text(&ctl(bus, &["update", "status"], Duration::from_secs(60)));
        (last.contains(state)
            && last.contains("Next boot       : slot A")
            && !last.contains("Progress"))
        .then_some(())
    });
    assert!(
        done.is_some(),
        "after {path}: not {state:?} with slot A next:\n{last}"
    );
}

/// The skytime.toml for the guest: the local clock with NTS
/// (`put_local_clock_nts_files`), a 60 s health deadline, and the CA of
/// the host's HTTPS server for `InstallFromUrl` (on the data partition).
fn put_guest_config(img: &Path, dir: &Path, ntp: u16) {
    let config = put_local_clock_nts_files(img, dir, ntp);
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(
        "[update]\nhealth_deadline = 60\nurl_ca_file = \"/var/lib/skytime/url-ca.pem\"\n",
    );
    fs::write(&config, text).unwrap();
    put_boot_file(img, &config, "skytime.toml");
}

/// The boot state's variables (fw_printenv of the card's two raw copies).
fn boot_var(img: &Path, dir: &Path, name: &str) -> String {
    boot_env(img, dir)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in the boot state:\n{}", boot_env(img, dir)))
}

/// Waits until the guest answers NTP on the host's port `ntp`; fails with
/// `what` and the console after `limit`.
fn answers_ntp(vm: &Qemu, ntp: u16, limit: Duration, what: &str) {
    let answered = wait_until(limit, || GuestReading::read(ntp));
    assert!(answered.is_some(), "{what}\n{}", vm.log());
}

/// `skytimectl update rollback`, and the reboot it makes (QEMU exits:
/// `-no-reboot`) with no failed unit.
fn roll_back(vm: Qemu, bus: &Path) {
    let rollback = ctl(bus, &["update", "rollback"], Duration::from_secs(120));
    assert!(
        rollback.status.success(),
        "skytimectl update rollback: {}\n{}",
        text(&rollback),
        vm.log()
    );
    assert_no_failed_units(&vm.wait_exit(Duration::from_secs(180)));
}

/// Garbles the first 512 bytes of the boot state's newer copy, as a power
/// cut in the middle of the write that made it would: its CRC no longer
/// matches. The newer copy is the one whose flags byte is one more than
/// the other's (wrapping); with equal flags, readers take copy 0.
fn tear_newer_boot_state_copy(img: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut card = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut flags = [0u8; 2];
    for (i, at) in BOOT_ENV_COPIES.iter().enumerate() {
        card.seek(SeekFrom::Start(at + 4)).unwrap();
        card.read_exact(&mut flags[i..=i]).unwrap();
    }
    let newer = BOOT_ENV_COPIES[usize::from(flags[1] == flags[0].wrapping_add(1))];
    let mut data = [0u8; 512];
    card.seek(SeekFrom::Start(newer + 5)).unwrap();
    card.read_exact(&mut data).unwrap();
    data.iter_mut().for_each(|b| *b ^= 0xa5);
    card.seek(SeekFrom::Start(newer + 5)).unwrap();
    card.write_all(&data).unwrap();
    card.sync_all().unwrap();
}

/// Runs `skytimectl ARGS` on the guest's bus in the background; its
/// stderr lines (progress, plain lines when not a terminal) arrive on the
/// returned channel. Dropping the bus handle ends its session.
fn ctl_spawn(
    bus: &Path,
    args: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    skytime_tests::vm_bus::VmBus,
) {
    let guest_bus = GuestBus::start(bus);
    let mut child = Command::new(skytime_tests::bin("skytimectl"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &guest_bus.address)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines, guest_bus)
}

#[test]
fn updates_over_dbus_survive_power_cuts_refusals_and_rollbacks() {
    require_program("chronyd");
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let started = Instant::now();
    let bundles = Bundles::make(dir.path());
    eprintln!(
        "image_update: {} bundles made in {:.0} s",
        bundles.files().len(),
        started.elapsed().as_secs_f64()
    );
    let img = copy_image(dir.path());
    // Room on the data partition for every bundle and one download.
    let room: u64 = bundles
        .files()
        .iter()
        .map(|(p, _)| fs::metadata(p).unwrap().len())
        .sum::<u64>()
        + fs::metadata(&bundles.update).unwrap().len()
        + (256 << 20);
    grow_card(&img, room);
    let www = dir.path().join("www");
    fs::create_dir_all(&www).unwrap();
    fs::copy(&bundles.update, www.join("update.raucb")).unwrap();
    // 10.0.2.2: QEMU's user network shows the guest the host's loopback
    // there.
    let (_server, https_port, ca) = skytime_tests::rauc::https_server(&www, "10.0.2.2");
    let mut files = bundles.files();
    files.push((&ca, "url-ca.pem"));
    put_data_files(&img, dir.path(), &files);
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    put_guest_config(&img, dir.path(), ntp);
    // An operator's CA for the management gateway, enrolled at boot 1.
    let operators = Ca::new("skytime operators");
    let ca_file = dir.path().join("skytime-admin-ca.pem");
    fs::write(&ca_file, &operators.pem.cert).unwrap();
    put_boot_file(&img, &ca_file, "skytime-admin-ca.pem");
    let mgmt = free_tcp_port();

    let bus = dir.path().join("bus.sock");
    let mut extra = bus_channel_args(&bus);
    extra.extend(["-device".to_owned(), "i6300esb".to_owned()]);
    let boot = |name: &str, slot: &str| {
        let mut vm = Qemu::boot_forwarding(&img, dir.path(), name, ntp, ke, Some(mgmt), &extra);
        vm.wait_for(
            &format!("skytime: booting slot {slot}"),
            Duration::from_secs(120),
        );
        vm
    };
    let (running, version) = (bundles.running.as_str(), bundles.newer.as_str());

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
    let synchronized = Instant::now();
    let (auth, mut good) = chrony.ntpdata(server);
    assert!(auth && good > 0, "no authenticated NTP replies from slot A");
    // More authenticated replies than `good` since, in the NTS session of
    // the first boot: chrony's last key exchange is older than its first
    // synchronization (`chronyc -c authdata`: name, mode, key id, type,
    // key length, seconds since the last key exchange, ...).
    let served_again = |good: u64, what: &str| -> u64 {
        let now = wait_until(Duration::from_secs(300), || {
            let (auth, now) = chrony.ntpdata(server);
            (auth && now > good).then_some(now)
        })
        .unwrap_or_else(|| {
            panic!(
                "chrony got no authenticated reply {what}:\n{}\n{}",
                chrony.chronyc(&["authdata"]),
                chrony.log()
            )
        });
        let authdata = chrony.chronyc(&["-c", "authdata"]);
        let since_ke = authdata
            .lines()
            .find(|l| l.starts_with("127.0.0.1,"))
            .and_then(|l| l.split(',').nth(5)?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no NTS record in chronyc authdata:\n{authdata}"));
        // 2 s for chrony's rounding; a new exchange would read far less.
        assert!(
            since_ke + 2 >= synchronized.elapsed().as_secs(),
            "chrony made a new key exchange {since_ke} s ago ({what}), after its first \
             synchronization {} s ago:\n{authdata}",
            synchronized.elapsed().as_secs()
        );
        now
    };
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let status = wait_status(
        &vm,
        &bus,
        &["(slot A)", "RAUC            : available", running],
        Duration::from_secs(120),
    );
    assert!(status.contains("Next boot       : slot A"), "{status}");

    // Refusals: nothing is written, the state stays idle, A boots next.
    let on_card = |name: &str| format!("/var/lib/skytime/{name}");
    for (file, error, why) in [
        (
            "same.raucb",
            "org.skytime.Error.Downgrade",
            "already running",
        ),
        (
            "tampered-signature.raucb",
            "org.skytime.Error.BundleRejected",
            "signature",
        ),
        (
            "other-ca.raucb",
            "org.skytime.Error.BundleRejected",
            "signature",
        ),
        (
            "other-board.raucb",
            "org.skytime.Error.BundleRejected",
            "\"skytime-cm4\"",
        ),
        (
            "truncated.raucb",
            "org.skytime.Error.BundleRejected",
            "bundle",
        ),
        (
            "notes.raucb",
            "org.skytime.Error.BundleRejected",
            "Invalid bundle format",
        ),
    ] {
        assert_refused(&vm, &bus, &on_card(file), error, why);
    }
    // A flipped payload bit passes the signature check (it covers the
    // verity root hash, not each block) and fails the install when
    // dm-verity reads the block: slot A stays next.
    let r = ctl(
        &bus,
        &["update", "install", &on_card("tampered-payload.raucb")],
        Duration::from_secs(900),
    );
    assert!(
        !r.status.success(),
        "a tampered payload was installed:\n{}",
        text(&r)
    );
    eprintln!("image_update: tampered payload: {}", text(&r).trim());
    settled(&bus, "tampered-payload.raucb", "Update state    : failed");

    // A power cut during InstallFromUrl's download: the host's HTTPS
    // server is reached through a forwarder that stops after 32 MiB, and
    // QEMU is killed once the guest has had them for a few seconds
    // (ext4 commits every 5 s, so the partial file is on the card).
    let proxy = StallingProxy::start(https_port, 32 << 20);
    let url = format!("https://10.0.2.2:{}/update.raucb", proxy.port);
    let sha = sha256(&bundles.update);
    let (mut installer, _lines, guest_bus) =
        ctl_spawn(&bus, &["update", "install", &url, "--sha256", &sha]);
    let stalled = wait_until(Duration::from_secs(300), || {
        (proxy.forwarded() >= 32 << 20).then_some(())
    });
    assert!(
        stalled.is_some(),
        "the download never reached 32 MiB ({} bytes):\n{}",
        proxy.forwarded(),
        vm.log()
    );
    std::thread::sleep(Duration::from_secs(8));
    let console = vm.stop();
    let _ = installer.kill();
    let _ = installer.wait();
    drop((guest_bus, proxy));
    assert_no_failed_units(&console);
    let left = data_dir_names(&img, dir.path(), "ota/downloads");
    assert!(
        left.iter()
            .any(|n| n.starts_with(".download-") && n.ends_with(".part")),
        "no partial download on the card after the power cut: {left:?}"
    );

    // Boot 1b: slot A; skytimed removes the partial download. A power cut
    // while RAUC writes slot B: QEMU is killed as soon as skytimectl's
    // progress lines (it polls every 0.5 s) show RAUC working on slot B's
    // root (rootfs.1), before 100 %.
    let mut vm = boot("boot1b", "A");
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
    let (mut installer, lines, guest_bus) =
        ctl_spawn(&bus, &["update", "install", &on_card("update.raucb")]);
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
    let left = data_dir_names(&img, dir.path(), "ota/downloads");
    assert!(
        !left.iter().any(|n| n.ends_with(".part")),
        "skytimed left the partial download: {left:?}"
    );

    // Boot 1c: slot A still (RAUC had taken B out of the boot order before
    // writing it); the interrupted install is recorded as failed.
    let mut vm = boot("boot1c", "A");
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
    // The same install again, to its end: uploaded from the host through
    // the gateway, which trusts the operator's CA since boot 1.
    let (gateway_cert, _) = data_file(&img, dir.path(), "mgmt/server-cert.pem");
    let gateway_cert_path = dir.path().join("gateway-cert.pem");
    fs::write(&gateway_cert_path, &gateway_cert).unwrap();
    let (admin_cert, admin_key) = operators
        .client("admin", 2100, Usage::ClientAuth)
        .write(dir.path(), "admin");
    let started = Instant::now();
    let install = run_bounded(
        Command::new(skytime_tests::bin("skytimectl"))
            .args(["--host", &format!("127.0.0.1:{mgmt}"), "--cert"])
            .arg(&admin_cert)
            .arg("--key")
            .arg(&admin_key)
            .arg("--ca")
            .arg(&gateway_cert_path)
            .args(["update", "install"])
            .arg(&bundles.update),
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
    assert!(status.contains(version), "{status}");
    // A power cut instead of the reboot: what RAUC wrote (slot B, its
    // boot files, the boot state) must already be on the card.
    assert_no_failed_units(&vm.stop());
    assert_eq!(boot_var(&img, dir.path(), "BOOT_ORDER"), "B A");

    // Boot 2: slot B; a power cut as skytimed starts, before it could
    // confirm the slot: the attempt is spent, the slot still on trial.
    let mut vm = boot("boot2", "B");
    vm.wait_for("root=PARTUUID=5c7e0001-03", Duration::from_secs(120));
    vm.wait_for("Starting skytimed.service", Duration::from_secs(600));
    assert_no_failed_units(&vm.stop());
    assert_eq!(boot_var(&img, dir.path(), "BOOT_ORDER"), "B A");
    assert_eq!(
        boot_var(&img, dir.path(), "BOOT_B_LEFT"),
        "2",
        "slot B was confirmed before the power cut, or its attempt not counted"
    );

    // Boot 2b: slot B again; the health check confirms it.
    let powered = Instant::now();
    let mut vm = boot("boot2b", "B");
    answers_ntp(
        &vm,
        ntp,
        Duration::from_secs(600),
        "slot B never answered NTP:",
    );
    eprintln!(
        "image_update: bundle {} bytes, install {install_s:.0} s; slot B answers NTP {:.0} s \
         after power-on (QEMU TCG)",
        fs::metadata(&bundles.update).unwrap().len(),
        powered.elapsed().as_secs_f64()
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    let status = wait_status(
        &vm,
        &bus,
        &["Update state    : confirmed", "(slot B)", version],
        Duration::from_secs(600),
    );
    assert!(status.contains("Next boot       : slot B"), "{status}");
    // chrony kept its NTS session through the update.
    good = served_again(good, "from slot B");

    // The operator goes back: slot A, which ran before, boots next.
    roll_back(vm, &bus);
    assert_eq!(boot_var(&img, dir.path(), "BOOT_ORDER"), "A B");

    // A power cut in the middle of that write: the copy of the boot state
    // RAUC's mark-active wrote is torn, and every reader (U-Boot,
    // fw_printenv) takes the copy from before it: slot B, confirmed.
    tear_newer_boot_state_copy(&img);
    assert_eq!(boot_var(&img, dir.path(), "BOOT_ORDER"), "B A");

    // Boot 2c: slot B again; the update stays confirmed and says the
    // operator's rollback did not take. The operator rolls back again.
    let mut vm = boot("boot2c", "B");
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    answers_ntp(
        &vm,
        ntp,
        Duration::from_secs(300),
        "slot B did not answer NTP after the torn write:",
    );
    wait_status(
        &vm,
        &bus,
        &["Update state    : confirmed", "(slot B)", "did not take"],
        Duration::from_secs(180),
    );
    // mark-good gives slot B back the attempt this boot took.
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let switched = Instant::now();
    roll_back(vm, &bus);
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_ORDER=A B") && env.contains("BOOT_B_LEFT=3"),
        "slot A should be first and slot B kept good (confirmed):\n{env}"
    );

    // Boot 3: slot A again, serving the same NTS keys. The state records
    // the operator's rollback: from slot B and the version it ran, to
    // slot A. The version that ran is the running system's own
    // (os-release's IMAGE_VERSION): the update carries this very build's
    // root under a newer bundle version, so slot B ran `running` too
    // (slot B's install record, in the slot table, has the bundle's).
    let mut vm = boot("boot3", "A");
    answers_ntp(
        &vm,
        ntp,
        Duration::from_secs(600),
        "slot A never answered NTP:",
    );
    // The time service's downtime across a change of slot (an update's
    // reboot is the same path): from the request to NTP answered.
    eprintln!(
        "image_update: from the rollback's request to NTP answered on slot A {:.0} s (QEMU TCG)",
        switched.elapsed().as_secs_f64()
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    let status = wait_status(
        &vm,
        &bus,
        &[
            "(slot A)",
            "Next boot       : slot A",
            "Update state    : rolled-back-by-operator",
            &format!("the operator rolled back from slot B (version {running}) to slot A"),
            &format!("Version left    : {running}"),
            version,
        ],
        Duration::from_secs(180),
    );
    assert!(!status.contains("Update state    : failed"), "{status}");
    good = served_again(good, "after the operator's rollback");

    // A release that cannot serve, installed and booted.
    let install = ctl(
        &bus,
        &["update", "install", &on_card("broken.raucb")],
        Duration::from_secs(1200),
    );
    assert!(
        install.status.success(),
        "skytimectl update install broken.raucb:\n{}\n{}",
        text(&install),
        vm.log()
    );
    let reboot = ctl(&bus, &["reboot"], Duration::from_secs(60));
    assert!(
        reboot.status.success(),
        "skytimectl reboot: {}",
        text(&reboot)
    );
    assert_no_failed_units(&vm.wait_exit(Duration::from_secs(180)));

    // Boot 4: slot B; skytimed runs but serves nothing. Past the 60 s
    // deadline (and its 30 s at start) the health check marks slot B bad
    // and reboots; nothing else is done from outside.
    let vm = boot("boot4", "B");
    let console = vm.wait_exit(Duration::from_secs(900));
    assert!(
        console.contains("Started skytimed.service"),
        "skytimed did not start on the release that cannot serve:\n{console}"
    );
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_B_LEFT=0") && env.contains("BOOT_ORDER=A"),
        "slot B should be marked bad, slot A next:\n{env}"
    );

    // Boot 5: slot A, the update rolled back with the health check's
    // reason; time served again.
    let mut vm = boot("boot5", "A");
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    let broken = bundles.broken_version.as_str();
    let status = wait_status(
        &vm,
        &bus,
        &[
            "(slot A)",
            "Next boot       : slot A",
            "Update state    : rolled-back",
            "health check failed on slot B: not serving",
            "NTP does not answer",
            broken,
        ],
        Duration::from_secs(180),
    );
    assert!(!status.contains("the update guard"), "{status}");
    served_again(good, "after the automatic rollback");
    assert_no_failed_units(&vm.stop());
}
