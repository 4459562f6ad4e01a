//! NTP time formats (RFC 5905 section 6): the 64-bit timestamp, a signed
//! 64-bit duration of the same resolution, and the 32-bit short format used
//! for root delay and root dispersion.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: 32 bits of seconds and 32 bits of fraction.
///
/// It wraps every 136 years (era). Differences between timestamps are taken
/// modulo 2^64 and read as signed, which is correct as long as the two lie
/// within 68 years of each other (RFC 5905 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which means "unknown" on the wire.
    pub const ZERO: Self = Self(0);

    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn from_seconds_fraction(seconds: u32, fraction: u32) -> Self {
        Self(((seconds as u64) << 32) | fraction as u64)
    }

    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Converts Unix time (seconds and nanoseconds since 1970) to NTP time,
    /// rounding the fraction to nearest.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        let ntp_secs = (secs as i128 + UNIX_OFFSET_SECS as i128) as u64;
        let frac = ((nanos as u64) << 32).div_ceil(1_000_000_000) as u32;
        Self((ntp_secs << 32).wrapping_add(frac as u64))
    }

    /// Converts to Unix time in the era that contains `near_unix_secs`
    /// (pass any time within 68 years of the answer, such as a build date).
    pub fn to_unix(self, near_unix_secs: i64) -> (i64, u32) {
        let near = Self::from_unix(near_unix_secs, 0);
        let delta = self - near;
        let total_nanos = near_unix_secs as i128 * 1_000_000_000 + delta.to_nanos() as i128;
        let secs = total_nanos.div_euclid(1_000_000_000) as i64;
        let nanos = total_nanos.rem_euclid(1_000_000_000) as u32;
        (secs, nanos)
    }
}

impl Sub for NtpTimestamp {
    type Output = NtpDuration;
    fn sub(self, rhs: Self) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(rhs.0) as i64)
    }
}

impl Add<NtpDuration> for NtpTimestamp {
    type Output = NtpTimestamp;
    fn add(self, rhs: NtpDuration) -> NtpTimestamp {
        NtpTimestamp(self.0.wrapping_add(rhs.0 as u64))
    }
}

/// A signed duration in NTP resolution (2^-32 s), range +-68 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct NtpDuration(i64);

impl NtpDuration {
    pub const ZERO: Self = Self(0);
    pub const MAX: Self = Self(i64::MAX);

    pub const fn from_bits(bits: i64) -> Self {
        Self(bits)
    }

    pub const fn to_bits(self) -> i64 {
        self.0
    }

    pub fn from_seconds_f64(secs: f64) -> Self {
        Self((secs * 4_294_967_296.0) as i64)
    }

    pub fn to_seconds_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }

    pub fn from_nanos(nanos: i64) -> Self {
        Self((((nanos as i128) << 32) / 1_000_000_000) as i64)
    }

    pub fn to_nanos(self) -> i64 {
        ((self.0 as i128 * 1_000_000_000) >> 32) as i64
    }

    pub fn from_std(d: Duration) -> Self {
        Self::from_nanos(d.as_nanos().min(i64::MAX as u128) as i64)
    }

    pub fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }

    /// The 32-bit short format (16.16 unsigned) used for root delay and
    /// root dispersion. Negative values become zero, large ones saturate.
    pub fn to_short(self) -> u32 {
        if self.0 <= 0 {
            0
        } else {
            // Round up: an error bound must never be understated.
            let v = (self.0 as u64).div_ceil(1 << 16);
            v.min(u32::MAX as u64) as u32
        }
    }

    pub fn from_short(short: u32) -> Self {
        Self((short as i64) << 16)
    }
}

impl Add for NtpDuration {
    type Output = NtpDuration;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl Sub for NtpDuration {
    type Output = NtpDuration;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip_keeps_nanoseconds() {
        for &(s, n) in &[
            (0i64, 0u32),
            (1_700_000_000, 999_999_999),
            (2_000_000_000, 1),
        ] {
            let ts = NtpTimestamp::from_unix(s, n);
            let (s2, n2) = ts.to_unix(1_790_000_000);
            assert_eq!(s2, s);
            assert!((n2 as i64 - n as i64).abs() <= 1, "{n} -> {n2}");
        }
    }

    #[test]
    fn unix_epoch_is_ntp_seconds_2208988800() {
        assert_eq!(NtpTimestamp::from_unix(0, 0).seconds(), 2_208_988_800);
        assert_eq!(NtpTimestamp::from_unix(0, 500_000_000).fraction(), 1 << 31);
    }

    #[test]
    fn era_rollover_in_2036_is_handled() {
        // 2036-02-07T06:28:16Z is the first second of NTP era 1.
        let t = NtpTimestamp::from_unix(2_085_978_496, 0);
        assert_eq!(t.seconds(), 0);
        assert_eq!(t.to_unix(2_085_978_000).0, 2_085_978_496);
        let before = NtpTimestamp::from_unix(2_085_978_495, 0);
        assert_eq!((t - before).to_nanos(), 1_000_000_000);
    }

    #[test]
    fn short_format_rounds_up_and_saturates() {
        assert_eq!(NtpDuration::from_nanos(-5).to_short(), 0);
        assert_eq!(NtpDuration::from_bits(1).to_short(), 1);
        assert_eq!(NtpDuration::from_seconds_f64(1.0).to_short(), 1 << 16);
        assert_eq!(NtpDuration::MAX.to_short(), u32::MAX);
        assert_eq!(NtpDuration::from_short(1 << 16).to_seconds_f64(), 1.0);
    }

    #[test]
    fn durations_convert_between_units() {
        assert_eq!(NtpDuration::from_nanos(1_000_000_000).to_bits(), 1 << 32);
        assert_eq!(NtpDuration::from_nanos(-1_500).to_nanos(), -1_500);
        let d = NtpDuration::from_std(Duration::from_millis(250));
        assert_eq!(d.to_seconds_f64(), 0.25);
    }
}
