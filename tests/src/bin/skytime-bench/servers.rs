//! The two servers under test with equivalent configurations: local
//! stratum 10, serving 127.0.0.0/8 with no rate limiting, NTS-KE on a TCP
//! port with the same certificate, the clock never steered.

use skytime_tests::{lo, require_program, wait_until, Daemon};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Addresses of one server.
pub struct Endpoints {
    pub ntp: SocketAddr,
    pub ke: SocketAddr,
}

/// A self-signed ECDSA P-256 certificate for localhost/127.0.0.1 and its
/// key, written to `dir`.
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("names");
    let cert = params.self_signed(&key).expect("certificate");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write certificate");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

pub fn skytimed(ep: &Endpoints, cert: &Path, key: &Path) -> Daemon {
    Daemon::start(
        &format!(
            "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"{}\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n[nts]\nenabled = true\nke_listen = [\"{}\"]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            ep.ntp,
            ep.ke,
            cert.display(),
            key.display()
        ),
        &[],
    )
}

/// chronyd as an NTP and NTS server (`-x`: never touches the clock).
pub struct ChronyServer {
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl ChronyServer {
    pub fn start(ep: &Endpoints, cert: &Path, key: &Path, tls: &Arc<rustls::ClientConfig>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {}\nbindaddress 127.0.0.1\nallow 127.0.0.0/8\nlocal stratum 10\ncmdport 0\npidfile {d}/chronyd.pid\nntsport {}\nntsservercert {}\nntsserverkey {}\nntsdumpdir {d}\n",
                ep.ntp.port(),
                ep.ke.port(),
                cert.display(),
                key.display(),
                d = dir.path().display()
            ),
        )
        .expect("write chrony.conf");
        let child = Command::new(require_program("chronyd"))
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chronyd");
        let server = Self { child, _dir: dir };
        let ready = wait_until(Duration::from_secs(10), || {
            skytime_tests::ntp::query(lo(ep.ntp.port()))?;
            skytime_tests::nts_client::key_exchange(ep.ke, "localhost", tls).ok()
        });
        assert!(ready.is_some(), "chronyd did not serve NTP and NTS-KE");
        server
    }
}

impl Drop for ChronyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chrony_version() -> String {
    Command::new(require_program("chronyd"))
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(3)
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_default()
}
