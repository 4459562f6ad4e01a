//! # skytime-sim: the discipline against a simulated oscillator
//!
//! Deterministic (seeded) scenarios drive the very same
//! `skytime_discipline::Discipline` that skytimed runs, against a
//! [`SimClock`] whose oscillator has a frequency offset, random-walk
//! wander and a daily temperature swing; the PPS edges carry Gaussian
//! jitter, a latency tail, outliers and missed pulses; NMEA carries delay
//! jitter and, in one scenario, garbage. The clock is steered only by the
//! discipline's actions; the statistics use the clock's TRUE error
//! against simulated UTC at each second (not the filter's estimate).
//!
//! Every simulated second the appliance's alarm logic (`skytime-alarms`)
//! observes the discipline and the simulated receiver as skytimed's
//! monitor does; [`Outcome::alarm_events`] lists what it raised and
//! cleared, so the alarms are checked against the same scenarios.
//!
//! Some scenarios add upstream NTP servers ([`network`]) and a GPS that
//! lies (stepped, dragged off, rolled over), or loses its servers or its
//! signal: [`Scenario::integrity`] lists them, and [`IntegrityOutcome`]
//! says when the lie was caught, how far the clock was then, and what
//! was served afterwards.

pub mod network;

use network::{NetworkModel, Spoof};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use skytime_alarms::{
    AlarmConfig, Alarms, ClockMode, ClockObservation, GpsDistrust, GpsObservation,
    IntegrityObservation, Observation, PpsCounters, UpstreamObservation,
};
use skytime_discipline::kalman::steady_state_floor;
use skytime_discipline::leap::{LeapEntry, LeapTable};
use skytime_discipline::Distrust;
use skytime_discipline::{
    Actions, Clock, Discipline, DisciplineConfig, Drift, LeapMode, Mode, Sample, SelectState,
    SimClock, SmearShape, SourceKind,
};
use skytime_proto::{LeapIndicator, NtpDuration, NtpTimestamp};

/// 2017-01-01 00:00:00 UTC in NTP seconds: the last leap second so far.
pub const JAN_2017: u32 = 3_692_217_600;

/// One scenario's model.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub hours: f64,
    /// Reference minus clock at start (seconds).
    pub initial_offset_s: f64,
    /// Oscillator fractional frequency error at start (ppm).
    pub freq_ppm: f64,
    /// Frequency random walk: each second the frequency changes by a
    /// Gaussian step of this sigma (fractional).
    pub walk: f64,
    /// Amplitude of the daily temperature-like frequency swing (ppm).
    pub temp_ppm: f64,
    pub jitter_s: f64,
    /// Latency tail: probability and mean of an exponential extra delay.
    pub tail_prob: f64,
    pub tail_mean_s: f64,
    /// Outliers: probability and scale of a uniform +-scale error.
    pub outlier_prob: f64,
    pub outlier_s: f64,
    pub miss_prob: f64,
    pub nmea: bool,
    pub nmea_jitter_s: f64,
    pub nmea_garbage_prob: f64,
    /// NMEA names the wrong second (+1 s) in this window (start, length).
    pub nmea_wrong_second: Option<(f64, f64)>,
    /// Warm start: drift file with this error against the true frequency.
    pub drift_error_ppm: Option<f64>,
    /// GPS loss (both PPS and NMEA): start and length, seconds.
    pub gap: Option<(f64, f64)>,
    /// Start 6 h before the 2017 leap second with the table loaded.
    pub leap: bool,
    pub leap_mode: LeapMode,
    /// The reference (PPS and NMEA alike) jumps by this many seconds at
    /// this second and stays there: (at, seconds).
    pub jump: Option<(f64, f64)>,
    /// The discipline's makestep limit (chrony's `makestep` second
    /// argument; -1: step whenever the offset is over the threshold).
    pub makestep_limit: i32,
    /// Upstream NTP servers.
    pub network: Option<NetworkModel>,
    /// The GPS lies from some second on.
    pub spoof: Option<Spoof>,
}

