//! skytimectl: read and manage a skytime appliance over D-Bus
//! (`org.skytime.Appliance1` on the system bus; `DBUS_SYSTEM_BUS_ADDRESS`
//! selects another bus, as for every D-Bus client).
//!
//! Human output mimics chronyc; `--json` prints the D-Bus records as JSON
//! objects (keys are the D-Bus names) for scripts.

mod bus;
mod render;

use bus::{call, connect, exit, properties, reply_dict, reply_dicts, CtlError};
use clap::{Parser, Subcommand};
use render::{ago, fields, offset, s, table, u, utc};
use serde_json::{json, Value as Json};
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
            let t = properties(c, "Tracking").await?;
            let sources = reply_dicts(&call(c, "Sources", "GetSources", &()).await?)?;
            let stats = reply_dict(&call(c, "Server", "GetStatistics", &()).await?)?;
            let clients = reply_dicts(&call(c, "Server", "GetClients", &()).await?)?;
            let nts = reply_dict(&call(c, "Nts", "GetStatus", &()).await?)?;
            let text = status_text(&t, &sources, &stats, clients.len(), &nts);
            Output {
                json: json!({"tracking": t, "sources": sources, "server": stats, "clients": clients.len(), "nts": nts}),
                text,
            }
        }
        Command::Tracking => {
            let t = properties(c, "Tracking").await?;
            let text = tracking_text(&t);
            Output { json: t, text }
        }
        Command::Sources => {
            let list = reply_dicts(&call(c, "Sources", "GetSources", &()).await?)?;
            let text = sources_text(&list);
            Output {
                json: Json::Array(list),
                text,
            }
        }
        Command::Sourcestats => {
            let list = reply_dicts(&call(c, "Sources", "GetSources", &()).await?)?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| {
                    vec![
                        s(x, "Name"),
                        u(x, "Samples").to_string(),
                        u(x, "Runs").to_string(),
                        ago(render::f(x, "Span")),
                        format!("{:.3}", render::f(x, "FrequencyPpm")),
                        format!("{:.3}", render::f(x, "SkewPpm")),
                        offset(render::f(x, "Offset")),
                        offset(render::f(x, "StdDev"))
                            .trim_start_matches('+')
                            .to_owned(),
                    ]
                })
                .collect();
            let text = table(
                &[
                    "Name",
                    "NP",
                    "NR",
                    "Span",
                    "Frequency",
                    "Freq Skew",
                    "Offset",
                    "Std Dev",
                ],
                &rows,
                &[false, true, true, true, true, true, true, true],
            );
            Output {
                json: Json::Array(list),
                text,
            }
        }
        Command::Serverstats => {
            let st = reply_dict(&call(c, "Server", "GetStatistics", &()).await?)?;
            let text = serverstats_text(&st);
            Output { json: st, text }
        }
        Command::Clients => {
            let list = reply_dicts(&call(c, "Server", "GetClients", &()).await?)?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|x| {
                    let int = x
                        .get("IntervalLog2")
                        .and_then(Json::as_f64)
                        .map(|v| format!("{:.0}", v.round()))
                        .unwrap_or_else(|| "-".into());
                    vec![
                        s(x, "Address"),
                        u(x, "NtpReplies").to_string(),
                        u(x, "NtsReplies").to_string(),
                        u(x, "Dropped").to_string(),
                        int,
                        ago(render::f(x, "LastSeenAgo")),
                    ]
                })
                .collect();
            let text = table(
                &["Address", "NTP", "NTS", "Drop", "Int", "Last"],
                &rows,
                &[false, true, true, true, true, true],
            );
            Output {
                json: Json::Array(list),
                text,
            }
        }
        Command::Nts => {
            let n = reply_dict(&call(c, "Nts", "GetStatus", &()).await?)?;
            let text = nts_text(&n);
            Output { json: n, text }
        }
        Command::Certificate(CertificateCmd::Install { cert, key }) => {
            let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
            let r = reply_dict(&call(c, "Nts", "InstallCertificate", &(cert_pem, key_pem)).await?)?;
            let text = format!(
                "Certificate installed and in use.\n{}",
                certificate_text(&r)
            );
            Output { json: r, text }
        }
        Command::Keys(KeysCmd::Rotate) => {
            let n = reply_dict(&call(c, "Nts", "RotateKeys", &()).await?)?;
            let text = format!(
                "Master keys rotated; current key {}.",
                s(&n, "CurrentKeyId")
            );
            Output { json: n, text }
        }
        Command::Config(cmd) => {
            let (text_in, dry_run, reload) = match cmd {
                ConfigCmd::Check { file } => (read_file(file)?, true, false),
                ConfigCmd::Apply { file, dry_run } => (read_file(file)?, *dry_run, false),
                ConfigCmd::Reload => (String::new(), false, true),
            };
            let r = if reload {
                reply_dict(&call(c, "Config", "Reload", &()).await?)?
            } else {
                reply_dict(&call(c, "Config", "Apply", &(text_in, dry_run)).await?)?
            };
            let restart: Vec<String> = r
                .get("RestartRequired")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut text = match (reload, dry_run) {
                (true, _) => format!("Configuration reloaded from {}.", s(&r, "Path")),
                (false, true) => "Configuration is valid (nothing was changed).".to_owned(),
                (false, false) => format!("Configuration saved to {} and applied.", s(&r, "Path")),
            };
            if !restart.is_empty() {
                text.push_str(&format!(
                    "\nTakes effect after a restart: {}",
                    restart.join(", ")
                ));
            }
            Output { json: r, text }
        }
        Command::Reboot => {
            call(c, "Power", "Reboot", &()).await?;
            Output {
                json: json!({"ok": true}),
                text: "Rebooting.".into(),
            }
        }
        Command::Shutdown => {
            call(c, "Power", "PowerOff", &()).await?;
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

fn tracking_text(t: &Json) -> String {
    let f = |k| render::f(t, k);
    let reference = reference_text(&s(t, "ReferenceId"), &s(t, "ReferenceName"));
    let sign = |v: f64, pos: &str, neg: &str| {
        format!("{:.9} seconds {}", v.abs(), if v < 0.0 { neg } else { pos })
    };
    let reftime = f("ReferenceTime");
    fields(&[
        ("Reference ID", reference),
        ("Stratum", s(t, "Stratum")),
        (
            "Ref time (UTC)",
            if reftime > 0.0 {
                utc(reftime as i64)
            } else {
                "never".into()
            },
        ),
        (
            "System time",
            sign(
                f("SystemTimeOffset"),
                "fast of NTP time",
                "slow of NTP time",
            ),
        ),
        ("Last offset", format!("{:+.9} seconds", f("LastOffset"))),
        ("RMS offset", format!("{:.9} seconds", f("RmsOffset"))),
        (
            "Frequency",
            format!(
                "{:.3} ppm {}",
                f("Frequency").abs(),
                if f("Frequency") < 0.0 { "slow" } else { "fast" }
            ),
        ),
        (
            "Residual freq",
            format!("{:+.3} ppm", f("ResidualFrequency")),
        ),
        ("Skew", format!("{:.3} ppm", f("Skew"))),
        ("Root delay", format!("{:.9} seconds", f("RootDelay"))),
        (
            "Root dispersion",
            format!("{:.9} seconds", f("RootDispersion")),
        ),
        (
            "Update interval",
            format!("{:.1} seconds", f("UpdateInterval")),
        ),
        ("Leap status", capitalized(&s(t, "LeapStatus"))),
        (
            "Synchronized",
            if t.get("Synchronized")
                .and_then(Json::as_bool)
                .unwrap_or(false)
            {
                "yes".into()
            } else {
                "no".into()
            },
        ),
    ])
}

/// chronyc's form: the reference ID in hex, then a name ("50505300
/// (PPS)"). An ASCII ID such as "PPS" is its own name.
fn reference_text(id: &str, name: &str) -> String {
    // Non-ASCII IDs (IPv4 addresses, local) already come as 8 hex digits.
    let ascii = !id.is_empty() && id.len() <= 4 && id.bytes().all(|b| b.is_ascii_graphic());
    let (hex, own_name) = if ascii {
        let mut bytes = [0u8; 4];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        (
            bytes.iter().map(|b| format!("{b:02X}")).collect::<String>(),
            id.to_owned(),
        )
    } else {
        (id.to_owned(), String::new())
    };
    let name = if name.is_empty() || name == "-" {
        own_name
    } else {
        name.to_owned()
    };
    if name.is_empty() {
        hex
    } else {
        format!("{hex} ({name})")
    }
}

/// "normal" -> "Normal", as chronyc prints the leap status.
fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn state_mark(state: &str) -> &'static str {
    match state {
        "selected" => "*",
        "combined" => "+",
        "candidate" => "-",
        "falseticker" => "x",
        "jittery" => "~",
        _ => "?",
    }
}

