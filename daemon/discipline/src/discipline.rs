//! The discipline core: samples and time in, clock actions and the
//! published synchronization state out.
//!
//! Flow per sample: store it in its source's statistics, run selection,
//! and if the source is selected feed it to the estimator (a bank of
//! Kalman filters, see `kalman`), gated against the prediction so that
//! outliers and latency spikes are dropped or clipped. Then steer: the
//! frequency is set to the estimated oscillator correction plus a slew
//! term that removes the predicted offset by the time the next sample is
//! due (a dead-beat controller: the estimate is optimal, so the best the
//! clock can do is to follow it), ended by a wakeup so that a missed pulse
//! does not overshoot. Steps happen only under the makestep rule.
//!
//! `tick` (about once a second) handles what time alone changes: the end
//! of a slew, holdover and its limit, leap-second arming, and the kernel's
//! error estimates.

use crate::clock::{Actions, KernelLeap, KernelStatus};
use crate::drift::{Drift, MAX_FREQ_PPM};
use crate::integrity::{Integrity, IntegrityConfig};
use crate::kalman::{Estimate, FilterBank};
use crate::leap::{LeapKind, LeapMode, LeapTable};
use crate::sample::{Sample, SourceKind, Upstream};
use crate::select::SelectState;
use crate::sourcestats::SourceStats;
use skytime_proto::{LeapIndicator, NtpDuration, NtpTimestamp, ReferenceId, SyncState};
use std::collections::VecDeque;

mod report;
mod selection;
pub use report::{SourceReport, Tracking};

/// Source indexes above this are refused (garbage must not allocate):
/// the GPS receiver's three and up to 29 network sources.
pub const MAX_SOURCES: usize = 32;

/// Tuning of the discipline; skytimed's `[clock]` section maps onto it.
#[derive(Clone, Debug, PartialEq)]
pub struct DisciplineConfig {
    /// Steer the clock. When false the discipline measures and reports but
    /// emits no clock actions (chronyd -x).
    pub steer: bool,
    /// Step when the offset exceeds this (seconds) ...
    pub makestep_threshold_s: f64,
    /// ... during the first this many clock updates (negative: always).
    pub makestep_limit: i32,
    /// Largest slew on top of the frequency correction (ppm).
    pub max_slew_ppm: f64,
    /// A source without a sample for this long is unreachable (seconds).
    pub source_timeout_s: f64,
    /// Samples a source needs before it can be selected.
    pub min_samples: usize,
    /// Sources with a larger error bound are rejected (seconds).
    pub max_distance_s: f64,
    /// PPS decides when there is no majority (two disagreeing sources).
    pub trust_pps: bool,
    /// Serve from the oscillator this long after the last source update.
    pub holdover_limit_s: f64,
    /// Assumed frequency error growth in holdover (ppm), for the error bound.
    pub holdover_drift_ppm: f64,
    /// Fallback after holdover: serve at this stratum, or unsynchronized.
    pub local_stratum: Option<u8>,
    pub leap_mode: LeapMode,
    /// log2 seconds, as in replies.
    pub precision: i8,
    /// Innovations beyond this many standard deviations are outliers.
    pub outlier_sigmas: f64,
    /// How network sources judge the GPS ([`crate::integrity`]).
    pub integrity: IntegrityConfig,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        Self {
            steer: true,
            makestep_threshold_s: 0.001,
            makestep_limit: 3,
            max_slew_ppm: 500.0,
            source_timeout_s: 8.0,
            min_samples: 3,
            max_distance_s: 1.5,
            trust_pps: true,
            holdover_limit_s: 4.0 * 3600.0,
            holdover_drift_ppm: 1.0,
            local_stratum: None,
            leap_mode: LeapMode::Step,
            precision: -20,
            outlier_sigmas: 5.0,
            integrity: IntegrityConfig::default(),
        }
    }
}

/// Where the discipline stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// No clock update yet.
    Startup,
    /// Following selected sources.
    Tracking,
    /// Sources gone; serving from the oscillator since `since`.
    Holdover { since: NtpTimestamp },
    /// Holdover limit passed: local stratum or unsynchronized.
    Lost,
}

