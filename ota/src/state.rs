//! The update state machine, sans I/O.
//!
//! One update goes through these states:
//!
//! ```text
//!            install requested          RAUC accepted
//!   Idle ─────────────────────► Staged ─────────────► Installing ──┐ progress
//!   Confirmed, RolledBack,         │ not accepted         │  ▲  ◄──┘
//!   Failed (settled)               ▼                      │  │
//!                                Failed ◄── error ────────┘  │ completed ok
//!                                  ▲  rebooted mid-install   ▼
//!                                  └────────────────────── Installed (reboot pending)
//!                                                            │ booted the new slot
//!                                                            ▼
//!             health ok                              BootedUnconfirmed
//!   Confirmed ◄──────────────────────────────────────────────┤
//!                  health failed, deadline, or the old slot  │
//!   RolledBack ◄─────────────────────────────────────────────┘
//!
//!   settled or unconfirmed        the operator's Rollback
//!   (Idle, BootedUnconfirmed, ─────────────────────────► RollingBack
//!   Confirmed, RolledBack,                                │ booted the slot
//!   Failed, RolledBackByOperator)                         │ it went to
//!          ▲   booted the slot it left again              ▼
//!          └──────────────────────────────────── RolledBackByOperator
//!              (back to the state it was in)
//! ```
//!
//! The operator's rollback is recorded before RAUC marks the other slot
//! active and the machine reboots, so a power cut between the two loses
//! nothing: the next boot in the target slot settles it as
//! [`State::RolledBackByOperator`]. A boot back on the slot it left (RAUC's
//! mark did not hold, or the bootloader fell back) returns to the state it
//! was in, with that boot handed to it (an unconfirmed slot is checked
//! again, a confirmed one stays confirmed), and reports that the rollback
//! did not take: that state still describes what runs, and keeps what a
//! settled "failed" record would lose (an unconfirmed slot must not take
//! installs; a confirmed update keeps the slot it came from open to a
//! retry).
//!
//! [`State::handle`] takes one [`Event`] and returns a [`Step`]: the next
//! state and the [`Action`]s to carry out (call RAUC, mark a slot, reboot,
//! tell the operator), an [`Step::Ignored`] with the reason (a stale or
//! irrelevant event: a late `Completed` signal, a health result for a slot
//! that is already confirmed), or a [`Step::Refused`] request. The driver
//! persists a changed state ([`crate::store`]) *before* it acts, so a
//! power cut between the two repeats an action rather than losing it.
//!
//! Boots are told apart by the kernel's boot id
//! (`/proc/sys/kernel/random/boot_id`): a daemon restart is not a reboot.
//!
//! Invariants (tested over every state and event, and over random event
//! sequences): a confirmed slot is never marked bad or rebooted away from
//! by a later event; the slot an update started from is never marked bad;
//! no install starts while the running slot is unconfirmed (it would
//! overwrite the only known-good slot); reboots the machine asks for are
//! bounded.

use serde::{Deserialize, Serialize};

mod operator;
pub use operator::OperatorRollback;

/// How many times a rolled-back device reboots out of the failed slot
/// before it gives up (the bootloader's own attempt counters are the
/// backstop).
pub const MAX_ROLLBACK_REBOOTS: u8 = 3;

/// The bundle an update installs, as the operator asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Where RAUC reads it from (path or URL).
    pub source: String,
    /// Its manifest version (what RAUC's `InspectBundle` reported).
    pub version: String,
    /// Its manifest hash, when known.
    pub manifest_hash: Option<String>,
    /// The operator forced it past the version policy.
    pub force: bool,
    /// The transaction id passed to RAUC (it lands in the slot status as
    /// `installed.transaction`).
    pub transaction: String,
}

