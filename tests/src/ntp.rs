//! A minimal NTP client for tests: send one request, get the reply and the
//! local send/receive times around it.

use skytime_proto::{NtpHeader, NtpTimestamp};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Local CLOCK_REALTIME as an NTP timestamp.
pub fn now() -> NtpTimestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    NtpTimestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// A client request header: LI 0, the given version, mode 3, poll 6.
pub fn request(version: u8, transmit: NtpTimestamp) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = (version << 3) | 3;
    b[2] = 6;
    b[40..48].copy_from_slice(&transmit.to_bits().to_be_bytes());
    b
}

/// The outcome of one exchange.
#[derive(Debug)]
pub struct Exchange {
    pub sent: NtpTimestamp,
    pub received: NtpTimestamp,
    pub reply: NtpHeader,
    pub raw: Vec<u8>,
}

/// Sends `packet` to `server` from a fresh socket and waits up to
/// `timeout` for a reply.
pub fn exchange(server: SocketAddr, packet: &[u8], timeout: Duration) -> Option<Exchange> {
    // Loopback for the servers on this host; any address for one across a
    // link (a guest in a network namespace).
    let bind = match (server.is_ipv4(), server.ip().is_loopback()) {
        (true, true) => "127.0.0.1:0",
        (true, false) => "0.0.0.0:0",
        (false, true) => "[::1]:0",
        (false, false) => "[::]:0",
    };
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(timeout)).unwrap();
    let sent = now();
    sock.send_to(packet, server).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let received = now();
    let (reply, _) = NtpHeader::parse(&buf[..n]).ok()?;
    Some(Exchange {
        sent,
        received,
        reply,
        raw: buf[..n].to_vec(),
    })
}

/// Sends a plain v4 request and returns the exchange.
pub fn query(server: SocketAddr) -> Option<Exchange> {
    let t = now();
    exchange(server, &request(4, t), Duration::from_secs(2))
}
