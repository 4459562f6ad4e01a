//! The GPS integrity scenarios: a spoofed, dragged or rolled-over GPS
//! caught by three authenticated upstream servers, an upstream
//! falseticker outvoted, the servers lost, and the GPS lost beyond the
//! holdover limit.

use skytime_sim::{run, Outcome, Scenario};

fn scenario(name: &str) -> Outcome {
    let sc = Scenario::integrity()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists");
    run(&sc)
}

fn raised(o: &Outcome, alarm: &str) -> Vec<f64> {
    o.alarm_events
        .iter()
        .filter(|e| e.raised && e.alarm == alarm)
        .map(|e| e.t)
        .collect()
}

/// Served from one of the simulated servers (127.0.0.3 to .5) at
/// stratum 2.
fn served_from_network(i: &skytime_sim::IntegrityOutcome) -> bool {
    i.final_stratum == 2
        && ["7F000003", "7F000004", "7F000005"].contains(&i.final_reference.as_str())
}

#[test]
fn a_stepped_gps_is_caught_within_seconds_and_never_steers() {
    let o = scenario("spoof_step");
    let i = o.integrity.as_ref().unwrap();
    let detect = i.detection_s.expect("caught");
    assert!(detect <= 5.0, "caught after {detect} s");
    assert!(i.error_at_detection_us.unwrap() < 5.0, "{i:?}");
    // The clock never followed the lie: it stays within the network's
    // accuracy (asymmetry and jitter of 0.1 ms).
    assert!(i.max_error_after_start_us.unwrap() < 200.0, "{i:?}");
    assert!(served_from_network(i), "{i:?}");
    assert_eq!(i.bound_violations, 0);
    let reason = i.alarm_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("GPS disagrees with 3 NTS sources by +1.204 s"),
        "{reason}"
    );
    assert_eq!(raised(&o, "gps_disagrees"), vec![3600.0 + detect]);
}

#[test]
fn a_slow_drag_is_caught_within_its_documented_bound() {
    let o = scenario("spoof_drag");
    let i = o.integrity.as_ref().unwrap();
    // 10 us/s: caught once the GPS is off by bound (1 ms) + the servers'
    // root distance and noise (under 2 ms here): within 300 s, at most
    // 3 ms off.
    let detect = i.detection_s.expect("caught");
    assert!(detect <= 300.0, "caught after {detect} s");
    assert!(i.error_at_detection_us.unwrap() < 3000.0, "{i:?}");
    assert!(served_from_network(i), "{i:?}");
    assert!(i.rms_error_last_hour_us < 100.0, "{i:?}");
    assert_eq!(i.bound_violations, 0);
    assert!(i
        .alarm_reason
        .as_deref()
        .unwrap()
        .contains("NTS sources by +"));
}

#[test]
fn a_rolled_over_gps_is_refused() {
    let o = scenario("gps_rollover");
    let i = o.integrity.as_ref().unwrap();
    assert!(i.detection_s.unwrap() <= 5.0, "{i:?}");
    assert!(i.max_error_after_start_us.unwrap() < 200.0, "{i:?}");
    assert!(served_from_network(i), "{i:?}");
    assert!(i
        .alarm_reason
        .as_deref()
        .unwrap()
        .contains("by -619315200.000 s"));
}

#[test]
fn a_falseticker_server_is_outvoted_and_the_gps_keeps_steering() {
    let o = scenario("upstream_falseticker");
    let i = o.integrity.as_ref().unwrap();
    assert!(!i.distrusted, "{i:?}");
    assert_eq!(i.falsetickers, vec![4], "server 2 (source 4) is 50 ms off");
    assert!(o.pps_always_selected);
    assert_eq!((i.final_stratum, i.final_reference.as_str()), (1, "PPS"));
    assert_eq!(raised(&o, "upstream_falseticker").len(), 1);
    assert!(raised(&o, "gps_disagrees").is_empty());
}

#[test]
fn losing_every_server_leaves_the_gps_in_charge_and_says_so() {
    let o = scenario("upstream_lost");
    let i = o.integrity.as_ref().unwrap();
    assert!(!i.distrusted);
    assert!(o.pps_always_selected);
    let r = raised(&o, "upstream_unreachable");
    assert_eq!(r.len(), 1, "{:?}", o.alarm_events);
    assert!(r[0] > 3600.0 && r[0] < 3600.0 + 120.0, "{r:?}");
    assert!(o.rms_offset_ns < 1000.0, "{o:?}");
}

#[test]
fn without_gps_beyond_holdover_the_servers_give_stratum_2() {
    let o = scenario("gps_lost_fallback");
    let i = o.integrity.as_ref().unwrap();
    // The free-running clock is better than the servers for a while;
    // they take over well before the four-hour holdover limit.
    let takeover = i.detection_s.expect("the network took over");
    assert!(takeover > 60.0 && takeover < 3600.0, "{takeover}");
    let (stratum, reference) = i.beyond_holdover.clone().expect("measured");
    assert_eq!(stratum, 2, "not the local stratum: {reference}");
    assert!(reference.starts_with("7F0000"), "{reference}");
    assert!(i.max_error_after_start_us.unwrap() < 500.0, "{i:?}");
    assert_eq!(i.bound_violations, 0);
    // The GPS came back and steers again; it never disagreed.
    assert_eq!((i.final_stratum, i.final_reference.as_str()), (1, "PPS"));
    assert!(!i.distrusted);
    assert!(raised(&o, "holdover_limit_reached").is_empty());
}
