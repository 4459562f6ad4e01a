//! `org.skytime.Appliance1.Network`: the appliance's network settings
//! with a safe apply (see [`crate::network`]). `Get` is open to every
//! local user; `Apply` and `Confirm` check the caller like every write.

use super::interfaces::Shared;
use crate::network::Manager;
use skytime_api::{ApiError, NetworkReport, MAX_DOCUMENT};
use std::sync::Arc;
use zbus::message::Header;
use zbus::{interface, Connection};

/// The interface; without a [`Manager`] (a stand-in backend) every
/// method says the feature is not available.
#[derive(Debug)]
pub struct Network {
    pub(super) shared: Arc<Shared>,
    pub(super) manager: Option<Arc<Manager>>,
}

impl Network {
    fn manager(&self) -> Result<Arc<Manager>, ApiError> {
        self.manager
            .clone()
            .ok_or_else(|| ApiError::NotAvailable("this daemon does not manage the network".into()))
    }
}

#[interface(name = "org.skytime.Appliance1.Network")]
impl Network {
    /// The settings in effect and whether a change is on probation.
    fn get(&self) -> Result<NetworkReport, ApiError> {
        Ok(self.manager()?.report())
    }

    /// Validates `toml` (the `[network]` table's keys) and puts it into
    /// effect at once; it reverts by itself unless `Confirm` comes within
    /// `confirm_seconds` (2 to 3600). Bad settings fail with
    /// org.skytime.Error.InvalidConfig and change nothing.
    async fn apply(
        &self,
        toml: String,
        confirm_seconds: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<NetworkReport, ApiError> {
        self.shared
            .authorize(conn, &header, "applying network settings")
            .await?;
        if toml.len() > MAX_DOCUMENT {
            return Err(ApiError::InvalidArgs(format!(
                "the network settings are {} bytes; at most {MAX_DOCUMENT} are accepted",
                toml.len()
            )));
        }
        let m = self.manager()?;
        tokio::task::spawn_blocking(move || m.apply(&toml, confirm_seconds))
            .await
            .unwrap_or_else(|e| Err(ApiError::ApplyFailed(format!("interrupted: {e}"))))
    }

    /// Keeps the change on probation; re-issues the appliance's own
    /// self-signed certificate when the host name or a static address
    /// changed (the reply's `Certificate` says what happened).
    /// org.skytime.Error.Refused when nothing is pending or it is too late.
    async fn confirm(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<NetworkReport, ApiError> {
        self.shared
            .authorize(conn, &header, "confirming network settings")
            .await?;
        let m = self.manager()?;
        tokio::task::spawn_blocking(move || m.confirm())
            .await
            .unwrap_or_else(|e| Err(ApiError::ApplyFailed(format!("interrupted: {e}"))))
    }

    /// A change waits for `Confirm` (not signalled: the deadline passes
    /// without a call; read it, or `Get` for the seconds left).
    #[zbus(property(emits_changed_signal = "false"))]
    fn pending(&self) -> bool {
        self.manager.as_ref().is_some_and(|m| m.pending())
    }
}
