//! The `install-check` decision: may this bundle be installed here?
//!
//! RAUC runs the bundle's hook with `install-check` after it verified the
//! signature and before it writes anything; with the hook present RAUC
//! skips its own compatible check, so the hook makes it. A bundle is
//! refused when:
//!
//! 1. its compatible is not the system's (never forceable);
//! 2. the manifest beside the hook does not say what RAUC said (a bundle
//!    assembled by hand);
//! 3. it lacks the root file system or the boot files (a new root with
//!    the old kernel would not find its modules);
//! 4. the version policy ([`crate::version::check_upgrade`]) refuses it and
//!    the operator did not force this version.
//!
//! How "force" reaches the hook: RAUC 1.13's `InstallBundle` accepts only
//! `ignore-compatible`, `ignore-version-limit`, `transaction-id` and TLS
//! options, and passes none of them to an `install-check` hook. So skytimed
//! records the forced version in the update state ([`crate::state`],
//! `Staged`/`Installing` with `force`) *before* it calls RAUC, and the hook
//! reads that file: a force applies to exactly the version the operator
//! forced, for the install in flight, and a bundle installed by any other
//! route (`rauc install` on a console) gets the plain policy.
//! `ignore-version-limit` stays for RAUC's own `min-bundle-version`: the
//! hard floor is not lifted by an operator's force.
//!
//! The running system's version is `IMAGE_VERSION` in `/etc/os-release`
//! (os-release(5): "the version of the OS image").

use crate::hook_env::BundleEnv;
use crate::manifest::Manifest;
use crate::version::{self, Version};

