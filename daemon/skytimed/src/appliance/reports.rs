//! The management records, built from snapshots of the daemon's parts:
//! the published sync state and the discipline's view for tracking, the
//! reference clocks joined with the discipline for sources, the server
//! and NTS counters, the client table. Pure functions of their inputs.

use crate::clock::ClockSnapshot;
use crate::ntp::StatsSnapshot;
use crate::nts::NtsStats;
use crate::refclock::{RefclockConfig, RefclockStatus, SourceId, SourceStatus};
use skytime_api::{ClientReport, ServerReport, SourceReport, TrackingReport};
use skytime_discipline::SelectState;
use skytime_proto::client_log::ClientEntry;
use skytime_proto::{LeapIndicator, NtpTimestamp, SyncState};

fn kind_name(id: SourceId) -> &'static str {
    match id {
        SourceId::Pps => "pps",
        SourceId::Nmea => "nmea",
        SourceId::Sock => "sock",
    }
}

/// chronyc's words for the selection states (`skytimectl sources` turns
/// them into chronyc's one-character marks).
pub fn state_name(state: SelectState) -> &'static str {
    match state {
        SelectState::Selected => "selected",
        SelectState::Combined => "combined",
        SelectState::Candidate => "candidate",
        SelectState::Falseticker => "falseticker",
        SelectState::Unreachable => "unreachable",
        SelectState::Rejected => "unusable",
    }
}

/// chronyc's wording for the leap indicator.
fn leap_status(leap: LeapIndicator) -> &'static str {
    match leap {
        LeapIndicator::NoWarning => "normal",
        LeapIndicator::InsertSecond => "insert second",
        LeapIndicator::DeleteSecond => "delete second",
        LeapIndicator::Unsynchronized => "not synchronised",
    }
}

/// The device a source reads, as configured.
fn device(id: SourceId, gps: &RefclockConfig) -> Option<String> {
    match id {
        SourceId::Nmea => gps.device.as_ref().map(|d| d.display().to_string()),
        SourceId::Pps => match (&gps.pps, &gps.pps_gpio, &gps.sock) {
            (Some(p), _, _) => Some(p.display().to_string()),
            (None, Some(g), _) => Some(format!("{} line {}", g.chip.display(), g.line)),
            (None, None, Some(s)) => Some(s.display().to_string()),
            _ => None,
        },
        SourceId::Sock => gps.sock.as_ref().map(|s| s.display().to_string()),
    }
}

/// GGA fix quality in words; RMC alone says only valid or not.
fn fix_name(r: &RefclockStatus) -> String {
    if !r.fix.valid {
        return "none".into();
    }
    match r.fix.quality {
        Some(1) => "gps",
        Some(2) => "dgps",
        Some(3) => "pps",
        Some(4 | 5) => "rtk",
        Some(6) => "estimated",
        _ => "valid",
    }
    .into()
}

/// One source's report: the reference clock's own view (reach, raw
/// offset, GPS) joined with the discipline's (selection, statistics).
pub fn source_report(
    src: &SourceStatus,
    refclocks: &RefclockStatus,
    clock: Option<&ClockSnapshot>,
    gps: &RefclockConfig,
) -> SourceReport {
    let disc = clock.and_then(|c| c.sources.iter().find(|s| s.index == src.id.index()));
    let raw_age = match (src.stats.last_sample, clock) {
        (Some(t), Some(c)) => Some((c.at - t).to_seconds_f64().max(0.0)),
        _ => None,
    };
    let mut r = SourceReport {
        name: src.id.name().into(),
        kind: kind_name(src.id).into(),
        state: disc.map_or("unusable", |d| state_name(d.state)).into(),
        stratum: 0,
        // Reference clocks deliver a sample a second: poll 2^0.
        poll: 0,
        reach: src.stats.reach,
        last_sample_ago: disc
            .and_then(|d| d.last_sample_age_s)
            .or(raw_age)
            .unwrap_or(-1.0),
        last_offset: src.stats.last_offset.unwrap_or(0.0),
        last_offset_adjusted: disc
            .map_or(src.stats.last_offset.unwrap_or(0.0), |d| d.last_offset_s),
        last_error: disc.map(|d| d.noise_s).or(src.stats.jitter).unwrap_or(0.0),
        device: device(src.id, gps),
        ..SourceReport::default()
    };
    if let Some(d) = disc {
        add_statistics(&mut r, d);
    }
    // The GPS details belong to the receiver, shown on both of its sources.
    if matches!(src.id, SourceId::Nmea | SourceId::Pps) && gps.device.is_some() {
        r.gps_fix = Some(fix_name(refclocks));
        r.gps_satellites_used = refclocks.fix.satellites.map(u32::from);
        r.nmea_pps_delay = refclocks.delay.value;
    }
    r
}

