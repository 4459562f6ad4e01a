//! GPS end to end: skytime-gpssim (NMEA on a pty, PPS over SOCK) ->
//! skytimed (measure-only clock) -> a real chrony client, which must see a
//! stratum-1 server with reference ID PPS. Unplugging the receiver leaves
//! the server answering; plugging it back restores PPS.

use skytime_proto::ReferenceId;
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::{field, parse_colon_fields, wait_until, Chronyd, Daemon};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// NTP on a port the kernel picks (the daemon logs it).
fn config(gps: &Path) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\n\
         [clock]\nsteer = false\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n",
        dev = GpsSim::device(gps).display(),
        sock = GpsSim::sock(gps).display()
    )
}

/// Waits until the server answers stratum 1 with `refid`.
fn wait_stratum1(server: SocketAddr, refid: ReferenceId, timeout: Duration) -> bool {
    wait_until(timeout, || {
        let x = query(server)?;
        (x.reply.stratum == 1 && x.reply.reference_id == refid).then_some(())
    })
    .is_some()
}

#[test]
fn chrony_sees_a_stratum_1_pps_server_and_the_server_survives_an_unplug() {
    let gps = tempfile::tempdir().unwrap();
    // The daemon first: it creates the SOCK socket the simulator sends to.
    let daemon = Daemon::start(&config(gps.path()), &[]);
    let server = daemon.ntp_addr();
    let sim = GpsSim::start(gps.path(), 0.45, 120);
    assert!(
        wait_stratum1(server, ReferenceId::PPS, Duration::from_secs(40)),
        "never stratum 1 / PPS:\n{}",
        daemon.log()
    );

    let chrony = Chronyd::start(&[format!(
        "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2",
        server.port()
    )]);
    let tracking = chrony
        .wait_synchronized(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "chrony never synchronized:\n{}\n{}",
                chrony.chronyc(&["sources"]),
                daemon.log()
            )
        });
    assert_eq!(
        field(&tracking, "Stratum"),
        Some("2"),
        "chrony is one below a stratum-1 server: {tracking:?}"
    );
    let ntpdata = parse_colon_fields(&chrony.chronyc(&["ntpdata", "127.0.0.1"]));
    assert_eq!(field(&ntpdata, "Stratum"), Some("1"), "{ntpdata:?}");
    let refid = field(&ntpdata, "Reference ID").unwrap_or("");
    assert!(
        refid.contains("PPS"),
        "server refid seen by chrony: {refid}"
    );

    // The NMEA-to-PPS delay is estimated from paired pulses (four at least).
    let estimated = wait_until(Duration::from_secs(30), || {
        daemon
            .log()
            .contains("NMEA-to-PPS delay estimated")
            .then_some(())
    });
    assert!(estimated.is_some(), "no delay estimate:\n{}", daemon.log());

    // Unplug: the daemon notices and keeps answering.
    drop(sim);
    let noticed = wait_until(Duration::from_secs(10), || {
        daemon.log().contains("lost:").then_some(())
    });
    assert!(
        noticed.is_some(),
        "the unplug went unnoticed:\n{}",
        daemon.log()
    );
    // A request every 100 ms for the next two seconds: each is answered.
    let until = Instant::now() + Duration::from_secs(2);
    let mut during = query(server).expect("server stopped answering after the unplug");
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        during = query(server).expect("server stopped answering after the unplug");
    }

    // Plug back in: the port is reopened and PPS updates the clock again
    // (the reference time moves on past the outage).
    let _sim = GpsSim::start(gps.path(), 0.45, 120);
    let reopened = wait_until(Duration::from_secs(15), || {
        (daemon.log().matches("open at 9600 baud").count() >= 2).then_some(())
    });
    assert!(
        reopened.is_some(),
        "serial port not reopened:\n{}",
        daemon.log()
    );
    let outage_ref = during.reply.reference_timestamp;
    let recovered = wait_until(Duration::from_secs(30), || {
        let x = query(server)?;
        (x.reply.stratum == 1
            && x.reply.reference_id == ReferenceId::PPS
            && (x.reply.reference_timestamp - outage_ref).to_seconds_f64() > 2.0)
            .then_some(())
    });
    assert!(
        recovered.is_some(),
        "PPS did not come back:\n{}",
        daemon.log()
    );
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}
