//! A slot's boot files on the FAT boot partition, replaced so that a power
//! cut leaves the old set or the new one, never a mix.
//!
//! U-Boot cannot read the erofs root, so each slot's kernel, initramfs and
//! DTBs live in `slot-a/` or `slot-b/` on the boot partition
//! (`ota/boot.cmd`). A bundle carries them as the image of slot class
//! `bootfiles`: an uncompressed tar archive ([`write_archive`]) whose first
//! member is their list in `sha256sum` format ([`FileList`],
//! `bootfiles.sha256`), then the files. (RAUC 1.13 takes no directories as
//! bundle contents, and one image file per slot class is what its
//! checksum covers.) The hook's `slot-install` calls [`install`]:
//!
//! 1. [`recover`] from an earlier interrupted run;
//! 2. copy every listed file from the archive into `slot-b.new/`, checking
//!    its hash while copying, fsync each file; write the list last as
//!    `slot-b.new/bootfiles.sha256` (the set is complete once it is
//!    there); fsync the directories;
//! 3. read the new set back and check every hash;
//! 4. rename `slot-b` to `slot-b.old`, rename `slot-b.new` to `slot-b`,
//!    fsync the boot directory;
//! 5. remove `slot-b.old`.
//!
//! A crash leaves `slot-b` as the complete old set (before step 4), absent
//! for the instant between the two renames (with a complete `slot-b.new`
//! that [`recover`] promotes), or the complete new set. FAT has no atomic
//! exchange of directories, hence the brief absence; it does no harm
//! because RAUC marks the target slot non-bootable before it writes
//! anything and bootable only after every image (this one included) is
//! installed. The running slot's directory is never touched.
//!
//! The file operations go through [`Fs`] so tests can stop the sequence at
//! every step.

use ring::digest::{Context, SHA256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The list's name inside a slot directory.
pub const LIST_NAME: &str = "bootfiles.sha256";

/// Files `ota/boot.cmd` loads from every slot directory.
pub const REQUIRED: [&str; 2] = ["vmlinuz", "initrd.img"];

/// What went wrong, with the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum BootFilesError {
    /// The list is not valid.
    #[error("boot file list line {line}: {reason}")]
    BadList {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A path is both a file and a directory in the list.
    #[error("boot file list: {0} is both a file and a directory")]
    FileAndDirectory(String),
    /// A file required by the boot script is not in the list.
    #[error("boot file list has no {0} (ota/boot.cmd loads it)")]
    MissingRequired(&'static str),
    /// The archive is not what [`write_archive`] makes.
    #[error("boot files archive: {0}")]
    BadArchive(String),
    /// A bootname that has no slot directory.
    #[error("bootname {0:?} is not a single letter (slot-a/, slot-b/, ...)")]
    BadBootname(String),
    /// A file's content does not match the list.
    #[error("{path}: SHA-256 {found}, the list says {expected}")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// From the list.
        expected: String,
        /// Computed.
        found: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BootFilesError + '_ {
    move |source| BootFilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The boot files of one slot: relative path and SHA-256 (lower-case hex),
/// sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileList {
    entries: Vec<(String, String)>,
}

impl FileList {
    /// The entries, sorted by path.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// In `sha256sum` format, sorted: what [`std::str::FromStr`] reads.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(p, h)| format!("{h}  {p}\n"))
            .collect()
    }
}

fn valid_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 200 {
        return Err(format!("path {p:?} is empty or too long"));
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-/".contains(&b))
    {
        return Err(format!(
            "path {p:?} has characters other than A-Z a-z 0-9 . _ + - /"
        ));
    }
    let path = Path::new(p);
    if !path.components().all(|c| matches!(c, Component::Normal(_)))
        || p.ends_with('/')
        || p.contains("//")
    {
        return Err(format!(
            "path {p:?} must be relative, without . or .. parts"
        ));
    }
    if p == LIST_NAME {
        return Err(format!("{LIST_NAME} is the list's own name"));
    }
    Ok(())
}

impl std::str::FromStr for FileList {
    type Err = BootFilesError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |reason: String| BootFilesError::BadList {
                line: i + 1,
                reason,
            };
            if line.is_empty() {
                continue;
            }
            // `sha256sum` writes "HASH  PATH" (text) or "HASH *PATH" (binary).
            let (hash, rest) = line
                .split_at_checked(64)
                .ok_or_else(|| bad(format!("{line:?} is not \"SHA256  PATH\"")))?;
            let path = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))
                .ok_or_else(|| bad(format!("{line:?} is not \"SHA256  PATH\"")))?;
            if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{hash:?} is not a SHA-256")));
            }
            valid_path(path).map_err(bad)?;
            if !seen.insert(path.to_owned()) {
                return Err(bad(format!("{path} is listed twice")));
            }
            entries.push((path.to_owned(), hash.to_ascii_lowercase()));
        }
        for r in REQUIRED {
            if !seen.contains(r) {
                return Err(BootFilesError::MissingRequired(r));
            }
        }
        // A file and a directory of the same name cannot both exist.
        for p in &seen {
            let mut prefix = p.clone();
            prefix.push('/');
            if seen
                .range(prefix.clone()..)
                .next()
                .is_some_and(|q| q.starts_with(&prefix))
            {
                return Err(BootFilesError::FileAndDirectory(p.clone()));
            }
        }
        entries.sort();
        Ok(Self { entries })
    }
}

