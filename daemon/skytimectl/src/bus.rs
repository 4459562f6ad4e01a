//! Talking to skytimed over D-Bus: the bus connection, the typed proxies
//! of `skytime-api`, and errors as exit codes.

use skytime_api::client::{
    ConfigProxy, MonitorProxy, NetworkProxy, NtsProxy, PowerProxy, ServerProxy, SourcesProxy,
    UpdateProxy,
};
use skytime_api::{ApiError, BUS_NAME};
use zbus::Connection;

/// Exit codes (documented in the README and `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    /// The daemon refused or failed the operation.
    pub const FAILED: u8 = 1;
    // 2: bad command line (clap's own exit code).
    /// The daemon is not running or the bus cannot be reached.
    pub const NOT_RUNNING: u8 = 3;
    /// Not allowed: root or group skytime-admin needed.
    pub const ACCESS_DENIED: u8 = 4;
    /// Invalid input: configuration, certificate, key, or unreadable file.
    pub const INVALID_INPUT: u8 = 5;
    /// The feature is disabled on this appliance (for example NTS).
    pub const NOT_AVAILABLE: u8 = 6;
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

impl CtlError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The longest skytimectl waits for any reply. No call of skytimed's takes
/// near this long; the bound turns a connection that went dead (a VM's
/// channel, a bus that stalled) into an error instead of a hang.
const METHOD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// The same for connecting (the authentication exchange); as long as
/// `skytimectl vm-bus` gives a guest to answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, as
/// every D-Bus client does).
pub async fn connect() -> Result<Connection, CtlError> {
    let addr =
        || std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| "the system bus".to_owned());
    let built = zbus::connection::Builder::system().map(|b| b.method_timeout(METHOD_TIMEOUT));
    let connecting = async {
        match built {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        }
    };
    let Ok(connected) = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await else {
        return Err(CtlError::new(
            exit::NOT_RUNNING,
            format!(
                "no answer from {} within {} s (is dbus-daemon running?)",
                addr(),
                CONNECT_TIMEOUT.as_secs()
            ),
        ));
    };
    connected.map_err(|e| {
        let addr = addr();
        CtlError::new(
            exit::NOT_RUNNING,
            format!("cannot connect to {addr}: {e} (is dbus-daemon running?)"),
        )
    })
}

macro_rules! proxies {
    ($($name:ident => $proxy:ident),* $(,)?) => {$(
        pub async fn $name(conn: &Connection) -> Result<$proxy<'static>, CtlError> {
            $proxy::new(conn).await.map_err(classify)
        }
    )*};
}

proxies!(
    sources_proxy => SourcesProxy,
    server_proxy => ServerProxy,
    nts_proxy => NtsProxy,
    config_proxy => ConfigProxy,
    power_proxy => PowerProxy,
    monitor_proxy => MonitorProxy,
    update_proxy => UpdateProxy,
    network_proxy => NetworkProxy,
);

/// An API error as a message and an exit code; `who` says who may
/// change the appliance on this transport.
pub fn classify_api(api: &ApiError, who: &str) -> CtlError {
    let code = match api {
        ApiError::AccessDenied(why) => {
            return CtlError::new(
                exit::ACCESS_DENIED,
                format!("access denied: changing the appliance needs {who} ({why})"),
            )
        }
        ApiError::InvalidArgs(_)
        | ApiError::InvalidConfig(_)
        | ApiError::InvalidCertificate(_)
        | ApiError::CertificateExpired(_) => exit::INVALID_INPUT,
        ApiError::NotAvailable(_) | ApiError::UpdateUnavailable(_) => exit::NOT_AVAILABLE,
        ApiError::BundleRejected(_) => exit::INVALID_INPUT,
        _ => exit::FAILED,
    };
    CtlError::new(code, format!("{} [{}]", api.message(), api.name()))
}

