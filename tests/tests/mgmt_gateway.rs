//! The management gateway end to end with the real binaries: a private
//! dbus-daemon, skytimed fed by the GPS simulator, skytime-mgmtd on
//! 127.0.0.1 (a port the kernel picks) with operators enrolled through
//! its own `enrol` command, and clients made by the test (an admin
//! certificate from the admin CA, a read certificate from the read CA, a
//! pinned read certificate). Every route for each role; bad input; a
//! burst of writes; the audit log across a restart.

use serde_json::json;
use skytime_mgmtd::routes::{Access, ROUTES};
use skytime_tests::dbus::make_cert;
use skytime_tests::mgmt::{self_signed_client, Appliance, Ca, Gateway, Pem, Usage};

struct Operators {
    admin: Pem,
    reader: Pem,
    pinned: Pem,
    files: Vec<(&'static str, String)>,
}

fn operators() -> Operators {
    let admin_ca = Ca::new("skytime test operators");
    let read_ca = Ca::new("skytime test readers");
    let pinned = self_signed_client("pinned reader");
    Operators {
        admin: admin_ca.client("admin", 2100, Usage::ClientAuth),
        reader: read_ca.client("reader", 2100, Usage::ClientAuth),
        files: vec![
            ("skytime-admin-ca.pem", admin_ca.pem.cert.clone()),
            ("skytime-read-ca.pem", read_ca.pem.cert.clone()),
            ("skytime-read-cert.pem", pinned.cert.clone()),
        ],
        pinned,
    }
}

fn files(o: &Operators) -> Vec<(&str, &str)> {
    o.files.iter().map(|(n, t)| (*n, t.as_str())).collect()
}

/// A write that would pass, for each write route: (body, status the
/// admin gets). No logind runs on the test bus, so power actions fail
/// with PowerFailed (500) in skytimed; the update route needs an upload,
/// and without RAUC the other update writes say it is unavailable.
fn admin_write(path: &str) -> (serde_json::Value, u16) {
    let (cert, key) = make_cert("installed.example.test", 2100);
    match path {
        "/api/v1/Nts/InstallCertificate" => (
            json!({"certificate_pem": cert, "private_key_pem": key}),
            200,
        ),
        "/api/v1/Nts/RotateKeys" | "/api/v1/Config/Reload" => (json!({}), 200),
        "/api/v1/Config/Apply" => (
            json!({"toml": "[log]\nlevel = \"info\"\n", "dry_run": true}),
            200,
        ),
        "/api/v1/Power/Reboot" | "/api/v1/Power/PowerOff" => (json!({}), 500),
        "/api/v1/Update/Install" => (json!({}), 400),
        // No RAUC on the test bus: UpdateUnavailable (503); nothing is
        // installed to reboot into (Refused, 409).
        "/api/v1/Update/Check" => (json!({"path": "/nonexistent.raucb"}), 503),
        "/api/v1/Update/Rollback" => (json!({}), 503),
        "/api/v1/Update/InstallFromUrl" => (
            json!({"url": "https://127.0.0.1:9/b.raucb", "sha256": "ab".repeat(32), "options": {}}),
            503,
        ),
        "/api/v1/Update/Reboot" => (json!({}), 409),
        // Settings that do not validate (InvalidConfig, 422) and a
        // confirmation with nothing pending (Refused, 409): the routes
        // reach skytimed without changing this machine's network.
        "/api/v1/Network/Apply" => (
            json!({"toml": "mode = \"static\"\n", "confirm_seconds": 60}),
            422,
        ),
        "/api/v1/Network/Confirm" => (json!({}), 409),
        other => panic!("no example write for {other}: add one"),
    }
}

#[test]
fn every_route_for_each_role() {
    let a = Appliance::start("");
    let o = operators();
    let dir = Gateway::prepare(&a.bus.address, "[limits]\nwrite_burst = 100\n", &files(&o));
    let gw = Gateway::start(dir);
    let admin = gw.client(Some(&o.admin));
    let reader = gw.client(Some(&o.reader));
    let pinned = gw.client(Some(&o.pinned));
    for r in ROUTES {
        let path = r.path();
        if r.access == Access::Read {
            for (who, c) in [("admin", &admin), ("reader", &reader), ("pinned", &pinned)] {
                let resp = c.get(&path).unwrap();
                assert_eq!(resp.status, 200, "{who} GET {path}: {}", resp.text());
                assert!(!resp.json().is_null(), "{path}");
            }
            let resp = admin.post(&path, &json!({})).unwrap();
            assert_eq!(resp.status, 405, "POST on a read route");
            assert_eq!(resp.header("Allow"), Some("GET"));
        } else {
            let (body, status) = admin_write(&path);
            for (who, c) in [("reader", &reader), ("pinned", &pinned)] {
                let resp = c.post(&path, &body).unwrap();
                assert_eq!(resp.status, 403, "{who} POST {path}: {}", resp.text());
                assert_eq!(resp.error(), "org.freedesktop.DBus.Error.AccessDenied");
            }
            let resp = admin.post(&path, &body).unwrap();
            assert_eq!(resp.status, status, "admin POST {path}: {}", resp.text());
        }
    }
    // The records are the D-Bus records: what skytimectl reads on the bus.
    let tracking = admin.get("/api/v1/Tracking/properties").unwrap().json();
    let ctl = skytime_tests::dbus::ctl(&a.bus, None, &["--json", "nts"]).json();
    let nts = admin.get("/api/v1/Nts/GetStatus").unwrap().json();
    assert_eq!(nts["Certificate"], ctl["Certificate"], "{nts}\n{ctl}");
    assert!(
        tracking["Stratum"].is_u64() && tracking["LeapStatus"].is_string(),
        "{tracking}"
    );
    let history = admin
        .get("/api/v1/Monitor/History?seconds=3600")
        .unwrap()
        .json();
    assert!(history.is_array(), "{history}");
    // The certificate installed over HTTPS is the one NTS-KE serves now.
    assert_eq!(
        nts["Certificate"]["SubjectAltNames"],
        json!(["DNS:installed.example.test"]),
        "{nts}"
    );

    // curl, a client nobody here wrote, with the admin certificate.
    let out = gw.curl(
        Some(&o.admin),
        &["--fail-with-body"],
        "/api/v1/Sources/GetSources",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"Name\""),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every refusal and write is in the audit log, with the client's
    // fingerprint and never key material.
    let audit = gw.audit();
    assert!(audit.contains("\"action\":\"POST /api/v1/Nts/RotateKeys\",\"result\":\"org.freedesktop.DBus.Error.AccessDenied\""), "{audit}");
    assert!(
        audit.contains("\"role\":\"admin\"") && audit.contains("\"role\":\"read\""),
        "{audit}"
    );
    assert!(
        !audit.contains("PRIVATE KEY") && !audit.contains("BEGIN"),
        "{audit}"
    );
}

#[test]
fn bad_input_is_refused_by_name_and_nothing_changes() {
    let a = Appliance::start("");
    let o = operators();
    let dir = Gateway::prepare(
        &a.bus.address,
        "[limits]\nmax_body = 65536\nwrite_burst = 100\n",
        &files(&o),
    );
    let gw = Gateway::start(dir);
    let admin = gw.client(Some(&o.admin));
    let managed = a.daemon.dir.path().join("data/skytime.toml");
    let apply = "/api/v1/Config/Apply";
    let send = |body: &[u8]| {
        admin
            .request("POST", apply, &[("Content-Type", "application/json")], body)
            .unwrap()
    };

    let r = send(b"{\"toml\": ");
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "org.freedesktop.DBus.Error.InvalidArgs"),
        "{}",
        r.text()
    );
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let r = send(b"[1, 2]");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = admin
        .post(apply, &json!({"toml": "", "dry_run": true, "force": true}))
        .unwrap();
    assert_eq!(r.status, 400, "unknown argument: {}", r.text());
    assert!(r.text().contains("force"), "{}", r.text());
    let r = admin.post(apply, &json!({"toml": ""})).unwrap();
    assert_eq!(r.status, 400, "missing argument: {}", r.text());
    let r = admin
        .post(apply, &json!({"toml": 7, "dry_run": true}))
        .unwrap();
    assert_eq!(r.status, 400, "mistyped argument: {}", r.text());
    let big = json!({"toml": "#".repeat(70_000), "dry_run": true});
    let r = admin.post(apply, &big).unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (413, "org.skytime.Error.TooLarge"),
        "{}",
        r.text()
    );
    // A configuration skytimed refuses: 422, the file and line named.
    let r = admin
        .post(
            apply,
            &json!({"toml": "[ntp]\n\nlocal_stratum = 99\n", "dry_run": false}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (422, "org.skytime.Error.InvalidConfig"),
        "{}",
        r.text()
    );
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("skytime.toml")
            && message.contains("line 3")
            && message.contains("out of range"),
        "{message}"
    );
    let r = admin
        .post(
            apply,
            &json!({"toml": "[ntp]\nspeed = 1\n", "dry_run": false}),
        )
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(!managed.exists(), "a refused configuration was saved");
    // A certificate that is not PEM: InvalidArgs (400), nothing installed.
    let r = admin
        .post(
            "/api/v1/Nts/InstallCertificate",
            &json!({"certificate_pem": "x", "private_key_pem": "y"}),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = admin.get("/api/v1/Nope/Nothing").unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (404, "org.skytime.Error.NotFound")
    );
    let r = admin.get("/elsewhere").unwrap();
    assert_eq!(r.status, 404);
    let r = admin.get("/api/v1/Monitor/History?seconds=-5").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // Still serving.
    assert_eq!(
        admin.get("/api/v1/Tracking/properties").unwrap().status,
        200
    );
}

