//! GPS integrity: network sources as a check on the GPS receiver.
//!
//! A receiver can be spoofed (stepped, or dragged off a few microseconds
//! per second), jammed, or roll its week number over; it then names the
//! wrong time with perfect confidence. The authenticated upstream sources
//! (NTS, or symmetric keys) are the witnesses: each says where UTC is,
//! within its root distance. The GPS is judged against every witness that
//! the network selection found a trueticker:
//!
//! ```text
//! disagrees with witness i  <=>  |gps - net_i| > gps_width + distance_i + bound
//! ```
//!
//! and is distrusted when a majority of the witnesses disagree. The GPS
//! side is the median of its latest samples (not a long fit), so a step is
//! seen within a few seconds; a drag at rate R is seen once it has moved
//! the GPS by `gps_width + distance + bound`, that is within
//! `(gps_width + distance + bound) / R` seconds. A GPS whose time jumps
//! by more than `max_jump` is distrusted even with no witness.
//!
//! Distrust is sticky: the GPS is trusted again only after agreeing for
//! `clear_after` seconds without a break, so a spoofer cannot flap it.

use skytime_proto::NtpTimestamp;

/// Tuning of the check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntegrityConfig {
    /// Disagreement beyond both sides' error bounds that counts, seconds.
    pub bound_s: f64,
    /// Agreement needed, without a break, to trust the GPS again.
    pub clear_after_s: f64,
    /// A jump of the GPS time larger than this is refused even when no
    /// witness can judge it (a week-number rollover), seconds.
    pub max_jump_s: f64,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        Self {
            bound_s: 0.001,
            clear_after_s: 60.0,
            max_jump_s: 3600.0,
        }
    }
}

/// One witness: a network source's offset and root distance, seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Witness {
    pub offset: f64,
    pub distance: f64,
}

/// What the witnesses say about the GPS at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Evidence {
    /// No authenticated network source can judge (or the GPS has no
    /// recent samples).
    NoWitness,
    /// The GPS agrees with a majority of `witnesses`.
    Agree { witnesses: usize },
    /// `against` of `witnesses` disagree with the GPS, which is `by_s`
    /// ahead of their median (negative: behind).
    Disagree {
        witnesses: usize,
        against: usize,
        by_s: f64,
    },
}

/// Judges the GPS's `offset` (half-width `width`) against `witnesses`.
pub fn judge(offset: f64, width: f64, witnesses: &[Witness], bound_s: f64) -> Evidence {
    if witnesses.is_empty() || !offset.is_finite() {
        return Evidence::NoWitness;
    }
    let against = witnesses
        .iter()
        .filter(|w| (offset - w.offset).abs() > width + w.distance + bound_s)
        .count();
    if against * 2 > witnesses.len() {
        let mut offs: Vec<f64> = witnesses.iter().map(|w| w.offset).collect();
        offs.sort_by(f64::total_cmp);
        let median = offs[offs.len() / 2];
        Evidence::Disagree {
            witnesses: witnesses.len(),
            against,
            by_s: offset - median,
        }
    } else {
        Evidence::Agree {
            witnesses: witnesses.len(),
        }
    }
}

/// Why the GPS is not trusted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distrust {
    /// A majority of the authenticated network sources disagree.
    Disagrees {
        witnesses: usize,
        against: usize,
        /// GPS minus the witnesses' median, seconds.
        by_s: f64,
    },
    /// The GPS time jumped by more than the configured limit.
    Jumped { by_s: f64 },
}

/// The check's state, for reports and alarms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntegrityReport {
    /// `None` while the GPS is trusted.
    pub distrust: Option<Distrust>,
    /// Since when it has been distrusted.
    pub since: Option<NtpTimestamp>,
    /// The latest evidence.
    pub evidence: Evidence,
}

/// What an observation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// The GPS is distrusted from now on.
    Distrusted,
    /// The GPS is trusted again.
    Restored,
}

/// The sticky verdict.
#[derive(Clone, Debug)]
pub struct Integrity {
    config: IntegrityConfig,
    distrust: Option<(Distrust, NtpTimestamp)>,
    agree_since: Option<NtpTimestamp>,
    evidence: Evidence,
}

impl Integrity {
    pub fn new(config: IntegrityConfig) -> Self {
        Self {
            config,
            distrust: None,
            agree_since: None,
            evidence: Evidence::NoWitness,
        }
    }

    pub fn config(&self) -> &IntegrityConfig {
        &self.config
    }

    pub fn trusted(&self) -> bool {
        self.distrust.is_none()
    }

