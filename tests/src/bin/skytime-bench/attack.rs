//! The attack section: what honest clients get from each server while it
//! is attacked (see `attackers` for the attacks, `honest` for the
//! clients), against the same clients with no attack.
//!
//! Each server runs on CPU 0 as in the pinned section; attackers and
//! honest clients share CPU 1, the attackers at the lowest priority.
//! Between runs the attack is stopped and the server must complete a key
//! exchange again before the next one starts.

use crate::attackers::{self, Attack, Plan};
use crate::honest;
use crate::load::tree_cpu_seconds;
use crate::servers::{Launch, Server, Setup};
use crate::{median, row, Args, Series};
use skytime_tests::wait_until;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The runs of the section: none, then each attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Quiet,
    Under(Attack),
}

pub const SCENARIOS: [(&str, Scenario); 6] = [
    ("quiet", Scenario::Quiet),
    ("ke-flood", Scenario::Under(Attack::KeFlood)),
    ("hello-flood", Scenario::Under(Attack::HelloFlood)),
    ("slowloris", Scenario::Under(Attack::Slowloris)),
    ("ntp-flood", Scenario::Under(Attack::NtpFlood)),
    ("ke-garbage", Scenario::Under(Attack::KeGarbage)),
];

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Share of the honest key exchanges that completed in time.
    pub ke_ok: f64,
    /// Their median latency, ms.
    pub ke_ms: f64,
    /// Share of the honest NTP requests answered in time.
    pub ntp_served: f64,
    /// Median and 99th percentile of their round-trip times, us.
    pub ntp_us: f64,
    pub ntp_p99_us: f64,
    /// Server CPU use over the run, in cores.
    pub cores: f64,
    /// The attack's successes per second (exchanges, server flights,
    /// flood replies; slowloris and ke-garbage: connections the server
    /// ended).
    pub attack_rate: f64,
    /// Slowloris: how long the oldest connection still open at the end
    /// of the run had been open, seconds (the server's timeout, if it
    /// keeps one).
    pub oldest_s: f64,
    /// ke-garbage: the median time from the first garbage byte to the
    /// server ending the connection, ms, and the connections it still
    /// held after the attacker's 2 s wait.
    pub garbage_ms: f64,
    pub outlasted: f64,
    /// Slowloris: share of the first connections the server closed
    /// within the run, and their median lifetime in seconds.
    pub first_closed: f64,
    pub lifetime_s: f64,
}

/// Runs the section and prints its table.
pub fn section(args: &Args, setup: &Setup, cores: usize) {
    let (server_cpu, gen_cpu) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let plan = Plan {
        flood_clients: args.attack_clients,
        slow_clients: args.slow_clients,
        trickle: Duration::from_secs_f64(args.trickle),
        flood_threads: args.threads,
        flood_addresses: args.flood_addresses,
        cpu: gen_cpu,
    };
    let chosen: Vec<(&str, Scenario)> = SCENARIOS
        .into_iter()
        .filter(|(name, _)| args.attacks.iter().any(|a| a == name))
        .collect();
    let launch = Launch {
        cpu: server_cpu,
        callgrind: None,
    };
    let running: Vec<Server> = crate::chosen_servers(args)
        .map(|k| Server::start(k, setup, &launch))
        .collect();
    let mut series: Vec<Series<Outcome>> = chosen.iter().map(|_| Series::default()).collect();
    let started = Instant::now();
    for round in 0..args.rounds {
        for i in 0..running.len() {
            let s = &running[(i + round) % running.len()];
            for (n, (name, scenario)) in chosen.iter().enumerate() {
                let seconds = if *scenario == Scenario::Under(Attack::Slowloris) {
                    args.slowloris_seconds
                } else {
                    args.seconds
                };
                let o = run(s, setup, *scenario, plan, seconds, args.honest_timeout);
                eprintln!(
                    "round {} {:<9} {name:<12} KE {:.2} ok {:.1} ms | NTP {:.3} served {:.0}/{:.0} us | cores {:.2} | attack {:.0}/s oldest {:.1} s first closed {:.2} after {:.1} s | garbage ended after {:.1} ms, {:.0} outlasted",
                    round + 1,
                    s.kind.name(),
                    o.ke_ok,
                    o.ke_ms,
                    o.ntp_served,
                    o.ntp_us,
                    o.ntp_p99_us,
                    o.cores,
                    o.attack_rate,
                    o.oldest_s,
                    o.first_closed,
                    o.lifetime_s,
                    o.garbage_ms,
                    o.outlasted
                );
                series[n].push(s.kind, o);
            }
        }
    }
    print(args, &chosen, &series, started.elapsed());
}

