//! The management API's view of the running daemon: an
//! [`ApplianceBackend`] over the live parts (published sync state and the
//! discipline's snapshot, reference clocks, server counters, the client
//! table, NTS), and the few changes that take effect without a restart.
//!
//! Reads are snapshots taken under short locks; nothing here does network
//! I/O. Writes that touch files (key rotation, certificate reload) are
//! called by the D-Bus layer from a blocking thread.

use crate::clients::Clients;
use crate::clock::{ClockSnapshot, ClockStatus};
use crate::config::Config;
use crate::dbus::certificate;
use crate::dbus::report::{ClientReport, NtsReport, ServerReport, SourceReport, TrackingReport};
use crate::dbus::{ApplianceBackend, BackendError};
use crate::ntp_policy::{PolicyPublisher, ServePolicy};
use crate::nts::keystore::unix_now;
use crate::nts::{KeyRole, NtsConfig, NtsService};
use crate::refclock::{RefclockConfig, RefclockStatus, Refclocks, SourceStatus};
use crate::stats::ServerStats;
use skytime_discipline::{SelectState, SourceKind};
use skytime_proto::SyncState;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The live parts of the daemon the management API reads and changes.
#[derive(Debug)]
pub struct Appliance {
    /// The configuration in effect: what the daemon started with, plus
    /// the settings applied live since (`[log] level`, `[ntp] allow`,
    /// `deny` and `ratelimit`).
    config: Mutex<Config>,
    sync: watch::Receiver<SyncState>,
    clock: ClockStatus,
    refclocks: Arc<Refclocks>,
    stats: Arc<ServerStats>,
    clients: Arc<Clients>,
    nts: Arc<NtsService>,
    /// The NTP server's access list and rate limit.
    policy: Arc<PolicyPublisher>,
    /// The certificate chain (PEM) NTS-KE serves: read when NTS loaded it
    /// (at start, after each successful reload), so that the report shows
    /// what clients get even when the file has since been replaced by one
    /// a reload refused.
    served_certificate: Mutex<Option<Vec<u8>>>,
}

/// Everything [`Appliance`] is built from.
#[derive(Debug)]
pub struct Parts {
    pub config: Config,
    pub sync: watch::Receiver<SyncState>,
    pub clock: ClockStatus,
    pub refclocks: Arc<Refclocks>,
    pub stats: Arc<ServerStats>,
    pub clients: Arc<Clients>,
    pub nts: Arc<NtsService>,
    pub policy: Arc<PolicyPublisher>,
}

impl Appliance {
    pub fn new(p: Parts) -> Self {
        let a = Self {
            config: Mutex::new(p.config),
            sync: p.sync,
            clock: p.clock,
            refclocks: p.refclocks,
            stats: p.stats,
            clients: p.clients,
            nts: p.nts,
            policy: p.policy,
            served_certificate: Mutex::new(None),
        };
        // NtsService::start has just loaded this file.
        a.remember_served_certificate();
        a
    }

    fn certificate_path(&self) -> PathBuf {
        let c = self.running_config();
        NtsConfig::resolve(&c.data_dir, &c.nts.certificate)
    }

    fn remember_served_certificate(&self) {
        if self.nts.enabled() {
            *self
                .served_certificate
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = std::fs::read(self.certificate_path()).ok();
        }
    }

    fn running_config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The short name chronyc users know a reference clock by.
fn source_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Pps => "PPS",
        SourceKind::Nmea => "NMEA",
        SourceKind::Sock => "SOCK",
    }
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Pps => "pps",
        SourceKind::Nmea => "nmea",
        SourceKind::Sock => "sock",
    }
}

/// chronyc's words for the selection states (`skytimectl sources` turns
/// them into chronyc's one-character marks).
fn state_name(state: SelectState) -> &'static str {
    match state {
        SelectState::Selected => "selected",
        SelectState::Candidate => "candidate",
        SelectState::Falseticker => "falseticker",
        SelectState::Unreachable => "unreachable",
        SelectState::Rejected => "unusable",
    }
}

