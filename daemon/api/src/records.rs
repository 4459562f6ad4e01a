//! The records the management API returns. The daemon fills them; clients
//! read them as D-Bus dictionaries (`a{sv}`) or JSON objects, whose keys
//! are the PascalCase field names (`reference_id` is `ReferenceId`).
//!
//! Units: seconds (`d`) for offsets, delays and intervals, ppm (`d`) for
//! frequencies, Unix seconds (`x`/`t`) for instants.
//!
//! To add a record: declare it here with `record!`, and add an example of
//! it to the round-trip test at the end of this file.

use crate::record::record;
use std::collections::BTreeMap;

record! {
    /// The system clock and what the server tells clients about it: every
    /// field `chronyc tracking` shows. On D-Bus these are the properties
    /// of `org.skytime.Appliance1.Tracking` (read together with `GetAll`).
    pub struct TrackingReport {
        /// 1..=15, or 16 when unsynchronized.
        pub stratum: u8,
        /// Reference ID as chronyc prints it ("PPS", "GPS", or hex).
        pub reference_id: String,
        /// Short name of the selected source ("PPS", "NMEA"); empty if none.
        pub reference_name: String,
        pub synchronized: bool,
        /// Last update of the clock, Unix seconds (0: never).
        pub reference_time: f64,
        /// Current correction still being applied: positive means the
        /// system clock is fast (chronyc's "System time").
        pub system_time_offset: f64,
        pub last_offset: f64,
        pub rms_offset: f64,
        /// Frequency correction, ppm (positive: the clock runs fast).
        pub frequency: f64,
        /// ppm.
        pub residual_frequency: f64,
        /// ppm.
        pub skew: f64,
        pub root_delay: f64,
        pub root_dispersion: f64,
        /// Seconds between the last two clock updates.
        pub update_interval: f64,
        /// "normal", "insert second", "delete second" or "not synchronised".
        pub leap_status: String,
    }
}

record! {
    /// One time source: `chronyc sources` + `sourcestats` + GPS details,
    /// and for an upstream server what it says about itself.
    pub struct SourceReport {
        /// Short name ("PPS", "NMEA", "SOCK"), or the upstream server's
        /// configured name or address.
        pub name: String,
        /// "nmea", "pps", "sock", or "ntp" for an upstream server.
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
        /// Offset of the last sample as measured, seconds (positive: the
        /// source is ahead of the system clock).
        pub last_offset: f64,
        /// The same after the discipline's adjustments.
        pub last_offset_adjusted: f64,
        /// Error bound of the last sample, seconds.
        pub last_error: f64,
        /// sourcestats: samples held.
        pub samples: u32,
        pub runs: u32,
        /// Seconds covered by the samples.
        pub span: f64,
        pub frequency_ppm: f64,
        pub skew_ppm: f64,
        pub offset: f64,
        pub std_dev: f64,
        /// GPS fix ("none", "gps", "dgps", "pps", ...; absent for other
        /// sources).
        pub gps_fix: Option<String>,
        pub gps_satellites_used: Option<u32>,
        pub gps_satellites_visible: Option<u32>,
        /// Seconds between the PPS edge and the NMEA sentence for that
        /// second.
        pub nmea_pps_delay: Option<f64>,
        /// Device path (serial port, /dev/ppsN).
        pub device: Option<String>,
        // --- Upstream servers (absent for reference clocks) ---
        /// The address polled ("192.0.2.1:123").
        pub address: Option<String>,
        /// "nts", "symmetric" or "none".
        pub authentication: Option<String>,
        /// "normal", "trust" or "noselect".
        pub role: Option<String>,
        /// The server's own reference ID, as chronyc prints it.
        pub reference: Option<String>,
        /// Round trip to the server, seconds.
        pub delay: Option<f64>,
        /// The server's root delay and dispersion, seconds.
        pub root_delay: Option<f64>,
        pub root_dispersion: Option<f64>,
        /// What the source is doing when it is not polling normally
        /// ("key exchange", "retrying: ...", "refused (DENY)").
        pub status: Option<String>,
    }
}

