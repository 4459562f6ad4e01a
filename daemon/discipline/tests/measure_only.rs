//! Measure-only mode (`steer = false`): the discipline estimates but never
//! steers, so the served state must reflect how far the system clock
//! really is from the source.

use skytime_discipline::{Discipline, DisciplineConfig, Sample, SourceKind};
use skytime_proto::sync_state::STRATUM_UNSYNCHRONIZED;
use skytime_proto::{NtpDuration, NtpTimestamp, ReferenceId};

fn run(offset_s: f64) -> skytime_proto::SyncState {
    let cfg = DisciplineConfig {
        steer: false,
        ..DisciplineConfig::default()
    };
    let t0 = NtpTimestamp::from_unix(1_800_000_000, 0);
    let (mut d, first) = Discipline::new(cfg, t0, 0.0, None);
    assert!(first.is_empty(), "measure-only never acts on the clock");
    let mut now = t0;
    for i in 0..30 {
        now = t0 + NtpDuration::from_seconds_f64(i as f64 + 1.0);
        let s = Sample {
            source: 0,
            kind: SourceKind::Pps,
            local_time: now,
            offset: NtpDuration::from_seconds_f64(offset_s),
            dispersion: NtpDuration::from_seconds_f64(1e-6),
        };
        let actions = d.handle_sample(now, &s);
        assert!(actions.step.is_none() && actions.frequency_ppm.is_none());
        d.tick(now);
    }
    d.sync_state(now)
}

#[test]
fn a_clock_close_to_the_source_is_served_as_stratum_1() {
    let s = run(0.002);
    assert_eq!(s.stratum, 1);
    assert_eq!(s.reference_id, ReferenceId::PPS);
}

#[test]
fn a_clock_far_from_the_source_does_not_claim_it() {
    let s = run(30.0);
    assert_eq!(s.stratum, STRATUM_UNSYNCHRONIZED, "{s:?}");
}
