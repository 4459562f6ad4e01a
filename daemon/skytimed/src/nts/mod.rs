//! NTS (RFC 8915) in the daemon: NTS-KE server, master keys, and the
//! authenticated-NTP hook the NTP server calls.
//!
//! PLACEHOLDER CONTRACT (owned by the NTS work; replace the bodies):
//! the lead's NTP server calls exactly these items.

use serde::Deserialize;
use skytime_proto::server::DropReason;
use std::net::SocketAddr;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The `[nts]` section of skytime.toml.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NtsConfig {}

/// Errors starting or reloading NTS.
#[derive(Debug, thiserror::Error)]
pub enum NtsError {}

/// The running NTS service (KE listeners, key rotation, cookie keys).
#[derive(Debug)]
pub struct NtsService {}

/// What to do with an NTP request that carries extension fields.
#[derive(Debug)]
pub enum NtsVerdict {
    /// Authentic: answer normally, then append the NTS fields with `finish`.
    Authentic(NtsReply),
    /// Cookie unusable: answer with a kiss-o'-death NTSN header, then `finish`.
    Nak(NtsReply),
    /// No reply at all, counted under this reason.
    Drop(DropReason),
}

/// The NTS part of a reply, ready to be appended once the header (with its
/// transmit timestamp) is final.
#[derive(Debug)]
pub struct NtsReply {}

impl NtsReply {
    /// Writes `header` followed by the NTS extension fields into `out`.
    /// The result is never longer than the request.
    pub fn finish(self, header: &[u8; 48], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(header);
    }
}

impl NtsService {
    /// Starts NTS-KE listeners (config, overridden by `ke_listen_override`
    /// when non-empty) and the key rotation task.
    pub async fn start(
        _config: &NtsConfig,
        _data_dir: &Path,
        _ke_listen_override: &[SocketAddr],
        _shutdown: CancellationToken,
    ) -> Result<Self, NtsError> {
        Ok(Self {})
    }

    /// Whether NTS is configured at all.
    pub fn enabled(&self) -> bool {
        false
    }

    /// Whether plain (unauthenticated) NTP must be refused.
    pub fn required(&self) -> bool {
        false
    }

    /// Examines a request carrying extension fields. `packet` is the whole
    /// datagram, `extensions` the bytes after the 48-byte header.
    pub fn verdict(&self, _packet: &[u8], _extensions: &[u8]) -> NtsVerdict {
        NtsVerdict::Drop(DropReason::NtsDisabled)
    }

    /// Reloads certificate and key from disk (SIGHUP); on error the old ones stay.
    pub fn reload(&self) -> Result<(), NtsError> {
        Ok(())
    }
}
