//! `GET /`: one read-only HTML page rendered on the appliance, usable
//! without JavaScript: the verdict (OK / DEGRADED / FAIL and why), the
//! clock, the active alarms, the sources, the server's load, the NTS
//! certificate, the versions, boot slot and update state, and SVG plots
//! of the last 24 hours. It refreshes itself every 30 seconds (a meta refresh).

use crate::snapshot::Snapshot;
use crate::svg::{escape, Plot};
use skytime_api::display::{offset, utc};
use skytime_api::{verdict, HistoryPoint};
use std::fmt::Write;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;color:#222;padding:0 1em}\
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse}td,th{padding:.15em .9em .15em 0;text-align:left;vertical-align:top}\
th{font-weight:600;color:#444}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-size:1.3em;font-weight:700;padding:.4em .7em;border-radius:.3em;margin:.6em 0}\
.ok{background:#dff3e0;color:#1b5e20}.degraded{background:#fff3cd;color:#7a5b00}.fail{background:#f8d7da;color:#842029}\
.critical{color:#842029;font-weight:600}.warning{color:#7a5b00;font-weight:600}\
figure{margin:.6em 0}figcaption{font-size:.9em;color:#444}footer{margin-top:2em;font-size:.85em;color:#777}";

/// The page for `s`.
pub fn render(s: &Snapshot) -> String {
    let (word, why) = verdict(&s.monitor.alarms);
    let class = word.to_ascii_lowercase();
    let t = &s.tracking;
    let line = match why {
        Some(a) => format!("{word}: {}", a.reason),
        None => format!(
            "{word}: stratum {}, following {}",
            t.stratum,
            if t.reference_name.is_empty() {
                &t.reference_id
            } else {
                &t.reference_name
            }
        ),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>skytime: {word}</title><style>{STYLE}</style></head><body>\
         <header><h1>skytime time server</h1><p id=\"verdict\" class=\"verdict {class}\">{}</p></header>",
        escape(&line)
    );
    clock(&mut h, s);
    alarms(&mut h, s);
    sources(&mut h, s);
    server(&mut h, s);
    certificate(&mut h, s);
    system(&mut h, s);
    history(&mut h, s);
    let _ = writeln!(
        h,
        "<footer>Read at {}. This page reloads every 30 s; the same data: <a href=\"/metrics\">/metrics</a>.</footer></body></html>",
        escape(&utc(s.at))
    );
    h
}

fn table(h: &mut String, id: &str, title: &str, rows: &[(&str, String)]) {
    let _ = write!(h, "<section id=\"{id}\"><h2>{title}</h2><table>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h.push_str("</table></section>");
}

fn clock(h: &mut String, s: &Snapshot) {
    let t = &s.tracking;
    let reference = if t.reference_name.is_empty() {
        t.reference_id.clone()
    } else {
        format!("{} ({})", t.reference_id, t.reference_name)
    };
    table(
        h,
        "clock",
        "Clock",
        &[
            ("Stratum", t.stratum.to_string()),
            ("Reference", reference),
            (
                "Synchronized",
                if t.synchronized { "yes" } else { "no" }.into(),
            ),
            (
                "Error bound",
                offset(t.root_delay / 2.0 + t.root_dispersion)
                    .trim_start_matches('+')
                    .to_owned(),
            ),
            ("Offset", offset(t.system_time_offset)),
            ("Frequency", format!("{:+.3} ppm", t.frequency)),
            ("Leap status", t.leap_status.clone()),
            (
                "Last update",
                if t.reference_time > 0.0 {
                    utc(t.reference_time as i64)
                } else {
                    "never".into()
                },
            ),
        ],
    );
}

fn alarms(h: &mut String, s: &Snapshot) {
    h.push_str("<section id=\"alarms\"><h2>Alarms</h2>");
    if s.monitor.alarms.is_empty() {
        h.push_str("<p>None.</p></section>");
        return;
    }
    h.push_str("<table><tr><th>Severity</th><th>Alarm</th><th>Since</th><th>Reason</th></tr>");
    for a in &s.monitor.alarms {
        let _ = write!(
            h,
            "<tr class=\"alarm\"><td class=\"{sev}\">{sev}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.name),
            escape(&utc(a.since)),
            escape(&a.reason),
            sev = escape(&a.severity),
        );
    }
    h.push_str("</table></section>");
}

fn sources(h: &mut String, s: &Snapshot) {
    h.push_str("<section id=\"sources\"><h2>Sources</h2>");
    if s.sources.is_empty() {
        h.push_str("<p>No time source is configured.</p></section>");
        return;
    }
    h.push_str(
        "<table><tr><th>Source</th><th>State</th><th>Reach</th><th>Offset</th><th>Jitter</th>\
         <th>Fix</th><th>Satellites</th><th>NMEA-to-PPS</th></tr>",
    );
    for x in &s.sources {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let _ = write!(
            h,
            "<tr class=\"source\"><td>{}</td><td>{}</td><td class=\"n\">{:o}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&x.name),
            escape(&x.state),
            x.reach,
            escape(&offset(x.last_offset_adjusted)),
            escape(offset(x.std_dev).trim_start_matches('+')),
            escape(&opt(x.gps_fix.clone())),
            opt(x.gps_satellites_used.map(|n| n.to_string())),
            escape(&opt(x.nmea_pps_delay.map(offset))),
        );
    }
    h.push_str("</table></section>");
}

fn server(h: &mut String, s: &Snapshot) {
    let st = &s.server;
    let rate = s.history.last().map_or_else(
        || "-".to_owned(),
        |p| format!("{:.1} per second", p.request_rate),
    );
    table(
        h,
        "server",
        "Server load",
        &[
            ("Request rate", rate),
            ("NTP requests", st.ntp_received.to_string()),
            ("NTP replies", st.ntp_replied.to_string()),
            ("Dropped", st.ntp_dropped.to_string()),
            ("RATE kiss-o'-death replies", st.ntp_rate_kods.to_string()),
            (
                "NTS-authenticated replies",
                st.nts_authenticated.to_string(),
            ),
            ("NTS NAKs", st.nts_naks.to_string()),
            (
                "NTS-KE sessions",
                format!(
                    "{} accepted, {} failed, {} open",
                    st.nts_ke_accepted, st.nts_ke_dropped, st.nts_ke_active
                ),
            ),
            ("Clients", s.clients.to_string()),
        ],
    );
}

fn certificate(h: &mut String, s: &Snapshot) {
    let n = &s.nts;
    let rows = match (&n.certificate, n.enabled) {
        (_, false) => vec![("NTS", "disabled".to_owned())],
        (Some(c), true) => {
            let days = (c.not_after - s.at) / 86_400;
            vec![
                ("Subject", c.subject.clone()),
                ("Names", c.subject_alt_names.join(", ")),
                ("Expires", format!("{} ({days} days)", utc(c.not_after))),
                ("SHA-256", c.fingerprint_sha256.clone()),
            ]
        }
        (None, true) => vec![(
            "Certificate",
            format!(
                "unreadable: {}",
                n.certificate_error.as_deref().unwrap_or("-")
            ),
        )],
    };
    table(h, "certificate", "NTS certificate", &rows);
}

fn system(h: &mut String, s: &Snapshot) {
    let mut rows = vec![
        ("skytimed", s.monitor.version.clone()),
        ("Gateway", s.gateway_version.to_owned()),
        (
            "Boot slot",
            s.boot_slot.clone().unwrap_or_else(|| "unknown".into()),
        ),
    ];
    // The update state, from skytimed's Update interface.
    if let Some(u) = &s.update {
        let mut state = u.state.clone();
        if !u.bundle_version.is_empty() {
            state.push_str(&format!(" ({})", u.bundle_version));
        }
        if !u.state_reason.is_empty() {
            state.push_str(&format!(": {}", u.state_reason));
        }
        rows.push(("Update", state));
        rows.push(("Next boot", format!("slot {}", u.primary_slot)));
    }
    table(h, "system", "System", &rows);
}

fn history(h: &mut String, s: &Snapshot) {
    // The last 24 hours, or as much of them as the history holds.
    let to = s.at;
    let from = s.history.first().map_or(to - 24 * 3600, |p| {
        (p.time - i64::from(p.interval)).max(to - 24 * 3600)
    });
    let interval = s.history.first().map_or(60, |p| i64::from(p.interval));
    let series = |f: fn(&HistoryPoint) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        s.history.iter().map(|p| (p.time, f(p))).collect()
    };
    let seconds = |v: f64| offset(v);
    let ppm = |v: f64| format!("{v:+.3} ppm");
    let jitter = |v: f64| offset(v).trim_start_matches('+').to_owned();
    let count = |v: f64| format!("{v:.0}");
    let rate = |v: f64| format!("{v:.1}/s");
    let plot = |id, title, points, min_span, label| Plot {
        id,
        title,
        points,
        from,
        to,
        max_gap: 2 * interval,
        min_span,
        label,
    };
    let plots = [
        plot(
            "plot-offset",
            "Offset",
            series(|p| Some(p.offset)),
            2e-6,
            &seconds,
        ),
        plot(
            "plot-frequency",
            "Frequency",
            series(|p| Some(p.frequency)),
            0.01,
            &ppm,
        ),
        plot(
            "plot-pps-jitter",
            "PPS jitter",
            series(|p| p.pps_jitter),
            1e-7,
            &jitter,
        ),
        plot(
            "plot-satellites",
            "Satellites",
            series(|p| p.satellites.map(f64::from)),
            2.0,
            &count,
        ),
        plot(
            "plot-request-rate",
            "Request rate",
            series(|p| Some(p.request_rate)),
            1.0,
            &rate,
        ),
    ];
    h.push_str("<section id=\"history\"><h2>Recent history (up to 24 hours)</h2>");
    for p in plots {
        let _ = write!(
            h,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            p.render(),
            escape(p.title)
        );
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_api::AlarmReport;

    #[test]
    fn the_verdict_names_the_worst_alarm_and_text_is_escaped() {
        let mut s = Snapshot {
            at: 1_800_000_000,
            ..Snapshot::default()
        };
        s.tracking.stratum = 1;
        s.tracking.reference_id = "PPS".into();
        let page = render(&s);
        assert!(
            page.contains("class=\"verdict ok\">OK: stratum 1, following PPS<"),
            "{page}"
        );
        assert_eq!(page.matches("<svg").count(), 5);
        s.monitor.alarms.push(AlarmReport {
            name: "not_synchronized".into(),
            severity: "critical".into(),
            since: 1_799_999_000,
            reason: "<script>alert(1)</script>".into(),
        });
        let page = render(&s);
        assert!(
            page.contains("class=\"verdict fail\">FAIL: &lt;script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn the_update_state_is_shown_when_skytimed_has_it() {
        let mut s = Snapshot::default();
        assert!(!render(&s).contains("<th>Update</th>"));
        s.update = Some(skytime_api::UpdateProperties {
            state: "rolled-back".into(),
            bundle_version: "0.3.0+20250401.120000".into(),
            state_reason: "slot B did not boot".into(),
            primary_slot: "A".into(),
            ..Default::default()
        });
        let page = render(&s);
        assert!(
            page.contains(
                "<th>Update</th><td>rolled-back (0.3.0+20250401.120000): slot B did not boot</td>"
            ) && page.contains("<th>Next boot</th><td>slot A</td>"),
            "{page}"
        );
    }
}
