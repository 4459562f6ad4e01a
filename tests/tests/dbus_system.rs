//! The management API end to end with the real binaries: a private
//! dbus-daemon with the project's policy, the real skytimed (fed by the
//! real GPS simulator where sources matter), driven by skytimectl, busctl
//! and gdbus as root, as a member of skytime-admin and as an unprivileged
//! user. Every daemon measures only (`[clock] steer = false`) and listens
//! on loopback; every wait is bounded.

use skytime_proto::ReferenceId;
use skytime_tests::dbus::*;
use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::nts_client::{key_exchange, tls_config};
use skytime_tests::{wait_until, wait_until_every, Daemon};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Polls `f` (each poll starts a process) until it returns `Some` or
/// `limit` passes.
fn poll<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_until_every(limit, Duration::from_millis(250), f)
}

/// NTS and local stratum 10 (no GPS), on ports the kernel picks (the
/// daemon logs them).
const NTS_CONFIG: &str = "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\n\
     allow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
     [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
     [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n";

/// A bus and a daemon with [`NTS_CONFIG`].
struct Appliance {
    bus: PrivateBus,
    daemon: Daemon,
    ntp: SocketAddr,
    ke: SocketAddr,
}

impl Appliance {
    fn start(extra_policy: &[&str]) -> Self {
        let bus = PrivateBus::start(extra_policy);
        let daemon = start_daemon(&bus, initialized_dir(), NTS_CONFIG);
        Self {
            bus,
            ntp: daemon.ntp_addr(),
            ke: daemon.ke_addr(),
            daemon,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.daemon.dir.path().join("data")
    }

    fn nts_status(&self) -> serde_json::Value {
        let r = ctl(&self.bus, None, &["--json", "authdata"]);
        assert!(r.ok(), "{}", r.all());
        r.json()
    }

    /// Whether NTS-KE completes for a client trusting only `cert`.
    fn ke_trusting(&self, cert: &Path) -> bool {
        key_exchange(self.ke, "localhost", &tls_config(cert)).is_ok()
    }
}

/// Files readable by the unprivileged test users (they run skytimectl).
fn shared_files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn arg(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[test]
fn a_gps_fed_daemon_reads_like_chronyc_through_skytimectl_busctl_and_gdbus() {
    let bus = PrivateBus::start(&[]);
    let gps = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\n\
         [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
         [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n",
        dev = gps.path().join("gps").display(),
        sock = gps.path().join("pps.sock").display()
    );
    // The daemon first: it creates the SOCK socket the simulator sends to.
    let daemon = start_daemon(&bus, initialized_dir(), &config);
    let (ntp, ke) = (daemon.ntp_addr(), daemon.ke_addr());
    // Any local user may follow tracking changes as signals.
    let mut monitor = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            UNPRIVILEGED,
            "--regid",
            UNPRIVILEGED,
            "--init-groups",
            "--",
        ])
        .arg(skytime_tests::require_program("gdbus"))
        .args(["monitor", "--address", &bus.address, "--dest", BUS_NAME])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let signals = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (out, signals) = (monitor.stdout.take().unwrap(), signals.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut all = signals.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        })
    };
    let seen = |what: &str| signals.lock().unwrap().contains(what);
    // gdbus says it watches the name once it does.
    assert!(
        wait_until(Duration::from_secs(10), || seen(BUS_NAME).then_some(())).is_some(),
        "gdbus monitor did not start: {}",
        signals.lock().unwrap()
    );
    let _sim = GpsSim::start(gps.path(), 0.45, 300);

    let tracking = poll(Duration::from_secs(60), || {
        let r = ctl(&bus, None, &["--json", "tracking"]);
        let t = r.json();
        (t["Stratum"] == 1 && t["ReferenceId"] == "PPS").then_some(t)
    })
    .unwrap_or_else(|| panic!("never stratum 1 / PPS over D-Bus:\n{}", daemon.log()));
    // The poller signals the change within a second or so.
    let signalled = wait_until(Duration::from_secs(10), || {
        (seen("org.skytime.Appliance1.Tracking") && seen("'Stratum': <byte 0x01>")).then_some(())
    });
    let _ = monitor.kill();
    let _ = monitor.wait();
    let _ = reader.join();
    assert!(
        signalled.is_some(),
        "no PropertiesChanged for the stratum:\n{}",
        signals.lock().unwrap()
    );
    assert_eq!(tracking["Synchronized"], true, "{tracking}");
    assert_eq!(tracking["ReferenceName"], "PPS", "{tracking}");
    assert_eq!(tracking["LeapStatus"], "normal", "{tracking}");
    // The simulator's truth is this machine's clock, which is not steered:
    // the measured offset is small.
    let offset = tracking["SystemTimeOffset"].as_f64().unwrap();
    assert!(offset.abs() < 0.05, "{tracking}");
    assert!(
        tracking["ReferenceTime"].as_f64().unwrap() > 1.6e9,
        "{tracking}"
    );
    // NTP clients are told the same.
    for _ in 0..5 {
        let x = query(ntp).expect("NTP reply");
        assert_eq!(x.reply.stratum, 1);
        assert_eq!(x.reply.reference_id, ReferenceId::PPS);
    }

    let human = ctl(&bus, None, &["tracking"]);
    assert!(
        human.ok()
            && human.stdout.contains("Reference ID    : 50505300 (PPS)")
            && human.stdout.contains("Stratum         : 1")
            && human.stdout.contains("Leap status     : Normal"),
        "{}",
        human.all()
    );

    // The NMEA-to-PPS delay is estimated from paired pulses: it appears
    // some seconds after the first ones.
    let sources = poll(Duration::from_secs(60), || {
        let v = ctl(&bus, None, &["--json", "sources"]).json();
        let pps = v.as_array()?.iter().find(|s| s["Name"] == "PPS")?.clone();
        pps["NmeaPpsDelay"].is_f64().then_some(v)
    })
    .unwrap_or_else(|| panic!("no NMEA-to-PPS delay estimate:\n{}", daemon.log()));
    let list = sources.as_array().unwrap();
    let pps = list
        .iter()
        .find(|s| s["Name"] == "PPS")
        .unwrap_or_else(|| panic!("{sources}"));
    assert_eq!(pps["State"], "selected", "{pps}");
    assert_ne!(pps["Reach"], 0, "{pps}");
    assert_ne!(pps["GpsFix"], "none", "{pps}");
    assert!(pps["GpsSatellitesUsed"].as_u64().unwrap() > 0, "{pps}");
    let delay = pps["NmeaPpsDelay"].as_f64().unwrap();
    assert!(
        (delay - 0.45).abs() < 0.02,
        "NMEA-to-PPS delay {delay} (the simulator sends 0.45)"
    );
    assert!(pps["Samples"].as_u64().unwrap() > 0, "{pps}");
    assert!(list.iter().any(|s| s["Name"] == "NMEA"), "{sources}");
    let human = ctl(&bus, None, &["sources"]);
    assert!(
        human
            .stdout
            .lines()
            .any(|l| l.starts_with("pps *") && l.contains("PPS")),
        "{}",
        human.all()
    );
    let human = ctl(&bus, None, &["sourcestats"]);
    assert!(
        human.ok() && human.stdout.contains("Freq Skew") && human.stdout.contains("PPS"),
        "{}",
        human.all()
    );

    // One NTS client: a key exchange and an authenticated request.
    let cert = daemon.dir.path().join("data/cert.pem");
    let ke_out = key_exchange(ke, "localhost", &tls_config(&cert)).expect("NTS-KE");
    let uid = [7u8; 32];
    let reply = skytime_tests::ntp::exchange(
        ntp,
        &skytime_tests::nts_client::ntp_request(&ke_out, &uid),
        Duration::from_secs(2),
    )
    .expect("NTS reply");
    assert!(skytime_tests::nts_client::is_authentic(
        &reply.raw, &uid, &ke_out
    ));

    let stats = ctl(&bus, None, &["--json", "serverstats"]).json();
    assert!(stats["NtsKeAccepted"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["NtsAuthenticated"].as_u64().unwrap() >= 1, "{stats}");
    let human = ctl(&bus, None, &["serverstats"]);
    assert!(
        human.ok() && human.stdout.contains("NTP packets received"),
        "{}",
        human.all()
    );
    assert!(stats["NtpReceived"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["NtpReplied"].as_u64().unwrap() >= 5, "{stats}");
    let clients = ctl(&bus, None, &["--json", "clients"]).json();
    let me = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Address"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("{clients}"));
    assert!(me["NtpReplies"].as_u64().unwrap() >= 5, "{me}");
    assert!(me["NtsReplies"].as_u64().unwrap() >= 1, "{me}");
    let human = ctl(&bus, None, &["clients"]);
    assert!(human.stdout.contains("127.0.0.1"), "{}", human.all());

    let nts = ctl(&bus, None, &["--json", "authdata"]).json();
    let cert = &nts["Certificate"];
    let sans = cert["SubjectAltNames"].as_array().unwrap();
    assert!(
        sans.contains(&"DNS:localhost".into()) && sans.contains(&"IP:127.0.0.1".into()),
        "{nts}"
    );
    assert_eq!(cert["FingerprintSha256"].as_str().unwrap().len(), 95);
    let ids = nts["KeyIds"].as_array().unwrap();
    assert!(ids.contains(&nts["CurrentKeyId"]), "{nts}");
    assert!(
        nts["NextRotation"].as_i64().unwrap() > 1_600_000_000,
        "{nts}"
    );
    assert_eq!(nts["KeAddresses"], serde_json::json!([ke.to_string()]));
    let status = ctl(&bus, None, &["status"]);
    assert!(
        status.ok() && status.stdout.contains("stratum 1"),
        "{}",
        status.all()
    );

    // busctl and gdbus, as a user without any rights, read the same.
    let r = busctl(
        &bus,
        Some(UNPRIVILEGED),
        &[
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Tracking",
            "Stratum",
        ],
    );
    assert_eq!(r.stdout.trim(), "y 1", "{}", r.all());
    let r = busctl(
        &bus,
        Some(UNPRIVILEGED),
        &[
            "--json=short",
            "call",
            BUS_NAME,
            OBJECT_PATH,
            "org.skytime.Appliance1.Sources",
            "GetSources",
        ],
    );
    assert!(
        r.ok() && r.stdout.contains("\"NmeaPpsDelay\""),
        "{}",
        r.all()
    );
    let r = gdbus_get_all(&bus, Some(UNPRIVILEGED), "org.skytime.Appliance1.Tracking");
    assert!(
        r.ok()
            && r.stdout.contains("'ReferenceId': <'PPS'>")
            && r.stdout.contains("'Stratum': <byte 0x01>"),
        "{}",
        r.all()
    );
    let r = ctl(&bus, Some(UNPRIVILEGED), &["status"]);
    assert!(r.ok(), "reading needs no rights: {}", r.all());

    let (ok, log, _) = daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}

#[test]
fn live_introspection_is_the_checked_in_contract() {
    let a = Appliance::start(&[]);
    let r = busctl(
        &a.bus,
        None,
        &["--xml-interface", "introspect", BUS_NAME, OBJECT_PATH],
    );
    assert!(r.ok(), "{}", r.all());
    let contract = std::fs::read_to_string(dist().join("org.skytime.Appliance1.xml")).unwrap();
    let want = skytime_interfaces(&contract);
    assert!(
        want.len() > 20,
        "the checked-in contract is missing or empty"
    );
    assert_eq!(
        skytime_interfaces(&r.stdout),
        want,
        "the running skytimed differs from dist/org.skytime.Appliance1.xml"
    );
    // GLib parses the same document and finds every interface.
    let r = run(
        None,
        &skytime_tests::require_program("gdbus"),
        &[
            "introspect",
            "--address",
            &a.bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
        ],
        &[],
    );
    for iface in ["Tracking", "Sources", "Server", "Nts", "Config", "Power"] {
        assert!(
            r.stdout
                .contains(&format!("interface org.skytime.Appliance1.{iface}")),
            "{iface}: {}",
            r.all()
        );
    }
}

#[test]
fn writes_need_root_or_the_admin_group() {
    let a = Appliance::start(&[]);
    let data = a.data();
    let (new_cert, new_key) = {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let debug_conf = format!(
        "{}[log]\nlevel = \"debug\"\n",
        NTS_CONFIG.replace("@DATA@", &data.display().to_string())
    );
    let files = shared_files(&[
        ("cert.pem", &new_cert),
        ("key.pem", &new_key),
        ("debug.toml", &debug_conf),
    ]);
    let before = snapshot_dir(&data);
    let keys_before = a.nts_status()["KeyIds"].clone();

    // The unprivileged user: refused by the bus for every write method,
    // through skytimectl (exit code 4) and through busctl.
    for args in [
        vec!["keys", "rotate"],
        vec![
            "certificate",
            "install",
            &arg(&files, "cert.pem"),
            &arg(&files, "key.pem"),
        ],
        vec!["config", "apply", &arg(&files, "debug.toml")],
        vec!["config", "check", &arg(&files, "debug.toml")],
        vec!["config", "reload"],
        vec!["reboot"],
        vec!["shutdown"],
    ] {
        let r = ctl(&a.bus, Some(UNPRIVILEGED), &args);
        assert_eq!(r.code, Some(4), "{args:?}: {}", r.all());
        assert!(r.stderr.contains("access denied"), "{args:?}: {}", r.all());
    }
    let iface = |i: &str| format!("org.skytime.Appliance1.{i}");
    let calls: Vec<Vec<String>> = vec![
        vec![
            iface("Nts"),
            "InstallCertificate".into(),
            "ss".into(),
            new_cert.clone(),
            new_key.clone(),
        ],
        vec![iface("Nts"), "RotateKeys".into()],
        vec![iface("Config"), "Reload".into()],
        vec![
            iface("Config"),
            "Apply".into(),
            "sb".into(),
            debug_conf.clone(),
            "false".into(),
        ],
        vec![
            iface("Config"),
            "Apply".into(),
            "sb".into(),
            debug_conf.clone(),
            "true".into(),
        ],
        vec![iface("Power"), "Reboot".into()],
        vec![iface("Power"), "PowerOff".into()],
    ];
    for call in &calls {
        let mut args = vec!["call", BUS_NAME, OBJECT_PATH];
        args.extend(call.iter().map(String::as_str));
        let r = busctl(&a.bus, Some(UNPRIVILEGED), &args);
        assert!(!r.ok(), "{call:?} succeeded for an unprivileged user");
        assert!(r.all().contains("Access denied"), "{call:?}: {}", r.all());
    }
    assert_eq!(
        snapshot_dir(&data),
        before,
        "a refused write changed the data directory"
    );
    assert_eq!(a.nts_status()["KeyIds"], keys_before);

    // A member of skytime-admin: rotates the keys (saved before use) and
    // applies a configuration.
    let r = ctl(&a.bus, Some(ADMIN), &["--json", "keys", "rotate"]);
    assert!(r.ok(), "{}", r.all());
    let after = r.json();
    assert_eq!(after["KeyIds"].as_array().unwrap().len(), 2, "{after}");
    assert!(
        !keys_before
            .as_array()
            .unwrap()
            .contains(&after["CurrentKeyId"]),
        "a new key is current: {after}"
    );
    let key_file = std::fs::read_to_string(data.join("nts-master-keys")).unwrap();
    let current = format!("{:08x}", after["CurrentKeyId"].as_u64().unwrap());
    assert!(
        key_file.contains(&current),
        "new key {current} not on disk:\n{key_file}"
    );
    assert!(a.daemon.log().contains("NTS master keys rotated"));

    // A dry run validates and writes nothing.
    let r = ctl(
        &a.bus,
        Some(ADMIN),
        &["config", "check", &arg(&files, "debug.toml")],
    );
    assert!(r.ok() && r.stdout.contains("valid"), "{}", r.all());
    assert!(
        !data.join("skytime.toml").exists(),
        "a dry run wrote the file"
    );
    let r = ctl(
        &a.bus,
        Some(ADMIN),
        &["config", "apply", &arg(&files, "debug.toml")],
    );
    assert!(r.ok() && r.stdout.contains("saved to"), "{}", r.all());
    assert!(
        !r.stdout.contains("restart"),
        "the log level applies live: {}",
        r.all()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("skytime.toml")).unwrap(),
        debug_conf
    );
    // A setting read only at start is saved and reported as such; the
    // running daemon keeps serving what it started with.
    let stratum9 = debug_conf.replace("local_stratum = 10", "local_stratum = 9");
    let files9 = shared_files(&[("s9.toml", &stratum9)]);
    let r = ctl(
        &a.bus,
        Some(ADMIN),
        &["--json", "config", "apply", &arg(&files9, "s9.toml")],
    );
    assert!(r.ok(), "{}", r.all());
    assert_eq!(
        r.json()["RestartRequired"],
        serde_json::json!(["ntp.local_stratum"])
    );
    assert_eq!(query(a.ntp).expect("NTP").reply.stratum, 10);

    // Root installs a certificate; NTS-KE serves it at once.
    let old_cert = data.join("cert.pem");
    let old_copy = files.path().join("old.pem");
    std::fs::copy(&old_cert, &old_copy).unwrap();
    assert!(a.ke_trusting(&old_copy));
    let r = ctl(
        &a.bus,
        None,
        &[
            "certificate",
            "install",
            &arg(&files, "cert.pem"),
            &arg(&files, "key.pem"),
        ],
    );
    assert!(
        r.ok() && r.stdout.contains("installed and in use"),
        "{}",
        r.all()
    );
    assert!(
        a.ke_trusting(&files.path().join("cert.pem")),
        "new certificate not served"
    );
    assert!(!a.ke_trusting(&old_copy), "old certificate still served");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Power actions are allowed to the admin, and fail cleanly here (no
    // logind on this bus) with skytimectl's "refused" exit code.
    let r = ctl(&a.bus, Some(ADMIN), &["reboot"]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stderr.contains("PowerFailed") && r.stderr.contains("logind"),
        "{}",
        r.all()
    );

    // A restart runs the managed configuration that was applied.
    let Appliance { bus, daemon, .. } = a;
    let (ok, log, dir) = daemon.stop();
    assert!(ok, "{log}");
    let daemon = Daemon::start_in_env(
        dir,
        NTS_CONFIG,
        &[],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str())],
    );
    let ntp = daemon.ntp_addr();
    assert!(
        daemon.log().contains("(managed; replaces"),
        "{}",
        daemon.log()
    );
    let served = wait_until(Duration::from_secs(5), || {
        query(ntp).filter(|x| x.reply.stratum == 9)
    });
    assert!(
        served.is_some(),
        "managed local_stratum 9 not in effect:\n{}",
        daemon.log()
    );
}

#[test]
fn the_daemon_refuses_writes_even_when_the_bus_policy_allows_them() {
    // A bus policy that lets everyone call everything: skytimed's own
    // check must still refuse, naming the group. gdbus shows error names.
    let a = Appliance::start(&[
        "<policy context=\"default\"><allow send_destination=\"org.skytime.Appliance1\"/></policy>",
    ]);
    let data = a.data();
    let before = snapshot_dir(&data);
    for (method, args) in write_calls() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gdbus_call(&a.bus, Some(UNPRIVILEGED), method, &args);
        assert!(!r.ok(), "{method} succeeded for an unprivileged user");
        assert!(
            r.stderr.contains("org.freedesktop.DBus.Error.AccessDenied")
                && r.stderr.contains("skytime-admin"),
            "the refusal should come from skytimed and name the group: {method}: {}",
            r.all()
        );
    }
    assert_eq!(snapshot_dir(&data), before);
    assert!(a.daemon.log().contains("refused"), "refusals are logged");
}

#[test]
fn bad_input_on_every_write_method_is_refused_by_name_and_changes_nothing() {
    let a = Appliance::start(&[]);
    let data = a.data();
    let before = snapshot_dir(&data);
    let served_copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(data.join("cert.pem"), served_copy.path()).unwrap();
    let nts_before = a.nts_status();

    let (cert, key) = make_cert("localhost", 2100);
    let (_, other_key) = make_cert("other.example.test", 2100);
    let (old_cert, old_key) = make_cert("old.example.test", 2021);
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let s = gvariant_str;
    let cases: Vec<(&str, Vec<String>, &str, &str)> = vec![
        (
            "Nts.InstallCertificate",
            vec![s("not pem"), s(&key)],
            "org.freedesktop.DBus.Error.InvalidArgs",
            "BEGIN CERTIFICATE",
        ),
        (
            "Nts.InstallCertificate",
            vec![s(&cert), s("not a key")],
            "org.freedesktop.DBus.Error.InvalidArgs",
            "private key",
        ),
        (
            "Nts.InstallCertificate",
            vec![s(garbage_pem), s(&key)],
            "org.skytime.Error.InvalidCertificate",
            "X.509",
        ),
        (
            "Nts.InstallCertificate",
            vec![s(&cert), s(&other_key)],
            "org.skytime.Error.InvalidCertificate",
            "does not belong",
        ),
        (
            "Nts.InstallCertificate",
            vec![s(&old_cert), s(&old_key)],
            "org.skytime.Error.CertificateExpired",
            "expired",
        ),
        (
            "Config.Apply",
            vec![s("[ntp]\nlocal_stratum = 99\n"), "false".into()],
            "org.skytime.Error.InvalidConfig",
            "line 2",
        ),
        (
            "Config.Apply",
            vec![s("[ntp]\nlocal_stratum = 99\n"), "true".into()],
            "org.skytime.Error.InvalidConfig",
            "out of range",
        ),
        (
            "Config.Apply",
            vec![s("[ntp]\nbogus_key = 1\n"), "false".into()],
            "org.skytime.Error.InvalidConfig",
            "bogus_key",
        ),
        (
            "Config.Apply",
            vec![s("[dbus]\nbuss = \"x\"\n"), "false".into()],
            "org.skytime.Error.InvalidConfig",
            "buss",
        ),
        (
            "Config.Apply",
            vec![s("[nonsense\n"), "false".into()],
            "org.skytime.Error.InvalidConfig",
            "line 1",
        ),
        (
            "Config.Apply",
            vec![s("data_dir = \"/somewhere/else\"\n"), "false".into()],
            "org.skytime.Error.InvalidConfig",
            "data_dir",
        ),
    ];
    for (method, args, name, text) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gdbus_call(&a.bus, None, method, &args);
        assert!(!r.ok(), "{method} accepted bad input {args:?}");
        assert!(
            r.stderr.contains(name) && r.stderr.contains(text),
            "{method}: want {name} mentioning {text:?}, got {}",
            r.all()
        );
    }

    // skytimectl: the same refusals with exit code 5 and the message.
    let files = shared_files(&[
        ("cert.pem", &cert),
        ("other.key", &other_key),
        ("bad.toml", "[ntp]\n\nlocal_stratum = 0\n"),
        ("huge.toml", &"#".repeat(2 << 20)),
    ]);
    for (args, text) in [
        (
            vec![
                "certificate",
                "install",
                &arg(&files, "cert.pem"),
                &arg(&files, "other.key"),
            ],
            "does not belong",
        ),
        (vec!["config", "check", &arg(&files, "bad.toml")], "line 3"),
        (vec!["config", "apply", &arg(&files, "bad.toml")], "line 3"),
        (
            vec!["config", "apply", &arg(&files, "huge.toml")],
            "at most",
        ),
        (
            vec!["config", "apply", &arg(&files, "missing.toml")],
            "cannot read",
        ),
    ] {
        let r = ctl(&a.bus, None, &args);
        assert_eq!(r.code, Some(5), "{args:?}: {}", r.all());
        assert!(r.stderr.contains(text), "{args:?}: {}", r.all());
    }

    // Reload of a managed file that went bad on disk: refused with its
    // line, the running configuration stays.
    let managed = data.join("skytime.toml");
    std::fs::write(&managed, "[ntp]\nlocal_stratum = 3\noops\n").unwrap();
    let r = ctl(&a.bus, None, &["config", "reload"]);
    assert_eq!(r.code, Some(5), "{}", r.all());
    assert!(
        r.stderr.contains("line 3") && r.stderr.contains("stays"),
        "{}",
        r.all()
    );
    std::fs::remove_file(&managed).unwrap();

    assert_eq!(
        snapshot_dir(&data),
        before,
        "bad input changed the data directory"
    );
    assert_eq!(a.nts_status(), nts_before, "bad input changed NTS");
    assert!(
        a.ke_trusting(served_copy.path()),
        "the served certificate changed"
    );
    assert_eq!(query(a.ntp).expect("NTP").reply.stratum, 10);
    let (ok, log, _) = a.daemon.stop();
    assert!(ok, "{log}");
}

