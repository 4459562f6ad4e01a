//! What the management API reports: plain data records, filled by the
//! daemon's [`ApplianceBackend`](super::ApplianceBackend) and sent over
//! D-Bus as dictionaries (`a{sv}`), so that a later version can add keys
//! without breaking clients (they ignore keys they do not know).
//!
//! Units on the wire: seconds (`d`) for offsets, delays and intervals,
//! ppm (`d`) for frequencies, Unix seconds (`x`/`t`) for instants.

use serde::Serialize;
use skytime_proto::client_log::ClientEntry;
use skytime_proto::{LeapIndicator, NtpTimestamp, SyncState};
use std::collections::HashMap;
use zbus::zvariant::{DeserializeDict, SerializeDict, Type};

/// The system clock and what the server tells clients about it: every
/// field `chronyc tracking` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrackingReport {
    /// 1..=15, or 16 when unsynchronized.
    pub stratum: u8,
    /// Reference ID as chronyc prints it ("PPS", "GPS", or hex).
    pub reference_id: String,
    /// Human name of the selected source ("gps0", "pps0"); empty if none.
    pub reference_name: String,
    pub synchronized: bool,
    /// Last update of the clock, Unix seconds (0: never).
    pub reference_time: f64,
    /// Current correction still being applied: positive means the system
    /// clock is fast (chronyc's "System time").
    pub system_time_offset: f64,
    pub last_offset: f64,
    pub rms_offset: f64,
    /// Frequency correction, ppm (positive: clock runs fast).
    pub frequency_ppm: f64,
    pub residual_frequency_ppm: f64,
    pub skew_ppm: f64,
    pub root_delay: f64,
    pub root_dispersion: f64,
    /// Seconds between the last two clock updates.
    pub update_interval: f64,
    /// "normal", "insert second", "delete second" or "not synchronised".
    pub leap_status: String,
}

impl TrackingReport {
    /// The part of the report the NTP server's sync state already knows;
    /// the discipline fills in offsets and frequencies.
    pub fn from_sync_state(s: &SyncState, now: NtpTimestamp) -> Self {
        let unix_now = now.to_unix(0).0;
        let reference_time = if s.reference_time == NtpTimestamp::ZERO {
            0.0
        } else {
            let (secs, nanos) = s.reference_time.to_unix(unix_now);
            secs as f64 + f64::from(nanos) * 1e-9
        };
        Self {
            stratum: s.stratum,
            reference_id: s.reference_id.to_string(),
            synchronized: s.is_synchronized(),
            reference_time,
            root_delay: s.root_delay.to_seconds_f64(),
            root_dispersion: s.root_dispersion_at(now).to_seconds_f64(),
            leap_status: leap_status(s.leap).to_owned(),
            ..Self::default()
        }
    }
}

/// chronyc's wording for the leap indicator.
pub fn leap_status(leap: LeapIndicator) -> &'static str {
    match leap {
        LeapIndicator::NoWarning => "normal",
        LeapIndicator::InsertSecond => "insert second",
        LeapIndicator::DeleteSecond => "delete second",
        LeapIndicator::Unsynchronized => "not synchronised",
    }
}

/// One time source: `chronyc sources` + `sourcestats` + GPS details.
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct SourceReport {
    /// Name as configured ("gps0", "pps0").
    pub name: String,
    /// "nmea", "pps", "sock", "local".
    pub kind: String,
    /// chronyc's state: "selected" (*), "combined" (+), "candidate" (-),
    /// "falseticker" (x), "jittery" (~), "unusable" (?).
    pub state: String,
    pub stratum: u8,
    /// Polling (or sample) interval, log2 seconds.
    pub poll: i8,
    /// Reachability register, octal in chronyc.
    pub reach: u8,
    /// Seconds since the last sample (-1: none yet).
    pub last_sample_ago: f64,
    /// Offset of the last sample as measured and after adjustment, seconds
    /// (positive: the source is ahead of the system clock).
    pub last_offset: f64,
    pub last_offset_adjusted: f64,
    /// Error bound of the last sample, seconds.
    pub last_error: f64,
    // sourcestats
    pub samples: u32,
    pub runs: u32,
    /// Seconds covered by the samples.
    pub span: f64,
    pub frequency_ppm: f64,
    pub skew_ppm: f64,
    pub offset: f64,
    pub std_dev: f64,
    // GPS details (absent for other sources)
    /// "none", "2d", "3d".
    pub gps_fix: Option<String>,
    pub gps_satellites_used: Option<u32>,
    pub gps_satellites_visible: Option<u32>,
    /// Seconds between the PPS edge and the NMEA sentence for that second.
    pub nmea_pps_delay: Option<f64>,
    /// Device path (serial port, /dev/ppsN).
    pub device: Option<String>,
}

