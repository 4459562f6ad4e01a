//! `GET /metrics`: the appliance in the OpenMetrics text format
//! (`prometheus-client`), or in Prometheus' older text format for
//! clients that do not ask for OpenMetrics (`promtool`, `curl`).
//!
//! Names follow Prometheus' conventions and the exporters operators know
//! (chrony_exporter's `chrony_tracking_*`, ntpd-rs's `ntp_*`): prefix
//! `skytime_`, base units in the name (`_seconds`, `_ratio`), counters
//! ending in `_total`, no client addresses as labels. Every alarm kind is
//! listed, 1 while active.

use crate::snapshot::Snapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use skytime_alarms::AlarmKind;
use std::sync::atomic::AtomicU64;

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn gauge(v: f64) -> FloatGauge {
    let g = FloatGauge::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The update state: one info metric with the state and slots, and
/// gauges for what alerts want (RAUC present, progress, a failed or
/// rolled-back update).
fn update(r: &mut Registry, u: &skytime_api::UpdateProperties) {
    r.register(
        "update",
        "The A/B update state, the booted and primary slots and the running version",
        Info::new(labels(&[
            ("state", u.state.as_str()),
            ("booted_slot", u.booted_slot.as_str()),
            ("primary_slot", u.primary_slot.as_str()),
            ("current_version", u.current_version.as_str()),
        ])),
    );
    r.register(
        "update_available",
        "Whether RAUC is on the bus (1) so that updates can be installed",
        gauge(if u.available { 1.0 } else { 0.0 }),
    );
    r.register_with_unit(
        "update_progress",
        "Progress of the install running (or last run), 0 to 1",
        Unit::Other("ratio".into()),
        gauge(f64::from(u.progress_percent) / 100.0),
    );
    r.register(
        "update_failed",
        "1 while the last update failed or was rolled back",
        gauge(if u.state == "failed" || u.state == "rolled-back" {
            1.0
        } else {
            0.0
        }),
    );
}

/// The snapshot in the OpenMetrics text format.
pub fn openmetrics(s: &Snapshot) -> String {
    let mut root = Registry::with_prefix("skytime");
    let r = &mut root;
    r.register(
        "build",
        "Versions of skytimed and of the gateway",
        Info::new(labels(&[
            ("version", s.monitor.version.as_str()),
            ("gateway_version", s.gateway_version),
        ])),
    );
    if let Some(slot) = &s.boot_slot {
        r.register(
            "boot_slot",
            "The root file system slot the appliance booted",
            Info::new(labels(&[("slot", slot)])),
        );
    }

    if let Some(u) = &s.update {
        update(r, u);
    }

    let t = &s.tracking;
    let seconds = |r: &mut Registry, name: &str, help: &str, v: f64| {
        r.register_with_unit(name, help, Unit::Seconds, gauge(v));
    };
    let ratio = |r: &mut Registry, name: &str, help: &str, ppm: f64| {
        r.register_with_unit(name, help, Unit::Other("ratio".into()), gauge(ppm * 1e-6));
    };
    r.register(
        "tracking_stratum",
        "Stratum the server announces (16: unsynchronized)",
        gauge(f64::from(t.stratum)),
    );
    r.register(
        "tracking_synchronized",
        "1 while the server is synchronized",
        gauge(f64::from(u8::from(t.synchronized))),
    );
    seconds(
        r,
        "tracking_offset",
        "Estimated offset of the system clock (positive: fast)",
        t.system_time_offset,
    );
    seconds(
        r,
        "tracking_last_offset",
        "Offset at the last clock update",
        t.last_offset,
    );
    seconds(
        r,
        "tracking_rms_offset",
        "RMS of recent offsets",
        t.rms_offset,
    );
    ratio(
        r,
        "tracking_frequency",
        "Frequency correction of the clock (positive: it runs fast)",
        t.frequency,
    );
    ratio(
        r,
        "tracking_residual_frequency",
        "Frequency correction still being applied",
        t.residual_frequency,
    );
    ratio(
        r,
        "tracking_skew",
        "Error bound of the frequency estimate",
        t.skew,
    );
    seconds(
        r,
        "tracking_root_delay",
        "Root delay served to clients",
        t.root_delay,
    );
    seconds(
        r,
        "tracking_root_dispersion",
        "Root dispersion served to clients",
        t.root_dispersion,
    );
    seconds(
        r,
        "tracking_error_bound",
        "Estimated error bound of served time: root delay / 2 + root dispersion",
        t.root_delay / 2.0 + t.root_dispersion,
    );
    seconds(
        r,
        "tracking_update_interval",
        "Time between the last two clock updates",
        t.update_interval,
    );
    let leap = Family::<Labels, FloatGauge>::default();
    leap.get_or_create(&labels(&[("status", &t.leap_status)]))
        .set(1.0);
    r.register(
        "tracking_leap_status",
        "Leap status (1 for the current one)",
        leap,
    );

    sources(r, s);
    server(r, s);

    if let Some(c) = &s.nts.certificate {
        r.register_with_unit(
            "certificate_expiry_timestamp",
            "When the NTS certificate expires, Unix time",
            Unit::Seconds,
            gauge(c.not_after as f64),
        );
    }
    let alarms = Family::<Labels, FloatGauge>::default();
    for kind in AlarmKind::ALL {
        let active = s.monitor.alarms.iter().any(|a| a.name == kind.name());
        alarms
            .get_or_create(&labels(&[
                ("alarm", kind.name()),
                ("severity", kind.severity().name()),
            ]))
            .set(f64::from(u8::from(active)));
    }
    r.register("alarm_active", "1 while the alarm is active", alarms);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &root);
    out
}

