//! The management API on D-Bus: `org.skytime.Appliance1` at
//! `/org/skytime/Appliance1`, the interface layer over an
//! [`ApplianceBackend`]. The records, error names and the backend contract
//! are `skytime-api`'s; this module puts them on the bus.
//!
//! - [`interfaces`]: one small versioned interface per concern (Tracking,
//!   Sources, Server, Nts, Config, Power, Monitor); writes check the caller and the
//!   arguments' size before the backend sees them.
//! - [`update`]: `Update`, A/B updates over [`crate::update::Updater`].
//! - [`auth`]: root or the admin group may write; everyone may read.
//! - [`config`]: the `[dbus]` section.
//!
//! The contract is the introspection XML in
//! `daemon/skytimed/dist/org.skytime.Appliance1.xml`; tests compare it
//! with what the running service says. Start with [`serve`] once the
//! sockets are bound; it returns when the bus name is owned.

pub mod auth;
pub mod config;
pub mod interfaces;
pub mod network;
pub mod update;

pub use config::DbusConfig;

use crate::notify::{Beat, Health};
use interfaces::{ConfigIface, Monitor, Nts, Power, Server, Shared, Sources, Tracking};
use skytime_api::{AlarmReport, ApplianceBackend, TrackingReport, BUS_NAME, OBJECT_PATH};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::object_server::InterfaceRef;
use zbus::Connection;

/// How often tracking properties are compared for change signals (and the
/// poller beats).
const POLL: Duration = Duration::from_secs(1);
/// How long the poller may stay silent before the watchdog gives up on it.
const HEALTH_SILENCE: Duration = Duration::from_secs(5);

/// Why the management API could not start.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("cannot connect to the D-Bus {bus}: {source} (is dbus-daemon running? set [dbus] enabled = false to run without the management API)")]
    Connect { bus: String, source: zbus::Error },
    #[error("cannot own the D-Bus name {BUS_NAME}: {0} (another skytimed running, or the D-Bus policy org.skytime.Appliance1.conf not installed?)")]
    Name(zbus::Error),
    #[error("cannot export the management objects: {0}")]
    Export(zbus::Error),
}

/// The running management API; dropping it leaves the bus.
#[derive(Debug)]
pub struct DbusHandle {
    connection: Connection,
    poller: JoinHandle<()>,
}

impl DbusHandle {
    /// The connection (unique name, for logs and tests).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Leaves the bus (after the shutdown token fired).
    pub async fn stop(self) {
        self.poller.abort();
        let _ = self.connection.release_name(BUS_NAME).await;
    }
}

/// Connects to the bus in `config`, exports the interfaces over
/// `backend`, owns [`BUS_NAME`] and starts the change-signal poller, which
/// registers with `health` as loop "dbus" (only once the name is owned, so
/// a failed attempt leaves no silent loop behind) and beats every second.
/// Returns once the name is owned.
pub async fn serve(
    config: &DbusConfig,
    backend: Arc<dyn ApplianceBackend>,
    health: Option<&Health>,
    shutdown: CancellationToken,
) -> Result<DbusHandle, DbusError> {
    // The interface is always there; with the default configuration it
    // finds RAUC on the bus or says that it is absent.
    let updater = crate::update::Updater::new(crate::update::UpdateConfig::default());
    serve_with_update(config, backend, updater, None, health, shutdown).await
}

