//! The steady clients: plain NTP and NTS-authenticated NTP at fixed
//! rates, each reply's synchronization claim handed to the check with the
//! moments its request left and it came back.

use crate::checks::{claims_sync, Reply, SyncClaims};
use skytime_tests::ntp::{exchange, request};
use skytime_tests::nts_client::{is_authentic, key_exchange, ntp_request, tls_config, KeOutcome};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a request waits for its reply.
const TIMEOUT: Duration = Duration::from_secs(2);
/// An NTS client makes a new key exchange this often (and after a NAK).
const KE_EVERY: Duration = Duration::from_secs(30);

/// What one client thread counted.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: u64,
    pub replies: u64,
    pub claims: u64,
    pub unanswered: u64,
    /// Replies larger than their request (never allowed).
    pub oversized: u64,
    /// NTS only: key exchanges made and failed, authentic replies, NAKs,
    /// and replies that were neither (never allowed).
    pub key_exchanges: u64,
    pub ke_failures: Vec<String>,
    pub authentic: u64,
    pub naks: u64,
    pub bad: u64,
}

/// The shared state of the client threads.
#[derive(Debug)]
pub struct Shared<'a> {
    pub start: Instant,
    pub stop: &'a AtomicBool,
    pub claims: &'a Mutex<SyncClaims>,
}

impl Shared<'_> {
    fn secs(&self, t: Instant) -> f64 {
        (t - self.start).as_secs_f64()
    }

    /// Sleeps until `next`, in steps that notice a stop; false on stop.
    fn pace(&self, next: Instant) -> bool {
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next {
                return true;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
        }
        false
    }

    /// One exchange, its reply (if any) given to the check.
    fn exchange(&self, server: SocketAddr, packet: &[u8], c: &mut Counts) -> Option<Vec<u8>> {
        c.requests += 1;
        let sent = Instant::now();
        let Some(x) = exchange(server, packet, TIMEOUT) else {
            c.unanswered += 1;
            return None;
        };
        let received = Instant::now();
        c.replies += 1;
        if x.raw.len() > packet.len() {
            c.oversized += 1;
        }
        let claims = claims_sync(x.raw[0] >> 6, x.raw[1]);
        c.claims += u64::from(claims);
        self.claims.lock().unwrap().reply(Reply {
            sent: self.secs(sent),
            received: self.secs(received),
            claims_sync: claims,
        });
        Some(x.raw)
    }
}

/// Plain NTPv4 requests at `rate` per second until stopped.
pub fn plain(shared: &Shared<'_>, server: SocketAddr, rate: f64) -> Counts {
    let mut c = Counts::default();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    while shared.pace(next) {
        shared.exchange(server, &request(4, skytime_tests::ntp::now()), &mut c);
        next = (next + period).max(Instant::now());
    }
    c
}

/// NTS requests at `rate` per second until stopped, with a key exchange
/// (trusting the certificates in `trust`) every [`KE_EVERY`] and after a
/// NAK.
pub fn nts(
    shared: &Shared<'_>,
    ke_addr: SocketAddr,
    server: SocketAddr,
    trust: &Path,
    rate: f64,
) -> Counts {
    let mut c = Counts::default();
    let tls = tls_config(trust);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut session: Option<(KeOutcome, Instant)> = None;
    let mut next = Instant::now();
    while shared.pace(next) {
        // After a slow exchange, go on at the rate rather than catch up.
        next = (next + period).max(Instant::now());
        if session
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= KE_EVERY)
        {
            c.key_exchanges += 1;
            match key_exchange(ke_addr, "localhost", &tls) {
                Ok(ke) => session = Some((ke, Instant::now())),
                Err(e) => {
                    c.ke_failures
                        .push(format!("{:.1} s: {e}", shared.secs(Instant::now())));
                    session = None;
                    continue;
                }
            }
        }
        let Some((ke, _)) = &session else { continue };
        let uid: [u8; 32] = rand::random();
        let Some(raw) = shared.exchange(server, &ntp_request(ke, &uid), &mut c) else {
            continue;
        };
        if is_authentic(&raw, &uid, ke) {
            c.authentic += 1;
        } else if raw.len() >= 16 && raw[1] == 0 && &raw[12..16] == b"NTSN" {
            // The cookie's master key is gone (rotations): key exchange
            // again, as a client must.
            c.naks += 1;
            session = None;
        } else {
            c.bad += 1;
        }
    }
    c
}
