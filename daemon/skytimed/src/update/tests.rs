//! The update service's answers before RAUC has been found (no bus needed:
//! the driver's part is played by the test).

use super::{driver, Updater};
use crate::update::config::UpdateConfig;
use skytime_api::ApiError;
use std::time::Duration;

fn updater(dir: &tempfile::TempDir, enabled: bool) -> std::sync::Arc<Updater> {
    Updater::new(UpdateConfig {
        enabled,
        state_file: dir.path().join("update-state.json"),
        download_dir: dir.path().join("downloads"),
        ..UpdateConfig::default()
    })
}

/// `Check`'s refusal, and how long (in paused time) it took to come.
async fn refused_check(u: &Updater) -> (String, Duration) {
    let started = tokio::time::Instant::now();
    match u.check("/nonexistent.raucb").await {
        Err(ApiError::UpdateUnavailable(why)) => (why, started.elapsed()),
        other => panic!("expected UpdateUnavailable, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_just_after_start_waits_for_the_first_look_for_rauc() {
    let dir = tempfile::tempdir().unwrap();
    let u = updater(&dir, true);
    let driver = u.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        driver.with_view(|v| v.unavailable = "RAUC is not on the bus (test)".into());
        driver.looked.send_replace(true);
    });
    let (why, took) = refused_check(&u).await;
    assert_eq!(why, "RAUC is not on the bus (test)");
    assert_eq!(took, Duration::from_secs(3));
    // Once looked for, the answer is at once.
    let (_, took) = refused_check(&u).await;
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_the_first_look_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let u = updater(&dir, true);
    let (why, took) = refused_check(&u).await;
    assert!(why.contains("has not been looked for yet"), "{why}");
    assert_eq!(took, driver::FIRST_LOOK_WAIT);
}

#[tokio::test(start_paused = true)]
async fn disabled_updates_answer_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let u = updater(&dir, false);
    let (why, took) = refused_check(&u).await;
    assert!(why.contains("updates are disabled"), "{why}");
    assert_eq!(took, Duration::ZERO);
}
