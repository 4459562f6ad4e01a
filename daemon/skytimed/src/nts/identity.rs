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
use skytime_persist::pair::{recover_pair, write_pair, PairFile};
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
    // A first boot cut short between the two files is finished or dropped.
    recover_pair(&key_path, &cert_path)
        .map_err(|e| NtsError::Identity(format!("cannot recover {}: {e}", cert_path.display())))?;
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => report.kept.extend([cert_path.clone(), key_path.clone()]),
        (false, false) => {
            let (cert_pem, key_pem) = self_signed(hostname, addresses)?;
            // Both or neither, even across a crash (see skytime_persist::pair).
            write_pair(
                PairFile {
                    path: &key_path,
                    contents: key_pem.as_bytes(),
                    mode: 0o600,
                },
                PairFile {
                    path: &cert_path,
                    contents: cert_pem.as_bytes(),
                    mode: 0o600,
                },
            )
            .map_err(|e| {
                NtsError::Identity(format!("cannot write {}: {e}", cert_path.display()))
            })?;
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

/// A new ECDSA P-256 key and self-signed NTS-KE certificate, as PEM.
pub fn self_signed(hostname: &str, addresses: &[IpAddr]) -> Result<(String, String), NtsError> {
    skytime_persist::identity::self_signed(hostname, addresses, ORGANIZATION)
        .map_err(|e| NtsError::Identity(e.to_string()))
}

/// The addresses this machine has now, for a first-boot certificate (see
/// [`skytime_persist::identity::current_addresses`]).
pub fn current_addresses() -> Result<Vec<IpAddr>, NtsError> {
    skytime_persist::identity::current_addresses().map_err(|e| NtsError::Identity(e.to_string()))
}

/// The organization NTS-KE certificates name.
pub const ORGANIZATION: &str = "skytime NTS";

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_persist::pair::staged_path;

    /// A first boot cut short between the key and the certificate: once
    /// both were staged the next run finishes that identity; with only
    /// the key staged it drops it and makes a whole new one. Never "half
    /// of a TLS identity".
    #[test]
    fn an_interrupted_first_boot_is_finished_or_started_over() {
        let config = NtsConfig::default();
        for both_staged in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let cert = NtsConfig::resolve(dir.path(), &config.certificate);
            let key = NtsConfig::resolve(dir.path(), &config.private_key);
            std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
            let (cert_pem, key_pem) = self_signed("staged", &[]).unwrap();
            std::fs::write(staged_path(&key), &key_pem).unwrap();
            if both_staged {
                std::fs::write(staged_path(&cert), &cert_pem).unwrap();
            }
            let report = generate_identity(&config, dir.path(), "fresh", &[]).unwrap();
            assert!(!staged_path(&key).exists() && !staged_path(&cert).exists());
            let on_disk = std::fs::read_to_string(&key).unwrap();
            if both_staged {
                assert_eq!(on_disk, key_pem);
                assert_eq!(std::fs::read_to_string(&cert).unwrap(), cert_pem);
                assert!(report.kept.contains(&cert));
            } else {
                assert_ne!(on_disk, key_pem);
                assert!(report.created.contains(&cert));
            }
            crate::nts::tls::TlsStore::load(&cert, &key).unwrap();
        }
    }
}