/// Counters for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub samples: u64,
    pub invalid: u64,
    pub outliers: u64,
    pub updates: u64,
    pub steps: u64,
    pub reacquisitions: u64,
}

#[derive(Clone, Debug)]
struct Filter {
    bank: FilterBank,
    /// Local time the filter state refers to.
    t: NtpTimestamp,
    rejects_in_row: u32,
}

/// Piecewise-constant history of the applied frequency correction, to
/// know how much phase the steering added between two instants.
#[derive(Clone, Debug)]
struct ControlLog {
    /// (start, phase applied at start, correction s/s), oldest first.
    segs: VecDeque<(NtpTimestamp, f64, f64)>,
}

impl ControlLog {
    fn new(t: NtpTimestamp, c: f64) -> Self {
        Self {
            segs: VecDeque::from([(t, 0.0, c)]),
        }
    }
    fn applied(&self, t: NtpTimestamp) -> f64 {
        let seg = self
            .segs
            .iter()
            .rev()
            .find(|s| s.0 <= t)
            .or(self.segs.front())
            .copied();
        let (t0, a0, c) = seg.unwrap_or((t, 0.0, 0.0));
        a0 + c * (t - t0).to_seconds_f64()
    }
    fn current(&self) -> f64 {
        self.segs.back().map_or(0.0, |s| s.2)
    }
    fn set(&mut self, t: NtpTimestamp, c: f64) {
        let a = self.applied(t);
        // Keep time order even if a caller's clock went backwards.
        if self.segs.back().is_some_and(|s| s.0 > t) {
            self.segs.clear();
        }
        self.segs.push_back((t, a, c));
        while self.segs.len() > 128 {
            self.segs.pop_front();
        }
    }
}

/// The discipline.
#[derive(Debug)]
pub struct Discipline {
    cfg: DisciplineConfig,
    sources: Vec<Option<SourceStats>>,
    /// Measurement noise variance per source (s^2).
    noise: Vec<f64>,
    states: Vec<SelectState>,
    filter: Option<Filter>,
    control: ControlLog,
    slew_end: Option<NtpTimestamp>,
    mode: Mode,
    last_update: Option<NtpTimestamp>,
    selected_kind: Option<SourceKind>,
    selected_dispersion: f64,
    last_offset: f64,
    mean_sq_offset: f64,
    ignore_before: Option<NtpTimestamp>,
    leap_table: Option<LeapTable>,
    kernel_leap: KernelLeap,
    last_status: Option<KernelStatus>,
    initial: Option<Drift>,
    counters: Counters,
    /// What each network source said with its latest sample.
    upstream: Vec<Option<Upstream>>,
    /// The network source whose reference replies name (the best of the
    /// selected ones), and what it said when last followed.
    primary: Option<usize>,
    followed: Option<Upstream>,
    integrity: Integrity,
}

impl Discipline {
    /// `kernel_freq_ppm` is the clock's frequency correction at start;
    /// `drift` the frequency from the drift file (warm start). Returns
    /// the discipline and the first actions (set the drift frequency,
    /// mark the kernel unsynchronized).
    pub fn new(
        cfg: DisciplineConfig,
        now: NtpTimestamp,
        kernel_freq_ppm: f64,
        drift: Option<Drift>,
    ) -> (Self, Actions) {
        let start_freq = if cfg.steer {
            drift.map_or(kernel_freq_ppm, |d| d.freq_ppm)
        } else {
            kernel_freq_ppm
        };
        let mut actions = Actions::default();
        if cfg.steer {
            actions.frequency_ppm = Some(start_freq);
            actions.status = Some(KernelStatus::UNSYNCHRONIZED);
        }
        let integrity_config = cfg.integrity;
        let d = Self {
            control: ControlLog::new(now, start_freq * 1e-6),
            cfg,
            sources: Vec::new(),
            noise: Vec::new(),
            states: Vec::new(),
            filter: None,
            slew_end: None,
            mode: Mode::Startup,
            last_update: None,
            selected_kind: None,
            selected_dispersion: 0.0,
            last_offset: 0.0,
            mean_sq_offset: 0.0,
            ignore_before: None,
            leap_table: None,
            kernel_leap: KernelLeap::None,
            last_status: actions.status,
            initial: drift,
            counters: Counters::default(),
            upstream: Vec::new(),
            primary: None,
            followed: None,
            integrity: Integrity::new(integrity_config),
        };
        (d, actions)
    }