#[test]
fn skytimectl_says_when_the_daemon_is_not_running() {
    let bus = PrivateBus::start(&[]);
    let r = ctl(&bus, None, &["tracking"]);
    assert_eq!(r.code, Some(3), "{}", r.all());
    assert!(r.stderr.contains("not running"), "{}", r.all());
    let r = ctl(&bus, None, &["--json", "tracking"]);
    assert_eq!(r.json()["exit_code"], 3);
}

/// skytimed started as `user` (through setpriv); killed on drop.
struct AsUser {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl AsUser {
    fn start(user: &str, bus: &PrivateBus, dir: &Path, config: &str) -> Self {
        let conf = dir.join("as-user.toml");
        std::fs::write(
            &conf,
            config.replace("@DATA@", &dir.join("data").display().to_string()),
        )
        .unwrap();
        let log = dir.join(format!("{user}.log"));
        let child = std::process::Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .arg(skytime_tests::bin("skytimed"))
            .arg("--config")
            .arg(&conf)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown_r(user: &str, path: &Path) {
    let st = std::process::Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn the_daemon_owns_its_name_as_its_own_user_and_nobody_else_may() {
    let bus = PrivateBus::start(&[]);
    let dir = initialized_dir();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Another local user may not own the name (the bus policy says so),
    // so its skytimed stops with a clear error instead of serving.
    chown_r(UNPRIVILEGED, &dir.path().join("data"));
    let mut other = AsUser::start(UNPRIVILEGED, &bus, dir.path(), NTS_CONFIG);
    let status = wait_until(Duration::from_secs(20), || other.child.try_wait().unwrap());
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "skytimed as {UNPRIVILEGED} did not stop:\n{}",
        other.log()
    );
    assert!(
        other.log().contains("cannot own the D-Bus name"),
        "{}",
        other.log()
    );
    drop(other);

    // The daemon's own user, without any capability (unprivileged ports
    // here), owns it and serves the API.
    chown_r("skytime", &dir.path().join("data"));
    let daemon = AsUser::start("skytime", &bus, dir.path(), NTS_CONFIG);
    let ready = wait_until(Duration::from_secs(20), || {
        daemon.log().contains("skytimed ready").then_some(())
    });
    assert!(ready.is_some(), "{}", daemon.log());
    let r = busctl(&bus, None, &["status", BUS_NAME]);
    let uid = String::from_utf8(
        std::process::Command::new("id")
            .args(["-u", "skytime"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        r.stdout.contains(&format!("EUID={}", uid.trim())),
        "the name is not owned by user skytime: {}",
        r.all()
    );
    let r = ctl(&bus, Some(ADMIN), &["--json", "keys", "rotate"]);
    assert!(r.ok(), "the daemon's user writes its own data: {}", r.all());
}

#[test]
fn sighup_reloads_like_config_reload() {
    let a = Appliance::start(&[]);
    let data = a.data();
    let served = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(data.join("cert.pem"), served.path()).unwrap();
    let fingerprint_before = a.nts_status()["Certificate"]["FingerprintSha256"].clone();
    // A managed file put in place by other means, with a start-only change.
    std::fs::write(
        data.join("skytime.toml"),
        NTS_CONFIG
            .replace("@DATA@", &data.display().to_string())
            .replace("local_stratum = 10", "local_stratum = 9"),
    )
    .unwrap();
    a.daemon.signal("HUP");
    let logged = wait_until(Duration::from_secs(10), || {
        a.daemon
            .log()
            .contains("SIGHUP: reloaded; some settings take effect only after a restart")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", a.daemon.log());
    assert!(a.daemon.log().contains("ntp.local_stratum"));
    // A certificate that does not match its key: refused, the old one
    // keeps serving.
    let (other, _) = make_cert("localhost", 2100);
    std::fs::write(data.join("cert.pem"), other).unwrap();
    a.daemon.signal("HUP");
    let refused = wait_until(Duration::from_secs(10), || {
        a.daemon
            .log()
            .contains("SIGHUP: reload refused")
            .then_some(())
    });
    assert!(refused.is_some(), "{}", a.daemon.log());
    assert!(
        a.ke_trusting(served.path()),
        "the previous certificate stopped serving"
    );
    // The report shows the certificate in use, and that the file differs.
    let nts = a.nts_status();
    assert_eq!(
        nts["Certificate"]["FingerprintSha256"], fingerprint_before,
        "{nts}"
    );
    assert!(
        nts["CertificateError"]
            .as_str()
            .unwrap_or("")
            .contains("differs from the certificate in use"),
        "{nts}"
    );
    assert_eq!(query(a.ntp).expect("NTP").reply.stratum, 10);
}
