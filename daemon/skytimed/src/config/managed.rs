//! The managed configuration while the daemon runs: `Config.Apply` and
//! `Config.Reload` over D-Bus and SIGHUP all come here.
//!
//! Apply validates a whole document, writes it atomically to the managed
//! file and puts into effect what can change live (which cannot fail: a
//! document that validates is a configuration the daemon can run). Reload
//! re-reads the managed file and the files it names (the NTS
//! certificate). Either way the caller learns which saved settings take
//! effect only after a restart.

use super::{Config, ConfigError};
use crate::nts::NtsError;
use crate::persist::atomic_write;
use std::path::PathBuf;

/// The running daemon, as the managed configuration changes it.
pub trait Running {
    /// The configuration in effect.
    fn running(&self) -> Config;
    /// Puts the live settings of `new` into effect (see
    /// [`settings_needing_restart`] for which are live); returns live
    /// settings that could not change now and need a restart.
    fn apply_live(&self, new: &Config) -> Vec<String>;
    /// Re-reads the NTS certificate and key (a no-op while NTS is off); on
    /// error the pair in use keeps serving.
    fn reload_certificate(&self) -> Result<(), NtsError>;
}

/// What an apply or reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The managed file written or read (`None` for a dry run).
    pub path: Option<PathBuf>,
    /// Settings that were saved but take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Why an apply or reload changed nothing (or, for a certificate, why
/// the old one still serves).
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// The document does not validate.
    #[error("{0}; nothing was changed")]
    Invalid(ConfigError),
    /// The managed file on disk does not validate (reload).
    #[error("{0}; the running configuration stays")]
    InvalidOnDisk(ConfigError),
    #[error("cannot write {path}: {source}; the previous configuration stays")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}; the previous certificate keeps serving")]
    Certificate(NtsError),
}

/// Validates `text` as a whole configuration file and, unless `dry_run`,
/// writes it to the managed file and applies it.
pub fn apply(running: &dyn Running, text: &str, dry_run: bool) -> Result<Outcome, ManagedError> {
    let current = running.running();
    let path = current.managed_path();
    let config =
        Config::parse_managed(text, &path, &current.data_dir).map_err(ManagedError::Invalid)?;
    let mut restart_required = settings_needing_restart(&current, &config);
    if dry_run {
        return Ok(Outcome {
            path: None,
            restart_required,
        });
    }
    atomic_write(&path, text.as_bytes(), 0o644).map_err(|source| ManagedError::Persist {
        path: path.clone(),
        source,
    })?;
    merge(&mut restart_required, running.apply_live(&config));
    tracing::info!(path = %path.display(), ?restart_required, "configuration applied");
    Ok(Outcome {
        path: Some(path),
        restart_required,
    })
}

/// Re-reads the managed file (when there is one) and the certificate.
pub fn reload(running: &dyn Running) -> Result<Outcome, ManagedError> {
    let current = running.running();
    let path = current.managed_path();
    let mut restart_required = Vec::new();
    if path.exists() {
        let config = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|text| Config::parse_managed(&text, &path, &current.data_dir))
            .map_err(ManagedError::InvalidOnDisk)?;
        restart_required = settings_needing_restart(&current, &config);
        merge(&mut restart_required, running.apply_live(&config));
    }
    running
        .reload_certificate()
        .map_err(ManagedError::Certificate)?;
    tracing::info!(path = %path.display(), "reloaded");
    Ok(Outcome {
        path: Some(path),
        restart_required,
    })
}

