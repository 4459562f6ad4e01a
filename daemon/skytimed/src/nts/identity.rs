//! First-boot identity: a private key and a self-signed end-entity TLS
//! certificate for NTS-KE, and the master key file. Existing files are
//! never overwritten.
//!
//! The certificate carries `CA:FALSE` (basicConstraints, critical), so
//! webpki-based clients (rustls, ntpd-rs) accept it as a server
//! certificate, and chrony/GnuTLS accept it with `ntstrustedcerts`. Its
//! validity runs from 2000-01-01 to 9999-12-31 (RFC 5280's "no
//! well-defined expiration"): the appliance has no RTC and may make its
//! identity while its clock still says 1970 or the build date, and a
//! pinned self-signed certificate gains nothing from expiring.

use super::config::NtsConfig;
use super::keystore::create_key_file_if_missing;
use super::NtsError;
use crate::persist::atomic_write;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What [`generate_identity`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityReport {
    /// Files written now.
    pub created: Vec<PathBuf>,
    /// Files that already existed and were left alone.
    pub kept: Vec<PathBuf>,
}

/// Creates, where missing, the TLS private key and certificate named in
/// `config` (relative to `data_dir`) for `hostname` (SANs `hostname`,
/// `hostname.local` unless it is `localhost` or already ends in `.local`,
/// and every address in `addresses`), and the master key file; all mode
/// 0600. A certificate without its key, or a key without its certificate,
/// is an error: they are never replaced one at a time.
pub fn generate_identity(
    config: &NtsConfig,
    data_dir: &Path,
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<IdentityReport, NtsError> {
    let cert_path = NtsConfig::resolve(data_dir, &config.certificate);
    let key_path = NtsConfig::resolve(data_dir, &config.private_key);
    let master_path = NtsConfig::resolve(data_dir, &config.master_key_file);
    for p in [&cert_path, &key_path, &master_path] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| NtsError::Identity(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let mut report = IdentityReport::default();
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => report.kept.extend([cert_path.clone(), key_path.clone()]),
        (false, false) => {
            let (cert_pem, key_pem) = self_signed(hostname, addresses)?;
            let write = |p: &Path, s: &str| {
                atomic_write(p, s.as_bytes(), 0o600)
                    .map_err(|e| NtsError::Identity(format!("cannot write {}: {e}", p.display())))
            };
            // Key first: a crash in between leaves a key without certificate,
            // which the next run reports instead of silently pairing anew.
            write(&key_path, &key_pem)?;
            write(&cert_path, &cert_pem)?;
            report.created.extend([key_path.clone(), cert_path.clone()]);
        }
        (cert, _) => {
            let (present, missing) = if cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            return Err(NtsError::Identity(format!("{} exists but {} does not; refusing to replace half of a TLS identity (move both away to make a new one)", present.display(), missing.display())));
        }
    }
    if create_key_file_if_missing(&master_path)? {
        report.created.push(master_path);
    } else {
        report.kept.push(master_path);
    }
    Ok(report)
}

/// A new ECDSA P-256 key and self-signed end-entity certificate, as PEM.
pub fn self_signed(hostname: &str, addresses: &[IpAddr]) -> Result<(String, String), NtsError> {
    let err = |e: rcgen::Error| NtsError::Identity(format!("cannot make the certificate: {e}"));
    let key = KeyPair::generate().map_err(err)?;
    let params = end_entity_params(hostname, addresses)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The addresses this machine has now, for a first-boot certificate: every
/// interface's IPv4 address but loopback, and IPv6 addresses but loopback
/// and link-local (a link-local name needs a zone, which no client puts in
/// a certificate check). Sorted, without repeats.
pub fn current_addresses() -> Result<Vec<IpAddr>, NtsError> {
    let ifaddrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| NtsError::Identity(format!("cannot list network interfaces: {e}")))?;
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

/// Certificate parameters for an NTS-KE server certificate.
pub fn end_entity_params(
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<CertificateParams, NtsError> {
    let bad_name = |e: rcgen::Error| {
        NtsError::Identity(format!(
            "host name {hostname:?} cannot be a certificate name: {e}"
        ))
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
    dn.push(DnType::OrganizationName, "skytime NTS");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    Ok(params)
}
