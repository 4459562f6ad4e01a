//! The management API's view of the running daemon: an
//! [`ApplianceBackend`] over the live parts (published sync state and the
//! discipline's snapshot, reference clocks, server counters, the client
//! table, NTS), and the few changes that take effect without a restart.
//!
//! Reads are snapshots taken under short locks, turned into records by
//! [`reports`]; nothing here does network I/O. Writes go to the module
//! that owns them (the managed configuration, the NTS certificate and
//! keys) and their errors become the API's here, at the edge. The D-Bus
//! layer calls writes from a blocking thread; SIGHUP reloads through
//! [`config::managed::reload`](crate::config::managed::reload) with the
//! appliance as the running daemon.

mod observe;
pub mod reports;
pub mod upstream;

use crate::clock::{now, ClockStatus};
use crate::config::managed::{self, ManagedError, Outcome, Running};
use crate::config::Config;
use crate::monitor::Monitor;
use crate::ntp::{Clients, PolicyPublisher, ServePolicy, ServerStats};
use crate::nts::certificate::{self, CertificateError, InstallError};
use crate::nts::keystore::unix_now;
use crate::nts::{KeyRole, NtsConfig, NtsError, NtsService};
use crate::refclock::{Refclocks, SourceId};
use crate::upstream::Upstreams;
use skytime_api::{
    AlarmReport, ApiError, ApplianceBackend, CertificateReport, ClientReport, ConfigOutcome,
    HistoryPoint, NtsReport, ServerReport, SourceAuthReport, SourceReport, TrackingReport,
};
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
    /// Alarms and history, kept by the monitor task.
    monitor: Arc<Monitor>,
    /// The end of validity of `served_certificate`.
    served_not_after: Mutex<Option<i64>>,
    /// The upstream NTP/NTS servers.
    upstreams: Arc<Upstreams>,
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
    pub monitor: Arc<Monitor>,
    pub upstreams: Arc<Upstreams>,
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
            monitor: p.monitor,
            served_not_after: Mutex::new(None),
            upstreams: p.upstreams,
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
            let pem = std::fs::read(self.certificate_path()).ok();
            // The alarms read its expiry every second: parse it once here.
            *self
                .served_not_after
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = pem
                .as_deref()
                .and_then(|p| certificate::describe(p, "").ok())
                .map(|c| c.not_after);
            *self
                .served_certificate
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = pem;
        }
    }

    fn running_config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ApplianceBackend for Appliance {
    fn tracking(&self) -> TrackingReport {
        let sync = *self.sync.borrow();
        let clock = self.clock.snapshot();
        let at = clock.as_ref().map_or_else(now, |c| c.at);
        let selected = reports::selected_source(clock.as_ref());
        let mut t = reports::tracking_report(&sync, clock.as_ref(), selected, at);
        // Following an upstream server: name it.
        if t.synchronized && t.reference_name.is_empty() {
            let followed = clock.as_ref().and_then(|c| {
                c.sources
                    .iter()
                    .find(|s| s.state == skytime_discipline::SelectState::Selected)
                    .map(|s| s.index)
            });
            if let Some(m) =
                followed.and_then(|i| self.upstreams.status().into_iter().find(|m| m.index == i))
            {
                t.reference_name = m.name;
            }
        }
        t
    }

    fn sources(&self) -> Vec<SourceReport> {
        let status = self.refclocks.status();
        let clock = self.clock.snapshot();
        let gps = self.running_config().gps;
        // With PPS over SOCK (gpsd, the simulator) the SOCK socket is the
        // PPS source's input; its own entry (whole SOCK samples) is shown
        // only once such a sample arrives, as chronyc lists no idle input.
        let sock_is_pps_input = gps.pps.is_none() && gps.pps_gpio.is_none();
        let mut list: Vec<SourceReport> = status
            .sources
            .iter()
            .filter(|s| !(s.id == SourceId::Sock && sock_is_pps_input && s.stats.samples == 0))
            .map(|s| reports::source_report(s, &status, clock.as_ref(), &gps))
            .collect();
        list.extend(
            self.upstreams
                .status()
                .iter()
                .map(|m| upstream::source_report(m, clock.as_ref(), reports::state_name)),
        );
        list
    }

    fn source_auth(&self) -> Vec<SourceAuthReport> {
        let now = now();
        self.upstreams
            .status()
            .iter()
            .map(|m| upstream::auth_report(m, now))
            .collect()
    }

    fn server_stats(&self) -> ServerReport {
        let nts = self.nts.enabled().then(|| self.nts.stats());
        let mut r = reports::server_report(
            &self.stats.snapshot(),
            nts.as_ref(),
            self.nts.ke_active_connections(),
        );
        // The daemon has one runtime, which the D-Bus handlers run on.
        r.tasks_alive = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_alive_tasks() as u64)
            .unwrap_or(0);
        r
    }

    fn clients(&self) -> Vec<ClientReport> {
        let now = now();
        self.clients
            .snapshot()
            .iter()
            .map(|e| reports::client_report(e, now))
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

    fn config_path(&self) -> String {
        self.running_config().managed_path().display().to_string()
    }

    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<ConfigOutcome, ApiError> {
        managed::apply(self, toml, dry_run)
            .map(|o| outcome(o, dry_run))
            .map_err(managed_error)
    }

    fn reload_config(&self) -> Result<ConfigOutcome, ApiError> {
        managed::reload(self)
            .map(|o| outcome(o, false))
            .map_err(managed_error)
    }

    fn install_certificate(
        &self,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> Result<CertificateReport, ApiError> {
        let config = self.running_config();
        certificate::install(
            &NtsConfig::resolve(&config.data_dir, &config.nts.certificate),
            &NtsConfig::resolve(&config.data_dir, &config.nts.private_key),
            certificate_pem,
            private_key_pem,
            unix_now() as i64,
            || self.reload_certificate(),
        )
        .map_err(|e| match e {
            InstallError::Refused(e) => certificate_error(e),
            e @ InstallError::Persist { .. } => ApiError::PersistFailed(e.to_string()),
            e @ InstallError::Reload(_) => ApiError::Refused(e.to_string()),
        })
    }

    fn rotate_keys(&self) -> Result<NtsReport, ApiError> {
        let Some(store) = self.nts.key_store() else {
            return Err(ApiError::NotAvailable(
                "NTS is disabled ([nts] enabled = false): there are no master keys".into(),
            ));
        };
        store
            .rotate_now(unix_now())
            .map_err(|e| ApiError::Refused(format!("{e}; the previous master keys stay in use")))?;
        Ok(self.nts())
    }

    fn alarms(&self) -> Vec<AlarmReport> {
        self.monitor.alarms()
    }

    fn history(&self, seconds: u32) -> Vec<HistoryPoint> {
        self.monitor.history(unix_now() as i64, seconds)
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }
}

impl Running for Appliance {
    fn running(&self) -> Config {
        self.running_config()
    }

    /// Puts `[log] level`, `[ntp] allow`/`deny` and `[ntp] ratelimit`
    /// into effect; every other setting is reported as needing a restart
    /// (`managed::settings_needing_restart`).
    fn apply_live(&self, new: &Config) -> Vec<String> {
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
        restart
    }

    fn reload_certificate(&self) -> Result<(), NtsError> {
        self.nts.reload()?;
        self.remember_served_certificate();
        Ok(())
    }
}

fn outcome(o: Outcome, dry_run: bool) -> ConfigOutcome {
    ConfigOutcome {
        path: o.path.map(|p| p.display().to_string()).unwrap_or_default(),
        dry_run,
        restart_required: o.restart_required,
    }
}

fn managed_error(e: ManagedError) -> ApiError {
    match e {
        ManagedError::Invalid(_) | ManagedError::InvalidOnDisk(_) => {
            ApiError::InvalidConfig(e.to_string())
        }
        ManagedError::Persist { .. } => ApiError::PersistFailed(e.to_string()),
        ManagedError::Certificate(_) => ApiError::Refused(e.to_string()),
    }
}

fn certificate_error(e: CertificateError) -> ApiError {
    match e {
        e if e.is_malformed() => ApiError::InvalidArgs(e.to_string()),
        e @ CertificateError::Expired { .. } => ApiError::CertificateExpired(e.to_string()),
        e => ApiError::InvalidCertificate(e.to_string()),
    }
}
