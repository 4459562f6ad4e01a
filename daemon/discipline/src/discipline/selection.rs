//! Who steers: selection within the GPS receiver's sources and within
//! the network sources, the GPS integrity check between them, and the
//! choice between GPS, network and holdover.
//!
//! 1. Each group runs the intersection algorithm on its own ([`select`]).
//! 2. The network truetickers that are authenticated judge the GPS
//!    ([`crate::integrity`]); a distrusted GPS is a falseticker however
//!    good its own statistics look.
//! 3. A trusted GPS steers (PPS first). Without one, the network
//!    truetickers steer, the best of them (lowest stratum, then smallest
//!    distance) naming the reference and the others combined, unless the
//!    free-running clock is still better than they are (early holdover
//!    after a good GPS). `noselect` sources never steer.

use super::{Discipline, Mode};
use crate::integrity::{judge, Change, Evidence, Witness};
use crate::sample::{NetRole, SourceKind};
use crate::select::{select, tier, Candidate, SelectState};
use skytime_proto::NtpTimestamp;

/// GPS samples whose median stands for the GPS in the integrity check:
/// a few, so a step is seen within seconds and one outlier is not.
const RECENT_GPS_SAMPLES: usize = 5;

impl Discipline {
    fn candidate(&self, i: usize, now: NtpTimestamp, applied_now: f64) -> Candidate {
        let Some(st) = self.sources[i].as_ref() else {
            return Candidate {
                kind: SourceKind::Nmea,
                reachable: false,
                usable: false,
                offset: 0.0,
                distance: 0.0,
                trusted: false,
            };
        };
        let up = self.up(i);
        // A network source is quiet between its polls: it is unreachable
        // after missing about four of them.
        let timeout = match up {
            Some(u) if st.kind == SourceKind::Ntp => {
                self.cfg.source_timeout_s.max(4.0 * u.poll_interval_s + 2.0)
            }
            _ => self.cfg.source_timeout_s,
        };
        let fit = st.fit(now, applied_now);
        let (offset, distance) = fit.map_or((0.0, f64::INFINITY), |f| {
            let noise = self.noise[i].sqrt().max(f.stddev);
            (
                f.offset,
                f.dispersion + 3.0 * noise + f.skew * f.span_s.max(1.0),
            )
        });
        Candidate {
            kind: st.kind,
            reachable: st.reachable(now, timeout),
            usable: st.len() >= self.cfg.min_samples && distance <= self.cfg.max_distance_s,
            offset,
            distance,
            trusted: match st.kind {
                SourceKind::Pps => self.cfg.trust_pps,
                SourceKind::Ntp => up.is_some_and(|u| u.role == NetRole::Trust),
                _ => false,
            },
        }
    }

    fn up(&self, i: usize) -> Option<crate::sample::Upstream> {
        self.upstream.get(i).copied().flatten()
    }

    fn role(&self, i: usize) -> NetRole {
        self.up(i).map_or(NetRole::Normal, |u| u.role)
    }

    pub(super) fn reselect(&mut self, now: NtpTimestamp) {
        let applied_now = self.control.applied(now);
        let cands: Vec<Candidate> = (0..self.sources.len())
            .map(|i| self.candidate(i, now, applied_now))
            .collect();
        let mut states = vec![SelectState::Unreachable; cands.len()];
        let is_net = |i: usize| {
            self.sources[i]
                .as_ref()
                .is_some_and(|s| s.kind == SourceKind::Ntp)
        };
        let (net, gps): (Vec<usize>, Vec<usize>) = (0..cands.len()).partition(|&i| is_net(i));
        for group in [&gps, &net] {
            let sub: Vec<Candidate> = group.iter().map(|&i| cands[i]).collect();
            for (k, st) in select(&sub).into_iter().enumerate() {
                states[group[k]] = st;
            }
        }

        self.judge_gps(now, applied_now, &cands, &mut states, &gps, &net);

        // NMEA-class time is a fallback only while the oscillator on its
        // own is worse than it: early in holdover the filter's prediction
        // beats millisecond NMEA.
        let best_gps = gps
            .iter()
            .filter(|&&i| states[i] == SelectState::Selected)
            .map(|&i| tier(cands[i].kind))
            .min();
        if best_gps == Some(tier(SourceKind::Nmea)) && self.selected_kind != Some(SourceKind::Nmea)
        {
            if let Some(held) = self.held_error(now) {
                for &i in &gps {
                    if states[i] == SelectState::Selected && held < cands[i].distance {
                        states[i] = SelectState::Candidate;
                    }
                }
            }
        }

        // Network truetickers: which may steer, and the best of them.
        let gps_steers = gps.iter().any(|&i| states[i] == SelectState::Selected);
        let mut steering: Vec<usize> = Vec::new();
        for &i in &net {
            if states[i] == SelectState::Selected {
                if gps_steers || self.role(i) == NetRole::NoSelect {
                    states[i] = SelectState::Candidate;
                } else {
                    steering.push(i);
                }
            }
        }
        let best = steering.iter().copied().min_by(|&a, &b| {
            let stratum = |i: usize| self.up(i).map_or(u8::MAX, |u| u.stratum);
            stratum(a)
                .cmp(&stratum(b))
                .then(cands[a].distance.total_cmp(&cands[b].distance))
        });
        let holdover_better = match (best, self.held_error(now)) {
            (Some(b), Some(held)) => held < cands[b].distance,
            _ => false,
        };
        self.primary = None;
        for &i in &steering {
            states[i] = if holdover_better {
                SelectState::Candidate
            } else if Some(i) == best {
                self.primary = Some(i);
                SelectState::Selected
            } else {
                SelectState::Combined
            };
        }
        self.states = states;
    }

