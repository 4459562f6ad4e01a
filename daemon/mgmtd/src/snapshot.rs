//! Everything the status page and the metrics show, read from skytimed
//! in one go (the same records the JSON API returns), plus what the
//! gateway knows itself: its version and the boot slot.

use crate::appliance::Bus;
use crate::http::Failure;
use skytime_api::client::{self, MonitorProxy, NtsProxy, ServerProxy, SourcesProxy};
use skytime_api::{
    interface, HistoryPoint, MonitorProperties, NtsReport, ServerReport, SourceAuthReport,
    SourceReport, TrackingReport,
};

/// One reading of the appliance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Unix seconds when it was read.
    pub at: i64,
    pub tracking: TrackingReport,
    pub sources: Vec<SourceReport>,
    /// How the upstream servers are authenticated (empty from a skytimed
    /// without them).
    pub source_auth: Vec<SourceAuthReport>,
    pub server: ServerReport,
    pub clients: usize,
    pub nts: NtsReport,
    pub monitor: MonitorProperties,
    /// The last 24 hours (only read for the status page).
    pub history: Vec<HistoryPoint>,
    /// The root file system slot the system booted ("A", "B"), from the
    /// kernel command line's `rauc.slot=` as RAUC reads it.
    pub boot_slot: Option<String>,
    /// The update interface's properties (absent from a skytimed without
    /// it).
    pub update: Option<skytime_api::UpdateProperties>,
    pub gateway_version: &'static str,
}

impl Snapshot {
    /// Reads everything but the history (`with_history` adds it).
    pub async fn read(bus: &Bus, with_history: bool) -> Result<Self, Failure> {
        let conn = bus.connection().await?;
        let c = &conn;
        let dbus = |e: zbus::Error| bus.failure(&e);
        let tracking = client::tracking(c).await.map_err(dbus)?;
        let sources_proxy = SourcesProxy::new(c).await.map_err(dbus)?;
        let sources = sources_proxy.get_sources().await.map_err(dbus)?;
        // An older skytimed has no GetAuthData: nothing to show then.
        let source_auth = sources_proxy.get_auth_data().await.unwrap_or_default();
        let server_proxy = ServerProxy::new(c).await.map_err(dbus)?;
        let server = server_proxy.get_statistics().await.map_err(dbus)?;
        let clients = server_proxy.get_clients().await.map_err(dbus)?.len();
        let nts = NtsProxy::new(c)
            .await
            .map_err(dbus)?
            .get_status()
            .await
            .map_err(dbus)?;
        let monitor: MonitorProperties = client::properties(c, interface::MONITOR)
            .await
            .map_err(dbus)?;
        let history = if with_history {
            MonitorProxy::new(c)
                .await
                .map_err(dbus)?
                .history(24 * 3600)
                .await
                .map_err(dbus)?
        } else {
            Vec::new()
        };
        let update = client::properties(c, interface::UPDATE).await.ok();
        Ok(Self {
            at: unix_now(),
            tracking,
            sources,
            source_auth,
            server,
            clients,
            nts,
            monitor,
            history,
            boot_slot: boot_slot(),
            update,
            gateway_version: env!("CARGO_PKG_VERSION"),
        })
    }

    /// Seconds in holdover (0 when not), from the holdover alarm.
    pub fn holdover_seconds(&self) -> f64 {
        self.monitor
            .alarms
            .iter()
            .find(|a| a.name == skytime_alarms::AlarmKind::Holdover.name())
            .map_or(0.0, |a| (self.at - a.since).max(0) as f64)
    }

    /// The GPS receiver's source (the one reporting a fix), if any.
    pub fn gps(&self) -> Option<&SourceReport> {
        self.sources.iter().find(|s| s.gps_fix.is_some())
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `rauc.slot=` on the kernel command line.
fn boot_slot() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .map(str::to_owned)
}
