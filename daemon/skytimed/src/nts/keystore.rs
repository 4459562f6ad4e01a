//! Master keys on disk: loaded at start (so a restart invalidates no
//! cookie), created on first start, rotated on schedule and saved with
//! `persist::atomic_write` (mode 0600) before they are used.
//!
//! Sharing keys between servers: point every server's `master_key_file`
//! at the same file (a shared mount or a file copied by a provisioning
//! tool). Exactly one server has `master_key_role = "rotate"`; the others
//! use `"follow"`: they never write the file and re-read it every
//! `min(10 s, rotation_interval)`. The rotating server publishes each key
//! one rotation before it seals cookies with it (`next` in the file), so a
//! follower opens the new cookies from the first moment; it starts sealing
//! with the new key when it next re-reads the file.

use super::config::KeyRole;
use super::counters::NtsCounters;
use super::NtsError;
use crate::persist::atomic_write;
use skytime_nts::keyset::KeySet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The master keys in use and where they live.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    role: KeyRole,
    interval: u64,
    keep_previous: usize,
    current: RwLock<Arc<KeySet>>,
    /// Bumped whenever `current` changes, so that the NTP threads notice a
    /// new key set with one atomic load per batch.
    generation: AtomicU64,
    counters: Arc<NtsCounters>,
}