impl Scenario {
    fn base(name: &'static str, seed: u64) -> Self {
        Self {
            name,
            seed,
            hours: 4.0,
            initial_offset_s: 0.0,
            freq_ppm: 0.0,
            walk: 1e-9,
            temp_ppm: 1.0,
            jitter_s: 1e-6,
            tail_prob: 0.0,
            tail_mean_s: 0.0,
            outlier_prob: 0.0,
            outlier_s: 0.0,
            miss_prob: 0.001,
            nmea: true,
            nmea_jitter_s: 0.02,
            nmea_garbage_prob: 0.0,
            nmea_wrong_second: None,
            drift_error_ppm: None,
            gap: None,
            leap: false,
            leap_mode: LeapMode::Step,
            jump: None,
            makestep_limit: DisciplineConfig::default().makestep_limit,
            network: None,
            spoof: None,
        }
    }

    /// The integrity scenarios: three authenticated upstream servers
    /// (1 ms away, 100 us of jitter, polled every 16 s) beside the GPS,
    /// which lies, or the servers do, or go away, or the GPS does.
    pub fn integrity() -> Vec<Self> {
        let with_net = |name, seed, network: NetworkModel, spoof| Self {
            hours: 3.0,
            freq_ppm: 20.0,
            drift_error_ppm: Some(0.1),
            network: Some(network),
            spoof,
            ..Self::base(name, seed)
        };
        let net = NetworkModel::default;
        vec![
            with_net(
                "spoof_step",
                21,
                net(),
                Some(Spoof::Step {
                    at: 3600.0,
                    by_s: 1.204,
                }),
            ),
            with_net(
                "spoof_drag",
                22,
                net(),
                Some(Spoof::Drag {
                    at: 3600.0,
                    rate: 10e-6,
                }),
            ),
            with_net(
                "gps_rollover",
                23,
                net(),
                Some(Spoof::Rollover { at: 3600.0 }),
            ),
            with_net(
                "upstream_falseticker",
                24,
                NetworkModel {
                    falseticker: Some((1, 0.05)),
                    ..net()
                },
                None,
            ),
            with_net(
                "upstream_lost",
                25,
                NetworkModel {
                    lost_at: Some(3600.0),
                    ..net()
                },
                None,
            ),
            Self {
                hours: 8.0,
                gap: Some((3600.0, 6.0 * 3600.0)),
                ..with_net("gps_lost_fallback", 26, net(), None)
            },
        ]
    }

    /// Every scenario `skytime-sim` knows.
    pub fn everything() -> Vec<Self> {
        let mut v = Self::all();
        v.extend(Self::integrity());
        v
    }

    /// Not in [`Scenario::all`]: the reference jumps by 5 ms after an
    /// hour of lock and the discipline may step at any time (`makestep
    /// 0.001 -1`), so the clock is stepped after lock: what the
    /// `clock_stepped` alarm is for.
    pub fn stepped_after_lock() -> Self {
        Self {
            hours: 2.0,
            freq_ppm: 10.0,
            drift_error_ppm: Some(0.1),
            jump: Some((3600.0, 0.005)),
            makestep_limit: -1,
            ..Self::base("stepped_after_lock", 18)
        }
    }

    /// chrony's measured model: 0.1 s, +100 ppm, walk `walk`, 1 us white
    /// noise, one sample a second, nothing else.
    pub fn anchor(walk: f64) -> Self {
        Self {
            name: if walk > 5e-9 {
                "anchor_walk1e-8"
            } else {
                "anchor"
            },
            initial_offset_s: 0.1,
            freq_ppm: 100.0,
            walk,
            temp_ppm: 0.0,
            miss_prob: 0.0,
            nmea: false,
            ..Self::base("anchor", 7)
        }
    }

