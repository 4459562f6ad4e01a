//! skytime-gpssim: a GPS receiver simulator for tests and `make demo`.
//!
//! It writes NMEA into a pseudo-terminal at the pace of a real serial line
//! (10 bits per character at `--baud`) and delivers the matching PPS edges
//! as chrony SOCK pulse samples to `--sock`, because a pty cannot raise a
//! kernel PPS event. Its true time is the host clock, which it only reads.
//!
//! Each second T (host clock) it:
//! 1. sends a pulse sample for the edge at T + jitter;
//! 2. at T + `--nmea-delay` starts writing the sentences that name T.
//!
//! It can acquire and lose the fix, send status-V sentences, garbage bytes,
//! wrong checksums, PPS gaps (NMEA going on) and glitches (a pulse off its
//! edge), a (fake) leap second, dates from a receiver that missed
//! a GPS week rollover (from the start, or from a given second), and
//! "unplug" (close the pty and come back later). It can also be spoofed:
//! from a given second its time (pulses and sentences alike) is off by a
//! fixed step, or drifts away at a fixed rate.
//! It stops after `--duration` seconds or on SIGTERM/SIGINT.

use clap::Parser;
use nix::sys::termios;
use skytime_refclock::gpstime::{civil_from_days, ROLLOVER_SECS};
use skytime_refclock::sentence::checksum;
use skytime_refclock::sock::{encode, pulse_offset_field, SockLeap};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// GPS receiver simulator: NMEA on a pty, PPS as SOCK samples.
#[derive(Debug, Parser)]
#[command(name = "skytime-gpssim", version, about)]
struct Cli {
    /// Make this path a symlink to the pty's slave device (replaced when
    /// the simulator comes back after an unplug; removed at exit).
    #[arg(long, value_name = "PATH")]
    pty_link: Option<PathBuf>,
    /// Send PPS edges as chrony SOCK pulse samples to this datagram socket.
    #[arg(long, value_name = "PATH")]
    sock: Option<PathBuf>,
    /// Serial speed: sentences are written at 10 bits per character.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Sentences sent every second, in order: any of rmc, gga, zda, gsa.
    #[arg(long, value_delimiter = ',', default_value = "rmc,gga,zda")]
    sentences: Vec<String>,
    /// Delay from the PPS edge to the first byte of the first sentence (s).
    #[arg(long, default_value_t = 0.4)]
    nmea_delay: f64,
    /// Uniform random spread added to the NMEA delay (+- seconds).
    #[arg(long, default_value_t = 0.002)]
    nmea_jitter: f64,
    /// Uniform random error of the PPS edge (+- seconds).
    #[arg(long, default_value_t = 0.000_001)]
    pps_jitter: f64,
    /// Seconds from start until the receiver has a fix (status V before).
    #[arg(long, default_value_t = 0)]
    fix_after: u64,
    /// Lose the fix at this many seconds after start ...
    #[arg(long)]
    lose_fix_at: Option<u64>,
    /// ... for this many seconds (PPS stops too).
    #[arg(long, default_value_t = 5)]
    lose_fix_for: u64,
    /// Stop sending NMEA (but keep PPS) from this second ...
    #[arg(long)]
    nmea_gap_at: Option<u64>,
    /// ... for this many seconds.
    #[arg(long, default_value_t = 5)]
    nmea_gap_for: u64,
    /// Send no pulse (NMEA goes on with a fix) from this second ...
    #[arg(long)]
    pps_gap_at: Option<u64>,
    /// ... for this many seconds.
    #[arg(long, default_value_t = 5)]
    pps_gap_for: u64,
    /// Send one pulse every N seconds --pps-glitch seconds off its true
    /// edge, as a noisy PPS line does (0: never); keep it below
    /// --nmea-delay.
    #[arg(long, default_value_t = 0)]
    pps_glitch_every: u64,
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pps_glitch: f64,
    /// Write a burst of binary garbage every N seconds (0: never).
    #[arg(long, default_value_t = 0)]
    garbage_every: u64,
    /// Corrupt the checksum of one sentence every N seconds (0: never).
    #[arg(long, default_value_t = 0)]
    bad_checksum_every: u64,
    /// Label the second at this many seconds after start 23:59:60 (a fake
    /// leap second: the daemon must not use that pulse).
    #[arg(long)]
    leap_at: Option<u64>,
    /// Report dates 1024 weeks early, like a receiver that missed a GPS
    /// week rollover.
    #[arg(long)]
    rollover: bool,
    /// ... or from this many seconds after start on (a rollover during
    /// the run).
    #[arg(long, value_name = "SECONDS")]
    rollover_at: Option<u64>,
    /// Spoofing: from this many seconds after start, the receiver's time
    /// is ahead of the truth by --spoof-step seconds (negative: behind) ...
    #[arg(long, value_name = "SECONDS")]
    spoof_step_at: Option<u64>,
    #[arg(long, default_value_t = 1.204, allow_negative_numbers = true)]
    spoof_step: f64,
    /// ... or drifts away from it at --spoof-drag-rate seconds per second
    /// (a slow drag-off, such as 0.00001).
    #[arg(long, value_name = "SECONDS")]
    spoof_drag_at: Option<u64>,
    #[arg(long, default_value_t = 10e-6, allow_negative_numbers = true)]
    spoof_drag_rate: f64,
    /// Unplug: close the pty this many seconds after start ...
    #[arg(long)]
    fail_after: Option<u64>,
    /// ... and come back with a new pty after this many seconds.
    #[arg(long, default_value_t = 5)]
    down_for: u64,
    /// Stop after this many seconds (0: run until SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Print the slave path on stdout when the pty is (re)created.
    #[arg(long)]
    print_path: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps until host time `t`, in short steps so a signal stops us soon.
/// Returns false if asked to stop.
fn sleep_until(t: f64) -> bool {
    loop {
        if STOP.load(Ordering::SeqCst) {
            return false;
        }
        let left = t - now_secs();
        if left <= 0.0 {
            return true;
        }
        std::thread::sleep(Duration::from_secs_f64(left.min(0.05)));
    }
}

/// xorshift64*: reproducible enough, no dependency.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-a, a].
    fn spread(&mut self, a: f64) -> f64 {
        (self.next_f64() * 2.0 - 1.0) * a
    }
}