fn sources_text(list: &[Json]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            let gps = match x.get("GpsFix").and_then(Json::as_str) {
                Some(fix) => {
                    let sats = x
                        .get("GpsSatellitesUsed")
                        .and_then(Json::as_u64)
                        .map(|n| format!(" {n} sats"))
                        .unwrap_or_default();
                    let delay = x
                        .get("NmeaPpsDelay")
                        .and_then(Json::as_f64)
                        .map(|d| format!(" nmea-pps {}", offset(d)))
                        .unwrap_or_default();
                    format!("fix {fix}{sats}{delay}")
                }
                None => String::new(),
            };
            vec![
                format!("{} {}", s(x, "Kind"), state_mark(&s(x, "State"))),
                s(x, "Name"),
                s(x, "Stratum"),
                s(x, "Poll"),
                format!("{:o}", u(x, "Reach")),
                ago(render::f(x, "LastSampleAgo")),
                format!(
                    "{}[{}] +/- {}",
                    offset(render::f(x, "LastOffsetAdjusted")),
                    offset(render::f(x, "LastOffset")),
                    offset(render::f(x, "LastError")).trim_start_matches('+')
                ),
                gps,
            ]
        })
        .collect();
    table(
        &[
            "MS",
            "Name",
            "Stratum",
            "Poll",
            "Reach",
            "LastRx",
            "Last sample",
            "GPS",
        ],
        &rows,
        &[false, false, true, true, true, true, true, false],
    )
}

