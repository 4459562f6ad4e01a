//! The client side of the contract: typed proxies for each interface, so
//! that skytimectl and the management gateway read records, not untyped
//! dictionaries. A failed call is a `zbus::Error`;
//! [`ApiError::from_call`](crate::ApiError::from_call) tells which API
//! error it carries.

use crate::records::{
    CertificateReport, ClientReport, ConfigOutcome, HistoryPoint, NtsReport, ServerReport,
    SourceReport, TrackingReport,
};
use crate::{Record, BUS_NAME, OBJECT_PATH};
use zbus::Connection;

/// All `Tracking` properties in one `GetAll` call.
pub async fn tracking(conn: &Connection) -> zbus::Result<TrackingReport> {
    properties(conn, crate::interface::TRACKING).await
}

/// All properties of `interface` in one `GetAll` call, as the record
/// that has them as fields ([`TrackingReport`],
/// [`MonitorProperties`](crate::MonitorProperties)).
pub async fn properties<R: Record>(conn: &Connection, interface: &str) -> zbus::Result<R> {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(interface,),
        )
        .await?;
    reply.body().deserialize()
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Sources",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Sources {
    fn get_sources(&self) -> zbus::Result<Vec<SourceReport>>;
    /// How each upstream server is authenticated.
    fn get_auth_data(&self) -> zbus::Result<Vec<crate::SourceAuthReport>>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Server",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Server {
    fn get_statistics(&self) -> zbus::Result<ServerReport>;
    fn get_clients(&self) -> zbus::Result<Vec<ClientReport>>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Nts",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Nts {
    fn get_status(&self) -> zbus::Result<NtsReport>;
    fn install_certificate(
        &self,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> zbus::Result<CertificateReport>;
    fn rotate_keys(&self) -> zbus::Result<NtsReport>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Config",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Config {
    fn apply(&self, toml: &str, dry_run: bool) -> zbus::Result<ConfigOutcome>;
    fn reload(&self) -> zbus::Result<ConfigOutcome>;
    #[zbus(property)]
    fn path(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Power",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Power {
    fn reboot(&self) -> zbus::Result<()>;
    fn power_off(&self) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Monitor",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Monitor {
    fn history(&self, seconds: u32) -> zbus::Result<Vec<HistoryPoint>>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Update",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Update {
    /// Checks a bundle (signature, compatible, version policy).
    fn check(&self, path: &str) -> zbus::Result<crate::BundleReport>;
    /// Starts an install; returns once RAUC accepted it. Options:
    /// `force` (b), `reboot` (b).
    fn install(
        &self,
        path: &str,
        options: std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> zbus::Result<crate::BundleReport>;
    /// Downloads a bundle over HTTPS (checked against `sha256`), then
    /// installs it; returns once the download started.
    fn install_from_url(
        &self,
        url: &str,
        sha256: &str,
        options: std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> zbus::Result<()>;
    /// Reboots into the installed slot.
    fn reboot(&self) -> zbus::Result<()>;
    /// Makes the other slot primary (when it is good) and reboots.
    fn rollback(&self) -> zbus::Result<()>;
    /// An install finished: whether it succeeded, and what happened.
    #[zbus(signal)]
    fn completed(&self, success: bool, message: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress_percent(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn progress_step(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.skytime.Appliance1.Network",
    default_service = "org.skytime.Appliance1",
    default_path = "/org/skytime/Appliance1",
    gen_blocking = false
)]
pub trait Network {
    fn get(&self) -> zbus::Result<crate::NetworkReport>;
    fn apply(&self, toml: &str, confirm_seconds: u32) -> zbus::Result<crate::NetworkReport>;
    fn confirm(&self) -> zbus::Result<crate::NetworkReport>;
    #[zbus(property)]
    fn pending(&self) -> zbus::Result<bool>;
}
