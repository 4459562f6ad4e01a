//! skytimectl against skytimed's D-Bus interfaces on a private
//! dbus-daemon, over a stand-in backend: what skytimectl sends, how it
//! prints the records (tables and JSON) and which exit code scripts get
//! for each answer. What the daemon does with the calls is proved with the
//! real daemon in `tests/tests/dbus_system.rs`.

use skytime_api::ApiError;
use skytime_tests::dbus::{make_cert, run, PrivateBus, ADMIN, UNPRIVILEGED};
use skytime_tests::run_bounded;
use skytime_tests::standin::{Call, StandIn};
use skytimed::dbus::{self, DbusConfig};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CTL: &str = env!("CARGO_BIN_EXE_skytimectl");

/// skytimectl `args` on `bus` as `user` (None: root): exit code, stdout,
/// stderr.
fn ctl(user: Option<&str>, bus: &str, args: &[&str]) -> (i32, String, String) {
    let r = run(
        user,
        Path::new(CTL),
        args,
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus)],
    );
    (r.code.unwrap_or(-1), r.stdout, r.stderr)
}

/// skytimed's interfaces over a stand-in on a private bus, until dropped.
struct Served {
    bus: PrivateBus,
    backend: Arc<StandIn>,
    _handle: dbus::DbusHandle,
    _shutdown: tokio_util::sync::DropGuard,
    _rt: tokio::runtime::Runtime,
}

fn serve() -> Served {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bus = PrivateBus::start(&[]);
    let backend = StandIn::example();
    let shutdown = CancellationToken::new();
    let handle = rt
        .block_on(dbus::serve(
            &DbusConfig {
                bus: bus.address.clone(),
                ..DbusConfig::default()
            },
            backend.clone(),
            None,
            shutdown.clone(),
        ))
        .unwrap();
    Served {
        bus,
        backend,
        _handle: handle,
        _shutdown: shutdown.drop_guard(),
        _rt: rt,
    }
}

/// A file the test users can read.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    p.display().to_string()
}

