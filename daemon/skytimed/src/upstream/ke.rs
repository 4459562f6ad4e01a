//! NTS-KE as a client: TLS 1.3 (rustls, ALPN `ntske/1`) to an upstream
//! server, trusting the system's CAs and the certificates the
//! configuration names (chrony's `ntstrustedcerts`); the records are
//! `skytime-nts`'s (request, response checks, exporter contexts).
//!
//! A Pi has no real-time clock: until its clock is set, it may believe it
//! is 1970, and every certificate would look "not yet valid". Validity is
//! therefore judged at the later of the system clock and this build's
//! date; while the clock is before the build date (it cannot be right),
//! a certificate issued since the build is judged at its own start of
//! validity, so only certificates that expired before the build fail.

use super::config::NtsClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use skytime_nts::aead::{Key, SessionKeys};
use skytime_nts::ke::{exporter_context, ALPN, EXPORTER_LABEL};
use skytime_nts::ke_client::{self, KeClientError, KeResponse, MAX_RESPONSE};
use skytime_nts::record::{scan_message, Scan};
use skytime_refclock::gpstime::BUILD_UNIX;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a key exchange gave no session.
#[derive(Debug, thiserror::Error)]
pub enum KeError {
    #[error("cannot read trusted certificates {path}: {reason}")]
    TrustedCertificates { path: PathBuf, reason: String },
    #[error("no certificate to trust: [nts_client] has no trusted_certificates and system_certificates = false (or the system has none)")]
    NoRoots,
    #[error("{0:?} is not a valid server name for TLS")]
    Name(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} did not finish the key exchange within {} s", .timeout.as_secs())]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} sent a response longer than {MAX_RESPONSE} bytes or malformed: {reason}")]
    BadFraming { addr: SocketAddr, reason: String },
    #[error("{addr}: {source}")]
    Refused {
        addr: SocketAddr,
        source: KeClientError,
    },
    #[error("cannot export keys from TLS: {0}")]
    Export(String),
}

/// What a successful exchange gives.
#[derive(Clone, Debug)]
pub struct KeOutcome {
    pub keys: SessionKeys,
    pub response: KeResponse,
    /// The address the exchange was made with.
    pub addr: SocketAddr,
}

