//! The gateway's systemd units: socket activation on TCP 443, the
//! sandbox, `systemd-analyze security` (offline, on the file) at most
//! 2.0 (the README records the score), and the real gateway started the
//! way systemd starts it: `systemd-socket-activate` holds port 443 (as
//! root, in a network namespace of the test's own) and hands it to
//! skytime-mgmtd running as user `skytime-mgmt` with no capability at
//! all, which then serves HTTPS on it and reads skytimed over D-Bus.

use skytime_tests::dbus::{start_daemon, PrivateBus};
use skytime_tests::mgmt::{ensure_gateway_user, Ca, Gateway, Usage};
use skytime_tests::{bin, require_program, run_bounded, systemd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../daemon/mgmtd/dist")
        .join(name)
}

fn get(name: &str, key: &str) -> Vec<String> {
    systemd::get(&dist(name), key)
}

#[test]
fn units_activate_on_443_with_no_capability_and_the_sandbox() {
    assert_eq!(get("skytime-mgmtd.socket", "ListenStream"), ["443"]);
    assert_eq!(
        get("skytime-mgmtd.socket", "ConditionPathExists"),
        ["/var/lib/skytime-mgmt/enrolled.toml"],
        "off until an operator is enrolled"
    );
    let unit = "skytime-mgmtd.service";
    for (key, want) in [
        ("User", "skytime-mgmt"),
        ("SupplementaryGroups", "skytime-admin"),
        ("StateDirectory", "skytime-mgmt"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateDevices", "yes"),
        ("ProtectClock", "yes"),
        // AF_NETLINK: the interfaces' addresses the certificate names.
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        ),
        ("RestartPreventExitStatus", "78"),
        ("Requires", "skytime-mgmtd.socket"),
    ] {
        assert_eq!(get(unit, key), vec![want.to_owned()], "{key}");
    }
    let sysusers = std::fs::read_to_string(dist("skytime-mgmt.sysusers")).unwrap();
    assert!(
        sysusers.contains("m skytime-mgmt skytime-admin"),
        "{sysusers}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let (passed, score, text) = systemd::security_score(&dist("skytime-mgmtd.service"), 2.0);
    assert!(passed && score <= 2.0, "{score}\n{text}");
}

#[test]
fn the_gateway_serves_port_443_as_its_user_without_capabilities() {
    ensure_gateway_user();
    let activate = require_program("systemd-socket-activate");
    let bus = PrivateBus::start(&[]);
    let daemon = start_daemon(
        &bus,
        skytime_tests::dbus::initialized_dir(),
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nlocal_stratum = 10\n[clock]\nsteer = false\n[dbus]\nbus = \"system\"\n",
    );
    let ca = Ca::new("skytime test operators");
    let reader = ca.client("reader", 2100, Usage::ClientAuth);
    // The gateway's directory, owned by its user as StateDirectory= makes it.
    let dir = Gateway::prepare(
        &bus.address,
        "anonymous_read = true\n",
        &[("skytime-read-ca.pem", ca.pem.cert.as_str())],
    );
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("data");
    assert!(Command::new("chown")
        .args(["-R", "skytime-mgmt:skytime-mgmt"])
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let files = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        files.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (c, k) = reader.write(files.path(), "reader");
    let log = dir.path().join("gw.log");
    let script = format!(
        "ip link set lo up\n\
         export DBUS_SYSTEM_BUS_ADDRESS='{addr}'\n\
         {activate} -l 127.0.0.1:443 -- setpriv --reuid skytime-mgmt --regid skytime-mgmt --init-groups \
           --inh-caps -all --bounding-set -all --no-new-privs -- {gw} --config {conf} 2>{log} &\n\
         act=$!\n\
         # Without --accept it execs the gateway in its own process at the\n\
         # first connection.\n\
         for i in $(seq 100); do curl -sk -o /dev/null https://127.0.0.1:443/ && break; sleep 0.1; done\n\
         curl -sS --fail --cacert {cert} --cert {c} --key {k} https://127.0.0.1:443/api/v1/Tracking/properties\n\
         echo\n\
         grep -E '^(Uid|CapEff|CapBnd|CapPrm)' /proc/$act/status\n\
         kill $act\nwait $act\necho exit=$?\n",
        addr = bus.address,
        activate = activate.display(),
        gw = bin("skytime-mgmtd").display(),
        conf = dir.path().join("gw.toml").display(),
        log = log.display(),
        cert = data.join("server-cert.pem").display(),
        c = c.display(),
        k = k.display(),
    );
    let out = run_bounded(
        Command::new("unshare").args(["-n", "sh", "-c", &script]),
        Duration::from_secs(60),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let gw_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("\"Stratum\": 10"),
        "no answer on port 443:\n{text}\n{gw_log}\n{}",
        daemon.log()
    );
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "skytime-mgmt"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains(&format!("Uid:\t{}", uid.trim())),
        "not user skytime-mgmt:\n{text}"
    );
    assert!(
        text.contains("CapEff:\t0000000000000000") && text.contains("CapBnd:\t0000000000000000"),
        "{text}"
    );
    assert!(
        gw_log.contains("listening address=127.0.0.1:443"),
        "{gw_log}"
    );
}
