//! The configuration file (`skytime.toml`): its structure, defaults,
//! validation and error reporting.
//!
//! Every value is checked while it is parsed (serde `try_from` newtypes and
//! `deserialize_with` parsers), so an error carries the TOML line it came
//! from; unknown keys are refused everywhere. Each section's options are
//! documented in `skytime.example.toml`, which a test parses.

pub mod managed;

use crate::clock::ClockConfig;
use crate::dbus::DbusConfig;
use crate::keys::KeysConfig;
use crate::monitor::MonitorConfig;
use crate::network::{NetworkControl, NetworkSettings};
use crate::ntp::NtpConfig;
use crate::nts::NtsConfig;
use crate::refclock::RefclockConfig;
use crate::update::UpdateConfig;
use crate::upstream::{NtsClientConfig, UpstreamConfig};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the daemon looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/skytime/skytime.toml";

/// Name of the managed configuration in the data directory: the file the
/// management API (`Config.Apply`) writes, because the appliance's root
/// file system is read-only. When it exists it replaces the file given
/// with `--config` as a whole (see [`Config::with_managed`]).
pub const MANAGED_CONFIG_FILE: &str = "skytime.toml";

/// A configuration that could not be loaded: the file, and what is wrong
/// (the TOML error text names line and column).
pub use skytime_persist::toml_file::ConfigError;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Persistent state: NTS keys, certificates, drift file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ntp: NtpConfig,
    #[serde(default)]
    pub nts: NtsConfig,
    #[serde(default)]
    pub gps: RefclockConfig,
    #[serde(default)]
    pub clock: ClockConfig,
    #[serde(default)]
    pub dbus: DbusConfig,
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Upstream NTP/NTS servers (`[[upstream]]`, like chrony's `server`
    /// and `pool` lines).
    #[serde(default, deserialize_with = "upstream_list")]
    pub upstream: Vec<UpstreamConfig>,
    /// How upstream NTS servers are trusted; where their cookies live.
    #[serde(default)]
    pub nts_client: NtsClientConfig,
    /// Symmetric keys (chrony's `keyfile`).
    #[serde(default)]
    pub keys: KeysConfig,
    /// A/B updates through RAUC.
    #[serde(default)]
    pub update: UpdateConfig,
    /// The appliance's network (addresses, host name, mDNS): the seed of
    /// the settings `Network.Apply` changes later (used only while
    /// `<data_dir>/network.toml` does not exist; see [`crate::network`]).
    #[serde(default)]
    pub network: Option<NetworkSettings>,
    /// Where the network settings are rendered and how the system is
    /// told (the appliance's defaults; tests point them elsewhere).
    #[serde(default)]
    pub network_control: NetworkControl,
}

