//! skytimectl against the real management API on a private dbus-daemon:
//! tables, JSON, and exit codes scripts can rely on.

#[path = "../../skytimed/tests/support/mod.rs"]
mod support;

use skytimed::dbus::{self, DbusConfig};
use std::process::Command;
use support::{make_cert, run_as, run_bounded, PrivateBus, TestBackend, ADMIN, UNPRIVILEGED};
use tokio_util::sync::CancellationToken;

const CTL: &str = env!("CARGO_BIN_EXE_skytimectl");

fn ctl(bus: &str, args: &[&str]) -> (i32, String, String) {
    let out = run_bounded(
        Command::new(CTL)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl_as(user: &str, bus: &str, args: &[&str]) -> (i32, String, String) {
    let out = run_as(user, CTL, args, &[("DBUS_SYSTEM_BUS_ADDRESS", bus)]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn not_running_is_exit_3_with_a_clear_message() {
    let bus = PrivateBus::start(&[]);
    let (code, _, err) = ctl(&bus.address, &["tracking"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("skytimed is not running"), "{err}");
    let (code, _, err) = ctl("unix:path=/nonexistent/socket", &["status"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn reads_writes_and_exit_codes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bus = PrivateBus::start(&[]);
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let backend = TestBackend::new(&data.path().join("data"));
    backend.stats.received(true);
    backend.stats.replied();
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    let _handle = rt
        .block_on(dbus::serve(
            &DbusConfig {
                bus: bus.address.clone(),
                ..DbusConfig::default()
            },
            backend.clone(),
            None,
            shutdown,
        ))
        .unwrap();
    let a = bus.address.as_str();

    let (code, out, err) = ctl_as(UNPRIVILEGED, a, &["tracking"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Reference ID    : 50505300 (PPS)")
            && out.contains("Stratum         : 1")
            && out.contains("Leap status     : Normal"),
        "{out}"
    );

    let (code, out, _) = ctl_as(UNPRIVILEGED, a, &["--json", "serverstats"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["NtpReceived"], 1);
    assert_eq!(v["NtpReplied"], 1);

    let (code, out, _) = ctl_as(UNPRIVILEGED, a, &["sources"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("MS") && lines[1].starts_with("=="),
        "{out}"
    );
    assert!(
        lines[2].contains("gps0") && lines[2].contains("fix 3d 9 sats") && lines[2].contains("377"),
        "{out}"
    );

    let (code, out, _) = ctl_as(UNPRIVILEGED, a, &["nts"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("first.example.test") && out.contains("SHA-256"),
        "{out}"
    );
    let (code, out, _) = ctl_as(UNPRIVILEGED, a, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("stratum 1, synchronised"), "{out}");

    // Writes: refused for a plain user (4), allowed for the admin group.
    let (code, _, err) = ctl_as(UNPRIVILEGED, a, &["keys", "rotate"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("access denied"), "{err}");
    let (code, out, err) = ctl_as(ADMIN, a, &["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("current key 2"), "{out}");

    // Invalid input: 5, and a file that cannot be read is 5 too.
    let bad = data.path().join("bad.toml");
    std::fs::write(&bad, "[ntp]\nlocal_stratum = 99\n").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, _, err) = ctl(a, &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("out of range") && err.contains("InvalidConfig"),
        "{err}"
    );
    let (code, _, err) = ctl(a, &["config", "apply", "/nonexistent.toml"]);
    assert_eq!(code, 5, "{err}");

    let good = data.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "data_dir = \"{}\"\n[nts]\nenabled = true\n[ntp]\nlisten = [\"127.0.0.1:11123\"]\n",
            data.path().join("data").display()
        ),
    )
    .unwrap();
    let (code, out, err) = ctl(a, &["config", "apply", good.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid") && out.contains("ntp.listen"), "{out}");
    let (code, out, err) = ctl(a, &["config", "apply", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("saved"), "{out}");

    let (cert, key) = make_cert("installed.example.test", 2100);
    let (c, k) = (data.path().join("c.pem"), data.path().join("k.pem"));
    std::fs::write(&c, &cert).unwrap();
    std::fs::write(&k, &key).unwrap();
    let (code, out, err) = ctl(
        a,
        &[
            "certificate",
            "install",
            c.to_str().unwrap(),
            k.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("installed.example.test"), "{out}");
    let (_, other) = make_cert("x", 2100);
    std::fs::write(&k, other).unwrap();
    let (code, _, err) = ctl(
        a,
        &[
            "--json",
            "certificate",
            "install",
            c.to_str().unwrap(),
            k.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 5, "{err}");

    // No logind on this bus: the power action fails with 1 and says why.
    let (code, _, err) = ctl(a, &["reboot"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("logind"), "{err}");
}

#[test]
fn completions_and_man_page_are_generated_without_a_daemon() {
    // No bus at all: generating must not try to connect.
    let none = "unix:path=/nonexistent/socket";
    let (code, man, err) = ctl(none, &["generate", "man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH skytimectl"),
        "{man}"
    );
    for sub in [
        "tracking",
        "sources",
        "certificate",
        "keys",
        "config",
        "reboot",
    ] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    assert!(man.contains("Exit codes"), "the exit codes are documented");
    // bash loads the completion and registers it for skytimectl.
    let (code, script, err) = ctl(none, &["generate", "bash"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skytimectl.bash");
    std::fs::write(&path, script).unwrap();
    let out = run_bounded(Command::new("bash").arg("-c").arg(format!(
        "source {} && complete -p skytimectl",
        path.display()
    )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("skytimectl"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish"] {
        let (code, script, err) = ctl(none, &["generate", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(script.contains("rotate"), "{shell}: {script}");
    }
    let (code, _, err) = ctl(none, &["generate", "tcsh"]);
    assert_eq!(code, 2, "bad command line: {err}");
}
