//! Reference clocks in the daemon: NMEA serial, kernel PPS, GPIO PPS and
//! chrony's SOCK protocol, paired into one Stratum-1 source.
//!
//! The logic lives in the sans-IO crate `skytime-refclock` (its
//! `Pipeline`); this module opens devices ([`devices`], through the kernel
//! bindings [`pps_uapi`] and [`gpio_uapi`]), listens on the SOCK socket
//! and runs the source manager ([`manager`]) that feeds the pipeline and
//! turns its samples into the discipline's `Sample`s:
//! - `SourceId::Pps` (refid "PPS"): pulses paired with NMEA, or carried on
//!   alone while the clock is synchronized;
//! - `SourceId::Nmea` (refid "GPS"): NMEA alone;
//! - `SourceId::Sock`: whole SOCK samples. SOCK *pulse* samples are PPS
//!   edges and go through the pairing.

pub mod config;
pub mod devices;
pub mod gpio_uapi;
pub mod manager;
pub mod pps_uapi;

pub use config::RefclockConfig;
pub use manager::source_kind;
pub use skytime_refclock::{RefclockStatus, SourceId, SourceStatus};

use skytime_discipline::Sample;
use skytime_proto::SyncState;
use skytime_refclock::gpstime::BUILD_UNIX;
use skytime_refclock::{PairingConfig, Pipeline, PipelineConfig};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RefclockError {
    #[error("cannot listen for SOCK samples on {path}: {source}")]
    Sock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the {what} reader thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("[gps] has both pps and pps_gpio: configure one PPS input")]
    TwoPps,
}

/// Handle on the running sources, for status reports.
#[derive(Debug)]
pub struct Refclocks {
    status: Arc<Mutex<RefclockStatus>>,
}

impl Refclocks {
    /// Starts every configured source; samples flow into `samples`.
    /// PPS never carries on alone without NMEA here: use
    /// [`Refclocks::start_with_sync`] to allow that once synchronized.
    pub async fn start(
        config: &RefclockConfig,
        samples: mpsc::Sender<Sample>,
        shutdown: CancellationToken,
    ) -> Result<Self, RefclockError> {
        Self::start_with_sync(config, samples, None, shutdown).await
    }

    /// As [`Refclocks::start`]; `sync` (the discipline's published state)
    /// lets PPS carry on through short NMEA outages while it says
    /// synchronized.
    pub async fn start_with_sync(
        config: &RefclockConfig,
        samples: mpsc::Sender<Sample>,
        sync: Option<watch::Receiver<SyncState>>,
        shutdown: CancellationToken,
    ) -> Result<Self, RefclockError> {
        if config.pps.is_some() && config.pps_gpio.is_some() {
            return Err(RefclockError::TwoPps);
        }
        let mut sources = Vec::new();
        let pps_name = match (&config.pps, &config.pps_gpio, &config.sock) {
            (Some(p), _, _) => Some(format!("PPS {}", p.display())),
            (None, Some(g), _) => Some(format!("PPS {} line {}", g.chip.display(), g.line)),
            (None, None, Some(s)) => Some(format!("PPS via SOCK {}", s.display())),
            _ => None,
        };
        if let Some(name) = pps_name {
            sources.push(SourceStatus::new(SourceId::Pps, name));
        }
        if let Some(d) = &config.device {
            sources.push(SourceStatus::new(
                SourceId::Nmea,
                format!("NMEA {}", d.display()),
            ));
        }
        if let Some(s) = &config.sock {
            sources.push(SourceStatus::new(
                SourceId::Sock,
                format!("SOCK {}", s.display()),
            ));
        }
        let status = Arc::new(Mutex::new(RefclockStatus::new(sources.clone())));
        if config.is_empty() {
            return Ok(Self { status });
        }

        let pairing = PairingConfig {
            max_delay: config.max_delay.0,
            max_error: config.max_error.0,
            configured_delay: config.nmea_delay.map(|d| d.0),
            holdover: config.holdover.0,
            pps_dispersion: config.pps_precision.0,
        };
        let backoff = config.reopen_max_backoff.0;
        let (dev_tx, mut dev_rx) = mpsc::channel(1024);
        let (sock_tx, mut sock_rx) = mpsc::channel(64);
        if let Some(path) = &config.sock {
            let socket = manager::bind_sock(path).map_err(|source| RefclockError::Sock {
                path: path.clone(),
                source,
            })?;
            tracing::info!("listening for SOCK samples on {}", path.display());
            tokio::spawn(manager::run_sock(
                socket,
                path.clone(),
                sock_tx,
                shutdown.child_token(),
            ));
        }
        if let Some(dev) = &config.device {
            devices::spawn_serial(
                dev.clone(),
                config.baud.0,
                backoff,
                dev_tx.clone(),
                shutdown.child_token(),
            )
            .map_err(|source| RefclockError::Thread {
                what: "serial",
                source,
            })?;
        }
        if let Some(pps) = &config.pps {
            devices::spawn_kernel_pps(
                pps.clone(),
                config.pps_edge,
                backoff,
                dev_tx.clone(),
                shutdown.child_token(),
            )
            .map_err(|source| RefclockError::Thread {
                what: "PPS",
                source,
            })?;
        }
        if let Some(g) = &config.pps_gpio {
            devices::spawn_gpio_pps(
                g.chip.clone(),
                g.line,
                config.pps_edge,
                backoff,
                dev_tx.clone(),
                shutdown.child_token(),
            )
            .map_err(|source| RefclockError::Thread {
                what: "GPIO",
                source,
            })?;
        }
        drop(dev_tx);

        let pipeline = Pipeline::new(
            PipelineConfig {
                baud: config.baud.0,
                pairing,
                date_floor: BUILD_UNIX,
            },
            sources,
        );
        let mut mgr = manager::Manager::new(pipeline, samples, sync, status.clone());
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(manager::POLL_INTERVAL);
            let mut reach = tokio::time::interval(manager::REACH_INTERVAL);
            reach.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(ev) = dev_rx.recv() => mgr.on_device(ev),
                    Some(d) = sock_rx.recv() => mgr.on_sock(&d),
                    _ = poll.tick() => mgr.poll(),
                    _ = reach.tick() => mgr.reach_tick(),
                }
            }
            mgr.log_summary();
        });
        Ok(Self { status })
    }

    /// A snapshot of every source's state and statistics.
    pub fn status(&self) -> RefclockStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
