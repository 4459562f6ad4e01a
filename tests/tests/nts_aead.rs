//! Which AEAD each NTS client gets, and that the keys both sides derive
//! for it agree, against the real skytimed:
//!
//! - Debian 13's chrony 4.6.1 offers AES-128-GCM-SIV (30) first and sends
//!   its record 1024 (RFC 8915's exporter context): it gets 30;
//! - Debian 12's chrony 4.3 offers AES-SIV-CMAC-256 (15) only: it gets 15;
//! - ntpd-rs 1.9.0's client (the benchmark's build) offers
//!   AES-SIV-CMAC-512 (17) and 15, and gets 15 (ntpd-rs does not
//!   implement 30);
//! - a client offering 30 alone gets 30, one offering 30 then 15 without
//!   record 1024 gets 15 (skytime's own test client, over real TLS).
//!
//! Each client then has its NTS-protected NTP requests answered; the
//! daemon counts which AEAD every key exchange chose.

use skytime_nts::aead::Aead;
use skytime_tests::nts_client::{self, key_exchange_offering, Offer};
use skytime_tests::{chronyd_query_with, require_program, run_bounded, wait_until_every, Daemon};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A daemon with NTS (see [`nts_client::nts_daemon`]), its NTP and
/// NTS-KE addresses and its certificate.
fn daemon() -> (Daemon, SocketAddr, SocketAddr, PathBuf) {
    let (d, cert) = nts_client::nts_daemon("");
    let (ntp, ke) = (d.ntp_addr(), d.ke_addr());
    (d, ntp, ke, cert)
}

/// The NTS counters in the daemon's final statistics line.
fn nts_stat(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("skytimed stopped"))
        .unwrap_or_else(|| panic!("no final statistics:\n{log}"));
    let nts = line.split("; nts ").nth(1).unwrap_or_default();
    nts.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map_or(0, |v| v.parse().unwrap())
}

/// Debian 13's chronyd, unpacked by `make test-deps`.
fn trixie_chronyd() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/trixie-chrony/bin/chronyd");
    assert!(
        p.exists(),
        "{} is missing: `make test-deps` unpacks Debian 13's chrony (tests/scripts/trixie-tools.sh target/trixie-chrony chrony chronyd)",
        p.display()
    );
    p
}

fn chrony_nts(chronyd: &Path, ntp: SocketAddr, ke: SocketAddr, cert: &Path) -> String {
    let (offset, out) = chronyd_query_with(
        chronyd,
        &[
            format!(
                "server localhost port {} nts ntsport {} iburst maxsamples 2",
                ntp.port(),
                ke.port()
            ),
            format!("ntstrustedcerts {}", cert.display()),
            "nosystemcert".into(),
        ],
        20,
    );
    let offset = offset.unwrap_or_else(|| panic!("{} measured nothing:\n{out}", chronyd.display()));
    assert!(offset.abs() < 0.01, "{offset}: {out}");
    out
}

#[test]
fn chrony_4_6_gets_aes_128_gcm_siv_and_chrony_4_3_aes_siv() {
    let (daemon, ntp, ke, cert) = daemon();
    let version = chrony_nts(&trixie_chronyd(), ntp, ke, &cert);
    assert!(version.contains("4.6"), "{version}");
    chrony_nts(&require_program("chronyd"), ntp, ke, &cert);
    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
    assert_eq!(nts_stat(&log, "ke_aead_30"), 1, "{log}");
    assert_eq!(nts_stat(&log, "ke_aead_15"), 1, "{log}");
    assert!(nts_stat(&log, "ntp_authentic") >= 2, "{log}");
    assert_eq!(nts_stat(&log, "ntp_auth_failed"), 0, "{log}");
}

/// ntpd-rs's ntp-daemon, built by `make test-deps` (as for the benchmark).
fn ntpd_rs() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ntpd-rs/bin/ntp-daemon");
    assert!(
        p.exists(),
        "{} is missing: `make test-deps` builds it (cargo install ntpd --version 1.9.0 --locked --root target/ntpd-rs)",
        p.display()
    );
    p
}