/// `slot-a` for bootname `A`, as `ota/boot.cmd` names them.
pub fn slot_dir_name(bootname: &str) -> Result<String, BootFilesError> {
    match bootname.as_bytes() {
        [c] if c.is_ascii_alphabetic() => Ok(format!("slot-{}", c.to_ascii_lowercase() as char)),
        _ => Err(BootFilesError::BadBootname(bootname.to_owned())),
    }
}

/// SHA-256 of a reader, lower-case hex, and copies it to `out` if given.
pub fn sha256_copy(mut input: impl Read, mut out: Option<&mut dyn Write>) -> io::Result<String> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n])?;
        }
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The file operations [`install`] and [`recover`] use.
pub trait Fs {
    /// Creates a directory (the parent exists).
    fn create_dir(&mut self, p: &Path) -> io::Result<()>;
    /// Copies `src` to a new file `dst`, fsyncs it, returns the SHA-256 of
    /// what was copied.
    fn copy(&mut self, src: &mut dyn Read, dst: &Path) -> io::Result<String>;
    /// Writes a new file and fsyncs it.
    fn write(&mut self, dst: &Path, data: &[u8]) -> io::Result<()>;
    /// SHA-256 of a file.
    fn hash(&mut self, p: &Path) -> io::Result<String>;
    /// Reads a file.
    fn read(&mut self, p: &Path) -> io::Result<Vec<u8>>;
    /// Renames (the target does not exist).
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a directory tree.
    fn remove_tree(&mut self, p: &Path) -> io::Result<()>;
    /// Fsyncs a directory.
    fn sync_dir(&mut self, p: &Path) -> io::Result<()>;
    /// Whether `p` exists.
    fn exists(&mut self, p: &Path) -> bool;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn create_dir(&mut self, p: &Path) -> io::Result<()> {
        fs::create_dir(p)
    }

    fn copy(&mut self, src: &mut dyn Read, dst: &Path) -> io::Result<String> {
        let mut out = OpenOptions::new().write(true).create_new(true).open(dst)?;
        let hash = sha256_copy(src, Some(&mut out))?;
        out.sync_all()?;
        Ok(hash)
    }

    fn write(&mut self, dst: &Path, data: &[u8]) -> io::Result<()> {
        let mut out = OpenOptions::new().write(true).create_new(true).open(dst)?;
        out.write_all(data)?;
        out.sync_all()
    }

    fn hash(&mut self, p: &Path) -> io::Result<String> {
        sha256_copy(File::open(p)?, None)
    }

