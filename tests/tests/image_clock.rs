//! The appliance image steers its own clock from a GPS receiver, inside
//! QEMU (never this host's clock): the real skytimed.service with its
//! sandbox (user skytime, CAP_SYS_TIME, `SystemCallFilter=@system-service
//! @clock`, `DevicePolicy=closed` with ttyUSB allowed), started by systemd
//! from the SD-card image through U-Boot, as on a Pi with a USB GPS.
//!
//! The host runs the GPS simulator (its truth is the host clock, which it
//! only reads) writing NMEA at 9600 baud into a pty; QEMU passes that pty
//! to the guest as a USB serial adapter (`usb-serial`, an FTDI chip:
//! /dev/ttyUSB0 through ftdi_sio), plugged in once skytimed runs: systemd
//! resolves skytimed's `DeviceAllow=char-ttyUSB` when the unit starts, so
//! without usbserial loaded first (modprobe@usbserial.service) the device
//! would stay closed to skytimed until its next restart. The guest's RTC starts 30 s ahead of the
//! host, so its clock does: the kernel says so on the console when it sets
//! the system clock from the RTC. A configuration on the boot partition
//! (imported by first boot) turns steering on and names the receiver. The
//! data partition starts blank, as on a wiped card: systemd formats it
//! (x-systemd.makefs) before first boot fills it.
//!
//! From the host only (no shell in the guest): the guest's clock started
//! about 30 s ahead (console), and then the guest serves stratum 1 / GPS
//! within 50 ms of the host clock, LI not "unsynchronized", for 10
//! readings in a row. Had skytimed not steered the clock, the served time
//! would stay 30 s off. NMEA only (no PPS reaches a VM), through an
//! emulated FTDI adapter that batches bytes (16 ms latency timer), hence
//! the tolerance. The simulator writes from before QEMU starts, so the
//! host pty holds up to a minute or more of old sentences when the guest
//! opens the port, past skytimed's flush: they arrive at once and must
//! time no sample (the first would step the clock by their age). On a
//! failure, skytimed's own view (sources, tracking, alarms) is read over
//! the VM channel and shown.

mod image_support;

use image_support::*;
use skytime_proto::{LeapIndicator, ReferenceId};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::vm::{host_unix_secs, rtc_base};
use skytime_tests::{free_tcp_port, free_udp_port, lo, wait_until};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// How far ahead of the host the guest's clock starts, seconds.
const INJECTED_OFFSET_S: i64 = 30;
/// NMEA sentences start this long after the second they name (simulator
/// and guest configuration agree).
const NMEA_DELAY_S: f64 = 0.3;
/// The guest must end up this close to the host clock, seconds.
const TOLERANCE_S: f64 = 0.050;

/// (offset of the guest's clock from the host's, round-trip delay,
/// stratum, reference ID, leap indicator) from one NTP exchange.
fn read_guest(port: u16) -> Option<(f64, f64, u8, ReferenceId, LeapIndicator)> {
    let x = query(lo(port))?;
    let r = &x.reply;
    let offset = ((r.receive_timestamp - x.sent).to_seconds_f64()
        + (r.transmit_timestamp - x.received).to_seconds_f64())
        / 2.0;
    let delay = (x.received - x.sent).to_seconds_f64()
        - (r.transmit_timestamp - r.receive_timestamp).to_seconds_f64();
    Some((offset, delay, r.stratum, r.reference_id, r.leap))
}

/// The guest's clock at boot, from the kernel's console line
/// "rtc-pl031 ...: setting system clock to 2026-11-21T20:00:30 UTC (1795291230)".
fn clock_set_at_boot(console: &str) -> Option<i64> {
    let line = console
        .lines()
        .find(|l| l.contains("setting system clock to"))?;
    let inner = line.rsplit('(').next()?.trim_end().strip_suffix(')')?;
    inner.parse().ok()
}

/// Adds `device` to the running VM through its human monitor at `socket`.
fn plug_in(socket: &Path, device: &str) {
    use std::io::{Read, Write};
    let mut mon = std::os::unix::net::UnixStream::connect(socket).expect("QEMU's monitor");
    mon.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    mon.write_all(format!("device_add {device}\n").as_bytes())
        .unwrap();
    // The banner, the echo and any complaint, until the monitor goes quiet.
    let mut said = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = mon.read(&mut buf) {
        if n == 0 {
            break;
        }
        said.extend_from_slice(&buf[..n]);
    }
    let said = String::from_utf8_lossy(&said);
    assert!(
        !said.to_lowercase().contains("error"),
        "device_add {device}: {said}"
    );
}

