//! Symmetric keys (chrony's `keyfile`): the `[keys]` section, loading
//! the file, and what the NTP server does with a request that carries a
//! MAC ([`server`]). The key material is never logged: errors name the
//! file and line only.

pub mod server;

use serde::Deserialize;
use skytime_symkey::KeyFile;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[keys]` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The key file, in chrony's format. Unset: no symmetric keys.
    pub file: Option<PathBuf>,
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} may be read by others (mode {mode:04o}): make it 0600 \
         (chmod 600 {path})"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("invalid key file {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: skytime_symkey::KeyFileError,
    },
    #[error("upstream {upstream}: key {id} is not in the key file{}", .file.as_ref().map(|f| format!(" {}", f.display())).unwrap_or_else(|| " (no [keys] file is configured)".into()))]
    MissingKey {
        upstream: String,
        id: u32,
        file: Option<PathBuf>,
    },
}

/// Reads the configured key file (`None` without one). A file that
/// group or others may read is refused, as is any bad line.
pub fn load(config: &KeysConfig) -> Result<Option<Arc<KeyFile>>, KeysError> {
    let Some(path) = &config.file else {
        return Ok(None);
    };
    load_file(path).map(|k| Some(Arc::new(k)))
}

pub fn load_file(path: &Path) -> Result<KeyFile, KeysError> {
    let read = |source| KeysError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeysError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    KeyFile::parse(&text).map_err(|source| KeysError::Invalid {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_must_be_private_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "1 SHA1 HEX:00112233445566778899\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = load(&KeysConfig {
            file: Some(path.clone()),
        })
        .unwrap()
        .unwrap();
        assert_eq!(keys.len(), 1);
        std::fs::write(&path, "1 SHA1 HEX:0011\n2 XYZ secretvalue\n").unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && !e.contains("secretvalue"), "{e}");
        assert!(load(&KeysConfig::default()).unwrap().is_none());
        let e = load_file(&dir.path().join("none")).unwrap_err().to_string();
        assert!(e.contains("cannot read the key file"), "{e}");
    }
}
