//! # skytime-alarms: what is wrong with the appliance, sans IO
//!
//! The appliance's alarms (no GPS fix, PPS missing or rejected, NMEA
//! missing, holdover, holdover limit reached, not synchronized, the
//! certificate expiring or expired, the leap-second table expired, the
//! clock stepped after lock, an update failed or rolled back, the GPS
//! disagreeing with the authenticated network sources or jumping, the
//! upstream sources unreachable or one of them a falseticker) decided
//! from plain facts, with no clock or device of its own: the caller
//! gives an [`Observation`] (counters, modes and instants, taken at
//! `now`) about once a second, and [`Alarms`] answers with what was
//! raised or cleared. Each active [`Alarm`] has a [`Severity`], the
//! instant it became true and a plain reason.
//!
//! skytimed observes its live parts every second and serves the set on
//! D-Bus; the discipline simulator (`skytime-sim`) feeds the same logic
//! from its scenarios, so the alarms are proved against hours of
//! simulated time.
//!
//! ```
//! use skytime_alarms::{AlarmConfig, AlarmKind, Alarms, ClockMode, Observation};
//! let mut alarms = Alarms::new(AlarmConfig::default());
//! let mut o = Observation::at(1_800_000_000);
//! o.clock.mode = ClockMode::Startup;
//! let changes = alarms.observe(&o);
//! assert_eq!(changes[0].kind, AlarmKind::NotSynchronized);
//! assert!(changes[0].raised);
//! ```

mod kind;

pub use kind::{AlarmKind, Severity};

/// The thresholds of the alarm logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmConfig {
    /// An input silent (or a condition true) this long raises its alarm,
    /// seconds. Also the grace period after the first observation.
    pub silence_s: i64,
    /// The certificate alarm is raised this long before it expires.
    pub certificate_warning_s: i64,
    /// The clock counts as locked once it has followed a source this long.
    pub lock_after_s: i64,
    /// A step after lock stays reported this long after the last one.
    pub step_hold_s: i64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            silence_s: 10,
            certificate_warning_s: 30 * 86_400,
            lock_after_s: 60,
            step_hold_s: 3600,
        }
    }
}

/// Where the clock discipline stands (the discipline's `Mode`, with Unix
/// seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockMode {
    /// No clock update yet.
    #[default]
    Startup,
    /// Following a source.
    Tracking,
    /// Sources lost; serving from the oscillator since then.
    Holdover { since: i64 },
    /// The holdover limit passed: local stratum or unsynchronized.
    Lost,
}

/// The clock as the alarms see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockObservation {
    pub mode: ClockMode,
    /// The stratum replies carry (16: unsynchronized).
    pub served_stratum: u8,
    /// Clock steps so far (the discipline's counter).
    pub steps: u64,
}

/// PPS input counters, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsCounters {
    /// Pulses received.
    pub pulses: u64,
    /// Pulses accepted as samples.
    pub accepted: u64,
}

/// The GPS receiver as the alarms see it. Counters are cumulative; the
/// logic watches them move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpsObservation {
    /// NMEA lines received so far (valid or not); `None` when no NMEA
    /// input is configured.
    pub nmea_lines: Option<u64>,
    /// The last NMEA epoch had a valid fix.
    pub fix_valid: bool,
    pub satellites: Option<u8>,
    /// `None` when no PPS input is configured.
    pub pps: Option<PpsCounters>,
    /// The PPS device, for reasons ("/dev/pps0").
    pub pps_device: Option<String>,
    /// The NMEA device, for reasons.
    pub nmea_device: Option<String>,
}

/// A failed or rolled-back update, as the update logic reports it: the
/// hook through which the OTA work raises its alarms. The alarm stays
/// while the observation carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateProblem {
    Failed { at: i64, reason: String },
    RolledBack { at: i64, reason: String },
}

/// Why the GPS is not trusted (the discipline's integrity check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpsDistrust {
    /// `against` of `witnesses` authenticated network sources disagree
    /// with the GPS, which is `by_ns` ahead of them (negative: behind).
    Disagrees {
        witnesses: usize,
        against: usize,
        by_ns: i64,
        /// How the witnesses are authenticated, for the reason: "NTS",
        /// "symmetric-key" or "authenticated".
        witness_kind: String,
    },
    /// The GPS time jumped by `by_ns` and the jump was refused.
    Jumped { by_ns: i64 },
}

/// The GPS integrity check, when network sources are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegrityObservation {
    /// `None` while the GPS is trusted.
    pub distrust: Option<GpsDistrust>,
    /// Unix seconds since which it is distrusted.
    pub since: i64,
    /// What replies carry meanwhile, for the reason ("the network
    /// sources", "unsynchronized").
    pub serving: String,
}

