//! NTS interoperability with Debian's chrony 4.3 as the client, against
//! the real skytimed binary: a one-shot `chronyd -Q` measurement, and a
//! long-running chronyd (`-x`, never touching the clock) that keeps polling
//! with its first cookies across master-key rotations and a skytimed
//! restart. A `server ... nts` source never falls back to plain NTP, so
//! every sample chrony takes proves NTS worked.

use skytime_tests::{chronyd_query, free_tcp_port, free_udp_port, wait_until, Chronyd, Daemon};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A self-signed end-entity certificate (CA:FALSE) for localhost,
/// 127.0.0.1 and ::1, with its key, in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(skytime_tests::require_program("openssl"))
        .args([
            "req",
            "-new",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn nts_config(ntp: u16, ke: u16, cert: &Path, key: &Path, extra: &str) -> String {
    nts_config_on("127.0.0.1", ntp, ke, cert, key, extra)
}

/// `host` is an address as it appears in a socket address (`[::1]`).
fn nts_config_on(host: &str, ntp: u16, ke: u16, cert: &Path, key: &Path, extra: &str) -> String {
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

fn client_directives(ntp: u16, ke: u16, cert: &Path) -> Vec<String> {
    client_directives_to("127.0.0.1", ntp, ke, cert)
}

fn client_directives_to(host: &str, ntp: u16, ke: u16, cert: &Path) -> Vec<String> {
    vec![
        format!("server {host} port {ntp} nts ntsport {ke} iburst minpoll -2 maxpoll -2"),
        format!("ntstrustedcerts {}", cert.display()),
        "nosystemcert".to_owned(),
    ]
}

/// A `key=value` counter from the daemon's latest statistics line.
fn last_stat(log: &str, key: &str) -> Option<u64> {
    let needle = format!(" {key}=");
    log.lines()
        .rev()
        .find_map(|l| l.split(&needle).nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
}

/// Asks the daemon for statistics (SIGUSR1) until `key` is non-zero.
fn wait_stat(daemon: &Daemon, key: &str) -> Option<u64> {
    wait_until(Duration::from_secs(20), || {
        daemon.signal("USR1");
        std::thread::sleep(Duration::from_millis(200));
        last_stat(&daemon.log(), key).filter(|v| *v > 0)
    })
}

#[test]
fn chrony_one_shot_measures_over_nts() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let daemon = Daemon::start(&nts_config(ntp, ke, &cert, &key, "require = true"), &[]);
    let (offset, text) = chronyd_query(&client_directives(ntp, ke, &cert), 15);
    let offset = offset.unwrap_or_else(|| {
        panic!(
            "chronyd -Q over NTS got no offset:\n{text}\nskytimed:\n{}",
            daemon.log()
        )
    });
    assert!(offset.abs() < 0.1, "offset {offset} from the same host");
    let replied = wait_stat(&daemon, "nts_replied")
        .unwrap_or_else(|| panic!("no NTS replies counted:\n{}", daemon.log()));
    assert!(replied >= 1);

    // A client that does not trust the certificate gets nothing.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = certificate(other.path());
    let (offset, text) = chronyd_query(&client_directives(ntp, ke, &other_cert), 4);
    assert!(
        offset.is_none(),
        "chrony must refuse an untrusted certificate:\n{text}"
    );
}

#[test]
fn chrony_one_shot_over_ipv6() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let config = nts_config_on("[::1]", ntp, ke, &cert, &key, "require = true");
    let daemon = Daemon::start(&config, &[]);
    let (offset, text) = chronyd_query(&client_directives_to("::1", ntp, ke, &cert), 15);
    assert!(
        offset.is_some_and(|o| o.abs() < 0.1),
        "chronyd -Q over NTS on ::1:\n{text}\nskytimed:\n{}",
        daemon.log()
    );
    assert!(
        wait_stat(&daemon, "nts_replied").is_some(),
        "{}",
        daemon.log()
    );
}

/// `chronyc -c authdata` for the one source: (mode, last KE age s, KE
/// attempts, NAKs, cookies).
fn authdata(chronyd: &Chronyd) -> Option<(String, u64, u64, u64, u64)> {
    let out = chronyd.chronyc(&["-c", "authdata"]);
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
}

/// Number of samples chrony holds for its source (`sourcestats` NP).
fn samples(chronyd: &Chronyd) -> u64 {
    let out = chronyd.chronyc(&["-c", "sourcestats"]);
    out.lines()
        .next()
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn chrony_keeps_its_cookies_across_key_rotation_and_restart() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let config = nts_config(
        ntp,
        ke,
        &cert,
        &key,
        "rotation_interval = 2\nprevious_keys = 3",
    );
    let daemon = Daemon::start(&config, &[]);
    let chronyd = Chronyd::start(&client_directives(ntp, ke, &cert));
    let started = Instant::now();
    assert!(
        chronyd.wait_synchronized(Duration::from_secs(30)).is_some(),
        "chrony did not synchronize over NTS:\n{}\n{}",
        chronyd.log(),
        daemon.log()
    );
    let (mode, ..) = authdata(&chronyd).expect("authdata");
    assert_eq!(mode, "NTS");

    // Several rotations (every 2 s) while chrony polls every 0.25-1 s.
    std::thread::sleep(Duration::from_secs(7));
    let before_restart = samples(&chronyd);
    let (daemon_ok, log, dir) = daemon.stop();
    assert!(daemon_ok, "skytimed stopped cleanly:\n{log}");
    let rotations = log.matches("rotated NTS master key").count();
    assert!(rotations >= 2, "expected rotations during the run:\n{log}");

    // Restart on the same data directory: the keys, and so chrony's
    // cookies, are still good.
    let daemon = Daemon::start_in(dir, &config, &[]);
    let more = wait_until(Duration::from_secs(30), || {
        let n = samples(&chronyd);
        (n > before_restart || wait_stat(&daemon, "nts_replied").is_some()).then_some(n)
    });
    assert!(
        more.is_some(),
        "chrony took no sample after the restart:\n{}\n{}",
        chronyd.log(),
        daemon.log()
    );
    let replied = wait_stat(&daemon, "nts_replied").unwrap_or_else(|| {
        panic!(
            "restarted daemon answered no NTS request:\n{}",
            daemon.log()
        )
    });
    assert!(replied >= 1);
    assert_eq!(
        last_stat(&daemon.log(), "nts_naks").unwrap_or(0),
        0,
        "no cookie was refused after the restart:\n{}",
        daemon.log()
    );

    // One NTS-KE session for the whole run: the last one is as old as the
    // client, no attempt since, no NAK.
    let (mode, last_ke, attempts, naks, cookies) = authdata(&chronyd).expect("authdata");
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
