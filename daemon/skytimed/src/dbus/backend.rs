//! The contract between the management API and the running daemon.
//!
//! The D-Bus interfaces only read reports from, and hand validated
//! changes to, an [`ApplianceBackend`]. The daemon implements it over its
//! live parts (sync state and discipline, reference clocks, server
//! counters, client table, NTS); tests implement it over real counters and
//! files without sockets.

use super::report::{ClientReport, NtsReport, ServerReport, SourceReport, TrackingReport};
use crate::config::Config;
use std::path::PathBuf;

/// A change the daemon could not carry out. The message is shown to the
/// operator as is: name what failed and what is still in effect.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The feature is off or does not apply (NTS disabled, key role
    /// `follow`).
    #[error("{0}")]
    NotAvailable(String),
    /// The change was refused; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The change failed part-way; the message says what is in effect.
    #[error("{0}")]
    Failed(String),
}

/// The daemon as the management API sees it. Every method is quick (no
/// network I/O); reads return a snapshot.
pub trait ApplianceBackend: Send + Sync + std::fmt::Debug + 'static {
    /// The system clock (`chronyc tracking`).
    fn tracking(&self) -> TrackingReport;
    /// Time sources with their statistics and GPS details.
    fn sources(&self) -> Vec<SourceReport>;
    /// NTP and NTS server counters.
    fn server_stats(&self) -> ServerReport;
    /// Clients, most recently seen first.
    fn clients(&self) -> Vec<ClientReport>;
    /// How many clients [`clients`](Self::clients) would return (the
    /// status line asks every second; the table may hold a million).
    fn client_count(&self) -> usize {
        self.clients().len()
    }
    /// NTS certificate and master keys.
    fn nts(&self) -> NtsReport;

    /// The configuration the daemon runs with.
    fn config(&self) -> Config;
    /// The file `Apply` writes and `Reload` reads (by default
    /// [`managed_config_path`](super::managed_config_path)).
    fn config_path(&self) -> PathBuf;
    /// Puts a validated configuration into effect as far as possible
    /// without a restart; returns the settings that need one (section or
    /// key names such as `ntp.listen`). On error nothing may have changed.
    fn apply_config(&self, config: &Config) -> Result<Vec<String>, BackendError>;
    /// Re-reads the certificate and key files (already replaced on disk by
    /// a validated pair); on error the previous ones stay in use.
    fn reload_certificate(&self) -> Result<(), BackendError>;
    /// Rotates the NTS master keys now (the new key is persisted before it
    /// is used); returns the new NTS state.
    fn rotate_keys(&self) -> Result<NtsReport, BackendError>;
}