/// The upstream (network) sources, when any is configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamObservation {
    pub configured: usize,
    pub reachable: usize,
    /// Names of the sources the selection found to be falsetickers.
    pub falsetickers: Vec<String>,
}

/// Everything the alarms are decided from, at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Unix seconds.
    pub now: i64,
    /// `None` when no GPS receiver is configured.
    pub gps: Option<GpsObservation>,
    pub clock: ClockObservation,
    /// The NTS certificate's end of validity (Unix seconds); `None` when
    /// NTS is off or the certificate cannot be read.
    pub certificate_not_after: Option<i64>,
    /// `Some(true)` when the leap-second table has expired; `None`
    /// without a table.
    pub leap_table_expired: Option<bool>,
    pub update: Option<UpdateProblem>,
    /// The GPS integrity check; `None` without network sources.
    pub integrity: Option<IntegrityObservation>,
    /// `None` when no upstream source is configured.
    pub upstream: Option<UpstreamObservation>,
}

impl Observation {
    /// An observation at `now` of a synchronized clock with nothing else
    /// configured (fill in the rest).
    pub fn at(now: i64) -> Self {
        Self {
            now,
            clock: ClockObservation {
                mode: ClockMode::Tracking,
                served_stratum: 1,
                steps: 0,
            },
            ..Self::default()
        }
    }
}

/// One active alarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub severity: Severity,
    /// Unix seconds since which the condition holds.
    pub since: i64,
    /// What is wrong, in words an operator acts on.
    pub reason: String,
}

/// An alarm raised or cleared by an observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: AlarmKind,
    /// true: raised; false: cleared.
    pub raised: bool,
    /// The alarm as it was raised, or as it was when cleared.
    pub alarm: Alarm,
}

/// A cumulative counter and when it last moved.
#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    value: Option<u64>,
    moved: i64,
}

impl Watch {
    /// Takes a new value at `now`; returns seconds since it last moved
    /// (the first value counts as a move).
    fn silent_for(&mut self, value: u64, now: i64) -> i64 {
        if self.value != Some(value) {
            self.value = Some(value);
            self.moved = now;
        }
        now - self.moved
    }
}

/// The alarm logic's state: what is active, and what it needs to know
/// about the past (when counters last moved, when the clock locked).
#[derive(Clone, Debug)]
pub struct Alarms {
    config: AlarmConfig,
    active: Vec<Alarm>,
    nmea: Watch,
    pulses: Watch,
    accepted: Watch,
    /// Since when the fix has been invalid while NMEA flows.
    no_fix_since: Option<i64>,
    /// Since when the clock has followed a source without a break.
    tracking_since: Option<i64>,
    steps: Option<u64>,
    last_step_after_lock: Option<i64>,
    /// First instants a condition without its own was seen.
    first_seen: Vec<(AlarmKind, i64)>,
    /// Since when no upstream source has been reachable.
    upstream_silent_since: Option<i64>,
}

impl Alarms {
    pub fn new(config: AlarmConfig) -> Self {
        Self {
            config,
            active: Vec::new(),
            nmea: Watch::default(),
            pulses: Watch::default(),
            accepted: Watch::default(),
            no_fix_since: None,
            tracking_since: None,
            steps: None,
            last_step_after_lock: None,
            first_seen: Vec::new(),
            upstream_silent_since: None,
        }
    }

    /// The active alarms, critical first, then in [`AlarmKind::ALL`]
    /// order.
    pub fn active(&self) -> &[Alarm] {
        &self.active
    }

