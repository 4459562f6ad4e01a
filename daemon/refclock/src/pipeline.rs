//! The whole reference-clock path of a GPS receiver in one state machine:
//! serial bytes, pulse edges and SOCK datagrams in (each with the local
//! time it was taken at), samples and status out.
//!
//! It chains the [`LineAssembler`], [`sentence::parse`], the
//! [`NmeaClock`] and the [`Pairing`], and keeps the per-source statistics
//! and counters of a [`RefclockStatus`]. Nothing here reads a clock or a
//! device: the caller passes the time and whether the system clock is
//! synchronized (which lets PPS carry on through short NMEA outages), and
//! takes the [`Output`] of each call: samples for the discipline, and
//! notes worth logging.

use crate::gpstime::{NmeaClock, BUILD_UNIX};
use crate::line::LineAssembler;
use crate::pairing::{Pairing, PairingConfig, PulseDecision, Reject};
use crate::sentence::{self, SentenceError};
use crate::sock::{self, SockError};
use crate::status::{RefclockStatus, SourceId, SourceStatus};
use skytime_proto::{NtpDuration, NtpTimestamp};

/// Dispersion of a whole SOCK sample (its sender states no error).
const SOCK_DISPERSION: f64 = 1e-6;
/// A delay estimate is noted again once it moves by more than this.
const DELAY_NOTE_STEP: f64 = 0.01;

/// One measurement of the local clock against a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    pub source: SourceId,
    /// Local time at which the event was timestamped.
    pub local: NtpTimestamp,
    /// reference - local at `local`.
    pub offset: NtpDuration,
    /// Error bound of this measurement.
    pub dispersion: NtpDuration,
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// An NMEA line was refused (bad checksum, not a sentence, ...).
    LineRefused(SentenceError),
    /// A SOCK datagram was refused.
    SockRefused(SockError),
    /// A pulse was not used.
    PulseRejected { local: NtpTimestamp, reason: Reject },
    /// Pulses the kernel counted but did not deliver.
    PulsesMissed(u32),
    /// The NMEA-to-PPS delay estimate, first and whenever it moves.
    DelayEstimated {
        delay: f64,
        spread: f64,
        pulses: usize,
    },
    /// The receiver reports dates 1024 weeks early (first time only).
    RolloverCorrected,
    /// The second 23:59:60 was seen on NMEA.
    LeapSecond,
    /// A named second arrived too soon or too late after the previous one
    /// to time a sample (a backlog drained, or the port was just opened).
    Untimed { unix_second: i64 },
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Output {
    pub samples: Vec<RefSample>,
    pub notes: Vec<Note>,
}

impl Output {
    pub fn clear(&mut self) {
        self.samples.clear();
        self.notes.clear();
    }
}

/// The pipeline's fixed settings.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Serial speed, for the line assembler's timing.
    pub baud: u32,
    pub pairing: PairingConfig,
    /// A GPS date earlier than this (Unix seconds) is a week-number
    /// rollover ([`BUILD_UNIX`] in the daemon).
    pub date_floor: i64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            baud: 9600,
            pairing: PairingConfig::default(),
            date_floor: BUILD_UNIX,
        }
    }
}

/// The reference clocks of one receiver, sans IO.
#[derive(Debug)]
pub struct Pipeline {
    assembler: LineAssembler,
    clock: NmeaClock,
    pairing: Pairing,
    status: RefclockStatus,
    /// The delay estimate last noted.
    noted_delay: Option<f64>,
}

impl Pipeline {
    /// A pipeline reporting on `sources` (the ones configured).
    pub fn new(config: PipelineConfig, sources: Vec<SourceStatus>) -> Self {
        Self {
            assembler: LineAssembler::new(config.baud),
            clock: NmeaClock::new(config.date_floor),
            pairing: Pairing::new(config.pairing),
            status: RefclockStatus::new(sources),
            noted_delay: None,
        }
    }