/// Reads and parses a key file; errors name the file and line.
pub fn read_key_file(path: &Path) -> Result<KeySet, NtsError> {
    let text = std::fs::read_to_string(path).map_err(|e| NtsError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    KeySet::parse(&text).map_err(|e| NtsError::KeyFile { path: path.to_owned(), reason: format!("{e} (the file is corrupt; restore it from a backup or move it away to start with new keys, which invalidates every client's cookies)") })
}

/// Writes `keys` to `path` atomically, mode 0600.
pub fn write_key_file(path: &Path, keys: &KeySet) -> Result<(), NtsError> {
    atomic_write(path, keys.serialize().as_bytes(), 0o600).map_err(|e| NtsError::KeyFile {
        path: path.to_owned(),
        reason: format!("cannot write: {e}"),
    })
}

/// Creates a key file with one new key unless `path` exists. Returns
/// whether it created one.
pub fn create_key_file_if_missing(path: &Path) -> Result<bool, NtsError> {
    if path.exists() {
        return Ok(false);
    }
    write_key_file(path, &KeySet::generate(unix_now(), &mut rand::thread_rng()))?;
    Ok(true)
}

impl KeyStore {
    /// Loads the key file (creating it in the `rotate` role if it does not
    /// exist) and, in the `rotate` role, rotates at once if a rotation fell
    /// due while the daemon was down.
    pub fn open(
        path: &Path,
        role: KeyRole,
        interval: u64,
        keep_previous: usize,
        counters: Arc<NtsCounters>,
    ) -> Result<Self, NtsError> {
        let keys = match (path.exists(), role) {
            (true, _) => read_key_file(path)?,
            (false, KeyRole::Rotate) => {
                let keys = KeySet::generate(unix_now(), &mut rand::thread_rng());
                write_key_file(path, &keys)?;
                tracing::info!(file = %path.display(), "created NTS master keys");
                keys
            }
            (false, KeyRole::Follow) => {
                return Err(NtsError::KeyFile { path: path.to_owned(), reason: "does not exist; with master_key_role = \"follow\" it must be provided by the rotating server".into() })
            }
        };
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "NTS master key file is readable by others; it should be mode 0600");
            }
        }
        let store = Self {
            path: path.to_owned(),
            role,
            interval,
            keep_previous,
            current: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            counters,
        };
        if role == KeyRole::Rotate {
            store.rotate_if_due(unix_now())?;
        }
        Ok(store)
    }

    /// Changes whenever the key set does (see [`KeyStore::current`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn replace(&self, keys: Arc<KeySet>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = keys;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The keys in use now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rotates if due at `now`: the new set is saved first and only used
    /// once it is on disk, so a crash never loses a key that sealed cookies.
    pub fn rotate_if_due(&self, now: u64) -> Result<bool, NtsError> {
        if !self.current().rotation_due(now, self.interval) {
            return Ok(false);
        }
        self.rotate_now(now).map(|_| true)
    }

    /// Rotates at once (the operator asked), whatever the schedule; saved
    /// before use like a scheduled rotation. Followers never write the
    /// shared file, so they refuse. Returns the new key set.
    pub fn rotate_now(&self, now: u64) -> Result<Arc<KeySet>, NtsError> {
        if self.role == KeyRole::Follow {
            return Err(NtsError::KeyFile {
                path: self.path.clone(),
                reason: "this server follows the shared key file (master_key_role = \"follow\"); rotate on the server whose role is \"rotate\"".into(),
            });
        }
        let old = self.current();
        let mut new = (*old).clone();
        new.rotate(now, self.keep_previous, &mut rand::thread_rng());
        if let Err(e) = write_key_file(&self.path, &new) {
            NtsCounters::inc(&self.counters.key_errors);
            return Err(e);
        }
        tracing::info!(
            id = format!("{:08x}", new.current().id),
            kept = new.keys().len() - 1,
            "rotated NTS master key"
        );
        let new = Arc::new(new);
        self.replace(new.clone());
        NtsCounters::inc(&self.counters.key_rotations);
        Ok(new)
    }

    /// Follower: re-reads the file; a corrupt file is refused, the keys in
    /// use stay. Returns whether the keys changed.
    pub fn reload(&self) -> Result<bool, NtsError> {
        let keys = match read_key_file(&self.path) {
            Ok(k) => k,
            Err(e) => {
                NtsCounters::inc(&self.counters.key_errors);
                return Err(e);
            }
        };
        if *self.current() == keys {
            return Ok(false);
        }
        self.replace(Arc::new(keys));
        NtsCounters::inc(&self.counters.key_reloads);
        tracing::info!(file = %self.path.display(), "reloaded NTS master keys");
        Ok(true)
    }

    /// Rotates (or, as a follower, re-reads) on schedule until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let wait = match self.role {
                KeyRole::Rotate => self
                    .current()
                    .seconds_until_rotation(unix_now(), self.interval)
                    .clamp(1, 60),
                KeyRole::Follow => self.interval.clamp(1, 10),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            }
            let result = match self.role {
                KeyRole::Rotate => self.rotate_if_due(unix_now()).map(drop),
                KeyRole::Follow => self.reload().map(drop),
            };
            if let Err(e) = result {
                tracing::error!("NTS master keys: {e}; still using the previous keys");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_mode_0600_and_reloaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        let counters = Arc::new(NtsCounters::default());
        let a = KeyStore::open(&p, KeyRole::Rotate, 3600, 3, counters.clone()).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = KeyStore::open(&p, KeyRole::Rotate, 3600, 3, counters.clone()).unwrap();
        assert_eq!(a.current(), b.current(), "a restart keeps the keys");
        // Rotation saves before use: a new store sees the rotated set.
        assert!(a.rotate_if_due(unix_now() + 3600).unwrap());
        let c = KeyStore::open(&p, KeyRole::Follow, 3600, 3, counters.clone()).unwrap();
        assert_eq!(c.current(), a.current());
        assert_eq!(c.current().keys().len(), 2);
        let generation = b.generation();
        assert!(b.reload().unwrap());
        assert_eq!(b.current(), a.current());
        assert_ne!(b.generation(), generation, "the NTP threads notice");
        assert!(!b.reload().unwrap());
        assert_eq!(counters.snapshot().key_rotations, 1);
    }

    #[test]
    fn forced_rotation_is_saved_and_refused_to_followers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        let counters = Arc::new(NtsCounters::default());
        let r = KeyStore::open(&p, KeyRole::Rotate, 86_400, 3, counters.clone()).unwrap();
        let f = KeyStore::open(&p, KeyRole::Follow, 86_400, 3, counters.clone()).unwrap();
        let before = r.current();
        let after = r.rotate_now(unix_now()).unwrap();
        assert_eq!(after.current().id, before.next().unwrap().id);
        assert_eq!(read_key_file(&p).unwrap(), *after, "saved before use");
        // The follower has not re-read yet but opens the new key's cookies.
        assert!(f.current().get(after.current().id).is_some());
        let e = f.rotate_now(unix_now()).unwrap_err().to_string();
        assert!(e.contains("follow"), "{e}");
        assert_eq!(read_key_file(&p).unwrap(), *after, "follower wrote nothing");
    }

    #[test]
    fn corrupt_file_is_an_error_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(&p, "skytime-nts-keys 1\nkey zz 1 2\n").unwrap();
        let counters = Arc::new(NtsCounters::default());
        let e = KeyStore::open(&p, KeyRole::Rotate, 3600, 3, counters.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("line 2"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "skytime-nts-keys 1\nkey zz 1 2\n"
        );
        // A follower never creates the file.
        let missing = dir.path().join("missing");
        assert!(KeyStore::open(&missing, KeyRole::Follow, 3600, 3, counters.clone()).is_err());
        assert!(!missing.exists());
        // A store whose file turns corrupt keeps its keys.
        let good = dir.path().join("good");
        let s = KeyStore::open(&good, KeyRole::Follow, 3600, 3, counters.clone()).err();
        assert!(s.is_some());
        create_key_file_if_missing(&good).unwrap();
        let s = KeyStore::open(&good, KeyRole::Follow, 3600, 3, counters.clone()).unwrap();
        let before = s.current();
        std::fs::write(&good, "garbage").unwrap();
        assert!(s.reload().is_err());
        assert_eq!(s.current(), before);
        assert_eq!(counters.snapshot().key_errors, 1);
    }

    #[test]
    fn overdue_rotation_happens_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        let mut old = KeySet::generate(unix_now() - 7200, &mut rand::thread_rng());
        old.rotate(unix_now() - 7000, 5, &mut rand::thread_rng());
        write_key_file(&p, &old).unwrap();
        let s = KeyStore::open(
            &p,
            KeyRole::Rotate,
            3600,
            5,
            Arc::new(NtsCounters::default()),
        )
        .unwrap();
        assert_eq!(s.current().keys().len(), 3);
        assert_eq!(
            &s.current().keys()[1..],
            old.keys(),
            "old keys are kept after the new one"
        );
        assert_eq!(read_key_file(&p).unwrap(), *s.current());
    }
}
