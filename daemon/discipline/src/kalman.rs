//! The offset/frequency estimator: a bank of two-state Kalman filters.
//!
//! State: `theta`, the offset of the reference from the local clock
//! (reference - local, seconds), and `rho`, the frequency correction the
//! free-running oscillator needs (s/s; a clock whose kernel frequency is
//! set to `rho` keeps time). With a correction `c` applied by the kernel,
//! `d theta / dt = rho - c`, so the prediction only needs the phase the
//! correction added over the interval (`applied`).
//!
//! Why Kalman and not chrony's regression: chrony (sourcestats.c) fits a
//! weighted line through a window of samples whose length it adapts with a
//! runs test, and reference.c then steers towards that fit. That is robust
//! for sparse NTP polls, but at 1 Hz with white timestamp noise and a
//! random-walk frequency, the Kalman filter is the optimal linear estimator
//! for exactly that noise model (and the "statistical floor" the simulator
//! prints is its steady state). The one thing the filter needs that
//! regression does not is the frequency wander `q`, which the oscillator
//! does not tell us. We run a small bank of filters, one per decade of
//! `q`, and weight them by their (forgetting) likelihood: the filter that
//! predicts best wins. That adapts to the wander of the real crystal
//! (temperature, ageing) without a tuning knob.

/// One two-state filter.
#[derive(Clone, Debug)]
pub struct Kalman2 {
    pub theta: f64,
    pub rho: f64,
    /// Covariance [[theta, cross], [cross, rho]].
    pub p: [[f64; 2]; 2],
    /// Frequency random-walk spectral density (1/s): the variance of `rho`
    /// grows by `q` per second.
    pub q: f64,
}

impl Kalman2 {
    pub fn new(theta: f64, var_theta: f64, rho: f64, var_rho: f64, q: f64) -> Self {
        Self {
            theta,
            rho,
            p: [[var_theta, 0.0], [0.0, var_rho]],
            q,
        }
    }

    /// Advances the state by `dt` seconds during which the kernel's
    /// frequency correction added `applied` seconds of phase to the clock.
    pub fn predict(&mut self, dt: f64, applied: f64) {
        if dt <= 0.0 {
            self.theta -= applied;
            return;
        }
        self.theta += self.rho * dt - applied;
        let [[a, b], [_, d]] = self.p;
        let q = self.q;
        let p00 = a + 2.0 * b * dt + d * dt * dt + q * dt * dt * dt / 3.0;
        let p01 = b + d * dt + q * dt * dt / 2.0;
        let p11 = d + q * dt;
        self.p = [[p00, p01], [p01, p11]];
    }

    /// Innovation and its variance for a measurement `z` of noise variance `r`.
    pub fn innovation(&self, z: f64, r: f64) -> (f64, f64) {
        (z - self.theta, self.p[0][0] + r)
    }

    /// Measurement update with innovation `nu` (possibly clipped by the
    /// caller) and noise variance `r`. Written so that a large prior
    /// variance does not cancel catastrophically.
    pub fn update(&mut self, nu: f64, r: f64) {
        let [[a, b], [_, d]] = self.p;
        let s = a + r;
        let k0 = a / s;
        let k1 = b / s;
        self.theta += k0 * nu;
        self.rho += k1 * nu;
        let p00 = a * r / s;
        let p01 = b * r / s;
        let p11 = (d - b * b / s).max(0.0);
        self.p = [[p00, p01], [p01, p11]];
    }
}

/// A bank of filters over a grid of frequency wanders, weighted by
/// likelihood with forgetting.
#[derive(Clone, Debug)]
pub struct FilterBank {
    models: Vec<Model>,
    /// Time constant of the likelihood memory (seconds).
    memory_s: f64,
}

#[derive(Clone, Debug)]
struct Model {
    kf: Kalman2,
    loglik: f64,
}

/// Wander grid: frequency random walk of 1e-11 .. 1e-7 per sqrt(second),
/// half a decade apart (variance per second 1e-22 .. 1e-14).
const Q_GRID: [f64; 9] = [
    1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14,
];

impl FilterBank {
    pub fn new(theta: f64, var_theta: f64, rho: f64, var_rho: f64) -> Self {
        let models = Q_GRID
            .iter()
            .map(|&q| Model {
                kf: Kalman2::new(theta, var_theta, rho, var_rho, q),
                loglik: 0.0,
            })
            .collect();
        Self {
            models,
            memory_s: 900.0,
        }
    }

    pub fn predict(&mut self, dt: f64, applied: f64) {
        for m in &mut self.models {
            m.kf.predict(dt, applied);
        }
    }

    /// The innovation of the combined estimate and its variance (for
    /// gating and for the measurement-noise estimate).
    pub fn innovation(&self, z: f64, r: f64) -> (f64, f64) {
        let e = self.estimate();
        (z - e.theta, e.var_theta + r)
    }

    /// Updates every model with `z`, whose innovations are clipped to
    /// `clip_sigmas` standard deviations (Huber-style, so one outlier that
    /// slipped through the gate moves the estimate only a bounded amount).
    pub fn update(&mut self, z: f64, r: f64, dt: f64, clip_sigmas: f64) {
        let forget = (-dt.max(0.0) / self.memory_s).exp();
        for m in &mut self.models {
            let (nu, s) = m.kf.innovation(z, r);
            let lim = clip_sigmas * s.sqrt();
            let nu_c = nu.clamp(-lim, lim);
            m.loglik = forget * m.loglik - 0.5 * (s.ln() + nu_c * nu_c / s);
            m.kf.update(nu_c, r);
        }
    }