    pub fn all() -> Vec<Self> {
        vec![
            Self {
                initial_offset_s: 0.25,
                freq_ppm: -73.0,
                tail_prob: 0.01,
                tail_mean_s: 20e-6,
                ..Self::base("cold_start", 11)
            },
            Self {
                initial_offset_s: 0.004,
                freq_ppm: 42.0,
                drift_error_ppm: Some(0.3),
                tail_prob: 0.01,
                tail_mean_s: 20e-6,
                ..Self::base("warm_start", 12)
            },
            Self {
                freq_ppm: 12.0,
                drift_error_ppm: Some(0.1),
                gap: Some((2.0 * 3600.0, 3600.0)),
                hours: 4.0,
                ..Self::base("holdover_1h", 13)
            },
            Self {
                freq_ppm: -5.0,
                drift_error_ppm: Some(0.1),
                leap: true,
                hours: 12.0,
                ..Self::base("leap_insert", 14)
            },
            Self {
                freq_ppm: -5.0,
                drift_error_ppm: Some(0.1),
                leap: true,
                hours: 12.0,
                leap_mode: LeapMode::Smear {
                    shape: SmearShape::Cosine,
                    duration_s: 4.0 * 3600.0,
                },
                ..Self::base("leap_smear", 15)
            },
            Self {
                freq_ppm: 30.0,
                jitter_s: 1.5e-6,
                tail_prob: 0.02,
                tail_mean_s: 30e-6,
                outlier_prob: 0.01,
                outlier_s: 500e-6,
                miss_prob: 0.02,
                ..Self::base("pps_outliers", 16)
            },
            Self {
                freq_ppm: -60.0,
                jitter_s: 0.5e-6,
                nmea_garbage_prob: 0.2,
                nmea_wrong_second: Some((3600.0, 600.0)),
                ..Self::base("nmea_garbage", 17)
            },
            Self::anchor(1e-9),
            Self::anchor(1e-8),
        ]
    }
}

/// Results of one scenario (the report.json entry).
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    pub hours: f64,
    pub jitter_ns: f64,
    pub walk: f64,
    pub lock_time_s: Option<f64>,
    pub rms_offset_ns: f64,
    pub p99_offset_ns: f64,
    pub max_offset_ns: f64,
    pub rms_freq_error_ppb: f64,
    /// Posterior steady-state RMS of the optimal two-state Kalman filter.
    pub floor_ns: f64,
    /// One-step prediction error of that filter: what a steered clock can
    /// reach at the sample instants.
    pub floor_prediction_ns: f64,
    pub rms_over_floor: f64,
    pub steps_total: usize,
    pub steps_after_lock: usize,
    pub holdover_error_us_after_1h: Option<f64>,
    pub holdover_bound_us_after_1h: Option<f64>,
    pub outliers_rejected: u64,
    pub leap_announced: Option<bool>,
    pub kernel_leaps_applied: Option<i64>,
    pub max_smear_rate_error_ppm: Option<f64>,
    pub nmea_falseticker_seen: Option<bool>,
    pub pps_always_selected: bool,
    /// Alarms raised and cleared, in order.
    pub alarm_events: Vec<AlarmEvent>,
    /// For scenarios with upstream servers.
    pub integrity: Option<IntegrityOutcome>,
}

/// What the integrity scenarios measure.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntegrityOutcome {
    /// Seconds from the start of the lie (or of the GPS outage) to the
    /// GPS being distrusted (or the network taking over).
    pub detection_s: Option<f64>,
    /// How far the clock truly was when that happened, microseconds.
    pub error_at_detection_us: Option<f64>,
    /// The largest true clock error from the start of the lie (or
    /// outage) to the end, microseconds.
    pub max_error_after_start_us: Option<f64>,
    /// RMS of the true clock error over the last hour, microseconds.
    pub rms_error_last_hour_us: f64,
    /// Seconds after detection (plus ten minutes to settle) in which the
    /// clock was further from the truth than the root distance served.
    pub bound_violations: u64,
    /// Stratum and reference ID served at the end.
    pub final_stratum: u8,
    pub final_reference: String,
    /// The reason of the distrust alarm when it was raised.
    pub alarm_reason: Option<String>,
    /// Every alarm raised after the first minute, by name.
    pub alarms_raised: Vec<String>,
    /// Sources found to be falsetickers at the end, by number.
    pub falsetickers: Vec<usize>,
    /// The GPS was distrusted at some point.
    pub distrusted: bool,
    /// Stratum and reference ID served ten minutes past the holdover
    /// limit of a GPS outage.
    pub beyond_holdover: Option<(u8, String)>,
}

/// An alarm raised or cleared at a simulated second.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AlarmEvent {
    /// Seconds since the scenario's start.
    pub t: f64,
    pub alarm: &'static str,
    pub raised: bool,
    /// "warning" or "critical", as the API says it.
    pub severity: &'static str,
    /// The reason, for the integrity alarms and a step after lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