record! {
    /// How an upstream server is authenticated (`chronyc authdata`, and
    /// more): `Sources.GetAuthData`.
    pub struct SourceAuthReport {
        pub name: String,
        pub address: Option<String>,
        /// "NTS", "SK" (symmetric key) or "-" (none), as chronyc shows.
        pub mode: String,
        /// The symmetric key's ID.
        pub key_id: Option<u32>,
        /// The key type ("SHA1", "AES128") or the NTS AEAD algorithm
        /// ("AES-SIV-CMAC-256").
        pub key_type: Option<String>,
        /// Bits of the key.
        pub key_bits: u32,
        /// Seconds since the last successful NTS key exchange (-1: none).
        pub last_ke_ago: f64,
        /// Key exchanges tried since the last success.
        pub ke_attempts: u32,
        /// Successful key exchanges in all.
        pub ke_total: u64,
        /// NTS NAKs since the last key exchange.
        pub naks: u64,
        /// Cookies held, and their length in bytes.
        pub cookies: u32,
        pub cookie_length: u32,
        /// Replies refused because their authentication failed.
        pub auth_failures: u64,
        /// The NTS session was restored from disk at start.
        pub restored: bool,
        /// Why the last key exchange failed, while it keeps failing.
        pub error: Option<String>,
    }
}

record! {
    /// NTP and NTS server counters (`chronyc serverstats`, and more).
    pub struct ServerReport {
        pub ntp_received: u64,
        pub ntp_replied: u64,
        pub ntp_dropped: u64,
        /// Dropped requests by reason ("too_short", "access_denied", ...).
        pub ntp_dropped_by_reason: BTreeMap<String, u64>,
        pub ntp_kernel_timestamps: u64,
        /// RATE kiss-o'-death replies to clients over the rate limit
        /// (`[ntp.ratelimit] kod`); not counted as dropped.
        pub ntp_rate_kods: u64,
        /// NTS-authenticated requests answered.
        pub nts_authenticated: u64,
        /// Replies MAC'd with a symmetric key of the key file.
        pub key_authenticated: u64,
        /// Crypto-NAKs sent: requests MAC'd with a key the file lacks.
        pub key_crypto_naks: u64,
        pub nts_naks: u64,
        pub nts_ke_accepted: u64,
        /// NTS-KE connections that ended without cookies (failed TLS, no
        /// ALPN, timeouts, truncated, evicted).
        pub nts_ke_dropped: u64,
        pub nts_ke_active: u64,
        /// Tasks alive in skytimed's async runtime: bounded in service (the
        /// listeners, sources, open NTS-KE connections); a count that only
        /// grows is a leak, which the soak checks for.
        pub tasks_alive: u64,
        /// Every NTS counter by name.
        pub nts_counters: BTreeMap<String, u64>,
    }
}

record! {
    /// One client of the NTP server (`chronyc clients`).
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
}

record! {
    /// The TLS certificate NTS-KE presents.
    pub struct CertificateReport {
        pub subject: String,
        pub issuer: String,
        /// "DNS:name" and "IP:address" entries.
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
}

record! {
    /// NTS state: certificate and master keys.
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
        /// Every key held, current one included (cookies of these still
        /// work).
        pub key_ids: Vec<u32>,
        /// Unix seconds of the next scheduled rotation (absent for
        /// followers).
        pub next_rotation: Option<i64>,
        /// Seconds.
        pub rotation_interval: u64,
        pub ke_addresses: Vec<String>,
    }
}

record! {
    /// What `Config.Apply` and `Config.Reload` did.
    pub struct ConfigOutcome {
        /// The file written or read (empty for a dry run).
        pub path: String,
        pub dry_run: bool,
        /// Settings that were saved but take effect only after a restart.
        pub restart_required: Vec<String>,
    }
}

