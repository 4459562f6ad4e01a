//! Per-source statistics for status reports: reachability register,
//! sample count, last sample, offset and jitter.

use skytime_proto::{NtpDuration, NtpTimestamp};

/// Statistics of one source, updated by the source manager.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SourceStats {
    /// 8-bit reachability register, NTP style: shifted left at every
    /// reach interval, bit 0 set if a sample was accepted in it.
    pub reach: u8,
    pub samples: u64,
    pub rejected: u64,
    pub last_sample: Option<NtpTimestamp>,
    /// reference - local of the last sample, seconds.
    pub last_offset: Option<f64>,
    /// Smoothed RMS of the change between consecutive offsets, seconds.
    pub jitter: Option<f64>,
    got_since_tick: bool,
}

impl SourceStats {
    /// Records an accepted sample.
    pub fn accept(&mut self, local: NtpTimestamp, offset: NtpDuration) {
        let off = offset.to_seconds_f64();
        if let Some(prev) = self.last_offset {
            let d2 = (off - prev).powi(2);
            let var = match self.jitter {
                Some(j) => j * j + (d2 - j * j) / 8.0,
                None => d2,
            };
            self.jitter = Some(var.max(0.0).sqrt());
        }
        self.samples += 1;
        self.last_sample = Some(local);
        self.last_offset = Some(off);
        self.got_since_tick = true;
    }

    pub fn reject(&mut self) {
        self.rejected += 1;
    }

    /// Ends one reach interval.
    pub fn tick(&mut self) {
        self.reach = (self.reach << 1) | u8::from(self.got_since_tick);
        self.got_since_tick = false;
    }

    pub fn reachable(&self) -> bool {
        self.reach != 0
    }

    /// Seconds since the last sample at `now`.
    pub fn last_sample_age(&self, now: NtpTimestamp) -> Option<f64> {
        self.last_sample.map(|t| (now - t).to_seconds_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_register_shifts_and_drains() {
        let mut s = SourceStats::default();
        let t = NtpTimestamp::from_unix(1_800_000_000, 0);
        s.accept(t, NtpDuration::from_seconds_f64(0.001));
        s.tick();
        s.tick();
        s.accept(t, NtpDuration::from_seconds_f64(0.001));
        s.tick();
        assert_eq!(s.reach, 0b101);
        for _ in 0..8 {
            s.tick();
        }
        assert_eq!(s.reach, 0);
        assert!(!s.reachable());
        assert_eq!(s.samples, 2);
    }

    #[test]
    fn jitter_follows_offset_changes() {
        let mut s = SourceStats::default();
        let t = NtpTimestamp::from_unix(1_800_000_000, 0);
        for i in 0..200 {
            let off = if i % 2 == 0 { 0.001 } else { -0.001 };
            s.accept(t, NtpDuration::from_seconds_f64(off));
        }
        let j = s.jitter.unwrap();
        assert!((j - 0.002).abs() < 1e-4, "{j}");
        assert!(
            (s.last_sample_age(t + NtpDuration::from_seconds_f64(3.0))
                .unwrap()
                - 3.0)
                .abs()
                < 1e-6
        );
    }
}
