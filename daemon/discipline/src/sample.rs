//! A measurement of the local clock against a reference: the common
//! currency between time sources and the discipline.

use skytime_proto::{NtpDuration, NtpTimestamp, ReferenceId};

/// Which kind of source produced a sample. Selection prefers PPS and uses
/// NMEA-only time as a coarse fallback; network sources check the GPS and
/// take over when it is gone or lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A pulse-per-second edge, second named by NMEA (or carried on by a
    /// synchronized clock).
    Pps,
    /// Time from NMEA sentences alone (millisecond class).
    Nmea,
    /// A sample delivered through chrony's refclock SOCK protocol.
    Sock,
    /// An upstream NTP or NTS server (see [`Upstream`]).
    Ntp,
}

impl SourceKind {
    /// The GPS receiver's kinds (PPS, NMEA, SOCK), as opposed to network
    /// sources.
    pub fn is_gps(self) -> bool {
        self != Self::Ntp
    }
}

/// How a network source may be used (chrony's `trust` and `noselect`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetRole {
    /// Checks the GPS (when authenticated) and steers when the GPS is
    /// gone or lies.
    #[default]
    Normal,
    /// As normal, and decides among network sources that have no majority.
    Trust,
    /// Never steers: only checks the GPS and is reported.
    NoSelect,
}

/// What a network source says about itself with each sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Upstream {
    /// The server's stratum: ours is one more while it is followed.
    pub stratum: u8,
    /// The reference ID replies carry while following it (the server's
    /// IPv4 address, or the start of the MD5 hash of its IPv6 address).
    pub reference_id: ReferenceId,
    /// The server's own root delay and dispersion, seconds.
    pub root_delay: f64,
    pub root_dispersion: f64,
    /// Round-trip delay to the server, seconds.
    pub delay: f64,
    /// The clock filter's jitter for this server, seconds: the noise of
    /// its samples.
    pub jitter: f64,
    /// Its replies are authenticated (NTS or a symmetric key): only such
    /// sources judge the GPS.
    pub authenticated: bool,
    pub role: NetRole,
    /// Seconds between its samples (the poll interval), for telling when
    /// it has gone quiet.
    pub poll_interval_s: f64,
}

impl Upstream {
    /// Half the round trip to the primary reference plus its error
    /// bound: how far this server's time may be from UTC (without our own
    /// measurement's error).
    pub fn root_distance(&self) -> f64 {
        (self.root_delay + self.delay) / 2.0 + self.root_dispersion
    }
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
    /// timestamping resolution plus the source's stated precision). For a
    /// network source: its root distance and the measurement's own error.
    pub dispersion: NtpDuration,
}
