//! The two ways to an appliance, one interface: D-Bus on the appliance
//! itself, or HTTPS through its management gateway (`--host`). Both give
//! the records of `skytime-api` and the same exit codes, so every command
//! works the same either way.

use crate::bus::{self, classify, CtlError};
use crate::https::Gateway;
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};
use skytime_api::http::{method_path, properties_path};
use skytime_api::{
    client, interface, CertificateReport, ClientReport, ConfigOutcome, HistoryPoint,
    MonitorProperties, NtsReport, ServerReport, SourceAuthReport, SourceReport, TrackingReport,
};
use skytime_api::{BundleReport, NetworkReport, UpdateProperties};
use std::path::PathBuf;
use zbus::Connection;

/// Where to reach the appliance.
#[derive(Debug)]
pub enum Target {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` selects another).
    Bus,
    /// A gateway, with the operator's client certificate.
    Gateway {
        host: String,
        cert: PathBuf,
        key: PathBuf,
        ca: Option<PathBuf>,
    },
}

/// A connection to the appliance.
#[derive(Debug)]
pub enum Transport {
    Dbus(Connection),
    Https(Gateway),
}

fn record<T: DeserializeOwned>(v: Json) -> Result<T, CtlError> {
    serde_json::from_value(v).map_err(|e| {
        CtlError::new(
            bus::exit::FAILED,
            format!("unexpected reply from the gateway (version mismatch?): {e}"),
        )
    })
}

impl Transport {
    pub async fn connect(target: &Target) -> Result<Self, CtlError> {
        Ok(match target {
            Target::Bus => Self::Dbus(bus::connect().await?),
            Target::Gateway {
                host,
                cert,
                key,
                ca,
            } => Self::Https(Gateway::connect(host, cert, key, ca.as_deref()).await?),
        })
    }

    /// Replaces this connection with a new one; the old one is closed
    /// first (a VM's channel carries one connection at a time). On failure
    /// the closed one stays, and its next call fails as unreachable.
    pub async fn reconnect(&mut self, target: &Target) {
        if let Self::Dbus(c) = self {
            let _ = c.clone().close().await;
        }
        if let Ok(fresh) = Self::connect(target).await {
            *self = fresh;
        }
    }

    pub async fn tracking(&self) -> Result<TrackingReport, CtlError> {
        match self {
            Self::Dbus(c) => client::tracking(c).await.map_err(classify),
            Self::Https(g) => record(g.get(&properties_path(interface::TRACKING)).await?),
        }
    }

    pub async fn sources(&self) -> Result<Vec<SourceReport>, CtlError> {
        match self {
            Self::Dbus(c) => bus::sources_proxy(c)
                .await?
                .get_sources()
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.get(&method_path(interface::SOURCES, "GetSources"))
                    .await?,
            ),
        }
    }

    pub async fn source_auth(&self) -> Result<Vec<SourceAuthReport>, CtlError> {
        match self {
            Self::Dbus(c) => bus::sources_proxy(c)
                .await?
                .get_auth_data()
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.get(&method_path(interface::SOURCES, "GetAuthData"))
                    .await?,
            ),
        }
    }

    pub async fn server_stats(&self) -> Result<ServerReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::server_proxy(c)
                .await?
                .get_statistics()
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.get(&method_path(interface::SERVER, "GetStatistics"))
                    .await?,
            ),
        }
    }

    pub async fn clients(&self) -> Result<Vec<ClientReport>, CtlError> {
        match self {
            Self::Dbus(c) => bus::server_proxy(c)
                .await?
                .get_clients()
                .await
                .map_err(classify),
            Self::Https(g) => record(g.get(&method_path(interface::SERVER, "GetClients")).await?),
        }
    }

    pub async fn nts(&self) -> Result<NtsReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::nts_proxy(c)
                .await?
                .get_status()
                .await
                .map_err(classify),
            Self::Https(g) => record(g.get(&method_path(interface::NTS, "GetStatus")).await?),
        }
    }

    pub async fn monitor(&self) -> Result<MonitorProperties, CtlError> {
        match self {
            Self::Dbus(c) => client::properties(c, interface::MONITOR)
                .await
                .map_err(classify),
            Self::Https(g) => record(g.get(&properties_path(interface::MONITOR)).await?),
        }
    }

    pub async fn history(&self, seconds: u32) -> Result<Vec<HistoryPoint>, CtlError> {
        match self {
            Self::Dbus(c) => bus::monitor_proxy(c)
                .await?
                .history(seconds)
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.get(&format!(
                    "{}?seconds={seconds}",
                    method_path(interface::MONITOR, "History")
                ))
                .await?,
            ),
        }
    }

    pub async fn install_certificate(
        &self,
        cert: &str,
        key: &str,
    ) -> Result<CertificateReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::nts_proxy(c)
                .await?
                .install_certificate(cert, key)
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(
                    &method_path(interface::NTS, "InstallCertificate"),
                    json!({"certificate_pem": cert, "private_key_pem": key}),
                )
                .await?,
            ),
        }
    }

    pub async fn rotate_keys(&self) -> Result<NtsReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::nts_proxy(c)
                .await?
                .rotate_keys()
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(&method_path(interface::NTS, "RotateKeys"), json!({}))
                    .await?,
            ),
        }
    }

    pub async fn apply(&self, toml: &str, dry_run: bool) -> Result<ConfigOutcome, CtlError> {
        match self {
            Self::Dbus(c) => bus::config_proxy(c)
                .await?
                .apply(toml, dry_run)
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(
                    &method_path(interface::CONFIG, "Apply"),
                    json!({"toml": toml, "dry_run": dry_run}),
                )
                .await?,
            ),
        }
    }

    pub async fn reload(&self) -> Result<ConfigOutcome, CtlError> {
        match self {
            Self::Dbus(c) => bus::config_proxy(c).await?.reload().await.map_err(classify),
            Self::Https(g) => record(
                g.post(&method_path(interface::CONFIG, "Reload"), json!({}))
                    .await?,
            ),
        }
    }

    pub async fn reboot(&self) -> Result<(), CtlError> {
        match self {
            Self::Dbus(c) => bus::going_down(bus::power_proxy(c).await?.reboot().await),
            Self::Https(g) => g
                .post(&method_path(interface::POWER, "Reboot"), json!({}))
                .await
                .map(drop),
        }
    }

    pub async fn power_off(&self) -> Result<(), CtlError> {
        match self {
            Self::Dbus(c) => bus::going_down(bus::power_proxy(c).await?.power_off().await),
            Self::Https(g) => g
                .post(&method_path(interface::POWER, "PowerOff"), json!({}))
                .await
                .map(drop),
        }
    }

    // --- Network (org.skytime.Appliance1.Network) ---

    pub async fn network(&self) -> Result<NetworkReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::network_proxy(c).await?.get().await.map_err(classify),
            Self::Https(g) => record(g.get(&method_path(interface::NETWORK, "Get")).await?),
        }
    }

    pub async fn network_apply(
        &self,
        toml: &str,
        confirm_seconds: u32,
    ) -> Result<NetworkReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::network_proxy(c)
                .await?
                .apply(toml, confirm_seconds)
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(
                    &method_path(interface::NETWORK, "Apply"),
                    json!({"toml": toml, "confirm_seconds": confirm_seconds}),
                )
                .await?,
            ),
        }
    }

    pub async fn network_confirm(&self) -> Result<NetworkReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::network_proxy(c)
                .await?
                .confirm()
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(&method_path(interface::NETWORK, "Confirm"), json!({}))
                    .await?,
            ),
        }
    }

    // --- Update (org.skytime.Appliance1.Update) ---

    /// skytimed's unique name on the bus (it changes when skytimed
    /// restarts); through the gateway, unknown (`None`).
    pub async fn daemon_owner(&self) -> Result<Option<String>, CtlError> {
        match self {
            Self::Dbus(c) => {
                let dbus = zbus::fdo::DBusProxy::new(c).await.map_err(classify)?;
                let name = zbus::names::BusName::try_from(skytime_api::BUS_NAME)
                    .map_err(|e| classify(e.into()))?;
                let owner = dbus
                    .get_name_owner(name)
                    .await
                    .map_err(|e| classify(e.into()))?;
                Ok(Some(owner.to_string()))
            }
            Self::Https(_) => Ok(None),
        }
    }

    pub async fn update_properties(&self) -> Result<UpdateProperties, CtlError> {
        match self {
            Self::Dbus(c) => client::properties(c, interface::UPDATE)
                .await
                .map_err(classify),
            Self::Https(g) => record(g.get(&properties_path(interface::UPDATE)).await?),
        }
    }

    /// `Check(path)`: with `--host`, `path` is a file on the appliance.
    pub async fn update_check(&self, path: &str) -> Result<BundleReport, CtlError> {
        match self {
            Self::Dbus(c) => bus::update_proxy(c)
                .await?
                .check(path)
                .await
                .map_err(classify),
            Self::Https(g) => record(
                g.post(
                    &method_path(interface::UPDATE, "Check"),
                    json!({ "path": path }),
                )
                .await?,
            ),
        }
    }

    /// `Install`: over D-Bus the path is handed over as it is; through
    /// the gateway the file is uploaded with its SHA-256 first.
    pub async fn update_install(
        &self,
        path: &std::path::Path,
        force: bool,
        reboot: bool,
    ) -> Result<BundleReport, CtlError> {
        match self {
            Self::Dbus(c) => {
                let abs = std::path::absolute(path).map_err(|e| {
                    CtlError::new(bus::exit::INVALID_INPUT, format!("{}: {e}", path.display()))
                })?;
                let mut options = std::collections::HashMap::new();
                options.insert("force", zbus::zvariant::Value::from(force));
                options.insert("reboot", zbus::zvariant::Value::from(reboot));
                bus::update_proxy(c)
                    .await?
                    .install(&abs.to_string_lossy(), options)
                    .await
                    .map_err(classify)
            }
            Self::Https(g) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    CtlError::new(
                        bus::exit::INVALID_INPUT,
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                let route = format!(
                    "{}?sha256={hex}&force={force}&reboot={reboot}",
                    method_path(interface::UPDATE, "Install")
                );
                record(
                    g.upload(&route, bytes, std::time::Duration::from_secs(600))
                        .await?,
                )
            }
        }
    }

    /// `InstallFromUrl`: the appliance downloads the bundle itself.
    pub async fn update_install_url(
        &self,
        url: &str,
        sha256: &str,
        force: bool,
        reboot: bool,
    ) -> Result<(), CtlError> {
        match self {
            Self::Dbus(c) => {
                let mut options = std::collections::HashMap::new();
                options.insert("force", zbus::zvariant::Value::from(force));
                options.insert("reboot", zbus::zvariant::Value::from(reboot));
                bus::update_proxy(c)
                    .await?
                    .install_from_url(url, sha256, options)
                    .await
                    .map_err(classify)
            }
            Self::Https(g) => g
                .post(
                    &method_path(interface::UPDATE, "InstallFromUrl"),
                    json!({"url": url, "sha256": sha256, "options": {"force": force, "reboot": reboot}}),
                )
                .await
                .map(drop),
        }
    }

    pub async fn update_rollback(&self) -> Result<(), CtlError> {
        match self {
            Self::Dbus(c) => bus::going_down(bus::update_proxy(c).await?.rollback().await),
            Self::Https(g) => g
                .post(&method_path(interface::UPDATE, "Rollback"), json!({}))
                .await
                .map(drop),
        }
    }
}
