//! Talking to a remote appliance through its management gateway
//! (`skytime-mgmtd`): TLS 1.3 with the operator's client certificate,
//! the gateway's certificate checked against `--ca` (a CA, or the
//! gateway's own self-signed certificate as `skytime-mgmt-fingerprint.txt`
//! names it) or the system's CAs, then HTTP/1.1 requests on one
//! connection. Errors come back by D-Bus name and become the same exit
//! codes as over D-Bus.

use crate::bus::{classify_api, exit, CtlError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;
use serde_json::Value as Json;
use skytime_api::http::{names, ErrorBody};
use skytime_api::ApiError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long connecting and each request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian keeps the system's CAs.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One connection to a gateway.
#[derive(Debug)]
pub struct Gateway {
    host: String,
    sender: Mutex<SendRequest<Full<Bytes>>>,
}

fn input(message: String) -> CtlError {
    CtlError::new(exit::INVALID_INPUT, message)
}

/// `NAME`, `NAME:PORT`, `[V6]` or `[V6]:PORT` as (name, port).
pub fn split_host(host: &str) -> Result<(String, u16), CtlError> {
    let bad = || {
        CtlError::new(
            2,
            format!("--host {host}: use NAME, NAME:PORT, [IPv6] or [IPv6]:PORT"),
        )
    };
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        return Ok((name.to_owned(), port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => {
            Ok((name.to_owned(), port.parse().map_err(|_| bad())?))
        }
        None if !host.is_empty() => Ok((host.to_owned(), 443)),
        _ => Err(bad()),
    }
}

impl Gateway {
    /// Connects to `host` with the client certificate `cert` and `key`,
    /// trusting `ca` (or the system's CAs).
    pub async fn connect(
        host: &str,
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
    ) -> Result<Self, CtlError> {
        let (name, port) = split_host(host)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect())
            .map_err(|e| input(format!("cannot read {}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(input(format!("{} holds no certificate", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| input(format!("cannot read {}: {e}", key.display())))?;
        let ca_path = ca.unwrap_or(Path::new(SYSTEM_CAS));
        let mut roots = rustls::RootCertStore::empty();
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_path)
            .and_then(|i| i.collect())
            .map_err(|e| input(format!("cannot read {}: {e}", ca_path.display())))?;
        let (added, _) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(input(format!(
                "{} holds no usable certificate",
                ca_path.display()
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CtlError::new(exit::FAILED, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                input(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| CtlError::new(2, format!("--host {host}: {e}")))?;
        let unreachable = |e: String| {
            CtlError::new(
                exit::NOT_RUNNING,
                format!("cannot reach the gateway at {host}: {e}"),
            )
        };
        let tcp = tokio::time::timeout(
            TIMEOUT,
            tokio::net::TcpStream::connect((name.as_str(), port)),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let tls = tokio::time::timeout(
            TIMEOUT,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp),
        )
        .await
        .map_err(|_| unreachable("the TLS handshake timed out".into()))?
        .map_err(|e| tls_error(host, &e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            host: host.to_owned(),
            sender: Mutex::new(sender),
        })
    }

    /// GET `path` (with `query`), the reply as JSON.
    pub async fn get(&self, path: &str) -> Result<Json, CtlError> {
        self.request(Method::GET, path, None).await
    }

    /// POST `body` (a JSON object of arguments) to `path`.
    pub async fn post(&self, path: &str, body: Json) -> Result<Json, CtlError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// POST a file's bytes to `path` (an upload route such as
    /// `Update/Install?sha256=...`); `limit` bounds the whole exchange.
    pub async fn upload(
        &self,
        path: &str,
        bytes: Vec<u8>,
        limit: Duration,
    ) -> Result<Json, CtlError> {
        self.send(Method::POST, path, bytes, "application/octet-stream", limit)
            .await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, CtlError> {
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(&b).unwrap_or_default());
        self.send(method, path, bytes, "application/json", TIMEOUT)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        bytes: Vec<u8>,
        content_type: &str,
        limit: Duration,
    ) -> Result<Json, CtlError> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| CtlError::new(exit::FAILED, e.to_string()))?;
        let mut sender = self.sender.lock().await;
        let response = tokio::time::timeout(limit, sender.send_request(req))
            .await
            .map_err(|_| {
                CtlError::new(
                    exit::NOT_RUNNING,
                    format!("{}: no answer within {} s", self.host, limit.as_secs()),
                )
            })?
            .map_err(|e| tls_error(&self.host, &e))?;
        let status = response.status();
        let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| {
                CtlError::new(
                    exit::NOT_RUNNING,
                    format!("{}: the answer did not arrive", self.host),
                )
            })?
            .map_err(|e| tls_error(&self.host, &e))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                CtlError::new(
                    exit::FAILED,
                    format!("unexpected reply from the gateway (version mismatch?): {e}"),
                )
            });
        }
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => classify(&e),
            Err(_) => CtlError::new(
                exit::FAILED,
                format!(
                    "the gateway answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            ),
        })
    }
}

/// An error body as a message and an exit code, as over D-Bus.
fn classify(e: &ErrorBody) -> CtlError {
    if let Some(api) = ApiError::from_reply(&e.error, e.message.clone()) {
        return classify_api(&api, "a client certificate with the admin role");
    }
    let code = match e.error.as_str() {
        names::ACCESS_DENIED => exit::ACCESS_DENIED,
        names::TOO_LARGE | names::INVALID_ARGS | names::HASH_MISMATCH | names::TRUNCATED => {
            exit::INVALID_INPUT
        }
        names::UNAVAILABLE
        | "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => exit::NOT_RUNNING,
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface"
        | names::NOT_FOUND => exit::NOT_AVAILABLE,
        _ => exit::FAILED,
    };
    CtlError::new(code, format!("{} [{}]", e.message, e.error))
}

/// A TLS or connection failure: a refused client certificate (an alert
/// from the gateway) is access denied; anything else, unreachable.
fn tls_error(host: &str, e: &(dyn std::error::Error + 'static)) -> CtlError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut s) = source {
        // An io::Error hides what it wraps from source().
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            s = inner;
        }
        if let Some(rustls::Error::AlertReceived(alert)) = s.downcast_ref::<rustls::Error>() {
            return CtlError::new(
                exit::ACCESS_DENIED,
                format!("the gateway at {host} refused the client certificate ({alert:?}): is it enrolled, unexpired and for client authentication?"),
            );
        }
        if let Some(rustls::Error::InvalidCertificate(why)) = s.downcast_ref::<rustls::Error>() {
            return CtlError::new(
                exit::NOT_RUNNING,
                format!("cannot trust the gateway at {host}: its certificate is {why:?} (give the gateway's certificate or CA with --ca)"),
            );
        }
        source = s.source();
    }
    CtlError::new(
        exit::NOT_RUNNING,
        format!("cannot reach the gateway at {host}: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host("ntp1").unwrap(), ("ntp1".into(), 443));
        assert_eq!(split_host("ntp1:8443").unwrap(), ("ntp1".into(), 8443));
        assert_eq!(split_host("[::1]:18443").unwrap(), ("::1".into(), 18443));
        assert_eq!(split_host("[::1]").unwrap(), ("::1".into(), 443));
        assert!(split_host("ntp1:x").is_err());
        assert!(split_host("").is_err());
    }
}
