//! Symmetric keys (chrony's `keyfile`) both ways with chrony 4.3.
//!
//! skytimed as the server: one chronyd uses a SHA1 key and an AES128
//! (RFC 8573 CMAC) key and takes authenticated replies; another chronyd,
//! with a key whose value differs and a key ID skytimed lacks, never
//! synchronizes, and skytimed counts the bad MACs (no reply) and the
//! crypto-NAKs. skytimed as the client: chronyd serving with a key is an
//! `[[upstream]] key = N` source, authenticated and selected. Every key
//! type and NTP version, by raw packets: a reply exactly as long as the
//! request with a MAC that verifies, a four-byte crypto-NAK for an unknown
//! key, nothing for a bad MAC. A key file that others may read is refused
//! at start, naming the file and why.

use skytime_symkey::packet::{self, Auth};
use skytime_symkey::KeyFile;
use skytime_tests::dbus::{ctl, source_auth, sources, start_daemon, PrivateBus};
use skytime_tests::ntp::{exchange, now, query, request};
use skytime_tests::upstream::{write_private, ChronyServer};
use skytime_tests::{bin, field, run_bounded, wait_until_every, Chronyd, Daemon};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SHA1_KEY: &str = "1 SHA1 HEX:6f1e3ad0b6b9e3c24bd4b8f6c4f5b2a7d39e0c11";
const AES_KEY: &str = "2 AES128 HEX:8d2f0a6b1c4e7f9a3b5d2c8e6f1a4b7c";
/// Key 3 as skytimed has it, and as the misconfigured client has it.
const KEY3: &str = "3 SHA1 HEX:0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const KEY3_WRONG: &str = "3 SHA1 HEX:0a1b2c3d4e5f60718293a4b5c6d7e8f901234568";
/// A key skytimed does not have.
const KEY4: &str = "4 AES128 HEX:00112233445566778899aabbccddeeff";

/// skytimed with `keys` on four loopback addresses (one per chrony
/// source: chrony takes one source per address), no GPS, `extra`.
fn config(keys: &Path, extra: &str) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\", \"127.0.0.3:0\", \"127.0.0.4:0\", \"127.0.0.5:0\"]\n\
         allow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[keys]\nfile = \"{}\"\n[clock]\nsteer = false\n{extra}",
        keys.display()
    )
}

/// chronyd polling `servers` (address, key ID) with the keys in `keyfile`.
fn chrony_client(servers: &[(SocketAddr, u32)], keyfile: &Path) -> Chronyd {
    let mut d: Vec<String> = servers
        .iter()
        .map(|(a, k)| {
            format!(
                "server {} port {} key {k} iburst minpoll -2 maxpoll -2",
                a.ip(),
                a.port()
            )
        })
        .collect();
    d.push(format!("keyfile {}", keyfile.display()));
    Chronyd::start(&d)
}

