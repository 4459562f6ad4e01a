//! The `[gps]` section: which devices feed the reference clock and how
//! PPS and NMEA are paired. Every value is range-checked while parsing so
//! errors carry the TOML line.

use serde::Deserialize;
use std::path::PathBuf;

/// The `[gps]` section of skytime.toml. Default: no GPS configured.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RefclockConfig {
    /// NMEA serial device (e.g. "/dev/serial0"). Unset: no NMEA.
    #[serde(default)]
    pub device: Option<PathBuf>,
    #[serde(default)]
    pub baud: Baud,
    /// Kernel PPS device (e.g. "/dev/pps0").
    #[serde(default)]
    pub pps: Option<PathBuf>,
    /// PPS from a GPIO line through the GPIO character device.
    #[serde(default)]
    pub pps_gpio: Option<GpioLine>,
    /// Which pulse edge marks the second.
    #[serde(default)]
    pub pps_edge: Edge,
    /// Listen on this Unix datagram socket for chrony SOCK samples.
    #[serde(default)]
    pub sock: Option<PathBuf>,
    /// NMEA-to-PPS delay in seconds; unset: estimated from paired samples.
    #[serde(default)]
    pub nmea_delay: Option<Fraction>,
    /// Longest pulse-to-NMEA time that still pairs, seconds.
    #[serde(default = "default_max_delay")]
    pub max_delay: Fraction,
    /// Largest deviation of one NMEA delay from the expected one, seconds.
    #[serde(default = "default_max_error")]
    pub max_error: Fraction,
    /// How long PPS alone carries on through an NMEA outage once the clock
    /// is synchronized, seconds.
    #[serde(default = "default_holdover")]
    pub holdover: Seconds,
    /// Error bound of one PPS timestamp, seconds.
    #[serde(default = "default_pps_precision")]
    pub pps_precision: Fraction,
    /// Longest wait between attempts to reopen a lost device, seconds.
    #[serde(default = "default_max_backoff")]
    pub reopen_max_backoff: Seconds,
}

impl Default for RefclockConfig {
    fn default() -> Self {
        Self {
            device: None,
            baud: Baud::default(),
            pps: None,
            pps_gpio: None,
            pps_edge: Edge::default(),
            sock: None,
            nmea_delay: None,
            max_delay: default_max_delay(),
            max_error: default_max_error(),
            holdover: default_holdover(),
            pps_precision: default_pps_precision(),
            reopen_max_backoff: default_max_backoff(),
        }
    }
}

impl RefclockConfig {
    pub fn is_empty(&self) -> bool {
        self.device.is_none()
            && self.pps.is_none()
            && self.pps_gpio.is_none()
            && self.sock.is_none()
    }
}

fn default_max_delay() -> Fraction {
    Fraction(0.95)
}
fn default_max_error() -> Fraction {
    Fraction(0.1)
}
fn default_holdover() -> Seconds {
    Seconds(60.0)
}
fn default_pps_precision() -> Fraction {
    Fraction(1e-6)
}
fn default_max_backoff() -> Seconds {
    Seconds(30.0)
}

/// A GPIO line: chip device and line offset (BCM number on a Pi).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    #[serde(default = "default_chip")]
    pub chip: PathBuf,
    pub line: u32,
}

fn default_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    /// The assert (rising) edge.
    #[default]
    Assert,
    /// The clear (falling) edge.
    Clear,
}

/// A standard serial speed.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "i64")]
pub struct Baud(pub u32);

impl Default for Baud {
    fn default() -> Self {
        Self(9600)
    }
}

impl TryFrom<i64> for Baud {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        const OK: [i64; 8] = [4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800];
        if OK.contains(&v) {
            Ok(Self(v as u32))
        } else {
            Err(format!(
                "baud {v} is not a standard speed: use one of {OK:?}"
            ))
        }
    }
}

/// Seconds in [0, 1).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(try_from = "f64")]
pub struct Fraction(pub f64);

impl TryFrom<f64> for Fraction {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..1.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!(
                "{v} is out of range: use seconds from 0 to below 1"
            ))
        }
    }
}

/// Seconds in [0, 3600].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(try_from = "f64")]
pub struct Seconds(pub f64);

impl TryFrom<f64> for Seconds {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=3600.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is out of range: use 0 to 3600 seconds"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RefclockConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn default_is_no_gps() {
        let c = parse("").unwrap();
        assert!(c.is_empty());
        assert_eq!(c, RefclockConfig::default());
        assert_eq!(
            (c.baud, c.max_delay, c.holdover),
            (Baud(9600), Fraction(0.95), Seconds(60.0))
        );
    }

    #[test]
    fn full_section_parses() {
        let c = parse(
            "device = \"/dev/serial0\"\nbaud = 9600\npps = \"/dev/pps0\"\npps_gpio = { chip = \"/dev/gpiochip0\", line = 4 }\n\
             pps_edge = \"clear\"\nsock = \"/run/skytime/gps.sock\"\nnmea_delay = 0.35\nmax_delay = 0.9\nmax_error = 0.05\n\
             holdover = 30\npps_precision = 0.000002\nreopen_max_backoff = 10\n",
        )
        .unwrap();
        assert_eq!(
            c.pps_gpio,
            Some(GpioLine {
                chip: "/dev/gpiochip0".into(),
                line: 4
            })
        );
        assert_eq!(c.pps_edge, Edge::Clear);
        assert_eq!(c.nmea_delay, Some(Fraction(0.35)));
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = parse("device = \"/dev/ttyS0\"\nbaud = 9601\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("9601"), "{e}");
        let e = parse("nmea_delay = 1.5\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("out of range"), "{e}");
        let e = parse("pps_edge = \"up\"\n").unwrap_err();
        assert!(e.contains("up"), "{e}");
        assert!(parse("devcie = \"/dev/ttyS0\"\n")
            .unwrap_err()
            .contains("devcie"));
    }
}