    fn read(&mut self, p: &Path) -> io::Result<Vec<u8>> {
        fs::read(p)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_tree(&mut self, p: &Path) -> io::Result<()> {
        fs::remove_dir_all(p)
    }

    fn sync_dir(&mut self, p: &Path) -> io::Result<()> {
        File::open(p)?.sync_all()
    }

    fn exists(&mut self, p: &Path) -> bool {
        p.exists()
    }
}

fn sibling(root: &Path, slot: &str, suffix: &str) -> PathBuf {
    root.join(format!("{slot}{suffix}"))
}

/// Whether `dir` holds a complete set: its list parses and every listed
/// file has the listed hash.
pub fn verify_dir(fs: &mut dyn Fs, dir: &Path) -> Result<FileList, BootFilesError> {
    let list_path = dir.join(LIST_NAME);
    let text = fs.read(&list_path).map_err(io_at(&list_path))?;
    let list: FileList = String::from_utf8_lossy(&text).parse()?;
    for (rel, want) in list.entries() {
        let p = dir.join(rel);
        let found = fs.hash(&p).map_err(io_at(&p))?;
        if &found != want {
            return Err(BootFilesError::HashMismatch {
                path: p,
                expected: want.clone(),
                found,
            });
        }
    }
    Ok(list)
}

/// Finishes or undoes an interrupted [`install`] of `slot` under `root`,
/// so that `root/slot` is a complete set again (or absent if it never
/// was), and no `.new`/`.old` directory is left.
pub fn recover(fs: &mut dyn Fs, root: &Path, slot: &str) -> Result<(), BootFilesError> {
    let dir = root.join(slot);
    let new = sibling(root, slot, ".new");
    let old = sibling(root, slot, ".old");
    if !fs.exists(&dir) {
        // Stopped between the two renames: promote a complete new set,
        // else put the old one back.
        if fs.exists(&new) && verify_dir(fs, &new).is_ok() {
            fs.rename(&new, &dir).map_err(io_at(&new))?;
        } else if fs.exists(&old) {
            fs.rename(&old, &dir).map_err(io_at(&old))?;
        }
    }
    for leftover in [new, old] {
        if fs.exists(&leftover) {
            fs.remove_tree(&leftover).map_err(io_at(&leftover))?;
        }
    }
    fs.sync_dir(root).map_err(io_at(root))
}

/// Largest list accepted (a few dozen lines in practice).
const MAX_LIST: u64 = 1 << 20;

fn bad(reason: impl Into<String>) -> BootFilesError {
    BootFilesError::BadArchive(reason.into())
}

fn member_path(entry: &tar::Entry<'_, impl Read>) -> Result<String, BootFilesError> {
    let raw = entry.path_bytes();
    let text = std::str::from_utf8(&raw).map_err(|_| bad("a member name is not UTF-8"))?;
    Ok(text
        .trim_start_matches("./")
        .trim_end_matches('/')
        .to_owned())
}

/// Writes the boot files archive of the files under `dir`: the list
/// first, then every file in path order; times `mtime`, owner root,
/// mode 0644, so the same files give the same bytes. Returns the list.
pub fn write_archive(dir: &Path, mtime: u64, out: impl Write) -> Result<FileList, BootFilesError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_at(&d))? {
            let p = e.map_err(io_at(&d))?.path();
            let meta = fs::symlink_metadata(&p).map_err(io_at(&p))?;
            let rel = p
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| bad(format!("{}: name is not UTF-8", p.display())))?
                .to_owned();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let hash =
                    sha256_copy(File::open(&p).map_err(io_at(&p))?, None).map_err(io_at(&p))?;
                files.push(format!("{hash}  {rel}\n"));
            } else {
                return Err(bad(format!(
                    "{}: only files and directories belong in the boot files",
                    p.display()
                )));
            }
        }
    }
    let list: FileList = files.concat().parse()?;
    let mut tar = tar::Builder::new(out);
    let mut append = |path: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)
    };
    let text = list.to_text();
    append(LIST_NAME, text.len() as u64, &mut text.as_bytes())
        .map_err(io_at(Path::new(LIST_NAME)))?;
    for (rel, _) in list.entries() {
        let p = dir.join(rel);
        let mut f = File::open(&p).map_err(io_at(&p))?;
        let size = f.metadata().map_err(io_at(&p))?.len();
        append(rel, size, &mut f).map_err(io_at(&p))?;
    }
    tar.into_inner().map_err(io_at(dir))?;
    Ok(list)
}

