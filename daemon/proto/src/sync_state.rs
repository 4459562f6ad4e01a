//! What the server tells its clients about its own clock.
//!
//! The time sources and the discipline (later layers) publish a
//! [`SyncState`]; the server core reads it for every reply. Keeping it one
//! plain value makes "stratum, LI and root dispersion follow the real state
//! at every moment" a matter of publishing a new value.

use crate::packet::{LeapIndicator, ReferenceId};
use crate::smear::Smear;
use crate::time::{NtpDuration, NtpTimestamp};

/// Stratum of an unsynchronized server (RFC 5905: 16 means unsynchronized).
pub const STRATUM_UNSYNCHRONIZED: u8 = 16;

/// How fast the error bound grows while the clock runs free: RFC 5905's
/// PHI, 15 ppm, which is also what chrony assumes by default.
pub const DEFAULT_MAX_DRIFT_PPM: f64 = 15.0;

/// The server's view of its own synchronization, as carried in replies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyncState {
    pub leap: LeapIndicator,
    /// 1..=15 when synchronized, 16 when not.
    pub stratum: u8,
    pub reference_id: ReferenceId,
    /// When the clock was last updated from its source.
    pub reference_time: NtpTimestamp,
    /// Round-trip delay to the primary reference (zero for a local refclock).
    pub root_delay: NtpDuration,
    /// Error bound to the primary reference, valid at `reference_time`.
    pub root_dispersion: NtpDuration,
    /// How fast the error bound grows after `reference_time`, in ppm.
    pub dispersion_rate_ppm: f64,
    /// log2 seconds of the system clock's precision.
    pub precision: i8,
    /// A leap smear in progress: served timestamps carry its offset.
    pub smear: Option<Smear>,
}

impl SyncState {
    /// Not synchronized to anything: LI=3, stratum 16, zero reference.
    pub fn unsynchronized(precision: i8) -> Self {
        Self {
            leap: LeapIndicator::Unsynchronized,
            stratum: STRATUM_UNSYNCHRONIZED,
            reference_id: ReferenceId::NONE,
            reference_time: NtpTimestamp::ZERO,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            dispersion_rate_ppm: DEFAULT_MAX_DRIFT_PPM,
            precision,
            smear: None,
        }
    }

    /// The local-clock fallback (chrony's `local stratum N`): the server
    /// claims `stratum` and a small constant error bound, refreshed at `now`.
    pub fn local(stratum: u8, precision: i8, now: NtpTimestamp) -> Self {
        Self {
            leap: LeapIndicator::NoWarning,
            stratum,
            reference_id: ReferenceId::LOCAL,
            reference_time: now,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            dispersion_rate_ppm: 0.0,
            precision,
            smear: None,
        }
    }

    pub fn is_synchronized(&self) -> bool {
        self.leap != LeapIndicator::Unsynchronized && self.stratum < STRATUM_UNSYNCHRONIZED
    }

    /// The error bound at `now`: the dispersion at the last update plus its
    /// growth since then (never below the value at the update).
    pub fn root_dispersion_at(&self, now: NtpTimestamp) -> NtpDuration {
        if !self.is_synchronized() {
            return self.root_dispersion;
        }
        let elapsed = (now - self.reference_time).to_seconds_f64().max(0.0);
        let growth = NtpDuration::from_seconds_f64(elapsed * self.dispersion_rate_ppm * 1e-6);
        self.root_dispersion + growth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynchronized_state_says_so() {
        let s = SyncState::unsynchronized(-20);
        assert!(!s.is_synchronized());
        assert_eq!(s.stratum, 16);
        assert_eq!(s.leap, LeapIndicator::Unsynchronized);
    }

    #[test]
    fn local_state_is_synchronized_at_its_stratum() {
        let s = SyncState::local(10, -20, NtpTimestamp::from_unix(1_700_000_000, 0));
        assert!(s.is_synchronized());
        assert_eq!(s.stratum, 10);
        assert_eq!(s.reference_id, ReferenceId::LOCAL);
    }

    #[test]
    fn dispersion_grows_with_time_since_update() {
        let t0 = NtpTimestamp::from_unix(1_700_000_000, 0);
        let mut s = SyncState::local(1, -20, t0);
        s.dispersion_rate_ppm = 15.0;
        s.root_dispersion = NtpDuration::from_nanos(1_000);
        let later = t0 + NtpDuration::from_seconds_f64(1000.0);
        let d = s.root_dispersion_at(later).to_nanos();
        assert!((d - 15_001_000).abs() < 10, "{d}");
        // A timestamp before the update does not shrink the bound.
        let earlier = t0 + NtpDuration::from_seconds_f64(-5.0);
        assert_eq!(s.root_dispersion_at(earlier).to_nanos(), 999);
    }
}
