//! A new name or address for the appliance needs a certificate that
//! names it. Only the appliance's own self-signed certificate (issuer =
//! subject, organization "skytime NTS", as first boot makes it) is
//! re-issued; one an operator installed is never touched.

use super::settings::NetworkSettings;
use super::ReloadCertificate;
use skytime_persist::pair::{write_pair, PairFile};
use std::path::PathBuf;
use x509_parser::prelude::*;

/// Where the served certificate and key are.
#[derive(Clone, Debug)]
pub struct Paths {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Whether `pem` is the appliance's own self-signed certificate.
pub fn is_own(pem: &[u8]) -> bool {
    let Ok((_, p)) = parse_x509_pem(pem) else {
        return false;
    };
    let Ok(cert) = p.parse_x509() else {
        return false;
    };
    cert.subject() == cert.issuer()
        && cert
            .subject()
            .iter_organization()
            .any(|o| o.as_str().ok() == Some(crate::nts::identity::ORGANIZATION))
}

/// After a confirmed change from `previous` to `new`: re-issues the
/// certificate when the host name or a static address changed and the
/// certificate is the appliance's own. Says what it did, for the reply.
pub fn after_change(
    paths: &Paths,
    previous: Option<&NetworkSettings>,
    new: &NetworkSettings,
    reload: &ReloadCertificate,
) -> String {
    let name = |s: Option<&NetworkSettings>| s.and_then(|s| s.hostname.clone());
    let addrs = |s: Option<&NetworkSettings>| s.map(|s| s.static_addresses()).unwrap_or_default();
    if name(previous) == name(Some(new)) && addrs(previous) == addrs(Some(new)) {
        return "unchanged: neither host name nor address changed".into();
    }
    let Ok(pem) = std::fs::read(&paths.certificate) else {
        return format!("none: {} does not exist", paths.certificate.display());
    };
    if !is_own(&pem) {
        tracing::info!("the host name or address changed; the installed certificate is an operator's and is kept");
        return "kept: the certificate was installed by an operator".into();
    }
    match reissue(paths, new, reload) {
        Ok(sans) => {
            tracing::warn!(names = %sans, "self-signed certificate re-issued for the new host name or address; clients that pin it need the new one");
            format!("reissued: {sans}")
        }
        Err(e) => {
            tracing::error!("cannot re-issue the self-signed certificate: {e}");
            format!("failed: {e}")
        }
    }
}

fn reissue(
    paths: &Paths,
    s: &NetworkSettings,
    reload: &ReloadCertificate,
) -> Result<String, String> {
    let hostname = match &s.hostname {
        Some(h) => h.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(|e| format!("cannot read the host name: {e}"))?
            .trim()
            .to_owned(),
    };
    let mut addresses = s.static_addresses();
    addresses.extend(crate::nts::identity::current_addresses().unwrap_or_default());
    addresses.sort();
    addresses.dedup();
    let (cert, key) =
        crate::nts::identity::self_signed(&hostname, &addresses).map_err(|e| e.to_string())?;
    // Key and certificate together (a crash leaves the old pair or the new).
    write_pair(
        PairFile {
            path: &paths.private_key,
            contents: key.as_bytes(),
            mode: 0o600,
        },
        PairFile {
            path: &paths.certificate,
            contents: cert.as_bytes(),
            mode: 0o600,
        },
    )
    .map_err(|e| format!("cannot write {}: {e}", paths.certificate.display()))?;
    reload()?;
    let mut names = vec![hostname.clone()];
    if !hostname.ends_with(".local") {
        names.push(format!("{hostname}.local"));
    }
    names.extend(addresses.iter().map(ToString::to_string));
    Ok(names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_certificate_is_recognised_and_a_foreign_one_is_not() {
        let (own, _) = crate::nts::identity::self_signed("time1", &[]).unwrap();
        assert!(is_own(own.as_bytes()));
        let key = rcgen::KeyPair::generate().unwrap();
        let foreign = rcgen::CertificateParams::new(vec!["time1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        assert!(!is_own(foreign.as_bytes()));
        assert!(!is_own(b"not a certificate"));
    }
}
