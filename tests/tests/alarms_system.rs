//! Alarms raised and cleared by the real skytimed, read over D-Bus with
//! skytimectl: unsynchronized at start; a receiver that loses its fix
//! (no fix, no PPS, holdover); a receiver unplugged for longer than the
//! holdover limit (NMEA and PPS missing, holdover, the limit reached,
//! unsynchronized); everything cleared when the GPS is back; a
//! certificate that expires within 30 days; an expired leap-second table;
//! PPS pulses present but rejected (they disagree with the NMEA seconds)
//! and accepted again. (A clock stepped after lock needs a steered clock,
//! and tests never steer this machine's: the discipline simulator's
//! scenarios prove that one, daemon/sim/tests/alarms.rs.)

use skytime_discipline::leap::{LeapEntry, LeapTable};
use skytime_tests::dbus::{ctl, initialized_dir, start_daemon, PrivateBus};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::wait_until_every;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// NTP seconds of 1 January 2017, the last leap second.
const JAN_2017: u64 = 3_692_217_600;

/// The active alarms, as `skytimectl --json alarms` gives them.
fn active(bus: &PrivateBus) -> Vec<serde_json::Value> {
    let r = ctl(bus, None, &["--json", "alarms"]);
    assert!(r.ok(), "{}", r.all());
    r.json().as_array().unwrap().clone()
}

