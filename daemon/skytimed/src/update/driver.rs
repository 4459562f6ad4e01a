//! The update's long-running side: find RAUC on the bus, tell the state
//! machine which slot booted, follow RAUC's progress and `Completed`, run
//! the health check on a new slot, and carry out the actions the state
//! machine returns (mark a slot good or bad, reboot, tell the operator).

use super::health::{HealthCheck, Uptime, Verdict};
use super::{probe, slot_named, Notice, Updater};
use futures_lite::StreamExt;
use skytime_ota::rauc::{MarkState, Progress, Rauc, SERVICE};
use skytime_ota::state::{Action, Event, Report, State};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often RAUC is looked for while it is not on the bus.
const LOOK_FOR_RAUC: Duration = Duration::from_secs(5);
/// How long an operator's call made just after skytimed started waits for
/// the first look for RAUC (a few calls to RAUC; well under D-Bus's
/// 25 s reply timeout).
pub const FIRST_LOOK_WAIT: Duration = Duration::from_secs(20);
/// How often the health check looks.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// The least time each start of skytimed gets to serve before the health
/// check may fail the slot (the deadline itself counts from the boot).
const HEALTH_GRACE: Duration = Duration::from_secs(30);

/// How long the kernel has been up (CLOCK_BOOTTIME; it counts from the
/// boot whatever the system clock does).
fn since_boot() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(Duration::from)
}

/// Runs until `shutdown`: waits for RAUC, then follows it.
pub async fn run(updater: Arc<Updater>, conn: zbus::Connection, shutdown: CancellationToken) {
    let _ = updater.conn.set(conn.clone());
    if !updater.config.enabled {
        updater.with_view(|v| {
            v.unavailable = "updates are disabled ([update] enabled = false)".into()
        });
        updater.notify(Notice::Changed);
        updater.looked.send_replace(true);
        return;
    }
    // A download cut short by a power cut or a crash leaves its part file
    // on the data partition; nothing downloads before this point.
    super::download::remove_partial(&updater.config.download_dir);
    let rauc = loop {
        match find_rauc(&conn).await {
            Ok(r) => break r,
            Err(why) => {
                let changed = updater.with_view(|v| {
                    let c = v.unavailable != why;
                    v.unavailable = why.clone();
                    c
                });
                if changed {
                    tracing::warn!("updates unavailable: {why}");
                    updater.notify(Notice::Changed);
                }
                updater.looked.send_replace(true);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LOOK_FOR_RAUC) => {}
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = follow(updater, rauc) => {}
    }
}

/// RAUC's client, when its name has an owner.
async fn find_rauc(conn: &zbus::Connection) -> Result<Rauc, String> {
    let absent = |e: String| {
        format!("RAUC ({SERVICE}) is not on the bus: {e} (updates need rauc-service running)")
    };
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| absent(e.to_string()))?;
    let name = zbus::names::BusName::try_from(SERVICE).map_err(|e| absent(e.to_string()))?;
    if !dbus
        .name_has_owner(name)
        .await
        .map_err(|e| absent(e.to_string()))?
    {
        return Err(absent("no owner".into()));
    }
    Rauc::new(conn).await.map_err(|e| absent(e.to_string()))
}

