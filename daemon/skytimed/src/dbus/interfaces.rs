//! The D-Bus interfaces, one small versioned interface per concern, all
//! at [`OBJECT_PATH`](skytime_api::OBJECT_PATH). Reads are open to local
//! users; every write checks the caller ([`auth`](super::auth)) before it
//! looks at its arguments, refuses documents larger than
//! [`MAX_DOCUMENT`] with `InvalidArgs`, is logged with the caller's bus
//! name, and only then goes to the backend (from a blocking thread: it
//! may write files).

use super::auth::require_admin;
use skytime_api::{
    AlarmReport, ApiError, ApplianceBackend, CertificateReport, ClientReport, ConfigOutcome,
    HistoryPoint, NtsReport, ServerReport, SourceReport, TrackingReport, MAX_DOCUMENT,
};
use std::sync::Arc;
use zbus::message::Header;
use zbus::{interface, Connection};

/// What every interface needs.
#[derive(Debug)]
pub struct Shared {
    pub backend: Arc<dyn ApplianceBackend>,
    pub admin_group: String,
}

impl Shared {
    pub(super) async fn authorize(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        action: &str,
    ) -> Result<(), ApiError> {
        let result = require_admin(conn, header, &self.admin_group, action).await;
        let caller = header.sender().map(|s| s.to_string()).unwrap_or_default();
        match &result {
            Ok(()) => tracing::info!(%caller, "D-Bus: {action}"),
            Err(e) => tracing::warn!(%caller, "D-Bus: {action} refused: {e}"),
        }
        result
    }
}

/// Refuses a document argument larger than [`MAX_DOCUMENT`].
fn check_size(what: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_DOCUMENT {
        return Err(ApiError::InvalidArgs(format!(
            "{what} is {len} bytes; at most {MAX_DOCUMENT} are accepted"
        )));
    }
    Ok(())
}

/// `org.skytime.Appliance1.Tracking`: the system clock, as properties
/// (PropertiesChanged is emitted when they change, checked every second).
#[derive(Debug)]
pub struct Tracking {
    pub(super) shared: Arc<Shared>,
}

impl Tracking {
    fn t(&self) -> TrackingReport {
        self.shared.backend.tracking()
    }
}

#[interface(name = "org.skytime.Appliance1.Tracking")]
impl Tracking {
    /// 1 to 15; 16 when unsynchronised.
    #[zbus(property)]
    fn stratum(&self) -> u8 {
        self.t().stratum
    }
    #[zbus(property)]
    fn reference_id(&self) -> String {
        self.t().reference_id
    }
    #[zbus(property)]
    fn reference_name(&self) -> String {
        self.t().reference_name
    }
    #[zbus(property)]
    fn synchronized(&self) -> bool {
        self.t().synchronized
    }
    /// Unix seconds of the last clock update (0: never).
    #[zbus(property)]
    fn reference_time(&self) -> f64 {
        self.t().reference_time
    }
    /// Seconds; positive: the system clock is fast.
    #[zbus(property)]
    fn system_time_offset(&self) -> f64 {
        self.t().system_time_offset
    }
    #[zbus(property)]
    fn last_offset(&self) -> f64 {
        self.t().last_offset
    }
    #[zbus(property)]
    fn rms_offset(&self) -> f64 {
        self.t().rms_offset
    }
    /// ppm; positive: the clock runs fast.
    #[zbus(property)]
    fn frequency(&self) -> f64 {
        self.t().frequency
    }
    #[zbus(property)]
    fn residual_frequency(&self) -> f64 {
        self.t().residual_frequency
    }
    #[zbus(property)]
    fn skew(&self) -> f64 {
        self.t().skew
    }
    #[zbus(property)]
    fn root_delay(&self) -> f64 {
        self.t().root_delay
    }
    #[zbus(property)]
    fn root_dispersion(&self) -> f64 {
        self.t().root_dispersion
    }
    #[zbus(property)]
    fn update_interval(&self) -> f64 {
        self.t().update_interval
    }
    /// "normal", "insert second", "delete second", "not synchronised".
    #[zbus(property)]
    fn leap_status(&self) -> String {
        self.t().leap_status
    }
}

/// `org.skytime.Appliance1.Sources`: time sources, their statistics and
/// GPS details, as one snapshot.
#[derive(Debug)]
pub struct Sources {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Sources")]
impl Sources {
    fn get_sources(&self) -> Vec<SourceReport> {
        self.shared.backend.sources()
    }

    /// How each upstream server is authenticated (chronyc authdata).
    fn get_auth_data(&self) -> Vec<skytime_api::SourceAuthReport> {
        self.shared.backend.source_auth()
    }
}

/// `org.skytime.Appliance1.Server`: NTP/NTS server counters and clients.
#[derive(Debug)]
pub struct Server {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Server")]
impl Server {
    fn get_statistics(&self) -> ServerReport {
        self.shared.backend.server_stats()
    }

