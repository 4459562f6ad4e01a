//! The honest clients of the attack section: what a legitimate client
//! gets from a server while it is attacked.
//!
//! - NTS-KE: a few clients, each starting a full key exchange every
//!   [`KE_EVERY`] from 127.0.0.1, giving up after a timeout; how many
//!   complete and how long they take.
//! - NTP: one client from its own address (127.0.0.2) sending a plain
//!   request every [`NTP_EVERY`] without waiting, matching replies by
//!   their origin timestamp; the share answered within the timeout and
//!   the round-trip times.
//!
//! They run at normal priority while the attackers run at the lowest
//! (see `attackers`), so on a shared core what they measure is the
//! server, not the scheduler.

use crate::load::pin_current_thread;
use skytime_tests::nts_client::{self, Offer};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Concurrent honest NTS-KE clients.
const KE_CLIENTS: usize = 2;
/// How often each honest NTS-KE client starts an exchange.
const KE_EVERY: Duration = Duration::from_millis(100);
/// How often the honest NTP client sends a request.
const NTP_EVERY: Duration = Duration::from_millis(10);
/// The honest NTP client's source address (the attackers use others).
const NTP_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// What the honest clients got over one run.
#[derive(Clone, Debug, Default)]
pub struct Honest {
    /// Key exchanges started and completed with cookies.
    pub ke_tried: usize,
    pub ke_ok: usize,
    /// Latency of the completed exchanges, ms.
    pub ke_ms: Vec<f64>,
    /// NTP requests sent, and round-trip times of those answered in time, us.
    pub ntp_sent: usize,
    pub ntp_rtt_us: Vec<f64>,
}

/// Runs the honest clients against `ntp` and `ke` for `seconds`, each
/// exchange or request given up after `timeout`.
pub fn run(
    ntp: SocketAddr,
    ke: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    seconds: f64,
    timeout: Duration,
    cpu: Option<usize>,
) -> Honest {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let ke_threads: Vec<_> = (0..KE_CLIENTS)
        .map(|i| {
            let tls = tls.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                // Spread the clients' starts over the period.
                std::thread::sleep(KE_EVERY * i as u32 / KE_CLIENTS as u32);
                ke_client(ke, &tls, end, timeout)
            })
        })
        .collect();
    if let Some(cpu) = cpu {
        pin_current_thread(cpu);
    }
    let (ntp_sent, ntp_rtt_us) = ntp_client(ntp, end, timeout);
    let mut h = Honest {
        ntp_sent,
        ntp_rtt_us,
        ..Honest::default()
    };
    for t in ke_threads {
        let (tried, ms) = t.join().expect("honest NTS-KE client");
        h.ke_tried += tried;
        h.ke_ok += ms.len();
        h.ke_ms.extend(ms);
    }
    h
}

/// Key exchanges until `end`; how many were tried and the latencies of
/// those that completed.
fn ke_client(
    ke: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    end: Instant,
    timeout: Duration,
) -> (usize, Vec<f64>) {
    let (mut tried, mut ms) = (0, Vec::new());
    let mut next = Instant::now();
    while next < end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let start = Instant::now();
        tried += 1;
        let ok = TcpStream::connect_timeout(&ke, timeout)
            .and_then(|tcp| {
                nts_client::key_exchange_on(tcp, "localhost", tls, Offer::AES_SIV, timeout)
            })
            .is_ok_and(|k| !k.cookies.is_empty());
        let took = start.elapsed();
        if ok && took <= timeout {
            ms.push(took.as_secs_f64() * 1e3);
        }
        next += KE_EVERY;
        // After a slow exchange, start again now rather than in a burst.
        next = next.max(Instant::now());
    }
    (tried, ms)
}

/// Plain requests every [`NTP_EVERY`] until `end`; how many were sent and
/// the round-trip times of the replies that came within `timeout`.
fn ntp_client(server: SocketAddr, end: Instant, timeout: Duration) -> (usize, Vec<f64>) {
    let sock = UdpSocket::bind((NTP_SOURCE, 0)).expect("bind honest NTP socket");
    sock.connect(server).expect("connect honest NTP socket");
    let mut waiting: HashMap<[u8; 8], Instant> = HashMap::new();
    let (mut sent, mut rtt) = (0, Vec::new());
    let mut buf = [0u8; 1024];
    let mut next = Instant::now();
    // Requests stop at `end`; replies are awaited one timeout longer.
    let last_reply = end + timeout;
    loop {
        let now = Instant::now();
        if now >= last_reply {
            break;
        }
        if now >= next && now < end {
            let request = skytime_tests::ntp::request(4, skytime_tests::ntp::now());
            let mut key = [0u8; 8];
            key.copy_from_slice(&request[40..48]);
            if sock.send(&request).is_ok() {
                waiting.insert(key, now);
            }
            sent += 1;
            // Behind (the client was not scheduled): go on from now.
            next = (next + NTP_EVERY).max(now);
            continue;
        }
        let wake = if now < end { next } else { last_reply };
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_micros(100));
        let _ = sock.set_read_timeout(Some(wait));
        if let Ok(n) = sock.recv(&mut buf) {
            let arrived = Instant::now();
            // A reply carries the request's transmit time as its origin.
            if n >= 48 && buf[0] & 7 == 4 {
                let mut key = [0u8; 8];
                key.copy_from_slice(&buf[24..32]);
                if let Some(t) = waiting.remove(&key) {
                    let took = arrived - t;
                    if took <= timeout {
                        rtt.push(took.as_secs_f64() * 1e6);
                    }
                }
            }
        }
    }
    (sent, rtt)
}
