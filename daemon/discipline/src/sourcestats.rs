//! Per-source statistics (chrony's sourcestats, in small): a window of
//! recent samples, a line fitted through them on the free-running
//! timescale, reachability, and the report `chronyc sourcestats` shows.
//!
//! Samples are stored with the phase the discipline had applied to the
//! clock at their time (`applied`), so the fit sees the oscillator, not the
//! steering: `raw = offset + applied`. A step moves the stored samples
//! onto the new timescale.

use crate::sample::{Sample, SourceKind};
use skytime_proto::NtpTimestamp;
use std::collections::VecDeque;

/// Samples kept per source (about a minute at 1 Hz).
pub const WINDOW: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Stored {
    t: NtpTimestamp,
    offset: f64,
    applied: f64,
    dispersion: f64,
}

#[derive(Clone, Debug)]
pub struct SourceStats {
    pub kind: SourceKind,
    samples: VecDeque<Stored>,
    pub last_sample: Option<NtpTimestamp>,
    pub total_samples: u64,
    /// Mean spacing of samples (seconds), for the control horizon.
    pub interval_s: f64,
}

/// The fit of a source's window, on the steered timescale at `now`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub n: usize,
    /// Offset (reference - local) estimated for `now`, seconds.
    pub offset: f64,
    /// Standard deviation of the residuals, seconds.
    pub stddev: f64,
    /// Frequency of the source relative to the free-running oscillator
    /// (d raw / dt), and its standard error.
    pub raw_freq: f64,
    pub skew: f64,
    pub span_s: f64,
    /// Largest dispersion stated by the source in the window.
    pub dispersion: f64,
    /// The newest sample's offset.
    pub last_offset: f64,
}

impl SourceStats {
    pub fn new(kind: SourceKind) -> Self {
        Self {
            kind,
            samples: VecDeque::with_capacity(WINDOW),
            last_sample: None,
            total_samples: 0,
            interval_s: 1.0,
        }
    }