/// The `[[upstream]]` entries, checked one by one and as a whole.
fn upstream_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<UpstreamConfig>, D::Error> {
    let list = Vec::<UpstreamConfig>::deserialize(d)?;
    crate::upstream::config::check_list(&list).map_err(serde::de::Error::custom)?;
    Ok(list)
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/skytime")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            log: LogConfig::default(),
            ntp: NtpConfig::default(),
            nts: NtsConfig::default(),
            gps: RefclockConfig::default(),
            clock: ClockConfig::default(),
            dbus: DbusConfig::default(),
            monitor: MonitorConfig::default(),
            upstream: Vec::new(),
            nts_client: NtsClientConfig::default(),
            keys: KeysConfig::default(),
            update: UpdateConfig::default(),
            network: None,
            network_control: NetworkControl::default(),
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        skytime_persist::toml_file::load(path)
    }

    /// Validates `text` as if it had been read from `path` (used in error
    /// messages only).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        skytime_persist::toml_file::parse(text, path)
    }

    /// Where the managed configuration of this configuration lives.
    pub fn managed_path(&self) -> PathBuf {
        self.data_dir.join(MANAGED_CONFIG_FILE)
    }

    /// Validates `text` as a managed configuration for the data directory
    /// `data_dir`: a whole configuration file like any other, except that
    /// `data_dir` may be left out (it is the directory the file lives in)
    /// and may not name another directory, since the next start would not
    /// find the file there.
    pub fn parse_managed(text: &str, path: &Path, data_dir: &Path) -> Result<Self, ConfigError> {
        let mut config = Self::parse(text, path)?;
        // The document parsed, so it is a valid TOML table.
        let names_data_dir = toml::from_str::<toml::Table>(text)
            .map(|t| t.contains_key("data_dir"))
            .unwrap_or(false);
        if names_data_dir && config.data_dir != data_dir {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "data_dir = \"{}\" differs from the data directory this file lives in ({}): \
                     leave data_dir out of a managed configuration or set it to that directory",
                    config.data_dir.display(),
                    data_dir.display()
                ),
            });
        }
        config.data_dir = data_dir.to_owned();
        Ok(config)
    }

    /// Start-up precedence: the managed file `<data_dir>/skytime.toml`
    /// (what the management API saved) replaces `self` (the file given
    /// with `--config`, or the built-in defaults) as a whole when it
    /// exists; it is never merged key by key, so what `Config.Apply` was
    /// given is exactly what runs. Returns the managed path when it was
    /// used. A managed file that does not validate is an error naming its
    /// line: the daemon must not fall back silently to settings the
    /// operator replaced.
    pub fn with_managed(self) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = self.managed_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let managed = Self::parse_managed(&text, &path, &self.data_dir)?;
                Ok((managed, Some(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((self, None)),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

/// `[log]`: how much the daemon says.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub level: LogLevel,
}

/// Log verbosity, from least to most.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::config::{RateLimitConfig, Stratum};
    use std::net::SocketAddr;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.ntp.listen.len(), 2);
        assert!(c
            .ntp
            .access_list()
            .is_allowed("198.51.100.7".parse().unwrap()));
        assert_eq!(c.ntp.local_stratum, None);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../skytime.example.toml");
        let c = parse(text).unwrap();
        assert!(!c.ntp.listen.is_empty());
    }

    /// The commented-out block of the example file after the line that
    /// starts with `heading`, uncommented.
    fn commented_example(heading: &str) -> String {
        include_str!("../../skytime.example.toml")
            .lines()
            .skip_while(|l| !l.starts_with(heading))
            .skip(1)
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect()
    }

    /// The example's commented-out upstream entries parse as written.
    #[test]
    fn example_upstream_entries_parse() {
        let block = commented_example("# Examples (uncomment to use):");
        let c = parse(&block).unwrap();
        assert_eq!(c.upstream.len(), 3, "{block}");
    }

    /// The example's commented-out [network] section parses as written.
    #[test]
    fn example_network_section_parses() {
        let block = commented_example("# Network example (uncomment to use):");
        let c = parse(&block).unwrap();
        let n = c.network.expect("a [network] section");
        assert_eq!(n.hostname.as_ref().unwrap().as_str(), "time1");
        assert_eq!(n.static_addresses().len(), 2, "{block}");
    }

    #[test]
    fn demo_file_parses() {
        let c = parse(include_str!("../../demo.toml")).unwrap();
        assert_eq!(
            c.ntp.listen,
            vec!["127.0.0.1:11123".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn unknown_key_is_refused_with_file_and_line() {
        let e = parse("[ntp]\nlisten = [\"127.0.0.1:123\"]\nalow = []\n").unwrap_err();
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("alow"), "{e}");
    }

    #[test]
    fn out_of_range_stratum_is_refused_with_line() {
        let e = parse("[ntp]\n\nlocal_stratum = 16\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("stratum 16 is out of range"), "{e}");
        assert!(parse("[ntp]\nlocal_stratum = 0\n").is_err());
        assert_eq!(
            parse("[ntp]\nlocal_stratum = 10\n")
                .unwrap()
                .ntp
                .local_stratum
                .map(Stratum::get),
            Some(10)
        );
    }

    #[test]
    fn bad_networks_and_addresses_are_named() {
        let e = parse("[ntp]\nallow = [\"10.0.0.0/40\"]\n").unwrap_err();
        assert!(e.contains("10.0.0.0/40") && e.contains("line 2"), "{e}");
        let e = parse("[ntp]\nlisten = [\"::1:123\"]\n").unwrap_err();
        assert!(e.contains("brackets"), "{e}");
        let e = parse("[ntp]\nlisten = []\n").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = parse("[ntp]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn client_log_size_is_bounded() {
        assert_eq!(
            parse("[ntp]\nclient_log_size = 0\n")
                .unwrap()
                .ntp
                .client_log_size
                .get(),
            0
        );
        let e = parse("[ntp]\nclient_log_size = -1\n").unwrap_err();
        assert!(e.contains("out of range") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn ratelimit_takes_chrony_defaults_and_checks_ranges() {
        let c = parse("[ntp.ratelimit]\n").unwrap();
        assert_eq!(
            c.ntp.ratelimit,
            Some(RateLimitConfig {
                interval: 3,
                burst: 8,
                leak: 2,
                kod: 0
            })
        );
        let e = parse("[ntp.ratelimit]\nburst = 0\n").unwrap_err();
        assert!(
            e.contains("burst 0 is out of range") && e.contains("line 1"),
            "{e}"
        );
        let c = parse("[ntp.ratelimit]\nkod = 4\n").unwrap();
        assert_eq!(c.ntp.ratelimit.map(|r| r.to_limit().kod_log2), Some(4));
        for bad in ["5", "-1"] {
            let e = parse(&format!("[ntp.ratelimit]\nkod = {bad}\n")).unwrap_err();
            assert!(
                e.contains(&format!("kod {bad} is out of range: use 0 (off) to 4")),
                "{e}"
            );
        }
        assert!(parse("[ntp.ratelimit]\nspeed = 1\n")
            .unwrap_err()
            .contains("speed"));
    }

    #[test]
    fn dbus_section_defaults_and_unknown_keys() {
        let c = parse("").unwrap();
        assert!(c.dbus.enabled);
        assert_eq!(c.dbus.bus, "system");
        assert_eq!(c.dbus.admin_group, "skytime-admin");
        let c = parse("[dbus]\nenabled = false\nbus = \"unix:path=/run/x\"\n").unwrap();
        assert!(!c.dbus.enabled);
        assert_eq!(c.dbus.bus, "unix:path=/run/x");
        let e = parse("[dbus]\n\nbuss = \"system\"\n").unwrap_err();
        assert!(e.contains("buss") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn managed_file_replaces_the_base_and_keeps_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let base = Config::parse(
            &format!(
                "data_dir = \"{}\"\n[ntp]\nlocal_stratum = 3\n",
                dir.path().display()
            ),
            Path::new("base.toml"),
        )
        .unwrap();
        // No managed file: the base runs.
        let (c, used) = base.clone().with_managed().unwrap();
        assert_eq!((c, used), (base.clone(), None));
        // A managed file replaces it as a whole and inherits data_dir.
        let managed = dir.path().join(MANAGED_CONFIG_FILE);
        std::fs::write(&managed, "[log]\nlevel = \"debug\"\n").unwrap();
        let (c, used) = base.clone().with_managed().unwrap();
        assert_eq!(used.as_deref(), Some(managed.as_path()));
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.ntp.local_stratum, None, "not merged with the base");
        assert_eq!(c.data_dir, dir.path());
        // A bad managed file is refused with its path and line.
        std::fs::write(&managed, "[log]\n\nlevel = \"loud\"\n").unwrap();
        let e = base.clone().with_managed().unwrap_err().to_string();
        assert!(
            e.contains(&managed.display().to_string()) && e.contains("line 3"),
            "{e}"
        );
        // It may not move the data directory.
        std::fs::write(&managed, "data_dir = \"/elsewhere\"\n").unwrap();
        let e = base.with_managed().unwrap_err().to_string();
        assert!(e.contains("leave data_dir out"), "{e}");
    }

    #[test]
    fn log_level_is_checked() {
        assert_eq!(
            parse("[log]\nlevel = \"debug\"\n").unwrap().log.level,
            LogLevel::Debug
        );
        let e = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert!(e.contains("loud"), "{e}");
    }
}
