//! The records of `org.skytime.Appliance1.Update`: the A/B slots, an
//! inspected bundle, and the interface's properties read together. Like
//! every record they are `a{sv}` dictionaries on D-Bus and JSON objects
//! with the same PascalCase keys.

use crate::record::record;

record! {
    /// One root slot as RAUC reports it (`GetSlotStatus`), in the
    /// `Update.Slots` property.
    pub struct SlotReport {
        /// RAUC's slot name (`rootfs.0`).
        pub name: String,
        /// The bootloader's name for it (`A`, `B`).
        pub bootname: String,
        /// "booted", "active" or "inactive".
        pub state: String,
        /// "good" or "bad" as the bootloader keeps it; empty when unknown.
        pub boot_status: String,
        /// The last install's outcome: "ok", "pending" (interrupted),
        /// "failed"; absent when never installed.
        pub install_status: Option<String>,
        /// The version of the bundle it holds.
        pub bundle_version: Option<String>,
        /// The bundle's build note.
        pub bundle_build: Option<String>,
        /// When it was installed (ISO 8601, RAUC's clock).
        pub installed_at: Option<String>,
        /// When it was last made primary.
        pub activated_at: Option<String>,
    }
}

crate::record::plain_field!(Vec<SlotReport>);

record! {
    /// A bundle as `Update.Check` and `Update.Install` report it: RAUC's
    /// `InspectBundle` (signature checked) plus the version policy.
    pub struct BundleReport {
        /// The file.
        pub path: String,
        /// The device it is built for (`skytime-rpi4`).
        pub compatible: String,
        /// Its version.
        pub version: String,
        /// Its build note.
        pub build: Option<String>,
        /// Its description.
        pub description: Option<String>,
        /// "plain" or "verity".
        pub format: String,
        /// SHA-256 of its manifest.
        pub manifest_hash: String,
        /// The running system's version (absent when unknown).
        pub running_version: Option<String>,
        /// "upgrade", "same" or "older": how it compares with what runs.
        pub policy: String,
        /// Whether it may be installed without force.
        pub installable: bool,
    }
}

record! {
    /// The `Update` interface's properties, read together (`GetAll`).
    pub struct UpdateProperties {
        /// Whether RAUC is on the bus; without it the methods fail with
        /// `org.skytime.Error.UpdateUnavailable`.
        pub available: bool,
        /// The bootname of the slot running (`A`).
        pub booted_slot: String,
        /// The bootname of the slot the bootloader boots next.
        pub primary_slot: String,
        /// Both root slots.
        pub slots: Vec<SlotReport>,
        /// The running system's version (os-release `IMAGE_VERSION`).
        pub current_version: String,
        /// The update state: "idle", "staged", "installing", "installed"
        /// (reboot pending), "booted-unconfirmed", "confirmed",
        /// "rolled-back" (the new slot failed), "rolling-back" (the
        /// operator's rollback, reboot pending), "rolled-back-by-operator",
        /// "failed".
        pub state: String,
        /// Why the state is "failed", "rolled-back", "rolling-back" or
        /// "rolled-back-by-operator" (from which slot and version to which,
        /// and when); that the operator's rollback did not take; empty
        /// otherwise.
        pub state_reason: String,
        /// The version of the update the state is about (after the
        /// operator's rollback, the version left); empty when idle.
        pub bundle_version: String,
        /// RAUC's operation: "idle" or "installing".
        pub operation: String,
        /// The install's progress, 0 to 100.
        pub progress_percent: u32,
        /// The install's current step, as RAUC names it.
        pub progress_step: String,
        /// RAUC's last error (empty when there was none).
        pub last_error: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use zbus::zvariant::{serialized::Context, to_bytes, OwnedValue, LE};

    fn round_trip<R: crate::Record>(r: &R) {
        let bytes = to_bytes(Context::new_dbus(LE, 0), r).unwrap();
        let back: R = bytes.deserialize().unwrap().0;
        assert_eq!(&back, r);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(&serde_json::from_value::<R>(json.clone()).unwrap(), r);
        let dict: HashMap<String, OwnedValue> = bytes.deserialize().unwrap().0;
        let mut keys: Vec<_> = dict.keys().cloned().collect();
        keys.sort();
        let jkeys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, jkeys);
    }

    fn slot() -> SlotReport {
        SlotReport {
            name: "rootfs.1".into(),
            bootname: "B".into(),
            state: "inactive".into(),
            boot_status: "good".into(),
            install_status: Some("ok".into()),
            bundle_version: Some("0.3.0+20250401.120000".into()),
            bundle_build: None,
            installed_at: Some("2025-04-01T12:00:00Z".into()),
            activated_at: None,
        }
    }

    #[test]
    fn update_records_round_trip_through_a_dictionary_and_json() {
        round_trip(&slot());
        round_trip(&BundleReport {
            path: "/var/lib/skytime/uploads/bundle.raucb".into(),
            compatible: "skytime-rpi4".into(),
            version: "0.3.0+20250401.120000".into(),
            build: Some("ci".into()),
            description: None,
            format: "verity".into(),
            manifest_hash: "ab".repeat(32),
            running_version: Some("0.2.0+20250301.000000".into()),
            policy: "upgrade".into(),
            installable: true,
        });
        let p = UpdateProperties {
            available: true,
            booted_slot: "A".into(),
            primary_slot: "B".into(),
            slots: vec![slot(), SlotReport::default()],
            current_version: "0.2.0+20250301.000000".into(),
            state: "installed".into(),
            progress_percent: 100,
            ..Default::default()
        };
        round_trip(&p);
        round_trip(&UpdateProperties::default());
        let dict: HashMap<String, OwnedValue> = to_bytes(Context::new_dbus(LE, 0), &p)
            .unwrap()
            .deserialize()
            .unwrap()
            .0;
        assert_eq!(dict["Slots"].value_signature().to_string(), "aa{sv}");
        assert_eq!(dict["ProgressPercent"].value_signature().to_string(), "u");
    }
}
