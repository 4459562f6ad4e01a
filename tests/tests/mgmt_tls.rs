//! The gateway's front door with the real binaries: client certificates
//! that must not get in (from a rogue CA, expired, not for client
//! authentication, a self-signed one that is not pinned, none at all) are
//! refused at the TLS handshake and the refusals audited; TLS 1.2 is
//! refused; silent, idle and slow clients are cut by their timeouts while
//! another client is served; connections beyond the cap are closed at
//! once.

use skytime_tests::mgmt::{self_signed_client, Appliance, Ca, Gateway, Pem, Usage};
use skytime_tests::{run_bounded, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn certificates_that_must_not_get_in_are_refused_at_the_handshake() {
    let a = Appliance::start("");
    let ca = Ca::new("skytime test operators");
    let rogue_ca = Ca::new("rogue operators");
    let good = ca.client("admin", 2100, Usage::ClientAuth);
    let rogue = rogue_ca.client("admin", 2100, Usage::ClientAuth);
    let expired = ca.client("admin", 2021, Usage::ClientAuth);
    let server_only = ca.client("admin", 2100, Usage::ServerAuth);
    let unpinned = self_signed_client("stranger");
    let ca_as_client = ca.pem.clone();
    let dir = Gateway::prepare(
        &a.bus.address,
        "",
        &[("skytime-admin-ca.pem", ca.pem.cert.as_str())],
    );
    let gw = Gateway::start(dir);
    assert_eq!(
        gw.client(Some(&good))
            .get("/api/v1/Tracking/properties")
            .unwrap()
            .status,
        200
    );
    for (what, pem, reason) in [
        ("rogue CA", &rogue, "UnknownIssuer"),
        ("expired", &expired, "certificate expired"),
        (
            "server authentication only",
            &server_only,
            "extended key usage for client authentication",
        ),
        ("not pinned", &unpinned, "UnknownIssuer"),
        ("the CA itself", &ca_as_client, "CaUsedAsEndEntity"),
    ] {
        let r = gw.client(Some(pem)).get("/api/v1/Tracking/properties");
        assert!(r.is_err(), "{what}: got in: {r:?}");
        let audit = gw.audit();
        assert!(
            audit
                .lines()
                .any(|l| l.contains("\"action\":\"TLS handshake\"") && l.contains(reason)),
            "{what}: no audited refusal naming {reason}:\n{audit}"
        );
    }
    assert!(gw.client(None).get("/").is_err(), "no certificate");
    let audited = skytime_tests::wait_until(Duration::from_secs(5), || {
        gw.audit()
            .contains("\"client\":\"-\",\"peer\"")
            .then_some(())
    });
    assert!(
        audited.is_some(),
        "no audited refusal without a certificate:\n{}",
        gw.audit()
    );

    // curl, presenting the rogue certificate, is refused too.
    let out = gw.curl(Some(&rogue), &[], "/api/v1/Tracking/properties");
    assert!(
        !out.status.success(),
        "curl got in: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // TLS 1.2 is not spoken at all.
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "--tls-max", "1.2", "--cacert"])
            .arg(gw.server_cert())
            .arg(format!("https://127.0.0.1:{}/", gw.addr.port())),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && (err.contains("version") || err.contains("alert")),
        "{err}"
    );
    // The good client is still served.
    assert_eq!(
        gw.client(Some(&good))
            .get("/api/v1/Sources/GetSources")
            .unwrap()
            .status,
        200
    );
}

/// Reads until the server closes; returns how long that took.
fn closed_within(mut s: impl Read, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn silent_idle_and_slow_clients_are_cut_while_others_are_served() {
    let a = Appliance::start("");
    let ca = Ca::new("skytime test operators");
    let admin = ca.client("admin", 2100, Usage::ClientAuth);
    let dir = Gateway::prepare(
        &a.bus.address,
        "[limits]\nhandshake_timeout = 1.0\nidle_timeout = 1.5\nrequest_timeout = 2.0\nmax_connections = 16\n",
        &[("skytime-admin-ca.pem", ca.pem.cert.as_str())],
    );
    let gw = Gateway::start(dir);
    // Another client keeps asking all along; every answer must come.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (client, stop, served) = (gw.client(Some(&admin)), stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = client.get("/api/v1/Tracking/properties");
                assert_eq!(
                    r.map(|r| r.status).ok(),
                    Some(200),
                    "a good client was not served"
                );
                served.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Silent: TCP only, no handshake.
    let silent = TcpStream::connect(gw.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Idle: a finished handshake, then nothing.
    let mut idle = gw.client(Some(&admin)).connect().unwrap();
    idle.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Slow: a request header one byte at a time, never finished.
    let mut slow = gw.client(Some(&admin)).connect().unwrap();
    slow.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dribble = std::thread::spawn(move || {
        let start = Instant::now();
        slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        for b in b"X-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).and_then(|()| slow.flush()).is_err() {
                return Some(start.elapsed());
            }
            let mut buf = [0u8; 256];
            match slow.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(start.elapsed()),
            }
            if start.elapsed() > Duration::from_secs(15) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    });
    let t = closed_within(&silent, Duration::from_secs(10)).expect("a silent client was not cut");
    assert!(t < Duration::from_secs(5), "silent: {t:?}");
    let t = closed_within(&mut idle, Duration::from_secs(10)).expect("an idle client was not cut");
    assert!(t < Duration::from_secs(5), "idle: {t:?}");
    let t = dribble.join().unwrap().expect("a slow client was not cut");
    assert!(t < Duration::from_secs(6), "slow: {t:?}");
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert!(
        served.load(Ordering::Relaxed) >= 5,
        "the good client was starved"
    );
    assert!(gw.log().contains("handshake not finished"), "{}", gw.log());
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let a = Appliance::start("");
    let ca = Ca::new("skytime test operators");
    let admin: Pem = ca.client("admin", 2100, Usage::ClientAuth);
    let dir = Gateway::prepare(
        &a.bus.address,
        "[limits]\nmax_connections = 3\nhandshake_timeout = 3.0\n",
        &[("skytime-admin-ca.pem", ca.pem.cert.as_str())],
    );
    let gw = Gateway::start(dir);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    // Until they are accepted, the gateway may not have counted them.
    std::thread::sleep(Duration::from_millis(300));
    let extra = TcpStream::connect(gw.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t = closed_within(&extra, Duration::from_secs(2)).expect("the fourth connection was kept");
    assert!(t < Duration::from_secs(1), "{t:?}");
    // Once the silent ones are cut, there is room again.
    let ok = wait_until(Duration::from_secs(10), || {
        gw.client(Some(&admin))
            .get("/api/v1/Tracking/properties")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(ok.is_some(), "never served again:\n{}", gw.log());
    drop(held);
}
