//! The clock filter (RFC 5905 section 10): of the last eight
//! measurements, the one with the lowest round-trip delay is the best
//! estimate of the offset, since queueing delay only ever adds error (and
//! asymmetry with it). A measurement is passed on only when it is newer
//! than the last one passed on, so a good old sample is not used twice.
//!
//! Each kept measurement's error bound grows at PHI with its age; the
//! filter's dispersion weighs them by their rank, and its jitter is the
//! RMS distance of the others' offsets from the chosen one.

use super::exchange::{Measurement, PHI};
use crate::time::NtpTimestamp;
use std::collections::VecDeque;

/// Measurements kept.
pub const STAGES: usize = 8;

/// What the filter passes on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Filtered {
    /// The chosen (lowest-delay) measurement.
    pub measurement: Measurement,
    /// Its error bound now plus the filter dispersion of the others,
    /// seconds.
    pub dispersion: f64,
    /// RMS of the kept offsets around the chosen one, seconds.
    pub jitter: f64,
    /// Measurements kept.
    pub samples: usize,
}

#[derive(Clone, Copy, Debug)]
struct Stored {
    m: Measurement,
    /// Monotonic seconds when it arrived, for aging its dispersion.
    at: f64,
}

/// The eight-stage filter of one association.
#[derive(Clone, Debug, Default)]
pub struct ClockFilter {
    stages: VecDeque<Stored>,
    last_output: Option<NtpTimestamp>,
}

impl ClockFilter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.stages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Forgets every measurement (after a clock step, or a new key
    /// exchange with another server).
    pub fn clear(&mut self) {
        self.stages.clear();
        self.last_output = None;
    }

    /// Adds `m`, arrived at monotonic `mono` seconds; returns the filter's
    /// choice when that is newer than what it passed on last.
    pub fn add(&mut self, m: Measurement, mono: f64) -> Option<Filtered> {
        if self.stages.len() == STAGES {
            self.stages.pop_back();
        }
        self.stages.push_front(Stored { m, at: mono });
        let aged = |s: &Stored| s.m.dispersion + PHI * (mono - s.at).max(0.0);
        let mut order: Vec<&Stored> = self.stages.iter().collect();
        // Lowest delay first; among equal delays the newest (front) wins,
        // which the stable sort keeps.
        order.sort_by(|a, b| a.m.delay.total_cmp(&b.m.delay));
        let best = order[0];
        let dispersion = order
            .iter()
            .enumerate()
            .map(|(i, s)| aged(s) / f64::from(2u32 << i.min(30)))
            .sum::<f64>();
        let n = order.len();
        let jitter = if n > 1 {
            (order[1..]
                .iter()
                .map(|s| (s.m.offset - best.m.offset).powi(2))
                .sum::<f64>()
                / (n - 1) as f64)
                .sqrt()
        } else {
            0.0
        };
        if self.last_output.is_some_and(|t| best.m.local_time <= t) {
            return None;
        }
        self.last_output = Some(best.m.local_time);
        Some(Filtered {
            measurement: best.m,
            dispersion: aged(best).max(dispersion),
            jitter,
            samples: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{LeapIndicator, ReferenceId};
    use crate::time::NtpDuration;

    pub(crate) fn m(t: f64, offset: f64, delay: f64) -> Measurement {
        Measurement {
            offset,
            delay,
            dispersion: 1e-6,
            local_time: NtpTimestamp::from_unix(1_800_000_000, 0)
                + NtpDuration::from_seconds_f64(t),
            stratum: 1,
            reference_id: ReferenceId::GPS,
            root_delay: 0.0,
            root_dispersion: 0.0,
            leap: LeapIndicator::NoWarning,
            poll: 4,
        }
    }

    #[test]
    fn the_lowest_delay_wins_and_is_passed_on_once() {
        let mut f = ClockFilter::new();
        let a = f.add(m(0.0, 0.010, 0.020), 0.0).unwrap();
        assert_eq!(a.measurement.offset, 0.010);
        // A slower exchange: the old, faster one stays the choice, and it
        // was already passed on.
        assert!(f.add(m(16.0, 0.030, 0.060), 16.0).is_none());
        // A faster one is newer: passed on.
        let c = f.add(m(32.0, 0.001, 0.002), 32.0).unwrap();
        assert_eq!(c.measurement.offset, 0.001);
        assert_eq!(c.samples, 3);
        assert!(c.jitter > 0.009, "{}", c.jitter);
    }

    #[test]
    fn only_eight_are_kept_and_old_ones_age() {
        let mut f = ClockFilter::new();
        f.add(m(0.0, 0.0, 0.001), 0.0);
        for i in 1..=8 {
            f.add(m(f64::from(i), 0.0, 0.5), f64::from(i));
        }
        assert_eq!(f.len(), STAGES);
        // The fast sample has been shifted out: a slow one is chosen now.
        let out = f.add(m(9.0, 0.0, 0.4), 9.0).unwrap();
        assert_eq!(out.measurement.delay, 0.4);
        f.clear();
        assert!(f.is_empty());
        // Aging: a sample 1000 s old has gained 15 ms of dispersion.
        f.add(m(0.0, 0.0, 0.001), 0.0);
        let out = f.add(m(1000.0, 0.0, 0.5), 1000.0);
        assert!(out.is_none(), "the old fast sample is still the choice");
    }
}