    /// The error bound of the free-running clock now, while it still runs
    /// on a trusted GPS's estimate; `None` when there is nothing to hold
    /// (no estimate, lost, or last steered by the network).
    fn held_error(&self, now: NtpTimestamp) -> Option<f64> {
        if matches!(self.mode, Mode::Lost | Mode::Startup) || !self.integrity.trusted() {
            return None;
        }
        if !self.selected_kind.is_some_and(SourceKind::is_gps) {
            return None;
        }
        let e = self.estimate()?;
        let since = (now - self.last_update?).to_seconds_f64().max(0.0);
        Some(3.0 * e.var_theta_after(since).sqrt() + self.cfg.holdover_drift_ppm * 1e-6 * since)
    }

    /// The integrity check: the best GPS trueticker against the
    /// authenticated network truetickers. A distrusted GPS's sources
    /// become falsetickers.
    fn judge_gps(
        &mut self,
        now: NtpTimestamp,
        applied_now: f64,
        cands: &[Candidate],
        states: &mut [SelectState],
        gps: &[usize],
        net: &[usize],
    ) {
        let best = gps
            .iter()
            .copied()
            .filter(|&i| states[i] == SelectState::Selected)
            .min_by_key(|&i| tier(cands[i].kind));
        let gps_now = best.and_then(|i| {
            let recent = self.sources[i].as_ref()?.recent(
                RECENT_GPS_SAMPLES,
                now,
                self.cfg.source_timeout_s,
                applied_now,
            )?;
            Some((recent, cands[i].distance))
        });
        let witnesses: Vec<Witness> = net
            .iter()
            .filter(|&&i| states[i] == SelectState::Selected)
            .filter(|&&i| self.up(i).is_some_and(|u| u.authenticated))
            .map(|&i| Witness {
                offset: cands[i].offset,
                distance: cands[i].distance,
            })
            .collect();
        let bound = self.cfg.integrity.bound_s;
        let evidence = match gps_now {
            Some((offset, width)) => judge(offset, width, &witnesses, bound),
            None => Evidence::NoWitness,
        };
        // Without witnesses: does the GPS agree with the clock's own
        // prediction (what clears a refused jump)?
        let self_consistent = gps_now.and_then(|(offset, width)| {
            let f = self.filter.as_ref()?;
            let e = f.bank.estimate();
            let dt = (now - f.t).to_seconds_f64();
            let predicted = e.theta + e.rho * dt - (applied_now - self.control.applied(f.t));
            let sigma = e.var_theta_after(dt.max(0.0)).sqrt();
            Some((offset - predicted).abs() <= width + 3.0 * sigma + bound)
        });
        if self.integrity.observe(now, evidence, self_consistent) == Change::Distrusted {
            self.take_over_from_gps(now, applied_now, cands, states, net);
        }
        if !self.integrity.trusted() {
            for &i in gps {
                if matches!(states[i], SelectState::Selected | SelectState::Candidate) {
                    states[i] = SelectState::Falseticker;
                }
            }
        }
    }

    /// The GPS was just caught lying. It may have dragged the clock (and
    /// the frequency estimate with it) before: the estimate starts over
    /// from the best network source's own statistics, whose frequency is
    /// measured against the free-running oscillator and so untouched by
    /// the drag, and the next tick sets the clock's frequency from it.
    /// Replies name that source at once, never the GPS again. Without a
    /// network source that may steer, the clock is unsynchronized.
    fn take_over_from_gps(
        &mut self,
        now: NtpTimestamp,
        applied_now: f64,
        cands: &[Candidate],
        states: &[SelectState],
        net: &[usize],
    ) {
        let best = net
            .iter()
            .copied()
            .filter(|&i| states[i] == SelectState::Selected && self.role(i) != NetRole::NoSelect)
            .min_by(|&a, &b| {
                let stratum = |i: usize| self.up(i).map_or(u8::MAX, |u| u.stratum);
                stratum(a)
                    .cmp(&stratum(b))
                    .then(cands[a].distance.total_cmp(&cands[b].distance))
            });
        let fit = best.and_then(|b| Some((b, self.sources[b].as_ref()?.fit(now, applied_now)?)));
        self.initial = None;
        match fit {
            Some((b, f)) => {
                let r = cands[b].distance.powi(2).max(1e-14);
                self.filter = Some(super::Filter {
                    bank: crate::kalman::FilterBank::new(
                        f.offset,
                        r,
                        f.raw_freq,
                        f.skew.powi(2).clamp(1e-16, 1e-8),
                    ),
                    t: now,
                    rejects_in_row: 0,
                });
                self.mode = Mode::Tracking;
                self.selected_kind = Some(SourceKind::Ntp);
                self.selected_dispersion = f.dispersion;
                self.last_update = Some(now);
                self.followed = self.up(b);
                self.slew_end = Some(now);
            }
            None => {
                self.filter = None;
                self.slew_end = None;
                self.mode = Mode::Lost;
            }
        }
    }
}
