//! skytime-soak: the real skytimed run for a long time with faults (`make
//! soak`, README: Soak).
//!
//! On a private dbus-daemon, skytimed (measure-only clock, NTP and NTS on
//! loopback ports the kernel picks) is fed by the GPS simulator injecting
//! every fault it knows, cycle after cycle (see `faults`); plain NTP and
//! NTS clients query it at steady rates (`clients`); an operator reads
//! tracking and statistics and rotates keys, applies configurations,
//! installs certificates and reloads over D-Bus (`watch`). Every
//! five seconds the daemon's resident memory, threads and descriptors are
//! sampled from /proc; its runtime's task count comes with the statistics.
//!
//! It fails (exit 1, the reasons printed) on: growth of memory, threads,
//! descriptors or tasks from the warm-up to the end beyond the bounds below; a
//! statistics counter going backwards; a panic, or the daemon exiting
//! before it is told to (or not cleanly when told); a reply claiming
//! synchronization while tracking said it was not (`checks::SyncClaims`
//! states the rule); a reply larger than its request; an NTS reply that is
//! neither authentic nor a NAK; a failed key exchange, D-Bus read or write;
//! more than 1% of requests unanswered. Everything it starts stops with
//! it, on failure too (kill on drop), and every loop ends at the deadline.

mod checks;
mod clients;
mod faults;
mod watch;

use checks::{growth_failure, levels, Resource, SyncClaims};
use clap::Parser;
use skytime_tests::dbus::{initialized_dir, make_cert, start_daemon, PrivateBus};
use skytime_tests::gpssim::GpsSim;
use skytime_tests::procfs::{fd_count, running, status_field};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "skytimed for a long run with GPS faults, clients and operator writes")]
struct Args {
    /// How long to run, seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(30..))]
    seconds: u64,
    /// Seconds before the resource levels are taken as the baseline
    /// (default: 60, or a fifth of a shorter run).
    #[arg(long)]
    warmup: Option<u64>,
    /// Plain NTP requests per second.
    #[arg(long, default_value_t = 20.0)]
    ntp_rate: f64,
    /// NTS requests per second.
    #[arg(long, default_value_t = 5.0)]
    nts_rate: f64,
}

/// Set by SIGINT or SIGTERM: the run ends early, everything it started
/// is stopped, and it fails.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Resource samples this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// A progress line every this many samples (10 minutes), for long runs.
const PROGRESS_EVERY: usize = 120;
/// Medians over this many samples (30 s) at the warm-up and at the end.
const WINDOW: usize = 6;

/// The growth allowed from the warm-up to the end, and why.
/// - Memory: every table skytimed keeps is bounded (the client log, the
///   NTS-KE connections, the held master keys, the history ring), and the
///   allocator keeps freed pages of its per-thread arenas, so resident
///   memory may still creep while those fill and fragment; 8 MiB is
///   several times what a run's full tables add and far below what a leak
///   of a few hundred bytes per request (hundreds of thousands of
///   requests in an hour) would add.
/// - Threads: tokio's blocking pool starts threads for file writes and
///   lets them go after 10 s idle; four is more than the writes in flight
///   at once.
/// - Descriptors: NTS-KE connections and skytimectl's bus connections in
///   flight, the receiver's pty reopened: eight.
/// - Tasks (skytimed's async runtime, from the statistics): one per
///   NTS-KE connection and bus call in flight come and go; sixteen is
///   more than the clients and the operator have in flight at once, and a
///   task left behind per key exchange or fault would pass it within
///   minutes.
const RSS: Resource = Resource {
    name: "resident memory",
    unit: " KiB",
    bound: 8 * 1024,
};
const THREADS: Resource = Resource {
    name: "threads",
    unit: "",
    bound: 4,
};
const FDS: Resource = Resource {
    name: "file descriptors",
    unit: "",
    bound: 8,
};
const TASKS: Resource = Resource {
    name: "runtime tasks",
    unit: "",
    bound: 16,
};

/// The daemon's configuration: measure-only clock, GPS from the
/// simulator, a short source timeout and holdover so that every fault
/// cycle takes it through unsynchronized, NTS, the system bus; `@ALLOW@`
/// tells the applied versions apart.
fn config(gps: &Path, allow: &str) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [{allow}]\n\
         [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
         [clock]\nsteer = false\nsource_timeout = 2.0\nholdover_limit = 6.0\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
         [dbus]\nbus = \"system\"\n",
        dev = GpsSim::device(gps).display(),
        sock = GpsSim::sock(gps).display()
    )
}

const ALLOW: [&str; 2] = ["\"127.0.0.0/8\"", "\"127.0.0.0/8\", \"::1/128\""];

/// Resource samples of the daemon.
#[derive(Debug, Default)]
struct Samples {
    rss: Vec<u64>,
    threads: Vec<u64>,
    fds: Vec<u64>,
}

