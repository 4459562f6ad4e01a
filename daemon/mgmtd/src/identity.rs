//! The gateway's own TLS identity: a private key (`server-key.pem`, 0600)
//! and a self-signed end-entity certificate (`server-cert.pem`) in its
//! data directory, made once (by `enrol`) for the appliance's names and
//! addresses, and the two fingerprints a first client pins: the
//! certificate's SHA-256 (openssl's form) and its public key's
//! (`sha256//BASE64`, for curl's `--pinnedpubkey`).
//!
//! Enrolment runs early in the boot, before the network has its
//! addresses, so the certificate first names only the host name and the
//! configured addresses. [`follow`] re-issues it with the same key when
//! the appliance has a name or address it lacks (a DHCP lease, a new
//! static address): the public-key pin stays valid, and so does a copy
//! of the old certificate used as the trust anchor while the host name is
//! the same (same subject, same key).

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use skytime_persist::identity::fingerprint;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const CERT_FILE: &str = "server-cert.pem";
pub const KEY_FILE: &str = "server-key.pem";
/// The certificate's organization (O).
pub const ORGANIZATION: &str = "skytime management";
/// At most this many addresses in a re-issued certificate: the ones the
/// appliance has now first, then those it named before.
pub const MAX_ADDRESSES: usize = 32;
/// At most this many earlier DNS names kept besides the host name's two.
pub const MAX_EARLIER_NAMES: usize = 8;

/// Why the identity could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Make(#[from] skytime_persist::identity::IdentityError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot read {path}: {message} (run `skytime-mgmtd enrol` to make the gateway's identity)"
    )]
    Read { path: PathBuf, message: String },
    #[error("{present} exists but {missing} does not; refusing to replace half of a TLS identity (move both away to make a new one)")]
    Half { present: PathBuf, missing: PathBuf },
}

/// The identity in use.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate, colon hex.
    pub fingerprint: String,
    /// SHA-256 of the public key, base64 (curl's and Chromium's pins).
    pub spki_sha256: String,
}

/// Makes the key and certificate where they are missing; returns whether
/// it made them. Never replaces one of the pair alone.
pub fn ensure(
    data_dir: &Path,
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<bool, IdentityError> {
    let (cert, key) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
    // A first run cut short between the two files is finished or dropped.
    skytime_persist::pair::recover_pair(&key, &cert).map_err(|source| IdentityError::Write {
        path: cert.clone(),
        source,
    })?;
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(false),
        (false, false) => {
            let (cert_pem, key_pem) =
                skytime_persist::identity::self_signed(hostname, addresses, ORGANIZATION)?;
            // Both or neither, even across a crash.
            use skytime_persist::pair::{write_pair, PairFile};
            write_pair(
                PairFile {
                    path: &key,
                    contents: key_pem.as_bytes(),
                    mode: 0o600,
                },
                PairFile {
                    path: &cert,
                    contents: cert_pem.as_bytes(),
                    mode: 0o644,
                },
            )
            .map_err(|source| IdentityError::Write {
                path: cert.clone(),
                source,
            })?;
            Ok(true)
        }
        (true, false) => Err(IdentityError::Half {
            present: cert,
            missing: key,
        }),
        (false, true) => Err(IdentityError::Half {
            present: key,
            missing: cert,
        }),
    }
}

/// What [`follow`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// The certificate already names everything asked.
    Kept,
    /// Re-issued with the same key; the names it lacked ("DNS:x", "IP:y").
    Reissued { added: Vec<String> },
}

/// Makes the certificate name `hostname` (and `hostname.local`) and
/// `addresses` (those the appliance has now): when one is missing it is
/// re-issued, with the same key, for `hostname` and those addresses,
/// followed by the names and addresses it had before (bounded by
/// [`MAX_ADDRESSES`] and [`MAX_EARLIER_NAMES`]: an address an operator
/// configured, or an old name, keeps working). The certificate is
/// replaced atomically; the key is not written.
pub fn follow(
    data_dir: &Path,
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<Followed, IdentityError> {
    let (cert, key) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| IdentityError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    let cert_pem = read(&cert)?;
    let named = names_in(&cert_pem).map_err(|message| IdentityError::Read {
        path: cert.clone(),
        message,
    })?;
    let wanted = skytime_persist::identity::end_entity_params(hostname, addresses, ORGANIZATION)?
        .subject_alt_names
        .iter()
        .map(san_text)
        .collect::<Vec<_>>();
    let added: Vec<String> = wanted.into_iter().filter(|w| !named.contains(w)).collect();
    if added.is_empty() {
        return Ok(Followed::Kept);
    }
    let mut all = addresses.to_vec();
    for before in named.iter().filter_map(|n| n.strip_prefix("IP:")) {
        if let Ok(ip) = before.parse::<IpAddr>() {
            if !all.contains(&ip) {
                all.push(ip);
            }
        }
    }
    all.truncate(MAX_ADDRESSES);
    let mut params = skytime_persist::identity::end_entity_params(hostname, &all, ORGANIZATION)?;
    let earlier = named
        .iter()
        .filter_map(|n| n.strip_prefix("DNS:"))
        .filter_map(|n| rcgen::Ia5String::try_from(n.to_owned()).ok())
        .map(rcgen::SanType::DnsName)
        .filter(|san| !params.subject_alt_names.contains(san))
        .take(MAX_EARLIER_NAMES)
        .collect::<Vec<_>>();
    params.subject_alt_names.extend(earlier);
    let new = skytime_persist::identity::self_signed_with_key(&read(&key)?, params)?;
    skytime_persist::atomic_write(&cert, new.as_bytes(), 0o644).map_err(|source| {
        IdentityError::Write {
            path: cert.clone(),
            source,
        }
    })?;
    Ok(Followed::Reissued { added })
}

/// A SAN as `follow` compares them: "DNS:name" or "IP:address".
fn san_text(san: &rcgen::SanType) -> String {
    match san {
        rcgen::SanType::DnsName(n) => format!("DNS:{}", n.as_str()),
        rcgen::SanType::IpAddress(ip) => format!("IP:{ip}"),
        other => format!("{other:?}"),
    }
}

/// The DNS names and addresses a PEM certificate names, as [`san_text`].
fn names_in(pem: &str) -> Result<Vec<String>, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Ok(Vec::new());
    };
    Ok(ext
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(n) => Some(format!("DNS:{n}")),
            x509_parser::extensions::GeneralName::IPAddress(b) => <[u8; 4]>::try_from(*b)
                .map(IpAddr::from)
                .or_else(|_| <[u8; 16]>::try_from(*b).map(IpAddr::from))
                .ok()
                .map(|ip| format!("IP:{ip}")),
            _ => None,
        })
        .collect())
}