fn sources(r: &mut Registry, s: &Snapshot) {
    let state = Family::<Labels, FloatGauge>::default();
    let selected = Family::<Labels, FloatGauge>::default();
    let reach = Family::<Labels, FloatGauge>::default();
    let offset = Family::<Labels, FloatGauge>::default();
    let jitter = Family::<Labels, FloatGauge>::default();
    for src in &s.sources {
        let l = labels(&[("source", &src.name)]);
        state
            .get_or_create(&labels(&[("source", &src.name), ("state", &src.state)]))
            .set(1.0);
        selected
            .get_or_create(&l)
            .set(f64::from(u8::from(src.state == "selected")));
        reach.get_or_create(&l).set(f64::from(src.reach));
        offset.get_or_create(&l).set(src.last_offset_adjusted);
        jitter.get_or_create(&l).set(src.std_dev);
    }
    r.register(
        "source_state",
        "Selection state of each source (1 for its current one)",
        state,
    );
    r.register(
        "source_selected",
        "1 for the source the clock follows",
        selected,
    );
    r.register(
        "source_reach",
        "Reachability register of each source (0 to 255)",
        reach,
    );
    r.register_with_unit(
        "source_offset",
        "Offset of each source's last sample",
        Unit::Seconds,
        offset,
    );
    r.register_with_unit(
        "source_jitter",
        "Standard deviation of each source's samples",
        Unit::Seconds,
        jitter,
    );
    upstream(r, s);

    if let Some(g) = s.gps() {
        let fix = g.gps_fix.as_deref().unwrap_or("none");
        r.register(
            "gps_fix",
            "1 while the GPS receiver has a valid fix",
            gauge(f64::from(u8::from(fix != "none"))),
        );
        r.register(
            "gps_satellites",
            "Satellites the GPS receiver uses",
            gauge(f64::from(g.gps_satellites_used.unwrap_or(0))),
        );
        if let Some(d) = g.nmea_pps_delay {
            r.register_with_unit(
                "gps_nmea_pps_delay",
                "Time from the PPS edge to the NMEA sentence of that second",
                Unit::Seconds,
                gauge(d),
            );
        }
    }
    r.register_with_unit(
        "holdover",
        "Time in holdover (0 when following a source)",
        Unit::Seconds,
        gauge(s.holdover_seconds()),
    );
}

