//! Network sources in the discipline: the Stratum-2 role (no GPS), the
//! best server naming the reference, falling back to another one, roles,
//! and who may judge the GPS.

use skytime_discipline::{
    Discipline, DisciplineConfig, NetRole, Sample, SelectState, SourceKind, Upstream,
};
use skytime_proto::sync_state::STRATUM_UNSYNCHRONIZED;
use skytime_proto::{NtpDuration, NtpTimestamp, ReferenceId};

fn t0() -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 0)
}

fn at(s: f64) -> NtpTimestamp {
    t0() + NtpDuration::from_seconds_f64(s)
}

fn upstream(last: u8, stratum: u8, authenticated: bool, role: NetRole) -> Upstream {
    Upstream {
        stratum,
        reference_id: ReferenceId([127, 0, 0, last]),
        root_delay: 0.002,
        root_dispersion: 0.0005,
        delay: 0.004,
        jitter: 0.0001,
        authenticated,
        role,
        poll_interval_s: 1.0,
    }
}

fn net_sample(source: usize, t: f64, offset: f64, u: &Upstream) -> Sample {
    Sample {
        source,
        kind: SourceKind::Ntp,
        local_time: at(t),
        offset: NtpDuration::from_seconds_f64(offset),
        dispersion: NtpDuration::from_seconds_f64(u.root_distance() + 1e-5),
    }
}

fn measuring() -> Discipline {
    let cfg = DisciplineConfig {
        steer: false,
        ..DisciplineConfig::default()
    };
    Discipline::new(cfg, t0(), 0.0, None).0
}

#[test]
fn without_gps_the_best_server_names_the_reference_at_its_stratum_plus_one() {
    let mut d = measuring();
    let s1 = upstream(1, 1, true, NetRole::Normal);
    let s3 = upstream(3, 3, true, NetRole::Normal);
    for k in 0..10 {
        let t = f64::from(k);
        d.handle_network_sample(at(t), &net_sample(3, t, 0.001, &s1), &s1);
        d.handle_network_sample(at(t), &net_sample(4, t, 0.0012, &s3), &s3);
        d.tick(at(t + 0.5));
    }
    let now = at(10.0);
    let sync = d.sync_state(now);
    assert_eq!(sync.stratum, 2);
    assert_eq!(sync.reference_id, ReferenceId([127, 0, 0, 1]));
    assert!(
        (sync.root_delay.to_seconds_f64() - 0.006).abs() < 1e-6,
        "{sync:?}"
    );
    assert!(sync.root_dispersion.to_seconds_f64() >= 0.0005);
    assert_eq!(d.source_states()[3], SelectState::Selected);
    assert_eq!(d.source_states()[4], SelectState::Combined);
    let t = d.tracking(now);
    assert!((t.root_delay_s - 0.006).abs() < 1e-6);

    // The stratum-1 server stops answering: the other one takes over.
    for k in 10..30 {
        let t = f64::from(k);
        d.handle_network_sample(at(t), &net_sample(4, t, 0.0012, &s3), &s3);
        d.tick(at(t + 0.5));
    }
    let sync = d.sync_state(at(30.0));
    assert_eq!(d.source_states()[3], SelectState::Unreachable);
    assert_eq!(sync.stratum, 4);
    assert_eq!(sync.reference_id, ReferenceId([127, 0, 0, 3]));
}

#[test]
fn noselect_servers_never_steer_and_stratum_15_servers_are_no_use() {
    let mut d = measuring();
    let watch = upstream(1, 1, true, NetRole::NoSelect);
    let deep = upstream(2, 15, true, NetRole::Normal);
    for k in 0..10 {
        let t = f64::from(k);
        d.handle_network_sample(at(t), &net_sample(3, t, 0.0, &watch), &watch);
        d.tick(at(t + 0.5));
    }
    assert_eq!(d.source_states()[3], SelectState::Candidate);
    assert_eq!(d.sync_state(at(10.0)).stratum, STRATUM_UNSYNCHRONIZED);
    for k in 10..20 {
        let t = f64::from(k);
        d.handle_network_sample(at(t), &net_sample(4, t, 0.0, &deep), &deep);
        d.tick(at(t + 0.5));
    }
    // Followed, but it would make us stratum 16: unsynchronized.
    assert_eq!(d.sync_state(at(20.0)).stratum, STRATUM_UNSYNCHRONIZED);
}

#[test]
fn only_authenticated_servers_judge_the_gps() {
    for authenticated in [false, true] {
        let mut d = measuring();
        let u = upstream(1, 1, authenticated, NetRole::Normal);
        for k in 0..30 {
            let t = f64::from(k);
            let pps = Sample {
                source: 0,
                kind: SourceKind::Pps,
                local_time: at(t),
                offset: NtpDuration::from_seconds_f64(0.5),
                dispersion: NtpDuration::from_nanos(1000),
            };
            d.handle_sample(at(t), &pps);
            // The server says the GPS is half a second wrong.
            d.handle_network_sample(at(t + 0.2), &net_sample(3, t + 0.2, 0.0, &u), &u);
            d.tick(at(t + 0.5));
        }
        let r = d.integrity();
        let sync = d.sync_state(at(30.0));
        if authenticated {
            assert!(r.distrust.is_some(), "{r:?}");
            assert_eq!(d.source_states()[0], SelectState::Falseticker);
            assert_eq!(sync.reference_id, ReferenceId([127, 0, 0, 1]));
        } else {
            assert!(
                r.distrust.is_none(),
                "an unauthenticated server is no witness"
            );
            assert_eq!(d.source_states()[0], SelectState::Selected);
            assert_eq!(sync.reference_id, ReferenceId::PPS);
        }
    }
}