#[test]
fn not_running_is_exit_3_with_a_clear_message() {
    let bus = PrivateBus::start(&[]);
    let (code, _, err) = ctl(None, &bus.address, &["tracking"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("skytimed is not running"), "{err}");
    let (code, _, err) = ctl(None, "unix:path=/nonexistent/socket", &["status"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn records_print_like_chronyc_and_as_json() {
    let s = serve();
    let a = s.bus.address.as_str();

    let (code, out, err) = ctl(Some(UNPRIVILEGED), a, &["tracking"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Reference ID    : 50505300 (PPS)")
            && out.contains("Stratum         : 1")
            && out.contains("Leap status     : Normal"),
        "{out}"
    );
    // JSON keys are the D-Bus names, and the record comes back whole.
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["--json", "tracking"]);
    assert_eq!(code, 0);
    let t: skytime_api::TrackingReport = serde_json::from_str(&out).unwrap();
    assert_eq!(t, *s.backend.tracking.lock().unwrap());

    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["--json", "serverstats"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["NtpReceived"].as_u64(), v["NtpReplied"].as_u64()),
        (Some(2), Some(1))
    );

    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["sources"]);
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
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["sourcestats"]);
    assert!(
        code == 0 && out.contains("Freq Skew") && out.contains("gps0"),
        "{out}"
    );

    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["nts"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("first.example.test") && out.contains("SHA-256") && out.contains("00000007"),
        "{out}"
    );
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("stratum 1, synchronised"), "{out}");
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["--json", "status"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sources"][0]["GpsSatellitesUsed"], 9, "{v}");
    assert!(s.backend.calls().is_empty(), "reading wrote something");
}

#[test]
fn writes_send_what_they_say_and_exit_codes_follow_the_answer() {
    let s = serve();
    let a = s.bus.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Refused for a plain user (4): the bus policy stops it.
    let (code, _, err) = ctl(Some(UNPRIVILEGED), a, &["keys", "rotate"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(s.backend.calls().is_empty());
    let (code, out, err) = ctl(Some(ADMIN), a, &["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("current key 7"), "{out}");

    // The file's text goes to the daemon as it is.
    let text = "[ntp]\nlocal_stratum = 9\n";
    let good = file(dir.path(), "good.toml", text);
    let (code, out, err) = ctl(Some(ADMIN), a, &["config", "check", &good]);
    assert!(code == 0 && out.contains("valid"), "{out}{err}");
    let (code, out, err) = ctl(Some(ADMIN), a, &["config", "apply", &good]);
    assert!(
        code == 0 && out.contains("saved to /var/lib/skytime/skytime.toml"),
        "{out}{err}"
    );
    let (code, out, err) = ctl(None, a, &["config", "reload"]);
    assert!(code == 0 && out.contains("reloaded"), "{out}{err}");
    let (cert, key) = make_cert("installed.example.test", 2100);
    let (c, k) = (
        file(dir.path(), "c.pem", &cert),
        file(dir.path(), "k.pem", &key),
    );
    let (code, out, err) = ctl(None, a, &["certificate", "install", &c, &k]);
    assert!(
        code == 0 && out.contains("installed and in use"),
        "{out}{err}"
    );
    assert_eq!(
        s.backend.calls(),
        vec![
            Call::RotateKeys,
            Call::ApplyConfig {
                toml: text.into(),
                dry_run: true
            },
            Call::ApplyConfig {
                toml: text.into(),
                dry_run: false
            },
            Call::ReloadConfig,
            Call::InstallCertificate {
                certificate_pem: cert,
                private_key_pem: key
            },
        ]
    );

    // Each answer's exit code, with the daemon's message and error name.
    for (error, code_wanted) in [
        (ApiError::InvalidConfig("line 2: out of range".into()), 5),
        (ApiError::InvalidCertificate("does not belong".into()), 5),
        (ApiError::CertificateExpired("expired".into()), 5),
        (ApiError::InvalidArgs("not PEM".into()), 5),
        (ApiError::NotAvailable("NTS is disabled".into()), 6),
        (ApiError::Refused("refused".into()), 1),
        (ApiError::PersistFailed("cannot write".into()), 1),
    ] {
        s.backend.fail_next(error.clone());
        let (code, out, err) = ctl(None, a, &["--json", "config", "apply", &good]);
        assert_eq!(code, code_wanted, "{error:?}: {err}");
        assert!(
            err.contains(error.message()) && err.contains(error.name()),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["exit_code"], code_wanted, "{out}");
    }
    // A file that cannot be read is invalid input too, and sends nothing.
    let calls = s.backend.calls().len();
    let (code, _, err) = ctl(None, a, &["config", "apply", "/nonexistent.toml"]);
    assert!(code == 5 && err.contains("cannot read"), "{err}");
    assert_eq!(s.backend.calls().len(), calls);

    // No logind on this bus: the power action fails with 1 and says why.
    let (code, _, err) = ctl(None, a, &["reboot"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("logind"), "{err}");
}

#[test]
fn completions_and_man_page_are_generated_without_a_daemon() {
    // No bus at all: generating must not try to connect.
    let none = "unix:path=/nonexistent/socket";
    let (code, man, err) = ctl(None, none, &["generate", "man"]);
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
    let (code, script, err) = ctl(None, none, &["generate", "bash"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skytimectl.bash");
    std::fs::write(&path, script).unwrap();
    let out = run_bounded(
        Command::new("bash").arg("-c").arg(format!(
            "source {} && complete -p skytimectl",
            path.display()
        )),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("skytimectl"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish"] {
        let (code, script, err) = ctl(None, none, &["generate", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(script.contains("rotate"), "{shell}: {script}");
    }
    let (code, _, err) = ctl(None, none, &["generate", "tcsh"]);
    assert_eq!(code, 2, "bad command line: {err}");
}

#[test]
fn alarms_and_history_print_as_tables_and_json() {
    let s = serve();
    let a = s.bus.address.as_str();
    let (code, out, err) = ctl(Some(UNPRIVILEGED), a, &["alarms"]);
    assert!(code == 0 && out.contains("No active alarms."), "{out}{err}");
    s.backend
        .alarms
        .lock()
        .unwrap()
        .push(skytime_api::AlarmReport {
            name: "not_synchronized".into(),
            severity: "critical".into(),
            since: 1_800_000_000,
            reason: "not synchronized: replies say so".into(),
        });
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["alarms"]);
    assert!(
        code == 0 && out.contains("critical  not_synchronized  2027-01-15 08:00:00 UTC"),
        "{out}"
    );
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["status"]);
    assert!(
        code == 0 && out.contains("Verdict     : FAIL: not synchronized"),
        "{out}"
    );
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["--json", "history"]);
    assert_eq!(code, 0);
    let points: Vec<skytime_api::HistoryPoint> = serde_json::from_str(&out).unwrap();
    assert_eq!(points, *s.backend.history.lock().unwrap());
    let (code, out, _) = ctl(Some(UNPRIVILEGED), a, &["history"]);
    assert!(
        code == 0 && out.lines().count() == 5 && out.contains("Req/s"),
        "{out}"
    );
    // --host without a certificate is a bad command line.
    let (code, _, err) = ctl(None, a, &["--host", "localhost:1", "status"]);
    assert!(code == 2 && err.contains("--cert and --key"), "{err}");
}
