//! What the discipline says about itself: the state NTP replies carry,
//! the kernel's status and error estimates, chronyc-style tracking and
//! source reports, and the leap smear in force.

use super::*;

/// chronyc tracking, in fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracking {
    pub mode: Mode,
    pub reference_id: ReferenceId,
    pub stratum: u8,
    pub reference_time: NtpTimestamp,
    /// Estimated offset of the clock now (reference - local), seconds.
    pub system_offset_s: f64,
    /// The filter's offset after the last update, seconds.
    pub last_offset_s: f64,
    /// RMS of recent offsets, seconds.
    pub rms_offset_s: f64,
    /// Frequency correction of the oscillator (ppm, positive = fast).
    pub frequency_ppm: f64,
    /// Applied frequency minus the estimate (the slew in progress), ppm.
    pub residual_freq_ppm: f64,
    pub skew_ppm: f64,
    /// Noise of the winning model: frequency wander (ppb per sqrt s).
    pub wander_ppb: f64,
    pub root_delay_s: f64,
    pub root_dispersion_s: f64,
    pub update_interval_s: f64,
    pub leap: LeapIndicator,
    pub steering: bool,
    pub counters: Counters,
}

/// chronyc sources + sourcestats for one source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceReport {
    pub index: usize,
    pub kind: SourceKind,
    pub state: SelectState,
    pub samples: usize,
    pub total_samples: u64,
    pub span_s: f64,
    pub last_sample_age_s: Option<f64>,
    pub last_offset_s: f64,
    pub offset_s: f64,
    pub stddev_s: f64,
    /// Frequency relative to the steered clock (ppm) and its error.
    pub freq_ppm: f64,
    pub skew_ppm: f64,
    /// Estimated measurement noise (seconds).
    pub noise_s: f64,
}

impl Discipline {
    pub(super) fn pending_leap(&self, now: NtpTimestamp) -> Option<crate::leap::Leap> {
        self.leap_table.as_ref()?.pending(now)
    }

    pub(super) fn kernel_status(&mut self, now: NtpTimestamp) -> KernelStatus {
        let synced = matches!(self.mode, Mode::Tracking | Mode::Holdover { .. });
        if !synced {
            return KernelStatus::UNSYNCHRONIZED;
        }
        // Around an armed leap, leave the kernel alone: it clears STA_INS
        // itself when it inserts, and re-arming during the repeated
        // second would insert another one at the next midnight.
        if let (Some(last), Some(table)) = (self.last_status, self.leap_table.as_ref()) {
            let near = table
                .next_leap(now + NtpDuration::from_seconds_f64(-3.0))
                .is_some_and(|l| {
                    let at = NtpTimestamp::from_seconds_fraction(l.at as u32, 0);
                    (now - at).to_seconds_f64().abs() < 3.0
                });
            if near && last.leap != KernelLeap::None {
                return last;
            }
        }
        // The kernel is armed on the last day in both leap modes: the
        // system clock stays UTC; smearing only changes served time.
        self.kernel_leap = match self.pending_leap(now).map(|l| l.kind) {
            Some(LeapKind::Insert) => KernelLeap::Insert,
            Some(LeapKind::Delete) => KernelLeap::Delete,
            None => KernelLeap::None,
        };
        let (disp, est) = self.error_bounds(now);
        // Whole microseconds, rounded up, and only changed when they move
        // by more than a microsecond so idle ticks cost no syscall.
        KernelStatus {
            synchronized: true,
            maxerror_us: (disp * 1e6).ceil() as i64,
            esterror_us: (est * 1e6).ceil() as i64,
            leap: self.kernel_leap,
        }
    }

    /// (root dispersion, estimated error) at `now`, seconds.
    pub(super) fn error_bounds(&self, now: NtpTimestamp) -> (f64, f64) {
        let Some(e) = self.estimate() else {
            return (16.0, 16.0);
        };
        let since = self
            .last_update
            .map_or(0.0, |t| (now - t).to_seconds_f64().max(0.0));
        let est = e.var_theta_after(since).sqrt();
        // What the clock is still off by: the correction in progress when
        // steering (large just after a switch of source), the whole offset
        // when only measuring.
        let pending = if self.cfg.steer {
            self.offset_now(now).abs()
        } else {
            e.theta.abs()
        };
        (
            self.selected_dispersion
                + 3.0 * est
                + pending
                + self.cfg.holdover_drift_ppm * 1e-6 * since,
            est,
        )
    }

    /// The estimated offset of the clock at `now` (reference - local):
    /// the filter's prediction less the steering applied since.
    pub(super) fn offset_now(&self, now: NtpTimestamp) -> f64 {
        self.filter.as_ref().map_or(0.0, |f| {
            let e = f.bank.estimate();
            e.theta + e.rho * (now - f.t).to_seconds_f64()
                - (self.control.applied(now) - self.control.applied(f.t))
        })
    }