/// Reads the identity.
pub fn load(data_dir: &Path) -> Result<ServerIdentity, IdentityError> {
    let (cert, key) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
    skytime_persist::pair::recover_pair(&key, &cert).map_err(|e| IdentityError::Read {
        path: cert.clone(),
        message: format!("cannot finish an interrupted write: {e}"),
    })?;
    let read_err = |path: &Path, message: String| IdentityError::Read {
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect())
        .map_err(|e| read_err(&cert, e.to_string()))?;
    let first = chain
        .first()
        .ok_or_else(|| read_err(&cert, "no certificate in it".into()))?;
    let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| read_err(&key, e.to_string()))?;
    let spki = spki_sha256(first).map_err(|e| read_err(&cert, e))?;
    Ok(ServerIdentity {
        fingerprint: fingerprint(first),
        spki_sha256: spki,
        chain,
        key: key_der,
    })
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, base64.
pub fn spki_sha256(der: &CertificateDer<'_>) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure(dir.path(), "ntp1", &[]).unwrap());
        assert!(!ensure(dir.path(), "ntp1", &[]).unwrap(), "kept");
        let id = load(dir.path()).unwrap();
        assert_eq!(id.chain.len(), 1);
        assert_eq!(id.spki_sha256.len(), 44);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let e = ensure(dir.path(), "ntp1", &[]).unwrap_err().to_string();
        assert!(e.contains("refusing to replace half"), "{e}");
        assert!(load(dir.path()).unwrap_err().to_string().contains("enrol"));
    }

    /// What the certificate in `dir` names.
    fn named(dir: &Path) -> Vec<String> {
        names_in(&std::fs::read_to_string(dir.join(CERT_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn a_new_address_reissues_with_the_same_key_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let configured: IpAddr = "192.0.2.7".parse().unwrap();
        let leased: IpAddr = "198.51.100.20".parse().unwrap();
        ensure(dir.path(), "ntp1", &[configured]).unwrap();
        let before = load(dir.path()).unwrap();
        let key_before = std::fs::read(dir.path().join(KEY_FILE)).unwrap();

        // Everything named already: nothing written.
        assert_eq!(
            follow(dir.path(), "ntp1", &[configured]).unwrap(),
            Followed::Kept
        );
        assert_eq!(load(dir.path()).unwrap().fingerprint, before.fingerprint);

        // A lease it lacks: re-issued, same key, old address kept.
        assert_eq!(
            follow(dir.path(), "ntp1", &[leased]).unwrap(),
            Followed::Reissued {
                added: vec!["IP:198.51.100.20".into()]
            }
        );
        let after = load(dir.path()).unwrap();
        assert_ne!(after.fingerprint, before.fingerprint);
        assert_eq!(after.spki_sha256, before.spki_sha256, "the key changed");
        assert_eq!(
            std::fs::read(dir.path().join(KEY_FILE)).unwrap(),
            key_before
        );
        let names = named(dir.path());
        for want in [
            "DNS:ntp1",
            "DNS:ntp1.local",
            "IP:192.0.2.7",
            "IP:198.51.100.20",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        // Asked again: kept.
        assert_eq!(
            follow(dir.path(), "ntp1", &[leased, configured]).unwrap(),
            Followed::Kept
        );

        // A new host name: both its names are added.
        let Followed::Reissued { added } = follow(dir.path(), "ntp2", &[leased]).unwrap() else {
            panic!("not re-issued for a new host name");
        };
        assert_eq!(added, ["DNS:ntp2", "DNS:ntp2.local"]);
        let names = named(dir.path());
        assert!(
            names.contains(&"DNS:ntp1".to_owned()),
            "the old name was dropped: {names:?}"
        );
    }

    #[test]
    fn addresses_are_bounded_and_the_current_ones_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<IpAddr> = (1..=MAX_ADDRESSES as u8)
            .map(|i| IpAddr::from([192, 0, 2, i]))
            .collect();
        ensure(dir.path(), "ntp1", &old).unwrap();
        let now: IpAddr = "203.0.113.1".parse().unwrap();
        follow(dir.path(), "ntp1", &[now]).unwrap();
        let names = named(dir.path());
        let ips: Vec<&String> = names.iter().filter(|n| n.starts_with("IP:")).collect();
        assert_eq!(ips.len(), MAX_ADDRESSES);
        assert_eq!(ips[0], "IP:203.0.113.1");
    }

    #[test]
    fn a_missing_or_foreign_key_is_an_error_and_the_certificate_stays() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), "ntp1", &[]).unwrap();
        let cert_before = std::fs::read(dir.path().join(CERT_FILE)).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let e = follow(dir.path(), "ntp1", &["192.0.2.9".parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join(CERT_FILE)).unwrap(),
            cert_before
        );
    }
}
