//! skytime-bench: server throughput, CPU, instructions and memory of
//! skytimed against chronyd 4.3 and ntpd-rs 1.9.0, measured in the same
//! run on the same machine.
//!
//! Workloads, each on loopback against the three servers configured alike
//! (see `servers`):
//! - plain NTP: closed-loop generators, each from its own source address
//!   with W requests in flight, moving datagrams in batches;
//! - NTS-authenticated NTP: the same, each generator holding the keys and
//!   a cookie from one NTS-KE exchange (every 64th reply fully verified);
//! - NTS-KE: back-to-back full TLS 1.3 handshakes, 8 cookies each, from
//!   several concurrent clients;
//! - a mix: plain and NTS generators at full pace with 100 NTS-KE
//!   handshakes a second beside them (the same for every server);
//! - xleave: clients asking for interleaved mode, as chrony's `xleave`
//!   does (each waits for its reply; see `xleave`).
//!
//! Sections:
//! - `pinned`: each server on CPU 0, the generators on CPU 1: one core
//!   each, so CPU per reply and replies per second per core compare;
//! - `unpinned`: the whole machine, servers and generators sharing it;
//! - `scaling`: skytimed on one core (pinned) against both, the
//!   generators free on both;
//! - `memory`: resident memory while 10 000 and 20 000 distinct source
//!   addresses (127.1.x.y) have queried;
//! - `instructions`: user-space instructions per reply under callgrind;
//! - `attack`: what honest NTS-KE and NTP clients get while the server is
//!   attacked (an NTS-KE handshake flood, a ClientHello-and-reset flood,
//!   a thousand slowloris connections, an NTP flood from a thousand
//!   addresses), against the same clients with no attack (see `attack`).
//!
//! Rounds alternate the servers so background load on a shared machine
//! hits all alike; the median of the rounds is printed with the range.
//! CPU is the server's user + system time over the interval, chronyd's
//! NTS-KE helper process included. This is a benchmark, not a test: it
//! prints figures and ratios against the best peer.

mod attack;
mod attackers;
mod callgrind;
mod honest;
mod load;
mod servers;
mod xleave;

use clap::Parser;
use load::{Figures, Shape};
use servers::{Kind, Launch, Server, Setup};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    about = "Throughput, CPU, instructions and memory of skytimed, chronyd and ntpd-rs on loopback"
)]
struct Args {
    /// Seconds per measurement run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds (each measures every server once per workload).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// UDP generators (each its own source address).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Requests in flight per UDP generator (enough that a server finds
    /// a queue whenever it looks: its capacity, not the generators' pace,
    /// is measured).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Concurrent NTS-KE clients.
    #[arg(long, default_value_t = 16)]
    ke_clients: usize,
    /// Sections to run: pinned, unpinned, scaling, memory, instructions,
    /// attack.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pinned,unpinned,scaling,memory,instructions,attack"
    )]
    sections: Vec<String>,
    /// Workloads to run in the pinned and unpinned sections: NTP, NTS,
    /// NTS-KE, mix, xleave.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "NTP,NTS,NTS-KE,mix,xleave"
    )]
    workloads: Vec<String>,
    /// Servers to run in the pinned and unpinned sections.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "skytimed,chronyd,ntpd-rs"
    )]
    servers: Vec<String>,
    /// Requests counted under callgrind per server and workload.
    #[arg(long, default_value_t = 20_000)]
    callgrind_requests: usize,
    /// Distinct client addresses per memory step.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Keep the callgrind files here (for callgrind_annotate).
    #[arg(long)]
    callgrind_dir: Option<PathBuf>,
    /// Runs of the attack section: quiet (no attack), ke-flood,
    /// hello-flood, slowloris, ntp-flood, ke-garbage.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "quiet,ke-flood,hello-flood,slowloris,ntp-flood,ke-garbage"
    )]
    attacks: Vec<String>,
    /// Concurrent clients of the NTS-KE handshake, ClientHello and
    /// garbage floods.
    #[arg(long, default_value_t = 64)]
    attack_clients: usize,
    /// Slowloris connections.
    #[arg(long, default_value_t = 1000)]
    slow_clients: usize,
    /// Seconds between the bytes each slowloris connection sends.
    #[arg(long, default_value_t = 1.0)]
    trickle: f64,
    /// Seconds the slowloris run lasts: longer than the servers' NTS-KE
    /// timeouts (skytimed's default is 10 s), to see them closed.
    #[arg(long, default_value_t = 12.0)]
    slowloris_seconds: f64,
    /// Distinct source addresses of the NTP flood (127.2.x.y).
    #[arg(long, default_value_t = 1000)]
    flood_addresses: usize,
    /// Seconds an honest client waits for an exchange or a reply.
    #[arg(long, default_value_t = 1.0)]
    honest_timeout: f64,
    /// ntpd-rs's ntp-daemon.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/ntpd-rs/bin/ntp-daemon"))]
    ntpd_rs: PathBuf,
}

