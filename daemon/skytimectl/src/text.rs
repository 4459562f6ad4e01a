//! The records as chronyc prints the same things: `tracking`, `sources`,
//! `sourcestats`, `serverstats`, `clients`, `authdata`, and a one-screen
//! summary.

use crate::render::{ago, fields, offset, table, utc};
use skytime_api::{
    verdict, AlarmReport, CertificateReport, ClientReport, HistoryPoint, NtsReport, ServerReport,
    SourceAuthReport, SourceReport, TrackingReport,
};

pub fn tracking(t: &TrackingReport) -> String {
    let sign = |v: f64, pos: &str, neg: &str| {
        format!("{:.9} seconds {}", v.abs(), if v < 0.0 { neg } else { pos })
    };
    fields(&[
        (
            "Reference ID",
            reference(&t.reference_id, &t.reference_name),
        ),
        ("Stratum", t.stratum.to_string()),
        (
            "Ref time (UTC)",
            if t.reference_time > 0.0 {
                utc(t.reference_time as i64)
            } else {
                "never".into()
            },
        ),
        (
            "System time",
            sign(t.system_time_offset, "fast of NTP time", "slow of NTP time"),
        ),
        ("Last offset", format!("{:+.9} seconds", t.last_offset)),
        ("RMS offset", format!("{:.9} seconds", t.rms_offset)),
        (
            "Frequency",
            format!(
                "{:.3} ppm {}",
                t.frequency.abs(),
                if t.frequency < 0.0 { "slow" } else { "fast" }
            ),
        ),
        ("Residual freq", format!("{:+.3} ppm", t.residual_frequency)),
        ("Skew", format!("{:.3} ppm", t.skew)),
        ("Root delay", format!("{:.9} seconds", t.root_delay)),
        (
            "Root dispersion",
            format!("{:.9} seconds", t.root_dispersion),
        ),
        (
            "Update interval",
            format!("{:.1} seconds", t.update_interval),
        ),
        ("Leap status", capitalized(&t.leap_status)),
        (
            "Synchronized",
            if t.synchronized { "yes" } else { "no" }.into(),
        ),
    ])
}

/// chronyc's form: the reference ID in hex, then a name ("50505300
/// (PPS)"). An ASCII ID such as "PPS" is its own name.
fn reference(id: &str, name: &str) -> String {
    // Non-ASCII IDs (IPv4 addresses, local) already come as 8 hex digits.
    let ascii = !id.is_empty() && id.len() <= 4 && id.bytes().all(|b| b.is_ascii_graphic());
    let (hex, own_name) = if ascii {
        let mut bytes = [0u8; 4];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        (
            bytes.iter().map(|b| format!("{b:02X}")).collect::<String>(),
            id.to_owned(),
        )
    } else {
        (id.to_owned(), String::new())
    };
    let name = if name.is_empty() {
        own_name
    } else {
        name.to_owned()
    };
    if name.is_empty() {
        hex
    } else {
        format!("{hex} ({name})")
    }
}

/// "normal" -> "Normal", as chronyc prints the leap status.
fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn state_mark(state: &str) -> &'static str {
    match state {
        "selected" => "*",
        "combined" => "+",
        "candidate" => "-",
        "falseticker" => "x",
        "jittery" => "~",
        _ => "?",
    }
}

