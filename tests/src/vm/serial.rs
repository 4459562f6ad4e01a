//! Serial lines into the guest: host ptys whose slave side QEMU opens as
//! one of the guest's serial ports. [`SerialGate`] relays the GPS
//! simulator's NMEA and can cut it; [`SecondTicker`] sends a mark at each
//! second of the host clock, which a helper in the guest turns into edges
//! on a GPIO line (the PPS wire).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A raw pty: the master (non-blocking, for the test) and the slave's
/// path (for QEMU). The slave stays open here so that the line does not
/// hang up between QEMU's opens.
#[derive(Debug)]
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn open() -> Self {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and
        // window-size pointers may be null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors we now own.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // A guest that stops reading must not block the writer: excess
        // bytes are dropped, as on a real line.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        make_raw(slave.as_raw_fd());
        let path = fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        Self {
            master,
            slave,
            path,
        }
    }
}

/// A thread writing into a fresh pty's master until dropped; QEMU opens
/// the slave.
#[derive(Debug)]
struct Feeder {
    device: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _slave: OwnedFd,
}

impl Feeder {
    /// Runs `body(master, stop)` on its own thread; `body` returns soon
    /// after `stop` turns true.
    fn spawn(body: impl FnOnce(fs::File, &AtomicBool) + Send + 'static) -> Self {
        let pty = Pty::open();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let master = fs::File::from(pty.master);
        let thread = std::thread::spawn(move || body(master, &st));
        Self {
            device: pty.path,
            stop,
            thread: Some(thread),
            _slave: pty.slave,
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A serial line the test can switch on: bytes from `source` (a serial
/// device such as the GPS simulator's pty) are copied, as they come, to a
/// new pty whose slave [`SerialGate::device`] QEMU opens, but only while
/// the gate is open; while it is closed they are read and dropped, like a
/// receiver whose cable is unplugged. Stopped on drop.
#[derive(Debug)]
pub struct SerialGate {
    open: Arc<AtomicBool>,
    feeder: Feeder,
}

impl SerialGate {
    /// Starts copying from `source` (closed gate).
    pub fn new(source: &Path) -> Self {
        let mut input = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(source)
            .unwrap_or_else(|e| panic!("open {}: {e}", source.display()));
        make_raw(input.as_raw_fd());
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        let feeder = Feeder::spawn(move |mut output, stop| {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::SeqCst) {
                let mut pfd = libc::pollfd {
                    fd: input.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                match input.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(n) => {
                        if o.load(Ordering::SeqCst) {
                            let _ = output.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Self { open, feeder }
    }

    /// The pty QEMU should open.
    pub fn device(&self) -> &Path {
        &self.feeder.device
    }

    /// Lets bytes through (true) or drops them (false).
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

/// A pulse per second of the host clock, as bytes on a serial line: at
/// each whole second of CLOCK_REALTIME (read only; the GPS simulator's
/// truth too) it writes [`SecondTicker::RISE`] to a pty, and
/// [`SecondTicker::FALL`] [`SecondTicker::WIDTH`] later. QEMU connects the
/// pty to a guest serial port; a helper in the guest drives a GPIO line
/// with it, so the guest's kernel timestamps a real edge at the second the
/// NMEA sentences name (late by the line's latency, like a cable delay).
/// Ticks can be paused, as a receiver's PPS output stops. Stopped on drop.
#[derive(Debug)]
pub struct SecondTicker {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    feeder: Feeder,
}

impl SecondTicker {
    /// The line that starts a pulse (at the second).
    pub const RISE: &'static [u8] = b"H\n";
    /// The line that ends it.
    pub const FALL: &'static [u8] = b"L\n";
    /// Pulse width: a GPS receiver's pulse lasts 1-200 ms.
    pub const WIDTH: Duration = Duration::from_millis(200);

    /// Starts the line, sending pulses if `running`.
    pub fn new(running: bool) -> Self {
        let running = Arc::new(AtomicBool::new(running));
        let sent = Arc::new(AtomicU64::new(0));
        let (run, count) = (running.clone(), sent.clone());
        let feeder = Feeder::spawn(move |mut line, stop| {
            let mut discard = [0u8; 256];
            while !stop.load(Ordering::SeqCst) {
                let second = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 1;
                sleep_until_realtime(Duration::from_secs(second));
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let on = run.load(Ordering::SeqCst);
                if on && line.write_all(Self::RISE).is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                sleep_until_realtime(Duration::from_secs(second) + Self::WIDTH);
                if on {
                    let _ = line.write_all(Self::FALL);
                }
                // Whatever the guest echoed before it set its line raw.
                while matches!(line.read(&mut discard), Ok(n) if n > 0) {}
            }
        });
        Self {
            running,
            sent,
            feeder,
        }
    }

    /// The pty QEMU should open.
    pub fn device(&self) -> &Path {
        &self.feeder.device
    }

    /// Sends pulses (true) or stays silent (false).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    /// Pulses sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// Sleeps until CLOCK_REALTIME reaches `at` (since the Unix epoch).
fn sleep_until_realtime(at: Duration) {
    let ts = libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as libc::c_long,
    };
    // An absolute sleep on the clock itself: no drift from computing
    // intervals, and a step of the host clock (never done here) would not
    // leave it sleeping for the old interval.
    // SAFETY: ts is a valid timespec; the remainder may be null for
    // absolute sleeps.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_REALTIME,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

/// Raw mode (no echo, no line editing, no translation) on a tty.
fn make_raw(fd: i32) {
    // SAFETY: termios is plain old data; fd is a valid open tty.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}
