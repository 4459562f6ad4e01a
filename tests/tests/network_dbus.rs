//! `[network]` and `org.skytime.Appliance1.Network`: the real skytimed on
//! a private dbus-daemon, driven by the real skytimectl and gdbus. The
//! daemon renders into a directory of the test instead of networkd's, and
//! its reload and host-name commands are a script that records its calls
//! (the one stand-in: systemd-networkd itself is proven in the QEMU test).
//! Proved here: the first start seeds the settings from skytime.toml; an
//! apply renders at once and goes on probation; a confirm keeps it and
//! re-issues the appliance's own certificate for the new name and address
//! (never an installed one); no confirm reverts by itself after the
//! deadline, and so does a restart during a probation; bad settings are
//! refused by name and change nothing.

use skytime_tests::dbus::*;
use skytime_tests::{wait_until, Daemon};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A daemon on its own bus whose network output goes to `out/` and whose
/// commands append to `calls.log`.
struct Node {
    bus: PrivateBus,
    daemon: Daemon,
    out: PathBuf,
    calls: PathBuf,
}

fn config(dir: &Path, seed: &str) -> String {
    let script = dir.join("record.sh");
    let calls = dir.join("calls.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -eu\necho \"$*${{SKYTIME_HOSTNAME:+ $SKYTIME_HOSTNAME}}\" >> '{}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nlocal_stratum = 10\n\
         [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
         [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n\
         [network_control]\ndirectory = \"{out}\"\n\
         reload_command = [\"{s}\", \"reload\"]\nhostname_command = [\"{s}\", \"hostname\"]\n{seed}",
        out = dir.join("out").display(),
        s = script.display(),
    )
}

impl Node {
    fn start(seed: &str) -> Self {
        let bus = PrivateBus::start(&[]);
        let dir = initialized_dir();
        let text = config(dir.path(), seed);
        let (out, calls) = (dir.path().join("out"), dir.path().join("calls.log"));
        let daemon = start_daemon(&bus, dir, &text);
        Self {
            bus,
            daemon,
            out,
            calls,
        }
    }

    fn rendered(&self) -> Option<String> {
        std::fs::read_to_string(self.out.join("10-skytime.network")).ok()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn data(&self) -> PathBuf {
        self.daemon.dir.path().join("data")
    }

    /// `skytimectl --json network ARGS` as root; the reply record.
    fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json", "network"];
        a.extend(args);
        let r = ctl(&self.bus, None, &a);
        assert!(r.ok(), "skytimectl {args:?}: {}", r.all());
        r.json()
    }

    fn apply(&self, text: &str, confirm_within: u32) -> serde_json::Value {
        let f = self.daemon.dir.path().join("apply.toml");
        std::fs::write(&f, text).unwrap();
        self.ctl(&[
            "apply",
            &f.display().to_string(),
            "--confirm-within",
            &confirm_within.to_string(),
        ])
    }
}

/// The subjectAltName extension of the PEM file `path`, as openssl prints it.
fn sans(path: &Path) -> String {
    let out = std::process::Command::new(skytime_tests::require_program("openssl"))
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const STATIC: &str = "mode = \"static\"\nhostname = \"time2\"\ndns = [\"192.0.2.53\"]\n\
                      [ipv4]\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\n";

#[test]
fn seeded_then_applied_then_confirmed_with_a_reissued_certificate() {
    let b = Node::start("[network]\nhostname = \"seed1\"\n");
    // The first start seeded network.toml and put it into effect.
    let seeded = std::fs::read_to_string(b.data().join("network.toml")).unwrap();
    assert!(seeded.contains("seed1"), "{seeded}");
    let r = b.rendered().expect("rendered at start");
    assert!(
        r.contains("DHCP=yes") && r.contains("MulticastDNS=yes"),
        "{r}"
    );
    assert_eq!(b.calls(), ["reload", "hostname seed1"]);
    // First boot's certificate named the identity's host (localhost): the
    // seeded name replaces it, and the boot will set that name.
    let s = sans(&b.data().join("cert.pem"));
    assert!(
        s.contains("DNS:seed1.local") && !s.contains("localhost"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(b.data().join("hostname")).unwrap(),
        "seed1\n"
    );
    let shown = b.ctl(&["show"]);
    assert_eq!(shown["Hostname"], "seed1");
    assert_eq!(shown["Pending"], false);
    // The open sockets, from the kernel's tables: this daemon's NTP and
    // NTS-KE sockets among them (the host's other ones too).
    let open: Vec<&str> = shown["Listening"]
        .as_array()
        .expect("Listening is a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for want in [
        format!("udp {}", b.daemon.ntp_addr()),
        format!("tcp {}", b.daemon.ke_addr()),
    ] {
        assert!(open.contains(&want.as_str()), "{want} not in {open:?}");
    }
    // Reading needs no rights.
    let r = ctl(&b.bus, Some(UNPRIVILEGED), &["--json", "network", "show"]);
    assert!(r.ok(), "{}", r.all());

    let cert = b.data().join("cert.pem");
    let before = std::fs::read(&cert).unwrap();
    let applied = b.apply(STATIC, 120);
    assert_eq!(applied["Pending"], true, "{applied}");
    assert_eq!(applied["Ipv4Address"], "192.0.2.10/24");
    let r = b.rendered().unwrap();
    for line in [
        "DHCP=no",
        "Address=192.0.2.10/24",
        "Gateway=192.0.2.1",
        "DNS=192.0.2.53",
    ] {
        assert!(r.lines().any(|l| l == line), "{line} missing:\n{r}");
    }
    assert_eq!(
        b.calls(),
        ["reload", "hostname seed1", "reload", "hostname time2"]
    );
    assert!(b.data().join("network.pending.toml").exists());
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        before,
        "not before the confirm"
    );

    let confirmed = b.ctl(&["confirm"]);
    assert_eq!(confirmed["Pending"], false, "{confirmed}");
    let what = confirmed["Certificate"].as_str().unwrap();
    assert!(what.starts_with("reissued"), "{confirmed}");
    assert!(!b.data().join("network.pending.toml").exists());
    let kept = std::fs::read_to_string(b.data().join("network.toml")).unwrap();
    assert!(
        kept.contains("time2") && kept.contains("192.0.2.10/24"),
        "{kept}"
    );
    assert_eq!(
        std::fs::read_to_string(b.data().join("hostname")).unwrap(),
        "time2\n"
    );
    // The new certificate names the new host, NAME.local and the address,
    // and NTS-KE serves it.
    let s = sans(&cert);
    for name in ["DNS:time2", "DNS:time2.local", "IP Address:192.0.2.10"] {
        assert!(s.contains(name), "{name} not in {s}");
    }
    assert!(!s.contains("localhost"), "{s}");
    let nts = ctl(&b.bus, None, &["--json", "nts"]).json();
    let served = nts["Certificate"]["SubjectAltNames"].to_string();
    assert!(served.contains("DNS:time2.local"), "{nts}");
    assert!(
        b.daemon.log().contains("certificate re-issued"),
        "it says so"
    );
    // Still there after the deadline would have passed? The deadline is
    // gone: a confirm now has nothing to confirm.
    let r = gdbus_call(&b.bus, None, "Network.Confirm", &[]);
    assert!(
        !r.ok() && r.stderr.contains("org.skytime.Error.Refused"),
        "{}",
        r.all()
    );
    let (ok, log, _) = b.daemon.stop();
    assert!(ok, "clean exit:\n{log}");
}

#[test]
fn an_unconfirmed_change_reverts_by_itself_and_on_restart() {
    let b = Node::start("");
    // Nothing configured: nothing rendered, nothing run.
    assert_eq!(b.rendered(), None);
    assert!(b.calls().is_empty());
    assert_eq!(b.ctl(&["show"])["Managed"], false);

    let applied = b.apply(STATIC, 2);
    assert_eq!(applied["Pending"], true);
    assert!(b.rendered().unwrap().contains("Address=192.0.2.10/24"));
    // No confirm: the daemon reverts to the image's default (the rendered
    // file removed) by itself, reloads, and puts the name back.
    let reverted = wait_until(Duration::from_secs(15), || {
        (b.rendered().is_none() && b.calls().len() == 4).then_some(())
    });
    assert!(
        reverted.is_some(),
        "not reverted: {:?} {:?}\n{}",
        b.rendered(),
        b.calls(),
        b.daemon.log()
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    assert_eq!(
        b.calls(),
        [
            "reload".to_owned(),
            "hostname time2".to_owned(),
            "reload".to_owned(),
            format!("hostname {host}")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(b.data().join("hostname")).unwrap(),
        format!("{host}\n")
    );
    let shown = b.ctl(&["show"]);
    assert_eq!(
        (shown["Pending"].clone(), shown["Managed"].clone()),
        (false.into(), false.into())
    );
    let r = gdbus_call(&b.bus, None, "Network.Confirm", &[]);
    assert!(
        r.stderr.contains("org.skytime.Error.Refused"),
        "{}",
        r.all()
    );
    assert!(!b.data().join("network.pending.toml").exists());

    // A restart during a probation reverts too, the host name included:
    // first with no name confirmed (the one before comes back) ...
    b.apply("hostname = \"probe\"\n", 600);
    assert_eq!(
        std::fs::read_to_string(b.data().join("hostname")).unwrap(),
        "probe\n"
    );
    let b = restart(b);
    assert_eq!(
        std::fs::read_to_string(b.data().join("hostname")).unwrap(),
        format!("{host}\n")
    );
    assert_eq!(b.calls().last().unwrap(), &format!("hostname {host}"));
    assert_eq!(b.ctl(&["show"])["Managed"], false);
    // ... then over confirmed settings.
    b.apply("hostname = \"keep\"\n", 60);
    b.ctl(&["confirm"]);
    b.apply(STATIC, 600);
    assert!(b.data().join("network.pending.toml").exists());
    let b = restart(b);
    assert!(!b.data().join("network.pending.toml").exists());
    let r = b.rendered().unwrap();
    assert!(r.contains("DHCP=yes") && r.contains("Hostname=keep"), "{r}");
    assert_eq!(b.ctl(&["show"])["Hostname"], "keep");
    assert!(
        b.daemon.log().contains("was not confirmed"),
        "{}",
        b.daemon.log()
    );
}

/// Kills the daemon (no clean stop) and starts it again on the same data.
fn restart(b: Node) -> Node {
    let Node {
        bus,
        daemon,
        out,
        calls,
    } = b;
    let config_text = std::fs::read_to_string(&daemon.config_path).unwrap();
    let dir = daemon.kill();
    let daemon = Daemon::start_in_env(
        dir,
        &config_text,
        &[],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str())],
    );
    Node {
        bus,
        daemon,
        out,
        calls,
    }
}

#[test]
fn bad_settings_are_refused_by_name_and_an_installed_certificate_is_kept() {
    let b = Node::start("[network]\nhostname = \"seed1\"\n");
    let data = b.data();
    let before = (
        skytime_tests::dbus::snapshot_dir(&data),
        b.rendered(),
        b.calls(),
    );
    for (text, confirm, error) in [
        (
            "mode = \"static\"\n",
            "@u 60",
            "org.skytime.Error.InvalidConfig",
        ),
        (
            "hostname = \"bad_name\"\n",
            "@u 60",
            "org.skytime.Error.InvalidConfig",
        ),
        (
            "[ipv4]\naddress = \"192.0.2.300/24\"\n",
            "@u 60",
            "org.skytime.Error.InvalidConfig",
        ),
        ("speed = 10\n", "@u 60", "org.skytime.Error.InvalidConfig"),
        (
            "hostname = \"fine\"\n",
            "@u 1",
            "org.freedesktop.DBus.Error.InvalidArgs",
        ),
    ] {
        let r = gdbus_call(
            &b.bus,
            None,
            "Network.Apply",
            &[&gvariant_str(text), confirm],
        );
        assert!(!r.ok() && r.stderr.contains(error), "{text:?}: {}", r.all());
        assert!(r.stderr.contains("nothing was changed"), "{}", r.all());
    }
    // A user outside skytime-admin may not apply.
    let r = gdbus_call(
        &b.bus,
        Some(UNPRIVILEGED),
        "Network.Apply",
        &[&gvariant_str("hostname = \"x\"\n"), "@u 60"],
    );
    assert!(r.stderr.contains("AccessDenied"), "{}", r.all());
    assert_eq!(
        (
            skytime_tests::dbus::snapshot_dir(&data),
            b.rendered(),
            b.calls()
        ),
        before,
        "a refused apply changed something"
    );

    // An operator's certificate survives a host name change.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert("operator.example.test", 2100);
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, &cert).unwrap();
    std::fs::write(&k, &key).unwrap();
    let r = ctl(
        &b.bus,
        None,
        &[
            "certificate",
            "install",
            &c.display().to_string(),
            &k.display().to_string(),
        ],
    );
    assert!(r.ok(), "{}", r.all());
    b.apply("hostname = \"renamed\"\n", 60);
    let confirmed = b.ctl(&["confirm"]);
    assert!(
        confirmed["Certificate"]
            .as_str()
            .unwrap()
            .starts_with("kept"),
        "{confirmed}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("cert.pem")).unwrap(),
        cert
    );
    assert!(sans(&data.join("cert.pem")).contains("operator.example.test"));
}

/// `skytimectl --host` through the real gateway (mutual TLS) in front of
/// the same daemon: show, apply and confirm with the admin certificate;
/// a read certificate may show but not apply; the gateway's certificate
/// then names the new host name, with the same key.
#[test]
fn through_the_gateway_with_skytimectl_host() {
    use skytime_tests::mgmt::{Ca, Gateway, Remote, Usage};
    let b = Node::start("");
    let admin_ca = Ca::new("skytime test operators");
    let read_ca = Ca::new("skytime test readers");
    let dir = Gateway::prepare(
        &b.bus.address,
        "",
        &[
            ("skytime-admin-ca.pem", admin_ca.pem.cert.as_str()),
            ("skytime-read-ca.pem", read_ca.pem.cert.as_str()),
        ],
    );
    let gw = Gateway::start(dir);
    let files = tempfile::tempdir().unwrap();
    let (ac, ak) = admin_ca
        .client("admin", 2100, Usage::ClientAuth)
        .write(files.path(), "admin");
    let (rc, rk) = read_ca
        .client("reader", 2100, Usage::ClientAuth)
        .write(files.path(), "reader");
    let host = format!("localhost:{}", gw.addr.port());
    let admin = Remote::new(&host, &ac, &ak, &gw.server_cert());
    let reader = Remote::new(&host, &rc, &rk, &gw.server_cert());
    let settings = files.path().join("net.toml");
    std::fs::write(&settings, STATIC).unwrap();
    let f = settings.display().to_string();

    let r = reader.run(&["--json", "network", "show"]);
    assert!(r.ok(), "{}", r.all());
    assert_eq!(r.json(), b.ctl(&["show"]), "the same record as on D-Bus");
    let r = reader.run(&["network", "apply", &f]);
    assert_eq!(
        r.code,
        Some(4),
        "a read certificate may not apply: {}",
        r.all()
    );
    assert_eq!(b.rendered(), None);

    let r = admin.run(&["network", "apply", &f, "--confirm-within", "60"]);
    assert!(r.ok() && r.stdout.contains("revert in 60 s"), "{}", r.all());
    assert!(b.rendered().unwrap().contains("Address=192.0.2.10/24"));
    let r = admin.run(&["--json", "network", "confirm"]);
    assert!(r.ok(), "{}", r.all());
    let j = r.json();
    assert_eq!(j["Pending"], false, "{j}");
    assert!(
        j["Certificate"].as_str().unwrap().starts_with("reissued"),
        "{j}"
    );
    let r = admin.run(&["network", "confirm"]);
    assert!(
        !r.ok() && r.stderr.contains("org.skytime.Error.Refused"),
        "{}",
        r.all()
    );

    // The gateway's own certificate follows the new host name (at its
    // next start here; every minute while it runs) with the same key, and
    // keeps the name it had: a client still reaches it as before.
    let key_before = std::fs::read(gw.data.join("server-key.pem")).unwrap();
    let gw = Gateway::start(gw.stop());
    let s = sans(&gw.server_cert());
    for want in ["DNS:time2", "DNS:time2.local", "DNS:localhost"] {
        assert!(
            s.contains(want),
            "the gateway's certificate lacks {want}: {s}"
        );
    }
    assert_eq!(
        std::fs::read(gw.data.join("server-key.pem")).unwrap(),
        key_before,
        "the gateway's key changed"
    );
    let host = format!("localhost:{}", gw.addr.port());
    let r = Remote::new(&host, &ac, &ak, &gw.server_cert()).run(&["--json", "network", "show"]);
    assert!(r.ok(), "{}", r.all());
    assert_eq!(r.json()["Hostname"], "time2");
}
