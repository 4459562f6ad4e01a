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
//! The NTP server calls [`NtsService::verdict`] for a request with
//! extension fields: `Authentic` -> normal reply header, then
//! [`NtsReply::finish`]; `Nak` -> kiss header NTSN, then `finish`;
//! `Plain` -> a normal reply without NTS fields; `Drop` -> no reply.

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
use skytime_nts::ke::KePolicy;
use skytime_nts::server::{self as nts_server, DropCause, Outcome};
use skytime_proto::server::DropReason;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    tls: Arc<TlsStore>,
    keys: Arc<KeyStore>,
    ke: Arc<KeContext>,
    ke_addresses: Vec<SocketAddr>,
}

/// What to do with an NTP request that carries extension fields.
#[derive(Debug)]
pub enum NtsVerdict {
    /// Authentic: answer normally, then append the NTS fields with `finish`.
    Authentic(NtsReply),
    /// Cookie unusable: answer with a kiss-o'-death NTSN header, then `finish`.
    Nak(NtsReply),
    /// Not an NTS request (its extension fields are not NTS ones): answer
    /// as plain NTP, without extension fields.
    Plain,
    /// No reply at all, counted under this reason.
    Drop(DropReason),
}

/// The NTS part of a reply, ready to be appended once the header (with its
/// transmit timestamp) is final.
#[derive(Debug)]
pub struct NtsReply(ReplyKind);

#[derive(Debug)]
enum ReplyKind {
    Authentic(nts_server::AuthenticReply),
    Nak(nts_server::NakReply),
}

impl NtsReply {
    /// Writes `header` followed by the NTS extension fields into `out`.
    /// The result is never longer than the request.
    pub fn finish(self, header: &[u8; 48], out: &mut Vec<u8>) {
        match &self.0 {
            ReplyKind::Authentic(r) => r.write(header, out),
            ReplyKind::Nak(r) => r.write(header, out),
        }
    }
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

    /// The counters now.
    pub fn stats(&self) -> NtsStats {
        self.counters.snapshot()
    }

    /// Examines a request carrying extension fields. `packet` is the whole
    /// datagram, `extensions` the bytes after the 48-byte header.
    pub fn verdict(&self, packet: &[u8], _extensions: &[u8]) -> NtsVerdict {
        let c = &self.counters;
        let Some(running) = &self.running else {
            return NtsVerdict::Drop(DropReason::NtsDisabled);
        };
        match nts_server::process(packet, &running.keys.current(), &mut rand::thread_rng()) {
            Outcome::Authentic(r) => {
                NtsCounters::inc(&c.ntp_authentic);
                c.ntp_cookies_issued.fetch_add(
                    r.cookie_count() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                NtsVerdict::Authentic(NtsReply(ReplyKind::Authentic(r)))
            }
            Outcome::Nak(r) => {
                NtsCounters::inc(match r.cause {
                    skytime_nts::cookie::CookieError::UnknownKey => &c.ntp_nak_unknown_key,
                    _ => &c.ntp_nak_bad_cookie,
                });
                NtsVerdict::Nak(NtsReply(ReplyKind::Nak(r)))
            }
            Outcome::NotNts => {
                NtsCounters::inc(&c.ntp_not_nts);
                if self.required {
                    NtsVerdict::Drop(DropReason::NtsRequired)
                } else {
                    NtsVerdict::Plain
                }
            }
            Outcome::Drop(cause) => match cause {
                DropCause::MalformedField(_) => {
                    NtsCounters::inc(&c.ntp_malformed);
                    NtsVerdict::Drop(DropReason::BadExtensionField)
                }
                DropCause::AuthenticationFailed => {
                    NtsCounters::inc(&c.ntp_auth_failed);
                    NtsVerdict::Drop(DropReason::NtsAuthFailed)
                }
                _ => {
                    NtsCounters::inc(&c.ntp_malformed);
                    NtsVerdict::Drop(DropReason::NtsAuthFailed)
                }
            },
        }
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