/// NTP and NTS server counters (`chronyc serverstats`, and more).
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct ServerReport {
    pub ntp_received: u64,
    pub ntp_replied: u64,
    pub ntp_dropped: u64,
    /// Dropped requests by reason ("too_short", "access_denied", ...).
    pub ntp_dropped_by_reason: HashMap<String, u64>,
    pub ntp_kernel_timestamps: u64,
    /// NTS-authenticated requests answered.
    pub nts_authenticated: u64,
    pub nts_naks: u64,
    pub nts_ke_accepted: u64,
    /// NTS-KE connections that ended without cookies (failed TLS, no ALPN,
    /// timeouts, truncated, evicted).
    pub nts_ke_dropped: u64,
    pub nts_ke_active: u64,
    /// Every NTS counter by name.
    pub nts_counters: HashMap<String, u64>,
}

impl ServerReport {
    /// Builds the report from the NTP server's counters and, when NTS is
    /// enabled, NTS's.
    pub fn new(
        ntp: &crate::stats::StatsSnapshot,
        nts: Option<&crate::nts::NtsStats>,
        nts_ke_active: usize,
    ) -> Self {
        let mut r = Self {
            ntp_received: ntp.received,
            ntp_replied: ntp.replied,
            ntp_dropped: ntp.total_dropped(),
            ntp_dropped_by_reason: ntp
                .dropped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            ntp_kernel_timestamps: ntp.kernel_timestamps,
            nts_authenticated: ntp.nts_replied,
            nts_naks: ntp.nts_naks,
            nts_ke_active: nts_ke_active as u64,
            ..Self::default()
        };
        if let Some(n) = nts {
            r.nts_ke_accepted = n.ke_connections;
            r.nts_ke_dropped =
                n.ke_tls_failed + n.ke_no_alpn + n.ke_truncated + n.ke_timeouts + n.ke_evicted;
            r.nts_counters = n
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        }
        r
    }
}

/// One client of the NTP server (`chronyc clients`).
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct ClientReport {
    pub address: String,
    pub ntp_replies: u64,
    pub nts_replies: u64,
    pub dropped: u64,
    /// Average interval between requests, log2 seconds (absent until a
    /// second request arrives).
    pub interval_log2: Option<f64>,
    /// Seconds since the last request.
    pub last_seen_ago: f64,
    /// Seconds since the first request.
    pub first_seen_ago: f64,
}

impl ClientReport {
    pub fn from_entry(e: &ClientEntry, now: NtpTimestamp) -> Self {
        let ago = |t: NtpTimestamp| (now - t).to_seconds_f64().max(0.0);
        Self {
            address: e.address.to_string(),
            ntp_replies: e.ntp_replies,
            nts_replies: e.nts_replies,
            dropped: e.dropped,
            interval_log2: e.interval_log2,
            last_seen_ago: ago(e.last_seen),
            first_seen_ago: ago(e.first_seen),
        }
    }
}

/// The TLS certificate NTS-KE presents.
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct CertificateReport {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses.
    pub subject_alt_names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER certificate, hex with colons.
    pub fingerprint_sha256: String,
    /// Certificates in the chain, server certificate included.
    pub chain_length: u32,
    pub path: String,
}

/// NTS state: certificate and master keys.
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct NtsReport {
    pub enabled: bool,
    /// Plain NTP refused.
    pub required: bool,
    pub certificate: Option<CertificateReport>,
    /// Why the certificate could not be read, when it could not.
    pub certificate_error: Option<String>,
    /// "rotate" or "follow".
    pub key_role: String,
    /// Id of the key new cookies are made with.
    pub current_key_id: Option<u32>,
    /// Every key held, current one included (cookies of these still work).
    pub key_ids: Vec<u32>,
    /// Unix seconds of the next scheduled rotation (absent for followers).
    pub next_rotation: Option<i64>,
    pub rotation_interval: u64,
    pub ke_addresses: Vec<String>,
}

/// What `Apply` and `Reload` did.
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
pub struct ConfigOutcome {
    /// The file written (empty for a dry run and for Reload).
    pub path: String,
    pub dry_run: bool,
    /// Settings that were saved but take effect only after a restart.
    pub restart_required: Vec<String>,
}
