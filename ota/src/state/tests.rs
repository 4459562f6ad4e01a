//! Every state against every event, and random event sequences.

use super::*;
use proptest::prelude::*;

fn bundle(version: &str) -> Bundle {
    Bundle {
        source: "/var/lib/skytime/ota/next.raucb".into(),
        version: version.into(),
        manifest_hash: Some("ab".repeat(32)),
        force: false,
        transaction: "0b1d6d2e-6f9e-4f55-9d59-4a1e3f1d6e01".into(),
    }
}

/// The operator's rollback from slot B (the confirmed update) to slot A.
fn back_to_a() -> OperatorRollback {
    OperatorRollback {
        from_slot: "B".into(),
        from_version: Some("0.2.0+20250301.000000".into()),
        to_slot: "A".into(),
        to_version: None,
        at: 1_764_637_200,
    }
}

/// One sample of every state: an update from slot A (boot b1) to slot B
/// (first booted in b2); the operator's rollback from B to A asked in b2.
pub(crate) fn states() -> Vec<(&'static str, State)> {
    let b = bundle("0.2.0+20250301.000000");
    let confirmed = State::Confirmed {
        bundle: b.clone(),
        slot: "B".into(),
    };
    vec![
        ("idle", State::Idle),
        (
            "staged",
            State::Staged {
                bundle: b.clone(),
                from_slot: "A".into(),
                boot_id: "b1".into(),
            },
        ),
        (
            "installing",
            State::Installing {
                bundle: b.clone(),
                from_slot: "A".into(),
                boot_id: "b1".into(),
                percent: 40,
                step: "Copying image".into(),
            },
        ),
        (
            "installed",
            State::Installed {
                bundle: b.clone(),
                from_slot: "A".into(),
                target_slot: "B".into(),
                boot_id: "b1".into(),
            },
        ),
        (
            "unconfirmed",
            State::BootedUnconfirmed {
                bundle: b.clone(),
                slot: "B".into(),
                previous_slot: "A".into(),
                boot_id: "b2".into(),
            },
        ),
        (
            "confirmed",
            State::Confirmed {
                bundle: b.clone(),
                slot: "B".into(),
            },
        ),
        (
            "rolled-back",
            State::RolledBack {
                bundle: b.clone(),
                failed_slot: "B".into(),
                reason: "health check failed".into(),
                reboots: 0,
            },
        ),
        (
            "rolled-back-max",
            State::RolledBack {
                bundle: b.clone(),
                failed_slot: "B".into(),
                reason: "health check failed".into(),
                reboots: MAX_ROLLBACK_REBOOTS,
            },
        ),
        (
            "failed",
            State::Failed {
                bundle: Some(b.clone()),
                reason: "signature".into(),
            },
        ),
        (
            "rolling-back",
            State::RollingBack {
                rollback: back_to_a(),
                boot_id: "b2".into(),
                previous: Box::new(confirmed),
            },
        ),
        (
            "rolling-back-u",
            State::RollingBack {
                rollback: back_to_a(),
                boot_id: "b2".into(),
                previous: Box::new(State::BootedUnconfirmed {
                    bundle: b,
                    slot: "B".into(),
                    previous_slot: "A".into(),
                    boot_id: "b2".into(),
                }),
            },
        ),
        (
            "by-operator",
            State::RolledBackByOperator {
                rollback: back_to_a(),
            },
        ),
    ]
}

fn booted(slot: &str, boot: &str) -> Event {
    Event::Booted {
        slot: slot.into(),
        boot_id: boot.into(),
    }
}

/// Every kind of event, with the slot and boot variations that matter.
fn events() -> Vec<Event> {
    vec![
        Event::InstallRequested {
            bundle: bundle("0.3.0+20250401.000000"),
            booted_slot: "A".into(),
            boot_id: "b9".into(),
        },
        Event::InstallStarted,
        Event::InstallNotStarted {
            reason: "Already processing a different method".into(),
        },
        Event::Progress {
            percent: 50,
            step: "Copying image to rootfs.1".into(),
        },
        Event::Completed(Ok("B".into())),
        Event::Completed(Ok("A".into())),
        Event::Completed(Err("Failed to check bundle signature".into())),
        booted("A", "b1"),
        booted("B", "b1"),
        booted("A", "b2"),
        booted("B", "b2"),
        booted("A", "b3"),
        booted("B", "b3"),
        Event::HealthOk,
        Event::HealthFailed {
            reason: "NTS-KE does not accept connections".into(),
        },
        Event::DeadlinePassed,
        Event::RollbackRequested {
            rollback: back_to_a(),
            boot_id: "b2".into(),
        },
        Event::RollbackNotStarted {
            reason: "Failed to activate slot".into(),
        },
    ]
}

