//! The clock the discipline steers, as a trait (statime style): the real
//! one in skytimed (adjtimex/clock_adjtime), a simulated one here.

use skytime_proto::{NtpDuration, NtpTimestamp};

/// Leap second the kernel should apply at the next UTC midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelLeap {
    #[default]
    None,
    Insert,
    Delete,
}

/// What the kernel is told about synchronization (its `maxerror`,
/// `esterror`, STA_UNSYNC and STA_INS/STA_DEL), which other programs read
/// with adjtimex/ntp_gettime.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelStatus {
    pub synchronized: bool,
    /// Maximum error bound (microseconds).
    pub maxerror_us: i64,
    /// Estimated error (microseconds).
    pub esterror_us: i64,
    pub leap: KernelLeap,
}

impl KernelStatus {
    /// The kernel's own "no idea" values (maxerror 16 s, STA_UNSYNC).
    pub const UNSYNCHRONIZED: Self = Self {
        synchronized: false,
        maxerror_us: 16_000_000,
        esterror_us: 16_000_000,
        leap: KernelLeap::None,
    };
}

/// A clock that can be read and steered.
pub trait Clock {
    type Error: std::error::Error;
    fn now(&self) -> Result<NtpTimestamp, Self::Error>;
    /// The current frequency correction (ppm; positive runs faster).
    fn frequency_ppm(&self) -> Result<f64, Self::Error>;
    fn set_frequency_ppm(&mut self, ppm: f64) -> Result<(), Self::Error>;
    /// Moves the clock by `offset` at once (positive: forward).
    fn step(&mut self, offset: NtpDuration) -> Result<(), Self::Error>;
    fn set_status(&mut self, status: &KernelStatus) -> Result<(), Self::Error>;
}

/// What the discipline wants done to the clock after an input.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Actions {
    pub step: Option<NtpDuration>,
    pub frequency_ppm: Option<f64>,
    pub status: Option<KernelStatus>,
    /// Call `Discipline::tick` at (or soon after) this local time, for
    /// example to end a slew.
    pub wakeup: Option<NtpTimestamp>,
}

impl Actions {
    /// Applies the actions to `clock`: frequency first, so a step lands on
    /// a clock already running at the new rate.
    pub fn apply<C: Clock>(&self, clock: &mut C) -> Result<(), C::Error> {
        if let Some(f) = self.frequency_ppm {
            clock.set_frequency_ppm(f)?;
        }
        if let Some(s) = self.step {
            clock.step(s)?;
        }
        if let Some(st) = &self.status {
            clock.set_status(st)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.step.is_none() && self.frequency_ppm.is_none() && self.status.is_none()
    }
}

/// A simulated system clock over a simulated oscillator. Time is driven by
/// the caller (`advance`) on a continuous "true" timescale; the clock's
/// reading is true time plus its phase error, minus the leap seconds the
/// simulated kernel applied.
#[derive(Clone, Debug)]
pub struct SimClock {
    epoch: NtpTimestamp,
    true_t: f64,
    /// Clock reading minus true time, seconds (before kernel leaps).
    phase: f64,
    freq_ppm: f64,
    kernel_leap_s: i64,
    status: KernelStatus,
    pub steps: Vec<(f64, f64)>,
    pub frequency_sets: u64,
    /// NTP second of the next UTC midnight the simulated kernel watches.
    leap_at: Option<u64>,
    pub leaps_applied: Vec<(f64, KernelLeap)>,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated clock error")]
pub struct SimClockError;

impl SimClock {
    /// A clock whose reading is `epoch + initial_phase` at true time 0.
    pub fn new(epoch: NtpTimestamp, initial_phase: f64, initial_freq_ppm: f64) -> Self {
        Self {
            epoch,
            true_t: 0.0,
            phase: initial_phase,
            freq_ppm: initial_freq_ppm,
            kernel_leap_s: 0,
            status: KernelStatus::UNSYNCHRONIZED,
            steps: Vec::new(),
            frequency_sets: 0,
            leap_at: None,
            leaps_applied: Vec::new(),
        }
    }

    pub fn true_time(&self) -> f64 {
        self.true_t
    }

