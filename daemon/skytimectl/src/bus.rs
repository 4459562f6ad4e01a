//! Talking to skytimed: the bus connection, calls, and turning D-Bus
//! replies into JSON values and D-Bus errors into exit codes.

use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use zbus::zvariant::{OwnedValue, Value};
use zbus::Connection;

pub const BUS_NAME: &str = "org.skytime.Appliance1";
pub const OBJECT_PATH: &str = "/org/skytime/Appliance1";

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

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, as
/// every D-Bus client does).
pub async fn connect() -> Result<Connection, CtlError> {
    Connection::system().await.map_err(|e| {
        let addr = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| "the system bus".to_owned());
        CtlError::new(
            exit::NOT_RUNNING,
            format!("cannot connect to {addr}: {e} (is dbus-daemon running?)"),
        )
    })
}

/// Calls `interface.method(body)` on skytimed and returns the reply body.
pub async fn call<B>(
    conn: &Connection,
    interface: &str,
    method: &str,
    body: &B,
) -> Result<zbus::Message, CtlError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let iface = format!("{BUS_NAME}.{interface}");
    conn.call_method(
        Some(BUS_NAME),
        OBJECT_PATH,
        Some(iface.as_str()),
        method,
        body,
    )
    .await
    .map_err(classify)
}

/// All properties of `interface`.
pub async fn properties(conn: &Connection, interface: &str) -> Result<Json, CtlError> {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(format!("{BUS_NAME}.{interface}"),),
        )
        .await
        .map_err(classify)?;
    let map: HashMap<String, OwnedValue> = reply.body().deserialize().map_err(bad_reply)?;
    Ok(dict_to_json(map))
}

/// A reply that is one `a{sv}`.
pub fn reply_dict(reply: &zbus::Message) -> Result<Json, CtlError> {
    let map: HashMap<String, OwnedValue> = reply.body().deserialize().map_err(bad_reply)?;
    Ok(dict_to_json(map))
}

/// A reply that is one `aa{sv}`.
pub fn reply_dicts(reply: &zbus::Message) -> Result<Vec<Json>, CtlError> {
    let list: Vec<HashMap<String, OwnedValue>> = reply.body().deserialize().map_err(bad_reply)?;
    Ok(list.into_iter().map(dict_to_json).collect())
}

fn bad_reply(e: zbus::Error) -> CtlError {
    CtlError::new(
        exit::FAILED,
        format!("unexpected reply from skytimed (version mismatch?): {e}"),
    )
}

fn dict_to_json(map: HashMap<String, OwnedValue>) -> Json {
    let mut keys: Vec<_> = map.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Json::Object(
        keys.into_iter()
            .map(|(k, v)| (k, to_json(&v)))
            .collect::<Map<_, _>>(),
    )
}

/// A D-Bus value as JSON (dictionaries become objects).
pub fn to_json(v: &Value<'_>) -> Json {
    match v {
        Value::U8(x) => Json::from(*x),
        Value::Bool(x) => Json::from(*x),
        Value::I16(x) => Json::from(*x),
        Value::U16(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::U32(x) => Json::from(*x),
        Value::I64(x) => Json::from(*x),
        Value::U64(x) => Json::from(*x),
        Value::F64(x) => serde_json::Number::from_f64(*x)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Str(s) => Json::from(s.as_str()),
        Value::Signature(s) => Json::from(s.to_string()),
        Value::ObjectPath(p) => Json::from(p.as_str()),
        Value::Value(inner) => to_json(inner),
        Value::Array(a) => Json::Array(a.inner().iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.as_str().to_owned(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        #[allow(unreachable_patterns)]
        _ => Json::Null,
    }
}

/// Maps a D-Bus error to a message and an exit code.
pub fn classify(e: zbus::Error) -> CtlError {
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
        other => {
            return CtlError::new(exit::NOT_RUNNING, format!("cannot reach skytimed: {other}"))
        }
    };
    let code = match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Disconnected" => {
            return CtlError::new(
                exit::NOT_RUNNING,
                format!("skytimed is not running (no owner of {BUS_NAME} on the bus)"),
            )
        }
        "org.freedesktop.DBus.Error.AccessDenied" => {
            return CtlError::new(
                exit::ACCESS_DENIED,
                format!(
                "access denied: changing the appliance needs root or group skytime-admin ({desc})"
            ),
            )
        }
        "org.freedesktop.DBus.Error.InvalidArgs"
        | "org.skytime.Error.InvalidConfig"
        | "org.skytime.Error.InvalidCertificate"
        | "org.skytime.Error.CertificateExpired" => exit::INVALID_INPUT,
        "org.skytime.Error.NotAvailable"
        | "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface" => exit::NOT_AVAILABLE,
        _ => exit::FAILED,
    };
    CtlError::new(code, format!("{desc} [{name}]"))
}
