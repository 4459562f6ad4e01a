//! systemd unit files as the tests read them (no systemd runs here): a
//! unit's `Key=value` settings, and `systemd-analyze security`'s score of
//! the file.

use crate::{require_program, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `Key=value` settings of a unit file, in order (comments dropped).
pub fn settings(unit: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(unit)
        .unwrap_or_else(|e| panic!("{}: {e}", unit.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every value `key` has in the unit.
pub fn get(unit: &Path, key: &str) -> Vec<String> {
    settings(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// `systemd-analyze security --offline=true` of the file (systemd 252+,
/// no running systemd needed), failing above `max` (exposure 0 to 10):
/// (passed, the overall exposure, the whole report).
pub fn security_score(unit: &Path, max: f64) -> (bool, f64, String) {
    let out = run_bounded(
        Command::new(require_program("systemd-analyze"))
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={}", (max * 10.0).round() as u32))
            .arg(unit),
        Duration::from_secs(60),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let score = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score:\n{text}"));
    (out.status.success(), score, text)
}
