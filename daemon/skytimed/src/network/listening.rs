//! The sockets open to the network on this machine, from the kernel's
//! tables (`/proc/net/{tcp,tcp6,udp,udp6}`): TCP sockets in LISTEN and
//! UDP sockets bound but not connected. `Network.Get` reports them, so an
//! operator (and the image's test) can audit what the appliance exposes
//! without a shell.
//!
//! The tables cover the reader's network namespace, every process in it:
//! skytimed has no private network, so that is the appliance's. Parsing
//! is [`parse`], without I/O; [`read`] reads the four tables.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The kernel's TCP state LISTEN, and UDP's "not connected" (TCP_CLOSE):
/// the two that accept datagrams or connections from anyone.
const TCP_LISTEN: u8 = 0x0A;
const UDP_UNCONNECTED: u8 = 0x07;

/// One open socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    pub protocol: Protocol,
    pub local: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Listener {
    /// "udp 0.0.0.0:123", "tcp [::]:4460".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{p} {}", self.local)
    }
}

/// A table line the parser does not understand (the kernel's format is
/// stable, so this means the wrong file).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{table} line {line}: {what}")]
pub struct ParseError {
    pub table: &'static str,
    pub line: usize,
    pub what: String,
}

/// The four tables, by name and protocol.
pub const TABLES: [(&str, Protocol); 4] = [
    ("tcp", Protocol::Tcp),
    ("tcp6", Protocol::Tcp),
    ("udp", Protocol::Udp),
    ("udp6", Protocol::Udp),
];

/// The open sockets in one table's text (`table` names it in errors:
/// "tcp", "tcp6", "udp" or "udp6").
pub fn parse(table: &'static str, text: &str) -> Result<Vec<Listener>, ParseError> {
    let protocol = match TABLES.iter().find(|(t, _)| *t == table) {
        Some((_, p)) => *p,
        None => {
            return Err(ParseError {
                table,
                line: 0,
                what: "not one of tcp, tcp6, udp, udp6".into(),
            })
        }
    };
    let open = match protocol {
        Protocol::Tcp => TCP_LISTEN,
        Protocol::Udp => UDP_UNCONNECTED,
    };
    let mut out = Vec::new();
    // The first line is the column header.
    for (i, line) in text.lines().enumerate().skip(1) {
        let err = |what: String| ParseError {
            table,
            line: i + 1,
            what,
        };
        let mut cols = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            return Err(err(format!("fewer than 4 columns in {line:?}")));
        };
        let state = u8::from_str_radix(state, 16)
            .map_err(|_| err(format!("state {state:?} is not a hex byte")))?;
        if state == open {
            let local = address(local).ok_or_else(|| err(format!("bad address {local:?}")))?;
            out.push(Listener { protocol, local });
        }
    }
    Ok(out)
}

/// `0100007F:007B` (IPv4) or 32 hex digits and a port (IPv6). The kernel
/// prints the address as 32-bit words in the machine's byte order and the
/// port in hex.
fn address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if ip.len() != 8 && ip.len() != 32 {
        return None;
    }
    for word in 0..ip.len() / 8 {
        let w = u32::from_str_radix(ip.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

/// Every open socket in `dir`'s tables (`/proc/net`), sorted, each once.
/// A missing table (a kernel without IPv6) is skipped.
pub fn read(dir: &Path) -> Result<Vec<Listener>, String> {
    let mut all = Vec::new();
    for (table, _) in TABLES {
        let path = dir.join(table);
        match std::fs::read_to_string(&path) {
            Ok(text) => all.extend(parse(table, &text).map_err(|e| e.to_string())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// The kernel's way of printing an address: words in this machine's
    /// byte order.
    fn hex(ip: IpAddr) -> String {
        let bytes = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        bytes
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes(w.try_into().unwrap())))
            .collect()
    }

    fn line(local: &str, state: &str) -> String {
        format!("   0: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000   100        0 4242 1 0000000000000000 100 0 0 10 0\n")
    }

    #[test]
    fn listening_tcp_and_unconnected_udp_are_kept_the_rest_is_not() {
        let any4 = format!("{}:007B", hex("0.0.0.0".parse().unwrap()));
        let lo = format!("{}:116C", hex("127.0.0.1".parse().unwrap()));
        let tcp = format!("{HEADER}{}{}", line(&lo, "0A"), line(&lo, "01"));
        assert_eq!(
            parse("tcp", &tcp).unwrap(),
            vec![Listener {
                protocol: Protocol::Tcp,
                local: "127.0.0.1:4460".parse().unwrap()
            }]
        );
        let udp = format!("{HEADER}{}{}", line(&any4, "07"), line(&lo, "01"));
        let got = parse("udp", &udp).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to_string(), "udp 0.0.0.0:123");
    }

    #[test]
    fn ipv6_addresses_read_back() {
        for ip in ["::", "::1", "fe80::5054:ff:fe12:3456", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            let text = format!("{HEADER}{}", line(&format!("{}:1F90", hex(ip)), "0A"));
            let got = parse("tcp6", &text).unwrap();
            assert_eq!(got[0].local, SocketAddr::new(ip, 8080), "{text}");
        }
        let text = format!(
            "{HEADER}{}",
            line(&format!("{}:007B", hex("::".parse().unwrap())), "07")
        );
        assert_eq!(parse("udp6", &text).unwrap()[0].to_string(), "udp [::]:123");
    }

    #[test]
    fn a_line_it_cannot_read_is_an_error_naming_table_and_line() {
        let bad = [
            format!("{HEADER}   0: 0100007F\n"),
            format!("{HEADER}{}", line("0100007F:007B", "ZZ")),
            format!("{HEADER}{}", line("0100007:007B", "0A")),
            format!("{HEADER}{}", line("0100007F:7B7B7", "0A")),
        ];
        for text in bad {
            let e = parse("tcp", &text).unwrap_err();
            assert_eq!((e.table, e.line), ("tcp", 2), "{e}");
        }
        assert!(parse("raw", HEADER).is_err());
        // A header alone: nothing open, no error.
        assert_eq!(parse("udp6", HEADER).unwrap(), vec![]);
    }

    /// The real kernel's tables: sockets this test opens are found, a
    /// connected UDP socket is not.
    #[test]
    fn this_machines_tables_show_the_sockets_the_test_opens() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(udp.local_addr().unwrap()).unwrap();
        let all = read(Path::new("/proc/net")).unwrap();
        let want = |protocol, local| Listener { protocol, local };
        assert!(all.contains(&want(Protocol::Tcp, tcp.local_addr().unwrap())));
        assert!(all.contains(&want(Protocol::Udp, udp.local_addr().unwrap())));
        assert!(!all.contains(&want(Protocol::Udp, connected.local_addr().unwrap())));
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
    }
}
