//! The NTS-KE certificate as files and as X.509: checking a certificate
//! and private key before they replace the pair NTS-KE serves, describing
//! a certificate for reports, and installing a checked pair.
//!
//! A pair is accepted only if every PEM block parses, the first
//! certificate's public key is the private key's, and the certificate has
//! not expired. The check of "not yet valid" is left out on purpose: the
//! appliance may run before its clock is set (no RTC), and refusing a fresh
//! certificate then would lock the operator out.

use super::NtsError;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use skytime_api::CertificateReport;
use skytime_persist::pair::{write_pair, PairFile};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate or key was refused. Every message ends by saying
/// that nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is not valid PEM: {0}; nothing was changed")]
    NotPem(String),
    #[error("the certificate holds no '-----BEGIN CERTIFICATE-----' block; nothing was changed")]
    NoCertificate,
    #[error("the certificate is not valid X.509: {0}; nothing was changed")]
    NotX509(String),
    #[error("certificate {index} of the chain is not valid X.509: {reason}; nothing was changed")]
    ChainNotX509 { index: usize, reason: String },
    #[error(
        "the private key is not PEM (PKCS#8, PKCS#1 RSA or SEC1 EC): {0}; nothing was changed"
    )]
    KeyNotPem(String),
    #[error("the private key cannot be used for TLS: {0}; nothing was changed")]
    KeyUnusable(String),
    #[error("the private key does not belong to the certificate ({0}); nothing was changed")]
    KeyMismatch(String),
    #[error("the certificate for {subject} expired at Unix time {not_after} (now {now}); nothing was changed")]
    Expired {
        subject: String,
        not_after: i64,
        now: i64,
    },
}

impl CertificateError {
    /// Whether the input is not a certificate or key at all (as opposed to
    /// one that is refused).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::NotPem(_) | Self::NoCertificate | Self::KeyNotPem(_)
        )
    }
}

/// Why [`install`] left the previous pair in place.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Refused(#[from] CertificateError),
    #[error("cannot write {path}: {source}; the previous certificate stays")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}; the previous certificate keeps serving")]
    Reload(NtsError),
}

/// Parses a PEM chain and describes its first certificate. `path` is only
/// copied into the report.
pub fn describe(pem: &[u8], path: &str) -> Result<CertificateReport, CertificateError> {
    let chain = parse_chain(pem)?;
    let mut report = describe_der(&chain[0])?;
    report.chain_length = chain.len() as u32;
    report.path = path.to_owned();
    Ok(report)
}

/// Checks `certificate_pem` (chain, server certificate first) against
/// `key_pem` and against the time `now_unix`; describes the certificate.
pub fn check_pair(
    certificate_pem: &str,
    key_pem: &str,
    now_unix: i64,
) -> Result<CertificateReport, CertificateError> {
    let chain = parse_chain(certificate_pem.as_bytes())?;
    for (i, der) in chain.iter().enumerate().skip(1) {
        X509Certificate::from_der(der).map_err(|e| CertificateError::ChainNotX509 {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    let mut report = describe_der(&chain[0])?;
    report.chain_length = chain.len() as u32;

    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertificateError::KeyNotPem(format!("{e:?}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertificateError::KeyUnusable(e.to_string()))?;
    CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|e| CertificateError::KeyMismatch(e.to_string()))?;

    if report.not_after < now_unix {
        return Err(CertificateError::Expired {
            subject: report.subject,
            not_after: report.not_after,
            now: now_unix,
        });
    }
    Ok(report)
}

/// Checks and writes a certificate chain and key to `certificate` and
/// `private_key` (the key mode 0600), then calls `reload` to serve them;
/// on any failure the previous files are put back. Returns the installed
/// certificate's description.
pub fn install(
    certificate: &Path,
    private_key: &Path,
    certificate_pem: &str,
    key_pem: &str,
    now_unix: i64,
    reload: impl FnOnce() -> Result<(), NtsError>,
) -> Result<CertificateReport, InstallError> {
    let mut report = check_pair(certificate_pem, key_pem, now_unix)?;
    let old_cert = std::fs::read(certificate).ok();
    let old_key = std::fs::read(private_key).ok();
    let persist = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Persist { path, source }
    };
    // Key and certificate change together: a crash leaves the old pair or
    // the new one (skytime_persist::pair; the loader finishes the write).
    write_pair(
        PairFile {
            path: private_key,
            contents: key_pem.as_bytes(),
            mode: 0o600,
        },
        PairFile {
            path: certificate,
            contents: certificate_pem.as_bytes(),
            mode: 0o644,
        },
    )
    .map_err(persist(certificate))?;
    if let Err(e) = reload() {
        restore(
            certificate,
            private_key,
            old_cert.as_deref(),
            old_key.as_deref(),
        );
        return Err(InstallError::Reload(e));
    }
    report.path = certificate.display().to_string();
    tracing::info!(subject = %report.subject, fingerprint = %report.fingerprint_sha256, not_after = report.not_after, "certificate installed");
    Ok(report)
}

/// Puts the previous pair back (as a pair), or removes the new one if
/// there was none.
fn restore(certificate: &Path, private_key: &Path, cert: Option<&[u8]>, key: Option<&[u8]>) {
    let result = match (cert, key) {
        (Some(cert), Some(key)) => write_pair(
            PairFile {
                path: private_key,
                contents: key,
                mode: 0o600,
            },
            PairFile {
                path: certificate,
                contents: cert,
                mode: 0o644,
            },
        ),
        // The certificate (the pair's commit record) first.
        _ => std::fs::remove_file(certificate).and_then(|()| std::fs::remove_file(private_key)),
    };
    if let Err(e) = result {
        tracing::error!("cannot restore {}: {e}", certificate.display());
    }
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::NotPem(format!("{e:?}")))?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    Ok(chain)
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertificateReport, CertificateError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertificateError::NotX509(e.to_string()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                other => sans.push(other.to_string()),
            }
        }
    }
    Ok(CertificateReport {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        subject_alt_names: sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint_sha256: fingerprint(der),
        chain_length: 1,
        path: String::new(),
    })
}