fn merge(keys: &mut Vec<String>, more: Vec<String>) {
    for k in more {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
}

/// Settings the daemon reads only at start, by the name operators know
/// them by. Live are `[log] level` and the NTP server's `[ntp] allow`,
/// `deny` and `ratelimit` (checked per request, see
/// [`crate::ntp::policy`]). The rest is read at start: the sockets, NTS,
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
    check(old.monitor != new.monitor, "monitor");
    check(old.upstream != new.upstream, "upstream");
    check(old.nts_client != new.nts_client, "nts_client");
    check(old.keys != new.keys, "keys");
    check(old.update != new.update, "update");
    check(
        old.network_control != new.network_control,
        "network_control",
    );
    // [network] only seeds <data_dir>/network.toml: once that exists,
    // Network.Apply (with its safe revert) is how the network changes.
    check(
        old.network != new.network,
        "network (a seed only: change the running network with Network.Apply)",
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Mutex;

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

    /// `[network]` only seeds the network settings: a changed section says
    /// where the running network is changed instead.
    #[test]
    fn a_changed_network_section_points_at_network_apply() {
        let old = parse("");
        let new = parse("[network]\nhostname = \"time1\"\n");
        let keys = settings_needing_restart(&old, &new);
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].contains("Network.Apply"), "{keys:?}");
        let control = parse("[network_control]\ndirectory = \"/tmp/x\"\n");
        assert_eq!(
            settings_needing_restart(&old, &control),
            ["network_control"]
        );
    }

    /// A daemon that records what it was asked to put into effect.
    #[derive(Debug)]
    struct Recorder {
        config: Config,
        applied: Mutex<Vec<Config>>,
        certificate: Mutex<Option<NtsError>>,
    }

    impl Running for Recorder {
        fn running(&self) -> Config {
            self.config.clone()
        }
        fn apply_live(&self, new: &Config) -> Vec<String> {
            self.applied.lock().unwrap().push(new.clone());
            vec!["log.level".to_owned()]
        }
        fn reload_certificate(&self) -> Result<(), NtsError> {
            match self.certificate.lock().unwrap().take() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    fn recorder(dir: &Path) -> Recorder {
        Recorder {
            config: parse(&format!("data_dir = \"{}\"\n", dir.display())),
            applied: Mutex::default(),
            certificate: Mutex::default(),
        }
    }

    #[test]
    fn apply_validates_writes_and_puts_into_effect() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        let managed = dir.path().join("skytime.toml");
        let e = apply(&r, "[ntp]\n\nlocal_stratum = 99\n", false).unwrap_err();
        assert!(
            matches!(e, ManagedError::Invalid(_)) && e.to_string().contains("line 3"),
            "{e}"
        );
        let dry = apply(&r, "[ntp]\nlocal_stratum = 9\n", true).unwrap();
        assert_eq!(dry.path, None);
        assert_eq!(dry.restart_required, ["ntp.local_stratum"]);
        assert!(!managed.exists() && r.applied.lock().unwrap().is_empty());

        let text = "[ntp]\nlocal_stratum = 9\n";
        let done = apply(&r, text, false).unwrap();
        assert_eq!(done.path.as_deref(), Some(managed.as_path()));
        assert_eq!(done.restart_required, ["ntp.local_stratum", "log.level"]);
        assert_eq!(std::fs::read_to_string(&managed).unwrap(), text);
        assert_eq!(r.applied.lock().unwrap().len(), 1);
    }

    #[test]
    fn reload_reads_the_managed_file_and_keeps_running_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        // No managed file: only the certificate is reloaded.
        assert!(reload(&r).unwrap().restart_required.is_empty());
        assert!(r.applied.lock().unwrap().is_empty());
        let managed = dir.path().join("skytime.toml");
        std::fs::write(&managed, "[ntp]\nlocal_stratum = 3\noops\n").unwrap();
        let e = reload(&r).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("stays"), "{e}");
        assert!(r.applied.lock().unwrap().is_empty());
        std::fs::write(&managed, "[ntp]\nlocal_stratum = 3\n").unwrap();
        *r.certificate.lock().unwrap() = Some(NtsError::Tls("bad pair".into()));
        let e = reload(&r).unwrap_err().to_string();
        assert!(e.contains("bad pair") && e.contains("keeps serving"), "{e}");
    }
}
