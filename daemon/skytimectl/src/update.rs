//! `skytimectl update`: the texts of status and check (following an
//! install is [`crate::follow`]'s).

use skytime_api::{BundleReport, UpdateProperties};

/// The status as text.
pub fn status(p: &UpdateProperties) -> String {
    let mut out = Vec::new();
    let state = match p.state.as_str() {
        "installed" => "installed (reboot pending)".to_owned(),
        "rolling-back" => "rolling-back (reboot pending)".to_owned(),
        s => s.to_owned(),
    };
    out.push(format!("Update state    : {state}"));
    if !p.bundle_version.is_empty() {
        // After the operator's rollback the version is the one left.
        let label = match p.state.as_str() {
            "rolling-back" | "rolled-back-by-operator" => "Version left    ",
            _ => "Bundle version  ",
        };
        out.push(format!("{label}: {}", p.bundle_version));
    }
    if !p.state_reason.is_empty() {
        out.push(format!("Reason          : {}", p.state_reason));
    }
    out.push(format!(
        "Running         : {} (slot {})",
        dash(&p.current_version),
        dash(&p.booted_slot)
    ));
    out.push(format!("Next boot       : slot {}", dash(&p.primary_slot)));
    out.push(format!(
        "RAUC            : {}",
        if p.available {
            "available"
        } else {
            "not available"
        }
    ));
    if p.operation == "installing" || p.state == "installing" {
        out.push(format!(
            "Progress        : {}% {}",
            p.progress_percent, p.progress_step
        ));
    }
    if !p.last_error.is_empty() {
        out.push(format!("Last error      : {}", p.last_error));
    }
    if !p.slots.is_empty() {
        out.push(String::new());
        out.push(format!(
            "{:<4} {:<9} {:<9} {:<5} {:<8} {:<24} {}",
            "Slot", "Name", "State", "Boot", "Install", "Version", "Installed at"
        ));
        for s in &p.slots {
            out.push(format!(
                "{:<4} {:<9} {:<9} {:<5} {:<8} {:<24} {}",
                s.bootname,
                s.name,
                s.state,
                dash(&s.boot_status),
                s.install_status.as_deref().unwrap_or("-"),
                s.bundle_version.as_deref().unwrap_or("-"),
                s.installed_at.as_deref().unwrap_or("-"),
            ));
        }
    }
    out.join("\n")
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A checked bundle as text.
pub fn bundle(b: &BundleReport) -> String {
    let verdict = match b.policy.as_str() {
        "upgrade" => "newer than the running system: installable",
        "same" => "the version already running: install with --force to write it again",
        "older" => "older than the running system: install with --force to downgrade",
        _ => "the running version is unknown: install with --force",
    };
    let mut out = vec![
        format!("Bundle          : {}", b.path),
        format!("Version         : {}", b.version),
        format!("Compatible      : {}", b.compatible),
        format!("Format          : {}", b.format),
        format!("Manifest hash   : {}", b.manifest_hash),
    ];
    if let Some(r) = &b.running_version {
        out.push(format!("Running version : {r}"));
    }
    out.push(format!("Policy          : {verdict}"));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_api::SlotReport;

    #[test]
    fn status_names_state_slots_and_versions() {
        let p = UpdateProperties {
            available: true,
            booted_slot: "A".into(),
            primary_slot: "B".into(),
            current_version: "0.2.0+20250301.000000".into(),
            state: "installed".into(),
            bundle_version: "0.3.0+20250401.120000".into(),
            slots: vec![SlotReport {
                name: "rootfs.1".into(),
                bootname: "B".into(),
                state: "inactive".into(),
                boot_status: "good".into(),
                install_status: Some("ok".into()),
                bundle_version: Some("0.3.0+20250401.120000".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = status(&p);
        assert!(
            text.contains("Update state    : installed (reboot pending)"),
            "{text}"
        );
        assert!(text.contains("Next boot       : slot B"), "{text}");
        assert!(text.contains("rootfs.1"), "{text}");
        assert!(!text.contains("Progress"), "{text}");
    }

    #[test]
    fn status_says_the_operator_rolled_back_from_which_slot_and_version() {
        let p = UpdateProperties {
            available: true,
            booted_slot: "A".into(),
            primary_slot: "A".into(),
            current_version: "0.2.0+20250301.000000".into(),
            state: "rolled-back-by-operator".into(),
            state_reason: "the operator rolled back from slot B (version 0.3.0+20250401.120000) \
                           to slot A (version unknown) at 2026-12-02T01:00:00Z"
                .into(),
            bundle_version: "0.3.0+20250401.120000".into(),
            ..Default::default()
        };
        let text = status(&p);
        assert!(
            text.contains("Update state    : rolled-back-by-operator\n"),
            "{text}"
        );
        assert!(
            text.contains("Version left    : 0.3.0+20250401.120000"),
            "{text}"
        );
        assert!(
            text.contains("Reason          : the operator rolled back from slot B (version 0.3.0+20250401.120000) to slot A"),
            "{text}"
        );
        let pending = status(&UpdateProperties {
            state: "rolling-back".into(),
            ..p
        });
        assert!(
            pending.contains("Update state    : rolling-back (reboot pending)"),
            "{pending}"
        );
    }
}
