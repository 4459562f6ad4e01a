//! The recent history of the appliance, sans IO: one sample a second in,
//! one [`HistoryPoint`] per interval out, kept in a ring of at most
//! [`CAPACITY`] points (24 hours at the default interval of 60 s).
//!
//! Memory is bounded by the ring: [`CAPACITY`] points of
//! `size_of::<HistoryPoint>()` (64 bytes), 90 KiB at most, allocated
//! as points arrive.

use skytime_api::HistoryPoint;
use std::collections::VecDeque;

/// Points held: 24 hours of 60-second points.
pub const CAPACITY: usize = 1440;

/// What the monitor sees each second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    /// Following a time source (tracking or holdover).
    pub synchronized: bool,
    /// Seconds; positive: the system clock is fast.
    pub offset: f64,
    /// ppm.
    pub frequency: f64,
    pub pps_jitter: Option<f64>,
    pub satellites: Option<u32>,
    /// NTP requests received so far (cumulative).
    pub requests: u64,
}

/// The interval being summed up.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Index of the interval (Unix seconds / interval).
    bucket: i64,
    n: u32,
    offset: f64,
    frequency: f64,
    synchronized: bool,
    pps_jitter: Option<f64>,
    satellites: Option<u32>,
    /// Where the request count and time stood when the interval began
    /// (the last sample of the interval before, or its own first).
    start: (u64, f64),
    end: (u64, f64),
}

/// The ring of points and the interval being summed up.
#[derive(Debug)]
pub struct History {
    interval: u32,
    points: VecDeque<HistoryPoint>,
    open: Option<Open>,
}

impl History {
    /// A history of `interval`-second points (1 to 3600).
    pub fn new(interval: u32) -> Self {
        Self {
            interval: interval.clamp(1, 3600),
            points: VecDeque::new(),
            open: None,
        }
    }

    /// Takes one sample. Samples that are not finite are skipped; a clock
    /// that goes back (set at boot, stepped) drops the open interval and
    /// the points that now lie in the future.
    pub fn record(&mut self, s: &Sample) {
        if !(s.at.is_finite() && s.offset.is_finite() && s.frequency.is_finite()) {
            return;
        }
        let bucket = (s.at / f64::from(self.interval)).floor() as i64;
        let mut start = (s.requests, s.at);
        if let Some(open) = self.open {
            if bucket < open.bucket || s.at < open.end.1 {
                self.open = None;
                let at = s.at as i64;
                while self.points.back().is_some_and(|p| p.time > at) {
                    self.points.pop_back();
                }
            } else if bucket > open.bucket {
                self.close(open);
                start = open.end;
            } else {
                let o = self.open.as_mut().expect("open interval");
                o.n += 1;
                o.offset += s.offset;
                o.frequency += s.frequency;
                o.synchronized &= s.synchronized;
                o.pps_jitter = s.pps_jitter.filter(|j| j.is_finite());
                o.satellites = match (o.satellites, s.satellites) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                o.end = (s.requests, s.at);
                return;
            }
        }
        self.open = Some(Open {
            bucket,
            n: 1,
            offset: s.offset,
            frequency: s.frequency,
            synchronized: s.synchronized,
            pps_jitter: s.pps_jitter.filter(|j| j.is_finite()),
            satellites: s.satellites,
            start,
            end: (s.requests, s.at),
        });
    }

    fn close(&mut self, o: Open) {
        let span = o.end.1 - o.start.1;
        let requests = o.end.0.saturating_sub(o.start.0) as f64;
        let n = f64::from(o.n);
        self.points.push_back(HistoryPoint {
            time: (o.bucket + 1) * i64::from(self.interval),
            interval: self.interval,
            synchronized: o.synchronized,
            offset: o.offset / n,
            frequency: o.frequency / n,
            pps_jitter: o.pps_jitter,
            satellites: o.satellites,
            request_rate: if span > 0.0 { requests / span } else { 0.0 },
        });
        while self.points.len() > CAPACITY {
            self.points.pop_front();
        }
    }

    /// The points that end within the last `seconds` before `now` (0:
    /// every point held), oldest first.
    pub fn points(&self, now: i64, seconds: u32) -> Vec<HistoryPoint> {
        let from = if seconds == 0 {
            i64::MIN
        } else {
            now - i64::from(seconds)
        };
        self.points
            .iter()
            .filter(|p| p.time > from)
            .cloned()
            .collect()
    }

    pub fn interval(&self) -> u32 {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_800_000_000.0;

    fn sample(at: f64, requests: u64) -> Sample {
        Sample {
            at,
            synchronized: true,
            offset: 1e-6,
            frequency: -10.0,
            pps_jitter: Some(2e-7),
            satellites: Some(8),
            requests,
        }
    }

    #[test]
    fn one_point_per_interval_with_means_and_rates() {
        let mut h = History::new(60);
        // Two minutes of samples a second, 10 requests a second; the
        // offset moves and the satellites drop once.
        for k in 0..120 {
            let mut s = sample(T0 + k as f64, 10 * k);
            s.offset = if k < 60 { 1e-6 } else { 3e-6 };
            if k == 70 {
                s.satellites = Some(4);
                s.synchronized = false;
            }
            h.record(&s);
        }
        // The second interval is still open; the next sample closes it.
        h.record(&sample(T0 + 120.0, 1200));
        let p = h.points(T0 as i64 + 121, 0);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].time, T0 as i64 + 60);
        assert_eq!(p[0].interval, 60);
        assert!((p[0].offset - 1e-6).abs() < 1e-12);
        assert!((p[1].offset - 3e-6).abs() < 1e-12);
        assert!(
            (p[0].request_rate - 10.0).abs() < 1e-9,
            "{}",
            p[0].request_rate
        );
        assert!(
            (p[1].request_rate - 10.0).abs() < 1e-9,
            "{}",
            p[1].request_rate
        );
        assert_eq!((p[0].satellites, p[1].satellites), (Some(8), Some(4)));
        assert!(p[0].synchronized && !p[1].synchronized);
        // A window of 60 s holds the last point only.
        assert_eq!(h.points(T0 as i64 + 121, 61).len(), 1);
    }

    #[test]
    fn the_ring_is_bounded_and_small() {
        let mut h = History::new(1);
        for k in 0..(CAPACITY as u64 * 2) {
            h.record(&sample(T0 + k as f64, k));
        }
        assert_eq!(h.points(0, 0).len(), CAPACITY);
        assert!(
            CAPACITY * std::mem::size_of::<HistoryPoint>() <= 96 * 1024,
            "{} bytes a point",
            std::mem::size_of::<HistoryPoint>()
        );
    }

    #[test]
    fn a_clock_set_back_drops_what_lies_in_the_future() {
        let mut h = History::new(10);
        for k in 0..35 {
            h.record(&sample(T0 + k as f64, k));
        }
        assert_eq!(h.points(0, 0).len(), 3);
        // Set back by 15 s: the points ending after it are gone.
        h.record(&sample(T0 + 19.0, 40));
        assert_eq!(h.points(0, 0).len(), 1);
        // Garbage is not recorded.
        let mut bad = sample(T0 + 40.0, 41);
        bad.offset = f64::NAN;
        h.record(&bad);
        h.record(&sample(T0 + 50.0, 50));
        let p = h.points(0, 0);
        assert!(p.iter().all(|p| p.offset.is_finite()), "{p:?}");
    }
}