    /// Takes an observation; returns the alarms it raised and cleared.
    pub fn observe(&mut self, o: &Observation) -> Vec<Change> {
        let now = o.now;
        let leap_since = self.first(AlarmKind::LeapTableExpired, now);
        let mut next: Vec<Alarm> = Vec::new();
        let mut raise = |kind: AlarmKind, since: i64, reason: String| {
            next.push(Alarm {
                kind,
                severity: kind.severity(),
                since,
                reason,
            });
        };

        if let Some(gps) = &o.gps {
            self.gps(gps, now, &mut raise);
        }
        self.clock(&o.clock, now, &mut raise);
        if let Some(not_after) = o.certificate_not_after {
            let warn = self.config.certificate_warning_s;
            if now >= not_after {
                raise(
                    AlarmKind::CertificateExpired,
                    not_after,
                    "the NTS certificate has expired: NTS clients refuse it; install a new one"
                        .into(),
                );
            } else if not_after - now <= warn {
                raise(
                    AlarmKind::CertificateExpiring,
                    not_after - warn,
                    format!(
                        "the NTS certificate expires in {} days: install a new one",
                        (not_after - now) / 86_400
                    ),
                );
            }
        }
        if o.leap_table_expired == Some(true) {
            raise(
                AlarmKind::LeapTableExpired,
                leap_since,
                "the leap-second table has expired: leap seconds after its expiry will not be \
                 announced (update tzdata with a system update)"
                    .into(),
            );
        }
        if let Some(i) = &o.integrity {
            integrity(i, &mut raise);
        }
        if let Some(u) = &o.upstream {
            let falseticker_since = self.first(AlarmKind::UpstreamFalseticker, now);
            if u.configured > 0 && u.reachable == 0 {
                let since = *self.upstream_silent_since.get_or_insert(now);
                if now - since >= self.config.silence_s {
                    raise(
                        AlarmKind::UpstreamUnreachable,
                        since,
                        format!(
                            "none of the {} upstream sources answers: the GPS has no cross-check \
                             and no fallback (network down, or NTS-KE failing?)",
                            u.configured
                        ),
                    );
                }
            } else {
                self.upstream_silent_since = None;
            }
            if !u.falsetickers.is_empty() {
                raise(
                    AlarmKind::UpstreamFalseticker,
                    falseticker_since,
                    format!(
                        "upstream source{} {} disagree{} with the others and {} not used",
                        if u.falsetickers.len() > 1 { "s" } else { "" },
                        u.falsetickers.join(", "),
                        if u.falsetickers.len() > 1 { "" } else { "s" },
                        if u.falsetickers.len() > 1 {
                            "are"
                        } else {
                            "is"
                        },
                    ),
                );
            }
        }
        match &o.update {
            Some(UpdateProblem::Failed { at, reason }) => raise(
                AlarmKind::UpdateFailed,
                *at,
                format!("update failed: {reason}"),
            ),
            Some(UpdateProblem::RolledBack { at, reason }) => raise(
                AlarmKind::UpdateRolledBack,
                *at,
                format!("update rolled back: {reason}"),
            ),
            None => {}
        }
        self.settle(next)
    }

    fn gps(
        &mut self,
        gps: &GpsObservation,
        now: i64,
        raise: &mut impl FnMut(AlarmKind, i64, String),
    ) {
        let silence = self.config.silence_s;
        let mut nmea_missing = false;
        if let Some(lines) = gps.nmea_lines {
            let quiet = self.nmea.silent_for(lines, now);
            let device = gps.nmea_device.as_deref().unwrap_or("the serial port");
            if quiet >= silence {
                nmea_missing = true;
                raise(
                    AlarmKind::NmeaMissing,
                    self.nmea.moved,
                    format!(
                        "no NMEA sentence from {device} for more than {silence} s (receiver \
                         unplugged or the wrong port or baud rate?)"
                    ),
                );
            }
            if !nmea_missing && !gps.fix_valid {
                let since = *self.no_fix_since.get_or_insert(now);
                if now - since >= silence {
                    let sats = gps
                        .satellites
                        .map_or_else(String::new, |n| format!(" ({n} satellites in use)"));
                    raise(
                        AlarmKind::NoGpsFix,
                        since,
                        format!(
                            "the receiver sends NMEA but has no valid fix{sats}: check the \
                             antenna's view of the sky"
                        ),
                    );
                }
            } else {
                self.no_fix_since = None;
            }
        }
        if let Some(pps) = gps.pps {
            let device = gps.pps_device.as_deref().unwrap_or("the PPS input");
            let quiet = self.pulses.silent_for(pps.pulses, now);
            let unused = self.accepted.silent_for(pps.accepted, now);
            let fix_alarm = self.no_fix_since.is_some_and(|s| now - s >= silence);
            if quiet >= silence {
                raise(
                    AlarmKind::PpsMissing,
                    self.pulses.moved,
                    format!("no PPS pulse from {device} for more than {silence} s"),
                );
            } else if unused >= silence && !nmea_missing && !fix_alarm {
                // Rejections caused by missing NMEA or a lost fix are
                // reported as those: this is for pulses that are there
                // and still not used.
                raise(
                    AlarmKind::PpsRejected,
                    self.accepted.moved,
                    format!(
                        "pulses from {device} arrive but none was accepted for more than \
                         {silence} s (they do not agree with the NMEA seconds)"
                    ),
                );
            }
        }
    }

