//! The write side, without D-Bus: validate, persist atomically, put into
//! effect, and undo the files when the daemon refuses. Every function
//! leaves disk and daemon as they were when it returns an error.

use super::backend::{ApplianceBackend, BackendError};
use super::certificate;
use super::error::ApiError;
use super::report::{CertificateReport, ConfigOutcome};
use crate::config::Config;
use crate::nts::NtsConfig;
use crate::persist::atomic_write;
use std::path::Path;

/// Largest TOML document or PEM argument accepted (bytes).
pub const MAX_DOCUMENT: usize = 1 << 20;

/// Validates `text` as a whole configuration file and, unless `dry_run`,
/// writes it to the backend's config path and applies it.
pub fn apply_config(
    backend: &dyn ApplianceBackend,
    text: &str,
    dry_run: bool,
) -> Result<ConfigOutcome, ApiError> {
    if text.len() > MAX_DOCUMENT {
        return Err(ApiError::InvalidArgs(format!(
            "the configuration is {} bytes; at most {MAX_DOCUMENT} are accepted",
            text.len()
        )));
    }
    let path = backend.config_path();
    let running = backend.config();
    let config = Config::parse_managed(text, &path, &running.data_dir)
        .map_err(|e| ApiError::InvalidConfig(format!("{e}; nothing was changed")))?;
    let restart_required = settings_needing_restart(&running, &config);
    if dry_run {
        return Ok(ConfigOutcome {
            path: String::new(),
            dry_run: true,
            restart_required,
        });
    }
    let previous = std::fs::read(&path).ok();
    atomic_write(&path, text.as_bytes(), 0o644).map_err(|e| {
        ApiError::PersistFailed(format!(
            "cannot write {}: {e}; the previous configuration stays",
            path.display()
        ))
    })?;
    match backend.apply_config(&config) {
        Ok(mut more) => {
            more.retain(|k| !restart_required.contains(k));
            let mut restart_required = restart_required;
            restart_required.extend(more);
            tracing::info!(path = %path.display(), ?restart_required, "configuration applied");
            Ok(ConfigOutcome {
                path: path.display().to_string(),
                dry_run: false,
                restart_required,
            })
        }
        Err(e) => {
            restore(&path, previous.as_deref(), 0o644);
            Err(e.into())
        }
    }
}

/// Re-reads the configuration file and the certificate, as SIGHUP does.
pub fn reload(backend: &dyn ApplianceBackend) -> Result<ConfigOutcome, ApiError> {
    let path = backend.config_path();
    let mut restart_required = Vec::new();
    if path.exists() {
        let running = backend.config();
        let config = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                Config::parse_managed(&text, &path, &running.data_dir).map_err(|e| e.to_string())
            })
            .map_err(|e| {
                ApiError::InvalidConfig(format!("{e}; the running configuration stays"))
            })?;
        restart_required = settings_needing_restart(&running, &config);
        let more = backend.apply_config(&config)?;
        restart_required.extend(
            more.into_iter()
                .filter(|k| !restart_required.contains(k))
                .collect::<Vec<_>>(),
        );
    }
    match backend.reload_certificate() {
        Ok(()) | Err(BackendError::NotAvailable(_)) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(path = %path.display(), "reloaded");
    Ok(ConfigOutcome {
        path: path.display().to_string(),
        dry_run: false,
        restart_required,
    })
}

