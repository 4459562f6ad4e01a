//! What the reference clocks report: per-source state and statistics.

use skytime_discipline::SourceKind;
use skytime_proto::{NtpTimestamp, ReferenceId};
use skytime_refclock::gpstime::NmeaClockStats;
use skytime_refclock::line::LineStats;
use skytime_refclock::pairing::{DelayReport, PairingStats};
use skytime_refclock::{FixStatus, SourceStats};

/// `Sample::source` of PPS samples (paired with NMEA, or in holdover).
pub const PPS_INDEX: usize = 0;
/// `Sample::source` of NMEA-only samples.
pub const NMEA_INDEX: usize = 1;
/// `Sample::source` of whole (non-pulse) SOCK samples.
pub const SOCK_INDEX: usize = 2;

/// One source as the discipline and status reports see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    /// `Sample::source` of its samples.
    pub index: usize,
    pub name: String,
    pub kind: SourceKind,
    /// The reference ID NTP replies carry when the clock follows this
    /// source at stratum 1: "PPS", "GPS" (NMEA alone) or "SOCK".
    pub refid: ReferenceId,
    /// The device is open (or, for SOCK, pulses arrive).
    pub connected: bool,
    pub last_error: Option<String>,
    pub stats: SourceStats,
}

impl SourceStatus {
    pub fn new(index: usize, name: String, kind: SourceKind) -> Self {
        let refid = match kind {
            SourceKind::Pps => ReferenceId::PPS,
            SourceKind::Nmea => ReferenceId::GPS,
            SourceKind::Sock => ReferenceId::ascii("SOCK"),
        };
        Self {
            index,
            name,
            kind,
            refid,
            connected: false,
            last_error: None,
            stats: SourceStats::default(),
        }
    }

    pub fn reachable(&self) -> bool {
        self.stats.reachable()
    }
}

/// A snapshot of all reference clocks.
#[derive(Clone, Debug, PartialEq)]
pub struct RefclockStatus {
    pub sources: Vec<SourceStatus>,
    /// NMEA fix status: valid, quality, satellites in use.
    pub fix: FixStatus,
    /// NMEA-to-PPS delay: in use, estimated, configured.
    pub delay: DelayReport,
    pub pairing: PairingStats,
    pub nmea_clock: NmeaClockStats,
    pub lines: LineStats,
    pub bad_checksums: u64,
    pub bad_sentences: u64,
    pub bad_sock_datagrams: u64,
    pub pps_sequence_gaps: u64,
    /// Samples the discipline did not take in time (channel full).
    pub samples_dropped: u64,
    /// Local time of the last reach interval.
    pub updated: Option<NtpTimestamp>,
}

impl RefclockStatus {
    pub fn new(sources: Vec<SourceStatus>) -> Self {
        Self {
            sources,
            fix: FixStatus::default(),
            delay: DelayReport {
                value: None,
                configured: false,
                estimated: None,
                spread: None,
                samples: 0,
            },
            pairing: PairingStats::default(),
            nmea_clock: NmeaClockStats::default(),
            lines: LineStats::default(),
            bad_checksums: 0,
            bad_sentences: 0,
            bad_sock_datagrams: 0,
            pps_sequence_gaps: 0,
            samples_dropped: 0,
            updated: None,
        }
    }

    pub fn source(&self, index: usize) -> Option<&SourceStatus> {
        self.sources.iter().find(|s| s.index == index)
    }
}
