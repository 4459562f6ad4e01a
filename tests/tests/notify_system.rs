//! sd_notify with the real skytimed: the test plays systemd with a
//! NOTIFY_SOCKET of its own and WATCHDOG_USEC, and checks READY (only once
//! the sockets are bound and the bus name is owned; time is served while
//! the bus is missing), STATUS (kept current),
//! WATCHDOG (only while every main loop beats: the documented test-only
//! trigger SKYTIME_TEST_HANG=ntp:SECONDS wedges the NTP loop's thread) and
//! STOPPING.

use skytime_tests::dbus::*;
use skytime_tests::ntp::query;
use skytime_tests::{bin, run_bounded, Daemon};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

/// A notification socket of the test's own.
struct Systemd {
    _dir: tempfile::TempDir,
    path: String,
    rx: UnixDatagram,
}

impl Systemd {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").display().to_string();
        let rx = UnixDatagram::bind(&path).unwrap();
        Self {
            _dir: dir,
            path,
            rx,
        }
    }

    /// Every message that arrives within `how_long`, with its arrival time.
    fn collect(&self, how_long: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + how_long;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.rx
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok(n) = self.rx.recv(&mut buf) {
                out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        out
    }
}

/// NTS and local stratum 10 on ports the kernel picks (the daemon logs
/// them).
const CONFIG: &str = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n\
     allow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
     [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
     [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n";

fn texts(msgs: &[(Instant, String)]) -> Vec<&str> {
    msgs.iter().map(|(_, m)| m.as_str()).collect()
}

#[test]
fn ready_status_watchdog_and_stopping() {
    let bus = PrivateBus::start(&[]);
    let systemd = Systemd::new();
    let daemon = Daemon::start_in_env(
        initialized_dir(),
        CONFIG,
        &[],
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
            ("NOTIFY_SOCKET", systemd.path.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    // Requests from one client after READY.
    let msgs = systemd.collect(Duration::from_millis(500));
    for _ in 0..3 {
        assert!(query(daemon.ntp_addr()).is_some());
    }
    let msgs = [msgs, systemd.collect(Duration::from_secs(3))].concat();
    let t = texts(&msgs);
    let ready = t
        .iter()
        .position(|m| *m == "READY=1")
        .unwrap_or_else(|| panic!("no READY=1: {t:?}"));
    assert!(
        !t[..ready].iter().any(|m| m.starts_with("WATCHDOG")),
        "WATCHDOG before READY: {t:?}"
    );
    // READY came after the name was owned: it is owned now, by skytimed.
    let r = busctl(&bus, None, &["status", BUS_NAME]);
    assert!(
        r.ok() && r.stdout.contains(&format!("PID={}", daemon.pid())),
        "{}",
        r.all()
    );
    assert!(
        t.contains(&"STATUS=stratum 10, 7F7F0101, offset +0 ns, 0 clients"),
        "{t:?}"
    );
    assert!(
        t.contains(&"STATUS=stratum 10, 7F7F0101, offset +0 ns, 1 client"),
        "STATUS not kept current: {t:?}"
    );
    // WATCHDOG_USEC=1 s: a ping every half second while healthy.
    let pings = t.iter().filter(|m| **m == "WATCHDOG=1").count();
    assert!(pings >= 4, "{pings} pings in 3.5 s: {t:?}");

    let pid = daemon.pid();
    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
    let after = systemd.collect(Duration::from_millis(200));
    assert!(
        texts(&after).contains(&"STOPPING=1"),
        "no STOPPING=1 from {pid}: {after:?}"
    );
}

#[test]
fn no_ready_when_the_bus_name_cannot_be_owned() {
    let bus = PrivateBus::start(&[]);
    let _first = Daemon::start_in_env(
        initialized_dir(),
        CONFIG,
        &[],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str())],
    );
    // A second daemon on other ports: the name is taken, so it must stop
    // with an error and never say READY=1.
    let systemd = Systemd::new();
    let dir = initialized_dir();
    let conf = dir.path().join("second.toml");
    std::fs::write(
        &conf,
        CONFIG.replace("@DATA@", &dir.path().join("data").display().to_string()),
    )
    .unwrap();
    let out = run_bounded(
        Command::new(bin("skytimed"))
            .arg("--config")
            .arg(&conf)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("NOTIFY_SOCKET", &systemd.path),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot own the D-Bus name"), "{err}");
    let msgs = systemd.collect(Duration::from_millis(300));
    assert!(
        !texts(&msgs).contains(&"READY=1"),
        "READY=1 without the bus name: {msgs:?}"
    );
}

#[test]
fn watchdog_stops_when_the_ntp_loop_hangs() {
    let bus = PrivateBus::start(&[]);
    let systemd = Systemd::new();
    let daemon = Daemon::start_in_env(
        initialized_dir(),
        CONFIG,
        &[],
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
            ("NOTIFY_SOCKET", systemd.path.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            // Test-only: the NTP loop blocks its thread for good 3 s after
            // start, like a wedged driver call.
            ("SKYTIME_TEST_HANG", "ntp:3"),
        ],
    );
    let msgs = systemd.collect(Duration::from_secs(15));
    let t = texts(&msgs);
    let ready_at = msgs
        .iter()
        .find(|(_, m)| m == "READY=1")
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no READY=1: {t:?}"));
    let pings: Vec<Duration> = msgs
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| t.saturating_duration_since(ready_at))
        .collect();
    assert!(
        pings
            .iter()
            .filter(|d| **d < Duration::from_secs(3))
            .count()
            >= 3,
        "pings while healthy: {pings:?}"
    );
    // Hang at 3-4 s, 5 s of allowed silence, a 0.5 s tick: nothing after
    // about 10 s, and the last 4 s of the window stay silent.
    let late: Vec<&Duration> = pings
        .iter()
        .filter(|d| **d > Duration::from_secs(11))
        .collect();
    assert!(
        late.is_empty(),
        "WATCHDOG=1 kept coming after the hang: {pings:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("loops stopped beating") && log.contains("ntp"),
        "{log}"
    );
    // The process is alive but no longer serves: only the watchdog can
    // tell systemd. (A loop that blocks a runtime thread may also delay
    // other tasks, D-Bus among them; that is why the watchdog runs on a
    // thread of its own and still names the loop.)
    assert!(
        query(daemon.ntp_addr()).is_none(),
        "the hung NTP loop still answered"
    );
    assert!(
        log.contains("loops=[\"ntp\""),
        "the watchdog names the NTP loop: {log}"
    );
}

#[test]
fn time_is_served_while_the_bus_is_missing_and_ready_waits_for_it() {
    let (bus_dir, address) = PrivateBus::prepare();
    let systemd = Systemd::new();
    let daemon = Daemon::start_in_env(
        initialized_dir(),
        CONFIG,
        &[],
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", address.as_str()),
            ("NOTIFY_SOCKET", systemd.path.as_str()),
        ],
    );
    let before = systemd.collect(Duration::from_secs(2));
    assert!(
        !texts(&before).contains(&"READY=1"),
        "READY=1 without the bus: {before:?}"
    );
    let x = query(daemon.ntp_addr()).expect("NTP is served while the bus is missing");
    assert_eq!(x.reply.stratum, 10);
    assert!(daemon.log().contains("retrying"), "{}", daemon.log());

    // The bus comes up: the daemon connects on its next attempt (backoff
    // 1, 2, 4 ... s), owns the name and only then says READY=1.
    let bus = PrivateBus::start_in(bus_dir, &[]);
    assert_eq!(bus.address.split(',').next(), Some(address.as_str()));
    let after = systemd.collect(Duration::from_secs(12));
    assert!(
        texts(&after).contains(&"READY=1"),
        "no READY=1 after the bus appeared: {after:?}\n{}",
        daemon.log()
    );
    let r = ctl(&bus, None, &["--json", "tracking"]);
    assert_eq!(r.json()["Stratum"], 10, "{}", r.all());
    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
}
