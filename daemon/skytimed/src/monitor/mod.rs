//! What is wrong and what happened: the appliance's alarms and its
//! recent history, kept up to date by one task that observes the live
//! parts every second.
//!
//! The decisions are sans IO: `skytime-alarms` turns an observation into
//! the active alarms, [`history`] turns samples into points. This module
//! holds their state behind a lock ([`Monitor`], read by the management
//! API) and runs the loop ([`run`]) that feeds them from an [`Observe`]r
//! (the appliance). The OTA work raises its alarms through
//! [`Monitor::set_update_problem`].

pub mod history;

use serde::Deserialize;
use skytime_alarms::{AlarmConfig, Alarms, Observation, UpdateProblem};
use skytime_api::{AlarmReport, HistoryPoint};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use history::{History, Sample};

/// How often the monitor looks.
const EVERY: Duration = Duration::from_secs(1);

/// The `[monitor]` section of skytime.toml.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Seconds each history point covers.
    #[serde(deserialize_with = "interval")]
    pub history_interval: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            history_interval: 60,
        }
    }
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=3600).contains(v))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "history_interval {v} is out of range: use 1 to 3600 seconds"
            ))
        })
}

/// Where the monitor gets its facts: the running daemon.
pub trait Observe: Send + Sync {
    /// The alarm logic's view now (quick: snapshots, no file read).
    fn observation(&self) -> Observation;
    /// One history sample now.
    fn sample(&self) -> Sample;
}

/// The alarms and history, shared between the loop and the API.
#[derive(Debug)]
pub struct Monitor {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    alarms: Alarms,
    active: Vec<AlarmReport>,
    history: History,
    update: Option<UpdateProblem>,
}

impl Monitor {
    pub fn new(config: &MonitorConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                alarms: Alarms::new(AlarmConfig::default()),
                active: Vec::new(),
                history: History::new(config.history_interval),
                update: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active alarms, critical first.
    pub fn alarms(&self) -> Vec<AlarmReport> {
        self.lock().active.clone()
    }

    /// History points of the last `seconds` before `now` (0: all).
    pub fn history(&self, now: i64, seconds: u32) -> Vec<HistoryPoint> {
        self.lock().history.points(now, seconds)
    }

    /// The hook for the update logic: a failed or rolled-back update
    /// raises its alarm from the next observation on, until set to
    /// `None`.
    pub fn set_update_problem(&self, problem: Option<UpdateProblem>) {
        self.lock().update = problem;
    }

    /// Takes one observation and one sample; logs what was raised and
    /// cleared.
    pub fn observe(&self, mut observation: Observation, sample: &Sample) {
        let mut s = self.lock();
        observation.update = s.update.clone();
        for c in s.alarms.observe(&observation) {
            let a = &c.alarm;
            if c.raised {
                tracing::warn!(
                    alarm = a.kind.name(),
                    severity = a.severity.name(),
                    "alarm: {}",
                    a.reason
                );
            } else {
                tracing::info!(alarm = a.kind.name(), "alarm cleared");
            }
        }
        s.active = s.alarms.active().iter().map(report).collect();
        s.history.record(sample);
    }
}

fn report(a: &skytime_alarms::Alarm) -> AlarmReport {
    AlarmReport {
        name: a.kind.name().to_owned(),
        severity: a.severity.name().to_owned(),
        since: a.since,
        reason: a.reason.clone(),
    }
}

/// Observes `source` every second until `shutdown`.
pub async fn run(monitor: Arc<Monitor>, source: Arc<dyn Observe>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        monitor.observe(source.observation(), &source.sample());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_alarms::ClockMode;

    #[test]
    fn the_section_is_checked() {
        let c: MonitorConfig = toml::from_str("history_interval = 5").unwrap();
        assert_eq!(c.history_interval, 5);
        let e = toml::from_str::<MonitorConfig>("history_interval = 0").unwrap_err();
        assert!(e.to_string().contains("1 to 3600"), "{e}");
        assert!(toml::from_str::<MonitorConfig>("interval = 5").is_err());
    }

    #[test]
    fn observations_become_alarm_reports_and_the_update_hook_raises_its_own() {
        let m = Monitor::new(&MonitorConfig::default());
        let mut o = Observation::at(1_800_000_000);
        o.clock.mode = ClockMode::Startup;
        o.clock.served_stratum = 16;
        m.observe(o.clone(), &Sample::default());
        let a = m.alarms();
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].name.as_str(), a[0].severity.as_str()),
            ("not_synchronized", "critical")
        );
        m.set_update_problem(Some(UpdateProblem::Failed {
            at: 1_800_000_000,
            reason: "the bundle is not signed by a trusted key".into(),
        }));
        m.observe(o, &Sample::default());
        let names: Vec<_> = m.alarms().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["not_synchronized", "update_failed"]);
    }
}
