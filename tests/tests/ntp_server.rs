//! The NTP server against real clients (chrony 4.3, ntpsec's ntpdig) and
//! hostile input, over real sockets.

use skytime_proto::{LeapIndicator, Mode, ReferenceId};
use skytime_tests::ntp::{exchange, now, query, request};
use skytime_tests::{bin, field, require_program, run_bounded, Chronyd, Daemon};
use std::process::Command;
use std::time::Duration;

/// NTP on 127.0.0.1, port `port` (0: the kernel picks one, and the daemon
/// logs it).
fn local_config(port: u16, stratum: Option<u8>) -> String {
    let mut c = format!("data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:{port}\"]\nallow = [\"127.0.0.0/8\"]\n");
    if let Some(s) = stratum {
        c.push_str(&format!("local_stratum = {s}\n"));
    }
    c
}

#[test]
fn chrony_synchronizes_to_a_local_stratum_server() {
    let daemon = Daemon::start(&local_config(0, Some(10)), &[]);
    let port = daemon.ntp_addr();
    let chrony = Chronyd::start(&[format!(
        "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2",
        port.port()
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
        Some("11"),
        "chrony is one stratum below the server: {tracking:?}"
    );
    assert!(
        field(&tracking, "Reference ID")
            .unwrap()
            .starts_with("7F000001"),
        "{tracking:?}"
    );
    // Same host, same clock: chrony must measure (almost) no offset.
    let system = field(&tracking, "System time").unwrap();
    let offset: f64 = system.split_whitespace().next().unwrap().parse().unwrap();
    assert!(offset.abs() < 0.001, "offset {offset} s on one host");
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit on SIGTERM:\n{log}");
    assert!(log.contains("skytimed stopped"), "{log}");
}

#[test]
fn chrony_one_shot_measures_near_zero_offset() {
    let daemon = Daemon::start(&local_config(0, Some(3)), &[]);
    let port = daemon.ntp_addr();
    let (offset, text) = skytime_tests::chronyd_query(
        &[format!(
            "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2",
            port.port()
        )],
        10,
    );
    let offset = offset.unwrap_or_else(|| panic!("chronyd -Q got no offset:\n{text}"));
    assert!(offset.abs() < 0.001, "{offset}");
}

#[test]
fn chrony_refuses_an_unsynchronized_server() {
    let daemon = Daemon::start(&local_config(0, None), &[]);
    let port = daemon.ntp_addr();
    let (offset, text) = skytime_tests::chronyd_query(
        &[format!(
            "server 127.0.0.1 port {} iburst minpoll -2 maxpoll -2",
            port.port()
        )],
        4,
    );
    assert_eq!(
        offset, None,
        "chrony must not use a stratum-16 server:\n{text}"
    );
    let (_, log, _) = daemon.stop();
    // ...although the server did answer it (LI=3, stratum 16).
    let replied: u64 = stat(&log, "replied");
    assert!(replied > 0, "chrony's requests were answered:\n{log}");
}

#[test]
fn replies_carry_every_field_for_v4_and_v3_clients() {
    let daemon = Daemon::start(&local_config(0, Some(7)), &[]);
    let port = daemon.ntp_addr();
    for version in [4u8, 3] {
        let t1 = now();
        let ex = exchange(port, &request(version, t1), Duration::from_secs(2)).expect("reply");
        let r = ex.reply;
        assert_eq!(ex.raw.len(), 48);
        assert_eq!(r.version, version, "version echoed");
        assert_eq!(r.mode, Mode::Server);
        assert_eq!(r.leap, LeapIndicator::NoWarning);
        assert_eq!(r.stratum, 7);
        assert_eq!(r.poll, 6, "poll echoed");
        assert!(
            (-30..=-10).contains(&r.precision),
            "precision {}",
            r.precision
        );
        assert_eq!(r.reference_id, ReferenceId::LOCAL);
        assert_eq!(
            r.origin_timestamp, t1,
            "origin = client's transmit timestamp"
        );
        assert!(r.reference_timestamp <= r.receive_timestamp);
        assert!(ex.sent <= r.receive_timestamp, "receive after send");
        assert!(
            r.receive_timestamp <= r.transmit_timestamp,
            "transmit after receive"
        );
        assert!(
            r.transmit_timestamp <= ex.received,
            "transmit before the reply arrived"
        );
    }
}

#[test]
fn unsynchronized_replies_say_li3_stratum16() {
    let daemon = Daemon::start(&local_config(0, None), &[]);
    let port = daemon.ntp_addr();
    let ex = query(port).expect("reply");
    assert_eq!(ex.reply.leap, LeapIndicator::Unsynchronized);
    assert_eq!(ex.reply.stratum, 16);
}

/// Reads `key=N` from the daemon's final statistics line.
fn stat(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("skytimed stopped"))
        .unwrap_or_else(|| panic!("no final statistics:\n{log}"));
    let needle = format!(" {key}=");
    line.split(&needle)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the final statistics: {line}"))
}

#[test]
fn garbage_is_dropped_counted_and_service_goes_on() {
    let daemon = Daemon::start(&local_config(0, Some(10)), &[]);
    let port = daemon.ntp_addr();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    let mut send = |b: &[u8]| {
        sock.send_to(b, port).unwrap();
        sent += 1;
    };
    send(&[]);
    send(&[0x23; 47]);
    for mode in [0u8, 1, 2, 4, 5, 6, 7] {
        let mut b = request(4, now());
        b[0] = (4 << 3) | mode;
        send(&b);
    }
    for version in [0u8, 5, 6, 7] {
        send(&request(version, now()));
    }
    // Random bytes of random lengths, deterministic seed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 47) as usize;
        let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
        send(&bytes);
    }
    // The server still answers a good request, from a different socket.
    let ex = query(port).expect("server still answers after garbage");
    assert_eq!(ex.reply.stratum, 10);
    // Nothing was sent back to the garbage socket.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "no reply to any invalid packet"
    );

    let (ok, log, _) = daemon.stop();
    assert!(ok);
    assert_eq!(stat(&log, "dropped_too_short"), 2 + 500, "{log}");
    assert_eq!(stat(&log, "dropped_not_client_mode"), 7, "{log}");
    assert_eq!(stat(&log, "dropped_bad_version"), 4, "{log}");
    assert_eq!(stat(&log, "replied"), 1, "{log}");
    assert_eq!(
        stat(&log, "received"),
        sent as u64 + 1,
        "every datagram counted: {log}"
    );
}

