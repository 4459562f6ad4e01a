//! Two files that must change together (a TLS certificate and its private
//! key): a crash leaves both old or, after [`recover_pair`], both new;
//! never a new key beside an old certificate, which no TLS stack loads.
//!
//! The sequence: each new file is staged beside its target as
//! `<name>.new` with [`atomic_write_steps`] (the first, then the second:
//! the second's staged file is the commit record), then both are renamed
//! into place (the first, then the second) and the directory is synced.
//! [`recover_pair`], which every reader calls first, finishes a committed
//! pair (the second's staged file exists: rename what is staged) and drops
//! an uncommitted one (only the first's staged file: remove it).

use crate::atomic::{atomic_write_steps, Fault, Step, Steps};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// One file of a pair: where, what, and its mode.
#[derive(Clone, Copy, Debug)]
pub struct PairFile<'a> {
    pub path: &'a Path,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// What [`recover_pair`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No interrupted write.
    Clean,
    /// A committed write was finished: both files are the new ones.
    Finished,
    /// An uncommitted write was dropped: both files are the old ones.
    Dropped,
}

/// Where `path`'s new contents are staged.
pub fn staged_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

/// Replaces both files (see the module documentation).
pub fn write_pair(first: PairFile<'_>, second: PairFile<'_>) -> io::Result<()> {
    write_pair_steps(first, second, &mut crate::atomic::NoFaults)
}

/// [`write_pair`], asking `steps` before every step of both staged writes
/// and before each rename and the final directory sync (the tests crash
/// it at each).
pub fn write_pair_steps(
    first: PairFile<'_>,
    second: PairFile<'_>,
    steps: &mut dyn Steps,
) -> io::Result<()> {
    // A leftover from an earlier interrupted write is settled first, so
    // this write's staging cannot be mistaken for it.
    recover_pair(first.path, second.path)?;
    let (a, b) = (staged_path(first.path), staged_path(second.path));
    atomic_write_steps(&a, first.contents, Some(first.mode), steps)?;
    atomic_write_steps(&b, second.contents, Some(second.mode), steps)?;
    // Committed: from here on a crash is finished by recover_pair.
    for (from, to) in [(&a, first.path), (&b, second.path)] {
        check(steps, Step::Rename)?;
        fs::rename(from, to)?;
    }
    check(steps, Step::SyncDir)?;
    sync_dir(first.path)?;
    if first.path.parent() != second.path.parent() {
        sync_dir(second.path)?;
    }
    Ok(())
}

fn check(steps: &mut dyn Steps, step: Step) -> io::Result<()> {
    match steps.before(step) {
        Fault::None => Ok(()),
        // Past the commit a failure and a crash leave the same: the
        // staged files, finished by the next recover_pair.
        Fault::Fail | Fault::Crash => Err(io::Error::other(format!("injected fault at {step:?}"))),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Finishes or drops an interrupted [`write_pair`] of `first` and
/// `second`; readers call it before reading either file.
pub fn recover_pair(first: &Path, second: &Path) -> io::Result<Recovery> {
    let (a, b) = (staged_path(first), staged_path(second));
    if b.exists() {
        if a.exists() {
            fs::rename(&a, first)?;
        }
        fs::rename(&b, second)?;
        sync_dir(first)?;
        sync_dir(second)?;
        Ok(Recovery::Finished)
    } else if a.exists() {
        fs::remove_file(&a)?;
        sync_dir(first)?;
        Ok(Recovery::Dropped)
    } else {
        Ok(Recovery::Clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FaultAtCall;

    fn read(p: &Path) -> Option<Vec<u8>> {
        fs::read(p).ok()
    }

    /// A fault at every step of the whole sequence, with and without old
    /// files: after recovery both files are old or both new, and no
    /// staged file is left.
    #[test]
    fn a_fault_anywhere_leaves_both_old_or_both_new() {
        let mut covered = 0;
        for fault in [Fault::Fail, Fault::Crash] {
            for first_time in [false, true] {
                for n in 0.. {
                    let dir = tempfile::tempdir().unwrap();
                    let (k, c) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
                    if !first_time {
                        write_pair(
                            PairFile {
                                path: &k,
                                contents: b"old key",
                                mode: 0o600,
                            },
                            PairFile {
                                path: &c,
                                contents: b"old cert",
                                mode: 0o644,
                            },
                        )
                        .unwrap();
                    }
                    let mut steps = FaultAtCall::new(n, fault);
                    let r = write_pair_steps(
                        PairFile {
                            path: &k,
                            contents: b"new key!",
                            mode: 0o600,
                        },
                        PairFile {
                            path: &c,
                            contents: b"new cert!",
                            mode: 0o644,
                        },
                        &mut steps,
                    );
                    if r.is_ok() {
                        assert!(n >= 10, "every step was reached: {n}");
                        break;
                    }
                    covered += 1;
                    recover_pair(&k, &c).unwrap();
                    let got = (read(&k), read(&c));
                    let old = if first_time {
                        (None, None)
                    } else {
                        (Some(b"old key".to_vec()), Some(b"old cert".to_vec()))
                    };
                    let new = (Some(b"new key!".to_vec()), Some(b"new cert!".to_vec()));
                    assert!(got == old || got == new, "{fault:?} at step {n}: {got:?}");
                    assert!(!staged_path(&k).exists() && !staged_path(&c).exists());
                    assert_eq!(recover_pair(&k, &c).unwrap(), Recovery::Clean);
                }
            }
        }
        assert!(covered >= 40, "{covered}");
    }
}