struct Noise {
    rng: StdRng,
}

impl Noise {
    fn gauss(&mut self) -> f64 {
        // Box-Muller; deterministic for a seed.
        let u1: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = self.rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen::<f64>() < p
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.rng.gen_range(f64::MIN_POSITIVE..1.0f64).ln()
    }
}

/// Runs one scenario.
pub fn run(sc: &Scenario) -> Outcome {
    // SKYTIME_SIM_SEED shifts every seed, to look at other realizations.
    let shift: u64 = std::env::var("SKYTIME_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut noise = Noise {
        rng: StdRng::seed_from_u64(sc.seed.wrapping_add(shift)),
    };
    let start_s = if sc.leap {
        JAN_2017 - 6 * 3600
    } else {
        JAN_2017 + 200 * 86_400
    };
    let epoch = NtpTimestamp::from_seconds_fraction(start_s, 0);
    let leap_at = NtpTimestamp::from_seconds_fraction(JAN_2017, 0);
    // UTC at continuous true time t (the inserted second repeats), as
    // the reference says it: after a jump, off by the jump.
    let utc = |t: f64| {
        let jumped = sc.jump.filter(|(at, _)| t >= *at).map_or(0.0, |(_, s)| s);
        let cont = epoch + NtpDuration::from_seconds_f64(t + jumped);
        if sc.leap && cont >= leap_at {
            cont + NtpDuration::from_seconds_f64(-1.0)
        } else {
            cont
        }
    };
    // Oscillator: fractional error y; the discipline must find -y.
    let y0 = sc.freq_ppm * 1e-6;
    let temp_phase = noise.rng.gen::<f64>() * std::f64::consts::TAU;
    let mut walk = 0.0f64;
    let osc = |t: f64, walk: f64| {
        y0 + walk + sc.temp_ppm * 1e-6 * (std::f64::consts::TAU * t / 86_400.0 + temp_phase).sin()
    };

    let mut clock = SimClock::new(epoch, -sc.initial_offset_s, 0.0);
    let cfg = DisciplineConfig {
        leap_mode: sc.leap_mode,
        makestep_limit: sc.makestep_limit,
        ..DisciplineConfig::default()
    };
    let drift = sc.drift_error_ppm.map(|e| Drift {
        freq_ppm: -sc.freq_ppm + e,
        skew_ppm: e.abs(),
    });
    let (mut d, first) = Discipline::new(
        cfg,
        clock.now().unwrap(),
        clock.frequency_ppm().unwrap(),
        drift,
    );
    if sc.leap {
        let text = LeapTable::render(
            &[
                LeapEntry {
                    at: 3_644_697_600,
                    tai_utc: 36,
                },
                LeapEntry {
                    at: JAN_2017 as u64,
                    tai_utc: 37,
                },
            ],
            3_676_924_800,
            3_707_596_800,
        );
        d.set_leap_table(Some(LeapTable::parse(&text).expect("generated table")));
    }
    first.apply(&mut clock).unwrap();

    let n = (sc.hours * 3600.0) as usize;
    let mut offsets = Vec::with_capacity(n);
    let mut freq_err = Vec::with_capacity(n);
    let mut wake: Option<f64> = None;
    let mut leap_announced = false;
    let mut nmea_false = false;
    let mut pps_always = true;
    let mut smear_rate_err: f64 = 0.0;
    let mut prev_served: Option<(f64, NtpTimestamp)> = None;
    let mut holdover = (None, None);
    let in_gap = |t: f64| sc.gap.is_some_and(|(s, l)| t >= s && t < s + l);
    let mut alarms = Alarms::new(AlarmConfig::default());
    let mut alarm_events = Vec::new();
    let servers = sc
        .network
        .as_ref()
        .map(|m| m.servers(|| 2.0 * noise.rng.gen::<f64>() - 1.0))
        .unwrap_or_default();
    let mut track = sc.network.as_ref().map(|_| Track::default());
    let mut receiver = GpsObservation {
        nmea_lines: sc.nmea.then_some(0),
        fix_valid: true,
        satellites: Some(9),
        pps: Some(PpsCounters::default()),
        ..GpsObservation::default()
    };

    // Advances to true time `t`, processing wakeups on the way.
    let advance =
        |clock: &mut SimClock, d: &mut Discipline, wake: &mut Option<f64>, t: f64, y: f64| {
            while let Some(w) = *wake {
                if w > t {
                    break;
                }
                clock.advance_to(w, y);
                *wake = None;
                let a = d.tick(clock.now().unwrap());
                apply(clock, &a, wake);
            }
            clock.advance_to(t, y);
        };

    for k in 0..n {
        let t = k as f64;
        let y = osc(t + 0.5, walk);
        advance(&mut clock, &mut d, &mut wake, t, y);
        // True error of the clock at the PPS instant, on the continuous
        // timescale (the inserted second is judged by the kernel count,
        // kernel_leaps_applied, not by a 1 s spike at the ambiguous instant).
        let err = ((epoch + NtpDuration::from_seconds_f64(t))
            - (clock.now().unwrap()
                + NtpDuration::from_seconds_f64(clock.kernel_leap_seconds() as f64)))
        .to_seconds_f64();
        offsets.push(err);
        freq_err.push(d.estimate().map_or(f64::NAN, |e| e.rho + osc(t, walk)));
        let gps = !in_gap(t);
        let spoofed = NtpDuration::from_seconds_f64(sc.spoof.map_or(0.0, |s| s.offset(t)));
        if let Some((s, l)) = sc.gap {
            if (t - (s + l)).abs() < 0.5 {
                holdover.0 = Some(err.abs());
                holdover.1 = Some(
                    d.sync_state(clock.now().unwrap())
                        .root_dispersion_at(clock.now().unwrap())
                        .to_seconds_f64(),
                );
            }
        }
        // PPS edge.
        if gps && !noise.chance(sc.miss_prob) {
            if let Some(p) = receiver.pps.as_mut() {
                p.pulses += 1;
                p.accepted += 1;
            }
            let mut e = sc.jitter_s * noise.gauss();
            if noise.chance(sc.tail_prob) {
                e += noise.exp(sc.tail_mean_s);
            }
            if noise.chance(sc.outlier_prob) {
                e += sc.outlier_s * (2.0 * noise.rng.gen::<f64>() - 1.0);
            }
            let local_ts = clock.now().unwrap() + NtpDuration::from_seconds_f64(e);
            let s = Sample {
                source: 0,
                kind: SourceKind::Pps,
                local_time: local_ts,
                offset: (utc(t) - local_ts) + spoofed,
                dispersion: NtpDuration::from_nanos(1_000),
            };
            advance(&mut clock, &mut d, &mut wake, t + 0.002, y);
            let a = d.handle_sample(clock.now().unwrap(), &s);
            apply(&mut clock, &a, &mut wake);
        }
        // NMEA sentence, delay compensated on average.
        if sc.nmea && gps {
            receiver.nmea_lines = receiver.nmea_lines.map(|n| n + 3);
            let delay = 0.3 + sc.nmea_jitter_s * noise.gauss();
            advance(&mut clock, &mut d, &mut wake, t + delay.max(0.01), y);
            let now = clock.now().unwrap();
            let mut off = (utc(t) + NtpDuration::from_seconds_f64(0.3)) - now + spoofed;
            if noise.chance(sc.nmea_garbage_prob) {
                off = off
                    + NtpDuration::from_seconds_f64(
                        noise.rng.gen_range(-3i32..=3) as f64 + noise.rng.gen::<f64>() * 0.5,
                    );
            }
            if sc
                .nmea_wrong_second
                .is_some_and(|(s, l)| t >= s && t < s + l)
            {
                off = off + NtpDuration::from_seconds_f64(1.0);
            }
            let s = Sample {
                source: 1,
                kind: SourceKind::Nmea,
                local_time: now,
                offset: off,
                dispersion: NtpDuration::from_seconds_f64(0.05),
            };
            let a = d.handle_sample(now, &s);
            apply(&mut clock, &a, &mut wake);
        }
        // The daemon's 1 Hz tick, after the upstream servers' replies.
        advance(&mut clock, &mut d, &mut wake, t + 0.5, y);
        if let Some(m) = &sc.network {
            for srv in servers.iter().filter(|srv| m.polled(srv, t)) {
                let local = clock.now().unwrap();
                let (sample, upstream) = m.sample(srv, local, -clock.phase(), noise.gauss());
                let a = d.handle_network_sample(local, &sample, &upstream);
                apply(&mut clock, &a, &mut wake);
            }
        }
        let now = clock.now().unwrap();
        let a = d.tick(now);
        apply(&mut clock, &a, &mut wake);
        let sync = d.sync_state(now);
        if let Some(tr) = track.as_mut() {
            tr.second(sc, &d, t, err, &sync, now);
        }
        let mut o = observation(&d, now, sync.stratum, &receiver);
        if sc.network.is_some() {
            network_observation(&mut o, &d, &sync, servers.len());
        }
        for c in alarms.observe(&o) {
            alarm_events.push(AlarmEvent {
                t,
                alarm: c.kind.name(),
                raised: c.raised,
                severity: c.alarm.severity.name(),
                reason: matches!(
                    c.kind,
                    skytime_alarms::AlarmKind::GpsDisagrees
                        | skytime_alarms::AlarmKind::GpsJumped
                        | skytime_alarms::AlarmKind::ClockStepped
                )
                .then(|| c.alarm.reason.clone()),
            });
        }
        leap_announced |= sync.leap == LeapIndicator::InsertSecond;
        let states = d.source_states();
        if states.get(1) == Some(&SelectState::Falseticker) {
            nmea_false = true;
        }
        if gps
            && k > 10
            && states.first() != Some(&SelectState::Selected)
            && !matches!(d.mode(), Mode::Holdover { .. })
        {
            pps_always = false;
        }
        if let LeapMode::Smear { .. } = sc.leap_mode {
            let applied = clock.kernel_leap_seconds() != 0;
            let served = now + d.smear_offset(now, applied);
            if let Some((pt, ps)) = prev_served {
                // Served time must advance at the true rate within the
                // smear's slope (1 s over the window) plus clock noise.
                let rate = (served - ps).to_seconds_f64() / (clock.true_time() - pt) - 1.0;
                smear_rate_err = smear_rate_err.max(rate.abs() * 1e6);
            }
            prev_served = Some((clock.true_time(), served));
        }
        walk += sc.walk * noise.gauss();
    }

    let mut outcome = summarize(
        sc,
        &offsets,
        &freq_err,
        &clock,
        &d,
        holdover,
        leap_announced,
        nmea_false,
        pps_always,
        smear_rate_err,
        alarm_events,
    );
    outcome.integrity = track.map(|tr| tr.finish(&d, clock.now().unwrap(), &outcome.alarm_events));
    outcome
}

