//! skytime-update-guard: fails a newly booted slot that skytimed did not
//! confirm in time, the backstop of skytimed's own health check
//! (`skytime_ota::guard` has the decision and why it exists).
//!
//! ```text
//! skytime-update-guard --config FILE [--config FILE]... [--state FILE]
//!                      [--margin SECONDS]
//! ```
//!
//! Run at every boot by `skytime-update-guard.service`. When the booted
//! slot is not on trial it exits at once. Otherwise it looks at the update
//! state every few seconds (skytimed confirming the slot ends its watch)
//! until skytimed's `health_deadline` plus `--margin` (default 120 s) has
//! passed since the kernel booted; then it saves the state machine's
//! "rolled back" with its reason, asks RAUC to mark the booted slot bad,
//! and asks logind to reboot (systemd's `reboot.target` where logind does
//! not run).
//!
//! It runs as skytimed's user, with what skytimed has for the same steps:
//! the state file is skytimed's (root would leave it unreadable to
//! skytimed), RAUC's bus lets that user mark slots, and the image's polkit
//! rule lets it reboot.
//!
//! `health_deadline` is read from the first `--config` file that exists
//! (the managed configuration before the image's default); 300 s, as in
//! skytimed, when the file does not set it, and also when the file cannot
//! be read or holds what skytimed refuses (skytimed does not run then).
//!
//! Exit codes: 0 nothing to do, the slot confirmed, or the slot failed
//! and the reboot asked; 1 anything else, with the reason on stderr.

use clap::Parser;
use serde::Deserialize;
use skytime_ota::guard::{self, Look};
use skytime_ota::rauc::{MarkState, Rauc};
use skytime_ota::state::{Action, Report, Step};
use skytime_ota::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// skytimed's default `health_deadline`, seconds.
const DEFAULT_DEADLINE: f64 = 300.0;
/// The longest sleep between two looks at the state.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How long to wait for RAUC to answer at boot.
const RAUC_WAIT: Duration = Duration::from_secs(120);

#[derive(Parser, Debug)]
#[command(
    name = "skytime-update-guard",
    about = "Fail a newly booted slot that skytimed did not confirm in time"
)]
struct Cli {
    /// skytimed's configuration; the first that exists is read.
    #[arg(long, required = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// The update state.
    #[arg(
        long,
        default_value = "/var/lib/skytime/ota/state.json",
        value_name = "FILE"
    )]
    state: PathBuf,
    /// Seconds after skytimed's health deadline (counted from the boot).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=3600))]
    margin: u64,
}

/// The part of skytimed's configuration the guard needs (skytimed itself
/// validates the whole file).
#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    update: UpdateSection,
}

#[derive(Deserialize, Default)]
struct UpdateSection {
    health_deadline: Option<f64>,
}

/// skytimed's accepted range for `health_deadline`, seconds.
const DEADLINE_RANGE: std::ops::RangeInclusive<f64> = 30.0..=3600.0;

/// skytimed's health deadline from the first of `paths` that exists. A
/// file that cannot be read or parsed, or a value skytimed would refuse,
/// gives the default: skytimed does not run on such a configuration,
/// which is exactly when the guard must still act. The reason is logged.
fn deadline(paths: &[PathBuf]) -> Duration {
    let Some((path, text)) = paths.iter().find_map(|p| match std::fs::read_to_string(p) {
        Ok(t) => Some((p, Ok(t))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some((p, Err(e.to_string()))),
    }) else {
        return Duration::from_secs_f64(DEFAULT_DEADLINE);
    };
    let secs = text.and_then(|t| {
        let config: Config = toml::from_str(&t).map_err(|e| e.message().to_owned())?;
        let secs = config.update.health_deadline.unwrap_or(DEFAULT_DEADLINE);
        if DEADLINE_RANGE.contains(&secs) {
            Ok(secs)
        } else {
            Err(format!(
                "[update] health_deadline {secs} is outside 30 to 3600 s"
            ))
        }
    });
    Duration::from_secs_f64(secs.unwrap_or_else(|why| {
        eprintln!(
            "skytime-update-guard: {}: {why}; using skytimed's default deadline of {DEFAULT_DEADLINE} s",
            path.display()
        );
        DEFAULT_DEADLINE
    }))
}

/// How long the kernel has been up.
fn since_boot() -> Result<Duration, String> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .map_err(|e| format!("cannot read CLOCK_BOOTTIME: {e}"))
}

