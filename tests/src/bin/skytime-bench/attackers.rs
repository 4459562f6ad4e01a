//! The attacks of the attack section, each from its own block of
//! loopback source addresses (never the honest clients' 127.0.0.1 and
//! 127.0.0.2), at the lowest CPU priority so that the honest clients
//! sharing their core are scheduled first:
//!
//! - `ke-flood`: clients doing full NTS-KE exchanges back to back
//!   (127.3.x.y);
//! - `hello-flood`: clients sending a TLS 1.3 ClientHello, waiting for
//!   the server's first flight (the server has then paid for its key
//!   share and signature) and resetting the connection (127.4.x.y);
//! - `slowloris`: connections that send one byte of a ClientHello now
//!   and then and never finish it; one closed by the server is opened
//!   again, as a real attacker keeps its pool full (127.5.x.y);
//! - `ntp-flood`: plain requests at full pace, open loop, from many
//!   addresses (127.2.x.y);
//! - `ke-garbage`: clients that complete the TLS handshake and then send
//!   a request no server should keep reading: every other connection an
//!   endless run of unknown non-critical records that never reaches End
//!   of Message, the others a critical record of an unassigned type with
//!   a random body (RFC 8915 section 4.1.3: answered with error 0 and
//!   closed); connecting again at once (127.6.x.y).
//!
//! Connections are reset (SO_LINGER 0) when the attacker drops them, so
//! no TIME_WAIT piles up on either side between rounds.

use crate::load::{pin_current_thread, recv_batch, send_copies};
use skytime_tests::nts_client::{self, Offer};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    KeFlood,
    HelloFlood,
    Slowloris,
    NtpFlood,
    KeGarbage,
}

/// How big each attack is.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Concurrent clients of the two handshake floods.
    pub flood_clients: usize,
    /// Slowloris connections.
    pub slow_clients: usize,
    /// How often each slowloris connection sends a byte.
    pub trickle: Duration,
    /// NTP flood threads and the source addresses they share.
    pub flood_threads: usize,
    pub flood_addresses: usize,
    /// The CPU the attackers are pinned to, if any.
    pub cpu: Option<usize>,
}

/// What an attack did, read while it runs.
#[derive(Default)]
pub struct Stats {
    /// Attacks that got what they came for: exchanges completed, server
    /// flights received, flood replies.
    pub done: AtomicU64,
    /// Slowloris: connections open now, and closed by the server so far.
    pub open: AtomicU64,
    pub closed: AtomicU64,
    /// Slowloris: how long each client's first connection lived, for
    /// those the server closed (seconds).
    pub first_lifetimes: Mutex<Vec<f64>>,
    /// Slowloris: when each client's current connection opened (None
    /// while it has none).
    pub open_since: Mutex<Vec<Option<Instant>>>,
    /// ke-garbage: seconds from a connection's first garbage byte to the
    /// server ending it.
    pub ended_after: Mutex<Vec<f64>>,
    /// ke-garbage: connections the server still held after the wait.
    pub outlasted: AtomicU64,
}

impl Stats {
    /// Slowloris: how long the oldest connection open now has been open
    /// (zero with none open).
    pub fn oldest_open(&self) -> Duration {
        let since = self.open_since.lock().unwrap_or_else(|e| e.into_inner());
        since
            .iter()
            .flatten()
            .map(Instant::elapsed)
            .max()
            .unwrap_or_default()
    }
}