pub fn sources(list: &[SourceReport]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            let (mark, details) = if x.kind == "ntp" {
                // An upstream server: chronyc's `^` mode, and how it is
                // authenticated and reached.
                let mut details = format!(
                    "{} {}",
                    x.authentication.as_deref().unwrap_or("none"),
                    x.address.as_deref().unwrap_or("-")
                );
                if let Some(st) = x.status.as_deref().filter(|s| *s != "polling") {
                    details.push_str(&format!(" ({st})"));
                }
                (format!("^{}", state_mark(&x.state)), details)
            } else {
                let gps = match &x.gps_fix {
                    Some(fix) => {
                        let sats = x
                            .gps_satellites_used
                            .map(|n| format!(" {n} sats"))
                            .unwrap_or_default();
                        let delay = x
                            .nmea_pps_delay
                            .map(|d| format!(" nmea-pps {}", offset(d)))
                            .unwrap_or_default();
                        format!("fix {fix}{sats}{delay}")
                    }
                    None => String::new(),
                };
                (format!("{} {}", x.kind, state_mark(&x.state)), gps)
            };
            vec![
                mark,
                x.name.clone(),
                x.stratum.to_string(),
                x.poll.to_string(),
                format!("{:o}", x.reach),
                ago(x.last_sample_ago),
                format!(
                    "{}[{}] +/- {}",
                    offset(x.last_offset_adjusted),
                    offset(x.last_offset),
                    offset(x.last_error).trim_start_matches('+')
                ),
                details,
            ]
        })
        .collect();
    table(
        &[
            "MS",
            "Name",
            "Stratum",
            "Poll",
            "Reach",
            "LastRx",
            "Last sample",
            "GPS / upstream",
        ],
        &rows,
        &[false, false, true, true, true, true, true, false],
    )
}

/// How each upstream server is authenticated, as `chronyc authdata`
/// shows it (Last: since the last NTS key exchange; Atmp: exchanges tried
/// since; NAK: NTS NAKs since; Cook, CLen: cookies held and their length).
pub fn authdata(list: &[SourceAuthReport]) -> String {
    if list.is_empty() {
        return "No upstream servers are configured.".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            let name = match &a.address {
                Some(addr) if !addr.starts_with(&a.name) => format!("{} ({addr})", a.name),
                _ => a.name.clone(),
            };
            let nts = a.mode == "NTS";
            let mut row = vec![
                name,
                a.mode.clone(),
                a.key_id.map_or("-".into(), |k| k.to_string()),
                a.key_type.clone().unwrap_or_else(|| "-".into()),
                a.key_bits.to_string(),
                if nts { ago(a.last_ke_ago) } else { "-".into() },
                if nts {
                    a.ke_attempts.to_string()
                } else {
                    "-".into()
                },
                if nts { a.naks.to_string() } else { "-".into() },
                if nts {
                    a.cookies.to_string()
                } else {
                    "-".into()
                },
                if nts {
                    a.cookie_length.to_string()
                } else {
                    "-".into()
                },
                a.auth_failures.to_string(),
            ];
            if let Some(e) = &a.error {
                row.push(format!("key exchange failing: {e}"));
            } else if a.restored {
                row.push("session restored at start".into());
            } else {
                row.push(String::new());
            }
            row
        })
        .collect();
    table(
        &[
            "Name/IP address",
            "Mode",
            "KeyID",
            "Type",
            "KLen",
            "Last",
            "Atmp",
            "NAK",
            "Cook",
            "CLen",
            "AuthFail",
            "",
        ],
        &rows,
        &[
            false, false, true, false, true, true, true, true, true, true, true, false,
        ],
    )
}

pub fn sourcestats(list: &[SourceReport]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            vec![
                x.name.clone(),
                x.samples.to_string(),
                x.runs.to_string(),
                ago(x.span),
                format!("{:.3}", x.frequency_ppm),
                format!("{:.3}", x.skew_ppm),
                offset(x.offset),
                offset(x.std_dev).trim_start_matches('+').to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "Name",
            "NP",
            "NR",
            "Span",
            "Frequency",
            "Freq Skew",
            "Offset",
            "Std Dev",
        ],
        &rows,
        &[false, true, true, true, true, true, true, true],
    )
}