/// For a call that takes the appliance down (reboot, power off, rollback):
/// the bus connection may close before the answer comes back, because the
/// shutdown stops the bus (or the VM channel) first. The request was
/// delivered then, so that is success; every other error stays one (a
/// skytimed that is not running is refused by the bus at once).
pub fn going_down(r: Result<(), zbus::Error>) -> Result<(), CtlError> {
    let Err(e) = r else { return Ok(()) };
    let cut = match &e {
        zbus::Error::InputOutput(_) => true,
        zbus::Error::MethodError(name, ..) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Disconnected"
        ),
        zbus::Error::FDO(f) => matches!(
            **f,
            zbus::fdo::Error::NoReply(_) | zbus::fdo::Error::Disconnected(_)
        ),
        _ => false,
    };
    if cut {
        eprintln!("skytimectl: the connection closed as the appliance went down ({e})");
        Ok(())
    } else {
        Err(classify(e))
    }
}

/// Maps a failed call to a message and an exit code.
pub fn classify(e: zbus::Error) -> CtlError {
    if let Some(api) = ApiError::from_call(&e) {
        return classify_api(&api, "root or group skytime-admin");
    }
    let (name, desc) = match &e {
        zbus::Error::MethodError(name, desc, _) => {
            (name.as_str().to_owned(), desc.clone().unwrap_or_default())
        }
        zbus::Error::FDO(f) => {
            use zbus::DBusError;
            (
                f.name().as_str().to_owned(),
                f.description().unwrap_or_default().to_owned(),
            )
        }
        zbus::Error::Variant(_) => {
            return CtlError::new(
                exit::FAILED,
                format!("unexpected reply from skytimed (version mismatch?): {e}"),
            )
        }
        other => {
            return CtlError::new(exit::NOT_RUNNING, format!("cannot reach skytimed: {other}"))
        }
    };
    let code = match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            return CtlError::new(
                exit::NOT_RUNNING,
                format!("skytimed is not running (no owner of {BUS_NAME} on the bus)"),
            )
        }
        // The bus gave up waiting (dbus-daemon's reply timeout, 25 s by
        // default): skytimed owns its name but did not answer.
        "org.freedesktop.DBus.Error.NoReply" => {
            return CtlError::new(
                exit::NOT_RUNNING,
                format!("skytimed did not answer in time ({desc}); see journalctl -u skytimed"),
            )
        }
        "org.freedesktop.DBus.Error.Disconnected" => {
            return CtlError::new(
                exit::NOT_RUNNING,
                format!("the bus connection closed before skytimed answered ({desc})"),
            )
        }
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface" => exit::NOT_AVAILABLE,
        _ => exit::FAILED,
    };
    CtlError::new(code, format!("{desc} [{name}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_cut_by_the_shutdown_is_success_a_missing_daemon_is_not() {
        assert!(going_down(Ok(())).is_ok());
        let io = zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
        assert!(going_down(Err(io)).is_ok());
        let no_reply = zbus::Error::FDO(Box::new(zbus::fdo::Error::NoReply("timeout".into())));
        assert!(going_down(Err(no_reply)).is_ok());
        let unknown = zbus::Error::FDO(Box::new(zbus::fdo::Error::ServiceUnknown(
            "no owner".into(),
        )));
        let e = going_down(Err(unknown)).unwrap_err();
        assert_eq!(e.code, exit::NOT_RUNNING, "{}", e.message);
        let denied = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        assert!(going_down(Err(denied)).is_err());
    }

    #[test]
    fn a_silent_daemon_is_not_called_absent() {
        let absent = classify(zbus::Error::FDO(Box::new(
            zbus::fdo::Error::NameHasNoOwner("no owner".into()),
        )));
        assert!(
            absent.message.contains("is not running"),
            "{}",
            absent.message
        );
        let slow = classify(zbus::Error::FDO(Box::new(zbus::fdo::Error::NoReply(
            "Did not receive a reply".into(),
        ))));
        assert_eq!(slow.code, exit::NOT_RUNNING);
        assert!(
            slow.message.contains("did not answer in time"),
            "{}",
            slow.message
        );
        assert!(!slow.message.contains("is not running"), "{}", slow.message);
    }
}
