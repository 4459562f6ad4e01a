//! skytimed: command line, start-up and shutdown.

use clap::{Parser, Subcommand};
use skytimed::config::{Config, LogLevel, DEFAULT_CONFIG_PATH};
use skytimed::daemon;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a configuration error (sysexits EX_CONFIG), so that
/// scripts and systemd can tell it from a runtime failure.
const EXIT_CONFIG: u8 = 78;
const EXIT_FAILURE: u8 = 1;

/// GPS-fed Stratum-1 NTP and NTS server.
#[derive(Debug, Parser)]
#[command(name = "skytimed", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE and exit: 0 if it is valid, 78 with the file, line and
    /// reason if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Log level (overrides [log] level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    /// Serve NTP on ADDR:PORT instead of the configured addresses
    /// (repeatable).
    #[arg(long = "ntp-listen", value_name = "ADDR:PORT")]
    ntp_listen: Vec<SocketAddr>,
    /// Serve NTS-KE on ADDR:PORT instead of the configured addresses
    /// (repeatable).
    #[arg(long = "nts-ke-listen", value_name = "ADDR:PORT")]
    nts_ke_listen: Vec<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create what a new appliance needs in its data directory, where it is
    /// missing: the NTS-KE private key and a self-signed certificate for
    /// HOSTNAME (SANs: HOSTNAME, HOSTNAME.local and every --address) and
    /// the NTS master keys, all mode 0600. Existing files are never
    /// replaced, so running it on every boot is safe.
    Init {
        /// Host name the certificate is for.
        #[arg(long)]
        hostname: String,
        /// An address to include in the certificate (repeatable).
        #[arg(long = "address", value_name = "IP")]
        addresses: Vec<std::net::IpAddr>,
        /// Also include every address this machine has now (IPv4 but
        /// loopback, IPv6 but loopback and link-local).
        #[arg(long)]
        current_addresses: bool,
        /// Data directory (overrides the configuration's data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Some(path) = &cli.check_config {
        return match Config::load(path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }

    let (config, source) = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => (c, path.display().to_string()),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => {
            let path = PathBuf::from(DEFAULT_CONFIG_PATH);
            if path.exists() {
                match Config::load(&path) {
                    Ok(c) => (c, path.display().to_string()),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                }
            } else {
                (Config::default(), "built-in defaults".to_owned())
            }
        }
    };
    // The managed file (what `skytimectl config apply` saved in the data
    // directory) replaces the base configuration as a whole when present.
    let (mut config, source) = match config.with_managed() {
        Ok((c, Some(managed))) => (
            c,
            format!("{} (managed; replaces {source})", managed.display()),
        ),
        Ok((c, None)) => (c, source),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::Init {
        hostname,
        addresses,
        current_addresses,
        data_dir,
    }) = &cli.command
    {
        let data_dir = data_dir.clone().unwrap_or_else(|| config.data_dir.clone());
        let mut addresses = addresses.clone();
        if *current_addresses {
            match skytimed::nts::current_addresses() {
                Ok(found) => addresses.extend(found),
                Err(e) => {
                    eprintln!("skytimed init: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
        return match skytimed::nts::generate_identity(&config.nts, &data_dir, hostname, &addresses)
        {
            Ok(report) => {
                for p in &report.created {
                    println!("created {}", p.display());
                }
                for p in &report.kept {
                    println!("kept {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("skytimed init: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    if !cli.ntp_listen.is_empty() {
        config.ntp.listen = cli.ntp_listen.clone();
    }
    skytimed::logging::init(cli.log_level.unwrap_or(config.log.level));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "skytimed starting");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skytimed")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(daemon::run(config, cli.nts_ke_listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
