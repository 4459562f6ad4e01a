//! Update bundles streamed to the data partition: `POST
//! /api/v1/Update/Install?sha256=HEX[&option=value...]` with the bundle
//! as the body. The body goes to a temporary file in
//! `<data_dir>/uploads/` while its SHA-256 is computed; more than
//! `max_upload` bytes (or than the partition has free) is refused, a body
//! that ends early or has another hash is deleted, and only a complete
//! bundle with the announced hash is synced and renamed to
//! `bundle-<hash prefix>.raucb`, replacing earlier uploads. "Free" keeps
//! `RESERVE` aside for the rest of the data partition; without room the
//! answer is `NoSpace` (507), before the body is read when its length is
//! announced, or as soon as a chunked body passes the room. The server
//! then hands its path to `Update.Install(path, options)`.
//!
//! One upload at a time: a second one meanwhile is refused (409), so the
//! partition never holds more than one bundle and one partial file.

use crate::http::Failure;
use bytes::Buf;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use skytime_api::http::names;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The directory in the data directory.
pub const UPLOADS: &str = "uploads";
/// Space left free on the partition besides the bundle.
const RESERVE: u64 = 16 << 20;

/// A bundle stored whole and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Where bundles go and how large they may be.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    max: u64,
    idle: Duration,
    busy: tokio::sync::Mutex<()>,
}

impl Uploads {
    pub fn new(data_dir: &Path, max: u64, idle: Duration) -> Self {
        Self {
            dir: data_dir.join(UPLOADS),
            max,
            idle,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams `body` to the uploads directory and checks it against
    /// `sha256` (64 hex digits).
    pub async fn store(
        &self,
        body: Incoming,
        content_length: Option<u64>,
        sha256: Option<&str>,
    ) -> Result<Stored, Failure> {
        let want = sha256
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                Failure::new(
                    names::INVALID_ARGS,
                    "give the bundle's SHA-256 as ?sha256=<64 hex digits> (sha256sum prints it)",
                )
            })?;
        let too_large = || {
            Failure::new(
                names::TOO_LARGE,
                format!("the bundle is larger than max_upload ({} bytes)", self.max),
            )
        };
        if content_length.is_some_and(|n| n > self.max) {
            crate::http::discard(body, content_length, Duration::from_secs(2)).await;
            return Err(too_large());
        }
        let _one = self.busy.try_lock().map_err(|_| {
            Failure::new(
                "org.skytime.Error.Refused",
                "another upload is in progress; try again when it has finished",
            )
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io("create", &self.dir, e))?;
        // skytimed (another user) checks the bundle's path before RAUC
        // (root) reads it: it may pass through, not list or read.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| self.io("restrict", &self.dir, e))?;
        let free = free_bytes(&self.dir);
        let no_space = |n: u64, free: u64| {
            Failure::new(
                names::NO_SPACE,
                format!("the bundle ({n} bytes) does not fit: {free} bytes are free on the data partition, of which {RESERVE} stay free"),
            )
        };
        if let (Some(n), Some(free)) = (content_length, free) {
            if n.saturating_add(RESERVE) > free {
                return Err(no_space(n, free));
            }
        }
        // A body without a length is cut where it would eat into the
        // reserve, as an announced one is refused.
        let fits = |n: u64| match free {
            Some(free) if n.saturating_add(RESERVE) > free => Err(no_space(n, free)),
            _ => Ok(()),
        };
        let part = self
            .dir
            .join(format!(".upload-{}.part", std::process::id()));
        let result = self
            .receive(body, &part, content_length, too_large, fits)
            .await
            .and_then(|(size, got)| {
                if got == want {
                    Ok(size)
                } else {
                    Err(Failure::new(
                        names::HASH_MISMATCH,
                        format!("the bundle's SHA-256 is {got}, not {want}: it was damaged on the way or is another file"),
                    ))
                }
            });
        let size = match result {
            Ok(size) => size,
            Err(f) => {
                let _ = std::fs::remove_file(&part);
                return Err(f);
            }
        };
        let path = self.dir.join(format!("bundle-{}.raucb", &want[..16]));
        std::fs::rename(&part, &path).map_err(|e| self.io("rename", &part, e))?;
        self.remove_others(&path);
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("sync", &self.dir, e))?;
        Ok(Stored {
            path,
            size,
            sha256: want,
        })
    }

    /// Writes the body to `part`; returns its size and SHA-256.
    async fn receive(
        &self,
        mut body: Incoming,
        part: &Path,
        content_length: Option<u64>,
        too_large: impl Fn() -> Failure,
        fits: impl Fn(u64) -> Result<(), Failure>,
    ) -> Result<(u64, String), Failure> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(part)
            .await
            .map_err(|e| self.io("create", part, e))?;
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut size = 0u64;
        let ended_early = |size: u64, why: String| {
            let of = content_length.map_or_else(String::new, |n| format!(" of {n}"));
            Failure::new(
                names::TRUNCATED,
                format!("the upload ended after {size}{of} bytes ({why}); nothing was kept"),
            )
        };
        loop {
            let frame = match tokio::time::timeout(self.idle, body.frame()).await {
                Err(_) => {
                    return Err(ended_early(
                        size,
                        format!("nothing arrived for {} s", self.idle.as_secs_f64()),
                    ))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ended_early(size, e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            size += data.remaining() as u64;
            if size > self.max {
                return Err(too_large());
            }
            fits(size)?;
            while data.has_remaining() {
                let chunk = data.chunk();
                hash.update(chunk);
                file.write_all(chunk)
                    .await
                    .map_err(|e| self.io("write", part, e))?;
                let n = chunk.len();
                data.advance(n);
            }
        }
        if content_length.is_some_and(|n| n != size) {
            return Err(ended_early(size, "shorter than announced".into()));
        }
        file.sync_all()
            .await
            .map_err(|e| self.io("sync", part, e))?;
        let digest = hash.finish();
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok((size, hex))
    }

    /// Earlier bundles go when a new one is complete.
    fn remove_others(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p != keep && name.starts_with("bundle-") && name.ends_with(".raucb") {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Removes a stored bundle (the install refused it).
    pub fn discard(&self, s: &Stored) {
        let _ = std::fs::remove_file(&s.path);
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> Failure {
        // The partition filled up (by someone else meanwhile): 507.
        let name = if e.kind() == std::io::ErrorKind::StorageFull {
            names::NO_SPACE
        } else {
            "org.skytime.Error.PersistFailed"
        };
        Failure::new(name, format!("cannot {what} {}: {e}", path.display()))
    }
}

/// Bytes available to the gateway on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}