    /// Phase error (reading minus true time, without leap seconds).
    pub fn phase(&self) -> f64 {
        self.phase
    }

    pub fn status(&self) -> KernelStatus {
        self.status
    }

    /// Leap seconds applied by the simulated kernel (inserted positive).
    pub fn kernel_leap_seconds(&self) -> i64 {
        self.kernel_leap_s
    }

    fn reading(&self) -> NtpTimestamp {
        self.epoch
            + NtpDuration::from_seconds_f64(self.true_t + self.phase - self.kernel_leap_s as f64)
    }

    /// Runs the clock to true time `t` with the oscillator's fractional
    /// frequency error `osc` (constant over the step).
    pub fn advance_to(&mut self, t: f64, osc: f64) {
        let dt = t - self.true_t;
        if dt <= 0.0 {
            return;
        }
        let before = self.reading();
        self.phase += (osc + self.freq_ppm * 1e-6) * dt;
        self.true_t = t;
        let after = self.reading();
        // The kernel applies an armed leap when its clock passes midnight.
        if let Some(at) = self.leap_at {
            let midnight = NtpTimestamp::from_seconds_fraction(at as u32, 0);
            match self.status.leap {
                KernelLeap::Insert if before < midnight && after >= midnight => {
                    self.kernel_leap_s += 1;
                    self.leaps_applied.push((t, KernelLeap::Insert));
                    self.status.leap = KernelLeap::None;
                }
                KernelLeap::Delete
                    if before < midnight + NtpDuration::from_seconds_f64(-1.0)
                        && after >= midnight + NtpDuration::from_seconds_f64(-1.0) =>
                {
                    self.kernel_leap_s -= 1;
                    self.leaps_applied.push((t, KernelLeap::Delete));
                    self.status.leap = KernelLeap::None;
                }
                _ => {}
            }
        }
    }
}

impl Clock for SimClock {
    type Error = SimClockError;
    fn now(&self) -> Result<NtpTimestamp, SimClockError> {
        Ok(self.reading())
    }
    fn frequency_ppm(&self) -> Result<f64, SimClockError> {
        Ok(self.freq_ppm)
    }
    fn set_frequency_ppm(&mut self, ppm: f64) -> Result<(), SimClockError> {
        // The kernel clamps to +-500 ppm; so does the simulation.
        self.freq_ppm = ppm.clamp(-500.0, 500.0);
        self.frequency_sets += 1;
        Ok(())
    }
    fn step(&mut self, offset: NtpDuration) -> Result<(), SimClockError> {
        self.phase += offset.to_seconds_f64();
        self.steps.push((self.true_t, offset.to_seconds_f64()));
        Ok(())
    }
    fn set_status(&mut self, status: &KernelStatus) -> Result<(), SimClockError> {
        if status.leap != KernelLeap::None {
            // Like the kernel: the leap happens at the next midnight.
            let s = self.reading().seconds() as u64;
            self.leap_at = Some((s / 86_400 + 1) * 86_400);
        }
        self.status = *status;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_clock_runs_steps_and_inserts_a_leap() {
        let midnight = 3_692_217_600u32;
        let epoch = NtpTimestamp::from_seconds_fraction(midnight - 10, 0);
        let mut c = SimClock::new(epoch, 0.0, 0.0);
        c.set_frequency_ppm(10.0).unwrap();
        c.advance_to(1.0, 0.0);
        assert!((c.phase() - 10e-6).abs() < 1e-12);
        c.step(NtpDuration::from_seconds_f64(-10e-6)).unwrap();
        assert!(c.phase().abs() < 1e-9);
        c.set_frequency_ppm(0.0).unwrap();
        c.set_status(&KernelStatus {
            synchronized: true,
            maxerror_us: 1,
            esterror_us: 1,
            leap: KernelLeap::Insert,
        })
        .unwrap();
        c.advance_to(10.5, 0.0);
        assert_eq!(c.kernel_leap_seconds(), 1);
        // Half a second after true midnight the clock reads 23:59:59.5.
        let (s, frac) = (c.now().unwrap().seconds(), c.now().unwrap().fraction());
        assert_eq!(s, midnight - 1);
        assert!(frac > (1 << 30));
    }
}