/// The update state; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case", deny_unknown_fields)]
pub enum State {
    /// No update has happened (or the last one no longer describes what
    /// runs).
    Idle,
    /// The install is requested; RAUC has not accepted it yet.
    Staged {
        /// What is installed.
        bundle: Bundle,
        /// The slot running when it was requested.
        from_slot: String,
        /// The boot it was requested in.
        boot_id: String,
    },
    /// RAUC is writing the other slot.
    Installing {
        /// What is installed.
        bundle: Bundle,
        /// The slot running.
        from_slot: String,
        /// The boot it runs in.
        boot_id: String,
        /// RAUC's progress, 0..=100.
        percent: u8,
        /// RAUC's current step.
        step: String,
    },
    /// Written; the new slot is primary and boots next (reboot pending).
    Installed {
        /// What was installed.
        bundle: Bundle,
        /// The slot running.
        from_slot: String,
        /// The slot written (bootname).
        target_slot: String,
        /// The boot the install ran in.
        boot_id: String,
    },
    /// Running the new slot; it has not proven itself yet.
    BootedUnconfirmed {
        /// What runs.
        bundle: Bundle,
        /// The new slot, running.
        slot: String,
        /// The slot the update came from (the known-good one).
        previous_slot: String,
        /// This boot.
        boot_id: String,
    },
    /// The new slot passed its health check and is marked good.
    Confirmed {
        /// What runs.
        bundle: Bundle,
        /// The slot.
        slot: String,
    },
    /// The new slot failed; it is marked bad and the device goes (or went)
    /// back to the previous one.
    RolledBack {
        /// What was tried.
        bundle: Bundle,
        /// The slot that failed.
        failed_slot: String,
        /// Why.
        reason: String,
        /// Reboots asked for to leave the failed slot.
        reboots: u8,
    },
    /// The operator asked to go back to the other slot: recorded before
    /// RAUC marks it active and the machine reboots.
    RollingBack {
        /// From which slot to which.
        rollback: OperatorRollback,
        /// The boot it was asked in.
        boot_id: String,
        /// The state before: where a rollback that did not take returns.
        previous: Box<State>,
    },
    /// The operator rolled back; the slot it went to runs. Not a failure
    /// (no slot is marked bad, no alarm).
    RolledBackByOperator {
        /// From which slot to which.
        rollback: OperatorRollback,
    },
    /// The update failed before a reboot; nothing changed what boots.
    Failed {
        /// What was tried, if known.
        bundle: Option<Bundle>,
        /// Why.
        reason: String,
    },
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The operator asks to install `bundle` (already checked: signature,
    /// compatible, version policy) while `booted_slot` runs in `boot_id`.
    InstallRequested {
        /// What to install.
        bundle: Bundle,
        /// The running slot.
        booted_slot: String,
        /// The current boot.
        boot_id: String,
    },
    /// RAUC accepted `InstallBundle`.
    InstallStarted,
    /// RAUC refused `InstallBundle` (busy, bad argument).
    InstallNotStarted {
        /// RAUC's message.
        reason: String,
    },
    /// RAUC's `Progress` property changed.
    Progress {
        /// Percent (RAUC sends an int; clamped to 0..=100).
        percent: i32,
        /// The step's message.
        step: String,
    },
    /// RAUC's `Completed` signal: `Ok(primary slot bootname)` on success,
    /// `Err(LastError)` otherwise.
    Completed(Result<String, String>),
    /// The daemon started: `slot` is running, in boot `boot_id`.
    Booted {
        /// The running slot (bootname).
        slot: String,
        /// The current boot.
        boot_id: String,
    },
    /// The health check passed.
    HealthOk,
    /// The health check failed.
    HealthFailed {
        /// What failed.
        reason: String,
    },
    /// The health check's deadline passed without a verdict.
    DeadlinePassed,
    /// The operator asks to go back to the other slot (already checked:
    /// it holds a good system that ran) in boot `boot_id`.
    RollbackRequested {
        /// From the running slot to which.
        rollback: OperatorRollback,
        /// The current boot.
        boot_id: String,
    },
    /// RAUC refused to make the other slot active: nothing changed what
    /// boots.
    RollbackNotStarted {
        /// RAUC's message.
        reason: String,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Call RAUC's `InstallBundle`.
    StartInstall {
        /// Path or URL.
        source: String,
        /// Transaction id for RAUC.
        transaction: String,
    },
    /// Start (or restart, after a daemon restart) the health check.
    WatchHealth,
    /// RAUC `Mark("good", slot)`: keep booting it.
    MarkGood {
        /// The bootname.
        slot: String,
    },
    /// RAUC `Mark("bad", slot)`: never boot it again.
    MarkBad {
        /// The bootname.
        slot: String,
    },
    /// RAUC `Mark("active", slot)`: boot it next (the operator's
    /// rollback).
    MarkActive {
        /// The bootname.
        slot: String,
    },
    /// Reboot the machine.
    Reboot,
    /// Tell the operator (D-Bus signal, log).
    Report(Report),
}

/// The outcomes an operator hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The slot is written; a reboot activates it.
    Installed {
        /// The version.
        version: String,
        /// The slot written.
        slot: String,
    },
    /// The install failed; nothing changed what boots.
    InstallFailed {
        /// Why.
        reason: String,
    },
    /// The new slot passed its health check.
    Confirmed {
        /// The version.
        version: String,
        /// The slot.
        slot: String,
    },
    /// The new slot failed and the device goes back.
    RolledBack {
        /// The failed slot.
        slot: String,
        /// Why.
        reason: String,
    },
    /// The operator's rollback took: the slot it went to runs.
    RolledBackByOperator(OperatorRollback),
    /// The operator's rollback did not take: the slot it left booted
    /// again.
    RollbackDidNotTake {
        /// What was asked.
        rollback: OperatorRollback,
        /// The slot running.
        booted: String,
    },
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An install is already under way.
    #[error("an update is already in progress ({0})")]
    UpdateInProgress(&'static str),
    /// The running slot is new and not confirmed: installing now would
    /// overwrite the previous, known-good slot.
    #[error(
        "slot {0} is not confirmed yet; installing now would overwrite the only known-good slot"
    )]
    Unconfirmed(String),
    /// The operator's rollback waits for its reboot.
    #[error("a rollback to slot {0} waits for its reboot")]
    RollbackPending(String),
}

