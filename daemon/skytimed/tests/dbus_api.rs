//! The D-Bus interface layer on its own: skytimed's interfaces over a
//! stand-in backend (canned records, every write call written down), on a
//! real private dbus-daemon with the project's policy.
//!
//! What this proves is the layer's: the live introspection is the
//! checked-in contract; records cross the bus whole and typed; reads are
//! open to every local user; writes are refused to others by the bus
//! policy and by skytimed itself before any backend sees them; oversized
//! and mistyped arguments are refused by name; each API error reaches the
//! client under its own name; power actions go to logind (or systemd);
//! tracking and alarm changes are signalled; the history is open to all. What a write does to a real appliance
//! is proved against the real daemon in `tests/tests/dbus_system.rs`.

use skytime_api::client::{self, ConfigProxy, NtsProxy, ServerProxy, SourcesProxy};
use skytime_api::{ApiError, ApplianceBackend, BUS_NAME, MAX_DOCUMENT, OBJECT_PATH};
use skytime_tests::dbus::{
    busctl, dist, gdbus_call, gdbus_get_all, gvariant_str, make_cert, run, skytime_interfaces,
    write_calls, PrivateBus, ADMIN, UNPRIVILEGED,
};
use skytime_tests::require_program;
use skytime_tests::standin::{example_certificate, Call, StandIn};
use skytimed::dbus::{self, DbusConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zbus::Connection;

struct Fixture {
    bus: PrivateBus,
    backend: Arc<StandIn>,
    _handle: dbus::DbusHandle,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start(extra_policy: &[&str]) -> Fixture {
    let bus = PrivateBus::start(extra_policy);
    let backend = StandIn::example();
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
        _handle: handle,
        _shutdown: shutdown.drop_guard(),
    }
}

/// A connection as root (the test's own user).
async fn client(bus: &PrivateBus) -> Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_introspection_is_the_checked_in_contract() {
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination(BUS_NAME)
        .and_then(|b| b.path(OBJECT_PATH))
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = proxy.introspect().await.unwrap();
    let contract_path = dist().join("org.skytime.Appliance1.xml");
    if std::env::var_os("SKYTIME_WRITE_INTROSPECTION").is_some() {
        let body: Vec<String> = skytime_interfaces(&live);
        let text = format!(
            "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<!-- The skytime management API, version 1: bus name org.skytime.Appliance1,\n     object /org/skytime/Appliance1. This file is the contract; the test\n     live_introspection_is_the_checked_in_contract compares it with the\n     running service. To regenerate after a deliberate change, run that test (skytimed, test\n     file dbus_api) with SKYTIME_WRITE_INTROSPECTION=1 set. -->\n<node name=\"/org/skytime/Appliance1\">\n{}\n</node>\n",
            indent(&body)
        );
        std::fs::write(&contract_path, text).unwrap();
    }
    let want = skytime_interfaces(&std::fs::read_to_string(&contract_path).unwrap());
    let got = skytime_interfaces(&live);
    assert!(
        want.len() > 20,
        "the checked-in contract is missing or empty"
    );
    assert_eq!(
        got, want,
        "live introspection differs from dist/org.skytime.Appliance1.xml"
    );
    for iface in skytime_api::interface::ALL {
        assert!(live.contains(iface), "{iface} missing");
    }
    // gdbus (GLib) reads the same contract.
    let r = run(
        None,
        &require_program("gdbus"),
        &[
            "introspect",
            "--address",
            &f.bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
        ],
        &[],
    );
    assert!(
        r.ok() && r.stdout.contains("InstallCertificate") && r.stdout.contains("RootDispersion"),
        "{}",
        r.all()
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
async fn records_cross_the_bus_whole_and_typed() {
    let f = start(&[]).await;
    f.backend
        .clients
        .lock()
        .unwrap()
        .push(skytime_api::ClientReport {
            address: "192.0.2.1".into(),
            ntp_replies: 3,
            interval_log2: Some(2.0),
            ..Default::default()
        });
    let conn = client(&f.bus).await;
    let b = &f.backend;
    assert_eq!(client::tracking(&conn).await.unwrap(), b.tracking());
    let sources = SourcesProxy::new(&conn).await.unwrap();
    assert_eq!(sources.get_sources().await.unwrap(), b.sources());
    let server = ServerProxy::new(&conn).await.unwrap();
    assert_eq!(server.get_statistics().await.unwrap(), b.server_stats());
    assert_eq!(server.get_clients().await.unwrap(), b.clients());
    let nts = NtsProxy::new(&conn).await.unwrap();
    assert_eq!(nts.get_status().await.unwrap(), b.nts());
    let config = ConfigProxy::new(&conn).await.unwrap();
    assert_eq!(config.path().await.unwrap(), b.config_path());
    assert!(b.calls().is_empty(), "reading called a write method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_user_reads_everything() {
    let f = start(&[]).await;
    let r = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            skytime_api::interface::TRACKING,
            "Stratum",
        ],
    );
    assert_eq!(r.stdout.trim(), "y 1", "{}", r.all());
    let r = busctl(
        &f.bus,
        Some(UNPRIVILEGED),
        &[
            "--json=short",
            "call",
            BUS_NAME,
            OBJECT_PATH,
            skytime_api::interface::SERVER,
            "GetStatistics",
        ],
    );
    assert!(r.ok(), "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["data"][0]["NtpReceived"]["data"], 2, "{}", r.stdout);
    for (method, needle) in [
        ("Sources.GetSources", "GpsFix"),
        ("Nts.GetStatus", "first.example.test"),
        ("Server.GetClients", "@aa{sv} []"),
    ] {
        let r = gdbus_call(&f.bus, Some(UNPRIVILEGED), method, &[]);
        assert!(r.ok() && r.stdout.contains(needle), "{method}: {}", r.all());
    }
    let r = gdbus_get_all(&f.bus, Some(UNPRIVILEGED), skytime_api::interface::TRACKING);
    assert!(
        r.ok() && r.stdout.contains("'ReferenceId': <'PPS'>"),
        "{}",
        r.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_policy_refuses_every_write_to_an_unprivileged_user() {
    let f = start(&[]).await;
    for (method, args) in write_calls() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gdbus_call(&f.bus, Some(UNPRIVILEGED), method, &args);
        assert!(!r.ok(), "{method} succeeded for an unprivileged user");
        assert!(
            r.stderr.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{method}: {}",
            r.all()
        );
        assert!(
            !r.stderr.contains("skytime-admin"),
            "the bus itself refuses, before skytimed: {method}: {}",
            r.all()
        );
    }
    assert!(f.backend.calls().is_empty(), "{:?}", f.backend.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skytimed_refuses_writes_even_when_the_bus_policy_allows_them() {
    // A bus whose policy lets everyone call everything: skytimed's own
    // check must still refuse, naming the group.
    let f = start(&[
        "<policy context=\"default\"><allow send_destination=\"org.skytime.Appliance1\"/></policy>",
    ])
    .await;
    for (method, args) in write_calls() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gdbus_call(&f.bus, Some(UNPRIVILEGED), method, &args);
        assert!(!r.ok(), "{method} succeeded for an unprivileged user");
        assert!(
            r.stderr.contains("org.freedesktop.DBus.Error.AccessDenied")
                && r.stderr.contains("skytime-admin"),
            "the refusal should come from skytimed and name the group: {method}: {}",
            r.all()
        );
    }
    assert!(f.backend.calls().is_empty(), "{:?}", f.backend.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_the_admin_group_reach_the_backend_with_their_arguments() {
    let f = start(&[]).await;
    let (cert, key) = make_cert("new.example.test", 2100);
    let conf = "[log]\nlevel = \"debug\"\n";
    let r = gdbus_call(&f.bus, Some(ADMIN), "Nts.RotateKeys", &[]);
    assert!(
        r.ok() && r.stdout.contains("'CurrentKeyId': <uint32 7>"),
        "{}",
        r.all()
    );
    let r = gdbus_call(
        &f.bus,
        Some(ADMIN),
        "Nts.InstallCertificate",
        &[&gvariant_str(&cert), &gvariant_str(&key)],
    );
    assert!(
        r.ok() && r.stdout.contains("first.example.test"),
        "{}",
        r.all()
    );
    let conn = client(&f.bus).await;
    let config = ConfigProxy::new(&conn).await.unwrap();
    let outcome = config.apply(conf, false).await.unwrap();
    assert_eq!(outcome.path, f.backend.config_path);
    assert!(config.apply(conf, true).await.unwrap().dry_run);
    config.reload().await.unwrap();
    assert_eq!(
        f.backend.calls(),
        vec![
            Call::RotateKeys,
            Call::InstallCertificate {
                certificate_pem: cert,
                private_key_pem: key
            },
            Call::ApplyConfig {
                toml: conf.into(),
                dry_run: false
            },
            Call::ApplyConfig {
                toml: conf.into(),
                dry_run: true
            },
            Call::ReloadConfig,
        ]
    );
    let installed = NtsProxy::new(&conn)
        .await
        .unwrap()
        .install_certificate("c", "k")
        .await
        .unwrap();
    assert_eq!(installed, example_certificate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_reaches_the_client_by_its_name() {
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let nts = NtsProxy::new(&conn).await.unwrap();
    let errors = [
        ApiError::InvalidArgs("the private key is not PEM".into()),
        ApiError::InvalidConfig("line 2: stratum 99 is out of range".into()),
        ApiError::InvalidCertificate("does not belong".into()),
        ApiError::CertificateExpired("expired".into()),
        ApiError::NotAvailable("NTS is disabled".into()),
        ApiError::Refused("refused".into()),
        ApiError::PersistFailed("cannot write".into()),
        ApiError::ApplyFailed("half done".into()),
    ];
    for e in errors {
        f.backend.fail_next(e.clone());
        let got = nts.rotate_keys().await.unwrap_err();
        assert_eq!(ApiError::from_call(&got), Some(e.clone()), "{got:?}");
        // GLib's clients see the same name and message.
        f.backend.fail_next(e.clone());
        let r = gdbus_call(&f.bus, None, "Config.Reload", &[]);
        assert!(
            r.stderr.contains(e.name()) && r.stderr.contains(e.message()),
            "{e:?}: {}",
            r.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_mistyped_arguments_are_refused_before_the_backend() {
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let huge = "#".repeat(MAX_DOCUMENT + 1);
    let config = ConfigProxy::new(&conn).await.unwrap();
    let e = config.apply(&huge, true).await.unwrap_err();
    assert!(
        matches!(ApiError::from_call(&e), Some(ApiError::InvalidArgs(m)) if m.contains("bytes") && m.contains("at most")),
        "{e:?}"
    );
    let nts = NtsProxy::new(&conn).await.unwrap();
    for (cert, key) in [(huge.as_str(), "k"), ("c", huge.as_str())] {
        let e = nts.install_certificate(cert, key).await.unwrap_err();
        assert!(
            matches!(ApiError::from_call(&e), Some(ApiError::InvalidArgs(_))),
            "{e:?}"
        );
    }
    // Wrong argument types are refused by zbus before skytimed sees them.
    let e = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some(skytime_api::interface::CONFIG),
            "Apply",
            &(1u32,),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, zbus::Error::MethodError(_, Some(d), _) if d.contains("Signature mismatch")),
        "{e:?}"
    );
    assert!(f.backend.calls().is_empty(), "{:?}", f.backend.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_go_to_logind() {
    let f = start(&["<policy user=\"root\"><allow own=\"org.freedesktop.login1\"/><allow send_destination=\"org.freedesktop.login1\"/></policy>"]).await;
    // Without logind or systemd on the bus: PowerFailed, saying so.
    let r = gdbus_call(&f.bus, Some(ADMIN), "Power.Reboot", &[]);
    assert!(
        r.stderr.contains("org.skytime.Error.PowerFailed") && r.stderr.contains("logind"),
        "{}",
        r.all()
    );
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
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
    let r = gdbus_call(&f.bus, Some(ADMIN), "Power.Reboot", &[]);
    assert!(r.ok(), "{}", r.all());
    let r = gdbus_call(&f.bus, None, "Power.PowerOff", &[]);
    assert!(r.ok(), "{}", r.all());
    assert_eq!(
        *calls.lock().unwrap(),
        vec!["Reboot(false)".to_owned(), "PowerOff(false)".to_owned()]
    );
    let r = gdbus_call(&f.bus, Some(UNPRIVILEGED), "Power.Reboot", &[]);
    assert!(!r.ok());
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "an unprivileged caller reached logind"
    );
}

struct FakeLogind {
    calls: Arc<Mutex<Vec<String>>>,
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
async fn power_actions_fall_back_to_systemd_without_logind() {
    let f = start(&["<policy user=\"root\"><allow own=\"org.freedesktop.systemd1\"/><allow send_destination=\"org.freedesktop.systemd1\"/></policy>"]).await;
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
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
    for method in ["Power.Reboot", "Power.PowerOff"] {
        let r = gdbus_call(&f.bus, Some(ADMIN), method, &[]);
        assert!(r.ok(), "{method}: {}", r.all());
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
    calls: Arc<Mutex<Vec<String>>>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_changes_are_signalled() {
    use zbus::export::futures_core::Stream;
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let proxy = zbus::fdo::PropertiesProxy::new(&conn, BUS_NAME, OBJECT_PATH)
        .await
        .unwrap();
    let mut changes = proxy.receive_properties_changed().await.unwrap();
    f.backend.tracking.lock().unwrap().stratum = 2;
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut changes).poll_next(cx));
    let signal = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .ok()
        .flatten()
        .expect("PropertiesChanged within 10 s");
    let args = signal.args().unwrap();
    assert_eq!(
        args.interface_name().as_str(),
        skytime_api::interface::TRACKING
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_a_signalled_property_and_history_is_open_to_all() {
    use skytime_api::client::MonitorProxy;
    use skytime_api::{AlarmReport, MonitorProperties};
    use zbus::export::futures_core::Stream;
    let f = start(&[]).await;
    let conn = client(&f.bus).await;
    let props: MonitorProperties = client::properties(&conn, skytime_api::interface::MONITOR)
        .await
        .unwrap();
    assert!(props.alarms.is_empty());
    assert_eq!(props.version, "0.0.0-standin");
    let proxy = zbus::fdo::PropertiesProxy::new(&conn, BUS_NAME, OBJECT_PATH)
        .await
        .unwrap();
    let mut changes = proxy.receive_properties_changed().await.unwrap();
    let alarm = AlarmReport {
        name: "pps_missing".into(),
        severity: "warning".into(),
        since: 1_800_000_000,
        reason: "no PPS pulse from /dev/pps0 for more than 10 s".into(),
    };
    f.backend.alarms.lock().unwrap().push(alarm.clone());
    let signal = loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut changes).poll_next(cx));
        let s = tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .ok()
            .flatten()
            .expect("PropertiesChanged for Alarms within 10 s");
        if s.args().unwrap().interface_name().as_str() == skytime_api::interface::MONITOR {
            break s;
        }
    };
    let args = signal.args().unwrap();
    let value = args.changed_properties().get("Alarms").expect("Alarms");
    let list: Vec<std::collections::HashMap<String, zbus::zvariant::OwnedValue>> =
        value.try_clone().unwrap().try_into().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        String::try_from(list[0]["Name"].try_clone().unwrap()).unwrap(),
        "pps_missing"
    );
    let props: MonitorProperties = client::properties(&conn, skytime_api::interface::MONITOR)
        .await
        .unwrap();
    assert_eq!(props.alarms, vec![alarm]);
    // The history, typed, through the proxy and to an unprivileged user.
    let points = MonitorProxy::new(&conn)
        .await
        .unwrap()
        .history(0)
        .await
        .unwrap();
    assert_eq!(points, f.backend.history(0));
    let r = gdbus_call(&f.bus, Some(UNPRIVILEGED), "Monitor.History", &["0"]);
    assert!(r.ok() && r.stdout.contains("RequestRate"), "{}", r.all());
    let r = gdbus_get_all(&f.bus, Some(UNPRIVILEGED), skytime_api::interface::MONITOR);
    assert!(r.ok() && r.stdout.contains("pps_missing"), "{}", r.all());
}
