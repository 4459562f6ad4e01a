//! The system clock in the daemon: discipline loop, adjtimex, drift file.
//!
//! PLACEHOLDER CONTRACT (owned by the discipline work; replace the bodies).

use serde::Deserialize;
use skytime_discipline::Sample;
use skytime_proto::SyncState;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The `[clock]` section of skytime.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {}

/// Runs the discipline: consumes samples, steers (or only measures) the
/// clock, and publishes what NTP replies must say into `sync`.
/// `local_stratum` is the configured fallback when no source is usable.
pub async fn run(
    _config: ClockConfig,
    _data_dir: std::path::PathBuf,
    _local_stratum: Option<u8>,
    mut samples: mpsc::Receiver<Sample>,
    _sync: watch::Sender<SyncState>,
    shutdown: CancellationToken,
) -> Result<(), ClockError> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            s = samples.recv() => if s.is_none() { return Ok(()) },
        }
    }
}