/// The result of [`State::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Persist `state` (when it differs), then carry out `actions` in order.
    Next {
        /// The new state.
        state: State,
        /// What to do.
        actions: Vec<Action>,
    },
    /// Nothing to do; why, for the log.
    Ignored(&'static str),
    /// A request that is refused; the state does not change.
    Refused(Refusal),
}

fn next(state: State, actions: Vec<Action>) -> Step {
    Step::Next { state, actions }
}

impl State {
    /// The state's name as the D-Bus API shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Staged { .. } => "staged",
            Self::Installing { .. } => "installing",
            Self::Installed { .. } => "installed",
            Self::BootedUnconfirmed { .. } => "booted-unconfirmed",
            Self::Confirmed { .. } => "confirmed",
            Self::RolledBack { .. } => "rolled-back",
            Self::RollingBack { .. } => "rolling-back",
            Self::RolledBackByOperator { .. } => "rolled-back-by-operator",
            Self::Failed { .. } => "failed",
        }
    }

    /// Whether `other` is the same record on disk: equal but for RAUC's
    /// progress, which is not worth an fsync per percent (while RAUC
    /// writes a slot, each one waits behind its I/O) and means nothing
    /// after a restart or a power cut, when the install is over and its
    /// outcome is RAUC's to report.
    pub fn same_record(&self, other: &State) -> bool {
        match (self, other) {
            (
                Self::Installing {
                    bundle,
                    from_slot,
                    boot_id,
                    ..
                },
                Self::Installing {
                    bundle: b,
                    from_slot: f,
                    boot_id: i,
                    ..
                },
            ) => bundle == b && from_slot == f && boot_id == i,
            _ => self == other,
        }
    }

    /// The bundle version an install in flight was forced for: what the
    /// `install-check` hook reads to let a downgrade through.
    pub fn forced_version(&self) -> Option<&str> {
        match self {
            Self::Staged { bundle, .. } | Self::Installing { bundle, .. } if bundle.force => {
                Some(&bundle.version)
            }
            _ => None,
        }
    }

    /// Why the state is what it is, for the operator; empty when the name
    /// says it all.
    pub fn reason(&self) -> String {
        match self {
            Self::RolledBack { reason, .. } | Self::Failed { reason, .. } => reason.clone(),
            Self::RollingBack { rollback, .. } => format!(
                "the operator asked to roll back {}; slot {} boots next",
                rollback.describe(),
                rollback.to_slot
            ),
            Self::RolledBackByOperator { rollback } => {
                format!("the operator rolled back {}", rollback.describe())
            }
            _ => String::new(),
        }
    }

    /// Whether a health check must run (after a daemon restart, too).
    pub fn needs_health_check(&self) -> bool {
        matches!(self, Self::BootedUnconfirmed { .. })
    }

    /// The next step after `event`.
    pub fn handle(&self, event: Event) -> Step {
        use Event as E;
        use State as S;
        match (self, event) {
            // Starting an install.
            (
                S::Idle
                | S::Confirmed { .. }
                | S::RolledBack { .. }
                | S::RolledBackByOperator { .. }
                | S::Failed { .. }
                | S::Installed { .. },
                E::InstallRequested {
                    bundle,
                    booted_slot,
                    boot_id,
                },
            ) => {
                let action = Action::StartInstall {
                    source: bundle.source.clone(),
                    transaction: bundle.transaction.clone(),
                };
                next(
                    S::Staged {
                        bundle,
                        from_slot: booted_slot,
                        boot_id,
                    },
                    vec![action],
                )
            }
            (S::Staged { .. }, E::InstallRequested { .. }) => {
                Step::Refused(Refusal::UpdateInProgress("waiting for RAUC to start"))
            }
            (S::Installing { .. }, E::InstallRequested { .. }) => {
                Step::Refused(Refusal::UpdateInProgress("RAUC is writing the other slot"))
            }
            (S::BootedUnconfirmed { slot, .. }, E::InstallRequested { .. }) => {
                Step::Refused(Refusal::Unconfirmed(slot.clone()))
            }
            (
                S::RollingBack { rollback, .. },
                E::InstallRequested { .. } | E::RollbackRequested { .. },
            ) => Step::Refused(Refusal::RollbackPending(rollback.to_slot.clone())),

            // The operator's rollback: recorded, then the other slot made
            // active and the machine rebooted.
            (
                S::Idle
                | S::BootedUnconfirmed { .. }
                | S::Confirmed { .. }
                | S::RolledBack { .. }
                | S::RolledBackByOperator { .. }
                | S::Failed { .. },
                E::RollbackRequested { rollback, boot_id },
            ) => {
                let slot = rollback.to_slot.clone();
                next(
                    S::RollingBack {
                        rollback,
                        boot_id,
                        previous: Box::new(self.clone()),
                    },
                    vec![Action::MarkActive { slot }, Action::Reboot],
                )
            }
            (S::Staged { .. } | S::Installing { .. }, E::RollbackRequested { .. }) => {
                Step::Refused(Refusal::UpdateInProgress("RAUC is writing the other slot"))
            }
            (S::Installed { .. }, E::RollbackRequested { .. }) => Step::Refused(
                Refusal::UpdateInProgress("an installed slot waits for its reboot"),
            ),
            (S::RollingBack { previous, .. }, E::RollbackNotStarted { .. }) => {
                next((**previous).clone(), vec![])
            }
            (_, E::RollbackNotStarted { .. }) => Step::Ignored("no rollback was waiting for RAUC"),

            // RAUC's answers while installing.
            (
                S::Staged {
                    bundle,
                    from_slot,
                    boot_id,
                },
                E::InstallStarted,
            ) => next(
                S::Installing {
                    bundle: bundle.clone(),
                    from_slot: from_slot.clone(),
                    boot_id: boot_id.clone(),
                    percent: 0,
                    step: String::new(),
                },
                vec![],
            ),
            (S::Staged { bundle, .. }, E::InstallNotStarted { reason }) => {
                failed(bundle, format!("RAUC did not start the install: {reason}"))
            }
            (
                S::Staged {
                    bundle,
                    from_slot,
                    boot_id,
                }
                | S::Installing {
                    bundle,
                    from_slot,
                    boot_id,
                    ..
                },
                E::Progress { percent, step },
            ) => next(
                S::Installing {
                    bundle: bundle.clone(),
                    from_slot: from_slot.clone(),
                    boot_id: boot_id.clone(),
                    percent: percent.clamp(0, 100) as u8,
                    step,
                },
                vec![],
            ),
            (
                S::Staged {
                    bundle,
                    from_slot,
                    boot_id,
                }
                | S::Installing {
                    bundle,
                    from_slot,
                    boot_id,
                    ..
                },
                E::Completed(result),
            ) => match result {
                Ok(primary) if primary != *from_slot => next(
                    S::Installed {
                        bundle: bundle.clone(),
                        from_slot: from_slot.clone(),
                        target_slot: primary.clone(),
                        boot_id: boot_id.clone(),
                    },
                    vec![Action::Report(Report::Installed {
                        version: bundle.version.clone(),
                        slot: primary,
                    })],
                ),
                Ok(primary) => failed(
                    bundle,
                    format!(
                        "RAUC reported success but the primary slot is still the running one ({primary})"
                    ),
                ),
                Err(reason) => failed(bundle, reason),
            },

            // Boots.
            (
                S::Staged {
                    bundle, boot_id, ..
                }
                | S::Installing {
                    bundle, boot_id, ..
                },
                E::Booted { boot_id: now, .. },
            ) => {
                if *boot_id == now {
                    Step::Ignored("daemon restart during the install; RAUC may still be writing")
                } else {
                    failed(bundle, "the device restarted before the install finished".into())
                }
            }
            (
                S::Installed {
                    bundle,
                    from_slot,
                    target_slot,
                    boot_id,
                },
                E::Booted { slot, boot_id: now },
            ) => {
                if *boot_id == now {
                    Step::Ignored("daemon restart; the reboot into the new slot is still pending")
                } else {
                    on_trial(bundle, target_slot, from_slot, slot, now, "did not boot")
                }
            }
            (
                S::BootedUnconfirmed {
                    bundle,
                    slot: new_slot,
                    previous_slot,
                    boot_id,
                },
                E::Booted { slot, boot_id: now },
            ) => {
                if *boot_id == now {
                    Step::Ignored("daemon restart; the health check starts again")
                } else {
                    // Rebooted during the health check (a crash, the
                    // watchdog): the bootloader counts the attempts.
                    on_trial(
                        bundle,
                        new_slot,
                        previous_slot,
                        slot,
                        now,
                        "restarted before it confirmed",
                    )
                }
            }
            (
                S::Confirmed {
                    slot: confirmed, ..
                },
                E::Booted { slot, .. },
            ) => {
                if slot == *confirmed {
                    Step::Ignored("booted the confirmed slot")
                } else {
                    // The bootloader or the operator chose the other slot:
                    // the last update no longer describes what runs.
                    next(S::Idle, vec![])
                }
            }
            (
                S::RolledBack {
                    bundle,
                    failed_slot,
                    reason,
                    reboots,
                },
                E::Booted { slot, .. },
            ) => {
                if slot != *failed_slot {
                    Step::Ignored("running the previous slot after a rollback")
                } else if *reboots < MAX_ROLLBACK_REBOOTS {
                    next(
                        S::RolledBack {
                            bundle: bundle.clone(),
                            failed_slot: failed_slot.clone(),
                            reason: reason.clone(),
                            reboots: reboots + 1,
                        },
                        vec![Action::MarkBad { slot: slot.clone() }, Action::Reboot],
                    )
                } else {
                    next(
                        S::Failed {
                            bundle: Some(bundle.clone()),
                            reason: format!(
                                "slot {slot} keeps booting although it is marked bad ({reason})"
                            ),
                        },
                        vec![],
                    )
                }
            }

            (
                S::RollingBack {
                    rollback,
                    boot_id,
                    previous,
                },
                E::Booted { slot, boot_id: now },
            ) => {
                if *boot_id == now {
                    Step::Ignored("daemon restart; the reboot of the rollback is still pending")
                } else if slot == rollback.to_slot {
                    next(
                        S::RolledBackByOperator {
                            rollback: rollback.clone(),
                        },
                        vec![Action::Report(Report::RolledBackByOperator(
                            rollback.clone(),
                        ))],
                    )
                } else {
                    // The state before still describes what runs: it
                    // takes the boot as if the rollback had not happened.
                    let mut actions = vec![Action::Report(Report::RollbackDidNotTake {
                        rollback: rollback.clone(),
                        booted: slot.clone(),
                    })];
                    let state = match previous.handle(E::Booted { slot, boot_id: now }) {
                        Step::Next { state, actions: a } => {
                            actions.extend(a);
                            state
                        }
                        Step::Ignored(_) | Step::Refused(_) => (**previous).clone(),
                    };
                    next(state, actions)
                }
            }
            (S::RolledBackByOperator { rollback }, E::Booted { slot, .. }) => {
                if slot == rollback.to_slot {
                    Step::Ignored("running the slot the operator rolled back to")
                } else {
                    // The bootloader or the operator chose the other slot
                    // since: the rollback no longer describes what runs.
                    next(S::Idle, vec![])
                }
            }

            // The health check.
            (S::BootedUnconfirmed { bundle, slot, .. }, E::HealthOk) => next(
                S::Confirmed {
                    bundle: bundle.clone(),
                    slot: slot.clone(),
                },
                vec![
                    Action::MarkGood { slot: slot.clone() },
                    Action::Report(Report::Confirmed {
                        version: bundle.version.clone(),
                        slot: slot.clone(),
                    }),
                ],
            ),
            (S::BootedUnconfirmed { bundle, slot, .. }, E::HealthFailed { reason }) => rolled_back(
                bundle,
                slot,
                format!("health check failed on slot {slot}: {reason}"),
                vec![Action::Reboot],
            ),
            (S::BootedUnconfirmed { bundle, slot, .. }, E::DeadlinePassed) => rolled_back(
                bundle,
                slot,
                format!("slot {slot} did not pass its health check before the deadline"),
                vec![Action::Reboot],
            ),

            // Everything else is stale or does not apply.
            (S::Confirmed { .. }, E::HealthOk | E::HealthFailed { .. } | E::DeadlinePassed) => {
                Step::Ignored("the slot is already confirmed")
            }
            (_, E::HealthOk | E::HealthFailed { .. } | E::DeadlinePassed) => {
                Step::Ignored("no health check is running")
            }
            (_, E::InstallStarted | E::InstallNotStarted { .. }) => {
                Step::Ignored("no install was waiting for RAUC")
            }
            (_, E::Progress { .. } | E::Completed(_)) => Step::Ignored("no install is running"),
            (S::Idle | S::Failed { .. }, E::Booted { .. }) => Step::Ignored("no update to follow"),
        }
    }
}