struct Pty {
    master: File,
    _slave: OwnedFd,
    path: PathBuf,
}

fn open_pty(cli: &Cli) -> nix::Result<Pty> {
    let pty = nix::pty::openpty(None, None)?;
    // Raw mode: no echo back to us, no CR/LF translation.
    let mut t = termios::tcgetattr(pty.slave.as_fd())?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(pty.slave.as_fd(), termios::SetArg::TCSANOW, &t)?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
        .map_err(|_| nix::Error::ENOTTY)?;
    // Writes must never block: with nobody reading, bytes are lost, as on a real UART.
    let flags = nix::fcntl::fcntl(pty.master.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(pty.master.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    if let Some(link) = &cli.pty_link {
        let tmp = link.with_extension("tmp-link");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&path, &tmp).map_err(|_| nix::Error::EIO)?;
        std::fs::rename(&tmp, link).map_err(|_| nix::Error::EIO)?;
    }
    if cli.print_path {
        println!("{}", path.display());
    }
    eprintln!("skytime-gpssim: NMEA on {}", path.display());
    Ok(Pty {
        master: File::from(pty.master),
        _slave: pty.slave,
        path,
    })
}

fn sentence(body: &str) -> String {
    format!("${body}*{:02X}\r\n", checksum(body.as_bytes()))
}

/// How far the spoofed receiver's time is ahead of the truth at
/// `elapsed` seconds after start.
fn spoof_offset(cli: &Cli, elapsed: f64) -> f64 {
    let mut off = 0.0;
    if cli.spoof_step_at.is_some_and(|at| elapsed >= at as f64) {
        off += cli.spoof_step;
    }
    if let Some(at) = cli.spoof_drag_at.filter(|&at| elapsed >= at as f64) {
        off += (elapsed - at as f64) * cli.spoof_drag_rate;
    }
    off
}

/// The PPS line's fault at `elapsed` seconds after start: `None` in a
/// PPS gap (no pulse), else how far the pulse is off its edge (a glitch;
/// 0 for most pulses).
fn pps_fault(cli: &Cli, elapsed: u64) -> Option<f64> {
    if cli
        .pps_gap_at
        .is_some_and(|f| elapsed >= f && elapsed < f + cli.pps_gap_for)
    {
        return None;
    }
    let glitch = cli.pps_glitch_every > 0 && elapsed % cli.pps_glitch_every == 1;
    Some(if glitch { cli.pps_glitch } else { 0.0 })
}

/// The sentences that name second `unix` (UTC); `rolled`: the receiver
/// has missed a week rollover.
fn burst(cli: &Cli, unix: i64, fix: bool, leap: bool, bad_checksum: bool, rolled: bool) -> Vec<u8> {
    let date_secs = if cli.rollover || rolled {
        unix - ROLLOVER_SECS
    } else {
        unix
    };
    let (mut y, mut mo, mut d) = civil_from_days(date_secs.div_euclid(86_400));
    let sod = unix.rem_euclid(86_400);
    let (mut h, mut mi, mut s) = (sod / 3600, sod / 60 % 60, sod % 60);
    if leap {
        // 23:59:60 of the day before this second.
        (h, mi, s) = (23, 59, 60);
        (y, mo, d) = civil_from_days(date_secs.div_euclid(86_400) - 1);
    }
    let time = format!("{h:02}{mi:02}{s:02}.00");
    let yy = y.rem_euclid(100);
    let mut out = String::new();
    for kind in &cli.sentences {
        let body = match (kind.as_str(), fix) {
            ("rmc", true) => {
                format!("GPRMC,{time},A,4807.038,N,01131.000,E,0.02,31.66,{d:02}{mo:02}{yy:02},,,A")
            }
            ("rmc", false) => format!("GPRMC,{time},V,,,,,,,{d:02}{mo:02}{yy:02},,,N"),
            ("gga", true) => {
                format!("GPGGA,{time},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
            }
            ("gga", false) => format!("GPGGA,{time},,,,,0,00,99.99,,M,,M,,"),
            ("zda", _) => format!("GPZDA,{time},{d:02},{mo:02},{y:04},00,00"),
            ("gsa", true) => "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1".to_owned(),
            ("gsa", false) => "GPGSA,A,1,,,,,,,,,,,,,,,".to_owned(),
            _ => continue,
        };
        let mut line = sentence(&body);
        if bad_checksum && out.is_empty() {
            // Flip a data character, keep the old checksum.
            line.replace_range(7..8, if &line[7..8] == "9" { "8" } else { "9" });
        }
        out.push_str(&line);
    }
    out.into_bytes()
}

/// Writes `bytes` at the pace of the serial line. Returns false on stop.
fn paced_write(master: &mut File, bytes: &[u8], baud: u32) -> bool {
    let char_time = 10.0 / baud.max(1) as f64;
    // Chunks of about 2 ms keep timing realistic without a syscall per byte.
    let chunk = ((0.002 / char_time).ceil() as usize).max(1);
    let start = now_secs();
    for (i, part) in bytes.chunks(chunk).enumerate() {
        if !sleep_until(start + (i * chunk) as f64 * char_time) {
            return false;
        }
        // EAGAIN (nobody reading, buffer full) loses the bytes, like a UART.
        let _ = master.write(part);
    }
    true
}

fn main() {
    let cli = Cli::parse();
    if !cli
        .sentences
        .iter()
        .all(|s| matches!(s.as_str(), "rmc" | "gga" | "zda" | "gsa"))
    {
        eprintln!("skytime-gpssim: --sentences takes rmc, gga, zda and gsa");
        std::process::exit(2);
    }
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(sig, &action) } {
            eprintln!("skytime-gpssim: cannot install signal handler: {e}");
            std::process::exit(1);
        }
    }
    let mut pty = match open_pty(&cli) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("skytime-gpssim: cannot create a pseudo-terminal: {e}");
            std::process::exit(1);
        }
    };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skytime-gpssim: cannot create a datagram socket: {e}");
            std::process::exit(1);
        }
    };
    let mut rng = Rng(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1);
    let start = now_secs().floor() as i64 + 1;
    let mut second = start;
    let mut sent_pulses = 0u64;
    loop {
        let elapsed = (second - start) as u64;
        if cli.duration > 0 && elapsed >= cli.duration {
            break;
        }
        let unplugged = cli
            .fail_after
            .is_some_and(|f| elapsed >= f && elapsed < f + cli.down_for);
        if unplugged && pty.is_some() {
            let p = pty.take().expect("pty is open");
            eprintln!("skytime-gpssim: unplugged {}", p.path.display());
            if let Some(link) = &cli.pty_link {
                let _ = std::fs::remove_file(link);
            }
            drop(p);
        } else if !unplugged && pty.is_none() {
            match open_pty(&cli) {
                Ok(p) => pty = Some(p),
                Err(e) => eprintln!("skytime-gpssim: cannot recreate the pty: {e}"),
            }
        }
        let fix_lost = cli
            .lose_fix_at
            .is_some_and(|f| elapsed >= f && elapsed < f + cli.lose_fix_for);
        let fix = elapsed >= cli.fix_after && !fix_lost;
        let nmea_gap = cli
            .nmea_gap_at
            .is_some_and(|f| elapsed >= f && elapsed < f + cli.nmea_gap_for);
        let glitch = pps_fault(&cli, elapsed);

        // The PPS edge: a receiver without a fix gives no pulse. A spoofed
        // receiver begins its second `off` early (its time is ahead).
        let off = spoof_offset(&cli, elapsed as f64);
        let edge = second as f64 - off + rng.spread(cli.pps_jitter) + glitch.unwrap_or(0.0);
        if !sleep_until(edge) {
            break;
        }
        if let (Some(path), true, false) = (&cli.sock, fix && glitch.is_some(), unplugged) {
            let local = edge; // true time = host clock
            let (sec, usec) = (
                local.floor() as i64,
                ((local - local.floor()) * 1e6).round() as i64,
            );
            let frac = local - second as f64;
            let msg = encode(
                sec,
                usec,
                pulse_offset_field(frac.rem_euclid(1.0)),
                true,
                SockLeap::Normal,
            );
            if sock.send_to(&msg, path).is_ok() {
                sent_pulses += 1;
            }
        }

        let nmea_at = second as f64 - off + cli.nmea_delay + rng.spread(cli.nmea_jitter);
        if !sleep_until(nmea_at) {
            break;
        }
        if let (Some(p), false) = (pty.as_mut(), nmea_gap) {
            if cli.garbage_every > 0 && elapsed % cli.garbage_every == 0 {
                let garbage: Vec<u8> = (0..24)
                    .map(|_| (rng.next_f64() * 256.0) as u8)
                    .filter(|b| !matches!(b, b'$' | b'!'))
                    .collect();
                let _ = p.master.write(&garbage);
            }
            let leap = cli.leap_at == Some(elapsed);
            let bad = cli.bad_checksum_every > 0
                && elapsed % cli.bad_checksum_every == cli.bad_checksum_every / 2;
            let rolled = cli.rollover_at.is_some_and(|a| elapsed >= a);
            let bytes = burst(&cli, second, fix, leap, bad, rolled);
            if !paced_write(&mut p.master, &bytes, cli.baud) {
                break;
            }
        }
        second += 1;
        // The receiver's own second (its time runs `off` ahead).
        let own = now_secs() + spoof_offset(&cli, (second - start) as f64);
        if second <= own.floor() as i64 {
            // We fell behind (a stalled machine): skip to the next second.
            second = own.floor() as i64 + 1;
        }
    }
    if let Some(link) = &cli.pty_link {
        let _ = std::fs::remove_file(link);
    }
    eprintln!(
        "skytime-gpssim: stopped after {} s, {sent_pulses} pulses sent",
        second - start
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_refclock::sentence::{parse, Sentence};

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("skytime-gpssim").chain(args.iter().copied()))
    }

    #[test]
    fn bursts_parse_and_name_the_second() {
        let c = cli(&["--sentences", "rmc,gga,zda,gsa"]);
        let unix = 1_800_000_123;
        let bytes = burst(&c, unix, true, false, false, false);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4);
        let mut clock = skytime_refclock::NmeaClock::new(1_767_225_600);
        let at = skytime_proto::NtpTimestamp::from_unix(unix, 400_000_000);
        let mut named = None;
        for l in &lines {
            let s = parse(l.as_bytes()).unwrap();
            if let Some(f) = clock.on_sentence(&s, at) {
                named = Some(f.unix_second);
            }
        }
        assert_eq!(named, Some(unix));
        assert!(lines.iter().all(|l| l.len() <= 82));
    }

    #[test]
    fn spoofing_steps_drags_and_rolls_over() {
        let c = cli(&[
            "--spoof-step-at",
            "10",
            "--spoof-step",
            "-2.5",
            "--spoof-drag-at",
            "20",
            "--spoof-drag-rate",
            "0.00001",
        ]);
        assert_eq!(spoof_offset(&c, 9.0), 0.0);
        assert_eq!(spoof_offset(&c, 10.0), -2.5);
        assert!((spoof_offset(&c, 120.0) - (-2.5 + 0.001)).abs() < 1e-12);
        let c = cli(&["--rollover-at", "5"]);
        let plain = String::from_utf8(burst(&c, 1_800_000_000, true, false, false, false)).unwrap();
        let rolled = String::from_utf8(burst(&c, 1_800_000_000, true, false, false, true)).unwrap();
        assert!(
            plain.contains(",15,01,2027,") && rolled.contains(",01,06,2007,"),
            "{plain} {rolled}"
        );
    }

    #[test]
    fn pps_gaps_drop_pulses_and_glitches_move_one_in_n() {
        let c = cli(&[
            "--pps-gap-at",
            "10",
            "--pps-gap-for",
            "3",
            "--pps-glitch-every",
            "7",
            "--pps-glitch",
            "-0.1",
        ]);
        let faults: Vec<Option<f64>> = (0..16).map(|s| pps_fault(&c, s)).collect();
        assert_eq!(faults[0], Some(0.0));
        assert_eq!(faults[1], Some(-0.1));
        assert_eq!(faults[8], Some(-0.1));
        assert_eq!(&faults[10..13], &[None, None, None]);
        assert_eq!(faults[15], Some(-0.1));
        assert_eq!(faults.iter().filter(|f| **f == Some(0.0)).count(), 10);
        assert_eq!(pps_fault(&cli(&[]), 1), Some(0.0));
    }

    #[test]
    fn no_fix_bursts_say_v_and_quality_zero() {
        let c = cli(&[]);
        let text = String::from_utf8(burst(&c, 1_800_000_000, false, false, false, false)).unwrap();
        let first = text.lines().next().unwrap();
        assert!(matches!(
            parse(first.as_bytes()).unwrap(),
            Sentence::Rmc { valid: false, .. }
        ));
    }

    #[test]
    fn bad_checksum_and_rollover_and_leap() {
        let c = cli(&["--rollover"]);
        let text = String::from_utf8(burst(&c, 1_800_000_000, true, false, true, false)).unwrap();
        let first = text.lines().next().unwrap();
        assert!(parse(first.as_bytes()).is_err(), "{first}");
        let text = String::from_utf8(burst(&c, 1_800_000_000, true, false, false, false)).unwrap();
        // 2027-01-15 less 1024 weeks.
        assert!(text.contains(",01,06,2007,"), "{text}");
        let text = String::from_utf8(burst(&c, 1_800_000_000, true, true, false, false)).unwrap();
        assert!(text.contains("235960.00"));
    }
}