/// The reference clock the discipline has selected, if any (`None` too
/// while an upstream server is followed: the reference ID names it).
pub fn selected_source(clock: Option<&ClockSnapshot>) -> Option<SourceId> {
    let c = clock?;
    let s = c
        .sources
        .iter()
        .find(|s| s.state == SelectState::Selected)?;
    SourceId::from_index(s.index)
}

/// The tracking report: what NTP clients are told (the published sync
/// state) and the discipline's estimates, taken at `now`. Offsets are
/// turned round to chronyc's sign: positive means the system clock is
/// fast. The `selected` source is named only while synchronized.
pub fn tracking_report(
    s: &SyncState,
    clock: Option<&ClockSnapshot>,
    selected: Option<SourceId>,
    now: NtpTimestamp,
) -> TrackingReport {
    let unix_now = now.to_unix(0).0;
    let reference_time = if s.reference_time == NtpTimestamp::ZERO {
        0.0
    } else {
        let (secs, nanos) = s.reference_time.to_unix(unix_now);
        secs as f64 + f64::from(nanos) * 1e-9
    };
    let mut t = TrackingReport {
        stratum: s.stratum,
        reference_id: s.reference_id.to_string(),
        synchronized: s.is_synchronized(),
        reference_time,
        root_delay: s.root_delay.to_seconds_f64(),
        root_dispersion: s.root_dispersion_at(now).to_seconds_f64(),
        leap_status: leap_status(s.leap).to_owned(),
        ..TrackingReport::default()
    };
    if let Some(c) = clock {
        let d = &c.tracking;
        t.system_time_offset = -d.system_offset_s;
        t.last_offset = -d.last_offset_s;
        t.rms_offset = d.rms_offset_s;
        t.frequency = d.frequency_ppm;
        t.residual_frequency = d.residual_freq_ppm;
        t.skew = d.skew_ppm;
        t.update_interval = d.update_interval_s;
    }
    if t.synchronized {
        t.reference_name = selected.map_or("", SourceId::name).to_owned();
    }
    t
}

