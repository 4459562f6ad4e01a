//! The refclock I/O module against the GPS simulator over a real
//! pseudo-terminal and a real Unix datagram socket.
//!
//! Needs the simulator binary: `cargo build -p skytime-gpssim` (the same
//! target directory as this test).

use skytime_discipline::{Sample, SourceKind};
use skytime_proto::{NtpDuration, SyncState};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::wait_until_async;
use skytimed::refclock::{RefclockConfig, Refclocks, SourceId};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The simulator on `dir` (pty `dir/gps`, SOCK `dir/pps.sock`) with its
/// own options.
fn sim(dir: &Path, args: &[&str]) -> GpsSim {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    GpsSim::with_args(dir, &args)
}

fn config(dir: &Path, extra: &str) -> RefclockConfig {
    let text = format!(
        "device = \"{}\"\nsock = \"{}\"\nreopen_max_backoff = 0.5\n{extra}",
        GpsSim::device(dir).display(),
        GpsSim::sock(dir).display()
    );
    toml::from_str(&text).unwrap()
}

/// Collects samples until `deadline` or until `done` says enough.
async fn collect(
    rx: &mut mpsc::Receiver<Sample>,
    limit: Duration,
    mut done: impl FnMut(&[Sample]) -> bool,
) -> Vec<Sample> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while Instant::now() < end && !done(&out) {
        if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            out.push(s);
        }
    }
    out
}

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_feeds_paired_pps_and_nmea_and_survives_an_unplug() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    let stop = CancellationToken::new();
    // The socket must exist before the simulator sends pulses.
    let clocks = Refclocks::start(&config(dir.path(), ""), tx, stop.clone())
        .await
        .unwrap();
    let _sim = sim(
        dir.path(),
        &[
            "--nmea-delay",
            "0.35",
            "--nmea-jitter",
            "0.002",
            "--pps-jitter",
            "0.00001",
            "--duration",
            "40",
            "--fail-after",
            "9",
            "--down-for",
            "4",
            "--garbage-every",
            "3",
            "--bad-checksum-every",
            "4",
        ],
    );

    let samples = collect(&mut rx, Duration::from_secs(9), |s| {
        s.iter().filter(|x| x.kind == SourceKind::Pps).count() >= 5
    })
    .await;
    let pps: Vec<_> = samples
        .iter()
        .filter(|s| s.kind == SourceKind::Pps)
        .collect();
    let nmea: Vec<_> = samples
        .iter()
        .filter(|s| s.kind == SourceKind::Nmea)
        .collect();
    assert!(pps.len() >= 5, "PPS samples: {}", pps.len());
    // True time is the host clock: PPS offsets are the simulated jitter.
    for s in &pps {
        assert_eq!(s.source, SourceId::Pps.index());
        assert!(secs(s.offset).abs() < 1e-4, "PPS offset {}", secs(s.offset));
    }
    assert!(!nmea.is_empty());
    let status = clocks.status();
    let delay = status.delay.estimated.expect("delay estimated");
    eprintln!(
        "estimated NMEA-to-PPS delay {delay:.4} s (simulated 0.35), spread {:?}",
        status.delay.spread
    );
    assert!((delay - 0.35).abs() < 0.03, "estimated delay {delay}");
    // Once the delay is known, NMEA alone is good to milliseconds.
    let late_nmea: Vec<_> = collect(&mut rx, Duration::from_secs(3), |s| {
        s.iter().filter(|x| x.kind == SourceKind::Nmea).count() >= 2
    })
    .await
    .into_iter()
    .filter(|s| s.kind == SourceKind::Nmea)
    .collect();
    assert!(!late_nmea.is_empty());
    for s in &late_nmea {
        assert_eq!(s.source, SourceId::Nmea.index());
        assert!(
            secs(s.offset).abs() < 0.03,
            "NMEA offset {}",
            secs(s.offset)
        );
    }
    let status = clocks.status();
    assert!(status.source(SourceId::Pps).unwrap().reachable());
    assert!(status.source(SourceId::Nmea).unwrap().connected);
    assert_eq!(status.fix.satellites, Some(8));
    assert!(status.bad_checksums >= 1, "{status:?}");
    assert!(status.lines.garbage_bytes > 0);

    // Unplug: the NMEA source goes unreachable, the module keeps running.
    let down = wait_until_async(Duration::from_secs(8), || {
        while rx.try_recv().is_ok() {}
        let n = clocks.status().source(SourceId::Nmea).cloned()?;
        (!n.connected && !n.reachable()).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("NMEA never went unreachable: {:?}", clocks.status()));
    assert!(down.last_error.is_some());

    // ... and comes back when the simulator does.
    while rx.try_recv().is_ok() {}
    let back = collect(&mut rx, Duration::from_secs(15), |s| {
        s.iter().filter(|x| x.kind == SourceKind::Pps).count() >= 2
    })
    .await;
    assert!(
        back.iter().filter(|s| s.kind == SourceKind::Pps).count() >= 2,
        "no PPS after the simulator returned"
    );
    let s = clocks.status();
    let nmea = s.source(SourceId::Nmea).unwrap();
    assert!(nmea.connected && nmea.reachable());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pps_carries_on_through_an_nmea_gap_only_when_synchronized() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    let stop = CancellationToken::new();
    let mut synced = SyncState::unsynchronized(-20);
    synced.stratum = 1;
    synced.leap = skytime_proto::LeapIndicator::NoWarning;
    let (_sync_tx, sync_rx) = watch::channel(synced);
    let clocks = Refclocks::start_with_sync(
        &config(dir.path(), "nmea_delay = 0.5\n"),
        tx,
        Some(sync_rx),
        stop.clone(),
    )
    .await
    .unwrap();
    let _sim = sim(
        dir.path(),
        &[
            "--nmea-delay",
            "0.5",
            "--duration",
            "30",
            "--nmea-gap-at",
            "5",
            "--nmea-gap-for",
            "4",
            "--leap-at",
            "3",
        ],
    );
    // The leap second comes at 3 s, the NMEA gap from 5 s to 9 s.
    let samples = collect(&mut rx, Duration::from_secs(20), |_| {
        let p = clocks.status().pairing;
        p.holdover >= 2 && p.rejected_leap >= 1
    })
    .await;
    let st = clocks.status();
    eprintln!("pairing {:?}", st.pairing);
    assert!(st.pairing.holdover >= 2, "{:?}", st.pairing);
    assert_eq!(st.pairing.rejected_leap, 1, "{:?}", st.pairing);
    assert_eq!(st.nmea_clock.leap_seconds, 1);
    assert!(st.delay.configured && st.delay.value == Some(0.5));
    let pps: Vec<_> = samples
        .iter()
        .filter(|s| s.kind == SourceKind::Pps)
        .collect();
    assert!(pps.iter().all(|s| secs(s.offset).abs() < 1e-4));
    stop.cancel();
}