fn serverstats_text(st: &Json) -> String {
    let mut pairs = vec![
        ("NTP packets received", u(st, "NtpReceived").to_string()),
        ("NTP packets replied", u(st, "NtpReplied").to_string()),
        ("NTP packets dropped", u(st, "NtpDropped").to_string()),
        (
            "Kernel RX timestamps",
            u(st, "NtpKernelTimestamps").to_string(),
        ),
        (
            "Authenticated NTP packets",
            u(st, "NtsAuthenticated").to_string(),
        ),
        ("NTS NAKs sent", u(st, "NtsNaks").to_string()),
        (
            "NTS-KE connections accepted",
            u(st, "NtsKeAccepted").to_string(),
        ),
        (
            "NTS-KE connections dropped",
            u(st, "NtsKeDropped").to_string(),
        ),
        (
            "NTS-KE connections active",
            u(st, "NtsKeActive").to_string(),
        ),
    ];
    let mut reasons: Vec<(String, u64)> = st
        .get("NtpDroppedByReason")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default();
    reasons.sort();
    let labels: Vec<String> = reasons
        .iter()
        .map(|(k, _)| format!("  dropped: {k}"))
        .collect();
    for ((_, n), label) in reasons.iter().zip(&labels) {
        pairs.push((label.as_str(), n.to_string()));
    }
    fields(&pairs)
}

