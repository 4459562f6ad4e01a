//! The drift file: the oscillator's frequency correction, kept across
//! restarts for a warm start. Format as chrony's driftfile: one line,
//! `<frequency ppm> <skew ppm>` (positive: the clock must run faster).

/// Largest frequency the kernel accepts (and a sane crystal needs).
pub const MAX_FREQ_PPM: f64 = 500.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    pub freq_ppm: f64,
    /// Standard error of `freq_ppm`.
    pub skew_ppm: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("drift file: expected '<frequency ppm> <skew ppm>', found {0:?}")]
    Format(String),
    #[error("drift file: frequency {0} ppm is outside +-500 ppm")]
    Range(f64),
}

impl Drift {
    pub fn parse(text: &str) -> Result<Self, DriftError> {
        let bad = || DriftError::Format(text.chars().take(60).collect());
        let mut it = text.split_whitespace();
        let freq_ppm: f64 = it.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let skew_ppm: f64 = match it.next() {
            Some(w) => w.parse().map_err(|_| bad())?,
            None => 1.0,
        };
        if it.next().is_some() || !freq_ppm.is_finite() || !skew_ppm.is_finite() || skew_ppm < 0.0 {
            return Err(bad());
        }
        if freq_ppm.abs() > MAX_FREQ_PPM {
            return Err(DriftError::Range(freq_ppm));
        }
        Ok(Self { freq_ppm, skew_ppm })
    }

    pub fn render(&self) -> String {
        format!("{:.6} {:.6}\n", self.freq_ppm, self.skew_ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = Drift {
            freq_ppm: -12.345678,
            skew_ppm: 0.004,
        };
        assert_eq!(Drift::parse(&d.render()).unwrap(), d);
        assert_eq!(
            Drift::parse("3.5").unwrap(),
            Drift {
                freq_ppm: 3.5,
                skew_ppm: 1.0
            }
        );
        assert!(matches!(Drift::parse(""), Err(DriftError::Format(_))));
        assert!(matches!(Drift::parse("NaN 1"), Err(DriftError::Format(_))));
        assert!(matches!(Drift::parse("1 2 3"), Err(DriftError::Format(_))));
        assert_eq!(Drift::parse("600 0.1"), Err(DriftError::Range(600.0)));
    }
}