#[tokio::test]
async fn a_wrong_pps_device_is_reported_and_nothing_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let gpio = dir.path().join("gpiochip-missing");
    let cfg: RefclockConfig =
        toml::from_str("pps = \"/dev/null\"\nreopen_max_backoff = 0.5\n").unwrap();
    let clocks = Refclocks::start(&cfg, tx.clone(), stop.clone())
        .await
        .unwrap();
    let cfg2: RefclockConfig = toml::from_str(&format!(
        "pps_gpio = {{ chip = \"{}\", line = 4 }}\n",
        gpio.display()
    ))
    .unwrap();
    let clocks2 = Refclocks::start(&cfg2, tx, stop.clone()).await.unwrap();
    let error = |c: &Refclocks| c.status().source(SourceId::Pps)?.last_error.clone();
    let pps = wait_until_async(Duration::from_secs(5), || error(&clocks))
        .await
        .unwrap_or_else(|| panic!("no PPS error reported: {:?}", clocks.status()));
    assert!(pps.contains("PPS_GETCAP"), "{pps}");
    assert!(!clocks.status().source(SourceId::Pps).unwrap().connected);
    let gpio = wait_until_async(Duration::from_secs(5), || error(&clocks2))
        .await
        .unwrap_or_else(|| panic!("no GPIO error reported: {:?}", clocks2.status()));
    assert!(gpio.contains("cannot open"), "{gpio}");
    let both: Result<RefclockConfig, _> =
        toml::from_str("pps = \"/dev/pps0\"\npps_gpio = { line = 4 }\n");
    let (tx, _rx) = mpsc::channel(1);
    assert!(Refclocks::start(&both.unwrap(), tx, stop.clone())
        .await
        .is_err());
    stop.cancel();
}
