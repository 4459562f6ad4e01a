//! The load generators and what is measured around them: closed-loop UDP
//! (plain or NTS-authenticated NTP) from distinct source addresses,
//! back-to-back NTS-KE handshakes, and the server's CPU time and resident
//! memory from /proc over the same interval.
//!
//! The UDP generators move datagrams in batches (`sendmmsg`/`recvmmsg`),
//! so that one generator core costs about what one server core does per
//! request, and each uses its own source address (127.0.0.x), as distinct
//! clients do.

use skytime_tests::nts_client::{self, KeOutcome};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to load, with how many generators, and where they run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub seconds: f64,
    pub threads: usize,
    /// Requests in flight per UDP generator.
    pub window: usize,
    /// The CPU the generators are pinned to, if any.
    pub cpu: Option<usize>,
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// Good replies (or completed exchanges) per second.
    pub rate: f64,
    /// Server CPU (user + system, all its processes) per good reply, us.
    pub cpu_us: f64,
    /// Server CPU use over the run, in cores (1.0: one core busy).
    pub cores: f64,
    /// The generators' own CPU use over the run, in cores.
    pub gen_cores: f64,
    /// Replies that failed the check (sampled for NTS), and exchanges that
    /// failed, over the run.
    pub failures: u64,
    /// The share of replies in interleaved mode (the xleave workload).
    pub interleaved: f64,
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

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it;
    // sched_setaffinity(0, ...) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The source address of generator `i`: 127.0.0.10 and up, so that each
/// is a client of its own (and a server that steers by address can
/// spread them).
pub fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (i / 200) as u8, 10 + (i % 200) as u8)
}

/// Stop flag and counters shared with generator threads.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) stop: AtomicBool,
    pub(crate) good: AtomicU64,
    pub(crate) bad: AtomicU64,
    /// Good replies in interleaved mode.
    pub(crate) interleaved: AtomicU64,
}

/// Closed-loop UDP load from `shape.threads` generators against `server`
/// (process `pid`), each keeping `shape.window` requests in flight.
pub fn udp(
    server: SocketAddr,
    pid: u32,
    shape: Shape,
    client: impl Fn(usize) -> UdpClient,
) -> Figures {
    let counters = Arc::new(Counters::default());
    let threads: Vec<_> = (0..shape.threads)
        .map(|i| {
            let c = client(i);
            let counters = counters.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = shape.cpu {
                    pin_current_thread(cpu);
                }
                udp_loop(server, source(i), shape.window, c, &counters)
            })
        })
        .collect();
    let figures = measure(pid, shape.seconds, &counters);
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

const GEN_BATCH: usize = 64;

fn udp_loop(server: SocketAddr, from: Ipv4Addr, window: usize, client: UdpClient, c: &Counters) {
    let sock = UdpSocket::bind((from, 0)).expect("bind generator socket");
    sock.connect(server).expect("connect generator socket");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; 1024]; GEN_BATCH];
    let mut n_seen = 0u64;
    let send = |n: usize| send_copies(fd, &client.request, n);
    send(window);
    while !c.stop.load(Ordering::Relaxed) {
        match recv_batch(fd, &mut bufs) {
            Some(lens) if !lens.is_empty() => {
                let (mut good, mut bad) = (0, 0);
                for (i, &len) in lens.iter().enumerate() {
                    n_seen += 1;
                    // Every reply must at least be an NTP server header; a
                    // sample also gets the full check.
                    let r = &bufs[i][..len];
                    let ok = len >= 48 && r[0] & 7 == 4 && (n_seen % 64 != 1 || (client.check)(r));
                    if ok {
                        good += 1;
                    } else {
                        bad += 1;
                    }
                }
                c.good.fetch_add(good, Ordering::Relaxed);
                c.bad.fetch_add(bad, Ordering::Relaxed);
                send(lens.len());
            }
            // Presumed lost: refill the window.
            _ => send(window),
        }
    }
}

/// Sends `n` copies of `request` on the connected socket `fd`.
pub(crate) fn send_copies(fd: i32, request: &[u8], n: usize) {
    let mut iov = libc::iovec {
        iov_base: request.as_ptr() as *mut libc::c_void,
        iov_len: request.len(),
    };
    let mut left = n;
    while left > 0 {
        let k = left.min(GEN_BATCH);
        // SAFETY: all headers share one iovec pointing at `request`, which
        // outlives the call; no address (the socket is connected).
        let mut hdrs: Vec<libc::mmsghdr> = (0..k)
            .map(|_| unsafe {
                let mut h: libc::mmsghdr = std::mem::zeroed();
                h.msg_hdr.msg_iov = &mut iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `hdrs` holds `k` initialised headers.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), k as u32, 0) };
        if r <= 0 {
            return;
        }
        left -= r as usize;
    }
}

/// Waits for replies (at most the socket timeout) and reads what is
/// queued; the lengths, or `None` on timeout.
pub(crate) fn recv_batch(fd: i32, bufs: &mut [[u8; 1024]]) -> Option<Vec<usize>> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid; it points at one iovec.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at a buffer of `bufs`, which outlives the
    // call, with its length.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    (n > 0).then(|| {
        hdrs[..n as usize]
            .iter()
            .map(|h| h.msg_len as usize)
            .collect()
    })
}

