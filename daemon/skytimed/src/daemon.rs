//! Start-up, signal handling and orderly shutdown of the whole daemon.

use crate::appliance::{Appliance, Parts};
use crate::clock::{self, ClockStatus};
use crate::config::{managed, Config};
use crate::dbus::{self, DbusConfig};
use crate::monitor::{self, Monitor};
use crate::notify::{self, Health, Notifier};
use crate::ntp::{self, Clients, PolicyPublisher, ServePolicy, ServerContext, ServerStats};
use crate::nts::NtsService;
use crate::refclock::Refclocks;
use crate::upstream::Upstreams;
use skytime_api::ApplianceBackend;
use skytime_proto::SyncState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serve NTP on {addr}: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("NTS: {0}")]
    Nts(#[from] crate::nts::NtsError),
    #[error("reference clock: {0}")]
    Refclock(#[from] crate::refclock::RefclockError),
    #[error("management API: {0}")]
    Dbus(#[from] crate::dbus::DbusError),
    #[error("cannot start the watchdog thread: {0}")]
    Watchdog(std::io::Error),
    #[error("cannot start the NTP server threads: {0}")]
    NtpThreads(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
    #[error("upstream sources: {0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
}

/// How long a main loop may stay silent before the watchdog stops
/// vouching for the daemon. Loops beat at least every second; the margin
/// absorbs scheduling delays on a loaded 2-core board.
const MAX_SILENCE: Duration = Duration::from_secs(5);
/// How often STATUS= is recomputed (it is sent only when it changes).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM or SIGINT.
///
/// Order matters for systemd: sockets first (a port that cannot be bound is
/// a start-up error), then NTS, the reference clocks and the discipline,
/// then the management API; READY=1 only after the bus name is owned.
pub async fn run(config: Config, nts_ke_listen: Vec<SocketAddr>) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    let notifier = Arc::new(Notifier::from_env());
    let health = Health::new();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| DaemonError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Temporary files of writes a power cut interrupted: never read, but
    // they would pile up on the data partition.
    match skytime_persist::atomic::remove_stale_temps(&config.data_dir) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            files = n,
            "removed temporary files left by an interrupted write"
        ),
        Err(e) => tracing::warn!("cannot sweep {}: {e}", config.data_dir.display()),
    }

    let precision = clock::measure_precision();
    let local_stratum = config.ntp.local_stratum.map(|s| s.get());
    let initial = match local_stratum {
        Some(stratum) => SyncState::local(stratum, precision, clock::now()),
        None => SyncState::unsynchronized(precision),
    };
    let (sync_tx, sync_rx) = watch::channel(initial);
    let keys = crate::keys::load(&config.keys)?;
    if let Some(k) = &keys {
        tracing::info!(keys = k.len(), "symmetric keys loaded");
    }

    // Each address is served by one socket and thread per CPU (see
    // ntp::io), so that the server scales across cores without a shared
    // lock, queue or runtime on the request path.
    let threads = ntp::threads_per_address();
    let mut groups = Vec::new();
    let mut ntp_bound = Vec::new();
    for addr in &config.ntp.listen {
        let group = ntp::io::bind_group(*addr, threads).map_err(|source| {
            let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need CAP_NET_BIND_SERVICE)"
            } else {
                ""
            };
            DaemonError::Bind {
                addr: *addr,
                source,
                hint,
            }
        })?;
        tracing::info!(address = %group[0].local_addr(), threads = group.len(), "serving NTP");
        ntp_bound.push(group[0].local_addr());
        groups.push(group);
    }

    let nts = Arc::new(
        NtsService::start(
            &config.nts,
            &config.data_dir,
            &nts_ke_listen,
            shutdown.child_token(),
        )
        .await?,
    );
    let stats = Arc::new(ServerStats::default());
    let clients = Arc::new(Clients::new(
        config.ntp.client_log_size.get(),
        stats.clone(),
    ));
    let policy = Arc::new(PolicyPublisher::new(ServePolicy::from_config(&config.ntp)));
    let ctx = Arc::new(ServerContext {
        policy: policy.clone(),
        sync: sync_rx.clone(),
        nts: nts.clone(),
        stats: stats.clone(),
        clients: clients.clone(),
        keys: keys.clone(),
    });

    let ntp_threads = ntp::spawn_threads(groups, &ctx, Some(&health), MAX_SILENCE, &shutdown)
        .map_err(DaemonError::NtpThreads)?;
    let mut tasks = JoinSet::new();

    let (sample_tx, sample_rx) = mpsc::channel(256);
    let (network_tx, network_rx) = mpsc::channel(64);
    let upstreams = Arc::new(Upstreams::start(
        &config.upstream,
        &config.nts_client,
        keys,
        config.keys.file.as_deref(),
        &config.data_dir,
        precision,
        network_tx,
        shutdown.child_token(),
    )?);
    // The refclocks see the published sync state so that PPS alone can
    // carry on through short NMEA outages once the clock is synchronized.
    let refclocks = Arc::new(
        Refclocks::start_with_sync(
            &config.gps,
            sample_tx,
            Some(sync_rx.clone()),
            shutdown.child_token(),
        )
        .await?,
    );
    let clock_status = ClockStatus::new();
    {
        let (clock, data_dir, token, status) = (
            config.clock.clone(),
            config.data_dir.clone(),
            shutdown.child_token(),
            clock_status.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = crate::clock::run_with_status(
                clock,
                data_dir,
                local_stratum,
                crate::clock::Inputs {
                    samples: sample_rx,
                    network: network_rx,
                },
                sync_tx,
                token,
                status,
            )
            .await
            {
                tracing::error!("clock discipline stopped: {e}");
            }
        });
    }
    tasks.spawn(watch_progress(
        clock_status.clone(),
        (!config.gps.is_empty()).then(|| refclocks.clone()),
        health.clone(),
        shutdown.child_token(),
    ));

    let monitor = Monitor::new(&config.monitor);
    let appliance = Arc::new(Appliance::new(Parts {
        config: config.clone(),
        sync: sync_rx,
        clock: clock_status,
        refclocks,
        stats: stats.clone(),
        clients: clients.clone(),
        nts: nts.clone(),
        policy,
        monitor: monitor.clone(),
        upstreams: upstreams.clone(),
    }));
    tasks.spawn(monitor::run(
        monitor.clone(),
        appliance.clone(),
        shutdown.child_token(),
    ));
    notifier.status(&notify::status_line(
        &appliance.tracking(),
        appliance.client_count(),
    ));
    // The update service: its health check asks this daemon, as bound,
    // whether it serves.
    let updater = crate::update::Updater::new(config.update.clone());
    updater.set_monitor(monitor.clone());
    updater.set_targets(crate::update::probe::Targets {
        ntp: ntp_bound,
        nts_ke: appliance
            .nts()
            .ke_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
    });
    let network = start_network(&config, appliance.clone());
    tasks.spawn(network.clone().run_deadlines(shutdown.child_token()));
    start_management_api(
        &config.dbus,
        appliance.clone(),
        updater,
        network,
        &health,
        notifier.clone(),
        &shutdown,
        &mut tasks,
    )
    .await?;
    tasks.spawn(notify::run_status(
        notifier.clone(),
        appliance.clone(),
        STATUS_EVERY,
        shutdown.child_token(),
    ));
    let watchdog = match notify::watchdog_timeout_from_env() {
        Some(timeout) => {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "systemd watchdog on"
            );
            Some(
                notify::spawn_watchdog_thread(
                    notifier.clone(),
                    health.clone(),
                    timeout,
                    shutdown.child_token(),
                )
                .map_err(DaemonError::Watchdog)?,
            )
        }
        None => None,
    };
    tracing::info!(
        stratum = initial.stratum,
        reference = %initial.reference_id,
        precision,
        sd_notify = notifier.is_enabled(),
        "skytimed ready"
    );
    wait_for_signals(&nts, &stats, &appliance)
        .await
        .map_err(DaemonError::Signals)?;

    notifier.stopping();
    shutdown.cancel();
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    // The upstream tasks save their NTS sessions on the way out.
    upstreams.join().await;
    while tasks.join_next().await.is_some() {}
    // The NTP threads look up at least twice a second.
    let _ = tokio::task::spawn_blocking(move || {
        for t in ntp_threads {
            let _ = t.join();
        }
    })
    .await;
    tracing::info!(
        clients = clients.len(),
        "skytimed stopped: ntp {}; nts {}",
        stats.snapshot(),
        nts.stats()
    );
    Ok(())
}

