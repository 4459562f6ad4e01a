//! skytimectl: read and manage a skytime appliance over D-Bus
//! (`org.skytime.Appliance1` on the system bus; `DBUS_SYSTEM_BUS_ADDRESS`
//! selects another bus, as for every D-Bus client).
//!
//! The records come typed (`skytime-api`). Human output mimics chronyc
//! ([`text`]); `--json` prints the records as JSON objects (keys are the
//! D-Bus names) for scripts.

mod bus;
mod render;
mod text;

use bus::{
    classify, config_proxy, connect, exit, nts_proxy, power_proxy, server_proxy, sources_proxy,
    CtlError,
};
use clap::{Parser, Subcommand};
use serde_json::{json, Value as Json};
use skytime_api::client;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the daemon refused or failed the operation; \
2 bad command line; 3 skytimed not running or bus unreachable; 4 access denied (root or group \
skytime-admin needed); 5 invalid input (configuration, certificate, key, unreadable file); \
6 feature not available (e.g. NTS disabled).";

/// Read and manage a skytime time appliance.
#[derive(Debug, Parser)]
#[command(
    name = "skytimectl",
    version,
    about = "Read and manage a skytime time appliance over D-Bus",
    long_about = "Read and manage a skytime time appliance over D-Bus (org.skytime.Appliance1 \
on the system bus; DBUS_SYSTEM_BUS_ADDRESS selects another bus). Reading is open to every \
local user; changes need root or membership of group skytime-admin.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One-screen summary: clock, sources, server, certificate.
    Status,
    /// The system clock, like `chronyc tracking`.
    Tracking,
    /// Time sources, like `chronyc sources`, with GPS details.
    Sources,
    /// Source statistics, like `chronyc sourcestats`.
    Sourcestats,
    /// NTP and NTS server counters, like `chronyc serverstats`.
    Serverstats,
    /// NTP clients, like `chronyc clients`.
    Clients,
    /// NTS certificate and master keys.
    #[command(alias = "authdata")]
    Nts,
    /// Manage the NTS-KE certificate.
    #[command(subcommand)]
    Certificate(CertificateCmd),
    /// Manage the NTS master keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Check, apply or reload the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Reboot the appliance.
    Reboot,
    /// Shut the appliance down.
    Shutdown,
    /// Print a shell completion script or the man page (no daemon needed):
    /// `skytimectl generate bash > /usr/share/bash-completion/completions/skytimectl`,
    /// `skytimectl generate man > skytimectl.1`.
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

/// What `skytimectl generate` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Generated {
    Bash,
    Zsh,
    Fish,
    Man,
}

/// Writes a completion script or the man page for `skytimectl` to `out`.
fn generate(what: Generated, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let shell = match what {
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
        Generated::Man => return clap_mangen::Man::new(cmd).render(out),
    };
    clap_complete::generate(shell, &mut cmd, "skytimectl", out);
    Ok(())
}

