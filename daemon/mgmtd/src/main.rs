//! skytime-mgmtd: command line, start-up, signals.

use clap::{Parser, Subcommand};
use skytime_mgmtd::audit::Audit;
use skytime_mgmtd::config::{GatewayConfig, DEFAULT_CONFIG_PATH};
use skytime_mgmtd::enrol::{self, Names};
use skytime_mgmtd::listener::{self, TlsState};
use skytime_mgmtd::server::Gateway;
use skytime_mgmtd::trust::{ClientVerifier, Enrolled};
use skytime_mgmtd::{identity, tls};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// sysexits: a bad configuration (not restarted by the unit).
const EXIT_CONFIG: u8 = 78;
/// sysexits: an enrolment file was rejected.
const EXIT_DATAERR: u8 = 65;
const EXIT_FAILURE: u8 = 1;

/// The management gateway: skytime's D-Bus API over HTTPS with client
/// certificates, a status page and metrics.
#[derive(Debug, Parser)]
#[command(name = "skytime-mgmtd", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Validate FILE and exit: 0 if valid, 78 with file, line and reason if not.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import operator CAs and client certificates from DIR (the boot
    /// partition): skytime-admin-ca.pem, skytime-read-ca.pem,
    /// skytime-admin-cert.pem, skytime-read-cert.pem (and
    /// skytime-mgmt-reset to forget earlier ones). Each is renamed
    /// NAME.imported or NAME.rejected, the reasons go to
    /// skytime-mgmt-enrol.txt, and the gateway's certificate fingerprint
    /// to skytime-mgmt-fingerprint.txt. Makes the gateway's TLS identity
    /// first if it has none. Exit status 65 when a file was rejected.
    Enrol {
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Host name for the gateway's certificate (default: this
        /// machine's).
        #[arg(long)]
        hostname: Option<String>,
        /// An address for the certificate (repeatable).
        #[arg(long = "address", value_name = "IP")]
        addresses: Vec<IpAddr>,
        /// Also every address this machine has now.
        #[arg(long)]
        current_addresses: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return match GatewayConfig::load(path) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skytime-mgmtd: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match GatewayConfig::load_or_default(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skytime-mgmtd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config);
    match cli.command {
        Some(Command::Enrol {
            from,
            hostname,
            mut addresses,
            current_addresses,
        }) => {
            if current_addresses {
                match skytime_persist::identity::current_addresses() {
                    Ok(a) => addresses.extend(a),
                    Err(e) => {
                        eprintln!("skytime-mgmtd: {e}");
                        return ExitCode::from(EXIT_FAILURE);
                    }
                }
            }
            let hostname = hostname.unwrap_or_else(this_hostname);
            enrol_command(
                &config,
                &from,
                &Names {
                    hostname,
                    addresses,
                },
            )
        }
        None => serve(config),
    }
}

/// This machine's host name ("skytime" if it has none).
fn this_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skytime".into())
}

/// How often the gateway checks that its certificate names the
/// appliance's addresses (a DHCP lease or a static change comes later
/// than enrolment).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The host name the certificate should name: the one the appliance's
/// network settings give, which may change while the gateway runs (its
/// own view of the kernel's name, in a UTS namespace of its own, is the
/// one it started with), else this machine's.
async fn appliance_hostname(gateway: &Gateway) -> String {
    let from_settings = async {
        let conn = gateway.bus.connection().await.ok()?;
        let proxy = skytime_api::client::NetworkProxy::new(&conn).await.ok()?;
        Some(proxy.get().await.ok()?.hostname).filter(|h| !h.is_empty())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), from_settings)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(this_hostname)
}

/// Re-issues the gateway's certificate, with the same key, when the
/// appliance has a name or address it lacks; whether it did.
async fn follow_identity(config: &GatewayConfig, gateway: &Gateway) -> bool {
    let hostname = appliance_hostname(gateway).await;
    let data_dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || follow_identity_in(&data_dir, &hostname))
        .await
        .unwrap_or(false)
}

fn follow_identity_in(data_dir: &Path, hostname: &str) -> bool {
    let addresses = match skytime_persist::identity::current_addresses() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("cannot list the addresses the certificate should name: {e}");
            return false;
        }
    };
    match identity::follow(data_dir, hostname, &addresses) {
        Ok(identity::Followed::Kept) => false,
        Ok(identity::Followed::Reissued { added }) => {
            tracing::warn!(
                added = %added.join(", "),
                "certificate re-issued with the same key to name the appliance's names and addresses \
                 (the public-key pin is unchanged)"
            );
            true
        }
        Err(e) => {
            tracing::error!(
                "cannot re-issue the certificate for new addresses, the old one stays: {e}"
            );
            false
        }
    }
}