/// The active alarm names.
fn alarms(bus: &PrivateBus) -> BTreeSet<String> {
    active(bus)
        .iter()
        .map(|a| a["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the alarms until `done` holds for them; returns every alarm
/// seen meanwhile.
fn watch(
    bus: &PrivateBus,
    limit: Duration,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> (bool, BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < limit {
        let now = alarms(bus);
        seen.extend(now.iter().cloned());
        if done(&now) {
            return (true, seen);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (false, seen)
}

#[test]
fn the_daemon_raises_and_clears_its_alarms() {
    let bus = PrivateBus::start(&[]);
    let gps = tempfile::tempdir().unwrap();
    // A leap table that expired in 2017.
    let table = gps.path().join("leap-seconds.list");
    std::fs::write(
        &table,
        LeapTable::render(
            &[LeapEntry {
                at: JAN_2017,
                tai_utc: 37,
            }],
            JAN_2017 - 86_400,
            JAN_2017 + 86_400,
        ),
    )
    .unwrap();
    let config = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n\
         [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
         [clock]\nsteer = false\nholdover_limit = 15.0\nleap_seconds_file = \"{table}\"\n\
         [dbus]\nbus = \"system\"\n",
        dev = GpsSim::device(gps.path()).display(),
        sock = GpsSim::sock(gps.path()).display(),
        table = table.display(),
    );
    let daemon = start_daemon(&bus, initialized_dir(), &config);
    let first = wait_until_every(Duration::from_secs(10), Duration::from_millis(200), || {
        let a = alarms(&bus);
        (a.contains("not_synchronized") && a.contains("leap_table_expired")).then_some(a)
    });
    assert!(first.is_some(), "{:?}\n{}", alarms(&bus), daemon.log());
    let r = ctl(&bus, None, &["status"]);
    assert!(
        r.stdout.contains("Verdict     : FAIL: not synchronized"),
        "{}",
        r.stdout
    );

    // The receiver loses its fix at 40 s for 12 s, is unplugged at 75 s
    // for 25 s (longer than the holdover limit of 15 s after the last
    // update, which holdover starts 8 s after).
    let args: Vec<String> = [
        "--nmea-delay",
        "0.45",
        "--duration",
        "240",
        "--lose-fix-at",
        "40",
        "--lose-fix-for",
        "12",
        "--fail-after",
        "75",
        "--down-for",
        "25",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _sim = GpsSim::with_args(gps.path(), &args);
    let (ok, _) = watch(&bus, Duration::from_secs(40), |a| {
        !a.contains("not_synchronized")
    });
    assert!(ok, "never synchronized:\n{}", daemon.log());

    // Lost at 40 s, reported after 10 s of no fix.
    let (ok, seen) = watch(&bus, Duration::from_secs(70), |a| a.contains("no_gps_fix"));
    assert!(ok, "no fix not reported: {seen:?}\n{}", daemon.log());
    let (ok, seen2) = watch(&bus, Duration::from_secs(30), |a| {
        !a.contains("no_gps_fix") && !a.contains("pps_missing") && !a.contains("holdover")
    });
    assert!(ok, "the fix came back but the alarms stayed: {seen2:?}");
    let seen: BTreeSet<String> = seen.union(&seen2).cloned().collect();
    for a in ["no_gps_fix", "pps_missing", "holdover"] {
        assert!(
            seen.contains(a),
            "{a} not raised while the fix was lost: {seen:?}"
        );
    }
    assert!(!seen.contains("nmea_missing"), "NMEA went on: {seen:?}");

    let (ok, seen) = watch(&bus, Duration::from_secs(50), |a| {
        a.contains("holdover_limit_reached")
    });
    assert!(
        ok,
        "the holdover limit was not reported: {seen:?}\n{}",
        daemon.log()
    );
    let (ok, seen2) = watch(&bus, Duration::from_secs(60), |a| {
        a.len() == 1 && a.contains("leap_table_expired")
    });
    assert!(
        ok,
        "the GPS came back but the alarms stayed: {seen2:?}\n{}",
        daemon.log()
    );
    let seen: BTreeSet<String> = seen.union(&seen2).cloned().collect();
    for a in [
        "nmea_missing",
        "pps_missing",
        "holdover",
        "holdover_limit_reached",
        "not_synchronized",
    ] {
        assert!(seen.contains(a), "{a} not raised while unplugged: {seen:?}");
    }
    let r = ctl(&bus, None, &["alarms"]);
    assert!(
        r.stdout.contains("warning   leap_table_expired"),
        "{}",
        r.stdout
    );

    // A certificate that expires in ten days, then one that does not.
    install(&bus, cert_expiring_in(10));
    let (ok, seen) = watch(&bus, Duration::from_secs(10), |a| {
        a.contains("certificate_expiring")
    });
    assert!(ok, "{seen:?}");
    let r = ctl(&bus, None, &["--json", "alarms"]).json();
    let reason = r
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Name"] == "certificate_expiring")
        .unwrap()["Reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("expires in 9 days") || reason.contains("expires in 10 days"),
        "{reason}"
    );
    install(&bus, skytime_tests::dbus::make_cert("localhost", 2100));
    let (ok, seen) = watch(&bus, Duration::from_secs(10), |a| {
        !a.contains("certificate_expiring")
    });
    assert!(ok, "{seen:?}");
    assert!(daemon.log().contains("alarm cleared"), "alarms are logged");
}

/// Installs the NTS certificate and key (PEM) with skytimectl.
fn install(bus: &PrivateBus, (cert, key): (String, String)) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let r = ctl(
        bus,
        None,
        &[
            "certificate",
            "install",
            c.to_str().unwrap(),
            k.to_str().unwrap(),
        ],
    );
    assert!(r.ok(), "{}", r.all());
}

/// A certificate and key for localhost valid until `days` from now.
fn cert_expiring_in(days: i64) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The active alarm called `name`, as `skytimectl --json alarms` gives it.
fn alarm(bus: &PrivateBus, name: &str) -> Option<serde_json::Value> {
    active(bus).into_iter().find(|a| a["Name"] == name)
}

/// PPS present but rejected: the daemon expects the NMEA sentences 0.2 s
/// after each pulse (`nmea_delay`, within `max_error` 0.05 s), the
/// receiver sends them 0.6 s after it, so every pulse arrives and none
/// agrees with its NMEA second. The alarm says so (a warning, naming the
/// PPS input); NMEA and the fix stay fine, so their alarms stay quiet. A
/// receiver with the expected delay clears it.
#[test]
fn pulses_that_disagree_with_nmea_raise_pps_rejected_until_they_agree() {
    let bus = PrivateBus::start(&[]);
    let gps = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
         nmea_delay = 0.2\nmax_error = 0.05\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n",
        dev = GpsSim::device(gps.path()).display(),
        sock = GpsSim::sock(gps.path()).display(),
    );
    let daemon = start_daemon(&bus, initialized_dir(), &config);
    let late = GpsSim::start(gps.path(), 0.6, 120);
    let (ok, seen) = watch(&bus, Duration::from_secs(40), |a| {
        a.contains("pps_rejected")
    });
    assert!(ok, "pps_rejected not raised: {seen:?}\n{}", daemon.log());
    let a = alarm(&bus, "pps_rejected").expect("raised");
    assert_eq!(a["Severity"], "warning", "{a}");
    let reason = a["Reason"].as_str().unwrap();
    assert!(
        reason.contains("arrive but none was accepted")
            && reason.contains("do not agree with the NMEA seconds")
            && reason.contains(&GpsSim::sock(gps.path()).display().to_string()),
        "{reason}"
    );
    for quiet in ["nmea_missing", "no_gps_fix", "pps_missing"] {
        assert!(!seen.contains(quiet), "{quiet} raised: {seen:?}");
    }
    let r = ctl(&bus, None, &["alarms"]);
    assert!(r.stdout.contains("warning   pps_rejected"), "{}", r.stdout);

    // The receiver replaced by one with the expected delay.
    drop(late);
    let _good = GpsSim::start(gps.path(), 0.2, 120);
    let (ok, seen) = watch(&bus, Duration::from_secs(40), |a| {
        !a.contains("pps_rejected")
    });
    assert!(ok, "pps_rejected stayed: {seen:?}\n{}", daemon.log());
    assert!(daemon.log().contains("alarm cleared"), "alarms are logged");
}