    /// Every source's state and statistics now.
    pub fn status(&self) -> &RefclockStatus {
        &self.status
    }

    /// Bytes read from the serial port; `at` is when the read returned.
    pub fn serial_bytes(&mut self, bytes: &[u8], at: NtpTimestamp, out: &mut Output) {
        let mut lines = Vec::new();
        self.assembler.feed(bytes, at, |l| lines.push(l));
        for line in lines {
            self.line(&line.text, line.burst_start, out);
        }
        self.publish(out);
    }

    /// The serial port was opened: bytes that came before do not continue
    /// a line.
    pub fn serial_up(&mut self) {
        self.assembler.reset();
        self.clock.reset_spacing();
        self.with_source(SourceId::Nmea, |s| s.connected = true);
    }

    /// The serial port is gone: unreachable now, not in eight intervals.
    pub fn serial_down(&mut self, error: String) {
        self.assembler.reset();
        self.down(SourceId::Nmea, error);
    }

    /// A PPS edge at local time `local`; `missed` pulses before it were
    /// counted by the kernel but not delivered.
    pub fn pulse(
        &mut self,
        local: NtpTimestamp,
        missed: u32,
        synchronized: bool,
        out: &mut Output,
    ) {
        if missed > 0 {
            out.notes.push(Note::PulsesMissed(missed));
            self.status.pps_sequence_gaps += u64::from(missed);
        }
        let decisions = self.pairing.on_pulse(local, synchronized);
        self.decisions(decisions, out);
    }

    pub fn pps_up(&mut self) {
        self.with_source(SourceId::Pps, |s| s.connected = true);
    }

    pub fn pps_down(&mut self, error: String) {
        self.down(SourceId::Pps, error);
    }

