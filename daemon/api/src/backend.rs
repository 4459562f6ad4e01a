//! The contract between the management interface and the daemon behind
//! it: one method per D-Bus method or property group, with the records and
//! errors clients see.
//!
//! skytimed's D-Bus layer checks the caller and the arguments' size, then
//! hands the call to an [`ApplianceBackend`]; the daemon implements it over
//! its live parts. A stand-in implementation lets the interface layer be
//! tested on its own (argument checks, error names, access control); what
//! a method does to the appliance is the daemon's, and is proved against
//! the real daemon.

use crate::error::ApiError;
use crate::records::{
    AlarmReport, CertificateReport, ClientReport, ConfigOutcome, HistoryPoint, NtsReport,
    ServerReport, SourceAuthReport, SourceReport, TrackingReport,
};

/// Largest TOML document or PEM argument accepted (bytes): larger ones are
/// refused with `InvalidArgs` before a backend sees them.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// The daemon as the management API sees it. Reads are quick snapshots (no
/// network I/O). Writes may touch files and wait for them to be synced:
/// call them off async threads. Power actions are not here: the D-Bus
/// layer asks logind for them over the same bus.
pub trait ApplianceBackend: Send + Sync + std::fmt::Debug + 'static {
    /// `Tracking` properties: the system clock (`chronyc tracking`).
    fn tracking(&self) -> TrackingReport;
    /// `Sources.GetSources`: time sources with statistics and GPS details.
    fn sources(&self) -> Vec<SourceReport>;
    /// `Sources.GetAuthData`: how each upstream server is authenticated
    /// (none without upstream servers).
    fn source_auth(&self) -> Vec<SourceAuthReport> {
        Vec::new()
    }
    /// `Server.GetStatistics`: NTP and NTS server counters.
    fn server_stats(&self) -> ServerReport;
    /// `Server.GetClients`: clients, most recently seen first.
    fn clients(&self) -> Vec<ClientReport>;
    /// How many clients [`clients`](Self::clients) would return (the
    /// status line asks every second; the table may hold a million).
    fn client_count(&self) -> usize {
        self.clients().len()
    }
    /// `Nts.GetStatus`: certificate and master keys.
    fn nts(&self) -> NtsReport;

    /// `Config.Path`: the file `Apply` writes and `Reload` reads.
    fn config_path(&self) -> String;
    /// `Config.Apply`: validates `toml` as a whole configuration file and,
    /// unless `dry_run`, saves it and puts into effect what can change
    /// without a restart. On error nothing changed.
    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<ConfigOutcome, ApiError>;
    /// `Config.Reload`: re-reads the configuration file and the
    /// certificate, as SIGHUP does.
    fn reload_config(&self) -> Result<ConfigOutcome, ApiError>;
    /// `Nts.InstallCertificate`: checks a PEM chain and key against each
    /// other and for expiry, saves them and serves them; on error the
    /// previous pair stays in use.
    fn install_certificate(
        &self,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> Result<CertificateReport, ApiError>;
    /// `Nts.RotateKeys`: makes a new master key current now (persisted
    /// before use; the old ones are kept for clients' cookies).
    fn rotate_keys(&self) -> Result<NtsReport, ApiError>;

    // --- Monitoring (org.skytime.Appliance1.Monitor) ---
    /// `Monitor.Alarms`: the active alarms, critical first.
    fn alarms(&self) -> Vec<AlarmReport>;
    /// `Monitor.History`: the points of the last `seconds` (0: every
    /// point held), oldest first.
    fn history(&self, seconds: u32) -> Vec<HistoryPoint>;
    /// `Monitor.Version`: the daemon's version.
    fn version(&self) -> String;
}
