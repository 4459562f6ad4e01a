//! Atomic writes of persistent state (keys, drift, configuration, state
//! files, files written back to the boot partition).
//!
//! Every file the daemon keeps across restarts is replaced the same way:
//! write a temporary file in the same directory, fsync it, rename it over
//! the old one, fsync the directory. A crash at any point leaves either the
//! old file or the new one, never a torn mix.
//!
//! The sequence is one function, [`atomic_write_steps`], that asks a
//! [`Steps`] before each step whether to go on; the production paths
//! ([`atomic_write`], [`atomic_write_modeless`]) always go on, and the
//! crash-safety tests fail or "crash" (stop, leaving the disk as it is) at
//! every step to prove that the readers see the old or the new file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The steps of an atomic write, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Create (or truncate) the temporary file beside the target.
    CreateTemp,
    /// Write the contents into it (a fault here leaves half written).
    Write,
    /// fsync the temporary file.
    SyncFile,
    /// Rename it over the target.
    Rename,
    /// fsync the directory, so the rename itself is durable.
    SyncDir,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::CreateTemp,
        Step::Write,
        Step::SyncFile,
        Step::Rename,
        Step::SyncDir,
    ];
}

/// What happens at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Carry on.
    None,
    /// The step fails with an I/O error; the write cleans up after itself
    /// as it does for a real error.
    Fail,
    /// The process "dies" here: the write stops at once, leaving the disk
    /// as it is (a temporary file, half written at [`Step::Write`]), and
    /// returns an error.
    Crash,
}

/// Decides, before each step, whether it goes ahead.
pub trait Steps {
    fn before(&mut self, step: Step) -> Fault;
}

/// Every step goes ahead: the production behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl Steps for NoFaults {
    fn before(&mut self, _: Step) -> Fault {
        Fault::None
    }
}

/// One fault at one step (the crash-safety tests' injector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAt(pub Step, pub Fault);

impl Steps for FaultAt {
    fn before(&mut self, step: Step) -> Fault {
        if step == self.0 {
            self.1
        } else {
            Fault::None
        }
    }
}

/// One fault at the `n`th step asked about, counting from 0 across every
/// write it is passed to: for sequences of writes (a pair of files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAtCall {
    pub n: usize,
    pub fault: Fault,
    seen: usize,
}

impl FaultAtCall {
    pub fn new(n: usize, fault: Fault) -> Self {
        Self { n, fault, seen: 0 }
    }
}

impl Steps for FaultAtCall {
    fn before(&mut self, _: Step) -> Fault {
        self.seen += 1;
        if self.seen - 1 == self.n {
            self.fault
        } else {
            Fault::None
        }
    }
}

/// Replaces `path` with `contents`, atomically, with permission `mode`
/// (for example 0o600 for key material).
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    atomic_write_steps(path, contents, Some(mode), &mut NoFaults)
}

/// [`atomic_write`] for file systems without Unix permissions (the FAT
/// boot partition, where chmod fails): the same sequence, no mode set.
pub fn atomic_write_modeless(path: &Path, contents: &[u8]) -> io::Result<()> {
    atomic_write_steps(path, contents, None, &mut NoFaults)
}

