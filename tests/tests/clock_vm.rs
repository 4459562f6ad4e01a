//! skytimed steers a real Linux clock from the GPS: inside a virtual
//! machine, where setting the clock is allowed, never on this host.
//!
//! The host runs the GPS simulator (its truth is the host clock, which it
//! only reads) writing NMEA at 9600 baud into a pty; the test relays it,
//! through a gate it opens and closes (plugging and unplugging the
//! receiver), to a second pty that QEMU connects to the guest's second
//! serial port (/dev/ttyS1). The guest is Debian's
//! kernel with an initramfs holding busybox and the host-built skytimed,
//! configured to steer (`[clock] steer = true`, in the guest only) and to
//! serve NTP on port 123, which QEMU forwards to a loopback port here.
//! The guest's RTC starts 30 s ahead of the host, so its clock does.
//!
//! From the host only (no shell in the guest) the test asserts that the
//! guest first serves time about 30 s off and unsynchronized, then steps,
//! then serves stratum 1 / GPS within 20 ms of the host clock (10 readings
//! in a row), keeps doing so through 15 s without the GPS (holdover, root
//! dispersion growing), and that its console shows the step and no panic.
//! KVM is used when it works; otherwise (or if a nested KVM guest does not
//! reach /init in 30 s) the VM runs under TCG. If skytimed did not steer, the
//! served time would stay 30 s off and the test would fail.
//!
//! Only NMEA crosses into the guest: the simulator's PPS edges travel over
//! chrony's SOCK protocol (a Unix socket on the host), which a VM cannot
//! reach, so this proves steering at millisecond (NMEA) accuracy, not the
//! microsecond accuracy of PPS.

use skytime_proto::ReferenceId;
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::vm::{
    host_unix_secs, kvm_usable, rtc_base, shared_libraries, stripped, Cpio, Kernel, Qemu,
    QemuConfig, SerialGate,
};
use skytime_tests::{bin, free_udp_port, lo, require_program, wait_until};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// How far ahead of the host the guest's clock starts, seconds.
const INJECTED_OFFSET_S: i64 = 30;
/// NMEA sentences start this long after the second they name (simulator
/// and guest config agree, as an installer sets `nmea_delay` for a
/// receiver without PPS).
const NMEA_DELAY_S: f64 = 0.3;
/// The guest must end up this close to the host clock, seconds.
const FINAL_TOLERANCE_S: f64 = 0.020;

/// The guest's skytimed configuration: steering on (this runs only inside
/// the VM), NTP on the guest's port 123, NMEA from ttyS1.
fn guest_config() -> String {
    format!(
        "data_dir = \"/var/lib/skytime\"\n\
         [log]\nlevel = \"info\"\n\
         [ntp]\nlisten = [\"0.0.0.0:123\"]\n\
         [clock]\nsteer = true\n\
         [gps]\ndevice = \"/dev/ttyS1\"\nbaud = 9600\nnmea_delay = {NMEA_DELAY_S}\n\
         reopen_max_backoff = 1\n\
         [dbus]\nenabled = false\n"
    )
}

const INIT: &str = r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo "skytime-vm: init, guest clock $(date -u '+%Y-%m-%dT%H:%M:%S')"
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "skytime-vm: insmod $m failed"; done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
echo "skytime-vm: network up, starting skytimed"
# Through a pipe: skytimed colours its log only on a terminal.
skytimed --config /etc/skytime.toml 2>&1 | cat
echo "skytime-vm: skytimed exited"
poweroff -f
"#;

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "cat", "date", "insmod", "ip", "poweroff", "sleep", "echo",
];

