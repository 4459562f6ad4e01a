//! Atomic writes of persistent state (keys, drift, configuration, state
//! files, files written back to the boot partition).
//!
//! Every file the daemon keeps across restarts is replaced the same way:
//! write a temporary file in the same directory, fsync it, rename it over
//! the old one, fsync the directory. A crash at any point leaves either the
//! old file or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`, atomically, with permission `mode`
/// (for example 0o600 for key material).
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, Some(mode))
}

/// [`atomic_write`] for file systems without Unix permissions (the FAT
/// boot partition, where chmod fails): the same sequence, no mode set.
pub fn atomic_write_modeless(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, None)
}

fn replace(path: &Path, contents: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode.unwrap_or(0o644))
            .open(&tmp)?;
        if let Some(mode) = mode {
            // The mode given to open() is filtered by the umask; set it exactly.
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        atomic_write(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn failure_leaves_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        atomic_write(&p, b"old", 0o644).unwrap();
        // Writing into a directory that does not exist fails and changes nothing.
        assert!(atomic_write(&dir.path().join("missing/state"), b"new", 0o644).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
    }
}