/// The TLS client configuration for NTS-KE: TLS 1.3 only, ALPN
/// `ntske/1`, the configured trust anchors.
pub fn tls_config(config: &NtsClientConfig) -> Result<Arc<ClientConfig>, KeError> {
    let mut roots = RootCertStore::empty();
    if config.system_certificates {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // Some system bundles hold certificates webpki cannot use;
            // skipping them is what every rustls client does.
            let _ = roots.add(cert);
        }
    }
    for path in &config.trusted_certificates {
        let bad = |reason: String| KeError::TrustedCertificates {
            path: path.clone(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(KeError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| KeError::Export(e.to_string()))?;
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeError::Export(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClockTolerantVerifier { inner }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// webpki's verification, at a time the appliance can vouch for (see the
/// module's documentation).
#[derive(Debug)]
struct ClockTolerantVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

/// The instant to judge validity at: the system clock once it is past
/// the build date, else the build date or the certificate's own start.
fn judging_time(end_entity: &CertificateDer<'_>, now: UnixTime) -> UnixTime {
    let build = u64::try_from(BUILD_UNIX).unwrap_or(0);
    if now.as_secs() >= build {
        return now;
    }
    let not_before = x509_parser::parse_x509_certificate(end_entity)
        .ok()
        .and_then(|(_, c)| u64::try_from(c.validity().not_before.timestamp()).ok())
        .unwrap_or(0);
    UnixTime::since_unix_epoch(Duration::from_secs(build.max(not_before)))
}

impl ServerCertVerifier for ClockTolerantVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            judging_time(end_entity, now),
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One key exchange with `host` (name checked against the certificate)
/// at `addrs` (tried in order), within `timeout` each.
pub async fn exchange(
    tls: Arc<ClientConfig>,
    host: &str,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<KeOutcome, KeError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| KeError::Name(host.into()))?;
    let mut last = KeError::Resolve(host.into());
    for &addr in addrs {
        match tokio::time::timeout(timeout, exchange_with(tls.clone(), name.clone(), addr)).await {
            Ok(Ok(o)) => return Ok(o),
            Ok(Err(e)) => last = e,
            Err(_) => last = KeError::Timeout { addr, timeout },
        }
    }
    Err(last)
}

async fn exchange_with(
    tls: Arc<ClientConfig>,
    name: ServerName<'static>,
    addr: SocketAddr,
) -> Result<KeOutcome, KeError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| KeError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let tls_err = |source| KeError::Tls { addr, source };
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(tls_err)?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(KeError::Tls {
            addr,
            source: std::io::Error::other("the server did not agree to ALPN ntske/1"),
        });
    }
    stream
        .write_all(&ke_client::request())
        .await
        .map_err(tls_err)?;
    stream.flush().await.map_err(tls_err)?;
    let mut response = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let framing = |reason: String| KeError::BadFraming { addr, reason };
        match scan_message(&response, MAX_RESPONSE).map_err(|e| framing(e.to_string()))? {
            Scan::Complete(_) => break,
            Scan::Incomplete => {}
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Err(framing("the connection closed mid-response".into())),
            Ok(n) => n,
            // Servers may close without close_notify after the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(framing("the connection closed mid-response".into()))
            }
            Err(e) => return Err(tls_err(e)),
        };
        response.extend_from_slice(&buf[..n]);
    }
    let response =
        ke_client::parse_response(&response).map_err(|source| KeError::Refused { addr, source })?;
    let conn = stream.get_ref().1;
    let export = |s2c: bool| -> Result<Key, KeError> {
        let mut k = [0u8; skytime_nts::aead::KEY_LEN];
        let k = &mut k[..response.aead.key_len()];
        conn.export_keying_material(
            &mut *k,
            EXPORTER_LABEL,
            Some(&exporter_context(response.aead, s2c)),
        )
        .map_err(|e| KeError::Export(e.to_string()))?;
        Key::new(k).ok_or_else(|| KeError::Export("a key of the wrong length".into()))
    };
    let keys = SessionKeys {
        aead: response.aead,
        c2s: export(false)?,
        s2c: export(true)?,
    };
    // A polite end; the exchange is complete whether or not it arrives.
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
    Ok(KeOutcome {
        keys,
        response,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_needs_an_anchor_and_readable_files() {
        let none = NtsClientConfig {
            system_certificates: false,
            ..NtsClientConfig::default()
        };
        assert!(matches!(tls_config(&none), Err(KeError::NoRoots)));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let bad = NtsClientConfig {
            trusted_certificates: vec![junk.clone()],
            ..none.clone()
        };
        let e = tls_config(&bad).unwrap_err().to_string();
        assert!(e.contains(&junk.display().to_string()), "{e}");
        let (cert, _) =
            skytime_persist::identity::self_signed("upstream.example", &[], "test").unwrap();
        let good_path = dir.path().join("ca.pem");
        std::fs::write(&good_path, cert).unwrap();
        let good = NtsClientConfig {
            trusted_certificates: vec![good_path],
            ..none
        };
        let cfg = tls_config(&good).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![ALPN.to_vec()]);
    }

    #[test]
    fn a_clock_before_the_build_is_not_believed() {
        let (pem, _) = skytime_persist::identity::self_signed("x", &[], "test").unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let later = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(BUILD_UNIX).unwrap() + 100,
        ));
        assert_eq!(
            judging_time(&der, later),
            later,
            "a plausible clock is used"
        );
        let epoch = UnixTime::since_unix_epoch(Duration::from_secs(10));
        assert!(
            judging_time(&der, epoch).as_secs() >= u64::try_from(BUILD_UNIX).unwrap(),
            "1970 is judged at the build date at least"
        );
    }
}
