//! Update bundles through the gateway: streamed to the data directory
//! with a size cap and a hash check, then handed to
//! `org.skytime.Appliance1.Update.Install(path, options)`. Here a
//! stand-in owns the bus name and serves only `Update`, recording what it
//! is handed and the bytes of the file at that moment; the install
//! through the real skytimed and RAUC is tests/tests/update_dbus.rs. The
//! 507 case mounts a small tmpfs (root needed) for the uploads directory.

use serde_json::json;
use skytime_tests::dbus::{PrivateBus, BUS_NAME, OBJECT_PATH};
use skytime_tests::mgmt::{Ca, Client, Gateway, Pem, Usage};
use skytime_tests::wait_until;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::zvariant::OwnedValue;

/// What the stand-in was handed: path, options, SHA-256 of the file.
type Installs = Arc<Mutex<Vec<(String, HashMap<String, OwnedValue>, String)>>>;

/// Something else on the object: the appliance without an `Update`.
struct Other;

#[zbus::interface(name = "org.skytime.Appliance1.Other")]
impl Other {
    fn nothing(&self) {}
}

struct Update {
    installs: Installs,
    refuse: Arc<Mutex<bool>>,
}

#[zbus::interface(name = "org.skytime.Appliance1.Update")]
impl Update {
    fn install(
        &self,
        path: String,
        options: HashMap<String, OwnedValue>,
    ) -> zbus::fdo::Result<HashMap<String, OwnedValue>> {
        let bytes = std::fs::read(&path).unwrap_or_default();
        self.installs
            .lock()
            .unwrap()
            .push((path, options, sha256(&bytes)));
        if *self.refuse.lock().unwrap() {
            return Err(zbus::fdo::Error::Failed("refused by the stand-in".into()));
        }
        let mut reply = HashMap::new();
        reply.insert(
            "Operation".to_owned(),
            OwnedValue::from(zbus::zvariant::Str::from("installing")),
        );
        Ok(reply)
    }
}

fn sha256(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

fn bundle(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7919 % 251) as u8).collect()
}

/// `body` posted to Install chunked (no length announced), 64 KiB a
/// chunk, stopping early if the gateway cuts the connection; the reply as
/// text (empty if none came).
fn post_chunked(client: &Client, body: &[u8]) -> String {
    let mut c = client.connect().unwrap();
    write!(c, "POST {INSTALL}?sha256={} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", sha256(body)).unwrap();
    for chunk in body.chunks(65536) {
        if write!(c, "{:x}\r\n", chunk.len())
            .and_then(|()| c.write_all(chunk))
            .and_then(|()| c.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = c.write_all(b"0\r\n\r\n");
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut c, &mut reply);
    reply
}

/// Files in the uploads directory.
fn uploads(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("uploads"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

struct Setup {
    _bus: PrivateBus,
    _conn: zbus::Connection,
    installs: Installs,
    refuse: Arc<Mutex<bool>>,
    gw: Gateway,
    admin: Pem,
    reader: Pem,
    _rt: tokio::runtime::Runtime,
}

fn setup(with_update: bool) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bus = PrivateBus::start(&[]);
    let installs = Installs::default();
    let refuse = Arc::new(Mutex::new(false));
    let conn = rt.block_on(async {
        let b = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(BUS_NAME)
            .unwrap();
        let b = if with_update {
            b.serve_at(
                OBJECT_PATH,
                Update {
                    installs: installs.clone(),
                    refuse: refuse.clone(),
                },
            )
            .unwrap()
        } else {
            b.serve_at(OBJECT_PATH, Other).unwrap()
        };
        b.build().await.unwrap()
    });
    let ca = Ca::new("skytime test operators");
    let read_ca = Ca::new("skytime test readers");
    let dir = Gateway::prepare(
        &bus.address,
        "[limits]\nmax_upload = 1048576\nidle_timeout = 3.0\nwrite_burst = 100\n",
        &[
            ("skytime-admin-ca.pem", ca.pem.cert.as_str()),
            ("skytime-read-ca.pem", read_ca.pem.cert.as_str()),
        ],
    );
    Setup {
        gw: Gateway::start(dir),
        admin: ca.client("admin", 2100, Usage::ClientAuth),
        reader: read_ca.client("reader", 2100, Usage::ClientAuth),
        _bus: bus,
        _conn: conn,
        installs,
        refuse,
        _rt: rt,
    }
}

const INSTALL: &str = "/api/v1/Update/Install";

#[test]
fn a_whole_bundle_with_its_hash_is_stored_and_handed_to_install() {
    let s = setup(true);
    let admin = s.gw.client(Some(&s.admin));
    let b = bundle(700_000);
    let hash = sha256(&b);
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={hash}&force=true&note=from%20test"),
            &[],
            &b,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"Operation": "installing"}));
    let installs = s.installs.lock().unwrap().clone();
    assert_eq!(installs.len(), 1);
    let (path, options, got) = &installs[0];
    assert_eq!(
        got, &hash,
        "the file Install was handed is the whole bundle"
    );
    assert!(
        path.starts_with(&s.gw.data.join("uploads").display().to_string())
            && path.ends_with(".raucb"),
        "{path}"
    );
    assert!(bool::try_from(options["force"].try_clone().unwrap()).unwrap());
    assert_eq!(
        String::try_from(options["note"].try_clone().unwrap()).unwrap(),
        "from test"
    );
    assert_eq!(uploads(&s.gw.data).len(), 1, "{:?}", uploads(&s.gw.data));
    let audit = s.gw.audit();
    assert!(
        audit.contains(&format!("bundle 700000 bytes sha256 {hash}")),
        "{audit}"
    );
    // A second bundle replaces the first.
    let b2 = bundle(1000);
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={}", sha256(&b2)),
            &[],
            &b2,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(uploads(&s.gw.data).len(), 1);
    // The read role may not upload.
    let r =
        s.gw.client(Some(&s.reader))
            .request("POST", &format!("{INSTALL}?sha256={hash}"), &[], &b)
            .unwrap();
    assert_eq!(r.status, 403);
}