/// The LD_PRELOAD shim that keeps a real client from steering this
/// host's clock (tests/shim/no-clock-steer.c), compiled into `dir`.
fn no_clock_steer_shim(dir: &Path) -> PathBuf {
    let so = dir.join("no-clock-steer.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("shim/no-clock-steer.c");
    let out = run_bounded(
        Command::new(require_program("gcc"))
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

#[test]
fn ntpd_rs_client_gets_aes_siv_and_authenticated_time() {
    let (daemon, _, ke, cert) = daemon();
    let dir = tempfile::tempdir().unwrap();
    let shim = no_clock_steer_shim(dir.path());
    let conf = dir.path().join("ntp.toml");
    std::fs::write(
        &conf,
        format!(
            "[observability]\nlog-level = \"info\"\nobservation-path = \"{d}/observe\"\n[[source]]\nmode = \"nts\"\naddress = \"localhost:{}\"\ncertificate-authority = \"{}\"\n[source-defaults]\npoll-interval-limits = {{ min = -1, max = 0 }}\ninitial-poll-interval = -1\n",
            ke.port(),
            cert.display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("ntpd-rs.log")).unwrap();
    let mut cmd = Command::new(ntpd_rs());
    cmd.arg("-c")
        .arg(&conf)
        .env("LD_PRELOAD", &shim)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only prctl between fork and exec. Without CAP_SYS_TIME a
    // clock call the shim missed fails instead of steering this host.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, 25 /* CAP_SYS_TIME */, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start ntp-daemon");
    // ntp-ctl shows the source with NTS cookies and a measured offset.
    let ctl = ntpd_rs().with_file_name("ntp-ctl");
    let status = wait_until_every(Duration::from_secs(60), Duration::from_millis(500), || {
        let out = run_bounded(
            Command::new(&ctl).arg("-c").arg(&conf).arg("status"),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let offset: f64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Offset:"))?
            .trim()
            .parse()
            .ok()?;
        (text.contains("[NTS]") && text.contains("cookies") && offset != 0.0 && offset.abs() < 0.01)
            .then_some(text)
    });
    let _ = child.kill();
    let _ = child.wait();
    let client_log = std::fs::read_to_string(dir.path().join("ntpd-rs.log")).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!(
            "ntpd-rs measured nothing over NTS:\n{client_log}\n{}",
            daemon.log()
        )
    });
    assert!(
        status.contains(&format!("127.0.0.1:{}", daemon.ntp_addr().port())),
        "{status}"
    );
    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
    assert!(nts_stat(&log, "ke_aead_15") >= 1, "{log}");
    assert_eq!(nts_stat(&log, "ke_aead_30"), 0, "{log}");
    assert!(nts_stat(&log, "ntp_authentic") >= 1, "{log}\n{client_log}");
}

#[test]
fn the_choice_follows_record_1024_and_the_keys_agree() {
    let (daemon, _, ke, cert) = daemon();
    let tls = nts_client::tls_config(&cert);
    for (offer, aead, record) in [
        (
            Offer {
                aeads: &[30],
                compliant_export: false,
            },
            Aead::AesGcmSiv128,
            false,
        ),
        (
            Offer {
                aeads: &[30, 15],
                compliant_export: true,
            },
            Aead::AesGcmSiv128,
            true,
        ),
        (
            Offer {
                aeads: &[30, 15],
                compliant_export: false,
            },
            Aead::AesSivCmac256,
            false,
        ),
        (
            Offer {
                aeads: &[15, 30],
                compliant_export: true,
            },
            Aead::AesSivCmac256,
            false,
        ),
    ] {
        let k = key_exchange_offering(ke, "localhost", &tls, offer).unwrap();
        assert_eq!(
            (k.keys.aead, k.compliant_export),
            (aead, record),
            "{offer:?}"
        );
        let cookie_len = if aead == Aead::AesGcmSiv128 { 72 } else { 104 };
        assert!(k.cookies.iter().all(|c| c.len() == cookie_len), "{offer:?}");
        // Requests authenticated with the keys this client derived are
        // answered, and the replies verify under them.
        let uid = [0x5a; 32];
        let request = nts_client::ntp_request(&k, &uid);
        let reply =
            skytime_tests::ntp::exchange(daemon.ntp_addr(), &request, Duration::from_secs(2))
                .unwrap_or_else(|| panic!("no reply for {offer:?}"));
        assert!(nts_client::is_authentic(&reply.raw, &uid, &k), "{offer:?}");
        assert!(reply.raw.len() <= request.len());
    }
    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
    assert_eq!(nts_stat(&log, "ke_aead_30"), 2, "{log}");
    assert_eq!(nts_stat(&log, "ke_aead_15"), 2, "{log}");
    assert_eq!(nts_stat(&log, "ntp_authentic"), 4, "{log}");
}
