//! NTS interoperability with Debian's chrony 4.3 as the client, against
//! the real skytimed binary: a one-shot `chronyd -Q` measurement, and a
//! long-running chronyd (`-x`, never touching the clock) that keeps polling
//! with its first cookies across master-key rotations and a skytimed
//! restart. A `server ... nts` source never falls back to plain NTP; the
//! assertions are what chrony reports (`-Q`'s measured offset, `chronyc
//! ntpdata`'s authenticated good replies, `chronyc authdata`'s key
//! exchanges and NAKs), and the daemon's own counters must agree.

use skytime_tests::upstream::{certificate, chrony_nts_client};
use skytime_tests::{chronyd_query, wait_until, wait_until_every, Chronyd, Daemon};
use std::path::Path;
use std::time::{Duration, Instant};

/// `[ntp]` and `[nts]` on `host` (as in a socket address: `[::1]`), port
/// 0 unless the ports are given: the daemon reports what it bound.
fn nts_config(
    host: &str,
    ports: Option<(u16, u16)>,
    cert: &Path,
    key: &Path,
    extra: &str,
) -> String {
    let (ntp, ke) = ports.unwrap_or((0, 0));
    format!(
        r#"data_dir = "@DATA@"
[ntp]
listen = ["{host}:{ntp}"]
allow = ["127.0.0.0/8", "::1/128"]
local_stratum = 10
[clock]
steer = false
[nts]
enabled = true
ke_listen = ["{host}:{ke}"]
certificate = "{}"
private_key = "{}"
{extra}
"#,
        cert.display(),
        key.display()
    )
}

/// A chrony NTS source for the daemon's addresses, trusting `cert`.
fn client_directives(daemon: &Daemon, cert: &Path) -> Vec<String> {
    chrony_nts_client(daemon.ntp_addr(), daemon.ke_addr(), cert)
}

#[test]
fn chrony_one_shot_measures_over_nts() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let config = nts_config("127.0.0.1", None, &cert, &key, "require = true");
    let daemon = Daemon::start(&config, &[]);
    let (offset, text) = chronyd_query(&client_directives(&daemon, &cert), 15);
    let offset = offset.unwrap_or_else(|| {
        panic!(
            "chronyd -Q over NTS got no offset:\n{text}\nskytimed:\n{}",
            daemon.log()
        )
    });
    assert!(offset.abs() < 0.1, "offset {offset} from the same host");
    assert!(daemon.nonzero_stat("nts_replied") >= 1);

    // A client that does not trust the certificate gets nothing.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = certificate(other.path());
    let (offset, text) = chronyd_query(&client_directives(&daemon, &other_cert), 4);
    assert!(
        offset.is_none(),
        "chrony must refuse an untrusted certificate:\n{text}"
    );
}

#[test]
fn chrony_one_shot_over_ipv6() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let config = nts_config("[::1]", None, &cert, &key, "require = true");
    let daemon = Daemon::start(&config, &[]);
    assert!(daemon.ntp_addr().is_ipv6() && daemon.ke_addr().is_ipv6());
    let (offset, text) = chronyd_query(&client_directives(&daemon, &cert), 15);
    assert!(
        offset.is_some_and(|o| o.abs() < 0.1),
        "chronyd -Q over NTS on ::1:\n{text}\nskytimed:\n{}",
        daemon.log()
    );
    assert!(daemon.nonzero_stat("nts_replied") >= 1);
}

/// `chronyc -c authdata` for the one source: (mode, last KE age s, KE
/// attempts, NAKs, cookies).
fn authdata(chronyd: &Chronyd) -> (String, u64, u64, u64, u64) {
    let out = chronyd.chronyc(&["-c", "authdata"]);
    let parse = || {
        let f: Vec<&str> = out.lines().next()?.split(',').collect();
        if f.len() < 10 {
            return None;
        }
        Some((
            f[1].to_owned(),
            f[5].parse().ok()?,
            f[6].parse().ok()?,
            f[7].parse().ok()?,
            f[8].parse().ok()?,
        ))
    };
    parse().unwrap_or_else(|| panic!("unexpected chronyc authdata: {out}"))
}

#[test]
fn chrony_keeps_its_cookies_across_key_rotation_and_restart() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let extra = "rotation_interval = 2\nprevious_keys = 3";
    let daemon = Daemon::start(&nts_config("127.0.0.1", None, &cert, &key, extra), &[]);
    let server = daemon.ntp_addr();
    let ports = (server.port(), daemon.ke_addr().port());
    let chronyd = Chronyd::start(&client_directives(&daemon, &cert));
    let started = Instant::now();
    assert!(
        chronyd.wait_synchronized(Duration::from_secs(30)).is_some(),
        "chrony did not synchronize over NTS:\n{}\n{}",
        chronyd.log(),
        daemon.log()
    );
    assert_eq!(authdata(&chronyd).0, "NTS");

    // Several rotations (every 2 s) while chrony polls every 0.25-1 s,
    // and chrony keeps taking authenticated replies through them.
    let (_, good_before) = chronyd.ntpdata(server);
    let rotated = wait_until(Duration::from_secs(20), || {
        (daemon.log().matches("rotated NTS master key").count() >= 3).then_some(())
    });
    assert!(rotated.is_some(), "no rotations:\n{}", daemon.log());
    let (authenticated, good) = chronyd.ntpdata(server);
    assert!(authenticated, "chrony's source is not authenticated");
    assert!(
        good > good_before,
        "chrony took no reply across the rotations"
    );
    let (daemon_ok, log, dir) = daemon.stop();
    assert!(daemon_ok, "skytimed stopped cleanly:\n{log}");

    // Restart on the same data directory and ports (chrony keeps its
    // source): the keys, and so chrony's cookies, are still good.
    let daemon = Daemon::start_in(
        dir,
        &nts_config("127.0.0.1", Some(ports), &cert, &key, extra),
        &[],
    );
    let (_, good_before) = chronyd.ntpdata(server);
    let more = wait_until_every(Duration::from_secs(30), Duration::from_millis(250), || {
        let (authenticated, good) = chronyd.ntpdata(server);
        (authenticated && good > good_before).then_some(good)
    });
    assert!(
        more.is_some(),
        "chrony took no authenticated reply after the restart:\n{}\n{}",
        chronyd.log(),
        daemon.log()
    );
    assert!(daemon.nonzero_stat("nts_replied") >= 1);
    assert_eq!(
        daemon.stat("nts_naks"),
        Some(0),
        "no cookie was refused after the restart:\n{}",
        daemon.log()
    );

    // One NTS-KE session for the whole run: the last one is as old as the
    // client, no attempt since, no NAK.
    let (mode, last_ke, attempts, naks, cookies) = authdata(&chronyd);
    assert_eq!(mode, "NTS");
    assert_eq!(naks, 0, "chrony was NAKed");
    assert_eq!(attempts, 0);
    assert!(cookies >= 1);
    assert!(
        last_ke + 4 >= started.elapsed().as_secs(),
        "chrony ran NTS-KE again (last {last_ke} s ago, run {} s)",
        started.elapsed().as_secs()
    );
}
