use super::*;
use proptest::prelude::*;

const T0: i64 = 1_800_000_000;

fn names(a: &Alarms) -> Vec<&'static str> {
    a.active().iter().map(|x| x.kind.name()).collect()
}

fn gps(lines: u64, fix: bool, pulses: u64, accepted: u64) -> GpsObservation {
    GpsObservation {
        nmea_lines: Some(lines),
        fix_valid: fix,
        satellites: Some(if fix { 8 } else { 2 }),
        pps: Some(PpsCounters { pulses, accepted }),
        pps_device: Some("/dev/pps0".into()),
        nmea_device: Some("/dev/ttyAMA0".into()),
    }
}

/// A healthy receiver at second `k` after T0 (every counter moves).
fn healthy(k: i64) -> Observation {
    let n = k as u64;
    Observation {
        gps: Some(gps(3 * n, true, n, n)),
        ..Observation::at(T0 + k)
    }
}

#[test]
fn a_start_is_not_synchronized_until_the_clock_follows_a_source() {
    let mut a = Alarms::new(AlarmConfig::default());
    let mut o = healthy(0);
    o.clock.mode = ClockMode::Startup;
    o.clock.served_stratum = 16;
    let ch = a.observe(&o);
    assert_eq!(ch.len(), 1);
    assert!(ch[0].raised && ch[0].kind == AlarmKind::NotSynchronized);
    assert_eq!(ch[0].alarm.severity, Severity::Critical);
    assert!(ch[0].alarm.reason.contains("stratum 16"), "{:?}", ch[0]);
    for k in 1..30 {
        let mut o = healthy(k);
        o.clock.mode = ClockMode::Startup;
        o.clock.served_stratum = 16;
        assert!(a.observe(&o).is_empty(), "nothing new at {k}");
        assert_eq!(a.active()[0].since, T0, "since stays where it began");
    }
    let ch = a.observe(&healthy(30));
    assert_eq!(ch.len(), 1);
    assert!(!ch[0].raised && ch[0].kind == AlarmKind::NotSynchronized);
    assert!(a.active().is_empty());
}

#[test]
fn a_local_stratum_fallback_is_not_synchronized_to_a_source() {
    let mut a = Alarms::new(AlarmConfig::default());
    let mut o = Observation::at(T0);
    o.clock.mode = ClockMode::Startup;
    o.clock.served_stratum = 10;
    a.observe(&o);
    assert_eq!(names(&a), ["not_synchronized"]);
    assert!(a.active()[0].reason.contains("local clock at stratum 10"));
}

#[test]
fn nmea_silence_raises_after_the_grace_period_and_clears_when_lines_flow() {
    let cfg = AlarmConfig::default();
    let mut a = Alarms::new(cfg);
    // Nothing ever arrives: no alarm in the first silence_s seconds.
    for k in 0..cfg.silence_s {
        let mut o = Observation::at(T0 + k);
        o.gps = Some(gps(0, false, k as u64, 0));
        a.observe(&o);
        assert!(!names(&a).contains(&"nmea_missing"), "at {k}");
    }
    let mut o = Observation::at(T0 + cfg.silence_s);
    o.gps = Some(gps(0, false, cfg.silence_s as u64, 0));
    a.observe(&o);
    assert_eq!(names(&a), ["nmea_missing"], "fix and PPS follow from it");
    assert_eq!(a.active()[0].since, T0);
    assert!(a.active()[0].reason.contains("/dev/ttyAMA0"));
    let mut o = Observation::at(T0 + 20);
    o.gps = Some(gps(5, true, 20, 1));
    let ch = a.observe(&o);
    assert!(ch
        .iter()
        .any(|c| !c.raised && c.kind == AlarmKind::NmeaMissing));
    assert!(a.active().is_empty());
}

