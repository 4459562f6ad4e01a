//! Device readers: the NMEA serial port, kernel PPS (/dev/ppsN, through
//! [`pps_uapi`]) and a GPIO line (GPIO character device, v2 events,
//! through [`gpio_uapi`]). Each runs on its own blocking thread,
//! timestamps what it reads with CLOCK_REALTIME (the kernel's own
//! timestamps for pulses) and sends events to the source manager. A device that disappears or fails is reported
//! down and reopened with exponential backoff until shutdown.

use super::config::Edge;
use super::gpio_uapi::{self, GpioV2LineEvent, GpioV2LineRequest};
use super::pps_uapi::{self, PpsEdge, PpsFdata, PpsKparams, PpsKtime};
use crate::clock::now;
use skytime_proto::NtpTimestamp;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the device threads report.
#[derive(Debug)]
pub enum DeviceEvent {
    /// Bytes read from the serial port and the time the read returned.
    Serial(Vec<u8>, NtpTimestamp),
    SerialUp,
    SerialDown(String),
    /// A pulse edge at local time `local`; `missed` pulses went uncounted
    /// before it (from the kernel's sequence numbers).
    Pulse {
        local: NtpTimestamp,
        missed: u32,
    },
    PpsUp,
    PpsDown(String),
}

type Tx = mpsc::Sender<DeviceEvent>;

/// Sleeps `delay` in short steps; false if shutdown came first.
fn pause(delay: Duration, stop: &CancellationToken) -> bool {
    let end = std::time::Instant::now() + delay;
    while std::time::Instant::now() < end {
        if stop.is_cancelled() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - std::time::Instant::now()));
    }
    !stop.is_cancelled()
}

/// How a device session ended.
#[derive(Debug)]
struct Ended {
    message: String,
    /// The device had been opened (so this is a loss, not a failed open).
    was_open: bool,
}

fn open_failed(message: String) -> Ended {
    Ended {
        message,
        was_open: false,
    }
}

fn lost(message: String) -> Ended {
    Ended {
        message,
        was_open: true,
    }
}

/// Runs `session` again and again, with backoff between attempts. A lost
/// device is always logged and retried soon; failed opens are logged once.
fn reopen_loop(
    name: &str,
    max_backoff: f64,
    stop: &CancellationToken,
    tx: &Tx,
    mut session: impl FnMut() -> Result<(), Ended>,
    down: impl Fn(String) -> DeviceEvent,
) {
    let mut backoff = 0.5f64;
    let mut warned = false;
    while !stop.is_cancelled() {
        match session() {
            Ok(()) => return,
            Err(e) => {
                if e.was_open {
                    tracing::warn!("{name}: lost: {}; reopening", e.message);
                    backoff = 0.5;
                    warned = true;
                } else if !warned {
                    tracing::warn!("{name}: {}; retrying with backoff", e.message);
                    warned = true;
                } else {
                    tracing::debug!("{name}: {}", e.message);
                }
                if tx.blocking_send(down(e.message)).is_err() {
                    return;
                }
            }
        }
        if !pause(Duration::from_secs_f64(backoff), stop) {
            return;
        }
        backoff = (backoff * 2.0).min(max_backoff.max(0.5));
    }
}

/// Reads NMEA from `path` until shutdown.
pub fn spawn_serial(
    path: PathBuf,
    baud: u32,
    max_backoff: f64,
    tx: Tx,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gps-serial".into())
        .spawn(move || {
            let name = format!("NMEA serial {}", path.display());
            reopen_loop(
                &name,
                max_backoff,
                &stop,
                &tx,
                || serial_session(&path, baud, &tx, &stop),
                DeviceEvent::SerialDown,
            );
        })
}