    /// One datagram from the SOCK socket: a pulse goes through the
    /// pairing, a whole sample is a sample of its own.
    pub fn sock_datagram(&mut self, bytes: &[u8], synchronized: bool, out: &mut Output) {
        let sample = match sock::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.status.bad_sock_datagrams += 1;
                out.notes.push(Note::SockRefused(e));
                return;
            }
        };
        if sample.pulse {
            self.with_source(SourceId::Pps, |s| s.connected = true);
            self.pulse(sample.local, 0, synchronized, out);
        } else {
            self.emit(
                SourceId::Sock,
                sample.local,
                sample.offset,
                NtpDuration::from_seconds_f64(SOCK_DISPERSION),
                out,
            );
        }
    }

    /// Periodic work (a few times a second): decides pulses whose NMEA
    /// did not come in time.
    pub fn poll(&mut self, now: NtpTimestamp, synchronized: bool, out: &mut Output) {
        let decisions = self.pairing.poll(now, synchronized);
        if !decisions.is_empty() {
            self.decisions(decisions, out);
        }
    }

    /// Ends one reach interval (once a second) at local time `now`.
    pub fn reach_tick(&mut self, now: NtpTimestamp) {
        for s in &mut self.status.sources {
            s.stats.tick();
        }
        self.status.updated = Some(now);
    }

    /// Samples the caller could not deliver (its queue was full).
    pub fn dropped(&mut self, samples: usize) {
        self.status.samples_dropped += samples as u64;
    }

    fn line(&mut self, text: &[u8], burst_start: NtpTimestamp, out: &mut Output) {
        let parsed = match sentence::parse(text) {
            Ok(s) => s,
            Err(e) => {
                match e {
                    SentenceError::Checksum { .. } => self.status.bad_checksums += 1,
                    _ => self.status.bad_sentences += 1,
                }
                out.notes.push(Note::LineRefused(e));
                return;
            }
        };
        let Some(fix) = self.clock.on_sentence(&parsed, burst_start) else {
            return;
        };
        if fix.rollover_corrected && self.clock.stats().rollover_corrections == 1 {
            out.notes.push(Note::RolloverCorrected);
        }
        if fix.leap_second {
            out.notes.push(Note::LeapSecond);
        }
        // An untimed arrival could name the wrong pulse, too; a leap
        // second's fix still goes to the pairing, where it only ever
        // withholds a pulse.
        if !fix.timed && !fix.leap_second {
            out.notes.push(Note::Untimed {
                unix_second: fix.unix_second,
            });
            self.publish(out);
            return;
        }
        if let Some(d) = self.pairing.on_fix(&fix) {
            self.decisions(vec![d], out);
        }
        if !fix.leap_second {
            let (offset, dispersion) = self.pairing.nmea_sample(&fix);
            self.emit(SourceId::Nmea, fix.arrival, offset, dispersion, out);
        }
    }

    fn decisions(&mut self, list: Vec<PulseDecision>, out: &mut Output) {
        for d in list {
            match d.outcome {
                Ok(a) => self.emit(SourceId::Pps, d.local, a.offset, a.dispersion, out),
                Err(reason) => {
                    out.notes.push(Note::PulseRejected {
                        local: d.local,
                        reason,
                    });
                    self.with_source(SourceId::Pps, |s| s.stats.reject());
                }
            }
        }
        self.publish(out);
    }

    fn emit(
        &mut self,
        source: SourceId,
        local: NtpTimestamp,
        offset: NtpDuration,
        dispersion: NtpDuration,
        out: &mut Output,
    ) {
        out.samples.push(RefSample {
            source,
            local,
            offset,
            dispersion,
        });
        self.with_source(source, |s| s.stats.accept(local, offset));
    }

    /// Copies the stages' figures into the status, and notes a new delay
    /// estimate.
    fn publish(&mut self, out: &mut Output) {
        let delay = self.pairing.delay();
        if let Some(est) = delay.estimated {
            if self
                .noted_delay
                .is_none_or(|l| (l - est).abs() > DELAY_NOTE_STEP)
            {
                out.notes.push(Note::DelayEstimated {
                    delay: est,
                    spread: delay.spread.unwrap_or(0.0),
                    pulses: delay.samples,
                });
                self.noted_delay = Some(est);
            }
        }
        self.status.pairing = self.pairing.stats();
        self.status.delay = delay;
        self.status.fix = self.clock.status();
        self.status.nmea_clock = self.clock.stats();
        self.status.lines = self.assembler.stats();
    }

    fn down(&mut self, id: SourceId, error: String) {
        self.with_source(id, |s| {
            s.connected = false;
            s.stats.reach = 0;
            s.last_error = Some(error);
        });
    }

    fn with_source(&mut self, id: SourceId, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.status.source_mut(id) {
            f(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpstime::civil_from_days;
    use crate::sentence::checksum;
    use crate::sock::{encode, SockLeap};

    /// 2027-01-15 08:00:00 UTC.
    const T0: i64 = 1_800_000_000;
    /// When the receiver's sentences for a second start, after its pulse.
    const NMEA_DELAY: f64 = 0.3;

    fn at(unix: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(unix.floor() as i64, (unix.fract() * 1e9) as u32)
    }

    fn sentence(body: &str) -> String {
        format!("${body}*{:02X}\r\n", checksum(body.as_bytes()))
    }

    /// RMC and GGA naming second `unix`, as a receiver with a fix sends.
    fn burst(unix: i64) -> Vec<u8> {
        let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
        let sod = unix.rem_euclid(86_400);
        let time = format!("{:02}{:02}{:02}.00", sod / 3600, sod / 60 % 60, sod % 60);
        let yy = y.rem_euclid(100);
        let mut s = sentence(&format!(
            "GPRMC,{time},A,4807.038,N,01131.000,E,0.02,31.66,{d:02}{mo:02}{yy:02},,,A"
        ));
        s.push_str(&sentence(&format!(
            "GPGGA,{time},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
        )));
        s.into_bytes()
    }

    fn pipeline() -> Pipeline {
        let sources = vec![
            SourceStatus::new(SourceId::Pps, "PPS test".into()),
            SourceStatus::new(SourceId::Nmea, "NMEA test".into()),
            SourceStatus::new(SourceId::Sock, "SOCK test".into()),
        ];
        Pipeline::new(
            PipelineConfig {
                date_floor: T0 - 86_400,
                ..PipelineConfig::default()
            },
            sources,
        )
    }

    /// One second of a receiver whose clock is this machine's: the pulse
    /// at the second, its sentences `NMEA_DELAY` later (read in one chunk
    /// that ends when its last byte is in), then a poll and a reach tick.
    fn second(p: &mut Pipeline, unix: i64, out: &mut Output) {
        p.pulse(at(unix as f64), 0, false, out);
        let bytes = burst(unix);
        let read = unix as f64 + NMEA_DELAY + bytes.len() as f64 * 10.0 / 9600.0;
        p.serial_bytes(&bytes, at(read), out);
        p.poll(at(unix as f64 + 0.9), false, out);
        p.reach_tick(at(unix as f64 + 0.95));
    }

    #[test]
    fn bytes_and_pulses_become_paired_pps_and_nmea_samples() {
        let mut p = pipeline();
        p.serial_up();
        p.pps_up();
        let mut out = Output::default();
        for k in 0..12 {
            second(&mut p, T0 + k, &mut out);
        }
        let pps: Vec<_> = out
            .samples
            .iter()
            .filter(|s| s.source == SourceId::Pps)
            .collect();
        let nmea: Vec<_> = out
            .samples
            .iter()
            .filter(|s| s.source == SourceId::Nmea)
            .collect();
        assert!(pps.len() >= 5, "{:?}", out.samples);
        assert!(
            pps.iter().all(|s| s.offset.to_seconds_f64().abs() < 1e-6),
            "the pulses are on the true seconds: {pps:?}"
        );
        // The first second has no predecessor to check its arrival against.
        assert_eq!(nmea.len(), 11, "one NMEA sample a second after the first");
        // Once the delay is known, NMEA alone is good to milliseconds.
        let last = nmea.last().unwrap().offset.to_seconds_f64();
        assert!(last.abs() < 0.01, "NMEA offset {last}");
        let noted = out.notes.iter().find_map(|n| match n {
            Note::DelayEstimated { delay, .. } => Some(*delay),
            _ => None,
        });
        assert!(
            noted.is_some_and(|d| (d - NMEA_DELAY).abs() < 0.01),
            "{:?}",
            out.notes
        );

        let st = p.status();
        assert!(st.fix.valid);
        assert_eq!(st.fix.satellites, Some(8));
        assert!(st
            .delay
            .estimated
            .is_some_and(|d| (d - NMEA_DELAY).abs() < 0.01));
        assert_eq!(st.lines.lines, 24);
        assert_eq!(st.updated, Some(at((T0 + 11) as f64 + 0.95)));
        let pps = st.source(SourceId::Pps).unwrap();
        assert!(pps.connected && pps.reachable() && pps.stats.samples >= 5);
        assert_eq!(st.source(SourceId::Nmea).unwrap().stats.samples, 11);
        assert_eq!(st.nmea_clock.untimed, 1);
    }

    /// A receiver's output that waited in a buffer while the port was
    /// closed (a USB adapter's, or a host pty behind an emulated one)
    /// arrives all at once after the open: it must not become samples, or
    /// the first one steps the clock by the backlog's age.
    #[test]
    fn a_backlog_read_at_once_gives_no_samples() {
        let mut p = pipeline();
        let mut out = Output::default();
        p.serial_up();
        let now = T0 + 100;
        // Ninety seconds of sentences, read in 64-byte chunks (one USB
        // packet each) a millisecond apart.
        let backlog: Vec<u8> = (now - 90..now).flat_map(burst).collect();
        for (i, chunk) in backlog.chunks(64).enumerate() {
            let read = now as f64 + 0.3 + i as f64 * 0.001;
            p.serial_bytes(chunk, at(read), &mut out);
        }
        assert!(
            out.samples.is_empty(),
            "stale sentences timed: {:?}",
            out.samples
        );
        assert_eq!(p.status().nmea_clock.untimed, 90);
        assert!(out.notes.iter().any(|n| matches!(n, Note::Untimed { .. })));
        // Then the receiver's live output: good samples from the second
        // live second on.
        for k in 1..6 {
            second(&mut p, now + k, &mut out);
        }
        let offsets: Vec<f64> = out
            .samples
            .iter()
            .filter(|s| s.source == SourceId::Nmea)
            .map(|s| s.offset.to_seconds_f64())
            .collect();
        assert_eq!(offsets.len(), 4, "{offsets:?}");
        assert!(
            offsets.iter().all(|o| o.abs() <= NMEA_DELAY),
            "live seconds are off by the sentence delay at most: {offsets:?}"
        );
    }

    #[test]
    fn bad_input_is_counted_and_noted_never_sampled() {
        let mut p = pipeline();
        let mut out = Output::default();
        let mut bad = burst(T0);
        bad[8] = if bad[8] == b'9' { b'8' } else { b'9' };
        p.serial_bytes(&bad[..bad.len() / 2], at(T0 as f64 + 0.3), &mut out);
        p.serial_bytes(b"$GPXYZ,1\r\nnoise", at(T0 as f64 + 0.4), &mut out);
        p.sock_datagram(b"short", false, &mut out);
        let st = p.status();
        assert_eq!((st.bad_checksums, st.bad_sock_datagrams), (1, 1));
        assert!(st.lines.garbage_bytes > 0);
        assert!(out.samples.is_empty(), "{:?}", out.samples);
        assert!(out
            .notes
            .iter()
            .any(|n| matches!(n, Note::LineRefused(SentenceError::Checksum { .. }))));
        assert!(out.notes.iter().any(|n| matches!(n, Note::SockRefused(_))));
    }

    #[test]
    fn sock_samples_and_pulses_take_their_paths() {
        let mut p = pipeline();
        let mut out = Output::default();
        let whole = encode(T0, 250_000, 0.002, false, SockLeap::Normal);
        p.sock_datagram(&whole, false, &mut out);
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.samples[0].source, SourceId::Sock);
        assert!((out.samples[0].offset.to_seconds_f64() - 0.002).abs() < 1e-9);
        // A pulse over SOCK marks the PPS input as connected and goes to
        // the pairing (no NMEA yet: no sample).
        let pulse = encode(T0 + 1, 0, 0.0, true, SockLeap::Normal);
        p.sock_datagram(&pulse, false, &mut out);
        assert_eq!(out.samples.len(), 1);
        assert!(p.status().source(SourceId::Pps).unwrap().connected);
        assert_eq!(p.status().pairing.pulses, 1);
    }

    #[test]
    fn a_lost_device_is_unreachable_at_once_and_missed_pulses_are_counted() {
        let mut p = pipeline();
        let mut out = Output::default();
        for k in 0..3 {
            second(&mut p, T0 + k, &mut out);
        }
        assert!(p.status().source(SourceId::Nmea).unwrap().reachable());
        p.serial_down("read failed: EIO".into());
        let nmea = p.status().source(SourceId::Nmea).unwrap();
        assert!(!nmea.connected && !nmea.reachable());
        assert_eq!(nmea.last_error.as_deref(), Some("read failed: EIO"));
        p.pulse(at((T0 + 5) as f64), 2, false, &mut out);
        assert_eq!(p.status().pps_sequence_gaps, 2);
        assert!(out.notes.contains(&Note::PulsesMissed(2)));
        p.dropped(3);
        assert_eq!(p.status().samples_dropped, 3);
    }
}
