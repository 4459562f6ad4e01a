//! skytime-bench: server throughput and memory, skytimed against chronyd,
//! measured in the same run on the same machine.
//!
//! Three workloads, each on loopback against both servers configured alike
//! (see `servers`):
//! - plain NTP: closed-loop clients, T threads with W requests in flight;
//! - NTS-authenticated NTP: the same, each thread holding the keys and a
//!   cookie from one NTS-KE exchange (every 64th reply is fully verified);
//! - NTS-KE: back-to-back full TLS 1.3 handshakes with 8 cookies each.
//!
//! Rounds alternate between the servers so that background load on a
//! shared machine hits both alike; the median of the rounds is reported.
//! CPU is the server's user + system time over the interval, chronyd's
//! NTS-KE helper process included.
//!
//! This is a benchmark, not a test: it prints figures and ratios.

mod load;
mod servers;

use clap::Parser;
use load::{Figures, Shape, UdpClient};
use servers::{certificate, ChronyServer, Endpoints};
use skytime_tests::ntp::{now, request};
use skytime_tests::{free_tcp_port, free_udp_port, lo, nts_client};

#[derive(Debug, Parser)]
#[command(about = "Throughput and memory of skytimed against chronyd on loopback")]
struct Args {
    /// Seconds per measurement run.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds (each round measures both servers once per workload).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Requests in flight per thread (UDP workloads).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Concurrent NTS-KE clients. More than the UDP threads, because an
    /// exchange waits on the network as much as on the server.
    #[arg(long, default_value_t = 16)]
    ke_clients: usize,
}

/// One workload's per-round figures for (skytimed, chronyd).
#[derive(Default)]
struct Series {
    sky: Vec<Figures>,
    chrony: Vec<Figures>,
}

fn main() {
    let args = Args::parse();
    let shape = Shape {
        seconds: args.seconds,
        threads: args.threads,
        window: args.window,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let certs = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = certificate(certs.path());
    let tls = nts_client::tls_config(&cert);

    let sky_ep = Endpoints {
        ntp: lo(free_udp_port()),
        ke: lo(free_tcp_port()),
    };
    let sky = servers::skytimed(&sky_ep, &cert, &key);
    let chrony_ep = Endpoints {
        ntp: lo(free_udp_port()),
        ke: lo(free_tcp_port()),
    };
    let chrony = ChronyServer::start(&chrony_ep, &cert, &key, &tls);
    let servers = [(&sky_ep, sky.pid() as u32), (&chrony_ep, chrony.child.id())];

    let plain = |_: usize| UdpClient {
        request: request(4, now()).to_vec(),
        check: Box::new(|r: &[u8]| r.len() >= 48 && r[0] & 7 == 4),
    };
    let (mut ntp, mut nts, mut ke) = (Series::default(), Series::default(), Series::default());
    for round in 1..=args.rounds {
        for (i, (ep, pid)) in servers.iter().enumerate() {
            let name = ["skytimed", "chronyd"][i];
            let n = load::udp(ep.ntp, *pid, shape, plain);
            let keys: Vec<_> = (0..shape.threads)
                .map(|_| {
                    nts_client::key_exchange(ep.ke, "localhost", &tls)
                        .unwrap_or_else(|e| panic!("NTS-KE with {name}: {e}"))
                })
                .collect();
            let s = load::udp(ep.ntp, *pid, shape, |t| {
                load::nts_client(keys[t].clone(), t)
            });
            let ke_shape = Shape {
                threads: args.ke_clients,
                ..shape
            };
            let k = load::key_exchanges(ep.ke, *pid, ke_shape, &tls);
            eprintln!(
                "round {round} {name:<9} NTP {:>8.0}/s {:>5.2} us | NTS {:>8.0}/s {:>5.2} us | KE {:>6.0}/s {:>7.1} us | failures {}/{}/{}",
                n.rate, n.cpu_us, s.rate, s.cpu_us, k.rate, k.cpu_us, n.failures, s.failures, k.failures
            );
            for (series, f) in [(&mut ntp, n), (&mut nts, s), (&mut ke, k)] {
                if i == 0 {
                    series.sky.push(f);
                } else {
                    series.chrony.push(f);
                }
            }
        }
    }
    let sky_rss = load::tree_rss_kib(servers[0].1);
    let chrony_rss = load::tree_rss_kib(servers[1].1);

    println!();
    println!(
        "skytime benchmark on loopback ({cores} cores, {} rounds of {} s; UDP: {} client threads with {} in flight each; NTS-KE: {} clients)",
        args.rounds, args.seconds, args.threads, args.window, args.ke_clients
    );
    println!(
        "{:<44}{:>12}{:>12}{:>8}",
        "", "skytimed", "chronyd", "ratio"
    );
    for (label, series) in [
        ("NTP", &mut ntp),
        ("NTS-authenticated NTP", &mut nts),
        ("NTS-KE handshakes", &mut ke),
    ] {
        let s = median(&series.sky, |f| f.rate);
        let c = median(&series.chrony, |f| f.rate);
        row(&format!("{label} per second"), s, c, 0);
        let s = median(&series.sky, |f| f.cpu_us);
        let c = median(&series.chrony, |f| f.cpu_us);
        row(&format!("{label}: server CPU us each"), s, c, 2);
        let fails: u64 = series
            .sky
            .iter()
            .chain(&series.chrony)
            .map(|f| f.failures)
            .sum();
        if fails > 0 {
            println!("  ({fails} failed replies or exchanges in {label}; see the rounds above)");
        }
    }
    row("resident memory, KiB", sky_rss as f64, chrony_rss as f64, 0);
    println!(
        "{:<44}{:>12}{:>12}",
        "version",
        "",
        servers::chrony_version()
    );
    drop(chrony);
    let (_, log, _) = sky.stop();
    if let Some(line) = log.lines().find(|l| l.contains("skytimed stopped")) {
        eprintln!("{line}");
    }
}

fn row(label: &str, sky: f64, chrony: f64, decimals: usize) {
    println!(
        "{label:<44}{sky:>12.decimals$}{chrony:>12.decimals$}{:>8.2}",
        sky / chrony
    );
}

fn median(v: &[Figures], f: impl Fn(&Figures) -> f64) -> f64 {
    let mut x: Vec<f64> = v.iter().map(f).collect();
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied().unwrap_or(f64::NAN)
}
