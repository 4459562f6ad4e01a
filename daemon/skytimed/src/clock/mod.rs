//! The system clock in the daemon: reading it ([`realtime`]), the
//! discipline task, adjtimex ([`kernel`]), the drift file and the
//! leap-second table.
//!
//! The sans-IO `skytime_discipline::Discipline` makes every decision; this
//! module feeds it samples and the time, applies its actions to the kernel
//! clock (unless `[clock] steer = false`, the measure-only mode every test
//! and demo on a shared machine uses), publishes the `SyncState` for NTP
//! replies and a [`ClockStatus`] snapshot for reports.

pub mod kernel;
pub mod realtime;

use crate::persist::atomic_write;
use serde::Deserialize;
use skytime_discipline::{
    Clock, Discipline, DisciplineConfig, Drift, IntegrityReport, LeapMode, LeapTable, Sample,
    SmearShape, SourceReport, Tracking,
};
use skytime_proto::{NtpDuration, NtpTimestamp, SyncState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use kernel::{KernelClock, KernelClockError};
pub use realtime::{measure_precision, now};

/// A network source's sample for the discipline: what the upstream
/// tasks send the clock task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkSample {
    pub sample: skytime_discipline::Sample,
    pub upstream: skytime_discipline::Upstream,
}

/// Name of the drift file in the data directory.
pub const DRIFT_FILE: &str = "drift";
/// How often the drift file is rewritten while synchronized.
const DRIFT_SAVE_INTERVAL: Duration = Duration::from_secs(3600);