#[test]
fn the_image_steers_its_clock_from_a_usb_gps() {
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    let (ntp, ke) = (free_udp_port(), free_tcp_port());

    let config = dir.path().join("skytime.toml");
    fs::write(
        &config,
        format!(
            "data_dir = \"/var/lib/skytime\"\n\
             [ntp]\nlisten = [\"0.0.0.0:123\"]\nallow = [\"0.0.0.0/0\", \"::/0\"]\n\
             [nts]\nenabled = true\nke_listen = [\"0.0.0.0:4460\"]\nntp_port = {ntp}\n\
             [clock]\nsteer = true\n\
             [gps]\ndevice = \"/dev/ttyUSB0\"\nbaud = 9600\nnmea_delay = {NMEA_DELAY_S}\n"
        ),
    )
    .unwrap();
    put_boot_file(&img, &config, "skytime.toml");
    // A wiped data partition: systemd formats it (x-systemd.makefs), then
    // first boot fills it.
    blank(&img, 4);

    let link = dir.path().join("gps");
    let sim = GpsSim::nmea_only(&link, NMEA_DELAY_S, 900);
    assert!(
        wait_until(Duration::from_secs(10), || link.exists().then_some(())).is_some(),
        "skytime-gpssim made no pty"
    );
    let pty = fs::canonicalize(&link).unwrap();

    let bus = dir.path().join("bus.sock");
    let monitor = dir.path().join("monitor.sock");
    let started = host_unix_secs();
    let base = rtc_base(started as i64 + INJECTED_OFFSET_S);
    let mut extra: Vec<String> = vec![
        "-rtc".into(),
        format!("base={base}"),
        "-device".into(),
        "qemu-xhci".into(),
        "-chardev".into(),
        format!("serial,id=gps,path={}", pty.display()),
        // The adapter is plugged in once skytimed runs, below.
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", monitor.display()),
    ];
    extra.extend(bus_channel_args(&bus));
    let mut vm = Qemu::boot_with(&img, dir.path(), "clock", ntp, ke, &extra);
    vm.wait_for(
        "Finished skytime-firstboot.service",
        Duration::from_secs(600),
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
    // The receiver is plugged in after skytimed started, as a user may: its
    // driver (usbserial) loads only now, so skytimed's device allow-list
    // must not depend on the driver having been there at its start.
    plug_in(&monitor, "usb-serial,chardev=gps,id=gps-usb");
    let console = vm.log();
    assert!(
        console.contains("Finished systemd-makefs@"),
        "the blank data partition was not formatted:\n{console}"
    );
    let set = clock_set_at_boot(&console)
        .unwrap_or_else(|| panic!("no RTC line on the console:\n{console}"));
    // The guest read its RTC within the first minute after QEMU started.
    let ahead = set as f64 - started;
    assert!(
        ahead > INJECTED_OFFSET_S as f64 - 2.0 && ahead < INJECTED_OFFSET_S as f64 + 60.0,
        "the guest's clock did not start ~{INJECTED_OFFSET_S} s ahead ({ahead:.1} s):\n{console}"
    );

    let sync_start = Instant::now();
    let mut good = 0;
    let mut last = None;
    let synced = wait_until(Duration::from_secs(300), || {
        std::thread::sleep(Duration::from_millis(950));
        let r = read_guest(ntp)?;
        let (offset, delay, stratum, refid, leap) = r;
        let ok = stratum == 1
            && refid == ReferenceId::GPS
            && leap != LeapIndicator::Unsynchronized
            && offset.abs() + delay / 2.0 < TOLERANCE_S;
        good = if ok { good + 1 } else { 0 };
        last = Some(r);
        (good >= 10).then_some(r)
    });
    // What skytimed saw of the receiver, should the wait have failed.
    let diagnosis = if synced.is_none() {
        let ctl = skytime_tests::bin("skytimectl");
        ["sources", "tracking", "alarms"]
            .map(|what| {
                let out = on_guest_bus(&bus, &ctl, &[what]);
                format!(
                    "skytimectl {what}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .join("\n")
    } else {
        String::new()
    };
    let console = vm.stop();
    drop(sim);
    let synced = synced.unwrap_or_else(|| {
        panic!(
            "the guest never held stratum 1 / GPS within {} ms \
             (last reading (offset, delay, stratum, refid, leap): {last:?}):\n{diagnosis}\n{console}",
            TOLERANCE_S * 1e3
        )
    });
    eprintln!(
        "image_clock: started {ahead:.1} s ahead; synchronized within {:.0} ms and held after \
         {:.1} s; last reading {synced:?}",
        TOLERANCE_S * 1e3,
        sync_start.elapsed().as_secs_f64()
    );
    assert_no_failed_units(&console);
}