pub use skytime_persist::identity::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    fn make(not_after_year: i32) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["ntp.example.test".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("192.0.2.1".parse().unwrap()));
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    #[test]
    fn good_pair_is_described() {
        let (cert, key) = make(2040);
        let r = check_pair(&cert, &key, NOW).unwrap();
        assert!(
            r.subject_alt_names
                .contains(&"DNS:ntp.example.test".to_owned()),
            "{:?}",
            r.subject_alt_names
        );
        assert!(
            r.subject_alt_names.contains(&"IP:192.0.2.1".to_owned()),
            "{:?}",
            r.subject_alt_names
        );
        assert!(r.not_after > NOW && r.not_before < NOW);
        assert_eq!(r.fingerprint_sha256.len(), 32 * 3 - 1);
        assert_eq!(
            describe(cert.as_bytes(), "x").unwrap().fingerprint_sha256,
            r.fingerprint_sha256
        );
    }

    #[test]
    fn mismatched_expired_and_malformed_are_refused_by_kind() {
        let (cert, _) = make(2040);
        let (_, other_key) = make(2040);
        let e = check_pair(&cert, &other_key, NOW).unwrap_err();
        assert!(matches!(e, CertificateError::KeyMismatch(_)), "{e:?}");
        assert!(e.to_string().contains("does not belong"), "{e}");

        let (old, old_key) = make(2021);
        let e = check_pair(&old, &old_key, NOW).unwrap_err();
        assert!(matches!(e, CertificateError::Expired { .. }), "{e:?}");
        assert!(!e.is_malformed());

        let (_, key) = make(2040);
        let e = check_pair("hello", &key, NOW).unwrap_err();
        assert!(
            e.is_malformed() && e.to_string().contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = check_pair(&cert, "not a key", NOW).unwrap_err();
        assert!(
            e.is_malformed() && e.to_string().contains("private key"),
            "{e}"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = check_pair(garbage, &key, NOW).unwrap_err();
        assert!(
            matches!(e, CertificateError::NotX509(_)) && e.to_string().contains("X.509"),
            "{e}"
        );
    }

    #[test]
    fn install_writes_the_pair_and_puts_the_old_one_back_when_reload_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (old_cert, old_key) = make(2040);
        std::fs::write(&cert_path, &old_cert).unwrap();
        std::fs::write(&key_path, &old_key).unwrap();
        let (cert, key) = make(2041);

        let e = install(&cert_path, &key_path, &cert, &key, NOW, || {
            Err(NtsError::Tls("refused".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("keeps serving"), "{e}");
        assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), old_cert);
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), old_key);

        let (_, other_key) = make(2040);
        let mut reloaded = false;
        let e = install(&cert_path, &key_path, &cert, &other_key, NOW, || {
            reloaded = true;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(e, InstallError::Refused(_)) && !reloaded, "{e}");
        assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), old_cert);

        let r = install(&cert_path, &key_path, &cert, &key, NOW, || {
            reloaded = true;
            Ok(())
        })
        .unwrap();
        assert!(reloaded);
        assert_eq!(r.path, cert_path.display().to_string());
        assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), cert);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key_path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the key is for the daemon only");
    }
}
