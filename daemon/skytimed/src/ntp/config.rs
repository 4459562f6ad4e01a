//! The `[ntp]` section of skytime.toml: where the server listens, who may
//! query it, its local fallback stratum, the client table and the rate
//! limit. Ranges are checked while parsing so errors carry the TOML line.

use serde::{Deserialize, Deserializer};
use skytime_proto::access::{AccessList, IpNet};
use std::net::SocketAddr;

/// `[ntp]`: the NTP server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NtpConfig {
    /// UDP addresses to serve on.
    #[serde(default = "default_listen", deserialize_with = "nonempty_addrs")]
    pub listen: Vec<SocketAddr>,
    /// Networks allowed to query; the most specific allow/deny rule wins.
    #[serde(default = "default_allow", deserialize_with = "networks")]
    pub allow: Vec<IpNet>,
    /// Networks refused even inside an allowed one.
    #[serde(default, deserialize_with = "networks")]
    pub deny: Vec<IpNet>,
    /// Serve this stratum from the local clock when no source is usable
    /// (chrony's `local stratum N`). Unset: reply unsynchronized instead.
    #[serde(default)]
    pub local_stratum: Option<Stratum>,
    /// How many clients to keep statistics for (0: none).
    #[serde(default)]
    pub client_log_size: ClientLogSize,
    /// Per-client response rate limit; absent: none.
    #[serde(default)]
    pub ratelimit: Option<RateLimitConfig>,
}

impl Default for NtpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow: default_allow(),
            deny: Vec::new(),
            local_stratum: None,
            client_log_size: ClientLogSize::default(),
            ratelimit: None,
        }
    }
}

impl NtpConfig {
    pub fn access_list(&self) -> AccessList {
        AccessList::new(&self.allow, &self.deny)
    }
}

fn default_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:123".parse().unwrap(), "[::]:123".parse().unwrap()]
}

fn default_allow() -> Vec<IpNet> {
    vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]
}

fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| s.parse::<IpNet>().map_err(serde::de::Error::custom))
        .collect()
}

fn nonempty_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    if raw.is_empty() {
        return Err(serde::de::Error::custom(
            "listen needs at least one address such as \"0.0.0.0:123\"",
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for s in &raw {
        let addr: SocketAddr = s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "'{s}' is not an address:port (IPv6 goes in brackets: \"[::]:123\")"
            ))
        })?;
        if out.contains(&addr) {
            return Err(serde::de::Error::custom(format!("'{s}' is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A stratum a server may claim for itself: 1 to 15.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "i64")]
pub struct Stratum(u8);

impl Stratum {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Stratum {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (1..=15).contains(&v) {
            Ok(Self(v as u8))
        } else {
            Err(format!("stratum {v} is out of range: use 1 to 15"))
        }
    }
}

/// Size of the per-client statistics table: 0 to 1 000 000 clients.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "i64")]
pub struct ClientLogSize(usize);

impl Default for ClientLogSize {
    fn default() -> Self {
        Self(4096)
    }
}

impl ClientLogSize {
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<i64> for ClientLogSize {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (0..=1_000_000).contains(&v) {
            Ok(Self(v as usize))
        } else {
            Err(format!(
                "client_log_size {v} is out of range: use 0 to 1000000"
            ))
        }
    }
}

/// `[ntp.ratelimit]`, chrony's `ratelimit` with the same defaults.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, try_from = "RawRateLimit")]
pub struct RateLimitConfig {
    pub interval: i8,
    pub burst: u16,
    pub leak: u8,
    /// Of the requests over the limit the leak does not serve, one in
    /// 2^kod gets a RATE kiss-o'-death; 0 (chrony's default) sends none.
    pub kod: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default = "default_rl_interval")]
    interval: i64,
    #[serde(default = "default_rl_burst")]
    burst: i64,
    #[serde(default = "default_rl_leak")]
    leak: i64,
    #[serde(default)]
    kod: i64,
}

fn default_rl_interval() -> i64 {
    3
}
fn default_rl_burst() -> i64 {
    8
}
fn default_rl_leak() -> i64 {
    2
}

impl TryFrom<RawRateLimit> for RateLimitConfig {
    type Error = String;
    fn try_from(r: RawRateLimit) -> Result<Self, String> {
        if !(-4..=12).contains(&r.interval) {
            return Err(format!(
                "ratelimit interval {} is out of range: use -4 to 12 (log2 seconds)",
                r.interval
            ));
        }
        if !(1..=255).contains(&r.burst) {
            return Err(format!(
                "ratelimit burst {} is out of range: use 1 to 255",
                r.burst
            ));
        }
        if !(0..=4).contains(&r.leak) {
            return Err(format!(
                "ratelimit leak {} is out of range: use 0 to 4",
                r.leak
            ));
        }
        if !(0..=4).contains(&r.kod) {
            return Err(format!(
                "ratelimit kod {} is out of range: use 0 (off) to 4",
                r.kod
            ));
        }
        Ok(Self {
            interval: r.interval as i8,
            burst: r.burst as u16,
            leak: r.leak as u8,
            kod: r.kod as u8,
        })
    }
}

impl RateLimitConfig {
    pub fn to_limit(self) -> skytime_proto::client_log::RateLimit {
        skytime_proto::client_log::RateLimit {
            interval_log2: self.interval,
            burst: self.burst,
            leak_log2: self.leak,
            kod_log2: self.kod,
        }
    }
}
