//! The `[update]` section of skytime.toml: where the update state lives,
//! how long a new slot has to prove itself, and the limits on bundles.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The `[update]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// Offer `org.skytime.Appliance1.Update` with RAUC behind it. When
    /// false the interface still exists and answers UpdateUnavailable.
    pub enabled: bool,
    /// The update state document on the data partition. RAUC's
    /// install-check hook reads it too (`SKYTIME_OTA_STATE`), to learn
    /// the version an operator forced.
    pub state_file: PathBuf,
    /// The running system's version is `IMAGE_VERSION` here.
    pub os_release: PathBuf,
    /// Seconds a newly booted slot has to serve time (NTP answering,
    /// NTS-KE accepting, the bus name owned) before it is marked bad and
    /// the device reboots into the previous slot; 30 to 3600. Counted
    /// from the boot (restarts of skytimed do not extend it), with at
    /// least 30 s for each start.
    #[serde(deserialize_with = "deadline")]
    pub health_deadline: f64,
    /// Reboot by itself once an install has completed (otherwise the
    /// operator calls `Update.Reboot`; the install's `reboot` option asks
    /// for it per install).
    pub reboot_after_install: bool,
    /// Largest bundle accepted, in MiB; 1 to 16384.
    #[serde(deserialize_with = "max_bundle")]
    pub max_bundle_mib: u64,
    /// Where `InstallFromUrl` downloads bundles (on the data partition;
    /// one bundle at a time).
    pub download_dir: PathBuf,
    /// PEM file of the CAs `InstallFromUrl` trusts for its HTTPS servers;
    /// unset: the system's CAs.
    pub url_ca_file: Option<PathBuf>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            state_file: PathBuf::from(skytime_ota::store::DEFAULT_PATH),
            os_release: PathBuf::from("/etc/os-release"),
            health_deadline: 300.0,
            reboot_after_install: false,
            max_bundle_mib: 2048,
            download_dir: PathBuf::from("/var/lib/skytime/ota/downloads"),
            url_ca_file: None,
        }
    }
}

impl UpdateConfig {
    /// [`health_deadline`](Self::health_deadline) as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.health_deadline)
    }

    /// [`max_bundle_mib`](Self::max_bundle_mib) in bytes.
    pub fn max_bundle_bytes(&self) -> u64 {
        self.max_bundle_mib << 20
    }
}

fn deadline<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(30.0..=3600.0).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "health_deadline {v} is out of range: use 30 to 3600 seconds"
        )));
    }
    Ok(v)
}

fn max_bundle<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(1..=16384).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "max_bundle_mib {v} is out of range: use 1 to 16384 MiB"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let c: UpdateConfig = toml::from_str("").unwrap();
        assert_eq!(c, UpdateConfig::default());
        let c: UpdateConfig = toml::from_str(
            "health_deadline = 60\nmax_bundle_mib = 512\nreboot_after_install = true",
        )
        .unwrap();
        assert_eq!(c.deadline(), Duration::from_secs(60));
        assert_eq!(c.max_bundle_bytes(), 512 << 20);
        for (text, says) in [
            ("health_deadline = 5", "health_deadline 5 is out of range"),
            ("health_deadline = 1e9", "health_deadline"),
            ("max_bundle_mib = 0", "max_bundle_mib 0 is out of range"),
            ("deadline = 60", "unknown field"),
        ] {
            let e = toml::from_str::<UpdateConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