/// The temporary file a write to `path` by this process uses: hidden,
/// beside the target, never a name any reader loads.
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    Ok(dir_of(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The atomic write, asking `steps` before each step (see [`Steps`]).
pub fn atomic_write_steps(
    path: &Path,
    contents: &[u8],
    mode: Option<u32>,
    steps: &mut dyn Steps,
) -> io::Result<()> {
    let dir = dir_of(path);
    let tmp = temp_path(path)?;
    let mut crashed = false;
    let mut go = |step: Step| match steps.before(step) {
        Fault::None => Ok(()),
        Fault::Fail => Err(io::Error::other(format!("injected failure at {step:?}"))),
        Fault::Crash => {
            crashed = true;
            Err(io::Error::other(format!("injected crash at {step:?}")))
        }
    };
    let result = (|| {
        go(Step::CreateTemp)?;
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
        if let Err(e) = go(Step::Write) {
            // A write cut short: half the bytes reached the file.
            f.write_all(&contents[..contents.len() / 2])?;
            return Err(e);
        }
        f.write_all(contents)?;
        go(Step::SyncFile)?;
        f.sync_all()?;
        drop(f);
        go(Step::Rename)?;
        fs::rename(&tmp, path)?;
        go(Step::SyncDir)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() && !crashed {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files that writes cut short by a crash left in
/// `dir` (and in its subdirectories, one level down): hidden files named
/// `.<name>.tmp-<pid>` whose process is gone. No reader ever loads them;
/// this only keeps them from piling up on the data partition across power
/// cuts. A file of a live process (another writer) is left alone. Returns
/// how many were removed.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if let Ok(sub) = fs::read_dir(&path) {
                for e in sub.flatten() {
                    removed += remove_if_stale(&e.path())?;
                }
            }
        } else {
            removed += remove_if_stale(&path)?;
        }
    }
    Ok(removed)
}

fn remove_if_stale(path: &Path) -> io::Result<usize> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(0);
    };
    let pid = name
        .strip_prefix('.')
        .and_then(|n| n.rsplit_once(".tmp-"))
        .and_then(|(_, pid)| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() => {
            fs::remove_file(path)?;
            Ok(1)
        }
        _ => Ok(0),
    }
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

    /// Every step, failed or "crashed": the target holds the old bytes or
    /// the new, never a mix; a failure leaves no temporary file; after a
    /// crash the next write succeeds and sweeps its own leftover away.
    #[test]
    fn a_fault_at_any_step_leaves_the_old_or_the_new_file() {
        for step in Step::ALL {
            for fault in [Fault::Fail, Fault::Crash] {
                for first in [false, true] {
                    let dir = tempfile::tempdir().unwrap();
                    let p = dir.path().join("state");
                    let old = b"old contents, long enough to tear".to_vec();
                    let new = b"NEW CONTENTS, long enough to tear, and longer".to_vec();
                    if !first {
                        atomic_write(&p, &old, 0o600).unwrap();
                    }
                    let err = atomic_write_steps(&p, &new, Some(0o600), &mut FaultAt(step, fault));
                    assert!(err.is_err(), "{step:?} {fault:?}: the fault is reported");
                    let now = fs::read(&p).ok();
                    let before = if first { None } else { Some(old.clone()) };
                    // Past the rename the new file is in place.
                    let expected = if step == Step::SyncDir {
                        Some(new.clone())
                    } else {
                        before
                    };
                    assert_eq!(now, expected, "{step:?} {fault:?} first={first}");
                    let tmp = temp_path(&p).unwrap();
                    if fault == Fault::Fail {
                        assert!(
                            !tmp.exists(),
                            "{step:?}: a failed write leaves no temporary file"
                        );
                    }
                    atomic_write(&p, &new, 0o600).unwrap();
                    assert_eq!(fs::read(&p).unwrap(), new);
                    assert!(
                        !tmp.exists(),
                        "{step:?} {fault:?}: the next write leaves nothing behind"
                    );
                    assert_eq!(
                        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                        0o600
                    );
                }
            }
        }
    }

    #[test]
    fn stale_temporary_files_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nts-client");
        fs::create_dir(&sub).unwrap();
        // No process has a PID this large (the kernel's limit is 2^22).
        let dead = u32::MAX - 1;
        let own = std::process::id();
        for p in [
            dir.path().join(format!(".keys.tmp-{dead}")),
            sub.join(format!(".a.nts.tmp-{dead}")),
            dir.path().join(format!(".drift.tmp-{own}")),
            dir.path().join(".drift.tmp-1"),
            dir.path().join("keys"),
            dir.path().join("notes.tmp-7"),
        ] {
            fs::write(p, "x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 2);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            format!(".drift.tmp-{own}"),
            ".drift.tmp-1".into(),
            "keys".into(),
            "nts-client".into(),
            "notes.tmp-7".into(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(fs::read_dir(&sub).unwrap().count(), 0);
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
