//! systemd integration: readiness, a one-line status and a watchdog that
//! only pets systemd while the daemon's main loops are healthy.
//!
//! The protocol is sd_notify(3): datagrams of `KEY=VALUE` lines to the
//! Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). It is a few lines, so it is done here with std
//! rather than through a crate; that also lets tests aim a [`Notifier`]
//! at a socket of their own.
//!
//! Health: every main loop registers with [`Health::register`] and calls
//! [`Beat::beat`] at least once per `max_silence` (idle loops add a timer
//! arm to their `select!`). [`spawn_watchdog_thread`] sends `WATCHDOG=1` only while
//! no registered loop is silent for longer than it promised, so a wedged
//! source or a stuck task stops the pings and systemd restarts the daemon.
//!
//! The daemon registers `ntp` (each NTP socket loop), `dbus` (the D-Bus
//! change poller), and `clock` and `refclock`, which a watcher beats while
//! the discipline and the reference-clock manager publish fresh snapshots.
//!
//! Test-only trigger: `SKYTIME_TEST_HANG=<loop>:<seconds>` in the
//! environment makes the loop registered as `<loop>` block its thread for
//! good in its first `beat()` after `<seconds>` (for `clock` and
//! `refclock`, that is the watcher). It exists so that system tests can
//! prove the watchdog stops, and only in builds with the `test-hooks`
//! feature (which the tests crate turns on; the image's release build
//! does not, so the appliance ignores the variable).

use skytime_api::{ApplianceBackend, TrackingReport};
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Environment variable of the test-only hang trigger.
#[cfg(feature = "test-hooks")]
pub const TEST_HANG_ENV: &str = "SKYTIME_TEST_HANG";

