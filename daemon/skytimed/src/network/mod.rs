//! The appliance's network settings (`[network]`): addresses, host name
//! and mDNS, changed over D-Bus (`org.skytime.Appliance1.Network`) with a
//! safe apply that reverts by itself unless confirmed.
//!
//! - [`settings`]: the validated settings (one TOML table).
//! - [`render`]: the settings as a systemd-networkd `.network` file.
//! - [`safe_apply`]: the sans-IO probation state machine.
//! - [`control`]: the `[network_control]` section: where the file goes
//!   and which commands make networkd and the host name follow it.
//! - [`certificate`]: re-issuing the appliance's own self-signed
//!   certificate for a new name or address.
//! - [`listening`]: the sockets open to the network, which every report
//!   lists.
//! - [`Manager`] (here): the I/O around them. The confirmed settings live
//!   in `<data_dir>/network.toml` (written atomically); a change on
//!   probation in `<data_dir>/network.pending.toml`, which a start drops,
//!   so a crash or power cut during a probation also reverts. When no
//!   `network.toml` exists yet, skytime.toml's `[network]` section seeds
//!   it (the first boot's settings, imported from the boot partition).

pub mod certificate;
pub mod control;
pub mod listening;
pub mod render;
pub mod safe_apply;
pub mod settings;

pub use control::NetworkControl;
pub use settings::NetworkSettings;

use crate::persist::atomic_write;
use safe_apply::{SafeApply, SafeApplyError, Tick};
use skytime_api::{ApiError, NetworkReport};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The confirmed settings in the data directory.
pub const CONFIRMED_FILE: &str = "network.toml";
/// A change on probation.
pub const PENDING_FILE: &str = "network.pending.toml";
/// The host name before a probation began (`<data_dir>/hostname` then),
/// put back by a start that finds the probation unconfirmed.
pub const HOSTNAME_BEFORE_FILE: &str = "hostname.before";

/// Reloads the NTS certificate the daemon serves (after a re-issue).
pub type ReloadCertificate = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Why the network could not be put into a state.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
}