/// Back-to-back NTS-KE exchanges (full TLS 1.3 handshakes) from
/// `shape.threads` clients.
pub fn key_exchanges(
    server: SocketAddr,
    pid: u32,
    shape: Shape,
    cfg: &Arc<rustls::ClientConfig>,
) -> Figures {
    let counters = Arc::new(Counters::default());
    let threads: Vec<_> = (0..shape.threads)
        .map(|_| {
            let (counters, cfg) = (counters.clone(), cfg.clone());
            std::thread::spawn(move || {
                if let Some(cpu) = shape.cpu {
                    pin_current_thread(cpu);
                }
                ke_loop(server, &cfg, &counters)
            })
        })
        .collect();
    let figures = measure(pid, shape.seconds, &counters);
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

fn ke_loop(server: SocketAddr, cfg: &Arc<rustls::ClientConfig>, c: &Counters) {
    while !c.stop.load(Ordering::Relaxed) {
        match nts_client::key_exchange(server, "localhost", cfg) {
            Ok(ke) if ke.cookies.len() == 8 => c.good.fetch_add(1, Ordering::Relaxed),
            _ => c.bad.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Key exchanges per second in the mix, from two clients: as many for
/// every server (chronyd 4.3 completes about 350 a second), so that the
/// mix's replies compare.
pub const MIX_KE_RATE: f64 = 100.0;

/// The mix: plain and NTS generators at full pace and NTS-KE clients at
/// [`MIX_KE_RATE`] at once. The figures count NTP and NTS replies; the
/// server's CPU includes its key exchanges.
pub fn mix(
    server: SocketAddr,
    ke: SocketAddr,
    pid: u32,
    shape: Shape,
    nts_keys: &[KeOutcome],
    cfg: &Arc<rustls::ClientConfig>,
) -> Figures {
    let counters = Arc::new(Counters::default());
    let mut threads = Vec::new();
    for i in 0..shape.threads.max(2) {
        let counters = counters.clone();
        let client = if i % 2 == 0 {
            plain_client()
        } else {
            nts_client(nts_keys[i % nts_keys.len()].clone(), i)
        };
        threads.push(std::thread::spawn(move || {
            if let Some(cpu) = shape.cpu {
                pin_current_thread(cpu);
            }
            udp_loop(server, source(i), shape.window, client, &counters)
        }));
    }
    for _ in 0..2 {
        let (counters, cfg) = (counters.clone(), cfg.clone());
        threads.push(std::thread::spawn(move || {
            if let Some(cpu) = shape.cpu {
                pin_current_thread(cpu);
            }
            let every = Duration::from_secs_f64(2.0 / MIX_KE_RATE);
            let mut next = Instant::now();
            while !counters.stop.load(Ordering::Relaxed) {
                if nts_client::key_exchange(ke, "localhost", &cfg).is_err() {
                    counters.bad.fetch_add(1, Ordering::Relaxed);
                }
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
    }
    let figures = measure(pid, shape.seconds, &counters);
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

/// A plain NTPv4 client request.
pub fn plain_client() -> UdpClient {
    UdpClient {
        request: skytime_tests::ntp::request(4, skytime_tests::ntp::now()).to_vec(),
        check: Box::new(|r: &[u8]| r.len() >= 48 && r[0] & 7 == 4),
    }
}

/// An NTS client for the UDP load: one key exchange, then the same
/// authenticated request again and again (the server keeps no state
/// per request, so it answers each).
pub fn nts_client(ke: KeOutcome, thread: usize) -> UdpClient {
    let mut uid = [0u8; 32];
    uid[..8].copy_from_slice(&(thread as u64 + 1).to_be_bytes());
    UdpClient {
        request: nts_client::ntp_request(&ke, &uid),
        check: Box::new(move |reply| nts_client::is_authentic(reply, &uid, &ke)),
    }
}

/// Counts over `seconds` after a 300 ms warm-up.
pub(crate) fn measure(pid: u32, seconds: f64, c: &Counters) -> Figures {
    std::thread::sleep(Duration::from_millis(300));
    let (g0, b0) = (
        c.good.load(Ordering::Relaxed),
        c.bad.load(Ordering::Relaxed),
    );
    let i0 = c.interleaved.load(Ordering::Relaxed);
    let cpu0 = tree_cpu_seconds(pid);
    let own0 = own_cpu_seconds();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let count = c.good.load(Ordering::Relaxed) - g0;
    let failures = c.bad.load(Ordering::Relaxed) - b0;
    let interleaved = c.interleaved.load(Ordering::Relaxed) - i0;
    let cpu = tree_cpu_seconds(pid) - cpu0;
    let own = own_cpu_seconds() - own0;
    let elapsed = start.elapsed().as_secs_f64();
    Figures {
        rate: count as f64 / elapsed,
        cpu_us: cpu * 1e6 / count.max(1) as f64,
        cores: cpu / elapsed,
        gen_cores: own / elapsed,
        failures,
        interleaved: interleaved as f64 / count.max(1) as f64,
    }
}

/// One request from each of `count` distinct source addresses
/// (127.1.x.y, starting at the `first`th), waiting for each reply;
/// returns how many were answered.
pub fn distinct_clients(server: SocketAddr, first: usize, count: usize) -> usize {
    let request = skytime_tests::ntp::request(4, skytime_tests::ntp::now());
    let mut answered = 0;
    let mut buf = [0u8; 128];
    for i in first..first + count {
        let ip = Ipv4Addr::new(
            127,
            1 + (i / 65_024) as u8,
            ((i / 254) % 256) as u8,
            1 + (i % 254) as u8,
        );
        let Ok(sock) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
        if sock.send_to(&request, server).is_ok() && sock.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    answered
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

/// This process's own CPU time (the generators), in seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
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
    skytime_tests::procfs::status_field(pid, "VmRSS")
}