/// The device a source reads, as configured.
fn device(kind: SourceKind, gps: &RefclockConfig) -> Option<String> {
    match kind {
        SourceKind::Nmea => gps.device.as_ref().map(|d| d.display().to_string()),
        SourceKind::Pps => match (&gps.pps, &gps.pps_gpio, &gps.sock) {
            (Some(p), _, _) => Some(p.display().to_string()),
            (None, Some(g), _) => Some(format!("{} line {}", g.chip.display(), g.line)),
            (None, None, Some(s)) => Some(s.display().to_string()),
            _ => None,
        },
        SourceKind::Sock => gps.sock.as_ref().map(|s| s.display().to_string()),
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
    let disc = clock.and_then(|c| c.sources.iter().find(|s| s.index == src.index));
    let raw_age = match (src.stats.last_sample, clock) {
        (Some(t), Some(c)) => Some((c.at - t).to_seconds_f64().max(0.0)),
        _ => None,
    };
    let mut r = SourceReport {
        name: source_name(src.kind).into(),
        kind: kind_name(src.kind).into(),
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
        device: device(src.kind, gps),
        ..SourceReport::default()
    };
    if let Some(d) = disc {
        r.samples = d.samples as u32;
        r.span = d.span_s;
        r.frequency_ppm = d.freq_ppm;
        r.skew_ppm = d.skew_ppm;
        r.offset = d.offset_s;
        r.std_dev = d.stddev_s;
    }
    // The GPS details belong to the receiver, shown on both of its sources.
    if matches!(src.kind, SourceKind::Nmea | SourceKind::Pps) && gps.device.is_some() {
        r.gps_fix = Some(fix_name(refclocks));
        r.gps_satellites_used = refclocks.fix.satellites.map(u32::from);
        r.nmea_pps_delay = refclocks.delay.value;
    }
    r
}

/// The tracking report: what NTP clients are told (the published sync
/// state) and the discipline's estimates. Offsets are turned round to
/// chronyc's sign: positive means the system clock is fast.
pub fn tracking_report(
    sync: &SyncState,
    clock: Option<&ClockSnapshot>,
    selected_name: Option<&str>,
) -> TrackingReport {
    let now = clock.map_or_else(crate::ntp_io::now, |c| c.at);
    let mut t = TrackingReport::from_sync_state(sync, now);
    if let Some(c) = clock {
        let d = &c.tracking;
        t.system_time_offset = -d.system_offset_s;
        t.last_offset = -d.last_offset_s;
        t.rms_offset = d.rms_offset_s;
        t.frequency_ppm = d.frequency_ppm;
        t.residual_frequency_ppm = d.residual_freq_ppm;
        t.skew_ppm = d.skew_ppm;
        t.update_interval = d.update_interval_s;
    }
    if t.synchronized {
        t.reference_name = selected_name.unwrap_or_default().to_owned();
    }
    t
}

impl ApplianceBackend for Appliance {
    fn tracking(&self) -> TrackingReport {
        let sync = *self.sync.borrow();
        let clock = self.clock.snapshot();
        let selected = clock.as_ref().and_then(|c| {
            let s = c
                .sources
                .iter()
                .find(|s| s.state == SelectState::Selected)?;
            Some(source_name(s.kind))
        });
        tracking_report(&sync, clock.as_ref(), selected)
    }

    fn sources(&self) -> Vec<SourceReport> {
        let status = self.refclocks.status();
        let clock = self.clock.snapshot();
        let gps = self.running_config().gps;
        // With PPS over SOCK (gpsd, the simulator) the SOCK socket is the
        // PPS source's input; its own entry (whole SOCK samples) is shown
        // only once such a sample arrives, as chronyc lists no idle input.
        let sock_is_pps_input = gps.pps.is_none() && gps.pps_gpio.is_none();
        status
            .sources
            .iter()
            .filter(|s| !(s.kind == SourceKind::Sock && sock_is_pps_input && s.stats.samples == 0))
            .map(|s| source_report(s, &status, clock.as_ref(), &gps))
            .collect()
    }

    fn server_stats(&self) -> ServerReport {
        let nts = self.nts.enabled().then(|| self.nts.stats());
        ServerReport::new(
            &self.stats.snapshot(),
            nts.as_ref(),
            self.nts.ke_active_connections(),
        )
    }

    fn clients(&self) -> Vec<ClientReport> {
        let now = crate::ntp_io::now();
        self.clients
            .snapshot()
            .iter()
            .map(|e| ClientReport::from_entry(e, now))
            .collect()
    }

    fn client_count(&self) -> usize {
        self.clients.len()
    }

    fn nts(&self) -> NtsReport {
        let config = self.running_config();
        let n = &config.nts;
        let mut r = NtsReport {
            enabled: self.nts.enabled(),
            required: self.nts.required(),
            key_role: match n.master_key_role {
                KeyRole::Rotate => "rotate",
                KeyRole::Follow => "follow",
            }
            .into(),
            rotation_interval: n.rotation_interval.0,
            ke_addresses: self
                .nts
                .ke_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
            ..NtsReport::default()
        };
        if !r.enabled {
            return r;
        }
        let cert = NtsConfig::resolve(&config.data_dir, &n.certificate);
        let served = self
            .served_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match &served {
            Some(pem) => match certificate::describe(pem, &cert.display().to_string()) {
                Ok(c) => r.certificate = Some(c),
                Err(e) => r.certificate_error = Some(e.to_string()),
            },
            None => {
                r.certificate_error = Some(format!("cannot read {}", cert.display()));
            }
        }
        if served.is_some() && std::fs::read(&cert).ok() != served {
            r.certificate_error = Some(format!(
                "{} differs from the certificate in use (a reload refused it?); \
                 this report shows the one in use",
                cert.display()
            ));
        }
        if let Some(store) = self.nts.key_store() {
            let keys = store.current();
            r.current_key_id = Some(keys.current().id);
            r.key_ids = keys.keys().iter().map(|k| k.id).collect();
            if n.master_key_role == KeyRole::Rotate {
                let now = unix_now();
                let wait = keys.seconds_until_rotation(now, n.rotation_interval.0);
                r.next_rotation = Some((now + wait) as i64);
            }
        }
        r
    }

    fn config(&self) -> Config {
        self.running_config()
    }

    fn config_path(&self) -> PathBuf {
        self.running_config().managed_path()
    }

    /// Puts `[log] level`, `[ntp] allow`/`deny` and `[ntp] ratelimit`
    /// into effect; every other setting is reported by the caller as
    /// needing a restart (`manage::settings_needing_restart`).
    fn apply_config(&self, new: &Config) -> Result<Vec<String>, BackendError> {
        let mut config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let mut restart = Vec::new();
        // The socket tasks take the new policy before their next receive
        // batch; requests being answered finish under the old one.
        if self.policy.publish(ServePolicy::from_config(&new.ntp)) {
            tracing::info!(
                allow = ?new.ntp.allow,
                deny = ?new.ntp.deny,
                ratelimit = ?new.ntp.ratelimit,
                "NTP access rules and rate limit changed"
            );
        }
        config.ntp.allow.clone_from(&new.ntp.allow);
        config.ntp.deny.clone_from(&new.ntp.deny);
        config.ntp.ratelimit = new.ntp.ratelimit;
        if config.log.level != new.log.level {
            if crate::logging::set_level(new.log.level) {
                tracing::info!(level = %new.log.level, "log level changed");
                config.log.level = new.log.level;
            } else {
                // SKYTIME_LOG chose the filter; it wins until a restart.
                restart.push("log.level".to_owned());
            }
        }
        Ok(restart)
    }

    fn reload_certificate(&self) -> Result<(), BackendError> {
        if !self.nts.enabled() {
            return Err(BackendError::NotAvailable(
                "NTS is disabled ([nts] enabled = false): there is no certificate to load".into(),
            ));
        }
        self.nts.reload().map_err(|e| {
            BackendError::Refused(format!("{e}; the previous certificate keeps serving"))
        })?;
        self.remember_served_certificate();
        Ok(())
    }

    fn rotate_keys(&self) -> Result<NtsReport, BackendError> {
        let Some(store) = self.nts.key_store() else {
            return Err(BackendError::NotAvailable(
                "NTS is disabled ([nts] enabled = false): there are no master keys".into(),
            ));
        };
        store.rotate_now(unix_now()).map_err(|e| {
            BackendError::Refused(format!("{e}; the previous master keys stay in use"))
        })?;
        Ok(self.nts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refclock::{NMEA_INDEX, PPS_INDEX};
    use skytime_proto::{NtpDuration, NtpTimestamp, ReferenceId};

    fn gps() -> RefclockConfig {
        toml::from_str("device = \"/dev/serial0\"\npps = \"/dev/pps0\"\n").unwrap()
    }

    #[test]
    fn sources_join_refclock_and_discipline_views() {
        let mut pps = SourceStatus::new(PPS_INDEX, "PPS /dev/pps0".into(), SourceKind::Pps);
        pps.stats.reach = 0o377;
        pps.stats.last_offset = Some(2e-6);
        let nmea = SourceStatus::new(NMEA_INDEX, "NMEA /dev/serial0".into(), SourceKind::Nmea);
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
    fn tracking_turns_offsets_to_chronyc_sign_and_names_the_source() {
        let now = NtpTimestamp::from_unix(1_800_000_000, 0);
        let mut sync = SyncState::unsynchronized(-20);
        sync.stratum = 1;
        sync.reference_id = ReferenceId::PPS;
        sync.leap = skytime_proto::LeapIndicator::NoWarning;
        sync.reference_time = now;
        sync.root_dispersion = NtpDuration::from_seconds_f64(1e-5);
        let t = tracking_report(&sync, None, Some("PPS"));
        assert!(t.synchronized);
        assert_eq!((t.stratum, t.reference_id.as_str()), (1, "PPS"));
        assert_eq!(t.reference_name, "PPS");
        let t = tracking_report(&SyncState::unsynchronized(-20), None, Some("PPS"));
        assert!(!t.synchronized);
        assert_eq!(t.reference_name, "", "no source named while unsynchronised");
        assert_eq!(t.leap_status, "not synchronised");
    }
}