/// Why a bundle is refused; the message is the hook's last stderr line,
/// which RAUC shows as "Bundle rejected: Hook returned: '...'".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Built for another device.
    #[error("bundle is for {bundle:?}, this system is {system:?}")]
    Compatible {
        /// The bundle's compatible.
        bundle: String,
        /// The system's.
        system: String,
    },
    /// The manifest read beside the hook disagrees with RAUC's.
    #[error("bundle manifest disagrees with RAUC about its {what}")]
    ManifestMismatch {
        /// Which field.
        what: &'static str,
    },
    /// An image every skytime bundle has is missing.
    #[error("bundle lacks the {0} image; a skytime bundle carries the root file system and the boot files together")]
    MissingImage(&'static str),
    /// The version policy refuses it.
    #[error("{0}")]
    Version(#[from] version::Refusal),
}

/// The running system's version from os-release text (`IMAGE_VERSION=`,
/// optionally quoted); `Err` says why there is none.
pub fn running_version(os_release: &str) -> Result<Version, String> {
    let raw = os_release
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IMAGE_VERSION="))
        .next_back()
        .ok_or_else(|| "os-release has no IMAGE_VERSION".to_owned())?;
    let value = raw
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(raw);
    value
        .parse()
        .map_err(|e: version::VersionError| format!("os-release IMAGE_VERSION: {e}"))
}

/// The decision. `running` is the running system's version (or why it is
/// unknown); `forced` the version the operator forced, if any. Returns the
/// bundle's version when it may be installed.
pub fn check(
    env: &BundleEnv,
    manifest: &Manifest,
    running: Result<&Version, &str>,
    forced: Option<&str>,
) -> Result<Version, Rejection> {
    if env.manifest_compatible != env.system_compatible {
        return Err(Rejection::Compatible {
            bundle: env.manifest_compatible.clone(),
            system: env.system_compatible.clone(),
        });
    }
    if manifest.update.compatible != env.manifest_compatible {
        return Err(Rejection::ManifestMismatch { what: "compatible" });
    }
    if manifest.update.version != env.manifest_version {
        return Err(Rejection::ManifestMismatch { what: "version" });
    }
    if manifest.image("rootfs").is_none() {
        return Err(Rejection::MissingImage("rootfs"));
    }
    match manifest.image("bootfiles") {
        Some(i) if i.hooks.install => {}
        _ => return Err(Rejection::MissingImage("bootfiles (hooks=install)")),
    }
    let bundle_version = env.manifest_version.as_deref().unwrap_or("");
    let force = forced.is_some_and(|f| f == bundle_version);
    Ok(version::check_upgrade(bundle_version, running, force)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(compatible: &str, version: &str) -> BundleEnv {
        BundleEnv {
            system_compatible: "skytime-rpi4".into(),
            system_variant: None,
            manifest_compatible: compatible.into(),
            manifest_version: Some(version.into()),
            manifest_build: None,
            mount_prefix: PathBuf::from("/run/rauc"),
        }
    }

    fn manifest(compatible: &str, version: &str) -> Manifest {
        include_str!("../manifest.raucm.in")
            .replace("@VERSION@", version)
            .replace("@FORMAT@", "verity")
            .replace("@BUILD@", "test")
            .replace("@COMPATIBLE@", compatible)
            .parse()
            .unwrap()
    }

    const RUNNING: &str = "0.2.0+20250301.000000";

    fn decide(compatible: &str, version: &str, forced: Option<&str>) -> Result<Version, Rejection> {
        let running: Version = RUNNING.parse().unwrap();
        check(
            &env(compatible, version),
            &manifest(compatible, version),
            Ok(&running),
            forced,
        )
    }

    #[test]
    fn newer_passes_older_and_equal_need_force_for_that_version() {
        assert!(decide("skytime-rpi4", "0.3.0+20250401.000000", None).is_ok());
        let e = decide("skytime-rpi4", "0.1.0+20250101.000000", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bundle version 0.1.0+20250101.000000 is older than the running system's 0.2.0+20250301.000000; force the install to downgrade"
        );
        assert!(decide("skytime-rpi4", RUNNING, None).is_err());
        assert!(decide(
            "skytime-rpi4",
            "0.1.0+20250101.000000",
            Some("0.1.0+20250101.000000")
        )
        .is_ok());
        assert!(decide("skytime-rpi4", RUNNING, Some(RUNNING)).is_ok());
        // A force for another version does not apply.
        assert!(decide(
            "skytime-rpi4",
            "0.1.0+20250101.000000",
            Some("0.1.1+20250101.000000")
        )
        .is_err());
    }

    #[test]
    fn compatible_is_never_forceable() {
        let v = "0.3.0+20250401.000000";
        let e = decide("other-board", v, Some(v)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bundle is for \"other-board\", this system is \"skytime-rpi4\""
        );
    }

    #[test]
    fn manifest_must_agree_and_carry_both_images() {
        let running: Version = RUNNING.parse().unwrap();
        let v = "0.3.0+20250401.000000";
        let e = check(
            &env("skytime-rpi4", v),
            &manifest("skytime-rpi4", "0.4.0+20250401.000000"),
            Ok(&running),
            None,
        );
        assert_eq!(
            e.unwrap_err(),
            Rejection::ManifestMismatch { what: "version" }
        );
        let mut m = manifest("skytime-rpi4", v);
        m.images.retain(|i| i.slot_class != "bootfiles");
        let e = check(&env("skytime-rpi4", v), &m, Ok(&running), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bundle lacks the bootfiles (hooks=install) image"),
            "{e}"
        );
        let mut m = manifest("skytime-rpi4", v);
        m.images.retain(|i| i.slot_class != "rootfs");
        assert_eq!(
            check(&env("skytime-rpi4", v), &m, Ok(&running), None).unwrap_err(),
            Rejection::MissingImage("rootfs")
        );
    }

    #[test]
    fn running_version_from_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nIMAGE_ID=skytime-rpi4\nIMAGE_VERSION=\"0.2.0+20250301.000000\"\n";
        assert_eq!(
            running_version(text).unwrap().to_string(),
            "0.2.0+20250301.000000"
        );
        assert_eq!(
            running_version("IMAGE_VERSION=0.2.0+20250301.000000\n")
                .unwrap()
                .to_string(),
            "0.2.0+20250301.000000"
        );
        assert_eq!(
            running_version("ID=debian\n").unwrap_err(),
            "os-release has no IMAGE_VERSION"
        );
        assert!(running_version("IMAGE_VERSION=2025\n")
            .unwrap_err()
            .starts_with("os-release IMAGE_VERSION: version \"2025\""));
        // Unknown running version: refused unless forced.
        let v = "0.3.0+20250401.000000";
        let e = check(
            &env("skytime-rpi4", v),
            &manifest("skytime-rpi4", v),
            Err("os-release has no IMAGE_VERSION"),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("running system's version is unknown"),
            "{e}"
        );
    }
}