    /// What NTP replies should say at `now`.
    pub fn sync_state(&self, now: NtpTimestamp) -> SyncState {
        let p = self.cfg.precision;
        let fallback = || match self.cfg.local_stratum {
            Some(st) => SyncState::local(st, p, now),
            None => SyncState::unsynchronized(p),
        };
        match self.mode {
            Mode::Startup | Mode::Lost => fallback(),
            Mode::Tracking | Mode::Holdover { .. } => {
                let Some(last) = self.last_update else {
                    return fallback();
                };
                // Measuring only, the system clock is wherever it is: if it
                // is further from the source than a selectable source may
                // be, it is not synchronized to it, whatever the source.
                if !self.cfg.steer
                    && self
                        .estimate()
                        .is_some_and(|e| e.theta.abs() > self.cfg.max_distance_s)
                {
                    return fallback();
                }
                let upstream = match self.selected_kind {
                    Some(SourceKind::Ntp) => self.followed,
                    _ => None,
                };
                let reference_id = match (self.selected_kind, upstream) {
                    (Some(SourceKind::Pps), _) => ReferenceId::PPS,
                    (Some(SourceKind::Nmea), _) => ReferenceId::GPS,
                    (Some(SourceKind::Ntp), Some(u)) => u.reference_id,
                    _ => ReferenceId::ascii("SOCK"),
                };
                // The error bound now, expressed at the last update so the
                // server's linear growth (rate) keeps it truthful between
                // publications.
                let (disp, _) = self.error_bounds(now);
                let rate = self.cfg.holdover_drift_ppm;
                let since = (now - last).to_seconds_f64().max(0.0);
                let mut at_ref = (disp - rate * 1e-6 * since).max(0.0);
                // A network source's dispersion carries its root distance,
                // delay included; the delay is served as root delay, so
                // count only the dispersion here.
                let (stratum, root_delay) = match upstream {
                    Some(u) => {
                        let delay = u.root_delay + u.delay;
                        at_ref = (at_ref - delay / 2.0).max(u.root_dispersion);
                        (u.stratum.saturating_add(1).min(16), delay)
                    }
                    None => (1, 0.0),
                };
                if stratum >= skytime_proto::sync_state::STRATUM_UNSYNCHRONIZED {
                    return fallback();
                }
                let leap = match (self.cfg.leap_mode, self.pending_leap(now)) {
                    (LeapMode::Step, Some(l)) => l.indicator(),
                    _ => LeapIndicator::NoWarning,
                };
                SyncState {
                    leap,
                    stratum,
                    reference_id,
                    reference_time: last,
                    root_delay: NtpDuration::from_seconds_f64(root_delay),
                    root_dispersion: NtpDuration::from_seconds_f64(at_ref),
                    dispersion_rate_ppm: rate,
                    precision: p,
                    smear: self.smear(now),
                }
            }
        }
    }

    /// chronyc tracking.
    pub fn tracking(&self, now: NtpTimestamp) -> Tracking {
        let sync = self.sync_state(now);
        let e = self.estimate();
        let theta_now = self.offset_now(now);
        let interval = self
            .sources
            .iter()
            .zip(&self.states)
            .filter(|(_, s)| **s == SelectState::Selected)
            .filter_map(|(st, _)| st.as_ref().map(|s| s.interval_s))
            .next()
            .unwrap_or(0.0);
        Tracking {
            mode: self.mode,
            reference_id: sync.reference_id,
            stratum: sync.stratum,
            reference_time: sync.reference_time,
            system_offset_s: theta_now,
            last_offset_s: self.last_offset,
            rms_offset_s: self.mean_sq_offset.sqrt(),
            frequency_ppm: e.map_or(self.control.current(), |e| e.rho) * 1e6,
            residual_freq_ppm: e.map_or(0.0, |e| (self.control.current() - e.rho) * 1e6),
            skew_ppm: e.map_or(0.0, |e| e.var_rho.sqrt() * 1e6),
            wander_ppb: e.map_or(0.0, |e| e.q.sqrt() * 1e9),
            root_delay_s: sync.root_delay.to_seconds_f64(),
            root_dispersion_s: sync.root_dispersion_at(now).to_seconds_f64(),
            update_interval_s: interval,
            leap: sync.leap,
            steering: self.cfg.steer,
            counters: self.counters,
        }
    }

    /// chronyc sources + sourcestats.
    pub fn sources(&self, now: NtpTimestamp) -> Vec<SourceReport> {
        let applied_now = self.control.applied(now);
        let c = self.control.current();
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, st)| {
                let st = st.as_ref()?;
                let fit = st.fit(now, applied_now);
                Some(SourceReport {
                    index: i,
                    kind: st.kind,
                    state: self
                        .states
                        .get(i)
                        .copied()
                        .unwrap_or(SelectState::Unreachable),
                    samples: st.len(),
                    total_samples: st.total_samples,
                    span_s: fit.map_or(0.0, |f| f.span_s),
                    last_sample_age_s: st.last_sample.map(|t| (now - t).to_seconds_f64()),
                    last_offset_s: fit.map_or(0.0, |f| f.last_offset),
                    offset_s: fit.map_or(0.0, |f| f.offset),
                    stddev_s: fit.map_or(0.0, |f| f.stddev),
                    freq_ppm: fit.map_or(0.0, |f| (f.raw_freq - c) * 1e6),
                    skew_ppm: fit.map_or(0.0, |f| f.skew * 1e6),
                    noise_s: self.noise.get(i).copied().unwrap_or(0.0).sqrt(),
                })
            })
            .collect()
    }

    /// Smear offset to add to served timestamps at `now` (zero unless the
    /// leap mode is smear and a leap is within the window).
    /// `kernel_applied`: the system clock has already taken the leap.
    pub fn smear_offset(&self, now: NtpTimestamp, kernel_applied: bool) -> NtpDuration {
        self.smear(now)
            .map_or(NtpDuration::ZERO, |s| s.offset(now, kernel_applied))
    }

    /// The smear replies must carry at `now`: the leap mode is smear and
    /// the next leap (or the one just past) is within its window.
    pub fn smear(&self, now: NtpTimestamp) -> Option<skytime_proto::smear::Smear> {
        let LeapMode::Smear { shape, duration_s } = self.cfg.leap_mode else {
            return None;
        };
        let table = self.leap_table.as_ref()?;
        // The leap in question is the next one, or the one just past.
        let probe = now + NtpDuration::from_seconds_f64(-duration_s);
        let smear = table.next_leap(probe)?.smear(shape, duration_s);
        smear.is_active(now).then_some(smear)
    }
}
