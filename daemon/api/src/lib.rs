//! # skytime-api: the management API's vocabulary
//!
//! What skytimed serves on D-Bus (`org.skytime.Appliance1` at
//! `/org/skytime/Appliance1`) and its clients read, defined once so that
//! the daemon, `skytimectl` and the management gateway cannot drift:
//!
//! - [`records`]: the records (tracking, sources, server statistics,
//!   clients, NTS status, configuration outcome); [`update`]: the update
//!   interface's (slots, bundle, update properties). Each is a D-Bus `a{sv}`
//!   dictionary and a JSON object with the same PascalCase keys, through
//!   one serde implementation (see [`record`]).
//! - [`ApiError`]: one D-Bus error name per failure, for the server's
//!   replies and the clients' handling.
//! - [`ApplianceBackend`]: what the daemon provides behind the interfaces.
//! - [`client`]: typed proxies for the interfaces.
//! - [`display`]: offsets and dates as people read them.
//! - [`http`]: the same API over HTTPS (the management gateway,
//!   `skytime-mgmtd`): one route per D-Bus member, error names kept in
//!   the body, HTTP statuses per error.
//!
//! The interfaces' introspection is checked in as
//! `daemon/skytimed/dist/org.skytime.Appliance1.xml`; the daemon's tests
//! compare it with what the running service says.
//!
//! ```no_run
//! # async fn f() -> zbus::Result<()> {
//! let conn = zbus::Connection::system().await?;
//! let sources = skytime_api::client::SourcesProxy::new(&conn).await?.get_sources().await?;
//! let json = serde_json::to_string(&sources).unwrap(); // keys as on D-Bus
//! # Ok(()) }
//! ```

pub mod backend;
pub mod client;
pub mod display;
pub mod error;
pub mod http;
pub mod record;
pub mod records;
pub mod update;

pub use backend::{ApplianceBackend, MAX_DOCUMENT};
pub use error::ApiError;
pub use record::Record;
pub use records::NetworkReport;
pub use records::SourceAuthReport;
pub use records::{verdict, AlarmReport, HistoryPoint, MonitorProperties};
pub use records::{
    CertificateReport, ClientReport, ConfigOutcome, NtsReport, ServerReport, SourceReport,
    TrackingReport,
};
pub use update::{BundleReport, SlotReport, UpdateProperties};

/// The well-known bus name (the `1` is the API version).
pub const BUS_NAME: &str = "org.skytime.Appliance1";
/// The object every interface lives on.
pub const OBJECT_PATH: &str = "/org/skytime/Appliance1";

/// The interface names, one per concern.
pub mod interface {
    pub const TRACKING: &str = "org.skytime.Appliance1.Tracking";
    pub const SOURCES: &str = "org.skytime.Appliance1.Sources";
    pub const SERVER: &str = "org.skytime.Appliance1.Server";
    pub const NTS: &str = "org.skytime.Appliance1.Nts";
    pub const CONFIG: &str = "org.skytime.Appliance1.Config";
    pub const POWER: &str = "org.skytime.Appliance1.Power";
    /// Alarms, history and version.
    pub const MONITOR: &str = "org.skytime.Appliance1.Monitor";
    /// A/B updates through RAUC.
    pub const UPDATE: &str = "org.skytime.Appliance1.Update";
    /// Network settings with a safe apply.
    pub const NETWORK: &str = "org.skytime.Appliance1.Network";
    /// Every interface, in the order of the introspection document.
    pub const ALL: [&str; 9] = [
        CONFIG, MONITOR, NETWORK, NTS, POWER, SERVER, SOURCES, TRACKING, UPDATE,
    ];
}
