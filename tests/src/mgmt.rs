//! For the management gateway's tests: certificates made on the spot (an
//! operator CA and the client certificates the tests need: admin, read,
//! from a rogue CA, expired, for the wrong key usage), the gateway as a
//! child process with its own directory, enrolled through its own
//! `enrol` command, and a small HTTPS client (rustls, blocking) that
//! shows exactly what the gateway answers and when it refuses a
//! handshake.

use crate::{bin, wait_until};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    /// Writes `NAME-cert.pem` and `NAME-key.pem` into `dir` (readable by
    /// the test users) and returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{name}-cert.pem"));
        let k = dir.join(format!("{name}-key.pem"));
        std::fs::write(&c, &self.cert).unwrap();
        std::fs::write(&k, &self.key).unwrap();
        for p in [&c, &k] {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
        }
        (c, k)
    }
}

/// A certificate authority that signs client certificates.
#[derive(Debug)]
pub struct Ca {
    pub pem: Pem,
    params: CertificateParams,
    key: KeyPair,
}

/// What a client certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    ClientAuth,
    /// Server authentication only: not for a client.
    ServerAuth,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.clone().self_signed(&key).unwrap();
        Self {
            pem: Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            },
            params,
            key,
        }
    }

    /// A client certificate for `name`, valid until `not_after_year`.
    pub fn client(&self, name: &str, not_after_year: i32, usage: Usage) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let key = KeyPair::generate().unwrap();
        let issuer = self.params.clone().self_signed(&self.key).unwrap();
        let cert = params.signed_by(&key, &issuer, &self.key).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A self-signed client certificate (to pin), valid until 2100.