#[test]
fn chrony_clients_with_keys_and_chrony_as_a_keyed_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("skytime.keys");
    write_private(&keys, &format!("{SHA1_KEY}\n{AES_KEY}\n{KEY3}\n"));
    let good_keys = dir.path().join("good.keys");
    write_private(&good_keys, &format!("{SHA1_KEY}\n{AES_KEY}\n"));
    let bad_keys = dir.path().join("bad.keys");
    write_private(&bad_keys, &format!("{KEY3_WRONG}\n{KEY4}\n"));

    // chronyd at stratum 5 with the AES128 key, skytimed's upstream.
    let upstream = ChronyServer::start(
        "127.0.0.2",
        5,
        None,
        &[format!("keyfile {}", good_keys.display())],
    );
    let bus = PrivateBus::start(&[]);
    let extra = format!("[dbus]\nbus = \"system\"\n{}", upstream.upstream_key(2));
    let daemon = start_daemon(&bus, tempfile::tempdir().unwrap(), &config(&keys, &extra));
    let addrs = daemon.serving("NTP");
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    let started = Instant::now();

    // skytimed as a client: the keyed source is authenticated and used.
    let served = wait_until_every(Duration::from_secs(30), Duration::from_millis(200), || {
        let x = query(addrs[0])?;
        (x.reply.stratum == 6 && x.reply.reference_id.0 == [127, 0, 0, 2]).then_some(())
    });
    assert!(
        served.is_some(),
        "skytimed never served from its keyed upstream:\n{:?}\n{}",
        sources(&bus),
        daemon.log()
    );
    let s = sources(&bus)
        .into_iter()
        .find(|s| s.kind == "ntp")
        .expect("the upstream source");
    assert_eq!(
        (s.authentication.as_deref(), s.state.as_str(), s.stratum),
        (Some("symmetric"), "selected", 5),
        "{s:?}"
    );
    let a = source_auth(&bus);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].mode.as_str(), a[0].key_id, a[0].key_type.as_deref()),
        ("SK", Some(2), Some("AES128")),
        "{a:?}"
    );
    assert_eq!(a[0].auth_failures, 0, "{a:?}");
    assert!(upstream.serverstat("Authenticated NTP packets") > 0);

    // skytimed as the server: SHA1 and AES128 clients are answered with
    // MAC'd replies that chrony accepts; it synchronizes one below
    // skytimed's stratum 6.
    let good = chrony_client(&[(addrs[0], 1), (addrs[1], 2)], &good_keys);
    let bad = chrony_client(&[(addrs[2], 3), (addrs[3], 4)], &bad_keys);
    let clients_started = Instant::now();
    let tracking = good
        .wait_synchronized(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "chrony with keys never synchronized:\n{}\n{}",
                good.chronyc(&["sources"]),
                daemon.log()
            )
        });
    assert_eq!(field(&tracking, "Stratum"), Some("7"), "{tracking:?}");
    for server in &addrs[..2] {
        let (authenticated, good_rx) = good.ntpdata(*server);
        assert!(
            authenticated && good_rx > 0,
            "{server}: authenticated {authenticated}, good replies {good_rx}"
        );
    }
    let sync_took = clients_started.elapsed();
    eprintln!(
        "keyed chain up in {:.1} s (chrony synchronized {:.1} s after its start)",
        started.elapsed().as_secs_f64(),
        sync_took.as_secs_f64()
    );

    // The wrong key gets no reply (counted as a bad MAC), the unknown key
    // a crypto-NAK that chrony does not take for time.
    let counted = wait_until_every(Duration::from_secs(15), Duration::from_millis(300), || {
        let (bad_mac, naks) = (
            daemon.stat_or_zero("dropped_bad_mac"),
            daemon.stat_or_zero("crypto_naks"),
        );
        (bad_mac > 0 && naks > 0).then_some((bad_mac, naks))
    });
    assert!(
        counted.is_some(),
        "no bad MAC or crypto-NAK counted:\n{}",
        daemon.log()
    );
    assert!(daemon.nonzero_stat("key_replied") > 0);
    // The same counters over D-Bus, as `skytimectl serverstats` shows them.
    let st = ctl(&bus, None, &["--json", "serverstats"]).json();
    assert!(
        st["KeyAuthenticated"].as_u64() > Some(0)
            && st["KeyCryptoNaks"].as_u64() > Some(0)
            && st["NtpDroppedByReason"]["bad_mac"].as_u64() > Some(0),
        "{st}"
    );
    let text = ctl(&bus, None, &["serverstats"]).all();
    assert!(text.contains("Crypto-NAKs sent"), "{text}");
    for server in &addrs[2..] {
        let (_, good_rx) = bad.ntpdata(*server);
        assert_eq!(good_rx, 0, "{server}: chrony took a reply to a bad key");
    }
    // Twice as long as the good client needed, and never synchronized.
    let synchronized = wait_until_every(
        2 * sync_took + Duration::from_secs(2),
        Duration::from_millis(250),
        || {
            let t = bad.tracking();
            (!field(&t, "Reference ID").is_some_and(|r| r.starts_with("00000000"))).then_some(t)
        },
    );
    assert!(
        synchronized.is_none(),
        "chrony with bad keys synchronized: {synchronized:?}"
    );
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
    assert!(
        !log.contains("6f1e3ad0") && !log.contains("8d2f0a6b"),
        "key material in the log"
    );
}

