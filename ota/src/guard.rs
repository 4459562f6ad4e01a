//! The update guard, sans I/O: the backstop of skytimed's health check.
//!
//! skytimed judges a newly booted slot itself (it marks it good once it
//! serves, bad past the deadline). A new slot whose skytimed never runs
//! long enough to judge it (it does not start, or crashes again and again
//! while systemd restarts it) would stay up unjudged, and its boot
//! attempts only run out when it reboots. The guard, a unit of its own
//! started at every boot, watches such a boot: while the booted slot is on
//! trial ([`on_trial`]) it waits; once `limit` has passed since the kernel
//! booted ([`look`]) it fails the slot as the health check would, through
//! the same state machine: the state becomes "rolled back" with the
//! guard's reason, and the actions mark the slot bad and reboot, so the
//! bootloader returns to the previous slot at once.
//!
//! `limit` is skytimed's `health_deadline` plus a margin, so that a
//! skytimed that runs always decides first and the guard only acts when
//! nobody else did.

use crate::state::{Event, State, Step};
use std::time::Duration;

/// What the guard sees at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Nothing on trial in this boot: the guard has nothing to do.
    Nothing(String),
    /// `slot` is on trial; look again, at the latest after `left`.
    Wait {
        /// The booted slot on trial.
        slot: String,
        /// Until the limit.
        left: Duration,
    },
    /// `limit` passed with `slot` still unconfirmed: save `step`'s state,
    /// then carry out its actions (mark bad, report, reboot).
    Fail {
        /// The booted slot on trial.
        slot: String,
        /// The state machine's step.
        step: Step,
    },
}

/// Whether some slot could be on trial in `state` (before the booted
/// slot is known).
pub fn may_be_on_trial(state: &State) -> bool {
    matches!(
        state,
        State::Installed { .. } | State::BootedUnconfirmed { .. }
    )
}

/// The slot on trial in this boot, if the booted slot is one: an install
/// completed and made it primary (skytimed has not run on it yet), or it
/// booted and has not proven itself.
pub fn on_trial<'a>(state: &'a State, booted: &str) -> Option<&'a str> {
    match state {
        State::Installed { target_slot, .. } if target_slot == booted => Some(target_slot),
        State::BootedUnconfirmed { slot, .. } if slot == booted => Some(slot),
        _ => None,
    }
}

/// One look at `state` in the boot `boot_id` of slot `booted`, `up` after
/// the kernel booted.
pub fn look(state: &State, booted: &str, boot_id: &str, up: Duration, limit: Duration) -> Look {
    let Some(slot) = on_trial(state, booted) else {
        return Look::Nothing(format!(
            "slot {booted} is not on trial (update state {})",
            state.name()
        ));
    };
    if up < limit {
        return Look::Wait {
            slot: slot.to_owned(),
            left: limit - up,
        };
    }
    // skytimed never ran on this slot in this boot: take the boot first,
    // as skytimed would have, so the failure lands on an unconfirmed slot.
    let unconfirmed = match state.handle(Event::Booted {
        slot: booted.to_owned(),
        boot_id: boot_id.to_owned(),
    }) {
        Step::Next { state, .. } => state,
        Step::Ignored(_) | Step::Refused(_) => state.clone(),
    };
    let reason = format!(
        "skytimed did not confirm it within {} s of boot (the update guard)",
        limit.as_secs()
    );
    Look::Fail {
        slot: slot.to_owned(),
        step: unconfirmed.handle(Event::HealthFailed { reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::states;
    use crate::state::{Action, Report};

    const LIMIT: Duration = Duration::from_secs(420);

    #[test]
    fn only_the_booted_slot_of_an_unfinished_update_is_on_trial() {
        for (name, state) in states() {
            for booted in ["A", "B"] {
                let expected = match (name, booted) {
                    // The samples update from A to B.
                    ("installed" | "unconfirmed", "B") => Some("B"),
                    _ => None,
                };
                assert_eq!(on_trial(&state, booted), expected, "{name} booted {booted}");
            }
        }
    }

    #[test]
    fn waits_until_the_limit_then_fails_the_slot_through_the_state_machine() {
        for (name, state) in states() {
            let Some(slot) = on_trial(&state, "B").map(str::to_owned) else {
                continue;
            };
            for up in [0, 1, 419] {
                assert_eq!(
                    look(&state, "B", "b9", Duration::from_secs(up), LIMIT),
                    Look::Wait {
                        slot: slot.clone(),
                        left: LIMIT - Duration::from_secs(up)
                    },
                    "{name} at {up} s"
                );
            }
            for up in [420, 421, 100_000] {
                let Look::Fail { slot: failed, step } =
                    look(&state, "B", "b9", Duration::from_secs(up), LIMIT)
                else {
                    panic!("{name} at {up} s: no failure");
                };
                assert_eq!(failed, "B");
                let Step::Next {
                    state: after,
                    actions,
                } = step
                else {
                    panic!("{name}: the state machine did not take the failure");
                };
                let State::RolledBack {
                    failed_slot,
                    reason,
                    ..
                } = &after
                else {
                    panic!("{name}: {after:?}");
                };
                assert_eq!(failed_slot, "B");
                assert!(
                    reason.contains("did not confirm it within 420 s of boot (the update guard)"),
                    "{reason}"
                );
                assert_eq!(actions[0], Action::MarkBad { slot: "B".into() });
                assert!(
                    matches!(&actions[1], Action::Report(Report::RolledBack { slot, .. }) if slot == "B")
                );
                assert_eq!(actions.last(), Some(&Action::Reboot));
            }
        }
    }

    #[test]
    fn a_settled_or_foreign_state_is_left_alone_whatever_the_time() {
        for (name, state) in states() {
            for booted in ["A", "B"] {
                if on_trial(&state, booted).is_some() {
                    continue;
                }
                for up in [0, 420, 100_000] {
                    let l = look(&state, booted, "b9", Duration::from_secs(up), LIMIT);
                    assert!(
                        matches!(&l, Look::Nothing(why) if why.contains(state.name())),
                        "{name} booted {booted} at {up}: {l:?}"
                    );
                }
            }
        }
    }
}
