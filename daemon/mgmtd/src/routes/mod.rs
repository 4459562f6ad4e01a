//! The JSON API: one route per D-Bus member of `org.skytime.Appliance1`
//! (the paths of [`skytime_api::http`]), in one table. Reads are GET with
//! their arguments in the query string; writes are POST with a JSON
//! object of the arguments, under their introspection names; unknown
//! arguments are refused. Replies are the records as JSON.
//!
//! A test compares this table with the introspection XML and the bus
//! policy, so that every member has its route, with its arguments, and a
//! route is a read exactly when the policy lets every local user call
//! the member.
//!
//! A member without a typed call of its own is one table entry with
//! [`Op::Dbus`] (arguments by D-Bus signature, the reply converted to
//! JSON), as the `Update` interface's are.

use crate::appliance::{from_json, Bus};
use crate::http::Failure;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use skytime_api::client::{
    self, ConfigProxy, MonitorProxy, NtsProxy, PowerProxy, ServerProxy, SourcesProxy,
};
use skytime_api::http::{method_path, names, properties_path};
use skytime_api::{interface, MonitorProperties, TrackingReport};

/// The update interface (A/B updates through RAUC).
pub const UPDATE: &str = interface::UPDATE;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every enrolled client (and, with `anonymous_read`, the status page
    /// and metrics, which are not routes of this table).
    Read,
    /// Clients with the admin role; rate limited and audited.
    Write,
}

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `GetAll` of the interface: the record of its properties.
    Properties,
    GetSources,
    GetAuthData,
    GetStatistics,
    GetClients,
    GetStatus,
    InstallCertificate,
    RotateKeys,
    Reload,
    Apply,
    Reboot,
    PowerOff,
    History,
    /// A bundle streamed in the body, stored, then handed to
    /// `Update.Install(path, options)` (see [`crate::upload`]).
    UploadInstall,
    /// Any member: arguments (name, D-Bus signature) from the JSON body,
    /// the reply as JSON.
    Dbus(&'static [(&'static str, &'static str)]),
}

/// One route.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    pub interface: &'static str,
    /// `None`: the interface's properties.
    pub member: Option<&'static str>,
    pub access: Access,
    /// The D-Bus method's input arguments, by name, in order.
    pub args: &'static [&'static str],
    pub op: Op,
}

impl Route {
    pub fn path(&self) -> String {
        match self.member {
            Some(m) => method_path(self.interface, m),
            None => properties_path(self.interface),
        }
    }
}

const fn read(
    interface: &'static str,
    member: Option<&'static str>,
    args: &'static [&'static str],
    op: Op,
) -> Route {
    Route {
        method: Method::GET,
        interface,
        member,
        access: Access::Read,
        args,
        op,
    }
}

const fn write(
    interface: &'static str,
    member: &'static str,
    args: &'static [&'static str],
    op: Op,
) -> Route {
    Route {
        method: Method::POST,
        interface,
        member: Some(member),
        access: Access::Write,
        args,
        op,
    }
}

/// Every route.
pub const ROUTES: &[Route] = &[
    read(interface::TRACKING, None, &[], Op::Properties),
    read(interface::SOURCES, Some("GetSources"), &[], Op::GetSources),
    read(
        interface::SOURCES,
        Some("GetAuthData"),
        &[],
        Op::GetAuthData,
    ),
    read(
        interface::SERVER,
        Some("GetStatistics"),
        &[],
        Op::GetStatistics,
    ),
    read(interface::SERVER, Some("GetClients"), &[], Op::GetClients),
    read(interface::NTS, Some("GetStatus"), &[], Op::GetStatus),
    write(
        interface::NTS,
        "InstallCertificate",
        &["certificate_pem", "private_key_pem"],
        Op::InstallCertificate,
    ),
    write(interface::NTS, "RotateKeys", &[], Op::RotateKeys),
    read(interface::CONFIG, None, &[], Op::Properties),
    write(interface::CONFIG, "Apply", &["toml", "dry_run"], Op::Apply),
    write(interface::CONFIG, "Reload", &[], Op::Reload),
    write(interface::POWER, "Reboot", &[], Op::Reboot),
    write(interface::POWER, "PowerOff", &[], Op::PowerOff),
    read(interface::MONITOR, None, &[], Op::Properties),
    read(
        interface::MONITOR,
        Some("History"),
        &["seconds"],
        Op::History,
    ),
    // --- Update: Install takes the bundle as an upload; the others are
    // plain calls.
    read(UPDATE, None, &[], Op::Properties),
    write(UPDATE, "Check", &["path"], Op::Dbus(&[("path", "s")])),
    write(UPDATE, "Install", &["path", "options"], Op::UploadInstall),
    write(
        UPDATE,
        "InstallFromUrl",
        &["url", "sha256", "options"],
        Op::Dbus(&[("url", "s"), ("sha256", "s"), ("options", "a{sv}")]),
    ),
    write(UPDATE, "Reboot", &[], Op::Dbus(&[])),
    write(UPDATE, "Rollback", &[], Op::Dbus(&[])),
    // --- Network: settings with a safe apply (plain calls).
    read(interface::NETWORK, None, &[], Op::Properties),
    read(interface::NETWORK, Some("Get"), &[], Op::Dbus(&[])),
    write(
        interface::NETWORK,
        "Apply",
        &["toml", "confirm_seconds"],
        Op::Dbus(&[("toml", "s"), ("confirm_seconds", "u")]),
    ),
    write(interface::NETWORK, "Confirm", &[], Op::Dbus(&[])),
];

