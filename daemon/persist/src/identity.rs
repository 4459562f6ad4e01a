//! Self-signed end-entity TLS identities for the appliance, the
//! addresses to name in them, and certificate fingerprints.
//!
//! The certificate carries `CA:FALSE` (basicConstraints, critical), so
//! webpki-based clients (rustls, ntpd-rs) accept it as a server
//! certificate, and chrony/GnuTLS and curl accept it pinned. Its validity
//! runs from 2000-01-01 to 9999-12-31 (RFC 5280's "no well-defined
//! expiration"): the appliance has no RTC and may make its identity while
//! its clock still says 1970 or the build date, and a pinned self-signed
//! certificate gains nothing from expiring.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// Why an identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("host name {hostname:?} cannot be a certificate name: {source}")]
    BadName {
        hostname: String,
        source: rcgen::Error,
    },
    #[error("cannot make the certificate: {0}")]
    Generate(rcgen::Error),
    #[error("cannot use the private key to re-issue the certificate: {0}")]
    Key(rcgen::Error),
    #[error("cannot list network interfaces: {0}")]
    Interfaces(nix::Error),
}

/// A new ECDSA P-256 key and self-signed end-entity server certificate
/// for `hostname` and `addresses` (see [`end_entity_params`]), as PEM
/// (certificate, key).
pub fn self_signed(
    hostname: &str,
    addresses: &[IpAddr],
    organization: &str,
) -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate().map_err(IdentityError::Generate)?;
    let params = end_entity_params(hostname, addresses, organization)?;
    let cert = params.self_signed(&key).map_err(IdentityError::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificate `params` self-signed with the existing key `key_pem`
/// (PEM, PKCS#8), as PEM: a new name or address without a new key, so
/// that clients pinning the public key keep trusting the server.
pub fn self_signed_with_key(
    key_pem: &str,
    params: CertificateParams,
) -> Result<String, IdentityError> {
    let key = KeyPair::from_pem(key_pem).map_err(IdentityError::Key)?;
    let cert = params.self_signed(&key).map_err(IdentityError::Generate)?;
    Ok(cert.pem())
}

/// The addresses this machine has now, for a first-boot certificate: every
/// interface's IPv4 address but loopback, and IPv6 addresses but loopback
/// and link-local (a link-local name needs a zone, which no client puts in
/// a certificate check). Sorted, without repeats.
pub fn current_addresses() -> Result<Vec<IpAddr>, IdentityError> {
    let ifaddrs = nix::ifaddrs::getifaddrs().map_err(IdentityError::Interfaces)?;
    let mut found: Vec<IpAddr> = ifaddrs
        .filter_map(|i| {
            let a = i.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local()
            }
        })
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// Certificate parameters for an appliance's server certificate: SANs
/// `hostname`, `hostname.local` (unless it is `localhost`, an address, or
/// already ends in `.local`) and every address; subject CN `hostname`,
/// O `organization`; serverAuth only.
pub fn end_entity_params(
    hostname: &str,
    addresses: &[IpAddr],
    organization: &str,
) -> Result<CertificateParams, IdentityError> {
    let bad_name = |source: rcgen::Error| IdentityError::BadName {
        hostname: hostname.to_owned(),
        source,
    };
    let mut names = vec![hostname.to_owned()];
    if hostname != "localhost"
        && !hostname.ends_with(".local")
        && hostname.parse::<IpAddr>().is_err()
    {
        names.push(format!("{hostname}.local"));
    }
    let mut params = CertificateParams::default();
    for n in &names {
        params.subject_alt_names.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(bad_name)?),
        });
    }
    for a in addresses {
        if !params.subject_alt_names.contains(&SanType::IpAddress(*a)) {
            params.subject_alt_names.push(SanType::IpAddress(*a));
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    dn.push(DnType::OrganizationName, organization);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    Ok(params)
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
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    use x509_parser::prelude::*;

    #[test]
    fn the_certificate_names_the_host_and_is_no_ca() {
        let (cert, _) =
            self_signed("ntp1", &["192.0.2.1".parse().unwrap()], "skytime test").unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let sans: Vec<String> = c
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            sans,
            [
                "DNSName(ntp1)",
                "DNSName(ntp1.local)",
                "IPAddress(c0:00:02:01)"
            ]
        );
        assert!(!c.basic_constraints().unwrap().unwrap().value.ca);
        assert_eq!(fingerprint(&der).len(), 32 * 3 - 1);
        assert!(matches!(
            self_signed("h\u{e9}te", &[], "x"),
            Err(IdentityError::BadName { .. })
        ));
    }
}