    /// Clients, most recently seen first.
    fn get_clients(&self) -> Vec<ClientReport> {
        self.shared.backend.clients()
    }
}

/// `org.skytime.Appliance1.Nts`: certificate and master keys.
#[derive(Debug)]
pub struct Nts {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Nts")]
impl Nts {
    fn get_status(&self) -> NtsReport {
        self.shared.backend.nts()
    }

    /// Replaces the NTS-KE certificate chain and private key (PEM) after
    /// checking that they parse, belong together and have not expired.
    async fn install_certificate(
        &self,
        certificate_pem: String,
        private_key_pem: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<CertificateReport, ApiError> {
        self.shared
            .authorize(conn, &header, "installing a certificate")
            .await?;
        check_size("the certificate", certificate_pem.len())?;
        check_size("the private key", private_key_pem.len())?;
        let backend = self.shared.backend.clone();
        blocking(move || backend.install_certificate(&certificate_pem, &private_key_pem)).await
    }

    /// Makes a new master key current now (the old ones are kept so
    /// clients' cookies stay valid).
    async fn rotate_keys(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<NtsReport, ApiError> {
        self.shared
            .authorize(conn, &header, "rotating the NTS master keys")
            .await?;
        let backend = self.shared.backend.clone();
        let report = blocking(move || backend.rotate_keys()).await?;
        tracing::info!(key = ?report.current_key_id, "NTS master keys rotated");
        Ok(report)
    }
}

/// `org.skytime.Appliance1.Config`: the configuration file.
#[derive(Debug)]
pub struct ConfigIface {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Config")]
impl ConfigIface {
    /// Re-reads the configuration file and the certificate (like SIGHUP).
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<ConfigOutcome, ApiError> {
        self.shared
            .authorize(conn, &header, "reloading the configuration")
            .await?;
        let backend = self.shared.backend.clone();
        blocking(move || backend.reload_config()).await
    }

    /// Validates `toml` as a whole configuration file; unless `dry_run`,
    /// saves it and puts it into effect. Invalid documents fail with
    /// org.skytime.Error.InvalidConfig naming line and reason.
    async fn apply(
        &self,
        toml: String,
        dry_run: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<ConfigOutcome, ApiError> {
        let action = if dry_run {
            "checking a configuration"
        } else {
            "applying a configuration"
        };
        self.shared.authorize(conn, &header, action).await?;
        check_size("the configuration", toml.len())?;
        let backend = self.shared.backend.clone();
        blocking(move || backend.apply_config(&toml, dry_run)).await
    }

    /// The file Apply writes and Reload reads.
    #[zbus(property)]
    fn path(&self) -> String {
        self.shared.backend.config_path()
    }
}

/// `org.skytime.Appliance1.Power`: reboot and shut down, through logind.
#[derive(Debug)]
pub struct Power {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Power")]
impl Power {
    async fn reboot(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ApiError> {
        self.shared.authorize(conn, &header, "rebooting").await?;
        logind(conn, "Reboot").await
    }

    async fn power_off(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ApiError> {
        self.shared
            .authorize(conn, &header, "shutting down")
            .await?;
        logind(conn, "PowerOff").await
    }
}

/// `org.skytime.Appliance1.Monitor`: the active alarms (a property,
/// PropertiesChanged when the set changes, checked every second), the
/// recent history and the daemon's version. Open to every local user.
#[derive(Debug)]
pub struct Monitor {
    pub(super) shared: Arc<Shared>,
}

#[interface(name = "org.skytime.Appliance1.Monitor")]
impl Monitor {
    /// History points of the last `seconds` (0: every point held, up to
    /// 24 hours), oldest first.
    fn history(&self, seconds: u32) -> Vec<HistoryPoint> {
        self.shared.backend.history(seconds)
    }

    /// Active alarms, critical first.
    #[zbus(property)]
    fn alarms(&self) -> Vec<AlarmReport> {
        self.shared.backend.alarms()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        self.shared.backend.version()
    }
}

/// Asks logind (org.freedesktop.login1) for a power action, without
/// interactive authentication. Where logind is not running (a minimal
/// image), asks systemd itself to start `reboot.target` or
/// `poweroff.target` the way `systemctl reboot` does then, so units
/// still stop in order.
pub(crate) async fn logind(conn: &Connection, method: &str) -> Result<(), ApiError> {
    tracing::warn!("asking logind to {method}");
    let err = match conn
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            method,
            &(false,),
        )
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let absent = matches!(&err, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
            || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner");
    if !absent {
        return Err(ApiError::PowerFailed(format!(
            "logind refused {method}: {err}"
        )));
    }
    let target = if method == "Reboot" {
        "reboot.target"
    } else {
        "poweroff.target"
    };
    tracing::warn!("logind is not running; asking systemd to start {target}");
    conn.call_method(
        Some("org.freedesktop.systemd1"),
        "/org/freedesktop/systemd1",
        Some("org.freedesktop.systemd1.Manager"),
        "StartUnit",
        &(target, "replace-irreversibly"),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        ApiError::PowerFailed(format!(
            "logind is not running ({err}) and systemd refused to start {target}: {e}"
        ))
    })
}

/// Runs file work (fsync) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::ApplyFailed(format!(
            "the operation was interrupted: {e}"
        )))
    })
}
