//! A measurement of the local clock against a reference: the common
//! currency between time sources and the discipline.

use skytime_proto::{NtpDuration, NtpTimestamp};

/// Which kind of source produced a sample. Selection prefers PPS and uses
/// NMEA-only time as a coarse fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A pulse-per-second edge, second named by NMEA (or carried on by a
    /// synchronized clock).
    Pps,
    /// Time from NMEA sentences alone (millisecond class).
    Nmea,
    /// A sample delivered through chrony's refclock SOCK protocol.
    Sock,
}

/// One offset measurement.
///
/// Sign convention as NTP's theta: `offset = reference - local`, so a
/// positive offset means the local clock is behind the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Index of the source in the daemon's source list.
    pub source: usize,
    pub kind: SourceKind,
    /// Local (system clock) time at which the event was timestamped.
    pub local_time: NtpTimestamp,
    /// Reference time minus local time at `local_time`.
    pub offset: NtpDuration,
    /// Error bound of this one measurement (for example half the
    /// timestamping resolution plus the source's stated precision).
    pub dispersion: NtpDuration,
}
