//! Reading the system clock (CLOCK_REALTIME): the one place the daemon
//! asks what time it is, and how finely it can tell.

use nix::time::{clock_gettime, ClockId};
use skytime_proto::NtpTimestamp;

/// Reads CLOCK_REALTIME as an NTP timestamp (the Unix epoch in the
/// impossible case that the kernel refuses).
pub fn now() -> NtpTimestamp {
    read().unwrap_or(NtpTimestamp::from_unix(0, 0))
}

/// Reads CLOCK_REALTIME, or says why not.
pub fn read() -> nix::Result<NtpTimestamp> {
    let ts = clock_gettime(ClockId::CLOCK_REALTIME)?;
    Ok(NtpTimestamp::from_unix(ts.tv_sec(), ts.tv_nsec() as u32))
}

/// log2 seconds of the system clock's reading resolution, measured like
/// chrony does: the smallest non-zero step between consecutive reads.
pub fn measure_precision() -> i8 {
    let mut best = i64::MAX;
    let mut last = now();
    for _ in 0..200 {
        let t = now();
        let step = (t - last).to_nanos();
        if step > 0 {
            best = best.min(step);
        }
        last = t;
    }
    let seconds = (best.clamp(1, 1_000_000_000) as f64) * 1e-9;
    seconds.log2().ceil().clamp(-30.0, 0.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_move_forward_and_precision_is_plausible() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert!(a.to_unix(0).0 > 1_500_000_000, "the clock reads Unix time");
        // Even a tick-based clocksource reads to a millisecond.
        assert!((-30..=-10).contains(&measure_precision()));
    }
}
