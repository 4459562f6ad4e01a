//! The `[network]` settings: how the appliance's Ethernet port is
//! addressed, its host name and whether it answers mDNS for `NAME.local`.
//! The same table is the `[network]` section of skytime.toml (the first
//! boot's seed) and the document `Network.Apply` takes. Everything is
//! checked while it is parsed, so a bad value is refused with its line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// At most this many DNS servers (networkd takes more; nobody needs them).
pub const MAX_DNS: usize = 8;

/// How the addresses are obtained.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// DHCPv4 and IPv6 router advertisements (the image's default).
    #[default]
    Dhcp,
    /// The addresses, gateways and DNS servers given here.
    Static,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dhcp => "dhcp",
            Self::Static => "static",
        })
    }
}

/// The `[network]` table as written; [`NetworkSettings`] is what it is
/// after the checks that relate fields to each other.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<Hostname>,
    #[serde(default = "yes")]
    mdns: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv4: Option<Ipv4Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv6: Option<Ipv6Settings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dns: Vec<IpAddr>,
}

fn yes() -> bool {
    true
}

/// Validated `[network]` settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "Raw", into = "Raw")]
pub struct NetworkSettings {
    pub mode: Mode,
    /// The appliance's name (`None`: keep the one it has).
    pub hostname: Option<Hostname>,
    /// Answer mDNS for `NAME.local` (systemd-resolved's responder).
    pub mdns: bool,
    pub ipv4: Option<Ipv4Settings>,
    pub ipv6: Option<Ipv6Settings>,
    /// DNS servers (static mode; with DHCP they come from the lease).
    pub dns: Vec<IpAddr>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Dhcp,
            hostname: None,
            mdns: true,
            ipv4: None,
            ipv6: None,
            dns: Vec::new(),
        }
    }
}

impl From<NetworkSettings> for Raw {
    fn from(s: NetworkSettings) -> Self {
        Raw {
            mode: s.mode,
            hostname: s.hostname,
            mdns: s.mdns,
            ipv4: s.ipv4,
            ipv6: s.ipv6,
            dns: s.dns,
        }
    }
}

impl TryFrom<Raw> for NetworkSettings {
    type Error = String;
    fn try_from(r: Raw) -> Result<Self, String> {
        match r.mode {
            Mode::Dhcp => {
                if r.ipv4.is_some() || r.ipv6.is_some() || !r.dns.is_empty() {
                    return Err(
                        "mode = \"dhcp\" takes no [network.ipv4], [network.ipv6] or dns: \
                                set mode = \"static\" to give addresses"
                            .into(),
                    );
                }
            }
            Mode::Static => {
                if r.ipv4.is_none() && r.ipv6.is_none() {
                    return Err("mode = \"static\" needs [network.ipv4] or [network.ipv6] \
                                with an address"
                        .into());
                }
            }
        }
        if r.dns.len() > MAX_DNS {
            return Err(format!(
                "{} DNS servers given; at most {MAX_DNS} are accepted",
                r.dns.len()
            ));
        }
        for (i, d) in r.dns.iter().enumerate() {
            if r.dns[..i].contains(d) {
                return Err(format!("DNS server {d} is listed twice"));
            }
            if d.is_unspecified() || d.is_multicast() {
                return Err(format!("{d} cannot be a DNS server"));
            }
        }
        Ok(Self {
            mode: r.mode,
            hostname: r.hostname,
            mdns: r.mdns,
            ipv4: r.ipv4,
            ipv6: r.ipv6,
            dns: r.dns,
        })
    }
}

/// The settings' own error: the document and what is wrong with it (the
/// TOML error names line and column).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl NetworkSettings {
    /// Parses a `[network]` table's contents (the keys without the
    /// `[network]` header, as `Network.Apply` takes them); `origin` names
    /// the document in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError(format!("{}: {e}", origin.display())))
    }

    /// The settings as the TOML table [`parse`](Self::parse) reads.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The addresses given here (static mode), for the certificate.
    pub fn static_addresses(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        if let Some(a) = &self.ipv4 {
            v.push(IpAddr::V4(a.address.address));
        }
        if let Some(a) = &self.ipv6 {
            v.push(IpAddr::V6(a.address.address));
        }
        v
    }
}

