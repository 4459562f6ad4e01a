//! The GPS cross-check end to end: skytime-gpssim feeds skytimed (PPS
//! over SOCK, NMEA on a pty) while two chronyd 4.3 NTS servers on
//! 127.0.0.2 and 127.0.0.3, serving the host's (true) time at `local
//! stratum 1`, are its authenticated upstreams. The GPS agrees and is
//! selected (stratum 1, PPS); then the simulated receiver is spoofed by
//! a step. skytimed raises gps_disagrees (or gps_jumped) over D-Bus,
//! marks the GPS sources falsetickers in GetSources, serves at stratum 2
//! from the network, and what it serves is not the spoofed time: a chrony
//! client of skytimed measures an offset far below the step, and the
//! discipline's own last offset stays small. (skytimed runs measure-only,
//! as every host test does: it never steers this machine's clock, so the
//! served time is the host clock either way; the served stratum and
//! reference and the discipline's offsets are what the spoof would
//! otherwise move.)

use skytime_proto::ReferenceId;
use skytime_tests::dbus::{alarm_names, ctl, sources, start_daemon, PrivateBus};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::upstream::{certificate, nts_client_trusting, ChronyServer};
use skytime_tests::{field, parse_colon_fields, wait_until_every, Chronyd};
use std::time::{Duration, Instant};

/// Seconds after the simulator's start when its time steps.
const SPOOF_AT: u64 = 20;

/// A whole-second step: the pulses keep their phase and only the NMEA
/// labels move.
#[test]
fn a_whole_second_spoof_step_is_caught_and_the_network_serves() {
    spoof_is_caught_and_the_network_serves(2.0);
}

/// A step of a fraction of a second moves the pulses too: the refclock
/// first rejects them as glitches (the GPS is silent, the clock in
/// holdover), then takes the new phase, and the cross-check catches it.
#[test]
fn a_fractional_spoof_step_is_caught_and_the_network_serves() {
    spoof_is_caught_and_the_network_serves(-1.204);
}

fn spoof_is_caught_and_the_network_serves(step: f64) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let chrony_a = ChronyServer::start("127.0.0.2", 1, Some((&cert, &key)), &[]);
    let chrony_b = ChronyServer::start("127.0.0.3", 1, Some((&cert, &key)), &[]);
    let gps = tempfile::tempdir().unwrap();
    // The shortest windows the configuration allows: trust back after
    // no agreement at all, no extra disagreement bound.
    let config = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
         [clock]\nsteer = false\ngps_max_disagreement = 0.0\ngps_trust_after = 0.0\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
         [dbus]\nbus = \"system\"\n{a}{b}{trust}",
        dev = GpsSim::device(gps.path()).display(),
        sock = GpsSim::sock(gps.path()).display(),
        a = chrony_a.upstream_nts(),
        b = chrony_b.upstream_nts(),
        trust = nts_client_trusting(&cert),
    );
    let bus = PrivateBus::start(&[]);
    let daemon = start_daemon(&bus, tempfile::tempdir().unwrap(), &config);
    let server = daemon.ntp_addr();
    let sim = GpsSim::with_args(
        gps.path(),
        &[
            "--nmea-delay",
            "0.3",
            "--duration",
            "150",
            "--spoof-step-at",
            &SPOOF_AT.to_string(),
            "--spoof-step",
            &step.to_string(),
        ]
        .map(String::from),
    );
    let sim_started = Instant::now();

    // Before the spoof: the GPS agrees with both NTS servers and serves.
    let locked = wait_until_every(
        Duration::from_secs(SPOOF_AT - 3),
        Duration::from_millis(250),
        || {
            let x = query(server)?;
            let list = sources(&bus);
            let witnesses = list
                .iter()
                .filter(|s| s.kind == "ntp" && s.reach != 0 && s.state != "falseticker")
                .count();
            (x.reply.stratum == 1 && x.reply.reference_id == ReferenceId::PPS && witnesses == 2)
                .then_some(())
        },
    );
    assert!(
        locked.is_some(),
        "not stratum 1 / PPS with two reachable NTS witnesses {} s into the simulation:\n{:?}\n{}",
        sim_started.elapsed().as_secs(),
        sources(&bus),
        daemon.log()
    );
    let locked_after = sim_started.elapsed().as_secs_f64();
    assert!(
        alarm_names(&bus)
            .iter()
            .all(|a| a != "gps_disagrees" && a != "gps_jumped"),
        "{:?}",
        alarm_names(&bus)
    );

    // The spoof: an integrity alarm, the GPS a falseticker.
    let caught = wait_until_every(
        Duration::from_secs(SPOOF_AT + 30).saturating_sub(sim_started.elapsed()),
        Duration::from_millis(250),
        || {
            alarm_names(&bus)
                .into_iter()
                .find(|a| a == "gps_disagrees" || a == "gps_jumped")
        },
    );
    let alarm = caught.unwrap_or_else(|| {
        panic!(
            "the spoof went unnoticed:\n{:?}\n{}",
            sources(&bus),
            daemon.log()
        )
    });
    let detection = sim_started.elapsed().as_secs_f64() - SPOOF_AT as f64;
    eprintln!(
        "locked {locked_after:.1} s after the simulator started; {alarm} {detection:.1} s after a {step} s spoof step"
    );
    let reason = ctl(&bus, None, &["alarms"]).all();
    let by = format!("{step:+.3} s");
    assert!(reason.contains("GPS") && reason.contains(&by), "{reason}");
    let list = sources(&bus);
    let gps_sources: Vec<_> = list.iter().filter(|s| s.kind != "ntp").collect();
    assert!(
        gps_sources.iter().any(|s| s.state == "falseticker")
            && gps_sources.iter().all(|s| s.state != "selected"),
        "the GPS is not marked a falseticker: {gps_sources:?}"
    );

    // Served from the network: stratum 1 + 1, a chrony server's address.
    let from_network =
        wait_until_every(Duration::from_secs(15), Duration::from_millis(200), || {
            let x = query(server)?;
            let r = x.reply.reference_id.0;
            (x.reply.stratum == 2 && (r == [127, 0, 0, 2] || r == [127, 0, 0, 3])).then_some(())
        });
    assert!(
        from_network.is_some(),
        "not serving from the network after the spoof: {:?}\n{:?}",
        query(server).map(|x| x.reply),
        sources(&bus)
    );
    let text = ctl(&bus, None, &["sources"]).all();
    assert!(
        text.lines().any(|l| l.starts_with("^*")),
        "no selected upstream:\n{text}"
    );

    // What is served and what the discipline measures do not follow it.
    let tracking = ctl(&bus, None, &["--json", "tracking"]).json();
    let last = tracking["LastOffset"].as_f64().unwrap_or(f64::NAN);
    assert!(
        last.abs() < 0.1,
        "the discipline followed the spoof: {tracking}"
    );
    let client = Chronyd::start(&[format!(
        "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2",
        server.port()
    )]);
    let tracking = client
        .wait_synchronized(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("chrony did not synchronize:\n{}", client.log()));
    assert_eq!(field(&tracking, "Stratum"), Some("3"), "{tracking:?}");
    let sourcestats = parse_colon_fields(&client.chronyc(&["ntpdata", "127.0.0.1"]));
    let offset: f64 = field(&sourcestats, "Offset")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no offset in chronyc ntpdata: {sourcestats:?}"));
    assert!(
        offset.abs() < step.abs() / 100.0,
        "chrony sees skytimed {offset} s off after a {step} s spoof"
    );
    // Still distrusted while the spoof lasts.
    assert!(alarm_names(&bus).contains(&alarm));
    drop(sim);
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}
