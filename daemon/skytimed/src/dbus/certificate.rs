//! Checking a certificate and private key before they replace the ones
//! NTS-KE serves, and describing a certificate for the management API.
//!
//! A pair is accepted only if every PEM block parses, the first
//! certificate's public key is the private key's, and the certificate has
//! not expired. The check of "not yet valid" is left out on purpose: the
//! appliance may run before its clock is set (no RTC), and refusing a fresh
//! certificate then would lock the operator out.

use super::error::ApiError;
use super::report::CertificateReport;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate chain and key that passed every check, ready to be
/// written.
#[derive(Debug)]
pub struct CheckedPair {
    pub report: CertificateReport,
}

/// Parses a PEM chain and describes its first certificate. `path` is only
/// copied into the report.
pub fn describe(pem: &[u8], path: &str) -> Result<CertificateReport, ApiError> {
    let chain = parse_chain(pem)?;
    let mut report = describe_der(&chain[0])?;
    report.chain_length = chain.len() as u32;
    report.path = path.to_owned();
    Ok(report)
}

/// Checks `certificate_pem` (chain, server certificate first) against
/// `key_pem` and against the time `now_unix`.
pub fn check_pair(
    certificate_pem: &str,
    key_pem: &str,
    now_unix: i64,
) -> Result<CheckedPair, ApiError> {
    let chain = parse_chain(certificate_pem.as_bytes())?;
    for (i, der) in chain.iter().enumerate().skip(1) {
        X509Certificate::from_der(der).map_err(|e| {
            ApiError::InvalidCertificate(format!(
                "certificate {} of the chain is not valid X.509: {e}",
                i + 1
            ))
        })?;
    }
    let mut report = describe_der(&chain[0])?;
    report.chain_length = chain.len() as u32;

    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        ApiError::InvalidArgs(format!("the private key is not PEM (PKCS#8, PKCS#1 RSA or SEC1 EC): {e:?}; nothing was changed"))
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        ApiError::InvalidCertificate(format!(
            "the private key cannot be used for TLS: {e}; nothing was changed"
        ))
    })?;
    CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|e| {
            ApiError::InvalidCertificate(format!(
                "the private key does not belong to the certificate ({e}); nothing was changed"
            ))
        })?;

    if report.not_after < now_unix {
        return Err(ApiError::CertificateExpired(format!(
            "the certificate for {} expired at Unix time {} (now {now_unix}); nothing was changed",
            report.subject, report.not_after
        )));
    }
    Ok(CheckedPair { report })
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::InvalidArgs(format!(
                "the certificate is not valid PEM: {e:?}; nothing was changed"
            ))
        })?;
    if chain.is_empty() {
        return Err(ApiError::InvalidArgs(
            "the certificate holds no '-----BEGIN CERTIFICATE-----' block; nothing was changed"
                .into(),
        ));
    }
    Ok(chain)
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertificateReport, ApiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        ApiError::InvalidCertificate(format!(
            "the certificate is not valid X.509: {e}; nothing was changed"
        ))
    })?;
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

/// SHA-256 of `der`, as colon-separated upper-case hex (openssl's style).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

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
        let r = check_pair(&cert, &key, NOW).unwrap().report;
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
    fn mismatched_expired_and_malformed_are_refused_by_name() {
        let (cert, _) = make(2040);
        let (_, other_key) = make(2040);
        let e = check_pair(&cert, &other_key, NOW).unwrap_err();
        assert!(matches!(e, ApiError::InvalidCertificate(_)), "{e:?}");
        assert!(e.to_string().contains("does not belong"), "{e}");

        let (old, old_key) = make(2021);
        let e = check_pair(&old, &old_key, NOW).unwrap_err();
        assert!(matches!(e, ApiError::CertificateExpired(_)), "{e:?}");

        let (_, key) = make(2040);
        assert!(matches!(
            check_pair("hello", &key, NOW),
            Err(ApiError::InvalidArgs(_))
        ));
        assert!(matches!(
            check_pair(&cert, "not a key", NOW),
            Err(ApiError::InvalidArgs(_))
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            check_pair(garbage, &key, NOW),
            Err(ApiError::InvalidCertificate(_))
        ));
    }
}