/// The initramfs: busybox, skytimed with its libraries, config and /init.
fn build_initramfs(kernel: &Kernel, dir: &Path) -> Vec<u8> {
    let mut c = Cpio::new();
    let mut made = Vec::new();
    for d in [
        "/bin",
        "/dev",
        "/proc",
        "/sys",
        "/etc",
        "/lib",
        "/lib/modules",
        "/var",
        "/var/lib",
    ] {
        c.dir(d);
        made.push(d.to_owned());
    }
    c.char_device("/dev/console", 5, 1);
    c.file("/init", INIT.as_bytes(), 0o755);
    // Debian's busybox (dynamic) or busybox-static: either works.
    let busybox = require_program("busybox");
    c.file("/bin/busybox", &fs::read(&busybox).unwrap(), 0o755);
    for a in BUSYBOX_APPLETS {
        c.symlink(&format!("/bin/{a}"), "busybox");
    }
    let skytimed = bin("skytimed");
    c.file("/bin/skytimed", &stripped(&skytimed, dir), 0o755);
    let mut libs = shared_libraries(&skytimed);
    libs.extend(shared_libraries(&busybox));
    libs.sort();
    libs.dedup();
    for lib in libs {
        let name = lib.to_str().unwrap();
        c.parents(name, &mut made);
        c.file(name, &fs::read(&lib).unwrap(), 0o755);
    }
    c.file("/etc/skytime.toml", guest_config().as_bytes(), 0o644);
    // The host's leap-second table (tzdata), where skytimed looks for it.
    let leap = Path::new("/usr/share/zoneinfo/leap-seconds.list");
    if let Ok(data) = fs::read(leap) {
        c.parents(leap.to_str().unwrap(), &mut made);
        c.file(leap.to_str().unwrap(), &data, 0o644);
    }
    let mut order = String::new();
    for m in &kernel.modules {
        let name = m.file_name().unwrap().to_str().unwrap();
        c.file(
            &format!("/lib/modules/{name}"),
            &fs::read(m).unwrap(),
            0o644,
        );
        order.push_str(name);
        order.push('\n');
    }
    c.file("/lib/modules/order", order.as_bytes(), 0o644);
    c.finish()
}

/// One NTP exchange with the guest, seconds: the offset of the guest's
/// clock from the host's (known to +-delay/2), the round-trip delay, and
/// what the server says about itself.
#[derive(Debug)]
struct Reading {
    offset: f64,
    delay: f64,
    stratum: u8,
    refid: ReferenceId,
    root_dispersion: f64,
}

impl Reading {
    /// Stratum 1 from the GPS, and within `tol` of the host clock
    /// including the measurement's own uncertainty.
    fn locked_within(&self, tol: f64) -> bool {
        self.stratum == 1
            && self.refid == ReferenceId::GPS
            && self.offset.abs() + self.delay / 2.0 < tol
    }
}

fn read_guest(port: u16) -> Option<Reading> {
    let x = query(lo(port))?;
    let r = &x.reply;
    let t1 = x.sent;
    let t4 = x.received;
    let offset = ((r.receive_timestamp - t1).to_seconds_f64()
        + (r.transmit_timestamp - t4).to_seconds_f64())
        / 2.0;
    let delay =
        (t4 - t1).to_seconds_f64() - (r.transmit_timestamp - r.receive_timestamp).to_seconds_f64();
    Some(Reading {
        offset,
        delay,
        stratum: r.stratum,
        refid: r.reference_id,
        root_dispersion: r.root_dispersion.to_seconds_f64(),
    })
}

