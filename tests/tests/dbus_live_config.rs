//! `Config.Apply` and `Config.Reload` change the NTP server's access rules
//! and rate limit live: the real skytimed on a private dbus-daemon, driven
//! by the real skytimectl, queried by a plain NTP client on loopback. The
//! daemon measures only (`[clock] steer = false`) and is never restarted:
//! the bus name's owner keeps its PID throughout.

use skytime_tests::dbus::*;
use skytime_tests::ntp::{exchange, now, request};
use skytime_tests::{wait_until, Daemon};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Loopback may query; local stratum 10 so that replies come without GPS.
/// The port is the kernel's choice (the daemon logs it), and the same text
/// applied again changes no address.
fn config(extra_ntp: &str) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n{extra_ntp}\
         local_stratum = 10\n[clock]\nsteer = false\n[dbus]\nbus = \"system\"\n"
    )
}

fn start(config: &str) -> (PrivateBus, Daemon) {
    let bus = PrivateBus::start(&[]);
    let daemon = start_daemon(&bus, tempfile::tempdir().unwrap(), config);
    (bus, daemon)
}

/// The config as the daemon runs it (`@DATA@` filled in), in a file
/// skytimectl can read.
fn file(daemon: &Daemon, text: &str) -> tempfile::NamedTempFile {
    let data = daemon.dir.path().join("data");
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        f.path(),
        text.replace("@DATA@", &data.display().to_string()),
    )
    .unwrap();
    f
}

/// Applies `f` through skytimectl and returns what still needs a restart.
fn apply(bus: &PrivateBus, f: &tempfile::NamedTempFile, dry_run: bool) -> serde_json::Value {
    let path = f.path().display().to_string();
    let verb = if dry_run { "check" } else { "apply" };
    let r = ctl(bus, None, &["--json", "config", verb, &path]);
    assert!(r.ok(), "config {verb}: {}", r.all());
    r.json()["RestartRequired"].clone()
}

/// The PID that owns the appliance's bus name, as the bus sees it.
fn bus_owner_pid(bus: &PrivateBus) -> i32 {
    let r = busctl(
        bus,
        None,
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetConnectionUnixProcessID",
            "s",
            BUS_NAME,
        ],
    );
    assert!(r.ok(), "{}", r.all());
    // "u 1234"
    r.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected busctl output: {}", r.all()))
}

/// Whether any of three requests (fresh sockets, 300 ms each) is answered.
fn answered(server: SocketAddr) -> bool {
    (0..3).any(|_| exchange(server, &request(4, now()), Duration::from_millis(300)).is_some())
}

/// Sends `n` requests one after another from one socket (one client,
/// 127.0.0.1) and counts the replies.
fn burst(server: SocketAddr, n: usize) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (0..n)
        .filter(|_| {
            sock.send_to(&request(4, now()), server).unwrap();
            let mut buf = [0u8; 64];
            sock.recv_from(&mut buf).is_ok()
        })
        .count()
}

/// Requests dropped for `reason` so far (`skytimectl serverstats`).
fn dropped(bus: &PrivateBus, reason: &str) -> u64 {
    let r = ctl(bus, None, &["--json", "serverstats"]);
    assert!(r.ok(), "{}", r.all());
    r.json()["NtpDroppedByReason"][reason].as_u64().unwrap_or(0)
}