/// The upstream servers: stratum, round trip, and NTS state.
fn upstream(r: &mut Registry, s: &Snapshot) {
    let stratum = Family::<Labels, FloatGauge>::default();
    let delay = Family::<Labels, FloatGauge>::default();
    for src in s.sources.iter().filter(|x| x.kind == "ntp") {
        let l = labels(&[
            ("source", &src.name),
            (
                "authentication",
                src.authentication.as_deref().unwrap_or("none"),
            ),
        ]);
        stratum.get_or_create(&l).set(f64::from(src.stratum));
        delay.get_or_create(&l).set(src.delay.unwrap_or(0.0));
    }
    r.register(
        "upstream_stratum",
        "Stratum of each upstream server (0 until it answers)",
        stratum,
    );
    r.register_with_unit(
        "upstream_delay",
        "Round trip to each upstream server",
        Unit::Seconds,
        delay,
    );
    let cookies = Family::<Labels, FloatGauge>::default();
    let naks = Family::<Labels, FloatGauge>::default();
    let failures = Family::<Labels, FloatGauge>::default();
    let ke_ago = Family::<Labels, FloatGauge>::default();
    for a in &s.source_auth {
        let l = labels(&[("source", &a.name), ("mode", &a.mode)]);
        cookies.get_or_create(&l).set(f64::from(a.cookies));
        naks.get_or_create(&l).set(a.naks as f64);
        failures.get_or_create(&l).set(a.auth_failures as f64);
        ke_ago.get_or_create(&l).set(a.last_ke_ago);
    }
    r.register(
        "upstream_nts_cookies",
        "NTS cookies held for each upstream server",
        cookies,
    );
    r.register(
        "upstream_nts_naks",
        "NTS NAKs from each upstream server since its last key exchange",
        naks,
    );
    r.register(
        "upstream_auth_failures",
        "Replies refused because their authentication failed",
        failures,
    );
    r.register_with_unit(
        "upstream_nts_key_exchange_age",
        "Time since the last NTS key exchange with each server (-1: none)",
        Unit::Seconds,
        ke_ago,
    );
}

fn server(r: &mut Registry, s: &Snapshot) {
    let st = &s.server;
    r.register(
        "ntp_requests",
        "NTP requests received",
        counter(st.ntp_received),
    );
    r.register("ntp_replies", "NTP replies sent", counter(st.ntp_replied));
    let dropped = Family::<Labels, Counter>::default();
    for (reason, n) in &st.ntp_dropped_by_reason {
        dropped
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(*n);
    }
    r.register("ntp_dropped", "NTP requests dropped, by reason", dropped);
    r.register(
        "ntp_clients",
        "Clients in the server's client table",
        gauge(s.clients as f64),
    );
    r.register(
        "ntp_rate_kods",
        "RATE kiss-o'-death replies to clients over the rate limit",
        counter(st.ntp_rate_kods),
    );
    r.register(
        "nts_authenticated_replies",
        "NTS-authenticated NTP replies sent",
        counter(st.nts_authenticated),
    );
    r.register(
        "nts_naks",
        "NTS NAKs sent (unusable cookies)",
        counter(st.nts_naks),
    );
    r.register(
        "ntp_key_authenticated_replies",
        "NTP replies MAC'd with a symmetric key",
        counter(st.key_authenticated),
    );
    r.register(
        "ntp_crypto_naks",
        "Crypto-NAKs sent (requests MAC'd with an unknown key)",
        counter(st.key_crypto_naks),
    );
    r.register(
        "nts_ke_accepted",
        "NTS-KE sessions that handed out cookies",
        counter(st.nts_ke_accepted),
    );
    r.register(
        "nts_ke_failed",
        "NTS-KE connections that ended without cookies",
        counter(st.nts_ke_dropped),
    );
    r.register(
        "nts_ke_active",
        "NTS-KE connections open now",
        gauge(st.nts_ke_active as f64),
    );
    r.register(
        "daemon_tasks",
        "Tasks alive in skytimed's async runtime",
        gauge(st.tasks_alive as f64),
    );
}

