//! The management API over a real private dbus-daemon with the project's
//! policy: the live introspection is the checked-in contract, reads are
//! open, writes need root or skytime-admin (refused by the bus policy and
//! by skytimed itself), and bad input on every write method is refused
//! with a specific error and changes nothing.

mod support;

use skytimed::dbus::{self, ApplianceBackend, DbusConfig, BUS_NAME, OBJECT_PATH};
use std::sync::Arc;
use std::time::Duration;
use support::{
    make_cert, run_as, run_bounded, snapshot_dir, PrivateBus, TestBackend, ADMIN, UNPRIVILEGED,
};
use tokio_util::sync::CancellationToken;
use zbus::Connection;

struct Fixture {
    bus: PrivateBus,
    backend: Arc<TestBackend>,
    data: tempfile::TempDir,
    _handle: dbus::DbusHandle,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start(extra_policy: &[&str]) -> Fixture {
    let bus = PrivateBus::start(extra_policy);
    let data = tempfile::tempdir().unwrap();
    let backend = TestBackend::new(data.path());
    let shutdown = CancellationToken::new();
    let config = DbusConfig {
        bus: bus.address.clone(),
        ..DbusConfig::default()
    };
    let handle = dbus::serve(&config, backend.clone(), None, shutdown.clone())
        .await
        .expect("serve");
    Fixture {
        bus,
        backend,
        data,
        _handle: handle,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn client(bus: &PrivateBus) -> Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn busctl(bus: &PrivateBus, user: Option<&str>, args: &[&str]) -> (bool, String) {
    // Options first, then "--" so that PEM arguments ("-----BEGIN") are
    // not taken for options.
    let mut full = vec![
        format!("--address={}", bus.address),
        "--no-pager".to_owned(),
    ];
    let split = args
        .iter()
        .position(|a| !a.starts_with("--"))
        .unwrap_or(args.len());
    full.extend(args[..split].iter().map(|s| s.to_string()));
    full.push("--".to_owned());
    full.extend(args[split..].iter().map(|s| s.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = match user {
        Some(u) => run_as(u, "busctl", &full, &[]),
        None => run_bounded(std::process::Command::new("busctl").args(&full)),
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every write method with valid-looking arguments (busctl syntax).
fn write_calls(cert: &str, key: &str) -> Vec<Vec<String>> {
    let iface = |i: &str| format!("org.skytime.Appliance1.{i}");
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        [
            v(&[
                "call",
                BUS_NAME,
                OBJECT_PATH,
                &iface("Nts"),
                "InstallCertificate",
                "ss",
            ]),
            vec![cert.to_owned(), key.to_owned()],
        ]
        .concat(),
        v(&["call", BUS_NAME, OBJECT_PATH, &iface("Nts"), "RotateKeys"]),
        v(&["call", BUS_NAME, OBJECT_PATH, &iface("Config"), "Reload"]),
        v(&[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            &iface("Config"),
            "Apply",
            "sb",
            "[log]\nlevel = \"debug\"\n",
            "false",
        ]),
        v(&[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            &iface("Config"),
            "Apply",
            "sb",
            "[log]\nlevel = \"debug\"\n",
            "true",
        ]),
        v(&["call", BUS_NAME, OBJECT_PATH, &iface("Power"), "Reboot"]),
        v(&["call", BUS_NAME, OBJECT_PATH, &iface("Power"), "PowerOff"]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_introspection_is_the_checked_in_contract() {
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination(BUS_NAME)
        .unwrap()
        .path(OBJECT_PATH)
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = proxy.introspect().await.unwrap();
    if std::env::var_os("SKYTIME_WRITE_INTROSPECTION").is_some() {
        let body: Vec<String> = dbus::skytime_interfaces(&live);
        let text = format!(
            "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<!-- The skytime management API, version 1: bus name org.skytime.Appliance1,\n     object /org/skytime/Appliance1. This file is the contract; the test\n     live_introspection_is_the_checked_in_contract compares it with the\n     running service. To regenerate after a deliberate change, run that test (skytimed, test\n     file dbus_api) with SKYTIME_WRITE_INTROSPECTION=1 set. -->\n<node name=\"/org/skytime/Appliance1\">\n{}\n</node>\n",
            indent(&body)
        );
        std::fs::write(support::dist().join("org.skytime.Appliance1.xml"), text).unwrap();
    }
    let want = dbus::skytime_interfaces(dbus::INTROSPECTION_XML);
    let got = dbus::skytime_interfaces(&live);
    assert!(
        want.len() > 20,
        "the checked-in contract is missing or empty"
    );
    assert_eq!(
        got, want,
        "live introspection differs from dist/org.skytime.Appliance1.xml"
    );
    for iface in ["Tracking", "Sources", "Server", "Nts", "Config", "Power"] {
        assert!(
            live.contains(&format!("org.skytime.Appliance1.{iface}")),
            "{iface} missing"
        );
    }
    // gdbus (GLib) reads the same contract.
    let out = run_bounded(std::process::Command::new("gdbus").args([
        "introspect",
        "--address",
        &f.bus.address,
        "--dest",
        BUS_NAME,
        "--object-path",
        OBJECT_PATH,
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("InstallCertificate")
            && text.contains("RootDispersion"),
        "{text}"
    );
}

fn indent(lines: &[String]) -> String {
    let mut depth = 1usize;
    let mut out = Vec::new();
    for l in lines {
        if l.starts_with("</") {
            depth = depth.saturating_sub(1);
        }
        out.push(format!("{}{}", "  ".repeat(depth), l));
        if l.starts_with('<') && !l.starts_with("</") && !l.ends_with("/>") && !l.contains("</") {
            depth += 1;
        }
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprivileged_user_reads_everything() {
    let f = start(&[]).await;
    f.backend.stats.received(true);
    f.backend.stats.received(false);
    f.backend.stats.replied();
    let (ok, out) = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Tracking",
            "Stratum",
        ],
    );
    assert!(ok && out.trim() == "y 1", "{out}");
    let (ok, out) = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "--json=short",
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Server",
            "GetStatistics",
        ],
    );
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["data"][0]["NtpReceived"]["data"], 2, "{out}");
    assert_eq!(v["data"][0]["NtpKernelTimestamps"]["data"], 1, "{out}");
    let (ok, out) = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Sources",
            "GetSources",
        ],
    );
    assert!(
        ok && out.contains("gps0") && out.contains("GpsFix"),
        "{out}"
    );
    let (ok, out) = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Nts",
            "GetStatus",
        ],
    );
    assert!(ok && out.contains("first.example.test"), "{out}");
    // gdbus as the same user.
    let out = run_as(
        UNPRIVILEGED,
        "gdbus",
        &[
            "call",
            "--address",
            &f.bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
            "--method",
            "org.freedesktop.DBus.Properties.GetAll",
            "org.skytime.Appliance1.Tracking",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("'ReferenceId': <'PPS'>"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_policy_refuses_every_write_to_unprivileged_user() {
    let f = start(&[]).await;
    let before = snapshot_dir(f.data.path());
    let (cert, key) = make_cert("new.example.test", 2100);
    for call in write_calls(&cert, &key) {
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        let (ok, out) = busctl(&f.bus, Some(UNPRIVILEGED), &args);
        assert!(!ok, "{call:?} succeeded for an unprivileged user: {out}");
        assert!(
            out.contains("Access denied") || out.contains("AccessDenied"),
            "{call:?}: {out}"
        );
    }
    assert_eq!(
        snapshot_dir(f.data.path()),
        before,
        "a refused write changed the data directory"
    );
    assert_eq!(f.backend.keys.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_writes_even_when_the_bus_policy_allows_them() {
    // A bus whose policy lets everyone call everything: skytimed's own
    // check must still refuse. gdbus shows the error name and message.
    let f = start(&[
        "<policy context=\"default\"><allow send_destination=\"org.skytime.Appliance1\"/></policy>",
    ])
    .await;
    let before = snapshot_dir(f.data.path());
    let (cert, key) = make_cert("new.example.test", 2100);
    let text = |v: &str| {
        format!(
            "'{}'",
            v.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('\n', "\\n")
        )
    };
    let calls: Vec<(&str, Vec<String>)> = vec![
        ("Nts.InstallCertificate", vec![text(&cert), text(&key)]),
        ("Nts.RotateKeys", vec![]),
        ("Config.Reload", vec![]),
        (
            "Config.Apply",
            vec![text("[log]\nlevel = \"debug\"\n"), "false".into()],
        ),
        (
            "Config.Apply",
            vec![text("[log]\nlevel = \"debug\"\n"), "true".into()],
        ),
        ("Power.Reboot", vec![]),
        ("Power.PowerOff", vec![]),
    ];
    for (method, args) in calls {
        let method = format!("org.skytime.Appliance1.{method}");
        let mut full = vec![
            "call",
            "--address",
            &f.bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
            "--method",
            &method,
        ];
        full.extend(args.iter().map(String::as_str));
        let out = run_as(UNPRIVILEGED, "gdbus", &full, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{method} succeeded for an unprivileged user"
        );
        assert!(
            err.contains("org.freedesktop.DBus.Error.AccessDenied")
                && err.contains("skytime-admin"),
            "refusal should come from skytimed and name the group: {method}: {err}"
        );
    }
    assert_eq!(snapshot_dir(f.data.path()), before);
    assert_eq!(f.backend.keys.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_group_member_and_root_may_write() {
    let f = start(&[]).await;
    let (ok, out) = busctl(
        &f.bus,
        Some(ADMIN),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Nts",
            "RotateKeys",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(*f.backend.keys.lock().unwrap(), vec![1, 2]);
    let conf = format!(
        "data_dir = \"{}\"\n[nts]\nenabled = true\n[log]\nlevel = \"debug\"\n",
        f.data.path().display()
    );
    let (ok, out) = busctl(
        &f.bus,
        None,
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Config",
            "Apply",
            "sb",
            &conf,
            "false",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(f.data.path().join("skytime.toml")).unwrap(),
        conf
    );
    assert_eq!(
        f.backend.config.lock().unwrap().log.level,
        skytimed::config::LogLevel::Debug
    );

    let (cert, key) = make_cert("new.example.test", 2100);
    let (ok, out) = busctl(
        &f.bus,
        Some(ADMIN),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Nts",
            "InstallCertificate",
            "ss",
            &cert,
            &key,
        ],
    );
    assert!(ok && out.contains("new.example.test"), "{out}");
    assert_eq!(
        std::fs::read_to_string(f.data.path().join("cert.pem")).unwrap(),
        cert
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(f.data.path().join("key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let served = f
        .backend
        .served_fingerprint
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    let report = f.backend.nts().certificate.unwrap();
    assert_eq!(
        served, report.fingerprint_sha256,
        "the daemon did not load the new certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_by_name_and_changes_nothing() {
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let before = snapshot_dir(f.data.path());
    let config_before = f.backend.config.lock().unwrap().clone();
    let served_before = f.backend.served_fingerprint.lock().unwrap().clone();
    let (cert, key) = make_cert("good.example.test", 2100);
    let (_, other_key) = make_cert("other.example.test", 2100);
    let (old_cert, old_key) = make_cert("old.example.test", 2021);
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    let call = |iface: &'static str, method: &'static str, body: Box<dyn erased::Body>| {
        let conn = conn.clone();
        async move { body.call(&conn, iface, method).await }
    };
    type Case = (
        &'static str,
        &'static str,
        Box<dyn erased::Body>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "Nts",
            "InstallCertificate",
            Box::new(("not pem".to_owned(), key.clone())),
            "org.freedesktop.DBus.Error.InvalidArgs",
            "BEGIN CERTIFICATE",
        ),
        (
            "Nts",
            "InstallCertificate",
            Box::new((cert.clone(), "not a key".to_owned())),
            "org.freedesktop.DBus.Error.InvalidArgs",
            "private key",
        ),
        (
            "Nts",
            "InstallCertificate",
            Box::new((garbage_pem.to_owned(), key.clone())),
            "org.skytime.Error.InvalidCertificate",
            "X.509",
        ),
        (
            "Nts",
            "InstallCertificate",
            Box::new((cert.clone(), other_key.clone())),
            "org.skytime.Error.InvalidCertificate",
            "does not belong",
        ),
        (
            "Nts",
            "InstallCertificate",
            Box::new((old_cert.clone(), old_key.clone())),
            "org.skytime.Error.CertificateExpired",
            "expired",
        ),
        (
            "Config",
            "Apply",
            Box::new(("[ntp]\nlocal_stratum = 99\n".to_owned(), false)),
            "org.skytime.Error.InvalidConfig",
            "line 2",
        ),
        (
            "Config",
            "Apply",
            Box::new(("[ntp]\nlocal_stratum = 99\n".to_owned(), true)),
            "org.skytime.Error.InvalidConfig",
            "out of range",
        ),
        (
            "Config",
            "Apply",
            Box::new(("[ntp]\nbogus_key = 1\n".to_owned(), false)),
            "org.skytime.Error.InvalidConfig",
            "bogus_key",
        ),
        (
            "Config",
            "Apply",
            Box::new(("[nonsense\n".to_owned(), false)),
            "org.skytime.Error.InvalidConfig",
            "line 1",
        ),
        (
            "Config",
            "Apply",
            Box::new(("x".repeat(2 << 20), false)),
            "org.freedesktop.DBus.Error.InvalidArgs",
            "bytes",
        ),
        (
            "Power",
            "Reboot",
            Box::new(()),
            "org.skytime.Error.PowerFailed",
            "logind",
        ),
    ];
    for (iface, method, body, name, text) in cases {
        let err = call(iface, method, body)
            .await
            .expect_err(&format!("{iface}.{method} accepted bad input"));
        let zbus::Error::MethodError(got, desc, _) = &err else {
            panic!("{iface}.{method}: {err:?}")
        };
        assert_eq!(got.as_str(), name, "{iface}.{method}: {desc:?}");
        assert!(
            desc.as_deref().unwrap_or("").contains(text),
            "{iface}.{method}: message {desc:?} should mention {text:?}"
        );
    }
    // Wrong argument types are refused by zbus before skytimed sees them
    // (error org.freedesktop.zbus.Error, "Signature mismatch").
    let err = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some("org.skytime.Appliance1.Config"),
            "Apply",
            &(1u32,),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, zbus::Error::MethodError(_, Some(d), _) if d.contains("Signature mismatch")),
        "{err:?}"
    );

    assert_eq!(
        snapshot_dir(f.data.path()),
        before,
        "bad input changed the data directory"
    );
    assert_eq!(
        *f.backend.config.lock().unwrap(),
        config_before,
        "bad input changed the running configuration"
    );
    assert_eq!(
        *f.backend.served_fingerprint.lock().unwrap(),
        served_before,
        "bad input changed the served certificate"
    );
}

/// Lets the table above hold bodies of different types.
mod erased {
    use super::{BUS_NAME, OBJECT_PATH};
    use std::future::Future;
    use std::pin::Pin;
    pub trait Body: Send {
        fn call<'a>(
            &'a self,
            conn: &'a zbus::Connection,
            iface: &'static str,
            method: &'static str,
        ) -> Pin<Box<dyn Future<Output = zbus::Result<zbus::Message>> + Send + 'a>>;
    }
    impl<T> Body for T
    where
        T: serde::Serialize + zbus::zvariant::DynamicType + Send + Sync,
    {
        fn call<'a>(
            &'a self,
            conn: &'a zbus::Connection,
            iface: &'static str,
            method: &'static str,
        ) -> Pin<Box<dyn Future<Output = zbus::Result<zbus::Message>> + Send + 'a>> {
            Box::pin(async move {
                conn.call_method(
                    Some(BUS_NAME),
                    OBJECT_PATH,
                    Some(format!("org.skytime.Appliance1.{iface}").as_str()),
                    method,
                    self,
                )
                .await
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_go_to_logind() {
    let f = start(&["<policy user=\"root\"><allow own=\"org.freedesktop.login1\"/><allow send_destination=\"org.freedesktop.login1\"/></policy>"]).await;
    let calls = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let _logind = zbus::connection::Builder::address(f.bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/login1",
            FakeLogind {
                calls: calls.clone(),
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    let (ok, out) = busctl(
        &f.bus,
        Some(ADMIN),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Power",
            "Reboot",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = busctl(
        &f.bus,
        None,
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Power",
            "PowerOff",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        *calls.lock().unwrap(),
        vec!["Reboot(false)".to_owned(), "PowerOff(false)".to_owned()]
    );
    let (ok, _) = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Power",
            "Reboot",
        ],
    );
    assert!(!ok);
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "an unprivileged caller reached logind"
    );
}

struct FakeLogind {
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeLogind {
    fn reboot(&self, interactive: bool) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("Reboot({interactive})"));
    }
    fn power_off(&self, interactive: bool) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("PowerOff({interactive})"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_changes_are_signalled() {
    use futures_util_lite::next_with_timeout;
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let proxy = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination(BUS_NAME)
        .unwrap()
        .path(OBJECT_PATH)
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut changes = proxy.receive_properties_changed().await.unwrap();
    f.backend.tracking.lock().unwrap().stratum = 2;
    let signal = next_with_timeout(&mut changes, Duration::from_secs(10))
        .await
        .expect("PropertiesChanged within 10 s");
    let args = signal.args().unwrap();
    assert_eq!(
        args.interface_name().as_str(),
        "org.skytime.Appliance1.Tracking"
    );
    let stratum = args
        .changed_properties()
        .get("Stratum")
        .expect("Stratum in the signal");
    assert_eq!(u8::try_from(stratum).unwrap(), 2);
    assert!(
        !args.changed_properties().contains_key("ReferenceId"),
        "unchanged properties are not signalled"
    );
}

mod futures_util_lite {
    use std::time::Duration;
    use zbus::export::futures_core::Stream;
    /// Next item of a stream, or None after `limit`.
    pub async fn next_with_timeout<S: Stream + Unpin>(
        s: &mut S,
        limit: Duration,
    ) -> Option<S::Item> {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx));
        tokio::time::timeout(limit, next).await.ok().flatten()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_fall_back_to_systemd_without_logind() {
    let f = start(&["<policy user=\"root\"><allow own=\"org.freedesktop.systemd1\"/><allow send_destination=\"org.freedesktop.systemd1\"/></policy>"]).await;
    let calls = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let _systemd = zbus::connection::Builder::address(f.bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/systemd1",
            FakeSystemd {
                calls: calls.clone(),
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    for method in ["Reboot", "PowerOff"] {
        let (ok, out) = busctl(
            &f.bus,
            Some(ADMIN),
            &[
                "call",
                BUS_NAME,
                OBJECT_PATH,
                "org.skytime.Appliance1.Power",
                method,
            ],
        );
        assert!(ok, "{method}: {out}");
    }
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            "StartUnit(reboot.target, replace-irreversibly)".to_owned(),
            "StartUnit(poweroff.target, replace-irreversibly)".to_owned()
        ]
    );
}

struct FakeSystemd {
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeSystemd {
    fn start_unit(&self, name: String, mode: String) -> zbus::zvariant::OwnedObjectPath {
        self.calls
            .lock()
            .unwrap()
            .push(format!("StartUnit({name}, {mode})"));
        zbus::zvariant::OwnedObjectPath::try_from("/org/freedesktop/systemd1/job/1").unwrap()
    }
}