    fn clock(
        &mut self,
        c: &ClockObservation,
        now: i64,
        raise: &mut impl FnMut(AlarmKind, i64, String),
    ) {
        let following = c.mode == ClockMode::Tracking && c.served_stratum < 16;
        let locked = self
            .tracking_since
            .is_some_and(|s| now - s >= self.config.lock_after_s);
        if let Some(before) = self.steps {
            if c.steps > before && locked {
                self.last_step_after_lock = Some(now);
            }
        }
        self.steps = Some(c.steps);
        if following {
            self.tracking_since.get_or_insert(now);
        } else {
            self.tracking_since = None;
        }
        if let Some(at) = self.last_step_after_lock {
            if now - at < self.config.step_hold_s {
                raise(
                    AlarmKind::ClockStepped,
                    at,
                    "the system clock was stepped after it had locked: the reference jumped, \
                     or the clock was set by someone else"
                        .into(),
                );
            } else {
                self.last_step_after_lock = None;
            }
        }
        match c.mode {
            ClockMode::Holdover { since } => raise(
                AlarmKind::Holdover,
                since,
                "in holdover: the time sources are lost and the clock runs on its own; the \
                 error bound grows"
                    .into(),
            ),
            ClockMode::Lost => raise(
                AlarmKind::HoldoverLimitReached,
                self.first(AlarmKind::HoldoverLimitReached, now),
                "the holdover limit was reached without a time source".into(),
            ),
            ClockMode::Startup | ClockMode::Tracking => {}
        }
        let no_source = matches!(c.mode, ClockMode::Startup | ClockMode::Lost);
        if no_source || c.served_stratum >= 16 {
            let reason = if c.served_stratum >= 16 {
                "not synchronized: replies say so (stratum 16) until a time source is usable"
                    .to_owned()
            } else {
                format!(
                    "not synchronized to a time source: serving the local clock at stratum {}",
                    c.served_stratum
                )
            };
            raise(
                AlarmKind::NotSynchronized,
                self.first(AlarmKind::NotSynchronized, now),
                reason,
            );
        }
    }

    /// When a condition without an instant of its own was first seen in
    /// its current run (kept while its alarm stays active).
    fn first(&self, kind: AlarmKind, now: i64) -> i64 {
        self.first_seen
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(now, |(_, t)| *t)
    }

    /// Makes `next` the active set; returns the differences.
    fn settle(&mut self, mut next: Vec<Alarm>) -> Vec<Change> {
        next.sort_by_key(|a| (std::cmp::Reverse(a.severity), a.kind));
        let mut changes = Vec::new();
        for old in &self.active {
            if !next.iter().any(|a| a.kind == old.kind) {
                changes.push(Change {
                    kind: old.kind,
                    raised: false,
                    alarm: old.clone(),
                });
            }
        }
        for new in &next {
            if !self.active.iter().any(|a| a.kind == new.kind) {
                changes.push(Change {
                    kind: new.kind,
                    raised: true,
                    alarm: new.clone(),
                });
            }
        }
        self.first_seen = next.iter().map(|a| (a.kind, a.since)).collect();
        self.active = next;
        changes
    }
}

/// The integrity alarms: the GPS disagrees with the network sources, or
/// jumped.
fn integrity(i: &IntegrityObservation, raise: &mut impl FnMut(AlarmKind, i64, String)) {
    match &i.distrust {
        Some(GpsDistrust::Disagrees {
            witnesses,
            against,
            by_ns,
            witness_kind,
        }) => {
            let of = if against == witnesses {
                format!("{witnesses}")
            } else {
                format!("{against} of {witnesses}")
            };
            raise(
                AlarmKind::GpsDisagrees,
                i.since,
                format!(
                    "GPS disagrees with {of} {witness_kind} source{} by {}: not used (spoofed or \
                     faulty receiver?); serving {}",
                    if *witnesses == 1 { "" } else { "s" },
                    signed_seconds(*by_ns),
                    i.serving
                ),
            )
        }
        Some(GpsDistrust::Jumped { by_ns }) => raise(
            AlarmKind::GpsJumped,
            i.since,
            format!(
                "GPS time jumped by {} (a week-number rollover or spoofing?): refused; serving {}",
                signed_seconds(*by_ns),
                i.serving
            ),
        ),
        None => {}
    }
}

/// Seconds with a sign, to the millisecond ("+1.204 s"), or in
/// milliseconds or microseconds when smaller.
pub fn signed_seconds(ns: i64) -> String {
    let s = ns as f64 * 1e-9;
    if s.abs() >= 1.0 {
        format!("{s:+.3} s")
    } else if s.abs() >= 1e-3 {
        format!("{:+.3} ms", s * 1e3)
    } else {
        format!("{:+.1} us", s * 1e6)
    }
}

#[cfg(test)]
mod tests;