#[test]
fn skytimed_steps_and_steers_a_vm_clock_to_the_gps() {
    let t0 = Instant::now();
    let kernel = Kernel::fetch();
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("initramfs.cpio");
    fs::write(&initramfs, build_initramfs(&kernel, dir.path())).unwrap();

    let gps_link = dir.path().join("gps");
    let _sim = GpsSim::nmea_only(&gps_link, NMEA_DELAY_S, 300);
    assert!(
        wait_until(Duration::from_secs(10), || gps_link.exists().then_some(())).is_some(),
        "skytime-gpssim made no pty"
    );
    // The GPS is "plugged in" only once the guest's wrong clock has been
    // measured, so that skytimed cannot step before the test looks.
    let gps = SerialGate::new(&gps_link);

    // The guest's clock starts INJECTED_OFFSET_S ahead (its RTC, read at
    // boot, has whole seconds: the real start offset is measured below).
    let port = free_udp_port();
    let start_vm = |kvm: bool, name: &str| {
        let base = rtc_base(host_unix_secs() as i64 + INJECTED_OFFSET_S);
        eprintln!(
            "clock_vm: {} booting with {}, guest RTC base {base} (+{INJECTED_OFFSET_S} s)",
            kernel.package,
            if kvm { "KVM" } else { "TCG" }
        );
        Qemu::start(
            &QemuConfig {
                kernel: &kernel,
                initramfs: &initramfs,
                append: "console=ttyS0,115200 panic=-1 loglevel=4",
                memory_mb: 512,
                console: &dir.path().join(name),
                ttys1: Some(gps.device()),
                rtc_base: &base,
                udp_forwards: &[(port, 123)],
            },
            kvm,
        )
    };
    let mut boot = Instant::now();
    let mut vm = start_vm(kvm_usable(), "console.log");
    if vm.kvm && !vm.wait_console("skytime-vm: init", Duration::from_secs(30)) {
        // Nested KVM that hangs the guest: emulate instead.
        eprintln!(
            "clock_vm: no init under KVM in 30 s, falling back to TCG:\n{}",
            vm.console()
        );
        vm.kill();
        boot = Instant::now();
        vm = start_vm(false, "console-tcg.log");
    }
    let accel = if vm.kvm { "KVM" } else { "TCG" };

    // The first answer: skytimed serves the guest's clock, still wrong.
    let first = wait_until(Duration::from_secs(150), || {
        vm.check_running();
        read_guest(port)
    })
    .unwrap_or_else(|| panic!("the guest never answered NTP:\n{}", vm.console()));
    let boot_s = boot.elapsed().as_secs_f64();
    eprintln!("clock_vm: first reply {boot_s:.1} s after QEMU started ({accel}): {first:?}");
    assert!(
        (first.offset - INJECTED_OFFSET_S as f64).abs() < 1.5 + first.delay / 2.0,
        "the guest's clock should start about {INJECTED_OFFSET_S} s ahead: {first:?}\n{}",
        vm.console()
    );
    assert_eq!(
        first.stratum, 16,
        "unsynchronized (stratum 16) at first: {first:?}"
    );

    // Wait a little: without NMEA the clock must stay where it is.
    std::thread::sleep(Duration::from_secs(3));
    let before = read_guest(port).expect("the guest stopped answering");
    assert!(
        (before.offset - first.offset).abs() < 0.5 && before.stratum == 16,
        "the guest's clock moved without a GPS: {first:?} then {before:?}"
    );
    gps.set_open(true);

    // Then it steps and steers: stratum 1 from the GPS, within tolerance,
    // held for 10 consecutive readings a second apart.
    let sync_start = Instant::now();
    let mut good = 0;
    let mut last = None;
    let synced = wait_until(Duration::from_secs(120), || {
        vm.check_running();
        std::thread::sleep(Duration::from_millis(950));
        let r = read_guest(port)?;
        let ok = r.locked_within(FINAL_TOLERANCE_S);
        good = if ok { good + 1 } else { 0 };
        last = Some(format!("{r:?}"));
        (good >= 10).then_some(r)
    });
    let synced = synced.unwrap_or_else(|| {
        panic!(
            "the guest never held stratum 1 / GPS within {} ms (last reading: {last:?}):\n{}",
            FINAL_TOLERANCE_S * 1e3,
            vm.console()
        )
    });
    eprintln!(
        "clock_vm: synchronized and held within {:.0} ms after {:.1} s; last reading {synced:?}",
        FINAL_TOLERANCE_S * 1e3,
        sync_start.elapsed().as_secs_f64()
    );

    // Unplug the GPS: the steered clock carries on (holdover), still
    // stratum 1 and still within tolerance, with a growing error bound.
    gps.set_open(false);
    let unplugged = Instant::now();
    let mut held = None;
    while unplugged.elapsed() < Duration::from_secs(15) {
        vm.check_running();
        std::thread::sleep(Duration::from_millis(950));
        if let Some(r) = read_guest(port) {
            assert!(
                r.locked_within(FINAL_TOLERANCE_S),
                "holdover after {:.1} s without GPS: {r:?}\n{}",
                unplugged.elapsed().as_secs_f64(),
                vm.console()
            );
            held = Some(r);
        }
    }
    let held = held.expect("the guest stopped answering during holdover");
    eprintln!("clock_vm: 15 s without GPS: {held:?}");
    assert!(
        held.root_dispersion > synced.root_dispersion,
        "root dispersion should grow without the GPS: locked {synced:?}, unplugged {held:?}"
    );

    let log = vm.console();
    for line in log.lines().filter(|l| {
        l.contains("skytime-vm:")
            || l.contains("stepping")
            || l.contains("lost")
            || l.contains("holdover")
            || l.contains("WARN")
            || l.contains("ERROR")
    }) {
        eprintln!("clock_vm: guest: {line}");
    }
    assert!(
        log.contains("skytime-vm: init, guest clock"),
        "no init output:\n{log}"
    );
    assert!(
        log.contains("stepping the system clock"),
        "skytimed never logged a step:\n{log}"
    );
    assert!(
        !log.contains("panicked") && !log.contains("Kernel panic"),
        "panic in the guest:\n{log}"
    );
    assert!(
        !log.contains("skytime-vm: skytimed exited"),
        "skytimed stopped in the guest:\n{log}"
    );
    eprintln!(
        "clock_vm: done in {:.1} s ({accel})",
        t0.elapsed().as_secs_f64()
    );
}
