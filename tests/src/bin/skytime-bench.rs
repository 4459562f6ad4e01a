//! skytime-bench: NTP server throughput and memory, skytimed against
//! chronyd 4.3, measured in the same run on the same machine.
//!
//! Both servers get an equivalent configuration (local stratum 10, serve
//! 127.0.0.0/8, no rate limiting, clock never steered) on loopback, and the
//! same closed-loop request generator: T client threads, each with W
//! requests in flight, sending the next request when a reply arrives (or
//! when one is presumed lost after 50 ms). Rounds alternate between the
//! servers so that background load on a shared machine hits both alike;
//! the median of the rounds is reported.
//!
//! This is a benchmark, not a test: it prints figures and ratios.

use clap::Parser;
use skytime_tests::ntp::{now, request};
use skytime_tests::{free_udp_port, lo, require_program, wait_until, Daemon};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Throughput and memory of skytimed against chronyd on loopback")]
struct Args {
    /// Seconds per measurement run.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds (each round measures both servers once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Requests in flight per thread.
    #[arg(long, default_value_t = 16)]
    window: usize,
}

fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let sky_port = free_udp_port();
    let sky = Daemon::start(&format!("data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:{sky_port}\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n"), &[]);
    let chrony_port = free_udp_port();
    let chrony = ChronyServer::start(chrony_port);

    let (sky_pid, chrony_pid) = (sky.pid() as u32, chrony.child.id());
    let mut sky_rates = Vec::new();
    let mut chrony_rates = Vec::new();
    let mut sky_cpu = Vec::new();
    let mut chrony_cpu = Vec::new();
    for round in 0..args.rounds {
        let (s, s_cpu) = measure(lo(sky_port), sky_pid, &args);
        let (c, c_cpu) = measure(lo(chrony_port), chrony_pid, &args);
        eprintln!(
            "round {}: skytimed {:.0}/s {:.2} us CPU/reply, chronyd {:.0}/s {:.2} us CPU/reply",
            round + 1,
            s,
            s_cpu,
            c,
            c_cpu
        );
        sky_rates.push(s);
        chrony_rates.push(c);
        sky_cpu.push(s_cpu);
        chrony_cpu.push(c_cpu);
    }
    let sky_rss = rss_kib(sky.pid() as u32);
    let chrony_rss = rss_kib(chrony.child.id());

    let s = median(&mut sky_rates);
    let c = median(&mut chrony_rates);
    let s_cpu = median(&mut sky_cpu);
    let c_cpu = median(&mut chrony_cpu);
    println!();
    println!("skytime benchmark: NTP server on loopback ({cores} cores, {} rounds of {} s, {} client threads x {} in flight)", args.rounds, args.seconds, args.threads, args.window);
    println!(
        "{:<28}{:>14}{:>14}{:>10}",
        "", "skytimed", "chronyd", "ratio"
    );
    println!(
        "{:<28}{:>14.0}{:>14.0}{:>10.2}",
        "NTP replies per second",
        s,
        c,
        s / c
    );
    println!(
        "{:<28}{:>14.2}{:>14.2}{:>10.2}",
        "server CPU us per reply",
        s_cpu,
        c_cpu,
        s_cpu / c_cpu
    );
    println!(
        "{:<28}{:>14.0}{:>14.0}{:>10.2}",
        "replies per CPU second",
        1e6 / s_cpu,
        1e6 / c_cpu,
        c_cpu / s_cpu
    );
    if let (Some(a), Some(b)) = (sky_rss, chrony_rss) {
        println!(
            "{:<28}{:>14}{:>14}{:>10.2}",
            "resident memory (KiB)",
            a,
            b,
            a as f64 / b as f64
        );
    }
    println!(
        "{:<28}{:>14}{:>14}",
        "chronyd version",
        "",
        chrony_version()
    );
    drop(chrony);
    let (_, log, _) = sky.stop();
    if let Some(line) = log.lines().find(|l| l.contains("skytimed stopped")) {
        eprintln!("{line}");
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Closed-loop load: returns replies per second and the server's CPU time
/// (user + system) per reply in microseconds.
fn measure(server: SocketAddr, pid: u32, args: &Args) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..args.threads)
        .map(|_| {
            let (stop, replies, window) = (stop.clone(), replies.clone(), args.window);
            std::thread::spawn(move || client_loop(server, window, &stop, &replies))
        })
        .collect();
    // Warm up, then count over the measured interval only.
    std::thread::sleep(Duration::from_millis(300));
    let start_count = replies.load(Ordering::Relaxed);
    let start_cpu = cpu_seconds(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let count = replies.load(Ordering::Relaxed) - start_count;
    let cpu = cpu_seconds(pid) - start_cpu;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    (count as f64 / elapsed, cpu * 1e6 / count.max(1) as f64)
}

/// utime + stime of a process, in seconds, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn client_loop(server: SocketAddr, window: usize, stop: &AtomicBool, replies: &AtomicU64) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let req = request(4, now());
    for _ in 0..window {
        let _ = sock.send(&req);
    }
    let mut buf = [0u8; 128];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 48 => {
                replies.fetch_add(1, Ordering::Relaxed);
                let _ = sock.send(&req);
            }
            Ok(_) => {}
            // A lost request or reply: refill the window.
            Err(_) => {
                for _ in 0..window {
                    let _ = sock.send(&req);
                }
            }
        }
    }
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

fn chrony_version() -> String {
    let out = Command::new(require_program("chronyd"))
        .arg("--version")
        .output()
        .ok();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(3)
            .unwrap_or("?")
            .to_owned()
    })
    .unwrap_or_default()
}

/// chronyd as a server with a configuration equivalent to skytimed's.
struct ChronyServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl ChronyServer {
    fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(&conf, format!("port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.0/8\nlocal stratum 10\ncmdport 0\npidfile {d}/chronyd.pid\n", d = dir.path().display())).unwrap();
        let child = Command::new(require_program("chronyd"))
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chronyd");
        let ready = wait_until(Duration::from_secs(10), || {
            skytime_tests::ntp::query(lo(port)).map(|_| ())
        });
        assert!(
            ready.is_some(),
            "chronyd server did not answer on port {port}"
        );
        Self { child, _dir: dir }
    }
}

impl Drop for ChronyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