#[derive(Debug, Subcommand)]
enum CertificateCmd {
    /// Install CERT (PEM chain, server certificate first) and KEY (PEM);
    /// they are checked against each other and for expiry first.
    Install { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Make a new master key current now.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate FILE with the daemon's rules without applying it.
    Check { file: PathBuf },
    /// Validate FILE, save it on the appliance and put it into effect.
    Apply {
        file: PathBuf,
        /// Only validate.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-read the configuration file and certificate (like SIGHUP).
    Reload,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Generate { what } = cli.command {
        return match generate(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("skytimectl: {e}");
                ExitCode::from(exit::FAILED)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skytimectl: cannot start: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(out) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                );
            } else if !out.text.is_empty() {
                println!("{}", out.text);
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            if cli.json {
                println!("{}", json!({"error": e.message, "exit_code": e.code}));
            }
            eprintln!("skytimectl: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

struct Output {
    json: Json,
    text: String,
}

impl Output {
    /// A record (or list of records) and its text.
    fn new<T: serde::Serialize>(record: &T, text: String) -> Self {
        Self {
            // Records serialize to JSON objects; their maps are sorted.
            json: serde_json::to_value(record).unwrap_or(Json::Null),
            text,
        }
    }
}

fn read_file(path: &PathBuf) -> Result<String, CtlError> {
    std::fs::read_to_string(path).map_err(|e| {
        CtlError::new(
            exit::INVALID_INPUT,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

async fn run(cli: &Cli) -> Result<Output, CtlError> {
    let conn = connect().await?;
    let c = &conn;
    Ok(match &cli.command {
        Command::Status => {
            let t = client::tracking(c).await.map_err(classify)?;
            let sources = sources_proxy(c)
                .await?
                .get_sources()
                .await
                .map_err(classify)?;
            let server = server_proxy(c).await?;
            let stats = server.get_statistics().await.map_err(classify)?;
            let clients = server.get_clients().await.map_err(classify)?;
            let nts = nts_proxy(c).await?.get_status().await.map_err(classify)?;
            let text = text::status(&t, &sources, &stats, clients.len(), &nts);
            Output {
                json: json!({"tracking": t, "sources": sources, "server": stats, "clients": clients.len(), "nts": nts}),
                text,
            }
        }
        Command::Tracking => {
            let t = client::tracking(c).await.map_err(classify)?;
            Output::new(&t, text::tracking(&t))
        }
        Command::Sources => {
            let list = sources_proxy(c)
                .await?
                .get_sources()
                .await
                .map_err(classify)?;
            Output::new(&list, text::sources(&list))
        }
        Command::Sourcestats => {
            let list = sources_proxy(c)
                .await?
                .get_sources()
                .await
                .map_err(classify)?;
            Output::new(&list, text::sourcestats(&list))
        }
        Command::Serverstats => {
            let st = server_proxy(c)
                .await?
                .get_statistics()
                .await
                .map_err(classify)?;
            Output::new(&st, text::serverstats(&st))
        }
        Command::Clients => {
            let list = server_proxy(c)
                .await?
                .get_clients()
                .await
                .map_err(classify)?;
            Output::new(&list, text::clients(&list))
        }
        Command::Nts => {
            let n = nts_proxy(c).await?.get_status().await.map_err(classify)?;
            Output::new(&n, text::nts(&n))
        }
        Command::Certificate(CertificateCmd::Install { cert, key }) => {
            let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
            let r = nts_proxy(c)
                .await?
                .install_certificate(&cert_pem, &key_pem)
                .await
                .map_err(classify)?;
            let text = format!(
                "Certificate installed and in use.\n{}",
                text::certificate(&r)
            );
            Output::new(&r, text)
        }
        Command::Keys(KeysCmd::Rotate) => {
            let n = nts_proxy(c).await?.rotate_keys().await.map_err(classify)?;
            let current = n
                .current_key_id
                .map_or_else(|| "-".to_owned(), |k| k.to_string());
            Output::new(&n, format!("Master keys rotated; current key {current}."))
        }
        Command::Config(cmd) => {
            let proxy = config_proxy(c).await?;
            let (r, mut text) = match cmd {
                ConfigCmd::Reload => {
                    let r = proxy.reload().await.map_err(classify)?;
                    let text = format!("Configuration reloaded from {}.", r.path);
                    (r, text)
                }
                ConfigCmd::Check { file } | ConfigCmd::Apply { file, .. } => {
                    let dry_run = !matches!(cmd, ConfigCmd::Apply { dry_run: false, .. });
                    let r = proxy
                        .apply(&read_file(file)?, dry_run)
                        .await
                        .map_err(classify)?;
                    let text = if dry_run {
                        "Configuration is valid (nothing was changed).".to_owned()
                    } else {
                        format!("Configuration saved to {} and applied.", r.path)
                    };
                    (r, text)
                }
            };
            if !r.restart_required.is_empty() {
                text.push_str(&format!(
                    "\nTakes effect after a restart: {}",
                    r.restart_required.join(", ")
                ));
            }
            Output::new(&r, text)
        }
        Command::Reboot => {
            power_proxy(c).await?.reboot().await.map_err(classify)?;
            Output {
                json: json!({"ok": true}),
                text: "Rebooting.".into(),
            }
        }
        Command::Shutdown => {
            power_proxy(c).await?.power_off().await.map_err(classify)?;
            Output {
                json: json!({"ok": true}),
                text: "Shutting down.".into(),
            }
        }
        // Handled in main before connecting.
        Command::Generate { .. } => Output {
            json: Json::Null,
            text: String::new(),
        },
    })
}
