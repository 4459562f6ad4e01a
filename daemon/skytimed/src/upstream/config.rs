//! `[[upstream]]` entries and the `[nts_client]` section, chrony's
//! `server`/`pool` lines and `ntstrustedcerts`/`ntsdumpdir` in TOML.
//!
//! ```toml
//! [[upstream]]
//! server = "ntp1.example.net"   # or pool = "pool.example.net"
//! nts = true
//! minpoll = 6
//! maxpoll = 10
//! iburst = true
//! role = "normal"               # "trust", "noselect"
//! ```
//!
//! Each entry is checked while it is parsed, so errors carry its line.

use serde::Deserialize;
use skytime_discipline::NetRole;
use skytime_proto::client::poll::{MAX_POLL, MIN_POLL};
use std::path::{Path, PathBuf};

/// Network sources the discipline can take (its source numbers 3 to 31).
pub const MAX_UPSTREAM_SOURCES: usize = skytime_discipline::discipline::MAX_SOURCES - 3;
/// Most servers one pool entry may use.
pub const MAX_POOL_SOURCES: u8 = 16;

/// A server or a pool of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamKind {
    Server,
    Pool,
}

/// How a source's replies are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authentication {
    None,
    Nts,
    /// A symmetric key of the key file, by ID.
    Key(u32),
}

/// How a source may be used, as written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    #[default]
    Normal,
    Trust,
    Noselect,
}

impl RoleName {
    pub fn role(self) -> NetRole {
        match self {
            Self::Normal => NetRole::Normal,
            Self::Trust => NetRole::Trust,
            Self::Noselect => NetRole::NoSelect,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Trust => "trust",
            Self::Noselect => "noselect",
        }
    }
}

/// One `[[upstream]]` entry, checked.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "UpstreamToml")]
pub struct UpstreamConfig {
    pub kind: UpstreamKind,
    /// Host name or address.
    pub address: String,
    pub authentication: Authentication,
    /// NTP port (for NTS: unless the key exchange names another).
    pub port: u16,
    /// NTS-KE port.
    pub nts_port: u16,
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
    pub role: RoleName,
    /// Servers a pool entry uses at most (1 for a server).
    pub max_sources: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamToml {
    server: Option<String>,
    pool: Option<String>,
    #[serde(default)]
    nts: bool,
    key: Option<i64>,
    port: Option<i64>,
    nts_port: Option<i64>,
    minpoll: Option<i64>,
    maxpoll: Option<i64>,
    #[serde(default = "yes")]
    iburst: bool,
    #[serde(default)]
    role: RoleName,
    max_sources: Option<i64>,
}

fn yes() -> bool {
    true
}

impl TryFrom<UpstreamToml> for UpstreamConfig {
    type Error = String;
    fn try_from(t: UpstreamToml) -> Result<Self, String> {
        let (kind, address) = match (t.server, t.pool) {
            (Some(s), None) => (UpstreamKind::Server, s),
            (None, Some(p)) => (UpstreamKind::Pool, p),
            _ => return Err(
                "an [[upstream]] entry needs exactly one of server = \"NAME\" or pool = \"NAME\""
                    .into(),
            ),
        };
        let address = address.trim().to_owned();
        if address.is_empty()
            || address.len() > 253
            || !address
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:_[]".contains(c))
        {
            return Err(format!("{address:?} is not a host name or an IP address"));
        }
        let authentication = match (t.nts, t.key) {
            (true, Some(_)) => {
                return Err(format!(
                    "upstream {address}: choose nts = true or key = ID, not both"
                ))
            }
            (true, None) => Authentication::Nts,
            (false, Some(k)) => {
                Authentication::Key(u32::try_from(k).ok().filter(|&k| k != 0).ok_or_else(|| {
                    format!("upstream {address}: key {k} is not a key ID 1 to 4294967295")
                })?)
            }
            (false, None) => Authentication::None,
        };
        let port = |v: Option<i64>, default: u16, what: &str| -> Result<u16, String> {
            match v {
                None => Ok(default),
                Some(p) => u16::try_from(p).ok().filter(|&p| p != 0).ok_or_else(|| {
                    format!("upstream {address}: {what} {p} is out of range 1..=65535")
                }),
            }
        };
        let poll = |v: Option<i64>, default: i8, what: &str| -> Result<i8, String> {
            match v {
                None => Ok(default),
                Some(p) if (i64::from(MIN_POLL)..=i64::from(MAX_POLL)).contains(&p) => Ok(p as i8),
                Some(p) => Err(format!(
                    "upstream {address}: {what} {p} is out of range {MIN_POLL}..={MAX_POLL} (log2 seconds)"
                )),
            }
        };
        let minpoll = poll(t.minpoll, 6, "minpoll")?;
        let maxpoll = poll(t.maxpoll, 10.max(minpoll), "maxpoll")?;
        if maxpoll < minpoll {
            return Err(format!(
                "upstream {address}: maxpoll {maxpoll} is below minpoll {minpoll}"
            ));
        }
        let max_sources = match (kind, t.max_sources) {
            (UpstreamKind::Server, None) => 1,
            (UpstreamKind::Server, Some(_)) => {
                return Err(format!(
                    "upstream {address}: max_sources is for pool entries"
                ))
            }
            (UpstreamKind::Pool, None) => 4,
            (UpstreamKind::Pool, Some(n)) => u8::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_POOL_SOURCES).contains(n))
                .ok_or_else(|| {
                    format!("upstream {address}: max_sources {n} is out of range 1..={MAX_POOL_SOURCES}")
                })?,
        };
        Ok(Self {
            kind,
            authentication,
            port: port(t.port, 123, "port")?,
            nts_port: port(t.nts_port, 4460, "nts_port")?,
            minpoll,
            maxpoll,
            iburst: t.iburst,
            role: t.role,
            max_sources,
            address,
        })
    }
}