fn init_logging(config: &GatewayConfig) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKYTIME_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_level.name()));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!journald && std::io::stderr().is_terminal())
        .with_env_filter(filter);
    let _ = if journald {
        b.without_time().try_init()
    } else {
        b.try_init()
    };
}

fn enrol_command(config: &GatewayConfig, from: &Path, names: &Names) -> ExitCode {
    let now = skytime_mgmtd::snapshot::unix_now();
    match enrol::enrol(from, &config.data_dir, names, now) {
        Ok(o) => {
            for (file, subjects) in &o.imported {
                println!("imported {file}: {}", subjects.join("; "));
            }
            for (file, why) in &o.rejected {
                eprintln!("rejected {file}: {why}");
            }
            if o.reset {
                println!("forgot everything enrolled before ({})", enrol::RESET_FILE);
            }
            println!("gateway certificate sha256 {}", o.fingerprint);
            if !o.enrolled {
                println!("nothing is enrolled: the gateway stays off");
            }
            if o.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DATAERR)
            }
        }
        Err(e) => {
            eprintln!("skytime-mgmtd: enrolment failed: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn serve(config: GatewayConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The TLS settings for what is enrolled now.
fn tls_state(
    config: &GatewayConfig,
    enrolled: &Enrolled,
    audit: &Arc<Audit>,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ClientVerifier>), String> {
    let id = identity::load(&config.data_dir).map_err(|e| e.to_string())?;
    let verifier = Arc::new(
        ClientVerifier::new(
            enrolled,
            config.anonymous_read,
            tls::provider(),
            Some(audit.clone()),
        )
        .map_err(|e| e.to_string())?,
    );
    let server = tls::server_config(&id, verifier.clone()).map_err(|e| e.to_string())?;
    tracing::info!(
        fingerprint = %id.fingerprint,
        cas = enrolled.ca.len(),
        pinned = enrolled.client.len(),
        anonymous_read = config.anonymous_read,
        "TLS identity and enrolled operators loaded"
    );
    Ok((server, verifier))
}

async fn run(config: GatewayConfig) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let enrolled = Enrolled::load(&config.data_dir).map_err(|e| e.to_string())?;
    if enrolled.is_empty() {
        tracing::info!(
            "no operator CA or client certificate is enrolled: the gateway stays off \
             (put skytime-admin-ca.pem on the boot partition; see skytime-mgmtd enrol --help)"
        );
        return Ok(());
    }
    let audit = Arc::new(Audit::new(&config.data_dir, config.limits.audit_max_bytes));
    let gateway = Arc::new(Gateway::new(config.clone(), audit.clone()));
    follow_identity(&config, &gateway).await;
    let (server, verifier) = tls_state(&config, &enrolled, &audit)?;
    let tls = Arc::new(TlsState::new(server, verifier));
    let std_listeners =
        match listener::from_systemd().map_err(|e| format!("socket activation: {e}"))? {
            Some(l) => l,
            None => {
                let mut out = Vec::new();
                for addr in &config.listen {
                    let l = std::net::TcpListener::bind(addr)
                        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                    l.set_nonblocking(true).map_err(|e| e.to_string())?;
                    out.push(l);
                }
                out
            }
        };
    let mut listeners = Vec::new();
    for l in std_listeners {
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
        if let Ok(a) = l.local_addr() {
            tracing::info!(address = %a, "listening");
        }
        listeners.push(l);
    }
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(listener::serve(
        listeners,
        tls.clone(),
        gateway.clone(),
        shutdown.clone(),
    ));
    tracing::info!("skytime-mgmtd ready");
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: done above.
    follow.tick().await;
    // New connections see the operators enrolled now and the certificate
    // as it is now; a bad file keeps the old ones in force.
    let reload = |why: &str| match Enrolled::load(&config.data_dir)
        .map_err(|e| e.to_string())
        .and_then(|e| tls_state(&config, &e, &audit))
    {
        Ok((s, v)) => {
            tls.replace(s, v);
            tracing::info!("{why}: reloaded");
        }
        Err(e) => tracing::error!("{why}: reload refused, the previous settings stay: {e}"),
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload("SIGHUP: enrolled operators"),
            _ = follow.tick() => {
                if follow_identity(&config, &gateway).await {
                    reload("certificate re-issued");
                }
            }
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}