    pub fn config(&self) -> &DisciplineConfig {
        &self.cfg
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn set_leap_table(&mut self, table: Option<LeapTable>) {
        self.leap_table = table;
    }

    pub fn leap_table(&self) -> Option<&LeapTable> {
        self.leap_table.as_ref()
    }

    /// The filter's estimate, if it has one.
    pub fn estimate(&self) -> Option<Estimate> {
        self.filter.as_ref().map(|f| f.bank.estimate())
    }

    /// The frequency to save in the drift file (only once it is known).
    pub fn drift(&self) -> Option<Drift> {
        if self.counters.updates < 60 {
            return None;
        }
        let e = self.estimate()?;
        Some(Drift {
            freq_ppm: (e.rho * 1e6).clamp(-MAX_FREQ_PPM, MAX_FREQ_PPM),
            skew_ppm: e.var_rho.sqrt() * 1e6,
        })
    }

    /// Per-source selection state (index = source number).
    pub fn source_states(&self) -> &[SelectState] {
        &self.states
    }

    /// The GPS integrity check's state ([`crate::integrity`]).
    pub fn integrity(&self) -> crate::integrity::IntegrityReport {
        self.integrity.report()
    }

    /// Processes one sample of a network source (kind [`SourceKind::Ntp`])
    /// with what the server said about itself.
    pub fn handle_network_sample(
        &mut self,
        now: NtpTimestamp,
        s: &Sample,
        upstream: &Upstream,
    ) -> Actions {
        if s.source < MAX_SOURCES && s.kind == SourceKind::Ntp {
            if self.upstream.len() <= s.source {
                self.upstream.resize(s.source + 1, None);
            }
            self.upstream[s.source] = Some(*upstream);
        }
        self.handle_sample(now, s)
    }

    /// Processes one sample; `now` is the local clock when it is handled.
    pub fn handle_sample(&mut self, now: NtpTimestamp, s: &Sample) -> Actions {
        self.counters.samples += 1;
        let z = s.offset.to_seconds_f64();
        let age = (now - s.local_time).to_seconds_f64();
        let stale = self.ignore_before.is_some_and(|t| s.local_time < t);
        if s.source >= MAX_SOURCES
            || !z.is_finite()
            || s.dispersion < NtpDuration::ZERO
            || !(-1.0..=64.0).contains(&age)
            || stale
        {
            self.counters.invalid += 1;
            return Actions::default();
        }
        if self.sources.len() <= s.source {
            self.sources.resize(s.source + 1, None);
            self.noise.resize(s.source + 1, 0.0);
            self.states.resize(s.source + 1, SelectState::Unreachable);
        }
        let applied = self.control.applied(s.local_time);
        let stats = self.sources[s.source].get_or_insert_with(|| SourceStats::new(s.kind));
        stats.kind = s.kind;
        stats.add(s, applied);
        if self.noise[s.source] == 0.0 {
            // A network sample's dispersion is a bound (its root
            // distance), not its noise: the clock filter's jitter is.
            let d = match self.upstream.get(s.source) {
                Some(Some(u)) if s.kind == SourceKind::Ntp => u.jitter.max(1e-5),
                _ => s.dispersion.to_seconds_f64(),
            };
            self.noise[s.source] = (d * d).max(1e-14);
        }
        self.reselect(now);
        if !matches!(
            self.states[s.source],
            SelectState::Selected | SelectState::Combined
        ) {
            return self.tick(now);
        }
        let mut actions = self.update(now, s, z);
        let t = self.tick(now);
        actions.status = actions.status.or(t.status);
        actions.wakeup = actions.wakeup.or(t.wakeup);
        actions.frequency_ppm = actions.frequency_ppm.or(t.frequency_ppm);
        actions
    }

    fn update(&mut self, now: NtpTimestamp, s: &Sample, z: f64) -> Actions {
        let r = self.noise[s.source];
        let t = s.local_time;
        let filter = match self.filter.as_mut() {
            None => {
                let (rho, var_rho) = match self.initial {
                    Some(d) if self.cfg.steer => {
                        (d.freq_ppm * 1e-6, (d.skew_ppm.max(0.5) * 1e-6).powi(2))
                    }
                    _ => (self.control.current(), 1e-8),
                };
                self.filter = Some(Filter {
                    bank: FilterBank::new(z, r, rho, var_rho),
                    t,
                    rejects_in_row: 0,
                });
                self.filter.as_mut().expect("just set")
            }
            Some(f) => {
                if t < f.t {
                    // Out of order (another selected source was newer).
                    return Actions::default();
                }
                let dt = (t - f.t).to_seconds_f64();
                let da = self.control.applied(t) - self.control.applied(f.t);
                f.bank.predict(dt, da);
                let (nu, sv) = f.bank.innovation(z, r);
                let prior = sv - r;
                if nu.abs() > self.cfg.outlier_sigmas * sv.sqrt() {
                    f.rejects_in_row += 1;
                    self.counters.outliers += 1;
                    f.t = t;
                    if f.rejects_in_row < 10 {
                        return Actions::default();
                    }
                    // A GPS that jumps far is refused unless the network
                    // sources confirm where it went (then the clock was
                    // wrong, not the GPS).
                    if s.kind.is_gps()
                        && nu.abs() > self.cfg.integrity.max_jump_s
                        && !matches!(
                            self.integrity.report().evidence,
                            crate::integrity::Evidence::Agree { .. }
                        )
                    {
                        f.rejects_in_row = 0;
                        self.integrity.jumped(now, nu);
                        return Actions::default();
                    }
                    // The source has really moved (or we have): start
                    // over from it rather than refuse it forever.
                    self.counters.reacquisitions += 1;
                    let e = f.bank.estimate();
                    f.bank = FilterBank::new(z, r + nu * nu, e.rho, e.var_rho.max(1e-14));
                    f.rejects_in_row = 0;
                } else {
                    f.rejects_in_row = 0;
                    // Measurement-noise estimate: innovation variance less
                    // the prior's share, clipped so spikes cannot inflate
                    // it. Only once the filter has settled: early
                    // innovations are dominated by the prior.
                    if self.counters.updates >= 30 {
                        let lim = 3.0 * sv.sqrt();
                        let nc = nu.clamp(-lim, lim);
                        // The starting value counts as 32 samples.
                        let n = (self.counters.updates - 29) as f64;
                        let alpha = (1.0 / (n + 32.0)).max(1.0 / 256.0);
                        // Clipping at 3 sigma loses 2.7% of a Gaussian's variance.
                        let est = nc * nc / 0.973 - prior;
                        self.noise[s.source] = (r + alpha * (est - r)).clamp(1e-16, 1.0);
                    }
                    f.bank.update(z, r, dt, 3.0);
                }
                f.t = t;
                f
            }
        };
        let e = filter.bank.estimate();
        self.counters.updates += 1;
        self.last_update = Some(now);
        self.mode = Mode::Tracking;
        self.selected_kind = Some(s.kind);
        self.selected_dispersion = s.dispersion.to_seconds_f64();
        if s.kind == SourceKind::Ntp {
            let primary = self.primary.unwrap_or(s.source);
            self.followed = self.upstream.get(primary).copied().flatten();
        }
        self.last_offset = e.theta;
        self.mean_sq_offset += (e.theta * e.theta - self.mean_sq_offset) * 0.05;

        let mut actions = Actions::default();
        if !self.cfg.steer {
            return actions;
        }
        let may_step =
            self.cfg.makestep_limit < 0 || self.counters.updates <= self.cfg.makestep_limit as u64;
        if may_step && e.theta.abs() > self.cfg.makestep_threshold_s {
            actions.step = Some(self.step(now, e.theta, z, s.offset));
        }
        let interval = self.sources[s.source]
            .as_ref()
            .map_or(1.0, |st| st.interval_s);
        self.steer(now, interval, &mut actions);
        actions
    }

    /// Steps the clock by the estimated offset; returns the step.
    fn step(&mut self, now: NtpTimestamp, theta: f64, z: f64, raw: NtpDuration) -> NtpDuration {
        // Exact from the sample's own duration, so that huge first steps
        // (a Pi booting in 1970) lose no precision in f64.
        let step = raw + NtpDuration::from_seconds_f64(theta - z);
        let s = step.to_seconds_f64();
        if let Some(f) = self.filter.as_mut() {
            f.bank.step(s);
            f.t = f.t + step;
        }
        for st in self.sources.iter_mut().flatten() {
            st.apply_step(step);
        }
        let new_now = now + step;
        self.control = ControlLog::new(new_now, self.control.current());
        self.last_update = Some(new_now);
        self.ignore_before = Some(new_now);
        self.counters.steps += 1;
        step
    }

    /// Sets the frequency: estimated correction plus a slew that removes
    /// the predicted offset within one sample interval (bounded).
    fn steer(&mut self, now: NtpTimestamp, interval: f64, actions: &mut Actions) {
        let Some(f) = self.filter.as_ref() else {
            return;
        };
        let now = actions.step.map_or(now, |s| now + s);
        let e = f.bank.estimate();
        let c_old = self.control.current();
        let theta_now = e.theta + e.rho * (now - f.t).to_seconds_f64()
            - (self.control.applied(now) - self.control.applied(f.t));
        let _ = c_old;
        let horizon = (interval - (now - f.t).to_seconds_f64()).max(0.2);
        let max_slew = self.cfg.max_slew_ppm * 1e-6;
        let duration = horizon.max(theta_now.abs() / max_slew);
        let c = (e.rho + theta_now / duration).clamp(-MAX_FREQ_PPM * 1e-6, MAX_FREQ_PPM * 1e-6);
        self.control.set(now, c);
        self.slew_end = Some(now + NtpDuration::from_seconds_f64(duration));
        actions.frequency_ppm = Some(c * 1e6);
        actions.wakeup = self.slew_end;
    }

    /// Time-driven work: end of slew, holdover, leap arming, kernel status.
    pub fn tick(&mut self, now: NtpTimestamp) -> Actions {
        let mut actions = Actions::default();
        self.reselect(now);
        if self.cfg.steer {
            if let Some(end) = self.slew_end {
                if now >= end {
                    if let Some(e) = self.estimate() {
                        let c = e.rho.clamp(-MAX_FREQ_PPM * 1e-6, MAX_FREQ_PPM * 1e-6);
                        self.control.set(now, c);
                        actions.frequency_ppm = Some(c * 1e6);
                    }
                    self.slew_end = None;
                } else {
                    actions.wakeup = Some(end);
                }
            }
        }
        let any_selected = self
            .states
            .iter()
            .any(|s| matches!(s, SelectState::Selected | SelectState::Combined));
        match self.mode {
            Mode::Tracking if !any_selected => {
                let last = self.last_update.unwrap_or(now);
                if (now - last).to_seconds_f64() >= self.cfg.source_timeout_s {
                    self.mode = Mode::Holdover { since: last };
                }
            }
            Mode::Holdover { since }
                if (now - since).to_seconds_f64() >= self.cfg.holdover_limit_s =>
            {
                self.mode = Mode::Lost;
            }
            _ => {}
        }
        if self.cfg.steer {
            let status = self.kernel_status(now);
            if self.last_status != Some(status) {
                self.last_status = Some(status);
                actions.status = Some(status);
            }
        }
        actions
    }
}