    /// Takes the evidence at `now`. `self_consistent`: with no witness,
    /// whether the GPS agrees with the clock's own prediction (what can
    /// restore trust after a refused jump); `None` when unknown.
    pub fn observe(
        &mut self,
        now: NtpTimestamp,
        evidence: Evidence,
        self_consistent: Option<bool>,
    ) -> Change {
        self.evidence = evidence;
        match (&mut self.distrust, evidence) {
            (
                None,
                Evidence::Disagree {
                    witnesses,
                    against,
                    by_s,
                },
            ) => {
                self.distrust = Some((
                    Distrust::Disagrees {
                        witnesses,
                        against,
                        by_s,
                    },
                    now,
                ));
                self.agree_since = None;
                Change::Distrusted
            }
            (None, _) => Change::None,
            (Some((why, _)), e) => {
                let ok = match e {
                    Evidence::Agree { .. } => true,
                    Evidence::Disagree {
                        witnesses,
                        against,
                        by_s,
                    } => {
                        *why = Distrust::Disagrees {
                            witnesses,
                            against,
                            by_s,
                        };
                        false
                    }
                    // Without witnesses only a refused jump can clear,
                    // by the GPS agreeing with the clock again.
                    Evidence::NoWitness => {
                        matches!(why, Distrust::Jumped { .. }) && self_consistent == Some(true)
                    }
                };
                if !ok {
                    self.agree_since = None;
                    return Change::None;
                }
                let since = *self.agree_since.get_or_insert(now);
                if (now - since).to_seconds_f64() >= self.config.clear_after_s {
                    self.distrust = None;
                    self.agree_since = None;
                    Change::Restored
                } else {
                    Change::None
                }
            }
        }
    }

    /// The GPS jumped by `by_s` and the jump is refused.
    pub fn jumped(&mut self, now: NtpTimestamp, by_s: f64) -> Change {
        let was = self.trusted();
        match &mut self.distrust {
            Some((why @ Distrust::Jumped { .. }, _)) => *why = Distrust::Jumped { by_s },
            Some(_) => {}
            None => self.distrust = Some((Distrust::Jumped { by_s }, now)),
        }
        self.agree_since = None;
        if was {
            Change::Distrusted
        } else {
            Change::None
        }
    }

    pub fn report(&self) -> IntegrityReport {
        IntegrityReport {
            distrust: self.distrust.map(|(d, _)| d),
            since: self.distrust.map(|(_, t)| t),
            evidence: self.evidence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_proto::NtpDuration;

    fn t(s: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(s)
    }

    fn w(offset: f64) -> Witness {
        Witness {
            offset,
            distance: 0.002,
        }
    }

    #[test]
    fn a_majority_of_witnesses_decides() {
        let three = [w(0.0), w(0.0005), w(-0.0005)];
        assert_eq!(
            judge(0.001, 1e-6, &three, 0.001),
            Evidence::Agree { witnesses: 3 }
        );
        assert_eq!(
            judge(1.204, 1e-6, &three, 0.001),
            Evidence::Disagree {
                witnesses: 3,
                against: 3,
                by_s: 1.204
            }
        );
        // One falseticker witness is outvoted.
        let odd = [w(0.0), w(0.0), w(0.5)];
        assert_eq!(
            judge(0.0, 1e-6, &odd, 0.001),
            Evidence::Agree { witnesses: 3 }
        );
        // Half is no majority.
        assert_eq!(
            judge(0.0, 1e-6, &[w(0.0), w(0.5)], 0.001),
            Evidence::Agree { witnesses: 2 }
        );
        // A lone witness is a majority of one.
        assert!(matches!(
            judge(-0.01, 1e-6, &[w(0.0)], 0.001),
            Evidence::Disagree { against: 1, .. }
        ));
        assert_eq!(judge(0.0, 1e-6, &[], 0.001), Evidence::NoWitness);
    }

    #[test]
    fn distrust_is_sticky_until_a_minute_of_agreement() {
        let mut i = Integrity::new(IntegrityConfig::default());
        let bad = judge(1.0, 1e-6, &[w(0.0)], 0.001);
        let good = judge(0.0, 1e-6, &[w(0.0)], 0.001);
        assert_eq!(i.observe(t(0.0), good, None), Change::None);
        assert_eq!(i.observe(t(1.0), bad, None), Change::Distrusted);
        assert_eq!(i.report().since, Some(t(1.0)));
        for s in 2..40 {
            assert_eq!(i.observe(t(f64::from(s)), good, None), Change::None);
        }
        // A relapse restarts the count.
        assert_eq!(i.observe(t(40.0), bad, None), Change::None);
        for s in 41..101 {
            assert_eq!(i.observe(t(f64::from(s)), good, None), Change::None, "{s}");
        }
        assert_eq!(i.observe(t(101.0), good, None), Change::Restored);
        assert!(i.trusted());
    }

    #[test]
    fn a_refused_jump_clears_only_by_self_consistency() {
        let mut i = Integrity::new(IntegrityConfig::default());
        assert_eq!(i.jumped(t(0.0), -619_315_200.0), Change::Distrusted);
        assert_eq!(i.jumped(t(1.0), -619_315_200.0), Change::None);
        assert!(matches!(
            i.report().distrust,
            Some(Distrust::Jumped { by_s }) if by_s < -6e8
        ));
        for s in 2..200 {
            i.observe(t(f64::from(s)), Evidence::NoWitness, Some(false));
        }
        assert!(!i.trusted());
        for s in 200..260 {
            assert_eq!(
                i.observe(t(f64::from(s)), Evidence::NoWitness, Some(true)),
                Change::None
            );
        }
        assert_eq!(
            i.observe(t(260.0), Evidence::NoWitness, Some(true)),
            Change::Restored
        );
        // A disagreement is not cleared by self-consistency alone.
        i.observe(t(300.0), judge(1.0, 0.0, &[w(0.0)], 0.001), None);
        for s in 301..500 {
            i.observe(t(f64::from(s)), Evidence::NoWitness, Some(true));
        }
        assert!(!i.trusted());
    }
}
