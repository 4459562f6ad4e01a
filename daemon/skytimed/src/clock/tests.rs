//! Tests of the daemon side of the discipline, all in measure-only mode:
//! nothing here may steer this machine's clock.

use super::*;
use skytime_discipline::SourceKind;

#[test]
fn config_defaults_parse_and_ranges_are_checked() {
    let c: ClockConfig = toml::from_str("").unwrap();
    assert_eq!(c, ClockConfig::default());
    assert!(c.steer, "the appliance default steers");
    let c: ClockConfig = toml::from_str("steer = false\nleap_mode = \"smear\"\nsmear_shape = \"linear\"\nsmear_hours = 12\nholdover_limit = 3600").unwrap();
    assert!(!c.steer);
    let d = c.discipline(Some(10), -20);
    assert_eq!(
        d.leap_mode,
        LeapMode::Smear {
            shape: SmearShape::Linear,
            duration_s: 43_200.0
        }
    );
    assert_eq!(d.local_stratum, Some(10));
    let e = toml::from_str::<ClockConfig>("max_slew_ppm = 900")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_slew_ppm"), "{e}");
    assert!(
        toml::from_str::<ClockConfig>("stear = false").is_err(),
        "unknown keys are refused"
    );
    assert!(toml::from_str::<ClockConfig>("leap_mode = \"jump\"").is_err());
    assert!(toml::from_str::<ClockConfig>("makestep_limit = -5").is_err());
}

#[test]
fn drift_file_round_trip_and_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(DRIFT_FILE);
    assert_eq!(load_drift(&p), None);
    let d = Drift {
        freq_ppm: 12.5,
        skew_ppm: 0.01,
    };
    save_drift(&p, &d).unwrap();
    assert_eq!(load_drift(&p), Some(d));
    std::fs::write(&p, "not a number").unwrap();
    assert_eq!(load_drift(&p), None);
}

#[test]
fn leap_table_loads_from_tzdata_or_reports_absence() {
    let now = NtpTimestamp::from_unix(1_700_000_000, 0);
    assert!(load_leap_table(Path::new("/nonexistent/leap-seconds.list"), now).is_none());
    if Path::new("/usr/share/zoneinfo/leap-seconds.list").exists() {
        let t = load_leap_table(Path::new("/usr/share/zoneinfo/leap-seconds.list"), now)
            .expect("system table");
        assert!(t.entries.len() >= 28);
    }
}

/// The discipline task running measure-only (never steering) on `inputs`.
struct Running {
    task: tokio::task::JoinHandle<Result<(), ClockError>>,
    token: CancellationToken,
    status: ClockStatus,
    sync_rx: watch::Receiver<SyncState>,
}

fn measure_only(data_dir: &std::path::Path, inputs: Inputs) -> Running {
    let cfg = ClockConfig {
        steer: false,
        ..ClockConfig::default()
    };
    let (sync_tx, sync_rx) = watch::channel(SyncState::unsynchronized(-20));
    let token = CancellationToken::new();
    let status = ClockStatus::new();
    let task = tokio::spawn(run_with_status(
        cfg,
        data_dir.to_path_buf(),
        None,
        inputs,
        sync_tx,
        token.clone(),
        status.clone(),
    ));
    Running {
        task,
        token,
        status,
        sync_rx,
    }
}

/// Shuts the task down and requires it to end cleanly.
async fn stop(token: CancellationToken, task: tokio::task::JoinHandle<Result<(), ClockError>>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// With no GPS and no upstream server both inputs close at once; the
/// discipline must go on publishing (the watchdog reads its snapshots)
/// until shutdown.
#[tokio::test]
async fn runs_on_with_both_inputs_closed_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (_, samples) = mpsc::channel(1);
    let (_, network) = mpsc::channel(1);
    let Running {
        task,
        token,
        status,
        ..
    } = measure_only(dir.path(), Inputs { samples, network });
    // Three distinct snapshots over a few ticks: the loop keeps running.
    let mut seen = Vec::new();
    for _ in 0..50 {
        if let Some(at) = status.snapshot().map(|s| s.at) {
            if seen.last() != Some(&at) {
                seen.push(at);
            }
        }
        if seen.len() >= 3 {
            break;
        }
        assert!(!task.is_finished(), "the discipline stopped on its own");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "snapshots stopped after {seen:?}");
    stop(token, task).await;
}

#[tokio::test]
async fn measure_only_task_serves_from_samples_and_never_steers() {
    let before = KernelClock::query().unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(16);
    let (_net_tx, network) = mpsc::channel(1);
    let Running {
        task,
        token,
        status,
        mut sync_rx,
    } = measure_only(
        dir.path(),
        Inputs {
            samples: rx,
            network,
        },
    );
    let clock = KernelClock::new(false);
    // Samples that say the host clock is right (offset 2 us), as a PPS would.
    for _ in 0..6 {
        let now = clock.now().unwrap();
        tx.send(Sample {
            source: 0,
            kind: SourceKind::Pps,
            local_time: now,
            offset: NtpDuration::from_nanos(2_000),
            dispersion: NtpDuration::from_nanos(1_000),
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(
        Duration::from_secs(5),
        sync_rx.wait_for(|s| s.is_synchronized()),
    )
    .await
    .expect("synchronized in time")
    .unwrap();
    let s = *sync_rx.borrow();
    assert_eq!(s.stratum, 1);
    assert_eq!(s.reference_id, skytime_proto::ReferenceId::PPS);
    // Measure-only: the unsteered offset is part of the error bound.
    assert!(s.root_dispersion.to_seconds_f64() >= 1.9e-6, "{s:?}");
    let snap = status.snapshot().expect("snapshot published");
    assert!(!snap.tracking.steering);
    assert_eq!(snap.sources.len(), 1);
    assert_eq!(
        snap.sources[0].state,
        skytime_discipline::SelectState::Selected
    );
    stop(token, task).await;
    let after = KernelClock::query().unwrap().0;
    assert_eq!(
        before.freq, after.freq,
        "the kernel frequency was not touched"
    );
    assert_eq!(before.status & libc::STA_INS, after.status & libc::STA_INS);
}