/// A running attack; [`Running::stop`] ends it.
pub struct Running {
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    slow_stop: Option<tokio::sync::watch::Sender<bool>>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(tx) = &self.slow_stop {
            let _ = tx.send(true);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts `attack` against `ntp` or `ke`.
pub fn start(
    attack: Attack,
    plan: Plan,
    ntp: SocketAddr,
    ke: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Running {
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow_stop = None;
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        std::thread::spawn(move || {
            lowest_priority(plan.cpu);
            f()
        })
    };
    let threads = match attack {
        Attack::KeGarbage => (0..plan.flood_clients)
            .map(|i| {
                let (stats, stop, tls) = (stats.clone(), stop.clone(), tls.clone());
                spawn(Box::new(move || {
                    ke_garbage(source(6, i), ke, &tls, &stats, &stop, i % 2 == 0)
                }))
            })
            .collect(),
        Attack::KeFlood | Attack::HelloFlood => {
            let hello = Arc::new(client_hello(tls));
            (0..plan.flood_clients)
                .map(|i| {
                    let (stats, stop, tls, hello) =
                        (stats.clone(), stop.clone(), tls.clone(), hello.clone());
                    spawn(Box::new(move || {
                        if attack == Attack::KeFlood {
                            ke_flood(source(3, i), ke, &tls, &stats, &stop)
                        } else {
                            hello_flood(source(4, i), ke, &hello, &stats, &stop)
                        }
                    }))
                })
                .collect()
        }
        Attack::Slowloris => {
            let (tx, rx) = tokio::sync::watch::channel(false);
            slow_stop = Some(tx);
            *stats.open_since.lock().unwrap_or_else(|e| e.into_inner()) =
                vec![None; plan.slow_clients];
            let (stats, hello) = (stats.clone(), Arc::new(client_hello(tls)));
            vec![spawn(Box::new(move || {
                slowloris(ke, plan, hello, &stats, rx)
            }))]
        }
        Attack::NtpFlood => {
            let threads = plan.flood_threads.max(1);
            (0..threads)
                .map(|t| {
                    let from: Vec<Ipv4Addr> = (t..plan.flood_addresses)
                        .step_by(threads)
                        .map(|i| source(2, i))
                        .collect();
                    let (stats, stop) = (stats.clone(), stop.clone());
                    spawn(Box::new(move || ntp_flood(ntp, &from, &stats, &stop)))
                })
                .collect()
        }
    };
    Running {
        stats,
        stop,
        slow_stop,
        threads,
    }
}

/// Attacker `i`'s address in block 127.`block`.x.y (250 per x).
fn source(block: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, block, (i / 250) as u8, 1 + (i % 250) as u8)
}

/// Pins the calling thread and gives it the lowest priority (nice 19;
/// on Linux `setpriority` with who = 0 applies to the calling thread).
fn lowest_priority(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        pin_current_thread(cpu);
    }
    // SAFETY: setpriority has no memory preconditions.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// A TLS 1.3 ClientHello offering ALPN ntske/1, as a client's first
/// flight; replaying it costs the attacker nothing.
pub fn client_hello(tls: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).expect("TLS client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("ClientHello");
    }
    out
}

/// A TCP connection from `from` to `to`, reset when dropped.
fn connect_from(from: Ipv4Addr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.set_linger(Some(Duration::ZERO))?;
    s.connect_timeout(&to.into(), timeout)?;
    Ok(s.into())
}

const ATTACK_TIMEOUT: Duration = Duration::from_secs(2);