/// The integrity measurements, second by second.
#[derive(Debug, Default)]
struct Track {
    detected: Option<(f64, f64)>,
    distrusted: bool,
    max_after_start: Option<f64>,
    last_hour: Vec<f64>,
    violations: u64,
    final_stratum: u8,
    final_reference: String,
    beyond_holdover: Option<(u8, String)>,
}

impl Track {
    fn second(
        &mut self,
        sc: &Scenario,
        d: &Discipline,
        t: f64,
        err: f64,
        sync: &skytime_proto::SyncState,
        now: NtpTimestamp,
    ) {
        // The lie, or the GPS outage, starts here.
        let start = sc.spoof.map(Spoof::start).or(sc.gap.map(|g| g.0));
        let distrusted = d.integrity().distrust.is_some();
        self.distrusted |= distrusted;
        let followed_network = d
            .source_states()
            .iter()
            .skip(network::FIRST_SOURCE)
            .any(|s| *s == SelectState::Selected);
        if let Some(s) = start.filter(|s| t >= *s) {
            self.max_after_start = Some(self.max_after_start.unwrap_or(0.0).max(err.abs()));
            let detected = if sc.spoof.is_some() {
                distrusted
            } else {
                followed_network
            };
            if detected && self.detected.is_none() {
                self.detected = Some((t - s, err.abs()));
            }
        }
        if t >= sc.hours * 3600.0 - 3600.0 {
            self.last_hour.push(err);
        }
        if let Some((after, _)) = self.detected {
            let settled = start.is_some_and(|s| t >= s + after + 600.0);
            let bound = (sync.root_delay.to_seconds_f64() / 2.0
                + sync.root_dispersion_at(now).to_seconds_f64())
            .max(0.0);
            if settled && sync.is_synchronized() && err.abs() > bound {
                self.violations += 1;
            }
        }
        // Beyond the holdover limit of a GPS outage: what is served.
        let limit = d.config().holdover_limit_s;
        if sc
            .gap
            .is_some_and(|(g, len)| t == (g + limit + 600.0).floor() && g + len > t)
        {
            self.beyond_holdover = Some((sync.stratum, sync.reference_id.to_string()));
        }
        self.final_stratum = sync.stratum;
        self.final_reference = sync.reference_id.to_string();
    }