pub fn serverstats(st: &ServerReport) -> String {
    let mut pairs = vec![
        ("NTP packets received", st.ntp_received.to_string()),
        ("NTP packets replied", st.ntp_replied.to_string()),
        ("NTP packets dropped", st.ntp_dropped.to_string()),
        ("Kernel RX timestamps", st.ntp_kernel_timestamps.to_string()),
        ("RATE KoDs sent", st.ntp_rate_kods.to_string()),
        (
            "Authenticated NTP packets",
            st.nts_authenticated.to_string(),
        ),
        ("NTS NAKs sent", st.nts_naks.to_string()),
        (
            "Key-authenticated NTP packets",
            st.key_authenticated.to_string(),
        ),
        ("Crypto-NAKs sent", st.key_crypto_naks.to_string()),
        (
            "NTS-KE connections accepted",
            st.nts_ke_accepted.to_string(),
        ),
        ("NTS-KE connections dropped", st.nts_ke_dropped.to_string()),
        ("NTS-KE connections active", st.nts_ke_active.to_string()),
        ("Daemon tasks alive", st.tasks_alive.to_string()),
    ];
    // The map is sorted by reason.
    let reasons: Vec<(String, u64)> = st
        .ntp_dropped_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (format!("  dropped: {k}"), *n))
        .collect();
    for (label, n) in &reasons {
        pairs.push((label.as_str(), n.to_string()));
    }
    fields(&pairs)
}

pub fn clients(list: &[ClientReport]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            vec![
                x.address.clone(),
                x.ntp_replies.to_string(),
                x.nts_replies.to_string(),
                x.dropped.to_string(),
                x.interval_log2
                    .map(|v| format!("{:.0}", v.round()))
                    .unwrap_or_else(|| "-".into()),
                ago(x.last_seen_ago),
            ]
        })
        .collect();
    table(
        &["Address", "NTP", "NTS", "Drop", "Int", "Last"],
        &rows,
        &[false, true, true, true, true, true],
    )
}

pub fn certificate(c: &CertificateReport) -> String {
    fields(&[
        ("Subject", c.subject.clone()),
        ("Issuer", c.issuer.clone()),
        ("Alt names", c.subject_alt_names.join(", ")),
        ("Valid from", utc(c.not_before)),
        ("Expires", utc(c.not_after)),
        ("SHA-256", c.fingerprint_sha256.clone()),
        ("Chain length", c.chain_length.to_string()),
        ("File", c.path.clone()),
    ])
}

/// `skytimectl network show`.
pub fn network(n: &skytime_api::NetworkReport) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut out = fields(&[
        (
            "Managed",
            if n.managed {
                "yes".to_owned()
            } else {
                "no (the image's default: DHCP)".to_owned()
            },
        ),
        ("Mode", n.mode.clone()),
        ("Host name", or_dash(&n.hostname)),
        ("mDNS", if n.mdns { "yes".into() } else { "no".into() }),
        ("IPv4", or_dash(&n.ipv4_address)),
        ("IPv4 gateway", or_dash(&n.ipv4_gateway)),
        ("IPv6", or_dash(&n.ipv6_address)),
        ("IPv6 gateway", or_dash(&n.ipv6_gateway)),
        ("DNS", or_dash(&n.dns.join(" "))),
        ("Listening", or_dash(&n.listening.join(", "))),
    ]);
    if n.pending {
        out.push_str(&format!(
            "\n\nPending: reverts in {:.0} s unless confirmed",
            n.confirm_within
        ));
    }
    out
}

