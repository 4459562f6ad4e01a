//! The GPS simulator as a child process for system tests: NMEA on a pty
//! linked at `DIR/gps`, PPS over chrony's SOCK protocol to `DIR/pps.sock`
//! (the daemon creates that socket, so start the daemon first).

use crate::bin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// skytime-gpssim; stopped with SIGTERM (an unplug) on drop.
#[derive(Debug)]
pub struct GpsSim(Child);

impl GpsSim {
    /// Starts the simulator with NMEA sentences `nmea_delay` seconds after
    /// each pulse; it stops by itself after `duration_s`.
    pub fn start(dir: &Path, nmea_delay: f64, duration_s: u64) -> Self {
        let child = Command::new(bin("skytime-gpssim"))
            .arg("--pty-link")
            .arg(Self::device(dir))
            .arg("--sock")
            .arg(Self::sock(dir))
            .arg("--nmea-delay")
            .arg(nmea_delay.to_string())
            .arg("--duration")
            .arg(duration_s.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skytime-gpssim");
        Self(child)
    }

    /// The serial device the daemon reads NMEA from.
    pub fn device(dir: &Path) -> PathBuf {
        dir.join("gps")
    }

    /// The SOCK socket the simulator sends pulses to.
    pub fn sock(dir: &Path) -> PathBuf {
        dir.join("pps.sock")
    }
}

impl Drop for GpsSim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
