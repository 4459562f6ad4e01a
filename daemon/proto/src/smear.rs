//! Leap smear: the offset a smearing server adds to the timestamps it
//! serves, so that clients see the leap second spread over a window
//! instead of a step.
//!
//! The system clock itself stays UTC (the kernel inserts or deletes the
//! second); only served time is smeared. It lives here, beside
//! [`SyncState`](crate::SyncState), because the server applies it to every
//! reply while the smear is on.

use crate::time::{NtpDuration, NtpTimestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmearShape {
    Linear,
    /// Raised cosine: no frequency jump at the start and the end.
    Cosine,
}

impl SmearShape {
    /// Fraction of the second smeared at position `u` in [0, 1].
    fn fraction(self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        match self {
            SmearShape::Linear => u,
            SmearShape::Cosine => 0.5 * (1.0 - (std::f64::consts::PI * u).cos()),
        }
    }
}

/// One leap second smeared over `duration_s`, centred on the leap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smear {
    /// The instant of the leap: midnight UTC after the last minute of the
    /// month that carries the leap.
    pub leap_at: NtpTimestamp,
    /// True for an inserted second, false for a deleted one.
    pub insert: bool,
    pub shape: SmearShape,
    pub duration_s: f64,
}

impl Smear {
    /// Offset to add to a system-clock timestamp `now` to get smeared time.
    /// `kernel_applied` says whether the system clock has already taken
    /// the leap (the caller knows it from the kernel's state; during the
    /// repeated second the reading alone is ambiguous).
    pub fn offset(&self, now: NtpTimestamp, kernel_applied: bool) -> NtpDuration {
        let at = self.leap_at;
        // Readings the system clock only shows after the step settle it.
        let kernel_applied = kernel_applied
            || if self.insert {
                now >= at
            } else {
                now >= at + NtpDuration::from_seconds_f64(-1.0)
            };
        let sign = if self.insert { 1.0 } else { -1.0 };
        // Position in the window on the continuous (pre-leap) timescale.
        let since_leap = (now - at).to_seconds_f64() + if kernel_applied { sign } else { 0.0 };
        let f = self
            .shape
            .fraction((since_leap + self.duration_s / 2.0) / self.duration_s);
        let total = match (self.insert, kernel_applied) {
            (true, false) => -f,
            (true, true) => 1.0 - f,
            (false, false) => f,
            (false, true) => f - 1.0,
        };
        NtpDuration::from_seconds_f64(total)
    }

    /// Whether `now` is close enough to the window that replies must carry
    /// the smear (the window plus a margin for the leap itself).
    pub fn is_active(&self, now: NtpTimestamp) -> bool {
        (now - self.leap_at).to_seconds_f64().abs() <= self.duration_s / 2.0 + 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smear(insert: bool, shape: SmearShape) -> Smear {
        Smear {
            leap_at: NtpTimestamp::from_unix(1_483_228_800, 0),
            insert,
            shape,
            duration_s: 3600.0,
        }
    }

    #[test]
    fn zero_outside_full_second_after_and_continuous_across_the_step() {
        for shape in [SmearShape::Linear, SmearShape::Cosine] {
            let s = smear(true, shape);
            let at = |d: f64| s.leap_at + NtpDuration::from_seconds_f64(d);
            assert_eq!(s.offset(at(-1800.5), false).to_seconds_f64(), 0.0);
            assert!((s.offset(at(1801.0), true).to_seconds_f64()).abs() < 1e-9);
            // Half-way: half a second smeared.
            assert!((s.offset(at(-0.5), false).to_seconds_f64() + 0.5).abs() < 1e-3);
            // 1 ms before the leap and 1 ms after the kernel's step back
            // (the system clock reads the last second again), served time
            // has moved on by 2 ms.
            let before = at(-0.001) + s.offset(at(-0.001), false);
            let after = at(-0.999) + s.offset(at(-0.999), true);
            assert!(((after - before).to_seconds_f64() - 0.002).abs() < 1e-5);
        }
    }

    #[test]
    fn deleted_second_smears_the_other_way() {
        let s = smear(false, SmearShape::Linear);
        let mid = s.leap_at + NtpDuration::from_seconds_f64(-1.5);
        assert!(s.offset(mid, false).to_seconds_f64() > 0.49);
        assert!(!s.is_active(s.leap_at + NtpDuration::from_seconds_f64(1900.0)));
        assert!(s.is_active(s.leap_at));
    }
}
