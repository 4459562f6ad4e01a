//! The NTS-KE TLS configuration: certificate chain and key from PEM files,
//! TLS 1.3 only, ALPN `ntske/1`, rustls with the ring provider; and its
//! reload, which refuses a bad new certificate and keeps the old one.
//!
//! Expiry: an expired certificate is refused on reload (the one in use
//! stays); at start it is loaded with an error in the log, so that plain
//! NTP keeps being served while the operator installs a new one. Within
//! [`EXPIRY_WARNING`] of its end the daemon warns at load and every day.

use super::NtsError;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use skytime_nts::ke::ALPN;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long before expiry the daemon starts warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// The current TLS configuration, swappable while connections are served.
#[derive(Debug)]
pub struct TlsStore {
    certificate: PathBuf,
    private_key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    /// Unix seconds at which the certificate in use expires.
    not_after: RwLock<i64>,
}

impl TlsStore {
    /// Loads both files; errors name the file and what is wrong with it.
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Self, NtsError> {
        let (config, not_after) = server_config(certificate, private_key)?;
        let store = Self {
            certificate: certificate.to_owned(),
            private_key: private_key.to_owned(),
            current: RwLock::new(config),
            not_after: RwLock::new(not_after),
        };
        store.check_expiry(unix_now());
        Ok(store)
    }

    /// Unix seconds at which the certificate in use expires.
    pub fn not_after(&self) -> i64 {
        *self.not_after.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs an error if the certificate in use has expired at `now`, a
    /// warning if it expires within [`EXPIRY_WARNING`]. Returns the
    /// verdict for tests and callers that count it.
    pub fn check_expiry(&self, now: i64) -> Expiry {
        let verdict = expiry(self.not_after(), now);
        let file = self.certificate.display();
        match verdict {
            Expiry::Expired { since_s } => tracing::error!(
                "NTS-KE certificate {file} expired {} days ago: NTS clients refuse it; install a new one (SIGHUP or skytimectl certificate install)",
                since_s / 86_400
            ),
            Expiry::Soon { in_s } => tracing::warn!(
                "NTS-KE certificate {file} expires in {} days; install a new one before then",
                in_s / 86_400
            ),
            Expiry::Valid => {}
        }
        verdict
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files. On any error the previous configuration stays.
    pub fn reload(&self) -> Result<(), NtsError> {
        let (config, not_after) = server_config(&self.certificate, &self.private_key)?;
        let now = unix_now();
        if let Expiry::Expired { since_s } = expiry(not_after, now) {
            return Err(NtsError::Certificate {
                path: self.certificate.clone(),
                reason: format!(
                    "expired {} days ago (not after Unix time {not_after}); the certificate in use stays",
                    since_s / 86_400
                ),
            });
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = not_after;
        self.check_expiry(now);
        Ok(())
    }

    /// Warns once a day about an expiring certificate until `shutdown`.
    pub async fn watch_expiry(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(86_400)) => {}
            }
            self.check_expiry(unix_now());
        }
    }
}

/// How close a certificate is to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    Soon { in_s: i64 },
    Expired { since_s: i64 },
}

/// The verdict for a certificate ending at `not_after`, at `now`.
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    if not_after < now {
        Expiry::Expired {
            since_s: now - not_after,
        }
    } else if not_after - now < EXPIRY_WARNING.as_secs() as i64 {
        Expiry::Soon {
            in_s: not_after - now,
        }
    } else {
        Expiry::Valid
    }
}

fn unix_now() -> i64 {
    super::keystore::unix_now() as i64
}

/// Builds the rustls server configuration from PEM files; also returns
/// when the leaf certificate expires (Unix seconds).
pub fn server_config(
    certificate: &Path,
    private_key: &Path,
) -> Result<(Arc<ServerConfig>, i64), NtsError> {
    let cert_err = |reason: String| NtsError::Certificate {
        path: certificate.to_owned(),
        reason,
    };
    let key_err = |reason: String| NtsError::PrivateKey {
        path: private_key.to_owned(),
        reason,
    };
    // An install cut short by a crash is finished (or dropped) first, so
    // the key and certificate read are always a pair.
    skytime_persist::pair::recover_pair(private_key, certificate)
        .map_err(|e| cert_err(format!("cannot finish an interrupted install: {e}")))?;
    let pem = std::fs::read(certificate).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not valid PEM: {e:?}")))?;
    if chain.is_empty() {
        return Err(cert_err("holds no CERTIFICATE block".into()));
    }
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| cert_err(format!("the first certificate is not valid X.509: {e}")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let pem = std::fs::read(private_key).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        key_err(format!(
            "no usable private key (PKCS#8, RSA or EC PEM): {e:?}"
        ))
    })?;
    // AES-128-GCM with SHA-256 first, whatever the client prefers: the
    // handshake's key schedule is a few dozen HMACs, and SHA-384 (which
    // clients such as rustls list first) costs about twice SHA-256 where
    // the CPU has SHA-256 instructions and no SHA-512 ones. NTS gains
    // nothing from the larger suite: its keys come from the exporter.
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NtsError::Tls(e.to_string()))?
        .with_no_client_auth()
        // rustls checks that the key is usable and matches the certificate.
        .with_single_cert(chain, key)
        .map_err(|e| NtsError::Certificate {
            path: certificate.to_owned(),
            reason: format!(
                "does not fit the private key {}: {e}",
                private_key.display()
            ),
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.ignore_client_order = true;
    // NTS-KE is one request and one response: tickets and 0-RTT buy nothing.
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_verdicts() {
        let day = 86_400;
        assert_eq!(expiry(100 * day, 0), Expiry::Valid);
        assert_eq!(expiry(29 * day, 0), Expiry::Soon { in_s: 29 * day });
        assert_eq!(expiry(0, 2 * day), Expiry::Expired { since_s: 2 * day });
    }

    fn write_pair(dir: &Path, not_after_year: i32) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn expired_certificate_is_refused_on_reload_and_the_old_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), 2090);
        let store = TlsStore::load(&c, &k).unwrap();
        let before = store.not_after();
        assert_eq!(store.check_expiry(unix_now()), Expiry::Valid);
        write_pair(dir.path(), 2001);
        let e = store.reload().unwrap_err().to_string();
        assert!(e.contains("expired") && e.contains("cert.pem"), "{e}");
        assert_eq!(store.not_after(), before, "the old certificate stays");
        // At start an expired certificate loads (plain NTP goes on) and is
        // reported as expired.
        let expired = TlsStore::load(&c, &k).unwrap();
        assert!(matches!(
            expired.check_expiry(unix_now()),
            Expiry::Expired { .. }
        ));
    }
}
