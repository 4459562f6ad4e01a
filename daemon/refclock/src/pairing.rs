//! PPS and NMEA paired into one source (chrony's `lock` behaviour).
//!
//! The pulse gives the phase: the local time `P` at which a second began.
//! NMEA names that second: the sentences of a fix describe the second that
//! began at the preceding pulse, and their first byte arrives `d` later
//! (the NMEA-to-PPS delay, 0.1-0.9 s depending on receiver and baud rate).
//! A pulse is accepted when a valid fix arrives within `max_delay` after
//! it and, once the delay is known, `d` agrees with it within `max_error`.
//! Otherwise it is rejected and counted. A pulse that gets no fix may still
//! be used ("holdover") while the system clock is synchronized and the last
//! paired pulse is recent: the second is then counted on from that pulse.
//!
//! Everything is sans-IO: times are arguments, decisions are return values.

use crate::gpstime::NmeaFix;
use skytime_proto::{NtpDuration, NtpTimestamp};
use std::collections::VecDeque;

/// Tuning of the pairing. Durations in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairingConfig {
    /// Longest time from a pulse to the first byte of its fix.
    pub max_delay: f64,
    /// Largest deviation of one delay from the expected delay.
    pub max_error: f64,
    /// The NMEA-to-PPS delay, if known; otherwise it is estimated.
    pub configured_delay: Option<f64>,
    /// How long PPS alone may carry on after the last paired pulse.
    pub holdover: f64,
    /// Error bound of one pulse timestamp.
    pub pps_dispersion: f64,
}

impl Default for PairingConfig {
    fn default() -> Self {
        Self {
            max_delay: 0.95,
            max_error: 0.1,
            configured_delay: None,
            holdover: 60.0,
            pps_dispersion: 1e-6,
        }
    }
}

/// Why a pulse was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No valid fix of the same second arrived in the window.
    NoNmea,
    /// The fix arrived at a delay that disagrees with the expected one.
    Disagree,
    /// The second was 23:59:60.
    LeapSecond,
    /// Not on the one-second grid of the previous pulses (noise, both edges).
    Glitch,
}

/// What became of one pulse.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PulseDecision {
    pub local: NtpTimestamp,
    pub outcome: Result<Accepted, Reject>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accepted {
    /// The Unix second that began at the pulse.
    pub unix_second: i64,
    /// reference - local at the pulse.
    pub offset: NtpDuration,
    pub dispersion: NtpDuration,
    /// Named by counting on from an earlier pulse, not by NMEA.
    pub holdover: bool,
}

/// Counters of the pairing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairingStats {
    pub pulses: u64,
    pub paired: u64,
    pub holdover: u64,
    pub rejected_no_nmea: u64,
    pub rejected_disagree: u64,
    pub rejected_leap: u64,
    pub rejected_glitch: u64,
    /// Pulses that never came, inferred from gaps in the pulse train.
    pub missed: u64,
}

/// The NMEA-to-PPS delay: median of recent paired delays, or configured.
#[derive(Clone, Debug, Default)]
pub struct DelayEstimator {
    recent: VecDeque<f64>,
}

/// What is known about the delay, for reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayReport {
    /// The value in use (configured, else estimated), seconds.
    pub value: Option<f64>,
    pub configured: bool,
    /// Estimate from paired samples (even when a configured value overrides it).
    pub estimated: Option<f64>,
    /// Half the spread (10th to 90th percentile) of recent delays.
    pub spread: Option<f64>,
    pub samples: usize,
}

impl DelayEstimator {
    const WINDOW: usize = 64;
    /// Paired delays needed before the estimate is trusted.
    pub const MIN_SAMPLES: usize = 4;

