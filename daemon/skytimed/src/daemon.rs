//! Start-up, signal handling and orderly shutdown of the whole daemon.

use crate::clients::Clients;
use crate::config::Config;
use crate::ntp_io::{self, NtpSocket};
use crate::ntp_server::{self, ServerContext};
use crate::nts::NtsService;
use crate::refclock::Refclocks;
use crate::stats::ServerStats;
use skytime_proto::SyncState;
use std::net::SocketAddr;
use std::sync::Arc;
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
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, nts_ke_listen: Vec<SocketAddr>) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| DaemonError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;

    let precision = ntp_io::measure_precision();
    let local_stratum = config.ntp.local_stratum.map(|s| s.get());
    let initial = match local_stratum {
        Some(stratum) => SyncState::local(stratum, precision, ntp_io::now()),
        None => SyncState::unsynchronized(precision),
    };
    let (sync_tx, sync_rx) = watch::channel(initial);

    // Sockets first: a port that cannot be bound is a start-up error, not
    // something to discover later.
    let mut sockets = Vec::new();
    for addr in &config.ntp.listen {
        let socket = NtpSocket::bind(*addr).map_err(|source| {
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
        tracing::info!(address = %socket.local_addr(), "serving NTP");
        sockets.push(socket);
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
    let clients = Arc::new(Clients::new(config.ntp.client_log_size.get()));
    let ctx = Arc::new(ServerContext {
        acl: config.ntp.access_list(),
        sync: sync_rx.clone(),
        nts: nts.clone(),
        stats: stats.clone(),
        clients: clients.clone(),
        rate_limit: config.ntp.ratelimit.map(|r| r.to_limit()),
    });

    // One reader task per socket. Several tasks on one socket were all
    // woken by every datagram and cost 25% more CPU per reply (measured
    // with `make bench`); one reader answers about 300 000 requests per
    // second per core, far beyond what a LAN asks of an appliance. If that
    // ever falls short, shard with SO_REUSEPORT sockets, not shared ones.
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(ntp_server::serve(
            Arc::new(socket),
            ctx.clone(),
            shutdown.child_token(),
        ));
    }

    let (sample_tx, sample_rx) = mpsc::channel(256);
    // The refclocks see the published sync state so that PPS alone can
    // carry on through short NMEA outages once the clock is synchronized.
    // Kept alive until shutdown; status() will feed the D-Bus sources view.
    let _refclocks = Refclocks::start_with_sync(
        &config.gps,
        sample_tx,
        Some(sync_rx),
        shutdown.child_token(),
    )
    .await?;
    {
        let (clock, data_dir, token) = (
            config.clock.clone(),
            config.data_dir.clone(),
            shutdown.child_token(),
        );
        tasks.spawn(async move {
            if let Err(e) =
                crate::clock::run(clock, data_dir, local_stratum, sample_rx, sync_tx, token).await
            {
                tracing::error!("clock discipline stopped: {e}");
            }
        });
    }

    tracing::info!(
        stratum = initial.stratum,
        reference = %initial.reference_id,
        precision,
        "skytimed ready"
    );
    wait_for_signals(&nts, &stats)
        .await
        .map_err(DaemonError::Signals)?;

    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!(
        clients = clients.len(),
        "skytimed stopped: ntp {}; nts {}",
        stats.snapshot(),
        nts.stats()
    );
    Ok(())
}

/// Handles SIGHUP (reload certificates) and SIGUSR1 (log statistics) until
/// SIGTERM or SIGINT arrives.
async fn wait_for_signals(nts: &NtsService, stats: &ServerStats) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
            _ = hup.recv() => match nts.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded"),
                Err(e) => tracing::error!("SIGHUP: reload refused, still serving the previous certificate: {e}"),
            },
            _ = usr1.recv() => tracing::info!("ntp {}; nts {}", stats.snapshot(), nts.stats()),
        }
    }
}
