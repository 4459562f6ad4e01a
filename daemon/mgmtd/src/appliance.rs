//! The gateway's side of D-Bus: one connection to the bus, made when
//! first needed and made again after the bus went away, and the generic
//! conversions that let a route call a member the typed proxies do not
//! know yet (an interface still to come) and answer with JSON.
//!
//! The gateway is only a client of `org.skytime.Appliance1`: skytimed
//! checks its caller as for anyone else, and the gateway's user is in
//! `skytime-admin` so that its admin routes can write.

use crate::http::Failure;
use serde_json::Value as Json;
use skytime_api::http::names;
use skytime_api::{BUS_NAME, OBJECT_PATH};
use tokio::sync::Mutex;
use zbus::zvariant::{OwnedValue, Signature, StructureBuilder, Value};
use zbus::Connection;

/// How long a D-Bus call may take (D-Bus's own default reply timeout).
const METHOD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// The bus, as configured (`"system"` or an address).
#[derive(Debug)]
pub struct Bus {
    address: String,
    conn: Mutex<Option<Connection>>,
}

impl Bus {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            conn: Mutex::new(None),
        }
    }

    /// The connection, made now if there is none.
    pub async fn connection(&self) -> Result<Connection, Failure> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let built = if self.address == "system" {
            zbus::connection::Builder::system()
        } else {
            zbus::connection::Builder::address(self.address.as_str())
        };
        let conn = match built {
            // A skytimed that does not answer must not hold a request
            // (and its connection slot) for ever.
            Ok(b) => b.method_timeout(METHOD_TIMEOUT).build().await,
            Err(e) => Err(e),
        }
        .map_err(|e| {
            Failure::new(
                names::UNAVAILABLE,
                format!("cannot connect to the D-Bus {}: {e}", self.address),
            )
        })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A failed call as the client sees it; a broken connection is
    /// dropped, so that the next request connects anew.
    pub fn failure(&self, e: &zbus::Error) -> Failure {
        let f = Failure::from_dbus(e);
        if f.name == names::UNAVAILABLE {
            if let Ok(mut slot) = self.conn.try_lock() {
                *slot = None;
            }
        }
        f
    }

    /// Calls `interface.member` with `args` (values in order) and returns
    /// the reply's values as JSON (one value: itself; none: `{}`).
    pub async fn call_json(
        &self,
        interface: &str,
        member: &str,
        args: Vec<Value<'static>>,
    ) -> Result<Json, Failure> {
        let conn = self.connection().await?;
        let reply = if args.is_empty() {
            conn.call_method(Some(BUS_NAME), OBJECT_PATH, Some(interface), member, &())
                .await
        } else {
            let mut b = StructureBuilder::new();
            for a in args {
                b = b.append_field(a);
            }
            let body = b
                .build()
                .map_err(|e| Failure::new(names::INVALID_ARGS, e.to_string()))?;
            conn.call_method(Some(BUS_NAME), OBJECT_PATH, Some(interface), member, &body)
                .await
        }
        .map_err(|e| self.failure(&e))?;
        let body = reply.body();
        if body.signature() == &Signature::Unit {
            return Ok(Json::Object(Default::default()));
        }
        let values: zbus::zvariant::Structure<'_> =
            body.deserialize().map_err(|e| self.failure(&e))?;
        let mut fields: Vec<Json> = values.fields().iter().map(to_json).collect();
        Ok(if fields.len() == 1 {
            fields.remove(0)
        } else {
            Json::Array(fields)
        })
    }
}

/// A D-Bus value as JSON: dictionaries with string keys become objects
/// (so `a{sv}` records read as their JSON form), arrays lists, variants
/// their content.
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
        Value::F64(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::from(s.as_str()),
        Value::Signature(s) => Json::from(s.to_string()),
        Value::ObjectPath(p) => Json::from(p.as_str()),
        Value::Value(inner) => to_json(inner),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        Value::Fd(_) => Json::Null,
    }
}

/// A JSON argument as the D-Bus value of `signature`: the basic types and
/// `a{sv}` (an object of basic values: booleans, strings, integers as
/// `x`, other numbers as `d`).
pub fn from_json(name: &str, signature: &str, v: &Json) -> Result<Value<'static>, Failure> {
    let bad = |want: &str| {
        Failure::new(
            names::INVALID_ARGS,
            format!("argument {name} must be {want}, not {v}"),
        )
    };
    Ok(match signature {
        "s" => Value::from(v.as_str().ok_or_else(|| bad("a string"))?.to_owned()),
        "b" => Value::from(v.as_bool().ok_or_else(|| bad("true or false"))?),
        "u" => Value::from(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("an unsigned 32-bit integer"))?,
        ),
        "i" => Value::from(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("a 32-bit integer"))?,
        ),
        "x" => Value::from(v.as_i64().ok_or_else(|| bad("an integer"))?),
        "t" => Value::from(v.as_u64().ok_or_else(|| bad("an unsigned integer"))?),
        "d" => Value::from(v.as_f64().ok_or_else(|| bad("a number"))?),
        "a{sv}" => {
            let obj = v.as_object().ok_or_else(|| bad("an object"))?;
            let mut dict = std::collections::HashMap::<String, OwnedValue>::new();
            for (k, x) in obj {
                let value = match x {
                    Json::Bool(b) => Value::from(*b),
                    Json::String(s) => Value::from(s.clone()),
                    Json::Number(n) if n.is_i64() => Value::from(n.as_i64().unwrap_or(0)),
                    Json::Number(n) => Value::from(n.as_f64().unwrap_or(0.0)),
                    _ => return Err(bad("an object of booleans, strings and numbers")),
                };
                let owned = OwnedValue::try_from(value)
                    .map_err(|e| Failure::new(names::INVALID_ARGS, e.to_string()))?;
                dict.insert(k.clone(), owned);
            }
            Value::from(dict)
        }
        other => {
            return Err(Failure::new(
                names::INVALID_ARGS,
                format!("argument {name}: D-Bus type {other} is not supported over HTTPS"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_dbus_values_convert() {
        let v = from_json(
            "options",
            "a{sv}",
            &serde_json::json!({"force": true, "n": 3}),
        )
        .unwrap();
        let back = to_json(&v);
        assert_eq!(back, serde_json::json!({"force": true, "n": 3}));
        assert!(from_json("seconds", "u", &serde_json::json!(-1)).is_err());
        let e = from_json("path", "s", &serde_json::json!(1)).unwrap_err();
        assert!(e.message.contains("path must be a string"), "{e:?}");
        assert_eq!(to_json(&Value::from(f64::NAN)), Json::Null);
    }
}
