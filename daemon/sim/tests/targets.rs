//! The discipline's targets, asserted on the simulator's scenarios.
//! (Each scenario takes well under a second in release, a few in debug.)

use skytime_sim::{run, Scenario};

fn scenario(name: &str) -> Scenario {
    Scenario::all()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists")
}

fn common(o: &skytime_sim::Outcome) {
    assert_eq!(o.steps_after_lock, 0, "{}: no step after lock", o.name);
    assert!(
        o.rms_over_floor <= 1.5,
        "{}: RMS {:.0} ns is {:.2}x the floor {:.0} ns",
        o.name,
        o.rms_offset_ns,
        o.rms_over_floor,
        o.floor_ns
    );
}

#[test]
fn anchor_beats_chrony() {
    let o = run(&Scenario::anchor(1e-9));
    common(&o);
    assert!(o.lock_time_s.is_some_and(|l| l <= 60.0), "{o:?}");
    assert!(o.rms_offset_ns <= 250.0, "{o:?}");
    let o = run(&Scenario::anchor(1e-8));
    common(&o);
    assert!(o.lock_time_s.is_some_and(|l| l <= 60.0), "{o:?}");
    assert!(o.rms_offset_ns <= 450.0, "{o:?}");
}

#[test]
fn cold_and_warm_start_lock_in_time() {
    let cold = run(&scenario("cold_start"));
    common(&cold);
    assert!(cold.lock_time_s.is_some_and(|l| l <= 180.0), "{cold:?}");
    let warm = run(&scenario("warm_start"));
    common(&warm);
    assert!(warm.lock_time_s.is_some_and(|l| l <= 60.0), "{warm:?}");
}

#[test]
fn holdover_keeps_time_and_an_honest_bound() {
    let o = run(&scenario("holdover_1h"));
    common(&o);
    let err = o.holdover_error_us_after_1h.expect("measured");
    let bound = o.holdover_bound_us_after_1h.expect("measured");
    // The model's walk and 1 ppm/day swing give some hundreds of us.
    assert!(err < 2_000.0, "holdover error {err} us");
    assert!(
        bound > err,
        "the served error bound {bound} us must cover the error {err} us"
    );
}

#[test]
fn leap_second_is_armed_announced_and_smeared() {
    let o = run(&scenario("leap_insert"));
    common(&o);
    assert_eq!(o.kernel_leaps_applied, Some(1));
    assert_eq!(o.leap_announced, Some(true));
    let s = run(&scenario("leap_smear"));
    common(&s);
    assert_eq!(s.kernel_leaps_applied, Some(1));
    assert_eq!(
        s.leap_announced,
        Some(false),
        "a smearing server must not announce"
    );
    // Cosine over 4 h: peak slope pi/2/14400 s = 109 ppm; a 1 s jump
    // would show as 1e6 ppm.
    assert!(
        s.max_smear_rate_error_ppm.is_some_and(|r| r < 120.0),
        "{s:?}"
    );
}

#[test]
fn outliers_and_nmea_garbage_are_contained() {
    let o = run(&scenario("pps_outliers"));
    common(&o);
    assert!(o.outliers_rejected > 50, "{o:?}");
    let g = run(&scenario("nmea_garbage"));
    common(&g);
    // PPS stays selected, and the NMEA source that reports the wrong second
    // for ten minutes is flagged as a falseticker.
    assert!(g.pps_always_selected, "{g:?}");
    assert_eq!(g.nmea_falseticker_seen, Some(true), "{g:?}");
}
