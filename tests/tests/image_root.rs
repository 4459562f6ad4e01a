//! The built root file system's privileged programs, read from the image
//! itself (no boot): slot A's erofs is extracted with fsck.erofs and every
//! regular file with a setuid or setgid bit is listed (modes as the
//! kernel sees them; checked against a loop mount once). The list must be
//! exactly `image/setuid.allow`, path and mode; the programs Debian ships
//! setuid for users (su, passwd, mount, ...) are still there, without
//! their bits, so the check would see a build that stopped clearing them.
//!
//! Needs `make image` first (a few seconds).

mod image_support;

use image_support::*;
use skytime_tests::require_program;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// `image/setuid.allow`: path → mode (octal, as `find -perm` prints it).
fn allow_list() -> BTreeMap<String, u32> {
    let text = fs::read_to_string(repo().join("image/setuid.allow")).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let (path, mode) = (f.next().unwrap(), f.next().unwrap_or(""));
            let mode = u32::from_str_radix(mode, 8)
                .unwrap_or_else(|_| panic!("image/setuid.allow: {l:?} has no octal mode"));
            (path.to_owned(), mode)
        })
        .collect()
}

/// Every regular file under `root` with a setuid or setgid bit.
fn privileged(root: &Path) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                dirs.push(e.path());
            } else if meta.is_file() && meta.permissions().mode() & 0o6000 != 0 {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                found.insert(format!("/{rel}"), meta.permissions().mode() & 0o7777);
            }
        }
    }
    found
}

#[test]
fn only_the_allowed_programs_keep_setuid_or_setgid() {
    let img = repo().join("target/image/skytime-rpi4.img");
    assert!(img.exists(), "{}: run make image first", img.display());
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let erofs = dir.path().join("root-a.erofs");
    extract(&img, 2, &erofs);
    let root = dir.path().join("root");
    // Modes only: extracting ownership as well would chown after the
    // chmod, and a chown clears the very bits looked for here.
    run(Command::new(require_program("fsck.erofs"))
        .arg(format!("--extract={}", root.display()))
        .args(["--no-preserve-owner", "--preserve-perms"])
        .arg(&erofs));

    let found = privileged(&root);
    let allowed = allow_list();
    let show = |m: &BTreeMap<String, u32>| {
        m.iter()
            .map(|(p, mode)| format!("  {p} {mode:o}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        found,
        allowed,
        "setuid/setgid files on the root:\n{}\nimage/setuid.allow:\n{}",
        show(&found),
        show(&allowed)
    );

    // The user programs are still installed, only unprivileged.
    for program in [
        "usr/bin/su",
        "usr/bin/passwd",
        "usr/bin/newgrp",
        "usr/bin/mount",
        "usr/sbin/unix_chkpwd",
    ] {
        let meta = fs::metadata(root.join(program))
            .unwrap_or_else(|e| panic!("/{program} is not in the image ({e}); update this test"));
        assert_eq!(meta.permissions().mode() & 0o6000, 0, "/{program}");
    }
}