    fn finish(self, d: &Discipline, now: NtpTimestamp, events: &[AlarmEvent]) -> IntegrityOutcome {
        let _ = now;
        let rms = (self.last_hour.iter().map(|e| e * e).sum::<f64>()
            / self.last_hour.len().max(1) as f64)
            .sqrt();
        IntegrityOutcome {
            detection_s: self.detected.map(|d| d.0),
            error_at_detection_us: self.detected.map(|d| d.1 * 1e6),
            max_error_after_start_us: self.max_after_start.map(|e| e * 1e6),
            rms_error_last_hour_us: rms * 1e6,
            bound_violations: self.violations,
            final_stratum: self.final_stratum,
            final_reference: self.final_reference,
            alarm_reason: events
                .iter()
                .find(|e| e.raised && (e.alarm == "gps_disagrees" || e.alarm == "gps_jumped"))
                .and_then(|e| e.reason.clone()),
            alarms_raised: events
                .iter()
                .filter(|e| e.raised && e.t > 60.0)
                .map(|e| e.alarm.to_owned())
                .collect(),
            falsetickers: d
                .source_states()
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == SelectState::Falseticker)
                .map(|(i, _)| i)
                .collect(),
            distrusted: self.distrusted,
            beyond_holdover: self.beyond_holdover,
        }
    }
}

