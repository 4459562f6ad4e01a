//! The systemd unit: Type=notify with a watchdog, the sandboxing the issue
//! asks for, and `systemd-analyze security` (offline, on the file) rating
//! it at most 3.0 ("OK"). The README records the score.

use skytime_tests::{require_program, run_bounded};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/skytimed/dist/skytimed.service")
}

/// `Key=value` settings of the unit, in order (comments dropped).
fn settings() -> Vec<(String, String)> {
    std::fs::read_to_string(unit_path())
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn get(key: &str) -> Vec<String> {
    settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn unit_is_a_watchdogged_notify_service_with_the_issues_sandbox() {
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("User", "skytime"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "skytime"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("AmbientCapabilities", "CAP_SYS_TIME CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_SYS_TIME CAP_NET_BIND_SERVICE"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert_eq!(get(key), vec![want.to_owned()], "{key}");
    }
    let watchdog = get("WatchdogSec");
    assert_eq!(watchdog.len(), 1, "WatchdogSec= must be set");
    let secs: u64 = watchdog[0].trim_end_matches('s').parse().unwrap();
    // Loops may be silent for 5 s before the pings stop (daemon.rs
    // MAX_SILENCE); the watchdog must allow more than that.
    assert!(secs > 5, "WatchdogSec={secs}");
    assert!(
        get("SystemCallFilter")
            .iter()
            .any(|v| v.contains("@system-service")),
        "SystemCallFilter"
    );
    assert!(
        get("ProtectClock").is_empty(),
        "setting the clock is the job"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let analyze = require_program("systemd-analyze");
    // --offline works on a unit file without a running systemd (252+);
    // --threshold makes it fail above 3.0 (exposure x 10).
    let out = run_bounded(
        Command::new(analyze)
            .args(["security", "--offline=true", "--no-pager", "--threshold=30"])
            .arg(unit_path()),
        Duration::from_secs(60),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score:\n{text}"));
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{overall}"));
    assert!(out.status.success() && score <= 3.0, "{overall}\n{text}");
}