#[test]
fn no_fix_is_reported_while_nmea_flows_and_rejected_pulses_are_its_consequence() {
    let cfg = AlarmConfig::default();
    let mut a = Alarms::new(cfg);
    for k in 0..=cfg.silence_s + 5 {
        let mut o = healthy(k);
        // Lines flow, no fix; pulses arrive and are not used.
        o.gps = Some(gps(3 * k as u64, false, k as u64, 0));
        a.observe(&o);
    }
    assert_eq!(names(&a), ["no_gps_fix"]);
    assert_eq!(a.active()[0].since, T0);
    assert!(a.active()[0].reason.contains("2 satellites"));
}

#[test]
fn pps_missing_and_pps_rejected() {
    let cfg = AlarmConfig::default();
    let mut a = Alarms::new(cfg);
    for k in 0..=20 {
        a.observe(&healthy(k));
    }
    assert!(a.active().is_empty());
    // The pulses stop.
    for k in 21..=40 {
        let mut o = healthy(k);
        o.gps = Some(gps(3 * k as u64, true, 20, 20));
        a.observe(&o);
    }
    assert_eq!(names(&a), ["pps_missing"]);
    assert_eq!(a.active()[0].since, T0 + 20, "the last pulse");
    // They come back but none is accepted.
    for k in 41..=60 {
        let mut o = healthy(k);
        o.gps = Some(gps(3 * k as u64, true, k as u64, 20));
        a.observe(&o);
    }
    assert_eq!(names(&a), ["pps_rejected"]);
    assert_eq!(a.active()[0].since, T0 + 20, "the last accepted pulse");
    let mut o = healthy(61);
    o.gps = Some(gps(183, true, 61, 21));
    a.observe(&o);
    assert!(a.active().is_empty());
}

#[test]
fn holdover_then_its_limit_then_recovery() {
    let mut a = Alarms::new(AlarmConfig::default());
    a.observe(&healthy(0));
    let mut o = Observation::at(T0 + 100);
    o.clock.mode = ClockMode::Holdover { since: T0 + 92 };
    a.observe(&o);
    assert_eq!(names(&a), ["holdover"]);
    assert_eq!(a.active()[0].since, T0 + 92);
    let mut o = Observation::at(T0 + 200);
    o.clock.mode = ClockMode::Lost;
    o.clock.served_stratum = 16;
    let ch = a.observe(&o);
    assert_eq!(names(&a), ["not_synchronized", "holdover_limit_reached"]);
    assert_eq!(ch.len(), 3, "holdover cleared, two raised: {ch:?}");
    a.observe(&Observation::at(T0 + 300));
    assert!(a.active().is_empty());
}

#[test]
fn certificate_alarms_have_stable_instants() {
    let cfg = AlarmConfig::default();
    let mut a = Alarms::new(cfg);
    let not_after = T0 + 10 * 86_400;
    let mut o = Observation::at(T0);
    o.certificate_not_after = Some(not_after);
    a.observe(&o);
    assert_eq!(names(&a), ["certificate_expiring"]);
    assert_eq!(a.active()[0].since, not_after - cfg.certificate_warning_s);
    assert!(a.active()[0].reason.contains("10 days"));
    o.now = not_after;
    a.observe(&o);
    assert_eq!(names(&a), ["certificate_expired"]);
    assert_eq!(a.active()[0].since, not_after);
    // Far from expiry: nothing.
    o.certificate_not_after = Some(not_after + 365 * 86_400);
    a.observe(&o);
    assert!(a.active().is_empty());
}

#[test]
fn an_expired_leap_table_keeps_its_first_instant() {
    let mut a = Alarms::new(AlarmConfig::default());
    let mut o = Observation::at(T0);
    o.leap_table_expired = Some(true);
    a.observe(&o);
    o.now += 50;
    assert!(a.observe(&o).is_empty());
    assert_eq!(a.active()[0].since, T0);
    o.leap_table_expired = Some(false);
    a.observe(&o);
    assert!(a.active().is_empty());
}

