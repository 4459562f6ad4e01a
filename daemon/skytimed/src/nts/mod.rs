//! NTS (RFC 8915) in the daemon: the NTS-KE server, master keys on disk,
//! the TLS identity, and the hook the NTP server calls for requests with
//! extension fields.
//!
//! The protocol decisions are `skytime-nts`'s; this module does the I/O:
//! - [`config`]: the `[nts]` section.
//! - [`tls`]: certificate and key from PEM, TLS 1.3 + ALPN, reload.
//! - [`certificate`]: X.509 checks of a new pair, descriptions, install.
//! - [`ke_server`]: NTS-KE listeners and connections.
//! - [`keystore`]: master key file, rotation task, followers.
//! - [`identity`]: first-boot key, certificate and master keys.
//! - [`counters`]: what happened, counted.
//!
//! Each NTP server thread gets its own NTS processor from
//! [`NtsService::ntp_processor`] (skytime-nts's `NtsServer`: the master
//! keys' ciphers, a random number generator, counters of its own), which
//! the server decision calls for requests with extension fields; the
//! thread hands it new master keys when [`KeyStore::generation`] says
//! they changed.

pub mod certificate;
pub mod config;
pub mod counters;
pub mod identity;
pub mod ke_server;
pub mod keystore;
pub mod tls;

pub use config::{KeyRole, NtsConfig};
pub use counters::{NtsCounters, NtsStats};
pub use identity::{current_addresses, generate_identity, IdentityReport};

use ke_server::KeContext;
use keystore::KeyStore;
use rand::{CryptoRng, RngCore};
use skytime_nts::ke::KePolicy;
use skytime_nts::server::{NtpCounts, NtsServer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::TlsStore;
use tokio_util::sync::CancellationToken;

/// Errors starting or reloading NTS. Each names the file or address and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum NtsError {
    #[error("TLS certificate {path}: {reason} (make one with `skytimed init`)")]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS private key {path}: {reason}")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("NTS master key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("cannot serve NTS-KE on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("identity: {0}")]
    Identity(String),
}

/// The running NTS service (KE listeners, key rotation, cookie keys).
#[derive(Debug)]
pub struct NtsService {
    required: bool,
    counters: Arc<NtsCounters>,
    /// The NTP threads' own counters, added up by [`NtsService::stats`].
    ntp_counts: Mutex<Vec<Arc<NtpCounts>>>,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    tls: Arc<TlsStore>,
    keys: Arc<KeyStore>,
    ke: Arc<KeContext>,
    ke_addresses: Vec<SocketAddr>,
}

impl NtsService {
    /// Starts NTS-KE listeners (config, overridden by `ke_listen_override`
    /// when non-empty) and the key rotation task.
    pub async fn start(
        config: &NtsConfig,
        data_dir: &Path,
        ke_listen_override: &[SocketAddr],
        shutdown: CancellationToken,
    ) -> Result<Self, NtsError> {
        let counters = Arc::new(NtsCounters::default());
        if !config.enabled {
            if config.require {
                tracing::warn!("[nts] require = true has no effect while enabled = false");
            }
            return Ok(Self {
                required: false,
                counters,
                ntp_counts: Mutex::default(),
                running: None,
            });
        }
        let tls = Arc::new(TlsStore::load(
            &NtsConfig::resolve(data_dir, &config.certificate),
            &NtsConfig::resolve(data_dir, &config.private_key),
        )?);
        let keys = Arc::new(KeyStore::open(
            &NtsConfig::resolve(data_dir, &config.master_key_file),
            config.master_key_role,
            config.rotation_interval.0,
            config.previous_keys.get(),
            counters.clone(),
        )?);
        let policy = KePolicy {
            ntp_server: config.ntp_server.clone(),
            ntp_port: config.ntp_port,
        };
        let ke = Arc::new(KeContext::new(
            tls.clone(),
            keys.clone(),
            counters.clone(),
            policy,
            Duration::from_secs(config.ke_timeout.0),
            config.ke_max_request.get(),
            config.ke_max_connections.get(),
        ));
        let addresses = if ke_listen_override.is_empty() {
            &config.ke_listen[..]
        } else {
            ke_listen_override
        };
        let mut listeners = Vec::new();
        for addr in addresses {
            let l = ke_server::bind(*addr).map_err(|source| NtsError::Bind {
                addr: *addr,
                source,
            })?;
            listeners.push(l);
        }
        let mut ke_addresses = Vec::new();
        for l in listeners {
            let local = l.local_addr().map_err(|source| NtsError::Bind {
                addr: addresses[0],
                source,
            })?;
            tracing::info!(address = %local, "serving NTS-KE");
            ke_addresses.push(local);
            tokio::spawn(ke_server::serve(l, ke.clone(), shutdown.clone()));
        }
        tokio::spawn(tls.clone().watch_expiry(shutdown.clone()));
        tokio::spawn(keys.clone().run(shutdown));
        Ok(Self {
            required: config.require,
            counters,
            ntp_counts: Mutex::default(),
            running: Some(Running {
                tls,
                keys,
                ke,
                ke_addresses,
            }),
        })
    }

    /// Whether NTS is configured at all.
    pub fn enabled(&self) -> bool {
        self.running.is_some()
    }

    /// Whether plain (unauthenticated) NTP must be refused.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The NTS-KE addresses actually bound (port 0 resolved).
    pub fn ke_addresses(&self) -> &[SocketAddr] {
        self.running
            .as_ref()
            .map(|r| &r.ke_addresses[..])
            .unwrap_or(&[])
    }

    /// The master keys (`None` while NTS is disabled), for the management
    /// API's report and operator rotation (`KeyStore::rotate_now`).
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        self.running.as_ref().map(|r| &r.keys)
    }

    /// NTS-KE connections in progress.
    pub fn ke_active_connections(&self) -> usize {
        self.running.as_ref().map(|r| r.ke.active()).unwrap_or(0)
    }

    /// The counters now, the NTP threads' included.
    pub fn stats(&self) -> NtsStats {
        let mut stats = self.counters.snapshot();
        for c in self
            .ntp_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            stats.add_ntp(c);
        }
        stats
    }

    /// The NTS part of one NTP server thread (`None` while NTS is
    /// disabled), with the current master keys and counters of its own.
    pub fn ntp_processor<R: RngCore + CryptoRng>(&self, rng: R) -> Option<NtsServer<R>> {
        let running = self.running.as_ref()?;
        let processor = NtsServer::new(running.keys.current(), rng);
        self.ntp_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(processor.counts().clone());
        Some(processor)
    }

    /// Reloads certificate and key from disk (SIGHUP); on error the old
    /// ones stay, and the error says why. Also re-reads the master key
    /// file of a follower.
    pub fn reload(&self) -> Result<(), NtsError> {
        let Some(running) = &self.running else {
            return Ok(());
        };
        match running.tls.reload() {
            Ok(()) => {
                NtsCounters::inc(&self.counters.cert_reloads);
                tracing::info!("NTS-KE certificate reloaded");
            }
            Err(e) => {
                NtsCounters::inc(&self.counters.cert_reload_failures);
                return Err(e);
            }
        }
        Ok(())
    }
}