#[test]
fn a_key_file_others_can_read_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("exposed.keys");
    write_private(&keys, &format!("{SHA1_KEY}\n"));
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let conf = dir.path().join("skytime.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &conf,
        config(&keys, "[dbus]\nenabled = false\n").replace("@DATA@", &data.display().to_string()),
    )
    .unwrap();
    let out = run_bounded(
        Command::new(bin("skytimed")).arg("--config").arg(&conf),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(
        !out.status.success(),
        "skytimed started with an exposed key file:\n{err}"
    );
    assert!(
        err.contains(&keys.display().to_string())
            && err.contains("0644")
            && err.contains("chmod 600"),
        "the error names the file and the reason:\n{err}"
    );
    assert!(!err.contains("6f1e3ad0"), "key material in the error");
    assert!(!err.contains("skytimed ready"), "{err}");
    // Made private, the same file is taken.
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&config(&keys, ""), &[]);
    assert!(query(daemon.ntp_addr()).is_some());
}

#[test]
fn every_key_type_and_version_gets_a_macd_reply_no_longer_than_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let text = "1 MD5 ASCII:correcthorse\n2 SHA1 HEX:6f1e3ad0b6b9e3c24bd4b8f6c4f5b2a7d39e0c11\n\
                3 SHA256 HEX:00112233445566778899aabbccddeeff\n4 SHA512 ASCII:batterystaple\n\
                5 AES128 HEX:8d2f0a6b1c4e7f9a3b5d2c8e6f1a4b7c\n\
                6 AES256 HEX:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
                7 SHA3-256 ASCII:third\n";
    let keys_path = dir.path().join("skytime.keys");
    write_private(&keys_path, text);
    let keys = KeyFile::parse(text).unwrap();
    let daemon = Daemon::start(&config(&keys_path, ""), &[]);
    let server = daemon.ntp_addr();
    let limit = Duration::from_secs(2);
    for id in keys.ids() {
        let key = keys.get(id).unwrap();
        for version in [3u8, 4] {
            let mut req = request(version, now()).to_vec();
            packet::append_mac(&mut req, key);
            let x = exchange(server, &req, limit)
                .unwrap_or_else(|| panic!("key {id} {:?} v{version}: no reply", key.kind));
            assert_eq!(
                x.raw.len(),
                req.len(),
                "key {id} v{version}: reply length differs from the request's"
            );
            match packet::parse(&x.raw) {
                Auth::Mac(m) => assert!(
                    m.key_id == id && m.verify(&x.raw, key),
                    "key {id} v{version}: the reply's MAC does not verify"
                ),
                other => panic!("key {id} v{version}: {other:?}"),
            }
            assert_eq!(x.reply.stratum, 10, "key {id} v{version}");
        }
    }
    // A key the server lacks: a crypto-NAK, four zero bytes after the
    // header (never longer than the request).
    let other = KeyFile::parse("9 SHA1 HEX:0a1b2c3d4e5f60718293a4b5c6d7e8f901234567\n").unwrap();
    let mut req = request(4, now()).to_vec();
    packet::append_mac(&mut req, other.get(9).unwrap());
    let x = exchange(server, &req, limit).expect("a crypto-NAK");
    assert!(
        matches!(packet::parse(&x.raw), Auth::CryptoNak),
        "{:?}",
        x.raw
    );
    assert!(x.raw.len() < req.len());
    // A MAC that does not verify: no answer at all, counted.
    let mut req = request(4, now()).to_vec();
    packet::append_mac(&mut req, keys.get(2).unwrap());
    let last = req.len() - 1;
    req[last] ^= 1;
    assert!(
        exchange(server, &req, limit).is_none(),
        "a forged MAC was answered"
    );
    assert_eq!(daemon.stat_or_zero("dropped_bad_mac"), 1);
    assert_eq!(daemon.stat_or_zero("crypto_naks"), 1);
    assert_eq!(daemon.stat_or_zero("key_replied"), 2 * keys.len() as u64);
}
