//! For every test of the management API: a private dbus-daemon with the
//! project's policy (`dist/private-bus.sh`), test users, runners for
//! skytimectl, busctl and gdbus (each bounded), certificates, a snapshot
//! of a directory to prove nothing changed, and the introspection
//! contract in comparable form.

use crate::{bin, require_program, run_bounded, Daemon};
pub use skytime_api::{BUS_NAME, OBJECT_PATH};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A local user with no rights on the appliance.
pub const UNPRIVILEGED: &str = "skytest-user";
/// A local user in group skytime-admin.
pub const ADMIN: &str = "skytest-admin";
const LIMIT: Duration = Duration::from_secs(30);

/// skytimed's dist directory (policy, contract, private-bus.sh).
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/skytimed/dist")
}

/// A private system bus with the project policy; stopped on drop.
#[derive(Debug)]
pub struct PrivateBus {
    pub dir: tempfile::TempDir,
    pub address: String,
}

impl PrivateBus {
    /// A directory for a bus and the address the bus will have there.
    pub fn prepare() -> (tempfile::TempDir, String) {
        let dir = tempfile::Builder::new()
            .prefix("skytime-sysbus")
            .tempdir()
            .unwrap();
        let address = format!("unix:path={}/system_bus_socket", dir.path().display());
        (dir, address)
    }

    /// Starts a bus with the project policy plus `extra` policy bodies.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(Self::prepare().0, extra)
    }

    /// Starts a bus in `dir` (from [`PrivateBus::prepare`]).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        require_program("dbus-daemon");
        ensure_users();
        // Test users must reach the socket inside.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let mut args = vec!["start".to_owned(), dir.path().display().to_string()];
        for (i, body) in extra.iter().enumerate() {
            let p = dir.path().join(format!("extra{i}.conf"));
            std::fs::write(&p, format!("<busconfig>{body}</busconfig>")).unwrap();
            args.push(p.display().to_string());
        }
        let out = run_bounded(
            Command::new(dist().join("private-bus.sh")).args(&args),
            LIMIT,
        );
        assert!(
            out.status.success(),
            "private-bus.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(address.starts_with("unix:"), "{address}");
        Self { dir, address }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = Command::new(dist().join("private-bus.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Creates the admin group and the two test users when missing.
pub fn ensure_users() {
    let exists = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let run = |args: &[&str]| {
        let _ = Command::new(args[0]).args(&args[1..]).output();
    };
    if !exists("group", "skytime-admin") {
        run(&["groupadd", "--system", "skytime-admin"]);
    }
    // The daemon's own user, as skytime.sysusers makes it on the appliance.
    if !exists("passwd", "skytime") {
        run(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "skytime",
        ]);
    }
    for (user, admin) in [(UNPRIVILEGED, false), (ADMIN, true)] {
        if !exists("passwd", user) {
            let mut a = vec![
                "useradd",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ];
            if admin {
                a.extend(["-G", "skytime-admin"]);
            }
            a.push(user);
            run(&a);
        }
    }
    assert!(
        exists("passwd", UNPRIVILEGED) && exists("passwd", ADMIN),
        "cannot create the test users (useradd from package passwd; tests run as root)"
    );
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }
}

/// Runs `program args` as `user` (None: root) with `env`, bounded.
pub fn run(user: Option<&str>, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", u, "--regid", u, "--init-groups", "--"])
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ran::from(run_bounded(&mut cmd, LIMIT))
}

/// skytimectl on `bus` as `user`.
pub fn ctl(bus: &PrivateBus, user: Option<&str>, args: &[&str]) -> Ran {
    run(
        user,
        &bin("skytimectl"),
        args,
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)],
    )
}

/// busctl on `bus` as `user`; options (`--…`) first, then `--` so that
/// PEM arguments ("-----BEGIN") are not taken for options.
pub fn busctl(bus: &PrivateBus, user: Option<&str>, args: &[&str]) -> Ran {
    let address = format!("--address={}", bus.address);
    let mut full = vec![address.as_str(), "--no-pager"];
    let split = args
        .iter()
        .position(|a| !a.starts_with("--"))
        .unwrap_or(args.len());
    full.extend(&args[..split]);
    full.push("--");
    full.extend(&args[split..]);
    run(user, &require_program("busctl"), &full, &[])
}

/// gdbus call on `bus` as `user`: `method` is `Interface.Member` under
/// org.skytime.Appliance1, `args` in GVariant text form.
pub fn gdbus_call(bus: &PrivateBus, user: Option<&str>, method: &str, args: &[&str]) -> Ran {
    gdbus(bus, user, &format!("{BUS_NAME}.{method}"), args)
}

/// Every property of `interface`, through gdbus as `user`.
pub fn gdbus_get_all(bus: &PrivateBus, user: Option<&str>, interface: &str) -> Ran {
    gdbus(
        bus,
        user,
        "org.freedesktop.DBus.Properties.GetAll",
        &[interface],
    )
}

