//! `skytimectl --host` against the real gateway in front of the real
//! skytimed: every command, the same records and tables as over D-Bus,
//! and the exit codes scripts rely on (a read certificate refused every
//! write, a rogue certificate refused at the handshake, an untrusted or
//! unreachable gateway, bad input).

use skytime_tests::dbus::{ctl, make_cert};
use skytime_tests::mgmt::{Appliance, Ca, Gateway, Remote, Usage};
use skytime_tests::{free_tcp_port, wait_until_every};
use std::path::Path;
use std::time::Duration;

#[test]
fn every_command_through_the_gateway_reads_and_exits_as_over_dbus() {
    let a = Appliance::start("");
    let admin_ca = Ca::new("skytime test operators");
    let read_ca = Ca::new("skytime test readers");
    let dir = Gateway::prepare(
        &a.bus.address,
        "[limits]\nwrite_burst = 100\n",
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
    let (xc, xk) = Ca::new("rogue")
        .client("admin", 2100, Usage::ClientAuth)
        .write(files.path(), "rogue");
    let host = format!("localhost:{}", gw.addr.port());
    let admin = Remote::new(&host, &ac, &ak, &gw.server_cert());
    let reader = Remote::new(&host, &rc, &rk, &gw.server_cert());
    let synced = wait_until_every(Duration::from_secs(120), Duration::from_millis(500), || {
        let t = reader.run(&["--json", "tracking"]).json();
        (t["Stratum"] == 1).then_some(())
    });
    assert!(synced.is_some(), "{}", a.daemon.log());

    // Every read, as text and as JSON; the records are those on D-Bus.
    for cmd in [
        "status",
        "tracking",
        "sources",
        "sourcestats",
        "serverstats",
        "clients",
        "nts",
        "authdata",
        "alarms",
        "history",
    ] {
        let r = reader.run(&[cmd]);
        assert!(r.ok() && !r.stdout.trim().is_empty(), "{cmd}: {}", r.all());
        let r = reader.run(&["--json", cmd]);
        assert!(r.ok(), "{cmd}: {}", r.all());
        r.json();
    }
    let local = ctl(&a.bus, None, &["nts"]);
    assert_eq!(reader.run(&["nts"]).stdout, local.stdout, "the same table");
    assert_eq!(
        reader.run(&["--json", "nts"]).json(),
        ctl(&a.bus, None, &["--json", "nts"]).json()
    );
    let local = ctl(&a.bus, None, &["--json", "sources"]).json();
    let remote = reader.run(&["--json", "sources"]).json();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["Name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&remote), names(&local));
    let status = reader.run(&["status"]).stdout;
    assert!(
        status.contains("Verdict") && status.contains("stratum 1, synchronised"),
        "{status}"
    );

    // Writes: the admin certificate may, the read certificate may not.
    skytime_tests::mgmt::assert_only_admin_writes(&reader, &admin);
    let good = files.path().join("good.toml");
    std::fs::write(&good, "[log]\nlevel = \"info\"\n").unwrap();
    let bad = files.path().join("bad.toml");
    std::fs::write(&bad, "[ntp]\n\nlocal_stratum = 99\n").unwrap();
    let r = admin.run(&["config", "check", good.to_str().unwrap()]);
    assert!(r.ok() && r.stdout.contains("valid"), "{}", r.all());
    let r = admin.run(&["--json", "config", "apply", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(5), "{}", r.all());
    assert!(
        r.stderr.contains("line 3") && r.stderr.contains("org.skytime.Error.InvalidConfig"),
        "{}",
        r.all()
    );
    assert_eq!(r.json()["exit_code"], 5);
    let (cert, key) = make_cert("remote.example.test", 2100);
    let (c, k) = (files.path().join("c.pem"), files.path().join("k.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let r = admin.run(&[
        "certificate",
        "install",
        c.to_str().unwrap(),
        k.to_str().unwrap(),
    ]);
    assert!(
        r.ok() && r.stdout.contains("installed and in use"),
        "{}",
        r.all()
    );
    let r = admin.run(&["config", "reload"]);
    assert!(r.ok(), "{}", r.all());
    // No logind on the test bus: skytimed says why, exit 1.
    let r = admin.run(&["reboot"]);
    assert!(
        r.code == Some(1) && r.stderr.contains("logind"),
        "{}",
        r.all()
    );
    let r = admin.run(&["config", "apply", "/nonexistent.toml"]);
    assert_eq!(r.code, Some(5), "{}", r.all());

    // Refused at the handshake, not trusted, not reachable, no key.
    let r = Remote::new(&host, &xc, &xk, &gw.server_cert()).run(&["tracking"]);
    assert_eq!(r.code, Some(4), "{}", r.all());
    assert!(
        r.stderr.contains("refused the client certificate"),
        "{}",
        r.all()
    );
    let other = files.path().join("other-ca.pem");
    std::fs::write(&other, &read_ca.pem.cert).unwrap();
    let r = Remote::new(&host, &ac, &ak, &other).run(&["tracking"]);
    assert_eq!(r.code, Some(3), "{}", r.all());
    assert!(r.stderr.contains("cannot trust"), "{}", r.all());
    let closed = format!("127.0.0.1:{}", free_tcp_port());
    let r = Remote::new(&closed, &ac, &ak, &gw.server_cert()).run(&["tracking"]);
    assert_eq!(r.code, Some(3), "{}", r.all());
    let r = Remote::new(&host, &ac, Path::new("/nonexistent.pem"), &gw.server_cert())
        .run(&["tracking"]);
    assert_eq!(r.code, Some(5), "{}", r.all());
    // The audit log has the writes and the refusal, with the roles.
    let audit = gw.audit();
    assert!(
        audit.contains("\"role\":\"read\"") && audit.contains("POST /api/v1/Nts/RotateKeys"),
        "{audit}"
    );
}
