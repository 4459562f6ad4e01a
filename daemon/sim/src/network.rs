//! Upstream NTP servers and a lying GPS, for the integrity scenarios.
//!
//! Each simulated server is polled every `poll_s` seconds (phases
//! staggered) and answers with true UTC: the measured offset carries a
//! fixed path asymmetry (up to a tenth of the delay, as on a real LAN or
//! WAN), Gaussian jitter, and for a falseticker a constant error. Servers
//! can all go silent at a given second. The GPS spoof shifts the
//! receiver's time (PPS and NMEA alike) by a step, by a drag growing at a
//! fixed rate, or by a week-number rollover (1024 weeks back).

use skytime_discipline::{NetRole, Sample, SourceKind, Upstream};
use skytime_proto::{NtpDuration, NtpTimestamp, ReferenceId};

/// 1024 weeks, seconds.
pub const ROLLOVER_S: f64 = 1024.0 * 7.0 * 86_400.0;
/// Source number of the first server (the GPS has 0 and 1).
pub const FIRST_SOURCE: usize = 3;

/// The upstream servers of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkModel {
    pub servers: usize,
    pub poll_s: f64,
    /// Round trip to each server, seconds.
    pub delay_s: f64,
    pub jitter_s: f64,
    /// The servers' own root dispersion (stratum 1 servers).
    pub root_dispersion_s: f64,
    /// Server `.0` is off by `.1` seconds from the start.
    pub falseticker: Option<(usize, f64)>,
    /// Every server goes silent from this second on.
    pub lost_at: Option<f64>,
    pub authenticated: bool,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            servers: 3,
            poll_s: 16.0,
            delay_s: 0.001,
            jitter_s: 100e-6,
            root_dispersion_s: 50e-6,
            falseticker: None,
            lost_at: None,
            authenticated: true,
        }
    }
}

/// How the GPS lies from second `at` on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Spoof {
    /// Its time jumps by `by_s`.
    Step { at: f64, by_s: f64 },
    /// Its time drifts away at `rate` seconds per second.
    Drag { at: f64, rate: f64 },
    /// It loses 1024 weeks (a receiver that missed a week rollover).
    Rollover { at: f64 },
}

impl Spoof {
    pub fn start(self) -> f64 {
        match self {
            Self::Step { at, .. } | Self::Drag { at, .. } | Self::Rollover { at } => at,
        }
    }

    /// GPS time minus true time at second `t`.
    pub fn offset(self, t: f64) -> f64 {
        if t < self.start() {
            return 0.0;
        }
        match self {
            Self::Step { by_s, .. } => by_s,
            Self::Drag { at, rate } => (t - at) * rate,
            Self::Rollover { .. } => -ROLLOVER_S,
        }
    }
}

/// One server's fixed traits.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub index: usize,
    pub phase_s: f64,
    pub asymmetry_s: f64,
    pub error_s: f64,
}

impl NetworkModel {
    /// The servers, with asymmetries drawn by `uniform` (in [-1, 1]).
    pub fn servers(&self, mut uniform: impl FnMut() -> f64) -> Vec<Server> {
        (0..self.servers)
            .map(|i| Server {
                index: FIRST_SOURCE + i,
                phase_s: self.poll_s * i as f64 / self.servers.max(1) as f64,
                asymmetry_s: 0.1 * self.delay_s * uniform(),
                error_s: match self.falseticker {
                    Some((f, e)) if f == i => e,
                    _ => 0.0,
                },
            })
            .collect()
    }

    /// Whether server `s` answers a poll in second `[t, t+1)`.
    pub fn polled(&self, s: &Server, t: f64) -> bool {
        let since = t - s.phase_s;
        since >= 0.0 && since.rem_euclid(self.poll_s) < 1.0 && self.lost_at.is_none_or(|l| t < l)
    }

    /// The sample a poll of `s` gives: `truth_minus_local` is true time
    /// minus the local clock at `local`; `noise` a standard Gaussian draw.
    pub fn sample(
        &self,
        s: &Server,
        local: NtpTimestamp,
        truth_minus_local: f64,
        noise: f64,
    ) -> (Sample, Upstream) {
        let offset = truth_minus_local + s.asymmetry_s + s.error_s + self.jitter_s * noise;
        let upstream = Upstream {
            stratum: 1,
            reference_id: ReferenceId([127, 0, 0, s.index as u8]),
            root_delay: 0.0,
            root_dispersion: self.root_dispersion_s,
            delay: self.delay_s,
            jitter: self.jitter_s,
            authenticated: self.authenticated,
            role: NetRole::Normal,
            poll_interval_s: self.poll_s,
        };
        let sample = Sample {
            source: s.index,
            kind: SourceKind::Ntp,
            local_time: local,
            offset: NtpDuration::from_seconds_f64(offset),
            dispersion: NtpDuration::from_seconds_f64(upstream.root_distance() + 2e-6),
        };
        (sample, upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofs_and_polls() {
        let s = Spoof::Drag {
            at: 100.0,
            rate: 1e-5,
        };
        assert_eq!(s.offset(50.0), 0.0);
        assert!((s.offset(200.0) - 1e-3).abs() < 1e-12);
        assert_eq!(Spoof::Rollover { at: 0.0 }.offset(1.0), -619_315_200.0);
        let m = NetworkModel {
            lost_at: Some(100.0),
            ..NetworkModel::default()
        };
        let servers = m.servers(|| 0.5);
        assert_eq!(servers.len(), 3);
        let polls = (0..200)
            .filter(|&t| m.polled(&servers[1], f64::from(t)))
            .count();
        // Phase 5.33 s, every 16 s, until second 100.
        assert_eq!(polls, 6);
    }
}
