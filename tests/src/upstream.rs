//! Upstream peers for skytimed's client side: a certificate openssl
//! makes for the loopback addresses, chronyd as an NTS or symmetric-key
//! server on a loopback address of its own (127.0.0.2, ...: its address
//! is the reference ID skytimed then serves), chrony key files, and the
//! `[[upstream]]` lines that point skytimed at such a server.
//!
//! chronyd serves from its own clock with `local stratum N` and never
//! touches the host clock (`-x`, as [`Chronyd`] always starts it).

use crate::{
    field, free_tcp_port, free_udp_port, parse_colon_fields, require_program, wait_until, Chronyd,
};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A self-signed end-entity certificate (CA:FALSE) for localhost, ::1
/// and 127.0.0.1 to 127.0.0.5, with its key, in `dir`: every client
/// (GnuTLS in chrony, rustls in skytimed) accepts it as a server's own.
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(require_program("openssl"))
        .args([
            "req",
            "-new",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:127.0.0.5,IP:::1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Writes `text` to `path` with mode 0600 (a key file skytimed and
/// chronyd accept).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// chronyd serving on one loopback address: plain NTP (with the keys of
/// its key file, if any) and, when given a certificate, NTS.
#[derive(Debug)]
pub struct ChronyServer {
    pub chronyd: Chronyd,
    /// Its NTP address.
    pub ntp: SocketAddr,
    /// Its NTS-KE address (meaningful with a certificate).
    pub ke: SocketAddr,
}

impl ChronyServer {
    /// Starts chronyd on `ip` at `local stratum` `stratum`, serving NTS
    /// with `tls` (certificate, key) when given, plus `extra` directives
    /// (`keyfile ...`).
    pub fn start(ip: &str, stratum: u8, tls: Option<(&Path, &Path)>, extra: &[String]) -> Self {
        let ntp: SocketAddr = format!("{ip}:{}", free_udp_port()).parse().unwrap();
        let ke: SocketAddr = format!("{ip}:{}", free_tcp_port()).parse().unwrap();
        let mut directives = vec![
            format!("port {}", ntp.port()),
            format!("bindaddress {ip}"),
            "allow 127.0.0.0/8".to_owned(),
            format!("local stratum {stratum}"),
        ];
        if let Some((cert, key)) = tls {
            directives.extend([
                format!("ntsport {}", ke.port()),
                format!("ntsservercert {}", cert.display()),
                format!("ntsserverkey {}", key.display()),
                // Key exchanges in the main process: one process to stop.
                "ntsprocesses 0".to_owned(),
            ]);
        }
        directives.extend(extra.iter().cloned());
        let chronyd = Chronyd::start(&directives);
        // Serving before anyone is pointed at it: a first request that
        // finds no socket would only delay the test by a backoff. (NTP
        // only: chrony counts a probe of NTS-KE as a key exchange; it
        // opens both sockets before it serves either.)
        let up = wait_until(Duration::from_secs(10), || crate::ntp::query(ntp));
        assert!(
            up.is_some(),
            "chronyd does not serve NTP on {ntp}:\n{}",
            chronyd.log()
        );
        Self { chronyd, ntp, ke }
    }

    /// NTS-KE connections chronyd accepted (`chronyc serverstats`).
    pub fn nts_ke_accepted(&self) -> u64 {
        self.serverstat("NTS-KE connections accepted")
    }

    /// A counter of `chronyc serverstats` by its name.
    pub fn serverstat(&self, name: &str) -> u64 {
        let out = self.chronyd.chronyc(&["serverstats"]);
        field(&parse_colon_fields(&out), name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in chronyc serverstats:\n{out}"))
    }

    /// An `[[upstream]]` entry of skytimed for this server over NTS.
    pub fn upstream_nts(&self) -> String {
        upstream_nts(self.ntp, self.ke)
    }

    /// An `[[upstream]]` entry for this server with symmetric key `id`.
    pub fn upstream_key(&self, id: u32) -> String {
        format!(
            "[[upstream]]\nserver = \"{}\"\nport = {}\nkey = {id}\nminpoll = 0\nmaxpoll = 0\n",
            self.ntp.ip(),
            self.ntp.port()
        )
    }
}

/// An `[[upstream]]` entry of skytimed for an NTS server (NTP and
/// NTS-KE addresses), polled every second.
pub fn upstream_nts(ntp: SocketAddr, ke: SocketAddr) -> String {
    format!(
        "[[upstream]]\nserver = \"{}\"\nport = {}\nnts = true\nnts_port = {}\nminpoll = 0\nmaxpoll = 0\n",
        ntp.ip(),
        ntp.port(),
        ke.port()
    )
}

/// The `[nts_client]` section trusting `cert` alone.
pub fn nts_client_trusting(cert: &Path) -> String {
    format!(
        "[nts_client]\ntrusted_certificates = [\"{}\"]\nsystem_certificates = false\n",
        cert.display()
    )
}

/// chrony's `server` line for an NTS server at `ntp`/`ke`, polling four
/// times a second, and the trust of `cert`.
pub fn chrony_nts_client(ntp: SocketAddr, ke: SocketAddr, cert: &Path) -> Vec<String> {
    vec![
        format!(
            "server {} port {} nts ntsport {} iburst minpoll -2 maxpoll -2",
            ntp.ip(),
            ntp.port(),
            ke.port()
        ),
        format!("ntstrustedcerts {}", cert.display()),
        "nosystemcert".to_owned(),
    ]
}