/// Settings the daemon reads only at start, by the name operators know
/// them by. Live are `[log] level` and the NTP server's `[ntp] allow`,
/// `deny` and `ratelimit` (checked per request, see
/// [`crate::ntp_policy`]). The rest is read at start: the sockets, NTS,
/// the reference clocks, the discipline and the bus connection are built
/// from it, and rebuilding them in place would drop clients' state
/// (cookies in flight, filter history) for little gain.
pub fn settings_needing_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, name: &str| {
        if changed {
            keys.push(name.to_owned());
        }
    };
    check(old.data_dir != new.data_dir, "data_dir");
    check(old.ntp.listen != new.ntp.listen, "ntp.listen");
    // The discipline (a sans-IO core) holds local_stratum in its own
    // configuration, fixed when it is built and without a setter; making
    // it live means changing skytime-discipline, and rebuilding the
    // discipline would lose its filter history and holdover estimate.
    check(
        old.ntp.local_stratum != new.ntp.local_stratum,
        "ntp.local_stratum",
    );
    // The client table is sized once; a new rate limit uses it as is.
    check(
        old.ntp.client_log_size != new.ntp.client_log_size,
        "ntp.client_log_size",
    );
    check(old.nts != new.nts, "nts");
    check(old.gps != new.gps, "gps");
    check(old.clock != new.clock, "clock");
    check(old.dbus != new.dbus, "dbus");
    keys
}

/// Checks and installs a certificate chain and key for NTS-KE, then makes
/// the daemon load them; on any failure the old files are put back.
pub fn install_certificate(
    backend: &dyn ApplianceBackend,
    certificate_pem: &str,
    key_pem: &str,
    now_unix: i64,
) -> Result<CertificateReport, ApiError> {
    if certificate_pem.len() > MAX_DOCUMENT || key_pem.len() > MAX_DOCUMENT {
        return Err(ApiError::InvalidArgs(format!(
            "certificate and key must be at most {MAX_DOCUMENT} bytes each"
        )));
    }
    let checked = certificate::check_pair(certificate_pem, key_pem, now_unix)?;
    let config = backend.config();
    let cert_path = NtsConfig::resolve(&config.data_dir, &config.nts.certificate);
    let key_path = NtsConfig::resolve(&config.data_dir, &config.nts.private_key);
    let old_cert = std::fs::read(&cert_path).ok();
    let old_key = std::fs::read(&key_path).ok();

    let persist_err = |p: &Path, e: std::io::Error| {
        ApiError::PersistFailed(format!(
            "cannot write {}: {e}; the previous certificate stays",
            p.display()
        ))
    };
    atomic_write(&key_path, key_pem.as_bytes(), 0o600).map_err(|e| persist_err(&key_path, e))?;
    if let Err(e) = atomic_write(&cert_path, certificate_pem.as_bytes(), 0o644) {
        restore(&key_path, old_key.as_deref(), 0o600);
        return Err(persist_err(&cert_path, e));
    }
    match backend.reload_certificate() {
        Ok(()) | Err(BackendError::NotAvailable(_)) => {}
        Err(e) => {
            restore(&key_path, old_key.as_deref(), 0o600);
            restore(&cert_path, old_cert.as_deref(), 0o644);
            return Err(e.into());
        }
    }
    let mut report = checked.report;
    report.path = cert_path.display().to_string();
    tracing::info!(subject = %report.subject, fingerprint = %report.fingerprint_sha256, not_after = report.not_after, "certificate installed");
    Ok(report)
}

/// Puts `previous` back at `path` (or removes the file if there was none).
fn restore(path: &Path, previous: Option<&[u8]>, mode: u32) {
    let result = match previous {
        Some(bytes) => atomic_write(path, bytes, mode),
        None => std::fs::remove_file(path),
    };
    if let Err(e) = result {
        tracing::error!("cannot restore {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn access_rules_and_rate_limit_need_no_restart_but_local_stratum_does() {
        let old = parse("[ntp]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n");
        let live = parse(
            "[ntp]\nallow = [\"192.0.2.0/24\"]\ndeny = [\"192.0.2.7/32\"]\nlocal_stratum = 10\n\
             [ntp.ratelimit]\nburst = 2\n[log]\nlevel = \"debug\"\n",
        );
        assert!(settings_needing_restart(&old, &live).is_empty());
        let start_only = parse(
            "[ntp]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 9\nclient_log_size = 8\n\
             listen = [\"127.0.0.1:1123\"]\n",
        );
        assert_eq!(
            settings_needing_restart(&old, &start_only),
            ["ntp.listen", "ntp.local_stratum", "ntp.client_log_size"]
        );
    }
}
