//! Upstream NTP and NTS servers: skytimed as a client, to check its GPS
//! and to take over when it lies or is gone (and to be a Stratum-2
//! server with no GPS at all).
//!
//! The protocol is sans IO elsewhere (`skytime-proto`'s client
//! associations, `skytime-nts`'s KE client and NTS sessions,
//! `skytime-symkey`'s MACs); here are the I/O and the glue:
//! [`config`] (`[[upstream]]`, `[nts_client]`), [`socket`] (UDP with
//! kernel receive timestamps), [`ke`] (NTS-KE over rustls), [`cookies`]
//! (sessions kept across restarts), [`source`] (one task per server) and
//! [`status`] (what reports show). Samples go to the discipline as
//! [`NetworkSample`]s, with source numbers from 3 up (0 to 2 are the
//! GPS receiver's).

pub mod config;
pub mod cookies;
pub mod ke;
pub mod socket;
pub mod source;
pub mod status;

pub use config::{Authentication, NtsClientConfig, UpstreamConfig, UpstreamKind};
pub use source::{reference_id, NetworkSample};
pub use status::{MemberStatus, NtsStatus, StatusBoard};

use skytime_symkey::KeyFile;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The discipline's number for the first network source.
pub const FIRST_SOURCE: usize = 3;

/// Why the upstream sources cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    TooMany(String),
    #[error("NTS client: {0}")]
    Tls(#[from] ke::KeError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
}

/// The running upstream sources.
#[derive(Debug)]
pub struct Upstreams {
    board: StatusBoard,
    configured: usize,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Upstreams {
    /// No upstream source.
    pub fn none() -> Self {
        Self {
            board: StatusBoard::default(),
            configured: 0,
            tasks: Mutex::new(None),
        }
    }

    /// Checks the configuration (sources fit, keys exist, trusted
    /// certificates read) and starts one task per source. Must be called
    /// inside a tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        list: &[UpstreamConfig],
        client: &NtsClientConfig,
        keys: Option<Arc<KeyFile>>,
        keys_file: Option<&Path>,
        data_dir: &Path,
        precision: i8,
        samples: mpsc::Sender<NetworkSample>,
        shutdown: CancellationToken,
    ) -> Result<Self, UpstreamError> {
        config::check_list(list).map_err(UpstreamError::TooMany)?;
        for u in list {
            if let Authentication::Key(id) = u.authentication {
                if keys.as_ref().and_then(|k| k.get(id)).is_none() {
                    return Err(crate::keys::KeysError::MissingKey {
                        upstream: u.address.clone(),
                        id,
                        file: keys_file.map(Path::to_owned),
                    }
                    .into());
                }
            }
        }
        let tls = if list.iter().any(|u| u.authentication == Authentication::Nts) {
            Some(ke::tls_config(client)?)
        } else {
            None
        };
        let board = StatusBoard::default();
        let shared = Arc::new(source::Shared {
            tls,
            keys,
            state_dir: client.state_dir(data_dir),
            ke_timeout: Duration::from_secs(client.ke_timeout.clamp(1, 600)),
            precision,
            samples,
            board: board.clone(),
        });
        let mut tasks = JoinSet::new();
        let mut index = FIRST_SOURCE;
        for u in list {
            for k in 0..usize::from(u.max_sources) {
                let slot = board.add(MemberStatus::new(
                    &u.address,
                    index,
                    u.authentication,
                    u.role,
                ));
                let member = source::Member {
                    config: u.clone(),
                    index,
                    slot,
                    pool_member: k,
                };
                tasks.spawn(member.run(shared.clone(), shutdown.child_token()));
                index += 1;
            }
            tracing::info!(
                upstream = %u.address,
                kind = ?u.kind,
                authentication = ?u.authentication,
                role = u.role.name(),
                "upstream source configured"
            );
        }
        Ok(Self {
            board,
            configured: index - FIRST_SOURCE,
            tasks: Mutex::new(Some(tasks)),
        })
    }

    /// Every source's state now.
    pub fn status(&self) -> Vec<MemberStatus> {
        self.board.snapshot()
    }

    /// Sources configured (a pool counts its members).
    pub fn configured(&self) -> usize {
        self.configured
    }

    /// Waits for the tasks to end (after the shutdown token fired): they
    /// save their NTS sessions on the way out.
    pub async fn join(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut t) = tasks {
            while t.join_next().await.is_some() {}
        }
    }
}