#[test]
fn steps_count_only_after_lock_and_are_reported_for_an_hour() {
    let cfg = AlarmConfig::default();
    let mut a = Alarms::new(cfg);
    // Steps at start (makestep) are normal.
    for (k, steps) in [(0, 0), (1, 1), (2, 2)] {
        let mut o = Observation::at(T0 + k);
        o.clock.steps = steps;
        a.observe(&o);
    }
    assert!(a.active().is_empty());
    let mut o = Observation::at(T0 + 2 + cfg.lock_after_s);
    o.clock.steps = 2;
    a.observe(&o);
    o.now += 1;
    o.clock.steps = 3;
    a.observe(&o);
    assert_eq!(names(&a), ["clock_stepped"]);
    let at = o.now;
    o.now = at + cfg.step_hold_s - 1;
    a.observe(&o);
    assert_eq!(a.active()[0].since, at);
    o.now = at + cfg.step_hold_s;
    a.observe(&o);
    assert!(a.active().is_empty());
}

#[test]
fn update_problems_come_through_the_hook() {
    let mut a = Alarms::new(AlarmConfig::default());
    let mut o = Observation::at(T0);
    o.update = Some(UpdateProblem::RolledBack {
        at: T0 - 60,
        reason: "slot B did not come up healthy".into(),
    });
    a.observe(&o);
    assert_eq!(names(&a), ["update_rolled_back"]);
    assert_eq!(a.active()[0].since, T0 - 60);
    assert!(a.active()[0].reason.contains("slot B"));
    o.update = Some(UpdateProblem::Failed {
        at: T0,
        reason: "bundle signature".into(),
    });
    a.observe(&o);
    assert_eq!(names(&a), ["update_failed"]);
}

#[test]
fn names_are_unique_and_round_trip() {
    let mut seen = std::collections::HashSet::new();
    for k in AlarmKind::ALL {
        assert!(seen.insert(k.name()), "{k:?}");
        assert_eq!(AlarmKind::from_name(k.name()), Some(k));
    }
    assert_eq!(AlarmKind::from_name("nope"), None);
}

#[test]
fn a_gps_that_disagrees_with_the_network_is_critical_and_named() {
    let mut a = Alarms::new(AlarmConfig::default());
    let mut o = healthy(0);
    o.integrity = Some(IntegrityObservation::default());
    o.upstream = Some(UpstreamObservation {
        configured: 3,
        reachable: 3,
        falsetickers: vec![],
    });
    assert!(a.observe(&o).is_empty(), "a trusted GPS raises nothing");
    let mut o = healthy(1);
    o.integrity = Some(IntegrityObservation {
        distrust: Some(GpsDistrust::Disagrees {
            witnesses: 3,
            against: 3,
            by_ns: 1_204_000_000,
            witness_kind: "NTS".into(),
        }),
        since: T0 + 1,
        serving: "the network sources".into(),
    });
    let ch = a.observe(&o);
    assert_eq!(ch.len(), 1);
    let alarm = &ch[0].alarm;
    assert_eq!(
        (alarm.kind, alarm.severity, alarm.since),
        (AlarmKind::GpsDisagrees, Severity::Critical, T0 + 1)
    );
    assert!(
        alarm
            .reason
            .starts_with("GPS disagrees with 3 NTS sources by +1.204 s"),
        "{}",
        alarm.reason
    );
    assert!(alarm.reason.contains("serving the network sources"));
    // A refused jump, with one witness of two against.
    o.integrity = Some(IntegrityObservation {
        distrust: Some(GpsDistrust::Jumped {
            by_ns: -619_315_200_000_000_000,
        }),
        since: T0 + 2,
        serving: "unsynchronized".into(),
    });
    a.observe(&o);
    assert_eq!(names(&a), ["gps_jumped"]);
    assert!(
        a.active()[0].reason.contains("-619315200.000 s"),
        "{:?}",
        a.active()
    );
    o.integrity = Some(IntegrityObservation::default());
    let ch = a.observe(&o);
    assert!(ch.len() == 1 && !ch[0].raised);
    assert_eq!(signed_seconds(-2_500_000), "-2.500 ms");
    assert_eq!(signed_seconds(12_300), "+12.3 us");
}