fn serial_session(path: &Path, baud: u32, tx: &Tx, stop: &CancellationToken) -> Result<(), Ended> {
    use serialport::SerialPort;
    let mut port = serialport::new(path.to_string_lossy(), baud)
        .timeout(Duration::from_millis(500))
        .open_native()
        .map_err(|e| open_failed(format!("cannot open: {e}")))?;
    port.set_exclusive(true)
        .map_err(|e| open_failed(format!("cannot get exclusive use (is gpsd running?): {e}")))?;
    // Bytes that waited in the buffer have no usable arrival time.
    let _ = port.clear(serialport::ClearBuffer::Input);
    tracing::info!("NMEA serial {} open at {baud} baud", path.display());
    if tx.blocking_send(DeviceEvent::SerialUp).is_err() {
        return Ok(());
    }
    let mut buf = [0u8; 256];
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        match port.read(&mut buf) {
            Ok(0) => return Err(lost("device closed (end of file)".into())),
            Ok(n) => {
                let at = now();
                if tx
                    .blocking_send(DeviceEvent::Serial(buf[..n].to_vec(), at))
                    .is_err()
                {
                    return Ok(());
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(lost(format!("read failed: {e}"))),
        }
    }
}

/// Reads pulses from a kernel PPS device until shutdown.
pub fn spawn_kernel_pps(
    path: PathBuf,
    edge: Edge,
    max_backoff: f64,
    tx: Tx,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gps-pps".into())
        .spawn(move || {
            let name = format!("PPS {}", path.display());
            let edge = match edge {
                Edge::Assert => PpsEdge::Assert,
                Edge::Clear => PpsEdge::Clear,
            };
            reopen_loop(
                &name,
                max_backoff,
                &stop,
                &tx,
                || kernel_pps_session(&path, edge, &tx, &stop),
                DeviceEvent::PpsDown,
            );
        })
}

fn kernel_pps_session(
    path: &Path,
    edge: PpsEdge,
    tx: &Tx,
    stop: &CancellationToken,
) -> Result<(), Ended> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| open_failed(format!("cannot open: {e}")))?;
    let fd = file.as_raw_fd();
    let mut caps = 0i32;
    // SAFETY: caps outlives the call; fd is open.
    unsafe { pps_uapi::pps_getcap(fd, &mut caps) }
        .map_err(|e| open_failed(format!("not a PPS device (PPS_GETCAP): {e}")))?;
    if caps & edge.capture_mode() == 0 {
        return Err(open_failed(format!(
            "cannot capture the {edge:?} edge (capabilities {caps:#x})"
        )));
    }
    let mut params = PpsKparams::default();
    // SAFETY: params outlives the call.
    unsafe { pps_uapi::pps_getparams(fd, &mut params) }
        .map_err(|e| open_failed(format!("PPS_GETPARAMS: {e}")))?;
    params.api_version = pps_uapi::PPS_API_VERS_1;
    params.mode |= edge.capture_mode() | pps_uapi::PPS_TSFMT_TSPEC;
    // SAFETY: params is a valid pps_kparams.
    if let Err(e) = unsafe { pps_uapi::pps_setparams(fd, &params) } {
        // Read-only access still fetches, with the mode already set.
        tracing::warn!(
            "PPS {}: cannot set capture mode (PPS_SETPARAMS: {e}); using the current mode",
            path.display()
        );
    }
    tracing::info!("PPS {} open, capturing the {edge:?} edge", path.display());
    if tx.blocking_send(DeviceEvent::PpsUp).is_err() {
        return Ok(());
    }
    let mut last_seq: Option<u32> = None;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let mut data = PpsFdata {
            timeout: PpsKtime {
                sec: 1,
                nsec: 0,
                flags: 0,
            },
            ..Default::default()
        };
        // SAFETY: data is a valid pps_fdata for the call.
        match unsafe { pps_uapi::pps_fetch(fd, &mut data) } {
            Ok(_) => {}
            Err(nix::errno::Errno::ETIMEDOUT) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(lost(format!("PPS_FETCH: {e}"))),
        }
        let (seq, t) = edge.pick(&data.info);
        if seq == 0 || last_seq == Some(seq) {
            continue;
        }
        let missed = last_seq.map_or(0, |prev| pps_uapi::missed_between(prev, seq));
        last_seq = Some(seq);
        let local = NtpTimestamp::from_unix(t.sec, t.nsec.clamp(0, 999_999_999) as u32);
        if tx
            .blocking_send(DeviceEvent::Pulse { local, missed })
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Reads pulses from a GPIO line until shutdown.
pub fn spawn_gpio_pps(
    chip: PathBuf,
    line: u32,
    edge: Edge,
    max_backoff: f64,
    tx: Tx,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gps-gpio".into())
        .spawn(move || {
            let name = format!("PPS GPIO {} line {line}", chip.display());
            reopen_loop(
                &name,
                max_backoff,
                &stop,
                &tx,
                || gpio_session(&chip, line, edge, &tx, &stop),
                DeviceEvent::PpsDown,
            );
        })
}

fn gpio_session(
    chip: &Path,
    line: u32,
    edge: Edge,
    tx: &Tx,
    stop: &CancellationToken,
) -> Result<(), Ended> {
    let file = std::fs::File::open(chip).map_err(|e| open_failed(format!("cannot open: {e}")))?;
    let mut req = GpioV2LineRequest::pps_input(line, edge == Edge::Assert, "skytime-pps");
    // SAFETY: req is a valid gpio_v2_line_request for the call.
    unsafe { gpio_uapi::gpio_v2_get_line(file.as_raw_fd(), &mut req) }.map_err(|e| {
        open_failed(format!(
            "cannot request line {line} (GPIO_V2_GET_LINE_IOCTL): {e}"
        ))
    })?;
    if req.fd < 0 {
        return Err(open_failed("the kernel returned no line descriptor".into()));
    }
    // SAFETY: the kernel just gave us this descriptor; we own it now.
    let line_fd = unsafe { OwnedFd::from_raw_fd(req.fd) };
    let mut line_file = std::fs::File::from(line_fd);
    tracing::info!("PPS GPIO {} line {line} open", chip.display());
    if tx.blocking_send(DeviceEvent::PpsUp).is_err() {
        return Ok(());
    }
    let mut last_seq: Option<u32> = None;
    let mut buf = [0u8; 48];
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let mut pfd = libc::pollfd {
            fd: line_file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
        if n == 0 {
            continue;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(lost(format!("poll: {e}")));
        }
        line_file
            .read_exact(&mut buf)
            .map_err(|e| lost(format!("reading line events: {e}")))?;
        let ev = GpioV2LineEvent::from_bytes(&buf);
        let missed = last_seq.map_or(0, |prev| ev.line_seqno.wrapping_sub(prev).saturating_sub(1));
        last_seq = Some(ev.line_seqno);
        let (secs, nanos) = (
            (ev.timestamp_ns / 1_000_000_000) as i64,
            (ev.timestamp_ns % 1_000_000_000) as u32,
        );
        if tx
            .blocking_send(DeviceEvent::Pulse {
                local: NtpTimestamp::from_unix(secs, nanos),
                missed,
            })
            .is_err()
        {
            return Ok(());
        }
    }
}