impl Samples {
    /// Takes one; false if the daemon is gone.
    fn take(&mut self, pid: u32) -> bool {
        let (Some(rss), Some(threads), Some(fds)) = (
            status_field(pid, "VmRSS"),
            status_field(pid, "Threads"),
            fd_count(pid),
        ) else {
            return false;
        };
        self.rss.push(rss);
        self.threads.push(threads);
        self.fds.push(fds);
        running(pid)
    }
}

/// The warm-up and the median window in task samples (one per statistics
/// snapshot), spanning the same seconds as the /proc samples'.
fn task_sampling(warmup_s: u64) -> (usize, usize) {
    let every = watch::STATS_INTERVAL.as_secs();
    (
        (warmup_s / every) as usize,
        (WINDOW as u64 * SAMPLE_EVERY.as_secs() / every) as usize,
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    stop_on_signals();
    let warmup = args.warmup.unwrap_or(60.min(args.seconds / 5));
    let gps = tempfile::tempdir().expect("temporary directory");
    let files = tempfile::tempdir().expect("temporary directory");
    let bus = PrivateBus::start(&[]);
    let dir = initialized_dir();
    let data = dir.path().join("data");
    // The client trusts the first certificate and both it will see installed.
    let mut trust =
        std::fs::read_to_string(data.join("cert.pem")).expect("the initial certificate");
    let mut certs = Vec::new();
    for which in 0..2 {
        let (cert, key) = make_cert("localhost", 2099);
        trust.push_str(&cert);
        let (c, k) = (
            files.path().join(format!("cert-{which}.pem")),
            files.path().join(format!("key-{which}.pem")),
        );
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        certs.push((c, k));
    }
    let trust_path = files.path().join("trust.pem");
    std::fs::write(&trust_path, trust).unwrap();
    let configs: Vec<_> = ALLOW
        .iter()
        .enumerate()
        .map(|(i, allow)| {
            let p = files.path().join(format!("applied-{i}.toml"));
            let text = config(gps.path(), allow).replace("@DATA@", &data.display().to_string());
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect();

    let daemon = start_daemon(&bus, dir, &config(gps.path(), ALLOW[0]));
    let pid = daemon.pid() as u32;
    let (ntp, ke) = (daemon.ntp_addr(), daemon.ke_addr());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let stop = AtomicBool::new(false);
    let claims = Mutex::new(SyncClaims::default());
    let shared = clients::Shared {
        start,
        stop: &stop,
        claims: &claims,
    };
    let mut samples = Samples::default();
    let mut injected = BTreeMap::new();
    let mut failures = Vec::new();
    samples.take(pid);
    println!(
        "skytime-soak: {} s, skytimed pid {pid}, NTP {ntp}, NTS-KE {ke}",
        args.seconds
    );

    let (plain, nts, reads, writes) = std::thread::scope(|s| {
        let plain = s.spawn(|| clients::plain(&shared, ntp, args.ntp_rate));
        let nts = s.spawn(|| clients::nts(&shared, ke, ntp, &trust_path, args.nts_rate));
        let reads = s.spawn(|| watch::read(&bus, start, &stop, &claims));
        let writes = s.spawn(|| {
            watch::write(
                &bus,
                start,
                &stop,
                &[&configs[0], &configs[1]],
                &[(&certs[0].0, &certs[0].1), (&certs[1].0, &certs[1].1)],
            )
        });
        // The receiver, cycle after cycle, and the samples, until the end
        // or the daemon's death.
        let mut sim: Option<GpsSim> = None;
        let mut cycle_end = start;
        let mut n = 0;
        let mut next_sample = start + SAMPLE_EVERY;
        while Instant::now() < deadline {
            if SIGNALLED.load(Ordering::SeqCst) {
                failures.push(format!(
                    "interrupted by a signal after {:.0} s",
                    start.elapsed().as_secs_f64()
                ));
                break;
            }
            if Instant::now() >= cycle_end {
                drop(sim.take());
                // Rounded up: the last cycle ends with the run.
                let left = (deadline - Instant::now()).as_secs_f64().ceil() as u64;
                let len = left.min(faults::CYCLE_S);
                sim = Some(GpsSim::with_args(
                    gps.path(),
                    &faults::cycle(n, len, &mut injected),
                ));
                cycle_end = Instant::now() + Duration::from_secs(len);
                n += 1;
            }
            if Instant::now() >= next_sample {
                next_sample += SAMPLE_EVERY;
                if !samples.take(pid) {
                    failures.push(format!(
                        "skytimed exited after {:.0} s",
                        start.elapsed().as_secs_f64()
                    ));
                    break;
                }
                if samples.rss.len() % PROGRESS_EVERY == 0 {
                    println!(
                        "  {:.0} s: resident memory {} KiB, threads {}, file descriptors {}",
                        start.elapsed().as_secs_f64(),
                        samples.rss.last().unwrap_or(&0),
                        samples.threads.last().unwrap_or(&0),
                        samples.fds.last().unwrap_or(&0)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        drop(sim);
        (
            plain.join().unwrap(),
            nts.join().unwrap(),
            reads.join().unwrap(),
            writes.join().unwrap(),
        )
    });
    let ran = start.elapsed().as_secs_f64();
    samples.take(pid);
    let mut claims = claims.into_inner().unwrap();
    claims.finish();
    let alive = running(pid);
    let (clean_exit, log, _dir) = daemon.stop();

    // The verdicts.
    // Each watched series: (resource, samples, warm-up and median window
    // in samples). The task count comes with the statistics, on their own
    // interval.
    let warm_n = (warmup / SAMPLE_EVERY.as_secs()) as usize;
    let (task_warm_n, task_window) = task_sampling(warmup);
    let watched = [
        (RSS, &samples.rss, warm_n, WINDOW),
        (THREADS, &samples.threads, warm_n, WINDOW),
        (FDS, &samples.fds, warm_n, WINDOW),
        (TASKS, &reads.tasks, task_warm_n, task_window),
    ];
    for (res, series, warm_n, window) in &watched {
        failures.extend(growth_failure(res, series, *warm_n, *window));
    }
    failures.extend(
        reads
            .backwards
            .iter()
            .map(|b| format!("counter went backwards at {b}")),
    );
    failures.extend(
        reads
            .errors
            .iter()
            .map(|e| format!("D-Bus read failed at {e}")),
    );
    failures.extend(
        writes
            .failures
            .iter()
            .map(|e| format!("D-Bus write failed at {e}")),
    );
    failures.extend(claims.violations.iter().cloned());
    failures.extend(
        nts.ke_failures
            .iter()
            .map(|e| format!("NTS-KE failed at {e}")),
    );
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        failures.push(format!("skytimed panicked: {line}"));
    }
    if alive && !clean_exit {
        failures.push("skytimed did not stop cleanly on SIGTERM".into());
    }
    for (what, c) in [("NTP", &plain), ("NTS", &nts)] {
        if c.oversized > 0 {
            failures.push(format!(
                "{what}: {} replies larger than their request",
                c.oversized
            ));
        }
        if c.unanswered * 100 > c.requests {
            failures.push(format!(
                "{what}: {} of {} requests unanswered (more than 1%)",
                c.unanswered, c.requests
            ));
        }
    }
    if nts.bad > 0 {
        failures.push(format!(
            "NTS: {} replies neither authentic nor a NAK",
            nts.bad
        ));
    }
    for (what, n) in [
        ("NTP replies", plain.replies),
        ("authentic NTS replies", nts.authentic),
        ("claims judged", claims.claims),
        ("key rotations", writes.rotations),
    ] {
        if n == 0 {
            failures.push(format!("nothing to judge: no {what}"));
        }
    }

    // The summary.
    println!("skytime-soak: ran {ran:.0} s (warm-up {warmup} s)");
    for (what, c) in [("NTP", &plain), ("NTS", &nts)] {
        println!(
            "  {what}: {} requests, {} replies ({} claiming synchronization), {} unanswered",
            c.requests, c.replies, c.claims, c.unanswered
        );
    }
    println!(
        "  NTS: {} key exchanges ({} failed), {} authentic replies, {} NAKs",
        nts.key_exchanges,
        nts.ke_failures.len(),
        nts.authentic,
        nts.naks
    );
    println!(
        "  D-Bus: {} tracking readings ({:.0}% synchronized), {} statistics snapshots; {} key rotations, {} configuration applies, {} certificate installs, {} reloads",
        reads.readings,
        100.0 * reads.synchronized as f64 / reads.readings.max(1) as f64,
        reads.snapshots,
        writes.rotations,
        writes.applies,
        writes.installs,
        writes.reloads
    );
    let faults: Vec<String> = injected.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  GPS faults injected: {}", faults.join(", "));
    println!(
        "  synchronization claims: {} replies judged ({} while tracking said synchronized, {} while not), {} claims, {} unjudged, {} violations",
        claims.judged,
        claims.while_synchronized,
        claims.while_unsynchronized,
        claims.claims,
        claims.unjudged,
        claims.violations.len()
    );
    let server = |k: &str| reads.last.get(k).copied().unwrap_or(0);
    println!(
        "  server counters at the end: received {}, replied {}, dropped {}, NTS authenticated {}, NAKs {}, NTS-KE accepted {}",
        server("ntp_received"),
        server("ntp_replied"),
        server("ntp_dropped"),
        server("nts_authenticated"),
        server("nts_naks"),
        server("nts_ke_accepted")
    );
    for (res, series, warm_n, window) in &watched {
        let l = levels(series, *warm_n, *window);
        println!(
            "  {}: start {}, after warm-up {}, end {}{u} (bound +{}{u}; {} samples)",
            res.name,
            series.first().copied().unwrap_or(0),
            l.map_or(0, |l| l.warm),
            l.map_or(0, |l| l.end),
            res.bound,
            series.len(),
            u = res.unit
        );
    }
    if failures.is_empty() {
        println!("skytime-soak: PASS");
        ExitCode::SUCCESS
    } else {
        println!("skytime-soak: FAIL");
        for f in failures.iter().take(50) {
            println!("  {f}");
        }
        if failures.len() > 50 {
            println!("  ... and {} more", failures.len() - 50);
        }
        ExitCode::FAILURE
    }
}