/// Sends sd_notify messages; does nothing when not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier systemd asked for (`NOTIFY_SOCKET`), or a silent one.
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) => match Self::to_socket(&name.to_string_lossy()) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(
                        "NOTIFY_SOCKET={}: {e}; systemd will not hear from skytimed",
                        name.to_string_lossy()
                    );
                    Self::disabled()
                }
            },
            None => Self::disabled(),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// A notifier sending to `name` (a path, or `@name` for an abstract
    /// socket).
    pub fn to_socket(name: &str) -> io::Result<Self> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else {
            SocketAddr::from_pathname(name)?
        };
        Ok(Self {
            target: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: call once the sockets are bound and the bus name owned.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STATUS=`: one line; newlines are replaced.
    pub fn status(&self, line: &str) {
        self.send(&format!("STATUS={}", line.replace('\n', " ")));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, msg: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("sd_notify {msg}: {e}");
            }
        }
    }
}

/// The watchdog interval systemd wants (`WATCHDOG_USEC`, for this process
/// when `WATCHDOG_PID` is set), or `None` when there is no watchdog.
pub fn watchdog_timeout_from_env() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The registry of main loops the watchdog vouches for.
#[derive(Clone, Debug)]
pub struct Health {
    start: Instant,
    loops: Arc<Mutex<Vec<Registered>>>,
    hang: Option<(String, Duration)>,
}

#[derive(Debug)]
struct Registered {
    name: String,
    max_silence_ms: u64,
    last_ms: Arc<AtomicU64>,
}

/// A loop's heartbeat.
#[derive(Debug)]
pub struct Beat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    hang_after: Option<Duration>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// A registry (with `test-hooks`: reads the `SKYTIME_TEST_HANG`
    /// trigger).
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            loops: Arc::default(),
            hang: test_hang(),
        }
    }

    /// Registers loop `name`, which promises to beat at least every
    /// `max_silence`.
    pub fn register(&self, name: &str, max_silence: Duration) -> Beat {
        let last_ms = Arc::new(AtomicU64::new(self.now_ms()));
        if let Ok(mut loops) = self.loops.lock() {
            loops.push(Registered {
                name: name.to_owned(),
                max_silence_ms: max_silence.as_millis() as u64,
                last_ms: last_ms.clone(),
            });
        }
        let hang_after = self
            .hang
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| *d);
        Beat {
            start: self.start,
            last_ms,
            hang_after,
        }
    }

    /// Loops silent for longer than they promised.
    pub fn stale(&self) -> Vec<String> {
        let now = self.now_ms();
        self.loops
            .lock()
            .map(|loops| {
                loops
                    .iter()
                    .filter(|l| {
                        now.saturating_sub(l.last_ms.load(Ordering::Relaxed)) > l.max_silence_ms
                    })
                    .map(|l| l.name.clone())
                    .collect()
            })
            .unwrap_or_else(|_| vec!["health registry".to_owned()])
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// The loop to hang and when, from [`TEST_HANG_ENV`].
#[cfg(feature = "test-hooks")]
fn test_hang() -> Option<(String, Duration)> {
    std::env::var(TEST_HANG_ENV).ok().and_then(|v| {
        let (name, secs) = v.split_once(':')?;
        let secs: f64 = secs.parse().ok()?;
        tracing::warn!(
            "{TEST_HANG_ENV} is set: loop '{name}' will hang after {secs} s (test only)"
        );
        Some((name.to_owned(), Duration::from_secs_f64(secs.max(0.0))))
    })
}

/// Without `test-hooks` (the appliance): no loop is ever made to hang.
#[cfg(not(feature = "test-hooks"))]
fn test_hang() -> Option<(String, Duration)> {
    None
}

impl Beat {
    /// "This loop is alive".
    pub fn beat(&self) {
        let now = self.start.elapsed();
        #[cfg(feature = "test-hooks")]
        if let Some(after) = self.hang_after {
            if now >= after {
                tracing::warn!("{TEST_HANG_ENV}: this loop hangs now (test only)");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
        self.last_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Pets systemd every `timeout / 2` while every registered loop is
/// healthy, and stops (saying which loop is stuck) when one is not. It
/// runs on an OS thread of its own, not as a task: a loop that wedges a
/// runtime worker thread (a blocking driver call) can delay the tasks
/// queued behind it, and the watchdog must still notice and name the loop
/// rather than go quiet with it.
pub fn spawn_watchdog_thread(
    notifier: Arc<Notifier>,
    health: Health,
    timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("skytimed-watchdog".into())
        .spawn(move || {
            let period = timeout / 2;
            let mut next = Instant::now();
            let mut was_healthy = true;
            while !shutdown.is_cancelled() {
                let now = Instant::now();
                if now < next {
                    // Short naps so that shutdown is seen promptly.
                    std::thread::sleep((next - now).min(Duration::from_millis(100)));
                    continue;
                }
                next = (next + period).max(now);
                was_healthy = watchdog_tick(&notifier, &health, was_healthy);
            }
        })
}

/// One watchdog period: ping if every loop is healthy, else log (once per
/// episode) which loops are not. Returns whether all were healthy.
fn watchdog_tick(notifier: &Notifier, health: &Health, was_healthy: bool) -> bool {
    let stale = health.stale();
    if stale.is_empty() {
        notifier.watchdog();
        if !was_healthy {
            tracing::info!("watchdog: all loops healthy again");
        }
        true
    } else {
        if was_healthy {
            tracing::error!(loops = ?stale, "watchdog: loops stopped beating; no more WATCHDOG=1, systemd will restart skytimed");
        }
        false
    }
}

/// The one-line status: "stratum 1, PPS, offset +12 ns, 3 clients".
pub fn status_line(t: &TrackingReport, clients: usize) -> String {
    let source = if !t.synchronized {
        "unsynchronised".to_owned()
    } else if t.reference_name.is_empty() {
        t.reference_id.clone()
    } else {
        t.reference_name.clone()
    };
    let plural = if clients == 1 { "" } else { "s" };
    format!(
        "stratum {}, {source}, offset {}, {clients} client{plural}",
        t.stratum,
        format_offset(t.system_time_offset)
    )
}

/// Seconds as a signed value with a readable unit (ns, µs, ms, s).
pub fn format_offset(seconds: f64) -> String {
    let sign = if seconds < 0.0 { '-' } else { '+' };
    let a = seconds.abs();
    let (v, unit) = if a < 1e-6 {
        (a * 1e9, "ns")
    } else if a < 1e-3 {
        (a * 1e6, "us")
    } else if a < 1.0 {
        (a * 1e3, "ms")
    } else {
        (a, "s")
    };
    format!("{sign}{v:.0} {unit}")
}

/// Keeps STATUS= current (checked every `every`, sent when it changes).
pub async fn run_status(
    notifier: Arc<Notifier>,
    backend: Arc<dyn ApplianceBackend>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last = String::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let line = status_line(&backend.tracking(), backend.client_count());
        if line != last {
            notifier.status(&line);
            last = line;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_reads_like_the_spec() {
        let t = TrackingReport {
            stratum: 1,
            reference_id: "PPS".into(),
            synchronized: true,
            system_time_offset: 12e-9,
            ..Default::default()
        };
        assert_eq!(
            status_line(&t, 3),
            "stratum 1, PPS, offset +12 ns, 3 clients"
        );
        let t = TrackingReport {
            stratum: 16,
            system_time_offset: -0.0026,
            ..Default::default()
        };
        assert_eq!(
            status_line(&t, 1),
            "stratum 16, unsynchronised, offset -3 ms, 1 client"
        );
    }

    #[test]
    fn silent_loop_is_stale_and_beating_one_is_not() {
        let h = Health {
            start: Instant::now(),
            loops: Arc::default(),
            hang: None,
        };
        let a = h.register("a", Duration::from_millis(0));
        let _b = h.register("b", Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(h.stale(), vec!["a".to_owned()]);
        drop(a);
        let h2 = Health {
            start: Instant::now(),
            loops: Arc::default(),
            hang: None,
        };
        let c = h2.register("c", Duration::from_secs(3600));
        c.beat();
        assert!(h2.stale().is_empty());
    }

    #[test]
    fn notifier_sends_datagrams_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::to_socket(path.to_str().unwrap()).unwrap();
        n.ready();
        n.status("a\nb");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=a b");
    }
}
