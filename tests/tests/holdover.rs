//! Holdover end to end: skytime-gpssim -> skytimed (measure-only clock),
//! watched through the NTP replies themselves. When the GPS goes away the
//! server keeps serving stratum 1 while its root dispersion grows; after
//! the holdover limit it falls back to its local stratum; when the GPS
//! returns it is stratum 1 again. Stratum, LI and root dispersion must
//! follow the real state at every moment.

use skytime_proto::{LeapIndicator, ReferenceId};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::{query, Exchange};
use skytime_tests::{wait_until, Daemon};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Source timeout and holdover limit of the test configuration, seconds.
const SOURCE_TIMEOUT: f64 = 2.0;
const HOLDOVER_LIMIT: f64 = 10.0;
/// Dispersion growth in holdover: large, so two seconds show it plainly.
const DRIFT_PPM: f64 = 100.0;

/// NTP on a port the kernel picks (the daemon logs it).
fn config(gps: &Path) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
         [clock]\nsteer = false\nsource_timeout = {SOURCE_TIMEOUT}\nholdover_limit = {HOLDOVER_LIMIT}\nholdover_drift_ppm = {DRIFT_PPM}\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n",
        dev = GpsSim::device(gps).display(),
        sock = GpsSim::sock(gps).display()
    )
}

fn wait_reply(
    server: SocketAddr,
    timeout: Duration,
    want: impl Fn(&Exchange) -> bool,
) -> Option<Exchange> {
    wait_until(timeout, || query(server).filter(|x| want(x)))
}

fn is_pps(x: &Exchange) -> bool {
    x.reply.stratum == 1 && x.reply.reference_id == ReferenceId::PPS
}

#[test]
fn holdover_then_local_stratum_then_gps_again() {
    let gps = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(gps.path()), &[]);
    let port = daemon.ntp_addr();
    // Before any source: the local fallback.
    let first = query(port).expect("answers at start");
    assert_eq!(first.reply.stratum, 10, "local stratum before GPS");
    let sim = GpsSim::start(gps.path(), 0.3, 120);
    let locked = wait_reply(port, Duration::from_secs(60), is_pps);
    assert!(locked.is_some(), "never stratum 1 / PPS:\n{}", daemon.log());

    // GPS gone. Holdover: still stratum 1 from the free-running clock,
    // with an error bound that grows at the configured rate.
    drop(sim);
    let lost_at = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(SOURCE_TIMEOUT + 1.0));
    let a = query(port).expect("answers in holdover");
    std::thread::sleep(Duration::from_secs(2));
    let b = query(port).expect("answers in holdover");
    assert!(
        lost_at.elapsed().as_secs_f64() < HOLDOVER_LIMIT,
        "the machine was too slow to observe holdover; rerun"
    );
    for x in [&a, &b] {
        assert!(is_pps(x), "holdover keeps stratum 1 / PPS: {:?}", x.reply);
        assert_eq!(x.reply.leap, LeapIndicator::NoWarning);
    }
    // At least at the configured drift rate; faster while the frequency
    // estimate is still young (this test unplugs soon after lock, when
    // the filter's frequency uncertainty still adds its own growth).
    let growth = (b.reply.root_dispersion - a.reply.root_dispersion).to_seconds_f64();
    let elapsed = (b.sent - a.sent).to_seconds_f64();
    let expected = elapsed * DRIFT_PPM * 1e-6;
    assert!(
        growth >= 0.9 * expected && growth < 0.1,
        "root dispersion grew {growth} s in {elapsed} s; expected at least {expected}"
    );

    // Past the holdover limit: the configured local stratum, no longer PPS.
    let local = wait_reply(port, Duration::from_secs_f64(HOLDOVER_LIMIT + 10.0), |x| {
        x.reply.stratum == 10
    });
    let local = local.unwrap_or_else(|| panic!("no fallback to local stratum:\n{}", daemon.log()));
    assert_eq!(local.reply.reference_id, ReferenceId::LOCAL);
    assert_eq!(local.reply.leap, LeapIndicator::NoWarning);
    // Holdover counts from the last pulse, up to a second before the
    // unplug was noticed here.
    assert!(
        lost_at.elapsed().as_secs_f64() >= HOLDOVER_LIMIT - 1.5,
        "fell back before the holdover limit"
    );

    // GPS back: stratum 1 again.
    let _sim = GpsSim::start(gps.path(), 0.3, 120);
    let back = wait_reply(port, Duration::from_secs(60), is_pps);
    assert!(back.is_some(), "PPS did not come back:\n{}", daemon.log());
    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}