    pub fn push(&mut self, delay: f64) {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(delay);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn estimate(&self) -> Option<f64> {
        (self.recent.len() >= Self::MIN_SAMPLES).then(|| {
            let v = self.sorted();
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        })
    }

    pub fn spread(&self) -> Option<f64> {
        (self.recent.len() >= Self::MIN_SAMPLES).then(|| {
            let v = self.sorted();
            let n = v.len();
            (v[(n * 9 / 10).min(n - 1)] - v[n / 10]) / 2.0
        })
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// The pairing state machine.
#[derive(Debug)]
pub struct Pairing {
    config: PairingConfig,
    pending: VecDeque<NtpTimestamp>,
    /// Last pulse on the grid (accepted or pending), for glitch and gap checks.
    last_pulse: Option<NtpTimestamp>,
    /// Last pulse whose second NMEA named: (local time, Unix second).
    last_lock: Option<(NtpTimestamp, i64)>,
    delay: DelayEstimator,
    stats: PairingStats,
}

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

impl Pairing {
    pub fn new(config: PairingConfig) -> Self {
        Self {
            config,
            pending: VecDeque::new(),
            last_pulse: None,
            last_lock: None,
            delay: DelayEstimator::default(),
            stats: PairingStats::default(),
        }
    }

    pub fn stats(&self) -> PairingStats {
        self.stats
    }

    /// The delay in use and what the estimator knows.
    pub fn delay(&self) -> DelayReport {
        let estimated = self.delay.estimate();
        DelayReport {
            value: self.config.configured_delay.or(estimated),
            configured: self.config.configured_delay.is_some(),
            estimated,
            spread: self.delay.spread(),
            samples: self.delay.len(),
        }
    }

    /// True while the last NMEA-named pulse is within the holdover time.
    pub fn locked(&self, now: NtpTimestamp) -> bool {
        self.last_lock
            .is_some_and(|(p, _)| secs(now - p) <= self.config.holdover)
    }

    /// A pulse at local time `local`. Returns decisions on older pulses
    /// that can no longer be paired (the new one waits for its fix).
    pub fn on_pulse(
        &mut self,
        local: NtpTimestamp,
        clock_synchronized: bool,
    ) -> Vec<PulseDecision> {
        self.stats.pulses += 1;
        let mut out = self.poll(local, clock_synchronized);
        if let Some(prev) = self.last_pulse {
            let dt = secs(local - prev);
            let whole = dt.round();
            if dt < 0.5 || (dt < 10.0 && (dt - whole).abs() > 0.01) {
                self.stats.rejected_glitch += 1;
                out.push(PulseDecision {
                    local,
                    outcome: Err(Reject::Glitch),
                });
                return out;
            }
            if dt < 3600.0 && whole > 1.0 {
                self.stats.missed += whole as u64 - 1;
            }
        }
        self.last_pulse = Some(local);
        self.pending.push_back(local);
        out
    }

    /// Decides pulses that waited longer than `max_delay` for a fix.
    pub fn poll(&mut self, now: NtpTimestamp, clock_synchronized: bool) -> Vec<PulseDecision> {
        let mut out = Vec::new();
        while let Some(&p) = self.pending.front() {
            if secs(now - p) <= self.config.max_delay {
                break;
            }
            self.pending.pop_front();
            out.push(self.expire(p, clock_synchronized));
        }
        out
    }

    fn expire(&mut self, p: NtpTimestamp, clock_synchronized: bool) -> PulseDecision {
        if let Some((p0, s0)) = self.last_lock {
            let elapsed = secs(p - p0);
            if clock_synchronized && elapsed > 0.5 && elapsed <= self.config.holdover {
                let second = s0 + elapsed.round() as i64;
                let offset = NtpTimestamp::from_unix(second, 0) - p;
                // A synchronized clock is far better than half a second.
                if secs(offset).abs() < 0.4 {
                    self.stats.holdover += 1;
                    let dispersion = NtpDuration::from_seconds_f64(self.config.pps_dispersion);
                    return PulseDecision {
                        local: p,
                        outcome: Ok(Accepted {
                            unix_second: second,
                            offset,
                            dispersion,
                            holdover: true,
                        }),
                    };
                }
            }
        }
        self.stats.rejected_no_nmea += 1;
        PulseDecision {
            local: p,
            outcome: Err(Reject::NoNmea),
        }
    }

    /// A valid fix: pairs it with the pulse that began its second.
    pub fn on_fix(&mut self, fix: &NmeaFix) -> Option<PulseDecision> {
        // The latest pulse before the fix within the window.
        let idx = self.pending.iter().rposition(|&p| {
            let d = secs(fix.arrival - p);
            d > 0.0 && d <= self.config.max_delay
        })?;
        let p = self.pending.remove(idx)?;
        let d = secs(fix.arrival - p);
        let outcome = if fix.leap_second {
            self.stats.rejected_leap += 1;
            Err(Reject::LeapSecond)
        } else if self
            .delay()
            .value
            .is_some_and(|expected| (d - expected).abs() > self.config.max_error)
        {
            self.stats.rejected_disagree += 1;
            // Keep learning, so a wrong early estimate cannot lock us out.
            self.delay.push(d);
            Err(Reject::Disagree)
        } else {
            self.delay.push(d);
            self.stats.paired += 1;
            self.last_lock = Some((p, fix.unix_second));
            let offset = NtpTimestamp::from_unix(fix.unix_second, 0) - p;
            let dispersion = NtpDuration::from_seconds_f64(self.config.pps_dispersion);
            Ok(Accepted {
                unix_second: fix.unix_second,
                offset,
                dispersion,
                holdover: false,
            })
        };
        Some(PulseDecision { local: p, outcome })
    }

    /// The NMEA-only measurement of a fix: reference at the first byte is
    /// the named second plus the delay. Returns (offset, dispersion); with
    /// no known delay it assumes mid-second and says +-0.5 s.
    pub fn nmea_sample(&self, fix: &NmeaFix) -> (NtpDuration, NtpDuration) {
        let report = self.delay();
        let (delay, err) = match report.value {
            Some(v) => (v, report.spread.unwrap_or(0.0).max(0.001)),
            None => (0.5, 0.5),
        };
        let reference =
            NtpTimestamp::from_unix(fix.unix_second, 0) + NtpDuration::from_seconds_f64(delay);
        (reference - fix.arrival, NtpDuration::from_seconds_f64(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S0: i64 = 1_800_000_000;

    /// Local time = true time + `clock_err` seconds.
    fn local(true_secs: f64, clock_err: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(S0, 0) + NtpDuration::from_seconds_f64(true_secs + clock_err)
    }

    fn fix(second: i64, arrival: NtpTimestamp) -> NmeaFix {
        NmeaFix {
            unix_second: S0 + second,
            arrival,
            leap_second: false,
            rollover_corrected: false,
            quality: Some(1),
            satellites: Some(8),
            timed: true,
        }
    }

    /// Runs `n` seconds of pulses and fixes; returns accepted offsets.
    fn run(
        p: &mut Pairing,
        range: std::ops::Range<i64>,
        clock_err: f64,
        delay: impl Fn(i64) -> f64,
    ) -> Vec<Result<Accepted, Reject>> {
        let mut out = Vec::new();
        for s in range {
            let pl = local(s as f64, clock_err);
            out.extend(p.on_pulse(pl, false).into_iter().map(|d| d.outcome));
            if let Some(d) = p.on_fix(&fix(s, pl + NtpDuration::from_seconds_f64(delay(s)))) {
                out.push(d.outcome);
            }
        }
        out
    }

    #[test]
    fn paired_pulses_give_the_phase_offset() {
        let mut p = Pairing::new(PairingConfig::default());
        // Local clock 3.25 ms ahead: offset (reference - local) is -3.25 ms.
        let out = run(&mut p, 0..10, 0.00325, |s| 0.4 + 0.01 * (s % 3) as f64);
        assert_eq!(out.len(), 10);
        for o in out {
            let a = o.unwrap();
            assert!((a.offset.to_seconds_f64() + 0.00325).abs() < 1e-8, "{a:?}");
            assert!(!a.holdover);
        }
        let r = p.delay();
        assert!((r.estimated.unwrap() - 0.41).abs() < 1e-6, "{r:?}");
        assert!(!r.configured);
    }

    #[test]
    fn a_pulse_names_the_second_even_with_a_clock_off_by_seconds() {
        let mut p = Pairing::new(PairingConfig::default());
        let out = run(&mut p, 0..3, -7.6, |_| 0.5);
        for o in out {
            assert!((o.unwrap().offset.to_seconds_f64() - 7.6).abs() < 1e-6);
        }
    }

    #[test]
    fn pulses_without_nmea_are_rejected_until_synchronized() {
        let mut p = Pairing::new(PairingConfig::default());
        run(&mut p, 0..5, 0.0, |_| 0.3);
        // NMEA goes silent: the pulses are decided when they expire.
        let mut decisions = Vec::new();
        for s in 5..8 {
            decisions.extend(p.on_pulse(local(s as f64, 0.0), false));
        }
        decisions.extend(p.poll(local(9.0, 0.0), false));
        assert_eq!(decisions.len(), 3);
        assert!(decisions.iter().all(|d| d.outcome == Err(Reject::NoNmea)));
        assert_eq!(p.stats().rejected_no_nmea, 3);
        // With the clock synchronized, PPS carries on for the holdover time.
        for s in 9..12 {
            decisions = p.on_pulse(local(s as f64, 0.0002), true);
            if s > 9 {
                let a = decisions[0].outcome.unwrap();
                assert!(a.holdover);
                assert_eq!(a.unix_second, S0 + s - 1);
                assert!((a.offset.to_seconds_f64() + 0.0002).abs() < 1e-8);
            }
        }
        // ...but not beyond it.
        let late = p.on_pulse(local(200.0, 0.0), true);
        assert_eq!(late.len(), 1);
        let expired = p.poll(local(201.0, 0.0), true);
        assert_eq!(expired[0].outcome, Err(Reject::NoNmea));
    }

    #[test]
    fn a_fix_at_the_wrong_delay_is_rejected() {
        let mut p = Pairing::new(PairingConfig::default());
        run(&mut p, 0..8, 0.0, |_| 0.40);
        let out = run(&mut p, 8..9, 0.0, |_| 0.75);
        assert_eq!(out, vec![Err(Reject::Disagree)]);
        assert_eq!(p.stats().rejected_disagree, 1);
        // A fix arriving after the window is no partner either.
        let out = run(&mut p, 9..10, 0.0, |_| 0.99);
        assert!(out.is_empty(), "{out:?}");
        let d = p.poll(local(11.0, 0.0), false);
        assert_eq!(d[0].outcome, Err(Reject::NoNmea));
    }

    #[test]
    fn configured_delay_overrides_the_estimate() {
        let cfg = PairingConfig {
            configured_delay: Some(0.2),
            ..PairingConfig::default()
        };
        let mut p = Pairing::new(cfg);
        let out = run(&mut p, 0..3, 0.0, |_| 0.6);
        assert!(out.iter().all(|o| *o == Err(Reject::Disagree)));
        let out = run(&mut p, 3..6, 0.0, |_| 0.25);
        assert!(out.iter().all(|o| o.is_ok()));
        assert_eq!(p.delay().value, Some(0.2));
        assert!(p.delay().configured);
    }

    #[test]
    fn glitches_and_gaps_are_counted() {
        let mut p = Pairing::new(PairingConfig::default());
        run(&mut p, 0..3, 0.0, |_| 0.3);
        let d = p.on_pulse(local(2.3, 0.0), false);
        assert!(d.iter().any(|d| d.outcome == Err(Reject::Glitch)));
        // Seconds 3 and 4 never pulse.
        run(&mut p, 5..6, 0.0, |_| 0.3);
        assert_eq!(p.stats().missed, 2);
        assert_eq!(p.stats().rejected_glitch, 1);
    }

    #[test]
    fn leap_second_pulse_is_skipped() {
        let mut p = Pairing::new(PairingConfig::default());
        run(&mut p, 0..5, 0.0, |_| 0.3);
        let pl = local(5.0, 0.0);
        p.on_pulse(pl, false);
        let mut f = fix(5, pl + NtpDuration::from_seconds_f64(0.3));
        f.leap_second = true;
        assert_eq!(p.on_fix(&f).unwrap().outcome, Err(Reject::LeapSecond));
    }

    #[test]
    fn nmea_only_sample_uses_the_delay() {
        let mut p = Pairing::new(PairingConfig::default());
        // Unknown delay: mid-second guess, half a second of error.
        let pl = local(0.0, 0.010);
        let (o, e) = p.nmea_sample(&fix(0, pl + NtpDuration::from_seconds_f64(0.45)));
        assert!((o.to_seconds_f64() - 0.04).abs() < 1e-6 && e.to_seconds_f64() == 0.5);
        run(&mut p, 0..10, 0.010, |_| 0.45);
        let (o, e) = p.nmea_sample(&fix(
            10,
            local(10.0, 0.010) + NtpDuration::from_seconds_f64(0.45),
        ));
        assert!((o.to_seconds_f64() + 0.010).abs() < 1e-6, "{o:?}");
        assert!(e.to_seconds_f64() < 0.01);
    }
}