    /// Shifts every model's phase by `-step` (the clock was stepped by it).
    pub fn step(&mut self, step: f64) {
        for m in &mut self.models {
            m.kf.theta -= step;
        }
    }

    /// The most likely model.
    pub fn best(&self) -> &Kalman2 {
        let mut best = &self.models[0];
        for m in &self.models[1..] {
            if m.loglik > best.loglik {
                best = m;
            }
        }
        &best.kf
    }

    /// The likelihood-weighted combination of the models (their spread
    /// included in the variances). Weighting rather than picking the best
    /// keeps the estimate smooth while the likelihoods are still close.
    pub fn estimate(&self) -> Estimate {
        let top = self
            .models
            .iter()
            .map(|m| m.loglik)
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = self.models.iter().map(|m| (m.loglik - top).exp()).collect();
        let sum: f64 = w.iter().sum();
        let (mut theta, mut rho, mut lq) = (0.0, 0.0, 0.0);
        for (m, w) in self.models.iter().zip(&w) {
            theta += w * m.kf.theta;
            rho += w * m.kf.rho;
            lq += w * m.kf.q.ln();
        }
        theta /= sum;
        rho /= sum;
        let (mut vt, mut vr) = (0.0, 0.0);
        for (m, w) in self.models.iter().zip(&w) {
            vt += w * (m.kf.p[0][0] + (m.kf.theta - theta).powi(2));
            vr += w * (m.kf.p[1][1] + (m.kf.rho - rho).powi(2));
        }
        Estimate {
            theta,
            rho,
            var_theta: vt / sum,
            var_rho: vr / sum,
            q: (lq / sum).exp(),
        }
    }
}

/// A snapshot of the filter's estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub theta: f64,
    pub rho: f64,
    pub var_theta: f64,
    pub var_rho: f64,
    /// Frequency wander of the winning model (1/s).
    pub q: f64,
}

impl Estimate {
    /// Expected phase variance `dt` seconds ahead without measurements.
    pub fn var_theta_after(&self, dt: f64) -> f64 {
        let dt = dt.max(0.0);
        self.var_theta + self.var_rho * dt * dt + self.q * dt * dt * dt / 3.0
    }
}

/// Steady-state phase error of the optimal two-state filter for white
/// measurement noise `sigma` (s) every `dt` seconds and frequency wander
/// `q` (1/s): returns (posterior, one-step prediction) standard deviations.
/// The posterior is the "statistical floor"; a steered clock can at best
/// reach the prediction error at the next sample instant.
pub fn steady_state_floor(sigma: f64, q: f64, dt: f64) -> (f64, f64) {
    let r = sigma * sigma;
    let mut kf = Kalman2::new(0.0, r, 0.0, 1e-8, q);
    let mut prior = r;
    // The Riccati recursion converges geometrically; 100k steps is far
    // more than the slowest grid point needs and takes milliseconds.
    for _ in 0..100_000 {
        kf.predict(dt, 0.0);
        prior = kf.p[0][0];
        kf.update(0.0, r);
    }
    (kf.p[0][0].sqrt(), prior.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_the_known_values() {
        let (post, prior) = steady_state_floor(1e-6, 1e-18, 1.0);
        assert!((post * 1e9 - 209.1).abs() < 1.0, "{post}");
        assert!((prior * 1e9 - 213.9).abs() < 1.0, "{prior}");
        let (post, _) = steady_state_floor(1e-6, 1e-16, 1.0);
        assert!((post * 1e9 - 363.1).abs() < 1.0, "{post}");
    }

    #[test]
    fn learns_a_constant_frequency() {
        let mut kf = Kalman2::new(0.0, 1e-12, 0.0, 1e-8, 1e-18);
        let rho = 50e-6;
        for k in 1..=100 {
            kf.predict(1.0, 0.0);
            let z = rho * k as f64;
            let (nu, _) = kf.innovation(z, 1e-12);
            kf.update(nu, 1e-12);
        }
        assert!((kf.rho - rho).abs() < 1e-9, "{}", kf.rho);
        assert!((kf.theta - rho * 100.0).abs() < 1e-8);
    }

    #[test]
    fn applied_correction_is_accounted() {
        // The kernel applied exactly the needed correction: the offset
        // must stay put.
        let mut kf = Kalman2::new(1e-3, 1e-12, 20e-6, 1e-16, 0.0);
        kf.predict(10.0, 20e-6 * 10.0);
        assert!((kf.theta - 1e-3).abs() < 1e-12);
    }

    #[test]
    fn bank_prefers_the_model_that_predicts() {
        // Data with a strong wander: the winning model must not be the
        // stiffest one.
        let mut bank = FilterBank::new(0.0, 1e-12, 0.0, 1e-10);
        let (mut theta, mut rho) = (0.0f64, 0.0f64);
        let mut seed = 1u64;
        let mut gauss = || {
            // Irwin-Hall approximation, good enough for a unit test.
            let mut s = 0.0;
            for _ in 0..12 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s += (seed >> 11) as f64 / (1u64 << 53) as f64;
            }
            s - 6.0
        };
        for _ in 0..5000 {
            rho += 1e-8 * gauss();
            theta += rho;
            bank.predict(1.0, 0.0);
            bank.update(theta + 1e-6 * gauss(), 1e-12, 1.0, 4.0);
        }
        let q = bank.estimate().q;
        assert!((1e-17..=1e-15).contains(&q), "chose q={q}");
    }
}