/// The boot, then RAUC's signals.
async fn follow(updater: Arc<Updater>, rauc: Rauc) {
    // Subscribe before anything can happen.
    let completed = rauc.proxy().receive_completed().await;
    let mut progress = rauc.proxy().receive_progress_changed().await;
    let booted = match rauc.boot_slot().await {
        Ok(b) => b,
        Err(e) => {
            let why = format!("RAUC ({SERVICE}) does not say which slot booted: {e}");
            tracing::error!("{why}");
            updater.with_view(|v| v.unavailable = why);
            updater.notify(Notice::Changed);
            updater.looked.send_replace(true);
            return;
        }
    };
    updater.with_view(|v| v.booted_slot.clone_from(&booted));
    updater.refresh(&rauc).await;
    // Available only once the slots are known.
    updater.with_view(|v| {
        v.rauc = Some(rauc.clone());
        v.unavailable.clear();
    });
    updater.notify(Notice::Changed);
    updater.looked.send_replace(true);
    tracing::info!(slot = %booted, state = updater.state().name(), "updates through RAUC");
    {
        let _t = updater.transition.lock().await;
        let actions = updater.step(Event::Booted {
            slot: booted,
            boot_id: updater.boot_id.clone(),
        });
        let actions = match actions {
            Ok(super::Outcome::Done(a)) => a,
            _ => Vec::new(),
        };
        let watching = actions.contains(&Action::WatchHealth);
        act(&updater, actions).await;
        // A daemon restart during the health check starts it again.
        if !watching && updater.state().needs_health_check() {
            spawn_health(updater.clone());
        }
    }
    completed_while_away(&updater, &rauc).await;
    let Ok(mut completed) = completed else {
        tracing::error!("cannot follow RAUC's Completed signal");
        return;
    };
    loop {
        tokio::select! {
            signal = completed.next() => {
                let Some(signal) = signal else { return };
                let code = signal.args().map(|a| *a.result()).unwrap_or(-1);
                on_completed(&updater, &rauc, code).await;
            }
            Some(p) = progress.next() => {
                if let Ok((percent, message, depth)) = p.get().await {
                    on_progress(&updater, Progress { percent, message, depth }).await;
                }
            }
        }
    }
}

/// skytimed restarted during an install (a crash, the watchdog, an
/// operator): RAUC carried on, and if it finished while skytimed was
/// away its `Completed` reached no one. RAUC idle with our state still
/// installing means that; whether the other slot is now primary says how
/// it ended (RAUC's LastError says why when it failed). A `Completed`
/// that does arrive as well is ignored by the state machine.
async fn completed_while_away(updater: &Arc<Updater>, rauc: &Rauc) {
    let State::Installing { from_slot, .. } = updater.state() else {
        return;
    };
    if !rauc.operation().await.is_ok_and(|o| o == "idle") {
        return;
    }
    updater.refresh(rauc).await;
    let switched = updater.with_view(|v| !v.primary_slot.is_empty() && v.primary_slot != from_slot);
    tracing::warn!(
        switched,
        "RAUC finished the install while skytimed was not running"
    );
    on_completed(updater, rauc, if switched { 0 } else { 1 }).await;
}

async fn on_progress(updater: &Arc<Updater>, p: Progress) {
    let _t = updater.transition.lock().await;
    // RAUC's progress also moves when it only inspects a bundle, and its
    // last change may arrive after `Completed`: only an install of ours
    // makes the operation "installing" (a refresh reads RAUC's own).
    if matches!(
        updater.state(),
        State::Staged { .. } | State::Installing { .. }
    ) {
        updater.with_view(|v| v.operation = "installing".into());
    }
    if let Ok(super::Outcome::Done(a)) = updater.step(Event::Progress {
        percent: p.percent,
        step: p.message,
    }) {
        act(updater, a).await;
    }
}

async fn on_completed(updater: &Arc<Updater>, rauc: &Rauc, code: i32) {
    let _t = updater.transition.lock().await;
    // RAUC sends Completed before its last property changes: read them.
    if let Ok(Some(p)) = rauc.progress().await {
        let _ = updater.step(Event::Progress {
            percent: p.percent,
            step: p.message,
        });
    }
    updater.refresh(rauc).await;
    let result = if code == 0 {
        Ok(updater.with_view(|v| v.primary_slot.clone()))
    } else {
        Err(updater.with_view(|v| {
            if v.last_error.is_empty() {
                format!("RAUC reported failure (code {code})")
            } else {
                v.last_error.clone()
            }
        }))
    };
    tracing::info!(code, ?result, "RAUC completed");
    if let Ok(super::Outcome::Done(a)) = updater.step(Event::Completed(result)) {
        act(updater, a).await;
    }
}

/// Carries out the state machine's actions, in order. The state is
/// already saved: a failure here is logged and the next boot or health
/// check repeats what is needed.
pub(super) async fn act(updater: &Arc<Updater>, actions: Vec<Action>) {
    for a in actions {
        match a {
            // Update::install calls RAUC itself, after the state is saved.
            Action::StartInstall { .. } => {}
            Action::WatchHealth => spawn_health(updater.clone()),
            Action::MarkGood { slot } => mark(updater, MarkState::Good, &slot).await,
            Action::MarkBad { slot } => mark(updater, MarkState::Bad, &slot).await,
            // Update::rollback marks and reboots itself (its caller hears
            // RAUC's refusal); only a replayed action lands here.
            Action::MarkActive { slot } => mark(updater, MarkState::Active, &slot).await,
            Action::Reboot => reboot(updater, "the update asks for it").await,
            Action::Report(r) => report(updater, r).await,
        }
    }
}

