//! RAUC on the host, for skytime-ota's tests and skytimed's update tests:
//! RAUC 1.13 from Debian 13 (tests/scripts/trixie-tools.sh, cached under
//! target/trixie-tools), signing setups and bundles made by ota/bundle.sh,
//! a private dbus-daemon and `rauc service` on file-backed slots
//! ([`Rig`]). Every process a test starts is stopped when its handle
//! drops; every wait is bounded.
//!
//! Needs the workspace's binaries built (`skytime-rauc-hook`,
//! `skytime-ota-build`; `cargo build --workspace --bins`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository.
pub fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory for this test binary, emptied once per run.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let d = top().join("target/tmp/skytime-ota").join(name);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    })
}

use crate::{bin, run_bounded};

/// Debian 13's RAUC 1.13, unpacked once under target/trixie-tools.
pub fn rauc() -> &'static Path {
    static RAUC: OnceLock<PathBuf> = OnceLock::new();
    RAUC.get_or_init(|| {
        let dir = top().join("target/trixie-tools");
        let out = run_bounded(
            Command::new(top().join("tests/scripts/trixie-tools.sh")).arg(&dir),
            Duration::from_secs(900),
        );
        assert!(
            out.status.success(),
            "trixie-tools.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rauc = dir.join("bin/rauc");
        let v = run_bounded(
            Command::new(&rauc).arg("--version"),
            Duration::from_secs(30),
        );
        assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "rauc 1.13");
        rauc
    })
}

/// A signing setup: certificate, key, and the CA that trusts it.
#[derive(Debug, Clone)]
pub struct Signer {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub keyring: PathBuf,
}

fn signer(name: &str, cn: &str) -> Signer {
    let dir = scratch().join(name);
    let out = run_bounded(
        Command::new(top().join("ota/dev-ca.sh")).arg(&dir).arg(cn),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "dev-ca.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Signer {
        cert: dir.join("signing.pem"),
        key: dir.join("signing.key"),
        keyring: dir.join("ca.pem"),
    }
}

/// The setup the test appliance trusts.
pub fn trusted() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| signer("pki-trusted", "skytime test"))
}

/// A setup the test appliance does not trust.
pub fn untrusted() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| signer("pki-untrusted", "someone else"))
}

/// The hook for test bundles: skytime-rauc-hook without its debug
/// information (50 MB less to compress into every bundle).
pub fn hook() -> &'static Path {
    static HOOK: OnceLock<PathBuf> = OnceLock::new();
    HOOK.get_or_init(|| {
        let out = scratch().join("hook");
        let r = run_bounded(
            Command::new("strip")
                .arg("-o")
                .arg(&out)
                .arg(bin("skytime-rauc-hook")),
            Duration::from_secs(60),
        );
        assert!(
            r.status.success(),
            "strip: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        out
    })
}

/// The running system's version in the test rig.
pub const RUNNING: &str = "0.2.0+20250301.000000";

/// What a test bundle is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    pub version: String,
    pub format: &'static str,
    pub compatible: &'static str,
    pub trusted: bool,
}

impl Spec {
    /// A plain bundle of `version` for skytime-rpi4, signed by the trusted
    /// setup.
    pub fn plain(version: &str) -> Self {
        Self {
            version: version.into(),
            format: "plain",
            compatible: "skytime-rpi4",
            trusted: true,
        }
    }
}

/// The root file system image of a version: 1 MiB, its bytes depend on
/// the version.
pub fn rootfs_bytes(version: &str) -> Vec<u8> {
    let seed = version
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// The boot files of a version.
pub fn bootfiles(version: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "vmlinuz",
            format!("kernel of {version}").repeat(1000).into_bytes(),
        ),
        ("initrd.img", format!("initramfs of {version}").into_bytes()),
        (
            "dtbs/bcm2711-rpi-4-b.dtb",
            format!("device tree of {version}").into_bytes(),
        ),
    ]
}

/// Makes the bundle with ota/bundle.sh (`out` given) or returns the one
/// already made for `spec`.
pub fn bundle(spec: &Spec) -> PathBuf {
    static MADE: OnceLock<Mutex<HashMap<Spec, PathBuf>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = made.get(spec) {
        return p.clone();
    }
    let n = made.len();
    let out = scratch().join(format!("bundle-{n}.raucb"));
    make_bundle(spec, &out);
    made.insert(spec.clone(), out.clone());
    out
}