/// The install failed before anything changed what boots.
fn failed(bundle: &Bundle, reason: String) -> Step {
    next(
        State::Failed {
            bundle: Some(bundle.clone()),
            reason: reason.clone(),
        },
        vec![Action::Report(Report::InstallFailed { reason })],
    )
}

/// A new boot while `new_slot` is on trial: running it means a health
/// check (again); running another slot means the bootloader gave up on it.
fn on_trial(
    bundle: &Bundle,
    new_slot: &str,
    previous_slot: &str,
    booted: String,
    boot_id: String,
    what_happened: &str,
) -> Step {
    if booted == new_slot {
        next(
            State::BootedUnconfirmed {
                bundle: bundle.clone(),
                slot: booted,
                previous_slot: previous_slot.to_owned(),
                boot_id,
            },
            vec![Action::WatchHealth],
        )
    } else {
        let reason =
            format!("slot {new_slot} {what_happened}; the bootloader went back to slot {booted}");
        rolled_back(bundle, new_slot, reason, vec![])
    }
}

fn rolled_back(bundle: &Bundle, failed_slot: &str, reason: String, then: Vec<Action>) -> Step {
    let mut actions = vec![
        Action::MarkBad {
            slot: failed_slot.to_owned(),
        },
        Action::Report(Report::RolledBack {
            slot: failed_slot.to_owned(),
            reason: reason.clone(),
        }),
    ];
    actions.extend(then);
    next(
        State::RolledBack {
            bundle: bundle.clone(),
            failed_slot: failed_slot.to_owned(),
            reason,
            reboots: 0,
        },
        actions,
    )
}

#[cfg(test)]
pub(crate) mod tests;