/// [`serve`] with the daemon's [`Updater`](crate::update::Updater) behind
/// `org.skytime.Appliance1.Update` and the network [`Manager`](crate::network::Manager)
/// behind `org.skytime.Appliance1.Network`; starts its driver (RAUC, the boot,
/// the health check) once the name is owned.
pub async fn serve_with_update(
    config: &DbusConfig,
    backend: Arc<dyn ApplianceBackend>,
    updater: Arc<crate::update::Updater>,
    network: Option<Arc<crate::network::Manager>>,
    health: Option<&Health>,
    shutdown: CancellationToken,
) -> Result<DbusHandle, DbusError> {
    let builder = if config.bus == "system" {
        zbus::connection::Builder::system()
    } else {
        zbus::connection::Builder::address(config.bus.as_str())
    }
    .map_err(|source| DbusError::Connect {
        bus: config.bus.clone(),
        source,
    })?;
    let shared = Arc::new(Shared {
        backend: backend.clone(),
        admin_group: config.admin_group.clone(),
    });
    let connection = builder
        .serve_at(
            OBJECT_PATH,
            Tracking {
                shared: shared.clone(),
            },
        )
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                Sources {
                    shared: shared.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                Server {
                    shared: shared.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                Nts {
                    shared: shared.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                ConfigIface {
                    shared: shared.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                Monitor {
                    shared: shared.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                update::Update {
                    shared: shared.clone(),
                    updater: updater.clone(),
                },
            )
        })
        .and_then(|b| {
            b.serve_at(
                OBJECT_PATH,
                network::Network {
                    shared: shared.clone(),
                    manager: network,
                },
            )
        })
        .and_then(|b| b.serve_at(OBJECT_PATH, Power { shared }))
        .map_err(DbusError::Export)?
        .build()
        .await
        .map_err(|source| DbusError::Connect {
            bus: config.bus.clone(),
            source,
        })?;
    // Neither queue behind nor replace another owner (zbus's default flags
    // would let a second skytimed take the name from the first), and do not
    // let one take it from us: two daemons fighting over the name would
    // leave operators talking to the wrong one.
    match connection
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await
        .map_err(DbusError::Name)?
    {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
        other => {
            return Err(DbusError::Name(zbus::Error::Failure(format!(
                "the name is already owned by another connection ({other:?})"
            ))))
        }
    }
    let tracking = connection
        .object_server()
        .interface::<_, Tracking>(OBJECT_PATH)
        .await
        .map_err(DbusError::Export)?;
    tracing::info!(bus = %config.bus, name = BUS_NAME, unique = ?connection.unique_name().map(|n| n.to_string()), "management API on D-Bus");
    let monitor = connection
        .object_server()
        .interface::<_, Monitor>(OBJECT_PATH)
        .await
        .map_err(DbusError::Export)?;
    let update_iface = connection
        .object_server()
        .interface::<_, update::Update>(OBJECT_PATH)
        .await
        .map_err(DbusError::Export)?;
    tokio::spawn(update::signal_changes(
        update_iface,
        updater.clone(),
        shutdown.child_token(),
    ));
    tokio::spawn(crate::update::driver::run(
        updater,
        connection.clone(),
        shutdown.child_token(),
    ));
    let beat = health.map(|h| h.register("dbus", HEALTH_SILENCE));
    let poller = tokio::spawn(poll_tracking(tracking, monitor, backend, beat, shutdown));
    Ok(DbusHandle { connection, poller })
}

/// Emits PropertiesChanged for tracking values and alarms that changed
/// since the last look.
async fn poll_tracking(
    iface: InterfaceRef<Tracking>,
    monitor: InterfaceRef<Monitor>,
    backend: Arc<dyn ApplianceBackend>,
    health: Option<Beat>,
    shutdown: CancellationToken,
) {
    let mut last: TrackingReport = backend.tracking();
    let mut last_alarms: Vec<AlarmReport> = backend.alarms();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(h) = &health {
            h.beat();
        }
        let now = backend.tracking();
        if now != last {
            if let Err(e) = emit_changes(&iface, &last, &now).await {
                tracing::debug!("D-Bus: cannot emit PropertiesChanged: {e}");
            }
            last = now;
        }
        let alarms = backend.alarms();
        if alarms != last_alarms {
            let m = monitor.get().await;
            if let Err(e) = m.alarms_changed(monitor.signal_emitter()).await {
                tracing::debug!("D-Bus: cannot emit PropertiesChanged for Alarms: {e}");
            }
            last_alarms = alarms;
        }
    }
}

async fn emit_changes(
    iface: &InterfaceRef<Tracking>,
    a: &TrackingReport,
    b: &TrackingReport,
) -> zbus::Result<()> {
    let t = iface.get().await;
    let e = iface.signal_emitter();
    macro_rules! changed {
        ($($field:ident => $signal:ident),* $(,)?) => {
            $(if a.$field != b.$field { t.$signal(e).await?; })*
        };
    }
    changed!(
        stratum => stratum_changed,
        reference_id => reference_id_changed,
        reference_name => reference_name_changed,
        synchronized => synchronized_changed,
        reference_time => reference_time_changed,
        system_time_offset => system_time_offset_changed,
        last_offset => last_offset_changed,
        rms_offset => rms_offset_changed,
        frequency => frequency_changed,
        residual_frequency => residual_frequency_changed,
        skew => skew_changed,
        root_delay => root_delay_changed,
        root_dispersion => root_dispersion_changed,
        update_interval => update_interval_changed,
        leap_status => leap_status_changed,
    );
    Ok(())
}