/// A host name: RFC 1123 labels (letters, digits, inner hyphens, 1 to 63
/// characters each), at most 253 characters. A single label is what
/// mDNS announces as `NAME.local`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Hostname> for String {
    fn from(h: Hostname) -> String {
        h.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Hostname {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("host name {s:?} {why}"));
        if s.is_empty() || s.len() > 253 {
            return bad("must be 1 to 253 characters");
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("has a label that is empty or longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return bad("may hold only letters, digits, '-' and '.' (RFC 1123)");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("has a label that starts or ends with '-'");
            }
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return bad("is all digits (it would read as an address)");
        }
        if s.eq_ignore_ascii_case("localhost") || s.to_ascii_lowercase().ends_with(".local") {
            return bad("must not be localhost or end in .local (mDNS adds .local itself)");
        }
        Ok(Self(s))
    }
}

/// An address with its prefix length, written `ADDRESS/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    try_from = "String",
    into = "String",
    bound(
        serialize = "A: Clone + fmt::Display",
        deserialize = "Prefixed<A>: TryFrom<String, Error = String>"
    )
)]
pub struct Prefixed<A> {
    pub address: A,
    pub prefix: u8,
}

impl<A: fmt::Display> From<Prefixed<A>> for String {
    fn from(p: Prefixed<A>) -> String {
        format!("{}/{}", p.address, p.prefix)
    }
}

impl<A: fmt::Display> fmt::Display for Prefixed<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

fn split_prefix(s: &str) -> Result<(&str, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} needs a prefix length (ADDRESS/PREFIX)"))?;
    let p = p
        .parse::<u8>()
        .map_err(|_| format!("{s:?}: the prefix length {p:?} is not a number"))?;
    Ok((a, p))
}

impl TryFrom<String> for Prefixed<Ipv4Addr> {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (a, prefix) = split_prefix(&s)?;
        let address: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        if !(1..=32).contains(&prefix) {
            return Err(format!("{s:?}: an IPv4 prefix is 1 to 32"));
        }
        if address.is_unspecified()
            || address.is_loopback()
            || address.is_multicast()
            || address.is_broadcast()
        {
            return Err(format!("{address} cannot be the appliance's address"));
        }
        if prefix <= 30 {
            let host = u32::from(address) & (u32::MAX >> prefix);
            if host == 0 || host == u32::MAX >> prefix {
                return Err(format!(
                    "{s:?} is the network's own or its broadcast address"
                ));
            }
        }
        Ok(Self { address, prefix })
    }
}

impl TryFrom<String> for Prefixed<Ipv6Addr> {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (a, prefix) = split_prefix(&s)?;
        let address: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv6 address"))?;
        if !(1..=128).contains(&prefix) {
            return Err(format!("{s:?}: an IPv6 prefix is 1 to 128"));
        }
        if address.is_unspecified()
            || address.is_loopback()
            || address.is_multicast()
            || address.is_unicast_link_local()
        {
            return Err(format!(
                "{address} cannot be the appliance's address (link-local ones come by themselves)"
            ));
        }
        Ok(Self { address, prefix })
    }
}

/// `[network.ipv4]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, try_from = "Ipv4Raw", into = "Ipv4Raw")]
pub struct Ipv4Settings {
    pub address: Prefixed<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Ipv4Raw {
    address: Prefixed<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<Ipv4Addr>,
}

impl From<Ipv4Settings> for Ipv4Raw {
    fn from(s: Ipv4Settings) -> Self {
        Self {
            address: s.address,
            gateway: s.gateway,
        }
    }
}

impl TryFrom<Ipv4Raw> for Ipv4Settings {
    type Error = String;
    fn try_from(r: Ipv4Raw) -> Result<Self, String> {
        if let Some(g) = r.gateway {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(r.address.prefix))
                .unwrap_or(0);
            if u32::from(g) & mask != u32::from(r.address.address) & mask {
                return Err(format!(
                    "gateway {g} is outside {} (a gateway must be on the link)",
                    r.address
                ));
            }
            if g == r.address.address {
                return Err(format!("gateway {g} is the appliance's own address"));
            }
        }
        Ok(Self {
            address: r.address,
            gateway: r.gateway,
        })
    }
}

