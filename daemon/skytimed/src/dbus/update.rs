//! `org.skytime.Appliance1.Update`: A/B updates through RAUC, over
//! [`Updater`]. Properties (with PropertiesChanged) describe the slots,
//! the update state and RAUC's progress; every method is a write (root or
//! the admin group, checked like the other writes); `Completed` tells
//! when an install has finished.

use super::interfaces::Shared;
use crate::update::{Notice, Updater};
use skytime_api::{ApiError, BundleReport, SlotReport, UpdateProperties};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::zvariant::OwnedValue;
use zbus::{interface, Connection};

/// The interface.
#[derive(Debug)]
pub struct Update {
    pub(super) shared: Arc<Shared>,
    pub(super) updater: Arc<Updater>,
}

impl Update {
    fn p(&self) -> UpdateProperties {
        self.updater.properties()
    }
}

/// `Install`'s options: `force` (b) installs an older or equal version;
/// `reboot` (b) reboots once the install has completed.
fn options(o: &HashMap<String, OwnedValue>) -> Result<(bool, bool), ApiError> {
    let mut force = false;
    let mut reboot = false;
    for (k, v) in o {
        let flag = bool::try_from(v).map_err(|_| {
            ApiError::InvalidArgs(format!(
                "option {k} must be a boolean (b), not {}",
                v.value_signature()
            ))
        })?;
        match k.as_str() {
            "force" => force = flag,
            "reboot" => reboot = flag,
            other => {
                return Err(ApiError::InvalidArgs(format!(
                    "unknown option {other:?}; Install takes force and reboot"
                )))
            }
        }
    }
    Ok((force, reboot))
}

#[interface(name = "org.skytime.Appliance1.Update")]
impl Update {
    /// Checks a bundle: RAUC verifies its signature and reads its
    /// manifest; the compatible and the version policy are checked as
    /// for an install without force.
    async fn check(
        &self,
        path: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<BundleReport, ApiError> {
        self.shared
            .authorize(conn, &header, "checking an update bundle")
            .await?;
        self.updater.check(&path).await
    }

    /// Installs a bundle into the other slot; returns once RAUC has
    /// started (follow Progress* and State, then Completed).
    async fn install(
        &self,
        path: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<BundleReport, ApiError> {
        self.shared
            .authorize(conn, &header, "installing an update")
            .await?;
        let (force, reboot) = self::options(&options)?;
        self.updater.install(&path, force, reboot).await
    }

    /// Downloads a bundle over HTTPS to the data partition (at most
    /// `[update] max_bundle_mib`, kept only with the given SHA-256), then
    /// installs it as `Install` does; returns once the download started
    /// (Operation "downloading"); `Completed` tells the outcome.
    async fn install_from_url(
        &self,
        url: String,
        sha256: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ApiError> {
        self.shared
            .authorize(conn, &header, "installing an update from a URL")
            .await?;
        let (force, reboot) = self::options(&options)?;
        self.updater
            .install_from_url(&url, &sha256, force, reboot)
            .await
    }

    /// Reboots into the installed slot.
    async fn reboot(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ApiError> {
        self.shared
            .authorize(conn, &header, "rebooting into the update")
            .await?;
        self.updater.reboot(conn).await
    }

    /// Boots the other slot again, when it holds a good system.
    async fn rollback(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ApiError> {
        self.shared
            .authorize(conn, &header, "rolling back to the other slot")
            .await?;
        self.updater.rollback(conn).await
    }

    /// An install finished.
    #[zbus(signal)]
    async fn completed(
        emitter: &SignalEmitter<'_>,
        success: bool,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn available(&self) -> bool {
        self.p().available
    }
    #[zbus(property)]
    fn booted_slot(&self) -> String {
        self.p().booted_slot
    }
    #[zbus(property)]
    fn primary_slot(&self) -> String {
        self.p().primary_slot
    }
    #[zbus(property)]
    fn slots(&self) -> Vec<SlotReport> {
        self.p().slots
    }
    #[zbus(property)]
    fn current_version(&self) -> String {
        self.p().current_version
    }
    /// The update state machine's state.
    #[zbus(property)]
    fn state(&self) -> String {
        self.p().state
    }
    #[zbus(property)]
    fn state_reason(&self) -> String {
        self.p().state_reason
    }
    #[zbus(property)]
    fn bundle_version(&self) -> String {
        self.p().bundle_version
    }
    #[zbus(property)]
    fn operation(&self) -> String {
        self.p().operation
    }
    #[zbus(property)]
    fn progress_percent(&self) -> u32 {
        self.p().progress_percent
    }
    #[zbus(property)]
    fn progress_step(&self) -> String {
        self.p().progress_step
    }
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.p().last_error
    }
}

/// Emits PropertiesChanged for what changed, and `Completed`, as the
/// updater reports them.
pub(super) async fn signal_changes(
    iface: InterfaceRef<Update>,
    updater: Arc<Updater>,
    shutdown: CancellationToken,
) {
    let mut notices = updater.subscribe();
    let mut last = updater.properties();
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = notices.recv() => n,
        };
        let completed = match notice {
            Ok(Notice::Completed(ok, msg)) => Some((ok, msg)),
            Ok(Notice::Changed) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
            Err(_) => return,
        };
        let now = updater.properties();
        if let Err(e) = emit_changes(&iface, &last, &now).await {
            tracing::debug!("D-Bus: cannot emit PropertiesChanged for Update: {e}");
        }
        last = now;
        if let Some((ok, msg)) = completed {
            if let Err(e) = Update::completed(iface.signal_emitter(), ok, &msg).await {
                tracing::debug!("D-Bus: cannot emit Update.Completed: {e}");
            }
        }
    }
}

async fn emit_changes(
    iface: &InterfaceRef<Update>,
    a: &UpdateProperties,
    b: &UpdateProperties,
) -> zbus::Result<()> {
    let u = iface.get().await;
    let e = iface.signal_emitter();
    macro_rules! changed {
        ($($field:ident => $signal:ident),* $(,)?) => {
            $(if a.$field != b.$field { u.$signal(e).await?; })*
        };
    }
    changed!(
        available => available_changed,
        booted_slot => booted_slot_changed,
        primary_slot => primary_slot_changed,
        slots => slots_changed,
        current_version => current_version_changed,
        state => state_changed,
        state_reason => state_reason_changed,
        bundle_version => bundle_version_changed,
        operation => operation_changed,
        progress_percent => progress_percent_changed,
        progress_step => progress_step_changed,
        last_error => last_error_changed,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn o(pairs: &[(&str, Value<'_>)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.try_to_owned().unwrap()))
            .collect()
    }

    #[test]
    fn install_options_are_booleans_by_name() {
        assert_eq!(options(&o(&[])).unwrap(), (false, false));
        assert_eq!(
            options(&o(&[("force", true.into()), ("reboot", false.into())])).unwrap(),
            (true, false)
        );
        let e = options(&o(&[("forced", true.into())])).unwrap_err();
        assert!(e.message().contains("\"forced\""), "{e}");
        let e = options(&o(&[("force", "yes".into())])).unwrap_err();
        assert_eq!(e.name(), "org.freedesktop.DBus.Error.InvalidArgs");
    }
}
