//! The update state on the data partition: a small versioned JSON
//! document, replaced atomically.
//!
//! ```json
//! {"format": 1, "state": {"state": "installing", "bundle": {...}, ...}}
//! ```
//!
//! A missing file is [`State::Idle`] (a fresh data partition). A file that
//! cannot be read, is not JSON, names another format or an unknown state is
//! an error with the path and the reason: it is never replaced silently,
//! because it may be the only record that an update is half-way. The
//! caller reports it; [`Store::set_aside`] keeps it for inspection when the
//! operator decides to start over.

use crate::state::State;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The document format this code writes and reads.
pub const FORMAT: u32 = 1;

/// Where skytimed keeps the state on the appliance (the data partition).
pub const DEFAULT_PATH: &str = "/var/lib/skytime/ota/state.json";

/// Why the state cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read or written.
    #[error("update state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a state document this code understands.
    #[error(
        "update state {path} is corrupt: {reason} (kept as it is; move it away to start over)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is from another version of the format.
    #[error("update state {path} has format {found}, this build reads format {FORMAT}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
}

#[derive(Serialize)]
struct DocumentOut<'a> {
    format: u32,
    state: &'a State,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentIn {
    format: u32,
    state: serde_json::Value,
}

/// The state file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The state at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; [`State::Idle`] when there is no file.
    pub fn load(&self) -> Result<State, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::Idle),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        decode(&bytes).map_err(|e| e.at(&self.path))
    }

    /// Replaces the saved state: temporary file, fsync, rename, fsync of
    /// the directory (created when missing, mode 0700).
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        self.save_with(state, &mut skytime_persist::atomic::NoFaults)
    }

    /// [`save`](Self::save) through `steps` (the crash-safety tests fail
    /// or crash the write at each step).
    fn save_with(
        &self,
        state: &State,
        steps: &mut dyn skytime_persist::Steps,
    ) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
        let mut text = serde_json::to_vec_pretty(&DocumentOut {
            format: FORMAT,
            state,
        })
        .map_err(|e| io_err(io::Error::other(e)))?;
        text.push(b'\n');
        // The project's one atomic write (temporary file, fsync, rename,
        // fsync of the directory); 0600: only skytimed and root read it.
        skytime_persist::atomic_write_steps(&self.path, &text, Some(0o600), steps).map_err(io_err)
    }

    /// Renames a corrupt file to `<name>.corrupt` (replacing an older
    /// one) so that the next [`Store::load`] starts from idle; returns the
    /// new path. Only for an explicit operator decision.
    pub fn set_aside(&self) -> Result<PathBuf, StoreError> {
        let mut aside = self.path.clone().into_os_string();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        fs::rename(&self.path, &aside).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(aside)
    }
}

enum DecodeError {
    Corrupt(String),
    Format(u32),
}

impl DecodeError {
    fn at(self, path: &Path) -> StoreError {
        match self {
            Self::Corrupt(reason) => StoreError::Corrupt {
                path: path.to_owned(),
                reason,
            },
            Self::Format(found) => StoreError::UnsupportedFormat {
                path: path.to_owned(),
                found,
            },
        }
    }
}

fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Corrupt("the file is empty".into()));
    }
    let doc: DocumentIn =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if doc.format != FORMAT {
        return Err(DecodeError::Format(doc.format));
    }
    serde_json::from_value(doc.state).map_err(|e| DecodeError::Corrupt(format!("state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Bundle;

    fn installing() -> State {
        State::Installing {
            bundle: Bundle {
                source: "/data/next.raucb".into(),
                version: "0.2.0+20250301.000000".into(),
                manifest_hash: None,
                force: true,
                transaction: "t1".into(),
            },
            from_slot: "A".into(),
            boot_id: "b1".into(),
            percent: 30,
            step: "Copying".into(),
        }
    }

    #[test]
    fn missing_file_is_idle_and_save_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("ota/state.json"));
        assert_eq!(store.load().unwrap(), State::Idle);
        store.save(&installing()).unwrap();
        assert_eq!(store.load().unwrap(), installing());
        store.save(&State::Idle).unwrap();
        assert_eq!(store.load().unwrap(), State::Idle);
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("\"format\": 1"), "{text}");
        // Only the state file is left: no temporary files.
        let names: Vec<_> = fs::read_dir(dir.path().join("ota")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_files_are_reported_with_path_and_reason_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::new(&path);
        for (content, want) in [
            ("", "the file is empty"),
            (
                "{\"format\": 1, \"state\": {\"state\": \"installing\"",
                "EOF",
            ),
            (
                "{\"format\": 1, \"state\": {\"state\": \"exploding\"}}",
                "unknown variant `exploding`",
            ),
            ("{\"format\": 1}", "missing field `state`"),
            (
                "{\"format\": 1, \"state\": {\"state\": \"idle\"}, \"x\": 1}",
                "unknown field `x`",
            ),
            ("\u{0}\u{1}garbage", "expected value"),
        ] {
            fs::write(&path, content).unwrap();
            let e = store.load().unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(want), "{content:?}: {msg}");
            assert_eq!(fs::read_to_string(&path).unwrap(), content, "kept as it is");
        }
        fs::write(&path, "{\"format\": 7, \"state\": {\"state\": \"idle\"}}").unwrap();
        assert!(matches!(
            store.load(),
            Err(StoreError::UnsupportedFormat { found: 7, .. })
        ));
        let aside = store.set_aside().unwrap();
        assert!(aside.to_string_lossy().ends_with("state.json.corrupt"));
        assert_eq!(store.load().unwrap(), State::Idle);
    }

    /// The write failed or "crashed" at each step (skytime-persist's
    /// injector): the loader then reads the old state or the new one,
    /// never an error, and a temporary file left by a crash is not it.
    #[test]
    fn a_fault_at_any_step_loads_the_old_or_the_new_state() {
        use skytime_persist::{Fault, FaultAt, Step};
        for step in Step::ALL {
            for fault in [Fault::Fail, Fault::Crash] {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::new(dir.path().join("ota/state.json"));
                store.save(&State::Idle).unwrap();
                let r = store.save_with(&installing(), &mut FaultAt(step, fault));
                assert!(r.is_err(), "{step:?} {fault:?}");
                let loaded = store.load().unwrap();
                let want = if step == Step::SyncDir {
                    installing()
                } else {
                    State::Idle
                };
                assert_eq!(loaded, want, "{step:?} {fault:?}");
                store.save(&installing()).unwrap();
                assert_eq!(store.load().unwrap(), installing());
            }
        }
    }

    /// Files written before the operator's rollback was recorded still
    /// read (the new states are new variants; no field of an older state
    /// changed), and the new states read from their documents as written.
    #[test]
    fn older_documents_and_the_operators_rollback_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::new(&path);
        let bundle = r#"{"source": "/b", "version": "0.2.0+20250301.000000",
            "manifest_hash": null, "force": false, "transaction": "t"}"#;
        let confirmed = format!(
            r#"{{"format": 1, "state": {{"state": "confirmed", "bundle": {bundle}, "slot": "B"}}}}"#
        );
        fs::write(&path, &confirmed).unwrap();
        let State::Confirmed { slot, .. } = store.load().unwrap() else {
            panic!("{confirmed}")
        };
        assert_eq!(slot, "B");
        let rollback = r#"{"from_slot": "B", "from_version": "0.2.0+20250301.000000",
            "to_slot": "A", "to_version": null, "at": 1764637200}"#;
        let rolling = format!(
            r#"{{"format": 1, "state": {{"state": "rolling-back", "rollback": {rollback},
                "boot_id": "b2", "previous": {{"state": "confirmed", "bundle": {bundle},
                "slot": "B"}}}}}}"#
        );
        fs::write(&path, &rolling).unwrap();
        let State::RollingBack {
            rollback: r,
            previous,
            ..
        } = store.load().unwrap()
        else {
            panic!("{rolling}")
        };
        assert_eq!((r.from_slot.as_str(), r.to_slot.as_str()), ("B", "A"));
        assert_eq!(previous.name(), "confirmed");
        let done = format!(
            r#"{{"format": 1, "state": {{"state": "rolled-back-by-operator", "rollback": {rollback}}}}}"#
        );
        fs::write(&path, &done).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.name(), "rolled-back-by-operator");
        store.save(&loaded).unwrap();
        assert_eq!(store.load().unwrap(), loaded);
    }

    #[test]
    fn unreadable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let store = Store::new(dir.path());
        assert!(matches!(store.load(), Err(StoreError::Io { .. })));
    }
}