/// `[network.ipv6]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ipv6Settings {
    pub address: Prefixed<Ipv6Addr>,
    /// On the link or link-local (`fe80::1`, as routers advertise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv6Addr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<NetworkSettings, String> {
        NetworkSettings::parse(t, Path::new("net.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_is_dhcp_with_mdns() {
        assert_eq!(parse("").unwrap(), NetworkSettings::default());
    }

    #[test]
    fn static_settings_parse_and_round_trip() {
        let s = parse(
            "mode = \"static\"\nhostname = \"time1\"\n[ipv4]\naddress = \"192.0.2.10/24\"\n\
             gateway = \"192.0.2.1\"\n[ipv6]\naddress = \"2001:db8::10/64\"\ngateway = \"fe80::1\"\n",
        )
        .unwrap();
        assert_eq!(s.hostname.as_ref().unwrap().as_str(), "time1");
        assert_eq!(s.ipv4.as_ref().unwrap().address.prefix, 24);
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        for (text, want) in [
            ("mode = \"static\"\n", "needs [network.ipv4]"),
            ("hostname = \"-bad\"\n", "starts or ends with '-'"),
            ("hostname = \"a_b\"\n", "RFC 1123"),
            ("hostname = \"time.local\"\n", ".local"),
            ("mode = \"static\"\n[ipv4]\naddress = \"192.0.2.10\"\n", "prefix"),
            ("mode = \"static\"\n[ipv4]\naddress = \"192.0.2.10/33\"\n", "1 to 32"),
            ("mode = \"static\"\n[ipv4]\naddress = \"192.0.2.0/24\"\n", "network's own"),
            ("mode = \"static\"\n[ipv4]\naddress = \"127.0.0.2/8\"\n", "cannot be"),
            (
                "mode = \"static\"\n[ipv4]\naddress = \"192.0.2.10/24\"\ngateway = \"198.51.100.1\"\n",
                "outside",
            ),
            ("mode = \"static\"\n[ipv6]\naddress = \"fe80::2/64\"\n", "link-local"),
            ("dns = [\"192.0.2.53\"]\n", "takes no"),
            ("mdns = true\nspeed = 1\n", "speed"),
            ("mode = \"bridge\"\n", "bridge"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want) && e.contains("net.toml"), "{text:?}: {e}");
            // Checks across the whole table have no single line in a
            // document that is only the table (Network.Apply's); within
            // skytime.toml the [network] header's line is named.
            let whole_table = want.contains("needs") || want.contains("takes no");
            assert!(whole_table || e.contains("line"), "{text:?}: {e}");
        }
    }

    #[test]
    fn within_skytime_toml_the_section_line_is_named() {
        let e = crate::config::Config::parse(
            "[log]\nlevel = \"info\"\n[network]\nmode = \"static\"\n",
            Path::new("skytime.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 3") && e.contains("needs [network.ipv4]"),
            "{e}"
        );
    }

    #[test]
    fn dns_list_is_bounded_and_without_repeats() {
        let head = "mode = \"static\"\n[ipv4]\naddress = \"192.0.2.10/24\"\n";
        let s = |dns: &str| format!("dns = {dns}\n{head}");
        assert_eq!(
            parse(&s("[\"192.0.2.53\", \"2001:db8::53\"]"))
                .unwrap()
                .dns
                .len(),
            2
        );
        assert!(parse(&s("[\"192.0.2.53\", \"192.0.2.53\"]"))
            .unwrap_err()
            .contains("twice"));
        let many: Vec<String> = (1..=9).map(|i| format!("\"192.0.2.{i}\"")).collect();
        assert!(parse(&s(&format!("[{}]", many.join(","))))
            .unwrap_err()
            .contains("at most"));
    }
}