/// gdbus call of the fully named `method` on the appliance's object.
fn gdbus(bus: &PrivateBus, user: Option<&str>, method: &str, args: &[&str]) -> Ran {
    let mut full = vec![
        "call",
        "--address",
        &bus.address,
        "--dest",
        BUS_NAME,
        "--object-path",
        OBJECT_PATH,
        "--method",
        method,
    ];
    full.extend(args);
    run(user, &require_program("gdbus"), &full, &[])
}

/// Every write method of the API with arguments that would pass (a valid
/// certificate and configuration), as (`Interface.Member`, GVariant
/// arguments) for [`gdbus_call`].
pub fn write_calls() -> Vec<(&'static str, Vec<String>)> {
    let (cert, key) = make_cert("localhost", 2100);
    let conf = gvariant_str("[log]\nlevel = \"debug\"\n");
    vec![
        (
            "Nts.InstallCertificate",
            vec![gvariant_str(&cert), gvariant_str(&key)],
        ),
        ("Nts.RotateKeys", vec![]),
        ("Config.Reload", vec![]),
        ("Config.Apply", vec![conf.clone(), "false".into()]),
        ("Config.Apply", vec![conf, "true".into()]),
        ("Power.Reboot", vec![]),
        ("Power.PowerOff", vec![]),
        // Update: arguments of the right shape (a bundle path, options).
        (
            "Update.Check",
            vec![gvariant_str("/var/lib/skytime/b.raucb")],
        ),
        (
            "Update.Install",
            vec![
                gvariant_str("/var/lib/skytime/b.raucb"),
                "@a{sv} {'force': <true>}".into(),
            ],
        ),
        (
            "Update.InstallFromUrl",
            vec![
                gvariant_str("https://127.0.0.1:9/b.raucb"),
                gvariant_str(&"ab".repeat(32)),
                "@a{sv} {}".into(),
            ],
        ),
        ("Update.Reboot", vec![]),
        ("Update.Rollback", vec![]),
        (
            "Network.Apply",
            vec![gvariant_str("hostname = \"refused\"\n"), "@u 60".into()],
        ),
        ("Network.Confirm", vec![]),
    ]
}

/// A GVariant string literal for gdbus.
pub fn gvariant_str(v: &str) -> String {
    format!(
        "'{}'",
        v.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    )
}

/// The `org.skytime.*` interface elements of an introspection document,
/// one trimmed line per tag, comments dropped: the form in which the live
/// introspection and the checked-in contract are compared.
pub fn skytime_interfaces(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut inside, mut comment) = (false, false);
    for line in xml.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if comment || line.starts_with("<!--") {
            comment = !line.ends_with("-->");
            continue;
        }
        if line.starts_with("<interface name=\"org.skytime.") {
            inside = true;
        }
        if inside {
            out.push(line.to_owned());
        }
        if line == "</interface>" {
            inside = false;
        }
    }
    out
}

/// A daemon directory with a TLS identity made by `skytimed init`
/// (certificate for localhost and 127.0.0.1), ready for
/// [`Daemon::start_in_env`].
pub fn initialized_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A config of its own, so that no file of this machine is read.
    let conf = dir.path().join("init.toml");
    std::fs::write(&conf, format!("data_dir = \"{}\"\n", data.display())).unwrap();
    let out = run_bounded(
        Command::new(bin("skytimed"))
            .arg("--config")
            .arg(&conf)
            .args(["init", "--hostname", "localhost", "--address", "127.0.0.1"]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "skytimed init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// skytimed on `bus` with `config` (`@DATA@` is its data directory).
pub fn start_daemon(bus: &PrivateBus, dir: tempfile::TempDir, config: &str) -> Daemon {
    Daemon::start_in_env(
        dir,
        config,
        &[],
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str())],
    )
}

/// Every file in `dir` with its contents, sorted, to prove nothing changed.
pub fn snapshot_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A certificate and key (PEM) for `name`, valid until `year`.
pub fn make_cert(name: &str, not_after_year: i32) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `skytimectl --json sources` on `bus`: every source, GPS and upstream.
pub fn sources(bus: &PrivateBus) -> Vec<skytime_api::SourceReport> {
    records(bus, &["--json", "sources"])
}

/// `skytimectl --json sources --auth` on `bus`: how each upstream server
/// is authenticated.
pub fn source_auth(bus: &PrivateBus) -> Vec<skytime_api::SourceAuthReport> {
    records(bus, &["--json", "sources", "--auth"])
}

/// The names of the active alarms (`skytimectl --json alarms`).
pub fn alarm_names(bus: &PrivateBus) -> Vec<String> {
    records::<skytime_api::AlarmReport>(bus, &["--json", "alarms"])
        .into_iter()
        .map(|a| a.name)
        .collect()
}

fn records<T: serde::de::DeserializeOwned>(bus: &PrivateBus, args: &[&str]) -> Vec<T> {
    let r = ctl(bus, None, args);
    assert!(r.ok(), "skytimectl {args:?}: {}", r.all());
    serde_json::from_value(r.json()).unwrap_or_else(|e| {
        panic!(
            "skytimectl {args:?} gave unexpected JSON ({e}): {}",
            r.stdout
        )
    })
}