/// The `[clock]` section of skytime.toml.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "ClockToml")]
pub struct ClockConfig {
    pub steer: bool,
    pub makestep_threshold: f64,
    pub makestep_limit: i32,
    pub max_slew_ppm: f64,
    pub source_timeout: f64,
    pub min_samples: usize,
    pub max_distance: f64,
    pub trust_pps: bool,
    pub holdover_limit: f64,
    pub holdover_drift_ppm: f64,
    pub leap_mode: LeapModeName,
    pub smear_shape: SmearShapeName,
    pub smear_hours: f64,
    pub leap_seconds_file: PathBuf,
    /// GPS integrity: disagreement with the authenticated upstream
    /// sources beyond their error bounds that makes the GPS distrusted
    /// (seconds), the agreement needed to trust it again (seconds), and
    /// the largest jump of GPS time followed without a witness (seconds).
    pub gps_max_disagreement: f64,
    pub gps_trust_after: f64,
    pub gps_max_jump: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LeapModeName {
    Step,
    Smear,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmearShapeName {
    Linear,
    Cosine,
}

impl Default for ClockConfig {
    fn default() -> Self {
        let d = DisciplineConfig::default();
        Self {
            steer: true,
            makestep_threshold: d.makestep_threshold_s,
            makestep_limit: d.makestep_limit,
            max_slew_ppm: d.max_slew_ppm,
            source_timeout: d.source_timeout_s,
            min_samples: d.min_samples,
            max_distance: d.max_distance_s,
            trust_pps: d.trust_pps,
            holdover_limit: d.holdover_limit_s,
            holdover_drift_ppm: d.holdover_drift_ppm,
            leap_mode: LeapModeName::Step,
            smear_shape: SmearShapeName::Cosine,
            smear_hours: 24.0,
            leap_seconds_file: PathBuf::from("/usr/share/zoneinfo/leap-seconds.list"),
            gps_max_disagreement: d.integrity.bound_s,
            gps_trust_after: d.integrity.clear_after_s,
            gps_max_jump: d.integrity.max_jump_s,
        }
    }
}

/// The section as written, before range checks (same fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClockToml {
    steer: bool,
    makestep_threshold: f64,
    makestep_limit: i32,
    max_slew_ppm: f64,
    source_timeout: f64,
    min_samples: usize,
    max_distance: f64,
    trust_pps: bool,
    holdover_limit: f64,
    holdover_drift_ppm: f64,
    leap_mode: LeapModeName,
    smear_shape: SmearShapeName,
    smear_hours: f64,
    leap_seconds_file: PathBuf,
    gps_max_disagreement: f64,
    gps_trust_after: f64,
    gps_max_jump: f64,
}

impl Default for ClockToml {
    fn default() -> Self {
        let c = ClockConfig::default();
        Self {
            steer: c.steer,
            makestep_threshold: c.makestep_threshold,
            makestep_limit: c.makestep_limit,
            max_slew_ppm: c.max_slew_ppm,
            source_timeout: c.source_timeout,
            min_samples: c.min_samples,
            max_distance: c.max_distance,
            trust_pps: c.trust_pps,
            holdover_limit: c.holdover_limit,
            holdover_drift_ppm: c.holdover_drift_ppm,
            leap_mode: c.leap_mode,
            smear_shape: c.smear_shape,
            smear_hours: c.smear_hours,
            leap_seconds_file: c.leap_seconds_file,
            gps_max_disagreement: c.gps_max_disagreement,
            gps_trust_after: c.gps_trust_after,
            gps_max_jump: c.gps_max_jump,
        }
    }
}

impl TryFrom<ClockToml> for ClockConfig {
    type Error = String;
    fn try_from(raw: ClockToml) -> Result<Self, String> {
        let c = ClockConfig {
            steer: raw.steer,
            makestep_threshold: raw.makestep_threshold,
            makestep_limit: raw.makestep_limit,
            max_slew_ppm: raw.max_slew_ppm,
            source_timeout: raw.source_timeout,
            min_samples: raw.min_samples,
            max_distance: raw.max_distance,
            trust_pps: raw.trust_pps,
            holdover_limit: raw.holdover_limit,
            holdover_drift_ppm: raw.holdover_drift_ppm,
            leap_mode: raw.leap_mode,
            smear_shape: raw.smear_shape,
            smear_hours: raw.smear_hours,
            leap_seconds_file: raw.leap_seconds_file,
            gps_max_disagreement: raw.gps_max_disagreement,
            gps_trust_after: raw.gps_trust_after,
            gps_max_jump: raw.gps_max_jump,
        };
        let range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!("[clock] {name} = {v} is outside {lo}..={hi}"))
            }
        };
        range("makestep_threshold", c.makestep_threshold, 0.0, 1e9)?;
        range("max_slew_ppm", c.max_slew_ppm, 1.0, 500.0)?;
        range("source_timeout", c.source_timeout, 1.0, 3600.0)?;
        range("max_distance", c.max_distance, 1e-6, 16.0)?;
        range("holdover_limit", c.holdover_limit, 0.0, 30.0 * 86_400.0)?;
        range("holdover_drift_ppm", c.holdover_drift_ppm, 0.0, 500.0)?;
        range("smear_hours", c.smear_hours, 0.1, 48.0)?;
        range("gps_max_disagreement", c.gps_max_disagreement, 0.0, 10.0)?;
        range("gps_trust_after", c.gps_trust_after, 0.0, 86_400.0)?;
        range("gps_max_jump", c.gps_max_jump, 0.001, 1e9)?;
        if c.makestep_limit < -1 {
            return Err(format!(
                "[clock] makestep_limit = {} must be -1 (always) or a count of updates",
                c.makestep_limit
            ));
        }
        if !(1..=64).contains(&c.min_samples) {
            return Err(format!(
                "[clock] min_samples = {} is outside 1..=64",
                c.min_samples
            ));
        }
        Ok(c)
    }
}