/// A step in a few letters: the next state's name and its actions (S
/// start install, W watch health, G mark good, X mark bad, A mark active,
/// R reboot, r report); `-` ignored; `refused`.
fn summary(step: &Step) -> String {
    match step {
        Step::Ignored(_) => "-".into(),
        Step::Refused(_) => "refused".into(),
        Step::Next { state, actions } => {
            let letters: String = actions
                .iter()
                .map(|a| match a {
                    Action::StartInstall { .. } => 'S',
                    Action::WatchHealth => 'W',
                    Action::MarkGood { .. } => 'G',
                    Action::MarkBad { .. } => 'X',
                    Action::MarkActive { .. } => 'A',
                    Action::Reboot => 'R',
                    Action::Report(_) => 'r',
                })
                .collect();
            if letters.is_empty() {
                state.name().to_owned()
            } else {
                format!("{} {letters}", state.name())
            }
        }
    }
}

#[test]
fn every_state_against_every_event() {
    // Columns: install, started, not-started, progress, ok(B), ok(A),
    // error, booted A/b1, B/b1, A/b2, B/b2, A/b3, B/b3, health ok,
    // health failed, deadline, rollback asked (B to A), RAUC did not
    // start it.
    const I: &str = "-";
    const F: &str = "failed r";
    const U: &str = "booted-unconfirmed W";
    const B: &str = "rolled-back Xr";
    const RB: &str = "rolling-back AR";
    const P: &str = "refused";
    const O: &str = "rolled-back-by-operator r";
    #[rustfmt::skip]
    let expected: &[(&str, [&str; 18])] = &[
        ("idle",            ["staged S", I, I, I, I, I, I, I, I, I, I, I, I, I, I, I, RB, I]),
        ("staged",          [P, "installing", F, "installing", "installed r", F, F, I, I, F, F, F, F, I, I, I, P, I]),
        ("installing",      [P, I, I, "installing", "installed r", F, F, I, I, F, F, F, F, I, I, I, P, I]),
        ("installed",       ["staged S", I, I, I, I, I, I, I, I, B, U, B, U, I, I, I, P, I]),
        ("unconfirmed",     [P, I, I, I, I, I, I, B, U, I, I, B, U, "confirmed Gr", "rolled-back XrR", "rolled-back XrR", RB, I]),
        ("confirmed",       ["staged S", I, I, I, I, I, I, "idle", I, "idle", I, "idle", I, I, I, I, RB, I]),
        ("rolled-back",     ["staged S", I, I, I, I, I, I, I, "rolled-back XR", I, "rolled-back XR", I, "rolled-back XR", I, I, I, RB, I]),
        ("rolled-back-max", ["staged S", I, I, I, I, I, I, I, "failed", I, "failed", I, "failed", I, I, I, RB, I]),
        ("failed",          ["staged S", I, I, I, I, I, I, I, I, I, I, I, I, I, I, I, RB, I]),
        // Asked in b2: b1 is an earlier boot, b2 a daemon restart.
        ("rolling-back",    [P, I, I, I, I, I, I, O, "confirmed r", I, I, O, "confirmed r", I, I, I, P, "confirmed"]),
        ("rolling-back-u",  [P, I, I, I, I, I, I, O, "booted-unconfirmed rW", I, I, O, "booted-unconfirmed rW", I, I, I, P, "booted-unconfirmed"]),
        ("by-operator",     ["staged S", I, I, I, I, I, I, I, "idle", I, "idle", I, "idle", I, I, I, RB, I]),
    ];
    let events = events();
    let mut mismatches = Vec::new();
    for ((name, state), (row, want)) in states().iter().zip(expected) {
        assert_eq!(name, row);
        for (event, want) in events.iter().zip(want) {
            let got = summary(&state.handle(event.clone()));
            if got != *want {
                mismatches.push(format!("{name} x {event:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The known-good slot an update in flight came from.
fn known_good(s: &State) -> Option<String> {
    match s {
        State::Staged { from_slot, .. }
        | State::Installing { from_slot, .. }
        | State::Installed { from_slot, .. } => Some(from_slot.clone()),
        State::BootedUnconfirmed { previous_slot, .. } => Some(previous_slot.clone()),
        // A rollback that does not take hands the boot to the state
        // before: its known-good slot stays protected.
        State::RollingBack { previous, .. } => known_good(previous),
        _ => None,
    }
}

#[test]
fn invariants_over_every_state_and_event() {
    for (name, state) in states() {
        let from = known_good(&state);
        for event in events() {
            let step = state.handle(event.clone());
            let Step::Next {
                state: next,
                actions,
            } = &step
            else {
                continue;
            };
            // A confirmed slot is never marked bad, nor rebooted away
            // from but at the operator's request.
            let asked = matches!(event, Event::RollbackRequested { .. });
            if let State::Confirmed { .. } = state {
                assert!(
                    !actions.iter().any(|a| matches!(a, Action::MarkBad { .. })
                        || (!asked && matches!(a, Action::Reboot))),
                    "{name} x {event:?}: {actions:?}"
                );
            }
            // The operator's rollback marks nothing bad and is recorded
            // before the slot is made active and the machine reboots.
            if asked {
                assert!(matches!(next, State::RollingBack { .. }), "{name}");
                assert_eq!(
                    actions,
                    &[Action::MarkActive { slot: "A".into() }, Action::Reboot]
                );
            }
            // Only the operator's request makes a slot active.
            if actions
                .iter()
                .any(|a| matches!(a, Action::MarkActive { .. }))
            {
                assert!(asked, "{name} x {event:?}");
            }
            // The slot an update came from is never marked bad.
            for a in actions {
                if let Action::MarkBad { slot } = a {
                    assert_ne!(Some(slot), from.as_ref(), "{name} x {event:?}");
                }
            }
            // A rollback always marks the failed slot bad first (after
            // the report that the operator's rollback did not take).
            if matches!(next, State::RolledBack { .. })
                && !matches!(state, State::RolledBack { .. } | State::RollingBack { .. })
            {
                assert!(matches!(actions.first(), Some(Action::MarkBad { .. })));
            }
            // Every state is a persistable document.
            let json = serde_json::to_string(next).unwrap();
            assert_eq!(&serde_json::from_str::<State>(&json).unwrap(), next);
        }
    }
}

#[test]
fn refusals_explain_themselves() {
    let states = states();
    let unconfirmed = &states[4].1;
    let Step::Refused(r) = unconfirmed.handle(events()[0].clone()) else {
        panic!("install while unconfirmed must be refused")
    };
    assert_eq!(
        r.to_string(),
        "slot B is not confirmed yet; installing now would overwrite the only known-good slot"
    );
    let Step::Refused(r) = states[2].1.handle(events()[0].clone()) else {
        panic!("install while installing must be refused")
    };
    assert!(r
        .to_string()
        .starts_with("an update is already in progress"));
}

#[test]
fn progress_alone_is_not_a_new_record() {
    let all = states();
    let installing = &all.iter().find(|(n, _)| *n == "installing").unwrap().1;
    let Step::Next { state: moved, .. } = installing.handle(Event::Progress {
        percent: 41,
        step: "Copying image to rootfs.1".into(),
    }) else {
        panic!("progress refused while installing")
    };
    assert_ne!(&moved, installing, "the view must see the progress");
    assert!(moved.same_record(installing));
    // Anything else is a new record: every other state, and an install
    // of another bundle or in another boot.
    for (name, s) in &all {
        assert_eq!(s.same_record(installing), *name == "installing", "{name}");
        assert!(s.same_record(s), "{name}");
    }
    let State::Installing {
        bundle,
        from_slot,
        percent,
        step,
        ..
    } = installing.clone()
    else {
        unreachable!()
    };
    let other_boot = State::Installing {
        bundle,
        from_slot,
        boot_id: "b9".into(),
        percent,
        step,
    };
    assert!(!other_boot.same_record(installing));
}

#[test]
fn forced_version_only_while_installing() {
    let mut b = bundle("0.1.0+20250101.000000");
    b.force = true;
    let staged = State::Staged {
        bundle: b.clone(),
        from_slot: "A".into(),
        boot_id: "b1".into(),
    };
    assert_eq!(staged.forced_version(), Some("0.1.0+20250101.000000"));
    let Step::Next {
        state: installing, ..
    } = staged.handle(Event::InstallStarted)
    else {
        panic!()
    };
    assert_eq!(installing.forced_version(), Some("0.1.0+20250101.000000"));
    let Step::Next {
        state: installed, ..
    } = installing.handle(Event::Completed(Ok("B".into())))
    else {
        panic!()
    };
    assert_eq!(installed.forced_version(), None);
    b.force = false;
    assert_eq!(
        State::Staged {
            bundle: b,
            from_slot: "A".into(),
            boot_id: "b1".into()
        }
        .forced_version(),
        None
    );
}

#[test]
fn a_whole_update_and_a_rollback() {
    let b = bundle("0.2.0+20250301.000000");
    let mut s = State::Idle;
    let mut all = Vec::new();
    for e in [
        Event::Booted {
            slot: "A".into(),
            boot_id: "b1".into(),
        },
        Event::InstallRequested {
            bundle: b.clone(),
            booted_slot: "A".into(),
            boot_id: "b1".into(),
        },
        Event::InstallStarted,
        Event::Progress {
            percent: 130,
            step: "done".into(),
        },
        Event::Completed(Ok("B".into())),
        booted("B", "b2"),
        Event::HealthOk,
        // A late failure report cannot undo the confirmation.
        Event::HealthFailed {
            reason: "late".into(),
        },
    ] {
        if let Step::Next { state, actions } = s.handle(e) {
            if let State::Installing { percent, .. } = &state {
                assert!(*percent <= 100);
            }
            s = state;
            all.extend(actions);
        }
    }
    assert_eq!(
        s,
        State::Confirmed {
            bundle: b.clone(),
            slot: "B".into()
        }
    );
    assert!(all.contains(&Action::MarkGood { slot: "B".into() }));
    assert!(!all
        .iter()
        .any(|a| matches!(a, Action::MarkBad { .. } | Action::Reboot)));

    // The next update fails its health check on A and goes back to B.
    let Step::Next { state: s, .. } = s.handle(Event::InstallRequested {
        bundle: b.clone(),
        booted_slot: "B".into(),
        boot_id: "b2".into(),
    }) else {
        panic!()
    };
    let Step::Next { state: s, .. } = s.handle(Event::Completed(Ok("A".into()))) else {
        panic!()
    };
    let Step::Next { state: s, .. } = s.handle(booted("A", "b3")) else {
        panic!()
    };
    let Step::Next { state: s, actions } = s.handle(Event::DeadlinePassed) else {
        panic!()
    };
    assert_eq!(actions[0], Action::MarkBad { slot: "A".into() });
    assert_eq!(actions.last(), Some(&Action::Reboot));
    assert!(matches!(&s, State::RolledBack { failed_slot, .. } if failed_slot == "A"));
    assert!(matches!(s.handle(booted("B", "b4")), Step::Ignored(_)));
}

#[test]
fn the_operators_rollback_is_recorded_before_the_reboot_and_settles() {
    let all = states();
    let confirmed = State::Confirmed {
        bundle: bundle("0.2.0+20250301.000000"),
        slot: "B".into(),
    };
    let Step::Next {
        state: asked,
        actions,
    } = confirmed.handle(Event::RollbackRequested {
        rollback: back_to_a(),
        boot_id: "b2".into(),
    })
    else {
        panic!("rollback from a confirmed slot refused")
    };
    // Saved first (the driver persists a new state before its actions),
    // then A made active, then the reboot.
    assert_eq!(
        actions,
        [Action::MarkActive { slot: "A".into() }, Action::Reboot]
    );
    assert_eq!(asked.name(), "rolling-back");
    assert_eq!(
        asked.reason(),
        "the operator asked to roll back from slot B (version 0.2.0+20250301.000000) \
         to slot A (version unknown) at 2025-12-02T01:00:00Z; slot A boots next"
    );
    // A power cut before RAUC's mark or the reboot: the saved record is
    // all there is, and it survives a round trip through JSON.
    let json = serde_json::to_string(&asked).unwrap();
    let asked: State = serde_json::from_str(&json).unwrap();
    // A daemon restart in the same boot changes nothing.
    assert!(matches!(asked.handle(booted("B", "b2")), Step::Ignored(_)));
    // RAUC refused to make A active: back to the confirmed record.
    assert!(matches!(
        asked.handle(Event::RollbackNotStarted { reason: "no".into() }),
        Step::Next { state, actions } if state == confirmed && actions.is_empty()
    ));
    // The next boot in slot A settles it.
    let Step::Next {
        state: done,
        actions,
    } = asked.handle(booted("A", "b3"))
    else {
        panic!()
    };
    assert_eq!(done.name(), "rolled-back-by-operator");
    assert_eq!(
        done.reason(),
        "the operator rolled back from slot B (version 0.2.0+20250301.000000) \
         to slot A (version unknown) at 2025-12-02T01:00:00Z"
    );
    assert_eq!(
        actions,
        [Action::Report(Report::RolledBackByOperator(back_to_a()))]
    );
    assert!(matches!(done.handle(booted("A", "b4")), Step::Ignored(_)));
    // A boot back in slot B: the rollback did not take, and B is still
    // the confirmed update (never marked bad).
    let Step::Next {
        state: back,
        actions,
    } = asked.handle(booted("B", "b3"))
    else {
        panic!()
    };
    assert_eq!(back, confirmed);
    assert!(matches!(
        actions.as_slice(),
        [Action::Report(Report::RollbackDidNotTake { booted, .. })] if booted == "B"
    ));
    // A second request while one waits for its reboot is refused.
    let Step::Refused(r) = asked.handle(Event::RollbackRequested {
        rollback: back_to_a(),
        boot_id: "b2".into(),
    }) else {
        panic!()
    };
    assert_eq!(r.to_string(), "a rollback to slot A waits for its reboot");
    // An automatic rollback keeps its own name and reason.
    let auto = &all.iter().find(|(n, _)| *n == "rolled-back").unwrap().1;
    assert_eq!(auto.name(), "rolled-back");
    assert!(!auto.reason().contains("operator"));
}

fn arb_event() -> impl Strategy<Value = Event> {
    let slot = prop_oneof![Just("A".to_owned()), Just("B".to_owned())];
    let boot = (1u8..5).prop_map(|n| format!("b{n}"));
    prop_oneof![
        (slot.clone(), boot.clone()).prop_map(|(from, b)| Event::RollbackRequested {
            rollback: OperatorRollback {
                to_slot: if from == "A" { "B" } else { "A" }.into(),
                from_slot: from,
                ..back_to_a()
            },
            boot_id: b,
        }),
        Just(Event::RollbackNotStarted {
            reason: "refused".into()
        }),
        (slot.clone(), boot.clone(), any::<bool>()).prop_map(|(s, b, force)| {
            let mut bundle = bundle("0.3.0+20250401.000000");
            bundle.force = force;
            Event::InstallRequested {
                bundle,
                booted_slot: s,
                boot_id: b,
            }
        }),
        Just(Event::InstallStarted),
        Just(Event::InstallNotStarted {
            reason: "busy".into()
        }),
        (-5i32..120).prop_map(|p| Event::Progress {
            percent: p,
            step: "x".into()
        }),
        slot.clone().prop_map(|s| Event::Completed(Ok(s))),
        Just(Event::Completed(Err("error".into()))),
        (slot, boot).prop_map(|(s, b)| Event::Booted {
            slot: s,
            boot_id: b
        }),
        Just(Event::HealthOk),
        Just(Event::HealthFailed {
            reason: "down".into()
        }),
        Just(Event::DeadlinePassed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_event_sequences_keep_the_invariants(events in proptest::collection::vec(arb_event(), 1..40)) {
        let mut s = State::Idle;
        let mut reboots_since_install = 0;
        for e in events {
            let was_confirmed = matches!(s, State::Confirmed { .. });
            let protected = known_good(&s);
            // An operator's request (install or rollback) starts the
            // count again.
            if matches!(e, Event::InstallRequested { .. } | Event::RollbackRequested { .. }) {
                reboots_since_install = 0;
            }
            let asked = matches!(e, Event::RollbackRequested { .. });
            match s.handle(e.clone()) {
                Step::Ignored(_) => {}
                Step::Refused(_) => {
                    let refusable = matches!(
                        s,
                        State::Staged { .. } | State::Installing { .. } | State::BootedUnconfirmed { .. }
                            | State::RollingBack { .. }
                    ) || (asked && matches!(s, State::Installed { .. }));
                    prop_assert!(refusable, "refused in {}", s.name());
                }
                Step::Next { state, actions } => {
                    for a in &actions {
                        match a {
                            Action::MarkBad { slot } => {
                                prop_assert!(!was_confirmed, "confirmed, then {:?}", e);
                                prop_assert_ne!(Some(slot), protected.as_ref());
                            }
                            Action::Reboot => {
                                prop_assert!(!was_confirmed || asked);
                                reboots_since_install += 1;
                            }
                            Action::MarkActive { .. } => prop_assert!(asked),
                            Action::StartInstall { .. } => {
                                let staged = matches!(state, State::Staged { .. });
                                prop_assert!(staged, "install started into {}", state.name());
                            }
                            _ => {}
                        }
                    }
                    prop_assert!(reboots_since_install <= 1 + MAX_ROLLBACK_REBOOTS as usize);
                    if let State::Installing { percent, .. } = &state {
                        prop_assert!(*percent <= 100);
                    }
                    let json = serde_json::to_string(&state).unwrap();
                    prop_assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state.clone());
                    s = state;
                }
            }
        }
    }
}