fn boot_id() -> Result<String, String> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The system bus, RAUC on it, and the slot RAUC says booted; RAUC may
/// still be starting.
async fn rauc() -> Result<(zbus::Connection, Rauc, String), String> {
    let deadline = tokio::time::Instant::now() + RAUC_WAIT;
    loop {
        let attempt = async {
            let conn = zbus::Connection::system()
                .await
                .map_err(|e| format!("cannot reach the system bus: {e}"))?;
            let rauc = Rauc::new(&conn).await.map_err(|e| format!("RAUC: {e}"))?;
            let booted = rauc
                .boot_slot()
                .await
                .map_err(|e| format!("RAUC does not say which slot booted: {e}"))?;
            Ok::<_, String>((conn, rauc, booted))
        };
        match attempt.await {
            Ok(r) => return Ok(r),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// Asks logind to reboot, or, where logind does not run, systemd to start
/// `reboot.target`.
async fn reboot(conn: &zbus::Connection) -> Result<(), String> {
    let asked = conn
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Reboot",
            &(false,),
        )
        .await;
    match asked {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            conn.call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                "StartUnit",
                &("reboot.target", "replace-irreversibly"),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("no logind, and systemd refused reboot.target: {e}"))
        }
        Err(e) => Err(format!("logind refused the reboot: {e}")),
    }
}

/// Carries out a failing step: the state first (so that a power cut
/// repeats the actions rather than losing them), then the actions.
async fn fail(
    conn: &zbus::Connection,
    store: &Store,
    rauc: &Rauc,
    step: Step,
) -> Result<(), String> {
    let Step::Next { state, actions } = step else {
        return Err(format!("the update state refused the failure: {step:?}"));
    };
    store.save(&state).map_err(|e| e.to_string())?;
    for action in actions {
        match action {
            Action::MarkBad { slot } => match rauc.mark(MarkState::Bad, "booted").await {
                Ok((name, message)) => {
                    eprintln!("skytime-update-guard: slot {slot} ({name}): {message}")
                }
                // The reboot still goes on: the slot's boot attempts run
                // out and the bootloader returns to the previous slot.
                Err(e) => eprintln!("skytime-update-guard: cannot mark slot {slot} bad: {e}"),
            },
            Action::Report(Report::RolledBack { slot, reason }) => {
                eprintln!("skytime-update-guard: slot {slot} rolled back: {reason}")
            }
            Action::Reboot => reboot(conn).await?,
            other => eprintln!("skytime-update-guard: not carried out here: {other:?}"),
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    let limit = deadline(&cli.config) + Duration::from_secs(cli.margin);
    let store = Store::new(&cli.state);
    // Most boots have nothing on trial: no need to wait for RAUC then.
    let state = store.load().map_err(|e| e.to_string())?;
    if !guard::may_be_on_trial(&state) {
        eprintln!(
            "skytime-update-guard: nothing on trial (update state {})",
            state.name()
        );
        return Ok(());
    }
    let (conn, rauc, booted) = rauc().await?;
    let boot = boot_id()?;
    loop {
        let state = store.load().map_err(|e| e.to_string())?;
        match guard::look(&state, &booted, &boot, since_boot()?, limit) {
            Look::Nothing(why) => {
                eprintln!("skytime-update-guard: {why}");
                return Ok(());
            }
            Look::Wait { left, .. } => tokio::time::sleep(left.min(LOOK_EVERY)).await,
            Look::Fail { step, .. } => return fail(&conn, &store, &rauc, step).await,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skytime-update-guard: {e}");
            ExitCode::FAILURE
        }
    }
}
