//! The GPS simulator as a child process for system tests: NMEA on a pty
//! linked at `DIR/gps`, PPS over chrony's SOCK protocol to `DIR/pps.sock`
//! (the daemon creates that socket, so start the daemon first), or NMEA
//! alone on a pty of the caller's choice.

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
        Self::with_args(dir, &Self::timing(nmea_delay, duration_s))
    }

    /// NMEA and PPS as [`GpsSim::start`], with the simulator's own options
    /// (`--nmea-delay`, `--fail-after`, `--leap-at`, ...: see
    /// `skytime-gpssim --help`).
    pub fn with_args(dir: &Path, args: &[String]) -> Self {
        let sock = Self::sock(dir);
        Self::spawn(&Self::device(dir), Some(&sock), args)
    }

    /// NMEA only, on a pty linked at `link`: for a receiver the SOCK
    /// socket cannot reach (a VM).
    pub fn nmea_only(link: &Path, nmea_delay: f64, duration_s: u64) -> Self {
        Self::spawn(link, None, &Self::timing(nmea_delay, duration_s))
    }

    fn timing(nmea_delay: f64, duration_s: u64) -> Vec<String> {
        vec![
            "--nmea-delay".into(),
            nmea_delay.to_string(),
            "--duration".into(),
            duration_s.to_string(),
        ]
    }

    fn spawn(link: &Path, sock: Option<&Path>, args: &[String]) -> Self {
        let mut cmd = Command::new(bin("skytime-gpssim"));
        cmd.arg("--pty-link").arg(link);
        if let Some(sock) = sock {
            cmd.arg("--sock").arg(sock);
        }
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skytime-gpssim (cargo build --workspace --bins)");
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