/// The network settings while the daemon runs.
pub struct Manager {
    control: NetworkControl,
    data_dir: PathBuf,
    certificate: certificate::Paths,
    reload_certificate: ReloadCertificate,
    state: Mutex<SafeApply>,
    /// The host name before any settings named one: what a revert to
    /// settings without a name puts back.
    boot_hostname: Option<String>,
    /// Wakes the deadline task after an apply.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("control", &self.control)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Loads the confirmed settings (seeding them from `seed`, skytime.toml's
    /// `[network]`, when there are none yet), drops a change left on
    /// probation by an earlier run, and puts the confirmed settings into
    /// effect. Failures are logged, never fatal: time service goes on with
    /// whatever network the system has.
    pub fn start(
        control: NetworkControl,
        data_dir: &Path,
        seed: Option<&NetworkSettings>,
        certificate: certificate::Paths,
        reload_certificate: ReloadCertificate,
    ) -> Arc<Self> {
        let confirmed_path = data_dir.join(CONFIRMED_FILE);
        let pending_path = data_dir.join(PENDING_FILE);
        let before_path = data_dir.join(HOSTNAME_BEFORE_FILE);
        let mut name_before = None;
        if pending_path.exists() {
            tracing::warn!(
                "a network change was not confirmed before the daemon stopped: reverting to {}",
                confirmed_path.display()
            );
            if let Ok(name) = std::fs::read_to_string(&before_path) {
                // The probation's name went to <data_dir>/hostname: undo it.
                if let Err(e) = atomic_write(&data_dir.join("hostname"), name.as_bytes(), 0o644) {
                    tracing::error!("cannot put the host name back: {e}");
                }
                name_before = Some(name.trim().to_owned()).filter(|n| !n.is_empty());
            }
            if let Err(e) = std::fs::remove_file(&pending_path) {
                tracing::error!("cannot remove {}: {e}", pending_path.display());
            }
        }
        let _ = std::fs::remove_file(&before_path);
        let mut seeded = false;
        let confirmed = match std::fs::read_to_string(&confirmed_path) {
            Ok(text) => match NetworkSettings::parse(&text, &confirmed_path) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!("{e}; the network stays as the system has it");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => seed.and_then(|s| {
                match atomic_write(&confirmed_path, s.to_toml().as_bytes(), 0o644) {
                    Ok(()) => {
                        tracing::info!(path = %confirmed_path.display(), "network settings seeded from skytime.toml's [network]");
                        seeded = true;
                        Some(s.clone())
                    }
                    Err(e) => {
                        tracing::error!("cannot write {}: {e}", confirmed_path.display());
                        None
                    }
                }
            }),
            Err(e) => {
                tracing::error!("cannot read {}: {e}", confirmed_path.display());
                None
            }
        };
        let manager = Arc::new(Self {
            control,
            data_dir: data_dir.to_owned(),
            certificate,
            reload_certificate,
            state: Mutex::new(SafeApply::new(confirmed.clone())),
            boot_hostname: std::fs::read_to_string(data_dir.join("hostname"))
                .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
            wake: tokio::sync::Notify::new(),
        });
        let named = confirmed.as_ref().is_some_and(|s| s.hostname.is_some());
        if let (Some(name), false) = (&name_before, named) {
            if let Err(e) = control::run(
                &manager.control.hostname_command,
                &[("SKYTIME_HOSTNAME", name.as_str())],
            ) {
                tracing::error!("cannot put the host name back: {e}");
            }
        }
        if let Some(s) = &confirmed {
            match manager.put_into_effect(Some(s), None) {
                Ok(()) => tracing::info!(mode = %s.mode, "network settings in effect"),
                Err(e) => tracing::error!("cannot put the network settings into effect: {e}"),
            }
            if seeded {
                // First boot made the certificate for the identity's name
                // before these settings were read: name them now.
                let action = certificate::after_change(
                    &manager.certificate,
                    None,
                    s,
                    &manager.reload_certificate,
                );
                tracing::info!(certificate = %action, "certificate after seeding the network settings");
            }
        }
        manager
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SafeApply> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Network.Get`.
    pub fn report(&self) -> NetworkReport {
        report(&self.lock(), Instant::now(), "")
    }

    /// Whether a change waits for its confirmation.
    pub fn pending(&self) -> bool {
        self.lock().pending().is_some()
    }

    /// `Network.Apply`: validates `text` (a `[network]` table), puts it
    /// into effect on probation for `confirm_seconds`. On error nothing
    /// changed (or, when networkd refused, the previous settings were put
    /// back).
    pub fn apply(&self, text: &str, confirm_seconds: u32) -> Result<NetworkReport, ApiError> {
        let new = NetworkSettings::parse(text, Path::new("network settings"))
            .map_err(|e| ApiError::InvalidConfig(format!("{e}; nothing was changed")))?;
        let now = Instant::now();
        let mut state = self.lock();
        let mut next = state.clone();
        next.apply(
            new.clone(),
            now,
            Duration::from_secs(confirm_seconds.into()),
        )
        .map_err(|e| ApiError::InvalidArgs(format!("{e}; nothing was changed")))?;
        let pending_path = self.data_dir.join(PENDING_FILE);
        atomic_write(&pending_path, new.to_toml().as_bytes(), 0o644).map_err(|e| {
            ApiError::PersistFailed(format!(
                "cannot write {}: {e}; nothing was changed",
                pending_path.display()
            ))
        })?;
        if state.pending().is_none() {
            let before = std::fs::read_to_string(self.data_dir.join("hostname"))
                .ok()
                .or_else(|| self.boot_hostname.as_ref().map(|h| format!("{h}\n")))
                .unwrap_or_default();
            let p = self.data_dir.join(HOSTNAME_BEFORE_FILE);
            if let Err(e) = atomic_write(&p, before.as_bytes(), 0o644) {
                let _ = std::fs::remove_file(&pending_path);
                return Err(ApiError::PersistFailed(format!(
                    "cannot write {}: {e}; nothing was changed",
                    p.display()
                )));
            }
        }
        let old = state.in_effect().cloned();
        if let Err(e) = self.put_into_effect(Some(&new), old.as_ref()) {
            let back = self.put_into_effect(old.as_ref(), Some(&new));
            let _ = std::fs::remove_file(&pending_path);
            return Err(ApiError::ApplyFailed(match back {
                Ok(()) => format!("{e}; the previous network settings were put back"),
                Err(b) => format!("{e}; putting the previous settings back failed too: {b}"),
            }));
        }
        *state = next;
        let r = report(&state, now, "");
        drop(state);
        self.wake.notify_one();
        tracing::warn!(
            confirm_seconds,
            "network change applied on probation: it reverts unless confirmed in time"
        );
        Ok(r)
    }

    /// `Network.Confirm`: keeps the change on probation (persisted before
    /// the state moves); re-issues the appliance's own self-signed
    /// certificate when the host name or a static address changed.
    pub fn confirm(&self) -> Result<NetworkReport, ApiError> {
        let now = Instant::now();
        let mut state = self.lock();
        let previous = state.confirmed().cloned();
        let mut next = state.clone();
        let confirmed = next
            .confirm(now)
            .map_err(|e| match e {
                SafeApplyError::NothingPending | SafeApplyError::TooLate => {
                    ApiError::Refused(e.to_string())
                }
                SafeApplyError::Window(_) => ApiError::InvalidArgs(e.to_string()),
            })?
            .clone();
        let path = self.data_dir.join(CONFIRMED_FILE);
        atomic_write(&path, confirmed.to_toml().as_bytes(), 0o644).map_err(|e| {
            ApiError::PersistFailed(format!(
                "cannot write {}: {e}; the change stays on probation",
                path.display()
            ))
        })?;
        self.remember_hostname(&confirmed);
        let _ = std::fs::remove_file(self.data_dir.join(PENDING_FILE));
        let _ = std::fs::remove_file(self.data_dir.join(HOSTNAME_BEFORE_FILE));
        *state = next;
        drop(state);
        tracing::info!("network change confirmed");
        let action = certificate::after_change(
            &self.certificate,
            previous.as_ref(),
            &confirmed,
            &self.reload_certificate,
        );
        Ok(report(&self.lock(), now, &action))
    }

    /// Writes a confirmed host name to `<data_dir>/hostname`, from which
    /// the boot (skytime-identity.service) sets it, when it differs.
    fn remember_hostname(&self, s: &NetworkSettings) {
        if let Some(h) = &s.hostname {
            self.write_hostname(h.as_str());
        }
    }

    /// `<data_dir>/hostname` := `h` (unless it says so already).
    fn write_hostname(&self, h: &str) {
        let p = self.data_dir.join("hostname");
        let line = format!("{h}\n");
        if std::fs::read_to_string(&p).ok().as_deref() == Some(line.as_str()) {
            return;
        }
        if let Err(e) = atomic_write(&p, line.as_bytes(), 0o644) {
            tracing::error!("cannot write {}: {e}", p.display());
        }
    }

    /// Reverts an unconfirmed change once its deadline passes; returns
    /// when `shutdown` fires.
    pub async fn run_deadlines(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let wait = self
                .lock()
                .pending()
                .map(|p| p.deadline.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.tick(Instant::now())).await;
        }
    }

    /// Reverts the change on probation if its deadline passed.
    pub fn tick(&self, now: Instant) {
        let mut state = self.lock();
        let candidate = state.pending().map(|p| p.candidate.clone());
        if let Tick::Revert { previous } = state.tick(now) {
            tracing::warn!("network change not confirmed in time: reverting");
            if let Err(e) = self.put_into_effect(previous.as_ref(), candidate.as_ref()) {
                tracing::error!("cannot revert the network settings: {e}");
            }
            let _ = std::fs::remove_file(self.data_dir.join(PENDING_FILE));
            let _ = std::fs::remove_file(self.data_dir.join(HOSTNAME_BEFORE_FILE));
        }
    }

    /// Renders `new` (or removes the rendered file for `None`, which
    /// leaves the image's default), reloads networkd and sets the host
    /// name when it differs from `old`'s.
    fn put_into_effect(
        &self,
        new: Option<&NetworkSettings>,
        old: Option<&NetworkSettings>,
    ) -> Result<(), NetworkError> {
        let path = self.control.directory.join(render::NETWORK_FILE);
        let written = match new {
            Some(s) => atomic_write(&path, render::network_file(s).as_bytes(), 0o644),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        written.map_err(|source| NetworkError::Write {
            path: path.clone(),
            source,
        })?;
        control::run(&self.control.reload_command, &[]).map_err(NetworkError::Command)?;
        let name = |s: Option<&NetworkSettings>| {
            s.and_then(|s| s.hostname.as_ref()).map(|h| h.to_string())
        };
        // Settings without a name put back the one the appliance had.
        let want = name(new).or_else(|| name(old).and(self.boot_hostname.clone()));
        if let Some(h) = want {
            if name(old).as_ref() != Some(&h) {
                self.write_hostname(&h);
                control::run(
                    &self.control.hostname_command,
                    &[("SKYTIME_HOSTNAME", h.as_str())],
                )
                .map_err(NetworkError::Command)?;
            }
        }
        Ok(())
    }
}

/// The record `Network.Get`, `Apply` and `Confirm` return.
fn report(state: &SafeApply, now: Instant, certificate: &str) -> NetworkReport {
    let s = state.in_effect().cloned().unwrap_or_default();
    let pending = state.pending();
    NetworkReport {
        managed: state.in_effect().is_some(),
        mode: s.mode.to_string(),
        hostname: s
            .hostname
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        mdns: s.mdns,
        ipv4_address: s
            .ipv4
            .as_ref()
            .map(|a| a.address.to_string())
            .unwrap_or_default(),
        ipv4_gateway: s
            .ipv4
            .as_ref()
            .and_then(|a| a.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default(),
        ipv6_address: s
            .ipv6
            .as_ref()
            .map(|a| a.address.to_string())
            .unwrap_or_default(),
        ipv6_gateway: s
            .ipv6
            .as_ref()
            .and_then(|a| a.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default(),
        dns: s.dns.iter().map(ToString::to_string).collect(),
        toml: s.to_toml(),
        pending: pending.is_some(),
        confirm_within: pending
            .map(|p| p.deadline.saturating_duration_since(now).as_secs_f64())
            .unwrap_or(0.0),
        previous_toml: pending
            .map(|p| p.previous.clone().unwrap_or_default().to_toml())
            .unwrap_or_default(),
        certificate: certificate.to_owned(),
        listening: open_sockets(),
    }
}

/// What is open to the network now, as the report lists it; empty (and
/// logged) if the kernel's tables cannot be read.
fn open_sockets() -> Vec<String> {
    match listening::read(Path::new("/proc/net")) {
        Ok(all) => all.iter().map(ToString::to_string).collect(),
        Err(e) => {
            tracing::warn!("cannot list the open sockets: {e}");
            Vec::new()
        }
    }
}
