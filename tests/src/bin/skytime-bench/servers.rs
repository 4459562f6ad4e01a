//! The three servers under test with equivalent configurations: local
//! stratum 10, serving 127.0.0.0/8 with no rate limiting, NTS-KE on a TCP
//! port with the same certificate and key, the clock never touched.
//!
//! - skytimed (this workspace's release build);
//! - chronyd 4.3 from Debian (`-x`: never steers the clock);
//! - ntpd-rs 1.9.0 (`ntp-daemon`, built by `make bench` with `cargo
//!   install ntpd --version 1.9.0 --locked`), with no time source, so it
//!   has nothing to steer with, and started without `CAP_SYS_TIME` so it
//!   could not if it tried.
//!
//! Each can be pinned to a CPU (before it starts, so a server that sizes
//! itself by the CPUs it may use sees one) and run under valgrind's
//! callgrind to count instructions.

use skytime_tests::{free_tcp_port, free_udp_port, lo, require_program, wait_until};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Skytimed,
    Chronyd,
    NtpdRs,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Skytimed, Kind::Chronyd, Kind::NtpdRs];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Skytimed => "skytimed",
            Kind::Chronyd => "chronyd",
            Kind::NtpdRs => "ntpd-rs",
        }
    }
}

/// How to run a server.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Pin the server (all its threads) to this CPU.
    pub cpu: Option<usize>,
    /// Run it under callgrind, writing `<this>.<pid>` files.
    pub callgrind: Option<PathBuf>,
}

/// What the servers share: the certificate, its key, the TLS client
/// configuration trusting it, and where ntpd-rs is.
pub struct Setup {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub tls: Arc<rustls::ClientConfig>,
    pub ntpd_rs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(ntpd_rs: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (cert, key) = certificate(dir.path());
        let tls = skytime_tests::nts_client::tls_config(&cert);
        Self {
            cert,
            key,
            tls,
            ntpd_rs,
            _dir: dir,
        }
    }
}

/// A self-signed ECDSA P-256 end-entity certificate for
/// localhost/127.0.0.1 and its key, written to `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("names");
    let cert = params.self_signed(&key).expect("certificate");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write certificate");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

/// A running server.
pub struct Server {
    pub kind: Kind,
    pub ntp: SocketAddr,
    pub ke: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `kind` and waits until it answers NTP and NTS-KE.
    pub fn start(kind: Kind, setup: &Setup, launch: &Launch) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (ntp, ke) = (lo(free_udp_port()), lo(free_tcp_port()));
        let d = dir.path();
        let (program, args) = match kind {
            Kind::Skytimed => {
                let conf = d.join("skytime.toml");
                std::fs::write(
                    &conf,
                    format!(
                        "data_dir = \"{}/data\"\n[ntp]\nlisten = [\"{ntp}\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[nts]\nenabled = true\nke_listen = [\"{ke}\"]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n[clock]\nsteer = false\n[dbus]\nenabled = false\n",
                        d.display(),
                        setup.cert.display(),
                        setup.key.display()
                    ),
                )
                .expect("write skytime.toml");
                (
                    skytime_tests::bin("skytimed"),
                    vec!["--config".into(), conf.display().to_string()],
                )
            }
            Kind::Chronyd => {
                let conf = d.join("chrony.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {}\nbindaddress 127.0.0.1\nallow 127.0.0.0/8\nlocal stratum 10\ncmdport 0\npidfile {d}/chronyd.pid\nntsport {}\nntsservercert {}\nntsserverkey {}\nntsdumpdir {d}\n",
                        ntp.port(),
                        ke.port(),
                        setup.cert.display(),
                        setup.key.display(),
                        d = d.display()
                    ),
                )
                .expect("write chrony.conf");
                let args = ["-x", "-d", "-u", "root", "-f"].map(String::from).to_vec();
                (
                    require_program("chronyd"),
                    [args, vec![conf.display().to_string()]].concat(),
                )
            }
            Kind::NtpdRs => {
                let conf = d.join("ntp.toml");
                std::fs::write(
                    &conf,
                    format!(
                        "[observability]\nlog-level = \"warn\"\n[synchronization]\nlocal-stratum = 10\n[[server]]\nlisten = \"{ntp}\"\n[[nts-ke-server]]\nlisten = \"{ke}\"\ncertificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\nntp-port = {}\n",
                        setup.cert.display(),
                        setup.key.display(),
                        ntp.port()
                    ),
                )
                .expect("write ntp.toml");
                assert!(
                    setup.ntpd_rs.exists(),
                    "{} is missing: `make bench` builds it (cargo install ntpd --version 1.9.0 --locked --root target/ntpd-rs)",
                    setup.ntpd_rs.display()
                );
                (
                    setup.ntpd_rs.clone(),
                    vec!["-c".into(), conf.display().to_string()],
                )
            }
        };
        let mut cmd = match &launch.callgrind {
            Some(out) => {
                let mut c = Command::new(require_program("valgrind"));
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}.%p", out.display()))
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("server.log")).expect("log file"));
        let cpu = launch.cpu;
        let drop_clock = kind == Kind::NtpdRs;
        // SAFETY: only async-signal-safe calls (sched_setaffinity, prctl)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if drop_clock
                    && libc::prctl(libc::PR_CAPBSET_DROP, 25 /* CAP_SYS_TIME */, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
        let mut server = Self {
            kind,
            ntp,
            ke,
            child,
            _dir: dir,
        };
        let limit = if launch.callgrind.is_some() { 120 } else { 20 };
        let ready = wait_until(Duration::from_secs(limit), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{} exited during start-up ({status}):\n{}",
                    kind.name(),
                    server.log()
                );
            }
            skytime_tests::ntp::query(ntp)?;
            skytime_tests::nts_client::key_exchange(ke, "localhost", &setup.tls).ok()
        });
        assert!(
            ready.is_some(),
            "{} did not serve NTP and NTS-KE:\n{}",
            kind.name(),
            server.log()
        );
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (callgrind writes its counts at
    /// exit) and waits for it.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let done = wait_until(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        if done.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// `chronyd --version`'s version number.
pub fn chrony_version() -> String {
    version_of(Command::new(require_program("chronyd")).arg("--version"), 3)
}

/// `ntp-daemon --version`'s version number.
pub fn ntpd_rs_version(path: &Path) -> String {
    version_of(Command::new(path).arg("--version"), 1)
}

fn version_of(cmd: &mut Command, word: usize) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .split_whitespace()
                .nth(word)
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_default()
}
