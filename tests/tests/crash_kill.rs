//! The real skytimed killed with SIGKILL while it writes its state: NTS
//! master key rotations, configuration applies and certificate installs
//! arrive over a private D-Bus (through skytimectl) as fast as the daemon
//! takes them, and the daemon is killed at a different moment each round
//! (a bounded number of rounds). Each time it must start again on what is
//! on disk and serve: NTP answered, NTS-KE completed with the certificate
//! on disk, the managed configuration one of those applied, and a key
//! rotation accepted.
//!
//! The step-by-step proof (a fault at every step of every kind of write)
//! is daemon/skytimed/tests/crash_safe_state.rs; this is the end-to-end
//! check on the real process.

use skytime_tests::dbus::*;
use skytime_tests::ntp::query;
use skytime_tests::nts_client::{key_exchange, tls_config};
use skytime_tests::wait_until;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ROUNDS: u64 = 10;

/// NTS and local stratum 10 (no GPS) on ports the kernel picks;
/// `@STRATUM@` tells the applied versions apart.
const CONFIG: &str = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n\
     allow = [\"127.0.0.0/8\"]\nlocal_stratum = @STRATUM@\n\
     [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
     [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n";

fn config(stratum: u8) -> String {
    CONFIG.replace("@STRATUM@", &stratum.to_string())
}

/// Writes over D-Bus until `stop` or a call fails (the daemon is gone);
/// at most `limit` calls, starting with kind `first` (0 rotate, 1 apply,
/// 2 install). Returns how many of each kind succeeded.
fn writer(
    bus: &PrivateBus,
    files: &Path,
    data: &Path,
    stop: &AtomicBool,
    first: usize,
    limit: usize,
) -> [usize; 3] {
    let data = data.display().to_string();
    let mut done = [0; 3];
    for i in first..first + limit {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let f = |name: &str| files.join(name).display().to_string();
        let r = match i % 3 {
            0 => ctl(bus, None, &["keys", "rotate"]),
            1 => {
                let applied = f(&format!("config-{}.toml", i % 2));
                std::fs::write(&applied, config(9 + (i % 2) as u8).replace("@DATA@", &data))
                    .unwrap();
                ctl(bus, None, &["config", "apply", &applied])
            }
            _ => {
                let which = (i / 3) % 2;
                ctl(
                    bus,
                    None,
                    &[
                        "certificate",
                        "install",
                        &f(&format!("cert-{which}.pem")),
                        &f(&format!("key-{which}.pem")),
                    ],
                )
            }
        };
        if !r.ok() {
            break;
        }
        done[i % 3] += 1;
    }
    done
}

#[test]
fn sigkill_during_state_writes_leaves_a_daemon_that_starts_and_serves() {
    let bus = PrivateBus::start(&[]);
    let files = tempfile::tempdir().unwrap();
    for which in 0..2 {
        let (cert, key) = make_cert("localhost", 2099);
        std::fs::write(files.path().join(format!("cert-{which}.pem")), cert).unwrap();
        std::fs::write(files.path().join(format!("key-{which}.pem")), key).unwrap();
    }
    let mut dir = initialized_dir();
    let data = dir.path().join("data");
    let mut written = [0; 3];
    for round in 0..ROUNDS {
        let daemon = start_daemon(&bus, dir, &config(10));
        let (ntp, ke) = (daemon.ntp_addr(), daemon.ke_addr());
        // It serves on what the last round left.
        assert!(
            wait_until(Duration::from_secs(5), || query(ntp)).is_some(),
            "round {round}: NTP not answered\n{}",
            daemon.log()
        );
        let served_cert = tempfile::NamedTempFile::new().unwrap();
        std::fs::copy(data.join("cert.pem"), served_cert.path()).unwrap();
        key_exchange(ke, "localhost", &tls_config(served_cert.path())).unwrap_or_else(|e| {
            panic!(
                "round {round}: NTS-KE with the certificate on disk: {e:?}\n{}",
                daemon.log()
            )
        });
        // Temporary files of the writes the kill cut short were swept at
        // start; only the running daemon's own may be there.
        let own = format!(".tmp-{}", daemon.pid());
        let stale: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") && !n.ends_with(&own))
            .collect();
        assert!(
            stale.is_empty(),
            "round {round}: stale temporary files {stale:?}"
        );
        if let Ok(text) = std::fs::read_to_string(data.join("skytime.toml")) {
            assert!(
                (9..=10).any(|s| text == config(s).replace("@DATA@", &data.display().to_string())),
                "round {round}: the managed file is none of those applied:\n{text}"
            );
        }
        // Writes from another thread; the kill comes at a moment that
        // moves from round to round (bounded waits only).
        let stop = AtomicBool::new(false);
        let (kept, n) = std::thread::scope(|s| {
            let w = s.spawn(|| writer(&bus, files.path(), &data, &stop, round as usize, 60));
            std::thread::sleep(Duration::from_millis(100 + 97 * round));
            let kept = daemon.kill();
            stop.store(true, Ordering::Relaxed);
            (kept, w.join().unwrap())
        });
        for (w, n) in written.iter_mut().zip(n) {
            *w += n;
        }
        dir = kept;
    }
    // Each kind of write happened, and was interrupted by kills often.
    eprintln!("rotations, applies, installs done: {written:?}");
    assert!(
        written.iter().all(|&n| n >= 2),
        "too few writes: {written:?}"
    );
    // The last start, and a rotation on what is there.
    let daemon = start_daemon(&bus, dir, &config(10));
    assert!(query(daemon.ntp_addr()).is_some(), "{}", daemon.log());
    let r = ctl(&bus, None, &["keys", "rotate"]);
    assert!(r.ok(), "{}", r.all());
}