#[test]
fn bursts_get_429_and_the_audit_log_survives_a_restart() {
    let a = Appliance::start("");
    let o = operators();
    let dir = Gateway::prepare(
        &a.bus.address,
        "[limits]\nwrite_burst = 3\nwrite_interval = 60\n",
        &files(&o),
    );
    let gw = Gateway::start(dir);
    let admin = gw.client(Some(&o.admin));
    let check = json!({"toml": "", "dry_run": true});
    for i in 0..3 {
        let r = admin.post("/api/v1/Config/Apply", &check).unwrap();
        assert_eq!(r.status, 200, "write {i}: {}", r.text());
    }
    let r = admin.post("/api/v1/Config/Apply", &check).unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (429, "org.skytime.Error.RateLimited"),
        "{}",
        r.text()
    );
    let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Reads are not limited.
    assert_eq!(
        admin.get("/api/v1/Tracking/properties").unwrap().status,
        200
    );
    let before = gw.audit();
    assert_eq!(before.lines().count(), 4, "{before}");
    assert!(before.contains("org.skytime.Error.RateLimited"));

    // Restart on the same data: the log goes on, and the limit starts over.
    let dir = gw.stop();
    let gw = Gateway::start(dir);
    let r = gw
        .client(Some(&o.admin))
        .post("/api/v1/Config/Apply", &check)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let after = gw.audit();
    assert!(
        after.starts_with(&before),
        "the old lines were kept:\n{after}"
    );
    assert_eq!(after.lines().count(), 5, "{after}");
    for line in after.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["client"].as_str().unwrap().len() == 95 && v["unix"].is_i64(),
            "{line}"
        );
    }
}