/// Per-round figures of one workload, per server.
struct Series<T = Figures>(Vec<(Kind, Vec<T>)>);

impl<T> Default for Series<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Series<T> {
    fn push(&mut self, kind: Kind, f: T) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(f),
            None => self.0.push((kind, vec![f])),
        }
    }

    fn values(&self, kind: Kind, f: impl Fn(&T) -> f64) -> Vec<f64> {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.iter().map(f).collect())
            .unwrap_or_default()
    }
}

const WORKLOADS: [&str; 5] = ["NTP", "NTS", "NTS-KE", "mix", "xleave"];

fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setup = Setup::new(args.ntpd_rs.clone());
    let want = |s: &str| args.sections.iter().any(|x| x == s);
    println!(
        "skytime benchmark on loopback: {cores} CPUs, {} rounds of {} s; UDP: {} generators x {} in flight; NTS-KE: {} clients",
        args.rounds, args.seconds, args.threads, args.window, args.ke_clients
    );
    println!(
        "servers: skytimed {}, chronyd {}, ntpd-rs {}",
        env!("CARGO_PKG_VERSION"),
        servers::chrony_version(),
        servers::ntpd_rs_version(&args.ntpd_rs)
    );
    let pinned = (cores >= 2).then_some((Some(0), Some(1)));
    if want("pinned") {
        match pinned {
            Some((server_cpu, gen_cpu)) => {
                let s = run_section(&args, &setup, server_cpu, gen_cpu);
                print_section("pinned: each server on CPU 0, the generators on CPU 1", &s);
            }
            None => println!("pinned: skipped, one CPU only"),
        }
    }
    if want("unpinned") {
        let s = run_section(&args, &setup, None, None);
        print_section(
            "unpinned: the whole machine, servers and generators sharing it",
            &s,
        );
    }
    if want("scaling") && cores >= 2 {
        scaling(&args, &setup);
    }
    if want("memory") {
        memory(&args, &setup);
    }
    if want("instructions") {
        instructions(&args, &setup);
    }
    if want("attack") {
        attack::section(&args, &setup, cores);
    }
}

/// The servers `--servers` selects, in table order.
fn chosen_servers(args: &Args) -> impl Iterator<Item = Kind> + '_ {
    Kind::ALL
        .into_iter()
        .filter(|k| args.servers.iter().any(|s| s == k.name()))
}

/// Every workload against every server, `args.rounds` times.
fn run_section(
    args: &Args,
    setup: &Setup,
    server_cpu: Option<usize>,
    gen_cpu: Option<usize>,
) -> [Series; 5] {
    let launch = Launch {
        cpu: server_cpu,
        callgrind: None,
    };
    let running: Vec<Server> = chosen_servers(args)
        .map(|k| Server::start(k, setup, &launch))
        .collect();
    let shape = Shape {
        seconds: args.seconds,
        threads: args.threads,
        window: args.window,
        cpu: gen_cpu,
    };
    let mut series: [Series; 5] = Default::default();
    for round in 0..args.rounds {
        // Alternate the order so drifting background load hits all alike.
        for i in 0..running.len() {
            let s = &running[(i + round) % running.len()];
            let f = workloads(s, setup, shape, args);
            eprint!("round {} {:<9}", round + 1, s.kind.name());
            for (name, f) in WORKLOADS.iter().zip(&f).filter(|(_, f)| f.rate > 0.0) {
                eprint!(
                    " | {name} {:.0}/s {:.2} us, cores {:.2}/{:.2}, {} failed, {:.2} interleaved",
                    f.rate, f.cpu_us, f.cores, f.gen_cores, f.failures, f.interleaved
                );
            }
            eprintln!();
            for (w, fig) in f.into_iter().enumerate() {
                series[w].push(s.kind, fig);
            }
        }
    }
    series
}