pub fn self_signed_client(name: &str) -> Pem {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// skytime-mgmtd `args` (bounded), as (exit code, stdout + stderr).
pub fn mgmtd(args: &[&str]) -> (Option<i32>, String) {
    let out = crate::run_bounded(
        Command::new(bin("skytime-mgmtd")).args(args),
        Duration::from_secs(30),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `skytime-mgmtd --config CONFIG enrol --from BOOT` for host name
/// localhost and address 127.0.0.1: (exit code, output).
pub fn enrol(config: &Path, boot: &Path) -> (Option<i32>, String) {
    mgmtd(&[
        "--config",
        config.to_str().unwrap(),
        "enrol",
        "--from",
        boot.to_str().unwrap(),
        "--hostname",
        "localhost",
        "--address",
        "127.0.0.1",
    ])
}

/// A running gateway with its own directory.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// A directory for a gateway: `gw.toml` (listen on 127.0.0.1 port 0,
    /// the bus `bus`, then `extra` TOML), `data/`, and `boot/` with
    /// `files` (name, contents) enrolled from it with host name localhost
    /// and address 127.0.0.1.
    pub fn prepare(bus: &str, extra: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(
            dir.path().join("gw.toml"),
            format!(
                "listen = [\"127.0.0.1:0\"]\ndata_dir = \"{}\"\nbus = \"{bus}\"\n{extra}",
                data.display()
            ),
        )
        .unwrap();
        for (name, text) in files {
            std::fs::write(boot.join(name), text).unwrap();
        }
        let (code, out) = enrol(&dir.path().join("gw.toml"), &boot);
        assert_eq!(code, Some(0), "enrol: {out}");
        dir
    }

    /// Starts the gateway in `dir` (from [`Gateway::prepare`]) and waits
    /// for it to say where it listens.
    pub fn start(dir: tempfile::TempDir) -> Self {
        Self::start_env(dir, &[])
    }

    /// [`Gateway::start`] with extra environment variables.
    pub fn start_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let config = dir.path().join("gw.toml");
        let data = dir.path().join("data");
        let log = dir
            .path()
            .join(format!("gw-{}.log", Instant::now().elapsed().as_nanos()));
        let child = Command::new(bin("skytime-mgmtd"))
            .arg("--config")
            .arg(&config)
            .env("SKYTIME_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start skytime-mgmtd (cargo build --workspace --bins)");
        let mut g = Self {
            child: Some(child),
            dir,
            config,
            data,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let addr = wait_until(Duration::from_secs(20), || {
            if let Some(s) = g.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("skytime-mgmtd exited ({s}):\n{}", g.log());
            }
            let text = g.log();
            text.contains("skytime-mgmtd ready").then_some(())?;
            text.lines()
                .filter_map(|l| l.split("listening address=").nth(1))
                .find_map(|a| a.split_whitespace().next()?.parse().ok())
        });
        g.addr = addr.unwrap_or_else(|| panic!("skytime-mgmtd did not start:\n{}", g.log()));
        g
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The gateway's own certificate (what clients trust).
    pub fn server_cert(&self) -> PathBuf {
        self.data.join("server-cert.pem")
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.data.join("audit.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it (SIGTERM) and returns its directory, to start again.
    pub fn stop(mut self) -> tempfile::TempDir {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        if wait_until(Duration::from_secs(15), || child.try_wait().unwrap()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let tmp = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, tmp)
    }

    /// curl (bounded) GET of `path` trusting the gateway's certificate,
    /// presenting `id` (written to a temporary directory), with `extra`
    /// options.
    pub fn curl(&self, id: Option<&Pem>, extra: &[&str], path: &str) -> std::process::Output {
        let files = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(self.server_cert())
            .args(extra);
        if let Some(id) = id {
            let (c, k) = id.write(files.path(), "client");
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.addr.port()));
        crate::run_bounded(&mut cmd, Duration::from_secs(30))
    }

    /// A client of this gateway presenting `id` (or no certificate).
    pub fn client(&self, id: Option<&Pem>) -> Client {
        Client::new(
            self.addr,
            &std::fs::read_to_string(self.server_cert()).unwrap(),
            id,
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTPS client for one gateway.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error name of a failure body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl Client {
    /// Trusting `server_cert` (PEM), presenting `id`.
    pub fn new(addr: SocketAddr, server_cert: &str, id: Option<&Pem>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_cert.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
        let config = match id {
            Some(id) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(id.cert.as_bytes())
                        .map(Result::unwrap)
                        .collect();
                let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Self {
            addr,
            config: Arc::new(config),
        }
    }

    /// A connection with the TLS handshake done (and, for TLS 1.3, the
    /// server's verdict on the client certificate read: a refusal comes
    /// as an alert after the client's Finished).
    pub fn connect(
        &self,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::IpAddress(self.addr.ip().into());
        let conn =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(s)
    }

    /// One request on a new connection (`Connection: close`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut s = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        // The gateway may answer (413) and close before the body is all
        // sent, as HTTP allows: then the write fails, and the answer is
        // still there to read.
        let sent = s.write_all(body).and_then(|()| s.flush());
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        if raw.is_empty() {
            sent.map_err(|e| format!("sending the body: {e}"))?;
        }
        match read {
            Ok(_) => {}
            // The gateway may close without close_notify after the reply.
            Err(_) if !raw.is_empty() => {}
            Err(e) => return Err(e.to_string()),
        }
        parse(&raw)
    }

    pub fn get(&self, path: &str) -> Result<Response, String> {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, json: &serde_json::Value) -> Result<Response, String> {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            json.to_string().as_bytes(),
        )
    }
}

/// An HTTP/1.1 response (Content-Length or to the end).
fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// An appliance to manage: a private bus with the project's policy and
/// skytimed on it (NTS on, loopback ports the kernel picks, history
/// points every second), fed by the GPS simulator.
#[derive(Debug)]
pub struct Appliance {
    pub bus: crate::dbus::PrivateBus,
    pub daemon: crate::Daemon,
    pub gps: tempfile::TempDir,
    pub sim: Option<crate::gpssim::GpsSim>,
}

impl Appliance {
    /// Starts it; `extra` is appended to skytimed's configuration.
    pub fn start(extra: &str) -> Self {
        let bus = crate::dbus::PrivateBus::start(&[]);
        let gps = tempfile::tempdir().unwrap();
        let config = format!(
            "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\n\
             [nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\n\
             [gps]\ndevice = \"{dev}\"\nsock = \"{sock}\"\nreopen_max_backoff = 0.5\n\
             [clock]\nsteer = false\n[dbus]\nbus = \"system\"\n[monitor]\nhistory_interval = 1\n{extra}",
            dev = crate::gpssim::GpsSim::device(gps.path()).display(),
            sock = crate::gpssim::GpsSim::sock(gps.path()).display(),
        );
        // The daemon first: it makes the SOCK socket the simulator sends to.
        let daemon = crate::dbus::start_daemon(&bus, crate::dbus::initialized_dir(), &config);
        let sim = Some(crate::gpssim::GpsSim::start(gps.path(), 0.45, 900));
        Self {
            bus,
            daemon,
            gps,
            sim,
        }
    }
}

/// The gateway's user (as skytime-mgmt.sysusers makes it on the
/// appliance: in skytime-admin), created when missing.
pub fn ensure_gateway_user() {
    crate::dbus::ensure_users();
    let exists = Command::new("getent")
        .args(["passwd", "skytime-mgmt"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !exists {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "-G",
                "skytime-admin",
                "skytime-mgmt",
            ])
            .output();
    }
}

/// `skytimectl --host` with one client certificate, run with no bus at all
/// (`--host` must not need one).
#[derive(Debug)]
pub struct Remote {
    base: Vec<String>,
}

/// A write through the gateway (`keys rotate`): refused the read
/// certificate (exit 4, naming the admin role), done with the admin one.
pub fn assert_only_admin_writes(reader: &Remote, admin: &Remote) {
    let r = reader.run(&["keys", "rotate"]);
    assert_eq!(r.code, Some(4), "{}", r.all());
    assert!(r.stderr.contains("admin role"), "{}", r.all());
    let r = admin.run(&["keys", "rotate"]);
    assert!(
        r.ok() && r.stdout.contains("Master keys rotated"),
        "{}",
        r.all()
    );
}

impl Remote {
    pub fn new(host: &str, cert: &Path, key: &Path, ca: &Path) -> Self {
        Self {
            base: vec![
                "--host".into(),
                host.into(),
                "--cert".into(),
                cert.display().to_string(),
                "--key".into(),
                key.display().to_string(),
                "--ca".into(),
                ca.display().to_string(),
            ],
        }
    }

    pub fn run(&self, args: &[&str]) -> crate::dbus::Ran {
        let mut all: Vec<&str> = self.base.iter().map(String::as_str).collect();
        all.extend(args);
        // No bus at all: --host must not need one.
        crate::dbus::run(
            None,
            &bin("skytimectl"),
            &all,
            &[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")],
        )
    }
}
