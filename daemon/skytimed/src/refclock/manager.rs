//! The source manager: the I/O loop around `skytime-refclock`'s
//! [`Pipeline`]. It hands the pipeline what the device threads and the
//! SOCK socket read (with their timestamps), the time and whether the
//! clock is synchronized; it passes the samples on to the discipline,
//! logs the pipeline's notes and publishes its status for reports.

use super::devices::DeviceEvent;
use crate::clock::now;
use skytime_discipline::{Sample, SourceKind};
use skytime_proto::SyncState;
use skytime_refclock::{Note, Output, Pipeline, RefSample, RefclockStatus, SourceId};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the reachability registers shift.
pub const REACH_INTERVAL: Duration = Duration::from_secs(1);
/// How often unpaired pulses are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The discipline's kind of a reference-clock source.
pub fn source_kind(id: SourceId) -> SourceKind {
    match id {
        SourceId::Pps => SourceKind::Pps,
        SourceId::Nmea => SourceKind::Nmea,
        SourceId::Sock => SourceKind::Sock,
    }
}

fn to_sample(s: &RefSample) -> Sample {
    Sample {
        source: s.source.index(),
        kind: source_kind(s.source),
        local_time: s.local,
        offset: s.offset,
        dispersion: s.dispersion,
    }
}

#[derive(Debug)]
pub struct Manager {
    pipeline: Pipeline,
    out: Output,
    samples: mpsc::Sender<Sample>,
    sync: Option<watch::Receiver<SyncState>>,
    status: Arc<Mutex<RefclockStatus>>,
}

impl Manager {
    pub fn new(
        pipeline: Pipeline,
        samples: mpsc::Sender<Sample>,
        sync: Option<watch::Receiver<SyncState>>,
        status: Arc<Mutex<RefclockStatus>>,
    ) -> Self {
        Self {
            pipeline,
            out: Output::default(),
            samples,
            sync,
            status,
        }
    }

    fn synchronized(&self) -> bool {
        self.sync
            .as_ref()
            .is_some_and(|s| s.borrow().is_synchronized())
    }

    pub fn on_device(&mut self, ev: DeviceEvent) {
        let p = &mut self.pipeline;
        match ev {
            DeviceEvent::Serial(bytes, at) => p.serial_bytes(&bytes, at, &mut self.out),
            DeviceEvent::SerialUp => p.serial_up(),
            DeviceEvent::SerialDown(e) => p.serial_down(e),
            DeviceEvent::Pulse { local, missed } => {
                let synchronized = self.synchronized();
                self.pipeline
                    .pulse(local, missed, synchronized, &mut self.out)
            }
            DeviceEvent::PpsUp => p.pps_up(),
            DeviceEvent::PpsDown(e) => p.pps_down(e),
        }
        self.flush();
    }

    pub fn on_sock(&mut self, datagram: &[u8]) {
        let synchronized = self.synchronized();
        self.pipeline
            .sock_datagram(datagram, synchronized, &mut self.out);
        self.flush();
    }

    /// Periodic work: expire unpaired pulses.
    pub fn poll(&mut self) {
        let synchronized = self.synchronized();
        self.pipeline.poll(now(), synchronized, &mut self.out);
        self.flush();
    }

    pub fn reach_tick(&mut self) {
        self.pipeline.reach_tick(now());
        self.flush();
    }

    /// Samples to the discipline, notes to the log, status to readers.
    fn flush(&mut self) {
        let dropped = self
            .out
            .samples
            .iter()
            .filter(|s| self.samples.try_send(to_sample(s)).is_err())
            .count();
        if dropped > 0 {
            self.pipeline.dropped(dropped);
        }
        self.out.notes.iter().for_each(log);
        self.out.clear();
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = self.pipeline.status().clone();
    }

    /// One line with the figures an operator asks for first.
    pub fn log_summary(&self) {
        let st = self.pipeline.status();
        let (p, d) = (&st.pairing, &st.delay);
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
}

fn log(note: &Note) {
    match note {
        Note::LineRefused(e) => tracing::debug!("NMEA line refused: {e}"),
        Note::SockRefused(e) => tracing::debug!("SOCK datagram refused: {e}"),
        Note::PulseRejected { local, reason } => {
            tracing::debug!("pulse at {local:?} rejected: {reason:?}")
        }
        Note::PulsesMissed(n) => tracing::debug!("{n} PPS pulses missed (sequence gap)"),
        Note::DelayEstimated {
            delay,
            spread,
            pulses,
        } => tracing::info!(
            "NMEA-to-PPS delay estimated {delay:.4} s (+-{spread:.4} s) from {pulses} paired pulses"
        ),
        Note::RolloverCorrected => tracing::warn!(
            "GPS receiver reports a date 1024 weeks early (week-number rollover): corrected"
        ),
        Note::Untimed { unix_second } => tracing::debug!(
            "NMEA second {unix_second} not used: its arrival is not spaced from the previous \
             second's by about a second (buffered or just opened)"
        ),
        Note::LeapSecond => tracing::info!("leap second 23:59:60 seen on NMEA"),
    }
}

/// Binds the SOCK socket (replacing a stale one).
pub fn bind_sock(path: &PathBuf) -> std::io::Result<UnixDatagram> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    UnixDatagram::bind(path)
}

/// Forwards SOCK datagrams (the pipeline decodes them) until `stop`;
/// removes the socket file at the end.
pub async fn run_sock(
    socket: UnixDatagram,
    path: PathBuf,
    tx: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
) {
    // Larger than a sock_sample, so that an oversized datagram arrives
    // whole enough to be refused for its length.
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("SOCK {}: {e}", path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}
