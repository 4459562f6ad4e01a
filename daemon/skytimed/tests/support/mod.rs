//! Shared by the D-Bus tests of skytimed and skytimectl: a private
//! dbus-daemon with the project's policy (dist/private-bus.sh), test users,
//! and an appliance backend over real counters, real files and real
//! certificate loading (rustls), without sockets.
#![allow(dead_code)]

use skytimed::config::Config;
use skytimed::dbus::report::{ClientReport, NtsReport, ServerReport, SourceReport, TrackingReport};
use skytimed::dbus::{certificate, ApplianceBackend, BackendError};
use skytimed::nts::NtsConfig;
use skytimed::stats::ServerStats;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const UNPRIVILEGED: &str = "skytest-user";
pub const ADMIN: &str = "skytest-admin";

/// The dist directory of skytimed.
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../skytimed/dist")
}

/// A private system bus; stopped on drop.
#[derive(Debug)]
pub struct PrivateBus {
    pub dir: tempfile::TempDir,
    pub address: String,
}

impl PrivateBus {
    /// Starts a bus with the project policy plus `extra` policy documents
    /// (bodies of `<busconfig>`).
    pub fn start(extra: &[&str]) -> Self {
        ensure_users();
        let dir = tempfile::Builder::new()
            .prefix("skytime-bus")
            .tempdir()
            .unwrap();
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
        let out = Command::new(dist().join("private-bus.sh"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "private-bus.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_owned();
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

/// Creates the daemon user, the admin group, an unprivileged test user and
/// a test user in the admin group, when missing.
pub fn ensure_users() {
    let run = |args: &[&str]| {
        let _ = Command::new(args[0]).args(&args[1..]).output();
    };
    let exists = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !exists("group", "skytime-admin") {
        run(&["groupadd", "--system", "skytime-admin"]);
    }
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
    if !exists("passwd", UNPRIVILEGED) {
        run(&[
            "useradd",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            UNPRIVILEGED,
        ]);
    }
    if !exists("passwd", ADMIN) {
        run(&[
            "useradd",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "-G",
            "skytime-admin",
            ADMIN,
        ]);
    }
}

/// Runs `program args` as `user` (with that user's groups), bounded.
pub fn run_as(user: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(program)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd)
}

pub fn run_bounded(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).output();
    });
    let out = child.wait_with_output().unwrap();
    drop(guard);
    out
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

/// A backend over real parts: counters, config parsing, files, rustls.
#[derive(Debug)]
pub struct TestBackend {
    pub stats: ServerStats,
    pub config: Mutex<Config>,
    pub tracking: Mutex<TrackingReport>,
    pub keys: Mutex<Vec<u32>>,
    pub clients: Mutex<Vec<ClientReport>>,
    /// Certificate fingerprint rustls loaded last (what the "daemon" serves).
    pub served_fingerprint: Mutex<Option<String>>,
}

impl TestBackend {
    /// A backend whose data directory is `data` with a valid certificate.
    pub fn new(data: &Path) -> Arc<Self> {
        std::fs::create_dir_all(data).unwrap();
        let text = format!("data_dir = \"{}\"\n[nts]\nenabled = true\n", data.display());
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        std::fs::write(data.join("skytime.toml"), &text).unwrap();
        let (cert, key) = make_cert("first.example.test", 2100);
        std::fs::write(data.join("cert.pem"), cert).unwrap();
        std::fs::write(data.join("key.pem"), key).unwrap();
        let b = Arc::new(Self {
            stats: ServerStats::default(),
            config: Mutex::new(config),
            tracking: Mutex::new(TrackingReport {
                stratum: 1,
                reference_id: "PPS".into(),
                synchronized: true,
                leap_status: "normal".into(),
                system_time_offset: 12e-9,
                ..Default::default()
            }),
            keys: Mutex::new(vec![1]),
            clients: Mutex::new(Vec::new()),
            served_fingerprint: Mutex::new(None),
        });
        b.reload_certificate().unwrap();
        b
    }

    fn paths(&self) -> (PathBuf, PathBuf) {
        let c = self.config.lock().unwrap();
        (
            NtsConfig::resolve(&c.data_dir, &c.nts.certificate),
            NtsConfig::resolve(&c.data_dir, &c.nts.private_key),
        )
    }
}

impl ApplianceBackend for TestBackend {
    fn tracking(&self) -> TrackingReport {
        self.tracking.lock().unwrap().clone()
    }
    fn sources(&self) -> Vec<SourceReport> {
        vec![SourceReport {
            name: "gps0".into(),
            kind: "nmea".into(),
            state: "selected".into(),
            stratum: 0,
            reach: 0o377,
            poll: 4,
            samples: 12,
            gps_fix: Some("3d".into()),
            gps_satellites_used: Some(9),
            nmea_pps_delay: Some(0.35),
            ..Default::default()
        }]
    }
    fn server_stats(&self) -> ServerReport {
        ServerReport::new(&self.stats.snapshot(), None, 0)
    }
    fn clients(&self) -> Vec<ClientReport> {
        self.clients.lock().unwrap().clone()
    }
    fn nts(&self) -> NtsReport {
        let (cert, _) = self.paths();
        let keys = self.keys.lock().unwrap().clone();
        let (certificate, certificate_error) = match std::fs::read(&cert)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                certificate::describe(&pem, &cert.display().to_string()).map_err(|e| e.to_string())
            }) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        NtsReport {
            enabled: true,
            certificate,
            certificate_error,
            key_role: "rotate".into(),
            current_key_id: keys.last().copied(),
            key_ids: keys,
            next_rotation: Some(2_000_000_000),
            rotation_interval: 86400,
            ..Default::default()
        }
    }
    fn config(&self) -> Config {
        self.config.lock().unwrap().clone()
    }
    fn config_path(&self) -> PathBuf {
        skytimed::dbus::managed_config_path(&self.config.lock().unwrap())
    }
    fn apply_config(&self, config: &Config) -> Result<Vec<String>, BackendError> {
        *self.config.lock().unwrap() = config.clone();
        Ok(Vec::new())
    }
    fn reload_certificate(&self) -> Result<(), BackendError> {
        let (cert, key) = self.paths();
        skytimed::nts::tls::server_config(&cert, &key)
            .map_err(|e| BackendError::Refused(e.to_string()))?;
        let pem = std::fs::read(&cert).map_err(|e| BackendError::Failed(e.to_string()))?;
        *self.served_fingerprint.lock().unwrap() = Some(
            certificate::describe(&pem, "")
                .map_err(|e| BackendError::Failed(e.to_string()))?
                .fingerprint_sha256,
        );
        Ok(())
    }
    fn rotate_keys(&self) -> Result<NtsReport, BackendError> {
        {
            let mut k = self.keys.lock().unwrap();
            let next = k.last().copied().unwrap_or(0) + 1;
            k.push(next);
        }
        Ok(self.nts())
    }
}

/// Hashes of every file in `dir` (name, contents), to prove nothing changed.
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