/// The server's counters and, when NTS is enabled, NTS's.
pub fn server_report(
    ntp: &StatsSnapshot,
    nts: Option<&NtsStats>,
    nts_ke_active: usize,
) -> ServerReport {
    let mut r = ServerReport {
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
        ntp_rate_kods: ntp.rate_kods,
        key_authenticated: ntp.key_replied,
        key_crypto_naks: ntp.crypto_naks,
        nts_ke_active: nts_ke_active as u64,
        ..ServerReport::default()
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

/// One client at `now`.
pub fn client_report(e: &ClientEntry, now: NtpTimestamp) -> ClientReport {
    let ago = |t: NtpTimestamp| (now - t).to_seconds_f64().max(0.0);
    ClientReport {
        address: e.address.to_string(),
        ntp_replies: e.ntp_replies,
        nts_replies: e.nts_replies,
        dropped: e.dropped,
        interval_log2: e.interval_log2,
        last_seen_ago: ago(e.last_seen),
        first_seen_ago: ago(e.first_seen),
    }
}

/// The discipline's statistics of a source (`chronyc sourcestats`'s
/// columns), for the GPS's and the upstream servers' records alike.
pub(super) fn add_statistics(r: &mut SourceReport, d: &skytime_discipline::SourceReport) {
    r.samples = d.samples as u32;
    r.span = d.span_s;
    r.frequency_ppm = d.freq_ppm;
    r.skew_ppm = d.skew_ppm;
    r.offset = d.offset_s;
    r.std_dev = d.stddev_s;
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_proto::{NtpDuration, ReferenceId};

    fn gps() -> RefclockConfig {
        toml::from_str("device = \"/dev/serial0\"\npps = \"/dev/pps0\"\n").unwrap()
    }

    #[test]
    fn sources_join_refclock_and_discipline_views() {
        let mut pps = SourceStatus::new(SourceId::Pps, "PPS /dev/pps0".into());
        pps.stats.reach = 0o377;
        pps.stats.last_offset = Some(2e-6);
        let nmea = SourceStatus::new(SourceId::Nmea, "NMEA /dev/serial0".into());
        let mut status = RefclockStatus::new(vec![pps.clone(), nmea.clone()]);
        status.fix.valid = true;
        status.fix.quality = Some(1);
        status.fix.satellites = Some(9);
        status.delay.value = Some(0.35);
        let gps = gps();
        // Before the discipline has seen a sample.
        let r = source_report(&pps, &status, None, &gps);
        assert_eq!(
            (r.name.as_str(), r.kind.as_str(), r.state.as_str()),
            ("PPS", "pps", "unusable")
        );
        assert_eq!(r.reach, 0o377);
        assert_eq!(r.last_sample_ago, -1.0);
        assert_eq!(r.gps_fix.as_deref(), Some("gps"));
        assert_eq!(r.gps_satellites_used, Some(9));
        assert_eq!(r.nmea_pps_delay, Some(0.35));
        assert_eq!(r.device.as_deref(), Some("/dev/pps0"));
        let r = source_report(&nmea, &status, None, &gps);
        assert_eq!(r.device.as_deref(), Some("/dev/serial0"));
    }

    #[test]
    fn tracking_reads_the_sync_state_as_chronyc_does() {
        let now = NtpTimestamp::from_unix(1_800_000_000, 0);
        let mut sync = SyncState::unsynchronized(-20);
        sync.stratum = 1;
        sync.reference_id = ReferenceId::PPS;
        sync.leap = LeapIndicator::NoWarning;
        sync.reference_time = now;
        sync.root_dispersion = NtpDuration::from_seconds_f64(1e-5);
        let t = tracking_report(&sync, None, Some(SourceId::Pps), now);
        assert!(t.synchronized);
        assert_eq!((t.stratum, t.reference_id.as_str()), (1, "PPS"));
        assert_eq!(t.reference_name, "PPS");
        assert_eq!(t.reference_time, 1.8e9);
        assert_eq!(t.leap_status, "normal");
        let t = tracking_report(
            &SyncState::unsynchronized(-20),
            None,
            Some(SourceId::Pps),
            now,
        );
        assert!(!t.synchronized);
        assert_eq!(t.reference_name, "", "no source named while unsynchronised");
        assert_eq!(t.reference_time, 0.0, "never updated");
        assert_eq!(t.leap_status, "not synchronised");
    }

    #[test]
    fn server_report_adds_up_drops_and_nts_failures() {
        let ntp = StatsSnapshot {
            received: 10,
            replied: 7,
            dropped: vec![("too_short", 2), ("access_denied", 1)],
            ..StatsSnapshot::default()
        };
        let r = server_report(&ntp, None, 3);
        assert_eq!((r.ntp_dropped, r.nts_ke_active), (3, 3));
        assert_eq!(r.ntp_dropped_by_reason["too_short"], 2);
        assert!(
            r.nts_counters.is_empty(),
            "no NTS counters while NTS is off"
        );
    }
}
