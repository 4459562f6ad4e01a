//! The operator's side over the private D-Bus: tracking read four times a
//! second for the synchronization check, the server statistics every two
//! seconds for counters that go backwards, and the writes an operator
//! makes (key rotations, configuration applies, certificate installs,
//! reloads) through skytimectl.

use crate::checks::{backwards, counters, Reading, SyncClaims};
use skytime_tests::dbus::{ctl, PrivateBus};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const READ_EVERY: Duration = Duration::from_millis(250);
/// Statistics every this many tracking readings.
const STATS_EVERY: u64 = 8;
/// So a statistics snapshot (and a task count) this often.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);
const _: () = assert!(READ_EVERY.as_millis() * STATS_EVERY as u128 == STATS_INTERVAL.as_millis());
/// One operator write this often, in turn: rotate, apply, install, reload.
const WRITE_EVERY: Duration = Duration::from_secs(5);
/// A D-Bus read that takes longer than this is an error.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// What the reader counted.
#[derive(Debug, Default)]
pub struct Reads {
    pub readings: u64,
    pub synchronized: u64,
    pub snapshots: u64,
    pub first: BTreeMap<String, u64>,
    pub last: BTreeMap<String, u64>,
    pub backwards: Vec<String>,
    pub errors: Vec<String>,
    /// The daemon's tasks alive, from each snapshot.
    pub tasks: Vec<u64>,
}

/// Reads tracking and statistics from skytimed on `bus` until stopped.
pub fn read(
    bus: &PrivateBus,
    start: Instant,
    stop: &AtomicBool,
    claims: &Mutex<SyncClaims>,
) -> Reads {
    let mut r = Reads::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let conn: zbus::Result<zbus::Connection> = async {
            zbus::connection::Builder::address(bus.address.as_str())?
                .build()
                .await
        }
        .await;
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                r.errors.push(format!("connect to the bus: {e}"));
                return;
            }
        };
        let mut next = Instant::now();
        let secs = |t: Instant| (t - start).as_secs_f64();
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            let tracking =
                tokio::time::timeout(CALL_LIMIT, skytime_api::client::tracking(&conn)).await;
            let t1 = Instant::now();
            match tracking {
                Ok(Ok(t)) => {
                    r.readings += 1;
                    r.synchronized += u64::from(t.synchronized);
                    claims.lock().unwrap().reading(Reading {
                        start: secs(t0),
                        end: secs(t1),
                        synchronized: t.synchronized,
                    });
                }
                Ok(Err(e)) => r.errors.push(format!("{:.1} s: tracking: {e}", secs(t0))),
                Err(_) => r
                    .errors
                    .push(format!("{:.1} s: tracking timed out", secs(t0))),
            }
            if r.readings % STATS_EVERY == 0 {
                statistics(&conn, &mut r, secs(t0)).await;
            }
            next += READ_EVERY;
            let now = Instant::now();
            next = next.max(now);
            tokio::time::sleep(next - now).await;
        }
        // The last word on the counters, after the clients stopped.
        statistics(&conn, &mut r, secs(Instant::now())).await;
    });
    r
}

async fn statistics(conn: &zbus::Connection, r: &mut Reads, at: f64) {
    let call = async {
        skytime_api::client::ServerProxy::new(conn)
            .await?
            .get_statistics()
            .await
    };
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(Ok(s)) => {
            let now = counters(&s);
            if r.snapshots == 0 {
                r.first = now.clone();
            }
            for b in backwards(&r.last, &now) {
                r.backwards.push(format!("{at:.1} s: {b}"));
            }
            r.snapshots += 1;
            r.last = now;
            r.tasks.push(s.tasks_alive);
        }
        Ok(Err(e)) => r.errors.push(format!("{at:.1} s: statistics: {e}")),
        Err(_) => r.errors.push(format!("{at:.1} s: statistics timed out")),
    }
}

/// What the operator did.
#[derive(Debug, Default)]
pub struct Writes {
    pub rotations: u64,
    pub applies: u64,
    pub installs: u64,
    pub reloads: u64,
    pub failures: Vec<String>,
}

/// Writes over D-Bus in turn until stopped: a master key rotation, a
/// configuration apply (`configs` alternately), a certificate install
/// (`certs`, pairs of certificate and key files, alternately), a reload.
pub fn write(
    bus: &PrivateBus,
    start: Instant,
    stop: &AtomicBool,
    configs: &[&Path; 2],
    certs: &[(&Path, &Path); 2],
) -> Writes {
    let mut w = Writes::default();
    let mut next = Instant::now() + WRITE_EVERY;
    for i in 0u64.. {
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                return w;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        next += WRITE_EVERY;
        let turn = (i / 4) as usize % 2;
        let (args, counter): (Vec<String>, &mut u64) = match i % 4 {
            0 => (vec!["keys".into(), "rotate".into()], &mut w.rotations),
            1 => (
                vec![
                    "config".into(),
                    "apply".into(),
                    configs[turn].display().to_string(),
                ],
                &mut w.applies,
            ),
            2 => (
                vec![
                    "certificate".into(),
                    "install".into(),
                    certs[turn].0.display().to_string(),
                    certs[turn].1.display().to_string(),
                ],
                &mut w.installs,
            ),
            _ => (vec!["config".into(), "reload".into()], &mut w.reloads),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = ctl(bus, None, &args);
        if r.ok() {
            *counter += 1;
        } else {
            w.failures.push(format!(
                "{:.1} s: skytimectl {}: {}",
                (Instant::now() - start).as_secs_f64(),
                args.join(" "),
                r.all()
            ));
        }
    }
    w
}