/// What skytimed's monitor adds with upstream sources: the integrity
/// check and the servers' reachability.
fn network_observation(
    o: &mut Observation,
    d: &Discipline,
    sync: &skytime_proto::SyncState,
    servers: usize,
) {
    let report = d.integrity();
    let unix = |t: NtpTimestamp| t.to_unix(0).0;
    let ns = |s: f64| (s * 1e9) as i64;
    o.integrity = Some(IntegrityObservation {
        distrust: report.distrust.map(|x| match x {
            Distrust::Disagrees {
                witnesses,
                against,
                by_s,
            } => GpsDistrust::Disagrees {
                witnesses,
                against,
                by_ns: ns(by_s),
                witness_kind: "NTS".into(),
            },
            Distrust::Jumped { by_s } => GpsDistrust::Jumped { by_ns: ns(by_s) },
        }),
        since: report.since.map_or(0, unix),
        serving: if sync.is_synchronized() {
            format!("stratum {} from {}", sync.stratum, sync.reference_id)
        } else {
            "unsynchronized".into()
        },
    });
    let states = d.source_states();
    let net = states.iter().skip(network::FIRST_SOURCE);
    o.upstream = Some(UpstreamObservation {
        configured: servers,
        reachable: net
            .clone()
            .filter(|s| **s != SelectState::Unreachable)
            .count(),
        falsetickers: net
            .enumerate()
            .filter(|(_, s)| **s == SelectState::Falseticker)
            .map(|(i, _)| format!("server{}", i + 1))
            .collect(),
    });
}

/// What skytimed's monitor would observe: the discipline's mode and
/// steps, the served stratum, the receiver's counters.
fn observation(
    d: &Discipline,
    now: NtpTimestamp,
    served_stratum: u8,
    receiver: &GpsObservation,
) -> Observation {
    let unix = |t: NtpTimestamp| t.to_unix(0).0;
    Observation {
        now: unix(now),
        gps: Some(receiver.clone()),
        clock: ClockObservation {
            mode: match d.mode() {
                Mode::Startup => ClockMode::Startup,
                Mode::Tracking => ClockMode::Tracking,
                Mode::Holdover { since } => ClockMode::Holdover { since: unix(since) },
                Mode::Lost => ClockMode::Lost,
            },
            served_stratum,
            steps: d.counters().steps,
        },
        leap_table_expired: d.leap_table().map(|t| t.is_expired(now)),
        ..Observation::default()
    }
}

