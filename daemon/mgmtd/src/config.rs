//! The gateway's configuration file (`/etc/skytime/mgmtd.toml`): where
//! it listens without socket activation, its data directory, the bus,
//! anonymous reading, and its limits. Unknown keys and out-of-range
//! values are refused with the file and line; every option is
//! documented in `mgmtd.example.toml`, which a test parses.

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the gateway looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/skytime/mgmtd.toml";

pub use skytime_persist::toml_file::ConfigError;

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Addresses to listen on when systemd passes no socket.
    pub listen: Vec<SocketAddr>,
    /// The gateway's state: its TLS identity, the enrolled operators, the
    /// audit log, uploaded bundles.
    pub data_dir: PathBuf,
    /// `"system"` (the system bus; `DBUS_SYSTEM_BUS_ADDRESS` overrides its
    /// address) or a D-Bus address.
    pub bus: String,
    /// Serve the status page and `/metrics` to clients without a
    /// certificate (the JSON API always needs one).
    pub anonymous_read: bool,
    pub log_level: LogLevel,
    pub limits: Limits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 443))],
            data_dir: PathBuf::from("/var/lib/skytime-mgmt"),
            bus: "system".into(),
            anonymous_read: false,
            log_level: LogLevel::Info,
            limits: Limits::default(),
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// `[limits]`: what one client, and all of them together, may cost.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    #[serde(deserialize_with = "connections")]
    pub max_connections: u32,
    /// Seconds a client has to complete the TLS handshake.
    #[serde(deserialize_with = "seconds")]
    pub handshake_timeout: f64,
    /// Seconds a connection may stay without traffic either way.
    #[serde(deserialize_with = "seconds")]
    pub idle_timeout: f64,
    /// Seconds a client has to send a request's header and JSON body.
    #[serde(deserialize_with = "seconds")]
    pub request_timeout: f64,
    /// Largest JSON request body, bytes.
    #[serde(deserialize_with = "body_bytes")]
    pub max_body: u64,
    /// Largest update bundle, bytes.
    #[serde(deserialize_with = "upload_bytes")]
    pub max_upload: u64,
    /// Writes one client certificate may make in a burst ...
    #[serde(deserialize_with = "burst")]
    pub write_burst: u32,
    /// ... and then one every this many seconds.
    #[serde(deserialize_with = "seconds")]
    pub write_interval: f64,
    /// The audit log is rotated when it reaches this size, bytes (one
    /// previous file is kept).
    #[serde(deserialize_with = "audit_bytes")]
    pub audit_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            handshake_timeout: 10.0,
            idle_timeout: 60.0,
            request_timeout: 30.0,
            max_body: 4 << 20,
            max_upload: 2 << 30,
            write_burst: 10,
            write_interval: 6.0,
            audit_max_bytes: 1 << 20,
        }
    }
}

impl Limits {
    pub fn handshake(&self) -> Duration {
        Duration::from_secs_f64(self.handshake_timeout)
    }
    pub fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout)
    }
    pub fn request(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }
}

/// A number in `lo..=hi`, or an error naming the option's limits.
fn ranged<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
    d: D,
    what: &str,
    lo: i64,
    hi: i64,
) -> Result<T, D::Error> {
    let v = i64::deserialize(d)?;
    if (lo..=hi).contains(&v) {
        T::try_from(v).map_err(|_| serde::de::Error::custom(format!("{what} {v} is out of range")))
    } else {
        Err(serde::de::Error::custom(format!(
            "{what} {v} is out of range: use {lo} to {hi}"
        )))
    }
}

fn connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "max_connections", 1, 4096)
}

fn burst<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "write_burst", 1, 1000)
}

fn body_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "max_body", 1024, 64 << 20)
}

fn upload_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "max_upload", 1024, 16 << 30)
}

fn audit_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "audit_max_bytes", 4096, 1 << 30)
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} seconds is out of range: use 0.1 to 3600"
        )))
    }
}

impl GatewayConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        skytime_persist::toml_file::load::<Self>(path)?.checked(path)
    }

    /// Validates `text` as if read from `path` (for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        skytime_persist::toml_file::parse::<Self>(text, path)?.checked(path)
    }

    /// What the field parsers cannot check alone.
    fn checked(self, path: &Path) -> Result<Self, ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "listen needs at least one address (it is used when systemd passes \
                          no socket)"
                    .into(),
            });
        }
        Ok(self)
    }

    /// [`GatewayConfig::load`] of `path`, or the defaults when `path` is
    /// the default path and does not exist.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        if path == Path::new(DEFAULT_CONFIG_PATH) && !path.exists() {
            return Ok(Self::default());
        }
        Self::load(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::parse(text, Path::new("mgmtd.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, GatewayConfig::default());
        assert!(!c.anonymous_read);
        assert_eq!(c.listen, ["0.0.0.0:443".parse().unwrap()]);
    }

    #[test]
    fn example_and_demo_files_parse() {
        let c = parse(include_str!("../mgmtd.example.toml")).unwrap();
        assert_eq!(
            c,
            GatewayConfig::default(),
            "the example shows the defaults"
        );
        let d = parse(include_str!("../demo.toml")).unwrap();
        assert_eq!(d.listen, ["127.0.0.1:18443".parse().unwrap()]);
        assert!(d.anonymous_read);
        // The appliance image's file (image/rootfs/etc/skytime/mgmtd.toml).
        let a = parse(include_str!("../../../image/rootfs/etc/skytime/mgmtd.toml")).unwrap();
        assert_eq!(a.data_dir, std::path::Path::new("/var/lib/skytime-mgmt"));
        assert!(!a.anonymous_read);
    }

    #[test]
    fn bad_values_are_named_with_file_and_line() {
        let e = parse("anonymous_read = true\n[limits]\nmax_connections = 0\n").unwrap_err();
        assert!(
            e.contains("mgmtd.toml") && e.contains("line 3") && e.contains("1 to 4096"),
            "{e}"
        );
        let e = parse("[limits]\n\nidle_timeout = -1\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("0.1 to 3600"), "{e}");
        let e = parse("listen = []\n").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = parse("[limits]\nmax_conections = 3\n").unwrap_err();
        assert!(e.contains("max_conections") && e.contains("line 2"), "{e}");
    }
}