impl UpstreamConfig {
    /// The name reports use: the address, and the NTS-KE port when it is
    /// not the default.
    pub fn label(&self) -> String {
        self.address.clone()
    }

    /// The host part of `address` (brackets of an IPv6 literal removed).
    pub fn host(&self) -> &str {
        self.address.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Checks a whole list: the sources fit in the discipline.
pub fn check_list(list: &[UpstreamConfig]) -> Result<(), String> {
    let total: usize = list.iter().map(|u| usize::from(u.max_sources)).sum();
    if total > MAX_UPSTREAM_SOURCES {
        return Err(format!(
            "the [[upstream]] entries use {total} sources (a server counts 1, a pool its \
             max_sources); at most {MAX_UPSTREAM_SOURCES} are possible"
        ));
    }
    Ok(())
}

/// The `[nts_client]` section: how upstream NTS servers are trusted and
/// where their cookies are kept.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NtsClientConfig {
    /// PEM files of certificates to trust for NTS-KE (a CA, or a server's
    /// own self-signed certificate), as chrony's `ntstrustedcerts`.
    pub trusted_certificates: Vec<PathBuf>,
    /// Also trust the system's CAs (/etc/ssl/certs).
    pub system_certificates: bool,
    /// Where keys and cookies are kept across restarts (chrony's
    /// `ntsdumpdir`); relative paths are under the data directory.
    pub state_dir: PathBuf,
    /// Seconds a key exchange may take (connect, TLS, request, response).
    pub ke_timeout: u64,
}

impl Default for NtsClientConfig {
    fn default() -> Self {
        Self {
            trusted_certificates: Vec::new(),
            system_certificates: true,
            state_dir: PathBuf::from("nts-client"),
            ke_timeout: 10,
        }
    }
}

impl NtsClientConfig {
    pub fn state_dir(&self, data_dir: &Path) -> PathBuf {
        if self.state_dir.is_absolute() {
            self.state_dir.clone()
        } else {
            data_dir.join(&self.state_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        upstream: Vec<UpstreamConfig>,
        #[serde(default)]
        nts_client: NtsClientConfig,
    }

    fn parse(text: &str) -> Result<Doc, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn servers_and_pools_with_their_defaults() {
        let d = parse(
            "[[upstream]]\nserver = \"ntp1.example.net\"\nnts = true\n\n\
             [[upstream]]\npool = \"pool.example.net\"\nminpoll = 4\nrole = \"noselect\"\n\n\
             [[upstream]]\nserver = \"[2001:db8::1]\"\nkey = 7\nport = 11123\niburst = false\n",
        )
        .unwrap();
        let [a, b, c] = &d.upstream[..] else { panic!() };
        assert_eq!(
            (a.kind, a.authentication),
            (UpstreamKind::Server, Authentication::Nts)
        );
        assert_eq!(
            (a.port, a.nts_port, a.minpoll, a.maxpoll),
            (123, 4460, 6, 10)
        );
        assert!(a.iburst);
        assert_eq!(
            (b.kind, b.max_sources, b.minpoll),
            (UpstreamKind::Pool, 4, 4)
        );
        assert_eq!(b.role.role(), NetRole::NoSelect);
        assert_eq!(c.authentication, Authentication::Key(7));
        assert_eq!((c.port, c.host(), c.iburst), (11123, "2001:db8::1", false));
        assert_eq!(d.nts_client, NtsClientConfig::default());
        check_list(&d.upstream).unwrap();
    }

    #[test]
    fn bad_entries_are_refused_with_their_line() {
        for (text, want) in [
            ("[[upstream]]\nnts = true\n", "exactly one of server"),
            (
                "[[upstream]]\nserver = \"a\"\npool = \"b\"\n",
                "exactly one of server",
            ),
            ("[[upstream]]\nserver = \"a b\"\n", "not a host name"),
            (
                "[[upstream]]\nserver = \"a\"\nnts = true\nkey = 1\n",
                "not both",
            ),
            ("[[upstream]]\nserver = \"a\"\nkey = 0\n", "not a key ID"),
            (
                "[[upstream]]\nserver = \"a\"\nport = 70000\n",
                "port 70000 is out of range",
            ),
            (
                "[[upstream]]\nserver = \"a\"\nminpoll = 30\n",
                "minpoll 30 is out of range",
            ),
            (
                "[[upstream]]\nserver = \"a\"\nminpoll = 8\nmaxpoll = 6\n",
                "below minpoll",
            ),
            (
                "[[upstream]]\nserver = \"a\"\nmax_sources = 2\n",
                "for pool entries",
            ),
            (
                "[[upstream]]\npool = \"a\"\nmax_sources = 40\n",
                "out of range 1..=16",
            ),
            ("[[upstream]]\nserver = \"a\"\ncolour = 1\n", "colour"),
            ("[[upstream]]\nserver = \"a\"\nrole = \"boss\"\n", "boss"),
            ("[nts_client]\nsystem_certs = true\n", "system_certs"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(
                e.contains("line 1") || e.contains("line 2") || e.contains("line 3"),
                "{e}"
            );
        }
        let many: Vec<UpstreamConfig> = (0..2)
            .map(|i| {
                parse(&format!(
                    "[[upstream]]\npool = \"p{i}\"\nmax_sources = 16\n"
                ))
                .unwrap()
                .upstream
                .remove(0)
            })
            .collect();
        assert!(check_list(&many).unwrap_err().contains("at most 29"));
    }
}
