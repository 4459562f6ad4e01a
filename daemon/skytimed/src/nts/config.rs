//! The `[nts]` section of skytime.toml. Every option is documented in
//! skytime.example.toml; ranges are checked while parsing so errors carry
//! the TOML line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The `[nts]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NtsConfig {
    /// Serve NTS-KE and answer NTS-protected NTP.
    pub enabled: bool,
    /// Refuse plain (unauthenticated) NTP requests.
    pub require: bool,
    /// TCP addresses for NTS-KE.
    pub ke_listen: Vec<SocketAddr>,
    /// PEM certificate chain (server certificate first); relative paths are
    /// under the data directory.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub private_key: PathBuf,
    /// Master key file; relative paths are under the data directory.
    pub master_key_file: PathBuf,
    /// `rotate`: this server makes and rotates the keys. `follow`: it only
    /// reads a file another server rotates (shared keys).
    pub master_key_role: KeyRole,
    /// Seconds between master key rotations.
    pub rotation_interval: Seconds<1, 31_536_000>,
    /// Previous master keys kept so clients' cookies stay valid.
    pub previous_keys: Count<1, 1000>,
    /// NTPv4 Server Negotiation record: where clients send NTP.
    pub ntp_server: Option<String>,
    /// NTPv4 Port Negotiation record: NTP port clients use (when not 123).
    pub ntp_port: Option<u16>,
    /// Seconds a client has for TLS handshake, request and response.
    pub ke_timeout: Seconds<1, 600>,
    /// NTS-KE connections served at once; at the limit the oldest that has
    /// not sent a whole ClientHello gives way (the oldest of all if every
    /// one has).
    pub ke_max_connections: Count<1, 100_000>,
    /// Longest NTS-KE request accepted, in bytes.
    pub ke_max_request: Count<16, 65_536>,
}

impl Default for NtsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            require: false,
            ke_listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 4460)),
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 4460)),
            ],
            certificate: PathBuf::from("cert.pem"),
            private_key: PathBuf::from("key.pem"),
            master_key_file: PathBuf::from("nts-master-keys"),
            master_key_role: KeyRole::Rotate,
            rotation_interval: Seconds(86_400),
            previous_keys: Count(7),
            ntp_server: None,
            ntp_port: None,
            ke_timeout: Seconds(10),
            ke_max_connections: Count(100),
            ke_max_request: Count(1024),
        }
    }
}

impl NtsConfig {
    /// `path` resolved against `data_dir` when relative.
    pub fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            data_dir.join(path)
        }
    }
}

/// Who rotates the master keys.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    Rotate,
    Follow,
}

/// Whole seconds within `MIN..=MAX`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "u64")]
pub struct Seconds<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Seconds<MIN, MAX> {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} seconds is out of range {MIN}..={MAX}"))
        }
    }
}

/// A count within `MIN..=MAX`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "u64")]
pub struct Count<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Count<MIN, MAX> {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is out of range {MIN}..={MAX}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> Count<MIN, MAX> {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_section() {
        let c: NtsConfig = toml::from_str("").unwrap();
        assert_eq!(c, NtsConfig::default());
        assert!(!c.enabled);
        let c: NtsConfig = toml::from_str(
            r#"enabled = true
require = true
ke_listen = ["127.0.0.1:4460"]
certificate = "/etc/c.pem"
private_key = "k.pem"
master_key_file = "/shared/keys"
master_key_role = "follow"
rotation_interval = 3600
previous_keys = 24
ntp_server = "ntp.example"
ntp_port = 10123
ke_timeout = 5
ke_max_connections = 10
ke_max_request = 2048
"#,
        )
        .unwrap();
        assert_eq!(c.master_key_role, KeyRole::Follow);
        assert_eq!(c.previous_keys.get(), 24);
        assert_eq!(
            NtsConfig::resolve(Path::new("/d"), &c.private_key),
            PathBuf::from("/d/k.pem")
        );
        assert_eq!(
            NtsConfig::resolve(Path::new("/d"), &c.certificate),
            PathBuf::from("/etc/c.pem")
        );
    }

    #[test]
    fn out_of_range_and_unknown_keys_name_the_line() {
        for (text, needle) in [
            ("enabled = true\nrotation_interval = 0\n", "line 2"),
            ("ke_max_request = 8\n", "out of range"),
            ("master_key_role = \"lead\"\n", "unknown variant"),
            ("\n\ncertificat = \"x\"\n", "line 3"),
        ] {
            let e = toml::from_str::<NtsConfig>(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
