//! May the device go back to the other slot, sans I/O? `Rollback` makes
//! the other root slot primary and reboots, so it must hold a system that
//! ran: a slot RAUC installed completely, or the slot a confirmed update
//! came from (a slot flashed with the image has no install record).
//! Never while an install runs or waits for its reboot, never to a slot
//! the bootloader holds bad.

use skytime_api::ApiError;
use skytime_ota::rauc::SlotStatus;
use skytime_ota::state::State;

/// The slot to go back to, or why not.
pub fn target<'a>(
    state: &State,
    slots: &'a [SlotStatus],
    booted: &str,
) -> Result<&'a SlotStatus, ApiError> {
    match state {
        State::Staged { .. } | State::Installing { .. } => {
            return Err(ApiError::UpdateInProgress(
                "an install is running; roll back once it has completed".into(),
            ))
        }
        State::Installed { target_slot, .. } => {
            return Err(ApiError::Refused(format!(
                "slot {target_slot} was just installed and boots next; \
                 Rollback goes back to a slot that ran before"
            )))
        }
        State::RollingBack { rollback, .. } => {
            return Err(ApiError::UpdateInProgress(format!(
                "a rollback to slot {} waits for its reboot; \
                 use org.skytime.Appliance1.Power.Reboot to restart",
                rollback.to_slot
            )))
        }
        _ => {}
    }
    let other = slots
        .iter()
        .find(|s| s.class == "rootfs" && s.bootname.as_deref().is_some_and(|b| b != booted))
        .ok_or_else(|| ApiError::Refused("there is no other root slot".into()))?;
    let name = other.bootname.as_deref().unwrap_or_default();
    if other.boot_status.as_deref() != Some("good") {
        return Err(ApiError::Refused(format!(
            "slot {name} is not good (boot status {}); nothing to roll back to",
            other.boot_status.as_deref().unwrap_or("unknown")
        )));
    }
    let came_from_it = matches!(state, State::Confirmed { slot, .. } if slot == booted);
    if other.status.as_deref() != Some("ok") && !came_from_it {
        return Err(ApiError::Refused(format!(
            "slot {name} holds no completed install (status {}); nothing to roll back to",
            other.status.as_deref().unwrap_or("never installed")
        )));
    }
    Ok(other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_ota::state::Bundle;

    fn slot(bootname: &str, boot_status: &str, status: Option<&str>) -> SlotStatus {
        SlotStatus {
            name: format!("rootfs.{}", if bootname == "A" { 0 } else { 1 }),
            class: "rootfs".into(),
            bootname: Some(bootname.into()),
            boot_status: Some(boot_status.into()),
            status: status.map(Into::into),
            ..SlotStatus::default()
        }
    }

    fn bundle() -> Bundle {
        Bundle {
            source: "/b".into(),
            version: "0.3.0+20250401.120000".into(),
            manifest_hash: None,
            force: false,
            transaction: "t".into(),
        }
    }

    #[test]
    fn only_to_a_good_slot_that_ran() {
        let confirmed_b = State::Confirmed {
            bundle: bundle(),
            slot: "B".into(),
        };
        // A flashed slot A after a confirmed update to B: allowed.
        let slots = [slot("A", "good", None), slot("B", "good", Some("ok"))];
        assert_eq!(target(&confirmed_b, &slots, "B").unwrap().name, "rootfs.0");
        // A fresh device: slot B is "good" to the bootloader but empty.
        let fresh = [slot("A", "good", None), slot("B", "good", None)];
        let e = target(&State::Idle, &fresh, "A").unwrap_err();
        assert!(e.message().contains("slot B"), "{e}");
        // Installed by RAUC: allowed from any settled state.
        let slots2 = [slot("A", "good", Some("ok")), slot("B", "good", Some("ok"))];
        assert!(target(&State::Idle, &slots2, "B").is_ok());
        // Bad, or an interrupted install: refused.
        for (b, st) in [
            ("bad", Some("ok")),
            ("good", Some("pending")),
            ("good", Some("failed")),
        ] {
            let s = [slot("A", "good", Some("ok")), slot("B", b, st)];
            let e = target(&State::Idle, &s, "A").unwrap_err();
            assert_eq!(e.name(), "org.skytime.Error.Refused", "{b} {st:?}");
        }
        // Not while an install runs or waits for its reboot.
        let installing = State::Installing {
            bundle: bundle(),
            from_slot: "A".into(),
            boot_id: "x".into(),
            percent: 5,
            step: String::new(),
        };
        let e = target(&installing, &slots2, "A").unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.UpdateInProgress");
        let installed = State::Installed {
            bundle: bundle(),
            from_slot: "A".into(),
            target_slot: "B".into(),
            boot_id: "x".into(),
        };
        let e = target(&installed, &slots2, "A").unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.Refused");
        // Not twice before the reboot.
        let rolling = State::RollingBack {
            rollback: skytime_ota::state::OperatorRollback {
                from_slot: "B".into(),
                from_version: None,
                to_slot: "A".into(),
                to_version: None,
                at: 0,
            },
            boot_id: "x".into(),
            previous: Box::new(confirmed_b.clone()),
        };
        let e = target(&rolling, &slots, "B").unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.UpdateInProgress");
        assert!(e.message().contains("slot A waits for its reboot"), "{e}");
        // No other slot.
        assert!(target(&State::Idle, &slots2[..1], "A").is_err());
    }
}