/// Runs ota/bundle.sh for `spec` into `out`; returns its output.
pub fn make_bundle(spec: &Spec, out: &Path) -> Output {
    let src = scratch().join(format!("src-{}", spec.version));
    if !src.exists() {
        for (rel, data) in bootfiles(&spec.version) {
            let p = src.join("boot").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        fs::write(src.join("rootfs.erofs"), rootfs_bytes(&spec.version)).unwrap();
    }
    let s = if spec.trusted { trusted() } else { untrusted() };
    let out_put = run_bounded(
        Command::new(top().join("ota/bundle.sh"))
            .arg("--rootfs")
            .arg(src.join("rootfs.erofs"))
            .arg("--bootfiles")
            .arg(src.join("boot"))
            .arg("--hook")
            .arg(hook())
            .args(["--version", &spec.version, "--format", spec.format])
            .args(["--compatible", spec.compatible, "--build", "host test"])
            .arg("--out")
            .arg(out)
            .env("RAUC", rauc())
            .env("SKYTIME_OTA_BUILD", bin("skytime-ota-build"))
            .env("SKYTIME_SIGNING_CERT", &s.cert)
            .env("SKYTIME_SIGNING_KEY", &s.key)
            .env("SKYTIME_SIGNING_KEYRING", &s.keyring),
        Duration::from_secs(300),
    );
    assert!(
        out_put.status.success(),
        "bundle.sh {spec:?}: {}",
        String::from_utf8_lossy(&out_put.stderr)
    );
    out_put
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM first so RAUC unmounts and dbus-daemon removes its socket.
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let gone = crate::wait_until(Duration::from_secs(5), || self.0.try_wait().ok().flatten());
        if gone.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A private system bus: the project's (daemon/skytimed/dist/private-bus.sh:
/// the system bus's default policy plus skytime's), with Debian's
/// rauc-service policy (from the trixie root) as the only grant for RAUC.
#[derive(Debug)]
pub struct Bus {
    pub address: String,
    dir: PathBuf,
}

fn private_bus() -> PathBuf {
    top().join("daemon/skytimed/dist/private-bus.sh")
}

impl Bus {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`Bus::start`] with `extra` policy bodies (`<policy ...>...</policy>`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let policy = top()
            .join("target/trixie-tools/root/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf");
        assert!(policy.exists(), "{} is missing", policy.display());
        let mut files = vec![policy];
        for (i, body) in extra.iter().enumerate() {
            let p = dir.join(format!("extra-policy{i}.conf"));
            fs::write(&p, format!("<busconfig>{body}</busconfig>")).unwrap();
            files.push(p);
        }
        let dir = dir.join("bus");
        let out = run_bounded(
            Command::new(private_bus())
                .arg("start")
                .arg(&dir)
                .args(&files),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "private-bus.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(address.starts_with("unix:"), "{address}");
        Self { address, dir }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new(private_bus()).arg("stop").arg(&self.dir),
            Duration::from_secs(30),
        );
    }
}

/// An HTTPS server on loopback (`openssl s_server -WWW`) serving the
/// files of `dir` with a self-signed certificate for `name` (a host name
/// or an IP address); its port and its certificate, the CA file a client
/// trusts.
pub fn https_server(dir: &Path, name: &str) -> (Killed, u16, PathBuf) {
    let (cert, key) = crate::dbus::make_cert(name, 2100);
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).unwrap();
    fs::write(tls.join("cert.pem"), &cert).unwrap();
    fs::write(tls.join("key.pem"), &key).unwrap();
    let port = crate::free_tcp_port();
    let server = Killed(
        Command::new(crate::require_program("openssl"))
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(tls.join("cert.pem"))
            .arg("-key")
            .arg(tls.join("key.pem"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(90), "the HTTPS server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (server, port, tls.join("cert.pem"))
}

/// logind as far as a reboot goes, on a rig's bus: counts the calls.
struct StandInLogind {
    reboots: Reboots,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl StandInLogind {
    fn reboot(&self, _interactive: bool) {
        *self.reboots.lock().unwrap() += 1;
    }
}

/// The bus policy that lets root own logind's name on a rig's bus (give it
/// to [`Rig::start_with`]).
pub const LOGIND_POLICY: &str = "<policy user=\"root\"><allow own=\"org.freedesktop.login1\"/>\
     <allow send_destination=\"org.freedesktop.login1\"/></policy>";

/// How many reboots the stand-in logind was asked for.
pub type Reboots = std::sync::Arc<std::sync::Mutex<u32>>;

/// A stand-in logind on `rig`'s bus (started with [`LOGIND_POLICY`]):
/// its connection (it serves while held) and the count of reboots asked.
pub async fn stand_in_logind(rig: &Rig) -> (zbus::Connection, Reboots) {
    let reboots = Reboots::default();
    let conn = zbus::connection::Builder::address(rig.bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/login1",
            StandInLogind {
                reboots: reboots.clone(),
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    (conn, reboots)
}

/// Polls `f` until it holds; panics after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    crate::wait_until(limit, || f().then_some(()))
        .unwrap_or_else(|| panic!("waited {limit:?} for {what}"));
}

/// What a fresh slot B holds before any install.
pub const EMPTY_SLOT: u8 = 0xee;

/// A RAUC appliance on the host: ota/system.conf with file-backed slots,
/// the boot partition as a directory, the test bootloader backend, running
/// `rauc service` as slot A on a private bus.
#[derive(Debug)]
pub struct Rig {
    // Dropped in this order: RAUC, our connection, the bus, the files.
    /// Held for its Drop (stops RAUC first).
    #[allow(dead_code)]
    service: Option<Killed>,
    pub conn: zbus::Connection,
    pub bus: Bus,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new rig with its own bus and RAUC service, booted from slot A.
    pub async fn start() -> Self {
        Self::start_booted("A").await
    }

    /// A new rig whose RAUC runs as booted from `slot` ("A" or "B").
    pub async fn start_booted(slot: &str) -> Self {
        Self::start_with(slot, &[]).await
    }

    /// [`Rig::start_booted`] with `extra` bus policy bodies (to let a
    /// test own another name, such as a stand-in logind).
    pub async fn start_with(slot: &str, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skytime-ota-rig")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["slots", "boot/slot-a", "data", "mnt", "bl"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("slots/a.img"), rootfs_bytes(RUNNING)).unwrap();
        fs::write(d.join("slots/b.img"), vec![EMPTY_SLOT; 2 << 20]).unwrap();
        for (rel, data) in bootfiles(RUNNING) {
            let p = d.join("boot/slot-a").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        fs::write(d.join("bl/BOOT_ORDER"), "A B\n").unwrap();
        fs::write(d.join("bl/BOOT_A_LEFT"), "3\n").unwrap();
        fs::write(d.join("bl/BOOT_B_LEFT"), "3\n").unwrap();
        fs::write(
            d.join("os-release"),
            format!("ID=debian\nIMAGE_ID=skytime-rpi4\nIMAGE_VERSION=\"{RUNNING}\"\n"),
        )
        .unwrap();
        fs::write(d.join("system.conf"), host_system_conf(d)).unwrap();
        let bus = Bus::start_with(d, extra);
        let service = start_service(d, &bus, slot);
        // Every call on this connection is bounded.
        let conn = tokio::time::timeout(
            Duration::from_secs(20),
            zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .method_timeout(Duration::from_secs(120))
                .build(),
        )
        .await
        .expect("connecting to the private bus")
        .unwrap();
        wait_for_rauc(&conn, d).await;
        Self {
            service: Some(service),
            conn,
            bus,
            dir,
        }
    }

    /// A simulated reboot into `slot`: RAUC stops and starts again as
    /// booted from it, on the same bus, slots and bootloader variables
    /// (stop skytimed first; it follows RAUC from its start).
    pub async fn reboot_into(&mut self, slot: &str) {
        drop(self.service.take());
        // The bus lets the name go once it has seen the old one leave.
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while dbus
            .name_has_owner(zbus::names::BusName::try_from("de.pengutronix.rauc").unwrap())
            .await
            .unwrap()
        {
            assert!(Instant::now() < deadline, "RAUC's name was not released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.service = Some(start_service(self.dir.path(), &self.bus, slot));
        wait_for_rauc(&self.conn, self.dir.path()).await;
    }

    /// Asserts what must not change when a bundle is refused: slot B as
    /// made, no `slot-b/` boot files, the boot order as it was.
    pub fn assert_untouched(&self) {
        let b = fs::read(self.path("slots/b.img")).unwrap();
        assert!(
            b.iter().all(|&x| x == EMPTY_SLOT),
            "slot B was written\n{}",
            self.log()
        );
        assert_eq!(self.tree("boot/slot-b"), None, "slot-b/ was written");
        assert_eq!(self.boot_var("BOOT_ORDER"), "A B");
    }

    /// RAUC's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("rauc.log")).unwrap_or_default()
    }

    /// The test bootloader's variable.
    pub fn boot_var(&self, name: &str) -> String {
        fs::read_to_string(self.path(&format!("bl/{name}")))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The files under a directory of the rig, relative path to bytes.
    pub fn tree(&self, rel: &str) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
        let root = self.path(rel);
        if !root.exists() {
            return None;
        }
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(
                        p.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                        fs::read(&p).unwrap(),
                    );
                }
            }
        }
        Some(out)
    }
}

/// `rauc service` for the rig in `d`, booted from `slot`, logging to
/// `rauc.log` (appended: a simulated reboot keeps the earlier lines).
fn start_service(d: &Path, bus: &Bus, slot: &str) -> Killed {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("rauc.log"))
        .unwrap();
    Killed(
        Command::new(rauc())
            .arg("service")
            .arg(format!("--conf={}", d.join("system.conf").display()))
            .arg(format!("--override-boot-slot={slot}"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("SKYTIME_OTA_OS_RELEASE", d.join("os-release"))
            .env("SKYTIME_OTA_STATE", d.join("data/ota/state.json"))
            .env("SKYTIME_TEST_BOOTLOADER_DIR", d.join("bl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits (bounded) until RAUC owns its name on the bus.
async fn wait_for_rauc(conn: &zbus::Connection, d: &Path) {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let name = zbus::names::BusName::try_from("de.pengutronix.rauc").unwrap();
        if dbus.name_has_owner(name).await.unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rauc service did not start: {}",
            fs::read_to_string(d.join("rauc.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ota/system.conf as the host runs it: every value a build host cannot
/// have is replaced (each replaced key must be in the template, so a
/// change there is noticed here).
pub fn host_system_conf(rig: &Path) -> String {
    let template = fs::read_to_string(top().join("ota/system.conf")).unwrap();
    let p = |rel: &str| rig.join(rel).display().to_string();
    let mut replace: HashMap<(&'static str, &'static str), Option<String>> = HashMap::from([
        (("system", "bootloader"), Some("custom".to_owned())),
        // Boot attempts are a uboot/barebox setting; the test backend
        // gives 3 like boot.cmd.
        (("system", "boot-attempts"), None),
        (("system", "boot-attempts-primary"), None),
        (("system", "data-directory"), Some(p("data"))),
        (("system", "mountprefix"), Some(p("mnt"))),
        // No device-mapper on the host: plain bundles.
        (("system", "bundle-formats"), None),
        (
            ("keyring", "path"),
            Some(trusted().keyring.display().to_string()),
        ),
        (("slot.rootfs.0", "device"), Some(p("slots/a.img"))),
        (("slot.rootfs.1", "device"), Some(p("slots/b.img"))),
        (("slot.bootfiles.0", "device"), Some(p("boot"))),
        (("slot.bootfiles.1", "device"), Some(p("boot"))),
    ]);
    let mut out = String::new();
    let mut section = String::new();
    for line in template.lines() {
        let t = line.trim();
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, _)) = t.split_once('=').filter(|_| !t.starts_with('#')) {
            let key = replace
                .keys()
                .find(|(s, key)| *s == section && *key == k.trim())
                .copied();
            if let Some(v) = key.and_then(|key| replace.remove(&key)) {
                if let Some(v) = v {
                    out.push_str(&format!("{k}={v}\n"));
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        replace.is_empty(),
        "ota/system.conf lacks {:?}",
        replace.keys()
    );
    out.push_str(&format!(
        "\n[handlers]\nbootloader-custom-backend={}\n",
        top().join("ota/tests/fixtures/bootloader.sh").display()
    ));
    out
}