    pub fn add(&mut self, s: &Sample, applied: f64) {
        if let Some(last) = self.last_sample {
            let gap = (s.local_time - last).to_seconds_f64();
            if gap > 0.0 {
                self.interval_s += (gap.clamp(0.1, 1024.0) - self.interval_s) * 0.1;
            }
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(Stored {
            t: s.local_time,
            offset: s.offset.to_seconds_f64(),
            applied,
            dispersion: s.dispersion.to_seconds_f64().max(0.0),
        });
        self.last_sample = Some(s.local_time);
        self.total_samples += 1;
    }

    /// Moves the window onto the timescale of a clock stepped by `step`
    /// seconds (offsets shrink by it, local times grow by it).
    pub fn apply_step(&mut self, step: skytime_proto::NtpDuration) {
        let s = step.to_seconds_f64();
        for x in &mut self.samples {
            x.t = x.t + step;
            x.offset -= s;
        }
        if let Some(t) = self.last_sample.as_mut() {
            *t = *t + step;
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn reachable(&self, now: NtpTimestamp, timeout_s: f64) -> bool {
        self.last_sample
            .is_some_and(|t| (now - t).to_seconds_f64() < timeout_s)
    }

    /// The median of the newest `n` offsets taken within `max_age_s` of
    /// `now`, each carried to `now` by the steering applied since it was
    /// taken (`applied_now`): where the source says the clock is now,
    /// reacting to a step within `n / 2` samples. `None` without such
    /// samples (older ones have drifted with the oscillator).
    pub fn recent(
        &self,
        n: usize,
        now: NtpTimestamp,
        max_age_s: f64,
        applied_now: f64,
    ) -> Option<f64> {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .rev()
            .take(n)
            .filter(|s| (now - s.t).to_seconds_f64() <= max_age_s)
            .map(|s| s.offset + s.applied - applied_now)
            .collect();
        median(&mut v)
    }

    /// Robust line fit: drop samples further than 5 median absolute
    /// deviations from the median of the raw offsets' detrended values,
    /// then least squares. `applied_now` is the applied phase at `now`.
    pub fn fit(&self, now: NtpTimestamp, applied_now: f64) -> Option<Fit> {
        let newest = self.samples.back()?;
        let base_applied = newest.applied;
        let pts: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|s| {
                (
                    (s.t - newest.t).to_seconds_f64(),
                    s.offset + (s.applied - base_applied),
                )
            })
            .collect();
        // Robust first pass (Theil-Sen style, so a fifth of garbage cannot
        // tilt it): slope = median of slopes between samples half a window
        // apart, intercept = median of the detrended values; then drop what
        // lies beyond 5 robust standard deviations and fit least squares.
        let half = pts.len() / 2;
        let mut slopes: Vec<f64> = (0..pts.len() - half)
            .filter_map(|i| {
                let (p, q) = (pts[i], pts[i + half]);
                (q.0 - p.0 > 0.0).then(|| (q.1 - p.1) / (q.0 - p.0))
            })
            .collect();
        let slope = median(&mut slopes).unwrap_or(0.0);
        let mut detrended: Vec<f64> = pts.iter().map(|&(x, y)| y - slope * x).collect();
        let intercept = median(&mut detrended).unwrap_or(0.0);
        let line = (intercept, slope, 0.0, f64::INFINITY);
        let mut res: Vec<f64> = pts
            .iter()
            .map(|&(x, y)| (y - line.0 - line.1 * x).abs())
            .collect();
        let mad = median(&mut res).unwrap_or(0.0).max(1e-9);
        let kept: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|&(x, y)| (y - line.0 - line.1 * x).abs() <= 5.0 * mad * 1.4826)
            .collect();
        let (a, b, stddev, skew) = if kept.len() >= 2 {
            ls_fit(kept.iter().copied())?
        } else {
            line
        };
        let dt_now = (now - newest.t).to_seconds_f64();
        let raw_now = a + b * dt_now;
        let offset = raw_now - (applied_now - base_applied);
        let span_s = (newest.t - self.samples.front()?.t).to_seconds_f64();
        let dispersion = self
            .samples
            .iter()
            .map(|s| s.dispersion)
            .fold(0.0, f64::max);
        Some(Fit {
            n: kept.len(),
            offset,
            stddev,
            raw_freq: b,
            skew,
            span_s,
            dispersion,
            last_offset: newest.offset,
        })
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Least squares y = a + b x: returns (a, b, residual stddev, stderr of b).
fn ls_fit(pts: impl Iterator<Item = (f64, f64)> + Clone) -> Option<(f64, f64, f64, f64)> {
    let n = pts.clone().count() as f64;
    if n < 1.0 {
        return None;
    }
    let mx = pts.clone().map(|p| p.0).sum::<f64>() / n;
    let my = pts.clone().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.clone().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = pts.clone().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let dof = (n - 2.0).max(1.0);
    let ssr: f64 = pts.map(|(x, y)| (y - a - b * x).powi(2)).sum();
    let var = ssr / dof;
    let skew = if sxx > 0.0 {
        (var / sxx).sqrt()
    } else {
        f64::INFINITY
    };
    Some((a, b, var.sqrt(), skew))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_proto::NtpDuration;

    fn sample(t: f64, offset: f64) -> Sample {
        Sample {
            source: 0,
            kind: SourceKind::Pps,
            local_time: NtpTimestamp::from_unix(1_700_000_000, 0)
                + NtpDuration::from_seconds_f64(t),
            offset: NtpDuration::from_seconds_f64(offset),
            dispersion: NtpDuration::from_nanos(1000),
        }
    }

    #[test]
    fn fit_sees_through_steering_and_outliers() {
        let mut st = SourceStats::new(SourceKind::Pps);
        // Oscillator: raw offset grows 10 ppm. The discipline applied
        // 4 ppm of correction, so the measured offset grows 6 ppm.
        for k in 0..40 {
            let t = k as f64;
            let mut off = 10e-6 * t - 4e-6 * t;
            if k == 20 {
                off += 1e-3; // one outlier
            }
            st.add(&sample(t, off), 4e-6 * t);
        }
        let now = NtpTimestamp::from_unix(1_700_000_000, 0) + NtpDuration::from_seconds_f64(40.0);
        let fit = st.fit(now, 4e-6 * 40.0).unwrap();
        assert_eq!(fit.n, 39, "the outlier is dropped");
        assert!((fit.raw_freq - 10e-6).abs() < 1e-12, "{}", fit.raw_freq);
        assert!((fit.offset - 6e-6 * 40.0).abs() < 1e-9, "{}", fit.offset);
        assert!(st.reachable(now, 8.0));
        assert!(!st.reachable(now + NtpDuration::from_seconds_f64(10.0), 8.0));
    }
}
