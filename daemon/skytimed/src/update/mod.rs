//! A/B updates: skytimed's side of `org.skytime.Appliance1.Update`.
//!
//! RAUC (`de.pengutronix.rauc` on the system bus) writes bundles; the
//! logic of an update is `skytime-ota`'s: its sans-I/O state machine
//! ([`skytime_ota::state`]), persisted with its store before every
//! action, and its RAUC client. This module drives them:
//!
//! - [`config`]: the `[update]` section;
//! - [`bundle`]: whether a bundle may be installed (file, compatible,
//!   version policy) once RAUC has checked its signature;
//! - [`health`]: the health check's decision after booting a new slot,
//!   sans I/O; [`probe`]: the facts it decides on;
//! - [`rollback`]: whether `Rollback` may go back to the other slot;
//! - [`download`]: `InstallFromUrl`'s HTTPS download (size cap, SHA-256);
//! - [`driver`]: the task that follows RAUC (progress, `Completed`), feeds
//!   the boot and the health check to the state machine and carries out
//!   its actions (mark good/bad, reboot);
//! - this file: [`Updater`], what the D-Bus interface calls.
//!
//! Without RAUC on the bus (a development host, the demo) the interface
//! still exists: its methods answer `UpdateUnavailable` naming RAUC's bus
//! name, and time service is not affected.

pub mod bundle;
pub mod config;
pub mod download;
pub mod driver;
pub mod health;
pub mod probe;
pub mod rollback;
#[cfg(test)]
mod tests;

pub use config::UpdateConfig;

use skytime_api::{ApiError, BundleReport, SlotReport, UpdateProperties};
use skytime_ota::rauc::{InstallOptions, MarkState, Rauc, RaucError, SlotStatus};
use skytime_ota::state::{Action, Bundle, Event, OperatorRollback, Refusal, State, Step};
use skytime_ota::store::Store;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// What the D-Bus layer is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A property may have changed.
    Changed,
    /// An install finished: success, message.
    Completed(bool, String),
}

/// The view the properties are read from.
#[derive(Debug)]
struct View {
    rauc: Option<Rauc>,
    /// Why RAUC is not available (empty when it is).
    unavailable: String,
    state: State,
    /// The state file could not be read: installs are refused until the
    /// operator moves it away.
    store_error: Option<String>,
    booted_slot: String,
    primary_slot: String,
    slots: Vec<SlotStatus>,
    operation: String,
    percent: u32,
    step: String,
    last_error: String,
    /// Reboot when the install in flight completes.
    reboot_when_done: bool,
    /// An `InstallFromUrl` download is running.
    downloading: bool,
    /// The operator's rollback did not take (the slot it left booted
    /// again); shown with the state's reason until the state changes.
    rollback_note: Option<String>,
}

/// The update service: state, RAUC, and what the interface asks of them.
#[derive(Debug)]
pub struct Updater {
    config: UpdateConfig,
    store: Store,
    boot_id: String,
    view: Mutex<View>,
    /// Serialises state transitions (held across RAUC calls).
    transition: tokio::sync::Mutex<()>,
    notices: broadcast::Sender<Notice>,
    targets: Mutex<probe::Targets>,
    /// The bus connection (set when the driver starts), for logind.
    conn: std::sync::OnceLock<zbus::Connection>,
    /// Where a failed or rolled-back update raises its alarm.
    monitor: Mutex<Option<Arc<crate::monitor::Monitor>>>,
    /// The running system's version, or why it is unknown.
    running: std::sync::OnceLock<Result<skytime_ota::version::Version, String>>,
    /// True once the driver has looked for RAUC (found it or not).
    looked: tokio::sync::watch::Sender<bool>,
}

/// The kernel's id of this boot: a daemon restart keeps it, a reboot
/// changes it.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn rauc_error(e: RaucError) -> ApiError {
    match e {
        RaucError::Busy => ApiError::UpdateInProgress(
            "RAUC is busy with an install; try again when it has completed".into(),
        ),
        RaucError::Rejected(m) => ApiError::BundleRejected(m),
        RaucError::Bus(e) => ApiError::UpdateUnavailable(format!(
            "cannot reach RAUC ({}): {e}",
            skytime_ota::rauc::SERVICE
        )),
        other => ApiError::ApplyFailed(other.to_string()),
    }
}

