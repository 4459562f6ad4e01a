//! Who may talk to the gateway: the enrolled operator CAs and pinned
//! client certificates, each with a role, kept in
//! `<data_dir>/enrolled.toml`; and the TLS client-certificate verifier
//! built from them.
//!
//! A client certificate is accepted at the handshake when it is pinned
//! (its SHA-256 is enrolled) and valid on its own, or when it chains to an
//! enrolled CA; both checks are rustls-webpki's (validity period,
//! signatures, clientAuth key usage). Its role is the pinned entry's, or
//! that of the first CA it chains to, admin CAs first. Refusals at the
//! handshake are written to the audit log with the certificate's
//! fingerprint.

use crate::audit::{Audit, Entry};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use skytime_persist::identity::fingerprint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file the enrolled operators are kept in, in the data directory.
pub const ENROLLED_FILE: &str = "enrolled.toml";

pub use crate::role::Role;

/// One enrolled certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    pub role: Role,
    /// For people reading the file; the PEM is what counts.
    pub subject: String,
    /// SHA-256 of the certificate, colon hex.
    pub fingerprint: String,
    pub pem: String,
}

/// Everything enrolled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Enrolled {
    /// Operator CAs: a client certificate they issued is accepted.
    pub ca: Vec<Enrolment>,
    /// Pinned client certificates, accepted as they are.
    pub client: Vec<Enrolment>,
}

/// Why the enrolled file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message} (enrol again with the card in hand; see README)")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the enrolled certificates cannot be used: {0}")]
    Verifier(String),
}

impl Enrolled {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(ENROLLED_FILE)
    }

    /// The enrolled operators; empty when nothing was ever enrolled.
    pub fn load(data_dir: &Path) -> Result<Self, TrustError> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| TrustError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(TrustError::Read { path, source }),
        }
    }

    /// Saves atomically (mode 0600); an empty set removes the file, so
    /// that the socket unit's condition keeps the port closed.
    pub fn save(&self, data_dir: &Path) -> Result<(), TrustError> {
        let path = Self::path(data_dir);
        let result = if self.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let text = format!(
                "# Enrolled operators of skytime-mgmtd, written by `skytime-mgmtd enrol`.\n{}",
                toml::to_string(self).map_err(|e| TrustError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            );
            skytime_persist::atomic_write(&path, text.as_bytes(), 0o600)
        };
        result.map_err(|source| TrustError::Write { path, source })
    }

    pub fn is_empty(&self) -> bool {
        self.ca.is_empty() && self.client.is_empty()
    }

    /// Adds or replaces (same fingerprint) an operator CA.
    pub fn add_ca(&mut self, e: Enrolment) {
        self.ca.retain(|x| x.fingerprint != e.fingerprint);
        self.ca.push(e);
    }

    /// Adds or replaces (same fingerprint) a pinned client certificate.
    pub fn add_client(&mut self, e: Enrolment) {
        self.client.retain(|x| x.fingerprint != e.fingerprint);
        self.client.push(e);
    }
}

/// The DER certificates in a PEM text.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// The TLS client-certificate verifier over the enrolled operators.
#[derive(Debug)]
pub struct ClientVerifier {
    /// All CAs together, for the handshake.
    any_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// One per role that has CAs, admin first, to tell the role.
    by_role: Vec<(Role, Arc<dyn ClientCertVerifier>)>,
    /// Pinned certificates by fingerprint: role, and a verifier that
    /// trusts only that certificate (validity, key usage).
    pinned: HashMap<String, (Role, Arc<dyn ClientCertVerifier>)>,
    anonymous: bool,
    provider: Arc<CryptoProvider>,
    audit: Option<Arc<Audit>>,
}

impl ClientVerifier {
    /// A verifier for `enrolled`; with `anonymous`, clients may also come
    /// without a certificate (the gateway then serves them only what
    /// anonymous reading allows).
    pub fn new(
        enrolled: &Enrolled,
        anonymous: bool,
        provider: Arc<CryptoProvider>,
        audit: Option<Arc<Audit>>,
    ) -> Result<Self, TrustError> {
        let verifier = |pems: &[&str]| -> Result<Arc<dyn ClientCertVerifier>, TrustError> {
            let mut roots = RootCertStore::empty();
            for pem in pems {
                for der in certificates(pem).map_err(TrustError::Verifier)? {
                    roots
                        .add(der)
                        .map_err(|e| TrustError::Verifier(e.to_string()))?;
                }
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TrustError::Verifier(e.to_string()))
        };
        let mut by_role = Vec::new();
        for role in [Role::Admin, Role::Read] {
            let pems: Vec<&str> = enrolled
                .ca
                .iter()
                .filter(|e| e.role == role)
                .map(|e| e.pem.as_str())
                .collect();
            if !pems.is_empty() {
                by_role.push((role, verifier(&pems)?));
            }
        }
        let all: Vec<&str> = enrolled.ca.iter().map(|e| e.pem.as_str()).collect();
        let any_ca = if all.is_empty() {
            None
        } else {
            Some(verifier(&all)?)
        };
        let mut pinned = HashMap::new();
        for e in &enrolled.client {
            pinned.insert(
                e.fingerprint.clone(),
                (e.role, verifier(&[e.pem.as_str()])?),
            );
        }
        Ok(Self {
            any_ca,
            by_role,
            pinned,
            anonymous,
            provider,
            audit,
        })
    }

    /// The role of a client that completed the handshake with `chain`
    /// (end entity first).
    pub fn role_of(&self, chain: &[CertificateDer<'_>]) -> Option<Role> {
        let (ee, intermediates) = chain.split_first()?;
        if let Some((role, _)) = self.pinned.get(&fingerprint(ee)) {
            return Some(*role);
        }
        let now = UnixTime::now();
        self.by_role
            .iter()
            .find(|(_, v)| v.verify_client_cert(ee, intermediates, now).is_ok())
            .map(|(role, _)| *role)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.anonymous
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: clients present the one certificate they were given.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        let result = match (self.pinned.get(&fp), &self.any_ca) {
            (Some((_, v)), _) => v.verify_client_cert(end_entity, intermediates, now),
            (None, Some(v)) => v.verify_client_cert(end_entity, intermediates, now),
            (None, None) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        if let (Err(e), Some(audit)) = (&result, &self.audit) {
            audit.record(&Entry {
                client: &fp,
                role: None,
                peer: None,
                action: "TLS handshake",
                result: "refused",
                detail: Some(&e.to_string()),
            });
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