/// Replaces `root/slot` with the files of the boot files `archive` (see
/// [`write_archive`]); see the module documentation for the sequence.
/// Returns the list written.
pub fn install(
    fs: &mut dyn Fs,
    root: &Path,
    slot: &str,
    archive: impl Read,
) -> Result<FileList, BootFilesError> {
    recover(fs, root, slot)?;
    let dir = root.join(slot);
    let new = sibling(root, slot, ".new");
    let old = sibling(root, slot, ".old");

    let mut tar = tar::Archive::new(archive);
    let mut members = tar.entries().map_err(io_at(Path::new("archive")))?;
    let mut first = members
        .next()
        .ok_or_else(|| bad("it is empty"))?
        .map_err(io_at(Path::new("archive")))?;
    if member_path(&first)? != LIST_NAME || first.header().entry_type() != tar::EntryType::Regular {
        return Err(bad(format!("the first member is not {LIST_NAME}")));
    }
    if first.size() > MAX_LIST {
        return Err(bad(format!("{LIST_NAME} is larger than {MAX_LIST} bytes")));
    }
    let mut text = String::new();
    first
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("{LIST_NAME}: {e}")))?;
    drop(first);
    let list: FileList = text.parse()?;
    let wanted: BTreeMap<&str, &str> = list
        .entries()
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();

    fs.create_dir(&new).map_err(io_at(&new))?;
    let mut dirs = BTreeSet::new();
    let mut written = BTreeSet::new();
    for member in members {
        let mut member = member.map_err(io_at(Path::new("archive")))?;
        let rel = member_path(&member)?;
        match member.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            other => return Err(bad(format!("{rel} is a {other:?}, not a file"))),
        }
        let want = *wanted
            .get(rel.as_str())
            .ok_or_else(|| bad(format!("{rel} is not in {LIST_NAME}")))?;
        if !written.insert(rel.clone()) {
            return Err(bad(format!("{rel} is in the archive twice")));
        }
        for parent in Path::new(&rel).ancestors().skip(1) {
            if !parent.as_os_str().is_empty() && dirs.insert(parent.to_owned()) {
                let d = new.join(parent);
                if !fs.exists(&d) {
                    fs.create_dir(&d).map_err(io_at(&d))?;
                }
            }
        }
        let dst = new.join(&rel);
        let found = fs.copy(&mut member, &dst).map_err(io_at(&dst))?;
        if found != want {
            return Err(BootFilesError::HashMismatch {
                path: PathBuf::from(rel),
                expected: want.to_owned(),
                found,
            });
        }
    }
    if let Some(missing) = wanted.keys().find(|p| !written.contains(**p)) {
        return Err(bad(format!("{missing} is listed but not in the archive")));
    }
    let list_path = new.join(LIST_NAME);
    fs.write(&list_path, list.to_text().as_bytes())
        .map_err(io_at(&list_path))?;
    // Deepest directories first, the new slot directory last.
    for d in dirs.iter().rev() {
        let p = new.join(d);
        fs.sync_dir(&p).map_err(io_at(&p))?;
    }
    fs.sync_dir(&new).map_err(io_at(&new))?;
    verify_dir(fs, &new)?;

    if fs.exists(&dir) {
        fs.rename(&dir, &old).map_err(io_at(&dir))?;
    }
    fs.rename(&new, &dir).map_err(io_at(&new))?;
    fs.sync_dir(root).map_err(io_at(root))?;
    if fs.exists(&old) {
        fs.remove_tree(&old).map_err(io_at(&old))?;
        fs.sync_dir(root).map_err(io_at(root))?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests;