#[test]
fn anonymous_reading_opens_the_page_and_metrics_only() {
    let a = Appliance::start("");
    let o = operators();
    // Without anonymous reading, a client without certificate is refused
    // at the handshake.
    let dir = Gateway::prepare(&a.bus.address, "", &files(&o));
    let gw = Gateway::start(dir);
    assert!(
        gw.client(None).get("/").is_err(),
        "no certificate, no connection"
    );
    drop(gw);
    let dir = Gateway::prepare(&a.bus.address, "anonymous_read = true\n", &files(&o));
    let gw = Gateway::start(dir);
    let anon = gw.client(None);
    let page = anon.get("/").unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("id=\"verdict\""));
    let m = anon.get("/metrics").unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("skytime_tracking_stratum"),
        "{}",
        m.text()
    );
    let r = anon.get("/api/v1/Tracking/properties").unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (403, "org.freedesktop.DBus.Error.AccessDenied")
    );
    let r = anon.post("/api/v1/Nts/RotateKeys", &json!({})).unwrap();
    assert_eq!(r.status, 403);
    assert!(gw.audit().contains("\"client\":\"-\""), "{}", gw.audit());
    // Enrolled clients read the page too, and the API.
    assert_eq!(gw.client(Some(&o.reader)).get("/").unwrap().status, 200);
}
