//! The record of an operator's rollback: which slots, which versions,
//! when; and how the status says it.

use serde::{Deserialize, Serialize};

/// An operator's rollback: from the running slot to the other one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRollback {
    /// The slot left (bootname), running when it was asked.
    pub from_slot: String,
    /// Its version, when known.
    pub from_version: Option<String>,
    /// The slot gone back to (bootname).
    pub to_slot: String,
    /// Its version, when known (a slot flashed with the image has no
    /// install record).
    pub to_version: Option<String>,
    /// When it was asked, Unix seconds (UTC).
    pub at: i64,
}

impl OperatorRollback {
    /// "from slot B (version X) to slot A (version Y) at 2026-12-02T01:00:00Z".
    pub fn describe(&self) -> String {
        let slot = |name: &str, version: &Option<String>| match version {
            Some(v) => format!("slot {name} (version {v})"),
            None => format!("slot {name} (version unknown)"),
        };
        format!(
            "from {} to {} at {}",
            slot(&self.from_slot, &self.from_version),
            slot(&self.to_slot, &self.to_version),
            utc(self.at)
        )
    }
}

/// Unix seconds as an RFC 3339 UTC time.
fn utc(secs: i64) -> String {
    let (y, mo, d) = skytime_refclock::gpstime::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}
