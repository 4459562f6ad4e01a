//! The NTS-KE TLS configuration: certificate chain and key from PEM files,
//! TLS 1.3 only, ALPN `ntske/1`, rustls with the ring provider; and its
//! reload, which refuses a bad new certificate and keeps the old one.

use super::NtsError;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use skytime_nts::ke::ALPN;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The current TLS configuration, swappable while connections are served.
#[derive(Debug)]
pub struct TlsStore {
    certificate: PathBuf,
    private_key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsStore {
    /// Loads both files; errors name the file and what is wrong with it.
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Self, NtsError> {
        let config = server_config(certificate, private_key)?;
        Ok(Self {
            certificate: certificate.to_owned(),
            private_key: private_key.to_owned(),
            current: RwLock::new(config),
        })
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
        let config = server_config(&self.certificate, &self.private_key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }
}

/// Builds the rustls server configuration from PEM files.
pub fn server_config(
    certificate: &Path,
    private_key: &Path,
) -> Result<Arc<ServerConfig>, NtsError> {
    let cert_err = |reason: String| NtsError::Certificate {
        path: certificate.to_owned(),
        reason,
    };
    let key_err = |reason: String| NtsError::PrivateKey {
        path: private_key.to_owned(),
        reason,
    };
    let pem = std::fs::read(certificate).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not valid PEM: {e:?}")))?;
    if chain.is_empty() {
        return Err(cert_err("holds no CERTIFICATE block".into()));
    }
    let pem = std::fs::read(private_key).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        key_err(format!(
            "no usable private key (PKCS#8, RSA or EC PEM): {e:?}"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    // NTS-KE is one request and one response: tickets and 0-RTT buy nothing.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}
