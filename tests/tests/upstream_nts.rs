//! skytimed as an NTS client of a real chronyd 4.3 (NTS server with a
//! certificate made here, `local stratum 3`, on 127.0.0.2), with no GPS:
//! the management API shows the server as an authenticated, reachable,
//! selected `^` source with its NTS details; skytimed serves at stratum
//! 3 + 1 with chrony's address as its reference ID; its NTS session
//! survives a restart without a new key exchange (chrony's own NTS-KE
//! counter says so). An upstream whose NTS-KE server cannot be reached
//! raises `upstream_unreachable` and leaves serving undisturbed.

use skytime_api::{SourceAuthReport, SourceReport};
use skytime_tests::dbus::{alarm_names, ctl, source_auth, sources, start_daemon, PrivateBus};
use skytime_tests::ntp::query;
use skytime_tests::upstream::{certificate, nts_client_trusting, ChronyServer};
use skytime_tests::{free_tcp_port, free_udp_port, wait_until, wait_until_every, Daemon};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// No GPS, a local stratum of 10 for when no upstream is usable, the
/// management API on `bus`, and `upstream` (entries and `[nts_client]`).
fn config(upstream: &str) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n{upstream}"
    )
}

/// Waits until skytimed answers at `stratum` with reference ID `refid`.
fn wait_served(server: SocketAddr, stratum: u8, refid: [u8; 4], limit: Duration) -> bool {
    wait_until_every(limit, Duration::from_millis(200), || {
        let x = query(server)?;
        (x.reply.stratum == stratum && x.reply.reference_id.0 == refid).then_some(())
    })
    .is_some()
}

/// The one upstream source of GetSources, once it has been reached.
fn upstream_source(bus: &PrivateBus) -> Option<SourceReport> {
    sources(bus)
        .into_iter()
        .find(|s| s.kind == "ntp" && s.reach != 0)
}

fn auth(bus: &PrivateBus) -> SourceAuthReport {
    let mut list = source_auth(bus);
    assert_eq!(list.len(), 1, "one upstream server: {list:?}");
    list.remove(0)
}

#[test]
fn chrony_is_an_nts_upstream_and_the_session_survives_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let chrony = ChronyServer::start("127.0.0.2", 3, Some((&cert, &key)), &[]);
    let upstream = format!("{}{}", chrony.upstream_nts(), nts_client_trusting(&cert));
    let config = config(&upstream);
    let bus = PrivateBus::start(&[]);
    let started = Instant::now();
    let daemon = start_daemon(&bus, tempfile::tempdir().unwrap(), &config);
    let server = daemon.ntp_addr();

    // Stratum 3 + 1, chrony's address as the reference ID.
    assert!(
        wait_served(server, 4, [127, 0, 0, 2], Duration::from_secs(30)),
        "skytimed never served from chrony (stratum 4, 127.0.0.2):\n{:?}\n{}",
        sources(&bus),
        daemon.log()
    );
    eprintln!(
        "stratum 4 from chrony over NTS {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    let s = wait_until(Duration::from_secs(10), || upstream_source(&bus))
        .unwrap_or_else(|| panic!("no reachable upstream: {:?}", sources(&bus)));
    assert_eq!(s.name, "127.0.0.2");
    assert_eq!(s.authentication.as_deref(), Some("nts"), "{s:?}");
    assert_eq!(s.state, "selected", "{s:?}");
    assert_eq!(s.stratum, 3, "chrony's own stratum: {s:?}");
    assert_eq!(s.address, Some(chrony.ntp.to_string()), "{s:?}");
    let text = ctl(&bus, None, &["sources"]).all();
    let row = text
        .lines()
        .find(|l| l.starts_with("^*"))
        .unwrap_or_else(|| panic!("no selected ^ row:\n{text}"));
    assert!(
        row.contains("127.0.0.2") && row.contains(&format!("nts {}", chrony.ntp)),
        "{row}"
    );
    let a = auth(&bus);
    assert_eq!(
        (a.mode.as_str(), a.ke_total, a.naks, a.restored),
        ("NTS", 1, 0, false),
        "{a:?}"
    );
    assert!(a.cookies >= 1 && a.cookie_length > 0, "{a:?}");
    assert_eq!(a.key_type.as_deref(), Some("AES-SIV-CMAC-256"), "{a:?}");
    let text = ctl(&bus, None, &["sources", "--auth"]).all();
    assert!(
        text.contains("NTS") && text.contains("AES-SIV-CMAC-256"),
        "{text}"
    );
    assert_eq!(chrony.nts_ke_accepted(), 1);

    // Restart on the same data: the session is read back, no new key
    // exchange, and chrony keeps answering authenticated requests.
    let (ok, log, dir) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
    let authenticated = chrony.serverstat("Authenticated NTP packets");
    let daemon = start_daemon(&bus, dir, &config);
    assert!(
        wait_served(
            daemon.ntp_addr(),
            4,
            [127, 0, 0, 2],
            Duration::from_secs(30)
        ),
        "not served from chrony after the restart:\n{}",
        daemon.log()
    );
    let a = auth(&bus);
    assert!(a.restored && a.ke_total == 0, "{a:?}");
    assert!(
        chrony.serverstat("Authenticated NTP packets") > authenticated,
        "no authenticated request after the restart"
    );
    assert_eq!(chrony.nts_ke_accepted(), 1, "a second key exchange");
    assert!(daemon.log().contains("NTS session restored"));
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}

#[test]
fn an_unreachable_nts_upstream_raises_an_alarm_and_serving_goes_on() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(certs.path());
    // Nobody listens there: every key exchange is refused.
    let upstream = format!(
        "[[upstream]]\nserver = \"127.0.0.3\"\nport = {}\nnts = true\nnts_port = {}\nminpoll = 0\nmaxpoll = 0\n{}",
        free_udp_port(),
        free_tcp_port(),
        nts_client_trusting(&cert)
    );
    let bus = PrivateBus::start(&[]);
    let daemon: Daemon = start_daemon(&bus, tempfile::tempdir().unwrap(), &config(&upstream));
    let server = daemon.ntp_addr();
    let started = Instant::now();
    let mut answered = 0;
    let raised = wait_until_every(Duration::from_secs(30), Duration::from_millis(500), || {
        // Serving is not disturbed: every request answered, local stratum.
        let x = query(server).expect("skytimed stopped answering");
        assert_eq!(x.reply.stratum, 10, "{:?}", x.reply);
        answered += 1;
        alarm_names(&bus)
            .contains(&"upstream_unreachable".to_owned())
            .then_some(())
    });
    assert!(
        raised.is_some(),
        "no upstream_unreachable alarm: {:?}\n{}",
        alarm_names(&bus),
        daemon.log()
    );
    eprintln!(
        "upstream_unreachable after {:.1} s; {answered} requests answered meanwhile",
        started.elapsed().as_secs_f64()
    );
    let a = auth(&bus);
    assert!(
        a.ke_total == 0 && a.ke_attempts >= 1 && a.error.is_some(),
        "{a:?}"
    );
    let text = ctl(&bus, None, &["sources", "--auth"]).all();
    assert!(text.contains("key exchange failing"), "{text}");
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}