fn ke_flood(
    from: Ipv4Addr,
    ke: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    stats: &Stats,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let done = connect_from(from, ke, ATTACK_TIMEOUT).and_then(|tcp| {
            nts_client::key_exchange_on(tcp, "localhost", tls, Offer::AES_SIV, ATTACK_TIMEOUT)
        });
        if done.is_ok() {
            stats.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn hello_flood(from: Ipv4Addr, ke: SocketAddr, hello: &[u8], stats: &Stats, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = connect_from(from, ke, ATTACK_TIMEOUT) else {
            continue;
        };
        let _ = tcp.set_read_timeout(Some(ATTACK_TIMEOUT));
        if tcp.write_all(hello).is_ok() && tcp.read(&mut buf).is_ok_and(|n| n > 0) {
            stats.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn ntp_flood(server: SocketAddr, from: &[Ipv4Addr], stats: &Stats, stop: &AtomicBool) {
    let socks: Vec<UdpSocket> = from
        .iter()
        .filter_map(|a| {
            let s = UdpSocket::bind((*a, 0)).ok()?;
            s.connect(server).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    let request = skytime_tests::ntp::request(4, skytime_tests::ntp::now());
    let mut bufs = vec![[0u8; 1024]; 64];
    while !stop.load(Ordering::Relaxed) {
        for s in &socks {
            let fd = s.as_raw_fd();
            send_copies(fd, &request, 8);
            // Drain what came back (non-blocking): a flooder reads its
            // replies too, or its own buffers fill.
            while let Some(lens) = recv_batch(fd, &mut bufs) {
                stats.done.fetch_add(lens.len() as u64, Ordering::Relaxed);
                if lens.len() < bufs.len() {
                    break;
                }
            }
        }
    }
}

/// `plan.slow_clients` slow connections on one thread (tokio, one task
/// each) until `stop` turns true.
fn slowloris(
    ke: SocketAddr,
    plan: Plan,
    hello: Arc<Vec<u8>>,
    stats: &Arc<Stats>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..plan.slow_clients)
            .map(|i| {
                let (stats, hello, stop) = (stats.clone(), hello.clone(), stop.clone());
                // Spread the bytes over the trickle period.
                let offset = plan.trickle.mul_f64((i % 100) as f64 / 100.0);
                tokio::spawn(slow_client(i, ke, hello, plan.trickle, offset, stats, stop))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// Slow client `index`, from 127.5.x.y.
async fn slow_client(
    index: usize,
    ke: SocketAddr,
    hello: Arc<Vec<u8>>,
    every: Duration,
    offset: Duration,
    stats: Arc<Stats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let from = source(5, index);
    let mut first = true;
    while !*stop.borrow() {
        let connect = async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::from((from, 0)))?;
            tokio::time::timeout(ATTACK_TIMEOUT, s.connect(ke))
                .await
                .map_err(std::io::Error::other)?
        };
        let mut stream = tokio::select! {
            _ = stop.changed() => return,
            r = connect => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reset, not closed, when dropped (a zero linger never blocks).
        let _ = stream.set_zero_linger();
        stats.open.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        stats.opened(index, Some(opened));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
        let (mut sent, mut buf) = (0, [0u8; 512]);
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    stats.open.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                r = stream.read(&mut buf) => match r {
                    // An alert or the like: the close follows.
                    Ok(n) if n > 0 => {}
                    _ => break,
                },
                _ = tick.tick() => {
                    // Never the last byte: the ClientHello stays unfinished.
                    if sent + 1 < hello.len() {
                        if stream.write_all(&hello[sent..=sent]).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                }
            }
        }
        // The server closed it.
        stats.open.fetch_sub(1, Ordering::Relaxed);
        stats.opened(index, None);
        stats.closed.fetch_add(1, Ordering::Relaxed);
        if first {
            let life = opened.elapsed().as_secs_f64();
            stats
                .first_lifetimes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(life);
        }
        first = false;
    }
}

impl Stats {
    fn opened(&self, index: usize, at: Option<Instant>) {
        let mut since = self.open_since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = since.get_mut(index) {
            *slot = at;
        }
    }
}

/// How much of an endless request a `ke-garbage` client sends before it
/// only waits: sixteen times chrony's whole-message limit (16 KiB).
const GARBAGE_BYTES: usize = 256 << 10;
/// An unassigned record type (RFC 8915's registry ends at 0x4000 for
/// IETF review; 0x3ffe is unassigned).
const UNASSIGNED: u16 = 0x3ffe;

/// `ke-garbage` from `from`: a full handshake, then an oversized request
/// (`oversized`) or a critical unknown record, alternately; counts the
/// connections the server ended and how long that took.
fn ke_garbage(
    from: Ipv4Addr,
    ke: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    stats: &Stats,
    stop: &AtomicBool,
    mut oversized: bool,
) {
    let mut noise = u64::from(from.to_bits()) | 1;
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = connect_from(from, ke, ATTACK_TIMEOUT) else {
            continue;
        };
        let _ = tcp.set_read_timeout(Some(ATTACK_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(ATTACK_TIMEOUT));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
        let Ok(conn) = rustls::ClientConnection::new(tls.clone(), name) else {
            return;
        };
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut shaken = true;
        while s.conn.is_handshaking() && shaken {
            shaken = s.conn.complete_io(&mut s.sock).is_ok();
        }
        if !shaken {
            continue;
        }
        let started = Instant::now();
        let request = if oversized {
            let mut r = Vec::with_capacity(GARBAGE_BYTES);
            while r.len() < GARBAGE_BYTES {
                skytime_nts::record::write_record(&mut r, false, UNASSIGNED, &[0x55; 1020]);
            }
            r
        } else {
            let body: Vec<u8> = (0..512)
                .map(|_| {
                    // xorshift: cheap, and no two clients alike.
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    noise as u8
                })
                .collect();
            let mut r = Vec::new();
            skytime_nts::record::write_record(&mut r, true, UNASSIGNED, &body);
            skytime_nts::record::write_record(
                &mut r,
                true,
                skytime_nts::record::kind::END_OF_MESSAGE,
                &[],
            );
            r
        };
        oversized = !oversized;
        // A write that fails or stalls means the server stopped reading;
        // either way, what it does next is read below.
        for chunk in request.chunks(16 << 10) {
            if s.write_all(chunk).and_then(|()| s.flush()).is_err() {
                break;
            }
        }
        let mut buf = [0u8; 4096];
        let ended = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                // Its error record; the close follows.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        if ended {
            stats.done.fetch_add(1, Ordering::Relaxed);
            stats
                .ended_after
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(started.elapsed().as_secs_f64());
        } else {
            stats.outlasted.fetch_add(1, Ordering::Relaxed);
        }
    }
}
