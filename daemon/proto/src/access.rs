//! Client access control: allow and deny rules on addresses and networks.
//!
//! The model is chrony's `allow`/`deny`: the most specific rule that
//! matches an address decides (a `deny 10.1.0.0/16` inside an
//! `allow 10.0.0.0/8` wins for that /16), rules of equal prefix length are
//! resolved in favour of deny, and an address no rule matches is refused.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address or a CIDR network such as `192.0.2.0/24` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A network that could not be parsed, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    #[error("'{0}' is not an IP address")]
    BadAddress(String),
    #[error("'{0}' has a bad prefix length (IPv4 takes 0-32, IPv6 0-128)")]
    BadPrefix(String),
    #[error("'{0}' has bits set after its prefix; did you mean {1}?")]
    HostBits(String, IpNet),
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            (u128::MAX << (width - prefix)) & (u128::MAX >> (128 - width))
        }
    }

    /// Whether `addr` lies in this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 clients) are
    /// matched as the IPv4 address they carry.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (net, width) = Self::bits(self.addr);
        let (a, _) = Self::bits(addr);
        let m = Self::mask(self.prefix, width);
        net & m == a & m
    }
}

/// Unwraps IPv4-mapped IPv6 addresses.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_s, prefix_s) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_s
            .trim()
            .parse()
            .map_err(|_| IpNetError::BadAddress(s.into()))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_s {
            None => width,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| IpNetError::BadPrefix(s.into()))?,
        };
        let net = Self { addr, prefix };
        let (bits, _) = Self::bits(addr);
        if bits & !Self::mask(prefix, width) & (u128::MAX >> (128 - width)) != 0 {
            let masked = bits & Self::mask(prefix, width);
            let fixed = match addr {
                IpAddr::V4(_) => IpAddr::V4((masked as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(masked.into()),
            };
            return Err(IpNetError::HostBits(
                s.into(),
                Self {
                    addr: fixed,
                    prefix,
                },
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether a rule lets a client in or keeps it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// An ordered set of allow/deny rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessList {
    rules: Vec<(IpNet, Verdict)>,
}

impl AccessList {
    /// Builds the list from the configured allow and deny networks.
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> Self {
        let mut rules: Vec<(IpNet, Verdict)> = allow
            .iter()
            .map(|n| (*n, Verdict::Allow))
            .chain(deny.iter().map(|n| (*n, Verdict::Deny)))
            .collect();
        // Most specific first; deny before allow at equal specificity.
        rules.sort_by_key(|(n, v)| (std::cmp::Reverse(n.prefix), *v == Verdict::Allow));
        Self { rules }
    }

    /// Everyone is allowed (the appliance default).
    pub fn allow_all() -> Self {
        Self::new(
            &["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            &[],
        )
    }

    pub fn check(&self, addr: IpAddr) -> Verdict {
        self.rules
            .iter()
            .find(|(n, _)| n.contains(addr))
            .map_or(Verdict::Deny, |(_, v)| *v)
    }

    pub fn is_allowed(&self, addr: IpAddr) -> bool {
        self.check(addr) == Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        assert_eq!(net("192.0.2.1").prefix(), 32);
        assert_eq!(net("2001:db8::/32").prefix(), 32);
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn rejects_bad_networks_with_reasons() {
        assert!(matches!(
            "banana".parse::<IpNet>(),
            Err(IpNetError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(IpNetError::BadPrefix(_))
        ));
        assert!(matches!(
            "::/129".parse::<IpNet>(),
            Err(IpNetError::BadPrefix(_))
        ));
        let e = "10.1.2.3/8".parse::<IpNet>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'10.1.2.3/8' has bits set after its prefix; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn most_specific_rule_wins() {
        let acl = AccessList::new(
            &[net("10.0.0.0/8"), net("10.1.2.0/24")],
            &[net("10.1.0.0/16")],
        );
        assert!(acl.is_allowed(ip("10.9.9.9")));
        assert!(!acl.is_allowed(ip("10.1.9.9")));
        assert!(acl.is_allowed(ip("10.1.2.3")));
        assert!(!acl.is_allowed(ip("192.0.2.1")), "no rule matches: denied");
    }

    #[test]
    fn deny_wins_at_equal_prefix() {
        let acl = AccessList::new(&[net("192.0.2.0/24")], &[net("192.0.2.0/24")]);
        assert!(!acl.is_allowed(ip("192.0.2.7")));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_rules() {
        let acl = AccessList::new(&[net("127.0.0.0/8")], &[]);
        assert!(acl.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(!acl.is_allowed(ip("::1")));
    }

    #[test]
    fn allow_all_covers_both_families_and_empty_list_denies() {
        assert!(AccessList::allow_all().is_allowed(ip("203.0.113.5")));
        assert!(AccessList::allow_all().is_allowed(ip("2001:db8::5")));
        assert!(!AccessList::default().is_allowed(ip("127.0.0.1")));
    }
}
