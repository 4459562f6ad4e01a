//! Enrolment without a shell: operator CAs and client certificates are
//! dropped on a directory (the FAT boot partition, with the card in a
//! laptop), and `skytime-mgmtd enrol --from DIR` (run at boot by the
//! image, or by hand) validates and imports them, renames each so it is
//! not imported twice, and writes the gateway's certificate fingerprint
//! back for the first client to pin.
//!
//! Files it reads in DIR:
//!
//! | file | what | role |
//! |---|---|---|
//! | `skytime-admin-ca.pem` | operator CA(s) | admin |
//! | `skytime-read-ca.pem` | operator CA(s) | read |
//! | `skytime-admin-cert.pem` | one client certificate, pinned | admin |
//! | `skytime-read-cert.pem` | one client certificate, pinned | read |
//! | `skytime-mgmt-reset` | forget everything enrolled before | |
//!
//! Each is renamed to `NAME.imported`, or `NAME.rejected` with the reason
//! in `skytime-mgmt-enrol.txt`. `skytime-mgmt-fingerprint.txt` gets the
//! gateway certificate's SHA-256 and its public key's pin. Every file
//! written there is replaced atomically (temporary file, rename).

use crate::identity::{self, IdentityError};
use crate::trust::{certificates, Enrolled, Enrolment, Role, TrustError};
use skytime_persist::identity::fingerprint;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Certificate authorities: client certificates they issue are let in.
    Ca,
    /// One client certificate, let in as it is.
    Client,
}

/// The files enrolment looks for, with what they hold and the role.
pub const FILES: [(&str, Kind, Role); 4] = [
    ("skytime-admin-ca.pem", Kind::Ca, Role::Admin),
    ("skytime-read-ca.pem", Kind::Ca, Role::Read),
    ("skytime-admin-cert.pem", Kind::Client, Role::Admin),
    ("skytime-read-cert.pem", Kind::Client, Role::Read),
];
pub const RESET_FILE: &str = "skytime-mgmt-reset";
pub const FINGERPRINT_FILE: &str = "skytime-mgmt-fingerprint.txt";
pub const REPORT_FILE: &str = "skytime-mgmt-enrol.txt";

/// Why enrolment stopped (a file that does not validate does not stop
/// it: it is rejected and reported).
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rename {path}: {source}")]
    Rename {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteBack {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files imported, with what was enrolled from each.
    pub imported: Vec<(String, Vec<String>)>,
    /// Files rejected, with the reason.
    pub rejected: Vec<(String, String)>,
    pub reset: bool,
    /// The gateway certificate's SHA-256.
    pub fingerprint: String,
    /// Whether anything is enrolled now.
    pub enrolled: bool,
}

/// The gateway's names, for its certificate when it is made.
#[derive(Clone, Debug)]
pub struct Names {
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
}

/// Imports what `from` holds into `data_dir` (see the module doc), at
/// Unix time `now` (for expiry).
pub fn enrol(from: &Path, data_dir: &Path, names: &Names, now: i64) -> Result<Outcome, EnrolError> {
    std::fs::create_dir_all(data_dir).map_err(|source| EnrolError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    identity::ensure(data_dir, &names.hostname, &names.addresses)?;
    let server = identity::load(data_dir)?;
    let mut enrolled = Enrolled::load(data_dir)?;
    let mut outcome = Outcome {
        fingerprint: server.fingerprint.clone(),
        ..Outcome::default()
    };
    let mut report = Vec::new();
    let reset = from.join(RESET_FILE);
    if reset.exists() {
        enrolled = Enrolled::default();
        outcome.reset = true;
        report.push(format!(
            "{RESET_FILE}: everything enrolled before was forgotten"
        ));
        mark(&reset, "imported")?;
    }
    for (name, kind, role) in FILES {
        let path = from.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match validate(&text, kind, role, now) {
            Ok(entries) => {
                let subjects: Vec<String> = entries.iter().map(|e| e.subject.clone()).collect();
                for e in entries {
                    match kind {
                        Kind::Ca => enrolled.add_ca(e),
                        Kind::Client => enrolled.add_client(e),
                    }
                }
                report.push(format!(
                    "{name}: imported for role {}: {}",
                    role.name(),
                    subjects.join("; ")
                ));
                outcome.imported.push((name.to_owned(), subjects));
                mark(&path, "imported")?;
            }
            Err(why) => {
                report.push(format!("{name}: rejected: {why}"));
                outcome.rejected.push((name.to_owned(), why));
                mark(&path, "rejected")?;
            }
        }
    }
    // Saved before the files are written back, so that what they say is
    // what the gateway will use.
    enrolled.save(data_dir)?;
    outcome.enrolled = !enrolled.is_empty();
    let back = |file: &str, text: String| {
        let path = from.join(file);
        skytime_persist::atomic_write_modeless(&path, text.as_bytes())
            .map_err(|source| EnrolError::WriteBack { path, source })
    };
    back(
        FINGERPRINT_FILE,
        format!(
            "# skytime-mgmtd's TLS certificate: pin it in the first client.\n\
             # The certificate as enrolment made it; the gateway re-issues it with\n\
             # the same key when the appliance gets an address or name it lacks\n\
             # (a DHCP lease), so prefer the public key's pin below.\n\
             sha256 {}\n\
             # curl --pinnedpubkey, Chromium --ignore-certificate-errors-spki-list:\n\
             pubkey sha256//{}\n",
            server.fingerprint, server.spki_sha256
        ),
    )?;
    if !report.is_empty() {
        let mut text = report.join("\n");
        text.push_str(&format!(
            "\nenrolled now: {} CA(s), {} pinned certificate(s)\n",
            enrolled.ca.len(),
            enrolled.client.len()
        ));
        back(REPORT_FILE, text)?;
    }
    Ok(outcome)
}

/// Renames `path` to `path.SUFFIX` (replacing an older one).
fn mark(path: &Path, suffix: &str) -> Result<(), EnrolError> {
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".{suffix}"));
    std::fs::rename(path, &to).map_err(|source| EnrolError::Rename {
        path: path.to_owned(),
        source,
    })
}