/// One run: `scenario` against `s` for `seconds` while the honest
/// clients measure.
fn run(
    s: &Server,
    setup: &Setup,
    scenario: Scenario,
    plan: Plan,
    seconds: f64,
    timeout: f64,
) -> Outcome {
    let attack = match scenario {
        Scenario::Quiet => None,
        Scenario::Under(a) => Some(attackers::start(a, plan, s.ntp, s.ke, &setup.tls)),
    };
    // Let the attack ramp up: the slow connections all open, the floods
    // reach their pace.
    match (&attack, scenario) {
        (Some(a), Scenario::Under(Attack::Slowloris)) => {
            let _ = wait_until(Duration::from_secs(3), || {
                (a.stats.open.load(Ordering::Relaxed) >= plan.slow_clients as u64).then_some(())
            });
        }
        (Some(_), _) => std::thread::sleep(Duration::from_millis(300)),
        (None, _) => {}
    }
    let done0 = attack
        .as_ref()
        .map_or(0, |a| a.stats.done.load(Ordering::Relaxed));
    let closed0 = attack
        .as_ref()
        .map_or(0, |a| a.stats.closed.load(Ordering::Relaxed));
    let outlasted0 = attack
        .as_ref()
        .map_or(0, |a| a.stats.outlasted.load(Ordering::Relaxed));
    let cpu0 = tree_cpu_seconds(s.pid());
    let start = Instant::now();
    let timeout = Duration::from_secs_f64(timeout);
    let h = honest::run(s.ntp, s.ke, &setup.tls, seconds, timeout, plan.cpu);
    // The honest clients wait up to a timeout for their last answers.
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = tree_cpu_seconds(s.pid()) - cpu0;
    let mut o = Outcome {
        ke_ok: h.ke_ok as f64 / h.ke_tried.max(1) as f64,
        ke_ms: median(h.ke_ms.clone()),
        ntp_served: h.ntp_rtt_us.len() as f64 / h.ntp_sent.max(1) as f64,
        ntp_us: median(h.ntp_rtt_us.clone()),
        ntp_p99_us: percentile(h.ntp_rtt_us, 0.99),
        cores: cpu / elapsed,
        ..Outcome::default()
    };
    if let Some(a) = attack {
        let st = &a.stats;
        let rate = |now: u64, then: u64| (now - then) as f64 / elapsed;
        if scenario == Scenario::Under(Attack::Slowloris) {
            o.attack_rate = rate(st.closed.load(Ordering::Relaxed), closed0);
            o.oldest_s = st.oldest_open().as_secs_f64();
            let lives = st
                .first_lifetimes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            o.first_closed = lives.len() as f64 / plan.slow_clients.max(1) as f64;
            o.lifetime_s = median(lives);
        } else {
            o.attack_rate = rate(st.done.load(Ordering::Relaxed), done0);
        }
        if scenario == Scenario::Under(Attack::KeGarbage) {
            let ended = st.ended_after.lock().unwrap_or_else(|e| e.into_inner());
            o.garbage_ms = median(ended.clone()) * 1e3;
            o.outlasted = (st.outlasted.load(Ordering::Relaxed) - outlasted0) as f64;
        }
        a.stop();
    }
    // The next run starts on a server that serves again.
    let _ = wait_until(Duration::from_secs(10), || {
        skytime_tests::nts_client::key_exchange(s.ke, "localhost", &setup.tls).ok()
    });
    o
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p).ceil() as usize).saturating_sub(1);
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn print(args: &Args, chosen: &[(&str, Scenario)], series: &[Series<Outcome>], took: Duration) {
    println!();
    println!(
        "attack: honest clients (2 NTS-KE clients, an exchange every 100 ms each; plain NTP every 10 ms; {} s timeout) with each server on CPU 0, attackers (nice 19) and honest clients on CPU 1; median [range] of {} rounds, {:.0} s in all",
        args.honest_timeout,
        args.rounds,
        took.as_secs_f64()
    );
    println!(
        "  ke-flood, hello-flood and ke-garbage: {} clients; slowloris: {} connections, a byte every {} s, {} s; ntp-flood: {} threads from {} addresses",
        args.attack_clients,
        args.slow_clients,
        args.trickle,
        args.slowloris_seconds,
        args.threads,
        args.flood_addresses
    );
    println!(
        "{:<30}{:>26}{:>26}{:>26}{:>9}",
        "", "skytimed", "chronyd", "ntpd-rs", "sky/best"
    );
    for ((name, scenario), s) in chosen.iter().zip(series) {
        row(&format!("{name}: KE ok"), s, |o| o.ke_ok, 2, true);
        row(&format!("{name}: KE median ms"), s, |o| o.ke_ms, 1, false);
        row(&format!("{name}: NTP served"), s, |o| o.ntp_served, 3, true);
        row(&format!("{name}: NTP median us"), s, |o| o.ntp_us, 0, false);
        row(
            &format!("{name}: NTP p99 us"),
            s,
            |o| o.ntp_p99_us,
            0,
            false,
        );
        row(&format!("{name}: server cores"), s, |o| o.cores, 2, false);
        match scenario {
            Scenario::Quiet => {}
            Scenario::Under(Attack::Slowloris) => {
                row(
                    &format!("{name}: oldest open at end s"),
                    s,
                    |o| o.oldest_s,
                    1,
                    false,
                );
                row(&format!("{name}: closed/s"), s, |o| o.attack_rate, 0, true);
                row(
                    &format!("{name}: first closed"),
                    s,
                    |o| o.first_closed,
                    2,
                    true,
                );
                row(
                    &format!("{name}: their life s"),
                    s,
                    |o| o.lifetime_s,
                    1,
                    false,
                );
            }
            Scenario::Under(Attack::KeGarbage) => {
                row(
                    &format!("{name}: ended by server/s"),
                    s,
                    |o| o.attack_rate,
                    0,
                    true,
                );
                row(
                    &format!("{name}: ended after ms"),
                    s,
                    |o| o.garbage_ms,
                    1,
                    false,
                );
                row(
                    &format!("{name}: outlasted 2 s"),
                    s,
                    |o| o.outlasted,
                    0,
                    false,
                );
            }
            Scenario::Under(Attack::NtpFlood) => {
                row(
                    &format!("{name}: flood replies/s"),
                    s,
                    |o| o.attack_rate,
                    0,
                    true,
                );
            }
            Scenario::Under(_) => {
                row(
                    &format!("{name}: attacks served/s"),
                    s,
                    |o| o.attack_rate,
                    0,
                    true,
                );
            }
        }
    }
}