/// The OpenMetrics text as Prometheus' text format 0.0.4: counter and
/// info families named by their samples, no `# UNIT` or `# EOF` lines.
pub fn prometheus_text(openmetrics: &str) -> String {
    use std::collections::HashMap;
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name, kind);
            }
        }
    }
    let renamed = |name: &str| match kinds.get(name) {
        Some(&"counter") => format!("{name}_total"),
        Some(&"info") => format!("{name}_info"),
        _ => name.to_owned(),
    };
    let mut out = String::new();
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let line = if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match kind {
                "info" => "gauge",
                k => k,
            };
            format!("# TYPE {} {kind}", renamed(name))
        } else if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            format!("# HELP {} {help}", renamed(name))
        } else {
            l.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Whether a request's Accept header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_api::{AlarmReport, SourceReport};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            at: 1_800_000_100,
            gateway_version: "0.1.0",
            ..Snapshot::default()
        };
        s.tracking.stratum = 1;
        s.tracking.synchronized = true;
        s.tracking.frequency = -12.5;
        s.tracking.leap_status = "normal".into();
        s.server.ntp_received = 10;
        s.server.ntp_rate_kods = 3;
        s.server.ntp_dropped_by_reason = [("too_short".to_owned(), 2)].into();
        s.sources.push(SourceReport {
            name: "PPS".into(),
            state: "selected".into(),
            reach: 255,
            gps_fix: Some("gps".into()),
            gps_satellites_used: Some(9),
            nmea_pps_delay: Some(0.45),
            ..SourceReport::default()
        });
        s.monitor.version = "0.1.0".into();
        s.update = Some(skytime_api::UpdateProperties {
            available: true,
            booted_slot: "A".into(),
            primary_slot: "B".into(),
            state: "installed".into(),
            current_version: "0.2.0+20250301.000000".into(),
            progress_percent: 100,
            ..Default::default()
        });
        s.monitor.alarms.push(AlarmReport {
            name: "holdover".into(),
            severity: "warning".into(),
            since: 1_800_000_000,
            reason: "x".into(),
        });
        s
    }

    #[test]
    fn names_units_and_values() {
        let text = openmetrics(&snapshot());
        for line in [
            "skytime_tracking_stratum 1.0",
            "skytime_ntp_requests_total 10",
            "skytime_ntp_dropped_total{reason=\"too_short\"} 2",
            "skytime_ntp_rate_kods_total 3",
            "skytime_source_selected{source=\"PPS\"} 1.0",
            "skytime_gps_satellites 9.0",
            "skytime_holdover_seconds 100.0",
            "skytime_alarm_active{alarm=\"holdover\",severity=\"warning\"} 1.0",
            "skytime_alarm_active{alarm=\"pps_missing\",severity=\"warning\"} 0.0",
            "# UNIT skytime_tracking_offset_seconds seconds",
            "skytime_update_info{state=\"installed\",booted_slot=\"A\",primary_slot=\"B\",current_version=\"0.2.0+20250301.000000\"} 1",
            "skytime_update_available 1.0",
            "skytime_update_progress_ratio 1.0",
            "skytime_update_failed 0.0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        let freq: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("skytime_tracking_frequency_ratio "))
            .and_then(|v| v.parse().ok())
            .expect("frequency as a ratio");
        assert!((freq + 1.25e-5).abs() < 1e-12, "{freq}");
        assert!(
            text.contains("# HELP skytime_ntp_requests NTP requests received.\n"),
            "{text}"
        );
        let text = prometheus_text(&text);
        assert!(
            text.contains("# TYPE skytime_ntp_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE skytime_build_info gauge"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn accept_header_negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
