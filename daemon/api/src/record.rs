//! How a record crosses the wire, declared once per record.
//!
//! A record is a struct of named fields that travels as a D-Bus dictionary
//! (`a{sv}`: each field a variant under its PascalCase name) and as a JSON
//! object with the same names. One serde implementation serves both: each
//! field asks its serializer whether it is human-readable (JSON is, D-Bus's
//! binary format is not) and wraps itself in a variant only for D-Bus.
//! Absent optional fields are left out of both forms, and unknown keys are
//! ignored on reading, so a later version can add fields without breaking
//! older clients.
//!
//! Declare a record with `record!` (in `records.rs`); it derives the rest.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::zvariant::{as_value, Type};

/// A management record: a D-Bus `a{sv}` dictionary and a JSON object with
/// the same keys, convertible both ways without loss.
pub trait Record:
    Serialize
    + for<'de> Deserialize<'de>
    + Type
    + Clone
    + Default
    + PartialEq
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

/// One field of a record: what it looks like on each wire.
pub trait Field: Sized {
    /// Whether the field is left out (an absent optional value).
    fn absent(&self) -> bool {
        false
    }
    fn put<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn take<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Implements [`Field`] for types that are one value on either wire (a
/// variant of their own signature on D-Bus).
macro_rules! plain_field {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::record::Field for $t {
            fn put<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::record::put_plain(self, s)
            }
            fn take<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::record::take_plain(d)
            }
        }
    )*};
}
pub(crate) use plain_field;

plain_field!(
    bool,
    u8,
    i8,
    u32,
    u64,
    i64,
    String,
    Vec<String>,
    Vec<u32>,
    std::collections::BTreeMap<String, u64>,
);

/// A number is a double on D-Bus, where infinity and NaN travel as they
/// are (a skew not yet known is infinite); JSON has neither and writes
/// `null`, which reads back as NaN, so a record from the gateway's JSON
/// still parses.
impl Field for f64 {
    fn put<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        put_plain(self, s)
    }
    fn take<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
        } else {
            take_plain(d)
        }
    }
}

pub(crate) fn put_plain<T: Type + Serialize, S: Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        v.serialize(s)
    } else {
        as_value::serialize(v, s)
    }
}

pub(crate) fn take_plain<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: Type + Deserialize<'de> + 'de,
    D: Deserializer<'de>,
{
    if d.is_human_readable() {
        T::deserialize(d)
    } else {
        as_value::deserialize(d)
    }
}

impl<T: Field> Field for Option<T> {
    fn absent(&self) -> bool {
        self.is_none()
    }
    fn put<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(v) => v.put(s),
            None => s.serialize_none(),
        }
    }
    fn take<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            // JSON may say `null` for an absent value.
            Option::<Via<T>>::deserialize(d).map(|v| v.map(|v| v.0))
        } else {
            T::take(d).map(Some)
        }
    }
}

/// A field read through [`Field::take`] where serde wants `Deserialize`.
struct Via<T>(T);

impl<'de, T: Field> Deserialize<'de> for Via<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::take(d).map(Via)
    }
}

/// A record as a D-Bus value (its `a{sv}` dictionary), for properties
/// whose type is a record or a list of records.
pub fn to_value<R: Record>(r: &R) -> zbus::zvariant::Value<'static> {
    use std::collections::HashMap;
    use zbus::zvariant::{serialized::Context, to_bytes, OwnedValue, LE};
    // Through the wire form: the one serde implementation decides what
    // the dictionary holds. A record always serializes; should it not,
    // the property reads as an empty dictionary rather than failing.
    let dict: HashMap<String, OwnedValue> = to_bytes(Context::new_dbus(LE, 0), r)
        .ok()
        .and_then(|data| data.deserialize().ok().map(|(d, _)| d))
        .unwrap_or_default();
    zbus::zvariant::Value::from(dict)
}

/// `#[serde(with = ...)]` target for every record field.
pub(crate) mod wire {
    use super::Field;
    use serde::{Deserializer, Serializer};

    pub fn serialize<T: Field, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.put(s)
    }

    pub fn deserialize<'de, T: Field, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        T::take(d)
    }
}

/// Declares a record: the struct (its field names become PascalCase keys),
/// its D-Bus signature `a{sv}`, its serde implementation for both wires,
/// and [`Record`]. A record may hold another as a field.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, zbus::zvariant::Type)]
        #[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
        #[serde(default, rename_all = "PascalCase")]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(with = "crate::record::wire", skip_serializing_if = "crate::record::Field::absent")]
                pub $field: $ty,
            )*
        }

        impl $crate::record::Record for $name {}

        impl From<$name> for zbus::zvariant::Value<'static> {
            fn from(r: $name) -> Self {
                $crate::record::to_value(&r)
            }
        }

        $crate::record::plain_field!($name);
    };
}
pub(crate) use record;