fn certificate_text(c: &Json) -> String {
    let sans: Vec<String> = c
        .get("SubjectAltNames")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    fields(&[
        ("Subject", s(c, "Subject")),
        ("Issuer", s(c, "Issuer")),
        ("Alt names", sans.join(", ")),
        (
            "Valid from",
            c.get("NotBefore")
                .and_then(Json::as_i64)
                .map(utc)
                .unwrap_or_default(),
        ),
        (
            "Expires",
            c.get("NotAfter")
                .and_then(Json::as_i64)
                .map(utc)
                .unwrap_or_default(),
        ),
        ("SHA-256", s(c, "FingerprintSha256")),
        ("Chain length", s(c, "ChainLength")),
        ("File", s(c, "Path")),
    ])
}

fn nts_text(n: &Json) -> String {
    if !n.get("Enabled").and_then(Json::as_bool).unwrap_or(false) {
        return "NTS is disabled ([nts] enabled = false).".into();
    }
    let ids: Vec<String> = n
        .get("KeyIds")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .map(|v| format!("{:08x}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = fields(&[
        ("NTS required", s(n, "Required")),
        ("Key role", s(n, "KeyRole")),
        (
            "Current key",
            n.get("CurrentKeyId")
                .and_then(Json::as_u64)
                .map(|k| format!("{k:08x}"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("Keys held", ids.join(" ")),
        (
            "Next rotation",
            n.get("NextRotation")
                .and_then(Json::as_i64)
                .map(utc)
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "NTS-KE addresses",
            n.get("KeAddresses")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
        ),
    ]);
    match n.get("Certificate") {
        Some(c) if c.is_object() => {
            out.push_str("\n\nCertificate\n");
            out.push_str(&certificate_text(c));
        }
        _ => out.push_str(&format!(
            "\n\nCertificate: unreadable: {}",
            s(n, "CertificateError")
        )),
    }
    out
}

fn status_text(t: &Json, sources: &[Json], st: &Json, clients: usize, nts: &Json) -> String {
    let sync = t
        .get("Synchronized")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let selected = sources
        .iter()
        .find(|x| s(x, "State") == "selected")
        .map(|x| s(x, "Name"))
        .unwrap_or_else(|| "none".into());
    let cert = match nts.get("Certificate") {
        Some(c) if c.is_object() => format!(
            "{} (expires {})",
            s(c, "Subject"),
            c.get("NotAfter")
                .and_then(Json::as_i64)
                .map(utc)
                .unwrap_or_default()
        ),
        _ if nts.get("Enabled").and_then(Json::as_bool) == Some(false) => "NTS disabled".into(),
        _ => format!("unreadable: {}", s(nts, "CertificateError")),
    };
    fields(&[
        (
            "Clock",
            format!(
                "stratum {}, {}, reference {}",
                s(t, "Stratum"),
                if sync {
                    "synchronised"
                } else {
                    "NOT synchronised"
                },
                s(t, "ReferenceId")
            ),
        ),
        ("Offset", offset(render::f(t, "SystemTimeOffset"))),
        (
            "Sources",
            format!("{} (selected: {selected})", sources.len()),
        ),
        (
            "Server",
            format!(
                "{} received, {} replied, {} dropped, {} NTS",
                u(st, "NtpReceived"),
                u(st, "NtpReplied"),
                u(st, "NtpDropped"),
                u(st, "NtsAuthenticated")
            ),
        ),
        ("Clients", clients.to_string()),
        ("Certificate", cert),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_reads_like_chronyc() {
        assert_eq!(reference_text("PPS", "PPS"), "50505300 (PPS)");
        assert_eq!(reference_text("GPS", ""), "47505300 (GPS)");
        assert_eq!(reference_text("7F7F0101", ""), "7F7F0101");
        assert_eq!(reference_text("C0000201", "gps0"), "C0000201 (gps0)");
        assert_eq!(capitalized("not synchronised"), "Not synchronised");
    }
}