/// The four workloads against one server.
/// The selected workloads against one server (the others stay empty).
fn workloads(s: &Server, setup: &Setup, shape: Shape, args: &Args) -> [Figures; 5] {
    let pid = s.pid();
    let want = |w: &str| args.workloads.iter().any(|x| x == w);
    let mut f = [Figures::default(); 5];
    if want("NTP") {
        f[0] = load::udp(s.ntp, pid, shape, |_| load::plain_client());
    }
    let keys: Vec<_> = (0..shape.threads)
        .map(|_| {
            skytime_tests::nts_client::key_exchange(s.ke, "localhost", &setup.tls)
                .unwrap_or_else(|e| panic!("NTS-KE with {}: {e}", s.kind.name()))
        })
        .collect();
    if want("NTS") {
        f[1] = load::udp(s.ntp, pid, shape, |t| load::nts_client(keys[t].clone(), t));
    }
    if want("NTS-KE") {
        let ke_shape = Shape {
            threads: args.ke_clients,
            ..shape
        };
        f[2] = load::key_exchanges(s.ke, pid, ke_shape, &setup.tls);
    }
    if want("mix") {
        f[3] = load::mix(s.ntp, s.ke, pid, shape, &keys, &setup.tls);
    }
    if want("xleave") {
        f[4] = xleave::xleave(s.ntp, pid, shape);
    }
    f
}

/// The median, NaN (nothing measured) left out.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// "median [min-max]" of the rounds that measured something (a round
/// with nothing to take a median of gives NaN).
fn spread(v: &[f64], decimals: usize) -> String {
    let v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.d$} [{:.d$}-{:.d$}]",
        median(v.to_vec()),
        lo,
        hi,
        d = decimals
    )
}

fn print_section(title: &str, series: &[Series; 5]) {
    println!();
    println!("{title} (median [range] of the rounds)");
    println!(
        "{:<30}{:>26}{:>26}{:>26}{:>9}",
        "", "skytimed", "chronyd", "ntpd-rs", "sky/best"
    );
    for (w, name) in WORKLOADS.iter().enumerate() {
        let s = &series[w];
        // Workloads not run have no replies anywhere.
        if s.0.iter().all(|(_, v)| v.iter().all(|f| f.rate == 0.0)) {
            continue;
        }
        let unit = if *name == "NTS-KE" {
            "handshakes"
        } else {
            "replies"
        };
        row(&format!("{name} {unit}/s"), s, |f| f.rate, 0, true);
        row(
            &format!("{name} server CPU us each"),
            s,
            |f| f.cpu_us,
            2,
            false,
        );
        row(
            &format!("{name} server cores busy"),
            s,
            |f| f.cores,
            2,
            true,
        );
        row(
            &format!("{name} generator cores busy"),
            s,
            |f| f.gen_cores,
            2,
            true,
        );
        if *name == "xleave" {
            row("xleave share interleaved", s, |f| f.interleaved, 2, true);
        }
        let fails: u64 =
            s.0.iter()
                .flat_map(|(_, v)| v.iter().map(|f| f.failures))
                .sum();
        if fails > 0 {
            println!("  ({fails} failed replies or exchanges in {name}; see the rounds above)");
        }
    }
}

/// One table row; the ratio is skytimed's over the best peer's (the
/// highest for rates, the lowest for costs).
fn row<T>(
    label: &str,
    s: &Series<T>,
    f: impl Fn(&T) -> f64 + Copy,
    decimals: usize,
    higher_better: bool,
) {
    let cells: Vec<String> = Kind::ALL
        .iter()
        .map(|k| spread(&s.values(*k, f), decimals))
        .collect();
    let med = |k: Kind| median(s.values(k, f));
    let peers = [med(Kind::Chronyd), med(Kind::NtpdRs)];
    let best = if higher_better {
        peers.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    } else {
        peers.iter().copied().fold(f64::INFINITY, f64::min)
    };
    println!(
        "{label:<30}{:>26}{:>26}{:>26}{:>9.2}",
        cells[0],
        cells[1],
        cells[2],
        med(Kind::Skytimed) / best
    );
}

