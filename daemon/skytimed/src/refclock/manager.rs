//! The source manager: turns device events and SOCK datagrams into
//! `Sample`s (through the sans-IO line assembler, NMEA clock and pairing)
//! and keeps the per-source statistics that `status()` reports.

use super::devices::DeviceEvent;
use super::status::{RefclockStatus, SourceStatus, NMEA_INDEX, PPS_INDEX, SOCK_INDEX};
use crate::ntp_io;
use skytime_discipline::{Sample, SourceKind};
use skytime_proto::{NtpDuration, NtpTimestamp, SyncState};
use skytime_refclock::gpstime::BUILD_UNIX;
use skytime_refclock::{
    sentence, LineAssembler, NmeaClock, Pairing, PairingConfig, PulseDecision, SockSample,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the reachability registers shift.
pub const REACH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Manager {
    pub samples: mpsc::Sender<Sample>,
    pub sync: Option<watch::Receiver<SyncState>>,
    pub status: Arc<Mutex<RefclockStatus>>,
    pub assembler: LineAssembler,
    pub clock: NmeaClock,
    pub pairing: Pairing,
    /// The delay estimate last logged.
    logged_delay: Option<f64>,
}

impl Manager {
    pub fn new(
        baud: u32,
        pairing: PairingConfig,
        samples: mpsc::Sender<Sample>,
        sync: Option<watch::Receiver<SyncState>>,
        status: Arc<Mutex<RefclockStatus>>,
    ) -> Self {
        Self {
            samples,
            sync,
            status,
            assembler: LineAssembler::new(baud),
            clock: NmeaClock::new(BUILD_UNIX),
            pairing: Pairing::new(pairing),
            logged_delay: None,
        }
    }

    fn synchronized(&self) -> bool {
        self.sync
            .as_ref()
            .is_some_and(|s| s.borrow().is_synchronized())
    }

    fn emit(
        &self,
        source: usize,
        kind: SourceKind,
        local: NtpTimestamp,
        offset: NtpDuration,
        dispersion: NtpDuration,
    ) {
        let sample = Sample {
            source,
            kind,
            local_time: local,
            offset,
            dispersion,
        };
        if self.samples.try_send(sample).is_err() {
            self.with_status(|s| s.samples_dropped += 1);
        }
    }

    fn with_status<R>(&self, f: impl FnOnce(&mut RefclockStatus) -> R) -> R {
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn source(&self, index: usize, f: impl FnOnce(&mut SourceStatus)) {
        self.with_status(|s| {
            if let Some(src) = s.sources.iter_mut().find(|x| x.index == index) {
                f(src);
            }
        });
    }

    fn decisions(&mut self, list: Vec<PulseDecision>) {
        for d in list {
            match d.outcome {
                Ok(a) => {
                    self.emit(PPS_INDEX, SourceKind::Pps, d.local, a.offset, a.dispersion);
                    self.source(PPS_INDEX, |s| s.stats.accept(d.local, a.offset));
                }
                Err(reason) => {
                    tracing::debug!("pulse at {:?} rejected: {reason:?}", d.local);
                    self.source(PPS_INDEX, |s| s.stats.reject());
                }
            }
        }
        self.publish_pairing();
    }

    fn publish_pairing(&mut self) {
        if let Some(est) = self.pairing.delay().estimated {
            if self.logged_delay.is_none_or(|l| (l - est).abs() > 0.01) {
                let spread = self.pairing.delay().spread.unwrap_or(0.0);
                tracing::info!("NMEA-to-PPS delay estimated {est:.4} s (+-{spread:.4} s) from {} paired pulses", self.pairing.delay().samples);
                self.logged_delay = Some(est);
            }
        }
        let (p, d, fix, cs, ls) = (
            self.pairing.stats(),
            self.pairing.delay(),
            self.clock.status(),
            self.clock.stats(),
            self.assembler.stats(),
        );
        self.with_status(|s| {
            s.pairing = p;
            s.delay = d;
            s.fix = fix;
            s.nmea_clock = cs;
            s.lines = ls;
        });
    }

    pub fn on_device(&mut self, ev: DeviceEvent) {
        match ev {
            DeviceEvent::Serial(bytes, at) => {
                let mut lines = Vec::new();
                self.assembler.feed(&bytes, at, |l| lines.push(l));
                for line in lines {
                    self.on_line(&line.text, line.burst_start);
                }
                self.publish_pairing();
            }
            DeviceEvent::SerialUp => {
                self.assembler.reset();
                self.source(NMEA_INDEX, |s| s.connected = true);
            }
            DeviceEvent::SerialDown(e) => {
                self.assembler.reset();
                // A device that is gone is unreachable now, not in 8 intervals.
                self.source(NMEA_INDEX, |s| {
                    s.connected = false;
                    s.stats.reach = 0;
                    s.last_error = Some(e);
                });
            }
            DeviceEvent::Pulse { local, missed } => self.on_pulse(local, missed),
            DeviceEvent::PpsUp => self.source(PPS_INDEX, |s| s.connected = true),
            DeviceEvent::PpsDown(e) => self.source(PPS_INDEX, |s| {
                s.connected = false;
                s.stats.reach = 0;
                s.last_error = Some(e);
            }),
        }
    }

    fn on_pulse(&mut self, local: NtpTimestamp, missed: u32) {
        if missed > 0 {
            tracing::debug!("{missed} PPS pulses missed (sequence gap)");
            self.with_status(|s| s.pps_sequence_gaps += missed as u64);
        }
        let d = self.pairing.on_pulse(local, self.synchronized());
        self.decisions(d);
    }

    fn on_line(&mut self, text: &[u8], burst_start: NtpTimestamp) {
        let parsed = match sentence::parse(text) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("NMEA line refused: {e}");
                self.with_status(|s| match e {
                    sentence::SentenceError::Checksum { .. } => s.bad_checksums += 1,
                    _ => s.bad_sentences += 1,
                });
                return;
            }
        };
        let Some(fix) = self.clock.on_sentence(&parsed, burst_start) else {
            return;
        };
        if fix.rollover_corrected && self.clock.stats().rollover_corrections == 1 {
            tracing::warn!(
                "GPS receiver reports a date 1024 weeks early (week-number rollover): corrected"
            );
        }
        if fix.leap_second {
            tracing::info!("leap second 23:59:60 seen on NMEA");
        }
        if let Some(d) = self.pairing.on_fix(&fix) {
            self.decisions(vec![d]);
        }
        if !fix.leap_second {
            let (offset, dispersion) = self.pairing.nmea_sample(&fix);
            self.emit(
                NMEA_INDEX,
                SourceKind::Nmea,
                fix.arrival,
                offset,
                dispersion,
            );
            self.source(NMEA_INDEX, |s| s.stats.accept(fix.arrival, offset));
        }
    }

    pub fn on_sock(&mut self, sample: SockSample) {
        if sample.pulse {
            self.source(PPS_INDEX, |s| s.connected = true);
            self.on_pulse(sample.local, 0);
        } else {
            self.emit(
                SOCK_INDEX,
                SourceKind::Sock,
                sample.local,
                sample.offset,
                NtpDuration::from_seconds_f64(1e-6),
            );
            self.source(SOCK_INDEX, |s| s.stats.accept(sample.local, sample.offset));
        }
    }

    /// Periodic work: expire unpaired pulses.
    pub fn poll(&mut self) {
        let d = self.pairing.poll(ntp_io::now(), self.synchronized());
        if !d.is_empty() {
            self.decisions(d);
        }
    }

    /// One line with the figures an operator asks for first.
    pub fn log_summary(&self) {
        let (p, d) = (self.pairing.stats(), self.pairing.delay());
        tracing::info!(
            "refclock: {} pulses, {} paired, {} holdover, rejected {} no NMEA / {} disagree / {} leap / {} glitch; \
             NMEA-to-PPS delay {:?} s (estimated {:?} +- {:?} from {} pulses, configured: {})",
            p.pulses,
            p.paired,
            p.holdover,
            p.rejected_no_nmea,
            p.rejected_disagree,
            p.rejected_leap,
            p.rejected_glitch,
            d.value,
            d.estimated,
            d.spread,
            d.samples,
            d.configured
        );
    }

    pub fn reach_tick(&self) {
        let now = ntp_io::now();
        self.with_status(|s| {
            for src in &mut s.sources {
                src.stats.tick();
            }
            s.updated = Some(now);
        });
    }
}

/// Binds the SOCK socket (replacing a stale one) and forwards decoded samples.
pub fn bind_sock(path: &PathBuf) -> std::io::Result<UnixDatagram> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    UnixDatagram::bind(path)
}

pub async fn run_sock(
    socket: UnixDatagram,
    path: PathBuf,
    tx: mpsc::Sender<SockSample>,
    status: Arc<Mutex<RefclockStatus>>,
    stop: CancellationToken,
) {
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.recv(&mut buf) => match r {
                Ok(n) => match skytime_refclock::sock::decode(&buf[..n]) {
                    Ok(s) => {
                        if tx.send(s).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!("SOCK datagram refused: {e}");
                        status.lock().unwrap_or_else(|p| p.into_inner()).bad_sock_datagrams += 1;
                    }
                },
                Err(e) => {
                    tracing::warn!("SOCK {}: {e}", path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}