/// Checks a file's certificates for `kind` and returns what to enrol.
pub fn validate(text: &str, kind: Kind, role: Role, now: i64) -> Result<Vec<Enrolment>, String> {
    let ders = certificates(text)?;
    if kind == Kind::Client && ders.len() != 1 {
        return Err(format!(
            "holds {} certificates; a pinned client certificate file holds exactly one",
            ders.len()
        ));
    }
    let mut out = Vec::new();
    for der in &ders {
        let (_, c) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let subject = c.subject().to_string();
        let not_after = c.validity().not_after.timestamp();
        if not_after <= now {
            return Err(format!(
                "{subject}: expired on {}",
                skytime_api::display::utc(not_after)
            ));
        }
        let ca = c
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        let usage = c.key_usage().ok().flatten().map(|k| k.value);
        let eku = c.extended_key_usage().ok().flatten().map(|e| e.value);
        match kind {
            Kind::Ca => {
                if !ca {
                    return Err(format!(
                        "{subject} is not a CA certificate (basicConstraints CA:TRUE); \
                         to let one client in, name it skytime-{}-cert.pem",
                        role.name()
                    ));
                }
                if usage.is_some_and(|u| !u.key_cert_sign()) {
                    return Err(format!(
                        "{subject} may not sign certificates (keyUsage lacks keyCertSign)"
                    ));
                }
            }
            Kind::Client => {
                if ca {
                    return Err(format!(
                        "{subject} is a CA certificate: name it skytime-{}-ca.pem to enrol \
                         the CA, or pin a client certificate with CA:FALSE",
                        role.name()
                    ));
                }
                if eku.is_some_and(|e| !e.client_auth && !e.any) {
                    return Err(format!(
                        "{subject} is not for client authentication (extendedKeyUsage lacks clientAuth)"
                    ));
                }
                if usage.is_some_and(|u| !u.digital_signature()) {
                    return Err(format!(
                        "{subject} may not sign (keyUsage lacks digitalSignature)"
                    ));
                }
            }
        }
        let pem = pem_of(der);
        out.push(Enrolment {
            role,
            subject,
            fingerprint: fingerprint(der),
            pem,
        });
    }
    // What webpki will accept as a trust anchor, checked now rather than
    // at the next start.
    let mut roots = rustls::RootCertStore::empty();
    for der in ders {
        roots
            .add(der)
            .map_err(|e| format!("not usable as a trust anchor: {e}"))?;
    }
    Ok(out)
}

/// One certificate as PEM.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
