//! The gateway's TLS settings: TLS 1.3 only, rustls with ring, ALPN
//! `http/1.1`, the gateway's own identity, and client certificates
//! checked against the enrolled operators.

use crate::identity::ServerIdentity;
use crate::trust::ClientVerifier;
use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use std::sync::Arc;

/// The crypto provider everything here uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration for `identity` and `verifier`.
pub fn server_config(
    identity: &ServerIdentity,
    verifier: Arc<ClientVerifier>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
