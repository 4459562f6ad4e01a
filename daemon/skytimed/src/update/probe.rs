//! The health check's I/O: skytimed asks itself, the way a client would,
//! whether it serves. An NTP client request to its own socket, a TCP
//! connection to its NTS-KE port, and the bus's answer to who owns
//! `org.skytime.Appliance1`. The decision is [`super::health`]'s.

use super::health::Facts;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};

/// How long one probe waits for an answer.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Where skytimed serves, as bound.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// The NTP sockets' addresses.
    pub ntp: Vec<SocketAddr>,
    /// The NTS-KE listeners' addresses (empty: NTS-KE is not served).
    pub nts_ke: Vec<SocketAddr>,
}

/// An unspecified address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        _ => a,
    }
}

/// Sends a client-mode NTPv4 request and waits for a server-mode reply
/// carrying the request's transmit timestamp as its origin; a kiss-o'-death
/// (stratum 0) is not serving time.
async fn ntp_answers(addr: SocketAddr) -> bool {
    let addr = reachable(addr);
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(bind).await else {
        return false;
    };
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let cookie: [u8; 8] = rand::random();
    req[40..48].copy_from_slice(&cookie);
    if sock.send_to(&req, addr).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    let reply = tokio::time::timeout(PROBE_WAIT, async {
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) if from == addr && n >= 48 => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    reply.unwrap_or(false) && buf[0] & 0x07 == 4 && buf[1] != 0 && buf[24..32] == cookie
}

async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_WAIT, TcpStream::connect(reachable(addr))).await,
        Ok(Ok(_))
    )
}

/// Whether the connection `conn` owns `name`.
async fn owns(conn: &zbus::Connection, name: &str) -> bool {
    let Some(me) = conn.unique_name() else {
        return false;
    };
    let Ok(proxy) = zbus::fdo::DBusProxy::new(conn).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return false;
    };
    matches!(proxy.get_name_owner(name).await, Ok(owner) if owner.as_str() == me.as_str())
}

/// The facts now.
pub async fn observe(targets: &Targets, conn: &zbus::Connection) -> Facts {
    let mut ntp = false;
    for a in &targets.ntp {
        if ntp_answers(*a).await {
            ntp = true;
            break;
        }
    }
    let nts_ke = if targets.nts_ke.is_empty() {
        None
    } else {
        let mut any = false;
        for a in &targets.nts_ke {
            if accepts(*a).await {
                any = true;
                break;
            }
        }
        Some(any)
    };
    Facts {
        ntp_answers: ntp,
        nts_ke_accepts: nts_ke,
        bus_name_owned: owns(conn, skytime_api::BUS_NAME).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:123".parse().unwrap()),
            "127.0.0.1:123".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("[::]:4460".parse().unwrap()),
            "[::1]:4460".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("127.0.0.2:9".parse().unwrap()),
            "127.0.0.2:9".parse::<SocketAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_silent_port_does_not_answer_and_a_listener_accepts() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!ntp_answers(silent.local_addr().unwrap()).await);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(accepts(l.local_addr().unwrap()).await);
        let port = l.local_addr().unwrap();
        drop(l);
        assert!(!accepts(port).await);
    }
}
