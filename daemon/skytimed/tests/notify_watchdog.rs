//! sd_notify: READY, STATUS and WATCHDOG arrive on a socket of the test's
//! own, and WATCHDOG stops once a registered loop hangs (through the
//! test-only SKYTIME_TEST_HANG trigger, which blocks the loop's thread for
//! good, like a wedged driver call).

use skytime_tests::standin::StandIn;
use skytimed::notify::{self, Health, Notifier};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn recv_all(rx: &UnixDatagram, for_how_long: Duration) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + for_how_long;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        rx.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        if let Ok(n) = rx.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    out
}

#[test]
fn ready_status_and_watchdog_that_stops_when_a_loop_hangs() {
    // Only this test runs in this binary, so setting the variable is safe.
    std::env::set_var(notify::TEST_HANG_ENV, "worker:2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    let notifier = Arc::new(Notifier::to_socket(path.to_str().unwrap()).unwrap());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let health = Health::new();
    let beat = health.register("worker", Duration::from_millis(1000));
    // The "main loop": beats every 100 ms on its own thread until it hangs.
    std::thread::spawn(move || loop {
        beat.beat();
        std::thread::sleep(Duration::from_millis(100));
    });

    notifier.ready();
    let backend = StandIn::example();
    rt.spawn(notify::run_status(
        notifier.clone(),
        backend,
        Duration::from_millis(200),
        shutdown.clone(),
    ));
    let watchdog = notify::spawn_watchdog_thread(
        notifier.clone(),
        health,
        Duration::from_millis(400),
        shutdown.clone(),
    )
    .unwrap();

    let msgs = recv_all(&rx, Duration::from_secs(7));
    shutdown.cancel();
    watchdog.join().unwrap();
    let texts: Vec<&str> = msgs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(texts.first(), Some(&"READY=1"), "{texts:?}");
    assert!(
        texts.contains(&"STATUS=stratum 1, PPS, offset +12 ns, 0 clients"),
        "{texts:?}"
    );
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 3,
        "the watchdog was petted while the loop was healthy: {texts:?}"
    );
    let start = msgs[0].0;
    // The loop hangs 2 s after Health::new() and promised to beat every
    // 1 s; with a 0.2 s watchdog tick no WATCHDOG may follow after 4.5 s,
    // and the 2.5 s after that must be silent.
    let late: Vec<Duration> = pings
        .iter()
        .map(|t| t.duration_since(start))
        .filter(|d| *d > Duration::from_millis(4500))
        .collect();
    assert!(
        late.is_empty(),
        "WATCHDOG=1 kept coming after the loop hung: {late:?}"
    );
}