pub fn nts(n: &NtsReport) -> String {
    if !n.enabled {
        return "NTS is disabled ([nts] enabled = false).".into();
    }
    let ids: Vec<String> = n.key_ids.iter().map(|k| format!("{k:08x}")).collect();
    let mut out = fields(&[
        ("NTS required", n.required.to_string()),
        ("Key role", n.key_role.clone()),
        (
            "Current key",
            n.current_key_id
                .map(|k| format!("{k:08x}"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("Keys held", ids.join(" ")),
        (
            "Next rotation",
            n.next_rotation.map(utc).unwrap_or_else(|| "-".into()),
        ),
        ("NTS-KE addresses", n.ke_addresses.join(" ")),
    ]);
    match &n.certificate {
        Some(c) => {
            out.push_str("\n\nCertificate\n");
            out.push_str(&certificate(c));
        }
        None => out.push_str(&format!(
            "\n\nCertificate: unreadable: {}",
            n.certificate_error.as_deref().unwrap_or("-")
        )),
    }
    out
}

pub fn status(
    t: &TrackingReport,
    sources: &[SourceReport],
    st: &ServerReport,
    clients: usize,
    nts: &NtsReport,
    alarms: &[AlarmReport],
) -> String {
    let (word, why) = verdict(alarms);
    let verdict_line = match why {
        Some(a) => format!("{word}: {}", a.reason),
        None => word.to_owned(),
    };
    let selected = sources
        .iter()
        .find(|x| x.state == "selected")
        .map_or("none", |x| x.name.as_str());
    let cert = match &nts.certificate {
        Some(c) => format!("{} (expires {})", c.subject, utc(c.not_after)),
        None if !nts.enabled => "NTS disabled".into(),
        None => format!(
            "unreadable: {}",
            nts.certificate_error.as_deref().unwrap_or("-")
        ),
    };
    let alarm_names: Vec<&str> = alarms.iter().map(|a| a.name.as_str()).collect();
    fields(&[
        ("Verdict", verdict_line),
        (
            "Alarms",
            if alarms.is_empty() {
                "none".into()
            } else {
                alarm_names.join(", ")
            },
        ),
        (
            "Clock",
            format!(
                "stratum {}, {}, reference {}",
                t.stratum,
                if t.synchronized {
                    "synchronised"
                } else {
                    "NOT synchronised"
                },
                t.reference_id
            ),
        ),
        ("Offset", offset(t.system_time_offset)),
        (
            "Sources",
            format!("{} (selected: {selected})", sources.len()),
        ),
        (
            "Server",
            format!(
                "{} received, {} replied, {} dropped, {} NTS",
                st.ntp_received, st.ntp_replied, st.ntp_dropped, st.nts_authenticated
            ),
        ),
        ("Clients", clients.to_string()),
        ("Certificate", cert),
    ])
}

/// Active alarms, critical first.
pub fn alarms(list: &[AlarmReport]) -> String {
    if list.is_empty() {
        return "No active alarms.".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.severity.clone(),
                a.name.clone(),
                utc(a.since),
                a.reason.clone(),
            ]
        })
        .collect();
    table(
        &["Severity", "Alarm", "Since", "Reason"],
        &rows,
        &[false, false, false, false],
    )
}

/// One line per history point.
pub fn history(points: &[HistoryPoint]) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                utc(p.time),
                if p.synchronized { "yes" } else { "no" }.into(),
                offset(p.offset),
                format!("{:+.3}", p.frequency),
                opt(p
                    .pps_jitter
                    .map(|j| offset(j).trim_start_matches('+').to_owned())),
                opt(p.satellites.map(|n| n.to_string())),
                format!("{:.1}", p.request_rate),
            ]
        })
        .collect();
    table(
        &[
            "Time",
            "Sync",
            "Offset",
            "Freq ppm",
            "PPS jitter",
            "Sats",
            "Req/s",
        ],
        &rows,
        &[false, false, true, true, true, true, true],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_and_history_read_as_tables() {
        assert_eq!(alarms(&[]), "No active alarms.");
        let a = AlarmReport {
            name: "pps_missing".into(),
            severity: "warning".into(),
            since: 1_800_000_000,
            reason: "no PPS pulse".into(),
        };
        let text = alarms(std::slice::from_ref(&a));
        assert!(
            text.contains("warning   pps_missing  2027-01-15 08:00:00 UTC  no PPS pulse"),
            "{text}"
        );
        let p = HistoryPoint {
            time: 1_800_000_060,
            interval: 60,
            synchronized: true,
            offset: 2e-8,
            frequency: -1.5,
            pps_jitter: Some(3e-7),
            satellites: None,
            request_rate: 2.5,
        };
        let text = history(&[p]);
        assert!(
            text.contains("+20ns")
                && text.contains("-1.500")
                && text.contains("300ns")
                && text.contains("2.5"),
            "{text}"
        );
        let s = status(
            &TrackingReport::default(),
            &[],
            &ServerReport::default(),
            0,
            &NtsReport::default(),
            &[a],
        );
        assert!(s.contains("Verdict     : DEGRADED: no PPS pulse"), "{s}");
        assert!(s.contains("Alarms      : pps_missing"), "{s}");
    }

    #[test]
    fn reference_reads_like_chronyc() {
        assert_eq!(reference("PPS", "PPS"), "50505300 (PPS)");
        assert_eq!(reference("GPS", ""), "47505300 (GPS)");
        assert_eq!(reference("7F7F0101", ""), "7F7F0101");
        assert_eq!(reference("C0000201", "gps0"), "C0000201 (gps0)");
        assert_eq!(capitalized("not synchronised"), "Not synchronised");
    }

    #[test]
    fn upstream_servers_read_like_chronyc() {
        let server = SourceReport {
            name: "ntp1.example".into(),
            kind: "ntp".into(),
            state: "selected".into(),
            stratum: 1,
            poll: 6,
            reach: 0o377,
            address: Some("192.0.2.1:123".into()),
            authentication: Some("nts".into()),
            status: Some("polling".into()),
            ..SourceReport::default()
        };
        let t = sources(&[server]);
        // Header, rule, then the row.
        let row = t.lines().nth(2).unwrap();
        assert!(row.starts_with("^*"), "{t}");
        assert!(
            row.contains("ntp1.example") && row.contains("nts 192.0.2.1:123"),
            "{t}"
        );
        let a = authdata(&[
            SourceAuthReport {
                name: "ntp1.example".into(),
                address: Some("192.0.2.1:123".into()),
                mode: "NTS".into(),
                key_type: Some("AES-SIV-CMAC-256".into()),
                key_bits: 256,
                last_ke_ago: 65.0,
                cookies: 8,
                cookie_length: 104,
                ..SourceAuthReport::default()
            },
            SourceAuthReport {
                name: "10.0.0.2".into(),
                mode: "SK".into(),
                key_id: Some(7),
                key_type: Some("SHA1".into()),
                key_bits: 160,
                last_ke_ago: -1.0,
                ..SourceAuthReport::default()
            },
        ]);
        assert!(a.starts_with("Name/IP address"), "{a}");
        let nts = a.lines().nth(2).unwrap();
        assert!(
            nts.contains("NTS") && nts.contains("AES-SIV-CMAC-256") && nts.contains("104"),
            "{a}"
        );
        let sk = a.lines().nth(3).unwrap();
        assert!(
            sk.contains("SK") && sk.contains('7') && sk.contains("SHA1"),
            "{a}"
        );
        assert_eq!(authdata(&[]), "No upstream servers are configured.");
    }

    #[test]
    fn serverstats_lists_only_the_reasons_that_dropped_something() {
        let st = ServerReport {
            ntp_received: 3,
            ntp_dropped_by_reason: [("too_short".into(), 2), ("bad_version".into(), 0)].into(),
            ..Default::default()
        };
        let text = serverstats(&st);
        assert!(
            text.contains("NTP packets received") && text.contains(": 3"),
            "{text}"
        );
        assert!(
            text.contains("dropped: too_short") && !text.contains("bad_version"),
            "{text}"
        );
    }

    #[test]
    fn nts_says_why_the_certificate_is_missing() {
        let n = NtsReport {
            enabled: true,
            certificate_error: Some("cannot read /x".into()),
            key_ids: vec![1, 2],
            current_key_id: Some(2),
            ..Default::default()
        };
        let text = nts(&n);
        assert!(text.contains("unreadable: cannot read /x"), "{text}");
        assert!(text.contains("00000001 00000002"), "{text}");
        assert_eq!(
            nts(&NtsReport::default()),
            "NTS is disabled ([nts] enabled = false)."
        );
    }
}
