//! Whether a bundle may be installed here: the file (a regular file,
//! under the size cap), and, once RAUC has checked its signature and
//! read its manifest, the compatible and the version policy
//! (`skytime_ota::version`). Pure decisions apart from the file's
//! metadata; RAUC's `InspectBundle` is the caller's.

use skytime_api::{ApiError, BundleReport};
use skytime_ota::rauc::BundleInfo;
use skytime_ota::version::{check_upgrade, Refusal, Version};
use std::path::Path;

/// Checks the argument before RAUC sees it: an absolute path to a regular
/// file of at most `max` bytes.
pub fn check_file(path: &str, max: u64) -> Result<(), ApiError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ApiError::InvalidArgs(format!(
            "the bundle path {path:?} is not absolute"
        )));
    }
    let meta = std::fs::metadata(p)
        .map_err(|e| ApiError::InvalidArgs(format!("cannot read the bundle {path}: {e}")))?;
    if !meta.is_file() {
        return Err(ApiError::InvalidArgs(format!(
            "the bundle {path} is not a regular file"
        )));
    }
    if meta.len() > max {
        return Err(ApiError::BundleRejected(format!(
            "the bundle {path} is {} bytes; [update] max_bundle_mib allows {max}",
            meta.len()
        )));
    }
    Ok(())
}

/// The report for a bundle RAUC accepted (`info`) on a system of
/// `compatible` running `running` (or why its version is unknown).
/// `Err` when it may not be installed: another compatible, no version,
/// or (without `force`) not newer than what runs.
pub fn assess(
    path: &str,
    info: &BundleInfo,
    compatible: &str,
    running: Result<&Version, &str>,
    force: bool,
) -> Result<BundleReport, ApiError> {
    if info.compatible != compatible {
        return Err(ApiError::BundleRejected(format!(
            "bundle {path} is for {:?}, this system is {compatible:?}",
            info.compatible
        )));
    }
    let version = info.version.clone().ok_or_else(|| {
        ApiError::BundleRejected(format!("bundle {path} has no version in its manifest"))
    })?;
    let mut report = BundleReport {
        path: path.to_owned(),
        compatible: info.compatible.clone(),
        version: version.clone(),
        build: info.build.clone(),
        description: info.description.clone(),
        format: info.format.clone(),
        manifest_hash: info.manifest_hash.clone(),
        running_version: running.ok().map(ToString::to_string),
        policy: String::new(),
        installable: false,
    };
    // How it compares, whatever the operator asked.
    report.policy = match check_upgrade(&version, running, false) {
        Ok(_) => "upgrade",
        Err(Refusal::Same { .. }) => "same",
        Err(Refusal::Older { .. }) => "older",
        Err(Refusal::UnknownRunning(_)) => "unknown",
        Err(Refusal::BadBundleVersion(e)) => {
            return Err(ApiError::BundleRejected(format!(
                "bundle {path} has no valid version: {e}"
            )))
        }
    }
    .to_owned();
    report.installable = report.policy == "upgrade";
    match check_upgrade(&version, running, force) {
        Ok(_) => Ok(report),
        Err(e) => Err(ApiError::Downgrade(format!("{path}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(compatible: &str, version: Option<&str>) -> BundleInfo {
        BundleInfo {
            manifest_hash: "ab".repeat(32),
            compatible: compatible.into(),
            version: version.map(Into::into),
            description: None,
            build: Some("b".into()),
            format: "plain".into(),
            hooks: vec![],
            images: vec![],
        }
    }

    const RUNNING: &str = "0.2.0+20250301.000000";

    #[test]
    fn compatible_version_and_force() {
        let running: Version = RUNNING.parse().unwrap();
        let r = Ok(&running);
        let newer = info("skytime-rpi4", Some("0.3.0+20250401.120000"));
        let rep = assess("/b", &newer, "skytime-rpi4", r, false).unwrap();
        assert_eq!((rep.policy.as_str(), rep.installable), ("upgrade", true));
        assert_eq!(rep.running_version.as_deref(), Some(RUNNING));

        let e = assess("/b", &newer, "other", r, true).unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.BundleRejected");
        assert!(e.message().contains("\"other\""), "{e}");

        let older = info("skytime-rpi4", Some("0.1.0+20250101.000000"));
        let e = assess("/b", &older, "skytime-rpi4", r, false).unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.Downgrade");
        assert!(e.message().contains("force"), "{e}");
        let rep = assess("/b", &older, "skytime-rpi4", r, true).unwrap();
        assert_eq!((rep.policy.as_str(), rep.installable), ("older", false));

        let same = info("skytime-rpi4", Some(RUNNING));
        let e = assess("/b", &same, "skytime-rpi4", r, false).unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.Downgrade");

        let e = assess("/b", &info("skytime-rpi4", None), "skytime-rpi4", r, true).unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.BundleRejected");
        let e = assess(
            "/b",
            &info("skytime-rpi4", Some("1.0")),
            "skytime-rpi4",
            r,
            true,
        )
        .unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.BundleRejected");

        // Unknown running version: only with force.
        let e = assess("/b", &newer, "skytime-rpi4", Err("no os-release"), false).unwrap_err();
        assert_eq!(e.name(), "org.skytime.Error.Downgrade");
        let rep = assess("/b", &newer, "skytime-rpi4", Err("no os-release"), true).unwrap();
        assert_eq!(rep.policy, "unknown");
    }

    #[test]
    fn the_file_is_checked_before_rauc_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.raucb");
        std::fs::write(&f, vec![0u8; 2048]).unwrap();
        let p = f.to_str().unwrap();
        check_file(p, 2048).unwrap();
        assert_eq!(
            check_file(p, 2047).unwrap_err().name(),
            "org.skytime.Error.BundleRejected"
        );
        for bad in [
            "relative.raucb",
            "/nonexistent/x.raucb",
            dir.path().to_str().unwrap(),
        ] {
            assert_eq!(
                check_file(bad, 1 << 30).unwrap_err().name(),
                "org.freedesktop.DBus.Error.InvalidArgs",
                "{bad}"
            );
        }
    }
}
