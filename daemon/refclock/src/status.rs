//! What the reference clocks report: which sources exist, their state and
//! statistics, and the receiver's figures (fix, delay, counters).

use crate::gpstime::{FixStatus, NmeaClockStats};
use crate::line::LineStats;
use crate::pairing::{DelayReport, PairingStats};
use crate::stats::SourceStats;
use skytime_proto::{NtpTimestamp, ReferenceId};

/// The time sources a GPS receiver and chrony's SOCK input give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// Pulses paired with NMEA (or carried on alone while synchronized).
    Pps,
    /// NMEA sentences alone (millisecond class).
    Nmea,
    /// Whole samples over chrony's SOCK protocol (SOCK *pulses* are PPS
    /// edges and count as [`SourceId::Pps`]).
    Sock,
}

impl SourceId {
    /// Every source, in the order of their numbers.
    pub const ALL: [Self; 3] = [Self::Pps, Self::Nmea, Self::Sock];

    /// The source's number in the daemon's source list (`Sample::source`
    /// for the discipline).
    pub fn index(self) -> usize {
        match self {
            Self::Pps => 0,
            Self::Nmea => 1,
            Self::Sock => 2,
        }
    }

    /// The source numbered `index`.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.index() == index)
    }

    /// The short name chronyc users know a reference clock by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pps => "PPS",
            Self::Nmea => "NMEA",
            Self::Sock => "SOCK",
        }
    }

    /// The reference ID NTP replies carry when the clock follows this
    /// source at stratum 1: "PPS", "GPS" (NMEA alone) or "SOCK".
    pub fn refid(self) -> ReferenceId {
        match self {
            Self::Pps => ReferenceId::PPS,
            Self::Nmea => ReferenceId::GPS,
            Self::Sock => ReferenceId::ascii("SOCK"),
        }
    }
}

/// One source as status reports see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    pub id: SourceId,
    /// What it reads, for logs and reports ("PPS /dev/pps0").
    pub name: String,
    /// The device is open (or, for SOCK, pulses arrive).
    pub connected: bool,
    pub last_error: Option<String>,
    pub stats: SourceStats,
}

impl SourceStatus {
    pub fn new(id: SourceId, name: String) -> Self {
        Self {
            id,
            name,
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

    pub fn source(&self, id: SourceId) -> Option<&SourceStatus> {
        self.sources.iter().find(|s| s.id == id)
    }

    pub(crate) fn source_mut(&mut self, id: SourceId) -> Option<&mut SourceStatus> {
        self.sources.iter_mut().find(|s| s.id == id)
    }
}