fn apply(clock: &mut SimClock, a: &Actions, wake: &mut Option<f64>) {
    a.apply(clock).unwrap();
    if let Some(w) = a.wakeup {
        let dt = (w - clock.now().unwrap()).to_seconds_f64().max(0.0);
        let at = clock.true_time() + dt;
        *wake = Some(wake.map_or(at, |x: f64| x.min(at)));
    }
}

/// First second from which |offset| < 1 us holds for 60 s.
pub fn lock_time(offsets: &[f64]) -> Option<usize> {
    let mut run_start = 0;
    for (k, o) in offsets.iter().enumerate() {
        if o.abs() >= 1e-6 {
            run_start = k + 1;
        } else if k + 1 - run_start >= 60 {
            return Some(run_start);
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    sc: &Scenario,
    offsets: &[f64],
    freq_err: &[f64],
    clock: &SimClock,
    d: &Discipline,
    holdover: (Option<f64>, Option<f64>),
    leap_announced: bool,
    nmea_false: bool,
    pps_always: bool,
    smear_rate_err: f64,
    alarm_events: Vec<AlarmEvent>,
) -> Outcome {
    let lock = lock_time(offsets);
    let from = lock.unwrap_or(offsets.len());
    // Holdover and the two minutes after it are judged separately.
    let excluded = |k: usize| {
        sc.gap
            .is_some_and(|(s, l)| (k as f64) >= s && (k as f64) < s + l + 120.0)
    };
    let mut after: Vec<f64> = (from..offsets.len())
        .filter(|&k| !excluded(k))
        .map(|k| offsets[k].abs())
        .collect();
    let fe: Vec<f64> = (from..freq_err.len())
        .filter(|&k| !excluded(k))
        .map(|k| freq_err[k])
        .filter(|v| v.is_finite())
        .collect();
    let rms = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
        }
    };
    let rms_offset = rms(&after);
    after.sort_by(f64::total_cmp);
    let p99 = after
        .get(((after.len() as f64) * 0.99) as usize)
        .copied()
        .unwrap_or(f64::NAN);
    let max = after.last().copied().unwrap_or(f64::NAN);
    let (floor, pred) = steady_state_floor(sc.jitter_s, sc.walk * sc.walk, 1.0);
    let lock_true_t = lock.map_or(f64::INFINITY, |l| l as f64);
    Outcome {
        name: sc.name.to_string(),
        hours: sc.hours,
        jitter_ns: sc.jitter_s * 1e9,
        walk: sc.walk,
        lock_time_s: lock.map(|l| l as f64),
        rms_offset_ns: rms_offset * 1e9,
        p99_offset_ns: p99 * 1e9,
        max_offset_ns: max * 1e9,
        rms_freq_error_ppb: rms(&fe) * 1e9,
        floor_ns: floor * 1e9,
        floor_prediction_ns: pred * 1e9,
        rms_over_floor: rms_offset / floor,
        steps_total: clock.steps.len(),
        steps_after_lock: clock.steps.iter().filter(|s| s.0 >= lock_true_t).count(),
        holdover_error_us_after_1h: holdover.0.map(|e| e * 1e6),
        holdover_bound_us_after_1h: holdover.1.map(|e| e * 1e6),
        outliers_rejected: d.counters().outliers,
        leap_announced: sc.leap.then_some(leap_announced),
        kernel_leaps_applied: sc.leap.then_some(clock.kernel_leap_seconds()),
        max_smear_rate_error_ppm: matches!(sc.leap_mode, LeapMode::Smear { .. })
            .then_some(smear_rate_err),
        nmea_falseticker_seen: (sc.nmea_garbage_prob > 0.0).then_some(nmea_false),
        pps_always_selected: pps_always,
        alarm_events,
        integrity: None,
    }
}