async fn mark(updater: &Updater, state: MarkState, bootname: &str) {
    let Ok(rauc) = updater.rauc() else {
        tracing::error!("cannot mark slot {bootname} {state:?}: RAUC is not available");
        return;
    };
    let name = updater
        .with_view(|v| slot_named(&v.slots, bootname))
        .unwrap_or_else(|| bootname.to_owned());
    match rauc.mark(state, &name).await {
        Ok((slot, msg)) => tracing::info!(slot, "marked {state:?}: {msg}"),
        Err(e) => tracing::error!("cannot mark slot {name} {state:?}: {e}"),
    }
    updater.refresh(&rauc).await;
}

async fn reboot(updater: &Updater, why: &str) {
    let Some(conn) = updater.conn.get() else {
        tracing::error!("cannot reboot ({why}): not on the bus");
        return;
    };
    tracing::warn!("rebooting: {why}");
    if let Err(e) = crate::dbus::interfaces::logind(conn, "Reboot").await {
        tracing::error!("cannot reboot ({why}): {e}");
    }
}

async fn report(updater: &Updater, r: Report) {
    match r {
        Report::Installed { version, slot } => {
            let msg = format!("installed {version} in slot {slot}; it runs after a reboot");
            tracing::info!("{msg}");
            updater.notify(Notice::Completed(true, msg));
            if updater.with_view(|v| std::mem::take(&mut v.reboot_when_done)) {
                reboot(updater, "the install completed and a reboot was asked for").await;
            }
        }
        Report::InstallFailed { reason } => {
            tracing::error!("install failed: {reason}");
            updater.with_view(|v| v.reboot_when_done = false);
            updater.notify(Notice::Completed(false, reason));
        }
        Report::Confirmed { version, slot } => {
            tracing::info!(%version, %slot, "slot passed its health check and is marked good");
        }
        Report::RolledBack { slot, reason } => {
            tracing::error!(%slot, "rolled back: {reason}");
        }
        Report::RolledBackByOperator(r) => {
            tracing::warn!("the operator rolled back {}", r.describe());
        }
        Report::RollbackDidNotTake { rollback, booted } => {
            let note = format!(
                "the operator's rollback {} did not take: slot {booted} booted again \
                 (RAUC's mark did not hold or the bootloader went back)",
                rollback.describe()
            );
            tracing::error!("{note}");
            updater.with_view(|v| v.rollback_note = Some(note));
            updater.notify(Notice::Changed);
        }
    }
}

/// Runs the health check until it decides (bounded by the deadline).
fn spawn_health(updater: Arc<Updater>) {
    tokio::spawn(async move {
        let check = HealthCheck {
            deadline: updater.config.deadline(),
            grace: HEALTH_GRACE,
        };
        let start = Instant::now();
        let Some(conn) = updater.conn.get().cloned() else {
            return;
        };
        tracing::info!(
            deadline_s = check.deadline.as_secs(),
            since_boot_s = since_boot().unwrap_or_default().as_secs(),
            "health check of the new slot"
        );
        let event = loop {
            let facts = probe::observe(&updater.targets(), &conn).await;
            let check_up = start.elapsed();
            let up = Uptime {
                // Never unavailable on Linux; if it were, this start alone.
                boot: since_boot().unwrap_or(check_up),
                check: check_up,
            };
            match check.decide(&facts, up) {
                Verdict::Healthy => break Event::HealthOk,
                Verdict::Failed(reason) => break Event::HealthFailed { reason },
                Verdict::Wait(missing) => {
                    tracing::debug!(?missing, "health check: waiting");
                    tokio::time::sleep(HEALTH_EVERY).await;
                }
            }
        };
        let _t = updater.transition.lock().await;
        if let Ok(super::Outcome::Done(a)) = updater.step(event) {
            act(&updater, a).await;
        }
    });
}