impl ClockConfig {
    /// The discipline's parameters for this section.
    pub fn discipline(&self, local_stratum: Option<u8>, precision: i8) -> DisciplineConfig {
        DisciplineConfig {
            steer: self.steer,
            makestep_threshold_s: self.makestep_threshold,
            makestep_limit: self.makestep_limit,
            max_slew_ppm: self.max_slew_ppm,
            source_timeout_s: self.source_timeout,
            min_samples: self.min_samples,
            max_distance_s: self.max_distance,
            trust_pps: self.trust_pps,
            holdover_limit_s: self.holdover_limit,
            holdover_drift_ppm: self.holdover_drift_ppm,
            local_stratum,
            leap_mode: match self.leap_mode {
                LeapModeName::Step => LeapMode::Step,
                LeapModeName::Smear => LeapMode::Smear {
                    shape: match self.smear_shape {
                        SmearShapeName::Linear => SmearShape::Linear,
                        SmearShapeName::Cosine => SmearShape::Cosine,
                    },
                    duration_s: self.smear_hours * 3600.0,
                },
            },
            precision,
            integrity: skytime_discipline::IntegrityConfig {
                bound_s: self.gps_max_disagreement,
                clear_after_s: self.gps_trust_after,
                max_jump_s: self.gps_max_jump,
            },
            ..DisciplineConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("system clock: {0}")]
    Kernel(#[from] KernelClockError),
    #[error("writing the drift file {path}: {source}")]
    DriftWrite {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `chronyc tracking` and `chronyc sources`/`sourcestats` would show,
/// refreshed by the discipline task about once a second.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockSnapshot {
    pub at: NtpTimestamp,
    pub tracking: Tracking,
    pub sources: Vec<SourceReport>,
    /// Offset to add to served timestamps now (non-zero only while a
    /// configured leap smear is in progress).
    pub smear_offset: NtpDuration,
    pub leap_table_expired: Option<bool>,
    /// The GPS integrity check (network sources judging the GPS).
    pub integrity: IntegrityReport,
}

/// A shared handle on the latest snapshot (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct ClockStatus(Arc<Mutex<Option<ClockSnapshot>>>);

impl ClockStatus {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn snapshot(&self) -> Option<ClockSnapshot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, s: ClockSnapshot) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
}

/// Reads the drift file; a missing or bad file means a cold start (logged).
pub fn load_drift(path: &Path) -> Option<Drift> {
    match std::fs::read_to_string(path) {
        Ok(text) => match Drift::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("{}: {e}; starting without it", path.display());
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(
                "cannot read drift file {}: {e}; starting without it",
                path.display()
            );
            None
        }
    }
}

pub fn save_drift(path: &Path, drift: &Drift) -> Result<(), ClockError> {
    atomic_write(path, drift.render().as_bytes(), 0o644).map_err(|source| ClockError::DriftWrite {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the leap-second table; problems are logged, not fatal (the
/// server works without it, it just cannot announce leaps).
pub fn load_leap_table(path: &Path, now: NtpTimestamp) -> Option<LeapTable> {
    match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| LeapTable::parse(&t).map_err(|e| e.to_string()))
    {
        Ok(t) => {
            if t.is_expired(now) {
                tracing::warn!("{} expired; update tzdata: leap seconds announced after its expiry are unknown", path.display());
            }
            Some(t)
        }
        Err(e) => {
            tracing::warn!(
                "leap seconds table {}: {e}; leap seconds will not be announced",
                path.display()
            );
            None
        }
    }
}

/// Runs the discipline: consumes samples, steers (or only measures) the
/// clock, and publishes what NTP replies must say into `sync`.
/// `local_stratum` is the configured fallback when no source is usable.
pub async fn run(
    config: ClockConfig,
    data_dir: PathBuf,
    local_stratum: Option<u8>,
    samples: mpsc::Receiver<Sample>,
    sync: watch::Sender<SyncState>,
    shutdown: CancellationToken,
) -> Result<(), ClockError> {
    // No network source: a channel nobody sends on.
    let (_none, network) = mpsc::channel(1);
    run_with_status(
        config,
        data_dir,
        local_stratum,
        Inputs { samples, network },
        sync,
        shutdown,
        ClockStatus::new(),
    )
    .await
}

/// What the discipline task consumes: the reference clocks' samples and
/// the upstream sources'.
#[derive(Debug)]
pub struct Inputs {
    pub samples: mpsc::Receiver<Sample>,
    pub network: mpsc::Receiver<NetworkSample>,
}

/// [`run`], also keeping `status` up to date for tracking/sources reports.
pub async fn run_with_status(
    config: ClockConfig,
    data_dir: PathBuf,
    local_stratum: Option<u8>,
    inputs: Inputs,
    sync: watch::Sender<SyncState>,
    shutdown: CancellationToken,
    status: ClockStatus,
) -> Result<(), ClockError> {
    let Inputs {
        mut samples,
        mut network,
    } = inputs;
    // Without a GPS the reference clocks' channel closes at once, and
    // without upstream servers the network one. The discipline still runs
    // on its ticks then (the local clock, holdover ageing) and publishes
    // its snapshot each second: a loop that stopped would freeze the
    // status and, once a snapshot was out, the watchdog would restart
    // skytimed (seen in image_update's first boots). Only shutdown ends it.
    let (mut samples_open, mut network_open) = (true, true);
    let mut clock = KernelClock::new(config.steer);
    let precision = sync.borrow().precision;
    let drift_path = data_dir.join(DRIFT_FILE);
    let drift = load_drift(&drift_path);
    let now = clock.now()?;
    let (mut d, first) = Discipline::new(
        config.discipline(local_stratum, precision),
        now,
        clock.frequency_ppm()?,
        drift,
    );
    d.set_leap_table(load_leap_table(&config.leap_seconds_file, now));
    if config.steer {
        first.apply(&mut clock)?;
    }
    tracing::info!(
        steer = config.steer,
        warm_start = drift.is_some(),
        "clock discipline started{}",
        if config.steer {
            ""
        } else {
            " (measure only: the system clock is never touched)"
        }
    );

    let mut wakeup: Option<NtpTimestamp> = None;
    let mut last_drift_save = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let until_wakeup = match wakeup {
            Some(w) => Duration::from_secs_f64((w - clock.now()?).to_seconds_f64().clamp(0.0, 1.0)),
            None => Duration::from_secs(3600),
        };
        let actions = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = samples.recv(), if samples_open => match s {
                Some(s) => d.handle_sample(clock.now()?, &s),
                None => {
                    samples_open = false;
                    continue;
                }
            },
            n = network.recv(), if network_open => match n {
                Some(n) => d.handle_network_sample(clock.now()?, &n.sample, &n.upstream),
                None => {
                    network_open = false;
                    continue;
                }
            },
            _ = tick.tick() => d.tick(clock.now()?),
            _ = tokio::time::sleep(until_wakeup), if wakeup.is_some() => { wakeup = None; d.tick(clock.now()?) }
        };
        if let Some(w) = actions.wakeup {
            wakeup = Some(wakeup.map_or(w, |x| x.min(w)));
        }
        if config.steer && !actions.is_empty() {
            if let Some(s) = actions.step {
                tracing::warn!(offset_s = s.to_seconds_f64(), "stepping the system clock");
            }
            actions.apply(&mut clock)?;
        }
        let now = clock.now()?;
        let state = d.sync_state(now);
        sync.send_if_modified(|cur| {
            let changed = *cur != state;
            *cur = state;
            changed
        });
        status.set(ClockSnapshot {
            at: now,
            tracking: d.tracking(now),
            sources: d.sources(now),
            smear_offset: d.smear_offset(now, KernelClock::leap_in_progress()),
            leap_table_expired: d.leap_table().map(|t| t.is_expired(now)),
            integrity: d.integrity(),
        });
        if last_drift_save.elapsed() >= DRIFT_SAVE_INTERVAL {
            if let Some(drift) = d.drift() {
                save_drift(&drift_path, &drift)?;
                last_drift_save = tokio::time::Instant::now();
            }
        }
    }
    if let Some(drift) = d.drift() {
        save_drift(&drift_path, &drift)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
