//! skytimectl: read and manage a skytime appliance over D-Bus
//! (`org.skytime.Appliance1` on the system bus; `DBUS_SYSTEM_BUS_ADDRESS`
//! selects another bus, as for every D-Bus client), or a remote one
//! through its management gateway (`--host`, HTTPS with a client
//! certificate): [`transport`].
//!
//! The records come typed (`skytime-api`). Human output mimics chronyc
//! ([`text`]); `--json` prints the records as JSON objects (keys are the
//! D-Bus names) for scripts.

mod bus;
mod follow;
mod https;
mod render;
mod text;
mod transport;
mod update;
mod vm_bus;

use bus::{exit, CtlError};
use clap::{Parser, Subcommand};
use serde_json::{json, Value as Json};
use std::path::PathBuf;
use std::process::ExitCode;
use transport::{Target, Transport};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the daemon refused or failed the operation; \
2 bad command line; 3 skytimed not running or bus unreachable (with --host: the gateway \
unreachable or not trusted); 4 access denied (root or group skytime-admin needed; with \
--host: the client certificate refused, or not the admin role); 5 invalid input \
(configuration, certificate, key, unreadable file); 6 feature not available (e.g. NTS \
disabled).";

/// Read and manage a skytime time appliance.
#[derive(Debug, Parser)]
#[command(
    name = "skytimectl",
    version,
    about = "Read and manage a skytime time appliance over D-Bus",
    long_about = "Read and manage a skytime time appliance over D-Bus (org.skytime.Appliance1 \
on the system bus; DBUS_SYSTEM_BUS_ADDRESS selects another bus). Reading is open to every \
local user; changes need root or membership of group skytime-admin. With --host, the same \
commands go to a remote appliance through its management gateway (HTTPS, client \
certificate; changes need a certificate with the admin role).",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Manage a remote appliance through its management gateway:
    /// NAME, NAME:PORT, [IPv6] or [IPv6]:PORT (port 443 by default).
    #[arg(long, global = true, value_name = "NAME[:PORT]")]
    host: Option<String>,
    /// With --host: the client certificate (PEM) enrolled on the appliance.
    // Ids of their own: `certificate install CERT KEY` has arguments
    // named so too.
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        value_name = "FILE",
        requires = "host"
    )]
    cert: Option<PathBuf>,
    /// With --host: the client certificate's private key (PEM).
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        value_name = "FILE",
        requires = "host"
    )]
    key: Option<PathBuf>,
    /// With --host: the CA (or the gateway's own certificate) to trust
    /// for the gateway; default: the system's CAs.
    #[arg(
        long = "ca",
        id = "gateway_ca",
        global = true,
        value_name = "FILE",
        requires = "host"
    )]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    fn target(&self) -> Result<Target, CtlError> {
        let Some(host) = &self.host else {
            return Ok(Target::Bus);
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Target::Gateway {
                host: host.clone(),
                cert: cert.clone(),
                key: key.clone(),
                ca: self.ca.clone(),
            }),
            _ => Err(CtlError::new(
                2,
                "--host needs --cert and --key: the gateway lets in enrolled client certificates only",
            )),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One-screen summary: clock, sources, server, certificate.
    Status,
    /// The system clock, like `chronyc tracking`.
    Tracking,
    /// Time sources, like `chronyc sources`, with GPS details and the
    /// upstream servers (`^`).
    Sources {
        /// How each upstream server is authenticated instead, like
        /// `chronyc authdata` (NTS key exchanges, cookies, NAKs, keys).
        #[arg(long)]
        auth: bool,
    },
    /// Source statistics, like `chronyc sourcestats`.
    Sourcestats,
    /// NTP and NTS server counters, like `chronyc serverstats`.
    Serverstats,
    /// NTP clients, like `chronyc clients`.
    Clients,
    /// NTS certificate and master keys.
    #[command(alias = "authdata")]
    Nts,
    /// Active alarms: what is wrong, how bad, since when.
    Alarms,
    /// The recent history (offset, frequency, PPS jitter, satellites,
    /// request rate), one line per point.
    History {
        /// Only the last SECONDS (default: everything held, up to 24 h).
        #[arg(long, default_value_t = 0)]
        seconds: u32,
    },
    /// Manage the NTS-KE certificate.
    #[command(subcommand)]
    Certificate(CertificateCmd),
    /// Manage the NTS master keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Check, apply or reload the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Network settings (addresses, host name, mDNS) with a safe apply.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// A/B updates: status, check, install, rollback.
    #[command(subcommand)]
    Update(UpdateCmd),
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
    /// Relay a virtual machine's management channel (QEMU's chardev socket
    /// CHANNEL for the virtio-serial port org.skytime.bus) to a D-Bus
    /// address on this host: then `DBUS_SYSTEM_BUS_ADDRESS=unix:path=LISTEN
    /// skytimectl ...` manages the VM. Runs until killed.
    VmBus {
        channel: PathBuf,
        /// The unix socket to serve the host's D-Bus clients on (0600).
        #[arg(long, value_name = "LISTEN")]
        listen: PathBuf,
        /// Seconds a client waits for the guest to answer (it starts
        /// serving the port within seconds of boot) before it is closed.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=3600))]
        session_wait: u32,
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
enum UpdateCmd {
    /// Slots, versions, the update state and an install's progress.
    Status,
    /// Check a bundle (signature, device, version) without installing it.
    /// With --host, PATH is a file on the appliance.
    Check { path: PathBuf },
    /// Install a bundle into the other slot and follow it to the end
    /// (with --host it is uploaded first). An https:// URL (with
    /// --sha256) is downloaded by the appliance itself. A restart of
    /// skytimed meanwhile does not stop the install: it is followed on
    /// once skytimed is back (see --restart-wait).
    Install {
        path: PathBuf,
        /// With a URL: the bundle's SHA-256 (sha256sum prints it).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Install even an older version (or the one running).
        #[arg(long)]
        force: bool,
        /// Reboot into it once it is installed.
        #[arg(long)]
        reboot: bool,
        /// If skytimed restarts during the install (RAUC carries on
        /// writing), wait this many seconds for it to come back and follow
        /// the install on; longer away is an error (exit code 3).
        #[arg(long, value_name = "SECONDS", default_value_t = follow::RESTART_WAIT_S,
              value_parser = clap::value_parser!(u32).range(1..=3600))]
        restart_wait: u32,
    },
    /// Boot the other slot again, when it holds a good system (reboots).
    Rollback,
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

#[derive(Debug, Subcommand)]
enum NetworkCmd {
    /// The settings in effect, and a change waiting for confirmation.
    Show,
    /// Put FILE (the keys of a `[network]` table) into effect; it reverts
    /// by itself unless `network confirm` follows within --confirm-within.
    Apply {
        file: PathBuf,
        /// Seconds to confirm (2 to 3600).
        #[arg(long, default_value_t = 120)]
        confirm_within: u32,
    },
    /// Keep the change applied last (re-issues the appliance's own
    /// certificate for a new name or address).
    Confirm,
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
    if let Command::VmBus {
        channel,
        listen,
        session_wait,
    } = &cli.command
    {
        let wait = std::time::Duration::from_secs(u64::from(*session_wait));
        return match runtime.block_on(vm_bus::serve(channel, listen, wait)) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("skytimectl: {}", e.message);
                ExitCode::from(e.code)
            }
        };
    }
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
    let target = cli.target()?;
    let mut t = Transport::connect(&target).await?;
    Ok(match &cli.command {
        Command::Status => {
            let tracking = t.tracking().await?;
            let sources = t.sources().await?;
            let stats = t.server_stats().await?;
            let clients = t.clients().await?;
            let nts = t.nts().await?;
            let monitor = t.monitor().await?;
            let text = text::status(
                &tracking,
                &sources,
                &stats,
                clients.len(),
                &nts,
                &monitor.alarms,
            );
            Output {
                json: json!({"tracking": tracking, "sources": sources, "server": stats, "clients": clients.len(), "nts": nts, "alarms": monitor.alarms, "version": monitor.version}),
                text,
            }
        }
        Command::Tracking => {
            let r = t.tracking().await?;
            Output::new(&r, text::tracking(&r))
        }
        Command::Sources { auth: false } => {
            let list = t.sources().await?;
            Output::new(&list, text::sources(&list))
        }
        Command::Sources { auth: true } => {
            let list = t.source_auth().await?;
            Output::new(&list, text::authdata(&list))
        }
        Command::Sourcestats => {
            let list = t.sources().await?;
            Output::new(&list, text::sourcestats(&list))
        }
        Command::Serverstats => {
            let st = t.server_stats().await?;
            Output::new(&st, text::serverstats(&st))
        }
        Command::Clients => {
            let list = t.clients().await?;
            Output::new(&list, text::clients(&list))
        }
        Command::Nts => {
            let n = t.nts().await?;
            Output::new(&n, text::nts(&n))
        }
        Command::Alarms => {
            let m = t.monitor().await?;
            Output::new(&m.alarms, text::alarms(&m.alarms))
        }
        Command::History { seconds } => {
            let points = t.history(*seconds).await?;
            Output::new(&points, text::history(&points))
        }
        Command::Certificate(CertificateCmd::Install { cert, key }) => {
            let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
            let r = t.install_certificate(&cert_pem, &key_pem).await?;
            let text = format!(
                "Certificate installed and in use.\n{}",
                text::certificate(&r)
            );
            Output::new(&r, text)
        }
        Command::Keys(KeysCmd::Rotate) => {
            let n = t.rotate_keys().await?;
            let current = n
                .current_key_id
                .map_or_else(|| "-".to_owned(), |k| k.to_string());
            Output::new(&n, format!("Master keys rotated; current key {current}."))
        }
        Command::Config(cmd) => {
            let (r, mut text) = match cmd {
                ConfigCmd::Reload => {
                    let r = t.reload().await?;
                    let text = format!("Configuration reloaded from {}.", r.path);
                    (r, text)
                }
                ConfigCmd::Check { file } | ConfigCmd::Apply { file, .. } => {
                    let dry_run = !matches!(cmd, ConfigCmd::Apply { dry_run: false, .. });
                    let r = t.apply(&read_file(file)?, dry_run).await?;
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
        Command::Network(cmd) => {
            let (r, head) = match cmd {
                NetworkCmd::Show => (t.network().await?, String::new()),
                NetworkCmd::Apply {
                    file,
                    confirm_within,
                } => {
                    let r = t.network_apply(&read_file(file)?, *confirm_within).await?;
                    let head = format!(
                        "Network settings applied; they revert in {} s unless you run `skytimectl network confirm`.\n",
                        *confirm_within
                    );
                    (r, head)
                }
                NetworkCmd::Confirm => {
                    let r = t.network_confirm().await?;
                    let head = format!(
                        "Network settings confirmed.\nCertificate: {}\n",
                        r.certificate
                    );
                    (r, head)
                }
            };
            let text = format!("{head}{}", text::network(&r));
            Output::new(&r, text)
        }
        Command::Update(cmd) => match cmd {
            UpdateCmd::Status => {
                let p = t.update_properties().await?;
                Output::new(&p, update::status(&p))
            }
            UpdateCmd::Check { path } => {
                let b = t.update_check(&path.to_string_lossy()).await?;
                Output::new(&b, update::bundle(&b))
            }
            UpdateCmd::Install {
                path,
                sha256,
                force,
                reboot,
                restart_wait,
            } => {
                let url = path.to_string_lossy();
                let b = if url.starts_with("https://") {
                    let Some(sha256) = sha256 else {
                        return Err(CtlError::new(
                            2,
                            "installing from a URL needs --sha256 HEX (sha256sum prints it)",
                        ));
                    };
                    t.update_install_url(&url, sha256, *force, *reboot).await?;
                    None
                } else {
                    Some(t.update_install(path, *force, *reboot).await?)
                };
                let wait = std::time::Duration::from_secs(u64::from(*restart_wait));
                let p = follow::follow(&mut t, &target, wait).await?;
                let version = b
                    .as_ref()
                    .map_or_else(|| p.bundle_version.clone(), |b| b.version.clone());
                let text = format!(
                    "Installed {} in slot {}; {}.",
                    version,
                    p.primary_slot,
                    if *reboot {
                        "rebooting into it"
                    } else {
                        "it runs after a reboot (skytimectl reboot)"
                    }
                );
                Output {
                    json: json!({"bundle": b, "update": p}),
                    text,
                }
            }
            UpdateCmd::Rollback => {
                t.update_rollback().await?;
                Output {
                    json: json!({"ok": true}),
                    text: "Rolling back: the other slot boots next; rebooting.".into(),
                }
            }
        },
        Command::Reboot => {
            t.reboot().await?;
            Output {
                json: json!({"ok": true}),
                text: "Rebooting.".into(),
            }
        }
        Command::Shutdown => {
            t.power_off().await?;
            Output {
                json: json!({"ok": true}),
                text: "Shutting down.".into(),
            }
        }
        // Handled in main before connecting.
        Command::Generate { .. } | Command::VmBus { .. } => Output {
            json: Json::Null,
            text: String::new(),
        },
    })
}
