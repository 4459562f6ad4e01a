//! The systemd unit: Type=notify with a watchdog, the sandboxing the issue
//! asks for, `systemd-analyze security` (offline, on the file) rating it
//! at most 3.0 ("OK"; the README records the score), and the real skytimed
//! serving port 123 and owning its bus name as user `skytime` with exactly
//! the unit's capabilities (no systemd runs here, so setpriv applies the
//! unit's User= and capability settings, in a network namespace of the
//! test's own).

use skytime_tests::dbus::{PrivateBus, BUS_NAME};
use skytime_tests::{bin, require_program, run_bounded, systemd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/skytimed/dist/skytimed.service")
}

fn get(key: &str) -> Vec<String> {
    systemd::get(&unit_path(), key)
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
        // AF_NETLINK: reading the interfaces' addresses for a re-issued
        // certificate (getifaddrs).
        (
            "RestrictAddressFamilies",
            "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        ),
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
    // systemd resolves DeviceAllow=char-GROUP when the unit starts: the
    // drivers of the USB receivers' groups must be loaded before.
    let (wants, after) = (get("Wants").join(" "), get("After").join(" "));
    for (group, module) in [("char-ttyUSB", "usbserial"), ("char-ttyACM", "cdc_acm")] {
        assert!(
            get("DeviceAllow").iter().any(|v| v.starts_with(group)),
            "DeviceAllow={group}"
        );
        let unit = format!("modprobe@{module}.service");
        assert!(
            wants.contains(&unit) && after.contains(&unit),
            "{group} needs {unit} in Wants= and After=: {wants} / {after}"
        );
    }
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let (passed, score, text) = systemd::security_score(&unit_path(), 3.0);
    assert!(passed && score <= 3.0, "{score}\n{text}");
}

/// Runs `script` in a private network namespace (loopback up), bounded.
fn in_netns(script: &str) -> (bool, String) {
    let out = run_bounded(
        Command::new("unshare").args(["-n", "sh", "-c", &format!("ip link set lo up\n{script}")]),
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn skytimed_runs_as_its_user_with_only_the_units_capabilities() {
    let bus = PrivateBus::start(&[]);
    // The unit's capabilities, in setpriv's spelling.
    let caps: Vec<String> = get("AmbientCapabilities")[0]
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(caps, ["+sys_time", "+net_bind_service"]);
    let caps = caps.join(",");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    assert!(Command::new("chown")
        .arg("skytime:skytime")
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let conf = dir.path().join("skytime.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = \"{}\"\n[ntp]\nlisten = [\"127.0.0.1:123\"]\nlocal_stratum = 10\n[clock]\nsteer = false\n[dbus]\nbus = \"system\"\n",
            data.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("skytimed.log");
    let script = format!(
        "export DBUS_SYSTEM_BUS_ADDRESS='{addr}'\n\
         setpriv --reuid skytime --regid skytime --init-groups --inh-caps {caps} --ambient-caps {caps} \
           --bounding-set -all,{caps} -- {skytimed} --config {conf} 2>{log} &\n\
         pid=$!\n\
         for i in $(seq 200); do grep -q 'skytimed ready' {log} && break; sleep 0.05; done\n\
         grep -E '^(Uid|CapEff|CapBnd|CapAmb)' /proc/$pid/status\n\
         {ntpdig} -j -t 3 127.0.0.1\necho\n\
         {ctl} --json tracking\n\
         kill $pid\nwait $pid\necho exit=$?\n",
        addr = bus.address,
        skytimed = bin("skytimed").display(),
        conf = conf.display(),
        log = log.display(),
        ntpdig = require_program("ntpdig").display(),
        ctl = bin("skytimectl").display(),
    );
    let (_, out) = in_netns(&script);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "skytime"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        out.contains(&format!("Uid:\t{}", uid.trim())),
        "not user skytime:\n{out}\n{log_text}"
    );
    // CAP_NET_BIND_SERVICE (bit 10) and CAP_SYS_TIME (bit 25), nothing else.
    assert!(out.contains("CapEff:\t0000000002000400"), "{out}");
    assert!(out.contains("CapBnd:\t0000000002000400"), "{out}");
    assert!(
        out.contains("\"stratum\":10"),
        "ntpdig got no answer on port 123:\n{out}\n{log_text}"
    );
    assert!(
        out.contains("\"Stratum\": 10"),
        "skytimectl could not read it over D-Bus:\n{out}\n{log_text}"
    );
    assert!(log_text.contains(BUS_NAME), "{log_text}");
    assert!(out.contains("exit=0"), "{out}\n{log_text}");

    // Without the capability the same start fails, saying what is missing.
    let script = format!(
        "setpriv --reuid skytime --regid skytime --init-groups --bounding-set -all -- {skytimed} --config {conf}\necho exit=$?\n",
        skytimed = bin("skytimed").display(),
        conf = conf.display(),
    );
    let (_, out) = in_netns(&script);
    assert!(
        out.contains("ports below 1024 need CAP_NET_BIND_SERVICE") && out.contains("exit=1"),
        "{out}"
    );
}