/// skytimed on one core against skytimed on both, generators free.
fn scaling(args: &Args, setup: &Setup) {
    let shape = Shape {
        seconds: args.seconds,
        threads: args.threads,
        window: args.window,
        cpu: None,
    };
    let one = Server::start(
        Kind::Skytimed,
        setup,
        &Launch {
            cpu: Some(0),
            callgrind: None,
        },
    );
    let two = Server::start(Kind::Skytimed, setup, &Launch::default());
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let order: [&Server; 2] = if round % 2 == 0 {
            [&one, &two]
        } else {
            [&two, &one]
        };
        for s in order {
            let f = load::udp(s.ntp, s.pid(), shape, |_| load::plain_client());
            if std::ptr::eq(s, &one) {
                r1.push(f);
            } else {
                r2.push(f);
            }
        }
    }
    let rate = |v: &[Figures]| median(v.iter().map(|f| f.rate).collect());
    let cpu = |v: &[Figures]| median(v.iter().map(|f| f.cpu_us).collect());
    let cores = |v: &[Figures]| median(v.iter().map(|f| f.cores).collect());
    println!();
    println!(
        "scaling: skytimed on CPU 0 only against both CPUs, plain NTP, generators on both CPUs"
    );
    println!(
        "  one core: {:.0} replies/s, {:.2} us CPU each, {:.2} cores busy",
        rate(&r1),
        cpu(&r1),
        cores(&r1)
    );
    println!(
        "  two cores: {:.0} replies/s, {:.2} us CPU each, {:.2} cores busy",
        rate(&r2),
        cpu(&r2),
        cores(&r2)
    );
    println!(
        "  replies/s two/one: {:.2}; capacity two/one (2 cores / CPU per reply on two, over 1 core / CPU per reply on one): {:.2}",
        rate(&r2) / rate(&r1),
        2.0 * cpu(&r1) / cpu(&r2)
    );
}

/// Resident memory of each server as distinct clients arrive.
fn memory(args: &Args, setup: &Setup) {
    println!();
    println!(
        "memory: resident KiB at start and after {n} and {m} distinct clients (127.1.x.y)",
        n = args.clients,
        m = 2 * args.clients
    );
    for kind in Kind::ALL {
        let s = Server::start(kind, setup, &Launch::default());
        let pid = s.pid();
        let _ = load::distinct_clients(s.ntp, 0, 10);
        let r0 = load::tree_rss_kib(pid);
        let a1 = load::distinct_clients(s.ntp, 10, args.clients);
        let r1 = load::tree_rss_kib(pid);
        let a2 = load::distinct_clients(s.ntp, 10 + args.clients, args.clients);
        let r2 = load::tree_rss_kib(pid);
        println!(
            "  {:<9} {:>7} {:>7} {:>7}   growth per {}: {:+} KiB   (answered {a1} and {a2})",
            kind.name(),
            r0,
            r1,
            r2,
            args.clients,
            (r2 as i64 - r0 as i64) / 2
        );
    }
}

/// Instructions per reply under callgrind.
fn instructions(args: &Args, setup: &Setup) {
    println!();
    println!(
        "instructions per reply (user space, callgrind, {} requests; start-up and shutdown subtracted)",
        args.callgrind_requests
    );
    let mut rows = Vec::new();
    for workload in [callgrind::Workload::Plain, callgrind::Workload::Nts] {
        let v: Vec<Option<f64>> = Kind::ALL
            .iter()
            .map(|k| {
                if !args.servers.iter().any(|s| s == k.name()) {
                    return None;
                }
                callgrind::instructions_per_reply(
                    *k,
                    setup,
                    workload,
                    args.callgrind_requests,
                    args.callgrind_dir.as_deref(),
                )
            })
            .collect();
        rows.push((workload, v));
    }
    println!(
        "{:<12}{:>12}{:>12}{:>12}{:>9}",
        "", "skytimed", "chronyd", "ntpd-rs", "sky/best"
    );
    for (workload, v) in rows {
        let cell = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.0}"));
        let best = [v[1], v[2]]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        println!(
            "{:<12}{:>12}{:>12}{:>12}{:>9.2}",
            format!("{workload:?}"),
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            v[0].unwrap_or(f64::NAN) / best
        );
    }
}