record! {
    /// The appliance's network settings (`org.skytime.Appliance1.Network`):
    /// what is in effect and whether it is on probation (a `Network.Apply`
    /// that reverts by itself unless `Network.Confirm` comes in time).
    pub struct NetworkReport {
        /// Whether skytimed manages the network (settings were given); when
        /// not, the image's default (DHCP) runs and the rest is defaults.
        pub managed: bool,
        /// "dhcp" or "static".
        pub mode: String,
        /// Empty: the appliance keeps the name it has.
        pub hostname: String,
        /// Whether `NAME.local` is announced over mDNS.
        pub mdns: bool,
        /// `ADDRESS/PREFIX` (static mode), or empty.
        pub ipv4_address: String,
        pub ipv4_gateway: String,
        pub ipv6_address: String,
        pub ipv6_gateway: String,
        pub dns: Vec<String>,
        /// The settings in effect as the TOML table `Network.Apply` takes.
        pub toml: String,
        /// A change is on probation.
        pub pending: bool,
        /// Seconds left to confirm it (0 when nothing is pending).
        pub confirm_within: f64,
        /// What a revert would put back (TOML; empty when nothing is
        /// pending).
        pub previous_toml: String,
        /// What `Confirm` did to the NTS certificate ("reissued: NAMES",
        /// "kept: ...", "unchanged: ..."); empty for the other calls.
        pub certificate: String,
        /// The sockets open to the network on the appliance, from the
        /// kernel's tables: TCP listening and UDP bound but unconnected,
        /// each as "PROTO ADDRESS:PORT" ("udp 0.0.0.0:123",
        /// "tcp [::]:4460"), sorted. Every process's, not only skytimed's.
        pub listening: Vec<String>,
    }
}

// --- Monitoring: alarms and history (org.skytime.Appliance1.Monitor) ---

record! {
    /// One active alarm (`Monitor.Alarms`).
    pub struct AlarmReport {
        /// Stable name: "not_synchronized", "holdover", "no_gps_fix",
        /// "pps_missing", "pps_rejected", "nmea_missing",
        /// "holdover_limit_reached", "certificate_expiring",
        /// "certificate_expired", "leap_table_expired", "clock_stepped",
        /// "update_failed", "update_rolled_back".
        pub name: String,
        /// "warning" (time is still served within its error bound) or
        /// "critical".
        pub severity: String,
        /// Unix seconds since which the condition holds.
        pub since: i64,
        /// What is wrong, in plain words.
        pub reason: String,
    }
}

record! {
    /// One point of the recent history (`Monitor.History`): the state
    /// over one interval, ending at `time`.
    pub struct HistoryPoint {
        /// End of the interval, Unix seconds.
        pub time: i64,
        /// Length of the interval, seconds.
        pub interval: u32,
        /// Synchronized to a time source throughout the interval.
        pub synchronized: bool,
        /// Mean offset of the system clock, seconds (positive: fast).
        pub offset: f64,
        /// Mean frequency correction, ppm.
        pub frequency: f64,
        /// The PPS source's standard deviation at the end of the
        /// interval, seconds (absent without PPS samples).
        pub pps_jitter: Option<f64>,
        /// Fewest satellites in use during the interval (absent without
        /// a GPS receiver or a fix).
        pub satellites: Option<u32>,
        /// NTP requests received per second, over the interval.
        pub request_rate: f64,
    }
}

crate::record::plain_field!(Vec<AlarmReport>);

record! {
    /// The `Monitor` interface's properties, read together (`GetAll`).
    pub struct MonitorProperties {
        /// The active alarms, critical first.
        pub alarms: Vec<AlarmReport>,
        /// skytimed's version.
        pub version: String,
    }
}