#[test]
fn wrong_hash_too_large_truncated_and_refused_bundles_leave_nothing() {
    let s = setup(true);
    let admin = s.gw.client(Some(&s.admin));
    let b = bundle(200_000);
    let hash = sha256(&b);
    // Another hash: 422, deleted.
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={}", "0".repeat(64)),
            &[],
            &b,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (422, "org.skytime.Error.HashMismatch"),
        "{}",
        r.text()
    );
    // No hash at all: 400.
    let r = admin.request("POST", INSTALL, &[], &b).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // Larger than max_upload, announced: 413 before it is read.
    let big = bundle(1_048_577);
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={}", sha256(&big)),
            &[],
            &big,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error().as_str()),
        (413, "org.skytime.Error.TooLarge"),
        "{}",
        r.text()
    );
    // Larger than max_upload, chunked (no length announced): cut at the cap.
    let reply = post_chunked(&admin, &big);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Truncated: the client announces more than it sends and goes away.
    let mut c = admin.connect().unwrap();
    write!(
        c,
        "POST {INSTALL}?sha256={hash} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        b.len()
    )
    .unwrap();
    c.write_all(&b[..50_000]).unwrap();
    c.flush().unwrap();
    drop(c);
    let audited = wait_until(Duration::from_secs(10), || {
        s.gw.audit()
            .contains("org.skytime.Error.Truncated")
            .then_some(())
    });
    assert!(audited.is_some(), "{}", s.gw.audit());
    // Refused by Install: the stored bundle goes again.
    *s.refuse.lock().unwrap() = true;
    let r = admin
        .request("POST", &format!("{INSTALL}?sha256={hash}"), &[], &b)
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.error(), "org.freedesktop.DBus.Error.Failed");
    assert_eq!(
        s.installs.lock().unwrap().len(),
        1,
        "only the whole, matching bundle reached Install"
    );
    assert!(
        uploads(&s.gw.data).is_empty(),
        "left behind: {:?}",
        uploads(&s.gw.data)
    );
}

#[test]
fn without_an_update_interface_the_upload_is_not_kept() {
    let s = setup(false);
    let admin = s.gw.client(Some(&s.admin));
    let b = bundle(10_000);
    let r = admin
        .request("POST", &format!("{INSTALL}?sha256={}", sha256(&b)), &[], &b)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.gw.log()));
    assert_eq!(r.status, 501, "{}", r.text());
    assert!(
        r.error().starts_with("org.freedesktop.DBus.Error.Unknown"),
        "{}",
        r.text()
    );
    assert!(uploads(&s.gw.data).is_empty(), "{:?}", uploads(&s.gw.data));
}

/// A small tmpfs mounted by the test (and unmounted on drop, also when
/// the test fails): a data partition with little room.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(at: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0750"))
            .arg("skytime-test-upload")
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_owned())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (the gateway still holds a file): detach it anyway.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// The uploads directory on a file system with 16.5 MiB free: a bundle
/// that, with the 16 MiB the gateway keeps free, does not fit is refused
/// with 507 and its D-Bus-style body, before a byte is stored when its
/// length is announced, and as soon as it passes the room when chunked;
/// one that fits still goes through, and the gateway keeps serving.
#[test]
fn a_bundle_the_data_partition_has_no_room_for_is_refused_with_507() {
    let s = setup(true);
    let dir = s.gw.data.join("uploads");
    let _fs = SmallFs::mount(&dir, (16 << 20) + (512 << 10));
    let admin = s.gw.client(Some(&s.admin));

    let big = bundle(900_000);
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={}", sha256(&big)),
            &[],
            &big,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", s.gw.log()));
    assert_eq!(
        (r.status, r.error().as_str()),
        (507, "org.skytime.Error.NoSpace"),
        "{}",
        r.text()
    );
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("900000 bytes") && message.contains("free on the data partition"),
        "{message}"
    );
    assert!(uploads(&s.gw.data).is_empty(), "{:?}", uploads(&s.gw.data));
    assert!(s.installs.lock().unwrap().is_empty(), "Install was called");
    let audited = wait_until(Duration::from_secs(10), || {
        s.gw.audit()
            .contains("org.skytime.Error.NoSpace")
            .then_some(())
    });
    assert!(audited.is_some(), "{}", s.gw.audit());

    // The same bundle chunked (no length announced): cut once it passes
    // the room, the partial file deleted.
    let reply = post_chunked(&admin, &big);
    assert!(reply.starts_with("HTTP/1.1 507"), "{reply}");
    assert!(reply.contains("org.skytime.Error.NoSpace"), "{reply}");
    assert!(uploads(&s.gw.data).is_empty(), "{:?}", uploads(&s.gw.data));
    assert!(s.installs.lock().unwrap().is_empty(), "Install was called");

    // Still serving: a bundle that fits is stored and handed over.
    let small = bundle(100_000);
    let r = admin
        .request(
            "POST",
            &format!("{INSTALL}?sha256={}", sha256(&small)),
            &[],
            &small,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", s.gw.log()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.installs.lock().unwrap().len(), 1);
    assert_eq!(uploads(&s.gw.data).len(), 1, "{:?}", uploads(&s.gw.data));
}
