//! The guest's root file system: an initramfs in the kernel's "newc" cpio
//! format, built in memory from busybox, host-built programs with their
//! shared libraries, files and kernel modules.

use crate::{require_program, run_bounded};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// An initramfs in the kernel's "newc" cpio format, uncompressed.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(path, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, data: &[u8], perm: u32) {
        self.entry(path, 0o100000 | perm, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120777, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, 0o020600, (major, minor), &[]);
    }

    /// Adds every directory on the way to `path` that is not there yet.
    pub fn parents(&mut self, path: &str, made: &mut Vec<String>) {
        let mut cur = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            cur.push('/');
            cur.push_str(part);
            if !made.contains(&cur) {
                self.dir(&cur);
                made.push(cur.clone());
            }
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

/// A guest root file system under construction: busybox and `/init` to
/// start with, then programs, files and modules; directories are made as
/// needed.
#[derive(Debug)]
pub struct Initramfs {
    cpio: Cpio,
    made: Vec<String>,
    /// Host files already copied (shared libraries several programs use).
    copied: Vec<PathBuf>,
    /// Work directory for stripped copies.
    scratch: PathBuf,
}

impl Initramfs {
    /// `/init` (a busybox shell script), `/dev/console`, empty `/proc`,
    /// `/sys`, `/tmp`, and busybox in `/bin` with the `applets` the script
    /// uses. `scratch` is a directory for temporary files.
    pub fn new(init: &str, applets: &[&str], scratch: &Path) -> Self {
        let mut fs = Self {
            cpio: Cpio::new(),
            made: Vec::new(),
            copied: Vec::new(),
            scratch: scratch.to_path_buf(),
        };
        for d in ["/bin", "/dev", "/proc", "/sys", "/tmp"] {
            fs.cpio.dir(d);
            fs.made.push(d.to_owned());
        }
        fs.cpio.char_device("/dev/console", 5, 1);
        fs.cpio.file("/init", init.as_bytes(), 0o755);
        // Debian's busybox (dynamic) or busybox-static: either works.
        fs.program("/bin/busybox", &require_program("busybox"));
        for a in applets {
            fs.cpio.symlink(&format!("/bin/{a}"), "busybox");
        }
        fs
    }

    /// A file at `path`, with its parent directories.
    pub fn file(&mut self, path: &str, data: &[u8], perm: u32) {
        self.cpio.parents(path, &mut self.made);
        self.cpio.file(path, data, perm);
    }

    /// A host executable at `path` without its debug information, and the
    /// shared libraries and loader it needs at the paths `ldd` names.
    pub fn program(&mut self, path: &str, exe: &Path) {
        let data = stripped(exe, &self.scratch);
        self.file(path, &data, 0o755);
        for lib in shared_libraries(exe) {
            if !self.copied.contains(&lib) {
                let name = lib.to_str().expect("UTF-8 library path").to_owned();
                self.file(&name, &fs::read(&lib).unwrap(), 0o755);
                self.copied.push(lib);
            }
        }
    }

    /// Kernel modules into `dir`, with their names in load order in
    /// `dir/order` (for `insmod` in a loop).
    pub fn modules(&mut self, dir: &str, modules: &[PathBuf]) {
        let mut order = String::new();
        for m in modules {
            let name = m.file_name().unwrap().to_str().unwrap();
            self.file(&format!("{dir}/{name}"), &fs::read(m).unwrap(), 0o644);
            order.push_str(name);
            order.push('\n');
        }
        self.file(&format!("{dir}/order"), order.as_bytes(), 0o644);
    }

    /// The host's file at the same path in the guest, if the host has it.
    pub fn host_file(&mut self, path: &str) {
        if let Ok(data) = fs::read(path) {
            self.file(path, &data, 0o644);
        }
    }

    /// The cpio archive.
    pub fn finish(self) -> Vec<u8> {
        self.cpio.finish()
    }
}

/// The shared libraries and dynamic loader `ldd` lists for `exe` (none
/// for a static executable).
pub fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = run_bounded(
        Command::new(require_program("ldd")).arg(exe),
        Duration::from_secs(30),
    );
    if !out.status.success() {
        // "not a dynamic executable": nothing to add.
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no path.
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A copy of `exe` without debug information (a debug skytimed is over
/// 100 MB; the guest holds its initramfs in RAM). Falls back to the file
/// itself if `strip` is missing or fails.
pub fn stripped(exe: &Path, dir: &Path) -> Vec<u8> {
    let out_path = dir.join(format!(
        "{}.stripped",
        exe.file_name().unwrap().to_string_lossy()
    ));
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out_path)
        .arg(exe)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let data = fs::read(if ok { &out_path } else { exe }).unwrap();
    let _ = fs::remove_file(&out_path);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_newc_with_a_trailer() {
        let mut c = Cpio::new();
        c.file("/init", b"#!/bin/sh\n", 0o755);
        let b = c.finish();
        assert!(b.starts_with(b"070701"));
        assert_eq!(b.len() % 4, 0);
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn parents_are_made_once() {
        let mut c = Cpio::new();
        let mut made = Vec::new();
        c.parents("/usr/lib/a.so", &mut made);
        c.parents("/usr/lib/b.so", &mut made);
        assert_eq!(made, ["/usr", "/usr/lib"]);
        let b = c.finish();
        let count = |name: &[u8]| b.windows(name.len()).filter(|w| *w == name).count();
        assert_eq!(count(b"usr/lib\0"), 1);
    }
}
