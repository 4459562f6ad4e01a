//! The gateway's own TLS identity: a private key (`server-key.pem`, 0600)
//! and a self-signed end-entity certificate (`server-cert.pem`) in its
//! data directory, made once (by `enrol`) for the appliance's names and
//! addresses, and the two fingerprints a first client pins: the
//! certificate's SHA-256 (openssl's form) and its public key's
//! (`sha256//BASE64`, for curl's `--pinnedpubkey`).

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use skytime_persist::identity::fingerprint;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const CERT_FILE: &str = "server-cert.pem";
pub const KEY_FILE: &str = "server-key.pem";

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
                skytime_persist::identity::self_signed(hostname, addresses, "skytime management")?;
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
}