impl Updater {
    /// The service for `config`; reads the saved state (a corrupt file is
    /// reported and kept, and installs are refused until it is moved away).
    pub fn new(config: UpdateConfig) -> Arc<Self> {
        let store = Store::new(&config.state_file);
        let mut view = View {
            rauc: None,
            unavailable: format!(
                "RAUC ({}) has not been looked for yet",
                skytime_ota::rauc::SERVICE
            ),
            state: State::Idle,
            store_error: None,
            booted_slot: String::new(),
            primary_slot: String::new(),
            slots: Vec::new(),
            operation: "idle".into(),
            percent: 0,
            step: String::new(),
            last_error: String::new(),
            reboot_when_done: false,
            downloading: false,
            rollback_note: None,
        };
        match store.load() {
            Ok(s) => view.state = s,
            Err(e) => {
                tracing::error!("{e}");
                view.store_error = Some(e.to_string());
            }
        }
        let (notices, _) = broadcast::channel(64);
        Arc::new(Self {
            config,
            store,
            boot_id: boot_id(),
            view: Mutex::new(view),
            transition: tokio::sync::Mutex::new(()),
            notices,
            targets: Mutex::default(),
            conn: std::sync::OnceLock::new(),
            monitor: Mutex::default(),
            running: std::sync::OnceLock::new(),
            looked: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Where the health check probes skytimed (set once the sockets are
    /// bound).
    pub fn set_targets(&self, targets: probe::Targets) {
        if let Ok(mut t) = self.targets.lock() {
            *t = targets;
        }
    }

    /// Raises the `update_failed` / `update_rolled_back` alarms through
    /// `monitor` while the state says so.
    pub fn set_monitor(&self, monitor: Arc<crate::monitor::Monitor>) {
        if let Ok(mut m) = self.monitor.lock() {
            *m = Some(monitor);
        }
        self.alarm(&self.state());
    }

    fn alarm(&self, state: &State) {
        use skytime_alarms::UpdateProblem;
        let Ok(m) = self.monitor.lock() else { return };
        let Some(m) = m.as_ref() else { return };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        m.set_update_problem(match state {
            State::Failed { reason, .. } => Some(UpdateProblem::Failed {
                at,
                reason: reason.clone(),
            }),
            State::RolledBack { reason, .. } => Some(UpdateProblem::RolledBack {
                at,
                reason: reason.clone(),
            }),
            _ => None,
        });
    }

    fn targets(&self) -> probe::Targets {
        self.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The configuration.
    pub fn config(&self) -> &UpdateConfig {
        &self.config
    }

    /// Notices for the D-Bus layer.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    fn notify(&self, n: Notice) {
        let _ = self.notices.send(n);
    }

    fn with_view<T>(&self, f: impl FnOnce(&mut View) -> T) -> T {
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut v)
    }

    /// The current state (for tests and the log).
    pub fn state(&self) -> State {
        self.with_view(|v| v.state.clone())
    }

    /// The running system's version (read once: the root file system
    /// is read-only and changes only with a reboot).
    fn running(&self) -> Result<skytime_ota::version::Version, String> {
        self.running
            .get_or_init(|| {
                let text = std::fs::read_to_string(&self.config.os_release)
                    .map_err(|e| format!("{}: {e}", self.config.os_release.display()))?;
                skytime_ota::install_check::running_version(&text)
            })
            .clone()
    }

    /// The interface's properties.
    pub fn properties(&self) -> UpdateProperties {
        let current_version = match self.running() {
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        self.with_view(|v| {
            let (reason, bundle_version) = describe(&v.state);
            let reason = match &v.rollback_note {
                Some(note) if reason.is_empty() => note.clone(),
                Some(note) => format!("{reason}; {note}"),
                None => reason,
            };
            UpdateProperties {
                available: v.rauc.is_some(),
                booted_slot: v.booted_slot.clone(),
                primary_slot: v.primary_slot.clone(),
                slots: v
                    .slots
                    .iter()
                    .filter(|s| s.bootname.is_some())
                    .map(slot_report)
                    .collect(),
                current_version,
                state: v.state.name().to_owned(),
                state_reason: v.store_error.clone().unwrap_or(reason),
                bundle_version,
                operation: v.operation.clone(),
                progress_percent: v.percent,
                progress_step: v.step.clone(),
                last_error: v.last_error.clone(),
            }
        })
    }

    /// RAUC, or why there is none. A call that arrives while the driver
    /// is still looking for RAUC (just after skytimed starts, before its
    /// first answer from RAUC) waits for that look, up to
    /// [`driver::FIRST_LOOK_WAIT`], rather than being refused.
    async fn rauc_looked_for(&self) -> Result<Rauc, ApiError> {
        if self.config.enabled && !*self.looked.borrow() {
            let mut looked = self.looked.subscribe();
            let _ = tokio::time::timeout(driver::FIRST_LOOK_WAIT, looked.wait_for(|l| *l)).await;
        }
        self.rauc()
    }

    /// RAUC as the driver last found it, or why there is none.
    fn rauc(&self) -> Result<Rauc, ApiError> {
        if !self.config.enabled {
            return Err(ApiError::UpdateUnavailable(
                "updates are disabled ([update] enabled = false)".into(),
            ));
        }
        self.with_view(|v| {
            v.rauc
                .clone()
                .ok_or_else(|| ApiError::UpdateUnavailable(v.unavailable.clone()))
        })
    }

    /// `Check(path)`: RAUC's `InspectBundle` (signature, format) and the
    /// policy, as if installed without force.
    pub async fn check(&self, path: &str) -> Result<BundleReport, ApiError> {
        self.inspect(path, false).await.map(|(r, _)| r)
    }

    async fn inspect(&self, path: &str, force: bool) -> Result<(BundleReport, Rauc), ApiError> {
        let rauc = self.rauc_looked_for().await?;
        bundle::check_file(path, self.config.max_bundle_bytes())?;
        let info = rauc.inspect(path).await.map_err(rauc_error)?;
        let compatible = rauc.compatible().await.map_err(rauc_error)?;
        let running = self.running();
        let report = bundle::assess(
            path,
            &info,
            &compatible,
            running.as_ref().map_err(String::as_str),
            force,
        )?;
        Ok((report, rauc))
    }

    /// `Install(path, options)`: checks the bundle, records the install
    /// (with a forced version, which RAUC's install-check hook reads) and
    /// starts RAUC; returns once RAUC accepted it.
    pub async fn install(
        self: &Arc<Self>,
        path: &str,
        force: bool,
        reboot: bool,
    ) -> Result<BundleReport, ApiError> {
        if self.with_view(|v| v.downloading) {
            return Err(ApiError::UpdateInProgress(
                "a bundle is being downloaded for an install".into(),
            ));
        }
        self.install_file(path, force, reboot).await
    }

    /// `Install`'s work, also after an `InstallFromUrl` download.
    async fn install_file(
        self: &Arc<Self>,
        path: &str,
        force: bool,
        reboot: bool,
    ) -> Result<BundleReport, ApiError> {
        let (report, rauc) = self.inspect(path, force).await?;
        let _t = self.transition.lock().await;
        if let Some(e) = self.with_view(|v| v.store_error.clone()) {
            return Err(ApiError::Refused(e));
        }
        let booted = self.with_view(|v| v.booted_slot.clone());
        let transaction = format!("{:032x}", rand::random::<u128>());
        let event = Event::InstallRequested {
            bundle: Bundle {
                source: path.to_owned(),
                version: report.version.clone(),
                manifest_hash: Some(report.manifest_hash.clone()),
                force,
                transaction: transaction.clone(),
            },
            booted_slot: booted,
            boot_id: self.boot_id.clone(),
        };
        match self.step(event)? {
            Outcome::Refused(Refusal::UpdateInProgress(why)) => {
                return Err(ApiError::UpdateInProgress(format!(
                    "an update is already in progress ({why})"
                )))
            }
            Outcome::Refused(r) => return Err(ApiError::Refused(r.to_string())),
            Outcome::Done(_) => {}
        }
        self.with_view(|v| {
            v.reboot_when_done = reboot || self.config.reboot_after_install;
            v.percent = 0;
            v.step = "starting".into();
        });
        let options = InstallOptions {
            transaction_id: Some(transaction),
            ..InstallOptions::default()
        };
        match rauc.install(path, &options).await {
            Ok(()) => {
                self.step(Event::InstallStarted)?;
                tracing::info!(bundle = path, version = %report.version, force, "install started");
                Ok(report)
            }
            Err(e) => {
                let reason = e.to_string();
                let actions = match self.step(Event::InstallNotStarted { reason })? {
                    Outcome::Done(a) => a,
                    Outcome::Refused(_) => Vec::new(),
                };
                driver::act(self, actions).await;
                Err(rauc_error(e))
            }
        }
    }

    /// `Reboot`: into the installed slot.
    pub async fn reboot(&self, conn: &zbus::Connection) -> Result<(), ApiError> {
        let state = self.state();
        if !matches!(state, State::Installed { .. }) {
            return Err(ApiError::Refused(format!(
                "nothing is installed and waiting for a reboot (the update state is {}); \
                 use org.skytime.Appliance1.Power.Reboot to restart anyway",
                state.name()
            )));
        }
        crate::dbus::interfaces::logind(conn, "Reboot").await
    }

    /// `Rollback`: when the other slot holds a good system that ran
    /// ([`rollback::target`]), records the operator's rollback (saved
    /// before anything else, so a power cut does not lose it), makes that
    /// slot primary and reboots. The next boot in it settles the record.
    pub async fn rollback(&self, conn: &zbus::Connection) -> Result<(), ApiError> {
        let rauc = self.rauc_looked_for().await?;
        let _t = self.transition.lock().await;
        if let Some(e) = self.with_view(|v| v.store_error.clone()) {
            return Err(ApiError::Refused(e));
        }
        let slots = rauc.slot_status().await.map_err(rauc_error)?;
        let booted = rauc.boot_slot().await.map_err(rauc_error)?;
        let other = rollback::target(&self.state(), &slots, &booted)?.clone();
        let name = other.bootname.clone().unwrap_or_default();
        let from_version = self.running().ok().map(|v| v.to_string()).or_else(|| {
            slots
                .iter()
                .find(|s| s.bootname.as_deref() == Some(booted.as_str()))
                .and_then(|s| s.bundle_version.clone())
        });
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let event = Event::RollbackRequested {
            rollback: OperatorRollback {
                from_slot: booted,
                from_version,
                to_slot: name.clone(),
                to_version: other.bundle_version.clone(),
                at,
            },
            boot_id: self.boot_id.clone(),
        };
        let actions = match self.step(event)? {
            Outcome::Done(a) => a,
            Outcome::Refused(Refusal::UpdateInProgress(why)) => {
                return Err(ApiError::UpdateInProgress(format!(
                    "an update is in progress ({why})"
                )))
            }
            Outcome::Refused(Refusal::RollbackPending(slot)) => {
                return Err(ApiError::UpdateInProgress(format!(
                    "a rollback to slot {slot} waits for its reboot"
                )))
            }
            Outcome::Refused(r) => return Err(ApiError::Refused(r.to_string())),
        };
        for action in actions {
            match action {
                Action::MarkActive { .. } => {
                    if let Err(e) = rauc.mark(MarkState::Active, &other.name).await {
                        // Nothing changed what boots: back to the state before.
                        let _ = self.step(Event::RollbackNotStarted {
                            reason: e.to_string(),
                        });
                        return Err(match e {
                            RaucError::Rejected(m) => ApiError::Refused(format!(
                                "RAUC refused to make slot {name} primary: {m}"
                            )),
                            e => rauc_error(e),
                        });
                    }
                    self.refresh(&rauc).await;
                }
                Action::Reboot => {
                    tracing::warn!(slot = %name, "rolling back: slot {name} is primary; rebooting");
                    crate::dbus::interfaces::logind(conn, "Reboot").await?;
                }
                a => tracing::warn!("rollback: unexpected action {a:?}"),
            }
        }
        Ok(())
    }

    /// Feeds `event` to the state machine; saves a new state before
    /// returning its actions.
    fn step(&self, event: Event) -> Result<Outcome, ApiError> {
        let current = self.state();
        match current.handle(event) {
            Step::Ignored(why) => {
                tracing::debug!("update: {why}");
                Ok(Outcome::Done(Vec::new()))
            }
            Step::Refused(r) => Ok(Outcome::Refused(r)),
            Step::Next { state, actions } => {
                if !state.same_record(&current) {
                    crate::persist::off_the_runtime(|| self.store.save(&state)).map_err(|e| {
                        tracing::error!("{e}");
                        ApiError::PersistFailed(e.to_string())
                    })?;
                    if state.name() != current.name() {
                        tracing::info!(from = current.name(), to = state.name(), "update state");
                        self.alarm(&state);
                    }
                }
                self.with_view(|v| {
                    if state.name() != current.name() {
                        v.rollback_note = None;
                    }
                    if let State::Installing { percent, step, .. } = &state {
                        v.percent = u32::from(*percent);
                        v.step.clone_from(step);
                    }
                    v.state = state;
                });
                self.notify(Notice::Changed);
                Ok(Outcome::Done(actions))
            }
        }
    }

    /// Re-reads slots, primary and RAUC's properties (RAUC answers only
    /// when it is not installing).
    async fn refresh(&self, rauc: &Rauc) {
        let slots = rauc.slot_status().await;
        let primary = rauc.primary().await;
        let operation = rauc.operation().await;
        let last_error = rauc.last_error().await;
        if let Err(e) = &slots {
            tracing::warn!("RAUC GetSlotStatus: {e}");
        }
        if let Err(e) = &primary {
            tracing::warn!("RAUC GetPrimary: {e}");
        }
        self.with_view(|v| {
            if let Ok(s) = slots {
                v.slots = s;
            }
            if let Ok(p) = primary {
                v.primary_slot = bootname_of(&v.slots, &p).unwrap_or(p);
            }
            if let Ok(o) = operation {
                v.operation = o;
            }
            if let Ok(e) = last_error {
                v.last_error = e;
            }
        });
        self.notify(Notice::Changed);
    }
}

/// A transition's result.
#[derive(Debug)]
enum Outcome {
    Done(Vec<Action>),
    Refused(Refusal),
}

/// RAUC's slot name to its bootname.
fn bootname_of(slots: &[SlotStatus], name: &str) -> Option<String> {
    slots
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.bootname.clone())
}

/// A bootname to RAUC's slot name.
fn slot_named(slots: &[SlotStatus], bootname: &str) -> Option<String> {
    slots
        .iter()
        .find(|s| s.class == "rootfs" && s.bootname.as_deref() == Some(bootname))
        .map(|s| s.name.clone())
}

fn slot_report(s: &SlotStatus) -> SlotReport {
    SlotReport {
        name: s.name.clone(),
        bootname: s.bootname.clone().unwrap_or_default(),
        state: s.state.clone().unwrap_or_default(),
        boot_status: s.boot_status.clone().unwrap_or_default(),
        install_status: s.status.clone(),
        bundle_version: s.bundle_version.clone(),
        bundle_build: s.bundle_build.clone(),
        installed_at: s.installed_timestamp.clone(),
        activated_at: s.activated_timestamp.clone(),
    }
}

/// The state's reason and bundle version, for the properties.
fn describe(s: &State) -> (String, String) {
    let version = match s {
        State::Idle => String::new(),
        State::Staged { bundle, .. }
        | State::Installing { bundle, .. }
        | State::Installed { bundle, .. }
        | State::BootedUnconfirmed { bundle, .. }
        | State::Confirmed { bundle, .. }
        | State::RolledBack { bundle, .. } => bundle.version.clone(),
        State::Failed { bundle, .. } => bundle
            .as_ref()
            .map(|b| b.version.clone())
            .unwrap_or_default(),
        // The version left (the slot gone back to is named in the reason).
        State::RollingBack { rollback, .. } | State::RolledBackByOperator { rollback } => {
            rollback.from_version.clone().unwrap_or_default()
        }
    };
    (s.reason(), version)
}
