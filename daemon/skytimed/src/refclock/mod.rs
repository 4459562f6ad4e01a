//! Reference clocks in the daemon: NMEA serial, kernel PPS, GPIO PPS, SOCK.
//!
//! PLACEHOLDER CONTRACT (owned by the GPS work; replace the bodies).

use serde::Deserialize;
use skytime_discipline::Sample;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The `[gps]` section (and any other refclock sections) of skytime.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RefclockConfig {}

#[derive(Debug, thiserror::Error)]
pub enum RefclockError {}

/// Handle on the running sources, for status reports.
#[derive(Debug)]
pub struct Refclocks {}

impl Refclocks {
    /// Starts every configured source; samples flow into `samples`.
    pub async fn start(
        _config: &RefclockConfig,
        _samples: mpsc::Sender<Sample>,
        _shutdown: CancellationToken,
    ) -> Result<Self, RefclockError> {
        Ok(Self {})
    }
}