#[test]
fn upstream_sources_silent_or_false_are_warned_about() {
    let mut a = Alarms::new(AlarmConfig::default());
    let up = |reachable, falsetickers: &[&str]| UpstreamObservation {
        configured: 3,
        reachable,
        falsetickers: falsetickers.iter().map(|s| (*s).to_owned()).collect(),
    };
    for k in 0..10 {
        let mut o = healthy(k);
        o.upstream = Some(up(0, &[]));
        a.observe(&o);
        assert!(names(&a).is_empty(), "silence is allowed its grace period");
    }
    let mut o = healthy(10);
    o.upstream = Some(up(0, &[]));
    a.observe(&o);
    assert_eq!(names(&a), ["upstream_unreachable"]);
    assert_eq!(a.active()[0].since, T0);
    assert_eq!(a.active()[0].severity, Severity::Warning);
    let mut o = healthy(11);
    o.upstream = Some(up(3, &["ntp2.example"]));
    a.observe(&o);
    assert_eq!(names(&a), ["upstream_falseticker"]);
    assert!(a.active()[0]
        .reason
        .contains("ntp2.example disagrees with the others"));
    // Without upstream sources configured there is nothing to say.
    let mut o = healthy(12);
    o.upstream = None;
    a.observe(&o);
    assert!(names(&a).is_empty());
}

fn mode() -> impl Strategy<Value = ClockMode> {
    prop_oneof![
        Just(ClockMode::Startup),
        Just(ClockMode::Tracking),
        (0i64..50).prop_map(|d| ClockMode::Holdover { since: T0 - d }),
        Just(ClockMode::Lost),
    ]
}

proptest! {
    /// Whatever is observed: the active set has each kind once, is in
    /// report order, says nothing of the future, and the changes are
    /// exactly the difference between two sets.
    #[test]
    fn the_active_set_and_its_changes_agree(
        steps in proptest::collection::vec(
            (1i64..5, any::<bool>(), 0u64..3, 0u64..3, 0u64..3, mode(), 1u8..17, 0u64..3,
             proptest::option::of(-5i64..100), proptest::option::of(any::<bool>())),
            1..200)
    ) {
        let mut a = Alarms::new(AlarmConfig::default());
        let (mut now, mut lines, mut pulses, mut accepted, mut nsteps) = (T0, 0, 0, 0, 0);
        for (dt, fix, dl, dp, da, mode, stratum, ds, cert_days, leap) in steps {
            now += dt;
            lines += dl;
            pulses += dp;
            accepted += da.min(dp);
            nsteps += ds;
            let before: Vec<AlarmKind> = a.active().iter().map(|x| x.kind).collect();
            let o = Observation {
                now,
                gps: Some(gps(lines, fix, pulses, accepted)),
                clock: ClockObservation { mode, served_stratum: stratum, steps: nsteps },
                certificate_not_after: cert_days.map(|d| now + d * 86_400),
                leap_table_expired: leap,
                ..Observation::default()
            };
            let changes = a.observe(&o);
            let after: Vec<AlarmKind> = a.active().iter().map(|x| x.kind).collect();
            let mut sorted = a.active().to_vec();
            sorted.sort_by_key(|x| (std::cmp::Reverse(x.severity), x.kind));
            prop_assert_eq!(&sorted, &a.active().to_vec());
            for (i, k) in after.iter().enumerate() {
                prop_assert!(!after[i + 1..].contains(k));
            }
            for x in a.active() {
                prop_assert!(x.since <= now, "{:?} since {} > now {}", x.kind, x.since, now);
                prop_assert_eq!(x.severity, x.kind.severity());
            }
            for c in &changes {
                prop_assert_eq!(c.raised, after.contains(&c.kind));
                prop_assert_eq!(c.raised, !before.contains(&c.kind));
            }
            let changed: usize = after.iter().filter(|k| !before.contains(k)).count()
                + before.iter().filter(|k| !after.contains(k)).count();
            prop_assert_eq!(changed, changes.len());
        }
    }
}