#[test]
fn access_rules_change_live_through_apply_and_reload() {
    let open = config("allow = [\"127.0.0.0/8\"]\n");
    let closed = config("allow = [\"192.0.2.0/24\"]\n");
    let (bus, daemon) = start(&open);
    let port = daemon.ntp_addr();
    let pid = daemon.pid();
    assert_eq!(bus_owner_pid(&bus), pid);
    assert!(answered(port), "loopback allowed:\n{}", daemon.log());
    let open_file = file(&daemon, &open);
    let closed_file = file(&daemon, &closed);

    // A dry run changes nothing.
    assert_eq!(apply(&bus, &closed_file, true), serde_json::json!([]));
    assert!(answered(port), "a dry run closed the server");

    // Only 192.0.2.0/24 may query: loopback gets no reply, and the
    // requests are counted as refused by the access rules.
    let denied_before = dropped(&bus, "access_denied");
    assert_eq!(
        apply(&bus, &closed_file, false),
        serde_json::json!([]),
        "access rules need no restart"
    );
    assert!(!answered(port), "loopback still served:\n{}", daemon.log());
    assert!(dropped(&bus, "access_denied") >= denied_before + 3);
    assert_eq!(bus_owner_pid(&bus), pid, "the daemon was restarted");

    // The original rules again: served again, same process.
    assert_eq!(apply(&bus, &open_file, false), serde_json::json!([]));
    assert!(answered(port), "not served again:\n{}", daemon.log());
    assert_eq!(bus_owner_pid(&bus), pid);

    // Reload puts the managed file's rules into effect the same way.
    let managed = daemon.dir.path().join("data").join("skytime.toml");
    std::fs::copy(closed_file.path(), &managed).unwrap();
    let r = ctl(&bus, None, &["--json", "config", "reload"]);
    assert!(r.ok(), "{}", r.all());
    assert_eq!(r.json()["RestartRequired"], serde_json::json!([]));
    assert!(!answered(port), "reload did not close the server");
    std::fs::copy(open_file.path(), &managed).unwrap();
    let r = ctl(&bus, None, &["config", "reload"]);
    assert!(r.ok(), "{}", r.all());
    assert!(answered(port), "reload did not reopen the server");
    assert_eq!(bus_owner_pid(&bus), pid);
    assert_eq!(daemon.log().matches("skytimed ready").count(), 1);
}

#[test]
fn rate_limit_changes_live_and_start_only_settings_are_still_reported() {
    let unlimited = config("allow = [\"127.0.0.0/8\"]\n");
    let (bus, daemon) = start(&unlimited);
    let port = daemon.ntp_addr();
    let pid = daemon.pid();
    assert_eq!(burst(port, 10), 10, "no limit:\n{}", daemon.log());

    // A bucket of 2 refilled every 1024 s, no leak: this client (already
    // known, its bucket full) gets 2 replies out of 10.
    let strict = format!(
        "{}[ntp.ratelimit]\ninterval = 10\nburst = 2\nleak = 0\n",
        unlimited
    );
    let strict_file = file(&daemon, &strict);
    let limited_before = dropped(&bus, "rate_limited");
    assert_eq!(apply(&bus, &strict_file, false), serde_json::json!([]));
    assert_eq!(burst(port, 10), 2, "limit not in effect:\n{}", daemon.log());
    assert_eq!(dropped(&bus, "rate_limited"), limited_before + 8);

    // RATE kiss-o'-death switched on live: of the next 10 requests (all
    // over the limit), every second is answered with one, and the count
    // reaches D-Bus and skytimectl's table.
    let kod_file = file(
        &daemon,
        &strict.replace("leak = 0\n", "leak = 0\nkod = 1\n"),
    );
    assert_eq!(apply(&bus, &kod_file, false), serde_json::json!([]));
    assert_eq!(burst(port, 10), 5, "kod not in effect:\n{}", daemon.log());
    let r = ctl(&bus, None, &["--json", "serverstats"]);
    assert_eq!(r.json()["NtpRateKods"].as_u64(), Some(5), "{}", r.all());
    assert_eq!(dropped(&bus, "rate_limited"), limited_before + 13);
    let table = ctl(&bus, None, &["serverstats"]).all();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("RATE KoDs sent") && l.trim_end().ends_with(" 5")),
        "{table}"
    );

    // No limit again: every request answered, by the same process.
    let unlimited_file = file(&daemon, &unlimited);
    assert_eq!(apply(&bus, &unlimited_file, false), serde_json::json!([]));
    assert_eq!(burst(port, 10), 10, "limit still in effect");
    assert_eq!(bus_owner_pid(&bus), pid);

    // A setting read only at start is still reported, and not applied.
    let stratum9 = file(
        &daemon,
        &unlimited.replace("local_stratum = 10", "local_stratum = 9"),
    );
    assert_eq!(
        apply(&bus, &stratum9, false),
        serde_json::json!(["ntp.local_stratum"])
    );
    let reply = wait_until(Duration::from_secs(2), || {
        exchange(port, &request(4, now()), Duration::from_millis(500))
    })
    .expect("served");
    assert_eq!(reply.reply.stratum, 10);
}