/// The route for `path` and whether `method` is the one it takes:
/// `None` when no route has the path.
pub fn find(method: &Method, path: &str) -> Option<(&'static Route, bool)> {
    let r = ROUTES.iter().find(|r| r.path() == path)?;
    Some((r, r.method == *method))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallArgs {
    certificate_pem: String,
    private_key_pem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyArgs {
    toml: String,
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryArgs {
    #[serde(default)]
    seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn args<T: DeserializeOwned>(m: Map<String, Json>) -> Result<T, Failure> {
    serde_json::from_value(Json::Object(m))
        .map_err(|e| Failure::new(names::INVALID_ARGS, format!("invalid arguments: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// Calls the route's member with `a` (the JSON body, or the query
/// string's parameters) and returns the reply as JSON. Not for
/// [`Op::UploadInstall`], which [`crate::upload`] handles.
pub async fn call(route: &Route, bus: &Bus, a: Map<String, Json>) -> Result<Json, Failure> {
    let conn = bus.connection().await?;
    let c = &conn;
    let dbus = |e: zbus::Error| bus.failure(&e);
    if !matches!(
        route.op,
        Op::Dbus(_) | Op::InstallCertificate | Op::Apply | Op::History
    ) {
        args::<NoArgs>(a.clone())?;
    }
    Ok(match route.op {
        Op::Properties => match route.interface {
            interface::TRACKING => to_json(
                &client::properties::<TrackingReport>(c, route.interface)
                    .await
                    .map_err(dbus)?,
            ),
            interface::MONITOR => to_json(
                &client::properties::<MonitorProperties>(c, route.interface)
                    .await
                    .map_err(dbus)?,
            ),
            other => {
                bus.call_json(
                    "org.freedesktop.DBus.Properties",
                    "GetAll",
                    vec![other.to_owned().into()],
                )
                .await?
            }
        },
        Op::GetSources => to_json(
            &SourcesProxy::new(c)
                .await
                .map_err(dbus)?
                .get_sources()
                .await
                .map_err(dbus)?,
        ),
        Op::GetAuthData => to_json(
            &SourcesProxy::new(c)
                .await
                .map_err(dbus)?
                .get_auth_data()
                .await
                .map_err(dbus)?,
        ),
        Op::GetStatistics => to_json(
            &ServerProxy::new(c)
                .await
                .map_err(dbus)?
                .get_statistics()
                .await
                .map_err(dbus)?,
        ),
        Op::GetClients => to_json(
            &ServerProxy::new(c)
                .await
                .map_err(dbus)?
                .get_clients()
                .await
                .map_err(dbus)?,
        ),
        Op::GetStatus => to_json(
            &NtsProxy::new(c)
                .await
                .map_err(dbus)?
                .get_status()
                .await
                .map_err(dbus)?,
        ),
        Op::InstallCertificate => {
            let x: InstallArgs = args(a)?;
            to_json(
                &NtsProxy::new(c)
                    .await
                    .map_err(dbus)?
                    .install_certificate(&x.certificate_pem, &x.private_key_pem)
                    .await
                    .map_err(dbus)?,
            )
        }
        Op::RotateKeys => to_json(
            &NtsProxy::new(c)
                .await
                .map_err(dbus)?
                .rotate_keys()
                .await
                .map_err(dbus)?,
        ),
        Op::Reload => to_json(
            &ConfigProxy::new(c)
                .await
                .map_err(dbus)?
                .reload()
                .await
                .map_err(dbus)?,
        ),
        Op::Apply => {
            let x: ApplyArgs = args(a)?;
            to_json(
                &ConfigProxy::new(c)
                    .await
                    .map_err(dbus)?
                    .apply(&x.toml, x.dry_run)
                    .await
                    .map_err(dbus)?,
            )
        }
        Op::Reboot => {
            PowerProxy::new(c)
                .await
                .map_err(dbus)?
                .reboot()
                .await
                .map_err(dbus)?;
            serde_json::json!({})
        }
        Op::PowerOff => {
            PowerProxy::new(c)
                .await
                .map_err(dbus)?
                .power_off()
                .await
                .map_err(dbus)?;
            serde_json::json!({})
        }
        Op::History => {
            let x: HistoryArgs = args(a)?;
            to_json(
                &MonitorProxy::new(c)
                    .await
                    .map_err(dbus)?
                    .history(x.seconds)
                    .await
                    .map_err(dbus)?,
            )
        }
        Op::Dbus(spec) => {
            let mut values = Vec::new();
            for (name, signature) in spec {
                let v = a.get(*name).ok_or_else(|| {
                    Failure::new(names::INVALID_ARGS, format!("missing argument {name}"))
                })?;
                values.push(from_json(name, signature, v)?);
            }
            if let Some(extra) = a.keys().find(|k| !spec.iter().any(|(n, _)| n == *k)) {
                return Err(Failure::new(
                    names::INVALID_ARGS,
                    format!("unknown argument {extra}"),
                ));
            }
            bus.call_json(route.interface, route.member.unwrap_or_default(), values)
                .await?
        }
        Op::UploadInstall => {
            return Err(Failure::new(
                names::INVALID_ARGS,
                "this route takes an upload",
            ))
        }
    })
}

/// Query-string parameters as JSON arguments: numbers where they parse,
/// `true`/`false` as booleans, strings otherwise.
pub fn query_args(query: Option<&str>) -> Map<String, Json> {
    let mut m = Map::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let value = if let Ok(n) = v.parse::<u64>() {
            Json::from(n)
        } else if let Ok(n) = v.parse::<i64>() {
            Json::from(n)
        } else if v == "true" || v == "false" {
            Json::from(v == "true")
        } else {
            Json::from(v)
        };
        m.insert(percent_decode(k), value);
    }
    m
}

/// `%XX` and `+` decoding of a query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("g"), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
