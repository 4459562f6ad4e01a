//! A stand-in for the daemon behind the management interfaces: it serves
//! canned records, writes down every write call it receives, and answers
//! writes with success or with the error a test sets.
//!
//! It proves nothing about the daemon: a write changes nothing in it (a
//! "rotation" returns the same NTS report, an "install" the same
//! certificate). It lets the interface layer
//! (argument checks, error names, access control, change signals) and
//! clients (skytimectl's tables, JSON and exit codes) be tested on their
//! own; what a method does to a real appliance is proved against the real
//! skytimed (`tests/tests/dbus_system.rs`).

use skytime_api::{
    AlarmReport, ApiError, ApplianceBackend, CertificateReport, ClientReport, ConfigOutcome,
    HistoryPoint, NtsReport, ServerReport, SourceReport, TrackingReport,
};
use std::sync::{Arc, Mutex};

/// A write call as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    ApplyConfig {
        toml: String,
        dry_run: bool,
    },
    ReloadConfig,
    InstallCertificate {
        certificate_pem: String,
        private_key_pem: String,
    },
    RotateKeys,
}

/// The stand-in backend. Its fields are the records it serves.
#[derive(Debug, Default)]
pub struct StandIn {
    pub tracking: Mutex<TrackingReport>,
    pub sources: Mutex<Vec<SourceReport>>,
    pub server: Mutex<ServerReport>,
    pub clients: Mutex<Vec<ClientReport>>,
    pub nts: Mutex<NtsReport>,
    pub config_path: String,
    pub alarms: Mutex<Vec<AlarmReport>>,
    /// History served (the `seconds` argument is not applied).
    pub history: Mutex<Vec<HistoryPoint>>,
    /// Every write call received, in order.
    pub calls: Mutex<Vec<Call>>,
    /// When set, the next write call fails with this error (and is still
    /// written down).
    pub fail_next: Mutex<Option<ApiError>>,
}

/// The certificate the stand-in reports and "installs".
pub fn example_certificate() -> CertificateReport {
    CertificateReport {
        subject: "CN=first.example.test".into(),
        issuer: "CN=first.example.test".into(),
        subject_alt_names: vec!["DNS:first.example.test".into()],
        not_before: 1_577_836_800,
        not_after: 4_102_444_800,
        fingerprint_sha256: ["AB"; 32].join(":"),
        chain_length: 1,
        path: "/var/lib/skytime/cert.pem".into(),
    }
}

impl StandIn {
    /// A synchronized stratum-1 appliance fed by a GPS receiver, with NTS
    /// on and one master key.
    pub fn example() -> Arc<Self> {
        Arc::new(Self {
            tracking: Mutex::new(TrackingReport {
                stratum: 1,
                reference_id: "PPS".into(),
                reference_name: "PPS".into(),
                synchronized: true,
                leap_status: "normal".into(),
                system_time_offset: 12e-9,
                ..Default::default()
            }),
            sources: Mutex::new(vec![SourceReport {
                name: "gps0".into(),
                kind: "nmea".into(),
                state: "selected".into(),
                reach: 0o377,
                poll: 4,
                samples: 12,
                gps_fix: Some("3d".into()),
                gps_satellites_used: Some(9),
                nmea_pps_delay: Some(0.35),
                ..Default::default()
            }]),
            server: Mutex::new(ServerReport {
                ntp_received: 2,
                ntp_replied: 1,
                ntp_kernel_timestamps: 1,
                ..Default::default()
            }),
            clients: Mutex::default(),
            nts: Mutex::new(NtsReport {
                enabled: true,
                certificate: Some(example_certificate()),
                key_role: "rotate".into(),
                current_key_id: Some(7),
                key_ids: vec![6, 7],
                next_rotation: Some(2_000_000_000),
                rotation_interval: 86_400,
                ..Default::default()
            }),
            config_path: "/var/lib/skytime/skytime.toml".into(),
            alarms: Mutex::default(),
            history: Mutex::new(
                (1..=3)
                    .map(|i| HistoryPoint {
                        time: 1_800_000_000 + 60 * i,
                        interval: 60,
                        synchronized: true,
                        offset: 1e-8 * i as f64,
                        frequency: -12.5,
                        pps_jitter: Some(2e-7),
                        satellites: Some(9),
                        request_rate: 2.0,
                    })
                    .collect(),
            ),
            calls: Mutex::default(),
            fail_next: Mutex::default(),
        })
    }

    /// The write calls received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Makes the next write call fail with `e`.
    pub fn fail_next(&self, e: ApiError) {
        *self.fail_next.lock().unwrap() = Some(e);
    }

    fn write<T>(&self, call: Call, ok: impl FnOnce() -> T) -> Result<T, ApiError> {
        self.calls.lock().unwrap().push(call);
        match self.fail_next.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(ok()),
        }
    }
}

impl ApplianceBackend for StandIn {
    fn tracking(&self) -> TrackingReport {
        self.tracking.lock().unwrap().clone()
    }
    fn sources(&self) -> Vec<SourceReport> {
        self.sources.lock().unwrap().clone()
    }
    fn server_stats(&self) -> ServerReport {
        self.server.lock().unwrap().clone()
    }
    fn clients(&self) -> Vec<ClientReport> {
        self.clients.lock().unwrap().clone()
    }
    fn nts(&self) -> NtsReport {
        self.nts.lock().unwrap().clone()
    }
    fn config_path(&self) -> String {
        self.config_path.clone()
    }
    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<ConfigOutcome, ApiError> {
        let call = Call::ApplyConfig {
            toml: toml.to_owned(),
            dry_run,
        };
        self.write(call, || ConfigOutcome {
            path: if dry_run {
                String::new()
            } else {
                self.config_path.clone()
            },
            dry_run,
            restart_required: Vec::new(),
        })
    }
    fn reload_config(&self) -> Result<ConfigOutcome, ApiError> {
        self.write(Call::ReloadConfig, || ConfigOutcome {
            path: self.config_path.clone(),
            ..Default::default()
        })
    }
    fn install_certificate(
        &self,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> Result<CertificateReport, ApiError> {
        let call = Call::InstallCertificate {
            certificate_pem: certificate_pem.to_owned(),
            private_key_pem: private_key_pem.to_owned(),
        };
        self.write(call, example_certificate)
    }
    fn rotate_keys(&self) -> Result<NtsReport, ApiError> {
        self.write(Call::RotateKeys, || self.nts())
    }
    fn alarms(&self) -> Vec<AlarmReport> {
        self.alarms.lock().unwrap().clone()
    }
    fn history(&self, _seconds: u32) -> Vec<HistoryPoint> {
        self.history.lock().unwrap().clone()
    }
    fn version(&self) -> String {
        "0.0.0-standin".into()
    }
}