/// Offers the management API and tells systemd READY=1 once the bus name
/// is owned (at once when `[dbus] enabled = false`).
///
/// A bus that cannot be reached is not fatal: time service matters more
/// than management, so NTP and NTS go on while the connection is retried
/// with backoff, and READY=1 waits for it (under systemd, the start
/// timeout then decides). A name owned by another process is fatal: that
/// is a second skytimed, or a policy that does not let this user own it.
#[allow(clippy::too_many_arguments)]
async fn start_management_api(
    config: &DbusConfig,
    appliance: Arc<Appliance>,
    updater: Arc<crate::update::Updater>,
    network: Arc<crate::network::Manager>,
    health: &Health,
    notifier: Arc<Notifier>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(), DaemonError> {
    if !config.enabled {
        tracing::info!("management API disabled ([dbus] enabled = false)");
        notifier.ready();
        return Ok(());
    }
    let first = dbus::serve_with_update(
        config,
        appliance.clone(),
        updater.clone(),
        Some(network.clone()),
        Some(health),
        shutdown.child_token(),
    )
    .await;
    let (config, health, shutdown) = (config.clone(), health.clone(), shutdown.clone());
    match first {
        Ok(handle) => {
            notifier.ready();
            tasks.spawn(async move {
                shutdown.cancelled().await;
                handle.stop().await;
            });
        }
        Err(e @ dbus::DbusError::Connect { .. }) => {
            tracing::error!("{e}; serving time without it and retrying (READY=1 waits for it)");
            tasks.spawn(async move {
                let mut wait = Duration::from_secs(1);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    match dbus::serve_with_update(
                        &config,
                        appliance.clone(),
                        updater.clone(),
                        Some(network.clone()),
                        Some(&health),
                        shutdown.child_token(),
                    )
                    .await
                    {
                        Ok(handle) => {
                            notifier.ready();
                            shutdown.cancelled().await;
                            handle.stop().await;
                            return;
                        }
                        Err(e) => tracing::warn!("{e}; retrying in {} s", wait.as_secs()),
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The network settings: seeded, put into effect, and re-issuing the
/// NTS certificate through the running daemon.
fn start_network(config: &Config, appliance: Arc<Appliance>) -> Arc<crate::network::Manager> {
    use crate::config::managed::Running;
    use crate::nts::NtsConfig;
    let paths = crate::network::certificate::Paths {
        certificate: NtsConfig::resolve(&config.data_dir, &config.nts.certificate),
        private_key: NtsConfig::resolve(&config.data_dir, &config.nts.private_key),
    };
    crate::network::Manager::start(
        config.network_control.clone(),
        &config.data_dir,
        config.network.as_ref(),
        paths,
        Arc::new(move || appliance.reload_certificate().map_err(|e| e.to_string())),
    )
}

/// Vouches for the loops that run in other modules' tasks (the clock
/// discipline and the reference-clock manager) by watching them make
/// progress: each publishes a snapshot with its own timestamp about once a
/// second, so a snapshot that stops changing means a wedged loop. This
/// keeps the watchdog honest without threading heartbeats through those
/// modules.
async fn watch_progress(
    clock: ClockStatus,
    refclocks: Option<Arc<Refclocks>>,
    health: Health,
    shutdown: CancellationToken,
) {
    let clock_beat = health.register("clock", MAX_SILENCE);
    let refclock_beat = refclocks
        .as_ref()
        .map(|_| health.register("refclock", MAX_SILENCE));
    let mut last_clock = None;
    let mut last_refclock = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let at = clock.snapshot().map(|s| s.at);
        // Before the first snapshot the discipline is still starting.
        if at.is_none() || at != last_clock {
            clock_beat.beat();
            last_clock = at;
        }
        if let (Some(r), Some(beat)) = (&refclocks, &refclock_beat) {
            let updated = r.status().updated;
            if updated.is_none() || updated != last_refclock {
                beat.beat();
                last_refclock = updated;
            }
        }
    }
}

/// Handles SIGHUP (reload configuration and certificate) and SIGUSR1 (log
/// statistics) until SIGTERM or SIGINT arrives.
async fn wait_for_signals(
    nts: &NtsService,
    stats: &ServerStats,
    appliance: &Arc<Appliance>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
            // The same as D-Bus Config.Reload: the managed configuration
            // (its live settings) and the certificate.
            _ = hup.recv() => {
                let appliance = appliance.clone();
                let result = tokio::task::spawn_blocking(move || managed::reload(&*appliance)).await;
                match result {
                    Ok(Ok(outcome)) if outcome.restart_required.is_empty() => tracing::info!("SIGHUP: reloaded"),
                    Ok(Ok(outcome)) => tracing::warn!(restart_required = ?outcome.restart_required, "SIGHUP: reloaded; some settings take effect only after a restart"),
                    Ok(Err(e)) => tracing::error!("SIGHUP: reload refused: {e}"),
                    Err(e) => tracing::error!("SIGHUP: reload interrupted: {e}"),
                }
            }
            _ = usr1.recv() => tracing::info!("ntp {}; nts {}", stats.snapshot(), nts.stats()),
        }
    }
}