/// The appliance's one-word state, from its alarms: "FAIL" while a
/// critical alarm is active, "DEGRADED" while only warnings are, "OK"
/// otherwise; with the alarm that decides it (the first of the worst).
pub fn verdict(alarms: &[AlarmReport]) -> (&'static str, Option<&AlarmReport>) {
    if let Some(a) = alarms.iter().find(|a| a.severity == "critical") {
        ("FAIL", Some(a))
    } else if let Some(a) = alarms.first() {
        ("DEGRADED", Some(a))
    } else {
        ("OK", None)
    }
}

// --- end of monitoring ---

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use std::collections::HashMap;
    use zbus::zvariant::serialized::Context;
    use zbus::zvariant::{to_bytes, OwnedValue, LE};

    fn certificate() -> CertificateReport {
        CertificateReport {
            subject: "CN=localhost".into(),
            issuer: "CN=localhost".into(),
            subject_alt_names: vec!["DNS:localhost".into(), "IP:127.0.0.1".into()],
            not_before: 946_684_800,
            not_after: 253_402_300_799,
            fingerprint_sha256: "AB:CD".into(),
            chain_length: 1,
            path: "/var/lib/skytime/cert.pem".into(),
        }
    }

    /// One filled example of every record (every optional field present).
    fn examples() -> Vec<Box<dyn Check>> {
        vec![
            Box::new(TrackingReport {
                stratum: 1,
                reference_id: "PPS".into(),
                reference_name: "PPS".into(),
                synchronized: true,
                reference_time: 1.8e9,
                system_time_offset: -1.5e-8,
                last_offset: 2e-8,
                rms_offset: 3e-8,
                frequency: -12.5,
                residual_frequency: 0.001,
                skew: 0.01,
                root_delay: 0.0,
                root_dispersion: 1e-5,
                update_interval: 1.0,
                leap_status: "normal".into(),
            }),
            Box::new(SourceReport {
                name: "PPS".into(),
                kind: "pps".into(),
                state: "selected".into(),
                stratum: 0,
                poll: -1,
                reach: 0o377,
                last_sample_ago: 0.4,
                last_offset: 1e-6,
                last_offset_adjusted: 2e-6,
                last_error: 1e-7,
                samples: 12,
                runs: 5,
                span: 11.0,
                frequency_ppm: 0.1,
                skew_ppm: 0.2,
                offset: 3e-7,
                std_dev: 4e-7,
                gps_fix: Some("gps".into()),
                gps_satellites_used: Some(8),
                gps_satellites_visible: Some(11),
                nmea_pps_delay: Some(0.45),
                device: Some("/dev/pps0".into()),
                // The upstream fields: in the next example.
                ..Default::default()
            }),
            Box::new(SourceReport {
                name: "ntp1.example".into(),
                kind: "ntp".into(),
                state: "candidate".into(),
                stratum: 1,
                poll: 6,
                address: Some("192.0.2.1:123".into()),
                authentication: Some("nts".into()),
                role: Some("normal".into()),
                reference: Some("GPS".into()),
                delay: Some(0.004),
                root_delay: Some(0.0),
                root_dispersion: Some(1e-5),
                status: Some("polling".into()),
                ..Default::default()
            }),
            Box::new(SourceAuthReport {
                name: "ntp1.example".into(),
                address: Some("192.0.2.1:123".into()),
                mode: "NTS".into(),
                key_id: Some(1),
                key_type: Some("AES-SIV-CMAC-256".into()),
                key_bits: 256,
                last_ke_ago: 12.5,
                ke_attempts: 0,
                ke_total: 1,
                naks: 0,
                cookies: 8,
                cookie_length: 104,
                auth_failures: 2,
                restored: true,
                error: Some("timeout".into()),
            }),
            Box::new(ServerReport {
                ntp_received: 10,
                ntp_replied: 8,
                ntp_dropped: 2,
                ntp_dropped_by_reason: [("too_short".to_owned(), 2)].into(),
                ntp_kernel_timestamps: 10,
                ntp_rate_kods: 4,
                nts_authenticated: 3,
                nts_naks: 1,
                key_authenticated: 6,
                key_crypto_naks: 2,
                nts_ke_accepted: 4,
                nts_ke_dropped: 1,
                nts_ke_active: 0,
                tasks_alive: 17,
                nts_counters: [("ke_connections".to_owned(), 5)].into(),
            }),
            Box::new(ClientReport {
                address: "192.0.2.1".into(),
                ntp_replies: 5,
                nts_replies: 2,
                dropped: 1,
                interval_log2: Some(4.0),
                last_seen_ago: 1.5,
                first_seen_ago: 100.0,
            }),
            Box::new(certificate()),
            Box::new(NtsReport {
                enabled: true,
                required: false,
                certificate: Some(certificate()),
                certificate_error: Some("differs".into()),
                key_role: "rotate".into(),
                current_key_id: Some(7),
                key_ids: vec![6, 7],
                next_rotation: Some(1_800_000_000),
                rotation_interval: 86_400,
                ke_addresses: vec!["127.0.0.1:4460".into()],
            }),
            Box::new(NetworkReport {
                managed: true,
                mode: "static".into(),
                hostname: "time1".into(),
                mdns: true,
                ipv4_address: "192.0.2.10/24".into(),
                ipv4_gateway: "192.0.2.1".into(),
                ipv6_address: String::new(),
                ipv6_gateway: String::new(),
                dns: vec!["192.0.2.53".into()],
                toml: "mode = \"static\"\n".into(),
                pending: true,
                confirm_within: 29.5,
                previous_toml: "mode = \"dhcp\"\n".into(),
                certificate: String::new(),
                listening: vec!["tcp [::]:4460".into(), "udp 0.0.0.0:123".into()],
            }),
            Box::new(ConfigOutcome {
                path: "/var/lib/skytime/skytime.toml".into(),
                dry_run: false,
                restart_required: vec!["ntp.listen".into()],
            }),
            Box::new(AlarmReport {
                name: "holdover".into(),
                severity: "warning".into(),
                since: 1_800_000_000,
                reason: "in holdover".into(),
            }),
            Box::new(MonitorProperties {
                alarms: vec![AlarmReport {
                    name: "pps_missing".into(),
                    severity: "warning".into(),
                    since: 1_800_000_000,
                    reason: "no PPS".into(),
                }],
                version: "0.1.0".into(),
            }),
            Box::new(HistoryPoint {
                time: 1_800_000_060,
                interval: 60,
                synchronized: true,
                offset: -2e-8,
                frequency: -12.5,
                pps_jitter: Some(3e-7),
                satellites: Some(9),
                request_rate: 12.5,
            }),
        ]
    }

    /// The checks every record passes, callable on a list of records of
    /// different types.
    trait Check {
        fn check(&self);
    }

    impl<R: Record> Check for R {
        fn check(&self) {
            let name = std::any::type_name::<R>();
            // a{sv} and back.
            let dbus = dict_bytes(self);
            let back: R = dbus.deserialize().unwrap().0;
            assert_eq!(&back, self, "{name} through a{{sv}}");
            // JSON and back.
            let json = serde_json::to_value(self).unwrap();
            let back: R = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(&back, self, "{name} through JSON");
            // The same keys on both wires, each present.
            let dict: HashMap<String, OwnedValue> = dbus.deserialize().unwrap().0;
            let mut dbus_keys: Vec<_> = dict.keys().cloned().collect();
            dbus_keys.sort();
            let json_keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
            assert_eq!(dbus_keys, json_keys, "{name}: keys differ between wires");
            // Absent optional fields are left out of both, and come back
            // absent; so is everything of a default record.
            let empty = R::default();
            let back: R = dict_bytes(&empty).deserialize().unwrap().0;
            assert_eq!(back, empty, "{name}: default through a{{sv}}");
            let back: R = serde_json::from_value(serde_json::to_value(&empty).unwrap()).unwrap();
            assert_eq!(back, empty, "{name}: default through JSON");
        }
    }

    fn dict_bytes<R: Record>(r: &R) -> zbus::zvariant::serialized::Data<'static, 'static> {
        assert_eq!(R::SIGNATURE.to_string(), "a{sv}");
        to_bytes(Context::new_dbus(LE, 0), r).unwrap()
    }

    #[test]
    fn every_record_round_trips_through_a_dictionary_and_json() {
        for r in examples() {
            r.check();
        }
    }

    #[test]
    fn keys_are_the_dbus_names_and_values_keep_their_types() {
        let s = SourceReport {
            name: "NMEA".into(),
            gps_fix: Some("none".into()),
            ..Default::default()
        };
        let dict: HashMap<String, OwnedValue> = dict_bytes(&s).deserialize().unwrap().0;
        assert_eq!(dict["Name"].value_signature().to_string(), "s");
        assert_eq!(dict["Stratum"].value_signature().to_string(), "y");
        assert_eq!(dict["Poll"].value_signature().to_string(), "n");
        assert_eq!(dict["Samples"].value_signature().to_string(), "u");
        assert_eq!(dict["LastOffset"].value_signature().to_string(), "d");
        assert!(dict.contains_key("GpsFix") && !dict.contains_key("Device"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["GpsFix"], "none");
        assert!(json.get("Device").is_none(), "absent fields are left out");
    }

    #[test]
    fn unknown_keys_from_a_later_version_and_json_nulls_are_taken() {
        let mut dict: HashMap<String, zbus::zvariant::Value<'_>> = HashMap::new();
        dict.insert("Address".into(), "192.0.2.9".into());
        dict.insert("NtpReplies".into(), 3u64.into());
        dict.insert("FutureField".into(), vec![1u32, 2].into());
        let bytes = to_bytes(Context::new_dbus(LE, 0), &dict).unwrap();
        let c: ClientReport = bytes.deserialize().unwrap().0;
        assert_eq!((c.address.as_str(), c.ntp_replies), ("192.0.2.9", 3));
        let c: ClientReport = serde_json::from_str(
            r#"{"Address": "192.0.2.9", "FutureField": [1], "IntervalLog2": null}"#,
        )
        .unwrap();
        assert_eq!((c.address.as_str(), c.interval_log2), ("192.0.2.9", None));
        // A number JSON cannot write (a skew not yet known) comes back
        // as NaN rather than failing the whole record.
        let s = SourceReport {
            name: "127.0.0.2".into(),
            skew_ppm: f64::INFINITY,
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""SkewPpm":null"#), "{json}");
        let back: SourceReport = serde_json::from_str(&json).unwrap();
        assert!(back.skew_ppm.is_nan() && back.name == "127.0.0.2");
    }

    #[test]
    fn the_verdict_is_the_worst_alarm() {
        let warn = AlarmReport {
            name: "holdover".into(),
            severity: "warning".into(),
            ..Default::default()
        };
        let crit = AlarmReport {
            name: "not_synchronized".into(),
            severity: "critical".into(),
            ..Default::default()
        };
        assert_eq!(verdict(&[]), ("OK", None));
        assert_eq!(
            verdict(std::slice::from_ref(&warn)),
            ("DEGRADED", Some(&warn))
        );
        assert_eq!(verdict(&[warn, crit.clone()]), ("FAIL", Some(&crit)));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let mut dict: HashMap<String, zbus::zvariant::Value<'_>> = HashMap::new();
        dict.insert("Stratum".into(), "one".into());
        let bytes = to_bytes(Context::new_dbus(LE, 0), &dict).unwrap();
        assert!(bytes.deserialize::<TrackingReport>().is_err());
    }
}