#[test]
fn access_rules_refuse_before_replying() {
    let config = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.1/32\"]\nlocal_stratum = 10\n";
    let daemon = Daemon::start(config, &[]);
    let port = daemon.ntp_addr();
    assert!(query(port).is_none(), "127.0.0.1 is denied");
    let (_, log, _) = daemon.stop();
    assert_eq!(stat(&log, "dropped_access_denied"), 1, "{log}");
}

#[test]
fn ntpdig_accepts_replies_over_ipv4_and_ipv6() {
    // ntpdig cannot name a port, so it talks to port 123 inside a private
    // network namespace of its own, where nothing else listens.
    let ntpdig = require_program("ntpdig");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skytime.toml");
    std::fs::write(&config, format!("data_dir = \"{}/data\"\n[ntp]\nlisten = [\"127.0.0.1:123\", \"[::1]:123\"]\nlocal_stratum = 4\n[clock]\nsteer = false\n", dir.path().display())).unwrap();
    let log = dir.path().join("skytimed.log");
    let script = format!(
        "ip link set lo up\n{bin} --config {cfg} 2>{log} &\npid=$!\nfor i in $(seq 200); do grep -q 'skytimed ready' {log} && break; sleep 0.05; done\n{dig} -j -t 3 127.0.0.1\necho\n{dig} -6 -j -t 3 ::1\necho\nkill $pid\nwait $pid\n",
        bin = bin("skytimed").display(),
        cfg = config.display(),
        log = log.display(),
        dig = ntpdig.display()
    );
    let out = run_bounded(
        Command::new("unshare").args(["-n", "sh", "-c", &script]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        replies.len(),
        2,
        "ntpdig answers for IPv4 and IPv6:\n{text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for r in &replies {
        assert_eq!(r["stratum"], 4, "{r}");
        assert_eq!(r["leap"], "no-leap", "{r}");
        assert!(r["offset"].as_f64().unwrap().abs() < 0.01, "{r}");
    }
}

#[test]
fn check_config_reports_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[ntp]\nlocal_stratum = 10\n").unwrap();
    let out = Command::new(bin("skytimed"))
        .arg("--check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[ntp]\nlisten = [\"127.0.0.1:123\"]\n\nlocal_stratum = 99\n",
    )
    .unwrap();
    let out = Command::new(bin("skytimed"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 4") && err.contains("out of range"),
        "{err}"
    );

    // The daemon itself refuses to start on the same file, with the same words.
    let out = Command::new(bin("skytimed"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 4"));
}

#[test]
fn command_line_listen_overrides_the_config() {
    // The configured address is on 127.0.0.2, the flag's on 127.0.0.1,
    // both on ports the kernel picks: the daemon says which it serves.
    let config = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.2:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n";
    let daemon = Daemon::start(config, &["--ntp-listen", "127.0.0.1:0"]);
    let served = daemon.serving("NTP");
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(
        served[0].ip().to_string(),
        "127.0.0.1",
        "serves the --ntp-listen address and not the configured one"
    );
    assert!(query(served[0]).is_some(), "and answers there");
}

#[test]
fn a_port_in_use_is_a_clear_start_up_error() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        skytime_tests::measure_only(&local_config(port, None))
            .replace("@DATA@", &dir.path().join("d").display().to_string()),
    )
    .unwrap();
    let out = run_bounded(
        Command::new(bin("skytimed")).arg("--config").arg(&cfg),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot serve NTP on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn sigint_stops_as_cleanly_as_sigterm_and_kernel_timestamps_are_used() {
    let daemon = Daemon::start(&local_config(0, Some(10)), &[]);
    let port = daemon.ntp_addr();
    assert!(query(port).is_some());
    daemon.signal("INT");
    let stopped = skytime_tests::wait_until(Duration::from_secs(10), || {
        daemon.log().contains("skytimed stopped").then_some(())
    });
    assert!(
        stopped.is_some(),
        "SIGINT stops the daemon:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("SIGINT: shutting down"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("skytimed stopped"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(" kernel_timestamps=1 "),
        "receive timestamps come from the kernel: {line}"
    );
}

#[test]
fn rate_limit_refuses_a_flooding_client() {
    let config = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[ntp.ratelimit]\ninterval = 10\nburst = 2\nleak = 0\n";
    let daemon = Daemon::start(config, &[]);
    let port = daemon.ntp_addr();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answered = 0;
    for _ in 0..10 {
        sock.send_to(&request(4, now()), port).unwrap();
        let mut buf = [0u8; 64];
        if sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    // The first request creates the client's entry, then the burst of 2.
    assert_eq!(answered, 3);
    let (_, log, _) = daemon.stop();
    assert_eq!(stat(&log, "dropped_rate_limited"), 7, "{log}");
}

/// `[ntp.ratelimit]` for a client on loopback: two requests, then one per
/// 1024 s, no leak; `kod` as given.
fn kod_config(kod: u8) -> String {
    format!("data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[ntp.ratelimit]\ninterval = 10\nburst = 2\nleak = 0\nkod = {kod}\n")
}

#[test]
fn rate_limit_with_kod_answers_a_flooding_client_with_rate_kisses() {
    let daemon = Daemon::start(&kod_config(1), &[]);
    let server = daemon.ntp_addr();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (mut served, mut kisses) = (0, 0);
    for i in 0..10u32 {
        // A distinct transmit timestamp per request, to match replies.
        let transmit = now() + skytime_proto::NtpDuration::from_seconds_f64(f64::from(i) * 1e-3);
        let packet = request(4, transmit);
        sock.send_to(&packet, server).unwrap();
        let mut buf = [0u8; 64];
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        assert!(n <= packet.len(), "a reply of {n} bytes to 48");
        let (h, _) = skytime_proto::NtpHeader::parse(&buf[..n]).unwrap();
        assert_eq!(h.origin_timestamp, transmit, "request {i}");
        assert_eq!((h.mode, h.version), (Mode::Server, 4));
        if h.stratum == 0 {
            assert_eq!(h.reference_id, ReferenceId::KISS_RATE, "request {i}");
            assert_eq!(h.leap, LeapIndicator::Unsynchronized);
            // Asks for at least the limit's interval.
            assert_eq!(h.poll, 10);
            kisses += 1;
        } else {
            assert_eq!(h.stratum, 10, "request {i}");
            served += 1;
        }
    }
    // The first request and the burst of two are served; of the seven
    // over the limit, every second (kod = 1) is kissed, the rest dropped.
    assert_eq!((served, kisses), (3, 3));
    let (_, log, _) = daemon.stop();
    assert_eq!(stat(&log, "rate_kods"), 3, "{log}");
    assert_eq!(stat(&log, "dropped_rate_limited"), 4, "{log}");
}

#[test]
fn rate_limit_with_kod_off_never_kisses() {
    let daemon = Daemon::start(&kod_config(0), &[]);
    let server = daemon.ntp_addr();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let reply = exchange(server, &request(4, now()), Duration::from_millis(300));
        answers.push(reply.map(|e| e.reply.stratum));
    }
    assert_eq!(
        answers,
        [Some(10), Some(10), Some(10), None, None, None, None, None]
    );
    let (_, log, _) = daemon.stop();
    assert_eq!(stat(&log, "rate_kods"), 0, "{log}");
    assert_eq!(stat(&log, "dropped_rate_limited"), 5, "{log}");
}

/// chrony 4.3 as the client: a RATE kiss-o'-death that passes its tests
/// (its own transmit timestamp as origin) makes it log the kiss and back
/// off (ntp_core.c adds four polling intervals to its next delay); the
/// poll field is ignored by it (chrony's NEWS).
#[test]
fn chrony_reports_the_rate_kiss_of_death() {
    let config = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[ntp.ratelimit]\ninterval = 4\nburst = 1\nleak = 0\nkod = 1\n";
    let daemon = Daemon::start(config, &[]);
    let port = daemon.ntp_addr().port();
    // 16 requests a second against one per 16 s allowed.
    let chrony = Chronyd::start(&[format!(
        "server 127.0.0.1 port {port} minpoll -4 maxpoll -4"
    )]);
    let kissed = skytime_tests::wait_until(Duration::from_secs(20), || {
        chrony
            .log()
            .contains("Received KoD RATE from 127.0.0.1")
            .then_some(())
    });
    assert!(
        kissed.is_some(),
        "chrony never reported a KoD RATE:\n{}\n{}",
        chrony.log(),
        daemon.log()
    );
    drop(chrony);
    let (_, log, _) = daemon.stop();
    assert!(stat(&log, "rate_kods") >= 1, "{log}");
}

/// An NTS client over the limit gets its RATE kiss-o'-death sealed with
/// its session keys (RFC 8915 section 5.7: it would ignore a plain one),
/// as chrony sends it.
#[test]
fn nts_clients_over_the_limit_get_authenticated_rate_kisses() {
    use skytime_tests::nts_client;
    let (daemon, cert) =
        nts_client::nts_daemon("[ntp.ratelimit]\ninterval = 10\nburst = 2\nleak = 0\nkod = 1\n");
    let tls = nts_client::tls_config(&cert);
    let ke = nts_client::key_exchange(daemon.ke_addr(), "localhost", &tls).unwrap();
    let (mut served, mut kisses) = (0, 0);
    for i in 0..10u8 {
        let uid = [i; 32];
        let request = nts_client::ntp_request(&ke, &uid);
        let Some(reply) = exchange(daemon.ntp_addr(), &request, Duration::from_millis(300)) else {
            continue;
        };
        assert!(reply.raw.len() <= request.len(), "request {i}");
        assert!(
            nts_client::is_authentic(&reply.raw, &uid, &ke),
            "request {i}"
        );
        assert_eq!(reply.raw[24..32], request[40..48], "origin, request {i}");
        if reply.reply.stratum == 0 {
            assert_eq!(reply.reply.reference_id, ReferenceId::KISS_RATE);
            kisses += 1;
        } else {
            served += 1;
        }
    }
    assert_eq!((served, kisses), (3, 3));
    let (_, log, _) = daemon.stop();
    assert_eq!(stat(&log, "rate_kods"), 3, "{log}");
    assert_eq!(stat(&log, "nts_replied"), 3, "{log}");
}
