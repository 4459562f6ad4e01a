//! The load generators: closed-loop UDP (plain or NTS-authenticated NTP)
//! and back-to-back NTS-KE handshakes, with the server's CPU time read
//! from /proc over the same interval.

use skytime_tests::nts_client::{self, KeOutcome};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to load and with how many clients.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub seconds: f64,
    pub threads: usize,
    pub window: usize,
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// Good replies (or completed exchanges) per second.
    pub rate: f64,
    /// Server CPU (user + system, all its processes) per good reply, us.
    pub cpu_us: f64,
    /// Replies that failed the check (sampled for NTS), and exchanges that
    /// failed, over the run.
    pub failures: u64,
}

/// A full check of one reply.
pub type ReplyCheck = Box<dyn Fn(&[u8]) -> bool + Send>;

/// One UDP client's request and how to recognise a good reply.
pub struct UdpClient {
    pub request: Vec<u8>,
    /// Full check, run on every 64th reply (NTS verification costs the
    /// client as much as the server).
    pub check: ReplyCheck,
}

/// Closed-loop UDP load: each thread keeps `window` requests in flight
/// and sends the next when a reply arrives, or refills the window when
/// one is presumed lost after 50 ms.
pub fn udp(
    server: SocketAddr,
    pid: u32,
    shape: Shape,
    client: impl Fn(usize) -> UdpClient,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let good = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..shape.threads)
        .map(|i| {
            let c = client(i);
            let (stop, good, bad) = (stop.clone(), good.clone(), bad.clone());
            std::thread::spawn(move || udp_loop(server, shape.window, c, &stop, &good, &bad))
        })
        .collect();
    let figures = measure(pid, shape.seconds, &good, &bad);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

fn udp_loop(
    server: SocketAddr,
    window: usize,
    client: UdpClient,
    stop: &AtomicBool,
    good: &AtomicU64,
    bad: &AtomicU64,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
    sock.connect(server).expect("connect client socket");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let refill = || {
        for _ in 0..window {
            let _ = sock.send(&client.request);
        }
    };
    refill();
    let mut buf = [0u8; 2048];
    let mut n_seen = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                n_seen += 1;
                // Every reply must at least be an NTP header; a sample also
                // gets the full check.
                let ok = n >= 48 && (n_seen % 64 != 1 || (client.check)(&buf[..n]));
                if ok {
                    good.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                let _ = sock.send(&client.request);
            }
            Err(_) => refill(),
        }
    }
}

/// Back-to-back NTS-KE exchanges (full TLS 1.3 handshakes) from
/// `shape.threads` threads.
pub fn key_exchanges(
    server: SocketAddr,
    pid: u32,
    shape: Shape,
    cfg: &Arc<rustls::ClientConfig>,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let good = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..shape.threads)
        .map(|_| {
            let (stop, good, bad, cfg) = (stop.clone(), good.clone(), bad.clone(), cfg.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match nts_client::key_exchange(server, "localhost", &cfg) {
                        Ok(ke) if ke.cookies.len() == 8 => good.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let figures = measure(pid, shape.seconds, &good, &bad);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

/// An NTS client for the UDP load: one key exchange, then the same
/// authenticated request again and again.
pub fn nts_client(ke: KeOutcome, thread: usize) -> UdpClient {
    let mut uid = [0u8; 32];
    uid[..8].copy_from_slice(&(thread as u64 + 1).to_be_bytes());
    UdpClient {
        request: nts_client::ntp_request(&ke, &uid),
        check: Box::new(move |reply| nts_client::is_authentic(reply, &uid, &ke)),
    }
}

/// Counts over `seconds` after a 300 ms warm-up.
fn measure(pid: u32, seconds: f64, good: &AtomicU64, bad: &AtomicU64) -> Figures {
    std::thread::sleep(Duration::from_millis(300));
    let (g0, b0) = (good.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    let cpu0 = tree_cpu_seconds(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let count = good.load(Ordering::Relaxed) - g0;
    let failures = bad.load(Ordering::Relaxed) - b0;
    let cpu = tree_cpu_seconds(pid) - cpu0;
    Figures {
        rate: count as f64 / start.elapsed().as_secs_f64(),
        cpu_us: cpu * 1e6 / count.max(1) as f64,
        failures,
    }
}

/// utime + stime of `pid` and its children (chronyd's NTS-KE helpers), in
/// seconds, from /proc.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut total = 0.0;
    for (p, ppid, ticks) in processes() {
        if p == pid || ppid == pid {
            total += ticks;
        }
    }
    // SAFETY: sysconf has no preconditions.
    total / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Resident memory of `pid` and its children, KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    processes()
        .into_iter()
        .filter(|(p, ppid, _)| *p == pid || *ppid == pid)
        .filter_map(|(p, ..)| rss_kib(p))
        .sum()
}

/// (pid, parent pid, utime + stime ticks) of every process.
fn processes() -> Vec<(u32, u32, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command name: state is 0,
            // ppid 1, utime 11, stime 12.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some((pid, num(1)? as u32, num(11)? + num(12)?))
        })
        .collect()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
